package admin

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	quotav1 "github.com/tollgate-dev/tollgate/api/tollgate/quota/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

// The limit status shows what the quota authority counted for the current
// window of each limit, with the policy's limits and when each resets.
func TestLimitStatusShowsUseAndReset(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		h.createTenant("acme")
		h.createTenant("globex")
		key := h.createKey(h.op(), "acme", "k").GetKey()
		target := &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_KeyId{KeyId: key.GetId()}}
		if _, err := h.policies().UpdatePolicy(h.op(), &adminv1.UpdatePolicyRequest{
			Policy: &adminv1.Policy{Target: target, RequestsPerMinute: ptr[int64](60), Budgets: []*adminv1.Budget{
				{Period: adminv1.BudgetPeriod_BUDGET_PERIOD_DAY, HardLimitMicros: ptr[int64](5_000_000), SoftLimitMicros: ptr[int64](4_000_000)},
			}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"requests_per_minute", "budgets"}},
		}); err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC()
		day := now.Truncate(24 * time.Hour)
		if err := st.Client().QuotaCounter.Create().SetSubjectKind("key").SetSubjectID(key.GetId()).
			SetMeter(quotav1.Meter_METER_DAY_BUDGET.String()).SetWindowStart(day).SetSettled(1_234_567).SetHeld(89).Exec(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Yesterday's counter is not today's use.
		if err := st.Client().QuotaCounter.Create().SetSubjectKind("key").SetSubjectID(key.GetId()).
			SetMeter(quotav1.Meter_METER_DAY_BUDGET.String()).SetWindowStart(day.AddDate(0, 0, -1)).SetSettled(999).Exec(t.Context()); err != nil {
			t.Fatal(err)
		}
		admin := h.ctx(h.tenantAdmin("acme"))
		resp, err := h.policies().GetLimitStatus(admin, &adminv1.GetLimitStatusRequest{Target: target})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]*adminv1.LimitStatus{}
		for _, l := range resp.GetLimits() {
			got[l.GetName()] = l
		}
		if len(got) != 2 {
			t.Fatalf("limits %v, want requests_per_minute and budget_day", resp.GetLimits())
		}
		d := got["budget_day"]
		if d.GetLimit() != 5_000_000 || d.GetSoftLimit() != 4_000_000 || d.GetUsed() != 1_234_567 || d.GetHeld() != 89 ||
			!d.GetWindowStart().AsTime().Equal(day) || !d.GetResetTime().AsTime().Equal(day.AddDate(0, 0, 1)) {
			t.Errorf("budget_day = %v", d)
		}
		if r := got["requests_per_minute"]; r.GetLimit() != 60 || r.GetUsed() != 0 || r.GetResetTime().AsTime().Sub(r.GetWindowStart().AsTime()) != time.Minute {
			t.Errorf("requests_per_minute = %v", r)
		}
		// Another tenant's admin cannot read it.
		_, err = h.policies().GetLimitStatus(h.ctx(h.tenantAdmin("globex")), &adminv1.GetLimitStatusRequest{Target: target})
		wantCode(t, err, codes.NotFound)
	})
}
