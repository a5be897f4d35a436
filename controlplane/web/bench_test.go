package web

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/controlplane/usageingest"
)

// BenchmarkPages renders the usage-heavy pages for a tenant with many
// usage records (TOLLGATE_BENCH_RECORDS, 100,000 by default) spread over
// the last 30 days, 20 keys and 5 models, on SQLite. The pages read the
// rollups, so their cost follows the number of hours and groups, not of
// records.
//
//	go test ./controlplane/web/ -run '^$' -bench Pages -benchtime 20x
func BenchmarkPages(b *testing.B) {
	n := 100_000
	if v := os.Getenv("TOLLGATE_BENCH_RECORDS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	st := storetest.SQLite(b)
	c := newConsole(b, st)
	acme := c.tenant("acme")
	c.person("acme", "olga@acme.example", owner)
	var keys []string
	for i := range 20 {
		keys = append(keys, c.key("acme", fmt.Sprintf("key-%d", i), "").GetId())
	}
	models := []string{"gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5", "gemini-2.5-flash", "text-embedding-3-small"}
	ing := usageingest.New(st, slog.New(slog.DiscardHandler))
	now := time.Now().UTC()
	start := time.Now()
	for done := 0; done < n; {
		req := &usagev1.IngestRequest{}
		for i := 0; i < 1000 && done < n; i, done = i+1, done+1 {
			req.Records = append(req.Records, &usagev1.UsageRecord{
				RequestId: uuid.NewString(), TenantId: acme.GetId(), KeyId: keys[done%len(keys)], Model: models[done%len(models)],
				Provider: "openai", UpstreamModel: "m", InputTokens: 100, OutputTokens: 50, CostMicros: 75, StatusCode: 200, LatencyMs: int64(50 + done%500),
				Time: timestamppb.New(now.Add(-time.Duration(done%(30*24*60)) * time.Minute)),
			})
		}
		if _, err := ing.Store(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("stored %d records in %v", n, time.Since(start).Round(time.Millisecond))
	br := c.browser()
	br.signIn("olga@acme.example")
	for _, path := range []string{"/t/acme/", "/t/acme/usage", "/t/acme/usage?group=key&split=model&metric=latency", "/t/acme/keys"} {
		b.Run(path, func(b *testing.B) {
			for b.Loop() {
				if p := br.get(path); p.code != http.StatusOK {
					b.Fatalf("%s: %d", path, p.code)
				}
			}
		})
	}
}
