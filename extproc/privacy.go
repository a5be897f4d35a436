package extproc

import (
	"fmt"
	"net/http"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/extproc/redact"
	"github.com/tollgate-dev/tollgate/extproc/translate"
)

// requirement is what a request's privacy policy demands of the provider
// that serves it. The tenant's policy and the key's both apply: a key can
// add a requirement, never remove its tenant's.
type requirement struct {
	noTraining    bool
	zeroRetention bool
}

func privacyRequirement(tenant *configv1.Tenant, key *configv1.Key) requirement {
	t, k := tenant.GetPolicy(), key.GetPolicy()
	return requirement{
		noTraining:    t.GetRequireNoTraining() || k.GetRequireNoTraining(),
		zeroRetention: t.GetRequireZeroRetention() || k.GetRequireZeroRetention(),
	}
}

func (q requirement) any() bool { return q.noTraining || q.zeroRetention }

// meets says whether d gives every guarantee q asks for.
func (q requirement) meets(d *configv1.Deployment) bool {
	return (!q.noTraining || d.GetNoTraining()) && (!q.zeroRetention || d.GetZeroRetention())
}

// what names the guarantees q asks for, for error messages.
func (q requirement) what() string {
	switch {
	case q.noTraining && q.zeroRetention:
		return "not to train on your requests and to keep none of them"
	case q.noTraining:
		return "not to train on your requests"
	}
	return "to keep none of your requests (zero data retention)"
}

// privacyRoute picks the deployments a request may use under q, in the
// model's order, and the route that lets Envoy choose only among them. A
// model none of whose deployments meets q is refused: the request is never
// sent elsewhere.
func privacyRoute(m *configv1.Model, q requirement) ([]*configv1.Deployment, string, *translate.Error) {
	all := m.GetDeployments()
	if !q.any() {
		return all, m.GetRoute(), nil
	}
	var ok []*configv1.Deployment
	for _, d := range all {
		if q.meets(d) {
			ok = append(ok, d)
		}
	}
	switch len(ok) {
	case 0:
		return nil, "", &translate.Error{Status: http.StatusForbidden, Type: "permission_error", Code: "no_permitted_deployment", Param: "model",
			Message: fmt.Sprintf("Your organization's policy requires providers that guarantee %s, and no provider of the model `%s` does; the request was not sent. Use a model whose provider gives that guarantee, or ask your administrator.", q.what(), m.GetName())}
	case len(all):
		return all, m.GetRoute(), nil
	}
	for _, pr := range m.GetPrivacyRoutes() {
		if pr.GetNoTraining() == q.noTraining && pr.GetZeroRetention() == q.zeroRetention {
			return ok, pr.GetRoute(), nil
		}
	}
	// The control plane lists a route for every such subset; a model
	// without one is from a control plane that predates them, or mid-change.
	// Sending the request to the whole model could reach a provider the
	// policy excludes, so it is refused.
	return nil, "", &translate.Error{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "no_privacy_route",
		Message: fmt.Sprintf("Tollgate has no route yet to the providers of `%s` that your organization's policy permits; retry in a moment.", m.GetName())}
}

// tryAllowed re-checks, per try, the deployment Envoy picked: the route
// holds only permitted deployments, but configuration may change between
// the route's choice and a try.
func tryAllowed(r *request, d *configv1.Deployment, p *configv1.Provider) *translate.Error {
	if r.requirement.meets(d) {
		return nil
	}
	return &translate.Error{Status: http.StatusForbidden, Type: "permission_error", Code: "no_permitted_deployment",
		Message: fmt.Sprintf("The request would go to the provider %q, which does not guarantee %s as your organization's policy requires; it was not sent.", p.GetName(), r.requirement.what())}
}

// promptFields are where each client API keeps prompt text.
var promptFields = map[translate.ClientAPI]redact.Fields{
	translate.OpenAIChat:        redact.OpenAIChat,
	translate.OpenAIResponses:   redact.OpenAIResponses,
	translate.OpenAIEmbeddings:  redact.OpenAIEmbeddings,
	translate.AnthropicMessages: redact.AnthropicMessages,
}

// redacts says whether the request's prompt is redacted: the tenant's
// policy or the key's may ask for it.
func redacts(tenant *configv1.Tenant, key *configv1.Key) bool {
	return tenant.GetPolicy().GetRedact() || key.GetPolicy().GetRedact()
}

// redactBody replaces personal data and secrets in the prompt text of
// body before any translation, so that every try sends the redacted text.
func redactBody(api translate.ClientAPI, body []byte) ([]byte, *usagev1.Redactions, *translate.Error) {
	out, c, err := redact.Body(body, promptFields[api])
	if err != nil {
		return nil, nil, &translate.Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: translate.CodeInvalidJSON,
			Message: "We could not parse the JSON body of your request: " + err.Error()}
	}
	return out, &usagev1.Redactions{
		Emails:  int32(c[redact.Email]),
		Phones:  int32(c[redact.Phone]),
		Cards:   int32(c[redact.Card]),
		Ibans:   int32(c[redact.IBAN]),
		Secrets: int32(c[redact.Secret]),
	}, nil
}
