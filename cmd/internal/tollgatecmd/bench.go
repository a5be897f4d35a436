package tollgatecmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/extproc/loadtest"
)

const benchUsage = `Usage:
  tollgate bench extproc [flags]   load Tollgate's ext_proc and a no-op ext_proc over loopback gRPC, compare them
`

// runBench runs a load test; only ext_proc has one.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "extproc" {
		_, _ = fmt.Fprint(stderr, benchUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return flag.ErrHelp
		}
		return fmt.Errorf("%w: bench what? (extproc)", errUsage)
	}
	fs := flag.NewFlagSet("tollgate bench extproc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o         loadtest.Options
		jsonOut   bool
		unix      bool
		servers   string
		scenarios string
	)
	fs.IntVar(&o.Concurrency, "concurrency", 64, "requests in flight at once")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long each server runs each scenario, over all rounds")
	fs.IntVar(&o.Requests, "requests", 0, "requests per server and scenario, instead of --duration")
	fs.IntVar(&o.Rounds, "rounds", 5, "the servers take turns this many times per scenario")
	fs.IntVar(&o.Chunks, "chunks", 200, "content chunks (SSE events) of a streamed answer")
	fs.IntVar(&o.LongChunks, "long-chunks", 2000, "content chunks of the long stream, to check that memory does not grow with length")
	fs.IntVar(&o.Keys, "keys", 100, "client keys in the gateway, used in turn")
	fs.IntVar(&o.Conns, "conns", 2, "gRPC connections per server (Envoy opens one per worker thread)")
	fs.BoolVar(&unix, "unix", false, "serve over Unix sockets instead of TCP on 127.0.0.1")
	fs.StringVar(&servers, "servers", "tollgate,noop", "servers to load, comma-separated: tollgate, noop")
	fs.StringVar(&scenarios, "scenarios", "non-streaming,streaming,long-streaming", "scenarios, comma-separated")
	fs.StringVar(&o.ProfileDir, "cpuprofile-dir", "", "write a CPU profile of each round into this directory (samples labelled role=server or role=loadgen)")
	fs.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if o.Concurrency < 1 || o.Chunks < 1 || o.LongChunks < 1 || o.Keys < 1 || o.Conns < 1 || o.Rounds < 1 || o.Requests < 0 || o.Duration <= 0 {
		return fmt.Errorf("%w: --concurrency, --chunks, --long-chunks, --keys, --conns, --rounds and --duration must be positive", errUsage)
	}
	o.Servers, o.Scenarios = strings.Split(servers, ","), strings.Split(scenarios, ",")
	if unix {
		o.Network = "unix"
	}
	o.Progress = stderr
	rep, err := loadtest.Run(ctx, o)
	if errors.Is(err, loadtest.ErrOptions) {
		return fmt.Errorf("%w: %w", errUsage, err)
	} else if err != nil {
		return err
	}
	if jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		return err
	}
	if len(rep.Problems) > 0 {
		return errors.New("the run had problems; its figures cannot be trusted (see the report)")
	}
	return nil
}
