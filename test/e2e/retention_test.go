package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/google/uuid"
	"github.com/openai/openai-go/v3"
	"google.golang.org/protobuf/encoding/protojson"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/privacy/privacytest"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent/contentlog"
)

// With retention none (the default), a mixed workload leaves none of the
// text sent in prompts in any table, log line or span. A tenant that keeps
// content (retention full) has it stored only sealed, and gets it back
// decrypted in its export.
func TestRequestContentRetention(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		g := startGateway(t, st)
		var markers []string
		marker := func(what string) string {
			m := "tgmarker-" + what + "-" + uuid.NewString()[:8]
			markers = append(markers, m)
			return m
		}
		before := g.usageCount(t)
		sent := g.mixedWorkload(t, g.key, marker)
		g.eventually(10*time.Second, "every request's usage is stored", func() error {
			if n := g.usageCount(t); n < before+sent {
				return fmt.Errorf("%d of %d usage records", n-before, sent)
			}
			return nil
		})
		// Both processes' spans: ext_proc's requests, the control plane's
		// admin calls, usage batches and transactions.
		if err := errors.Join(g.extprocTelemetry.ForceFlush(t.Context()), g.controlPlaneTelemetry.ForceFlush(t.Context())); err != nil {
			t.Fatal(err)
		}
		n, err := st.Client().ContentLog.Query().Count(t.Context())
		if err != nil || n != 0 {
			t.Errorf("%d content rows with retention none (%v)", n, err)
		}
		privacytest.NoTrace(t, st, markers...)
		logs := g.logs.String()
		spans := g.spanText()
		if spans == "" {
			t.Error("no spans were exported: the span check would prove nothing")
		}
		for _, m := range markers {
			if strings.Contains(logs, m) {
				t.Errorf("a log line holds %s", m)
			}
			if strings.Contains(spans, m) {
				t.Errorf("a span holds %s", m)
			}
		}

		// A tenant that keeps content.
		key, tenantID, _ := g.tenantKey(t, "keeper", "")
		g.setPolicy(t, &adminv1.Policy{Target: &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_Tenant{Tenant: tenantID}}, ContentRetention: adminv1.ContentRetention_CONTENT_RETENTION_FULL, ContentRetentionDays: 7})
		kept := "tgmarker-kept-" + uuid.NewString()[:8]
		g.eventually(defaultWait, "the keeper's content is stored", func() error {
			if _, err := g.chatError(t, key, "gpt-4o-mini", kept); err != nil {
				return err
			}
			n, err := st.Client().ContentLog.Query().Count(t.Context())
			if err == nil && n == 0 {
				err = errors.New("no content stored yet")
			}
			return err
		})
		privacytest.NoTrace(t, st, kept) // sealed, never plain
		export := g.exportText(t, &adminv1.PrivacySubject{Tenant: "keeper"})
		if !strings.Contains(export, kept) || !strings.Contains(export, `"section":"content_logs"`) {
			t.Errorf("the keeper's export lacks its decrypted content:\n%.2000s", export)
		}
		rows, err := st.Client().ContentLog.Query().Where(contentlog.TenantID(uuid.MustParse(tenantID))).All(t.Context())
		if err != nil || len(rows) == 0 || rows[0].ExpiresAt.Sub(rows[0].CreatedAt) != 7*24*time.Hour {
			t.Errorf("content rows %v, %v: want expiry 7 days after arrival", rows, err)
		}

		// Erasing the tenant revokes its keys on the data path at once and
		// destroys its content.
		g.erase(t, &adminv1.PrivacySubject{Tenant: "keeper"})
		g.eventually(defaultWait, "the erased tenant's key is refused", func() error {
			if apiErr, err := g.chatError(t, key, "gpt-4o-mini", "hello"); apiErr == nil || apiErr.StatusCode != http.StatusUnauthorized {
				return fmt.Errorf("still answered: %w", err)
			}
			return nil
		})
		if n, err := st.Client().ContentLog.Query().Count(t.Context()); err != nil || n != 0 {
			t.Errorf("%d content rows after the erasure (%v)", n, err)
		}
	})
}

func (g *gateway) erase(t *testing.T, subj *adminv1.PrivacySubject) {
	t.Helper()
	client := adminv1.NewPrivacyServiceClient(g.admin)
	prep, err := client.PrepareErasure(g.op, &adminv1.PrepareErasureRequest{Subject: subj})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Erase(g.op, &adminv1.EraseRequest{Subject: subj, ConfirmationToken: prep.GetConfirmationToken()}); err != nil {
		t.Fatal(err)
	}
}

// mixedWorkload sends each kind of request with a fresh marker in its
// prompt and returns how many usage records it makes.
func (g *gateway) mixedWorkload(t *testing.T, key string, marker func(string) string) int {
	t.Helper()
	client := g.openai(key)
	sent := 0
	for _, pm := range providerModels {
		if _, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
			Model:    pm.model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(marker("system")), openai.UserMessage(marker("chat"))},
		}); err != nil {
			t.Fatal(err)
		}
		stream := client.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{
			Model: pm.model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(marker("stream"))},
		})
		for stream.Next() {
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		sent += 2
	}
	ac := g.anthropic(key)
	if _, err := ac.Messages.New(t.Context(), anthropic.MessageNewParams{
		Model: "claude-sonnet-4-5", MaxTokens: 50,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(marker("anthropic")))},
	}); err != nil {
		t.Fatal(err)
	}
	sent++
	// Refused requests, whose bodies ext_proc reads and refuses.
	for _, body := range []string{
		`{"model":"no-such-model","messages":[{"role":"user","content":"` + marker("unknown-model") + `"}]}`,
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + marker("bad-tokens") + `"}],"max_tokens":"many"}`,
	} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, g.traffic+"/v1/chat/completions", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("authorization", "Bearer "+key)
		req.Header.Set("content-type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("%s: status %d, want a refusal", body, resp.StatusCode)
		}
		sent++
	}
	return sent
}

// spanText is every span received so far, as JSON.
func (g *gateway) spanText() string {
	g.otlp.mu.Lock()
	defer g.otlp.mu.Unlock()
	var b strings.Builder
	for _, s := range g.otlp.spans {
		j, _ := protojson.Marshal(s)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// exportText reads a subject's export through the admin API.
func (g *gateway) exportText(t *testing.T, subj *adminv1.PrivacySubject) string {
	t.Helper()
	stream, err := adminv1.NewPrivacyServiceClient(g.admin).ExportData(g.op, &adminv1.ExportDataRequest{Subject: subj})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return b.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		b.Write(msg.GetChunk())
	}
}
