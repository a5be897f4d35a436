package admin

import (
	"context"
	"errors"
	"slices"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/invalid"
	"github.com/tollgate-dev/tollgate/controlplane/signin"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/account"
)

type accountService struct {
	adminv1.UnimplementedAccountServiceServer
	*Server
}

var accountRoleToProto = map[account.Role]adminv1.AccountRole{
	account.RoleOwner:  adminv1.AccountRole_ACCOUNT_ROLE_OWNER,
	account.RoleAdmin:  adminv1.AccountRole_ACCOUNT_ROLE_ADMIN,
	account.RoleMember: adminv1.AccountRole_ACCOUNT_ROLE_MEMBER,
	account.RoleViewer: adminv1.AccountRole_ACCOUNT_ROLE_VIEWER,
}

func accountRoleFromProto(field string, r adminv1.AccountRole) (account.Role, error) {
	for k, v := range accountRoleToProto {
		if v == r {
			return k, nil
		}
	}
	return "", invalid.Field(field, "must be ACCOUNT_ROLE_OWNER, ACCOUNT_ROLE_ADMIN, ACCOUNT_ROLE_MEMBER or ACCOUNT_ROLE_VIEWER")
}

func accountToProto(a *ent.Account) *adminv1.Account {
	return &adminv1.Account{
		Id:                a.ID.String(),
		TenantId:          a.TenantID.String(),
		Email:             a.Email,
		Name:              a.Name,
		Role:              accountRoleToProto[a.Role],
		CreateTime:        ts(a.CreatedAt),
		UpdateTime:        ts(a.UpdatedAt),
		Restricted:        a.Restricted,
		RestrictionReason: restrictionReason(a.Restricted, a.RestrictionReason),
	}
}

// getAccount loads an account p may see; others' accounts are NotFound.
func getAccount(ctx context.Context, c *ent.AccountClient, p Principal, field, ref string) (*ent.Account, error) {
	id, err := parseID(field, ref)
	if err != nil {
		return nil, err
	}
	a, err := c.Get(ctx, id)
	if ent.IsNotFound(err) || (err == nil && !p.canSeeTenant(a.TenantID)) {
		return nil, notFound("account", ref)
	}
	return a, err
}

func (s *accountService) GetAccount(ctx context.Context, req *adminv1.GetAccountRequest) (*adminv1.GetAccountResponse, error) {
	a, err := getAccount(ctx, s.store.Client().Account, principalFrom(ctx), "id", req.GetId())
	if err != nil {
		return nil, s.toStatus(ctx, "get account", err)
	}
	return &adminv1.GetAccountResponse{Account: accountToProto(a)}, nil
}

func (s *accountService) ListAccounts(ctx context.Context, req *adminv1.ListAccountsRequest) (*adminv1.ListAccountsResponse, error) {
	p := principalFrom(ctx)
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, badRequest(err)
	}
	after, err := decodeIDToken(req.GetPageToken())
	if err != nil {
		return nil, badRequest(err)
	}
	t, err := resolveTenant(ctx, s.store.Client().Tenant, p, "tenant", req.GetTenant())
	if err != nil {
		return nil, s.toStatus(ctx, "list accounts", err)
	}
	rows, err := s.store.Client().Account.Query().
		Where(account.TenantID(t.ID), account.IDGT(after)).
		Order(ent.Asc(account.FieldID)).Limit(size + 1).All(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, "list accounts", err)
	}
	resp := &adminv1.ListAccountsResponse{}
	resp.Accounts, resp.NextPageToken = page(rows, size, accountToProto, func(a *ent.Account) string { return encodeIDToken(a.ID) })
	return resp, nil
}

func (s *accountService) CreateAccount(ctx context.Context, req *adminv1.CreateAccountRequest) (*adminv1.CreateAccountResponse, error) {
	p := principalFrom(ctx)
	in := req.GetAccount()
	if in == nil {
		return nil, badRequest(invalid.Field("account", "is required"))
	}
	role := account.RoleMember
	email, err := normalizeEmail("account.email", in.GetEmail(), true)
	errs := []error{err, checkText("account.name", in.GetName(), 200, false)}
	if in.GetRole() != adminv1.AccountRole_ACCOUNT_ROLE_UNSPECIFIED {
		role, err = accountRoleFromProto("account.role", in.GetRole())
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}
	if err := ownerCheck(p, role); err != nil {
		return nil, err
	}
	var created *ent.Account
	err = s.mutate(ctx, func(tx *ent.Tx) error {
		t, err := resolveTenant(ctx, tx.Tenant, p, "tenant", req.GetTenant())
		if err != nil {
			return err
		}
		if err := checkEmailFree(ctx, tx, t.ID, email, uuid.Nil); err != nil {
			return err
		}
		created, err = tx.Account.Create().SetTenantID(t.ID).SetEmail(email).SetName(in.GetName()).SetRole(role).Save(ctx)
		if err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "account.create", targetType: "account", targetID: created.ID, tenantID: &t.ID})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "create account", err)
	}
	return &adminv1.CreateAccountResponse{Account: accountToProto(created)}, nil
}

func checkEmailFree(ctx context.Context, tx *ent.Tx, tenantID uuid.UUID, email string, self uuid.UUID) error {
	taken, err := tx.Account.Query().Where(account.TenantID(tenantID), account.Email(email), account.IDNEQ(self)).Exist(ctx)
	if err != nil {
		return err
	}
	if taken {
		return status.Errorf(codes.AlreadyExists, "an account with e-mail %q already exists in this tenant", email)
	}
	return nil
}

func (s *accountService) UpdateAccount(ctx context.Context, req *adminv1.UpdateAccountRequest) (*adminv1.UpdateAccountResponse, error) {
	p := principalFrom(ctx)
	in := req.GetAccount()
	if in == nil {
		return nil, badRequest(invalid.Field("account", "is required"))
	}
	paths, err := maskPaths(req.GetUpdateMask(), "email", "name", "role")
	if err != nil {
		return nil, badRequest(err)
	}
	var (
		errs  []error
		email string
		role  account.Role
	)
	for _, path := range paths {
		switch path {
		case "email":
			email, err = normalizeEmail("account.email", in.GetEmail(), true)
			errs = append(errs, err)
		case "name":
			errs = append(errs, checkText("account.name", in.GetName(), 200, false))
		case "role":
			role, err = accountRoleFromProto("account.role", in.GetRole())
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}
	var updated *ent.Account
	err = s.mutate(ctx, func(tx *ent.Tx) error {
		a, err := getAccount(ctx, tx.Account, p, "account.id", in.GetId())
		if err != nil {
			return err
		}
		if !p.hasRole(account.RoleAdmin) && (a.ID != p.AccountID || slices.ContainsFunc(paths, func(path string) bool { return path != "name" })) {
			return status.Error(codes.PermissionDenied, "you may change only your own name; ask an admin of your tenant for anything else")
		}
		changes := []account.Role{a.Role}
		if slices.Contains(paths, "role") {
			changes = append(changes, role)
		}
		if a.Role == account.RoleOwner || slices.Contains(paths, "role") {
			if err := ownerCheck(p, changes...); err != nil {
				return err
			}
		}
		if slices.Contains(paths, "role") && role != account.RoleOwner {
			if err := lastOwnerCheck(ctx, tx, a); err != nil {
				return err
			}
		}
		u := tx.Account.UpdateOne(a)
		for _, path := range paths {
			switch path {
			case "email":
				if err := checkEmailFree(ctx, tx, a.TenantID, email, a.ID); err != nil {
					return err
				}
				u.SetEmail(email)
			case "name":
				u.SetName(in.GetName())
			case "role":
				u.SetRole(role)
			}
		}
		if updated, err = u.Save(ctx); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "account.update", targetType: "account", targetID: a.ID, tenantID: &a.TenantID, fields: paths})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "update account", err)
	}
	return &adminv1.UpdateAccountResponse{Account: accountToProto(updated)}, nil
}

func (s *accountService) DeleteAccount(ctx context.Context, req *adminv1.DeleteAccountRequest) (*adminv1.DeleteAccountResponse, error) {
	p := principalFrom(ctx)
	err := s.mutate(ctx, func(tx *ent.Tx) error {
		a, err := getAccount(ctx, tx.Account, p, "id", req.GetId())
		if err != nil {
			return err
		}
		if err := ownerCheck(p, a.Role); err != nil {
			return err
		}
		if err := lastOwnerCheck(ctx, tx, a); err != nil {
			return err
		}
		// Keys outlive the person who made them: they belong to the tenant.
		if err := tx.APIKey.Update().Where(apikeyOfAccount(a.ID)).ClearAccountID().Exec(ctx); err != nil {
			return err
		}
		if err := tx.Account.DeleteOne(a).Exec(ctx); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "account.delete", targetType: "account", targetID: a.ID, tenantID: &a.TenantID})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "delete account", err)
	}
	return &adminv1.DeleteAccountResponse{}, nil
}

func (s *accountService) CreatePasswordLink(ctx context.Context, req *adminv1.CreatePasswordLinkRequest) (*adminv1.CreatePasswordLinkResponse, error) {
	p := principalFrom(ctx)
	if s.sessions == nil {
		return nil, status.Error(codes.FailedPrecondition, "this control plane has no web console sessions")
	}
	a, err := getAccount(ctx, s.store.Client().Account, p, "id", req.GetId())
	if err != nil {
		return nil, s.toStatus(ctx, "create password link", err)
	}
	if err := ownerCheck(p, a.Role); err != nil {
		return nil, err
	}
	var link signin.PasswordLink
	err = s.store.InTx(ctx, func(tx *ent.Tx) error {
		var err error
		if link, err = s.sessions.IssuePasswordLinkTx(ctx, tx, a.ID); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "account.password_link", targetType: "account", targetID: a.ID, tenantID: &a.TenantID})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "create password link", err)
	}
	return &adminv1.CreatePasswordLinkResponse{Secret: link.Secret, ExpireTime: timestamppb.New(link.Expires)}, nil
}
