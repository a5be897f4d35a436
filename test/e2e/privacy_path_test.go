package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/google/uuid"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
	"github.com/tollgate-dev/tollgate/test/fakeprovider"
)

// The privacy promises that the data path keeps: restriction of
// processing, where requests may go, what providers are told to keep, and
// what leaves Tollgate at all.
func TestPrivacyOnTheDataPath(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		g := startGateway(t, st)
		t.Run("a restricted tenant is refused, and served again once lifted", func(t *testing.T) { g.restrictedTenant(t) })
		t.Run("a restricted account's keys are refused, its tenant's other keys are not", func(t *testing.T) { g.restrictedAccount(t) })
		t.Run("require_no_training routes only to deployments that guarantee it", func(t *testing.T) { g.noTrainingRouting(t) })
		t.Run("OpenAI and Azure OpenAI are told not to store requests", func(t *testing.T) { g.providerStorageOff(t) })
		t.Run("redaction: the provider sees placeholders, the usage record the counts", func(t *testing.T) { g.redaction(t) })
	})
}

// chatError sends one chat completion with the OpenAI SDK and returns its
// error, as the SDK's *openai.Error when it is one.
func (g *gateway) chatError(t *testing.T, key, model, prompt string) (*openai.Error, error) {
	t.Helper()
	client := g.openai(key)
	_, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
		Model: model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
	})
	var oe *openai.Error
	if errors.As(err, &oe) {
		return oe, err
	}
	return nil, err
}

// assertRestricted checks that key is refused with 403 processing_restricted
// by both SDKs, and that no provider saw the requests.
func (g *gateway) assertRestricted(t *testing.T, key string) {
	t.Helper()
	seen := g.providerRequests()
	oe, err := g.chatError(t, key, "gpt-4o-mini", "hello")
	if oe == nil || oe.StatusCode != http.StatusForbidden || oe.Code != "processing_restricted" || !strings.Contains(strings.ToLower(oe.Message), "processing is restricted") {
		t.Errorf("OpenAI SDK: got %v, want 403 processing_restricted", err)
	}
	ac := g.anthropic(key)
	_, err = ac.Messages.New(t.Context(), anthropic.MessageNewParams{
		Model: "claude-sonnet-4-5", MaxTokens: 10, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))},
	})
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusForbidden || !strings.Contains(strings.ToLower(ae.RawJSON()), "processing is restricted") {
		t.Errorf("Anthropic SDK: got %v, want a 403 saying processing is restricted", err)
	}
	if n := g.providerRequests() - seen; n != 0 {
		t.Errorf("%d requests of a restricted subject reached a provider", n)
	}
}

// providerRequests counts the requests every fake has received.
func (g *gateway) providerRequests() int {
	n := 0
	for _, f := range g.fakes {
		n += len(f.Requests())
	}
	return n
}

// tenantKey makes a tenant with one key (of account, when accountEmail is
// set) and returns the key and the ids.
func (g *gateway) tenantKey(t *testing.T, slug, accountEmail string) (key, tenantID, accountID string) {
	t.Helper()
	tr, err := adminv1.NewTenantServiceClient(g.admin).CreateTenant(g.op, &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: slug}})
	if err != nil {
		t.Fatal(err)
	}
	k := &adminv1.Key{Name: "k"}
	if accountEmail != "" {
		ar, err := adminv1.NewAccountServiceClient(g.admin).CreateAccount(g.op, &adminv1.CreateAccountRequest{Tenant: slug, Account: &adminv1.Account{Email: accountEmail}})
		if err != nil {
			t.Fatal(err)
		}
		accountID, k.AccountId = ar.GetAccount().GetId(), ar.GetAccount().GetId()
	}
	kr, err := adminv1.NewKeyServiceClient(g.admin).CreateKey(g.op, &adminv1.CreateKeyRequest{Tenant: slug, Key: k})
	if err != nil {
		t.Fatal(err)
	}
	key = kr.GetSecret()
	g.eventually(defaultWait, "the new key works", func() error {
		_, err := g.chatError(t, key, "gpt-4o-mini", "hi")
		return err
	})
	return key, tr.GetTenant().GetId(), accountID
}

// defaultWait bounds how long a configuration change may take to reach the
// data plane here (it takes well under a second).
const defaultWait = 15 * time.Second

func (g *gateway) restrictedTenant(t *testing.T) {
	key, tenantID, _ := g.tenantKey(t, "restricted-co", "")
	setStatus := func(s adminv1.TenantStatus) {
		_, err := adminv1.NewTenantServiceClient(g.admin).UpdateTenant(g.op, &adminv1.UpdateTenantRequest{
			Tenant: &adminv1.Tenant{Id: tenantID, Status: s}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"status"}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Restricted by PrivacyService, then by the operator setting the
	// tenant's status: the same refusal either way.
	for _, way := range []struct {
		name           string
		restrict, lift func()
	}{
		{"PrivacyService", func() { g.restrict(t, "restricted-co", "", true) }, func() { g.restrict(t, "restricted-co", "", false) }},
		{"TenantService status", func() { setStatus(adminv1.TenantStatus_TENANT_STATUS_RESTRICTED) }, func() { setStatus(adminv1.TenantStatus_TENANT_STATUS_ACTIVE) }},
	} {
		way.restrict()
		g.eventually(defaultWait, way.name+": the restriction reaches the data plane", func() error {
			if oe, err := g.chatError(t, key, "gpt-4o-mini", "hi"); oe == nil || oe.StatusCode != http.StatusForbidden {
				return fmt.Errorf("still served: %w", err)
			}
			return nil
		})
		g.assertRestricted(t, key)
		way.lift()
		g.eventually(defaultWait, way.name+": the lifted restriction reaches the data plane", func() error {
			_, err := g.chatError(t, key, "gpt-4o-mini", "hi")
			return err
		})
	}
}

// restrict restricts (or lifts the restriction of) a tenant, or one of its
// accounts, through PrivacyService.
func (g *gateway) restrict(t *testing.T, tenant, accountID string, on bool) {
	t.Helper()
	subject := &adminv1.PrivacySubject{Tenant: tenant, AccountId: accountID}
	c := adminv1.NewPrivacyServiceClient(g.admin)
	var err error
	if on {
		_, err = c.Restrict(g.op, &adminv1.RestrictRequest{Subject: subject})
	} else {
		_, err = c.Unrestrict(g.op, &adminv1.UnrestrictRequest{Subject: subject})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (g *gateway) restrictedAccount(t *testing.T) {
	key, _, accountID := g.tenantKey(t, "account-co", "ada@account-co.example")
	other, err := adminv1.NewKeyServiceClient(g.admin).CreateKey(g.op, &adminv1.CreateKeyRequest{Tenant: "account-co", Key: &adminv1.Key{Name: "tenant-key"}})
	if err != nil {
		t.Fatal(err)
	}
	g.restrict(t, "account-co", accountID, true)
	g.eventually(defaultWait, "the account's restriction reaches the data plane", func() error {
		if oe, err := g.chatError(t, key, "gpt-4o-mini", "hi"); oe == nil || oe.StatusCode != http.StatusForbidden {
			return fmt.Errorf("still served: %w", err)
		}
		return nil
	})
	g.assertRestricted(t, key)
	if _, err := g.chatError(t, other.GetSecret(), "gpt-4o-mini", "hi"); err != nil {
		t.Errorf("a key of the same tenant without the account was refused: %v", err)
	}
	ar, err := adminv1.NewAccountServiceClient(g.admin).GetAccount(g.op, &adminv1.GetAccountRequest{Id: accountID})
	if err != nil || !ar.GetAccount().GetRestricted() {
		t.Errorf("GetAccount shows restricted=%v (%v), want true", ar.GetAccount().GetRestricted(), err)
	}
	g.restrict(t, "account-co", accountID, false)
	g.eventually(defaultWait, "the lifted restriction reaches the data plane", func() error {
		_, err := g.chatError(t, key, "gpt-4o-mini", "hi")
		return err
	})
}

// privateModel creates a model with the given deployments (fake kind,
// upstream, priority, and whether it declares no training and zero
// retention) and waits until key can use it.
func (g *gateway) privateModel(t *testing.T, name, key string, deps ...*adminv1.Deployment) {
	t.Helper()
	m := &adminv1.Model{Name: name, Deployments: deps, Pricing: &adminv1.Pricing{InputMicrosPerMtok: inPrice, OutputMicrosPerMtok: outPrice}}
	if _, err := adminv1.NewModelServiceClient(g.admin).CreateModel(g.op, &adminv1.CreateModelRequest{Model: m}); err != nil {
		t.Fatal(err)
	}
	g.eventually(defaultWait, "the data plane serves "+name, func() error {
		oe, err := g.chatError(t, key, name, "hi")
		if oe != nil && oe.StatusCode == http.StatusNotFound {
			return err
		}
		return nil
	})
}

func (g *gateway) setPolicy(t *testing.T, p *adminv1.Policy) {
	t.Helper()
	if _, err := adminv1.NewPolicyServiceClient(g.admin).UpdatePolicy(g.op, &adminv1.UpdatePolicyRequest{Policy: p}); err != nil {
		t.Fatal(err)
	}
}

func (g *gateway) noTrainingRouting(t *testing.T) {
	anth, oa := g.fakes[fakeprovider.Anthropic], g.fakes[fakeprovider.OpenAI]
	// "guarded": Anthropic first, declaring nothing; OpenAI as the
	// fallback, under a no-training, zero-retention agreement.
	// "unguarded": Anthropic only.
	g.privateModel(t, "guarded", g.key,
		&adminv1.Deployment{ProviderId: g.providerIDs[fakeprovider.Anthropic], UpstreamModel: "claude-sonnet-4-5"},
		&adminv1.Deployment{ProviderId: g.providerIDs[fakeprovider.OpenAI], UpstreamModel: "gpt-4o-mini", Priority: 1,
			NoTraining: true, Retention: adminv1.DataRetention_DATA_RETENTION_ZERO})
	g.privateModel(t, "unguarded", g.key,
		&adminv1.Deployment{ProviderId: g.providerIDs[fakeprovider.Anthropic], UpstreamModel: "claude-sonnet-4-5",
			Retention: adminv1.DataRetention_DATA_RETENTION_LIMITED, RetentionDays: 30})

	// Without a requirement the model's first deployment answers.
	client := g.openai(g.key)
	resp, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
		Model: "guarded", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
	})
	if err != nil || !strings.Contains(resp.Choices[0].Message.Content, "fake-anthropic") {
		t.Fatalf("without a requirement: %v %v, want Anthropic's answer", resp, err)
	}

	key, tenantID, _ := g.tenantKey(t, "private-co", "")
	g.setPolicy(t, &adminv1.Policy{Target: &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_Tenant{Tenant: tenantID}}, RequireNoTraining: true})
	g.eventually(defaultWait, "the policy routes to the deployment that does not train", func() error {
		oaBefore := len(oa.Requests())
		client := g.openai(key)
		resp, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
			Model: "guarded", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
		})
		if err != nil {
			return err
		}
		if !strings.Contains(resp.Choices[0].Message.Content, "fake-openai") || len(oa.Requests()) != oaBefore+1 {
			return fmt.Errorf("answered by %q", resp.Choices[0].Message.Content)
		}
		return nil
	})
	// Until the policy arrived, requests went to Anthropic; from now on,
	// not one may, not even as a fallback after OpenAI fails.
	anthBefore := len(anth.Requests())
	oa.Enqueue(fakeprovider.Behavior{Status: http.StatusInternalServerError}, fakeprovider.Behavior{Status: http.StatusInternalServerError})
	if oe, err := g.chatError(t, key, "guarded", "hello"); oe == nil || oe.StatusCode != http.StatusInternalServerError {
		t.Errorf("a failing permitted deployment: %v, want its 500, not a fallback", err)
	}
	oe, err := g.chatError(t, key, "unguarded", "hello")
	if oe == nil || oe.StatusCode != http.StatusForbidden || oe.Code != "no_permitted_deployment" || !strings.Contains(oe.Message, "not to train") {
		t.Errorf("a model no permitted deployment serves: %v, want 403 no_permitted_deployment", err)
	}
	ac := g.anthropic(key)
	_, err = ac.Messages.New(t.Context(), anthropic.MessageNewParams{
		Model: "unguarded", MaxTokens: 10, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))},
	})
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusForbidden || !strings.Contains(ae.RawJSON(), "permission_error") {
		t.Errorf("Anthropic SDK, a model no permitted deployment serves: %v, want a 403 permission_error", err)
	}
	if n := len(anth.Requests()) - anthBefore; n != 0 {
		t.Errorf("%d requests reached the provider that may train on them", n)
	}

	// Zero retention, required by a key of the default tenant: only the
	// OpenAI deployment keeps nothing.
	zkey, _ := g.newKey("zero-retention", nil)
	g.setPolicy(t, &adminv1.Policy{Target: &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_KeyId{KeyId: keyIDOf(t, g, "zero-retention")}}, RequireZeroRetention: true})
	g.eventually(defaultWait, "the key's policy refuses a model that keeps requests", func() error {
		oe, err := g.chatError(t, zkey, "unguarded", "hello")
		if oe == nil || oe.StatusCode != http.StatusForbidden || !strings.Contains(oe.Message, "zero data retention") {
			return fmt.Errorf("got %w", err)
		}
		return nil
	})
}

// keyIDOf finds the id of acme's key by name.
func keyIDOf(t *testing.T, g *gateway, name string) string {
	t.Helper()
	resp, err := adminv1.NewKeyServiceClient(g.admin).ListKeys(g.op, &adminv1.ListKeysRequest{Tenant: "acme", PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range resp.GetKeys() {
		if k.GetName() == name {
			return k.GetId()
		}
	}
	t.Fatalf("no key %s", name)
	return ""
}

// storeOf returns the "store" member the provider received, and whether
// there was one.
func storeOf(t *testing.T, r fakeprovider.Request) (store, ok bool) {
	t.Helper()
	var b struct {
		Store *bool `json:"store"`
	}
	if err := r.JSON(&b); err != nil {
		t.Fatalf("the provider received a body that is not JSON: %v", err)
	}
	if b.Store == nil {
		return false, false
	}
	return *b.Store, true
}

func (g *gateway) providerStorageOff(t *testing.T) {
	oa, az := g.fakes[fakeprovider.OpenAI], g.fakes[fakeprovider.AzureOpenAI]
	client := g.openai(g.key)
	// The client asks OpenAI to store; the tenant's policy does not allow
	// it.
	if _, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
		Model: "gpt-4o-mini", Store: openai.Bool(true), Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
	}); err != nil {
		t.Fatal(err)
	}
	last, _ := oa.LastRequest()
	if st, ok := storeOf(t, last); !ok || st {
		t.Errorf("Chat Completions: OpenAI received store=%v (present %v), want false: %s", st, ok, last.Body)
	}
	// The Responses API stores by default; a request that says nothing is
	// sent with store:false.
	if _, err := client.Responses.New(t.Context(), responses.ResponseNewParams{
		Model: "gpt-4o-mini", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello")},
	}); err != nil {
		t.Fatal(err)
	}
	last, _ = oa.LastRequest()
	if st, ok := storeOf(t, last); !ok || st || last.Path != "/v1/responses" {
		t.Errorf("Responses: OpenAI received store=%v (present %v) at %s, want false", st, ok, last.Path)
	}
	// Anthropic clients reach OpenAI through translation, and are covered too.
	ac := g.anthropic(g.key)
	if _, err := ac.Messages.New(t.Context(), anthropic.MessageNewParams{
		Model: "azure-gpt-4o", MaxTokens: 10, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))},
	}); err != nil {
		t.Fatal(err)
	}
	last, _ = az.LastRequest()
	if st, ok := storeOf(t, last); !ok || st {
		t.Errorf("Azure OpenAI via the Anthropic API: received store=%v (present %v), want false: %s", st, ok, last.Body)
	}

	// A tenant that allows provider storage keeps the client's choice.
	key, tenantID, _ := g.tenantKey(t, "storing-co", "")
	g.setPolicy(t, &adminv1.Policy{Target: &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_Tenant{Tenant: tenantID}}, AllowProviderStorage: true})
	g.eventually(defaultWait, "the tenant's permission reaches the data plane", func() error {
		client := g.openai(key)
		if _, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
			Model: "gpt-4o-mini", Store: openai.Bool(true), Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
		}); err != nil {
			return err
		}
		last, _ := oa.LastRequest()
		if st, ok := storeOf(t, last); !ok || !st {
			return fmt.Errorf("OpenAI received store=%v (present %v)", st, ok)
		}
		return nil
	})
}

func (g *gateway) redaction(t *testing.T) {
	key, tenantID, _ := g.tenantKey(t, "redacting-co", "")
	g.setPolicy(t, &adminv1.Policy{Target: &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_Tenant{Tenant: tenantID}}, Redact: true})
	const prompt = "I am ada@example.com (+49 30 1234567); pay DE89 3704 0044 0532 0130 00 with 4111 1111 1111 1111 using sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
	// Each value, long enough not to occur by chance (in a UUID, say).
	values := []string{"ada@example.com", "+49 30 1234567", "DE89 3704 0044", "4111 1111 1111", "sk-proj-Ab3dEf"}
	anth := g.fakes[fakeprovider.Anthropic]
	var sent string
	g.eventually(defaultWait, "the policy's redaction reaches the data plane", func() error {
		if _, err := g.chatError(t, key, "claude-sonnet-4-5", prompt); err != nil {
			return err
		}
		last, _ := anth.LastRequest()
		sent = string(last.Body)
		if !strings.Contains(sent, "[EMAIL]") {
			return fmt.Errorf("the provider received %s", sent)
		}
		return nil
	})
	for _, v := range values {
		if strings.Contains(sent, v) {
			t.Errorf("the provider received %q: %s", v, sent)
		}
	}
	for _, p := range []string{"[EMAIL]", "[PHONE]", "[IBAN]", "[CARD]", "[SECRET]"} {
		if !strings.Contains(sent, p) {
			t.Errorf("the provider did not receive %s: %s", p, sent)
		}
	}
	var rec *ent.UsageRecord
	g.eventually(defaultWait, "the usage record with the counts", func() error {
		var err error
		rec, err = g.store.Client().UsageRecord.Query().
			Where(usagerecord.TenantID(uuid.MustParse(tenantID)), usagerecord.RedactedEmailsGT(0)).
			Order(ent.Desc(usagerecord.FieldCreatedAt)).First(t.Context())
		return err
	})
	if rec.RedactedEmails != 1 || rec.RedactedPhones != 1 || rec.RedactedIbans != 1 || rec.RedactedCards != 1 || rec.RedactedSecrets != 1 {
		t.Errorf("usage record counts: emails %d phones %d ibans %d cards %d secrets %d, want 1 each",
			rec.RedactedEmails, rec.RedactedPhones, rec.RedactedIbans, rec.RedactedCards, rec.RedactedSecrets)
	}
	// The counts, never the values: nothing of the prompt is in the store.
	g.assertNotStored(t, values...)
	// The admin API shows the counts.
	list, err := adminv1.NewUsageServiceClient(g.admin).ListUsageRecords(g.op, &adminv1.ListUsageRecordsRequest{Tenant: "redacting-co"})
	if err != nil {
		t.Fatal(err)
	}
	shown := false
	for _, r := range list.GetRecords() {
		if red := r.GetRedactions(); red.GetEmails() == 1 && red.GetPhones() == 1 && red.GetIbans() == 1 && red.GetCards() == 1 && red.GetSecrets() == 1 {
			shown = true
		}
	}
	if !shown {
		t.Errorf("ListUsageRecords does not show the redaction counts: %v", list.GetRecords())
	}

	// The Responses API and an Anthropic client are redacted too.
	oa := g.fakes[fakeprovider.OpenAI]
	client := g.openai(key)
	if _, err := client.Responses.New(t.Context(), responses.ResponseNewParams{
		Model: "gpt-4o-mini", Instructions: openai.String("Reply to ada@example.com"),
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("card 4111 1111 1111 1111")},
	}); err != nil {
		t.Fatal(err)
	}
	if last, _ := oa.LastRequest(); strings.Contains(string(last.Body), "ada@example.com") || strings.Contains(string(last.Body), "4111") {
		t.Errorf("Responses: the provider received %s", last.Body)
	}
	ac := g.anthropic(key)
	if _, err := ac.Messages.New(t.Context(), anthropic.MessageNewParams{
		Model: "gpt-4o-mini", MaxTokens: 10, System: []anthropic.TextBlockParam{{Text: "Reply to ada@example.com"}},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("call +49 30 1234567"))},
	}); err != nil {
		t.Fatal(err)
	}
	if last, _ := oa.LastRequest(); strings.Contains(string(last.Body), "ada@example.com") || strings.Contains(string(last.Body), "1234567") {
		t.Errorf("Anthropic Messages: the provider received %s", last.Body)
	}
}

// assertNotStored fails if any usage record holds one of values.
func (g *gateway) assertNotStored(t *testing.T, values ...string) {
	t.Helper()
	recs, err := g.store.Client().UsageRecord.Query().All(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		row := r.String()
		for _, v := range values {
			if strings.Contains(row, v) {
				t.Errorf("a usage record holds %q: %s", v, row)
			}
		}
	}
}
