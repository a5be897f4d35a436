package tollgatecmd

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

// dashboardPath is the Grafana dashboard the Helm chart ships.
var dashboardPath = filepath.Join("..", "..", "..", "charts", "tollgate", "dashboards", "tollgate.json")

// grafanaVariable matches $name and ${name} in a query.
var grafanaVariable = regexp.MustCompile(`\$\{?(\w+)\}?`)

// dashboardQueries returns every PromQL expression of the dashboard (panel
// targets and variable queries) with Grafana's variables replaced by
// values PromQL accepts.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("the dashboard has no uid or title")
	}
	values := map[string]string{"__rate_interval": "5m", "__interval": "1m", "model": ".*", "provider": ".*", "datasource": "prometheus"}
	subst := func(expr string) string {
		return grafanaVariable.ReplaceAllStringFunc(expr, func(v string) string {
			name := grafanaVariable.FindStringSubmatch(v)[1]
			val, ok := values[name]
			if !ok {
				t.Errorf("query %q uses the unknown variable $%s", expr, name)
			}
			return val
		})
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for i, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q target %d has no expr", p.Title, i)
			}
			out[p.Title+" #"+string(rune('A'+i))] = subst(tg.Expr)
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((\w+),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(metric, label)", v.Name, v.Definition)
			continue
		}
		out["variable "+v.Name] = m[1]
	}
	return out
}

// metricNames are the metric names expr selects.
func metricNames(t *testing.T, p parser.Parser, title, expr string) []string {
	t.Helper()
	e, err := p.ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %q does not parse: %v", title, expr, err)
		return nil
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if vs.Name == "" {
				t.Errorf("%s: a selector without a metric name in %q", title, expr)
			}
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

// Every query of the Grafana dashboard parses as PromQL and names only
// metrics that `tollgate dev` (control plane and ext_proc in one process)
// actually exposes once it has served requests: a renamed metric fails
// here rather than leave an empty panel.
func TestDashboardQueriesNameExposedMetrics(t *testing.T) {
	queries := dashboardQueries(t)
	if len(queries) < 20 {
		t.Fatalf("%d queries in the dashboard; expected the full set", len(queries))
	}
	dir := t.TempDir()
	d := startDevWith(t, dir, "--fake-providers", "--dataplane", "test", "--listen-port", freePort(t), "--envoy-admin-port", freePort(t))
	key := devKey(t, d, dir)
	// A plain and a streamed completion (time to first chunk), and one
	// refused (rejections); the key's first requests may be refused too
	// until it reaches ext_proc.
	for _, body := range []string{
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}`,
		`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hello"}]}`,
	} {
		for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
			status := post(t, d.traffic, key, body)
			if status == http.StatusOK {
				break
			}
			if time.Since(start) > settleTime {
				t.Fatalf("chat completion: status %d after %v; logs:\n%s", status, settleTime, d.logs)
			}
		}
	}
	if status := post(t, d.traffic, "tg-not-a-key", `{"model":"gpt-4o-mini"}`); status != http.StatusUnauthorized {
		t.Fatalf("a bad key got %d", status)
	}

	p := parser.NewParser(parser.Options{})
	names := map[string][]string{} // by query
	for title, expr := range queries {
		names[title] = metricNames(t, p, title, expr)
	}
	var missing []string
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		exposed := scrape(t, d.metrics, d.logs).SeriesNames()
		missing = missing[:0]
		for title, ns := range names {
			for _, n := range ns {
				if !exposed[n] {
					missing = append(missing, title+": "+n)
				}
			}
		}
		// Usage records reach the control plane in the background; its
		// transactions and ext_proc's acknowledgements follow.
		if len(missing) == 0 || time.Since(start) > 20*time.Second {
			break
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("the dashboard queries a metric tollgate does not expose: %s", m)
	}
}

// devKey creates a tenant and a key through dev's admin API.
func devKey(t *testing.T, d devAddrs, dir string) string {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(dir, "operator-token"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+strings.TrimSpace(string(token)))
	conn, err := grpc.NewClient(d.admin, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := adminv1.NewTenantServiceClient(conn).CreateTenant(ctx, &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: "acme"}}); err != nil {
		t.Fatal(err)
	}
	key, err := adminv1.NewKeyServiceClient(conn).CreateKey(ctx, &adminv1.CreateKeyRequest{Tenant: "acme", Key: &adminv1.Key{Name: "ci"}})
	if err != nil {
		t.Fatal(err)
	}
	return key.GetSecret()
}

// post sends a chat completion to the data plane and returns its status.
func post(t *testing.T, traffic, key, body string) int {
	t.Helper()
	status, _ := postChat(t, traffic, key, body)
	return status
}

// postChat sends a chat completion to the data plane and returns its
// status and body.
func postChat(t *testing.T, traffic, key, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+traffic+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, got
}

// chatUntil repeats a chat completion until it answers want, for up to
// settleTime, while settling(status) says the answer may still change (a
// key or restriction on its way to ext_proc); it returns the last body.
func chatUntil(t *testing.T, traffic, key, body string, want int, settling func(status int) bool) []byte {
	t.Helper()
	deadline := time.Now().Add(settleTime)
	for {
		status, got := postChat(t, traffic, key, body)
		if status == want {
			return got
		}
		if !settling(status) || time.Now().After(deadline) {
			t.Fatalf("chat completion: %d %s, want %d", status, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
