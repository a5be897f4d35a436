// Package contentlog keeps the request and response bodies of tenants whose
// policy retains content (retention full), sealed with a per-tenant data key
// that is itself sealed by the master key (envelope encryption).
//
// Each tenant has at most one data key (a DataKey row): 32 random bytes,
// stored only as a keyring-sealed value bound to the row and its tenant. A
// ContentLog row's bodies are one value sealed by that key, bound to its
// tenant and request id. Destroying the tenant's data key (Shred) makes every
// copy of its content unreadable, wherever it was copied (crypto-shredding);
// docs/privacy.md says what that requires of backups.
package contentlog

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/datakey"
)

// ErrNoDataKey means the tenant has no data key: it never kept content, or
// it was erased and its content can no longer be read.
var ErrNoDataKey = errors.New("contentlog: the tenant has no data key (never kept content, or erased)")

// Vault opens and creates tenants' data keys with the master keyring.
type Vault struct{ master *keyring.Keyring }

// NewVault returns a Vault that seals data keys with master's active key.
func NewVault(master *keyring.Keyring) (*Vault, error) {
	if master == nil {
		return nil, errors.New("contentlog: a master keyring is required")
	}
	return &Vault{master: master}, nil
}

// DataKey is one tenant's opened data key.
type DataKey struct {
	ID       uuid.UUID
	TenantID uuid.UUID
	ring     *keyring.Keyring
}

// String never shows key material.
func (k *DataKey) String() string { return "contentlog.DataKey{" + k.ID.String() + "}" }

// wrapAD binds a sealed data key to its row and tenant: a wrapped key copied
// into another tenant's row does not open there.
func wrapAD(id, tenantID uuid.UUID) []byte {
	return []byte("data-key:" + id.String() + ":" + tenantID.String())
}

// contentAD binds sealed content to its tenant and request.
func contentAD(tenantID uuid.UUID, requestID string) []byte {
	return []byte("content-log:" + tenantID.String() + ":" + requestID)
}

// ringID is the keyring id of a data key: its UUID's 32 hex digits, which
// the keyring's id alphabet allows.
func ringID(id uuid.UUID) string {
	b, _ := id.MarshalText()
	out := make([]byte, 0, 32)
	for _, c := range b {
		if c != '-' {
			out = append(out, c)
		}
	}
	return string(out)
}

// open unwraps a stored data key.
func (v *Vault) open(row *ent.DataKey) (*DataKey, error) {
	secret, err := v.master.Open(row.Wrapped, wrapAD(row.ID, row.TenantID))
	if err != nil {
		return nil, fmt.Errorf("opening the data key of tenant %s: %w", row.TenantID, err)
	}
	ring, err := keyring.New(keyring.Key{ID: ringID(row.ID), Secret: secret})
	clear(secret)
	if err != nil {
		return nil, fmt.Errorf("data key of tenant %s: %w", row.TenantID, err)
	}
	return &DataKey{ID: row.ID, TenantID: row.TenantID, ring: ring}, nil
}

// Lookup opens the tenant's data key, or returns ErrNoDataKey.
func (v *Vault) Lookup(ctx context.Context, c *ent.DataKeyClient, tenantID uuid.UUID) (*DataKey, error) {
	row, err := c.Query().Where(datakey.TenantID(tenantID)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, ErrNoDataKey
	}
	if err != nil {
		return nil, fmt.Errorf("reading the data key of tenant %s: %w", tenantID, err)
	}
	return v.open(row)
}

// ForTenant opens the tenant's data key, creating it on first use. It must
// run in a transaction that the store retries: two replicas creating the
// same tenant's key at once conflict, and the retry finds the winner's.
func (v *Vault) ForTenant(ctx context.Context, tx *ent.Tx, tenantID uuid.UUID) (*DataKey, error) {
	k, err := v.Lookup(ctx, tx.DataKey, tenantID)
	if !errors.Is(err, ErrNoDataKey) {
		return k, err
	}
	secret := make([]byte, keyring.SecretSize)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	defer clear(secret)
	id := uuid.New()
	wrapped, err := v.master.Seal(secret, wrapAD(id, tenantID))
	if err != nil {
		return nil, fmt.Errorf("sealing a data key: %w", err)
	}
	// Bulk, so that ON CONFLICT DO NOTHING without a row is not an error.
	err = tx.DataKey.CreateBulk(tx.DataKey.Create().
		SetID(id).SetTenantID(tenantID).SetWrapped(wrapped).SetMasterKeyID(v.master.ActiveID())).
		OnConflict(entsql.ConflictColumns(datakey.FieldTenantID), entsql.DoNothing()).
		Exec(ctx)
	if err != nil {
		return nil, fmt.Errorf("storing the data key of tenant %s: %w", tenantID, err)
	}
	return v.Lookup(ctx, tx.DataKey, tenantID)
}

// Shred destroys the tenant's data key: from the commit on, no copy of its
// content can be decrypted with what the store holds. It reports whether
// there was a key.
func Shred(ctx context.Context, tx *ent.Tx, tenantID uuid.UUID) (bool, error) {
	n, err := tx.DataKey.Delete().Where(datakey.TenantID(tenantID)).Exec(ctx)
	if err != nil {
		return false, fmt.Errorf("destroying the data key of tenant %s: %w", tenantID, err)
	}
	return n > 0, nil
}

// Rewrap seals every data key still sealed by a master key other than the
// active one with the active one, at most limit keys per call; it returns
// how many it rewrapped. After a master key rotation this is what lets the
// old master key be retired (docs/security.md), and with it, the data keys
// of erased tenants that old backups still hold.
func (v *Vault) Rewrap(ctx context.Context, tx *ent.Tx, limit int) (int, error) {
	rows, err := tx.DataKey.Query().Where(datakey.MasterKeyIDNEQ(v.master.ActiveID())).Limit(limit).All(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading data keys to rewrap: %w", err)
	}
	for _, row := range rows {
		ad := wrapAD(row.ID, row.TenantID)
		secret, err := v.master.Open(row.Wrapped, ad)
		if err != nil {
			return 0, fmt.Errorf("opening the data key of tenant %s: %w", row.TenantID, err)
		}
		wrapped, err := v.master.Seal(secret, ad)
		clear(secret)
		if err != nil {
			return 0, err
		}
		if err := tx.DataKey.UpdateOne(row).SetWrapped(wrapped).SetMasterKeyID(v.master.ActiveID()).Exec(ctx); err != nil {
			return 0, fmt.Errorf("rewrapping the data key of tenant %s: %w", row.TenantID, err)
		}
	}
	return len(rows), nil
}

// Seal encrypts a request's content for its tenant.
func (k *DataKey) Seal(requestID string, c *usagev1.Content) ([]byte, error) {
	plain, err := proto.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding content: %w", err)
	}
	defer clear(plain)
	return k.ring.Seal(plain, contentAD(k.TenantID, requestID))
}

// Open decrypts a stored row's content.
func (k *DataKey) Open(row *ent.ContentLog) (*usagev1.Content, error) {
	if row.TenantID != k.TenantID || row.DataKeyID != k.ID {
		return nil, fmt.Errorf("%w: content of request %s was sealed by data key %s, not %s", keyring.ErrDecrypt, row.RequestID, row.DataKeyID, k.ID)
	}
	plain, err := k.ring.Open(row.Sealed, contentAD(row.TenantID, row.RequestID))
	if err != nil {
		return nil, fmt.Errorf("content of request %s: %w", row.RequestID, err)
	}
	c := &usagev1.Content{}
	if err := proto.Unmarshal(plain, c); err != nil {
		return nil, fmt.Errorf("content of request %s: %w", row.RequestID, err)
	}
	return c, nil
}
