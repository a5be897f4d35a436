package extproc

import (
	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
)

// Content capture (docs/privacy.md). Only a request whose effective
// retention is full has its bodies captured: the request body as the tries
// send it (redacted when the policy redacts), which the request holds anyway
// for its tries, and the response
// body as the client received it, copied chunk by chunk up to the capture
// limit. They travel with the usage record to the control plane, which
// checks the policy again and stores them sealed with the tenant's data key.
// Nothing else in ext_proc (logs, errors, traces) ever holds a body.

// DefaultContentCaptureBytes is the default limit on each captured body.
const DefaultContentCaptureBytes = 64 << 10

// MaxContentCaptureBytes is the most a body may be captured up to: the
// control plane stores at most this much of each (contentlog.MaxBodyBytes).
const MaxContentCaptureBytes = 1 << 20

// keepsContent reports whether the tenant's and key's policies both keep
// content: the tenant's must say full, and the key's, which may only be
// stricter, full or nothing.
func keepsContent(tenant *configv1.Tenant, key *configv1.Key) bool {
	if tenant.GetPolicy().GetContentRetention() != configv1.ContentRetention_CONTENT_RETENTION_FULL {
		return false
	}
	switch key.GetPolicy().GetContentRetention() {
	case configv1.ContentRetention_CONTENT_RETENTION_UNSPECIFIED, configv1.ContentRetention_CONTENT_RETENTION_FULL:
		return true
	}
	return false
}

// captureResponse appends what the client receives to the try's captured
// response, up to limit bytes. r.mu is held.
func (t *try) captureResponse(b []byte, limit int) {
	room := limit - len(t.response)
	if len(b) > room {
		b, t.responseCut = b[:max(room, 0)], true
	}
	t.response = append(t.response, b...)
}

// content is what the usage record of a request that keeps content carries.
func (r *request) content(t try, limit int) *usagev1.Content {
	req := r.body
	c := &usagev1.Content{Truncated: t.responseCut}
	if len(req) > limit {
		req, c.Truncated = req[:limit], true
	}
	c.RequestBody = req
	c.ResponseBody = t.response
	return c
}
