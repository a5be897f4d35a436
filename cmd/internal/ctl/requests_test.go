package ctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

const (
	tenantUUID = "11111111-2222-4333-8444-555555555555"
	keyID      = "5f1d7c1e-8f0a-4b8e-9a57-2d6c0a3e9b11"
	providerID = "3c9e1f4a-6b7d-4e2f-9a1b-8c7d6e5f4a3b"
	modelID    = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
)

func mask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }
func ts(t time.Time) *timestamppb.Timestamp       { return timestamppb.New(t) }
func i64(v int64) *int64                          { return &v }

func tenantTarget(t string) *adminv1.PolicyTarget {
	return &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_Tenant{Tenant: t}}
}

func keyTarget(id string) *adminv1.PolicyTarget {
	return &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_KeyId{KeyId: id}}
}

// TestRequests checks that each verb sends the request its flags describe,
// and that an update's FieldMask names exactly the flags that were given.
func TestRequests(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		stdin  string
		env    map[string]string
		setup  func(f *fakeServer)
		method string
		want   proto.Message
	}{
		// tenant
		{
			name:   "tenant list by status, plural resource name",
			args:   []string{"tenants", "list", "--status", "suspended"},
			method: "ListTenants",
			want:   &adminv1.ListTenantsRequest{Status: adminv1.TenantStatus_TENANT_STATUS_SUSPENDED},
		},
		{
			name:   "tenant list with limit asks for that page size",
			args:   []string{"tenant", "list", "--limit", "5"},
			method: "ListTenants",
			want:   &adminv1.ListTenantsRequest{PageSize: 5},
		},
		{
			name:   "tenant get",
			args:   []string{"tenant", "get", "acme"},
			method: "GetTenant",
			want:   &adminv1.GetTenantRequest{Tenant: "acme"},
		},
		{
			name:   "tenant create",
			args:   []string{"tenant", "create", "acme", "--name", "Acme Corp", "--billing-email", "ap@acme.example", "--billing-reference", "CUST-7", "--plan", "pro"},
			method: "CreateTenant",
			want: &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{
				Slug: "acme", Name: "Acme Corp", BillingEmail: "ap@acme.example", BillingReference: "CUST-7", Plan: "pro",
			}},
		},
		{
			name:   "tenant update by slug sends only given flags",
			args:   []string{"tenant", "update", "acme", "--plan", "enterprise", "--status", "restricted", "--billing-email", "ap@acme.example"},
			method: "UpdateTenant",
			want: &adminv1.UpdateTenantRequest{
				Tenant: &adminv1.Tenant{Slug: "acme", Status: adminv1.TenantStatus_TENANT_STATUS_RESTRICTED, Plan: "enterprise",
					BillingEmail: "ap@acme.example"},
				UpdateMask: mask("status", "billing_email", "plan"),
			},
		},
		{
			name:   "tenant update by id, clearing a field",
			args:   []string{"tenant", "update", tenantUUID, "--billing-reference", "", "--name", "Acme"},
			method: "UpdateTenant",
			want: &adminv1.UpdateTenantRequest{
				Tenant:     &adminv1.Tenant{Id: tenantUUID, Name: "Acme"},
				UpdateMask: mask("name", "billing_reference"),
			},
		},
		{
			name:   "tenant delete",
			args:   []string{"tenant", "delete", "acme"},
			method: "DeleteTenant",
			want:   &adminv1.DeleteTenantRequest{Tenant: "acme"},
		},
		// account
		{
			name:   "account list",
			args:   []string{"accounts", "list", "--tenant", "acme"},
			method: "ListAccounts",
			want:   &adminv1.ListAccountsRequest{Tenant: "acme"},
		},
		{
			name:   "account get",
			args:   []string{"account", "get", "acc-1"},
			method: "GetAccount",
			want:   &adminv1.GetAccountRequest{Id: "acc-1"},
		},
		{
			name:   "account create",
			args:   []string{"account", "create", "--tenant", "acme", "--email", "ada@acme.example", "--name", "Ada", "--role", "admin"},
			method: "CreateAccount",
			want: &adminv1.CreateAccountRequest{Tenant: "acme", Account: &adminv1.Account{
				Email: "ada@acme.example", Name: "Ada", Role: adminv1.AccountRole_ACCOUNT_ROLE_ADMIN,
			}},
		},
		{
			name:   "account update",
			args:   []string{"account", "update", "acc-1", "--role", "viewer", "--name", "Ada L.", "--email", "ada@acme.example"},
			method: "UpdateAccount",
			want: &adminv1.UpdateAccountRequest{
				Account:    &adminv1.Account{Id: "acc-1", Email: "ada@acme.example", Name: "Ada L.", Role: adminv1.AccountRole_ACCOUNT_ROLE_VIEWER},
				UpdateMask: mask("email", "name", "role"),
			},
		},
		{
			name:   "account delete",
			args:   []string{"account", "delete", "acc-1"},
			method: "DeleteAccount",
			want:   &adminv1.DeleteAccountRequest{Id: "acc-1"},
		},
		// key
		{
			name:   "key list",
			args:   []string{"keys", "list", "--tenant", "acme", "--include-revoked"},
			method: "ListKeys",
			want:   &adminv1.ListKeysRequest{Tenant: "acme", IncludeRevoked: true},
		},
		{
			name:   "key get",
			args:   []string{"key", "get", keyID},
			method: "GetKey",
			want:   &adminv1.GetKeyRequest{Id: keyID},
		},
		{
			name: "key create with duration expiry",
			args: []string{"key", "create", "--tenant", "acme", "--name", "ci", "--allowed-models", "gpt-4o-mini, claude-haiku",
				"--expires", "720h", "--account", "acc-1"},
			setup:  func(f *fakeServer) { f.replyWith("CreateKey", &adminv1.CreateKeyResponse{Secret: "tgk_x"}) },
			method: "CreateKey",
			want: &adminv1.CreateKeyRequest{Tenant: "acme", Key: &adminv1.Key{
				Name: "ci", AllowedModels: []string{"gpt-4o-mini", "claude-haiku"}, AccountId: "acc-1",
				ExpireTime: ts(testNow.Add(720 * time.Hour)),
			}},
		},
		{
			name:   "key create with RFC 3339 expiry and days",
			args:   []string{"key", "create", "--tenant", "acme", "--name", "ci", "--expires", "2026-12-31T00:00:00Z"},
			setup:  func(f *fakeServer) { f.replyWith("CreateKey", &adminv1.CreateKeyResponse{Secret: "tgk_x"}) },
			method: "CreateKey",
			want: &adminv1.CreateKeyRequest{Tenant: "acme", Key: &adminv1.Key{
				Name: "ci", ExpireTime: ts(time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)),
			}},
		},
		{
			name:   "key update clears allowed models",
			args:   []string{"key", "update", keyID, "--allowed-models", ""},
			method: "UpdateKey",
			want: &adminv1.UpdateKeyRequest{
				Key:        &adminv1.Key{Id: keyID, AllowedModels: []string{}},
				UpdateMask: mask("allowed_models"),
			},
		},
		{
			name:   "key update removes expiry",
			args:   []string{"key", "update", keyID, "--expires", "never"},
			method: "UpdateKey",
			want:   &adminv1.UpdateKeyRequest{Key: &adminv1.Key{Id: keyID}, UpdateMask: mask("expire_time")},
		},
		{
			name:   "key update name and expiry in days",
			args:   []string{"key", "update", keyID, "--expires", "30d", "--name", "ci-2", "--account", ""},
			method: "UpdateKey",
			want: &adminv1.UpdateKeyRequest{
				Key:        &adminv1.Key{Id: keyID, Name: "ci-2", ExpireTime: ts(testNow.Add(30 * 24 * time.Hour))},
				UpdateMask: mask("name", "expire_time", "account_id"),
			},
		},
		{
			name:   "key revoke",
			args:   []string{"key", "revoke", keyID},
			method: "RevokeKey",
			want:   &adminv1.RevokeKeyRequest{Id: keyID},
		},
		{
			name:   "key rotate",
			args:   []string{"key", "rotate", keyID},
			setup:  func(f *fakeServer) { f.replyWith("RotateKey", &adminv1.RotateKeyResponse{Secret: "tg-x"}) },
			method: "RotateKey",
			want:   &adminv1.RotateKeyRequest{Id: keyID},
		},
		{
			name: "account password link",
			args: []string{"account", "password-link", keyID},
			setup: func(f *fakeServer) {
				f.replyWith("CreatePasswordLink", &adminv1.CreatePasswordLinkResponse{Secret: "tgpwd-x"})
			},
			method: "CreatePasswordLink",
			want:   &adminv1.CreatePasswordLinkRequest{Id: keyID},
		},
		{
			name:   "key delete",
			args:   []string{"key", "delete", keyID},
			method: "DeleteKey",
			want:   &adminv1.DeleteKeyRequest{Id: keyID},
		},
		// token
		{
			name:   "token list",
			args:   []string{"tokens", "list", "--tenant", "acme", "--include-revoked"},
			method: "ListAdminTokens",
			want:   &adminv1.ListAdminTokensRequest{Tenant: "acme", IncludeRevoked: true},
		},
		{
			name: "token create",
			args: []string{"token", "create", "--tenant", "acme", "--name", "ops", "--expires", "90d"},
			setup: func(f *fakeServer) {
				f.replyWith("CreateAdminToken", &adminv1.CreateAdminTokenResponse{Secret: "tga_x"})
			},
			method: "CreateAdminToken",
			want: &adminv1.CreateAdminTokenRequest{Tenant: "acme", AdminToken: &adminv1.AdminToken{
				Name: "ops", ExpireTime: ts(testNow.Add(90 * 24 * time.Hour)),
			}},
		},
		{
			name:   "token revoke",
			args:   []string{"token", "revoke", "tok-1"},
			method: "RevokeAdminToken",
			want:   &adminv1.RevokeAdminTokenRequest{Id: "tok-1"},
		},
		// provider
		{
			name:   "provider list",
			args:   []string{"providers", "list", "--tenant", "acme"},
			method: "ListProviders",
			want:   &adminv1.ListProvidersRequest{Tenant: "acme"},
		},
		{
			name:   "provider get",
			args:   []string{"provider", "get", providerID},
			method: "GetProvider",
			want:   &adminv1.GetProviderRequest{Id: providerID},
		},
		{
			name: "provider create, credential from env, tenant by id",
			args: []string{"provider", "create", "--name", "azure", "--kind", "azure-openai", "--base-url", "https://x.openai.azure.com",
				"--api-version", "2024-10-21", "--tenant", tenantUUID, "--credential-env", "TEST_AZURE_KEY"},
			env:    map[string]string{"TEST_AZURE_KEY": "sk-azure-secret\n"},
			method: "CreateProvider",
			want: &adminv1.CreateProviderRequest{Provider: &adminv1.Provider{
				TenantId: tenantUUID, Name: "azure", Kind: adminv1.ProviderKind_PROVIDER_KIND_AZURE_OPENAI,
				BaseUrl: "https://x.openai.azure.com", ApiVersion: "2024-10-21", Credential: "sk-azure-secret",
			}},
		},
		{
			name: "provider create resolves a tenant slug to its id",
			args: []string{"provider", "create", "--name", "local", "--kind", "openai_compatible", "--base-url", "http://127.0.0.1:11434", "--tenant", "acme"},
			setup: func(f *fakeServer) {
				f.replyWith("GetTenant", &adminv1.GetTenantResponse{Tenant: &adminv1.Tenant{Id: tenantUUID, Slug: "acme"}})
			},
			method: "CreateProvider",
			want: &adminv1.CreateProviderRequest{Provider: &adminv1.Provider{
				TenantId: tenantUUID, Name: "local", Kind: adminv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE, BaseUrl: "http://127.0.0.1:11434",
			}},
		},
		{
			name:   "provider update rotates the credential from stdin",
			args:   []string{"provider", "update", providerID, "--credential-stdin", "--base-url", "https://api.openai.com"},
			stdin:  "sk-new-secret\n",
			method: "UpdateProvider",
			want: &adminv1.UpdateProviderRequest{
				Provider:   &adminv1.Provider{Id: providerID, BaseUrl: "https://api.openai.com", Credential: "sk-new-secret"},
				UpdateMask: mask("base_url", "credential"),
			},
		},
		{
			name:   "provider update without a credential leaves it alone",
			args:   []string{"provider", "update", providerID, "--name", "openai-eu", "--api-version", "2024-10-21"},
			method: "UpdateProvider",
			want: &adminv1.UpdateProviderRequest{
				Provider:   &adminv1.Provider{Id: providerID, Name: "openai-eu", ApiVersion: "2024-10-21"},
				UpdateMask: mask("name", "api_version"),
			},
		},
		{
			name:   "provider delete",
			args:   []string{"provider", "delete", providerID},
			method: "DeleteProvider",
			want:   &adminv1.DeleteProviderRequest{Id: providerID},
		},
		// model
		{
			name:   "model list",
			args:   []string{"models", "list", "--tenant", "acme"},
			method: "ListModels",
			want:   &adminv1.ListModelsRequest{Tenant: "acme"},
		},
		{
			name:   "model get",
			args:   []string{"model", "get", modelID},
			method: "GetModel",
			want:   &adminv1.GetModelRequest{Id: modelID},
		},
		{
			name: "model create with deployments and prices",
			args: []string{"model", "create", "claude-sonnet",
				"--deployment", "provider=p1,upstream=claude-sonnet-4-5",
				"--deployment", "provider=p2,upstream=anthropic.claude-sonnet-4-5,weight=3,priority=1",
				"--input-price", "$3", "--output-price", "15000000", "--cached-input-price", "0.30",
				"--context-window", "200000", "--tenant", tenantUUID},
			method: "CreateModel",
			want: &adminv1.CreateModelRequest{Model: &adminv1.Model{
				TenantId: tenantUUID, Name: "claude-sonnet", ContextWindow: 200000,
				Deployments: []*adminv1.Deployment{
					{ProviderId: "p1", UpstreamModel: "claude-sonnet-4-5", Weight: 1},
					{ProviderId: "p2", UpstreamModel: "anthropic.claude-sonnet-4-5", Weight: 3, Priority: 1},
				},
				Pricing: &adminv1.Pricing{InputMicrosPerMtok: 3000000, OutputMicrosPerMtok: 15000000, CachedInputMicrosPerMtok: 300000},
			}},
		},
		{
			name: "model update keeps the prices not given",
			args: []string{"model", "update", modelID, "--output-price", "$12"},
			setup: func(f *fakeServer) {
				f.replyWith("GetModel", &adminv1.GetModelResponse{Model: &adminv1.Model{Id: modelID, Pricing: &adminv1.Pricing{
					InputMicrosPerMtok: 2500000, OutputMicrosPerMtok: 10000000, CachedInputMicrosPerMtok: 1250000,
					EffectiveTime: ts(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)),
				}}})
			},
			method: "UpdateModel",
			want: &adminv1.UpdateModelRequest{
				Model: &adminv1.Model{Id: modelID, Pricing: &adminv1.Pricing{
					InputMicrosPerMtok: 2500000, OutputMicrosPerMtok: 12000000, CachedInputMicrosPerMtok: 1250000,
				}},
				UpdateMask: mask("pricing"),
			},
		},
		{
			name:   "model update schedules a price",
			args:   []string{"model", "update", modelID, "--input-price", "1", "--price-effective", "2026-02-01T00:00:00Z"},
			method: "UpdateModel",
			want: &adminv1.UpdateModelRequest{
				Model: &adminv1.Model{Id: modelID, Pricing: &adminv1.Pricing{
					InputMicrosPerMtok: 1, EffectiveTime: ts(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)),
				}},
				UpdateMask: mask("pricing"),
			},
		},
		{
			name:   "model update replaces deployments and zeroes the context window",
			args:   []string{"model", "update", modelID, "--deployment", "provider=p3,upstream=gpt-4o", "--context-window", "0", "--name", "gpt-4o"},
			method: "UpdateModel",
			want: &adminv1.UpdateModelRequest{
				Model: &adminv1.Model{Id: modelID, Name: "gpt-4o", Deployments: []*adminv1.Deployment{
					{ProviderId: "p3", UpstreamModel: "gpt-4o", Weight: 1},
				}},
				UpdateMask: mask("name", "context_window", "deployments"),
			},
		},
		{
			name:   "model delete",
			args:   []string{"model", "delete", modelID},
			method: "DeleteModel",
			want:   &adminv1.DeleteModelRequest{Id: modelID},
		},
		// policy
		{
			name:   "policy get for a tenant",
			args:   []string{"policy", "get", "--tenant", "acme"},
			method: "GetPolicy",
			want:   &adminv1.GetPolicyRequest{Target: tenantTarget("acme")},
		},
		{
			name:   "policy get for a key",
			args:   []string{"policy", "get", "--key", keyID},
			method: "GetPolicy",
			want:   &adminv1.GetPolicyRequest{Target: keyTarget(keyID)},
		},
		{
			name: "policy set limits, budgets and lists",
			args: []string{"policy", "set", "--tenant", "acme", "--rpm", "600", "--budget", "month:hard=$500,soft=$400",
				"--budget", "day:hard=1000000", "--allow-models", "a, b", "--retention", "none", "--redact"},
			method: "UpdatePolicy",
			want: &adminv1.UpdatePolicyRequest{
				Policy: &adminv1.Policy{
					Target:            tenantTarget("acme"),
					RequestsPerMinute: i64(600),
					Budgets: []*adminv1.Budget{
						{Period: adminv1.BudgetPeriod_BUDGET_PERIOD_MONTH, HardLimitMicros: i64(500000000), SoftLimitMicros: i64(400000000)},
						{Period: adminv1.BudgetPeriod_BUDGET_PERIOD_DAY, HardLimitMicros: i64(1000000)},
					},
					AllowedModels:    []string{"a", "b"},
					ContentRetention: adminv1.ContentRetention_CONTENT_RETENTION_NONE,
					Redact:           true,
				},
				UpdateMask: mask("requests_per_minute", "budgets", "allowed_models", "content_retention", "redact"),
			},
		},
		{
			name:   "policy set clears a limit and turns a switch off",
			args:   []string{"policy", "set", "--key", keyID, "--rpm", "none", "--clamp-output-tokens=false", "--require-zero-retention", "--budget", "none"},
			method: "UpdatePolicy",
			want: &adminv1.UpdatePolicyRequest{
				Policy:     &adminv1.Policy{Target: keyTarget(keyID), RequireZeroRetention: true},
				UpdateMask: mask("requests_per_minute", "clamp_output_tokens", "budgets", "require_zero_retention"),
			},
		},
		{
			name: "policy set every other setting",
			args: []string{"policy", "set", "--tenant", "acme", "--tpm", "200000", "--concurrency", "8", "--max-output-tokens", "4096",
				"--clamp-output-tokens", "--deny-models", "o1", "--allow-providers", "openai,anthropic", "--deny-providers", "gemini",
				"--allow-cidrs", "10.0.0.0/8,2001:db8::/32", "--retention", "full", "--retention-days", "30", "--usage-retention-days", "365",
				"--require-no-training", "--allow-provider-storage"},
			method: "UpdatePolicy",
			want: &adminv1.UpdatePolicyRequest{
				Policy: &adminv1.Policy{
					Target: tenantTarget("acme"), TokensPerMinute: i64(200000), ConcurrentRequests: i64(8), MaxOutputTokens: i64(4096),
					ClampOutputTokens: true, DeniedModels: []string{"o1"},
					AllowedProviders: []string{"openai", "anthropic"}, DeniedProviders: []string{"gemini"},
					AllowedCidrs:     []string{"10.0.0.0/8", "2001:db8::/32"},
					ContentRetention: adminv1.ContentRetention_CONTENT_RETENTION_FULL, ContentRetentionDays: 30, UsageRetentionDays: 365,
					RequireNoTraining: true, AllowProviderStorage: true,
				},
				UpdateMask: mask("tokens_per_minute", "concurrent_requests", "max_output_tokens", "clamp_output_tokens",
					"denied_models", "allowed_providers", "denied_providers", "allowed_cidrs", "content_retention",
					"content_retention_days", "usage_retention_days", "require_no_training", "allow_provider_storage"),
			},
		},
		{
			name:   "policy delete",
			args:   []string{"policy", "delete", "--key", keyID},
			method: "DeletePolicy",
			want:   &adminv1.DeletePolicyRequest{Target: keyTarget(keyID)},
		},
		{
			name:   "policy list",
			args:   []string{"policies", "list", "--tenant", "acme"},
			method: "ListPolicies",
			want:   &adminv1.ListPoliciesRequest{Tenant: "acme"},
		},
		// audit
		{
			name:   "audit list with a relative and an absolute time",
			args:   []string{"audit", "list", "--tenant", "acme", "--action", "key.create", "--since", "24h", "--until", "2026-01-02T00:00:00Z"},
			method: "ListAuditEvents",
			want: &adminv1.ListAuditEventsRequest{
				Tenant: "acme", Action: "key.create",
				StartTime: ts(testNow.Add(-24 * time.Hour)), EndTime: ts(time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			if tt.setup != nil {
				tt.setup(f)
			}
			cleanEnv(t)
			t.Setenv("TOLLGATE_TOKEN", testToken)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			r := runCLI(t, tt.stdin, append([]string{"--server", f.addr}, tt.args...)...)
			if r.code != exitOK {
				t.Fatalf("tollgatectl %v: %v", tt.args, r)
			}
			assertProto(t, f.only(t, tt.method).req, tt.want)
		})
	}
}

// TestCredentialSources reads a provider credential from each source and
// checks it reaches the request trimmed, and appears in no output.
func TestCredentialSources(t *testing.T) {
	const secret = "sk-credential-9f8e7d"
	file := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"provider", "create", "--name", "openai", "--kind", "openai", "--base-url", "https://api.openai.com"}
	tests := []struct {
		name     string
		args     []string
		stdin    string
		env      string
		wantCode int
		wantErr  string
	}{
		{name: "file", args: []string{"--credential-file", file}},
		{name: "env", args: []string{"--credential-env", "TEST_CRED"}, env: secret},
		{name: "stdin", args: []string{"--credential-stdin"}, stdin: secret + "\r\n"},
		{name: "empty file", args: []string{"--credential-file", empty}, wantCode: exitError, wantErr: "is empty"},
		{name: "missing file", args: []string{"--credential-file", file + ".nope"}, wantCode: exitError, wantErr: "no such file"},
		{name: "unset env", args: []string{"--credential-env", "TEST_CRED"}, wantCode: exitError, wantErr: "$TEST_CRED is not set"},
		{name: "two sources", args: []string{"--credential-file", file, "--credential-stdin"}, wantCode: exitUsage, wantErr: "only one of"},
		{name: "stdin=false", args: []string{"--credential-stdin=false"}, wantCode: exitUsage, wantErr: "takes no value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			cleanEnv(t)
			t.Setenv("TOLLGATE_TOKEN", testToken)
			t.Setenv("TEST_CRED", tt.env)
			if tt.env == "" {
				if err := os.Unsetenv("TEST_CRED"); err != nil {
					t.Fatal(err)
				}
			}
			r := runCLI(t, tt.stdin, append(append([]string{"--server", f.addr}, base...), tt.args...)...)
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d: %v", r.code, tt.wantCode, r)
			}
			if r.code != exitOK {
				if !strings.Contains(r.stderr, tt.wantErr) {
					t.Errorf("stderr %q does not say %q", r.stderr, tt.wantErr)
				}
				if len(f.recorded()) != 0 {
					t.Errorf("sent %v despite a bad credential", methods(f.recorded()))
				}
				return
			}
			got := f.only(t, "CreateProvider").req.(*adminv1.CreateProviderRequest).GetProvider().GetCredential()
			if got != secret {
				t.Errorf("credential sent = %q, want %q", got, secret)
			}
			if strings.Contains(r.stdout+r.stderr, secret) {
				t.Errorf("the credential was printed: %v", r)
			}
		})
	}
}
