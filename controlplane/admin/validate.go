package admin

import (
	"net/mail"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tollgate-dev/tollgate/controlplane/invalid"
)

var (
	slugPattern = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
	namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

func checkSlug(field, v string) error {
	if !slugPattern.MatchString(v) {
		return invalid.Field(field, "must be 1-63 lower-case letters, digits or hyphens, start with a letter and not end with a hyphen; got %q", v)
	}
	return nil
}

func checkName(field, v string) error {
	if !namePattern.MatchString(v) {
		return invalid.Field(field, "must be 1-63 lower-case letters, digits or hyphens, not starting or ending with a hyphen; got %q", v)
	}
	return nil
}

func checkText(field, v string, maxLen int, required bool) error {
	switch {
	case required && strings.TrimSpace(v) == "":
		return invalid.Field(field, "is required")
	case len(v) > maxLen:
		return invalid.Field(field, "must be at most %d bytes, got %d", maxLen, len(v))
	case strings.ContainsAny(v, "\x00\r\n"):
		return invalid.Field(field, "must be one line of text")
	}
	return nil
}

// normalizeEmail lower-cases an address so that uniqueness does not depend on
// case. Empty is allowed when !required.
func normalizeEmail(field, v string, required bool) (string, error) {
	if v == "" {
		if required {
			return "", invalid.Field(field, "is required")
		}
		return "", nil
	}
	a, err := mail.ParseAddress(v)
	if err != nil || a.Address != v || len(v) > 320 {
		return "", invalid.Field(field, "must be a plain e-mail address such as ops@example.com, got %q", v)
	}
	return strings.ToLower(v), nil
}

// futureTime converts an optional timestamp that must lie in the future.
func futureTime(field string, ts *timestamppb.Timestamp, now time.Time) (*time.Time, error) {
	if ts == nil {
		return nil, nil
	}
	if err := ts.CheckValid(); err != nil {
		return nil, invalid.Field(field, "is not a valid timestamp")
	}
	t := ts.AsTime().UTC()
	if !t.After(now) {
		return nil, invalid.Field(field, "must be in the future, got %s", t.Format(time.RFC3339))
	}
	return &t, nil
}

// maskPaths checks an update mask against the paths a method supports and
// returns them without duplicates. An empty mask is an error: an update that
// names no field is almost always a client bug.
func maskPaths(mask *fieldmaskpb.FieldMask, allowed ...string) ([]string, error) {
	if mask == nil || len(mask.GetPaths()) == 0 {
		return nil, invalid.Field("update_mask", "must name the fields to change, from: %s", strings.Join(allowed, ", "))
	}
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range mask.GetPaths() {
		if !ok[p] {
			return nil, invalid.Field("update_mask", "cannot change %q; allowed: %s", p, strings.Join(allowed, ", "))
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func tsp(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timestamppb.New(*t)
}

// timeValue distinguishes "clear the time" (t == nil) from "not given".
type timeValue struct{ t *time.Time }
