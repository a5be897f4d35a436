package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/tollgate-dev/tollgate/controlplane/signin"
)

func (s *Server) forgotPage(w http.ResponseWriter, r *http.Request, token string) {
	s.render(w, r, http.StatusOK, "forgot", view{Title: "Forgot password", CSRF: token, Data: s.cfg.Mailer != nil})
}

// forgot answers the same whether or not the address has an account, and
// sends the links in the background so that the answer takes as long.
func (s *Server) forgot(w http.ResponseWriter, r *http.Request, token string) {
	v := view{Title: "Forgot password", CSRF: token, Data: s.cfg.Mailer != nil}
	if s.cfg.Mailer == nil {
		v.Error = "This gateway sends no e-mail. Ask an administrator of your tenant for a password link."
		s.render(w, r, http.StatusServiceUnavailable, "forgot", v)
		return
	}
	links, err := s.cfg.Sessions.RequestPasswordReset(r.Context(), r.PostFormValue("email"), s.clientAddr(r))
	if errors.Is(err, signin.ErrThrottled) {
		v.Error = err.Error()
		s.render(w, r, http.StatusTooManyRequests, "forgot", v)
		return
	}
	if err != nil {
		s.log.ErrorContext(r.Context(), "web: password reset", "err", err)
		v.Error = "The request failed; try again in a moment."
		s.render(w, r, http.StatusServiceUnavailable, "forgot", v)
		return
	}
	for _, l := range links {
		s.queueMail(r.Context(), s.passwordMail(r, l.Email, l.TenantName, l.Secret, false), "password reset")
	}
	v.Flash = "If an account uses this address, a link to set a new password is on its way. It works once, for an hour."
	s.render(w, r, http.StatusOK, "forgot", v)
}

// passwordMail is the e-mail with a password link.
func (s *Server) passwordMail(r *http.Request, to, tenant, secret string, invite bool) Message {
	link := s.baseURL(r) + "/signin/password?token=" + url.QueryEscape(secret)
	if invite {
		return Message{To: to, Subject: "Your Tollgate console account (" + tenant + ")", Text: fmt.Sprintf(
			"An administrator of %s gave you an account in the Tollgate console.\n\nSet your password here (the link works once, for an hour):\n%s\n\nThen sign in at %s/signin with this e-mail address.\n",
			tenant, link, s.baseURL(r))}
	}
	return Message{To: to, Subject: "Reset your Tollgate console password (" + tenant + ")", Text: fmt.Sprintf(
		"Someone asked to reset the password of your %s account in the Tollgate console.\n\nSet a new password here (the link works once, for an hour):\n%s\n\nIf that was not you, ignore this e-mail: your password stays as it is.\n",
		tenant, link)}
}

// baseURL is the console's external address: the configured one, else
// this request's scheme and Host.
func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.BaseURL != "" {
		return s.cfg.BaseURL
	}
	scheme := "https"
	if r.TLS == nil && s.cfg.InsecureCookies {
		scheme = "http"
	}
	return scheme + "://" + r.Host
}

type setPasswordData struct {
	Token string
	Email string
}

func (s *Server) setPasswordPage(w http.ResponseWriter, r *http.Request, token string) {
	link := r.URL.Query().Get("token")
	email, err := s.cfg.Sessions.CheckPasswordLink(r.Context(), link)
	v := view{Title: "Set your password", CSRF: token, Data: setPasswordData{Token: link, Email: email}}
	if err != nil {
		v.Error = linkError(err)
		s.render(w, r, http.StatusNotFound, "setpassword", v)
		return
	}
	s.render(w, r, http.StatusOK, "setpassword", v)
}

func (s *Server) setPassword(w http.ResponseWriter, r *http.Request, token string) {
	link := r.PostFormValue("token")
	pw := r.PostFormValue("password")
	v := view{Title: "Set your password", CSRF: token, Data: setPasswordData{Token: link}}
	if pw != r.PostFormValue("confirm") {
		v.Error = "The two passwords differ; type the same password twice."
		s.render(w, r, http.StatusBadRequest, "setpassword", v)
		return
	}
	err := s.cfg.Sessions.SetPassword(r.Context(), link, pw)
	var perr *signin.PasswordError
	switch {
	case err == nil:
		http.Redirect(w, r, "/signin?done=password", http.StatusSeeOther)
	case errors.As(err, &perr):
		v.Error = perr.Error()
		s.render(w, r, http.StatusBadRequest, "setpassword", v)
	default:
		v.Error = linkError(err)
		s.render(w, r, http.StatusBadRequest, "setpassword", v)
	}
}

func linkError(err error) string {
	if errors.Is(err, signin.ErrLinkInvalid) {
		return err.Error()
	}
	return "This link cannot be checked right now; try again in a moment."
}
