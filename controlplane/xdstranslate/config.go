package xdstranslate

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	"github.com/tollgate-dev/tollgate/controlplane/ir"
	"github.com/tollgate-dev/tollgate/controlplane/policy"
)

// Config is what ext_proc servers hold in memory, by type and resource name.
type Config struct {
	Keys      map[string]*configv1.Key
	Tenants   map[string]*configv1.Tenant
	Providers map[string]*configv1.Provider
	Models    map[string]*configv1.Model
}

// OpenCredential opens a provider's sealed credential.
type OpenCredential func(sealed []byte, providerID uuid.UUID) ([]byte, error)

// KeyResourceName is a key's resource name: the hex SHA-256 of its secret,
// which is what ext_proc computes from the bearer token it receives.
func KeyResourceName(hash []byte) string { return hex.EncodeToString(hash) }

// TranslateConfig builds the ext_proc configuration from g. Like
// TranslateEnvoy it is best effort: a provider whose credential cannot be
// opened (say, its master key was dropped from the keyring) is left out and
// reported, and models that need it are left out too, so that ext_proc
// never routes to a provider it cannot authenticate to.
func TranslateConfig(g *ir.Gateway, open OpenCredential) (*Config, error) {
	c := &Config{
		Keys:      make(map[string]*configv1.Key, len(g.Keys)),
		Tenants:   make(map[string]*configv1.Tenant, len(g.Tenants)),
		Providers: make(map[string]*configv1.Provider, len(g.Providers)),
		Models:    make(map[string]*configv1.Model, len(g.Models)),
	}
	var errs []error
	for _, t := range g.Tenants {
		c.Tenants[t.ID.String()] = &configv1.Tenant{
			TenantId: t.ID.String(), Slug: t.Slug, Status: tenantStatus(t.Status), Policy: policyProto(t.Policy),
		}
	}
	for _, k := range g.Keys {
		ck := &configv1.Key{
			KeyId: k.ID.String(), TenantId: k.TenantID.String(), Prefix: k.Prefix,
			AllowedModels: k.AllowedModels, Policy: policyProto(k.Policy),
			AccountRestricted: k.AccountRestricted,
		}
		if k.AccountID != nil {
			ck.AccountId = k.AccountID.String()
		}
		if k.ExpiresAt != nil {
			ck.ExpireTime = timestamppb.New(*k.ExpiresAt)
		}
		c.Keys[KeyResourceName(k.Hash)] = ck
	}
	for _, p := range g.Providers {
		cp := &configv1.Provider{
			ProviderId: p.ID.String(), Name: p.Name, Kind: providerKind(p.Kind),
			BaseUrl: p.BaseURL, ApiVersion: p.APIVersion,
		}
		if p.TenantID != nil {
			cp.TenantId = p.TenantID.String()
		}
		if len(p.Credential) > 0 {
			plain, err := open(p.Credential, p.ID)
			if err != nil {
				errs = append(errs, fmt.Errorf("provider %s (%s): opening its credential: %w", p.Name, p.ID, err))
				continue
			}
			cp.Credential = string(plain)
		}
		c.Providers[p.ID.String()] = cp
	}
	for i := range g.Models {
		m := &g.Models[i]
		cm := &configv1.Model{
			ModelId: m.ID.String(), Name: m.Name, Route: m.RouteName(), ContextWindow: m.ContextWindow,
		}
		if m.TenantID != nil {
			cm.TenantId = m.TenantID.String()
		}
		// A model Envoy cannot route to must not be offered by ext_proc
		// either; TranslateEnvoy reports why.
		if _, err := modelEndpoints(g, m); err != nil {
			continue
		}
		ranks := m.DenseRanks()
		usable := true
		for j, d := range m.Deployments {
			if c.Providers[d.ProviderID.String()] == nil {
				usable = false
				break
			}
			cm.Deployments = append(cm.Deployments, &configv1.Deployment{
				DeploymentId: d.ID.String(), ProviderId: d.ProviderID.String(),
				UpstreamModel: d.UpstreamModel, Weight: d.Weight, Priority: ranks[j],
				NoTraining: d.NoTraining, ZeroRetention: d.Retention == ir.RetentionZero,
				RetentionDays: d.RetentionDays,
			})
		}
		if !usable {
			errs = append(errs, fmt.Errorf("model %s (%s): left out: a deployment's provider is unavailable", m.Name, m.ID))
			continue
		}
		for _, v := range privacyVariants(m) {
			cm.PrivacyRoutes = append(cm.PrivacyRoutes, &configv1.PrivacyRoute{
				NoTraining: v.req.NoTraining, ZeroRetention: v.req.ZeroRetention, Route: v.route,
			})
		}
		for _, p := range m.Prices {
			cm.Prices = append(cm.Prices, &configv1.Price{
				EffectiveTime:            timestamppb.New(p.EffectiveFrom),
				InputMicrosPerMtok:       p.InputMicrosPerMtok,
				OutputMicrosPerMtok:      p.OutputMicrosPerMtok,
				CachedInputMicrosPerMtok: p.CachedInputMicrosPerMtok,
			})
		}
		c.Models[m.ID.String()] = cm
	}
	return c, errors.Join(errs...)
}

func tenantStatus(s string) configv1.TenantStatus {
	switch s {
	case ir.StatusActive:
		return configv1.TenantStatus_TENANT_STATUS_ACTIVE
	case ir.StatusSuspended:
		return configv1.TenantStatus_TENANT_STATUS_SUSPENDED
	case ir.StatusRestricted:
		return configv1.TenantStatus_TENANT_STATUS_RESTRICTED
	}
	// Unknown means refuse: ext_proc serves only ACTIVE tenants.
	return configv1.TenantStatus_TENANT_STATUS_UNSPECIFIED
}

func providerKind(k string) configv1.ProviderKind {
	switch k {
	case ir.KindOpenAI:
		return configv1.ProviderKind_PROVIDER_KIND_OPENAI
	case ir.KindAnthropic:
		return configv1.ProviderKind_PROVIDER_KIND_ANTHROPIC
	case ir.KindGemini:
		return configv1.ProviderKind_PROVIDER_KIND_GEMINI
	case ir.KindAzureOpenAI:
		return configv1.ProviderKind_PROVIDER_KIND_AZURE_OPENAI
	case ir.KindOpenAICompatible:
		return configv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE
	}
	return configv1.ProviderKind_PROVIDER_KIND_UNSPECIFIED
}

var budgetPeriods = map[policy.Period]configv1.BudgetPeriod{
	policy.PeriodDay:   configv1.BudgetPeriod_BUDGET_PERIOD_DAY,
	policy.PeriodMonth: configv1.BudgetPeriod_BUDGET_PERIOD_MONTH,
	policy.PeriodTotal: configv1.BudgetPeriod_BUDGET_PERIOD_TOTAL,
}

var retentions = map[policy.ContentRetention]configv1.ContentRetention{
	policy.RetentionUnset:    configv1.ContentRetention_CONTENT_RETENTION_UNSPECIFIED,
	policy.RetentionNone:     configv1.ContentRetention_CONTENT_RETENTION_NONE,
	policy.RetentionMetadata: configv1.ContentRetention_CONTENT_RETENTION_METADATA,
	policy.RetentionFull:     configv1.ContentRetention_CONTENT_RETENTION_FULL,
}

func policyProto(s *policy.Spec) *configv1.Policy {
	if s == nil {
		return nil
	}
	p := &configv1.Policy{
		RequestsPerMinute:    s.RequestsPerMinute,
		TokensPerMinute:      s.TokensPerMinute,
		ConcurrentRequests:   s.ConcurrentRequests,
		MaxOutputTokens:      s.MaxOutputTokens,
		ClampOutputTokens:    s.ClampOutputTokens,
		AllowedModels:        s.AllowedModels,
		DeniedModels:         s.DeniedModels,
		AllowedProviders:     s.AllowedProviders,
		DeniedProviders:      s.DeniedProviders,
		AllowedCidrs:         s.AllowedCIDRs,
		ContentRetention:     retentions[s.Retention.Content],
		ContentRetentionDays: s.Retention.ContentDays,
		UsageRetentionDays:   s.Retention.UsageDays,
		RequireNoTraining:    s.Privacy.RequireNoTraining,
		RequireZeroRetention: s.Privacy.RequireZeroRetention,
		AllowProviderStorage: s.Privacy.AllowProviderStorage,
		Redact:               s.Privacy.Redact,
	}
	for _, b := range s.Budgets {
		p.Budgets = append(p.Budgets, &configv1.Budget{
			Period: budgetPeriods[b.Period], HardLimitMicros: b.HardLimitMicros, SoftLimitMicros: b.SoftLimitMicros,
		})
	}
	return p
}
