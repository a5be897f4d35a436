package extproc

import (
	"bytes"
	"testing"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
)

// runChat sends chatBody through the fixture to the Anthropic deployment and
// returns the request's usage record.
func runChat(t *testing.T, f *fixture) (clientBody []byte, recBody, recResp []byte, truncated, hasContent bool) {
	t.Helper()
	ds, _, id := f.admit(t, chatBody)
	us := f.open()
	us.exchange(t, upstreamHeaders(anthropicD, ":method", "POST", ":path", "/v1/chat/completions", "x-request-id", id))
	us.exchange(t, respHeaders(false, ":status", "200", "content-type", "application/json"))
	half := len(anthropicAnswer) / 2
	for i, part := range []string{anthropicAnswer[:half], anthropicAnswer[half:]} {
		_, _, c := mutations(us.exchange(t, respBody(part, i == 1)))
		clientBody = append(clientBody, c.GetBodyMutation().GetBody()...)
	}
	us.close(t)
	ds.close(t)
	recs := f.usage.records()
	if len(recs) != 1 {
		t.Fatalf("%d usage records, want 1", len(recs))
	}
	c := recs[0].GetContent()
	return clientBody, c.GetRequestBody(), c.GetResponseBody(), c.GetTruncated(), c != nil
}

func withRetention(f *fixture, tenant, key configv1.ContentRetention) {
	f.cfg.tenants[tenantID].Policy = &configv1.Policy{ContentRetention: tenant, ContentRetentionDays: 7}
	for _, k := range f.cfg.keys {
		k.Policy = &configv1.Policy{ContentRetention: key}
	}
}

func TestContentIsCapturedOnlyWhenThePolicyKeepsIt(t *testing.T) {
	const (
		none     = configv1.ContentRetention_CONTENT_RETENTION_NONE
		metadata = configv1.ContentRetention_CONTENT_RETENTION_METADATA
		full     = configv1.ContentRetention_CONTENT_RETENTION_FULL
		unset    = configv1.ContentRetention_CONTENT_RETENTION_UNSPECIFIED
	)
	for _, tt := range []struct {
		name        string
		tenant, key configv1.ContentRetention
		want        bool
	}{
		{"default", unset, unset, false},
		{"tenant none", none, unset, false},
		{"tenant metadata", metadata, unset, false},
		{"tenant full", full, unset, true},
		{"key full under a tenant that keeps nothing", unset, full, false},
		{"key stricter than its tenant", full, metadata, false},
		{"both full", full, full, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			withRetention(f, tt.tenant, tt.key)
			client, req, resp, _, has := runChat(t, f)
			if has != tt.want {
				t.Fatalf("content on the record: %v, want %v", has, tt.want)
			}
			if !has {
				return
			}
			if !bytes.Equal(req, []byte(chatBody)) {
				t.Errorf("captured request = %s, want the client's body", req)
			}
			if !bytes.Equal(resp, client) {
				t.Errorf("captured response = %s, want what the client received: %s", resp, client)
			}
		})
	}
}

func TestCapturedContentIsCutAtTheLimit(t *testing.T) {
	f := newFixture(t)
	f.server.contentLimit = 16
	withRetention(f, configv1.ContentRetention_CONTENT_RETENTION_FULL, configv1.ContentRetention_CONTENT_RETENTION_UNSPECIFIED)
	_, req, resp, truncated, has := runChat(t, f)
	if !has || len(req) != 16 || len(resp) != 16 || !truncated {
		t.Errorf("captured %d and %d bytes, truncated %v; want 16 each, truncated", len(req), len(resp), truncated)
	}
}
