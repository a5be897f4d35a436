package xds

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate-dev/tollgate/controlplane/ir"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
)

// Reconciler keeps what the publisher serves in step with the store:
// store → ir → translators → publisher, whenever the store changes.
type Reconciler struct {
	Store     *store.Store
	Keyring   *keyring.Keyring
	Options   xdstranslate.Options
	Publisher *Publisher
	Log       *slog.Logger
	// PollInterval is how often the config version (the change log's size
	// and newest time) is read, which is how changes made through another
	// replica are noticed. Default 1s.
	PollInterval time.Duration
	// ResyncInterval rebuilds everything even without a change, for what
	// changes with time alone (expired keys leave the view). Default 5m.
	ResyncInterval time.Duration
	// Tracers, if set, gets a root span per reconciliation (see Reconcile).
	Tracers trace.TracerProvider

	trigger chan struct{}
}

// Notify asks for a rebuild soon; cheap and safe to call from any
// goroutine, and many calls in a burst cause one rebuild.
func (r *Reconciler) Notify() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Init must be called before Run and Notify.
func (r *Reconciler) Init() {
	r.trigger = make(chan struct{}, 1)
	if r.PollInterval == 0 {
		r.PollInterval = time.Second
	}
	if r.ResyncInterval == 0 {
		r.ResyncInterval = 5 * time.Minute
	}
}

// Run publishes once, then again on every change, until ctx ends.
func (r *Reconciler) Run(ctx context.Context) {
	poll := time.NewTicker(r.PollInterval)
	defer poll.Stop()
	resync := time.NewTicker(r.ResyncInterval)
	defer resync.Stop()
	seen := "never"
	for {
		version, err := r.Store.ConfigVersion(ctx)
		if err != nil {
			r.Log.Warn("reading the config version", "err", err)
		} else if version != seen {
			if r.Reconcile(ctx) == nil {
				seen = version
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-r.trigger:
			// A change was made in this process; read the version above.
		case <-poll.C:
		case <-resync.C:
			seen = "resync"
		}
	}
}

// Reconcile rebuilds and publishes once. A failure to read the store keeps
// the last published configuration.
//
// With Tracers, each reconciliation is a root span, tollgate.xds.reconcile
// (it runs once per change, not per poll): the size of what was read, the
// Envoy snapshot's version served afterwards, the nodes connected, the
// configuration errors, and the outcome.
func (r *Reconciler) Reconcile(ctx context.Context) (err error) {
	start := time.Now()
	ctx, span := r.startSpan(ctx)
	defer func() { r.endSpan(span, err) }()
	g, err := ir.Load(ctx, r.Store, time.Now())
	if err != nil {
		r.Log.Error("xds: loading the gateway; still serving the last configuration", "err", err)
		r.Publisher.observer().reconciled(start, err)
		return err
	}
	span.SetAttributes(attribute.Int("tollgate.xds.keys", len(g.Keys)), attribute.Int("tollgate.xds.tenants", len(g.Tenants)),
		attribute.Int("tollgate.xds.models", len(g.Models)))
	envoy, envoyErr := xdstranslate.TranslateEnvoy(g, r.Options)
	cfg, cfgErr := xdstranslate.TranslateConfig(g, func(sealed []byte, id uuid.UUID) ([]byte, error) {
		return r.Keyring.Open(sealed, ir.CredentialAD(id))
	})
	for _, err := range []error{envoyErr, cfgErr} {
		if err != nil {
			r.Log.Error("xds: part of the configuration is not served", "err", err)
		}
	}
	err = r.Publisher.Publish(ctx, envoy, cfg, joinErrs(envoyErr, cfgErr))
	r.Publisher.observer().reconciled(start, err)
	if err != nil {
		r.Log.Error("xds: publishing; still serving the last configuration", "err", err)
		return err
	}
	r.Log.Info("xds: configuration published", "models", len(g.Models), "keys", len(g.Keys),
		"tenants", len(g.Tenants), "duration_ms", time.Since(start).Milliseconds())
	return nil
}

func (r *Reconciler) startSpan(ctx context.Context) (context.Context, trace.Span) {
	if r.Tracers == nil {
		return ctx, trace.SpanFromContext(context.Background()) // a no-op span
	}
	return r.Tracers.Tracer("github.com/tollgate-dev/tollgate/controlplane/xds").Start(ctx, "tollgate.xds.reconcile", trace.WithNewRoot())
}

// endSpan ends a reconciliation's span. Neither the errors' text (which
// names models and providers) nor the nodes' ids are attributes: counts only.
func (r *Reconciler) endSpan(span trace.Span, err error) {
	if !span.IsRecording() {
		return
	}
	st := r.Publisher.Status()
	outcome := "published"
	if err != nil {
		outcome = "error"
		span.SetStatus(codes.Error, "the last configuration is still served")
	}
	span.SetAttributes(attribute.String("tollgate.xds.version", st.Version), attribute.Int("tollgate.xds.nodes", len(st.Nodes)),
		attribute.Int("tollgate.xds.config_errors", len(st.Errors)), attribute.String("tollgate.outcome", outcome))
	span.End()
}
