package tollgatecmd

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
	"github.com/tollgate-dev/tollgate/test/testport"
)

func freePort(t *testing.T) string {
	t.Helper()
	return strconv.Itoa(testport.Free(t))
}

// The README's quickstart: `tollgate dev --fake-providers` serves traffic
// through a data plane; a key made with the admin API gets a chat
// completion, and its usage lands in the store.
func TestDevQuickstartWithFakeProviders(t *testing.T) {
	dir := t.TempDir()
	d := startDevWith(t, dir, "--fake-providers", "--dataplane", "test", "--listen-port", freePort(t), "--envoy-admin-port", freePort(t))
	if d.traffic == "" || !strings.Contains(d.banner, "TEST") {
		t.Fatalf("the banner names no traffic address or lacks the test data plane warning:\n%s", d.banner)
	}
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

	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello there"}]}`
	var resp *http.Response
	var got []byte
	// The new key reaches ext_proc within about a second (401 until then),
	// and the model's route reaches the data plane (404 until then).
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+d.traffic+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key.GetSecret())
		req.Header.Set("Content-Type", "application/json")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if (resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusNotFound) || time.Since(start) > settleTime {
			break
		}
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chat completion: %d %s\nlogs:\n%s", resp.StatusCode, got, d.logs)
	}
	var chat struct {
		Choices []struct{ Message struct{ Content string } }
		Usage   struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
		}
	}
	if err := json.Unmarshal(got, &chat); err != nil || len(chat.Choices) != 1 || !strings.Contains(chat.Choices[0].Message.Content, "fake-openai reply") {
		t.Fatalf("response %s (%v)", got, err)
	}
	if bytes.Contains(got, []byte(key.GetSecret())) {
		t.Error("the response echoes the key")
	}

	st, err := store.Open(t.Context(), "sqlite://"+filepath.Join(dir, "tollgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		recs, err := st.Client().UsageRecord.Query().Where(usagerecord.StatusCode(http.StatusOK)).All(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 1 {
			r := recs[0]
			if r.InputTokens != chat.Usage.PromptTokens || r.OutputTokens != chat.Usage.CompletionTokens || r.Model != "gpt-4o-mini" || r.Provider != "fake-openai" {
				t.Errorf("usage record %+v; the client saw usage %+v", r, chat.Usage)
			}
			// $0.15 and $0.60 per million tokens.
			want := (r.InputTokens*150_000 + r.OutputTokens*600_000 + 500_000) / 1_000_000
			if r.CostMicros != want {
				t.Errorf("cost %d µ$, want %d", r.CostMicros, want)
			}
			// The analytics read the rollups written with the record.
			series, err := adminv1.NewUsageServiceClient(conn).GetUsageTimeSeries(ctx, &adminv1.GetUsageTimeSeriesRequest{
				Tenant: "acme", Granularity: adminv1.UsageGranularity_USAGE_GRANULARITY_HOUR, SplitBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_MODEL,
				StartTime: timestamppb.New(r.CreatedAt.Add(-time.Hour)),
			})
			if err != nil {
				t.Fatal(err)
			}
			var tot *adminv1.UsageTotals
			for _, se := range series.GetSeries() {
				if se.GetKey() == "gpt-4o-mini" {
					tot = se.GetTotals()
				}
			}
			if tot.GetInputTokens() != r.InputTokens || tot.GetOutputTokens() != r.OutputTokens || tot.GetCostMicros() != r.CostMicros ||
				tot.GetLatencyP50Ms() <= 0 {
				t.Errorf("usage series %v; the record is %+v", series.GetSeries(), r)
			}
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%d usage records with status 200 after 10s, want 1", len(recs))
		}
	}
}

// settleTime bounds how long a test waits for a change (a new key, model or
// restriction) to reach ext_proc and the data plane. It takes about a second
// on an idle machine; the bound is generous because CI runs test packages
// side by side on two cores.
const settleTime = 30 * time.Second
