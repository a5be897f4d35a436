package xds

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// xdsMetrics follow the xDS streams and how long a publication takes to
// reach them. Its methods do nothing on a nil receiver, so that a Publisher
// without Instrument pays nothing.
type xdsMetrics struct {
	push      metric.Float64Histogram
	reconcile metric.Float64Histogram
	responses metric.Int64Counter

	mu sync.Mutex
	// streams are the open streams: the node each serves (once known) and,
	// by resource type, the last publication it has been sent a response
	// since.
	streams map[streamKey]*streamState
	pubSeq  uint64
	pubTime time.Time
}

// streamKey names a stream: the state-of-the-world and delta servers
// number their streams each from 1.
type streamKey struct {
	id    int64
	delta bool
}

type streamState struct {
	node   string
	delta  bool
	opened uint64            // the publication current when it opened
	seen   map[string]uint64 // by type URL; opened when absent
}

// Instrument exports the xDS server's metrics to mp; call it before
// Register.
func (p *Publisher) Instrument(mp metric.MeterProvider) error {
	m := mp.Meter("github.com/tollgate-dev/tollgate/controlplane/xds")
	x := &xdsMetrics{streams: map[streamKey]*streamState{}}
	var errs [9]error
	x.push, errs[0] = m.Float64Histogram("tollgate.xds.push.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from a new configuration being published to the first response of each resource type on each stream that was open then, by resource type."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	x.reconcile, errs[1] = m.Float64Histogram("tollgate.xds.reconcile.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to read the store, translate and publish the configuration, by outcome (published, error)."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	x.responses, errs[2] = m.Int64Counter("tollgate.xds.responses", metric.WithUnit("{response}"),
		metric.WithDescription("xDS responses sent, by resource type."))
	streams, e3 := m.Int64ObservableGauge("tollgate.xds.streams", metric.WithUnit("{stream}"),
		metric.WithDescription("Open xDS streams, by protocol (sotw, delta)."))
	nodes, e4 := m.Int64ObservableGauge("tollgate.xds.nodes.connected", metric.WithUnit("{node}"),
		metric.WithDescription("Distinct node ids (Envoys and ext_procs) with at least one open xDS stream."))
	resources, e5 := m.Int64ObservableGauge("tollgate.xds.resources", metric.WithUnit("{resource}"),
		metric.WithDescription("Resources served, by type."))
	errorLines, e6 := m.Int64ObservableGauge("tollgate.xds.config.errors",
		metric.WithDescription("Parts of the configuration the last translation could not serve (tollgatectl status lists them); 0 when everything is served."))
	behind, e7 := m.Int64ObservableGauge("tollgate.xds.nodes.behind", metric.WithUnit("{node}"),
		metric.WithDescription("Connected Envoy nodes that have not accepted the configuration served (briefly non-zero after each publication; lasting means a node cannot apply it)."))
	rejecting, e8 := m.Int64ObservableGauge("tollgate.xds.nodes.rejecting", metric.WithUnit("{node}"),
		metric.WithDescription("Nodes whose last answer to some resource type was a NACK (tollgatectl status shows the error)."))
	errs[3], errs[4], errs[5], errs[6], errs[7], errs[8] = e3, e4, e5, e6, e7, e8
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("xds: creating metrics: %w", err)
		}
	}
	sotw, delta := metric.WithAttributes(attribute.String("tollgate.xds.protocol", "sotw")), metric.WithAttributes(attribute.String("tollgate.xds.protocol", "delta"))
	if _, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		x.mu.Lock()
		var nSotw, nDelta int64
		connected := map[string]bool{}
		for _, s := range x.streams {
			if s.delta {
				nDelta++
			} else {
				nSotw++
			}
			if s.node != "" {
				connected[s.node] = true
			}
		}
		x.mu.Unlock()
		o.ObserveInt64(streams, nSotw, sotw)
		o.ObserveInt64(streams, nDelta, delta)
		o.ObserveInt64(nodes, int64(len(connected)))
		st := p.Status()
		for t, n := range st.Resources {
			o.ObserveInt64(resources, int64(n), metric.WithAttributes(attribute.String("tollgate.xds.type", shortType(t))))
		}
		o.ObserveInt64(errorLines, int64(len(st.Errors)))
		var nBehind, nRejecting int64
		for _, ns := range st.NodeStates {
			if ns.Envoy && ns.Connected && !ns.Current {
				nBehind++
			}
			if ns.Connected && len(ns.Rejections) > 0 {
				nRejecting++
			}
		}
		o.ObserveInt64(behind, nBehind)
		o.ObserveInt64(rejecting, nRejecting)
		return nil
	}, streams, nodes, resources, errorLines, behind, rejecting); err != nil {
		return fmt.Errorf("xds: registering the metrics callback: %w", err)
	}
	p.mu.Lock()
	p.metrics = x
	p.mu.Unlock()
	return nil
}

// observer returns p's metrics, nil before Instrument.
func (p *Publisher) observer() *xdsMetrics {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.metrics
}

// shortType is a type URL's message name: Listener, Cluster, Key, ...
func shortType(typeURL string) string {
	return typeURL[strings.LastIndexByte(typeURL, '.')+1:]
}

// published notes a publication that changed what is served.
func (x *xdsMetrics) published(at time.Time) {
	if x == nil {
		return
	}
	x.mu.Lock()
	x.pubSeq++
	x.pubTime = at
	x.mu.Unlock()
}

// reconciled records a reconciliation that started at start.
func (x *xdsMetrics) reconciled(start time.Time, err error) {
	if x == nil {
		return
	}
	outcome := "published"
	if err != nil {
		outcome = "error"
	}
	x.reconcile.Record(context.Background(), time.Since(start).Seconds(), metric.WithAttributes(attribute.String("tollgate.outcome", outcome)))
}

// opened notes a new stream: it has seen every publication so far (its
// first responses are not pushes).
func (x *xdsMetrics) opened(id int64, delta bool) {
	if x == nil {
		return
	}
	x.mu.Lock()
	x.streams[streamKey{id, delta}] = &streamState{delta: delta, opened: x.pubSeq, seen: map[string]uint64{}}
	x.mu.Unlock()
}

func (x *xdsMetrics) closed(id int64, delta bool) {
	if x == nil {
		return
	}
	x.mu.Lock()
	delete(x.streams, streamKey{id, delta})
	x.mu.Unlock()
}

// requested notes the node a stream serves.
func (x *xdsMetrics) requested(id int64, delta bool, n *corev3.Node) {
	if x == nil || n.GetId() == "" {
		return
	}
	x.mu.Lock()
	if s := x.streams[streamKey{id, delta}]; s != nil {
		s.node = n.GetId()
	}
	x.mu.Unlock()
}

// responded counts a response and, for the first one of its type on its
// stream since a publication, records how long the publication took to
// reach it.
func (x *xdsMetrics) responded(id int64, delta bool, typeURL string) {
	if x == nil {
		return
	}
	typ := metric.WithAttributes(attribute.String("tollgate.xds.type", shortType(typeURL)))
	x.responses.Add(context.Background(), 1, typ)
	x.mu.Lock()
	s := x.streams[streamKey{id, delta}]
	var lag time.Duration
	push := false
	if s != nil {
		seen, ok := s.seen[typeURL]
		if !ok {
			seen = s.opened
		}
		if push = seen < x.pubSeq; push || !ok {
			s.seen[typeURL], lag = x.pubSeq, time.Since(x.pubTime)
		}
	}
	x.mu.Unlock()
	if push {
		x.push.Record(context.Background(), lag.Seconds(), typ)
	}
}
