package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/billing"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

const (
	owner = adminv1.AccountRole_ACCOUNT_ROLE_OWNER

	member = adminv1.AccountRole_ACCOUNT_ROLE_MEMBER
	viewer = adminv1.AccountRole_ACCOUNT_ROLE_VIEWER
)

var secretOnPage = regexp.MustCompile(`value="(tg-[0-9A-Za-z]{43})"`)

func TestEveryPageRendersForASignedInOwner(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := newConsole(t, st)
		c.tenant("acme")
		c.person("acme", "olga@acme.example", owner)
		k := c.key("acme", "ci", "")
		_, err := adminv1.NewPolicyServiceClient(c.conn).UpdatePolicy(c.op(), &adminv1.UpdatePolicyRequest{
			Policy: &adminv1.Policy{
				Target:            &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_Tenant{Tenant: "acme"}},
				RequestsPerMinute: ptr(int64(600)),
				Budgets:           []*adminv1.Budget{{Period: adminv1.BudgetPeriod_BUDGET_PERIOD_MONTH, HardLimitMicros: ptr(int64(50_000_000))}},
			},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"requests_per_minute", "budgets"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		b := c.browser()

		p := b.get("/t/acme/")
		wantStatus(t, "overview before sign-in", p, http.StatusSeeOther)
		if p.location != "/signin?next="+url.QueryEscape("/t/acme/") {
			t.Errorf("redirect to %q", p.location)
		}
		b.signIn("olga@acme.example")
		wantStatus(t, "home", b.get("/"), http.StatusSeeOther)
		for path, want := range map[string][]string{
			"/t/acme/":      {"Acme Inc", "This month", "Budgets", "data-chart="},
			"/t/acme/usage": {"Download CSV", "data-chart=", "All keys"},
			"/t/acme/usage?group=day&split=model&metric=latency": {"By day"},
			"/t/acme/keys":              {"ci", k.GetPrefix(), "Create a key"},
			"/t/acme/keys/" + k.GetId(): {"Rotate secret", "Revoke key", "This key's limits"},
			"/t/acme/limits":            {"Limits and budgets", "requests_per_minute"},
			"/t/acme/audit":             {"key.create", "session.create"},
			"/t/acme/people":            {"olga@acme.example", "Add a person"},
			"/account":                  {"olga@acme.example", "Signed-in sessions", "(this one)"},
		} {
			p := b.get(path)
			wantStatus(t, path, p, http.StatusOK)
			wantIn(t, path, p, want...)
			wantIn(t, path, p, `<main id="main"`, "<h1>", `lang="en"`)
		}
		csv := b.get("/t/acme/usage.csv?group=model")
		wantStatus(t, "usage.csv", csv, http.StatusOK)
		if ct := csv.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
			t.Errorf("usage.csv Content-Type %q", ct)
		}
		if !strings.HasPrefix(csv.body, "model,requests,errors,error_rate,") {
			t.Errorf("usage.csv header: %q", strings.SplitN(csv.body, "\n", 2)[0])
		}
		wantStatus(t, "bad dates", b.get("/t/acme/usage?from=yesterday"), http.StatusBadRequest)
		wantStatus(t, "no such page", b.get("/nope"), http.StatusNotFound)
	})
}

func TestKeysAreCreatedShownOnceRotatedAndRevoked(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := newConsole(t, st)
		c.tenant("acme")
		c.person("acme", "olga@acme.example", owner)
		b := c.browser()
		b.signIn("olga@acme.example")
		b.get("/t/acme/keys")

		p := b.post("/t/acme/keys", url.Values{"name": {"billing"}, "expires": {"2099-12-31"}, "models": {"gpt-4o-mini\ngpt-4o"}})
		wantStatus(t, "create", p, http.StatusOK)
		m := secretOnPage.FindStringSubmatch(p.body)
		if m == nil {
			t.Fatalf("the new key's secret is not on the page:\n%s", p.body)
		}
		wantIn(t, "create", p, `data-copy="new-secret"`, "only time the secret is shown")
		if p.header.Get("Cache-Control") != "no-store" {
			t.Errorf("a page with a secret may be cached: Cache-Control %q", p.header.Get("Cache-Control"))
		}
		list := b.get("/t/acme/keys")
		if strings.Contains(list.body, m[1]) {
			t.Error("the key list shows the secret again")
		}
		keys, err := adminv1.NewKeyServiceClient(c.conn).ListKeys(c.op(), &adminv1.ListKeysRequest{Tenant: "acme"})
		if err != nil || len(keys.GetKeys()) != 1 {
			t.Fatalf("keys = %v, %v", keys, err)
		}
		k := keys.GetKeys()[0]
		if got := strings.Join(k.GetAllowedModels(), ","); got != "gpt-4o-mini,gpt-4o" || k.GetExpireTime().AsTime().Year() != 2099 {
			t.Errorf("key = %v", k)
		}

		bad := b.post("/t/acme/keys", url.Values{"name": {""}})
		wantStatus(t, "create without a name", bad, http.StatusBadRequest)
		wantIn(t, "create without a name", bad, "key.name")

		b.get("/t/acme/keys/" + k.GetId())
		rot := b.post("/t/acme/keys/"+k.GetId()+"/rotate", nil)
		wantStatus(t, "rotate", rot, http.StatusOK)
		m2 := secretOnPage.FindStringSubmatch(rot.body)
		if m2 == nil || m2[1] == m[1] {
			t.Fatalf("rotation showed no new secret")
		}
		saved := b.post("/t/acme/keys/"+k.GetId(), url.Values{"name": {"billing v2"}, "expires": {""}, "models": {""}})
		wantStatus(t, "save", saved, http.StatusSeeOther)
		rev := b.post("/t/acme/keys/"+k.GetId()+"/revoke", nil)
		wantStatus(t, "revoke", rev, http.StatusSeeOther)
		got, err := adminv1.NewKeyServiceClient(c.conn).GetKey(c.op(), &adminv1.GetKeyRequest{Id: k.GetId()})
		if err != nil || got.GetKey().GetRevokeTime() == nil || got.GetKey().GetName() != "billing v2" || got.GetKey().GetExpireTime() != nil {
			t.Errorf("after save and revoke: %v, %v", got.GetKey(), err)
		}
	})
}

func TestRolesDecideWhatThePagesAllow(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := newConsole(t, st)
		c.tenant("acme")
		o := c.person("acme", "olga@acme.example", owner)
		c.person("acme", "mo@acme.example", member)
		c.person("acme", "vi@acme.example", viewer)
		teamKey := c.key("acme", "team", o.GetId())

		mb := c.browser()
		mb.signIn("mo@acme.example")
		page := mb.get("/t/acme/keys/" + teamKey.GetId())
		wantStatus(t, "member views the owner's key", page, http.StatusOK)
		if strings.Contains(page.body, "Revoke key") {
			t.Error("a member is offered to revoke another person's key")
		}
		rev := mb.post("/t/acme/keys/"+teamKey.GetId()+"/revoke", nil)
		wantStatus(t, "member revokes the owner's key", rev, http.StatusForbidden)
		got, _ := adminv1.NewKeyServiceClient(c.conn).GetKey(c.op(), &adminv1.GetKeyRequest{Id: teamKey.GetId()})
		if got.GetKey().GetRevokeTime() != nil {
			t.Fatal("a member revoked another person's key")
		}
		mb.get("/t/acme/keys")
		own := mb.post("/t/acme/keys", url.Values{"name": {"mine"}})
		wantStatus(t, "member creates a key", own, http.StatusOK)
		if mb.get("/t/acme/people").body == "" || strings.Contains(mb.get("/t/acme/people").body, "Add a person") {
			t.Error("a member is offered to add people")
		}
		wantStatus(t, "member adds a person", mb.post("/t/acme/people", url.Values{"email": {"x@acme.example"}, "role": {"owner"}}), http.StatusForbidden)

		vb := c.browser()
		vb.signIn("vi@acme.example")
		keys := vb.get("/t/acme/keys")
		if strings.Contains(keys.body, "Create a key") {
			t.Error("a viewer is offered to create keys")
		}
		wantStatus(t, "viewer creates a key", vb.post("/t/acme/keys", url.Values{"name": {"v"}}), http.StatusForbidden)
		wantStatus(t, "viewer rotates a key", vb.post("/t/acme/keys/"+teamKey.GetId()+"/rotate", nil), http.StatusForbidden)
		wantStatus(t, "viewer reads usage", vb.get("/t/acme/usage"), http.StatusOK)
	})
}

// One tenant's people cannot reach another tenant's pages or objects by
// editing a URL: the admin API answers NotFound, and so does the console.
func TestAnotherTenantsPagesAreNotFound(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := newConsole(t, st)
		c.tenant("acme")
		c.tenant("globex")
		c.person("acme", "olga@acme.example", owner)
		gAcct := c.person("globex", "gus@globex.example", owner)
		gKey := c.key("globex", "secret-project", "")
		b := c.browser()
		b.signIn("olga@acme.example")
		b.get("/t/acme/keys")
		for _, path := range []string{"/t/globex/", "/t/globex/usage", "/t/globex/usage.csv", "/t/globex/keys", "/t/globex/limits", "/t/globex/audit", "/t/globex/people",
			"/t/globex/keys/" + gKey.GetId(), "/t/acme/keys/" + gKey.GetId(), "/t/" + gKey.GetTenantId() + "/"} {
			p := b.get(path)
			wantStatus(t, path, p, http.StatusNotFound)
			if strings.Contains(p.body, "secret-project") || strings.Contains(p.body, "Globex") {
				t.Errorf("%s shows globex's data", path)
			}
		}
		for _, path := range []string{"/t/acme/keys/" + gKey.GetId() + "/revoke", "/t/globex/keys/" + gKey.GetId() + "/revoke", "/t/acme/keys/" + gKey.GetId() + "/rotate",
			"/t/acme/people/" + gAcct.GetId() + "/delete", "/t/globex/people/" + gAcct.GetId() + "/link"} {
			wantStatus(t, "POST "+path, b.post(path, nil), http.StatusNotFound)
		}
		got, _ := adminv1.NewKeyServiceClient(c.conn).GetKey(c.op(), &adminv1.GetKeyRequest{Id: gKey.GetId()})
		if got.GetKey().GetRevokeTime() != nil || got.GetKey().GetPrefix() != gKey.GetPrefix() {
			t.Fatal("acme's owner changed globex's key")
		}
	})
}

func TestPostsWithoutTheFormTokenFail(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := newConsole(t, st)
		c.tenant("acme")
		c.person("acme", "olga@acme.example", owner)
		k := c.key("acme", "ci", "")
		b := c.browser()
		b.signIn("olga@acme.example")
		b.get("/t/acme/keys")
		forms := map[string]url.Values{
			"/t/acme/keys":                          {"name": {"x"}},
			"/t/acme/keys/" + k.GetId():             {"name": {"x"}},
			"/t/acme/keys/" + k.GetId() + "/revoke": nil,
			"/t/acme/keys/" + k.GetId() + "/rotate": nil,
			"/t/acme/people":                        {"email": {"p@acme.example"}, "role": {"member"}},
			"/account/name":                         {"name": {"x"}},
			"/account/password":                     {"current": {password}, "password": {"x"}, "confirm": {"x"}},
			"/account/sessions/revoke-others":       nil,
			"/signout":                              nil,
		}
		for path, form := range forms {
			for name, token := range map[string]string{"none": "", "wrong": wrongToken(b.csrf)} {
				f := url.Values{}
				for k, v := range form {
					f[k] = v
				}
				f.Set("csrf", token)
				wantStatus(t, name+" token: POST "+path, b.post(path, f), http.StatusForbidden)
			}
		}
		// A right token from another site's page is refused too.
		req, _ := http.NewRequest(http.MethodPost, c.srv.URL+"/t/acme/keys/"+k.GetId()+"/revoke", strings.NewReader(url.Values{"csrf": {b.csrf}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		wantStatus(t, "cross-site post", b.do(req), http.StatusForbidden)
		got, _ := adminv1.NewKeyServiceClient(c.conn).GetKey(c.op(), &adminv1.GetKeyRequest{Id: k.GetId()})
		if got.GetKey().GetRevokeTime() != nil || got.GetKey().GetName() != "ci" {
			t.Fatal("a post without a valid token changed the key")
		}
		// The sign-in form is protected too (login CSRF).
		anon := c.browser()
		anon.get("/signin")
		wantStatus(t, "sign-in without token", anon.post("/signin", url.Values{"csrf": {""}, "email": {"olga@acme.example"}, "password": {password}}), http.StatusForbidden)
	})
}

func TestSignedOutAndRevokedSessionsEnd(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := newConsole(t, st)
		c.tenant("acme")
		c.person("acme", "olga@acme.example", owner)
		laptop, phone := c.browser(), c.browser()
		laptop.signIn("olga@acme.example")
		phone.signIn("olga@acme.example")
		wantStatus(t, "phone", phone.get("/t/acme/keys"), http.StatusOK)

		laptop.get("/account")
		wantStatus(t, "revoke others", laptop.post("/account/sessions/revoke-others", nil), http.StatusSeeOther)
		p := phone.get("/t/acme/keys")
		wantStatus(t, "phone after revocation", p, http.StatusSeeOther)
		if !strings.HasPrefix(p.location, "/signin") {
			t.Errorf("phone redirected to %q", p.location)
		}
		wantStatus(t, "laptop", laptop.get("/t/acme/keys"), http.StatusOK)

		wantStatus(t, "sign out", laptop.post("/signout", nil), http.StatusSeeOther)
		wantStatus(t, "laptop after sign-out", laptop.get("/t/acme/keys"), http.StatusSeeOther)
	})
}

func TestCookiesAndHeaders(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := newConsole(t, st)
		c.tenant("acme")
		c.person("acme", "olga@acme.example", owner)
		b := c.browser()
		b.get("/signin")
		p := b.post("/signin", url.Values{"email": {"olga@acme.example"}, "password": {password}})
		var cookie *http.Cookie
		for _, ck := range (&http.Response{Header: p.header}).Cookies() {
			if ck.Name == "__Host-tollgate_session" {
				cookie = ck
			}
		}
		if cookie == nil {
			t.Fatalf("no __Host- session cookie: %v", p.header["Set-Cookie"])
		}
		if !cookie.Secure || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || cookie.Domain != "" {
			t.Errorf("session cookie %+v", cookie)
		}
		h := b.get("/t/acme/").header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "default-src 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("CSP %q lacks %q", csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") {
			t.Errorf("CSP allows inline code: %q", csp)
		}
		for k, v := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Strict-Transport-Security": "max-age=31536000"} {
			if h.Get(k) != v {
				t.Errorf("%s = %q, want %q", k, h.Get(k), v)
			}
		}
		// No page has inline script or style attributes (the CSP would
		// block them).
		for _, path := range []string{"/t/acme/", "/t/acme/usage", "/t/acme/keys", "/account", "/signin"} {
			body := b.get(path).body
			if regexp.MustCompile(`<script>|<script [^>]*>[^<]|<style|style="|onclick=|onsubmit=`).MatchString(body) {
				t.Errorf("%s has inline script or style", path)
			}
		}
	})
}

func TestSignInFailuresAndRedirects(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := newConsole(t, st)
		c.tenant("acme")
		c.person("acme", "olga@acme.example", owner)
		b := c.browser()
		b.get("/signin")
		for _, f := range []url.Values{
			{"email": {"olga@acme.example"}, "password": {"wrong password"}},
			{"email": {"nobody@acme.example"}, "password": {password}},
		} {
			p := b.post("/signin", f)
			wantStatus(t, "bad sign-in", p, http.StatusUnauthorized)
			wantIn(t, "bad sign-in", p, "wrong e-mail or password")
		}
		// next= must stay on this site.
		p := b.post("/signin", url.Values{"email": {"olga@acme.example"}, "password": {password}, "next": {"//evil.example/x"}})
		wantStatus(t, "sign-in", p, http.StatusSeeOther)
		if p.location != "/t/acme/" {
			t.Errorf("after sign-in with an off-site next: %q", p.location)
		}
	})
}

func TestOperatorSeesEveryTenant(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := newConsole(t, st)
		c.tenant("acme")
		c.tenant("globex")
		b := c.browser()
		b.get("/signin/operator")
		wantStatus(t, "wrong operator token", b.post("/signin/operator", url.Values{"token": {"tgop-nope"}}), http.StatusUnauthorized)
		b.signInOperator()
		p := b.get("/tenants")
		wantStatus(t, "tenants", p, http.StatusOK)
		wantIn(t, "tenants", p, `href="/t/acme/"`, `href="/t/globex/"`)
		for _, path := range []string{"/t/acme/", "/t/globex/keys", "/t/globex/limits", "/account"} {
			wantStatus(t, path, b.get(path), http.StatusOK)
		}
		// Tenant people are sent to their own tenant.
		c.person("acme", "olga@acme.example", owner)
		o := c.browser()
		o.signIn("olga@acme.example")
		if p := o.get("/tenants"); p.code != http.StatusSeeOther || p.location != "/t/acme/" {
			t.Errorf("a tenant owner on /tenants: %d %q", p.code, p.location)
		}
	})
}

func TestPasswordsByEmailedLink(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		m := &fakeMailer{got: make(chan Message, 10)}
		c := newConsole(t, st, withMail(m))
		c.tenant("acme")
		c.person("acme", "olga@acme.example", owner)

		// An admin adds a person; the console e-mails them a link.
		ob := c.browser()
		ob.signIn("olga@acme.example")
		ob.get("/t/acme/people")
		wantStatus(t, "add", ob.post("/t/acme/people", url.Values{"email": {"Nia@Acme.example"}, "name": {"Nia"}, "role": {"viewer"}}), http.StatusSeeOther)
		invite := waitMail(t, m)
		if invite.To != "nia@acme.example" || !strings.Contains(invite.Text, "/signin/password?token=tgpwd-") {
			t.Fatalf("invite = %+v", invite)
		}
		link := regexp.MustCompile(`/signin/password\?token=\S+`).FindString(invite.Text)
		nb := c.browser()
		wantStatus(t, "link page", nb.get(link), http.StatusOK)
		token := strings.TrimPrefix(link, "/signin/password?token=")
		short := nb.post("/signin/password", url.Values{"token": {token}, "password": {"short"}, "confirm": {"short"}})
		wantStatus(t, "short password", short, http.StatusBadRequest)
		wantIn(t, "short password", short, "at least 12 characters")
		set := nb.post("/signin/password", url.Values{"token": {token}, "password": {password}, "confirm": {password}})
		wantStatus(t, "set password", set, http.StatusSeeOther)
		wantStatus(t, "link again", nb.get(link), http.StatusNotFound)
		nb.signIn("nia@acme.example")

		// Forgot password: the same answer for known and unknown addresses;
		// mail only for the known one.
		fb := c.browser()
		fb.get("/signin/forgot")
		known := fb.post("/signin/forgot", url.Values{"email": {"olga@acme.example"}})
		unknown := fb.post("/signin/forgot", url.Values{"email": {"nobody@acme.example"}})
		if known.code != unknown.code || stripCSRF(known.body) != stripCSRF(unknown.body) {
			t.Error("the forgot-password answer differs between a known and an unknown address")
		}
		reset := waitMail(t, m)
		if reset.To != "olga@acme.example" || !strings.Contains(reset.Subject, "Reset") {
			t.Errorf("reset mail = %+v", reset)
		}
		select {
		case extra := <-m.got:
			t.Errorf("mail for an unknown address: %+v", extra)
		case <-time.After(50 * time.Millisecond):
		}
	})
}

func stripCSRF(s string) string { return csrfField.ReplaceAllString(s, "") }

func waitMail(t *testing.T, m *fakeMailer) Message {
	t.Helper()
	select {
	case msg := <-m.got:
		return msg
	case <-time.After(10 * time.Second):
		t.Fatal("no e-mail was sent within 10s")
	}
	return Message{}
}

func TestWithoutEmailAdminsGetTheLinkToHandOver(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := newConsole(t, st)
		c.tenant("acme")
		c.person("acme", "olga@acme.example", owner)
		b := c.browser()
		b.signIn("olga@acme.example")
		b.get("/t/acme/people")
		p := b.post("/t/acme/people", url.Values{"email": {"nia@acme.example"}, "role": {"member"}})
		wantStatus(t, "add", p, http.StatusOK)
		wantIn(t, "add", p, "/signin/password?token=tgpwd-", "Give this link to nia@acme.example")
	})
}

// The vendored chart library is the version the lockfile pins (make
// web-vendor copies it; make check fails if the copy differs from what npm
// ci installs from the lockfile).
func TestVendoredChartLibraryMatchesTheLockfile(t *testing.T) {
	lock, err := os.ReadFile("npm/package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	v := regexp.MustCompile(`"node_modules/uplot": \{\s*"version": "([^"]+)"`).FindSubmatch(lock)
	if v == nil {
		t.Fatal("the lockfile pins no uplot version")
	}
	js, err := assets.ReadFile("static/vendor/uPlot.iife.min.js")
	if err != nil {
		t.Fatal(err)
	}
	if want := "(v" + string(v[1]) + ")"; !strings.Contains(string(js[:min(200, len(js))]), want) {
		t.Errorf("static/vendor/uPlot.iife.min.js is not uPlot %s; run make web-vendor", v[1])
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{"": "/", "/t/a/keys?x=1": "/t/a/keys?x=1", "//evil.example": "/", "https://evil.example/": "/", "/\\evil.example": "/", "keys": "/"} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMoneyAndNumbers(t *testing.T) {
	for micros, want := range map[int64]string{0: "$0.00", 1_234_567: "$1.23", 1_234_567_890_000: "$1,234,567.89", 1500: "$0.001500", -2_500_000: "-$2.50"} {
		if got := money(micros); got != want {
			t.Errorf("money(%d) = %q, want %q", micros, got, want)
		}
	}
	if got := csvSafe("=HYPERLINK(1)"); got != "'=HYPERLINK(1)" {
		t.Errorf("csvSafe = %q", got)
	}
	_ = context.Background
}

func ptr[T any](v T) *T { return &v }

func TestPrivacyExportAndErasure(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := newConsole(t, st)
		c.tenant("acme")
		c.tenant("globex")
		c.person("acme", "olga@acme.example", owner)
		mo := c.person("acme", "mo@acme.example", member)
		c.key("acme", "mo's key", mo.GetId())

		mb := c.browser()
		mb.signIn("mo@acme.example")
		p := mb.get("/t/acme/privacy")
		wantStatus(t, "privacy page", p, http.StatusOK)
		wantIn(t, "privacy page", p, "Download my data", "Erase my account", "not restricted")
		if strings.Contains(p.body, "Download all of") {
			t.Error("a member is offered the tenant's export")
		}
		exp := mb.post("/t/acme/privacy/export", url.Values{"subject": {"me"}})
		wantStatus(t, "member's export", exp, http.StatusOK)
		if !strings.Contains(exp.header.Get("Content-Disposition"), "attachment") || !strings.HasPrefix(exp.body, `{"section":"export"`) || !strings.Contains(exp.body, "mo@acme.example") {
			t.Errorf("export: %q\n%.300s", exp.header.Get("Content-Disposition"), exp.body)
		}
		if strings.Contains(exp.body, "olga@acme.example") {
			t.Error("a member's export holds another person's data")
		}
		wantStatus(t, "member exports the tenant", mb.post("/t/acme/privacy/export", url.Values{"subject": {"tenant"}}), http.StatusForbidden)
		wantStatus(t, "another tenant's export", mb.post("/t/globex/privacy/export", url.Values{"subject": {"me"}}), http.StatusNotFound)

		ob := c.browser()
		ob.signIn("olga@acme.example")
		ob.get("/t/acme/privacy")
		wantStatus(t, "owner exports the tenant", ob.post("/t/acme/privacy/export", url.Values{"subject": {"tenant"}}), http.StatusOK)

		// Erasure needs the plan's token and the typed address.
		mb.get("/t/acme/privacy")
		prep := mb.post("/t/acme/privacy/erase/prepare", url.Values{"subject": {"me"}})
		wantStatus(t, "prepare erasure", prep, http.StatusOK)
		wantIn(t, "prepare erasure", prep, "Erase your account?", "1 key(s)")
		token := regexp.MustCompile(`name="token" value="([^"]+)"`).FindStringSubmatch(prep.body)
		if token == nil {
			t.Fatal("no confirmation token on the page")
		}
		wrong := mb.post("/t/acme/privacy/erase", url.Values{"subject": {"me"}, "token": {token[1]}, "confirm": {"someone@else"}})
		wantStatus(t, "erase without the address", wrong, http.StatusBadRequest)
		done := mb.post("/t/acme/privacy/erase", url.Values{"subject": {"me"}, "token": {token[1]}, "confirm": {"MO@acme.example"}})
		wantStatus(t, "erase", done, http.StatusOK)
		wantIn(t, "erase", done, "Your account is erased")
		if _, err := adminv1.NewAccountServiceClient(c.conn).GetAccount(c.op(), &adminv1.GetAccountRequest{Id: mo.GetId()}); err == nil {
			t.Error("the account survived its erasure")
		}
		wantStatus(t, "after erasure", mb.get("/t/acme/"), http.StatusSeeOther)
	})
}

func TestInvoicesListDetailAndDownload(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := newConsole(t, st)
		acme := c.tenant("acme")
		globex := c.tenant("globex")
		c.person("acme", "vi@acme.example", viewer)
		bill := billing.New(billing.Config{Store: st})
		lastMonth := monthStart(time.Now().UTC()).AddDate(0, -1, 0)
		// A record of the month before that arrives after that month's
		// invoice: last month's invoice bills it as prior-period usage.
		before := lastMonth.AddDate(0, -1, 0)
		c.usage(st, acme.GetId(), "", "gpt-4o-mini", before.Add(36*time.Hour), 100, 50, 150)
		if _, err := bill.CreateInvoice(context.Background(), uuid.MustParse(acme.GetId()), before, true); err != nil {
			t.Fatal(err)
		}
		c.usage(st, acme.GetId(), "", "o3-late", before.Add(48*time.Hour), 100, 50, 700)
		c.usage(st, acme.GetId(), "", "gpt-4o-mini", lastMonth.Add(36*time.Hour), 1000, 500, 1_500)
		c.usage(st, globex.GetId(), "", "gpt-4o", lastMonth.Add(36*time.Hour), 1000, 500, 9_000)
		inv, err := bill.CreateInvoice(context.Background(), uuid.MustParse(acme.GetId()), lastMonth, true)
		if err != nil {
			t.Fatal(err)
		}
		ginv, err := bill.CreateInvoice(context.Background(), uuid.MustParse(globex.GetId()), lastMonth, true)
		if err != nil {
			t.Fatal(err)
		}
		b := c.browser()
		b.signIn("vi@acme.example")
		list := b.get("/t/acme/invoices")
		wantStatus(t, "invoices", list, http.StatusOK)
		wantIn(t, "invoices", list, inv.Number, "issued", lastMonth.Format("January 2006"))
		detail := b.get("/t/acme/invoices/" + inv.ID.String())
		wantStatus(t, "invoice", detail, http.StatusOK)
		wantIn(t, "invoice", detail, "Invoice "+inv.Number, "Download CSV", "Total", "gpt-4o-mini", "$0.0015",
			"o3-late<br><span class=\"hint\">used in "+before.Format("January 2006"), "billed once, here")
		if n := strings.Count(detail.body, `<span class="hint">used in `); n != 1 {
			t.Errorf("the invoice marks %d lines as prior-period usage, want 1", n)
		}
		csv := b.get("/t/acme/invoices/" + inv.ID.String() + ".csv")
		wantStatus(t, "invoice CSV", csv, http.StatusOK)
		if !strings.HasPrefix(csv.header.Get("Content-Type"), "text/csv") || !strings.Contains(csv.header.Get("Content-Disposition"), inv.Number+".csv") {
			t.Errorf("CSV headers: %v", csv.header)
		}
		wantStatus(t, "invoice JSON", b.get("/t/acme/invoices/"+inv.ID.String()+".json"), http.StatusOK)
		wantStatus(t, "unknown format", b.get("/t/acme/invoices/"+inv.ID.String()+".pdf"), http.StatusNotFound)
		for _, path := range []string{"/t/acme/invoices/" + ginv.ID.String(), "/t/acme/invoices/" + ginv.ID.String() + ".csv", "/t/globex/invoices"} {
			p := b.get(path)
			wantStatus(t, path, p, http.StatusNotFound)
			if strings.Contains(p.body, ginv.Number) {
				t.Errorf("%s shows globex's invoice", path)
			}
		}
	})
}

func TestClientAddressBehindAProxy(t *testing.T) {
	direct := &Server{}
	proxied := &Server{cfg: Config{ClientIPHeader: "X-Forwarded-For"}}
	r := httptest.NewRequest(http.MethodPost, "/signin", nil)
	r.RemoteAddr = "10.0.0.5:41000"
	r.Header.Add("X-Forwarded-For", "203.0.113.9, 198.51.100.1")
	r.Header.Add("X-Forwarded-For", "192.0.2.44")
	if got := direct.clientAddr(r); got != "10.0.0.5" {
		t.Errorf("without the header setting: %q, want the peer", got)
	}
	if got := proxied.clientAddr(r); got != "192.0.2.44" {
		t.Errorf("behind the proxy: %q, want the last entry", got)
	}
	r.Header.Set("X-Forwarded-For", "not an address")
	if got := proxied.clientAddr(r); got != "10.0.0.5" {
		t.Errorf("a malformed header: %q, want the peer", got)
	}
}
