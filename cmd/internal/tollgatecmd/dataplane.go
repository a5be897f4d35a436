package tollgatecmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/tollgate-dev/tollgate/envoy"
	"github.com/tollgate-dev/tollgate/envoy/testdataplane"
)

// Data plane choices for `tollgate dev`.
const (
	dataPlaneAuto  = "auto"  // real Envoy if one is found, else the test data plane
	dataPlaneEnvoy = "envoy" // real Envoy, or fail
	dataPlaneTest  = "test"  // the test data plane
	dataPlaneNone  = "none"  // none: bring your own Envoy (tollgate envoy-bootstrap)
)

// runningDataPlane is what dev started.
type runningDataPlane struct {
	kind string // "envoy" or "test"
	addr string // where clients send traffic
	stop func() error
}

// findEnvoy returns the command that runs Envoy: ENVOY_BIN, else envoy on
// PATH, else func-e on PATH (which downloads Envoy the first time, when the
// internet is reachable, and runs it with the arguments that follow).
func findEnvoy() ([]string, bool) {
	if bin := os.Getenv("ENVOY_BIN"); bin != "" {
		return []string{bin}, true
	}
	if bin, err := exec.LookPath("envoy"); err == nil {
		return []string{bin}, true
	}
	if bin, err := exec.LookPath("func-e"); err == nil {
		return []string{bin, "run"}, true
	}
	return nil, false
}

// startDataPlane starts Envoy (or the test data plane) pointed at this
// control plane and ext_proc, with the same bootstrap either way.
func startDataPlane(ctx context.Context, mode, dir string, adminPort uint16, listenAddr, xds, extproc net.Addr, log *slog.Logger, logOut io.Writer) (*runningDataPlane, error) {
	if mode == dataPlaneNone {
		return nil, nil
	}
	xh, xp, err := splitHostPort(xds.String())
	if err != nil {
		return nil, err
	}
	eh, ep, err := splitHostPort(extproc.String())
	if err != nil {
		return nil, err
	}
	boot, err := envoy.Render(envoy.Params{NodeID: "envoy-dev", AdminPort: adminPort, XDSHost: xh, XDSPort: xp, ExtProcHost: eh, ExtProcPort: ep})
	if err != nil {
		return nil, err
	}
	bin, found := findEnvoy()
	switch {
	case mode == dataPlaneEnvoy && !found:
		return nil, fmt.Errorf("%w: --dataplane envoy, but no Envoy binary: set ENVOY_BIN, or put envoy (or func-e) on PATH", errUsage)
	case mode == dataPlaneEnvoy || (mode == dataPlaneAuto && found):
		return startEnvoy(ctx, bin, dir, boot, listenAddr, logOut)
	}
	dp, err := testdataplane.New(ctx, testdataplane.Config{Bootstrap: boot, Logger: log.With("process", "testdataplane"), AccessLog: logOut})
	if err != nil {
		return nil, err
	}
	wait, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := dp.WaitReady(wait); err != nil {
		return nil, errors.Join(err, dp.Close())
	}
	return &runningDataPlane{kind: dataPlaneTest, addr: dp.Addr(), stop: dp.Close}, nil
}

// startEnvoy runs a real Envoy with the bootstrap written into dir.
func startEnvoy(ctx context.Context, envoyCmd []string, dir string, boot []byte, listenAddr net.Addr, logOut io.Writer) (*runningDataPlane, error) {
	path := filepath.Join(dir, "envoy-bootstrap.yaml")
	if err := os.WriteFile(path, boot, 0o600); err != nil {
		return nil, fmt.Errorf("writing Envoy's bootstrap: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	args := slices.Concat(envoyCmd[1:], []string{"-c", path, "--log-level", "warn", "--base-id", strconv.Itoa(os.Getpid() % 60000)})
	cmd := exec.CommandContext(ctx, envoyCmd[0], args...)
	cmd.Stdout, cmd.Stderr = logOut, logOut
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("starting Envoy (%s): %w", envoyCmd[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Envoy listens once it has its listener from xDS.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", listenAddr.String(), 200*time.Millisecond)
		if err == nil {
			_ = c.Close() // only probing
			break
		}
		select {
		case err := <-done:
			cancel()
			return nil, fmt.Errorf("envoy exited before listening: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			return nil, fmt.Errorf("envoy is not listening on %s after 30s", listenAddr)
		}
	}
	stop := func() error {
		cancel()
		// Envoy ends by the signal that cancel sends; that exit status is
		// the expected one, not an error.
		if err := <-done; err != nil && ctx.Err() == nil {
			return fmt.Errorf("envoy: %w", err)
		}
		return nil
	}
	return &runningDataPlane{kind: dataPlaneEnvoy, addr: listenAddr.String(), stop: stop}, nil
}
