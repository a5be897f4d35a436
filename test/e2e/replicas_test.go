package e2e

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	quotav1 "github.com/tollgate-dev/tollgate/api/tollgate/quota/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/controlplane/xds"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
	"github.com/tollgate-dev/tollgate/ent/quotacounter"
	"github.com/tollgate-dev/tollgate/ent/tenant"
	"github.com/tollgate-dev/tollgate/envoy"
	"github.com/tollgate-dev/tollgate/extproc"
	"github.com/tollgate-dev/tollgate/extproc/configclient"
	"github.com/tollgate-dev/tollgate/extproc/quota"
	"github.com/tollgate-dev/tollgate/extproc/quotalease"
	"github.com/tollgate-dev/tollgate/extproc/usage"
)

// Several data planes, each with its own ext_proc replica, share one
// control plane, which is their quota authority (docs/policy.md, "Across
// replicas"). The three run on this host, as three Envoys on one machine
// would: each has its own bootstrap, node id and listener port (the
// bootstrap's node.metadata tollgate.listen_port, which the control plane
// serves that node), and the clients' SDK requests go through all three.
func TestReplicasShareLimits(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		g := startGateway(t, st)
		t.Run("three data planes admit at most a budget's 10 requests of 200", func(t *testing.T) { g.replicasShareABudget(t, false) })
		t.Run("the control plane restarts during a burst", func(t *testing.T) { g.replicasShareABudget(t, true) })
	})
}

// replica is one data plane and its ext_proc: the ext_proc process has its
// own config client, usage recorder and lease ledger on the control plane's
// xDS port; the data plane its own node id and listener port.
type replica struct {
	node    string
	cfg     *configclient.Client
	ledger  *quotalease.Ledger
	traffic string // http://host:port of the data plane
}

func (g *gateway) startReplica(t *testing.T, name string) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewJSONHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelInfo})).With("replica", name)
	conn, err := grpc.NewClient(g.xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(configclient.MaxMessageBytes)))
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{node: "envoy-" + name, cfg: configclient.New(conn, "extproc-"+name, log)}
	go r.cfg.Run(ctx)
	rec, err := usage.New(usage.Config{Conn: conn, SpillDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	r.ledger = quotalease.New(quotalease.Options{Client: quotav1.NewQuotaServiceClient(conn), Replica: name, Logger: log})
	ledgerDone := make(chan struct{})
	go func() { r.ledger.Run(ctx); close(ledgerDone) }()
	srv := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(srv, extproc.New(extproc.Options{Config: r.cfg, Usage: rec,
		Quota: quota.New(quota.Options{Ledger: r.ledger}), Logger: log}))
	lis := listen(t)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.GracefulStop()
		c, stop := context.WithTimeout(context.Background(), 10*time.Second)
		defer stop()
		_ = r.ledger.Close(c)
		_ = rec.Close(c)
		cancel()
		<-ledgerDone
		_ = conn.Close()
	})

	// Its data plane: a bootstrap of its own, asking for its own port
	// (cleaned up before the ext_proc above, as registered after it).
	xh, xpText, err := net.SplitHostPort(g.xdsAddr)
	if err != nil {
		t.Fatal(err)
	}
	xp, err := strconv.ParseUint(xpText, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	eh, ep := hostPort(t, lis.Addr())
	port := freePort(t)
	boot, err := envoy.Render(envoy.Params{NodeID: r.node, AdminPort: freePort(t), ListenPort: port,
		XDSHost: xh, XDSPort: uint16(xp), ExtProcHost: eh, ExtProcPort: ep})
	if err != nil {
		t.Fatal(err)
	}
	startDataPlane(ctx, t, boot, g.logs)
	r.traffic = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	g.eventually(defaultWait, "data plane "+r.node+" runs its configuration", func() error {
		if !g.publisher.Accepted(r.node) {
			return fmt.Errorf("node %s has not accepted what it is served", r.node)
		}
		return nil
	})
	return r
}

// The request: a worst case of its prompt plus 1,000 output tokens at
// $2/Mtok, so about 2,000 µ$ each. The fake reports the whole max_tokens as
// used (a 5-word reply plus 995 tokens of reasoning), so that a request
// settles at (about) its reservation: the budget runs out after 10 requests
// however they interleave, and settling never frees room for more.
const (
	replicaPrompt    = "Capital of France?"
	replicaMaxTokens = 1000
	replicaReasoning = "995"
)

// chat sends one chat completion to r's data plane with an SDK: the OpenAI
// SDK for gpt-4o-mini, or the Anthropic SDK for claude-sonnet-4-5. It
// returns the HTTP status (200 when the request completed).
func (r *replica) chat(ctx context.Context, key string, anthropicSDK bool) (int, error) {
	if anthropicSDK {
		c := anthropic.NewClient(anthropicoption.WithBaseURL(r.traffic+"/"), anthropicoption.WithAPIKey(key), anthropicoption.WithMaxRetries(0),
			anthropicoption.WithHeader("x-fake-reasoning-tokens", replicaReasoning))
		msg, err := c.Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-4-5", MaxTokens: replicaMaxTokens,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(replicaPrompt))}})
		var ae *anthropic.Error
		switch {
		case errors.As(err, &ae):
			return ae.StatusCode, nil
		case err != nil:
			return 0, err
		case msg.Usage.OutputTokens != replicaMaxTokens:
			return 0, fmt.Errorf("%d output tokens, want %d", msg.Usage.OutputTokens, replicaMaxTokens)
		}
		return http.StatusOK, nil
	}
	c := openai.NewClient(option.WithBaseURL(r.traffic+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0),
		option.WithHeader("x-fake-reasoning-tokens", replicaReasoning))
	resp, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o-mini", MaxTokens: openai.Int(replicaMaxTokens),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(replicaPrompt)}})
	var oe *openai.Error
	switch {
	case errors.As(err, &oe):
		return oe.StatusCode, nil
	case err != nil:
		return 0, err
	case resp.Usage.CompletionTokens != replicaMaxTokens:
		return 0, fmt.Errorf("%d completion tokens, want %d", resp.Usage.CompletionTokens, replicaMaxTokens)
	}
	return http.StatusOK, nil
}

// replicasShareABudget sends 200 concurrent requests spread over three
// data planes against one key's daily budget of 10 requests' worth; with
// restart, the control plane is restarted in the middle of the burst.
func (g *gateway) replicasShareABudget(t *testing.T, restart bool) {
	ctx := t.Context()
	suffix := map[bool]string{false: "", true: "-restart"}[restart]
	replicas := []*replica{g.startReplica(t, "replica-a"+suffix), g.startReplica(t, "replica-b"+suffix), g.startReplica(t, "replica-c"+suffix)}
	key, keyID := g.newKey("shared-"+strconv.FormatBool(restart), nil)
	// Worst case per request: 1,000 output tokens at $2/Mtok plus the
	// prompt's few tokens at $1/Mtok; ten fit, an eleventh cannot.
	hard := int64(10*2_000 + 500)
	if _, err := adminv1.NewPolicyServiceClient(g.admin).UpdatePolicy(g.op, &adminv1.UpdatePolicyRequest{
		Policy: &adminv1.Policy{
			Target:  &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_KeyId{KeyId: keyID}},
			Budgets: []*adminv1.Budget{{Period: adminv1.BudgetPeriod_BUDGET_PERIOD_DAY, HardLimitMicros: &hard}},
		},
	}); err != nil {
		t.Fatal(err)
	}
	acme, err := g.store.Client().Tenant.Query().Where(tenant.Slug("acme")).Only(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hash := sha256.Sum256([]byte(key))
	g.eventually(defaultWait, "every replica has the key's budget and the models", func() error {
		for _, r := range replicas {
			for _, model := range []string{"gpt-4o-mini", "claude-sonnet-4-5"} {
				if m := r.cfg.Model(acme.ID.String(), model); m == nil || len(m.GetDeployments()) == 0 {
					return fmt.Errorf("%s has no model %s yet", r.node, model)
				}
			}
			if len(r.cfg.Key(xdstranslate.KeyResourceName(hash[:])).GetPolicy().GetBudgets()) == 0 {
				return fmt.Errorf("%s has not the key's budget yet", r.node)
			}
			if r.cfg.Counts()[xds.KeyType] == 0 {
				return errors.New("no keys yet")
			}
		}
		return nil
	})

	// Watch the key's counter in the store: it must never go backwards.
	var backwards atomic.Value
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		var last int64
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(10 * time.Millisecond):
			}
			cs, err := g.store.Client().QuotaCounter.Query().Where(quotacounter.SubjectID(keyID),
				quotacounter.Meter(quotav1.Meter_METER_DAY_BUDGET.String())).All(context.Background())
			if err != nil || len(cs) == 0 {
				continue
			}
			if cs[0].Settled < last {
				backwards.Store(fmt.Sprintf("settled went from %d to %d", last, cs[0].Settled))
			}
			// Settled and leased together stay under the limit (plus what
			// settlements above their reservations may add: a few µ$).
			if cs[0].Settled+cs[0].Held > hard+200 {
				backwards.Store(fmt.Sprintf("settled %d + held %d is over the limit %d", cs[0].Settled, cs[0].Held, hard))
			}
			last = cs[0].Settled
		}
	}()

	const n = 200
	var ok, refused atomic.Int64
	var perReplica [3]atomic.Int64 // requests answered by each data plane
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if restart {
				// Spread over 1.5 s, so that the restart falls inside the burst.
				time.Sleep(time.Duration(i) * 7500 * time.Microsecond)
			}
			status, err := replicas[i%3].chat(ctx, key, i%2 == 1)
			switch {
			case err != nil:
				t.Errorf("request %d through %s: %v", i, replicas[i%3].node, err)
				return
			case status == http.StatusOK:
				ok.Add(1)
			case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
				refused.Add(1)
			default:
				t.Errorf("request %d through %s: HTTP %d", i, replicas[i%3].node, status)
				return
			}
			perReplica[i%3].Add(1)
		})
	}
	var doneAtRestart int64
	if restart {
		time.Sleep(400 * time.Millisecond)
		doneAtRestart = ok.Load() + refused.Load()
		g.restartControlPlane()
	}
	wg.Wait()
	if restart {
		if doneAtRestart == 0 || doneAtRestart == n {
			t.Errorf("%d of %d requests were done when the control plane restarted: not during the burst", doneAtRestart, n)
		}
		for _, r := range replicas {
			if r.ledger.Streams() < 2 {
				t.Errorf("the ext_proc of %s did not reconnect to the quota authority", r.node)
			}
		}
		// The data planes reconnect to the new xDS server as the same
		// nodes, asking for the same ports: in step with their own
		// listeners again, and still serving on them.
		for _, r := range replicas {
			g.eventually(defaultWait, r.node+" runs its configuration after the restart", func() error {
				if !g.publisher.Accepted(r.node) {
					return fmt.Errorf("node %s has not accepted what it is served", r.node)
				}
				return nil
			})
			if _, err := r.chat(ctx, key, false); err != nil {
				t.Errorf("%s after the restart: %v", r.node, err)
			}
		}
	}
	close(stopWatch)
	<-watchDone
	if b := backwards.Load(); b != nil {
		t.Errorf("the budget's counter: %s", b)
	}
	// The bound (docs/policy.md): strict leases admit at most the limit, 0
	// over; some headroom may be stranded in other replicas' leases.
	if ok.Load() > 10 || ok.Load() < 1 || ok.Load()+refused.Load() != n {
		t.Errorf("%d admitted and %d refused of %d; want at most 10 admitted", ok.Load(), refused.Load(), n)
	}
	for i, r := range replicas {
		if got := perReplica[i].Load(); got != (n+2-int64(i))/3 {
			t.Errorf("data plane %s answered %d requests, want %d", r.node, got, (n+2-int64(i))/3)
		}
	}
	t.Logf("%d of %d admitted across three data planes", ok.Load(), n)
	// Every lease returned: the store has the spend, no more than the limit
	// allows beyond the reservations' worst case.
	for _, r := range replicas {
		c, stop := context.WithTimeout(ctx, 5*time.Second)
		if err := r.ledger.Close(c); err != nil {
			t.Error(err)
		}
		stop()
	}
	cs, err := g.store.Client().QuotaCounter.Query().Where(quotacounter.SubjectID(keyID),
		quotacounter.Meter(quotav1.Meter_METER_DAY_BUDGET.String())).All(ctx)
	if err != nil || len(cs) != 1 {
		t.Fatalf("the key's counter: %v %v", cs, err)
	}
	if cs[0].Held != 0 || cs[0].Settled < ok.Load()*2_000 || cs[0].Settled > ok.Load()*2_100 {
		t.Errorf("the key's counter after the burst: settled %d, held %d; %d requests of about 2,003 µ$ each", cs[0].Settled, cs[0].Held, ok.Load())
	}
}
