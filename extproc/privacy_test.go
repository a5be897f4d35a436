package extproc

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
)

// privacyFixture declares guarantees on the fixture's model "smart":
// Anthropic (tried first) gives none, OpenAI does not train and keeps
// nothing. The control plane lists the route to OpenAI alone for both
// requirements.
func privacyFixture(t *testing.T) *fixture {
	f := newFixture(t)
	m := f.cfg.models[0]
	m.Deployments[1].NoTraining, m.Deployments[1].ZeroRetention = true, true
	m.PrivacyRoutes = []*configv1.PrivacyRoute{
		{NoTraining: true, Route: "model-m1.no-training"},
		{ZeroRetention: true, Route: "model-m1.no-training"},
		{NoTraining: true, ZeroRetention: true, Route: "model-m1.no-training"},
	}
	return f
}

func TestPrivacyRequirementsChooseTheRoute(t *testing.T) {
	for _, c := range []struct {
		name        string
		tenant, key *configv1.Policy
		noDeploy    bool // no deployment of the model gives the guarantee
		route       string
		code        string // refusal code when route is ""
		message     string // part of the refusal's message
	}{
		{name: "no requirement: the whole model", route: "model-m1"},
		{name: "the tenant requires no training", tenant: &configv1.Policy{RequireNoTraining: true}, route: "model-m1.no-training"},
		{name: "the key requires zero retention", key: &configv1.Policy{RequireZeroRetention: true}, route: "model-m1.no-training"},
		{name: "the tenant and the key each require one", tenant: &configv1.Policy{RequireNoTraining: true}, key: &configv1.Policy{RequireZeroRetention: true}, route: "model-m1.no-training"},
		{name: "no deployment does not train", tenant: &configv1.Policy{RequireNoTraining: true}, noDeploy: true,
			code: "no_permitted_deployment", message: "not to train on your requests"},
		{name: "no deployment keeps nothing", key: &configv1.Policy{RequireZeroRetention: true}, noDeploy: true,
			code: "no_permitted_deployment", message: "zero data retention"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := privacyFixture(t)
			if c.noDeploy {
				f.cfg.models[0].Deployments[1].NoTraining, f.cfg.models[0].Deployments[1].ZeroRetention = false, false
				f.cfg.models[0].PrivacyRoutes = nil
			}
			f.cfg.tenants[tenantID].Policy = c.tenant
			for _, k := range f.cfg.keys {
				k.Policy = c.key
			}
			ds, r, _ := f.admit(t, chatBody)
			if c.route == "" {
				status, body := immediateOf(t, r)
				e := body["error"].(map[string]any)
				if status != 403 || e["code"] != c.code || e["type"] != "permission_error" || !strings.Contains(e["message"].(string), c.message) {
					t.Errorf("%d %v, want 403 %s mentioning %q", status, body, c.code, c.message)
				}
				if err := <-ds.done; err != nil {
					t.Fatal(err)
				}
				if recs := f.usage.records(); len(recs) != 1 || recs[0].GetStatusCode() != 403 || recs[0].GetProvider() != "" {
					t.Errorf("usage records %v, want one refusal that reached no provider", recs)
				}
				return
			}
			if ir := r.GetImmediateResponse(); ir != nil {
				t.Fatalf("refused: %s", ir.GetBody())
			}
			set, _, _ := mutations(r)
			if got := set[xdstranslate.RouteHeader]; got != c.route {
				t.Errorf("route %q, want %q", got, c.route)
			}
			ds.close(t)
		})
	}
}

// The request is checked (and translated) for the first deployment it may
// use, not the model's first: an Anthropic-only field would otherwise be
// judged by the wrong provider.
func TestPrivacyRouteTranslatesForTheFirstPermittedDeployment(t *testing.T) {
	f := privacyFixture(t)
	f.cfg.tenants[tenantID].Policy = &configv1.Policy{RequireNoTraining: true}
	// n > 1 cannot be translated for Anthropic; OpenAI takes it.
	ds, r, id := f.admit(t, `{"model":"smart","n":2,"messages":[{"role":"user","content":"hi"}]}`)
	if ir := r.GetImmediateResponse(); ir != nil {
		t.Fatalf("refused: %s", ir.GetBody())
	}
	us := f.open()
	_, _, common := mutations(us.exchange(t, upstreamHeaders(openaiD, ":path", "/v1/chat/completions", "x-request-id", id)))
	var sent map[string]any
	if err := json.Unmarshal(common.GetBodyMutation().GetBody(), &sent); err != nil || sent["model"] != "gpt-4o" {
		t.Errorf("the try sent %s (%v), want the OpenAI request", common.GetBodyMutation().GetBody(), err)
	}
	us.close(t)
	ds.close(t)
}

// A try at a deployment the requirement excludes (configuration changed
// under the request) is refused, never sent.
func TestTryAtADeploymentWithoutTheGuaranteeIsNotSent(t *testing.T) {
	f := privacyFixture(t)
	f.cfg.tenants[tenantID].Policy = &configv1.Policy{RequireZeroRetention: true}
	ds, _, id := f.admit(t, chatBody)
	us := f.open()
	status, body := immediateOf(t, us.exchange(t, upstreamHeaders(anthropicD, ":path", "/v1/chat/completions", "x-request-id", id)))
	if e := body["error"].(map[string]any); status != 403 || e["code"] != "no_permitted_deployment" {
		t.Errorf("try at a deployment without zero retention: %d %v, want 403 no_permitted_deployment", status, body)
	}
	if err := <-us.done; err != nil {
		t.Fatal(err)
	}
	ds.close(t)
}

// A model whose permitted deployments have no route in the configuration
// (an older control plane) is refused rather than sent to every deployment.
func TestMissingPrivacyRouteIsRefusedNotWidened(t *testing.T) {
	f := privacyFixture(t)
	f.cfg.models[0].PrivacyRoutes = nil
	f.cfg.tenants[tenantID].Policy = &configv1.Policy{RequireNoTraining: true}
	ds, r, _ := f.admit(t, chatBody)
	if status, _ := immediateOf(t, r); status != 503 {
		t.Errorf("status %d, want 503", status)
	}
	if err := <-ds.done; err != nil {
		t.Fatal(err)
	}
}

// With redaction on, every try sends the redacted prompt and the usage
// record counts what was replaced; without it, the prompt goes as sent.
func TestRedactionReachesEveryTryAndTheUsageRecord(t *testing.T) {
	const body = `{"model":"smart","messages":[{"role":"user","content":"I am ada@example.com, card 4111 1111 1111 1111, call +49 30 1234567"}]}`
	for _, on := range []bool{true, false} {
		f := newFixture(t)
		f.cfg.tenants[tenantID].Policy = &configv1.Policy{Redact: on}
		ds, r, id := f.admit(t, body)
		if ir := r.GetImmediateResponse(); ir != nil {
			t.Fatalf("refused: %s", ir.GetBody())
		}
		for _, dep := range []string{anthropicD, openaiD} {
			us := f.open()
			_, _, common := mutations(us.exchange(t, upstreamHeaders(dep, ":path", "/v1/chat/completions", "x-request-id", id)))
			sent := string(common.GetBodyMutation().GetBody())
			redacted := strings.Contains(sent, "[EMAIL]") && strings.Contains(sent, "[CARD]") && strings.Contains(sent, "[PHONE]")
			leaked := strings.Contains(sent, "ada@example.com") || strings.Contains(sent, "4111") || strings.Contains(sent, "1234567")
			if on && (!redacted || leaked) || !on && (redacted || !leaked) {
				t.Errorf("redact=%v, try at %s sent %s", on, dep, sent)
			}
			us.close(t)
		}
		ds.close(t)
		rec := f.usage.records()[0]
		red := rec.GetRedactions()
		if on && (red.GetEmails() != 1 || red.GetCards() != 1 || red.GetPhones() != 1 || red.GetIbans() != 0 || red.GetSecrets() != 0) {
			t.Errorf("redactions on the usage record = %v", red)
		}
		if !on && red != nil {
			t.Errorf("redactions recorded with redaction off: %v", red)
		}
	}
}

// GET /v1/models leaves out a model no deployment of which the key's
// requirements permit.
func TestModelListLeavesOutModelsNoPermittedDeploymentServes(t *testing.T) {
	for _, c := range []struct {
		name   string
		policy *configv1.Policy
		listed bool
	}{
		{"no requirement", nil, true},
		{"a requirement one deployment meets", &configv1.Policy{RequireNoTraining: true}, true},
		{"a requirement none meets", &configv1.Policy{RequireZeroRetention: true}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := privacyFixture(t)
			f.cfg.models[0].Deployments[1].ZeroRetention = false
			for _, k := range f.cfg.keys {
				k.Policy = c.policy
			}
			ds := f.open()
			status, body := immediateOf(t, ds.exchange(t, reqHeaders(true, ":method", "GET", ":path", "/v1/models", "authorization", "Bearer "+f.key)))
			listed := strings.Contains(fmt.Sprint(body), "smart")
			if status != 200 || listed != c.listed {
				t.Errorf("%d %v: smart listed %v, want %v", status, body, listed, c.listed)
			}
			if err := <-ds.done; err != nil {
				t.Fatal(err)
			}
		})
	}
}
