package testdataplane

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// Resource type URLs of the xDS APIs the harness subscribes to.
const (
	typeCluster  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	typeListener = "type.googleapis.com/envoy.config.listener.v3.Listener"
	typeRoute    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
)

// adsClient speaks the state-of-the-world ADS protocol as an Envoy node:
// CDS first, LDS once the first CDS response is applied, then RDS for the
// route configurations the listeners name; every response is ACKed with
// its version or NACKed with error_detail and the last accepted version.
type adsClient struct {
	dp   *DataPlane
	conn *grpc.ClientConn
	node *corev3.Node

	// Kept across reconnects, so a new stream resumes from what was
	// accepted (Envoy sends its current versions on reconnect).
	accepted map[string]string
	// ldsSubscribed and rdsNames are the subscriptions made so far; a new
	// stream repeats them at once, as Envoy does.
	ldsSubscribed bool
	rdsNames      []string
}

func newADSClient(d *DataPlane) (*adsClient, error) {
	conn, err := d.grpcConn(d.boot.xdsCluster)
	if err != nil {
		return nil, fmt.Errorf("ADS: %w", err)
	}
	return &adsClient{
		dp:       d,
		conn:     conn,
		node:     &corev3.Node{Id: d.boot.nodeID, Cluster: d.boot.nodeCluster, Metadata: d.boot.nodeMetadata, UserAgentName: "tollgate-testdataplane"},
		accepted: map[string]string{},
	}, nil
}

func (c *adsClient) close() error { return nil } // the connection is closed with the data plane's gRPC connections

// run keeps a stream open, reconnecting with jittered exponential back-off
// (Envoy's is 500 ms to 30 s).
func (c *adsClient) run(ctx context.Context) {
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := c.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 30*time.Second {
			backoff = 500 * time.Millisecond
		}
		c.dp.log.Warn("ADS stream ended; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (c *adsClient) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(c.conn).StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("opening the ADS stream: %w", err)
	}
	nodeSent := false
	send := func(r *discoverygrpc.DiscoveryRequest) error {
		if !nodeSent || !c.dp.boot.setNodeOnFirstMessageOnly {
			r.Node = c.node
			nodeSent = true
		}
		if err := stream.Send(r); err != nil {
			return fmt.Errorf("sending %s request: %w", shortType(r.GetTypeUrl()), err)
		}
		return nil
	}
	nonces := map[string]string{}
	repeats := map[string]nackRepeat{}
	if err := send(&discoverygrpc.DiscoveryRequest{TypeUrl: typeCluster, VersionInfo: c.accepted[typeCluster]}); err != nil {
		return err
	}
	// On a new stream after the first, every subscription is sent again
	// with the versions accepted so far; the server answers only what
	// changed.
	ldsRequested := c.ldsSubscribed
	if ldsRequested {
		if err := send(&discoverygrpc.DiscoveryRequest{TypeUrl: typeListener, VersionInfo: c.accepted[typeListener]}); err != nil {
			return err
		}
	}
	rdsNames := c.rdsNames
	if len(rdsNames) > 0 {
		if err := send(&discoverygrpc.DiscoveryRequest{TypeUrl: typeRoute, VersionInfo: c.accepted[typeRoute], ResourceNames: rdsNames}); err != nil {
			return err
		}
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("receiving: %w", err)
		}
		t := resp.GetTypeUrl()
		nonces[t] = resp.GetNonce()
		c.dp.log.Debug("xDS response", "type", shortType(t), "version", resp.GetVersionInfo(), "resources", len(resp.GetResources()))
		var errs []error
		var names []string
		switch t {
		case typeCluster:
			errs = c.dp.applyClusters(resp.GetResources())
		case typeListener:
			errs, names = c.dp.applyListeners(resp.GetResources())
		case typeRoute:
			errs = c.dp.applyRoutes(resp.GetResources())
		default:
			errs = []error{fmt.Errorf("type %s was not subscribed to", t)}
		}
		req := &discoverygrpc.DiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce()}
		if t == typeRoute {
			req.ResourceNames = rdsNames
		}
		if len(errs) == 0 {
			c.accepted[t] = resp.GetVersionInfo()
			req.VersionInfo = resp.GetVersionInfo()
			delete(repeats, t)
		} else {
			req.VersionInfo = c.accepted[t]
			req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: joinErrors(errs)}
			// go-control-plane's snapshot cache answers a NACK (which
			// carries the previous version) with the same response at
			// once, and Envoy NACKs it again: a hot loop. The harness NACKs
			// the same thing again only after a growing pause.
			key := resp.GetVersionInfo() + "\x00" + req.GetErrorDetail().GetMessage()
			r := repeats[t]
			if r.key == key {
				r.wait = min(max(2*r.wait, 100*time.Millisecond), 5*time.Second)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(r.wait):
				}
			} else {
				r = nackRepeat{key: key}
			}
			repeats[t] = r
		}
		c.dp.log.Debug("xDS reply", "type", shortType(t), "version", req.GetVersionInfo(), "nack", req.GetErrorDetail() != nil)
		if err := send(req); err != nil {
			return err
		}
		if t == typeCluster && !ldsRequested {
			ldsRequested, c.ldsSubscribed = true, true
			if err := send(&discoverygrpc.DiscoveryRequest{TypeUrl: typeListener, VersionInfo: c.accepted[typeListener]}); err != nil {
				return err
			}
		}
		if t == typeListener && !slices.Equal(names, rdsNames) {
			rdsNames, c.rdsNames = names, names
			if err := send(&discoverygrpc.DiscoveryRequest{
				TypeUrl: typeRoute, VersionInfo: c.accepted[typeRoute],
				ResponseNonce: nonces[typeRoute], ResourceNames: rdsNames,
			}); err != nil {
				return err
			}
		}
	}
}

// nackRepeat tracks a NACK that keeps coming back.
type nackRepeat struct {
	key  string
	wait time.Duration
}

func joinErrors(errs []error) string {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

func shortType(t string) string { return t[strings.LastIndexByte(t, '.')+1:] }

// grpcConn returns the data plane's gRPC connection to a static cluster (the
// xDS server or the ext_proc sidecar), over HTTP/2, through the cluster's
// endpoints, TLS and keepalive settings.
func (d *DataPlane) grpcConn(clusterName string) (*grpc.ClientConn, error) {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	if c := d.grpcConns[clusterName]; c != nil {
		return c, nil
	}
	if d.ctx.Err() != nil {
		return nil, errors.New("the test data plane is closed")
	}
	cl := d.snap.Load().clusters[clusterName]
	if cl == nil {
		return nil, fmt.Errorf("no cluster %q", clusterName)
	}
	if cl.cfg.protocol != protoHTTP2 {
		return nil, fmt.Errorf("cluster %q carries gRPC, so it needs explicit http2_protocol_options", clusterName)
	}
	opts := []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			h := cl.choose(nil)
			if h == nil {
				return nil, fmt.Errorf("cluster %q has no healthy host", clusterName)
			}
			ctx, cancel := context.WithTimeout(ctx, cl.cfg.connectTimeout)
			defer cancel()
			return h.dialRaw(ctx)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256 << 20)),
	}
	var tlsCfg *tlsConfig
	for _, h := range cl.hosts {
		if h.cfg.tls != nil {
			tlsCfg = h.cfg.tls
		}
	}
	if tlsCfg != nil {
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg.clientConfig())))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if ka := cl.cfg.h2Keepalive; ka != nil && ka.GetInterval() != nil {
		opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                ka.GetInterval().AsDuration(),
			Timeout:             ka.GetTimeout().AsDuration(),
			PermitWithoutStream: true,
		}))
	}
	// The authority is the cluster name, as Envoy's envoy_grpc sets it.
	conn, err := grpc.NewClient("passthrough:///"+clusterName, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w", clusterName, err)
	}
	d.grpcConns[clusterName] = conn
	return conn, nil
}
