package testdataplane

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/envoy"
)

func TestMainUsageErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		code int
		want string
	}{
		"no bootstrap":      {nil, 2, "usage:"},
		"missing file":      {[]string{"-c", filepath.Join(t.TempDir(), "nope.yaml")}, 1, "no such file"},
		"bad log level":     {[]string{"-c", "x", "-l", "chatty"}, 2, "log level"},
		"not an envoy file": {[]string{"-c", writeFile(t, "admin: {address: 1}\n")}, 1, "not an Envoy Bootstrap"},
	} {
		t.Run(name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := Main(context.Background(), tc.args, io.Discard, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("code %d, stderr %q; want %d and %q", code, stderr.String(), tc.code, tc.want)
			}
		})
	}
}

func writeFile(t *testing.T, text string) string {
	p := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The command serves what the control plane sends, answers Envoy's /ready
// on the admin port once it does, writes the access log to stdout, and
// stops cleanly when its context ends.
func TestMainServesUntilStopped(t *testing.T) {
	e := newEnv(t)
	tg, ua, _, routeA, _ := twoModels(t)
	e.proc.script(routeByModel(map[string]string{"a": routeA}), nil)
	e.xds.publish(t, e.translate(&tg.g))
	admin := freePort(t)
	boot, err := envoy.Render(envoy.Params{NodeID: testNodeID, AdminPort: uint16(admin), XDSHost: "127.0.0.1", XDSPort: uint16(e.xds.addr.Port), ExtProcSocket: e.proc.socket})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := &logBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"-c", writeFile(t, string(boot)), "-l", "error"}, stdout, io.Discard)
	}()

	ready := "http://127.0.0.1:" + itoa(admin) + "/ready"
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(ready)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(b) == "LIVE\n" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("/ready never said LIVE")
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Post("http://127.0.0.1:"+itoa(e.opts.ListenPort)+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(ua.requests()) != 1 {
		t.Fatalf("status %d, upstream requests %d", resp.StatusCode, len(ua.requests()))
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Main did not return after its context ended")
	}
	if !strings.Contains(stdout.String(), `"status":200`) {
		t.Errorf("stdout has no access log line: %q", stdout.String())
	}
}

func itoa[I ~int | ~uint32](i I) string { return strconv.Itoa(int(i)) }
