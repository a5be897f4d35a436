package tollgatecmd

import (
	"bytes"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// tollgate dev serves the web console and names it in its banner.
func TestDevServesTheWebConsole(t *testing.T) {
	d := startDevWith(t, t.TempDir())
	m := regexp.MustCompile(`(?m)^\s+web console\s+(http://\S+)`).FindStringSubmatch(d.banner)
	if m == nil {
		t.Fatalf("the banner names no web console:\n%s", d.banner)
	}
	resp, err := http.Get(m[1] + "/signin")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `action="/signin"`) {
		t.Errorf("GET /signin: %d\n%s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("no CSP on the console: %q", csp)
	}
}

func TestWebConsoleRefusesPlaintextBeyondLoopback(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main(t.Context(), []string{"dev", "--data-dir", t.TempDir(), "--admin-addr", "127.0.0.1:0", "--xds-addr", "127.0.0.1:0", "--extproc-listen", "127.0.0.1:0",
		"--dataplane", "none", "--metrics-addr", "", "--web-addr", "0.0.0.0:0"}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "web console without TLS") {
		t.Errorf("exit %d, stderr %q; want a refusal to serve the console without TLS", code, errb.String())
	}
}
