package extproc

import (
	"strings"
	"sync"
	"testing"
	"time"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	"github.com/tollgate-dev/tollgate/extproc/quota"
)

func withQuota(f *fixture) *quota.Engine {
	e := quota.New(quota.Options{Now: func() time.Time { return f.clock }})
	f.server.quota = e
	return e
}

// A request over its tenant's rate limit is refused before it leaves, with
// a 429 the SDKs retry on; admitted requests carry OpenAI's rate-limit
// headers.
func TestRateLimitRefusesWith429AndHeaders(t *testing.T) {
	f := newFixture(t)
	withQuota(f)
	rpm := int64(1)
	f.cfg.tenants[tenantID].Policy = &configv1.Policy{RequestsPerMinute: &rpm}

	ds, r, _ := f.admit(t, chatBody)
	if r.GetImmediateResponse() != nil {
		t.Fatalf("the first request was refused: %s", r.GetImmediateResponse().GetBody())
	}
	set, _, _ := mutations(ds.exchange(t, respHeaders(false, ":status", "200")))
	if set["x-ratelimit-limit-requests"] != "1" || set["x-ratelimit-remaining-requests"] != "0" || set["x-ratelimit-reset-requests"] == "" {
		t.Errorf("rate-limit headers on the response: %v", set)
	}
	ds.close(t)

	ds2 := f.open()
	ds2.exchange(t, reqHeaders(false, ":method", "POST", ":path", "/v1/chat/completions", "authorization", "Bearer "+f.key))
	r = ds2.exchange(t, reqBody(chatBody))
	status, body := immediateOf(t, r)
	if status != 429 {
		t.Fatalf("second request: %d %v, want 429", status, body)
	}
	e := body["error"].(map[string]any)
	if e["code"] == "" || !strings.Contains(strings.ToLower(e["message"].(string)), "request") {
		t.Errorf("the error does not say which limit: %v", e)
	}
	hdrs := map[string]string{}
	for _, h := range r.GetImmediateResponse().GetHeaders().GetSetHeaders() {
		hdrs[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
	}
	if hdrs["retry-after"] == "" || hdrs["x-ratelimit-remaining-requests"] != "0" {
		t.Errorf("429 headers %v", hdrs)
	}
	if err := <-ds2.done; err != nil {
		t.Fatal(err)
	}
	recs := f.usage.records()
	if len(recs) != 2 || recs[1].GetStatusCode() != 429 {
		t.Errorf("records %v", recs)
	}
}

// 200 concurrent requests against a budget that admits exactly ten
// requests' worth, all held in flight: ten are admitted, the rest refused
// before reaching a provider.
func TestBudgetHoldsUnderConcurrency(t *testing.T) {
	f := newFixture(t)
	withQuota(f)
	// Worst case of chatBody with max_tokens 100 on the Anthropic-first
	// model: ~20 input and 100 output tokens at $3/$15 per Mtok ≈ 1,560 µ$.
	body := strings.Replace(chatBody, `"model":"smart"`, `"model":"smart","max_tokens":100`, 1)
	probe, r, _ := f.admit(t, body)
	if r.GetImmediateResponse() != nil {
		t.Fatal("probe refused")
	}
	worst := f.server.inflight.get(mustRequestID(t, f)).reservation.Cost().Micros
	probe.close(t) // released: it reached no provider
	hard := 10*worst + worst/2
	f.cfg.tenants[tenantID].Policy = &configv1.Policy{Budgets: []*configv1.Budget{{Period: configv1.BudgetPeriod_BUDGET_PERIOD_DAY, HardLimitMicros: &hard}}}

	const n = 200
	var wg sync.WaitGroup
	results := make(chan int, n)
	streams := make(chan *fakeStream, n)
	for range n {
		wg.Go(func() {
			ds := f.open()
			ds.exchange(t, reqHeaders(false, ":method", "POST", ":path", "/v1/chat/completions", "authorization", "Bearer "+f.key))
			r := ds.exchange(t, reqBody(body))
			if ir := r.GetImmediateResponse(); ir != nil {
				results <- int(ir.GetStatus().GetCode())
				if err := <-ds.done; err != nil {
					t.Error(err)
				}
				return
			}
			results <- 200
			streams <- ds // held open: the reservation stays
		})
	}
	wg.Wait()
	close(results)
	close(streams)
	admitted, refused := 0, 0
	for code := range results {
		switch code {
		case 200:
			admitted++
		case 429:
			refused++
		default:
			t.Errorf("status %d", code)
		}
	}
	if admitted != 10 || refused != n-10 {
		t.Errorf("admitted %d, refused %d; want exactly 10 admitted", admitted, refused)
	}
	for ds := range streams {
		ds.close(t)
	}
}

func mustRequestID(t *testing.T, f *fixture) string {
	t.Helper()
	f.server.inflight.mu.Lock()
	defer f.server.inflight.mu.Unlock()
	for id := range f.server.inflight.m {
		return id
	}
	t.Fatal("no request in flight")
	return ""
}

// After a burst of plain, streamed and cut requests, the budget's spend is
// the sum of the requests' usage records: streams settle at their reported
// usage, a cut stream at its estimate, and nothing stays held.
func TestBudgetSpendEqualsTheUsageRecords(t *testing.T) {
	f := newFixture(t)
	e := withQuota(f)
	hard := int64(1 << 40)
	f.cfg.tenants[tenantID].Policy = &configv1.Policy{Budgets: []*configv1.Budget{{Period: configv1.BudgetPeriod_BUDGET_PERIOD_TOTAL, HardLimitMicros: &hard}}}
	stream := strings.Replace(chatBody, `"model":"smart"`, `"model":"smart","stream":true`, 1)
	start := `event: message_start` + "\n" + `data: {"type":"message_start","message":{"id":"m","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"usage":{"input_tokens":40,"output_tokens":1}}}` + "\n\n" +
		`event: content_block_start` + "\n" + `data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` + "\n\n" +
		`event: content_block_delta` + "\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Paris is lovely in the spring."}}` + "\n\n"
	end := `event: message_delta` + "\n" + `data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9}}` + "\n\n" +
		`event: message_stop` + "\n" + `data: {"type":"message_stop"}` + "\n\n"
	for i, c := range []struct {
		body   string
		chunks []string
		ct     string
	}{
		{chatBody, []string{anthropicAnswer}, "application/json"},
		{stream, []string{start, end}, "text/event-stream"},
		{stream, []string{start}, "text/event-stream"}, // cut before its end
	} {
		ds, _, id := f.admit(t, c.body)
		us := f.open()
		us.exchange(t, upstreamHeaders(anthropicD, ":path", "/v1/chat/completions", "x-request-id", id))
		us.exchange(t, respHeaders(false, ":status", "200", "content-type", c.ct))
		for j, chunk := range c.chunks {
			us.exchange(t, respBody(chunk, i != 2 && j == len(c.chunks)-1))
		}
		us.close(t)
		ds.close(t)
	}
	var sum int64
	recs := f.usage.records()
	for _, r := range recs {
		sum += r.GetCostMicros()
	}
	if len(recs) != 3 || !recs[2].GetEstimated() || sum == 0 {
		t.Fatalf("records %v", recs)
	}
	st := e.State(quota.Subject{Kind: quota.Tenant, ID: tenantID})
	spend := st.Meters[quota.TotalSpend]
	if spend.Used != sum || spend.Held != 0 {
		t.Errorf("total budget used %d (held %d), want the records' %d µ$ and nothing held", spend.Used, spend.Held, sum)
	}
}
