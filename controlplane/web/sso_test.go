package web

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

// fakeIDP is an OpenID Connect provider in the test process: discovery,
// keys, an authorization endpoint that signs in whoever the test says, and
// a token endpoint that checks the code and its PKCE verifier.
type fakeIDP struct {
	t   *testing.T
	srv *httptest.Server
	key *rsa.PrivateKey

	mu    sync.Mutex
	user  idpUser
	codes map[string]idpGrant
}

type idpUser struct {
	sub, email string
	verified   bool
}

type idpGrant struct {
	user      idpUser
	nonce     string
	challenge string
	client    string
}

func newFakeIDP(t *testing.T) *fakeIDP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeIDP{t: t, key: key, codes: map[string]idpGrant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"issuer": f.srv.URL, "authorization_endpoint": f.srv.URL + "/authorize", "token_endpoint": f.srv.URL + "/token",
			"jwks_uri": f.srv.URL + "/jwks", "response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		b64 := base64.RawURLEncoding.EncodeToString
		writeJSON(w, map[string]any{"keys": []any{map[string]string{
			"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
			"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
		}}})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || !strings.Contains(q.Get("scope"), "openid") {
			http.Error(w, "bad authorization request", http.StatusBadRequest)
			return
		}
		code := randomToken()
		f.mu.Lock()
		f.codes[code] = idpGrant{user: f.user, nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), client: q.Get("client_id")}
		f.mu.Unlock()
		http.Redirect(w, r, q.Get("redirect_uri")+"?code="+code+"&state="+url.QueryEscape(q.Get("state")), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		f.mu.Lock()
		g, ok := f.codes[r.PostForm.Get("code")]
		delete(f.codes, r.PostForm.Get("code"))
		f.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if !ok || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
			w.WriteHeader(http.StatusBadRequest)
			writeJSON(w, map[string]string{"error": "invalid_grant"})
			return
		}
		writeJSON(w, map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": f.idToken(g)})
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeIDP) idToken(g idpGrant) string {
	b64 := base64.RawURLEncoding.EncodeToString
	head, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": "k1", "typ": "JWT"})
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{
		"iss": f.srv.URL, "sub": g.user.sub, "aud": g.client, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"nonce": g.nonce, "email": g.user.email, "email_verified": g.user.verified,
	})
	signing := b64(head) + "." + b64(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, f.key, crypto.SHA256, sum[:])
	if err != nil {
		f.t.Fatal(err)
	}
	return signing + "." + b64(sig)
}

func (f *fakeIDP) as(u idpUser) {
	f.mu.Lock()
	f.user = u
	f.mu.Unlock()
}

// ssoSignIn walks the browser through the provider and back; it returns
// the console's last answer.
func (b *browser) ssoSignIn() page {
	b.c.t.Helper()
	p := b.get("/signin/sso?next=" + url.QueryEscape("/t/acme/keys"))
	if p.code != http.StatusSeeOther {
		b.c.t.Fatalf("start: %d %s", p.code, p.body)
	}
	resp, err := b.http.Get(p.location) // the provider
	if err != nil {
		b.c.t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		b.c.t.Fatalf("provider: %d", resp.StatusCode)
	}
	cb, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		b.c.t.Fatal(err)
	}
	return b.get(cb.RequestURI())
}

func TestSingleSignOnWithOpenIDConnect(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		idp := newFakeIDP(t)
		c := newConsole(t, st)
		sso, err := NewSSO(context.Background(), SSOConfig{Name: "Example ID", Issuer: idp.srv.URL, ClientID: "tollgate-console", ClientSecret: "s3cret", BaseURL: c.srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		c.web.cfg.SSO = sso
		c.tenant("acme")
		c.person("acme", "olga@acme.example", owner)

		b := c.browser()
		wantIn(t, "sign-in page", b.get("/signin"), "Sign in with Example ID")

		// An unverified address binds nothing.
		idp.as(idpUser{sub: "u-1", email: "olga@acme.example", verified: false})
		p := b.ssoSignIn()
		if p.code != http.StatusSeeOther || p.location != "/signin?sso_error=no_account" {
			t.Fatalf("unverified: %d %q", p.code, p.location)
		}
		idp.as(idpUser{sub: "u-1", email: "olga@acme.example", verified: true})
		p = b.ssoSignIn()
		if p.code != http.StatusSeeOther || p.location != "/t/acme/keys" {
			t.Fatalf("verified: %d %q\n%s", p.code, p.location, p.body)
		}
		wantStatus(t, "keys after SSO", b.get("/t/acme/keys"), http.StatusOK)

		// Bound to the subject: another identity with the same address
		// does not get in.
		other := c.browser()
		idp.as(idpUser{sub: "u-2", email: "olga@acme.example", verified: true})
		if p := other.ssoSignIn(); p.location != "/signin?sso_error=no_account" {
			t.Errorf("a second identity: %d %q", p.code, p.location)
		}

		// A callback that did not start here is refused.
		stranger := c.browser()
		if p := stranger.get("/signin/sso/callback?code=x&state=y"); p.location != "/signin?sso_error=expired" {
			t.Errorf("callback without a start: %d %q", p.code, p.location)
		}
		b2 := c.browser()
		b2.get("/signin/sso")
		if p := b2.get("/signin/sso/callback?code=x&state=forged"); p.location != "/signin?sso_error=state" {
			t.Errorf("forged state: %d %q", p.code, p.location)
		}
	})
}
