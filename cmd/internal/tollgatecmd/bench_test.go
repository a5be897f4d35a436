package tollgatecmd

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/tollgate-dev/tollgate/extproc/loadtest"
)

func TestBenchExtProcPrintsJSON(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main(t.Context(), []string{"bench", "extproc", "--requests", "40", "--concurrency", "2", "--chunks", "5", "--long-chunks", "10", "--unix", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errb.String())
	}
	var rep loadtest.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	if len(rep.Phases) != 6 || rep.Settings.Network != "unix" || len(rep.Problems) != 0 {
		t.Errorf("%d phases over %s, problems %q", len(rep.Phases), rep.Settings.Network, rep.Problems)
	}
	for _, p := range rep.Phases {
		if p.Requests != 40 || p.RequestsPerSecond <= 0 {
			t.Errorf("%s %s: %d requests at %.0f/s", p.Server, p.Scenario, p.Requests, p.RequestsPerSecond)
		}
	}
}

func TestBenchNeedsATarget(t *testing.T) {
	for _, args := range [][]string{{"bench"}, {"bench", "envoy"}, {"bench", "extproc", "--concurrency", "0"}, {"bench", "extproc", "--servers", "nginx"}} {
		var out, errb bytes.Buffer
		if code := Main(t.Context(), args, &out, &errb); code != 2 {
			t.Errorf("%q: exit %d, stderr %s", args, code, errb.String())
		}
	}
}
