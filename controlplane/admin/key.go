package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/invalid"
	"github.com/tollgate-dev/tollgate/controlplane/notify"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/account"
	"github.com/tollgate-dev/tollgate/ent/apikey"
	"github.com/tollgate-dev/tollgate/ent/predicate"
)

type keyService struct {
	adminv1.UnimplementedKeyServiceServer
	*Server
}

func apikeyOfAccount(id uuid.UUID) predicate.APIKey { return apikey.AccountID(id) }

func keyToProto(k *ent.APIKey) *adminv1.Key {
	out := &adminv1.Key{
		Id:            k.ID.String(),
		TenantId:      k.TenantID.String(),
		Name:          k.Name,
		Prefix:        k.Prefix,
		AllowedModels: k.AllowedModels,
		ExpireTime:    tsp(k.ExpiresAt),
		RevokeTime:    tsp(k.RevokedAt),
		LastUsedTime:  tsp(k.LastUsedAt),
		CreateTime:    ts(k.CreatedAt),
	}
	if k.AccountID != nil {
		out.AccountId = k.AccountID.String()
	}
	return out
}

// getKey loads a key p may see; other tenants' keys are NotFound.
func getKey(ctx context.Context, c *ent.APIKeyClient, p Principal, field, ref string) (*ent.APIKey, error) {
	id, err := parseID(field, ref)
	if err != nil {
		return nil, err
	}
	k, err := c.Get(ctx, id)
	if ent.IsNotFound(err) || (err == nil && !p.canSeeTenant(k.TenantID)) {
		return nil, notFound("key", ref)
	}
	return k, err
}

func checkModelNames(field string, names []string) error {
	var errs []error
	seen := map[string]bool{}
	for i, n := range names {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := checkText(f, n, 200, true); err != nil {
			errs = append(errs, err)
		} else if seen[n] {
			errs = append(errs, invalid.Field(f, "%q is listed twice", n))
		}
		seen[n] = true
	}
	return errors.Join(errs...)
}

// checkKeyAccount makes sure an account named on a key is in the key's tenant.
func checkKeyAccount(ctx context.Context, tx *ent.Tx, tenantID uuid.UUID, field, ref string) (*uuid.UUID, error) {
	if ref == "" {
		return nil, nil
	}
	id, err := parseID(field, ref)
	if err != nil {
		return nil, err
	}
	a, err := tx.Account.Get(ctx, id)
	if ent.IsNotFound(err) || (err == nil && a.TenantID != tenantID) {
		return nil, invalid.Field(field, "no account %q in this tenant", ref)
	}
	if err != nil {
		return nil, err
	}
	return &a.ID, nil
}

func (s *keyService) GetKey(ctx context.Context, req *adminv1.GetKeyRequest) (*adminv1.GetKeyResponse, error) {
	k, err := getKey(ctx, s.store.Client().APIKey, principalFrom(ctx), "id", req.GetId())
	if err != nil {
		return nil, s.toStatus(ctx, "get key", err)
	}
	return &adminv1.GetKeyResponse{Key: keyToProto(k)}, nil
}

func (s *keyService) ListKeys(ctx context.Context, req *adminv1.ListKeysRequest) (*adminv1.ListKeysResponse, error) {
	p := principalFrom(ctx)
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, badRequest(err)
	}
	after, err := decodeIDToken(req.GetPageToken())
	if err != nil {
		return nil, badRequest(err)
	}
	q := s.store.Client().APIKey.Query().Where(apikey.IDGT(after)).Order(ent.Asc(apikey.FieldID)).Limit(size + 1)
	switch {
	case req.GetTenant() != "":
		t, err := resolveTenant(ctx, s.store.Client().Tenant, p, "tenant", req.GetTenant())
		if err != nil {
			return nil, s.toStatus(ctx, "list keys", err)
		}
		q.Where(apikey.TenantID(t.ID))
	case !p.Operator:
		q.Where(apikey.TenantID(p.TenantID))
	}
	if !req.GetIncludeRevoked() {
		q.Where(apikey.RevokedAtIsNil())
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, "list keys", err)
	}
	resp := &adminv1.ListKeysResponse{}
	resp.Keys, resp.NextPageToken = page(rows, size, keyToProto, func(k *ent.APIKey) string { return encodeIDToken(k.ID) })
	return resp, nil
}

func (s *keyService) CreateKey(ctx context.Context, req *adminv1.CreateKeyRequest) (*adminv1.CreateKeyResponse, error) {
	p := principalFrom(ctx)
	in := req.GetKey()
	if in == nil {
		return nil, badRequest(invalid.Field("key", "is required"))
	}
	expires, err := futureTime("key.expire_time", in.GetExpireTime(), s.clock())
	errs := []error{
		err,
		checkText("key.name", in.GetName(), 200, true),
		checkModelNames("key.allowed_models", in.GetAllowedModels()),
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}
	sec, err := secret.New(secret.APIKey)
	if err != nil {
		return nil, s.toStatus(ctx, "create key", fmt.Errorf("generating the key: %w", err))
	}
	var created *ent.APIKey
	err = s.mutate(ctx, func(tx *ent.Tx) error {
		t, err := resolveTenant(ctx, tx.Tenant, p, "tenant", req.GetTenant())
		if err != nil {
			return err
		}
		accountID, err := checkKeyAccount(ctx, tx, t.ID, "key.account_id", in.GetAccountId())
		if err != nil {
			return err
		}
		if !p.hasRole(account.RoleAdmin) {
			// A member's keys are their own.
			if accountID != nil && *accountID != p.AccountID {
				return status.Error(codes.PermissionDenied, "members may create keys only for themselves")
			}
			accountID = &p.AccountID
		}
		c := tx.APIKey.Create().
			SetTenantID(t.ID).
			SetName(in.GetName()).
			SetPrefix(sec.Prefix).
			SetHash(sec.Hash).
			SetNillableExpiresAt(expires).
			SetNillableAccountID(accountID)
		if len(in.GetAllowedModels()) > 0 {
			c.SetAllowedModels(in.GetAllowedModels())
		}
		if created, err = c.Save(ctx); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "key.create", targetType: "key", targetID: created.ID, tenantID: &t.ID})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "create key", err)
	}
	return &adminv1.CreateKeyResponse{Key: keyToProto(created), Secret: sec.Plaintext}, nil
}

func (s *keyService) UpdateKey(ctx context.Context, req *adminv1.UpdateKeyRequest) (*adminv1.UpdateKeyResponse, error) {
	p := principalFrom(ctx)
	in := req.GetKey()
	if in == nil {
		return nil, badRequest(invalid.Field("key", "is required"))
	}
	paths, err := maskPaths(req.GetUpdateMask(), "name", "allowed_models", "expire_time", "account_id")
	if err != nil {
		return nil, badRequest(err)
	}
	var (
		errs    []error
		expires *timeValue
	)
	for _, path := range paths {
		switch path {
		case "name":
			errs = append(errs, checkText("key.name", in.GetName(), 200, true))
		case "allowed_models":
			errs = append(errs, checkModelNames("key.allowed_models", in.GetAllowedModels()))
		case "expire_time":
			t, err := futureTime("key.expire_time", in.GetExpireTime(), s.clock())
			errs = append(errs, err)
			expires = &timeValue{t}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}
	var updated *ent.APIKey
	err = s.mutate(ctx, func(tx *ent.Tx) error {
		k, err := getKey(ctx, tx.APIKey, p, "key.id", in.GetId())
		if err != nil {
			return err
		}
		if err := keyOwnerCheck(p, k.AccountID); err != nil {
			return err
		}
		if slices.Contains(paths, "account_id") && !p.hasRole(account.RoleAdmin) {
			return status.Error(codes.PermissionDenied, "only an admin may give a key to another account")
		}
		if k.RevokedAt != nil {
			return status.Error(codes.FailedPrecondition, "the key is revoked; create a new key instead")
		}
		u := tx.APIKey.UpdateOne(k)
		for _, path := range paths {
			switch path {
			case "name":
				u.SetName(in.GetName())
			case "allowed_models":
				if len(in.GetAllowedModels()) == 0 {
					u.ClearAllowedModels()
				} else {
					u.SetAllowedModels(in.GetAllowedModels())
				}
			case "expire_time":
				if expires.t == nil {
					u.ClearExpiresAt()
				} else {
					u.SetExpiresAt(*expires.t)
				}
			case "account_id":
				accountID, err := checkKeyAccount(ctx, tx, k.TenantID, "key.account_id", in.GetAccountId())
				if err != nil {
					return err
				}
				if accountID == nil {
					u.ClearAccountID()
				} else {
					u.SetAccountID(*accountID)
				}
			}
		}
		if updated, err = u.Save(ctx); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "key.update", targetType: "key", targetID: k.ID, tenantID: &k.TenantID, fields: paths})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "update key", err)
	}
	return &adminv1.UpdateKeyResponse{Key: keyToProto(updated)}, nil
}

func (s *keyService) RevokeKey(ctx context.Context, req *adminv1.RevokeKeyRequest) (*adminv1.RevokeKeyResponse, error) {
	p := principalFrom(ctx)
	var revoked *ent.APIKey
	err := s.mutate(ctx, func(tx *ent.Tx) error {
		k, err := getKey(ctx, tx.APIKey, p, "id", req.GetId())
		if err != nil {
			return err
		}
		if err := keyOwnerCheck(p, k.AccountID); err != nil {
			return err
		}
		if k.RevokedAt != nil {
			// Revoking twice is harmless; the first time stands.
			revoked = k
			return nil
		}
		if revoked, err = tx.APIKey.UpdateOne(k).SetRevokedAt(s.clock()).Save(ctx); err != nil {
			return err
		}
		if err := record(ctx, tx, p, event{action: "key.revoke", targetType: "key", targetID: k.ID, tenantID: &k.TenantID}); err != nil {
			return err
		}
		if !p.Operator {
			return nil // a tenant's own revocation is no news to it
		}
		return notify.Enqueue(ctx, tx, notify.Event{Type: notify.TypeKeyRevokedByOperator, TenantID: k.TenantID,
			Data: map[string]any{"key_id": k.ID.String(), "key_name": k.Name, "key_prefix": k.Prefix, "actor": p.Actor()}})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "revoke key", err)
	}
	return &adminv1.RevokeKeyResponse{Key: keyToProto(revoked)}, nil
}

func (s *keyService) RotateKey(ctx context.Context, req *adminv1.RotateKeyRequest) (*adminv1.RotateKeyResponse, error) {
	p := principalFrom(ctx)
	sec, err := secret.New(secret.APIKey)
	if err != nil {
		return nil, s.toStatus(ctx, "rotate key", fmt.Errorf("generating the key: %w", err))
	}
	var rotated *ent.APIKey
	err = s.mutate(ctx, func(tx *ent.Tx) error {
		k, err := getKey(ctx, tx.APIKey, p, "id", req.GetId())
		if err != nil {
			return err
		}
		if err := keyOwnerCheck(p, k.AccountID); err != nil {
			return err
		}
		if k.RevokedAt != nil {
			return status.Error(codes.FailedPrecondition, "the key is revoked; create a new key instead")
		}
		if rotated, err = tx.APIKey.UpdateOne(k).SetPrefix(sec.Prefix).SetHash(sec.Hash).Save(ctx); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "key.rotate", targetType: "key", targetID: k.ID, tenantID: &k.TenantID})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "rotate key", err)
	}
	return &adminv1.RotateKeyResponse{Key: keyToProto(rotated), Secret: sec.Plaintext}, nil
}

func (s *keyService) DeleteKey(ctx context.Context, req *adminv1.DeleteKeyRequest) (*adminv1.DeleteKeyResponse, error) {
	p := principalFrom(ctx)
	err := s.mutate(ctx, func(tx *ent.Tx) error {
		k, err := getKey(ctx, tx.APIKey, p, "id", req.GetId())
		if err != nil {
			return err
		}
		if err := keyOwnerCheck(p, k.AccountID); err != nil {
			return err
		}
		if err := tx.APIKey.DeleteOne(k).Exec(ctx); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "key.delete", targetType: "key", targetID: k.ID, tenantID: &k.TenantID})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "delete key", err)
	}
	return &adminv1.DeleteKeyResponse{}, nil
}
