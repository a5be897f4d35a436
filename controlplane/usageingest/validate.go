package usageingest

import (
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/invalid"
	"github.com/tollgate-dev/tollgate/controlplane/rollup"
)

// maxTextBytes bounds the free-text fields (model, provider, upstream model,
// error type). Names that long are a bug on the sender's side, and an
// unbounded string would let one record bloat the table.
const maxTextBytes = 255

// earliest is the oldest arrival time a record may carry. A zero or
// Unix-epoch timestamp means the sender forgot to set it, and would put the
// request in a billing period that closed decades ago.
var earliest = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// row is a validated record in the form the store takes.
type row struct {
	requestID  string
	tenantID   uuid.UUID
	keyID      *uuid.UUID
	time       time.Time
	rec        *usagev1.UsageRecord
	batchIndex int
}

// Validate checks one record and returns every problem with it, field by
// field. Anything that could make the database refuse the row (bad UTF-8,
// NUL bytes, negative counts) is caught here: a row the database refuses
// would fail its whole batch, again on every resend.
func Validate(r *usagev1.UsageRecord) error {
	_, err := validate(r)
	return err
}

func validate(r *usagev1.UsageRecord) (row, error) {
	var (
		out  = row{rec: r}
		errs []error
		err  error
	)
	if r == nil {
		return out, invalid.Field("record", "is empty")
	}
	out.requestID, err = canonicalUUID("request_id", r.GetRequestId())
	errs = append(errs, err)
	tenantID, err := canonicalUUID("tenant_id", r.GetTenantId())
	errs = append(errs, err)
	out.tenantID, _ = uuid.Parse(tenantID)
	if r.GetKeyId() != "" {
		keyID, err := canonicalUUID("key_id", r.GetKeyId())
		errs = append(errs, err)
		if id, perr := uuid.Parse(keyID); perr == nil && err == nil {
			out.keyID = &id
			if id == rollup.AllKeys {
				errs = append(errs, invalid.Field("key_id", "%s is reserved (rollups' every-key rows) and never a key's id", id))
			}
		}
	}
	for _, f := range []struct{ name, v string }{
		{"model", r.GetModel()},
		{"provider", r.GetProvider()},
		{"upstream_model", r.GetUpstreamModel()},
		{"error_type", r.GetErrorType()},
	} {
		errs = append(errs, checkText(f.name, f.v))
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"input_tokens", r.GetInputTokens()},
		{"output_tokens", r.GetOutputTokens()},
		{"cached_input_tokens", r.GetCachedInputTokens()},
		{"reasoning_tokens", r.GetReasoningTokens()},
		{"cost_micros", r.GetCostMicros()},
		{"latency_ms", r.GetLatencyMs()},
		{"ttft_ms", r.GetTtftMs()},
	} {
		if f.v < 0 {
			errs = append(errs, invalid.Field(f.name, "must not be negative, got %d", f.v))
		}
	}
	if c := r.GetStatusCode(); c != 0 && (c < 100 || c > 599) {
		errs = append(errs, invalid.Field("status_code", "must be an HTTP status (100-599) or 0 for none, got %d", c))
	}
	switch ts := r.GetTime(); {
	case ts == nil:
		errs = append(errs, invalid.Field("time", "is required: when the request arrived"))
	case ts.CheckValid() != nil:
		errs = append(errs, invalid.Field("time", "is not a valid timestamp"))
	case ts.AsTime().Before(earliest):
		errs = append(errs, invalid.Field("time", "must be after %s, got %s", earliest.Format(time.RFC3339), ts.AsTime().Format(time.RFC3339Nano)))
	default:
		// PostgreSQL keeps microseconds and rounds the rest, SQLite keeps
		// nanoseconds: truncating here makes every dialect store (and put in
		// a day) the same instant.
		out.time = ts.AsTime().UTC().Truncate(time.Microsecond)
	}
	return out, errors.Join(errs...)
}

// canonicalUUID accepts a UUID in its canonical 36-character form, in either
// case, and returns it in lower case, so that one request id cannot be
// stored twice under two spellings.
func canonicalUUID(field, v string) (string, error) {
	if v == "" {
		return "", invalid.Field(field, "is required")
	}
	id, err := uuid.Parse(v)
	if err != nil || len(v) != 36 {
		return "", invalid.Field(field, "must be a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), got %q", clip(v))
	}
	return id.String(), nil
}

func checkText(field, v string) error {
	switch {
	case len(v) > maxTextBytes:
		return invalid.Field(field, "must be at most %d bytes, got %d", maxTextBytes, len(v))
	case !utf8.ValidString(v):
		return invalid.Field(field, "must be valid UTF-8")
	case strings.ContainsRune(v, 0):
		return invalid.Field(field, "must not contain NUL bytes")
	}
	return nil
}

// clip shortens a bad value for a message, so that a huge field does not
// make a huge log line.
func clip(v string) string {
	const n = 64
	if len(v) > n {
		v = v[:n] + "…"
	}
	// Messages travel in protobuf strings, which must be valid UTF-8.
	return strings.ToValidUTF8(v, "\uFFFD")
}

// reason renders a validation error as one line for RejectedRecord.reason.
func reason(err error) string {
	fields := invalid.Fields(err)
	if len(fields) == 0 {
		return err.Error()
	}
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = f.Error()
	}
	return strings.Join(parts, "; ")
}
