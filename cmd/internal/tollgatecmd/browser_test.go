package tollgatecmd

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/billing"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/usageingest"
)

// Environment of the browser tests.
const (
	// envRequireBrowser=1 turns a missing Chromium from a skip into a
	// failure (.ci/run sets it).
	envRequireBrowser = "TOLLGATE_TEST_REQUIRE_BROWSER"
	// envChromium names the browser binary; else chromium on PATH.
	envChromium = "TOLLGATE_CHROMIUM"
	// envScreenshots names a directory to save the console's screenshots
	// in (docs/img: `make screenshots`).
	envScreenshots = "TOLLGATE_SCREENSHOTS"
)

// chromium finds the browser, or skips (fails when it is required).
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(envChromium); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(envRequireBrowser) == "1" {
		t.Fatalf("no Chromium found (install Debian's chromium package or set %s) and %s=1", envChromium, envRequireBrowser)
	}
	t.Skipf("no Chromium found; install Debian's chromium package or set %s", envChromium)
	return ""
}

// The console in a real browser, against `tollgate dev` with the test data
// plane and fake providers: a new owner sets a password from a link, signs
// in, creates a key and copies it; a request made with the key through the
// data plane shows up on the usage page's chart and table; an export and
// an invoice download; then the operator's invoice status change,
// restriction (seen on the data plane) and erasure plan.
func TestConsoleInABrowser(t *testing.T) {
	bin := chromium(t)
	dir := t.TempDir()
	d := startDevWith(t, dir, "--fake-providers", "--dataplane", "test", "--listen-port", freePort(t), "--envoy-admin-port", freePort(t))
	m := regexp.MustCompile(`(?m)^\s+web console\s+(http://\S+)`).FindStringSubmatch(d.banner)
	if m == nil {
		t.Fatalf("no web console in the banner:\n%s", d.banner)
	}
	console := m[1]

	token, err := os.ReadFile(filepath.Join(dir, "operator-token"))
	if err != nil {
		t.Fatal(err)
	}
	op := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+strings.TrimSpace(string(token)))
	conn, err := grpc.NewClient(d.admin, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := adminv1.NewTenantServiceClient(conn).CreateTenant(op, &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: "acme", Name: "Acme Corp"}}); err != nil {
		t.Fatal(err)
	}
	acct, err := adminv1.NewAccountServiceClient(conn).CreateAccount(op, &adminv1.CreateAccountRequest{Tenant: "acme", Account: &adminv1.Account{Email: "olga@acme.example", Name: "Olga", Role: adminv1.AccountRole_ACCOUNT_ROLE_OWNER}})
	if err != nil {
		t.Fatal(err)
	}
	link, err := adminv1.NewAccountServiceClient(conn).CreatePasswordLink(op, &adminv1.CreatePasswordLinkRequest{Id: acct.GetAccount().GetId()})
	if err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900), chromedp.UserDataDir(filepath.Join(dir, "chromium")))
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancelAlloc()
	ctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	shots := newScreenshots(t)

	const pw = "a long and private passphrase"
	do(t, ctx, "set the password from the link",
		chromedp.Navigate(console+"/signin/password?token="+link.GetSecret()),
		chromedp.WaitVisible(`#password`),
		chromedp.SendKeys(`#password`, pw),
		chromedp.SendKeys(`#confirm`, pw),
		chromedp.Submit(`#password`),
		chromedp.WaitVisible(`p.flash`),
	)
	shots.take(ctx, "signin")
	do(t, ctx, "sign in",
		chromedp.SendKeys(`#email`, "olga@acme.example"),
		chromedp.SendKeys(`#password`, pw),
		chromedp.Submit(`#email`),
		chromedp.WaitVisible(`#month`),
	)

	// A key: created in the form, its secret shown once, copied with the
	// button.
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: name}, Setting: browser.PermissionSettingGranted, Origin: console,
		}); err != nil {
			t.Fatalf("allowing %s: %v", name, err)
		}
	}
	do(t, ctx, "create a key",
		chromedp.Navigate(console+"/t/acme/keys"),
		chromedp.WaitVisible(`#name`),
		chromedp.SendKeys(`#name`, "checkout service"),
		chromedp.Submit(`#name`),
		chromedp.WaitVisible(`#new-secret`),
	)
	secret := get(t, ctx, "the secret", chromedp.Value(`#new-secret`))
	do(t, ctx, "copy it", chromedp.Click(`button[data-copy]`))
	get(t, ctx, "the copy status", chromedp.Poll[bool](`document.querySelector(".copy-status").textContent !== ""`, chromedp.WithPollingTimeout(10*time.Second)))
	status := get(t, ctx, "the copy status", chromedp.Text(`.copy-status`))
	copied := get(t, ctx, "the clipboard", chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	if !strings.HasPrefix(secret, "tg-") {
		t.Fatalf("the page shows no key secret: %q", secret)
	}
	if status != "Copied" || copied != secret {
		t.Fatalf("copy: status %q, clipboard %q, want %q", status, copied, secret)
	}
	shots.take(ctx, "key-created")

	// A request through the data plane with the copied key.
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello from the browser test"}]}`
	// A new key reaches ext_proc within about a second (401 until then),
	// the model's route the data plane (404 until then).
	chatUntil(t, d.traffic, copied, body, http.StatusOK, func(status int) bool {
		return status == http.StatusUnauthorized || status == http.StatusNotFound
	})

	// The usage page: reload until the request's rollup is in (usage
	// arrives in batches), then the chart is drawn and the table names the
	// model.
	usageURL := console + "/t/acme/usage?metric=requests&group=model"
	var rows string
	deadline := time.Now().Add(60 * time.Second)
	for {
		do(t, ctx, "open the usage page", chromedp.Navigate(usageURL), chromedp.WaitVisible(`#table-title`))
		rows = get(t, ctx, "the usage table", chromedp.Text(`#usage-table tbody`))
		if strings.Contains(rows, "gpt-4o-mini") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the request did not appear on the usage page within 60s; table: %q\nlogs:\n%s", rows, d.logs)
		}
		time.Sleep(500 * time.Millisecond)
	}
	do(t, ctx, "the chart", chromedp.WaitVisible(`.chart-area[data-drawn] canvas`))
	drawn := get(t, ctx, "the chart's series", chromedp.AttributeValue(`.chart-area`, "data-drawn")).Value
	points := get(t, ctx, "the chart's points", chromedp.Evaluate[string](`String(JSON.parse(document.querySelector(".chart-area").dataset.chart).series[0].values.reduce((a, b) => a + b, 0))`))
	if drawn != "1" || points != "1" {
		t.Errorf("the usage chart: %s series drawn, %s requests plotted; want 1 and 1", drawn, points)
	}
	shots.take(ctx, "usage")
	for name, path := range map[string]string{"overview": "/t/acme/", "keys": "/t/acme/keys", "limits": "/t/acme/limits", "people": "/t/acme/people", "audit": "/t/acme/audit", "account": "/account", "privacy": "/t/acme/privacy"} {
		do(t, ctx, "open "+name, chromedp.Navigate(console+path), chromedp.WaitVisible(`main h1`))
		if name == "overview" {
			do(t, ctx, "overview charts", chromedp.WaitVisible(`.chart-area[data-drawn] canvas`))
		}
		accessible(t, ctx, name)
		shots.take(ctx, name)
	}

	// An export of one's own data downloads as NDJSON.
	downloads := filepath.Join(dir, "downloads")
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads,
	}); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "request an export", chromedp.Navigate(console+"/t/acme/privacy"), chromedp.Click(`#export-me`))
	var export []byte
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		files, _ := filepath.Glob(filepath.Join(downloads, "tollgate-export-acme-account-*.ndjson"))
		if len(files) == 1 {
			if export, err = os.ReadFile(files[0]); err == nil && strings.Contains(string(export), "olga@acme.example") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no complete export was downloaded within 30s: %v %.200s", files, export)
		}
	}
	if !strings.HasPrefix(string(export), `{"section":"export"`) || !strings.Contains(string(export), `"section":"accounts"`) {
		t.Errorf("the export: %.300s", export)
	}

	// Last month's invoice, made by the billing job's code from a request
	// of last month, downloads as CSV.
	st, err := store.Open(t.Context(), "sqlite://"+filepath.Join(dir, "tollgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	lastMonth := time.Date(time.Now().UTC().Year(), time.Now().UTC().Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0)
	tenantID := acct.GetAccount().GetTenantId()
	if resp, err := usageingest.New(st, slog.New(slog.DiscardHandler)).Store(t.Context(), &usagev1.IngestRequest{Records: []*usagev1.UsageRecord{{
		RequestId: uuid.NewString(), TenantId: tenantID, Model: "gpt-4o-mini", Provider: "openai", UpstreamModel: "gpt-4o-mini",
		InputTokens: 1200, OutputTokens: 800, CostMicros: 660, StatusCode: 200, LatencyMs: 90, Time: timestamppb.New(lastMonth.Add(48 * time.Hour)),
	}}}); err != nil || len(resp.GetRejected()) > 0 {
		t.Fatalf("storing last month's usage: %v %v", err, resp.GetRejected())
	}
	inv, err := billing.New(billing.Config{Store: st}).CreateInvoice(t.Context(), uuid.MustParse(tenantID), lastMonth, true)
	if err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "open the invoices", chromedp.Navigate(console+"/t/acme/invoices"), chromedp.WaitVisible(`main h1`))
	do(t, ctx, "open the invoice", chromedp.Click(`a[href$="/invoices/`+inv.ID.String()+`"]`), chromedp.WaitVisible(`a[href$=".csv"]`))
	shots.take(ctx, "invoice")
	do(t, ctx, "download the invoice", chromedp.Click(`a[href$=".csv"]`))
	var csv []byte
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if csv, err = os.ReadFile(filepath.Join(downloads, inv.Number+".csv")); err == nil && strings.Contains(string(csv), "gpt-4o-mini") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the invoice was not downloaded within 30s: %v", err)
		}
	}

	// Keyboard: the skip link is the first stop and moves focus to main.
	do(t, ctx, "keyboard", chromedp.Navigate(console+"/t/acme/keys"), chromedp.WaitVisible(`main h1`), chromedp.KeyEvent("\t"))
	focused := get(t, ctx, "the focused element", chromedp.Evaluate[string](`document.activeElement.className`))
	if focused != "skip" {
		t.Errorf("the first Tab stop is %q, want the skip link", focused)
	}

	// The operator: accepts each form's confirmation dialog, marks the
	// invoice paid, restricts the tenant with a reason (its key is then
	// refused on the data plane) and lifts it, and opens the tenant's
	// erasure plan without confirming it.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	confirmations := make(chan string, 8)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			confirmations <- ev.Message
			if _, err := chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true}); err != nil && ctx.Err() == nil {
				t.Errorf("accepting a confirmation: %v", err)
			}
		}
	}()
	confirmed := func(want string) {
		t.Helper()
		select {
		case msg := <-confirmations:
			if !strings.Contains(msg, want) {
				t.Errorf("the confirmation asked %q, want %q in it", msg, want)
			}
		default:
			t.Errorf("no confirmation was asked before %q", want)
		}
	}
	do(t, ctx, "sign out", chromedp.Submit(`form[action="/signout"] button`), chromedp.WaitVisible(`#email`))
	do(t, ctx, "operator sign-in",
		chromedp.Navigate(console+"/signin/operator"),
		chromedp.WaitVisible(`#token`),
		chromedp.SendKeys(`#token`, strings.TrimSpace(string(token))),
		chromedp.Submit(`#token`),
		chromedp.WaitVisible(`main table`),
	)
	do(t, ctx, "mark the invoice paid",
		chromedp.Navigate(console+"/t/acme/invoices/"+inv.ID.String()),
		chromedp.Click(`form:has(input[name=status][value=paid]) button`),
		chromedp.WaitVisible(`p.flash`),
	)
	confirmed("Mark invoice " + inv.Number + " as paid?")
	if flash := get(t, ctx, "the invoice's flash", chromedp.Text(`p.flash`)); !strings.Contains(flash, "marked paid") {
		t.Errorf("after marking paid: %q", flash)
	}
	do(t, ctx, "restrict the tenant",
		chromedp.Navigate(console+"/t/acme/privacy"),
		chromedp.WaitVisible(`#restrict-reason`),
		chromedp.SendKeys(`#restrict-reason`, "Payment dispute over "+inv.Number),
		// A click, not Submit: form.submit() skips the confirmation.
		chromedp.Click(`form[action$="/privacy/restrict"] button`),
		chromedp.WaitVisible(`#unrestrict-tenant`),
	)
	confirmed("Restrict Acme Corp?")
	accessible(t, ctx, "the operator's privacy page")
	shots.take(ctx, "restricted")
	// A restriction, and its lifting, reach ext_proc within about a second.
	until := func(int) bool { return true }
	if got := chatUntil(t, d.traffic, copied, body, http.StatusForbidden, until); !strings.Contains(string(got), "processing_restricted") {
		t.Errorf("the restricted tenant's refusal: %s", got)
	}
	do(t, ctx, "lift the restriction", chromedp.Click(`#unrestrict-tenant`), chromedp.WaitVisible(`p.flash`), chromedp.WaitNotPresent(`#unrestrict-tenant`))
	confirmed("Lift the restriction of Acme Corp?")
	chatUntil(t, d.traffic, copied, body, http.StatusOK, until)
	do(t, ctx, "the erasure plan", chromedp.Click(`#erase-tenant`), chromedp.WaitVisible(`#confirm`))
	accessible(t, ctx, "the erasure plan")
	if plan := get(t, ctx, "the erasure plan", chromedp.Text(`main`)); !strings.Contains(plan, "cannot be undone") {
		t.Errorf("the erasure plan does not say it is irreversible: %q", plan)
	}
	do(t, ctx, "cancel the erasure", chromedp.Click(`main a[href="/t/acme/privacy"]`), chromedp.WaitVisible(`#erase-tenant`))
}

// accessible checks the page: every control has a label; one main
// landmark, one h1.
func accessible(t *testing.T, ctx context.Context, name string) { //nolint:revive // t first, as in every helper here
	t.Helper()
	unlabelled := get(t, ctx, "labels on "+name, chromedp.Evaluate[string](`Array.from(document.querySelectorAll(
		"main input:not([type=hidden]), main select, main textarea")).filter(e => e.labels.length === 0 && !e.getAttribute("aria-label")).map(e => e.id || e.name).join(",")`))
	if unlabelled != "" {
		t.Errorf("%s: controls without a label: %s", name, unlabelled)
	}
	if n := get(t, ctx, "landmarks on "+name, chromedp.Evaluate[int](`document.querySelectorAll("main").length * 10 + document.querySelectorAll("h1").length`)); n != 11 {
		t.Errorf("%s: %d main landmarks and %d h1, want one of each", name, n/10, n%10)
	}
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) { //nolint:revive // t first, as in every helper here
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T { //nolint:revive // likewise
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// screenshots saves full-page screenshots when envScreenshots names a
// directory.
type screenshots struct {
	t   *testing.T
	dir string
}

func newScreenshots(t *testing.T) *screenshots {
	return &screenshots{t: t, dir: os.Getenv(envScreenshots)}
}

func (s *screenshots) take(ctx context.Context, name string) {
	s.t.Helper()
	if s.dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		s.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, fmt.Sprintf("console-%s.png", name)), png, 0o644); err != nil {
		s.t.Fatal(err)
	}
}
