package testdataplane

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Main is the tollgate-testdataplane command, callable from tests. Its
// command line is the part of Envoy's that Tollgate uses, so scripts can
// run either binary: `-c bootstrap.yaml` and `-l level`.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tollgate-testdataplane", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = fmt.Fprintln(stderr, "usage: tollgate-testdataplane -c BOOTSTRAP.yaml [-l debug|info|warn|error]")
		_, _ = fmt.Fprintln(stderr, "A test harness that stands in for Envoy in Tollgate's tests and `tollgate dev`. Not a data plane: never put it in front of real traffic.")
		fs.PrintDefaults()
	}
	var config, level string
	fs.StringVar(&config, "c", "", "Envoy bootstrap file, as tollgate envoy-bootstrap writes it")
	fs.StringVar(&config, "config-path", "", "same as -c")
	fs.StringVar(&level, "l", "info", "log level")
	fs.StringVar(&level, "log-level", "info", "same as -l")
	// Envoy flags that launchers pass and that mean nothing here.
	fs.Bool("disable-hot-restart", false, "accepted for Envoy compatibility; ignored")
	fs.Int("base-id", 0, "accepted for Envoy compatibility; ignored")
	fs.Int("concurrency", 0, "accepted for Envoy compatibility; ignored")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if config == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		_, _ = fmt.Fprintf(stderr, "tollgate-testdataplane: log level %q: %v\n", level, err)
		return 2
	}
	boot, err := os.ReadFile(config)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "tollgate-testdataplane: %v\n", err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	log.Warn("this is Tollgate's test data plane, a test harness standing in for Envoy; it is not for production traffic")
	if err := Run(ctx, Config{Bootstrap: boot, Logger: log, AccessLog: stdout}); err != nil {
		_, _ = fmt.Fprintf(stderr, "tollgate-testdataplane: %v\n", err)
		return 1
	}
	return 0
}
