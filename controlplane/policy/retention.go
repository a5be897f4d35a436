package policy

// contentRank orders content retention from strictest to loosest; unset is
// none, the default.
var contentRank = map[ContentRetention]int{RetentionUnset: 0, RetentionNone: 0, RetentionMetadata: 1, RetentionFull: 2}

// EffectiveRetention combines a tenant's retention with its key's: a key may
// only be stricter. Content is the stricter of the two (a key cannot keep
// content its tenant does not), an unset key setting inherits the tenant's,
// and each number of days is the smaller of those set (0: not set). The
// result's Content is never unset: none when neither says otherwise.
func EffectiveRetention(tenant, key Retention) Retention {
	out := Retention{Content: tenant.Content}
	if key.Content != RetentionUnset && contentRank[key.Content] < contentRank[tenant.Content] {
		out.Content = key.Content
	}
	if out.Content == RetentionUnset {
		out.Content = RetentionNone
	}
	if out.Content == RetentionFull {
		out.ContentDays = smallerDays(tenant.ContentDays, key.ContentDays)
	}
	out.UsageDays = smallerDays(tenant.UsageDays, key.UsageDays)
	return out
}

// smallerDays is the smaller of two day counts where 0 means unset.
func smallerDays(a, b int32) int32 {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}
