package policy

import "testing"

func TestEffectiveRetentionKeyIsOnlyStricter(t *testing.T) {
	full := func(days int32) Retention { return Retention{Content: RetentionFull, ContentDays: days} }
	tests := []struct {
		name        string
		tenant, key Retention
		want        Retention
	}{
		{"nothing set keeps no content", Retention{}, Retention{}, Retention{Content: RetentionNone}},
		{"a key cannot switch content on", Retention{}, full(30), Retention{Content: RetentionNone}},
		{"a key cannot loosen metadata", Retention{Content: RetentionMetadata}, full(30), Retention{Content: RetentionMetadata}},
		{"a key inherits its tenant's", full(30), Retention{}, full(30)},
		{"a key may keep less", full(30), Retention{Content: RetentionNone}, Retention{Content: RetentionNone}},
		{"a key may keep content for fewer days", full(30), full(7), full(7)},
		{"a key's longer period does not apply", full(7), full(30), full(7)},
		{"usage days: the smaller set one", Retention{UsageDays: 90}, Retention{UsageDays: 400}, Retention{Content: RetentionNone, UsageDays: 90}},
		{"usage days: a key's alone", Retention{}, Retention{UsageDays: 30}, Retention{Content: RetentionNone, UsageDays: 30}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EffectiveRetention(tt.tenant, tt.key); got != tt.want {
				t.Errorf("EffectiveRetention(%+v, %+v) = %+v, want %+v", tt.tenant, tt.key, got, tt.want)
			}
		})
	}
}
