// Package envoy holds Envoy's bootstrap for Tollgate: the one file a real
// Envoy needs to find its control plane and its ext_proc sidecar.
package envoy

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"text/template"
)

//go:embed bootstrap.yaml.tmpl
var bootstrapTemplate string

// BootstrapTemplate is the template's text, for tools that render it
// themselves (the Helm chart keeps a copy that a test compares with it).
func BootstrapTemplate() string { return bootstrapTemplate }

var bootstrap = template.Must(template.New("bootstrap").Option("missingkey=error").Parse(bootstrapTemplate))

// Params are the bootstrap's parameters.
type Params struct {
	// NodeID names this Envoy to the control plane, e.g. the pod name.
	NodeID string
	// ListenPort, when not 0, asks the control plane for a client-facing
	// listener on this port instead of the one it gives every node (its
	// --listen-port), so that several Envoys can share one host. It is
	// written into node.metadata (tollgate.listen_port), which Envoy
	// passes on to the control plane and otherwise ignores.
	ListenPort uint16
	// AdminPort is Envoy's admin interface, bound to 127.0.0.1.
	AdminPort uint16
	// XDSHost and XDSPort are where the control plane serves xDS.
	XDSHost string
	XDSPort uint16
	// XDSTLS enables mutual TLS to the control plane.
	XDSTLS *TLSFiles
	// ExtProcSocket is the ext_proc sidecar's Unix socket; when empty,
	// ExtProcHost and ExtProcPort are used.
	ExtProcSocket string
	ExtProcHost   string
	ExtProcPort   uint16
}

// TLSFiles are the files of a mutual-TLS client.
type TLSFiles struct {
	CertFile, KeyFile, CAFile string
	// ServerName is the name the control plane's certificate must carry.
	ServerName string
}

// Render renders the bootstrap as YAML.
func Render(p Params) ([]byte, error) {
	var errs []error
	if p.NodeID == "" {
		errs = append(errs, errors.New("node id is required"))
	}
	if p.XDSHost == "" || p.XDSPort == 0 {
		errs = append(errs, errors.New("the xDS host and port are required"))
	}
	if p.ExtProcSocket == "" && (p.ExtProcHost == "" || p.ExtProcPort == 0) {
		errs = append(errs, errors.New("the ext_proc socket, or its host and port, are required"))
	}
	if p.AdminPort == 0 {
		errs = append(errs, errors.New("the admin port is required"))
	}
	if p.ListenPort != 0 && p.ListenPort == p.AdminPort {
		errs = append(errs, fmt.Errorf("the listen port and the admin port are both %d", p.ListenPort))
	}
	if t := p.XDSTLS; t != nil && (t.CertFile == "" || t.KeyFile == "" || t.CAFile == "" || t.ServerName == "") {
		errs = append(errs, errors.New("xDS TLS needs a certificate, a key, a CA and the server name"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	var buf bytes.Buffer
	if err := bootstrap.Execute(&buf, p); err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	return buf.Bytes(), nil
}
