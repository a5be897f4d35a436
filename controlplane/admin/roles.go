package admin

import (
	"context"
	"strings"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/account"
)

// What an account's role lets its web console session do. Tenant admin
// tokens and the operator are not limited here (an admin token may do what
// an owner may); the tenant boundary holds for every principal.
//
//   - viewer: reads its tenant (every Get, List and Summarize call), except
//     admin tokens.
//   - member: a viewer who also creates keys for themself and renames,
//     rotates, revokes and deletes their own keys (keyOwnerCheck).
//   - admin: everything a tenant admin token may do, except making,
//     changing or removing owners (ownerCheck).
//   - owner: everything a tenant admin token may do.
//
// Every account may change its own name (account.go). A method this table
// does not know needs admin: a new service is closed to lesser roles until
// someone decides otherwise here.
var roleRank = map[account.Role]int{
	account.RoleViewer: 1,
	account.RoleMember: 2,
	account.RoleAdmin:  3,
	account.RoleOwner:  4,
}

const adminPrefix = "/tollgate.admin.v1."

// leastRoles lists methods whose least role is not what leastRole's
// general rule gives.
var leastRoles = map[string]account.Role{
	adminPrefix + "KeyService/CreateKey": account.RoleMember,
	adminPrefix + "KeyService/UpdateKey": account.RoleMember,
	adminPrefix + "KeyService/RotateKey": account.RoleMember,
	adminPrefix + "KeyService/RevokeKey": account.RoleMember,
	adminPrefix + "KeyService/DeleteKey": account.RoleMember,
	// An invoice's export is a read like GetInvoice.
	adminPrefix + "BillingService/ExportInvoice": account.RoleViewer,
	// Anyone may correct their own name; changing others' needs admin.
	adminPrefix + "AccountService/UpdateAccount": account.RoleViewer,
	// Everyone has the rights of access, rectification and erasure over
	// their own account (privacySelfCheck); a tenant's data needs admin.
	adminPrefix + "PrivacyService/ExportData":     account.RoleViewer,
	adminPrefix + "PrivacyService/CorrectData":    account.RoleViewer,
	adminPrefix + "PrivacyService/PrepareErasure": account.RoleViewer,
	adminPrefix + "PrivacyService/Erase":          account.RoleViewer,
}

// leastRole is the least role that may call fullMethod.
func leastRole(fullMethod string) account.Role {
	if r, ok := leastRoles[fullMethod]; ok {
		return r
	}
	svc, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if svc == "tollgate.admin.v1.TokenService" {
		return account.RoleAdmin
	}
	for _, read := range []string{"Get", "List", "Summarize"} {
		if strings.HasPrefix(method, read) {
			return account.RoleViewer
		}
	}
	return account.RoleAdmin
}

// authorizeRole refuses an account whose role is below what fullMethod needs.
func authorizeRole(p Principal, fullMethod string) error {
	if p.AccountID == uuid.Nil {
		return nil
	}
	need := leastRole(fullMethod)
	if roleRank[p.Role] >= roleRank[need] {
		return nil
	}
	_, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	return status.Errorf(codes.PermissionDenied, "your role (%s) may not %s; it needs %s or higher", p.Role, method, need)
}

// hasRole reports whether p acts with at least role r: accounts by their
// role, admin tokens and the operator always.
func (p Principal) hasRole(r account.Role) bool {
	return p.AccountID == uuid.Nil || roleRank[p.Role] >= roleRank[r]
}

// keyOwnerCheck lets a member change only keys that belong to them.
func keyOwnerCheck(p Principal, keyAccount *uuid.UUID) error {
	if p.hasRole(account.RoleAdmin) {
		return nil
	}
	if keyAccount != nil && *keyAccount == p.AccountID {
		return nil
	}
	return status.Error(codes.PermissionDenied, "members may change only their own keys; ask an admin of your tenant")
}

// ownerCheck lets only owners (and admin tokens, and the operator) make,
// change or remove an owner.
func ownerCheck(p Principal, roles ...account.Role) error {
	if p.hasRole(account.RoleOwner) {
		return nil
	}
	for _, r := range roles {
		if r == account.RoleOwner {
			return status.Error(codes.PermissionDenied, "only an owner may make, change or remove an owner")
		}
	}
	return nil
}

// lastOwnerCheck refuses to take away a tenant's last owner (deleting the
// account, or giving it another role): nobody could then manage the
// tenant's owners from the console. Under serializable transactions two
// owners demoting each other at once cannot both succeed. Erasure through
// PrivacyService is not held back by it: the right to erasure comes first,
// and an admin token or the operator can name a new owner.
func lastOwnerCheck(ctx context.Context, tx *ent.Tx, a *ent.Account) error {
	if a.Role != account.RoleOwner {
		return nil
	}
	others, err := tx.Account.Query().
		Where(account.TenantID(a.TenantID), account.RoleEQ(account.RoleOwner), account.IDNEQ(a.ID)).
		Exist(ctx)
	if err != nil || others {
		return err
	}
	return status.Error(codes.FailedPrecondition, "this account is the tenant's last owner; make another account an owner first")
}

// privacySelfCheck holds an account below admin to its own account as the
// subject of a privacy request.
func privacySelfCheck(p Principal, subj *adminv1.PrivacySubject) error {
	if p.hasRole(account.RoleAdmin) || subj.GetAccountId() == p.AccountID.String() {
		return nil
	}
	return status.Error(codes.PermissionDenied, "you may export, correct or erase only your own account's data; the tenant's needs an admin")
}
