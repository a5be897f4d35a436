// Package quotaauthority is the control plane's quota authority
// (tollgate.quota.v1.QuotaService): it keeps the authoritative count of
// every leased counter (a tenant's or a key's meter in one window) in the
// store and grants ext_proc replicas leases of units that they spend
// locally (docs/policy.md, "Across replicas").
//
// Every report is applied in one store transaction (InTx: whole-transaction
// retries on PostgreSQL and SQLite, savepoint retries on CockroachDB) that
// reclaims the counter's expired leases, charges the reported settlement,
// and grants free units only while
//
//	settled + held by every live lease + in flight + new free units ≤ limit
//
// so that the units admitted across all replicas never exceed a hard limit.
// Concurrency is leased the same way, in one window: requests settle at 0,
// so their units go back to their lease, and an expired lease's in-flight
// units are released rather than charged (releasesInFlight).
// Near the limit a grant is at most half of what is left divided among the
// live leases (but never less than the request waiting for it), so that one
// replica cannot strand the rest in a lease it will not use.
//
// Limits are read from the store's GatewayPolicy rows, in the same
// transaction: the authority then never grants against a limit older than
// the one committed, and a replica with stale configuration cannot widen a
// limit. (The ir snapshot would save a query per report, but reports are the
// uncommon path, and a snapshot may lag the store by its rebuild.)
//
// Counters live in the database, so a restarted authority (or another
// control-plane replica) continues them; reports are cumulative and carry a
// sequence number per lease, so a report sent again after a lost answer or a
// restart changes nothing.
package quotaauthority

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	quotav1 "github.com/tollgate-dev/tollgate/api/tollgate/quota/v1"
	"github.com/tollgate-dev/tollgate/controlplane/notify"
	"github.com/tollgate-dev/tollgate/controlplane/policy"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/gatewaypolicy"
	"github.com/tollgate-dev/tollgate/ent/quotacounter"
	"github.com/tollgate-dev/tollgate/ent/quotalease"
)

// DefaultTTL is how long a lease lasts without a report.
const DefaultTTL = 30 * time.Second

// Options configure an Authority.
type Options struct {
	// TTL is how long a lease lasts without a report; DefaultTTL when zero.
	TTL time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logger; slog.Default when nil.
	Logger *slog.Logger
}

// Authority implements QuotaService.
type Authority struct {
	quotav1.UnimplementedQuotaServiceServer
	store *store.Store
	ttl   time.Duration
	now   func() time.Time
	log   *slog.Logger
}

// New returns an Authority that counts in st.
func New(st *store.Store, o Options) *Authority {
	a := &Authority{store: st, ttl: o.TTL, now: o.Now, log: o.Logger}
	if a.ttl <= 0 {
		a.ttl = DefaultTTL
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	return a
}

// Register adds the service to g.
func (a *Authority) Register(g grpc.ServiceRegistrar) { quotav1.RegisterQuotaServiceServer(g, a) }

// Lease serves one replica's stream: reports are applied and answered one
// after the other.
func (a *Authority) Lease(stream quotav1.QuotaService_LeaseServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp, err := a.Report(ctx, req)
		if err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			a.log.ErrorContext(ctx, "applying a quota report failed; the replica will resend it",
				"lease_id", req.GetLeaseId(), "seq", req.GetSeq(), "err", err)
			return status.Errorf(codes.Unavailable, "applying the report on lease %s failed; resend it (the error is in the control plane's log)", req.GetLeaseId())
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// errInvalid marks a report that can never be applied.
var errInvalid = errors.New("invalid lease report")

// counterKey is a validated CounterKey.
type counterKey struct {
	kind, id, meter string
	window          time.Time
	subject         uuid.UUID
	m               quotav1.Meter
}

func parseKey(k *quotav1.CounterKey, now time.Time) (counterKey, error) {
	var ck counterKey
	switch k.GetSubjectKind() {
	case quotav1.SubjectKind_SUBJECT_KIND_TENANT:
		ck.kind = "tenant"
	case quotav1.SubjectKind_SUBJECT_KIND_KEY:
		ck.kind = "key"
	default:
		return ck, fmt.Errorf("%w: subject_kind must be TENANT or KEY", errInvalid)
	}
	id, err := uuid.Parse(k.GetSubjectId())
	if err != nil {
		return ck, fmt.Errorf("%w: subject_id %q is not a UUID", errInvalid, clip(k.GetSubjectId()))
	}
	ck.subject, ck.id = id, id.String()
	if k.GetWindowStart() == nil {
		return ck, fmt.Errorf("%w: window_start is required", errInvalid)
	}
	w := k.GetWindowStart().AsTime().UTC()
	ck.m, ck.window = k.GetMeter(), w
	aligned := false
	switch k.GetMeter() {
	case quotav1.Meter_METER_REQUESTS_PER_MINUTE, quotav1.Meter_METER_TOKENS_PER_MINUTE:
		aligned = w.Equal(w.Truncate(time.Minute))
	case quotav1.Meter_METER_DAY_BUDGET:
		aligned = w.Equal(w.Truncate(24 * time.Hour))
	case quotav1.Meter_METER_MONTH_BUDGET:
		aligned = w.Equal(time.Date(w.Year(), w.Month(), 1, 0, 0, 0, 0, time.UTC))
	case quotav1.Meter_METER_TOTAL_BUDGET, quotav1.Meter_METER_CONCURRENT_REQUESTS:
		aligned = w.Equal(time.Unix(0, 0).UTC())
	default:
		return ck, fmt.Errorf("%w: meter must be one of the leased meters", errInvalid)
	}
	if !aligned {
		return ck, fmt.Errorf("%w: window_start %s is not the start of a %s window", errInvalid, w.Format(time.RFC3339Nano), k.GetMeter())
	}
	// A window far in the future is a replica's broken clock; granting in
	// it would hand out quota nobody counts today.
	if w.After(now.Add(time.Hour)) {
		return ck, fmt.Errorf("%w: window_start %s is in the future", errInvalid, w.Format(time.RFC3339))
	}
	ck.meter = k.GetMeter().String()
	return ck, nil
}

// Report applies one report and returns the answer. An error means nothing
// was applied (and the report may be sent again); an invalid report is an
// answer with LEASE_STATUS_INVALID.
func (a *Authority) Report(ctx context.Context, req *quotav1.LeaseRequest) (*quotav1.LeaseResponse, error) {
	now := a.now().UTC()
	resp := &quotav1.LeaseResponse{LeaseId: req.GetLeaseId(), Seq: req.GetSeq()}
	leaseID, key, err := validate(req, now)
	if err != nil {
		return invalid(resp, err), nil
	}
	var out *quotav1.LeaseResponse
	err = a.store.InTx(ctx, func(tx *ent.Tx) error {
		var err error
		out, err = a.apply(ctx, tx, now, leaseID, key, req)
		return err
	})
	if errors.Is(err, errInvalid) {
		return invalid(resp, err), nil
	}
	if err != nil {
		return nil, fmt.Errorf("lease %s: %w", leaseID, err)
	}
	return out, nil
}

// invalid is the answer to a report that resending cannot fix.
func invalid(resp *quotav1.LeaseResponse, err error) *quotav1.LeaseResponse {
	resp.Status, resp.Message = quotav1.LeaseStatus_LEASE_STATUS_INVALID, err.Error()
	return resp
}

func validate(req *quotav1.LeaseRequest, now time.Time) (uuid.UUID, counterKey, error) {
	id, err := uuid.Parse(req.GetLeaseId())
	if err != nil {
		return id, counterKey{}, fmt.Errorf("%w: lease_id %q is not a UUID", errInvalid, clip(req.GetLeaseId()))
	}
	if req.GetSeq() == 0 || req.GetSeq() > math.MaxInt64 {
		return id, counterKey{}, fmt.Errorf("%w: seq must be between 1 and 2^63-1", errInvalid)
	}
	if req.GetSettled() < 0 || req.GetInFlight() < 0 || req.GetWant() < 0 || req.GetNeed() < 0 {
		return id, counterKey{}, fmt.Errorf("%w: settled, in_flight, want and need cannot be negative", errInvalid)
	}
	key, err := parseKey(req.GetCounter(), now)
	return id, key, err
}

// apply runs inside the transaction; it may run more than once.
func (a *Authority) apply(ctx context.Context, tx *ent.Tx, now time.Time, leaseID uuid.UUID, key counterKey, req *quotav1.LeaseRequest) (*quotav1.LeaseResponse, error) {
	ctr, err := counter(ctx, tx, key)
	if err != nil {
		return nil, err
	}
	if err := reclaim(ctx, tx, ctr, key.m, now); err != nil {
		return nil, err
	}
	if ctr, err = tx.QuotaCounter.Get(ctx, ctr.ID); err != nil {
		return nil, fmt.Errorf("reading the counter: %w", err)
	}
	limit, limited, err := limitOf(ctx, tx, key)
	if err != nil {
		return nil, err
	}
	resp := &quotav1.LeaseResponse{LeaseId: leaseID.String(), Seq: req.GetSeq(), TtlMs: a.ttl.Milliseconds()}
	if limited {
		resp.Limit = &limit
	}
	l, err := tx.QuotaLease.Get(ctx, leaseID)
	switch {
	case ent.IsNotFound(err):
		l, err = tx.QuotaLease.Create().SetID(leaseID).SetCounterID(ctr.ID).SetReplica(clip(req.GetReplica())).
			SetExpiresAt(now.Add(a.ttl)).SetCreatedAt(now).SetUpdatedAt(now).Save(ctx)
		if err != nil {
			return nil, fmt.Errorf("creating the lease: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("reading the lease: %w", err)
	case l.CounterID != ctr.ID:
		return nil, fmt.Errorf("%w: lease %s belongs to another counter", errInvalid, leaseID)
	}
	seq := int64(req.GetSeq())
	if l.Ended || seq <= l.Seq {
		// Ended, or a report already applied (an answer lost, a stream
		// resent): answer with the lease as it is.
		return a.answer(ctx, tx, resp, ctr, l, seq <= l.Seq)
	}

	// Charge what was settled since the last report.
	settled := max(req.GetSettled(), l.Settled)
	ctrSettled := satAdd(ctr.Settled, settled-l.Settled)
	others := ctr.Held - l.Holding
	inFlight := req.GetInFlight()
	holding := inFlight
	if req.GetRelease() {
		if !releasesInFlight(key.m) {
			ctrSettled = satAdd(ctrSettled, inFlight)
		}
		holding, inFlight = 0, 0
	} else if want := req.GetWant(); want > 0 {
		n, err := tx.QuotaLease.Query().Where(quotalease.CounterID(ctr.ID), quotalease.Ended(false),
			quotalease.IDNEQ(leaseID), quotalease.HoldingGT(0)).Count(ctx)
		if err != nil {
			return nil, fmt.Errorf("counting live leases: %w", err)
		}
		holding = satAdd(holding, grant(limit, limited, ctrSettled, others, inFlight, want, req.GetNeed(), n+1))
	}
	upd := tx.QuotaLease.UpdateOne(l).SetSeq(seq).SetSettled(settled).SetInFlight(inFlight).
		SetHolding(holding).SetUpdatedAt(now)
	if req.GetRelease() {
		upd.SetEnded(true)
	} else {
		upd.SetExpiresAt(now.Add(a.ttl))
	}
	if l, err = upd.Save(ctx); err != nil {
		return nil, fmt.Errorf("updating the lease: %w", err)
	}
	if ctr, err = tx.QuotaCounter.UpdateOne(ctr).SetSettled(ctrSettled).SetHeld(others + holding).SetUpdatedAt(now).Save(ctx); err != nil {
		return nil, fmt.Errorf("updating the counter: %w", err)
	}
	if err := noteSoftLimit(ctx, tx, key, ctr, now); err != nil {
		return nil, err
	}
	if limited {
		if err := noteExhausted(ctx, tx, key, ctr, limit, req.GetNeed(), now); err != nil {
			return nil, err
		}
	}
	return a.answer(ctx, tx, resp, ctr, l, false)
}

// noteSoftLimit reports, once per window, that a budget's settled spend
// reached its soft limit: an audit event (without amounts beyond the limit's
// name) and the alert flag on the tenant the budget belongs to. It runs in
// the report's transaction, so the note lands exactly when the spend does,
// whichever control-plane replica applies the report; replicas' engines only
// see their own share of the spend.
func noteSoftLimit(ctx context.Context, tx *ent.Tx, key counterKey, ctr *ent.QuotaCounter, now time.Time) error {
	if ctr.SoftLimitReachedAt != nil {
		return nil
	}
	soft, ok, err := softLimitOf(ctx, tx, key)
	if err != nil || !ok || ctr.Settled < soft {
		return err
	}
	if err := tx.QuotaCounter.UpdateOne(ctr).SetSoftLimitReachedAt(now).Exec(ctx); err != nil {
		return fmt.Errorf("noting the soft limit: %w", err)
	}
	tenantID, ok, err := tenantOf(ctx, tx, key)
	if err != nil || !ok {
		return err // !ok: the key is gone; nothing to flag
	}
	alert := fmt.Sprintf("%s %s: %s soft limit reached", key.kind, key.id, budgetName(key.m))
	if err := tx.Tenant.UpdateOneID(tenantID).SetBudgetAlertAt(now).SetBudgetAlert(alert).Exec(ctx); err != nil && !ent.IsNotFound(err) {
		return fmt.Errorf("flagging the tenant: %w", err)
	}
	err = tx.AuditEvent.Create().SetActor("quota-authority").SetTenantID(tenantID).
		SetAction("budget.soft_limit_reached").SetTargetType(key.kind).SetTargetID(key.id).
		SetChangedFields([]string{budgetName(key.m)}).Exec(ctx)
	if err != nil {
		return err
	}
	return notify.Enqueue(ctx, tx, budgetEvent(notify.TypeBudgetSoftLimit, tenantID, key, soft, ctr.Settled))
}

// noteExhausted reports, once per window, that a budget is exhausted: its
// settled spend reached the hard limit, or what is left of the limit is less
// than the request waiting for this report needs, so requests are being
// refused. Like the soft limit, it is written in the report's transaction.
func noteExhausted(ctx context.Context, tx *ent.Tx, key counterKey, ctr *ent.QuotaCounter, limit, need int64, now time.Time) error {
	if ctr.ExhaustedAt != nil || budgetName(key.m) == key.m.String() {
		return nil // already reported, or not a budget
	}
	if left := limit - ctr.Settled; left > 0 && (need == 0 || left >= need) {
		return nil
	}
	if err := tx.QuotaCounter.UpdateOne(ctr).SetExhaustedAt(now).Exec(ctx); err != nil {
		return fmt.Errorf("noting the exhausted budget: %w", err)
	}
	tenantID, ok, err := tenantOf(ctx, tx, key)
	if err != nil || !ok {
		return err
	}
	err = tx.AuditEvent.Create().SetActor("quota-authority").SetTenantID(tenantID).
		SetAction("budget.exhausted").SetTargetType(key.kind).SetTargetID(key.id).
		SetChangedFields([]string{budgetName(key.m)}).Exec(ctx)
	if err != nil {
		return err
	}
	return notify.Enqueue(ctx, tx, budgetEvent(notify.TypeBudgetExhausted, tenantID, key, limit, ctr.Settled))
}

// tenantOf is the tenant a counter's subject belongs to; false when the
// subject is a key that no longer exists.
func tenantOf(ctx context.Context, tx *ent.Tx, key counterKey) (uuid.UUID, bool, error) {
	if key.kind != "key" {
		return key.subject, true, nil
	}
	k, err := tx.APIKey.Get(ctx, key.subject)
	if ent.IsNotFound(err) {
		return uuid.Nil, false, nil
	}
	if err != nil {
		return uuid.Nil, false, fmt.Errorf("reading the key: %w", err)
	}
	return k.TenantID, true, nil
}

// budgetEvent is the notification of a budget's limit: which budget, in
// which window, the limit and the spend settled so far, in micro-dollars.
func budgetEvent(typ string, tenantID uuid.UUID, key counterKey, limit, settled int64) notify.Event {
	return notify.Event{Type: typ, TenantID: tenantID, Data: map[string]any{
		"subject_kind":   key.kind,
		"subject_id":     key.id,
		"budget":         budgetName(key.m),
		"window_start":   key.window.Format(time.RFC3339),
		"limit_micros":   limit,
		"settled_micros": settled,
	}}
}

func budgetName(m quotav1.Meter) string {
	switch m {
	case quotav1.Meter_METER_DAY_BUDGET:
		return "budget_day"
	case quotav1.Meter_METER_MONTH_BUDGET:
		return "budget_month"
	case quotav1.Meter_METER_TOTAL_BUDGET:
		return "budget_total"
	}
	return m.String()
}

// softLimitOf reads a budget's soft limit from the subject's policy.
func softLimitOf(ctx context.Context, tx *ent.Tx, key counterKey) (int64, bool, error) {
	spec, err := policyOf(ctx, tx, key)
	if err != nil || spec == nil {
		return 0, false, err
	}
	if _, soft := Limits(*spec, key.m); soft != nil {
		return *soft, true, nil
	}
	return 0, false, nil
}

// grant is how many free units a lease gets: none unless at least need fit
// under the limit; otherwise what it wants, capped near the limit at half
// of what is left shared among the live leases (this one included), but
// never below need.
func grant(limit int64, limited bool, settled, others, inFlight, want, need int64, leases int) int64 {
	if !limited {
		return want
	}
	left := limit - settled - others - inFlight
	if left <= 0 || left < need {
		return 0
	}
	share := left / int64(2*max(leases, 1))
	return min(left, max(need, min(want, share)))
}

func (a *Authority) answer(ctx context.Context, tx *ent.Tx, resp *quotav1.LeaseResponse, ctr *ent.QuotaCounter, l *ent.QuotaLease, repeat bool) (*quotav1.LeaseResponse, error) {
	resp.Holding, resp.Settled = l.Holding, l.Settled
	if repeat {
		resp.Seq = uint64(l.Seq)
	}
	resp.CounterSettled, resp.CounterHeld = ctr.Settled, ctr.Held
	n, err := tx.QuotaLease.Query().Where(quotalease.CounterID(ctr.ID), quotalease.Ended(false)).Count(ctx)
	if err != nil {
		return nil, fmt.Errorf("counting leases: %w", err)
	}
	resp.Leases = int32(n)
	switch {
	case !l.Ended:
		resp.Status = quotav1.LeaseStatus_LEASE_STATUS_OK
	case l.ExpiresAt.After(l.UpdatedAt):
		// Ended before its expiry: released by its replica.
		resp.Status = quotav1.LeaseStatus_LEASE_STATUS_RELEASED
	default:
		resp.Status = quotav1.LeaseStatus_LEASE_STATUS_EXPIRED
	}
	return resp, nil
}

// counter finds the counter's row, creating it the first time; two
// transactions creating it at once both end up with the one row.
func counter(ctx context.Context, tx *ent.Tx, key counterKey) (*ent.QuotaCounter, error) {
	q := func() (*ent.QuotaCounter, error) {
		return tx.QuotaCounter.Query().Where(quotacounter.SubjectKind(key.kind), quotacounter.SubjectID(key.id),
			quotacounter.Meter(key.meter), quotacounter.WindowStart(key.window)).Only(ctx)
	}
	c, err := q()
	if err == nil || !ent.IsNotFound(err) {
		return c, err
	}
	err = tx.QuotaCounter.Create().SetSubjectKind(key.kind).SetSubjectID(key.id).SetMeter(key.meter).
		SetWindowStart(key.window).
		OnConflictColumns(quotacounter.FieldSubjectKind, quotacounter.FieldSubjectID, quotacounter.FieldMeter, quotacounter.FieldWindowStart).
		DoNothing().Exec(ctx)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("creating the counter: %w", err)
	}
	return q()
}

// reclaim ends the counter's expired leases: their in-flight units are
// charged as settled (those requests were admitted, and may have spent
// them), their free units go back to the counter. For concurrency the
// in-flight units are released instead (see releasesInFlight).
func reclaim(ctx context.Context, tx *ent.Tx, ctr *ent.QuotaCounter, m quotav1.Meter, now time.Time) error {
	expired, err := tx.QuotaLease.Query().Where(quotalease.CounterID(ctr.ID), quotalease.Ended(false),
		quotalease.ExpiresAtLTE(now)).All(ctx)
	if err != nil {
		return fmt.Errorf("finding expired leases: %w", err)
	}
	if len(expired) == 0 {
		return nil
	}
	release := releasesInFlight(m)
	var charged, freed int64
	for _, l := range expired {
		settled := l.Settled
		if !release {
			charged = satAdd(charged, l.InFlight)
			settled = satAdd(settled, l.InFlight)
		}
		freed = satAdd(freed, l.Holding)
		if err := tx.QuotaLease.UpdateOne(l).SetEnded(true).SetHolding(0).SetInFlight(0).
			SetSettled(settled).SetUpdatedAt(now).Exec(ctx); err != nil {
			return fmt.Errorf("ending an expired lease: %w", err)
		}
	}
	err = tx.QuotaCounter.UpdateOneID(ctr.ID).AddSettled(charged).AddHeld(-freed).SetUpdatedAt(now).Exec(ctx)
	if err != nil {
		return fmt.Errorf("reclaiming expired leases: %w", err)
	}
	return nil
}

// releasesInFlight reports whether a lease's in-flight units go back to the
// counter, rather than being charged as settled, when it expires or is
// released: true for concurrency, whose units are requests running, not
// spend. Those requests have ended (a released lease) or belong to a replica
// that has been silent for a whole TTL, which no longer counts them.
func releasesInFlight(m quotav1.Meter) bool { return m == quotav1.Meter_METER_CONCURRENT_REQUESTS }

// policyOf reads the subject's policy; nil when it has none.
func policyOf(ctx context.Context, tx *ent.Tx, key counterKey) (*policy.Spec, error) {
	q := tx.GatewayPolicy.Query()
	if key.kind == "tenant" {
		q = q.Where(gatewaypolicy.TenantID(key.subject))
	} else {
		q = q.Where(gatewaypolicy.APIKeyID(key.subject))
	}
	p, err := q.Only(ctx)
	if ent.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the policy: %w", err)
	}
	return &p.Spec, nil
}

// limitOf reads the subject's limit on the meter from its policy.
func limitOf(ctx context.Context, tx *ent.Tx, key counterKey) (int64, bool, error) {
	spec, err := policyOf(ctx, tx, key)
	if err != nil || spec == nil {
		return 0, false, err
	}
	hard, _ := Limits(*spec, key.m)
	if hard == nil {
		return 0, false, nil
	}
	return max(*hard, 0), true, nil
}

// Limits returns a policy's hard limit on a meter and, for budgets, its
// soft limit; nil when unset. The admin API's limit status uses it too, so
// that both read a policy the same way.
func Limits(s policy.Spec, m quotav1.Meter) (hard, soft *int64) {
	var period policy.Period
	switch m {
	case quotav1.Meter_METER_REQUESTS_PER_MINUTE:
		return s.RequestsPerMinute, nil
	case quotav1.Meter_METER_TOKENS_PER_MINUTE:
		return s.TokensPerMinute, nil
	case quotav1.Meter_METER_CONCURRENT_REQUESTS:
		return s.ConcurrentRequests, nil
	case quotav1.Meter_METER_DAY_BUDGET:
		period = policy.PeriodDay
	case quotav1.Meter_METER_MONTH_BUDGET:
		period = policy.PeriodMonth
	case quotav1.Meter_METER_TOTAL_BUDGET:
		period = policy.PeriodTotal
	default:
		return nil, nil
	}
	for _, b := range s.Budgets {
		if b.Period == period {
			return b.HardLimitMicros, b.SoftLimitMicros
		}
	}
	return nil, nil
}

func satAdd(a, b int64) int64 {
	s := a + b
	if a > 0 && b > 0 && s < 0 {
		return math.MaxInt64
	}
	if a < 0 && b < 0 && s >= 0 {
		return math.MinInt64
	}
	return s
}

func clip(s string) string {
	if len(s) > 128 {
		return s[:128]
	}
	return s
}
