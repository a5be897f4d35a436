package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
	"github.com/tollgate-dev/tollgate/test/fakeprovider"
)

func (g *gateway) openai(key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(g.traffic+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

func (g *gateway) anthropic(key string) anthropic.Client {
	return anthropic.NewClient(anthropicoption.WithBaseURL(g.traffic+"/"), anthropicoption.WithAPIKey(key), anthropicoption.WithMaxRetries(0))
}

// newUsage waits for the usage record of the request that the fake
// answered last, and checks that it equals what the fake reported, cost
// included.
func (g *gateway) newUsage(t *testing.T, before int, fake *fakeprovider.Server, model string) *ent.UsageRecord {
	t.Helper()
	var recs []*ent.UsageRecord
	g.eventually(10*time.Second, "the usage record reaches the store", func() error {
		var err error
		recs, err = g.store.Client().UsageRecord.Query().Order(ent.Asc(usagerecord.FieldCreatedAt)).All(t.Context())
		if err != nil {
			return err
		}
		if len(recs) <= before {
			return fmt.Errorf("%d records, want more than %d", len(recs), before)
		}
		return nil
	})
	rec := recs[len(recs)-1]
	if fake == nil {
		return rec
	}
	last, ok := fake.LastRequest()
	if !ok {
		t.Fatalf("the fake %s received no request", fake.Kind())
	}
	u := last.Usage
	if rec.Model != model || rec.InputTokens != int64(u.InputTokens) || rec.OutputTokens != int64(u.OutputTokens) ||
		rec.CachedInputTokens != int64(u.CachedTokens) || rec.Estimated != !last.UsageReported {
		t.Errorf("usage record %s: in %d out %d cached %d estimated %v; the fake reported %+v (reported %v)",
			rec.Model, rec.InputTokens, rec.OutputTokens, rec.CachedInputTokens, rec.Estimated, u, last.UsageReported)
	}
	wantCost := (int64(u.InputTokens-u.CachedTokens)*inPrice + int64(u.CachedTokens)*cachedPrice + int64(u.OutputTokens)*outPrice + 500_000) / 1_000_000
	if last.UsageReported && rec.CostMicros != wantCost {
		t.Errorf("cost %d µ$, want %d", rec.CostMicros, wantCost)
	}
	if rec.TenantID.String() == "" || rec.APIKeyID == nil {
		t.Errorf("record lacks tenant or key: %+v", rec)
	}
	fakeprovider.AssertNoTollgateSecrets(t, fake.Requests())
	return rec
}

func (g *gateway) usageCount(t *testing.T) int {
	t.Helper()
	n, err := g.store.Client().UsageRecord.Query().Count(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestEndToEnd(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		g := startGateway(t, st)
		t.Run("chat completion through each provider", func(t *testing.T) { g.chatEachProvider(t) })
		t.Run("streamed chat completion through each provider", func(t *testing.T) { g.streamEachProvider(t) })
		t.Run("embeddings and models", func(t *testing.T) { g.embeddingsAndModels(t) })
		t.Run("Anthropic SDK", func(t *testing.T) { g.anthropicSDK(t) })
		t.Run("bad, revoked and expired keys", func(t *testing.T) { g.badKeys(t) })
		t.Run("429 falls back to the next deployment", func(t *testing.T) { g.fallback(t) })
		t.Run("a stream cut mid-way", func(t *testing.T) { g.cutStream(t) })
		t.Run("a provider's 429 reaches the client with retry-after", func(t *testing.T) { g.rateLimited(t) })
		t.Run("bad requests are refused before any provider", func(t *testing.T) { g.badRequests(t) })
		t.Run("an oversized body gets each SDK's error", func(t *testing.T) { g.oversizedBody(t) })
		t.Run("an unreachable provider of another API gets the client's error shape", func(t *testing.T) { g.unreachableProvider(t) })
		t.Run("a budget holds under 200 concurrent requests", func(t *testing.T) { g.budgetUnderConcurrency(t) })
	})
}

var providerModels = []struct {
	model string
	kind  fakeprovider.Kind
}{
	{"gpt-4o-mini", fakeprovider.OpenAI},
	{"claude-sonnet-4-5", fakeprovider.Anthropic},
	{"gemini-2.5-flash", fakeprovider.Gemini},
	{"azure-gpt-4o", fakeprovider.AzureOpenAI},
}

func (g *gateway) chatEachProvider(t *testing.T) {
	client := g.openai(g.key)
	for _, pm := range providerModels {
		t.Run(pm.model, func(t *testing.T) {
			before := g.usageCount(t)
			resp, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
				Model: pm.model,
				Messages: []openai.ChatCompletionMessageParamUnion{
					openai.DeveloperMessage("Answer in one sentence."),
					openai.UserMessage("What is the capital of France?"),
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Choices) != 1 || !strings.Contains(resp.Choices[0].Message.Content, "reply") || resp.Choices[0].FinishReason != "stop" {
				t.Errorf("response %+v", resp.Choices)
			}
			rec := g.newUsage(t, before, g.fakes[pm.kind], pm.model)
			if rec.InputTokens != resp.Usage.PromptTokens || rec.OutputTokens != resp.Usage.CompletionTokens {
				t.Errorf("the client saw usage %d/%d, the store %d/%d", resp.Usage.PromptTokens, resp.Usage.CompletionTokens, rec.InputTokens, rec.OutputTokens)
			}
			last, _ := g.fakes[pm.kind].LastRequest()
			if got := last.Header.Get(credentialHeader(pm.kind)); !strings.Contains(got, g.fakes[pm.kind].APIKey()) {
				t.Errorf("the provider saw credential header %q", got)
			}
		})
	}
}

func credentialHeader(k fakeprovider.Kind) string {
	switch k {
	case fakeprovider.Anthropic:
		return "x-api-key"
	case fakeprovider.Gemini:
		return "x-goog-api-key"
	case fakeprovider.AzureOpenAI:
		return "api-key"
	}
	return "authorization"
}

func (g *gateway) streamEachProvider(t *testing.T) {
	client := g.openai(g.key)
	for _, pm := range providerModels {
		t.Run(pm.model, func(t *testing.T) {
			before := g.usageCount(t)
			stream := client.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{
				Model:         pm.model,
				Messages:      []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Name three colours of the rainbow")},
				StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
			})
			var text strings.Builder
			var usage openai.CompletionUsage
			chunks := 0
			for stream.Next() {
				c := stream.Current()
				chunks++
				for _, ch := range c.Choices {
					text.WriteString(ch.Delta.Content)
				}
				if c.Usage.TotalTokens > 0 {
					usage = c.Usage
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if chunks < 3 || !strings.Contains(text.String(), "reply") {
				t.Errorf("%d chunks, text %q", chunks, text.String())
			}
			rec := g.newUsage(t, before, g.fakes[pm.kind], pm.model)
			if !rec.Streamed || rec.InputTokens != usage.PromptTokens || rec.OutputTokens != usage.CompletionTokens {
				t.Errorf("streamed %v; the client saw usage %+v, the store %d/%d", rec.Streamed, usage, rec.InputTokens, rec.OutputTokens)
			}
		})
	}
}

func (g *gateway) embeddingsAndModels(t *testing.T) {
	client := g.openai(g.key)
	before := g.usageCount(t)
	emb, err := client.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
		Model: "text-embedding-3-small",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"hello world", "good night moon"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(emb.Data) != 2 || len(emb.Data[0].Embedding) == 0 {
		t.Errorf("embeddings %+v", emb.Data)
	}
	g.newUsage(t, before, g.fakes[fakeprovider.OpenAI], "text-embedding-3-small")

	page, err := client.Models.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range page.Data {
		names = append(names, m.ID)
	}
	if len(names) != len(e2eModels) {
		t.Errorf("models %v, want the %d configured", names, len(e2eModels))
	}
}

func (g *gateway) anthropicSDK(t *testing.T) {
	client := g.anthropic(g.key)
	for _, c := range []struct {
		model string
		kind  fakeprovider.Kind
	}{{"claude-sonnet-4-5", fakeprovider.Anthropic}, {"gpt-4o-mini", fakeprovider.OpenAI}} {
		t.Run(c.model, func(t *testing.T) {
			params := anthropic.MessageNewParams{
				Model:     c.model,
				MaxTokens: 256,
				System:    []anthropic.TextBlockParam{{Text: "Be brief."}},
				Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("What is the capital of France?"))},
			}
			before := g.usageCount(t)
			msg, err := client.Messages.New(t.Context(), params)
			if err != nil {
				t.Fatal(err)
			}
			if len(msg.Content) == 0 || !strings.Contains(msg.Content[0].Text, "reply") {
				t.Errorf("message %+v", msg.Content)
			}
			rec := g.newUsage(t, before, g.fakes[c.kind], c.model)
			if rec.OutputTokens != msg.Usage.OutputTokens {
				t.Errorf("the client saw %d output tokens, the store %d", msg.Usage.OutputTokens, rec.OutputTokens)
			}

			before = g.usageCount(t)
			stream := client.Messages.NewStreaming(t.Context(), params)
			acc := anthropic.Message{}
			for stream.Next() {
				if err := acc.Accumulate(stream.Current()); err != nil {
					t.Fatal(err)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if len(acc.Content) == 0 || !strings.Contains(acc.Content[0].Text, "reply") || acc.StopReason != "end_turn" {
				t.Errorf("streamed message %+v stop %q", acc.Content, acc.StopReason)
			}
			rec = g.newUsage(t, before, g.fakes[c.kind], c.model)
			if !rec.Streamed {
				t.Error("a streamed message is not recorded as streamed")
			}
		})
	}
}

// statusOf returns the HTTP status of an SDK error.
func statusOf(err error) int {
	var oe *openai.Error
	if errors.As(err, &oe) {
		return oe.StatusCode
	}
	return 0
}

func (g *gateway) badKeys(t *testing.T) {
	ask := func(key string) error {
		client := g.openai(key)
		_, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
			Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		return err
	}
	if err := ask("tg-" + strings.Repeat("x", 43)); statusOf(err) != http.StatusUnauthorized {
		t.Errorf("unknown key: %v", err)
	}
	var anthropicErr *anthropic.Error
	badClient := g.anthropic("not-a-key")
	_, err := badClient.Messages.New(t.Context(), anthropic.MessageNewParams{
		Model: "claude-sonnet-4-5", MaxTokens: 10, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
	})
	if !errors.As(err, &anthropicErr) || anthropicErr.StatusCode != http.StatusUnauthorized {
		t.Errorf("the Anthropic SDK got %v for a bad key, want a 401 it parses", err)
	}

	key, id := g.newKey("to-revoke", nil)
	g.eventually(defaultWait, "the new key works", func() error { return ask(key) })
	if _, err := adminv1.NewKeyServiceClient(g.admin).RevokeKey(g.op, &adminv1.RevokeKeyRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	// About 100 ms on an idle machine (the figure is logged); the bound
	// leaves room for a loaded one.
	took := g.eventually(defaultWait, "the revoked key is refused", func() error {
		if err := ask(key); statusOf(err) != http.StatusUnauthorized {
			return fmt.Errorf("still accepted: %w", err)
		}
		return nil
	})
	t.Logf("revocation took effect in %v", took)

	// The key must reach ext_proc and work before it expires, then be
	// refused after: its lifetime leaves a loaded machine seconds for the
	// first part.
	expiry := time.Now().Add(6 * time.Second)
	expiring, _ := g.newKey("expiring", func(k *adminv1.Key) { k.ExpireTime = timestamppb.New(expiry) })
	g.eventually(5*time.Second, "the expiring key works before its expiry", func() error { return ask(expiring) })
	time.Sleep(time.Until(expiry) + 100*time.Millisecond)
	err = ask(expiring)
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.StatusCode != http.StatusUnauthorized || oe.Code != "expired_api_key" || !strings.Contains(oe.Message, "expired") {
		t.Errorf("expired key: %v", err)
	}
}

func (g *gateway) fallback(t *testing.T) {
	anth, oa := g.fakes[fakeprovider.Anthropic], g.fakes[fakeprovider.OpenAI]
	anth.Enqueue(fakeprovider.Behavior{Status: http.StatusTooManyRequests, RetryAfter: "1"})
	anthBefore, oaBefore := len(anth.Requests()), len(oa.Requests())
	before := g.usageCount(t)
	client := g.openai(g.key)
	resp, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
		Model: "fallback", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.Choices[0].Message.Content, "fake-openai") {
		t.Errorf("answered by %q, want the OpenAI fallback", resp.Choices[0].Message.Content)
	}
	if len(anth.Requests()) != anthBefore+1 || len(oa.Requests()) != oaBefore+1 {
		t.Errorf("tries: anthropic %d, openai %d; want one each", len(anth.Requests())-anthBefore, len(oa.Requests())-oaBefore)
	}
	last, _ := oa.LastRequest()
	if !strings.Contains(string(last.Body), `"gpt-4o-mini"`) || last.Path != "/v1/chat/completions" {
		t.Errorf("the fallback try was not translated for OpenAI: %s %s", last.Path, last.Body)
	}
	rec := g.newUsage(t, before, oa, "fallback")
	if rec.Provider != "fake-openai" || rec.UpstreamModel != "gpt-4o-mini" || rec.StatusCode != http.StatusOK {
		t.Errorf("usage record %+v", rec)
	}
}

func (g *gateway) cutStream(t *testing.T) {
	before := g.usageCount(t)
	oa := g.fakes[fakeprovider.OpenAI]
	oa.Enqueue(fakeprovider.Behavior{CutAfter: 3})
	client := g.openai(g.key)
	stream := client.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("tell me a long story about the sea and the sky")},
	})
	chunks := 0
	for stream.Next() {
		chunks++
	}
	if stream.Err() == nil {
		t.Errorf("the client saw a clean end after %d chunks of a cut stream", chunks)
	}
	rec := g.newUsage(t, before, nil, "")
	if !rec.Estimated || rec.ErrorType == "" || rec.InputTokens == 0 {
		t.Errorf("cut stream record %+v: want estimated usage and an error type", rec)
	}
}

func (g *gateway) rateLimited(t *testing.T) {
	oa := g.fakes[fakeprovider.OpenAI]
	// The route retries a 429 once on the only deployment; both tries fail.
	oa.Enqueue(fakeprovider.Behavior{Status: http.StatusTooManyRequests, RetryAfter: "7"}, fakeprovider.Behavior{Status: http.StatusTooManyRequests, RetryAfter: "7"})
	before := g.usageCount(t)
	client := g.openai(g.key)
	_, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
		Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.StatusCode != http.StatusTooManyRequests || oe.Type == "" {
		t.Fatalf("got %v, want a 429 in OpenAI's error shape", err)
	}
	if got := oe.Response.Header.Get("retry-after"); got != "7" {
		t.Errorf("retry-after = %q, want the provider's 7", got)
	}
	rec := g.newUsage(t, before, nil, "")
	if rec.StatusCode != http.StatusTooManyRequests || rec.ErrorType == "" || rec.CostMicros != 0 {
		t.Errorf("usage record of a refused request: %+v", rec)
	}
}

func (g *gateway) badRequests(t *testing.T) {
	oa := g.fakes[fakeprovider.OpenAI]
	seen := len(oa.Requests())
	for _, c := range []struct {
		name, body string
		status     int
	}{
		{"not JSON", `{"model":`, http.StatusBadRequest},
		{"no model", `{"messages":[{"role":"user","content":"hi"}]}`, http.StatusBadRequest},
		{"unknown model", `{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}`, http.StatusNotFound},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, g.traffic+"/v1/chat/completions", strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+g.key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error struct{ Message, Type string }
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		_ = resp.Body.Close()
		if resp.StatusCode != c.status || err != nil || body.Error.Message == "" || body.Error.Type == "" {
			t.Errorf("%s: %d %+v (%v), want %d in OpenAI's error shape", c.name, resp.StatusCode, body, err, c.status)
		}
	}
	if n := len(oa.Requests()) - seen; n != 0 {
		t.Errorf("%d bad requests reached the provider", n)
	}
}

// A body over the data plane's buffer limit is answered by Envoy itself,
// before ext_proc sees it; the control plane's local_reply_config gives that
// 413 the error shape each SDK parses.
func (g *gateway) oversizedBody(t *testing.T) {
	big := strings.Repeat("x", int(g.maxRequestBytes))
	oc, ac := g.openai(g.key), g.anthropic(g.key)
	_, err := oc.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(big)},
	})
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.StatusCode != http.StatusRequestEntityTooLarge || oe.Code != "request_too_large" ||
		oe.Type != "invalid_request_error" || !strings.Contains(oe.Message, "larger than this gateway accepts") {
		t.Errorf("OpenAI SDK: %v", err)
	}
	_, err = ac.Messages.New(t.Context(), anthropic.MessageNewParams{
		Model:     "claude-sonnet-4-5",
		MaxTokens: 16,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(big))},
	})
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusRequestEntityTooLarge || ae.Type() != "request_too_large" ||
		!strings.Contains(ae.Message, "larger than this gateway accepts") {
		t.Errorf("Anthropic SDK: %v", err)
	}
}

// A model served by an OpenAI provider that cannot be reached, asked by the
// Anthropic SDK: the router's 503 comes after the upstream ext_proc
// rewrote the request for OpenAI (its :path is OpenAI's), yet the client
// gets Anthropic's error shape, from the client API ext_proc wrote in the
// stream's dynamic metadata. The OpenAI SDK gets OpenAI's.
func (g *gateway) unreachableProvider(t *testing.T) {
	dead, err := adminv1.NewProviderServiceClient(g.admin).CreateProvider(g.op, &adminv1.CreateProviderRequest{Provider: &adminv1.Provider{
		Name: "unreachable", Kind: adminv1.ProviderKind_PROVIDER_KIND_OPENAI,
		BaseUrl: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), Credential: "sk-unused",
	}})
	if err != nil {
		t.Fatal(err)
	}
	g.privateModel(t, "unreachable-model", g.key, &adminv1.Deployment{ProviderId: dead.GetProvider().GetId(), UpstreamModel: "gpt-4o-mini"})
	ac := g.anthropic(g.key)
	_, err = ac.Messages.New(t.Context(), anthropic.MessageNewParams{
		Model: "unreachable-model", MaxTokens: 16,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
	})
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable || ae.Type() != "api_error" ||
		!strings.Contains(ae.Message, "could not get a response from the provider") {
		t.Errorf("Anthropic SDK: %v", err)
	}
	oe, err := g.chatError(t, g.key, "unreachable-model", "hi")
	if oe == nil || oe.StatusCode != http.StatusServiceUnavailable || oe.Code != "upstream_unavailable" || oe.Type != "server_error" {
		t.Errorf("OpenAI SDK: %v", err)
	}
}

// 200 concurrent requests against a key's daily budget that admits exactly
// ten requests' worth (each held at the provider for a second, so every
// admitted one still holds its reservation while the others arrive): ten
// succeed, the rest get 429s the SDK parses, and no refused request reaches
// a provider.
func (g *gateway) budgetUnderConcurrency(t *testing.T) {
	key, keyID := g.newKey("budgeted", nil)
	// Worst case per request: 1,000,000 output tokens at $2/Mtok = 2,000,000
	// µ$ plus its few input tokens at $1/Mtok; ten fit, an eleventh cannot.
	hard := int64(10*2_000_000 + 1_000)
	if _, err := adminv1.NewPolicyServiceClient(g.admin).UpdatePolicy(g.op, &adminv1.UpdatePolicyRequest{
		Policy: &adminv1.Policy{
			Target:  &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_KeyId{KeyId: keyID}},
			Budgets: []*adminv1.Budget{{Period: adminv1.BudgetPeriod_BUDGET_PERIOD_DAY, HardLimitMicros: &hard}},
		},
	}); err != nil {
		t.Fatal(err)
	}
	g.eventually(defaultWait, "the key works", func() error {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, g.traffic+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // the policy arrives with the key's next config update
	oa := g.fakes[fakeprovider.OpenAI]
	seen := len(oa.Requests())
	client := openai.NewClient(option.WithBaseURL(g.traffic+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0),
		option.WithHeader("x-fake-latency", "1s"))
	const n = 200
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
				Model: "gpt-4o-mini", MaxTokens: openai.Int(1_000_000),
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			})
			if err == nil {
				codes <- http.StatusOK
				return
			}
			codes <- statusOf(err)
		})
	}
	wg.Wait()
	close(codes)
	ok, limited := 0, 0
	for c := range codes {
		switch c {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Errorf("status %d", c)
		}
	}
	if ok != 10 || limited != n-10 {
		t.Errorf("%d succeeded and %d were refused; want exactly 10 to succeed", ok, limited)
	}
	if got := len(oa.Requests()) - seen; got != ok {
		t.Errorf("%d requests reached the provider, want the %d admitted", got, ok)
	}
}
