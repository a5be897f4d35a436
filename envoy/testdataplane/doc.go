// Package testdataplane is a TEST HARNESS that stands in for Envoy in
// Tollgate's tests and in `tollgate dev` on machines where no Envoy binary
// can be installed. It is not a data plane: it has no hardening, no
// performance work, no HTTP/3, no admin API beyond /ready, and it must never
// carry production traffic.
//
// What it does: it reads Envoy's bootstrap (envoy/bootstrap.yaml.tmpl),
// connects to the control plane's ADS as that Envoy node, and builds its
// listeners, routes and clusters from the resources it receives, then serves
// HTTP with the behaviour Envoy documents for exactly the configuration
// Tollgate emits: the HTTP connection manager, the ext_proc filter (on the
// listener and as an upstream filter in each cluster, speaking
// envoy.service.ext_proc.v3 to the bootstrap's ext_proc cluster), the router
// with its retry and priority fallback, and clusters with locality weights,
// TLS, circuit breakers and outlier detection.
//
// Its most important property is that it refuses what it does not model.
// Every resource it receives is walked field by field (modelcheck.go) and
// compared with an explicit allow-list of field paths, enum values and
// typed_config type URLs; a resource that sets anything else is NACKed with
// the offending paths in error_detail, logged as an error, and not served.
// So Tollgate's control plane cannot emit configuration that only this
// harness understands, or that it would silently ignore: whatever passes
// here is something real Envoy does too, and `make e2e-envoy` runs the same
// suites against real Envoy (ENVOY_BIN) to keep it honest.
//
// docs/testdataplane.md lists what is modelled, what is refused and where
// the harness differs from Envoy.
package testdataplane
