package testdataplane

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Envoy's defaults for fields Tollgate may leave unset.
const (
	// per_connection_buffer_limit_bytes defaults to 1 MiB.
	defaultBufferLimit = 1 << 20
	// stream_idle_timeout defaults to five minutes.
	defaultStreamIdleTimeout = 5 * time.Minute
)

// listenerConfig is one listener as the harness runs it.
type listenerConfig struct {
	name        string
	address     string // host:port
	bufferLimit int
	hcm         *hcmConfig
}

// hcmConfig is the HTTP connection manager of a listener.
type hcmConfig struct {
	rdsName                      string
	http1Only                    bool
	generateRequestID            bool
	preserveExternalRequestID    bool
	alwaysSetRequestIDInResponse bool
	useRemoteAddress             bool
	xffTrustedHops               uint32
	skipXFFAppend                bool
	streamIdleTimeout            time.Duration // 0: disabled
	normalizePath                bool
	mergeSlashes                 bool
	serverName                   string
	accessLogs                   []*accessLogFormat
	localReplyMappers            []*localReplyMapper
	// extProc are the HTTP filters before the router, in order; the
	// router is always last (Envoy requires a terminal filter).
	extProc              []*extProcConfig
	suppressEnvoyHeaders bool
}

// buildListener turns a modelled Listener into what the harness runs. It
// also refuses valid Envoy configuration whose shape the harness does not
// implement (several filter chains, filters other than the HCM).
func buildListener(l *listenerv3.Listener) (*listenerConfig, error) {
	var errs []error
	sa := l.GetAddress().GetSocketAddress()
	if sa == nil {
		return nil, fmt.Errorf("listener %q: only socket_address listeners are modelled", l.GetName())
	}
	out := &listenerConfig{
		name:        l.GetName(),
		address:     net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)),
		bufferLimit: defaultBufferLimit,
	}
	if w := l.GetPerConnectionBufferLimitBytes(); w != nil {
		out.bufferLimit = int(w.GetValue())
	}
	if len(l.GetFilterChains()) != 1 || len(l.GetFilterChains()[0].GetFilters()) != 1 {
		return nil, fmt.Errorf("listener %q: exactly one filter chain with one filter (the HTTP connection manager) is modelled", l.GetName())
	}
	f := l.GetFilterChains()[0].GetFilters()[0]
	hcm := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		return nil, fmt.Errorf("listener %q: %w", l.GetName(), err)
	}
	h, err := buildHCM(hcm)
	if err != nil {
		errs = append(errs, fmt.Errorf("listener %q: %w", l.GetName(), err))
	}
	out.hcm = h
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func buildHCM(h *hcmv3.HttpConnectionManager) (*hcmConfig, error) {
	var errs []error
	out := &hcmConfig{
		http1Only:                    h.GetCodecType() == hcmv3.HttpConnectionManager_HTTP1,
		generateRequestID:            boolOr(h.GetGenerateRequestId(), true),
		preserveExternalRequestID:    h.GetPreserveExternalRequestId(),
		alwaysSetRequestIDInResponse: h.GetAlwaysSetRequestIdInResponse(),
		useRemoteAddress:             boolOr(h.GetUseRemoteAddress(), false),
		xffTrustedHops:               h.GetXffNumTrustedHops(),
		skipXFFAppend:                h.GetSkipXffAppend(),
		streamIdleTimeout:            defaultStreamIdleTimeout,
		normalizePath:                boolOr(h.GetNormalizePath(), false),
		mergeSlashes:                 h.GetMergeSlashes(),
		serverName:                   "envoy",
	}
	if h.GetServerName() != "" {
		out.serverName = h.GetServerName()
	}
	if d := h.GetStreamIdleTimeout(); d != nil {
		out.streamIdleTimeout = d.AsDuration()
	}
	rds := h.GetRds()
	if rds == nil {
		errs = append(errs, errors.New("the route table must come from RDS over ADS (inline route_config is not modelled)"))
	} else {
		out.rdsName = rds.GetRouteConfigName()
		if rds.GetConfigSource().GetAds() == nil {
			errs = append(errs, errors.New("rds.config_source must be ads"))
		}
	}
	filters := h.GetHttpFilters()
	if len(filters) == 0 || filters[len(filters)-1].GetTypedConfig().GetTypeUrl() != typeRouter {
		errs = append(errs, errors.New("the last HTTP filter must be the router"))
	}
	for i, f := range filters {
		tc := f.GetTypedConfig()
		switch tc.GetTypeUrl() {
		case typeRouter:
			if i != len(filters)-1 {
				errs = append(errs, fmt.Errorf("http filter %d: the router must be the last filter", i))
				continue
			}
			r := &routerv3.Router{}
			if err := tc.UnmarshalTo(r); err != nil {
				errs = append(errs, err)
				continue
			}
			out.suppressEnvoyHeaders = r.GetSuppressEnvoyHeaders()
		case typeExtProc:
			ep := &extprocv3.ExternalProcessor{}
			if err := tc.UnmarshalTo(ep); err != nil {
				errs = append(errs, err)
				continue
			}
			c, err := buildExtProc(f.GetName(), ep, false)
			if err != nil {
				errs = append(errs, fmt.Errorf("http filter %q: %w", f.GetName(), err))
				continue
			}
			out.extProc = append(out.extProc, c)
		default:
			errs = append(errs, fmt.Errorf("http filter %q: type %s is not modelled", f.GetName(), tc.GetTypeUrl()))
		}
	}
	for _, al := range h.GetAccessLog() {
		s := &streamv3.StdoutAccessLog{}
		if err := al.GetTypedConfig().UnmarshalTo(s); err != nil {
			errs = append(errs, fmt.Errorf("access log %q: %w", al.GetName(), err))
			continue
		}
		f, err := buildAccessLogFormat(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("access log %q: %w", al.GetName(), err))
			continue
		}
		out.accessLogs = append(out.accessLogs, f)
	}
	mappers, err := buildLocalReplyConfig(h.GetLocalReplyConfig())
	if err != nil {
		errs = append(errs, err)
	}
	out.localReplyMappers = mappers
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// boolOr reads an optional BoolValue with Envoy's default for it.
func boolOr(v *wrapperspb.BoolValue, def bool) bool {
	if v == nil {
		return def
	}
	return v.GetValue()
}
