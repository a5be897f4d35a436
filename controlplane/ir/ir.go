// Package ir is the control plane's in-memory view of the gateway: the
// tenants, keys, providers and models that the store holds, read in one
// consistent transaction and never changed afterwards. Translators turn it
// into Envoy resources and ext_proc config; they never read the database.
package ir

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/controlplane/policy"
)

// Gateway is one immutable snapshot. Every slice is sorted by ID so that the
// same store contents always translate to the same resources.
type Gateway struct {
	Tenants   []Tenant   `json:"tenants,omitempty"`
	Keys      []Key      `json:"keys,omitempty"`
	Providers []Provider `json:"providers,omitempty"`
	Models    []Model    `json:"models,omitempty"`
}

// Tenant status values, as stored.
const (
	StatusActive     = "active"
	StatusSuspended  = "suspended"
	StatusRestricted = "restricted"
)

// Tenant is what the data plane needs to know about a tenant.
type Tenant struct {
	ID     uuid.UUID    `json:"id"`
	Slug   string       `json:"slug"`
	Status string       `json:"status"`
	Policy *policy.Spec `json:"policy,omitempty"`
}

// Key is a usable data-plane key: revoked keys are not in the view.
type Key struct {
	ID            uuid.UUID    `json:"id"`
	TenantID      uuid.UUID    `json:"tenant_id"`
	Prefix        string       `json:"prefix"`
	Hash          []byte       `json:"hash"`
	AllowedModels []string     `json:"allowed_models,omitempty"`
	ExpiresAt     *time.Time   `json:"expires_at,omitempty"`
	Policy        *policy.Spec `json:"policy,omitempty"`
	// AccountID is the account the key belongs to, if any;
	// AccountRestricted says that account's processing is restricted.
	AccountID         *uuid.UUID `json:"account_id,omitempty"`
	AccountRestricted bool       `json:"account_restricted,omitempty"`
}

// Provider kinds, as stored.
const (
	KindOpenAI           = "openai"
	KindAnthropic        = "anthropic"
	KindGemini           = "gemini"
	KindAzureOpenAI      = "azure_openai"
	KindOpenAICompatible = "openai_compatible"
)

// Provider is an upstream API. Credential is sealed by the keyring; only the
// ext_proc config translation opens it.
type Provider struct {
	ID         uuid.UUID  `json:"id"`
	TenantID   *uuid.UUID `json:"tenant_id,omitempty"`
	Name       string     `json:"name"`
	Kind       string     `json:"kind"`
	BaseURL    string     `json:"base_url"`
	APIVersion string     `json:"api_version,omitempty"`
	Credential []byte     `json:"credential,omitempty"`
}

// Model is a public model name and where it is served.
type Model struct {
	ID            uuid.UUID    `json:"id"`
	TenantID      *uuid.UUID   `json:"tenant_id,omitempty"`
	Name          string       `json:"name"`
	ContextWindow int64        `json:"context_window,omitempty"`
	Deployments   []Deployment `json:"deployments"`
	// Prices oldest first: the price in force now and any scheduled ones.
	Prices []Price `json:"prices,omitempty"`
}

// Deployment serves a model from one provider. Priority is as stored; use
// DenseRanks for Envoy's contiguous priority levels.
type Deployment struct {
	ID            uuid.UUID `json:"id"`
	ProviderID    uuid.UUID `json:"provider_id"`
	UpstreamModel string    `json:"upstream_model"`
	Weight        int32     `json:"weight"`
	Priority      int32     `json:"priority"`
	// What the provider guarantees for these requests (zero values: no
	// guarantee).
	NoTraining    bool   `json:"no_training,omitempty"`
	Retention     string `json:"retention,omitempty"` // RetentionUnknown, RetentionZero or RetentionLimited
	RetentionDays int32  `json:"retention_days,omitempty"`
}

// Declared provider retention, as stored.
const (
	RetentionUnknown = "unknown"
	RetentionZero    = "zero"
	RetentionLimited = "limited"
)

// Meets says whether d gives every guarantee r asks for.
func (d *Deployment) Meets(r Requirement) bool {
	return (!r.NoTraining || d.NoTraining) && (!r.ZeroRetention || d.Retention == RetentionZero)
}

// Requirement is what a request's privacy policy demands of the provider
// that serves it.
type Requirement struct {
	NoTraining    bool
	ZeroRetention bool
}

// Requirements lists every requirement that narrows the deployments a
// request may use, in the order routes for them are named.
var Requirements = []Requirement{
	{NoTraining: true},
	{ZeroRetention: true},
	{NoTraining: true, ZeroRetention: true},
}

// Suffix names r in route and cluster names.
func (r Requirement) Suffix() string {
	switch {
	case r.NoTraining && r.ZeroRetention:
		return "no-training+zero-retention"
	case r.NoTraining:
		return "no-training"
	case r.ZeroRetention:
		return "zero-retention"
	}
	return ""
}

// Price is in micro-dollars per million tokens from EffectiveFrom on.
type Price struct {
	EffectiveFrom            time.Time `json:"effective_from"`
	InputMicrosPerMtok       int64     `json:"input_micros_per_mtok"`
	OutputMicrosPerMtok      int64     `json:"output_micros_per_mtok"`
	CachedInputMicrosPerMtok int64     `json:"cached_input_micros_per_mtok"`
}

// RouteName is the value of the routing header that selects m's Envoy route
// and the name of that route and of its cluster.
func (m *Model) RouteName() string { return "model-" + m.ID.String() }

// DenseRanks maps each deployment's priority to a contiguous rank from 0, as
// Envoy requires of priority levels: priorities 0, 5, 5, 10 become 0, 1, 1, 2.
func (m *Model) DenseRanks() []int32 {
	ps := make([]int32, 0, len(m.Deployments))
	for _, d := range m.Deployments {
		ps = append(ps, d.Priority)
	}
	slices.Sort(ps)
	ps = slices.Compact(ps)
	out := make([]int32, len(m.Deployments))
	for i, d := range m.Deployments {
		r, _ := slices.BinarySearch(ps, d.Priority)
		out[i] = int32(r)
	}
	return out
}

// Provider returns the provider with id, or nil.
func (g *Gateway) Provider(id uuid.UUID) *Provider {
	i, ok := slices.BinarySearchFunc(g.Providers, id, func(p Provider, id uuid.UUID) int { return compareIDs(p.ID, id) })
	if !ok {
		return nil
	}
	return &g.Providers[i]
}

// Sort orders every slice by ID (and deployments by priority, then ID), the
// order translators rely on.
func (g *Gateway) Sort() {
	byID := compareIDs
	slices.SortFunc(g.Tenants, func(a, b Tenant) int { return byID(a.ID, b.ID) })
	slices.SortFunc(g.Keys, func(a, b Key) int { return byID(a.ID, b.ID) })
	slices.SortFunc(g.Providers, func(a, b Provider) int { return byID(a.ID, b.ID) })
	slices.SortFunc(g.Models, func(a, b Model) int { return byID(a.ID, b.ID) })
	for i := range g.Models {
		slices.SortFunc(g.Models[i].Deployments, func(a, b Deployment) int {
			return cmp.Or(cmp.Compare(a.Priority, b.Priority), byID(a.ID, b.ID))
		})
		slices.SortFunc(g.Models[i].Prices, func(a, b Price) int { return a.EffectiveFrom.Compare(b.EffectiveFrom) })
	}
}

// compareIDs orders UUIDs by their bytes, which is also the order of their
// text form.
func compareIDs(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) }

// Validate reports references that do not resolve. The store's foreign keys
// make these impossible in a snapshot it produced; hand-written snapshots in
// tests and golden files get checked here.
func (g *Gateway) Validate() error {
	var errs []error
	tenants := map[uuid.UUID]bool{}
	for _, t := range g.Tenants {
		tenants[t.ID] = true
	}
	for _, k := range g.Keys {
		if !tenants[k.TenantID] {
			errs = append(errs, fmt.Errorf("key %s: unknown tenant %s", k.ID, k.TenantID))
		}
	}
	for _, m := range g.Models {
		if len(m.Deployments) == 0 {
			errs = append(errs, fmt.Errorf("model %s (%s): no deployments", m.ID, m.Name))
		}
		for _, d := range m.Deployments {
			if g.Provider(d.ProviderID) == nil {
				errs = append(errs, fmt.Errorf("model %s (%s): deployment %s: unknown provider %s", m.ID, m.Name, d.ID, d.ProviderID))
			}
		}
	}
	return errors.Join(errs...)
}

// CredentialAD is the associated data that binds a provider's sealed
// credential to that provider: a ciphertext copied onto another provider's
// row does not open. The admin API seals with it; the config translation
// opens with it.
func CredentialAD(providerID uuid.UUID) []byte {
	return []byte("provider-credential:" + providerID.String())
}
