// Command tollgate-testdataplane runs envoy/testdataplane: a test harness
// that stands in for Envoy where no Envoy binary can be installed. It is not
// a data plane. Usage follows Envoy's: tollgate-testdataplane -c bootstrap.yaml
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tollgate-dev/tollgate/envoy/testdataplane"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := testdataplane.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
