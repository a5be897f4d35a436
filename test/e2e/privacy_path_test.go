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
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent"
)

// The privacy promises that the data path keeps: restriction of
// processing, where requests may go, what providers are told to keep, and
// what leaves Tollgate at all.
func TestPrivacyOnTheDataPath(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		g := startGateway(t, st)
		t.Run("a restricted tenant is refused, and served again once lifted", func(t *testing.T) { g.restrictedTenant(t) })
		t.Run("a restricted account's keys are refused, its tenant's other keys are not", func(t *testing.T) { g.restrictedAccount(t) })
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
const defaultWait = 5 * time.Second

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
	setStatus(adminv1.TenantStatus_TENANT_STATUS_RESTRICTED)
	g.eventually(defaultWait, "the restriction reaches the data plane", func() error {
		if oe, err := g.chatError(t, key, "gpt-4o-mini", "hi"); oe == nil || oe.StatusCode != http.StatusForbidden {
			return fmt.Errorf("still served: %w", err)
		}
		return nil
	})
	g.assertRestricted(t, key)
	setStatus(adminv1.TenantStatus_TENANT_STATUS_ACTIVE)
	g.eventually(defaultWait, "the lifted restriction reaches the data plane", func() error {
		_, err := g.chatError(t, key, "gpt-4o-mini", "hi")
		return err
	})
}

// restrictAccount marks an account restricted in the store, in one
// transaction with the config change note, as PrivacyService does.
func (g *gateway) restrictAccount(t *testing.T, accountID string, restricted bool) {
	t.Helper()
	id := uuid.MustParse(accountID)
	err := g.store.InTx(t.Context(), func(tx *ent.Tx) error {
		if err := tx.Account.UpdateOneID(id).SetRestricted(restricted).Exec(t.Context()); err != nil {
			return err
		}
		return store.RecordConfigChange(t.Context(), tx)
	})
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
	g.restrictAccount(t, accountID, true)
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
	g.restrictAccount(t, accountID, false)
	g.eventually(defaultWait, "the lifted restriction reaches the data plane", func() error {
		_, err := g.chatError(t, key, "gpt-4o-mini", "hi")
		return err
	})
}
