package ctl

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// checkGolden compares got with testdata/name.golden, or rewrites the file
// with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run go test -update if the change is intended)\n--- got\n%s--- want\n%s", path, got, want)
	}
}

var (
	created = ts(time.Date(2025, 11, 3, 9, 30, 0, 0, time.UTC))
	updated = ts(time.Date(2025, 12, 24, 18, 0, 0, 0, time.UTC))

	acme = &adminv1.Tenant{
		Id: tenantUUID, Slug: "acme", Name: "Acme Corp", Status: adminv1.TenantStatus_TENANT_STATUS_ACTIVE,
		BillingEmail: "ap@acme.example", BillingReference: "CUST-7", Plan: "pro", CreateTime: created, UpdateTime: updated,
	}
	// A tenant-chosen name with a tab, a newline and a terminal escape must
	// neither break the table nor reach the operator's terminal.
	evil = &adminv1.Tenant{
		Id: "22222222-3333-4444-8555-666666666666", Slug: "evil", Name: "Evil\tCorp\n\x1b[31mred",
		Status: adminv1.TenantStatus_TENANT_STATUS_SUSPENDED, CreateTime: created,
	}
	globex = &adminv1.Tenant{
		Id: "33333333-4444-4555-8666-777777777777", Slug: "globex", Status: adminv1.TenantStatus_TENANT_STATUS_RESTRICTED, CreateTime: created,
	}
	ciKey = &adminv1.Key{
		Id: keyID, TenantId: tenantUUID, Name: "ci", Prefix: "tgk_3fA9", AllowedModels: []string{"gpt-4o-mini", "claude-haiku"},
		AccountId: "acc-1", ExpireTime: ts(time.Date(2026, 2, 1, 3, 4, 5, 0, time.UTC)), CreateTime: created,
	}
	revokedKey = &adminv1.Key{
		Id: "6a2e8d2f-9f1b-4c9f-8b68-3e7d1b4f0c22", TenantId: tenantUUID, Name: "old", Prefix: "tgk_77Qe",
		RevokeTime: updated, LastUsedTime: ts(time.Date(2025, 12, 20, 12, 0, 0, 0, time.UTC)), CreateTime: created,
	}
	sonnet = &adminv1.Model{
		Id: modelID, Name: "claude-sonnet", ContextWindow: 200000,
		Deployments: []*adminv1.Deployment{
			{ProviderId: providerID, UpstreamModel: "claude-sonnet-4-5", Weight: 1},
			{ProviderId: "p2", UpstreamModel: "anthropic.claude-sonnet-4-5", Weight: 3, Priority: 1},
		},
		Pricing: &adminv1.Pricing{
			InputMicrosPerMtok: 3000000, OutputMicrosPerMtok: 15000000, CachedInputMicrosPerMtok: 300000, EffectiveTime: created,
		},
		CreateTime: created, UpdateTime: updated,
	}
	acmePolicy = &adminv1.Policy{
		Target: tenantTarget("acme"), RequestsPerMinute: i64(600), MaxOutputTokens: i64(4096), ClampOutputTokens: true,
		Budgets: []*adminv1.Budget{
			{Period: adminv1.BudgetPeriod_BUDGET_PERIOD_MONTH, HardLimitMicros: i64(500000000), SoftLimitMicros: i64(400000000)},
			{Period: adminv1.BudgetPeriod_BUDGET_PERIOD_DAY, SoftLimitMicros: i64(2500001)},
		},
		AllowedModels: []string{"gpt-4o-mini", "claude-sonnet"}, AllowedCidrs: []string{"10.0.0.0/8"},
		ContentRetention: adminv1.ContentRetention_CONTENT_RETENTION_METADATA, UsageRetentionDays: 365,
		RequireZeroRetention: true, Redact: true, UpdateTime: updated,
	}
)

// TestGolden pins what each kind of output looks like, in both formats.
func TestGolden(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		setup func(f *fakeServer)
	}{
		{name: "tenant-list.table", args: []string{"tenants", "list"}, setup: tenantPages},
		{name: "tenant-list.json", args: []string{"tenants", "list", "-o", "json"}, setup: tenantPages},
		{name: "tenant-delete.table", args: []string{"tenant", "delete", "acme"}},
		{name: "tenant-delete.json", args: []string{"tenant", "delete", "acme", "-o", "json"}},
		{name: "account-list.table", args: []string{"accounts", "list", "--tenant", "acme"}, setup: func(f *fakeServer) {
			f.replyWith("ListAccounts", &adminv1.ListAccountsResponse{Accounts: []*adminv1.Account{
				{Id: "acc-1", TenantId: tenantUUID, Email: "ada@acme.example", Name: "Ada", Role: adminv1.AccountRole_ACCOUNT_ROLE_OWNER, CreateTime: created},
				{Id: "acc-2", TenantId: tenantUUID, Email: "bob@acme.example", Role: adminv1.AccountRole_ACCOUNT_ROLE_VIEWER, CreateTime: created},
			}})
		}},
		{name: "key-create.table", args: []string{"key", "create", "--tenant", "acme", "--name", "ci"}, setup: keyCreated},
		{name: "key-create.json", args: []string{"key", "create", "--tenant", "acme", "--name", "ci", "-o", "json"}, setup: keyCreated},
		{name: "key-list.table", args: []string{"keys", "list", "--include-revoked"}, setup: func(f *fakeServer) {
			f.replyWith("ListKeys", &adminv1.ListKeysResponse{Keys: []*adminv1.Key{ciKey, revokedKey}})
		}},
		{name: "token-create.table", args: []string{"token", "create", "--tenant", "acme", "--name", "ops"}, setup: func(f *fakeServer) {
			f.replyWith("CreateAdminToken", &adminv1.CreateAdminTokenResponse{
				AdminToken: &adminv1.AdminToken{Id: "tok-1", TenantId: tenantUUID, Name: "ops", Prefix: "tga_Qx1", CreateTime: created},
				Secret:     "tga_Qx1.admin-secret-value",
			})
		}},
		{name: "provider-list.table", args: []string{"providers", "list"}, setup: providers},
		{name: "provider-list.json", args: []string{"providers", "list", "-o", "json"}, setup: providers},
		{name: "model-get.table", args: []string{"model", "get", modelID}, setup: func(f *fakeServer) {
			f.replyWith("GetModel", &adminv1.GetModelResponse{Model: sonnet})
		}},
		{name: "model-get.json", args: []string{"model", "get", modelID, "-o", "json"}, setup: func(f *fakeServer) {
			f.replyWith("GetModel", &adminv1.GetModelResponse{Model: sonnet})
		}},
		{name: "policy-get.table", args: []string{"policy", "get", "--tenant", "acme"}, setup: func(f *fakeServer) {
			f.replyWith("GetPolicy", &adminv1.GetPolicyResponse{Policy: acmePolicy})
		}},
		{name: "policy-get.json", args: []string{"policy", "get", "--tenant", "acme", "-o", "json"}, setup: func(f *fakeServer) {
			f.replyWith("GetPolicy", &adminv1.GetPolicyResponse{Policy: acmePolicy})
		}},
		{name: "policy-list.table", args: []string{"policies", "list", "--tenant", "acme"}, setup: func(f *fakeServer) {
			f.replyWith("ListPolicies", &adminv1.ListPoliciesResponse{Policies: []*adminv1.Policy{
				acmePolicy, {Target: keyTarget(keyID), TokensPerMinute: i64(1000)},
			}})
		}},
		{name: "audit-list.table", args: []string{"audit", "list"}, setup: func(f *fakeServer) {
			f.replyWith("ListAuditEvents", &adminv1.ListAuditEventsResponse{Events: []*adminv1.AuditEvent{
				{Id: "e2", Time: updated, Actor: "operator", TenantId: tenantUUID, Action: "key.update", TargetType: "key", TargetId: keyID, ChangedFields: []string{"name", "expire_time"}},
				{Id: "e1", Time: created, Actor: "admin-token:tok-1", Action: "provider.create", TargetType: "provider", TargetId: providerID},
			}})
		}},
		{name: "help-root", args: []string{"--help"}},
		{name: "help-key-create", args: []string{"key", "create", "--help"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			if tt.setup != nil {
				tt.setup(f)
			}
			r := f.run(t, tt.args...)
			if r.code != exitOK {
				t.Fatalf("tollgatectl %v: %v", tt.args, r)
			}
			checkGolden(t, tt.name, r.stdout)
		})
	}
}

func tenantPages(f *fakeServer) {
	f.reply("ListTenants", func(req proto.Message) (proto.Message, error) {
		if req.(*adminv1.ListTenantsRequest).GetPageToken() == "" {
			return &adminv1.ListTenantsResponse{Tenants: []*adminv1.Tenant{acme, evil}, NextPageToken: "page-2"}, nil
		}
		return &adminv1.ListTenantsResponse{Tenants: []*adminv1.Tenant{globex}}, nil
	})
}

func keyCreated(f *fakeServer) {
	f.replyWith("CreateKey", &adminv1.CreateKeyResponse{Key: ciKey, Secret: "tgk_3fA9.secret-value-once"})
}

func providers(f *fakeServer) {
	f.replyWith("ListProviders", &adminv1.ListProvidersResponse{Providers: []*adminv1.Provider{
		{Id: providerID, Name: "anthropic", Kind: adminv1.ProviderKind_PROVIDER_KIND_ANTHROPIC, BaseUrl: "https://api.anthropic.com", HasCredential: true, CreateTime: created},
		{Id: "p2", TenantId: tenantUUID, Name: "azure", Kind: adminv1.ProviderKind_PROVIDER_KIND_AZURE_OPENAI, BaseUrl: "https://acme.openai.azure.com", ApiVersion: "2024-10-21", CreateTime: created},
	}})
}

// TestListFollowsPages checks that list asks for every page in turn and
// prints all of them.
func TestListFollowsPages(t *testing.T) {
	f := newFakeServer(t)
	tenantPages(f)
	r := f.run(t, "tenant", "list")
	if r.code != exitOK {
		t.Fatal(r)
	}
	var tokens []string
	for _, c := range f.recorded() {
		tokens = append(tokens, c.req.(*adminv1.ListTenantsRequest).GetPageToken())
	}
	if strings.Join(tokens, ",") != ",page-2" {
		t.Errorf("page tokens sent = %q, want first page then page-2", tokens)
	}
	for _, slug := range []string{"acme", "evil", "globex"} {
		if !strings.Contains(r.stdout, slug) {
			t.Errorf("output lacks %s from a later page:\n%s", slug, r.stdout)
		}
	}
}

func TestListLimit(t *testing.T) {
	f := newFakeServer(t)
	tenantPages(f)
	r := f.run(t, "tenant", "list", "--limit", "2", "-o", "json")
	if r.code != exitOK {
		t.Fatal(r)
	}
	if n := len(f.recorded()); n != 1 {
		t.Errorf("made %d calls, want 1: the first page already holds 2 tenants", n)
	}
	var resp adminv1.ListTenantsResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.GetTenants()) != 2 || resp.GetNextPageToken() != "" {
		t.Errorf("got %d tenants and token %q, want 2 and none", len(resp.GetTenants()), resp.GetNextPageToken())
	}
}

// TestListStopsOnRepeatedToken guards against a server bug turning a list
// into an endless loop.
func TestListStopsOnRepeatedToken(t *testing.T) {
	f := newFakeServer(t)
	f.replyWith("ListKeys", &adminv1.ListKeysResponse{Keys: []*adminv1.Key{ciKey}, NextPageToken: "same"})
	r := f.run(t, "key", "list")
	if r.code != exitError || !strings.Contains(r.stderr, "twice") {
		t.Fatalf("want exit 1 naming the repeated token: %v", r)
	}
	if n := len(f.recorded()); n != 2 {
		t.Errorf("made %d calls, want 2", n)
	}
}

// TestSecretPrintedOnce checks that a new key's secret is shown exactly once,
// on its own line, with a note on stderr that it cannot be shown again; and
// that the admin token is never printed.
func TestSecretPrintedOnce(t *testing.T) {
	const secret = "tgk_3fA9.secret-value-once"
	for _, tt := range []struct {
		name  string
		setup func(f *fakeServer)
		args  []string
	}{
		{"key", keyCreated, []string{"key", "create", "--tenant", "acme", "--name", "ci"}},
		{"admin token", func(f *fakeServer) {
			f.replyWith("CreateAdminToken", &adminv1.CreateAdminTokenResponse{AdminToken: &adminv1.AdminToken{Id: "tok-1"}, Secret: secret})
		}, []string{"token", "create", "--tenant", "acme", "--name", "ops"}},
	} {
		for _, format := range []string{"table", "json"} {
			t.Run(tt.name+"/"+format, func(t *testing.T) {
				f := newFakeServer(t)
				tt.setup(f)
				r := f.run(t, append(tt.args, "-o", format)...)
				if r.code != exitOK {
					t.Fatal(r)
				}
				if n := strings.Count(r.stdout, secret); n != 1 {
					t.Errorf("secret appears %d times on stdout, want 1:\n%s", n, r.stdout)
				}
				if strings.Contains(r.stderr, secret) {
					t.Errorf("secret on stderr: %s", r.stderr)
				}
				if !strings.Contains(r.stderr, "cannot be retrieved again") {
					t.Errorf("no note that the secret is shown once: %q", r.stderr)
				}
				if strings.Contains(r.stdout+r.stderr, testToken) {
					t.Errorf("admin token printed: %v", r)
				}
				if format == "table" {
					if first, _, _ := strings.Cut(r.stdout, "\n"); first != secret {
						t.Errorf("first line = %q, want the secret alone", first)
					}
				}
			})
		}
	}
}

// TestSecretMissing refuses to report success when the server returns no
// secret, since the operator would hold a key nobody can use.
func TestSecretMissing(t *testing.T) {
	f := newFakeServer(t)
	f.replyWith("CreateKey", &adminv1.CreateKeyResponse{Key: ciKey})
	r := f.run(t, "key", "create", "--tenant", "acme", "--name", "ci")
	if r.code != exitError || !strings.Contains(r.stderr, "no secret") {
		t.Fatalf("want exit 1 saying no secret came back: %v", r)
	}
}

// TestJSONIsOneDocument checks that -o json output parses as the response
// message, for a list (all pages merged) and for a delete (empty message).
func TestJSONIsOneDocument(t *testing.T) {
	f := newFakeServer(t)
	tenantPages(f)
	r := f.run(t, "tenant", "list", "-o", "json")
	var list adminv1.ListTenantsResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("list output is not a ListTenantsResponse: %v\n%s", err, r.stdout)
	}
	if len(list.GetTenants()) != 3 {
		t.Errorf("got %d tenants, want all 3 across both pages", len(list.GetTenants()))
	}
	r = f.run(t, "tenant", "delete", "acme", "-o", "json")
	if strings.TrimSpace(r.stdout) != "{}" {
		t.Errorf("delete -o json = %q, want {}", r.stdout)
	}
}

func TestCleanCell(t *testing.T) {
	var buf bytes.Buffer
	tb := newTable(&buf)
	tb.row("A", "B")
	tb.row("x\ty\n\x1b[0m", "")
	if err := tb.flush(); err != nil {
		t.Fatal(err)
	}
	if want := "A         B\nx?y??[0m  -\n"; buf.String() != want {
		t.Errorf("table = %q, want %q", buf.String(), want)
	}
}
