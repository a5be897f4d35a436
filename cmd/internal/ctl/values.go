package ctl

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const microsPerDollar = 1_000_000

// parseMicros reads an amount of money as integer micro-dollars. A plain
// integer is already micro-dollars ("2500000"); a "$" or a decimal point
// makes it dollars ("$2.50", "2.50", "0.000001"), converted digit by digit so
// no float rounding can change a price. More than six decimals would be a
// fraction of a micro-dollar, which the API cannot store, so it is refused
// rather than rounded.
func parseMicros(s string) (int64, error) {
	in := s
	dollars := strings.HasPrefix(s, "$")
	s = strings.TrimPrefix(s, "$")
	whole, frac, hasPoint := strings.Cut(s, ".")
	dollars = dollars || hasPoint
	if strings.HasPrefix(in, ".") {
		// An unquoted $2.50 reaches us as ".50" because the shell expands $2.
		return 0, fmt.Errorf("invalid amount %q: quote dollar amounts, e.g. '$2.50', or the shell expands $2", in)
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("invalid amount %q: must not be negative", in)
	}
	if whole == "" || !allDigits(whole) || (hasPoint && (frac == "" || !allDigits(frac))) {
		return 0, fmt.Errorf("invalid amount %q: want micro-dollars (2500000) or dollars ($2.50)", in)
	}
	if len(frac) > 6 {
		return 0, fmt.Errorf("invalid amount %q: at most 6 decimals (one micro-dollar)", in)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid amount %q: too large", in)
	}
	if !dollars {
		return w, nil
	}
	var f int64
	if frac != "" {
		f, _ = strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
	}
	if w > (math.MaxInt64-f)/microsPerDollar {
		return 0, fmt.Errorf("invalid amount %q: too large", in)
	}
	return w*microsPerDollar + f, nil
}

// allDigits is true for ASCII digits only; strconv alone would also take a
// sign, and negative prices and limits make no sense.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// formatMicros prints micro-dollars as dollars with at least two decimals and
// no trailing zeros beyond them: 2500000 is "$2.50", 1 is "$0.000001".
func formatMicros(m int64) string {
	sign := ""
	if m < 0 {
		sign, m = "-", -m
	}
	frac := fmt.Sprintf("%06d", m%microsPerDollar)
	frac = strings.TrimRight(frac, "0")
	for len(frac) < 2 {
		frac += "0"
	}
	return fmt.Sprintf("%s$%d.%s", sign, m/microsPerDollar, frac)
}

// parseTime reads an absolute time (RFC 3339) or a duration counted from now,
// forwards for an expiry and backwards for --since. Durations take Go's units
// plus "d" for days, since expiries are usually counted in days.
func parseTime(s string, now time.Time, forward bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := parseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid time %q: want RFC 3339 (2026-01-31T00:00:00Z) or a duration (720h, 30d)", s)
	}
	if forward {
		return now.Add(d), nil
	}
	return now.Add(-d), nil
}

func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok && allDigits(days) && days != "" {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n > math.MaxInt64/int64(24*time.Hour) {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return d, nil
}

// expiry reads an --expires value; "never" clears the expiry on update.
func expiry(flag, s string, now time.Time) (*timestamppb.Timestamp, error) {
	if s == "never" {
		return nil, nil
	}
	t, err := parseTime(s, now, true)
	if err != nil {
		return nil, usagef("--%s: %v", flag, err)
	}
	if !t.After(now) {
		return nil, usagef("--%s: %s is in the past", flag, t.UTC().Format(time.RFC3339))
	}
	return timestamppb.New(t), nil
}

// parseEnum maps a flag's value to an enum constant. Hyphens and underscores
// are interchangeable so azure-openai works as well as azure_openai.
func parseEnum[T any](flag, value string, names map[string]T) (T, error) {
	if v, ok := names[strings.ReplaceAll(strings.ToLower(value), "-", "_")]; ok {
		return v, nil
	}
	var zero T
	choices := make([]string, 0, len(names))
	for n := range names {
		choices = append(choices, n)
	}
	slices.Sort(choices)
	return zero, usagef("--%s: unknown value %q: use one of %s", flag, value, strings.Join(choices, ", "))
}

// flagPath ties a flag to the FieldMask path it changes.
type flagPath struct{ flag, path string }

// changedPaths is the update mask for the flags given on the command line, in
// the order of paths. Only flags the user typed are sent: an unset flag's
// zero value must not overwrite a stored setting.
func changedPaths(flags *pflag.FlagSet, paths []flagPath) []string {
	var out []string
	for _, p := range paths {
		if flags.Changed(p.flag) && !slices.Contains(out, p.path) {
			out = append(out, p.path)
		}
	}
	return out
}

// updateMask builds the mask for an update verb and refuses an empty one: the
// API reads an empty mask as "replace everything", which is never what a
// command with no flags meant.
func updateMask(flags *pflag.FlagSet, paths []flagPath) (*fieldmaskpb.FieldMask, error) {
	got := changedPaths(flags, paths)
	if len(got) == 0 {
		names := make([]string, 0, len(paths))
		for _, p := range paths {
			if n := "--" + p.flag; !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		return nil, usagef("nothing to change: give at least one of %s", strings.Join(names, ", "))
	}
	return &fieldmaskpb.FieldMask{Paths: got}, nil
}

// nonNegative checks an integer flag that was given.
func nonNegative[T ~int32 | ~int64](flags *pflag.FlagSet, name string, v T) error {
	if flags.Changed(name) && v < 0 {
		return usagef("--%s must not be negative", name)
	}
	return nil
}

// isUUID tells an id from a slug where the API accepts either but a message
// field takes only one of them.
func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

// optionalInt is an integer flag that also accepts "none", which clears the
// setting (back to inherited or unlimited) when its path is in the mask.
type optionalInt struct {
	value *int64
}

func (o *optionalInt) String() string {
	if o.value == nil {
		return ""
	}
	return strconv.FormatInt(*o.value, 10)
}

func (o *optionalInt) Set(s string) error {
	if s == "none" {
		o.value = nil
		return nil
	}
	if !allDigits(s) || s == "" {
		return fmt.Errorf("want a non-negative integer or none")
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("want a non-negative integer or none")
	}
	o.value = &v
	return nil
}

func (o *optionalInt) Type() string { return "N|none" }

// limitFlag adds --limit to a list verb.
func limitFlag(flags *pflag.FlagSet, limit *int) {
	flags.IntVar(limit, "limit", 0, "stop after this many items (0 means all)")
}

// cleanList trims the spaces around comma-separated values ("a, b") and drops
// empty ones, so `--allow-models ""` is an empty list rather than [""].
func cleanList(in []string) []string {
	out := []string{}
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
