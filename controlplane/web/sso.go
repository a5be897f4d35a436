package web

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/tollgate-dev/tollgate/controlplane/signin"
)

// SSO is single sign-on with one OpenID Connect provider (authorization
// code flow with PKCE, state and nonce).
type SSO struct {
	// Name labels the button: "Sign in with <Name>".
	Name     string
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
	issuer   string
}

// SSOConfig names the provider and this console's client at it.
type SSOConfig struct {
	Name         string
	Issuer       string
	ClientID     string
	ClientSecret string
	// BaseURL is the console's external address; the provider must allow
	// BaseURL + "/signin/sso/callback" as a redirect URI.
	BaseURL string
}

// NewSSO discovers the provider's endpoints and keys at its issuer URL.
func NewSSO(ctx context.Context, c SSOConfig) (*SSO, error) {
	if c.Issuer == "" || c.ClientID == "" || c.BaseURL == "" {
		return nil, errors.New("sso: the issuer, the client id and the console's base URL are required")
	}
	p, err := oidc.NewProvider(ctx, c.Issuer)
	if err != nil {
		return nil, fmt.Errorf("sso: discovering %s: %w", c.Issuer, err)
	}
	name := c.Name
	if name == "" {
		name = "single sign-on"
	}
	return &SSO{
		Name:   name,
		issuer: c.Issuer,
		oauth: oauth2.Config{
			ClientID: c.ClientID, ClientSecret: c.ClientSecret, Endpoint: p.Endpoint(),
			RedirectURL: strings.TrimSuffix(c.BaseURL, "/") + "/signin/sso/callback",
			Scopes:      []string{oidc.ScopeOpenID, "email", "profile"},
		},
		verifier: p.Verifier(&oidc.Config{ClientID: c.ClientID}),
	}, nil
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// ssoStart sends the browser to the provider, remembering in a short-lived
// cookie what the callback must find again.
func (s *Server) ssoStart(w http.ResponseWriter, r *http.Request, _ string) {
	if s.cfg.SSO == nil {
		s.notFound(w, r)
		return
	}
	state, nonce, verifier := randomToken(), randomToken(), oauth2.GenerateVerifier()
	v := url.Values{"state": {state}, "nonce": {nonce}, "verifier": {verifier},
		"next": {localPath(r.URL.Query().Get("next"))}, "tenant": {r.URL.Query().Get("tenant")}}
	s.setCookie(w, "sso", v.Encode(), 600)
	http.Redirect(w, r, s.cfg.SSO.oauth.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusSeeOther)
}

func (s *Server) ssoCallback(w http.ResponseWriter, r *http.Request, _ string) {
	sso := s.cfg.SSO
	if sso == nil {
		s.notFound(w, r)
		return
	}
	fail := func(code string, err error) {
		if err != nil {
			s.log.WarnContext(r.Context(), "web: single sign-on failed", "reason", code, "err", err)
		}
		http.Redirect(w, r, "/signin?sso_error="+code, http.StatusSeeOther)
	}
	saved, err := url.ParseQuery(s.cookie(r, "sso"))
	s.setCookie(w, "sso", "", -1)
	q := r.URL.Query()
	switch {
	case err != nil || saved.Get("state") == "":
		fail("expired", err)
		return
	case q.Get("state") != saved.Get("state"):
		fail("state", nil)
		return
	case q.Get("error") != "":
		fail("denied", errors.New(q.Get("error")))
		return
	}
	tok, err := sso.oauth.Exchange(r.Context(), q.Get("code"), oauth2.VerifierOption(saved.Get("verifier")))
	if err != nil {
		fail("exchange", err)
		return
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		fail("exchange", errors.New("no id_token in the token response"))
		return
	}
	idt, err := sso.verifier.Verify(r.Context(), raw)
	if err != nil {
		fail("token", err)
		return
	}
	if idt.Nonce != saved.Get("nonce") {
		fail("token", errors.New("nonce mismatch"))
		return
	}
	var claims struct {
		Email         string `json:"email"`
		EmailVerified any    `json:"email_verified"`
	}
	if err := idt.Claims(&claims); err != nil {
		fail("token", err)
		return
	}
	opened, err := s.cfg.Sessions.SignInSSO(r.Context(), signin.SSOIdentity{
		Issuer: idt.Issuer, Subject: idt.Subject, Email: claims.Email, EmailVerified: isTrue(claims.EmailVerified),
	}, saved.Get("tenant"), r.UserAgent())
	switch {
	case errors.Is(err, signin.ErrNoAccount):
		fail("no_account", nil)
	case errors.Is(err, signin.ErrAmbiguous):
		fail("ambiguous", nil)
	case err != nil:
		fail("failed", err)
	default:
		s.startSession(w, r, opened, localPath(saved.Get("next")))
	}
}

// isTrue reads email_verified, which some providers send as a string.
func isTrue(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		return x == "true"
	}
	return false
}

func ssoErrorText(code string) string {
	switch code {
	case "no_account":
		return signin.ErrNoAccount.Error()
	case "ambiguous":
		return "Your e-mail address has accounts in several tenants: enter the tenant below and use single sign-on again."
	case "denied":
		return "The sign-in provider did not sign you in."
	case "expired", "state":
		return "The single sign-on attempt expired or did not start here; try again."
	}
	return "Single sign-on failed; try again, or sign in with your password."
}
