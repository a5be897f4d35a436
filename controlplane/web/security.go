package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
)

// contentSecurityPolicy allows scripts, styles and fetches from this origin
// only, no inline script or style, and no framing (clickjacking).
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(w http.ResponseWriter, tls bool) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// Password links carry their secret in the URL: never send it on.
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
	if tls {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

// Cookie names. The __Host- prefix makes the browser refuse them unless
// they are Secure, host-only and for path /, so a sibling subdomain cannot
// plant or shadow them; plain HTTP (loopback only) uses unprefixed names.
func (s *Server) cookieName(base string) string {
	if s.cfg.InsecureCookies {
		return "tollgate_" + base
	}
	return "__Host-tollgate_" + base
}

func (s *Server) setCookie(w http.ResponseWriter, base, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(base), Value: value, Path: "/", MaxAge: maxAge,
		Secure: !s.cfg.InsecureCookies, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) cookie(r *http.Request, base string) string {
	c, err := r.Cookie(s.cookieName(base))
	if err != nil {
		return ""
	}
	return c.Value
}

// sessionCSRF is the form token of a signed-in person: a MAC of their
// session secret, which only their browser holds (in an HttpOnly cookie).
// A page on another site can neither read the cookie nor the pages that
// carry the token, so it cannot forge a form post.
func sessionCSRF(sessionSecret string) string {
	m := hmac.New(sha256.New, []byte(sessionSecret))
	m.Write([]byte("tollgate web console form token"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// anonCSRF returns the token for forms shown before sign-in (double
// submit: a random value in a cookie and in the form), setting the cookie
// when there is none.
func (s *Server) anonCSRF(w http.ResponseWriter, r *http.Request) string {
	if v := s.cookie(r, "csrf"); len(v) == 43 {
		return v
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	v := base64.RawURLEncoding.EncodeToString(b)
	s.setCookie(w, "csrf", v, 0)
	return v
}

// checkCSRF reports whether a POST carries the expected token and does not
// come from another site.
func checkCSRF(r *http.Request, want string) bool {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return false
	}
	got := r.PostFormValue("csrf")
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
