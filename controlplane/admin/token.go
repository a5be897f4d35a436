package admin

import (
	"context"
	"errors"
	"fmt"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/invalid"
	"github.com/tollgate-dev/tollgate/controlplane/notify"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/admintoken"
)

type tokenService struct {
	adminv1.UnimplementedTokenServiceServer
	*Server
}

func adminTokenToProto(t *ent.AdminToken) *adminv1.AdminToken {
	return &adminv1.AdminToken{
		Id:         t.ID.String(),
		TenantId:   t.TenantID.String(),
		Name:       t.Name,
		Prefix:     t.Prefix,
		ExpireTime: tsp(t.ExpiresAt),
		RevokeTime: tsp(t.RevokedAt),
		CreateTime: ts(t.CreatedAt),
	}
}

func (s *tokenService) ListAdminTokens(ctx context.Context, req *adminv1.ListAdminTokensRequest) (*adminv1.ListAdminTokensResponse, error) {
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
		return nil, s.toStatus(ctx, "list admin tokens", err)
	}
	q := s.store.Client().AdminToken.Query().
		Where(admintoken.TenantID(t.ID), admintoken.IDGT(after)).
		Order(ent.Asc(admintoken.FieldID)).Limit(size + 1)
	if !req.GetIncludeRevoked() {
		q.Where(admintoken.RevokedAtIsNil())
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, "list admin tokens", err)
	}
	resp := &adminv1.ListAdminTokensResponse{}
	resp.AdminTokens, resp.NextPageToken = page(rows, size, adminTokenToProto, func(tok *ent.AdminToken) string { return encodeIDToken(tok.ID) })
	return resp, nil
}

func (s *tokenService) CreateAdminToken(ctx context.Context, req *adminv1.CreateAdminTokenRequest) (*adminv1.CreateAdminTokenResponse, error) {
	p := principalFrom(ctx)
	in := req.GetAdminToken()
	if in == nil {
		return nil, badRequest(invalid.Field("admin_token", "is required"))
	}
	expires, err := futureTime("admin_token.expire_time", in.GetExpireTime(), s.clock())
	if err := errors.Join(err, checkText("admin_token.name", in.GetName(), 200, true)); err != nil {
		return nil, badRequest(err)
	}
	sec, err := secret.New(secret.AdminToken)
	if err != nil {
		return nil, s.toStatus(ctx, "create admin token", fmt.Errorf("generating the token: %w", err))
	}
	var created *ent.AdminToken
	err = s.mutate(ctx, func(tx *ent.Tx) error {
		t, err := resolveTenant(ctx, tx.Tenant, p, "tenant", req.GetTenant())
		if err != nil {
			return err
		}
		created, err = tx.AdminToken.Create().
			SetTenantID(t.ID).
			SetName(in.GetName()).
			SetPrefix(sec.Prefix).
			SetHash(sec.Hash).
			SetNillableExpiresAt(expires).
			Save(ctx)
		if err != nil {
			return err
		}
		if err := record(ctx, tx, p, event{action: "admin_token.create", targetType: "admin_token", targetID: created.ID, tenantID: &t.ID}); err != nil {
			return err
		}
		return notify.Enqueue(ctx, tx, notify.Event{Type: notify.TypeAdminTokenCreated, TenantID: t.ID, Data: adminTokenNotice(created, p)})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "create admin token", err)
	}
	return &adminv1.CreateAdminTokenResponse{AdminToken: adminTokenToProto(created), Secret: sec.Plaintext}, nil
}

func (s *tokenService) RevokeAdminToken(ctx context.Context, req *adminv1.RevokeAdminTokenRequest) (*adminv1.RevokeAdminTokenResponse, error) {
	p := principalFrom(ctx)
	var revoked *ent.AdminToken
	err := s.mutate(ctx, func(tx *ent.Tx) error {
		id, err := parseID("id", req.GetId())
		if err != nil {
			return err
		}
		t, err := tx.AdminToken.Get(ctx, id)
		if ent.IsNotFound(err) || (err == nil && !p.canSeeTenant(t.TenantID)) {
			return notFound("admin token", req.GetId())
		}
		if err != nil {
			return err
		}
		if t.RevokedAt != nil {
			revoked = t
			return nil
		}
		if revoked, err = tx.AdminToken.UpdateOne(t).SetRevokedAt(s.clock()).Save(ctx); err != nil {
			return err
		}
		if err := record(ctx, tx, p, event{action: "admin_token.revoke", targetType: "admin_token", targetID: t.ID, tenantID: &t.TenantID}); err != nil {
			return err
		}
		return notify.Enqueue(ctx, tx, notify.Event{Type: notify.TypeAdminTokenRevoked, TenantID: t.TenantID, Data: adminTokenNotice(revoked, p)})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "revoke admin token", err)
	}
	return &adminv1.RevokeAdminTokenResponse{AdminToken: adminTokenToProto(revoked)}, nil
}

// adminTokenNotice describes an admin token in a security notice: which
// token (never its secret) and who acted.
func adminTokenNotice(t *ent.AdminToken, p Principal) map[string]any {
	return map[string]any{"admin_token_id": t.ID.String(), "name": t.Name, "prefix": t.Prefix, "actor": p.Actor()}
}
