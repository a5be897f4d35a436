package privacy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/controlplane/contentlog"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/account"
	"github.com/tollgate-dev/tollgate/ent/apikey"
	entcontentlog "github.com/tollgate-dev/tollgate/ent/contentlog"
	"github.com/tollgate-dev/tollgate/ent/invoice"
	"github.com/tollgate-dev/tollgate/ent/notification"
	"github.com/tollgate-dev/tollgate/ent/notificationendpoint"
	"github.com/tollgate-dev/tollgate/ent/tenant"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
)

// Erasure in two steps. EraseTx runs inside the caller's transaction (the
// admin API's, with its audit event): it destroys the tenant's data key or
// deletes the account's keys, and deletes or blanks every row that names
// the subject, so that from its commit on nothing in the store identifies
// the subject and no content of it can be read. Finish then deletes the
// subject's now unreadable or orphaned content in bounded batches; the
// erasure is reported complete only after it. privacy.purge deletes the
// same rows if a crash comes between the two.

// ErrNotFound means the subject does not exist (any more).
var ErrNotFound = errors.New("privacy: no such subject")

// Erased is what EraseTx did, for Finish and for the caller's answer.
type Erased struct {
	Subject  Subject
	Accounts int
	Keys     []uuid.UUID
	// ContentShredded: the tenant's data key was destroyed.
	ContentShredded bool
	ContentDeleted  int
	InvoicesBlanked int
}

// EraseTx erases subj in tx.
func EraseTx(ctx context.Context, tx *ent.Tx, subj Subject) (*Erased, error) {
	if subj.IsAccount() {
		return eraseAccount(ctx, tx, subj)
	}
	return eraseTenant(ctx, tx, subj)
}

func eraseTenant(ctx context.Context, tx *ent.Tx, subj Subject) (*Erased, error) {
	t, err := tx.Tenant.Get(ctx, subj.TenantID)
	if ent.IsNotFound(err) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	out := &Erased{Subject: subj}
	if out.ContentShredded, err = contentlog.Shred(ctx, tx, t.ID); err != nil {
		return nil, err
	}
	if out.Keys, err = tx.APIKey.Query().Where(apikey.TenantID(t.ID)).IDs(ctx); err != nil {
		return nil, err
	}
	if out.Accounts, err = tx.Account.Query().Where(account.TenantID(t.ID)).Count(ctx); err != nil {
		return nil, err
	}
	// Invoices stay for the legal period, without the billing contact.
	if out.InvoicesBlanked, err = tx.Invoice.Update().Where(invoice.TenantID(t.ID)).
		SetBillingName("").SetBillingEmail("").SetBillingReference("").Save(ctx); err != nil {
		return nil, fmt.Errorf("blanking invoices: %w", err)
	}
	if _, err := tx.Notification.Delete().Where(notification.TenantID(t.ID)).Exec(ctx); err != nil {
		return nil, fmt.Errorf("deleting notifications: %w", err)
	}
	// The tenant's row takes with it (foreign keys, ON DELETE CASCADE) its
	// accounts with their sessions and password links, keys with their
	// policies, admin tokens, policy, providers, models, notification
	// endpoints and data key.
	if err := tx.Tenant.DeleteOne(t).Exec(ctx); err != nil {
		return nil, fmt.Errorf("deleting the tenant: %w", err)
	}
	return out, nil
}

func eraseAccount(ctx context.Context, tx *ent.Tx, subj Subject) (*Erased, error) {
	a, err := tx.Account.Get(ctx, subj.AccountID)
	if ent.IsNotFound(err) || (err == nil && a.TenantID != subj.TenantID) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	out := &Erased{Subject: subj, Accounts: 1}
	keys, err := tx.APIKey.Query().Where(apikey.AccountID(a.ID)).All(ctx)
	if err != nil {
		return nil, err
	}
	marks := [][]byte{[]byte(a.Email), []byte(a.ID.String())}
	if a.Name != "" {
		marks = append(marks, []byte(a.Name))
	}
	for _, k := range keys {
		out.Keys = append(out.Keys, k.ID)
		marks = append(marks, []byte(k.Prefix))
	}
	// Deleting the keys revokes them: the data plane drops them with the
	// next configuration update, within about a second.
	if _, err := tx.APIKey.Delete().Where(apikey.IDIn(out.Keys...)).Exec(ctx); err != nil {
		return nil, fmt.Errorf("deleting the account's keys: %w", err)
	}
	if _, err := tx.Tenant.Update().Where(tenant.ID(a.TenantID), tenant.BillingEmail(a.Email)).SetBillingEmail("").Save(ctx); err != nil {
		return nil, fmt.Errorf("clearing the billing e-mail: %w", err)
	}
	if err := removeRecipient(ctx, tx, a.TenantID, a.Email); err != nil {
		return nil, err
	}
	if err := deleteNotificationsNaming(ctx, tx, a.TenantID, marks); err != nil {
		return nil, err
	}
	if err := tx.Account.DeleteOne(a).Exec(ctx); err != nil {
		return nil, fmt.Errorf("deleting the account: %w", err)
	}
	return out, nil
}

// removeRecipient takes an e-mail address off the tenant's e-mail endpoints.
func removeRecipient(ctx context.Context, tx *ent.Tx, tenantID uuid.UUID, email string) error {
	eps, err := tx.NotificationEndpoint.Query().Where(notificationendpoint.TenantID(tenantID)).All(ctx)
	if err != nil {
		return fmt.Errorf("reading notification endpoints: %w", err)
	}
	for _, ep := range eps {
		kept := slices.DeleteFunc(slices.Clone(ep.EmailRecipients), func(r string) bool { return strings.EqualFold(r, email) })
		if len(kept) == len(ep.EmailRecipients) {
			continue
		}
		if err := tx.NotificationEndpoint.UpdateOne(ep).SetEmailRecipients(kept).Exec(ctx); err != nil {
			return fmt.Errorf("updating notification endpoint %s: %w", ep.ID, err)
		}
	}
	return nil
}

// deleteNotificationsNaming deletes the tenant's notifications whose data
// mentions the account (its e-mail, name, id or a key prefix), page by page.
func deleteNotificationsNaming(ctx context.Context, tx *ent.Tx, tenantID uuid.UUID, marks [][]byte) error {
	var last uuid.UUID
	for {
		page, err := tx.Notification.Query().Where(notification.TenantID(tenantID), notification.IDGT(last)).
			Order(ent.Asc(notification.FieldID)).Limit(ExportPageSize).All(ctx)
		if err != nil {
			return fmt.Errorf("reading notifications: %w", err)
		}
		var doomed []uuid.UUID
		for _, n := range page {
			if slices.ContainsFunc(marks, func(m []byte) bool { return bytes.Contains(n.Data, m) }) {
				doomed = append(doomed, n.ID)
			}
		}
		if len(doomed) > 0 {
			if _, err := tx.Notification.Delete().Where(notification.IDIn(doomed...)).Exec(ctx); err != nil {
				return fmt.Errorf("deleting notifications: %w", err)
			}
		}
		if len(page) < ExportPageSize {
			return nil
		}
		last = page[len(page)-1].ID
	}
}

// Finish deletes the erased subject's content in batches of at most batch
// rows; it returns how many it deleted.
func Finish(ctx context.Context, st *store.Store, e *Erased, batch int) (int, error) {
	pred := entcontentlog.TenantID(e.Subject.TenantID)
	if e.Subject.IsAccount() {
		if len(e.Keys) == 0 {
			return 0, nil
		}
		pred = entcontentlog.APIKeyIDIn(e.Keys...)
	}
	total := 0
	for {
		var n int
		err := st.InTx(ctx, func(tx *ent.Tx) (err error) {
			n, err = deleteContent(ctx, tx, pred, batch)
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < batch {
			e.ContentDeleted = total
			return total, nil
		}
	}
}

// Plan is what erasing a subject would remove, for the confirmation step.
type Plan struct {
	Accounts, Keys, ContentLogs, UsageRecords, Invoices int
}

// PlanErasure counts what erasing subj would touch.
func PlanErasure(ctx context.Context, c *ent.Client, subj Subject) (Plan, error) {
	var p Plan
	var err error
	if subj.IsAccount() {
		a, err := c.Account.Get(ctx, subj.AccountID)
		if ent.IsNotFound(err) || (err == nil && a.TenantID != subj.TenantID) {
			return p, ErrNotFound
		}
		if err != nil {
			return p, err
		}
		p.Accounts = 1
		keys, err := c.APIKey.Query().Where(apikey.AccountID(a.ID)).IDs(ctx)
		if err != nil {
			return p, err
		}
		p.Keys = len(keys)
		if len(keys) > 0 {
			if p.ContentLogs, err = c.ContentLog.Query().Where(entcontentlog.APIKeyIDIn(keys...)).Count(ctx); err != nil {
				return p, err
			}
			if p.UsageRecords, err = c.UsageRecord.Query().Where(usagerecord.APIKeyIDIn(keys...)).Count(ctx); err != nil {
				return p, err
			}
		}
		return p, nil
	}
	if ok, err := c.Tenant.Query().Where(tenant.ID(subj.TenantID)).Exist(ctx); err != nil || !ok {
		if err == nil {
			err = ErrNotFound
		}
		return p, err
	}
	if p.Accounts, err = c.Account.Query().Where(account.TenantID(subj.TenantID)).Count(ctx); err != nil {
		return p, err
	}
	if p.Keys, err = c.APIKey.Query().Where(apikey.TenantID(subj.TenantID)).Count(ctx); err != nil {
		return p, err
	}
	if p.ContentLogs, err = c.ContentLog.Query().Where(entcontentlog.TenantID(subj.TenantID)).Count(ctx); err != nil {
		return p, err
	}
	if p.UsageRecords, err = c.UsageRecord.Query().Where(usagerecord.TenantID(subj.TenantID)).Count(ctx); err != nil {
		return p, err
	}
	p.Invoices, err = c.Invoice.Query().Where(invoice.TenantID(subj.TenantID)).Count(ctx)
	return p, err
}

// Confirmations issues and checks erasure confirmation tokens: short-lived,
// bound to one subject and one caller, sealed with the master key so that
// any control-plane replica can check them and nobody can forge one.
type Confirmations struct {
	ring *keyring.Keyring
	ttl  time.Duration
	now  func() time.Time
}

// ConfirmationTTL is how long a confirmation token is valid.
const ConfirmationTTL = 10 * time.Minute

// NewConfirmations returns token handling sealed by ring; now may be nil.
func NewConfirmations(ring *keyring.Keyring, now func() time.Time) *Confirmations {
	if now == nil {
		now = time.Now
	}
	return &Confirmations{ring: ring, ttl: ConfirmationTTL, now: now}
}

const tokenPrefix = "tgerase-"

var tokenAD = []byte("privacy-erasure-confirmation")

type tokenBody struct {
	Tenant  uuid.UUID `json:"t"`
	Account uuid.UUID `json:"a"`
	Caller  string    `json:"c"`
	Expires int64     `json:"e"`
}

// Issue returns a token that confirms erasing subj, for caller only.
func (c *Confirmations) Issue(subj Subject, caller string) (string, time.Time, error) {
	exp := c.now().Add(c.ttl).Truncate(time.Second)
	b, err := json.Marshal(tokenBody{Tenant: subj.TenantID, Account: subj.AccountID, Caller: caller, Expires: exp.Unix()})
	if err != nil {
		return "", time.Time{}, err
	}
	sealed, err := c.ring.Seal(b, tokenAD)
	if err != nil {
		return "", time.Time{}, err
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(sealed), exp, nil
}

// Token errors, for a precise message to the caller.
var (
	ErrTokenInvalid  = errors.New("is not a confirmation token issued by this gateway; ask for one with PrepareErasure")
	ErrTokenExpired  = errors.New("has expired; ask for a new one with PrepareErasure")
	ErrTokenMismatch = errors.New("was issued for another subject or another caller; ask for one for this subject with PrepareErasure")
)

// Check verifies that token confirms erasing subj by caller.
func (c *Confirmations) Check(token string, subj Subject, caller string) error {
	raw, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return ErrTokenInvalid
	}
	sealed, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil {
		return ErrTokenInvalid
	}
	plain, err := c.ring.Open(sealed, tokenAD)
	if err != nil {
		return ErrTokenInvalid
	}
	var b tokenBody
	if err := json.Unmarshal(plain, &b); err != nil {
		return ErrTokenInvalid
	}
	if b.Tenant != subj.TenantID || b.Account != subj.AccountID || b.Caller != caller {
		return ErrTokenMismatch
	}
	if !c.now().Before(time.Unix(b.Expires, 0)) {
		return ErrTokenExpired
	}
	return nil
}
