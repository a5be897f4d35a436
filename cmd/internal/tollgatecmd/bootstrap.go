package tollgatecmd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/tollgate-dev/tollgate/envoy"
)

// runEnvoyBootstrap prints Envoy's bootstrap for this control plane.
func runEnvoyBootstrap(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tollgate envoy-bootstrap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	host, _ := os.Hostname()
	var (
		p        envoy.Params
		xdsAddr  string
		extproc  string
		admin    uint
		listen   uint
		tlsFiles envoy.TLSFiles
	)
	fs.StringVar(&p.NodeID, "node-id", host, "this Envoy's node id (e.g. the pod name)")
	fs.StringVar(&xdsAddr, "xds-addr", "127.0.0.1:7071", "host:port of the control plane's xDS server")
	fs.StringVar(&extproc, "extproc", "127.0.0.1:7072", "the ext_proc sidecar: host:port, or unix:/path/to.sock")
	fs.UintVar(&admin, "admin-port", 9901, "Envoy's admin port (bound to 127.0.0.1)")
	fs.UintVar(&listen, "listen-port", 0, "this Envoy's own client-facing port, so that several Envoys can share a host (default: the control plane's --listen-port, shared by every Envoy)")
	fs.StringVar(&tlsFiles.CertFile, "xds-tls-cert", "", "client certificate for mutual TLS to xDS")
	fs.StringVar(&tlsFiles.KeyFile, "xds-tls-key", "", "client key for mutual TLS to xDS")
	fs.StringVar(&tlsFiles.CAFile, "xds-tls-ca", "", "CA of the control plane's certificate")
	fs.StringVar(&tlsFiles.ServerName, "xds-server-name", "", "name in the control plane's certificate (default: the xDS host)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	h, port, err := splitHostPort(xdsAddr)
	if err != nil {
		return fmt.Errorf("%w: --xds-addr: %w", errUsage, err)
	}
	p.XDSHost, p.XDSPort = h, port
	if path, ok := strings.CutPrefix(extproc, "unix:"); ok {
		p.ExtProcSocket = path
	} else if p.ExtProcHost, p.ExtProcPort, err = splitHostPort(extproc); err != nil {
		return fmt.Errorf("%w: --extproc: %w", errUsage, err)
	}
	if admin == 0 || admin > 65535 {
		return fmt.Errorf("%w: --admin-port %d is out of range", errUsage, admin)
	}
	p.AdminPort = uint16(admin)
	if listen > 65535 {
		return fmt.Errorf("%w: --listen-port %d is out of range", errUsage, listen)
	}
	p.ListenPort = uint16(listen)
	if tlsFiles.CertFile != "" || tlsFiles.KeyFile != "" || tlsFiles.CAFile != "" {
		if tlsFiles.ServerName == "" {
			tlsFiles.ServerName = h
		}
		p.XDSTLS = &tlsFiles
	}
	out, err := envoy.Render(p)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	_, err = stdout.Write(out)
	return err
}

func splitHostPort(addr string) (string, uint16, error) {
	h, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	return h, uint16(n), nil
}
