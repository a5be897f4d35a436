package testdataplane

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/envoy"
)

// Launch runs either data plane from the same bootstrap. The exec path is
// exercised with ENVOY_BIN when it is set, and otherwise with the harness's
// own command, which accepts Envoy's command line.
func TestLaunch(t *testing.T) {
	bin := os.Getenv(EnvoyBinEnv)
	if bin == "" {
		if _, err := exec.LookPath("go"); err != nil {
			t.Skip("no go command to build tollgate-testdataplane")
		}
		bin = filepath.Join(t.TempDir(), "tollgate-testdataplane")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/tollgate-dev/tollgate/cmd/tollgate-testdataplane").CombinedOutput()
		if err != nil {
			t.Fatalf("building the command: %v\n%s", err, out)
		}
	}
	for name, envoyBin := range map[string]string{"in process": "", "as a process": bin} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			tg, ua, _, routeA, _ := twoModels(t)
			e.proc.script(routeByModel(map[string]string{"a": routeA}), nil)
			e.xds.publish(t, e.translate(&tg.g))
			boot, err := envoy.Render(envoy.Params{NodeID: testNodeID, AdminPort: uint16(freePort(t)), XDSHost: "127.0.0.1", XDSPort: uint16(e.xds.addr.Port), ExtProcSocket: e.proc.socket})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			in, err := Launch(ctx, LaunchConfig{Bootstrap: boot, EnvoyBin: envoyBin, AccessLog: e.accessLog, Log: e.logs})
			if err != nil {
				t.Fatalf("%v\n%s", err, e.logs.String())
			}
			want := "testdataplane"
			if envoyBin != "" {
				want = "envoy"
			}
			if in.Kind() != want || (in.Harness() != nil) != (envoyBin == "") {
				t.Errorf("kind %q, harness %v", in.Kind(), in.Harness() != nil)
			}
			resp, err := http.Post("http://127.0.0.1:"+strconv.Itoa(int(e.opts.ListenPort))+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"a"}`))
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK || len(ua.requests()) != 1 {
				t.Errorf("status %d, upstream requests %d", resp.StatusCode, len(ua.requests()))
			}
			if err := in.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			if line := e.lastAccess(1); line["status"] != float64(200) {
				t.Errorf("access log %v", line)
			}
		})
	}
}
