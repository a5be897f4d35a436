package extproc

import (
	"net/url"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	"github.com/tollgate-dev/tollgate/extproc/translate"
)

var providerKinds = map[configv1.ProviderKind]translate.ProviderKind{
	configv1.ProviderKind_PROVIDER_KIND_OPENAI:            translate.KindOpenAI,
	configv1.ProviderKind_PROVIDER_KIND_ANTHROPIC:         translate.KindAnthropic,
	configv1.ProviderKind_PROVIDER_KIND_GEMINI:            translate.KindGemini,
	configv1.ProviderKind_PROVIDER_KIND_AZURE_OPENAI:      translate.KindAzureOpenAI,
	configv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE: translate.KindOpenAICompatible,
}

// target describes where a try of r goes, for the translator.
func target(r *request, d *configv1.Deployment, p *configv1.Provider) translate.Target {
	t := translate.Target{
		Kind:            providerKinds[p.GetKind()],
		UpstreamModel:   d.GetUpstreamModel(),
		ForceNoStore:    r.noStore,
		MaxOutputTokens: r.outputCap,
	}
	if p.GetKind() == configv1.ProviderKind_PROVIDER_KIND_AZURE_OPENAI {
		t.APIVersion = p.GetApiVersion()
	}
	// The admin API accepts only absolute URLs, so a parse error cannot
	// happen for configuration it stored; the path then stays empty.
	if u, err := url.Parse(p.GetBaseUrl()); err == nil {
		t.BasePath = u.Path
	}
	return t
}

// deployment finds a model's deployment by id.
func deployment(m *configv1.Model, id string) *configv1.Deployment {
	for _, d := range m.GetDeployments() {
		if d.GetDeploymentId() == id {
			return d
		}
	}
	return nil
}

// allowsProviderStorage: providers may keep requests (OpenAI's store=true)
// only when the tenant's policy allows it; a key can only be stricter, and
// has no way to allow what its tenant forbids.
func allowsProviderStorage(t *configv1.Tenant) bool {
	return t.GetPolicy().GetAllowProviderStorage()
}
