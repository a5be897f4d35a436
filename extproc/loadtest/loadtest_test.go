package loadtest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestShortRunDrivesTollgatesRealPath(t *testing.T) {
	rep, err := Run(t.Context(), Options{Requests: 200, Concurrency: 4, Chunks: 20, LongChunks: 60, Keys: 3, Rounds: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("problems: %q", rep.Problems)
	}
	if len(rep.Phases) != 6 {
		t.Fatalf("%d phases, want 3 scenarios × 2 servers", len(rep.Phases))
	}
	for _, p := range rep.Phases {
		if p.Requests != 200 || p.Errors != 0 || p.RequestsPerSecond <= 0 || p.P50Ms <= 0 || p.P99Ms < p.P50Ms {
			t.Errorf("%s %s: %d requests, %d errors, %.0f req/s, p50 %.3fms, p99 %.3fms",
				p.Server, p.Scenario, p.Requests, p.Errors, p.RequestsPerSecond, p.P50Ms, p.P99Ms)
		}
		wantChunks := map[string]int{NonStreaming: 1, Streaming: 22, LongStreaming: 62}[p.Scenario]
		if p.BodyChunks != wantChunks {
			t.Errorf("%s %s: %d response body messages, want %d", p.Server, p.Scenario, p.BodyChunks, wantChunks)
		}
		switch p.Server {
		case ServerTollgate:
			// One record per request, with the tokens the provider reported:
			// every request was authenticated, routed, translated and counted.
			wantOut := map[string]int64{NonStreaming: 2, Streaming: 20, LongStreaming: 60}[p.Scenario] * 200
			if u := p.Usage; u == nil || u.Records != 200 || u.Counted != 200 || u.InputTokens != 200*promptTokens || u.OutputTokens != wantOut || u.CostMicros <= 0 {
				t.Errorf("tollgate %s: usage %+v, want 200 counted records, %d input and %d output tokens", p.Scenario, p.Usage, 200*promptTokens, wantOut)
			}
		case ServerNoop:
			if p.Usage != nil {
				t.Errorf("noop %s: usage %+v", p.Scenario, p.Usage)
			}
		}
	}
	if len(rep.Ratios) != 3 || rep.Ratios[0].Scenario != NonStreaming || rep.Ratios[0].GoalMet == nil || rep.Ratios[0].Throughput <= 0 {
		t.Errorf("ratios: %+v", rep.Ratios)
	}
	if m := rep.Memory; m == nil || m.AllocBytesPerChunkShort <= 0 || m.AllocBytesPerChunkLong <= 0 || m.PeakLiveHeapLong == 0 {
		t.Errorf("memory check: %+v", rep.Memory)
	}

	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"non-streaming", "streaming (20 chunks)", "long-streaming (60 chunks)", "goal ≥ 60%", "usage records (tollgate): 600 for 600 requests"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("the text report lacks %q:\n%s", want, text.String())
		}
	}
	if strings.Contains(text.String(), "PROBLEMS") {
		t.Errorf("the text report shows problems:\n%s", text.String())
	}
	var decoded Report
	if b, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &decoded); err != nil || len(decoded.Phases) != 6 || decoded.Phases[0].RequestsPerSecond != rep.Phases[0].RequestsPerSecond {
		t.Errorf("JSON round trip: %v, %+v", err, decoded.Phases)
	}
}

// A gateway that refuses the requests is a failed run, not a fast one.
func TestRefusedRequestsAreProblems(t *testing.T) {
	cfg, err := NewStaticConfig(1)
	if err != nil {
		t.Fatal(err)
	}
	cfg.model.Deployments[0].ProviderId = "deleted-provider"
	rep, err := Run(t.Context(), Options{Requests: 20, Concurrency: 2, Scenarios: []string{NonStreaming}, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	tg, noop := rep.phase(ServerTollgate, NonStreaming), rep.phase(ServerNoop, NonStreaming)
	if tg.Errors == 0 || !strings.Contains(tg.FirstError, "refused with 503") {
		t.Errorf("tollgate: %d errors, first %q; want the 503 of an unconfigured provider", tg.Errors, tg.FirstError)
	}
	if noop.Errors != 0 || noop.Requests != 20 {
		t.Errorf("noop: %d errors (%s), %d requests", noop.Errors, noop.FirstError, noop.Requests)
	}
	if len(rep.Problems) == 0 || !strings.Contains(strings.Join(rep.Problems, "\n"), "tollgate non-streaming: a request failed") {
		t.Errorf("problems: %q", rep.Problems)
	}
}

// Requests that complete without their usage records mean the load went
// around the billing path: the run must say so.
func TestMissingUsageRecordsAreProblems(t *testing.T) {
	rep := &Report{Settings: Settings{Concurrency: 1}, Phases: []Phase{{
		Server: ServerTollgate, Scenario: NonStreaming, BodyChunks: 1, Requests: 10, RequestsPerSecond: 100, expectTokens: 2,
		Usage: &UsageCounts{Records: 9, Counted: 9, InputTokens: 9 * promptTokens, OutputTokens: 18},
	}}}
	rep.conclude()
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "10 requests but 9 usage records") {
		t.Errorf("problems: %q", rep.Problems)
	}
}

func TestOptionsAreChecked(t *testing.T) {
	for _, o := range []Options{
		{Network: "udp"},
		{Servers: []string{"envoy"}},
		{Scenarios: []string{"embeddings"}},
		{Concurrency: -1},
	} {
		if _, err := Run(t.Context(), o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}
