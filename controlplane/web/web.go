// Package web is the tenant web console: server-rendered pages for usage,
// keys, limits, the audit log and the account, served by the control plane
// on --web-addr.
//
// The console has no path of its own to tenant data. Every page reads and
// every form writes through the admin gRPC API, over an in-process
// connection, with the person's session as the bearer credential; the admin
// API decides what that person's role may see and change, exactly as it
// would for tollgatectl. Only signing in (passwords, password links,
// single sign-on, sessions) is done here, through controlplane/signin.
//
// Pages are html/template; the only script is static/app.js (copy buttons,
// confirmations, charts with the vendored uPlot), loaded from this origin
// under a Content-Security-Policy that allows no inline script.
package web

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/signin"
)

// Config is what the console needs.
type Config struct {
	// Admin is a connection to the admin API (in-process in the control
	// plane). Calls carry the signed-in person's session.
	Admin grpc.ClientConnInterface
	// Sessions signs people in and finds their sessions.
	Sessions *signin.Service
	// BaseURL is the console's external address, e.g.
	// https://console.example.com, used in e-mailed links and as the
	// OpenID Connect redirect. Empty: links are made from the request's
	// Host, which is only safe behind a proxy that sets it.
	BaseURL string
	// Mailer sends password links; nil leaves e-mail out (an administrator
	// then hands out links from the accounts page).
	Mailer Mailer
	// SSO, if set, adds "Sign in with …" (OpenID Connect).
	SSO *SSO
	// ClientIPHeader names the header in which a proxy in front of the
	// console passes the client's address (X-Forwarded-For, X-Real-IP), so
	// that sign-in attempts are counted per client rather than per proxy.
	// Set it only behind such a proxy: otherwise clients choose the value.
	ClientIPHeader string
	// InsecureCookies drops the Secure attribute, for plain HTTP on
	// loopback only; every other deployment serves TLS.
	InsecureCookies bool
	Logger          *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Server serves the console.
type Server struct {
	cfg   Config
	pages map[string]*template.Template
	log   *slog.Logger
	mux   *http.ServeMux
	mails chan mailJob

	tenants  adminv1.TenantServiceClient
	keys     adminv1.KeyServiceClient
	accounts adminv1.AccountServiceClient
	usage    adminv1.UsageServiceClient
	policies adminv1.PolicyServiceClient
	audit    adminv1.AuditServiceClient
	privacy  adminv1.PrivacyServiceClient
	billing  adminv1.BillingServiceClient
}

// New checks cfg and builds the console.
func New(cfg Config) (*Server, error) {
	if cfg.Admin == nil || cfg.Sessions == nil {
		return nil, errors.New("web: an admin API connection and a sessions service are required")
	}
	if cfg.BaseURL != "" {
		u, err := url.Parse(cfg.BaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("web: the base URL %q must be an absolute http(s) URL without a path", cfg.BaseURL)
		}
		cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, pages: pages, log: cfg.Logger, mails: make(chan mailJob, mailQueue),
		tenants:  adminv1.NewTenantServiceClient(cfg.Admin),
		keys:     adminv1.NewKeyServiceClient(cfg.Admin),
		accounts: adminv1.NewAccountServiceClient(cfg.Admin),
		usage:    adminv1.NewUsageServiceClient(cfg.Admin),
		policies: adminv1.NewPolicyServiceClient(cfg.Admin),
		audit:    adminv1.NewAuditServiceClient(cfg.Admin),
		privacy:  adminv1.NewPrivacyServiceClient(cfg.Admin),
		billing:  adminv1.NewBillingServiceClient(cfg.Admin),
	}
	s.routes()
	return s, nil
}

// ServeHTTP serves the console with its security headers.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w, !s.cfg.InsecureCookies)
	s.mux.ServeHTTP(w, r)
}

// Run sends queued e-mail until ctx ends. Without it running, password
// links are not sent.
func (s *Server) Run(ctx context.Context) {
	if s.cfg.Mailer == nil {
		return
	}
	s.sendMail(ctx)
}

func (s *Server) routes() {
	m := http.NewServeMux()
	static, err := fs.Sub(assets, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	m.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(static)))
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })

	// Signing in and out.
	m.HandleFunc("GET /signin", s.anon(s.signInPage))
	m.HandleFunc("POST /signin", s.anon(s.signIn))
	m.HandleFunc("GET /signin/operator", s.anon(s.operatorPage))
	m.HandleFunc("POST /signin/operator", s.anon(s.operatorSignIn))
	m.HandleFunc("GET /signin/forgot", s.anon(s.forgotPage))
	m.HandleFunc("POST /signin/forgot", s.anon(s.forgot))
	m.HandleFunc("GET /signin/password", s.anon(s.setPasswordPage))
	m.HandleFunc("POST /signin/password", s.anon(s.setPassword))
	m.HandleFunc("GET /signin/sso", s.anon(s.ssoStart))
	m.HandleFunc("GET /signin/sso/callback", s.anon(s.ssoCallback))
	m.HandleFunc("POST /signout", s.authed(s.signOut))

	// Pages of one tenant.
	m.HandleFunc("GET /{$}", s.authed(s.home))
	m.HandleFunc("GET /tenants", s.authed(s.tenantList))
	m.HandleFunc("GET /t/{tenant}/{$}", s.authed(s.overview))
	m.HandleFunc("GET /t/{tenant}/usage", s.authed(s.usagePage))
	m.HandleFunc("GET /t/{tenant}/usage.csv", s.authed(s.usageCSV))
	m.HandleFunc("GET /t/{tenant}/keys", s.authed(s.keysPage))
	m.HandleFunc("POST /t/{tenant}/keys", s.authed(s.createKey))
	m.HandleFunc("GET /t/{tenant}/keys/{id}", s.authed(s.keyPage))
	m.HandleFunc("POST /t/{tenant}/keys/{id}", s.authed(s.updateKey))
	m.HandleFunc("POST /t/{tenant}/keys/{id}/revoke", s.authed(s.revokeKey))
	m.HandleFunc("POST /t/{tenant}/keys/{id}/rotate", s.authed(s.rotateKey))
	m.HandleFunc("GET /t/{tenant}/limits", s.authed(s.limitsPage))
	m.HandleFunc("GET /t/{tenant}/audit", s.authed(s.auditPage))
	m.HandleFunc("GET /t/{tenant}/invoices", s.authed(s.invoicesPage))
	m.HandleFunc("GET /t/{tenant}/invoices/{file}", s.authed(s.invoiceOrFile))
	m.HandleFunc("POST /t/{tenant}/invoices/{id}/status", s.authed(s.transitionInvoice))
	m.HandleFunc("GET /t/{tenant}/privacy", s.authed(s.privacyPage))
	m.HandleFunc("POST /t/{tenant}/privacy/export", s.authed(s.exportData))
	m.HandleFunc("POST /t/{tenant}/privacy/erase/prepare", s.authed(s.prepareErasure))
	m.HandleFunc("POST /t/{tenant}/privacy/erase", s.authed(s.erase))
	m.HandleFunc("POST /t/{tenant}/privacy/restrict", s.authed(s.restrictTenant))
	m.HandleFunc("POST /t/{tenant}/privacy/unrestrict", s.authed(s.unrestrictTenant))
	m.HandleFunc("GET /t/{tenant}/people", s.authed(s.peoplePage))
	m.HandleFunc("POST /t/{tenant}/people", s.authed(s.addPerson))
	m.HandleFunc("POST /t/{tenant}/people/{id}", s.authed(s.updatePerson))
	m.HandleFunc("POST /t/{tenant}/people/{id}/delete", s.authed(s.deletePerson))
	m.HandleFunc("POST /t/{tenant}/people/{id}/link", s.authed(s.sendPasswordLink))
	m.HandleFunc("POST /t/{tenant}/people/{id}/restrict", s.authed(s.restrictPerson))
	m.HandleFunc("POST /t/{tenant}/people/{id}/unrestrict", s.authed(s.unrestrictPerson))

	// The signed-in person.
	m.HandleFunc("GET /account", s.authed(s.accountPage))
	m.HandleFunc("POST /account/name", s.authed(s.changeName))
	m.HandleFunc("POST /account/password", s.authed(s.changePassword))
	m.HandleFunc("POST /account/sessions/{id}/revoke", s.authed(s.revokeSession))
	m.HandleFunc("POST /account/sessions/revoke-others", s.authed(s.revokeOtherSessions))

	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { s.notFound(w, r) })
	s.mux = m
}

// staticHandler serves embedded assets with a long cache lifetime: their
// URLs carry the build's asset version (see assetVersion).
func staticHandler(fsys fs.FS) http.Handler {
	files := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") || r.URL.Path == "" {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("v") == assetVersion {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(w, r)
	})
}

func (s *Server) now() time.Time { return s.cfg.Now().UTC() }
