package web

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/tollgate-dev/tollgate/controlplane/signin"
)

// call is one request of a signed-in person.
type call struct {
	id     signin.Identity
	secret string
	csrf   string
}

// ctx returns a context whose admin API calls carry the person's session.
func (c *call) ctx(r *http.Request) context.Context {
	return metadata.AppendToOutgoingContext(r.Context(), "authorization", "Bearer "+c.secret)
}

func (c *call) view(title, nav string) view {
	return view{Title: title, Me: &c.id, Nav: nav, CSRF: c.csrf}
}

// maxFormBytes bounds a form post; the largest form is a key's model list.
const maxFormBytes = 64 << 10

// authed wraps a handler that needs a signed-in person. A POST must carry
// the person's form token.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, *call)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		secret := s.cookie(r, "session")
		id, err := s.cfg.Sessions.Lookup(r.Context(), secret)
		if errors.Is(err, signin.ErrNoSession) {
			if secret != "" {
				s.setCookie(w, "session", "", -1)
			}
			s.toSignIn(w, r)
			return
		}
		if err != nil {
			s.log.ErrorContext(r.Context(), "web: looking up a session", "err", err)
			s.render(w, r, http.StatusServiceUnavailable, "error", view{Title: "Unavailable", Error: "The console cannot check your session right now; try again in a moment."})
			return
		}
		c := &call{id: id, secret: secret, csrf: sessionCSRF(secret)}
		// Pages show secrets (a new key) and tenant data: never cache them.
		w.Header().Set("Cache-Control", "no-store")
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if !checkCSRF(r, c.csrf) {
				s.render(w, r, http.StatusForbidden, "error", view{Title: "Form expired", Me: &c.id, CSRF: c.csrf,
					Error: "This form was not sent from the console's own page, or it expired. Go back, reload the page and try again."})
				return
			}
		}
		h(w, r, c)
	}
}

// anon wraps a handler of the sign-in pages; a POST must carry the
// double-submit token.
func (s *Server) anon(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		token := s.anonCSRF(w, r)
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if !checkCSRF(r, token) {
				s.render(w, r, http.StatusForbidden, "error", view{Title: "Form expired",
					Error: "This form was not sent from the console's own page, or it expired. Go back, reload the page and try again."})
				return
			}
		}
		h(w, r, token)
	}
}

func (s *Server) toSignIn(w http.ResponseWriter, r *http.Request) {
	target := "/signin"
	if r.Method == http.MethodGet && r.URL.Path != "/" {
		target += "?next=" + url.QueryEscape(r.URL.RequestURI())
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// localPath returns next if it is a path on this site, else "/": a
// sign-in link must not bounce people to another site.
func localPath(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return next
}

// clientAddr is the address sign-in attempts are counted against: the
// connection's peer, or, behind a proxy (Config.ClientIPHeader), the
// address that proxy puts in the header. For X-Forwarded-For that is the
// last entry, the one the trusted proxy appended; earlier entries are the
// client's to write.
func (s *Server) clientAddr(r *http.Request) string {
	if h := s.cfg.ClientIPHeader; h != "" {
		v := r.Header.Values(h)
		if len(v) > 0 {
			last := v[len(v)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if a, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
				return a.Unmap().String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type signInData struct {
	Email, Tenant, Next string
	SSO                 string
}

func (s *Server) signInData(r *http.Request) signInData {
	d := signInData{Email: r.PostFormValue("email"), Tenant: r.PostFormValue("tenant"), Next: localPath(r.FormValue("next"))}
	if s.cfg.SSO != nil {
		d.SSO = s.cfg.SSO.Name
	}
	return d
}

func (s *Server) signInPage(w http.ResponseWriter, r *http.Request, token string) {
	if id, err := s.cfg.Sessions.Lookup(r.Context(), s.cookie(r, "session")); err == nil {
		http.Redirect(w, r, homeOf(id), http.StatusSeeOther)
		return
	}
	v := view{Title: "Sign in", CSRF: token, Data: s.signInData(r)}
	switch r.URL.Query().Get("done") {
	case "password":
		v.Flash = "Your password is set. Sign in with it."
	case "signout":
		v.Flash = "You are signed out."
	}
	if msg := r.URL.Query().Get("sso_error"); msg != "" {
		v.Error = ssoErrorText(msg)
	}
	s.render(w, r, http.StatusOK, "signin", v)
}

func (s *Server) signIn(w http.ResponseWriter, r *http.Request, token string) {
	opened, err := s.cfg.Sessions.SignIn(r.Context(), signin.Attempt{
		Email: r.PostFormValue("email"), Password: r.PostFormValue("password"), Tenant: r.PostFormValue("tenant"),
		Addr: s.clientAddr(r), UserAgent: r.UserAgent(),
	})
	if err != nil {
		v := view{Title: "Sign in", CSRF: token, Data: s.signInData(r)}
		code := http.StatusUnauthorized
		switch {
		case errors.Is(err, signin.ErrWrongCredentials), errors.Is(err, signin.ErrAmbiguous):
			v.Error = err.Error()
		case errors.Is(err, signin.ErrThrottled):
			v.Error, code = err.Error(), http.StatusTooManyRequests
		default:
			s.log.ErrorContext(r.Context(), "web: signing in", "err", err)
			v.Error, code = "Signing in failed; try again in a moment.", http.StatusServiceUnavailable
		}
		s.render(w, r, code, "signin", v)
		return
	}
	s.startSession(w, r, opened, localPath(r.PostFormValue("next")))
}

func (s *Server) startSession(w http.ResponseWriter, r *http.Request, opened signin.Opened, next string) {
	s.setCookie(w, "session", opened.Secret, int(time.Until(opened.ExpiresAt).Seconds()))
	if next == "/" {
		next = homeOf(opened.Identity)
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func homeOf(id signin.Identity) string {
	if id.Operator {
		return "/tenants"
	}
	return "/t/" + url.PathEscape(id.TenantSlug) + "/"
}

func (s *Server) operatorPage(w http.ResponseWriter, r *http.Request, token string) {
	s.render(w, r, http.StatusOK, "operator", view{Title: "Operator sign-in", CSRF: token})
}

func (s *Server) operatorSignIn(w http.ResponseWriter, r *http.Request, token string) {
	opened, err := s.cfg.Sessions.SignInOperator(r.Context(), r.PostFormValue("token"), s.clientAddr(r), r.UserAgent())
	if err != nil {
		v := view{Title: "Operator sign-in", CSRF: token, Error: err.Error()}
		code := http.StatusUnauthorized
		switch {
		case errors.Is(err, signin.ErrWrongOperatorToken):
		case errors.Is(err, signin.ErrThrottled):
			code = http.StatusTooManyRequests
		default:
			s.log.ErrorContext(r.Context(), "web: operator sign-in", "err", err)
			v.Error, code = "Signing in failed; try again in a moment.", http.StatusServiceUnavailable
		}
		s.render(w, r, code, "operator", v)
		return
	}
	s.startSession(w, r, opened, "/tenants")
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request, c *call) {
	if err := s.cfg.Sessions.SignOut(r.Context(), c.secret); err != nil {
		s.log.ErrorContext(r.Context(), "web: signing out", "err", err)
		s.render(w, r, http.StatusServiceUnavailable, "error", c.view("Sign-out failed", "").withError("Signing out failed; try again."))
		return
	}
	s.setCookie(w, "session", "", -1)
	http.Redirect(w, r, "/signin?done=signout", http.StatusSeeOther)
}

func (v view) withError(msg string) view {
	v.Error = msg
	return v
}

func (s *Server) home(w http.ResponseWriter, r *http.Request, c *call) {
	http.Redirect(w, r, homeOf(c.id), http.StatusSeeOther)
}
