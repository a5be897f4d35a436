// Package tollgatecmd is the tollgate command. Main is the whole program
// behind the thin main package, so that tests can run it in-process.
package tollgatecmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/tollgate-dev/tollgate/controlplane/store"
)

// Version is set at build time with -ldflags "-X ...tollgatecmd.Version=v1.2.3".
var Version = "dev"

const usage = `tollgate runs the Tollgate AI gateway.

Usage:
  tollgate dev [flags]            run everything on this machine with SQLite (try it out, develop)
  tollgate controlplane [flags]   run the control plane: admin gRPC API and xDS
  tollgate extproc [flags]        run the ext_proc server beside Envoy
  tollgate migrate [flags]        create or upgrade the database schema, then exit
  tollgate envoy-bootstrap [flags] print the bootstrap a real Envoy needs to join this control plane
  tollgate bench extproc [flags]  load-test ext_proc against a no-op ext_proc, over loopback
  tollgate version                print the version

Run "tollgate <command> -h" for a command's flags.
`

// errUsage marks errors caused by how the command was called (exit code 2).
var errUsage = errors.New("usage")

// Main runs tollgate with args (without the program name) and returns the
// process exit code.
//
// Writes to stdout and stderr ignore their errors: the exit code reports
// what the command did, and a terminal that is gone leaves nowhere to report
// a failed write to.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		_, _ = fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "dev":
		err = runDev(ctx, args[1:], stdout, stderr)
	case "controlplane":
		err = runControlPlane(ctx, args[1:], stderr)
	case "extproc":
		err = runExtProc(ctx, args[1:], stderr)
	case "migrate":
		err = runMigrate(ctx, args[1:], stdout, stderr)
	case "envoy-bootstrap":
		err = runEnvoyBootstrap(ctx, args[1:], stdout, stderr)
	case "bench":
		err = runBench(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		_, _ = fmt.Fprintln(stdout, "tollgate", Version)
	case "help", "-h", "--help":
		_, _ = fmt.Fprint(stdout, usage)
	default:
		_, _ = fmt.Fprintf(stderr, "tollgate: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		_, _ = fmt.Fprintln(stderr, "tollgate:", err)
		return 2
	default:
		_, _ = fmt.Fprintln(stderr, "tollgate:", err)
		return 1
	}
}

// newLogger returns the JSON logger every tollgate process writes to stderr.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// closeStore closes st as a command returns, adding a failure to close to
// the command's error (*err) rather than dropping it.
func closeStore(st *store.Store, err *error) {
	if cerr := st.Close(); cerr != nil {
		*err = errors.Join(*err, cerr)
	}
}
