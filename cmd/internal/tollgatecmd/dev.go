package tollgatecmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/cmd/internal/datadir"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/extproc"
)

// runDev runs everything one machine needs, with the embedded SQLite store:
// the control plane, ext_proc, and a data plane (real Envoy when one is
// found, else the test data plane). Its secrets (master key, operator
// token) are generated into the data directory on first start and reused.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fset := flag.NewFlagSet("tollgate dev", flag.ContinueOnError)
	fset.SetOutput(stderr)
	var sf serverFlags
	sf.register(fset, "127.0.0.1:7070", "127.0.0.1:7071", "127.0.0.1")
	dir := fset.String("data-dir", datadir.Default(), "directory for the SQLite database, master key and operator token (env TOLLGATE_DATA_DIR)")
	extprocListen := fset.String("extproc-listen", "127.0.0.1:7072", "where Envoy reaches ext_proc: host:port, or unix:/path/to.sock")
	dataPlane := fset.String("dataplane", dataPlaneAuto, "auto (Envoy from ENVOY_BIN or PATH, else the test data plane), envoy, test, or none")
	envoyAdmin := fset.Uint("envoy-admin-port", 9901, "the data plane's admin port on 127.0.0.1")
	fakes := fset.Bool("fake-providers", false, "start fake OpenAI, Anthropic and Gemini servers and route models to them, to try Tollgate offline")
	if err := parseFlags(fset, args); err != nil {
		return err
	}
	switch *dataPlane {
	case dataPlaneAuto, dataPlaneEnvoy, dataPlaneTest, dataPlaneNone:
	default:
		return fmt.Errorf("%w: --dataplane must be auto, envoy, test or none, not %q", errUsage, *dataPlane)
	}
	if *envoyAdmin == 0 || *envoyAdmin > 65535 {
		return fmt.Errorf("%w: --envoy-admin-port %d is out of range", errUsage, *envoyAdmin)
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("creating the data directory: %w", err)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return fmt.Errorf("resolving the data directory: %w", err)
	}
	ring, err := keyring.LoadOrGenerate(filepath.Join(abs, "master.key"))
	if err != nil {
		return err
	}
	tokenPath := filepath.Join(abs, datadir.OperatorTokenFile)
	token, err := loadOrCreateOperatorToken(tokenPath)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(abs, "tollgate.db"))
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	log := newLogger(stderr, sf.logLevel)
	tel, err := startTelemetry(ctx, sf.telemetry, "tollgate-dev", "", log)
	if err != nil {
		return err
	}
	defer stopTelemetry(tel, &err)
	return (&devRun{
		flags: sf, dir: abs, tokenPath: tokenPath, token: token, extprocListen: *extprocListen,
		dataPlane: *dataPlane, envoyAdmin: uint16(*envoyAdmin), fakes: *fakes,
		store: st, keyring: ring, log: log, telemetry: tel, stdout: stdout, stderr: stderr,
	}).run(ctx)
}

// devRun starts dev's processes in order — control plane, ext_proc, fake
// providers, data plane — and stops them in reverse; any of them failing
// stops all.
type devRun struct {
	flags         serverFlags
	dir           string
	tokenPath     string
	token         string
	extprocListen string
	dataPlane     string
	envoyAdmin    uint16
	fakes         bool
	store         *store.Store
	keyring       *keyring.Keyring
	log           *slog.Logger
	telemetry     *runningTelemetry
	stdout        io.Writer
	stderr        io.Writer
	// webURL is the console's address, once serve has started it.
	webURL string
}

func (d *devRun) run(parent context.Context) error {
	ctx, stop := context.WithCancel(parent)
	defer stop()
	type addrs struct{ admin, xds net.Addr }
	cpReady := make(chan addrs, 1)
	cpDone := make(chan error, 1)
	go func() {
		cpDone <- serve(ctx, serveConfig{
			flags: d.flags, store: d.store, keyring: d.keyring, operatorToken: d.token, log: d.log, telemetry: d.telemetry,
			ready:    func(admin, xds net.Addr) { cpReady <- addrs{admin, xds} },
			webReady: func(url string) { d.webURL = url },
		})
		stop()
	}()
	var cp addrs
	select {
	case cp = <-cpReady:
	case err := <-cpDone:
		return err
	}

	epReady := make(chan net.Addr, 1)
	epDone := make(chan error, 1)
	go func() {
		ef := extprocFlags{listen: d.extprocListen, xdsAddr: cp.xds.String(), nodeID: "extproc-dev", spillDir: filepath.Join(d.dir, "spill"), telemetry: d.flags.telemetry,
			contentCapture: extproc.DefaultContentCaptureBytes}
		epDone <- serveExtProc(ctx, ef, d.telemetry, d.log.With("process", "extproc"), func(a net.Addr) { epReady <- a })
		stop()
	}()
	var ep net.Addr
	var startErr error
	select {
	case ep = <-epReady:
	case startErr = <-epDone:
	}

	var stopFakes func() error
	if startErr == nil && d.fakes {
		stopFakes, startErr = startFakes(ctx, cp.admin.String(), d.token)
	}
	var dp *runningDataPlane
	if startErr == nil {
		listen := &net.TCPAddr{IP: net.ParseIP(d.flags.dataPlane.ListenAddress), Port: int(d.flags.dataPlane.ListenPort)}
		dp, startErr = startDataPlane(ctx, d.dataPlane, d.dir, d.envoyAdmin, listen, cp.xds, ep, d.log, d.stderr)
	}
	if startErr == nil {
		printBanner(d.stdout, d, cp.admin, cp.xds, ep, dp)
		<-ctx.Done()
	}

	// Stop in reverse order: traffic first, then the servers it needs.
	stop()
	errs := []error{startErr}
	if dp != nil {
		errs = append(errs, dp.stop())
	}
	if stopFakes != nil {
		errs = append(errs, stopFakes())
	}
	if ep != nil || startErr != nil {
		select {
		case err := <-epDone:
			errs = append(errs, err)
		case <-time.After(45 * time.Second):
			errs = append(errs, errors.New("ext_proc did not stop within 45s"))
		}
	}
	errs = append(errs, <-cpDone)
	return errors.Join(errs...)
}

// loadOrCreateOperatorToken reads the operator token from path, creating the
// file (mode 0600) with a fresh token when it does not exist.
func loadOrCreateOperatorToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		token := strings.TrimSpace(string(b))
		if err := secret.Check(secret.OperatorToken, token); err != nil {
			return "", fmt.Errorf("the operator token in %s: %w", path, err)
		}
		return token, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("reading the operator token: %w", err)
	}
	s, err := secret.New(secret.OperatorToken)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("creating the operator token file: %w", err)
	}
	if _, err := f.WriteString(s.Plaintext + "\n"); err != nil {
		_ = f.Close() // the write error is the one to report
		return "", fmt.Errorf("writing the operator token file: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("writing the operator token file: %w", err)
	}
	return s.Plaintext, nil
}

// printBanner tells the person who ran `tollgate dev` how to use it. A failed
// write is ignored: the server is up either way.
func printBanner(w io.Writer, d *devRun, admin, xds, extproc net.Addr, dp *runningDataPlane) {
	traffic := "none started (--dataplane none): run Envoy with `tollgate envoy-bootstrap`"
	warning := ""
	if dp != nil {
		traffic = "http://" + dp.addr
		if dp.kind == dataPlaneTest {
			warning = `
  WARNING: no Envoy binary was found, so traffic goes through Tollgate's TEST
  data plane: a harness for trying Tollgate out, NOT for production. Set
  ENVOY_BIN (or put envoy on PATH) to use real Envoy.
`
		}
	}
	metrics := d.telemetry.metricsURL()
	if metrics == "" {
		metrics = "none (--metrics-addr is empty)"
	}
	console := "none (--web-addr is empty)"
	if d.webURL != "" {
		console = d.webURL + "  (operator: sign in with the operator token)"
	}
	fakes := ""
	if d.fakes {
		fakes = "  fake providers  on: gpt-4o-mini, gpt-4o, text-embedding-3-small, claude-sonnet-4-5, gemini-2.5-flash\n"
	}
	_, _ = fmt.Fprintf(w, `Tollgate dev is running (SQLite, everything on this machine).
%s
  traffic         %s  (OpenAI and Anthropic APIs, e.g. POST /v1/chat/completions)
  admin API       %s
  web console     %s
  xDS             %s
  ext_proc        %s
  metrics         %s
  data directory  %s
  operator token  %s (tollgatectl reads it from there)
%s
Try:
  tollgatectl tenant create acme
  export TOLLGATE_KEY=$(tollgatectl key create --tenant acme --name ci | head -n 1)
  tollgatectl model list                              # the models you can call
  curl %s/v1/chat/completions -H "Authorization: Bearer $TOLLGATE_KEY" \
       -H 'content-type: application/json' \
       -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'

Stop with Ctrl-C.
`, warning, traffic, admin, console, xds, extproc, metrics, d.dir, d.tokenPath, fakes, traffic)
}
