package web

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/signin"
)

// view is what every page template gets.
type view struct {
	Title string
	// Me is the signed-in person; nil on sign-in pages.
	Me *signin.Identity
	// Tenant is the tenant whose pages these are; nil elsewhere.
	Tenant *adminv1.Tenant
	// Nav is the current section, for aria-current.
	Nav   string
	CSRF  string
	Flash string
	Error string
	Data  any
}

// Can reports whether the signed-in person acts with at least role in the
// tenant shown: pages hide what the admin API would refuse. The admin API
// still decides.
func (v view) Can(role string) bool {
	if v.Me == nil {
		return false
	}
	if v.Me.Operator {
		return true
	}
	rank := map[signin.Role]int{signin.RoleViewer: 1, signin.RoleMember: 2, signin.RoleAdmin: 3, signin.RoleOwner: 4}
	return rank[v.Me.Role] >= rank[signin.Role(role)]
}

var funcs = template.FuncMap{
	"asset": func(p string) string { return "/static/" + p + "?v=" + assetVersion },
	"money": money,
	"num":   num,
	"pct": func(part, whole int64) string {
		if whole == 0 {
			return "0%"
		}
		return strconv.FormatFloat(100*float64(part)/float64(whole), 'f', 1, 64) + "%"
	},
	"ts":        tsText,
	"tsInput":   tsInput,
	"ago":       ago,
	"join":      strings.Join,
	"hasPrefix": strings.HasPrefix,
	"invoiceStatus": func(st adminv1.InvoiceStatus) string {
		return strings.ToLower(strings.TrimPrefix(st.String(), "INVOICE_STATUS_"))
	},
	"lineKind": func(k adminv1.InvoiceLineKind) string {
		return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k.String(), "INVOICE_LINE_KIND_")), "_", " ")
	},
	"month": func(t *timestamppb.Timestamp) string {
		if t == nil {
			return ""
		}
		return t.AsTime().UTC().Format("January 2006")
	},
	"amount": func(micros int64, currency string) string {
		return fmt.Sprintf("%s %.2f", currency, float64(micros)/1e6)
	},
	"statusName": func(st adminv1.TenantStatus) string {
		return strings.ToLower(strings.TrimPrefix(st.String(), "TENANT_STATUS_"))
	},
	"roleName": func(r adminv1.AccountRole) string {
		return strings.ToLower(strings.TrimPrefix(r.String(), "ACCOUNT_ROLE_"))
	},
	"percentOf": func(used int64, limit *int64) int64 {
		if limit == nil || *limit <= 0 {
			return 0
		}
		return min(100, int64(math.Round(100*float64(used)/float64(*limit))))
	},
	"deref": func(p *int64) int64 {
		if p == nil {
			return 0
		}
		return *p
	},
}

// money formats micro-dollars as dollars with cents (more digits below a
// cent, so that small spend does not read as zero).
func money(micros int64) string {
	sign := ""
	if micros < 0 {
		sign, micros = "-", -micros
	}
	d := float64(micros) / 1e6
	if micros != 0 && d < 0.01 {
		return sign + "$" + strconv.FormatFloat(d, 'f', 6, 64)
	}
	return sign + "$" + num(micros/1e6) + fmt.Sprintf(".%02d", (micros%1_000_000)/10_000)
}

// num writes n with thousands separators.
func num(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func tsText(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return t.AsTime().UTC().Format("2006-01-02 15:04 UTC")
}

func tsInput(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return t.AsTime().UTC().Format("2006-01-02")
}

func ago(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return t.UTC().Format("2006-01-02")
}

// render writes page name with v. A template error is a bug; it is logged
// and the person gets a plain 500.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, v view) {
	t, ok := s.pages[name]
	if !ok {
		s.log.ErrorContext(r.Context(), "web: no such page template", "page", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", v); err != nil {
		s.log.ErrorContext(r.Context(), "web: rendering a page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = buf.WriteTo(w)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusNotFound, "error", view{Title: "Not found", Error: "There is no such page, or it is not yours to see."})
}

// fail shows an admin API error as a page: NotFound stays 404 (another
// tenant's ids look exactly like ids that do not exist), PermissionDenied
// is 403, an ended session goes back to sign-in.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, c *call, err error) {
	st := status.Convert(err)
	v := view{Me: &c.id, CSRF: c.csrf}
	switch st.Code() {
	case codes.NotFound:
		v.Title, v.Error = "Not found", "There is no such page, or it is not yours to see."
		s.render(w, r, http.StatusNotFound, "error", v)
	case codes.PermissionDenied:
		v.Title, v.Error = "Not allowed", st.Message()
		s.render(w, r, http.StatusForbidden, "error", v)
	case codes.Unauthenticated:
		s.toSignIn(w, r)
	case codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists:
		v.Title, v.Error = "Cannot do that", st.Message()
		s.render(w, r, http.StatusBadRequest, "error", v)
	default:
		s.log.ErrorContext(r.Context(), "web: admin call failed", "path", r.URL.Path, "code", st.Code().String(), "err", st.Message())
		v.Title, v.Error = "Something went wrong", "The console could not load this; try again in a moment."
		s.render(w, r, http.StatusServiceUnavailable, "error", v)
	}
}

// errorText is an admin API error in words for a form.
func errorText(err error) string {
	return status.Convert(err).Message()
}
