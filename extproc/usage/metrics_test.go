package usage

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/telemetry"
)

// While the control plane is away, the queue and then the spill grow, and
// the metrics say so; once it is back, the records are acknowledged.
func TestRecorderMetrics(t *testing.T) {
	tel, err := telemetry.New(t.Context(), telemetry.Options{Service: "usage-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	gather := func() telemetry.Families {
		fams, err := tel.Gather()
		if err != nil {
			t.Fatal(err)
		}
		return fams
	}
	st, err := store.Open(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	cp := newControlPlane(t, st)
	r, _ := newRecorder(t, testConfig(dial(t, cp.addr), t.TempDir()))
	if err := r.Instrument(tel.Meters()); err != nil {
		t.Fatal(err)
	}
	recordN(r, 1000)
	waitFor(t, "the records are spilled", func() bool {
		s, _ := gather().Sum("tollgate_usage_spill_size_bytes")
		return s > 0
	})
	fams := gather()
	if n, _ := fams.Sum("tollgate_usage_records_total", "tollgate_outcome", "recorded"); n != 1000 {
		t.Errorf("recorded = %v, want 1000", n)
	}
	if up, ok := fams.Sum("tollgate_usage_connected"); !ok || up != 0 {
		t.Errorf("connected = %v with the control plane down", up)
	}
	cp.start()
	waitFor(t, "the spill is delivered", func() bool {
		f := gather()
		acked, _ := f.Sum("tollgate_usage_records_total", "tollgate_outcome", "acked")
		spill, _ := f.Sum("tollgate_usage_spill_size_bytes")
		return acked == 1000 && spill == 0
	})
	fams = gather()
	if up, ok := fams.Sum("tollgate_usage_connected"); !ok || up != 1 {
		t.Errorf("connected = %v with the control plane up", up)
	}
	if q, ok := fams.Sum("tollgate_usage_queue_records"); !ok || q != 0 {
		t.Errorf("queue = %v after delivery", q)
	}
	closeRecorder(t, r, 5*time.Second)
}
