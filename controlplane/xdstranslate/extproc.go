package xdstranslate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

func extProcService() *corev3.GrpcService {
	return &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
		EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: ExtProcCluster},
	}}
}

// downstreamExtProc is the listener's ext_proc filter, once per request:
// authentication, policy and the choice of model. It needs the request body
// (BUFFERED: the model and max tokens are in it) but not the response body,
// which the upstream filter handles; mode_override stays allowed so ext_proc
// can ask for more per request. It fails closed: no request passes
// unauthenticated because ext_proc was down.
func downstreamExtProc(o Options) *hcmv3.HttpFilter {
	cfg := &extprocv3.ExternalProcessor{
		GrpcService:      extProcService(),
		FailureModeAllow: false,
		ProcessingMode: &extprocv3.ProcessingMode{
			RequestHeaderMode:   extprocv3.ProcessingMode_SEND,
			RequestBodyMode:     extprocv3.ProcessingMode_BUFFERED,
			RequestTrailerMode:  extprocv3.ProcessingMode_SKIP,
			ResponseHeaderMode:  extprocv3.ProcessingMode_SEND,
			ResponseBodyMode:    extprocv3.ProcessingMode_NONE,
			ResponseTrailerMode: extprocv3.ProcessingMode_SKIP,
		},
		AllowModeOverride: true,
		MessageTimeout:    dur(o.MessageTimeout),
		// The client's address, for IP allow lists.
		RequestAttributes: []string{"source.address"},
		// ext_proc names the client's API in the stream's dynamic metadata
		// (ClientAPIKey), for the local reply mappers (localreply.go).
		MetadataOptions: &extprocv3.MetadataOptions{
			ReceivingNamespaces: &extprocv3.MetadataOptions_MetadataNamespaces{Untyped: []string{MetadataNamespace}},
		},
	}
	return &hcmv3.HttpFilter{
		Name:       DownstreamFilterName,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(cfg)},
	}
}

// upstreamExtProc runs once per try, after Envoy picked a host: it learns
// the deployment from the host's metadata and translates the request for
// that provider (it already holds the body from the downstream stream, so
// none is sent again). The response comes back through it too, where it is
// translated and counted; mode_override streams SSE bodies chunk by chunk.
func upstreamExtProc(o Options) *hcmv3.HttpFilter {
	cfg := &extprocv3.ExternalProcessor{
		GrpcService:      extProcService(),
		FailureModeAllow: false,
		ProcessingMode: &extprocv3.ProcessingMode{
			RequestHeaderMode:   extprocv3.ProcessingMode_SEND,
			RequestBodyMode:     extprocv3.ProcessingMode_NONE,
			RequestTrailerMode:  extprocv3.ProcessingMode_SKIP,
			ResponseHeaderMode:  extprocv3.ProcessingMode_SEND,
			ResponseBodyMode:    extprocv3.ProcessingMode_NONE,
			ResponseTrailerMode: extprocv3.ProcessingMode_SKIP,
		},
		AllowModeOverride: true,
		MessageTimeout:    dur(o.MessageTimeout),
		RequestAttributes: []string{DeploymentAttribute},
	}
	return &hcmv3.HttpFilter{
		Name:       UpstreamFilterName,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(cfg)},
	}
}
