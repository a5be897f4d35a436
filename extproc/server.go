// Package extproc is Tollgate's hot path: an Envoy external processor
// (envoy.service.ext_proc.v3) that authenticates each request's key, checks
// its tenant's policy, picks the model's route, translates the request for
// the provider of each try and the response back for the client, counts
// tokens and cost, and records usage.
//
// Envoy opens two kinds of stream (docs/design.md): the downstream stream,
// from the filter on the listener, once per request; and the upstream
// stream, from the filter in the model's cluster, once per try. Server
// tells them apart by the attributes Envoy sends on the first message and
// hands each to its processor. The two streams of a request share state
// through the in-flight table, keyed by the x-request-id that the
// downstream stream sets.
//
// Configuration comes from the control plane (configclient) and is held in
// memory: no request makes a remote call. Usage records go to a UsageSink
// that queues them.
package extproc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
	"github.com/tollgate-dev/tollgate/extproc/quota"
)

// Config is the configuration ext_proc reads per request;
// configclient.Client implements it.
type Config interface {
	Ready() <-chan struct{}
	Key(hash string) *configv1.Key
	Tenant(id string) *configv1.Tenant
	Provider(id string) *configv1.Provider
	Model(tenantID, name string) *configv1.Model
	Models(tenantID string) []*configv1.Model
}

// UsageSink takes one usage record per request; it must not block.
type UsageSink interface {
	Record(*usagev1.UsageRecord)
}

// Server implements the ExternalProcessor service.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	cfg      Config
	usage    UsageSink
	quota    *quota.Engine
	log      *slog.Logger
	inflight *inflight
	now      func() time.Time
	tel      *instruments
	// contentLimit bounds each captured body (content.go).
	contentLimit int
}

// Options configure a Server.
type Options struct {
	Config Config
	Usage  UsageSink
	// Quota enforces the tenants' and keys' limits and budgets; nil
	// enforces none.
	Quota  *quota.Engine
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Meters and Tracers receive the request metrics and traces
	// (docs/observability.md); no-op providers when nil. TenantLabels adds
	// the tenant id to the request metrics: a series per tenant.
	Meters       metric.MeterProvider
	Tracers      trace.TracerProvider
	TenantLabels bool
	// ContentCaptureBytes bounds each body captured for tenants that keep
	// content (DefaultContentCaptureBytes when 0, at most
	// MaxContentCaptureBytes).
	ContentCaptureBytes int
}

// New returns a Server.
func New(o Options) *Server {
	s := &Server{cfg: o.Config, usage: o.Usage, quota: o.Quota, log: o.Logger, inflight: newInflight(), now: o.Now,
		contentLimit: o.ContentCaptureBytes}
	s.tel = newInstruments(o.Meters, o.Tracers, o.TenantLabels, s.InFlight)
	if s.contentLimit <= 0 {
		s.contentLimit = DefaultContentCaptureBytes
	}
	s.contentLimit = min(s.contentLimit, MaxContentCaptureBytes)
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Maintain settles reservations whose requests never ended and forgets
// idle counters, every interval, until ctx ends.
func (s *Server) Maintain(ctx context.Context, interval time.Duration) {
	if s.quota == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			logQuotaEvents(s.log, s.quota.Sweep())
		}
	}
}

// logQuotaEvents reports soft-limit crossings and expired reservations.
// Issue 9 turns soft-limit crossings into notifications and audit events.
func logQuotaEvents(log *slog.Logger, events []quota.Event) {
	for _, e := range events {
		log.Warn("quota event", "kind", e.Kind.String(), "subject", e.Subject.String(), "meter", e.Meter.String(),
			"limit_micros", e.Limit, "used_micros", e.Used, "window", e.Window)
	}
}

// InFlight reports how many requests are being processed.
func (s *Server) InFlight() int { return s.inflight.len() }

// stream is what a processor needs of the gRPC stream; tests fake it.
type stream interface {
	Send(*extprocv3.ProcessingResponse) error
	Recv() (*extprocv3.ProcessingRequest, error)
	Context() context.Context
}

// Process serves one ext_proc stream.
func (s *Server) Process(st extprocv3.ExternalProcessor_ProcessServer) error {
	return s.process(st)
}

func (s *Server) process(st stream) error {
	first, err := st.Recv()
	if err != nil {
		return ended(err)
	}
	hh := first.GetRequestHeaders()
	if hh == nil {
		// Both filters are configured to send request headers first.
		return status.Errorf(codes.InvalidArgument, "ext_proc: the first message must carry request headers, got %T", first.GetRequest())
	}
	if deployment, ok := attribute(first, xdstranslate.DeploymentAttribute); ok {
		return (&upstream{s: s, st: st}).run(hh, deployment)
	}
	client, _ := attribute(first, "source.address")
	return (&downstream{s: s, st: st, client: client}).run(hh)
}

// ended turns the end of a stream into a return value: Envoy closes a
// stream by half-closing or cancelling it when the request is over, which
// is not an error.
func ended(err error) error {
	if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
