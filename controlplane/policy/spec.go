// Package policy defines what a tenant's or a key's policy may say, checks
// that it makes sense, and combines a tenant's and a key's policy into the
// effective one (the stricter setting wins).
package policy

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/tollgate-dev/tollgate/controlplane/invalid"
)

// Spec is a policy document. A nil pointer or empty list means "not set": the
// setting is inherited (a key from its tenant) or unlimited.
type Spec struct {
	RequestsPerMinute  *int64 `json:"requests_per_minute,omitempty"`
	TokensPerMinute    *int64 `json:"tokens_per_minute,omitempty"`
	ConcurrentRequests *int64 `json:"concurrent_requests,omitempty"`
	MaxOutputTokens    *int64 `json:"max_output_tokens,omitempty"`
	// ClampOutputTokens lowers a request's max tokens to MaxOutputTokens
	// instead of refusing the request.
	ClampOutputTokens bool `json:"clamp_output_tokens,omitempty"`

	Budgets []Budget `json:"budgets,omitempty"`

	AllowedModels    []string `json:"allowed_models,omitempty"`
	DeniedModels     []string `json:"denied_models,omitempty"`
	AllowedProviders []string `json:"allowed_providers,omitempty"`
	DeniedProviders  []string `json:"denied_providers,omitempty"`
	AllowedCIDRs     []string `json:"allowed_cidrs,omitempty"`

	Retention Retention `json:"retention,omitzero"`
	Privacy   Privacy   `json:"privacy,omitzero"`
}

// Period is the window a budget counts spend over.
type Period string

const (
	PeriodDay   Period = "day"
	PeriodMonth Period = "month"
	PeriodTotal Period = "total"
)

// Budget caps spend in micro-dollars over a period. Reaching the hard limit
// refuses requests; crossing the soft limit only notifies.
type Budget struct {
	Period          Period `json:"period"`
	HardLimitMicros *int64 `json:"hard_limit_micros,omitempty"`
	SoftLimitMicros *int64 `json:"soft_limit_micros,omitempty"`
}

// ContentRetention says how much of a request the gateway may keep.
type ContentRetention string

const (
	RetentionUnset    ContentRetention = ""
	RetentionNone     ContentRetention = "none"     // nothing about content is stored
	RetentionMetadata ContentRetention = "metadata" // usage records only
	RetentionFull     ContentRetention = "full"     // bodies kept, encrypted, for ContentDays
)

// Retention governs what is kept and for how long.
type Retention struct {
	Content     ContentRetention `json:"content,omitempty"`
	ContentDays int32            `json:"content_days,omitempty"`
	UsageDays   int32            `json:"usage_days,omitempty"`
}

// Privacy governs where requests may be sent and what providers may keep.
type Privacy struct {
	RequireNoTraining    bool `json:"require_no_training,omitempty"`
	RequireZeroRetention bool `json:"require_zero_retention,omitempty"`
	AllowProviderStorage bool `json:"allow_provider_storage,omitempty"`
	Redact               bool `json:"redact,omitempty"`
}

// Validate reports every setting that cannot be enforced, field by field.
func (s *Spec) Validate() error {
	var errs []error
	positive := func(name string, v *int64) {
		if v != nil && *v <= 0 {
			errs = append(errs, invalid.Field(name, "must be a positive number (omit it for no limit), got %d", *v))
		}
	}
	positive("requests_per_minute", s.RequestsPerMinute)
	positive("tokens_per_minute", s.TokensPerMinute)
	positive("concurrent_requests", s.ConcurrentRequests)
	positive("max_output_tokens", s.MaxOutputTokens)
	if s.ClampOutputTokens && s.MaxOutputTokens == nil {
		errs = append(errs, invalid.Field("clamp_output_tokens", "needs max_output_tokens to clamp to"))
	}

	seen := map[Period]bool{}
	for i, b := range s.Budgets {
		name := fmt.Sprintf("budgets[%d]", i)
		switch b.Period {
		case PeriodDay, PeriodMonth, PeriodTotal:
		default:
			errs = append(errs, invalid.Field(name+".period", "must be one of day, month, total; got %q", b.Period))
		}
		if seen[b.Period] {
			errs = append(errs, invalid.Field(name+".period", "a %s budget is already set; give each period once", b.Period))
		}
		seen[b.Period] = true
		if b.HardLimitMicros == nil && b.SoftLimitMicros == nil {
			errs = append(errs, invalid.Field(name, "set hard_limit_micros, soft_limit_micros or both"))
		}
		if b.HardLimitMicros != nil && *b.HardLimitMicros < 0 {
			errs = append(errs, invalid.Field(name+".hard_limit_micros", "must not be negative"))
		}
		if b.SoftLimitMicros != nil && *b.SoftLimitMicros < 0 {
			errs = append(errs, invalid.Field(name+".soft_limit_micros", "must not be negative"))
		}
		if b.HardLimitMicros != nil && b.SoftLimitMicros != nil && *b.SoftLimitMicros > *b.HardLimitMicros {
			errs = append(errs, invalid.Field(name+".soft_limit_micros", "must not exceed hard_limit_micros"))
		}
	}

	for i, c := range s.AllowedCIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			errs = append(errs, invalid.Field(fmt.Sprintf("allowed_cidrs[%d]", i), "must be a CIDR such as 10.0.0.0/8 or 2001:db8::/32, got %q", c))
		}
	}
	for _, l := range []struct {
		field string
		names []string
	}{
		{"allowed_models", s.AllowedModels}, {"denied_models", s.DeniedModels},
		{"allowed_providers", s.AllowedProviders}, {"denied_providers", s.DeniedProviders},
	} {
		for i, v := range l.names {
			if v == "" {
				errs = append(errs, invalid.Field(fmt.Sprintf("%s[%d]", l.field, i), "must not be empty"))
			}
		}
	}

	switch s.Retention.Content {
	case RetentionUnset, RetentionNone, RetentionMetadata, RetentionFull:
	default:
		errs = append(errs, invalid.Field("retention.content", "must be one of none, metadata, full; got %q", s.Retention.Content))
	}
	if s.Retention.ContentDays < 0 {
		errs = append(errs, invalid.Field("retention.content_days", "must not be negative"))
	}
	if s.Retention.ContentDays > 0 && s.Retention.Content != RetentionFull {
		errs = append(errs, invalid.Field("retention.content_days", "applies only with retention.content full"))
	}
	if s.Retention.Content == RetentionFull && s.Retention.ContentDays == 0 {
		errs = append(errs, invalid.Field("retention.content_days", "must be set when content is kept (retention.content full)"))
	}
	if s.Retention.UsageDays < 0 {
		errs = append(errs, invalid.Field("retention.usage_days", "must not be negative"))
	}
	return errors.Join(errs...)
}
