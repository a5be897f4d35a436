package extproc

import (
	"encoding/json"
	"strings"
	"testing"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
)

func TestPolicyChecksTheStricterOfTenantAndKey(t *testing.T) {
	five, fifty := int64(5), int64(50)
	for _, c := range []struct {
		name   string
		tenant *configv1.Policy
		key    *configv1.Policy
		client string // source.address
		body   string
		status int
		code   string
	}{
		{name: "no policy", client: "203.0.113.7:4000", body: chatBody, status: 0},
		{name: "address in the tenant's list", tenant: &configv1.Policy{AllowedCidrs: []string{"203.0.113.0/24"}}, client: "203.0.113.7:4000", body: chatBody},
		{name: "address outside the tenant's list", tenant: &configv1.Policy{AllowedCidrs: []string{"10.0.0.0/8"}}, client: "203.0.113.7:4000", status: 403, code: "ip_not_allowed"},
		{name: "tenant allows, key does not", tenant: &configv1.Policy{AllowedCidrs: []string{"0.0.0.0/0"}}, key: &configv1.Policy{AllowedCidrs: []string{"10.0.0.0/8"}}, client: "203.0.113.7:4000", status: 403, code: "ip_not_allowed"},
		{name: "IPv6 client", key: &configv1.Policy{AllowedCidrs: []string{"2001:db8::/32"}}, client: "[2001:db8::1]:443", body: chatBody},
		{name: "unknown address with a list fails closed", key: &configv1.Policy{AllowedCidrs: []string{"10.0.0.0/8"}}, client: "", status: 403, code: "ip_not_allowed"},
		{name: "max tokens within the key's limit", key: &configv1.Policy{MaxOutputTokens: &fifty}, body: strings.Replace(chatBody, `"model":"smart"`, `"model":"smart","max_tokens":50`, 1)},
		{name: "max tokens above the stricter limit", tenant: &configv1.Policy{MaxOutputTokens: &fifty}, key: &configv1.Policy{MaxOutputTokens: &five}, body: strings.Replace(chatBody, `"model":"smart"`, `"model":"smart","max_completion_tokens":6`, 1), status: 400, code: "max_tokens_exceeds_policy"},
		{name: "first deployment's provider denied", tenant: &configv1.Policy{DeniedProviders: []string{"anthropic"}}, body: chatBody, status: 403, code: "provider_not_allowed"},
		{name: "provider not in the key's allow list", key: &configv1.Policy{AllowedProviders: []string{"openai"}}, body: chatBody, status: 403, code: "provider_not_allowed"},
		{name: "provider in the allow list", key: &configv1.Policy{AllowedProviders: []string{"anthropic", "openai"}}, body: chatBody},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.cfg.tenants[tenantID].Policy = c.tenant
			for _, k := range f.cfg.keys {
				k.Policy = c.key
			}
			ds := f.open()
			first := reqHeaders(false, ":method", "POST", ":path", "/v1/chat/completions", "authorization", "Bearer "+f.key)
			first.Attributes = attrs("source.address", c.client)
			r := ds.exchange(t, first)
			if r.GetImmediateResponse() == nil {
				body := c.body
				if body == "" {
					body = chatBody
				}
				r = ds.exchange(t, reqBody(body))
			}
			if c.status == 0 {
				if ir := r.GetImmediateResponse(); ir != nil {
					t.Fatalf("refused: %s", ir.GetBody())
				}
				ds.close(t)
				return
			}
			status, body := immediateOf(t, r)
			if status != c.status || body["error"].(map[string]any)["code"] != c.code {
				t.Errorf("%d %v, want %d %s", status, body, c.status, c.code)
			}
			if err := <-ds.done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A fallback try to a provider the policy excludes is refused, not sent.
func TestFallbackToAnExcludedProviderIsNotSent(t *testing.T) {
	f := newFixture(t)
	for _, k := range f.cfg.keys {
		k.Policy = &configv1.Policy{DeniedProviders: []string{"openai"}}
	}
	ds, _, id := f.admit(t, chatBody)
	us := f.open()
	status, _ := immediateOf(t, us.exchange(t, upstreamHeaders(openaiD, ":path", "/v1/chat/completions", "x-request-id", id)))
	if status != 403 {
		t.Errorf("fallback to a denied provider: %d, want 403", status)
	}
	ds.close(t)
}

// With clamping, a request above the limit is admitted and each try sends
// the provider the policy's limit; without a limit set by the client, the
// policy's limit is sent too.
func TestMaxOutputTokensAreCappedInEveryTry(t *testing.T) {
	fifty := int64(50)
	for _, c := range []struct {
		name, body string
		clamp      bool
	}{
		{"above, clamped", strings.Replace(chatBody, `"model":"smart"`, `"model":"smart","max_tokens":500`, 1), true},
		{"unset", chatBody, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.cfg.tenants[tenantID].Policy = &configv1.Policy{MaxOutputTokens: &fifty, ClampOutputTokens: c.clamp}
			ds, r, id := f.admit(t, c.body)
			if r.GetImmediateResponse() != nil {
				t.Fatalf("refused: %s", r.GetImmediateResponse().GetBody())
			}
			us := f.open()
			_, _, common := mutations(us.exchange(t, upstreamHeaders(anthropicD, ":path", "/v1/chat/completions", "x-request-id", id)))
			var sent struct {
				MaxTokens int64 `json:"max_tokens"`
			}
			if err := json.Unmarshal(common.GetBodyMutation().GetBody(), &sent); err != nil || sent.MaxTokens != 50 {
				t.Errorf("the provider is asked for %d output tokens (%v), want the policy's 50", sent.MaxTokens, err)
			}
			us.close(t)
			ds.close(t)
		})
	}
}
