package tollgatecmd

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func fakeExecutable(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// Envoy is found as the README says: ENVOY_BIN, then envoy on PATH, then
// func-e on PATH (which fetches Envoy when the internet is reachable).
func TestFindEnvoyOrder(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PATH", dir)
	t.Setenv("ENVOY_BIN", "")
	if cmd, ok := findEnvoy(); ok {
		t.Fatalf("found %v on an empty PATH", cmd)
	}
	funce := fakeExecutable(t, dir, "func-e")
	if cmd, ok := findEnvoy(); !ok || !slices.Equal(cmd, []string{funce, "run"}) {
		t.Errorf("with func-e on PATH: %v %v", cmd, ok)
	}
	envoy := fakeExecutable(t, dir, "envoy")
	if cmd, ok := findEnvoy(); !ok || !slices.Equal(cmd, []string{envoy}) {
		t.Errorf("with envoy on PATH: %v %v", cmd, ok)
	}
	t.Setenv("ENVOY_BIN", "/opt/envoy/bin/envoy")
	if cmd, ok := findEnvoy(); !ok || !slices.Equal(cmd, []string{"/opt/envoy/bin/envoy"}) {
		t.Errorf("with ENVOY_BIN: %v %v", cmd, ok)
	}
}

func TestDevRefusesEnvoyModeWithoutEnvoy(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("ENVOY_BIN", "")
	var out, errb bytes.Buffer
	code := Main(t.Context(), []string{"dev", "--data-dir", t.TempDir(), "--admin-addr", "127.0.0.1:0", "--xds-addr", "127.0.0.1:0",
		"--extproc-listen", "127.0.0.1:0", "--dataplane", "envoy", "--metrics-addr", "", "--web-addr", ""}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "ENVOY_BIN") {
		t.Errorf("exit %d, stderr %q; want a usage error naming ENVOY_BIN", code, errb.String())
	}
}
