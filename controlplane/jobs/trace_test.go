package jobs_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate-dev/tollgate/controlplane/jobs"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent"
)

// Each run is a root span named for its job, with its outcome and the
// run's transactions under it; the error's text stays out of it. A look
// that finds the job not due is no span.
func TestEachRunIsARootSpan(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := &clock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
		spans := tracetest.NewSpanRecorder()
		r := runner(st, "replica-a", c)
		r.Tracers = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
		const secret = "invoice for ada@example.com failed"
		fail := true
		j := jobs.Job{Name: "test.traced", Every: time.Minute, Run: func(ctx context.Context) error {
			if err := st.InTx(ctx, func(*ent.Tx) error { return nil }); err != nil {
				return err
			}
			if fail {
				return errors.New(secret)
			}
			return nil
		}}
		// A caller's span must not become the run's parent.
		ctx, caller := r.Tracers.Tracer("test").Start(t.Context(), "caller")
		defer caller.End()
		if ran, err := r.RunIfDue(ctx, j); !ran || err == nil {
			t.Fatalf("failing run: ran=%v err=%v", ran, err)
		}
		if ran, err := r.RunIfDue(ctx, j); ran || err != nil {
			t.Fatalf("run before due: ran=%v err=%v", ran, err)
		}
		fail = false
		c.Add(time.Minute)
		if ran, err := r.RunIfDue(ctx, j); !ran || err != nil {
			t.Fatalf("second run: ran=%v err=%v", ran, err)
		}

		var runs []sdktrace.ReadOnlySpan
		children := map[trace.SpanID]int{}
		for _, s := range spans.Ended() {
			if s.Name() == "job test.traced" {
				runs = append(runs, s)
			}
			children[s.Parent().SpanID()]++
			for _, a := range s.Attributes() {
				if strings.Contains(a.Value.String(), "ada@example.com") {
					t.Errorf("span %s attribute %s holds the job's error text", s.Name(), a.Key)
				}
			}
			if strings.Contains(s.Status().Description, "ada@example.com") {
				t.Errorf("span %s's status holds the job's error text", s.Name())
			}
		}
		if len(runs) != 2 {
			t.Fatalf("%d run spans, want 2 (the look before the job was due is none)", len(runs))
		}
		for i, want := range []string{"failed", "succeeded"} {
			s := runs[i]
			if s.Parent().IsValid() {
				t.Errorf("run %d has parent %s, want a root span", i, s.Parent().SpanID())
			}
			got := map[string]string{}
			for _, a := range s.Attributes() {
				got[string(a.Key)] = a.Value.String()
			}
			if got["tollgate.job.name"] != "test.traced" || got["tollgate.outcome"] != want || got["tollgate.job.holder"] != "replica-a" {
				t.Errorf("run %d attributes %v, want job test.traced, outcome %s", i, got, want)
			}
			// The job's transaction and the lease's release.
			if n := children[s.SpanContext().SpanID()]; n < 2 {
				t.Errorf("run %d has %d child spans, want its transactions", i, n)
			}
		}
	})
}
