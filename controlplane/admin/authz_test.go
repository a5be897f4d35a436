package admin

import (
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

func TestCallsWithoutAValidTokenAreRefused(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		h.createTenant("acme")
		req := &adminv1.ListTenantsRequest{}
		for name, token := range map[string]string{
			"none":           "",
			"garbage":        "hello",
			"data-plane key": h.createKey(h.op(), "acme", "k").GetSecret(),
			"wrong operator": "tgop-" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
			"unknown admin":  "tgadm-" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		} {
			t.Run(name, func(t *testing.T) {
				_, err := h.tenants().ListTenants(h.ctx(token), req)
				wantCode(t, err, codes.Unauthenticated)
			})
		}

		tok, err := h.tokens().CreateAdminToken(h.op(), &adminv1.CreateAdminTokenRequest{Tenant: "acme", AdminToken: &adminv1.AdminToken{Name: "a"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.tenants().ListTenants(h.ctx(tok.GetSecret()), req); err != nil {
			t.Fatalf("fresh admin token refused: %v", err)
		}
		if _, err := h.tokens().RevokeAdminToken(h.op(), &adminv1.RevokeAdminTokenRequest{Id: tok.GetAdminToken().GetId()}); err != nil {
			t.Fatal(err)
		}
		_, err = h.tenants().ListTenants(h.ctx(tok.GetSecret()), req)
		wantCode(t, err, codes.Unauthenticated)
	})
}

// A tenant admin sees its own tenant only, and cannot tell another tenant's
// objects from objects that do not exist.
func TestTenantAdminCannotReachAnotherTenant(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		acme, globex := h.createTenant("acme"), h.createTenant("globex")
		acmeKey := h.createKey(h.op(), "acme", "acme-key").GetKey()
		globexKey := h.createKey(h.op(), "globex", "globex-key").GetKey()
		globexAcct, err := h.accounts().CreateAccount(h.op(), &adminv1.CreateAccountRequest{Tenant: "globex", Account: &adminv1.Account{Email: "g@globex.example"}})
		if err != nil {
			t.Fatal(err)
		}
		globexProv := h.createProvider(h.op(), &adminv1.Provider{TenantId: globex.GetId(), Name: "own", Kind: adminv1.ProviderKind_PROVIDER_KIND_OPENAI, BaseUrl: "https://api.openai.com", Credential: "sk-globex"})
		admin := h.ctx(h.tenantAdmin("acme"))
		random := uuid.NewString()

		notFound := map[string]func() error{
			"get tenant by id": func() error {
				_, err := h.tenants().GetTenant(admin, &adminv1.GetTenantRequest{Tenant: globex.GetId()})
				return err
			},
			"get tenant by slug": func() error {
				_, err := h.tenants().GetTenant(admin, &adminv1.GetTenantRequest{Tenant: "globex"})
				return err
			},
			"get tenant by guess": func() error {
				_, err := h.tenants().GetTenant(admin, &adminv1.GetTenantRequest{Tenant: random})
				return err
			},
			"update other tenant": func() error {
				_, err := h.tenants().UpdateTenant(admin, &adminv1.UpdateTenantRequest{Tenant: &adminv1.Tenant{Id: globex.GetId(), Name: "x"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}}})
				return err
			},
			"get other key": func() error {
				_, err := h.keys().GetKey(admin, &adminv1.GetKeyRequest{Id: globexKey.GetId()})
				return err
			},
			"revoke other key": func() error {
				_, err := h.keys().RevokeKey(admin, &adminv1.RevokeKeyRequest{Id: globexKey.GetId()})
				return err
			},
			"delete other key": func() error {
				_, err := h.keys().DeleteKey(admin, &adminv1.DeleteKeyRequest{Id: globexKey.GetId()})
				return err
			},
			"list other keys": func() error {
				_, err := h.keys().ListKeys(admin, &adminv1.ListKeysRequest{Tenant: "globex"})
				return err
			},
			"create key elsewhere": func() error {
				_, err := h.keys().CreateKey(admin, &adminv1.CreateKeyRequest{Tenant: "globex", Key: &adminv1.Key{Name: "x"}})
				return err
			},
			"get other account": func() error {
				_, err := h.accounts().GetAccount(admin, &adminv1.GetAccountRequest{Id: globexAcct.GetAccount().GetId()})
				return err
			},
			"list other accounts": func() error {
				_, err := h.accounts().ListAccounts(admin, &adminv1.ListAccountsRequest{Tenant: globex.GetId()})
				return err
			},
			"get other provider": func() error {
				_, err := h.providers().GetProvider(admin, &adminv1.GetProviderRequest{Id: globexProv.GetId()})
				return err
			},
			"other tenant policy": func() error {
				_, err := h.policies().GetPolicy(admin, &adminv1.GetPolicyRequest{Target: &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_Tenant{Tenant: "globex"}}})
				return err
			},
			"other key policy": func() error {
				_, err := h.policies().GetPolicy(admin, &adminv1.GetPolicyRequest{Target: &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_KeyId{KeyId: globexKey.GetId()}}})
				return err
			},
			"other tenant audit": func() error {
				_, err := h.audit().ListAuditEvents(admin, &adminv1.ListAuditEventsRequest{Tenant: "globex"})
				return err
			},
			"other tenant tokens": func() error {
				_, err := h.tokens().ListAdminTokens(admin, &adminv1.ListAdminTokensRequest{Tenant: "globex"})
				return err
			},
			"token for other": func() error {
				_, err := h.tokens().CreateAdminToken(admin, &adminv1.CreateAdminTokenRequest{Tenant: "globex", AdminToken: &adminv1.AdminToken{Name: "x"}})
				return err
			},
		}
		for name, call := range notFound {
			t.Run(name, func(t *testing.T) { wantCode(t, call(), codes.NotFound) })
		}

		denied := map[string]func() error{
			"create tenant": func() error {
				_, err := h.tenants().CreateTenant(admin, &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: "new"}})
				return err
			},
			"delete own tenant": func() error {
				_, err := h.tenants().DeleteTenant(admin, &adminv1.DeleteTenantRequest{Tenant: "acme"})
				return err
			},
			"change own status": func() error {
				_, err := h.tenants().UpdateTenant(admin, &adminv1.UpdateTenantRequest{Tenant: &adminv1.Tenant{Slug: "acme", Status: adminv1.TenantStatus_TENANT_STATUS_ACTIVE}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"status"}}})
				return err
			},
			"raise own budget": func() error {
				_, err := h.policies().UpdatePolicy(admin, &adminv1.UpdatePolicyRequest{Policy: &adminv1.Policy{Target: &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_Tenant{Tenant: "acme"}}}})
				return err
			},
			"platform provider": func() error {
				_, err := h.providers().CreateProvider(admin, &adminv1.CreateProviderRequest{Provider: &adminv1.Provider{Name: "p", Kind: adminv1.ProviderKind_PROVIDER_KIND_OPENAI, BaseUrl: "https://api.openai.com", Credential: "sk"}})
				return err
			},
		}
		for name, call := range denied {
			t.Run(name, func(t *testing.T) { wantCode(t, call(), codes.PermissionDenied) })
		}

		// What the tenant admin may do, and sees only its own.
		tl, err := h.tenants().ListTenants(admin, &adminv1.ListTenantsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(tl.GetTenants()) != 1 || tl.GetTenants()[0].GetId() != acme.GetId() {
			t.Errorf("tenant admin listed %v, want only acme", tl.GetTenants())
		}
		kl, err := h.keys().ListKeys(admin, &adminv1.ListKeysRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(kl.GetKeys()) != 1 || kl.GetKeys()[0].GetId() != acmeKey.GetId() {
			t.Errorf("tenant admin listed keys %v, want only acme's", kl.GetKeys())
		}
		pl, err := h.providers().ListProviders(admin, &adminv1.ListProvidersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(pl.GetProviders()) != 0 {
			t.Errorf("tenant admin sees providers %v, want none (globex's is private)", pl.GetProviders())
		}
		if _, err := h.policies().UpdatePolicy(admin, &adminv1.UpdatePolicyRequest{
			Policy:     &adminv1.Policy{Target: &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_KeyId{KeyId: acmeKey.GetId()}}, RequestsPerMinute: ptr[int64](10)},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"requests_per_minute"}},
		}); err != nil {
			t.Errorf("tenant admin cannot set its own key's policy: %v", err)
		}
		own := h.createKey(admin, "acme", "self-made")
		if own.GetKey().GetTenantId() != acme.GetId() {
			t.Errorf("key made by the tenant admin belongs to %s", own.GetKey().GetTenantId())
		}
		ev, err := h.audit().ListAuditEvents(admin, &adminv1.ListAuditEventsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ev.GetEvents() {
			if e.GetTenantId() != acme.GetId() {
				t.Errorf("tenant admin sees an audit event of tenant %s", e.GetTenantId())
			}
		}
		if len(ev.GetEvents()) == 0 || ev.GetEvents()[0].GetAction() != "key.create" || ev.GetEvents()[0].GetActor() == "operator" {
			t.Errorf("newest event %v: want key.create by the admin token", ev.GetEvents()[0])
		}
	})
}
