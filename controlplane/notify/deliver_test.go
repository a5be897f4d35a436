package notify_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	quotav1 "github.com/tollgate-dev/tollgate/api/tollgate/quota/v1"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/notify"
	"github.com/tollgate-dev/tollgate/controlplane/policy"
	"github.com/tollgate-dev/tollgate/controlplane/quotaauthority"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/notification"
	"github.com/tollgate-dev/tollgate/ent/notificationendpoint"
	"github.com/tollgate-dev/tollgate/telemetry"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.t) {
		c.t = t
	}
}

type fixture struct {
	t      *testing.T
	s      *store.Store
	ring   *keyring.Keyring
	clock  *clock
	tenant uuid.UUID
}

func newFixture(t *testing.T, s *store.Store) *fixture {
	t.Helper()
	ring, err := keyring.New(keyring.Key{ID: "test-1", Secret: bytes.Repeat([]byte{9}, keyring.SecretSize)})
	if err != nil {
		t.Fatal(err)
	}
	// The clock runs a minute ahead of the wall clock that stamps enqueued
	// rows, so that they are due at once.
	f := &fixture{t: t, s: s, ring: ring, clock: &clock{t: time.Now().UTC().Add(time.Minute)}, tenant: uuid.New()}
	err = s.Client().Tenant.Create().SetID(f.tenant).SetName("Acme").SetSlug("acme-" + f.tenant.String()[:8]).Exec(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// webhook creates a webhook endpoint for the fixture's tenant and returns
// its signing secret.
func (f *fixture) webhook(url string, types ...string) (*ent.NotificationEndpoint, []byte) {
	f.t.Helper()
	sec, err := secret.New(secret.WebhookSecret)
	if err != nil {
		f.t.Fatal(err)
	}
	id := uuid.New()
	sealed, err := f.ring.Seal([]byte(sec.Plaintext), notify.SecretAD(id))
	if err != nil {
		f.t.Fatal(err)
	}
	c := f.s.Client().NotificationEndpoint.Create().SetID(id).SetTenantID(f.tenant).SetName("hook-" + id.String()[:8]).
		SetKind(notificationendpoint.KindWebhook).SetURL(url).SetSecret(sealed).SetSecretKeyID(f.ring.ActiveID())
	if len(types) > 0 {
		c.SetEventTypes(types)
	}
	ep, err := c.Save(f.t.Context())
	if err != nil {
		f.t.Fatal(err)
	}
	return ep, []byte(sec.Plaintext)
}

func (f *fixture) email(to ...string) *ent.NotificationEndpoint {
	f.t.Helper()
	ep, err := f.s.Client().NotificationEndpoint.Create().SetTenantID(f.tenant).SetName("mail-" + uuid.NewString()[:8]).
		SetKind(notificationendpoint.KindEmail).SetEmailRecipients(to).Save(f.t.Context())
	if err != nil {
		f.t.Fatal(err)
	}
	return ep
}

func (f *fixture) deliverer(o notify.Options) *notify.Deliverer {
	f.t.Helper()
	o.Store, o.Keyring, o.Now, o.AllowPrivateWebhooks = f.s, f.ring, f.clock.now, true
	o.Logger = slog.New(slog.DiscardHandler)
	if o.Jitter == nil {
		o.Jitter = func() float64 { return 0 }
	}
	d, err := notify.NewDeliverer(o)
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *fixture) smtp(sink *mailSink) *notify.SMTPConfig {
	return &notify.SMTPConfig{
		Addr: sink.addr, From: "tollgate@example.com", TLS: notify.SMTPStartTLS,
		TLSConfig: &tls.Config{RootCAs: sink.roots, MinVersion: tls.VersionTLS12},
	}
}

func (f *fixture) notifications() []*ent.Notification {
	f.t.Helper()
	ns, err := f.s.Client().Notification.Query().Order(ent.Asc(notification.FieldCreatedAt)).All(f.t.Context())
	if err != nil {
		f.t.Fatal(err)
	}
	return ns
}

// runUntil runs the delivery job, moving the clock to the next due
// delivery between runs, until done says so; it fails after maxRuns.
func (f *fixture) runUntil(d *notify.Deliverer, maxRuns int, done func() bool) {
	f.t.Helper()
	for range maxRuns {
		if err := d.Run(f.t.Context()); err != nil {
			f.t.Fatal(err)
		}
		if done() {
			return
		}
		next, err := f.s.Client().Notification.Query().Where(notification.StatusEQ(notification.StatusPending)).
			Order(ent.Asc(notification.FieldNextAttemptAt)).First(f.t.Context())
		if err != nil {
			f.t.Fatalf("nothing pending and not done: %v", err)
		}
		f.clock.set(next.NextAttemptAt)
	}
	f.t.Fatalf("not done after %d runs: %+v", maxRuns, f.notifications())
}

// A budget's soft-limit crossing produces exactly one webhook and one
// e-mail, delivered once the receivers recover from failing, and no more
// however often the job runs afterwards or spend grows in the window.
func TestSoftLimitCrossingIsDeliveredOnceByWebhookAndEmailAfterFailures(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		f := newFixture(t, s)
		ctx := t.Context()
		hook := newReceiver(t, 2, 503)
		_, hook.secret = f.webhook(hook.URL+"/tollgate", notify.TypeBudgetSoftLimit)
		sink := newMailSink(t, 2)
		f.email("ops@acme.example", "billing@acme.example")
		f.webhook(hook.URL+"/other", notify.TypeKeyExpiring) // wants other events: gets nothing

		hard, soft := int64(1_000), int64(100)
		spec := policy.Spec{Budgets: []policy.Budget{{Period: policy.PeriodDay, HardLimitMicros: &hard, SoftLimitMicros: &soft}}}
		if err := s.Client().GatewayPolicy.Create().SetTenantID(f.tenant).SetSpec(spec).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		a := quotaauthority.New(s, quotaauthority.Options{Now: f.clock.now})
		counter := &quotav1.CounterKey{SubjectKind: quotav1.SubjectKind_SUBJECT_KIND_TENANT, SubjectId: f.tenant.String(),
			Meter: quotav1.Meter_METER_DAY_BUDGET, WindowStart: timestamppb.New(f.clock.now().Truncate(24 * time.Hour))}
		report := func(lease string, seq uint64, settled int64) {
			t.Helper()
			resp, err := a.Report(ctx, &quotav1.LeaseRequest{LeaseId: lease, Seq: seq, Counter: counter, Settled: settled, Want: 10, Need: 1})
			if err != nil || resp.GetStatus() != quotav1.LeaseStatus_LEASE_STATUS_OK {
				t.Fatalf("report: %v %v", resp, err)
			}
		}
		l1, l2 := uuid.NewString(), uuid.NewString()
		report(l1, 1, 60)
		if n := len(f.notifications()); n != 0 {
			t.Fatalf("%d notifications below the soft limit", n)
		}
		report(l2, 1, 50) // 110 settled: crossed
		report(l1, 2, 90) // more spend in the same window
		if n := len(f.notifications()); n != 2 {
			t.Fatalf("%d notifications after the crossing, want 2 (one per interested endpoint)", n)
		}

		d := f.deliverer(notify.Options{SMTP: f.smtp(sink)})
		f.runUntil(d, 10, func() bool {
			_, _, accepted, _ := hook.state()
			_, mails := sink.state()
			return len(accepted) == 1 && len(mails) == 1
		})
		// Further runs, later, deliver nothing more.
		f.clock.set(f.clock.now().Add(48 * time.Hour))
		for range 3 {
			if err := d.Run(ctx); err != nil {
				t.Fatal(err)
			}
		}

		requests, ids, accepted, badSig := hook.state()
		if requests != 3 || len(accepted) != 1 || badSig != 0 {
			t.Fatalf("webhook: %d requests, %d accepted, %d bad signatures; want 3 (2 failed), 1, 0", requests, len(accepted), badSig)
		}
		if uniq := slices.Compact(slices.Clone(ids)); len(uniq) != 1 || uniq[0] == "" {
			t.Errorf("retries carried delivery ids %v, want one id throughout", ids)
		}
		var body struct {
			Type       string         `json:"type"`
			DeliveryID string         `json:"delivery_id"`
			TenantID   string         `json:"tenant_id"`
			Data       map[string]any `json:"data"`
		}
		if err := json.Unmarshal(accepted[0], &body); err != nil {
			t.Fatal(err)
		}
		if body.Type != notify.TypeBudgetSoftLimit || body.TenantID != f.tenant.String() || body.DeliveryID != ids[0] ||
			body.Data["budget"] != "budget_day" || body.Data["limit_micros"] != float64(100) || body.Data["settled_micros"] != float64(110) {
			t.Errorf("webhook body: %s", accepted[0])
		}
		messages, mails := sink.state()
		if messages != 3 || len(mails) != 1 {
			t.Fatalf("e-mail: %d messages, %d accepted; want 3 (2 refused), 1", messages, len(mails))
		}
		m := mails[0]
		if !m.tls || m.from != "tollgate@example.com" || !slices.Equal(m.to, []string{"ops@acme.example", "billing@acme.example"}) ||
			!bytes.Contains(m.data, []byte("Budget soft limit reached")) {
			t.Errorf("e-mail: tls=%v from=%s to=%v\n%s", m.tls, m.from, m.to, m.data)
		}
		for _, n := range f.notifications() {
			if n.Status != notification.StatusDelivered || n.Attempts != 3 || n.DeliveredAt == nil || n.LastError != "" {
				t.Errorf("delivery %s: %s after %d attempts (%q)", n.ID, n.Status, n.Attempts, n.LastError)
			}
		}
	})
}

// A receiver's 4xx (other than 408 and 429) is final: one attempt, status
// failed, the code kept. 429 is retried.
func TestWebhookRefusalIsPermanentButTooManyRequestsIsRetried(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		f := newFixture(t, s)
		gone := newReceiver(t, 1_000, 410)
		var goneEP *ent.NotificationEndpoint
		goneEP, gone.secret = f.webhook(gone.URL)
		busy := newReceiver(t, 1, 429)
		_, busy.secret = f.webhook(busy.URL)
		enqueue(t, s, f.tenant, notify.TypeAdminTokenCreated)
		d := f.deliverer(notify.Options{})
		tel, err := telemetry.New(t.Context(), telemetry.Options{Service: "notify-test"})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tel.Shutdown(context.Background()) }()
		if err := d.Instrument(tel.Meters()); err != nil {
			t.Fatal(err)
		}
		f.runUntil(d, 5, func() bool {
			_, _, ok, _ := busy.state()
			return len(ok) == 1
		})
		fams, err := tel.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for outcome, want := range map[string]float64{"delivered": 1, "retry": 1, "failed": 1, "dead": 0} {
			got, _ := fams.Sum("tollgate_notification_attempts_total", "tollgate_outcome", outcome,
				"tollgate_notification_channel", "webhook", "tollgate_notification_type", notify.TypeAdminTokenCreated)
			if got != want {
				t.Errorf("attempts with outcome %s: %v, want %v", outcome, got, want)
			}
		}
		if n, _ := fams.Sum("tollgate_notification_attempt_duration_seconds"); n != 3 {
			t.Errorf("%v attempt durations, want 3", n)
		}
		if requests, _, _, _ := gone.state(); requests != 1 {
			t.Errorf("a refused delivery was sent %d times, want 1", requests)
		}
		for _, n := range f.notifications() {
			want, code, attempts := notification.StatusDelivered, 200, 2
			if n.EndpointID == goneEP.ID {
				want, code, attempts = notification.StatusFailed, 410, 1
			}
			if n.Status != want || n.ResponseCode != code || n.Attempts != attempts {
				t.Errorf("delivery: %s, HTTP %d, %d attempts (%q); want %s, %d, %d", n.Status, n.ResponseCode, n.Attempts, n.LastError, want, code, attempts)
			}
		}
	})
}

// Retries wait Base·2^(n-1) capped at Cap, less up to half as jitter, and
// stop when the next one would fall past the maximum age: the delivery is
// then dead.
func TestRetriesBackOffExponentiallyUntilDead(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		f := newFixture(t, s)
		down := newReceiver(t, 1_000, 500)
		_, down.secret = f.webhook(down.URL)
		enqueue(t, s, f.tenant, notify.TypeAdminTokenRevoked)
		policy := notify.RetryPolicy{Base: time.Minute, Cap: 10 * time.Minute, MaxAge: time.Hour}
		d := f.deliverer(notify.Options{Retry: policy, Jitter: func() float64 { return 0.5 }})
		var attempts []time.Time
		var n *ent.Notification
		for range 30 {
			if err := d.Run(t.Context()); err != nil {
				t.Fatal(err)
			}
			n = f.notifications()[0]
			if n.LastAttemptAt != nil && !slices.Contains(attempts, *n.LastAttemptAt) {
				attempts = append(attempts, *n.LastAttemptAt)
			}
			if n.Status != notification.StatusPending {
				break
			}
			f.clock.set(n.NextAttemptAt)
		}
		if n.Status != notification.StatusDead || n.LastError == "" || n.ResponseCode != 500 {
			t.Fatalf("after %d attempts: %s, HTTP %d, %q; want dead", len(attempts), n.Status, n.ResponseCode, n.LastError)
		}
		// Jitter 0.5 takes three quarters of each step: 45 s, 1.5, 3, 6
		// minutes, then 7.5 (of the 10-minute cap) while the next attempt
		// falls within the hour: the first attempt is a minute after
		// creation (the fixture's clock), the eleventh 57¼ minutes after.
		var waits []time.Duration
		for i := 1; i < len(attempts); i++ {
			waits = append(waits, attempts[i].Sub(attempts[i-1]))
		}
		want := []time.Duration{45 * time.Second, 90 * time.Second, 3 * time.Minute, 6 * time.Minute,
			450 * time.Second, 450 * time.Second, 450 * time.Second, 450 * time.Second, 450 * time.Second, 450 * time.Second}
		if !slices.Equal(waits, want) {
			t.Errorf("waits between attempts %v, want %v", waits, want)
		}
		if requests, _, _, _ := down.state(); requests != len(attempts) {
			t.Errorf("%d requests for %d attempts", requests, len(attempts))
		}
		last := attempts[len(attempts)-1]
		if last.Sub(n.CreatedAt) > policy.MaxAge {
			t.Errorf("attempted %v after creation, past the maximum age %v", last.Sub(n.CreatedAt), policy.MaxAge)
		}
	})
}

func TestBackoffStaysWithinItsJitterRange(t *testing.T) {
	p := notify.DefaultRetryPolicy
	for n := 1; n < 100; n++ {
		full := p.Cap
		if n < 8 {
			full = min(p.Base<<(n-1), p.Cap)
		}
		lo, hi := p.Backoff(n, 0), p.Backoff(n, 0.999999)
		if lo != full/2 || hi >= full || hi < lo {
			t.Fatalf("retry %d: waits in [%v, %v], want [%v, %v)", n, lo, hi, full/2, full)
		}
	}
}

// Without the operator's leave, a webhook cannot reach loopback or private
// addresses (a tenant must not probe the operator's network), and the
// refusal is final.
func TestWebhooksToPrivateAddressesAreRefused(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		f := newFixture(t, s)
		r := newReceiver(t, 0, 0)
		_, r.secret = f.webhook(r.URL)
		enqueue(t, s, f.tenant, notify.TypeKeyRevokedByOperator)
		d, err := notify.NewDeliverer(notify.Options{Store: s, Keyring: f.ring, Now: f.clock.now})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		n := f.notifications()[0]
		if requests, _, _, _ := r.state(); requests != 0 || n.Status != notification.StatusFailed || !strings.Contains(n.LastError, "not public") {
			t.Fatalf("%d requests reached the receiver; delivery %s (%q)", requests, n.Status, n.LastError)
		}
	})
}

// E-mail endpoints fail, saying why, when the operator has not set up SMTP.
func TestEmailWithoutSMTPFailsWithReason(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		f := newFixture(t, s)
		f.email("ops@acme.example")
		enqueue(t, s, f.tenant, notify.TypeAdminTokenCreated)
		if err := f.deliverer(notify.Options{}).Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := f.notifications()[0]; n.Status != notification.StatusFailed || !strings.Contains(n.LastError, "--smtp-addr") {
			t.Fatalf("delivery %s (%q)", n.Status, n.LastError)
		}
	})
}

func enqueue(t *testing.T, s *store.Store, tenant uuid.UUID, typ string) {
	t.Helper()
	err := s.InTx(t.Context(), func(tx *ent.Tx) error {
		return notify.Enqueue(context.Background(), tx, notify.Event{Type: typ, TenantID: tenant, Data: map[string]any{"what": typ}})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Each --smtp-tls mode against relays that offer STARTTLS, nothing, or
// implicit TLS: mail goes out encrypted whenever the relay allows it, in
// clear only under starttls-if-offered to a relay without TLS, and never
// when STARTTLS is required but missing (a retried failure: the operator
// may fix the relay).
func TestSMTPTLSModes(t *testing.T) {
	for _, c := range []struct {
		name      string
		sink      int
		mode      string
		delivered bool
		tls       bool
	}{
		{"starttls-if-offered, offered", sinkStartTLS, notify.SMTPStartTLSIfOffered, true, true},
		{"starttls-if-offered, not offered", sinkPlain, notify.SMTPStartTLSIfOffered, true, false},
		{"starttls required, not offered", sinkPlain, notify.SMTPStartTLS, false, false},
		{"implicit TLS", sinkImplicit, notify.SMTPImplicitTLS, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, storetest.SQLite(t))
			sink := newMailSinkTLS(t, 0, c.sink)
			f.email("ops@acme.example")
			enqueue(t, f.s, f.tenant, notify.TypeAdminTokenCreated)
			conf := f.smtp(sink)
			conf.TLS = c.mode
			if err := f.deliverer(notify.Options{SMTP: conf}).Run(t.Context()); err != nil {
				t.Fatal(err)
			}
			_, mails := sink.state()
			n := f.notifications()[0]
			if c.delivered != (len(mails) == 1) || (c.delivered && mails[0].tls != c.tls) {
				t.Fatalf("%d mails (%+v); delivery %s (%q)", len(mails), mails, n.Status, n.LastError)
			}
			if !c.delivered && (n.Status != notification.StatusPending || !strings.Contains(n.LastError, "STARTTLS")) {
				t.Errorf("delivery %s (%q), want pending with the reason", n.Status, n.LastError)
			}
		})
	}
}

// Pruning removes finished deliveries past the retention, never pending
// ones.
func TestPruneKeepsPendingDeliveries(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		f := newFixture(t, s)
		f.webhook("https://hooks.example/x")
		for range 3 {
			enqueue(t, s, f.tenant, notify.TypeAdminTokenCreated)
		}
		ns := f.notifications()
		if err := s.Client().Notification.UpdateOne(ns[0]).SetStatus(notification.StatusDelivered).Exec(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := s.Client().Notification.UpdateOne(ns[1]).SetStatus(notification.StatusDead).Exec(t.Context()); err != nil {
			t.Fatal(err)
		}
		d := f.deliverer(notify.Options{})
		if n, err := d.Prune(t.Context(), ns[0].CreatedAt); err != nil || n != 0 {
			t.Fatalf("pruned %d (%v) before the oldest was created", n, err)
		}
		n, err := d.Prune(t.Context(), time.Now().Add(time.Hour))
		if err != nil || n != 2 {
			t.Fatalf("pruned %d (%v), want the 2 finished", n, err)
		}
		if left := f.notifications(); len(left) != 1 || left[0].ID != ns[2].ID {
			t.Errorf("left %v, want the pending one", left)
		}
	})
}

// lossyTransport delivers every request but loses the first lost answers,
// as when the control plane dies after sending and before recording.
type lossyTransport struct {
	mu   sync.Mutex
	lost int
}

func (l *lossyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil && l.lost > 0 {
		l.lost--
		_ = resp.Body.Close()
		return nil, errors.New("connection reset after the request was sent")
	}
	return resp, err
}

// A delivery whose outcome was never learnt is sent again with the same
// delivery id, so a receiver that drops repeats acts on it once.
func TestUnrecordedDeliveryIsResentWithItsID(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		f := newFixture(t, s)
		r := newReceiver(t, 0, 0)
		_, r.secret = f.webhook(r.URL)
		enqueue(t, s, f.tenant, notify.TypeKeyRevokedByOperator)
		d := f.deliverer(notify.Options{HTTPClient: &http.Client{Transport: &lossyTransport{lost: 2}}})
		f.runUntil(d, 5, func() bool { return f.notifications()[0].Status == notification.StatusDelivered })
		requests, ids, accepted, _ := r.state()
		processed := map[string]bool{}
		for _, id := range ids {
			processed[id] = true
		}
		if requests != 3 || len(accepted) != 3 || len(processed) != 1 {
			t.Fatalf("%d requests (%d accepted) with %d distinct delivery ids; want 3 with one id", requests, len(accepted), len(processed))
		}
	})
}

// A disabled endpoint's pending deliveries fail, but a test send still
// reaches it: testing is how one checks an endpoint before enabling it.
func TestDisabledEndpointsGetOnlyTests(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		f := newFixture(t, s)
		r := newReceiver(t, 0, 0)
		var ep *ent.NotificationEndpoint
		ep, r.secret = f.webhook(r.URL)
		enqueue(t, s, f.tenant, notify.TypeAdminTokenCreated)
		if err := s.Client().NotificationEndpoint.UpdateOne(ep).SetDisabled(true).Exec(t.Context()); err != nil {
			t.Fatal(err)
		}
		ep.Disabled = true
		if err := s.InTx(t.Context(), func(tx *ent.Tx) error {
			_, err := notify.EnqueueTest(t.Context(), tx, ep, "operator")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if err := f.deliverer(notify.Options{}).Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		for _, n := range f.notifications() {
			want := notification.StatusFailed
			if n.EventType == notify.TypeTest {
				want = notification.StatusDelivered
			}
			if n.Status != want {
				t.Errorf("%s to a disabled endpoint: %s (%q), want %s", n.EventType, n.Status, n.LastError, want)
			}
		}
		if requests, _, _, _ := r.state(); requests != 1 {
			t.Errorf("%d requests, want the test only", requests)
		}
	})
}
