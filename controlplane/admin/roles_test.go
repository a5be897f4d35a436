package admin

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/signin"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

// signedIn creates an account with role in tenant, gives it a password and
// signs it in; it returns a context carrying the session and the account.
func (h *harness) signedIn(tenant, email string, role adminv1.AccountRole) (context.Context, *adminv1.Account) {
	h.t.Helper()
	resp, err := h.accounts().CreateAccount(h.op(), &adminv1.CreateAccountRequest{Tenant: tenant, Account: &adminv1.Account{Email: email, Role: role}})
	if err != nil {
		h.t.Fatalf("creating account %s: %v", email, err)
	}
	ctx := context.Background()
	link, err := h.sessions.IssuePasswordLink(ctx, uuid.MustParse(resp.GetAccount().GetId()))
	if err != nil {
		h.t.Fatal(err)
	}
	const pw = "correct horse battery staple"
	if err := h.sessions.SetPassword(ctx, link.Secret, pw); err != nil {
		h.t.Fatal(err)
	}
	opened, err := h.sessions.SignIn(ctx, signin.Attempt{Email: email, Password: pw, Tenant: tenant, Addr: "192.0.2.1"})
	if err != nil {
		h.t.Fatalf("signing in %s: %v", email, err)
	}
	return h.ctx(opened.Secret), resp.GetAccount()
}

func TestRolesDecideWhatASessionMayDo(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		h.createTenant("acme")
		viewer, _ := h.signedIn("acme", "v@acme.example", adminv1.AccountRole_ACCOUNT_ROLE_VIEWER)
		member, memberAcct := h.signedIn("acme", "m@acme.example", adminv1.AccountRole_ACCOUNT_ROLE_MEMBER)
		admin, _ := h.signedIn("acme", "a@acme.example", adminv1.AccountRole_ACCOUNT_ROLE_ADMIN)
		owner, ownerAcct := h.signedIn("acme", "o@acme.example", adminv1.AccountRole_ACCOUNT_ROLE_OWNER)
		teamKey := h.createKey(h.op(), "acme", "team").GetKey()

		// Everyone reads.
		for name, ctx := range map[string]context.Context{"viewer": viewer, "member": member, "admin": admin, "owner": owner} {
			if _, err := h.keys().ListKeys(ctx, &adminv1.ListKeysRequest{Tenant: "acme"}); err != nil {
				t.Errorf("%s cannot list keys: %v", name, err)
			}
			if _, err := h.policies().GetLimitStatus(ctx, &adminv1.GetLimitStatusRequest{Target: &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_Tenant{Tenant: "acme"}}}); err != nil {
				t.Errorf("%s cannot read limit status: %v", name, err)
			}
		}
		// A viewer changes nothing and does not see admin tokens.
		_, err := h.keys().CreateKey(viewer, &adminv1.CreateKeyRequest{Tenant: "acme", Key: &adminv1.Key{Name: "v"}})
		wantCode(t, err, codes.PermissionDenied)
		_, err = h.tokens().ListAdminTokens(viewer, &adminv1.ListAdminTokensRequest{Tenant: "acme"})
		wantCode(t, err, codes.PermissionDenied)

		// A member's keys are their own; others' keys are out of reach.
		mine, err := h.keys().CreateKey(member, &adminv1.CreateKeyRequest{Tenant: "acme", Key: &adminv1.Key{Name: "mine"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := mine.GetKey().GetAccountId(); got != memberAcct.GetId() {
			t.Errorf("a member's new key belongs to %q, want the member %q", got, memberAcct.GetId())
		}
		_, err = h.keys().CreateKey(member, &adminv1.CreateKeyRequest{Tenant: "acme", Key: &adminv1.Key{Name: "for owner", AccountId: ownerAcct.GetId()}})
		wantCode(t, err, codes.PermissionDenied)
		_, err = h.keys().RevokeKey(member, &adminv1.RevokeKeyRequest{Id: teamKey.GetId()})
		wantCode(t, err, codes.PermissionDenied)
		_, err = h.keys().RotateKey(member, &adminv1.RotateKeyRequest{Id: teamKey.GetId()})
		wantCode(t, err, codes.PermissionDenied)
		_, err = h.keys().DeleteKey(member, &adminv1.DeleteKeyRequest{Id: teamKey.GetId()})
		wantCode(t, err, codes.PermissionDenied)
		if _, err := h.keys().RotateKey(member, &adminv1.RotateKeyRequest{Id: mine.GetKey().GetId()}); err != nil {
			t.Errorf("a member cannot rotate their own key: %v", err)
		}
		if _, err := h.keys().RevokeKey(member, &adminv1.RevokeKeyRequest{Id: mine.GetKey().GetId()}); err != nil {
			t.Errorf("a member cannot revoke their own key: %v", err)
		}
		_, err = h.policies().UpdatePolicy(member, &adminv1.UpdatePolicyRequest{Policy: &adminv1.Policy{Target: &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_Tenant{Tenant: "acme"}}}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"requests_per_minute"}}})
		wantCode(t, err, codes.PermissionDenied)
		_, err = h.accounts().CreateAccount(member, &adminv1.CreateAccountRequest{Tenant: "acme", Account: &adminv1.Account{Email: "x@acme.example"}})
		wantCode(t, err, codes.PermissionDenied)

		// Everyone corrects their own name, and nothing else about anyone.
		rename := func(id, name string, paths ...string) *adminv1.UpdateAccountRequest {
			return &adminv1.UpdateAccountRequest{Account: &adminv1.Account{Id: id, Name: name, Role: adminv1.AccountRole_ACCOUNT_ROLE_OWNER}, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}}
		}
		if _, err := h.accounts().UpdateAccount(member, rename(memberAcct.GetId(), "Mem Ber", "name")); err != nil {
			t.Errorf("a member cannot correct their name: %v", err)
		}
		_, err = h.accounts().UpdateAccount(member, rename(memberAcct.GetId(), "", "role"))
		wantCode(t, err, codes.PermissionDenied)
		_, err = h.accounts().UpdateAccount(member, rename(ownerAcct.GetId(), "x", "name"))
		wantCode(t, err, codes.PermissionDenied)

		// An admin manages keys and accounts, but not owners.
		if _, err := h.keys().RevokeKey(admin, &adminv1.RevokeKeyRequest{Id: teamKey.GetId()}); err != nil {
			t.Errorf("an admin cannot revoke a key: %v", err)
		}
		if _, err := h.accounts().CreateAccount(admin, &adminv1.CreateAccountRequest{Tenant: "acme", Account: &adminv1.Account{Email: "new@acme.example"}}); err != nil {
			t.Errorf("an admin cannot add a member: %v", err)
		}
		_, err = h.accounts().CreateAccount(admin, &adminv1.CreateAccountRequest{Tenant: "acme", Account: &adminv1.Account{Email: "o2@acme.example", Role: adminv1.AccountRole_ACCOUNT_ROLE_OWNER}})
		wantCode(t, err, codes.PermissionDenied)
		_, err = h.accounts().UpdateAccount(admin, rename(memberAcct.GetId(), "", "role"))
		wantCode(t, err, codes.PermissionDenied)
		_, err = h.accounts().DeleteAccount(admin, &adminv1.DeleteAccountRequest{Id: ownerAcct.GetId()})
		wantCode(t, err, codes.PermissionDenied)
		// An owner may.
		if _, err := h.accounts().UpdateAccount(owner, rename(memberAcct.GetId(), "", "role")); err != nil {
			t.Errorf("an owner cannot make someone an owner: %v", err)
		}

		// The audit log names the account that acted.
		ev, err := h.audit().ListAuditEvents(h.op(), &adminv1.ListAuditEventsRequest{Tenant: "acme", Action: "key.rotate"})
		if err != nil {
			t.Fatal(err)
		}
		if len(ev.GetEvents()) != 1 || ev.GetEvents()[0].GetActor() != "account:"+memberAcct.GetId() {
			t.Errorf("key.rotate events = %v, want one by account:%s", ev.GetEvents(), memberAcct.GetId())
		}
	})
}

func TestSessionsAreHeldToTheirTenantAndEndWhenRevoked(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		h.createTenant("acme")
		h.createTenant("globex")
		globexKey := h.createKey(h.op(), "globex", "g").GetKey()
		owner, _ := h.signedIn("acme", "o@acme.example", adminv1.AccountRole_ACCOUNT_ROLE_OWNER)
		_, err := h.keys().GetKey(owner, &adminv1.GetKeyRequest{Id: globexKey.GetId()})
		wantCode(t, err, codes.NotFound)
		_, err = h.keys().RevokeKey(owner, &adminv1.RevokeKeyRequest{Id: globexKey.GetId()})
		wantCode(t, err, codes.NotFound)
		_, err = h.tenants().GetTenant(owner, &adminv1.GetTenantRequest{Tenant: "globex"})
		wantCode(t, err, codes.NotFound)

		// Signing out ends the session for the API too.
		ctx := context.Background()
		tok := bearerOf(owner, t)
		if err := h.sessions.SignOut(ctx, tok); err != nil {
			t.Fatal(err)
		}
		_, err = h.keys().ListKeys(owner, &adminv1.ListKeysRequest{Tenant: "acme"})
		wantCode(t, err, codes.Unauthenticated)
	})
}

// bearerOf returns the bearer secret a context made by harness.ctx carries.
func bearerOf(ctx context.Context, t *testing.T) string {
	t.Helper()
	md, _ := metadata.FromOutgoingContext(ctx)
	v := md.Get("authorization")
	if len(v) != 1 {
		t.Fatal("the context carries no bearer")
	}
	return strings.TrimPrefix(v[0], "Bearer ")
}

// A tenant keeps at least one owner: the last one cannot be deleted or
// demoted, by anyone; with a second owner either may go.
func TestATenantKeepsItsLastOwner(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		h.createTenant("acme")
		owner, first := h.signedIn("acme", "o1@acme.example", adminv1.AccountRole_ACCOUNT_ROLE_OWNER)
		demote := func(ctx context.Context, id string) error {
			_, err := h.accounts().UpdateAccount(ctx, &adminv1.UpdateAccountRequest{
				Account:    &adminv1.Account{Id: id, Role: adminv1.AccountRole_ACCOUNT_ROLE_ADMIN},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"role"}},
			})
			return err
		}
		remove := func(ctx context.Context, id string) error {
			_, err := h.accounts().DeleteAccount(ctx, &adminv1.DeleteAccountRequest{Id: id})
			return err
		}
		for name, ctx := range map[string]context.Context{"the owner": owner, "the operator": h.op()} {
			if err := demote(ctx, first.GetId()); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "last owner") {
				t.Errorf("%s demoting the last owner: %v, want FailedPrecondition naming the last owner", name, err)
			}
			if err := remove(ctx, first.GetId()); status.Code(err) != codes.FailedPrecondition {
				t.Errorf("%s deleting the last owner: %v, want FailedPrecondition", name, err)
			}
		}
		// Renaming the last owner is fine.
		if _, err := h.accounts().UpdateAccount(owner, &adminv1.UpdateAccountRequest{
			Account:    &adminv1.Account{Id: first.GetId(), Name: "Olga"},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}},
		}); err != nil {
			t.Fatalf("renaming the last owner: %v", err)
		}

		_, second := h.signedIn("acme", "o2@acme.example", adminv1.AccountRole_ACCOUNT_ROLE_OWNER)
		if err := demote(owner, first.GetId()); err != nil {
			t.Fatalf("demoting one of two owners: %v", err)
		}
		if err := remove(h.op(), second.GetId()); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("deleting the owner left: %v, want FailedPrecondition", err)
		}
		got, err := h.accounts().GetAccount(h.op(), &adminv1.GetAccountRequest{Id: second.GetId()})
		if err != nil || got.GetAccount().GetRole() != adminv1.AccountRole_ACCOUNT_ROLE_OWNER {
			t.Fatalf("the owner left: %v %v", got, err)
		}
	})
}
