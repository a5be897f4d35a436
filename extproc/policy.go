package extproc

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	"github.com/tollgate-dev/tollgate/extproc/translate"
)

// The policy checks that need no counters. A request must pass the
// tenant's policy and its key's: the stricter one wins.

// addressAllowed applies the IP allow lists to the client's address as
// Envoy reports it (with use_remote_address and the configured number of
// trusted hops, the address Envoy believes is the client's).
func addressAllowed(client string, tenant *configv1.Tenant, key *configv1.Key) *translate.Error {
	policies := []*configv1.Policy{tenant.GetPolicy(), key.GetPolicy()}
	if len(policies[0].GetAllowedCidrs()) == 0 && len(policies[1].GetAllowedCidrs()) == 0 {
		return nil
	}
	addr, err := clientAddr(client)
	deny := &translate.Error{Status: http.StatusForbidden, Type: "permission_error", Code: "ip_not_allowed",
		Message: fmt.Sprintf("Requests from %s are not allowed for this key; ask your administrator to add your network to its allowed addresses.", client)}
	if err != nil {
		// An allow list with no known client address fails closed.
		deny.Message = "Your address could not be determined, and this key only allows listed networks."
		return deny
	}
	for _, p := range policies {
		cidrs := p.GetAllowedCidrs()
		if len(cidrs) == 0 {
			continue
		}
		if !slices.ContainsFunc(cidrs, func(c string) bool {
			prefix, err := netip.ParsePrefix(c)
			return err == nil && prefix.Contains(addr)
		}) {
			return deny
		}
	}
	return nil
}

// clientAddr reads "ip:port" or a bare IP.
func clientAddr(s string) (netip.Addr, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), nil
	}
	a, err := netip.ParseAddr(s)
	return a.Unmap(), err
}

// maxOutputTokens is the stricter of the tenant's and the key's limits.
func maxOutputTokens(tenant *configv1.Tenant, key *configv1.Key) (int64, bool) {
	var limit int64
	set := false
	for _, p := range []*configv1.Policy{tenant.GetPolicy(), key.GetPolicy()} {
		if p != nil && p.MaxOutputTokens != nil && (!set || p.GetMaxOutputTokens() < limit) {
			limit, set = p.GetMaxOutputTokens(), true
		}
	}
	return limit, set
}

// outputAllowed refuses a request that asks for more output than its
// policy allows, unless the policy clamps: then, as for a request that sets
// no limit, the limit is lowered to the policy's in every try (target.go).
func outputAllowed(f *requestFields, tenant *configv1.Tenant, key *configv1.Key) *translate.Error {
	limit, ok := maxOutputTokens(tenant, key)
	if !ok || tenant.GetPolicy().GetClampOutputTokens() || key.GetPolicy().GetClampOutputTokens() {
		return nil
	}
	for _, field := range []struct {
		name string
		v    *int64
	}{{"max_completion_tokens", f.MaxCompletionTokens}, {"max_tokens", f.MaxTokens}, {"max_output_tokens", f.MaxOutputTokens}} {
		if field.v != nil && *field.v > limit {
			return &translate.Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "max_tokens_exceeds_policy", Param: field.name,
				Message: fmt.Sprintf("%s is %d, but your organization's policy allows at most %d output tokens per request; send %d or less.", field.name, *field.v, limit, limit)}
		}
	}
	return nil
}

// providerAllowed applies the provider allow and deny lists to one
// provider.
func providerAllowed(p *configv1.Provider, tenant *configv1.Tenant, key *configv1.Key) bool {
	for _, pol := range []*configv1.Policy{tenant.GetPolicy(), key.GetPolicy()} {
		if slices.Contains(pol.GetDeniedProviders(), p.GetName()) {
			return false
		}
		if allow := pol.GetAllowedProviders(); len(allow) > 0 && !slices.Contains(allow, p.GetName()) {
			return false
		}
	}
	return true
}

// providersAllowed refuses a model whose first deployment (of deps, those
// the request may use) is served by a provider the policy excludes. Envoy
// picks later deployments itself, on fallback; each try checks its own
// provider again (upstream.go).
func providersAllowed(cfg Config, m *configv1.Model, deps []*configv1.Deployment, tenant *configv1.Tenant, key *configv1.Key) *translate.Error {
	if len(deps) == 0 {
		return nil
	}
	p := cfg.Provider(deps[0].GetProviderId())
	if p == nil || providerAllowed(p, tenant, key) {
		return nil
	}
	return &translate.Error{Status: http.StatusForbidden, Type: "permission_error", Code: "provider_not_allowed", Param: "model",
		Message: fmt.Sprintf("The model `%s` is served by the provider %q, which your organization's policy does not allow.", m.GetName(), p.GetName())}
}
