// Package notify tells tenants about events that concern them — a budget's
// soft limit crossed or its hard limit reached, a key about to expire, an
// invoice issued, security notices — by signed webhooks and by e-mail
// (docs/notifications.md).
//
// It is an outbox. Enqueue writes one Notification row per interested
// endpoint inside the transaction of the change that caused the event, so an
// event is recorded exactly when its cause commits, whichever replica made
// the change, and never twice for one change. Deliverer.Run, a leased
// background job, then delivers due rows in bounded batches, retrying with
// exponential back-off and jitter until a maximum age. Delivery is at least
// once: a replica that dies between sending and recording sends again, with
// the same delivery id, which receivers use to drop the duplicate.
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/notification"
	"github.com/tollgate-dev/tollgate/ent/notificationendpoint"
)

// Event types. Endpoints subscribe to some of them, or to all (Types).
const (
	// TypeBudgetSoftLimit: a budget's settled spend reached its soft limit
	// (once per budget window).
	TypeBudgetSoftLimit = "budget.soft_limit_reached"
	// TypeBudgetExhausted: a budget's hard limit left less than a waiting
	// request needed, so requests are being refused (once per window).
	TypeBudgetExhausted = "budget.exhausted"
	// TypeKeyExpiring: an API key expires within a warning threshold (once
	// per key, expiry time and threshold).
	TypeKeyExpiring = "key.expiring"
	// TypeInvoiceIssued: an invoice was issued to the tenant.
	TypeInvoiceIssued = "invoice.issued"
	// TypeAdminTokenCreated: someone was given admin access to the tenant.
	TypeAdminTokenCreated = "security.admin_token_created"
	// TypeAdminTokenRevoked: one of the tenant's admin tokens was revoked.
	TypeAdminTokenRevoked = "security.admin_token_revoked"
	// TypeKeyRevokedByOperator: the operator revoked one of the tenant's
	// keys (a tenant's own revocations are its own doing).
	TypeKeyRevokedByOperator = "security.key_revoked_by_operator"
	// TypeTest is what a test send delivers; only the endpoint tested
	// receives it.
	TypeTest = "notification.test"
)

// Types lists the event types an endpoint may subscribe to.
var Types = []string{
	TypeBudgetSoftLimit, TypeBudgetExhausted, TypeKeyExpiring, TypeInvoiceIssued,
	TypeAdminTokenCreated, TypeAdminTokenRevoked, TypeKeyRevokedByOperator,
}

// KnownType reports whether t is a type endpoints may subscribe to.
func KnownType(t string) bool { return slices.Contains(Types, t) }

// Event is one thing a tenant may want to hear about.
type Event struct {
	Type     string
	TenantID uuid.UUID
	// Data describes the event: ids, names, amounts and times; never
	// request or response content, nor secrets. It is marshalled to a JSON
	// object and delivered as the body's "data".
	Data map[string]any
	// DedupeKey, when set, delivers the event at most once per endpoint
	// for as long as the delivery log keeps it (e.g.
	// "key.expiring:<key>:<expiry>:7d").
	DedupeKey string
}

// ErrUnknownType is returned for an event of a type Enqueue does not know.
var ErrUnknownType = errors.New("notify: unknown event type")

// Enqueue records e for every enabled endpoint of its tenant that wants its
// type, inside tx: the notifications exist if and only if tx commits. It
// writes nothing when no endpoint wants the event. Call it from the
// transaction that makes the change the event reports; it may run more than
// once when the transaction is retried.
func Enqueue(ctx context.Context, tx *ent.Tx, e Event) error {
	if !KnownType(e.Type) {
		return fmt.Errorf("%w %q", ErrUnknownType, e.Type)
	}
	endpoints, err := tx.NotificationEndpoint.Query().
		Where(notificationendpoint.TenantID(e.TenantID), notificationendpoint.Disabled(false)).
		All(ctx)
	if err != nil {
		return fmt.Errorf("notify: finding the endpoints of %s: %w", e.Type, err)
	}
	eventID := uuid.New()
	for _, ep := range endpoints {
		if !Wants(ep.EventTypes, e.Type) {
			continue
		}
		if _, err := enqueueTo(ctx, tx, ep, eventID, e); err != nil {
			return err
		}
	}
	return nil
}

// EnqueueTest records a test notification for one endpoint, whether or not
// it is disabled or subscribed to anything, and returns it.
func EnqueueTest(ctx context.Context, tx *ent.Tx, ep *ent.NotificationEndpoint, actor string) (*ent.Notification, error) {
	return enqueueTo(ctx, tx, ep, uuid.New(), Event{
		Type: TypeTest, TenantID: ep.TenantID,
		Data: map[string]any{"endpoint_id": ep.ID.String(), "endpoint_name": ep.Name, "requested_by": actor},
	})
}

// Wants reports whether an endpoint subscribed to types wants events of
// type t: an empty list wants every type.
func Wants(types []string, t string) bool {
	return len(types) == 0 || slices.Contains(types, t)
}

func enqueueTo(ctx context.Context, tx *ent.Tx, ep *ent.NotificationEndpoint, eventID uuid.UUID, e Event) (*ent.Notification, error) {
	if e.DedupeKey != "" {
		seen, err := tx.Notification.Query().
			Where(notification.EndpointID(ep.ID), notification.DedupeKey(e.DedupeKey)).Exist(ctx)
		if err != nil {
			return nil, fmt.Errorf("notify: checking %s for an earlier %s: %w", ep.ID, e.DedupeKey, err)
		}
		if seen {
			return nil, nil
		}
	}
	data := e.Data
	if data == nil {
		data = map[string]any{}
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("notify: encoding the data of %s: %w", e.Type, err)
	}
	now := time.Now().UTC()
	c := tx.Notification.Create().
		SetEventID(eventID).
		SetEventType(e.Type).
		SetTenantID(e.TenantID).
		SetEndpointID(ep.ID).
		SetData(raw).
		SetNextAttemptAt(now)
	if e.DedupeKey != "" {
		c.SetDedupeKey(e.DedupeKey)
	}
	n, err := c.Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("notify: enqueueing %s for endpoint %s: %w", e.Type, ep.ID, err)
	}
	return n, nil
}
