package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/notification"
	"github.com/tollgate-dev/tollgate/ent/notificationendpoint"
)

// RetryPolicy says when failed deliveries are tried again. The n-th retry
// waits Base·2^(n-1), capped at Cap, of which a random half is jitter (so
// the wait lies in [d/2, d)): receivers that failed together do not get
// their retries in lock step. A delivery whose next attempt would fall
// after MaxAge from its creation is dead.
type RetryPolicy struct {
	Base   time.Duration
	Cap    time.Duration
	MaxAge time.Duration
}

// DefaultRetryPolicy retries after about 30 s, 1, 2, 4, … minutes, then
// hourly, for a day: 30 attempts or so.
var DefaultRetryPolicy = RetryPolicy{Base: 30 * time.Second, Cap: time.Hour, MaxAge: 24 * time.Hour}

// Backoff is the wait before retry n (n ≥ 1), given jitter in [0, 1).
func (p RetryPolicy) Backoff(n int, jitter float64) time.Duration {
	d := p.Base
	for i := 1; i < n && d < p.Cap; i++ { // doubling, not shifting: no overflow
		d *= 2
	}
	d = min(d, p.Cap)
	return d/2 + time.Duration(jitter*float64(d/2))
}

// Defaults of a Deliverer.
const (
	DefaultBatch    = 100
	DefaultParallel = 8
	// maxBatchesPerRun bounds one run, so that the job releases its lease
	// and records progress regularly under a large backlog.
	maxBatchesPerRun = 20
	// DeliveryRetention is how long finished deliveries stay in the log.
	DeliveryRetention = 30 * 24 * time.Hour
)

// Options configure a Deliverer. Store and Keyring are required.
type Options struct {
	Store   *store.Store
	Keyring *keyring.Keyring
	// SMTP sends e-mail; nil means e-mail endpoints' deliveries fail,
	// saying that the operator has not configured SMTP.
	SMTP *SMTPConfig
	// AllowPrivateWebhooks lets webhooks reach loopback, private and
	// link-local addresses. Off by default: tenants choose webhook URLs,
	// and must not reach the operator's internal network through them.
	AllowPrivateWebhooks bool
	// HTTPClient overrides the webhook client (its redirect and address
	// policies included); tests leave it nil.
	HTTPClient *http.Client
	Retry      RetryPolicy
	// Batch is how many due deliveries one transaction takes; Parallel how
	// many of them are sent at once.
	Batch, Parallel int
	// Now and Jitter (in [0, 1)) are the clock and the randomness of
	// back-off; tests fix both.
	Now    func() time.Time
	Jitter func() float64
	Logger *slog.Logger
}

// Deliverer delivers enqueued notifications. Its Run is a background job
// (controlplane/jobs): one replica runs it at a time, under a lease.
type Deliverer struct {
	o       Options
	webhook *http.Client
	metrics *deliveryMetrics
}

// NewDeliverer checks o and fills in its defaults.
func NewDeliverer(o Options) (*Deliverer, error) {
	if o.Store == nil || o.Keyring == nil {
		return nil, errors.New("notify: a deliverer needs a store and a keyring")
	}
	if o.SMTP != nil {
		if err := o.SMTP.Check(); err != nil {
			return nil, err
		}
	}
	if o.Retry == (RetryPolicy{}) {
		o.Retry = DefaultRetryPolicy
	}
	if o.Retry.Base <= 0 || o.Retry.Cap < o.Retry.Base || o.Retry.MaxAge <= 0 {
		return nil, fmt.Errorf("notify: retry policy needs 0 < base ≤ cap and a positive maximum age, got %+v", o.Retry)
	}
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Jitter == nil {
		o.Jitter = rand.Float64
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	d := &Deliverer{o: o, webhook: o.HTTPClient}
	if d.webhook == nil {
		d.webhook = webhookClient(o.AllowPrivateWebhooks)
	}
	return d, nil
}

// Run delivers due notifications in batches until none is due, or for at
// most maxBatchesPerRun batches. Each batch is claimed in one transaction
// (its attempt counted, its next attempt scheduled as if it will fail),
// sent, and its outcomes recorded in another; a crash in between leaves
// the batch due again at its scheduled retry.
func (d *Deliverer) Run(ctx context.Context) error {
	for range maxBatchesPerRun {
		claimed, err := d.claim(ctx)
		if err != nil {
			return err
		}
		if len(claimed) == 0 {
			return nil
		}
		results := d.send(ctx, claimed)
		if err := d.record(ctx, results); err != nil {
			return err
		}
		if len(claimed) < d.o.Batch || ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// claim takes up to Batch due deliveries, marking those past their maximum
// age dead and those whose endpoint is disabled failed.
func (d *Deliverer) claim(ctx context.Context) ([]*ent.Notification, error) {
	var claimed []*ent.Notification
	err := d.o.Store.InTx(ctx, func(tx *ent.Tx) error {
		claimed = claimed[:0]
		now := d.o.Now().UTC()
		due, err := tx.Notification.Query().
			Where(notification.StatusEQ(notification.StatusPending), notification.NextAttemptAtLTE(now)).
			Order(ent.Asc(notification.FieldNextAttemptAt), ent.Asc(notification.FieldID)).
			Limit(d.o.Batch).
			WithEndpoint(func(q *ent.NotificationEndpointQuery) { q.WithTenant() }).
			All(ctx)
		if err != nil {
			return fmt.Errorf("notify: finding due deliveries: %w", err)
		}
		for _, n := range due {
			u := tx.Notification.UpdateOne(n)
			switch {
			case now.Sub(n.CreatedAt) > d.o.Retry.MaxAge:
				u.SetStatus(notification.StatusDead)
				if n.LastError == "" {
					u.SetLastError("not delivered within the maximum age")
				}
			case n.Edges.Endpoint.Disabled && n.EventType != TypeTest: // a test checks a disabled endpoint too
				u.SetStatus(notification.StatusFailed).SetLastError("the endpoint is disabled")
			default:
				retry := now.Add(d.o.Retry.Backoff(n.Attempts+1, d.o.Jitter()))
				u.AddAttempts(1).SetLastAttemptAt(now).SetNextAttemptAt(retry)
				claimed = append(claimed, n)
			}
			updated, err := u.Save(ctx)
			if err != nil {
				return fmt.Errorf("notify: claiming delivery %s: %w", n.ID, err)
			}
			updated.Edges = n.Edges
			*n = *updated
		}
		return nil
	})
	return claimed, err
}

// result is one attempt's outcome.
type result struct {
	n    *ent.Notification
	code int
	err  error
	// permanent says that retrying cannot help (a 4xx, a bad address).
	permanent bool
	took      time.Duration
	// outcome is what record made of it, for the metrics.
	outcome string
}

func (d *Deliverer) send(ctx context.Context, batch []*ent.Notification) []result {
	results := make([]result, len(batch))
	sem := make(chan struct{}, d.o.Parallel)
	var wg sync.WaitGroup
	for i, n := range batch {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			start := time.Now()
			results[i] = d.attempt(ctx, n)
			results[i].took = time.Since(start)
		})
	}
	wg.Wait()
	return results
}

func (d *Deliverer) attempt(ctx context.Context, n *ent.Notification) result {
	ep := n.Edges.Endpoint
	body, err := Body(n)
	if err != nil {
		return result{n: n, err: err, permanent: true}
	}
	switch ep.Kind {
	case notificationendpoint.KindWebhook:
		secret, err := d.o.Keyring.Open(ep.Secret, SecretAD(ep.ID))
		if err != nil {
			// The operator's keyring lacks the key: fixable, so retried.
			return result{n: n, err: fmt.Errorf("opening the signing secret: %w", err)}
		}
		code, permanent, err := d.postWebhook(ctx, ep.URL, secret, body, n, d.o.Now())
		return result{n: n, code: code, err: err, permanent: permanent}
	case notificationendpoint.KindEmail:
		if d.o.SMTP == nil {
			return result{n: n, err: errors.New("e-mail is not configured on the control plane (see --smtp-addr)"), permanent: true}
		}
		msg, err := emailMessage(d.o.SMTP.From, ep.EmailRecipients, n, d.o.Now())
		if err != nil {
			return result{n: n, err: err, permanent: true}
		}
		code, permanent, err := d.o.SMTP.send(ctx, ep.EmailRecipients, msg)
		return result{n: n, code: code, err: err, permanent: permanent}
	}
	return result{n: n, err: fmt.Errorf("unknown endpoint kind %q", ep.Kind), permanent: true}
}

// record writes a batch's outcomes. A failure that will be retried keeps the
// next attempt the claim scheduled, unless that is past the maximum age.
func (d *Deliverer) record(ctx context.Context, results []result) error {
	// The sends happened; their outcome is worth recording even while the
	// job is being stopped.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	err := d.o.Store.InTx(ctx, func(tx *ent.Tx) error {
		now := d.o.Now().UTC()
		for i := range results {
			r := &results[i]
			u := tx.Notification.UpdateOneID(r.n.ID).SetResponseCode(r.code)
			r.outcome = "retry"
			switch {
			case r.err == nil:
				u.SetStatus(notification.StatusDelivered).SetDeliveredAt(now).SetLastError("")
				r.outcome = "delivered"
			case r.permanent:
				u.SetStatus(notification.StatusFailed).SetLastError(clipError(r.err))
				r.outcome = "failed"
			case r.n.NextAttemptAt.Sub(r.n.CreatedAt) > d.o.Retry.MaxAge:
				u.SetStatus(notification.StatusDead).SetLastError(clipError(r.err))
				r.outcome = "dead"
			default:
				u.SetLastError(clipError(r.err))
			}
			if err := u.Exec(ctx); err != nil && !ent.IsNotFound(err) { // NotFound: the endpoint was deleted meanwhile
				return fmt.Errorf("notify: recording delivery %s: %w", r.n.ID, err)
			}
			if r.err != nil {
				d.o.Logger.InfoContext(ctx, "notification delivery failed", "delivery_id", r.n.ID, "endpoint_id", r.n.EndpointID,
					"type", r.n.EventType, "attempt", r.n.Attempts, "code", r.code, "permanent", r.permanent, "err", r.err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range results {
		d.metrics.attempted(ctx, r.n.EventType, string(r.n.Edges.Endpoint.Kind), r.outcome, r.took)
	}
	return nil
}

func clipError(err error) string {
	s := err.Error()
	if len(s) > 1000 {
		s = s[:1000]
	}
	return s
}

// Body is the JSON document a webhook receives for n (and what an e-mail
// describes): the event, its delivery id and tenant, and its data.
func Body(n *ent.Notification) ([]byte, error) {
	doc := struct {
		ID         string          `json:"id"`
		DeliveryID string          `json:"delivery_id"`
		Type       string          `json:"type"`
		CreatedAt  string          `json:"created_at"`
		TenantID   string          `json:"tenant_id"`
		TenantSlug string          `json:"tenant_slug,omitempty"`
		Data       json.RawMessage `json:"data"`
	}{
		ID: n.EventID.String(), DeliveryID: n.ID.String(), Type: n.EventType,
		CreatedAt: n.CreatedAt.UTC().Format(time.RFC3339), TenantID: n.TenantID.String(), Data: n.Data,
	}
	if ep := n.Edges.Endpoint; ep != nil && ep.Edges.Tenant != nil {
		doc.TenantSlug = ep.Edges.Tenant.Slug
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding notification %s: %w", n.ID, err)
	}
	return b, nil
}

// Prune deletes finished deliveries (delivered, failed, dead) created
// before before, in batches, and returns how many it deleted. Pending ones
// stay: they die by age in Run.
func (d *Deliverer) Prune(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for {
		var n int
		err := d.o.Store.InTx(ctx, func(tx *ent.Tx) error {
			ids, err := tx.Notification.Query().
				Where(notification.StatusNEQ(notification.StatusPending), notification.CreatedAtLT(before)).
				Limit(1000).IDs(ctx)
			if err != nil || len(ids) == 0 {
				n = 0
				return err
			}
			n, err = tx.Notification.Delete().Where(notification.IDIn(ids...)).Exec(ctx)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("notify: pruning the delivery log: %w", err)
		}
		total += n
		if n == 0 || ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}
