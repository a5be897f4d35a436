package extproc

import (
	"net/http"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
	"github.com/tollgate-dev/tollgate/extproc/translate"
)

// clientKey finds the Tollgate key in the header each SDK uses: OpenAI's
// sends Authorization: Bearer, Anthropic's x-api-key.
func clientKey(h *corev3.HeaderMap) string {
	if v, ok := strings.CutPrefix(header(h, "authorization"), "Bearer "); ok {
		return strings.TrimSpace(v)
	}
	return strings.TrimSpace(header(h, "x-api-key"))
}

func authError(status int, code, msg string) *translate.Error {
	typ := "invalid_request_error"
	if status == http.StatusForbidden {
		typ = "permission_error"
	}
	return &translate.Error{Status: status, Type: typ, Code: code, Message: msg}
}

// authenticate finds the key and its tenant, and checks that they may send
// traffic now. Unknown, revoked and malformed keys look alike to the client
// (401), as they do at OpenAI; an expired key says so.
func authenticate(cfg Config, h *corev3.HeaderMap, now time.Time) (*configv1.Key, *configv1.Tenant, *translate.Error) {
	raw := clientKey(h)
	if raw == "" {
		return nil, nil, authError(http.StatusUnauthorized, "missing_api_key",
			"You didn't provide an API key. Send your Tollgate key as \"Authorization: Bearer tg-...\" or \"x-api-key: tg-...\".")
	}
	if err := secret.Check(secret.APIKey, raw); err != nil {
		return nil, nil, authError(http.StatusUnauthorized, "invalid_api_key", "Incorrect API key provided: "+err.Error())
	}
	key := cfg.Key(xdstranslate.KeyResourceName(secret.Hash(raw)))
	if key == nil {
		return nil, nil, authError(http.StatusUnauthorized, "invalid_api_key",
			"Incorrect API key provided: "+secret.Redact(raw)+". It is unknown or was revoked; ask your administrator for a valid key.")
	}
	if exp := key.GetExpireTime(); exp != nil && !now.Before(exp.AsTime()) {
		return nil, nil, authError(http.StatusUnauthorized, "expired_api_key",
			"The API key "+key.GetPrefix()+"… expired at "+exp.AsTime().UTC().Format(time.RFC3339)+"; ask your administrator for a new key.")
	}
	tenant := cfg.Tenant(key.GetTenantId())
	switch tenant.GetStatus() {
	case configv1.TenantStatus_TENANT_STATUS_ACTIVE:
		if key.GetAccountRestricted() {
			return key, tenant, authError(http.StatusForbidden, "processing_restricted",
				"Processing is restricted for the account this key belongs to: its requests are refused until the restriction is lifted.")
		}
		return key, tenant, nil
	case configv1.TenantStatus_TENANT_STATUS_RESTRICTED:
		return key, tenant, authError(http.StatusForbidden, "processing_restricted",
			"Processing is restricted for this organization: requests are refused until the restriction is lifted.")
	default:
		return key, tenant, authError(http.StatusForbidden, "account_suspended",
			"This account is suspended; contact your administrator.")
	}
}

// modelAllowed applies the key's allowed models and the tenant's and key's
// model allow and deny lists: a model must pass every one of them.
func modelAllowed(key *configv1.Key, tenant *configv1.Tenant, model string) *translate.Error {
	deny := func(why string) *translate.Error {
		return &translate.Error{Status: http.StatusForbidden, Type: "permission_error", Code: "model_not_allowed", Param: "model",
			Message: "The model `" + model + "` is not allowed " + why + "."}
	}
	if allowed := key.GetAllowedModels(); len(allowed) > 0 && !slices.Contains(allowed, model) {
		return deny("for this API key")
	}
	for _, p := range []*configv1.Policy{tenant.GetPolicy(), key.GetPolicy()} {
		if slices.Contains(p.GetDeniedModels(), model) || (len(p.GetAllowedModels()) > 0 && !slices.Contains(p.GetAllowedModels(), model)) {
			return deny("by your organization's policy")
		}
	}
	return nil
}
