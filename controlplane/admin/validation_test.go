package admin

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

// rowCounts counts the rows of every table, to prove a failed call wrote
// nothing.
func rowCounts(t *testing.T, st *store.Store) map[string]int {
	t.Helper()
	c := st.Client()
	ctx := t.Context()
	counts := map[string]int{}
	for name, count := range map[string]func() (int, error){
		"tenants":      func() (int, error) { return c.Tenant.Query().Count(ctx) },
		"accounts":     func() (int, error) { return c.Account.Query().Count(ctx) },
		"api_keys":     func() (int, error) { return c.APIKey.Query().Count(ctx) },
		"admin_tokens": func() (int, error) { return c.AdminToken.Query().Count(ctx) },
		"providers":    func() (int, error) { return c.Provider.Query().Count(ctx) },
		"models":       func() (int, error) { return c.Model.Query().Count(ctx) },
		"deployments":  func() (int, error) { return c.ModelDeployment.Query().Count(ctx) },
		"prices":       func() (int, error) { return c.ModelPrice.Query().Count(ctx) },
		"policies":     func() (int, error) { return c.GatewayPolicy.Query().Count(ctx) },
		"audit":        func() (int, error) { return c.AuditEvent.Query().Count(ctx) },
	} {
		n, err := count()
		if err != nil {
			t.Fatal(err)
		}
		counts[name] = n
	}
	return counts
}

func TestBadInputNamesTheFieldAndWritesNothing(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		acme := h.createTenant("acme")
		keyID := h.createKey(h.op(), "acme", "k").GetKey().GetId()
		prov := h.createProvider(h.op(), &adminv1.Provider{Name: "openai", Kind: adminv1.ProviderKind_PROVIDER_KIND_OPENAI, BaseUrl: "https://api.openai.com", Credential: "sk-test"})
		mdl, err := h.models().CreateModel(h.op(), &adminv1.CreateModelRequest{Model: &adminv1.Model{
			Name: "gpt-4o-mini", Deployments: []*adminv1.Deployment{{ProviderId: prov.GetId(), UpstreamModel: "gpt-4o-mini"}},
			Pricing: &adminv1.Pricing{InputMicrosPerMtok: 150000, OutputMicrosPerMtok: 600000},
		}})
		if err != nil {
			t.Fatal(err)
		}
		past := timestamppb.New(time.Now().Add(-time.Hour))
		mask := func(p ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: p} }
		deploy := []*adminv1.Deployment{{ProviderId: prov.GetId(), UpstreamModel: "m"}}
		price := &adminv1.Pricing{}
		tenantTarget := &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_Tenant{Tenant: "acme"}}

		cases := []struct {
			name  string
			call  func() error
			field string
		}{
			{"tenant missing", func() error { _, err := h.tenants().CreateTenant(h.op(), &adminv1.CreateTenantRequest{}); return err }, "tenant"},
			{"slug upper case", func() error {
				_, err := h.tenants().CreateTenant(h.op(), &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: "Acme"}})
				return err
			}, "tenant.slug"},
			{"slug trailing hyphen", func() error {
				_, err := h.tenants().CreateTenant(h.op(), &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: "acme-"}})
				return err
			}, "tenant.slug"},
			{"billing email", func() error {
				_, err := h.tenants().CreateTenant(h.op(), &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: "b", BillingEmail: "not an address"}})
				return err
			}, "tenant.billing_email"},
			{"tenant id given", func() error {
				_, err := h.tenants().CreateTenant(h.op(), &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: "c", Id: acme.GetId()}})
				return err
			}, "tenant.id"},
			{"update without mask", func() error {
				_, err := h.tenants().UpdateTenant(h.op(), &adminv1.UpdateTenantRequest{Tenant: &adminv1.Tenant{Slug: "acme"}})
				return err
			}, "update_mask"},
			{"update unknown path", func() error {
				_, err := h.tenants().UpdateTenant(h.op(), &adminv1.UpdateTenantRequest{Tenant: &adminv1.Tenant{Slug: "acme"}, UpdateMask: mask("slug")})
				return err
			}, "update_mask"},
			{"tenant status unspecified", func() error {
				_, err := h.tenants().UpdateTenant(h.op(), &adminv1.UpdateTenantRequest{Tenant: &adminv1.Tenant{Slug: "acme"}, UpdateMask: mask("status")})
				return err
			}, "tenant.status"},
			{"list negative page size", func() error {
				_, err := h.tenants().ListTenants(h.op(), &adminv1.ListTenantsRequest{PageSize: -1})
				return err
			}, "page_size"},
			{"account email", func() error {
				_, err := h.accounts().CreateAccount(h.op(), &adminv1.CreateAccountRequest{Tenant: "acme", Account: &adminv1.Account{Email: "x"}})
				return err
			}, "account.email"},
			{"account tenant missing", func() error {
				_, err := h.accounts().CreateAccount(h.op(), &adminv1.CreateAccountRequest{Account: &adminv1.Account{Email: "a@b.example"}})
				return err
			}, "tenant"},
			{"key name empty", func() error {
				_, err := h.keys().CreateKey(h.op(), &adminv1.CreateKeyRequest{Tenant: "acme", Key: &adminv1.Key{}})
				return err
			}, "key.name"},
			{"key expiry in the past", func() error {
				_, err := h.keys().CreateKey(h.op(), &adminv1.CreateKeyRequest{Tenant: "acme", Key: &adminv1.Key{Name: "k", ExpireTime: past}})
				return err
			}, "key.expire_time"},
			{"key allowed model twice", func() error {
				_, err := h.keys().CreateKey(h.op(), &adminv1.CreateKeyRequest{Tenant: "acme", Key: &adminv1.Key{Name: "k", AllowedModels: []string{"a", "a"}}})
				return err
			}, "key.allowed_models[1]"},
			{"key account of nobody", func() error {
				_, err := h.keys().CreateKey(h.op(), &adminv1.CreateKeyRequest{Tenant: "acme", Key: &adminv1.Key{Name: "k", AccountId: acme.GetId()}})
				return err
			}, "key.account_id"},
			{"key id not a uuid", func() error {
				_, err := h.keys().GetKey(h.op(), &adminv1.GetKeyRequest{Id: "abc"})
				return err
			}, "id"},
			{"provider kind missing", func() error {
				_, err := h.providers().CreateProvider(h.op(), &adminv1.CreateProviderRequest{Provider: &adminv1.Provider{Name: "p", BaseUrl: "https://x.example", Credential: "k"}})
				return err
			}, "provider.kind"},
			{"provider http to the internet", func() error {
				_, err := h.providers().CreateProvider(h.op(), &adminv1.CreateProviderRequest{Provider: &adminv1.Provider{Name: "p", Kind: adminv1.ProviderKind_PROVIDER_KIND_ANTHROPIC, BaseUrl: "http://api.anthropic.com", Credential: "k"}})
				return err
			}, "provider.base_url"},
			{"provider url with /v1", func() error {
				_, err := h.providers().CreateProvider(h.op(), &adminv1.CreateProviderRequest{Provider: &adminv1.Provider{Name: "p", Kind: adminv1.ProviderKind_PROVIDER_KIND_OPENAI, BaseUrl: "https://api.openai.com/v1", Credential: "k"}})
				return err
			}, "provider.base_url"},
			{"provider without credential", func() error {
				_, err := h.providers().CreateProvider(h.op(), &adminv1.CreateProviderRequest{Provider: &adminv1.Provider{Name: "p", Kind: adminv1.ProviderKind_PROVIDER_KIND_OPENAI, BaseUrl: "https://api.openai.com"}})
				return err
			}, "provider.credential"},
			{"azure without api version", func() error {
				_, err := h.providers().CreateProvider(h.op(), &adminv1.CreateProviderRequest{Provider: &adminv1.Provider{Name: "p", Kind: adminv1.ProviderKind_PROVIDER_KIND_AZURE_OPENAI, BaseUrl: "https://x.openai.azure.com", Credential: "k"}})
				return err
			}, "provider.api_version"},
			{"credential with newline", func() error {
				_, err := h.providers().CreateProvider(h.op(), &adminv1.CreateProviderRequest{Provider: &adminv1.Provider{Name: "p", Kind: adminv1.ProviderKind_PROVIDER_KIND_OPENAI, BaseUrl: "https://api.openai.com", Credential: "sk\n"}})
				return err
			}, "provider.credential"},
			{"model without deployments", func() error {
				_, err := h.models().CreateModel(h.op(), &adminv1.CreateModelRequest{Model: &adminv1.Model{Name: "m", Pricing: price}})
				return err
			}, "model.deployments"},
			{"model without pricing", func() error {
				_, err := h.models().CreateModel(h.op(), &adminv1.CreateModelRequest{Model: &adminv1.Model{Name: "m", Deployments: deploy}})
				return err
			}, "model.pricing"},
			{"model negative price", func() error {
				_, err := h.models().CreateModel(h.op(), &adminv1.CreateModelRequest{Model: &adminv1.Model{Name: "m", Deployments: deploy, Pricing: &adminv1.Pricing{OutputMicrosPerMtok: -1}}})
				return err
			}, "model.pricing.output_micros_per_mtok"},
			{"model unknown provider", func() error {
				_, err := h.models().CreateModel(h.op(), &adminv1.CreateModelRequest{Model: &adminv1.Model{Name: "m", Deployments: []*adminv1.Deployment{{ProviderId: acme.GetId(), UpstreamModel: "m"}}, Pricing: price}})
				return err
			}, "model.deployments[0].provider_id"},
			{"deployment retention days without limited retention", func() error {
				_, err := h.models().CreateModel(h.op(), &adminv1.CreateModelRequest{Model: &adminv1.Model{Name: "m", Pricing: price, Deployments: []*adminv1.Deployment{{
					ProviderId: deploy[0].GetProviderId(), UpstreamModel: "m", Retention: adminv1.DataRetention_DATA_RETENTION_ZERO, RetentionDays: 30,
				}}}})
				return err
			}, "model.deployments[0].retention_days"},
			{"deployment limited retention without days", func() error {
				_, err := h.models().CreateModel(h.op(), &adminv1.CreateModelRequest{Model: &adminv1.Model{Name: "m", Pricing: price, Deployments: []*adminv1.Deployment{{
					ProviderId: deploy[0].GetProviderId(), UpstreamModel: "m", Retention: adminv1.DataRetention_DATA_RETENTION_LIMITED,
				}}}})
				return err
			}, "model.deployments[0].retention_days"},
			{"deployment retention unknown value", func() error {
				_, err := h.models().CreateModel(h.op(), &adminv1.CreateModelRequest{Model: &adminv1.Model{Name: "m", Pricing: price, Deployments: []*adminv1.Deployment{{
					ProviderId: deploy[0].GetProviderId(), UpstreamModel: "m", Retention: 42,
				}}}})
				return err
			}, "model.deployments[0].retention"},
			{"model name with space", func() error {
				_, err := h.models().CreateModel(h.op(), &adminv1.CreateModelRequest{Model: &adminv1.Model{Name: "gpt 4", Deployments: deploy, Pricing: price}})
				return err
			}, "model.name"},
			{"price change back-dated", func() error {
				_, err := h.models().UpdateModel(h.op(), &adminv1.UpdateModelRequest{Model: &adminv1.Model{Id: mdl.GetModel().GetId(), Pricing: &adminv1.Pricing{EffectiveTime: past}}, UpdateMask: mask("pricing")})
				return err
			}, "model.pricing.effective_time"},
			{"policy without target", func() error {
				_, err := h.policies().UpdatePolicy(h.op(), &adminv1.UpdatePolicyRequest{Policy: &adminv1.Policy{}})
				return err
			}, "policy.target"},
			{"policy zero rpm", func() error {
				_, err := h.policies().UpdatePolicy(h.op(), &adminv1.UpdatePolicyRequest{Policy: &adminv1.Policy{Target: tenantTarget, RequestsPerMinute: ptr[int64](0)}})
				return err
			}, "policy.requests_per_minute"},
			{"policy bad cidr", func() error {
				_, err := h.policies().UpdatePolicy(h.op(), &adminv1.UpdatePolicyRequest{Policy: &adminv1.Policy{Target: tenantTarget, AllowedCidrs: []string{"10.0.0.0/33"}}})
				return err
			}, "policy.allowed_cidrs[0]"},
			{"policy soft above hard", func() error {
				_, err := h.policies().UpdatePolicy(h.op(), &adminv1.UpdatePolicyRequest{Policy: &adminv1.Policy{Target: tenantTarget, Budgets: []*adminv1.Budget{{Period: adminv1.BudgetPeriod_BUDGET_PERIOD_DAY, HardLimitMicros: ptr[int64](10), SoftLimitMicros: ptr[int64](20)}}}})
				return err
			}, "policy.budgets[0].soft_limit_micros"},
			{"policy budget period", func() error {
				_, err := h.policies().UpdatePolicy(h.op(), &adminv1.UpdatePolicyRequest{Policy: &adminv1.Policy{Target: tenantTarget, Budgets: []*adminv1.Budget{{HardLimitMicros: ptr[int64](10)}}}})
				return err
			}, "policy.budgets[0].period"},
			{"policy full retention without days", func() error {
				_, err := h.policies().UpdatePolicy(h.op(), &adminv1.UpdatePolicyRequest{Policy: &adminv1.Policy{Target: tenantTarget, ContentRetention: adminv1.ContentRetention_CONTENT_RETENTION_FULL}})
				return err
			}, "policy.retention.content_days"},
			{"key policy allowing provider storage", func() error {
				_, err := h.policies().UpdatePolicy(h.op(), &adminv1.UpdatePolicyRequest{Policy: &adminv1.Policy{Target: &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_KeyId{KeyId: keyID}}, AllowProviderStorage: true}})
				return err
			}, "policy.allow_provider_storage"},
			{"policy key id", func() error {
				_, err := h.policies().GetPolicy(h.op(), &adminv1.GetPolicyRequest{Target: &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_KeyId{KeyId: "nope"}}})
				return err
			}, "target.key_id"},
			{"audit bad token", func() error {
				_, err := h.audit().ListAuditEvents(h.op(), &adminv1.ListAuditEventsRequest{PageToken: "djF8bm9wZQ"})
				return err
			}, "page_token"},
			{"admin token name", func() error {
				_, err := h.tokens().CreateAdminToken(h.op(), &adminv1.CreateAdminTokenRequest{Tenant: "acme", AdminToken: &adminv1.AdminToken{}})
				return err
			}, "admin_token.name"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				before := rowCounts(t, st)
				fields := violations(t, c.call())
				if !slices.Contains(fields, c.field) {
					t.Errorf("violations %v do not name %s", fields, c.field)
				}
				if after := rowCounts(t, st); fmt.Sprint(after) != fmt.Sprint(before) {
					t.Errorf("rows changed by a refused call: before %v after %v", before, after)
				}
			})
		}
	})
}

// Field violations from the policy validator carry the request's path.
func TestPolicyViolationsAreAllReported(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		h.createTenant("acme")
		_, err := h.policies().UpdatePolicy(h.op(), &adminv1.UpdatePolicyRequest{Policy: &adminv1.Policy{
			Target:            &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_Tenant{Tenant: "acme"}},
			RequestsPerMinute: ptr[int64](-1), TokensPerMinute: ptr[int64](0), AllowedCidrs: []string{"x"},
		}})
		got := strings.Join(violations(t, err), " ")
		if got != "policy.requests_per_minute policy.tokens_per_minute policy.allowed_cidrs[0]" {
			t.Errorf("violations = %s", got)
		}
	})
}
