package admin

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/ir"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

func TestProviderCredentialIsSealedAndNeverReturned(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		const cred = "sk-proj-very-secret-credential"
		p := h.createProvider(h.op(), &adminv1.Provider{Name: "openai", Kind: adminv1.ProviderKind_PROVIDER_KIND_OPENAI, BaseUrl: "https://api.openai.com/", Credential: cred})
		if !p.GetHasCredential() || p.GetCredential() != "" {
			t.Errorf("create returned has_credential=%v credential=%q", p.GetHasCredential(), p.GetCredential())
		}
		if p.GetBaseUrl() != "https://api.openai.com" {
			t.Errorf("base_url = %q, want the trailing slash removed", p.GetBaseUrl())
		}
		got, err := h.providers().GetProvider(h.op(), &adminv1.GetProviderRequest{Id: p.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		list, err := h.providers().ListProviders(h.op(), &adminv1.ListProvidersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{protojson.Format(got), protojson.Format(list)} {
			if strings.Contains(m, cred) {
				t.Error("a read returned the credential")
			}
		}
		assertNotInDatabase(t, st, cred)

		// The stored ciphertext opens with the keyring, bound to this
		// provider only.
		row, err := st.Client().Provider.Get(t.Context(), uuid.MustParse(p.GetId()))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := h.keyring.Open(row.Credential, ir.CredentialAD(row.ID))
		if err != nil || string(plain) != cred {
			t.Fatalf("opening the stored credential: %q, %v", plain, err)
		}
		if _, err := h.keyring.Open(row.Credential, ir.CredentialAD(uuid.New())); err == nil {
			t.Error("the credential opened for another provider id")
		}
		if row.CredentialKeyID != "test-1" {
			t.Errorf("credential_key_id = %q", row.CredentialKeyID)
		}

		// Rotating the credential replaces the ciphertext.
		if _, err := h.providers().UpdateProvider(h.op(), &adminv1.UpdateProviderRequest{
			Provider: &adminv1.Provider{Id: p.GetId(), Credential: "sk-new"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"credential"}},
		}); err != nil {
			t.Fatal(err)
		}
		row2, err := st.Client().Provider.Get(t.Context(), row.ID)
		if err != nil {
			t.Fatal(err)
		}
		if plain, err := h.keyring.Open(row2.Credential, ir.CredentialAD(row.ID)); err != nil || string(plain) != "sk-new" || bytes.Equal(row.Credential, row2.Credential) {
			t.Errorf("after rotation: %q, %v", plain, err)
		}
		if strings.Contains(h.logs.String(), "sk-new") {
			t.Error("the log holds the credential")
		}
	})
}

func TestPlainHTTPIsAllowedOnlyForLocalServers(t *testing.T) {
	for _, c := range []struct {
		url  string
		kind adminv1.ProviderKind
		ok   bool
	}{
		{"https://api.anthropic.com", adminv1.ProviderKind_PROVIDER_KIND_ANTHROPIC, true},
		{"http://127.0.0.1:8080", adminv1.ProviderKind_PROVIDER_KIND_ANTHROPIC, true},
		{"http://localhost:11434", adminv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE, true},
		{"http://10.1.2.3:8000", adminv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE, true},
		{"http://vllm.models.svc:8000", adminv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE, true},
		{"http://ollama:11434", adminv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE, true},
		{"https://api.groq.com/openai", adminv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE, true},
		{"http://10.1.2.3:8000", adminv1.ProviderKind_PROVIDER_KIND_OPENAI, false},
		{"http://api.together.xyz", adminv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE, false},
		{"http://8.8.8.8", adminv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE, false},
		{"ftp://x.example", adminv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE, false},
		{"https://user:pw@x.example", adminv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE, false},
		{"https://x.example?a=b", adminv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE, false},
	} {
		kind, _ := providerKindFromProto("kind", c.kind)
		err := checkBaseURL("base_url", c.url, kind)
		if (err == nil) != c.ok {
			t.Errorf("%s (%s): err = %v, want ok=%v", c.url, kind, err, c.ok)
		}
	}
}

func TestModelDeploymentsAndPriceHistory(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		openai := h.createProvider(h.op(), &adminv1.Provider{Name: "openai", Kind: adminv1.ProviderKind_PROVIDER_KIND_OPENAI, BaseUrl: "https://api.openai.com", Credential: "sk"})
		anthropic := h.createProvider(h.op(), &adminv1.Provider{Name: "anthropic", Kind: adminv1.ProviderKind_PROVIDER_KIND_ANTHROPIC, BaseUrl: "https://api.anthropic.com", Credential: "sk-ant"})
		created, err := h.models().CreateModel(h.op(), &adminv1.CreateModelRequest{Model: &adminv1.Model{
			Name: "smart", ContextWindow: 128000,
			Deployments: []*adminv1.Deployment{
				{ProviderId: anthropic.GetId(), UpstreamModel: "claude-sonnet-4-5", Priority: 1},
				{ProviderId: openai.GetId(), UpstreamModel: "gpt-4o", Weight: 3},
			},
			Pricing: &adminv1.Pricing{InputMicrosPerMtok: 2500000, OutputMicrosPerMtok: 10000000, CachedInputMicrosPerMtok: 1250000},
		}})
		if err != nil {
			t.Fatal(err)
		}
		m := created.GetModel()
		if len(m.GetDeployments()) != 2 || m.GetDeployments()[0].GetUpstreamModel() != "gpt-4o" || m.GetDeployments()[0].GetWeight() != 3 || m.GetDeployments()[1].GetWeight() != 1 {
			t.Errorf("deployments (by priority, weight defaulted to 1) = %v", m.GetDeployments())
		}
		if m.GetPricing().GetOutputMicrosPerMtok() != 10000000 {
			t.Errorf("pricing = %v", m.GetPricing())
		}
		for _, d := range m.GetDeployments() {
			if d.GetNoTraining() || d.GetRetention() != adminv1.DataRetention_DATA_RETENTION_UNKNOWN {
				t.Errorf("a deployment that declared nothing guarantees something: %v", d)
			}
		}
		_, err = h.models().CreateModel(h.op(), &adminv1.CreateModelRequest{Model: &adminv1.Model{
			Name: "smart", Deployments: []*adminv1.Deployment{{ProviderId: openai.GetId(), UpstreamModel: "x"}}, Pricing: &adminv1.Pricing{},
		}})
		wantCode(t, err, codes.AlreadyExists)

		// A future price does not apply yet; the old one stays in force.
		future := time.Now().Add(time.Hour)
		up, err := h.models().UpdateModel(h.op(), &adminv1.UpdateModelRequest{
			Model:      &adminv1.Model{Id: m.GetId(), Pricing: &adminv1.Pricing{InputMicrosPerMtok: 1, OutputMicrosPerMtok: 2, EffectiveTime: timestamppb.New(future)}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"pricing"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if up.GetModel().GetPricing().GetInputMicrosPerMtok() != 2500000 {
			t.Errorf("a future price took effect early: %v", up.GetModel().GetPricing())
		}
		n, err := st.Client().ModelPrice.Query().Count(t.Context())
		if err != nil || n != 2 {
			t.Errorf("price rows = %d (%v), want 2: changes add, never overwrite", n, err)
		}

		// Declared guarantees are kept as given.
		guaranteed, err := h.models().UpdateModel(h.op(), &adminv1.UpdateModelRequest{
			Model: &adminv1.Model{Id: m.GetId(), Deployments: []*adminv1.Deployment{
				{ProviderId: openai.GetId(), UpstreamModel: "gpt-4o", NoTraining: true, Retention: adminv1.DataRetention_DATA_RETENTION_LIMITED, RetentionDays: 30},
				{ProviderId: anthropic.GetId(), UpstreamModel: "claude-sonnet-4-5", Priority: 1, NoTraining: true, Retention: adminv1.DataRetention_DATA_RETENTION_ZERO},
			}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"deployments"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if ds := guaranteed.GetModel().GetDeployments(); !ds[0].GetNoTraining() || ds[0].GetRetention() != adminv1.DataRetention_DATA_RETENTION_LIMITED || ds[0].GetRetentionDays() != 30 ||
			!ds[1].GetNoTraining() || ds[1].GetRetention() != adminv1.DataRetention_DATA_RETENTION_ZERO {
			t.Errorf("declared guarantees came back as %v", ds)
		}

		// A provider that serves a deployment cannot be deleted.
		_, err = h.providers().DeleteProvider(h.op(), &adminv1.DeleteProviderRequest{Id: openai.GetId()})
		wantCode(t, err, codes.FailedPrecondition)
		if _, err := h.models().UpdateModel(h.op(), &adminv1.UpdateModelRequest{
			Model:      &adminv1.Model{Id: m.GetId(), Deployments: []*adminv1.Deployment{{ProviderId: anthropic.GetId(), UpstreamModel: "claude-sonnet-4-5"}}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"deployments"}},
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.providers().DeleteProvider(h.op(), &adminv1.DeleteProviderRequest{Id: openai.GetId()}); err != nil {
			t.Errorf("deleting a provider no longer in use: %v", err)
		}
		if _, err := h.models().DeleteModel(h.op(), &adminv1.DeleteModelRequest{Id: m.GetId()}); err != nil {
			t.Fatal(err)
		}
		if n, _ := st.Client().ModelDeployment.Query().Count(t.Context()); n != 0 {
			t.Errorf("%d deployments left after deleting the model", n)
		}
	})
}

// A tenant's own model may use the platform's providers and its own, never
// another tenant's; a platform model only the platform's.
func TestModelDeploymentProvidersFollowOwnership(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		acme, globex := h.createTenant("acme"), h.createTenant("globex")
		platform := h.createProvider(h.op(), &adminv1.Provider{Name: "openai", Kind: adminv1.ProviderKind_PROVIDER_KIND_OPENAI, BaseUrl: "https://api.openai.com", Credential: "sk"})
		admin := h.ctx(h.tenantAdmin("acme"))
		own := h.createProvider(admin, &adminv1.Provider{TenantId: acme.GetId(), Name: "local", Kind: adminv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE, BaseUrl: "http://127.0.0.1:11434"})
		theirs := h.createProvider(h.op(), &adminv1.Provider{TenantId: globex.GetId(), Name: "theirs", Kind: adminv1.ProviderKind_PROVIDER_KIND_OPENAI, BaseUrl: "https://api.openai.com", Credential: "sk"})
		mk := func(tenantID, providerID string) error {
			_, err := h.models().CreateModel(admin, &adminv1.CreateModelRequest{Model: &adminv1.Model{
				TenantId: tenantID, Name: "m-" + providerID[:8], Pricing: &adminv1.Pricing{},
				Deployments: []*adminv1.Deployment{{ProviderId: providerID, UpstreamModel: "llama3"}},
			}})
			return err
		}
		if err := mk(acme.GetId(), own.GetId()); err != nil {
			t.Errorf("own model on own provider: %v", err)
		}
		if err := mk(acme.GetId(), platform.GetId()); err != nil {
			t.Errorf("own model on platform provider: %v", err)
		}
		if f := violations(t, mk(acme.GetId(), theirs.GetId())); f[0] != "model.deployments[0].provider_id" {
			t.Errorf("violations %v", f)
		}
		wantCode(t, mk("", platform.GetId()), codes.PermissionDenied)

		// What a provider guarantees is declared by whoever holds the
		// contract: the tenant for its own provider, only the operator for
		// the platform's.
		declare := func(ctx context.Context, providerID string) error {
			_, err := h.models().CreateModel(ctx, &adminv1.CreateModelRequest{Model: &adminv1.Model{
				TenantId: acme.GetId(), Name: "g-" + providerID[:8], Pricing: &adminv1.Pricing{},
				Deployments: []*adminv1.Deployment{{ProviderId: providerID, UpstreamModel: "llama3", NoTraining: true, Retention: adminv1.DataRetention_DATA_RETENTION_ZERO}},
			}})
			return err
		}
		before := rowCounts(t, st)
		wantCode(t, declare(admin, platform.GetId()), codes.PermissionDenied)
		if after := rowCounts(t, st); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("a refused declaration wrote rows: %v → %v", before, after)
		}
		if err := declare(admin, own.GetId()); err != nil {
			t.Errorf("a tenant declaring its own provider's guarantees: %v", err)
		}
		if err := declare(h.op(), platform.GetId()); err != nil {
			t.Errorf("the operator declaring a platform provider's guarantees for a tenant's model: %v", err)
		}
		list, err := h.models().ListModels(admin, &adminv1.ListModelsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.GetModels()) != 4 {
			t.Errorf("tenant admin lists %d models, want its 4", len(list.GetModels()))
		}
	})
}
