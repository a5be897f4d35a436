package loadtest

import (
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
	"github.com/tollgate-dev/tollgate/extproc"
)

// The gateway a load test runs against: one tenant, its keys, and one model
// served by one OpenAI deployment. OpenAI-to-OpenAI is the common case, and
// its passthrough translation is the cheapest a request can get, so the
// figures are the floor of what every request costs.
const (
	TenantID     = "00000000-0000-4000-8000-00000000100a"
	ProviderID   = "00000000-0000-4000-8000-00000000100b"
	DeploymentID = "00000000-0000-4000-8000-00000000100c"
	ModelName    = "smart"
	ModelRoute   = "model-smart"
)

// StaticConfig is an in-memory extproc.Config that never changes: what
// ext_proc holds once the control plane's config stream has synced.
type StaticConfig struct {
	keys      map[string]*configv1.Key
	plaintext []string
	tenant    *configv1.Tenant
	provider  *configv1.Provider
	model     *configv1.Model
	ready     chan struct{}
}

var _ extproc.Config = (*StaticConfig)(nil)

// NewStaticConfig returns a gateway with n keys of one active tenant.
func NewStaticConfig(n int) (*StaticConfig, error) {
	if n < 1 {
		return nil, fmt.Errorf("loadtest: need at least one key, got %d", n)
	}
	c := &StaticConfig{
		keys:   make(map[string]*configv1.Key, n),
		tenant: &configv1.Tenant{TenantId: TenantID, Slug: "loadtest", Status: configv1.TenantStatus_TENANT_STATUS_ACTIVE},
		provider: &configv1.Provider{ProviderId: ProviderID, Name: "openai", Kind: configv1.ProviderKind_PROVIDER_KIND_OPENAI,
			BaseUrl: "https://api.openai.com", Credential: "sk-loadtest-provider"},
		model: &configv1.Model{
			ModelId: "00000000-0000-4000-8000-00000000100d", Name: ModelName, Route: ModelRoute,
			Deployments: []*configv1.Deployment{{DeploymentId: DeploymentID, ProviderId: ProviderID, UpstreamModel: "gpt-4o", Weight: 1}},
			Prices: []*configv1.Price{{
				EffectiveTime:      timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
				InputMicrosPerMtok: 2_500_000, OutputMicrosPerMtok: 10_000_000, CachedInputMicrosPerMtok: 1_250_000,
			}},
		},
		ready: make(chan struct{}),
	}
	close(c.ready)
	for i := range n {
		s, err := secret.New(secret.APIKey)
		if err != nil {
			return nil, fmt.Errorf("loadtest: new key: %w", err)
		}
		c.keys[xdstranslate.KeyResourceName(s.Hash)] = &configv1.Key{
			KeyId: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), TenantId: TenantID, Prefix: s.Prefix,
		}
		c.plaintext = append(c.plaintext, s.Plaintext)
	}
	return c, nil
}

// Secrets returns the keys' secrets, as clients send them.
func (c *StaticConfig) Secrets() []string { return c.plaintext }

func (c *StaticConfig) Provider(id string) *configv1.Provider {
	if id == c.provider.GetProviderId() {
		return c.provider
	}
	return nil
}

func (c *StaticConfig) Ready() <-chan struct{}          { return c.ready }
func (c *StaticConfig) Key(hash string) *configv1.Key   { return c.keys[hash] }
func (c *StaticConfig) Models(string) []*configv1.Model { return []*configv1.Model{c.model} }
func (c *StaticConfig) Tenant(id string) *configv1.Tenant {
	if id == TenantID {
		return c.tenant
	}
	return nil
}

func (c *StaticConfig) Model(tenantID, name string) *configv1.Model {
	if tenantID == TenantID && name == ModelName {
		return c.model
	}
	return nil
}

// UsageCounter is an extproc.UsageSink that keeps counts, not records, so
// that a long run holds no more memory than a short one.
type UsageCounter struct {
	mu     sync.Mutex
	counts UsageCounts
}

// UsageCounts are totals over the records a UsageCounter took.
type UsageCounts struct {
	Records int64 `json:"records"`
	// Counted records are those of a request that succeeded (200, no error
	// type) with the provider's own token counts (not estimated).
	Counted      int64 `json:"counted"`
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
	CostMicros   int64 `json:"cost_micros"`
}

var _ extproc.UsageSink = (*UsageCounter)(nil)

// Record counts r.
func (u *UsageCounter) Record(r *usagev1.UsageRecord) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.counts.Records++
	if r.GetStatusCode() == 200 && r.GetErrorType() == "" && !r.GetEstimated() {
		u.counts.Counted++
	}
	u.counts.InputTokens += r.GetInputTokens()
	u.counts.OutputTokens += r.GetOutputTokens()
	u.counts.CostMicros += r.GetCostMicros()
}

// Counts returns the totals so far.
func (u *UsageCounter) Counts() UsageCounts {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.counts
}

func (c UsageCounts) sub(o UsageCounts) UsageCounts {
	return UsageCounts{
		Records: c.Records - o.Records, Counted: c.Counted - o.Counted,
		InputTokens: c.InputTokens - o.InputTokens, OutputTokens: c.OutputTokens - o.OutputTokens,
		CostMicros: c.CostMicros - o.CostMicros,
	}
}

func (c UsageCounts) add(o UsageCounts) UsageCounts {
	return UsageCounts{
		Records: c.Records + o.Records, Counted: c.Counted + o.Counted,
		InputTokens: c.InputTokens + o.InputTokens, OutputTokens: c.OutputTokens + o.OutputTokens,
		CostMicros: c.CostMicros + o.CostMicros,
	}
}
