package tollgatecmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/cmd/internal/datadir"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/store"
)

// runDev runs everything one machine needs, with the embedded SQLite store.
// Its secrets (master key, operator token) are generated into the data
// directory on first start and reused after.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fset := flag.NewFlagSet("tollgate dev", flag.ContinueOnError)
	fset.SetOutput(stderr)
	var sf serverFlags
	sf.register(fset, "127.0.0.1:7070", "127.0.0.1:7071", "127.0.0.1")
	dir := fset.String("data-dir", datadir.Default(), "directory for the SQLite database, master key and operator token (env TOLLGATE_DATA_DIR)")
	extprocListen := fset.String("extproc-listen", "127.0.0.1:7072", "where Envoy reaches ext_proc: host:port, or unix:/path/to.sock")
	if err := parseFlags(fset, args); err != nil {
		return err
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

	// The control plane first; once xDS listens, ext_proc connects to it.
	// Either one failing stops both.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	extprocErr := make(chan error, 1)
	started := false
	serveErr := serve(ctx, serveConfig{
		flags: sf, store: st, keyring: ring, operatorToken: token, log: log,
		ready: func(admin, xds net.Addr) {
			started = true
			ef := extprocFlags{listen: *extprocListen, xdsAddr: xds.String(), nodeID: "extproc-dev", spillDir: filepath.Join(abs, "spill")}
			go func() {
				err := serveExtProc(ctx, ef, log.With("process", "extproc"), func(ep net.Addr) {
					printBanner(stdout, abs, tokenPath, admin, xds, ep)
				})
				extprocErr <- err
				stop()
			}()
		},
	})
	stop()
	if !started {
		return serveErr
	}
	select {
	case err := <-extprocErr:
		return errors.Join(serveErr, err)
	case <-time.After(45 * time.Second):
		return errors.Join(serveErr, errors.New("ext_proc did not stop within 45s"))
	}
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
func printBanner(w io.Writer, dir, tokenPath string, admin, xds, extproc net.Addr) {
	_, _ = fmt.Fprintf(w, `Tollgate dev is running (SQLite, everything on this machine).

  admin API       %s
  xDS             %s (Envoy: tollgate envoy-bootstrap)
  ext_proc        %s
  data directory  %s
  operator token  %s (tollgatectl reads it from there)

Try:
  tollgatectl tenant create acme
  tollgatectl key create --tenant acme --name ci

Stop with Ctrl-C.
`, admin, xds, extproc, dir, tokenPath)
}
