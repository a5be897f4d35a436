package testdataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// EnvoyBinEnv names the variable that selects real Envoy for a suite.
const EnvoyBinEnv = "ENVOY_BIN"

// LaunchConfig says which data plane a suite runs and how.
type LaunchConfig struct {
	// Bootstrap is Envoy's bootstrap, as envoy.Render renders it.
	Bootstrap []byte
	// EnvoyBin runs real Envoy when set (usually os.Getenv(EnvoyBinEnv));
	// when empty the test data plane runs in this process.
	EnvoyBin string
	// AccessLog receives the access log (Envoy's stdout).
	AccessLog io.Writer
	// Log receives the data plane's own log (Envoy's stderr).
	Log io.Writer
	// ReadyTimeout bounds the wait for /ready; 30 s when zero.
	ReadyTimeout time.Duration
}

// Instance is a running data plane, real or not.
type Instance struct {
	kind    string
	harness *DataPlane
	cmd     *exec.Cmd
	exited  chan error
	dir     string
}

// Kind is "envoy" or "testdataplane".
func (i *Instance) Kind() string { return i.kind }

// Harness is the in-process test data plane, or nil when real Envoy runs.
func (i *Instance) Harness() *DataPlane { return i.harness }

// Launch starts the data plane a suite asked for and returns once its admin
// /ready answers LIVE. Both kinds take the same bootstrap and learn their
// listeners from the control plane, so the suite does not care which runs.
func Launch(ctx context.Context, cfg LaunchConfig) (*Instance, error) {
	boot, err := parseBootstrap(cfg.Bootstrap)
	if err != nil {
		return nil, err
	}
	if boot.adminAddress == "" {
		return nil, errors.New("launch: the bootstrap has no admin address to check readiness on")
	}
	timeout := cfg.ReadyTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	logw := cfg.Log
	if logw == nil {
		logw = io.Discard
	}
	if cfg.EnvoyBin == "" {
		dp, err := New(ctx, Config{
			Bootstrap: cfg.Bootstrap,
			Logger:    slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo})),
			AccessLog: cfg.AccessLog,
		})
		if err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := dp.WaitReady(rctx); err != nil {
			_ = dp.Close()
			return nil, err
		}
		return &Instance{kind: "testdataplane", harness: dp}, nil
	}

	dir, err := os.MkdirTemp("", "tollgate-envoy")
	if err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	path := filepath.Join(dir, "bootstrap.yaml")
	if err := os.WriteFile(path, cfg.Bootstrap, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("launch: %w", err)
	}
	// --disable-hot-restart lets several Envoys share a machine (no shared
	// memory region); the harness's command accepts and ignores it.
	cmd := exec.Command(cfg.EnvoyBin, "-c", path, "-l", "warn", "--disable-hot-restart")
	cmd.Stdout, cmd.Stderr = cfg.AccessLog, logw
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("launch %s: %w", cfg.EnvoyBin, err)
	}
	in := &Instance{kind: "envoy", cmd: cmd, exited: make(chan error, 1), dir: dir}
	go func() { in.exited <- cmd.Wait() }()
	if err := waitLive(ctx, "http://"+boot.adminAddress+"/ready", timeout, in.exited); err != nil {
		_ = in.Close()
		return nil, fmt.Errorf("launch %s: %w", cfg.EnvoyBin, err)
	}
	return in, nil
}

// waitLive polls an admin /ready endpoint until it answers 200 LIVE.
func waitLive(ctx context.Context, url string, timeout time.Duration, exited <-chan error) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		if resp, err := client.Get(url); err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(b) == "LIVE\n" {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited before it was ready: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer LIVE within %v", url, timeout)
		}
	}
}

// Close stops the data plane: SIGTERM (then SIGKILL after 10 s) for Envoy.
func (i *Instance) Close() error {
	if i.harness != nil {
		return i.harness.Close()
	}
	defer func() { _ = os.RemoveAll(i.dir) }()
	_ = i.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-i.exited:
		// Envoy exits 0 on SIGTERM; anything else is worth reporting.
		if err != nil {
			return fmt.Errorf("%s exited: %w", i.cmd.Path, err)
		}
		return nil
	case <-time.After(10 * time.Second):
		_ = i.cmd.Process.Kill()
		err := <-i.exited
		return fmt.Errorf("%s did not stop on SIGTERM and was killed: %w", i.cmd.Path, err)
	}
}

// FindEnvoy returns the Envoy binary to run: ENVOY_BIN when set, else
// `envoy` on PATH. Suites run real Envoy when they are asked to (make
// e2e-envoy sets TOLLGATE_E2E_ENVOY=1) and pass the result as
// LaunchConfig.EnvoyBin; `tollgate dev` prefers it when it exists.
func FindEnvoy() (string, error) {
	if bin := os.Getenv(EnvoyBinEnv); bin != "" {
		return bin, nil
	}
	bin, err := exec.LookPath("envoy")
	if err != nil {
		return "", fmt.Errorf("no Envoy binary: set %s or put envoy on PATH: %w", EnvoyBinEnv, err)
	}
	return bin, nil
}
