package xdstranslate

import (
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
)

// accessLog writes one JSON line per request to stdout: who asked (request
// id), where it went (route and cluster, the routing decision) and how it
// ended. No header or body content, so no secret or prompt can reach a log.
func accessLog() []*accesslogv3.AccessLog {
	format := mustStruct(map[string]any{
		"time":              "%START_TIME%",
		"request_id":        "%REQ(X-REQUEST-ID)%",
		"method":            "%REQ(:METHOD)%",
		"path":              "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
		"protocol":          "%PROTOCOL%",
		"status":            "%RESPONSE_CODE%",
		"flags":             "%RESPONSE_FLAGS%",
		"details":           "%RESPONSE_CODE_DETAILS%",
		"route":             "%ROUTE_NAME%",
		"upstream_cluster":  "%UPSTREAM_CLUSTER%",
		"upstream_host":     "%UPSTREAM_HOST%",
		"upstream_failure":  "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
		"bytes_received":    "%BYTES_RECEIVED%",
		"bytes_sent":        "%BYTES_SENT%",
		"duration_ms":       "%DURATION%",
		"upstream_duration": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
		"attempts":          "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
	})
	stdout := &streamv3.StdoutAccessLog{AccessLogFormat: &streamv3.StdoutAccessLog_LogFormat{
		LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: format},
		},
	}}
	return []*accesslogv3.AccessLog{{
		Name:       "envoy.access_loggers.stdout",
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(stdout)},
	}}
}
