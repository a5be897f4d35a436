package web

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/signin"
)

type limitsData struct {
	Limits []*adminv1.LimitStatus
	Alert  string
}

// limitsPage shows each of the tenant's limits: its use in the current
// window, what is held by requests in flight, and when it resets
// (PolicyService.GetLimitStatus, from the quota authority's counters).
func (s *Server) limitsPage(w http.ResponseWriter, r *http.Request, c *call) {
	t, ok := s.tenantOf(w, r, c)
	if !ok {
		return
	}
	resp, err := s.policies.GetLimitStatus(c.ctx(r), &adminv1.GetLimitStatusRequest{Target: &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_Tenant{Tenant: t.GetId()}}})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	v := c.view("Limits and budgets", "limits")
	v.Tenant, v.Data = t, limitsData{Limits: resp.GetLimits(), Alert: t.GetBudgetAlert()}
	s.render(w, r, http.StatusOK, "limits", v)
}

type auditData struct {
	Events []*adminv1.AuditEvent
	Action string
	Next   string
	People map[string]string
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, c *call) {
	t, ok := s.tenantOf(w, r, c)
	if !ok {
		return
	}
	q := r.URL.Query()
	resp, err := s.audit.ListAuditEvents(c.ctx(r), &adminv1.ListAuditEventsRequest{Tenant: t.GetId(), PageSize: 50, PageToken: q.Get("page"), Action: strings.TrimSpace(q.Get("action"))})
	if err != nil {
		if formError(err) {
			v := c.view("Audit log", "audit")
			v.Tenant, v.Error, v.Data = t, errorText(err), auditData{Action: q.Get("action")}
			s.render(w, r, http.StatusBadRequest, "audit", v)
			return
		}
		s.fail(w, r, c, err)
		return
	}
	people, err := s.peopleByID(r, c, t)
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	v := c.view("Audit log", "audit")
	v.Tenant, v.Data = t, auditData{Events: resp.GetEvents(), Action: q.Get("action"), Next: resp.GetNextPageToken(), People: people}
	s.render(w, r, http.StatusOK, "audit", v)
}

// actorName shows an audit actor ("account:<id>") as the person's name.
func (d auditData) ActorName(actor string) string {
	if id, ok := strings.CutPrefix(actor, "account:"); ok {
		if n := d.People[id]; n != "" {
			return n
		}
	}
	return actor
}

type peopleData struct {
	People []*adminv1.Account
	Roles  []string
	// Link is a password link to hand over when no e-mail is sent.
	Link     string
	LinkFor  string
	Mail     bool
	Form     personForm
	MyID     string
	Expanded bool
}

type personForm struct{ Email, Name, Role string }

var roleValues = map[string]adminv1.AccountRole{
	"owner": adminv1.AccountRole_ACCOUNT_ROLE_OWNER, "admin": adminv1.AccountRole_ACCOUNT_ROLE_ADMIN,
	"member": adminv1.AccountRole_ACCOUNT_ROLE_MEMBER, "viewer": adminv1.AccountRole_ACCOUNT_ROLE_VIEWER,
}

func (s *Server) peoplePage(w http.ResponseWriter, r *http.Request, c *call) {
	s.renderPeople(w, r, c, http.StatusOK, peopleData{}, flashFor(r))
}

func (s *Server) renderPeople(w http.ResponseWriter, r *http.Request, c *call, code int, d peopleData, msg string) {
	t, ok := s.tenantOf(w, r, c)
	if !ok {
		return
	}
	people, err := listAll(func(token string) ([]*adminv1.Account, string, error) {
		resp, err := s.accounts.ListAccounts(c.ctx(r), &adminv1.ListAccountsRequest{Tenant: t.GetId(), PageSize: 500, PageToken: token})
		return resp.GetAccounts(), resp.GetNextPageToken(), err
	})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	d.People, d.Roles, d.Mail, d.MyID = people, []string{"viewer", "member", "admin", "owner"}, s.cfg.Mailer != nil, c.id.AccountID.String()
	if d.Form.Role == "" {
		d.Form.Role = "member"
	}
	v := c.view("People", "people")
	v.Tenant, v.Data = t, d
	if code >= 400 {
		v.Error = msg
	} else {
		v.Flash = msg
	}
	s.render(w, r, code, "people", v)
}

func (s *Server) addPerson(w http.ResponseWriter, r *http.Request, c *call) {
	t, ok := s.tenantOf(w, r, c)
	if !ok {
		return
	}
	form := personForm{Email: strings.TrimSpace(r.PostFormValue("email")), Name: strings.TrimSpace(r.PostFormValue("name")), Role: r.PostFormValue("role")}
	role, ok := roleValues[form.Role]
	if !ok {
		s.renderPeople(w, r, c, http.StatusBadRequest, peopleData{Form: form}, "Choose a role: viewer, member, admin or owner.")
		return
	}
	resp, err := s.accounts.CreateAccount(c.ctx(r), &adminv1.CreateAccountRequest{Tenant: t.GetId(), Account: &adminv1.Account{Email: strings.ToLower(form.Email), Name: form.Name, Role: role}})
	if err != nil {
		if formError(err) {
			s.renderPeople(w, r, c, http.StatusBadRequest, peopleData{Form: form}, errorText(err))
			return
		}
		s.fail(w, r, c, err)
		return
	}
	s.handOutLink(w, r, c, t, resp.GetAccount(), true)
}

// handOutLink makes a password link for a (new) account: by e-mail when the
// console sends e-mail, else shown once to the administrator.
func (s *Server) handOutLink(w http.ResponseWriter, r *http.Request, c *call, t *adminv1.Tenant, a *adminv1.Account, invite bool) {
	link, err := s.accounts.CreatePasswordLink(c.ctx(r), &adminv1.CreatePasswordLinkRequest{Id: a.GetId()})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	if s.cfg.Mailer != nil {
		s.queueMail(r.Context(), s.passwordMail(r, a.GetEmail(), t.GetName(), link.GetSecret(), invite), "password link")
		done := "sent"
		http.Redirect(w, r, tenantPath(t, "/people?done="+done), http.StatusSeeOther)
		return
	}
	s.renderPeople(w, r, c, http.StatusOK, peopleData{Link: s.baseURL(r) + "/signin/password?token=" + link.GetSecret(), LinkFor: a.GetEmail()}, "")
}

// person loads the account in the URL (see inTenant).
func (s *Server) person(w http.ResponseWriter, r *http.Request, c *call) (*adminv1.Tenant, *adminv1.Account, bool) {
	return inTenant(s, w, r, c, func(ctx context.Context) (*adminv1.Account, error) {
		resp, err := s.accounts.GetAccount(ctx, &adminv1.GetAccountRequest{Id: r.PathValue("id")})
		return resp.GetAccount(), err
	})
}

func (s *Server) updatePerson(w http.ResponseWriter, r *http.Request, c *call) {
	t, a, ok := s.person(w, r, c)
	if !ok {
		return
	}
	role, ok := roleValues[r.PostFormValue("role")]
	if !ok {
		s.renderPeople(w, r, c, http.StatusBadRequest, peopleData{}, "Choose a role: viewer, member, admin or owner.")
		return
	}
	_, err := s.accounts.UpdateAccount(c.ctx(r), &adminv1.UpdateAccountRequest{Account: &adminv1.Account{Id: a.GetId(), Role: role}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"role"}}})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	http.Redirect(w, r, tenantPath(t, "/people?done=saved"), http.StatusSeeOther)
}

func (s *Server) deletePerson(w http.ResponseWriter, r *http.Request, c *call) {
	t, a, ok := s.person(w, r, c)
	if !ok {
		return
	}
	if _, err := s.accounts.DeleteAccount(c.ctx(r), &adminv1.DeleteAccountRequest{Id: a.GetId()}); err != nil {
		s.fail(w, r, c, err)
		return
	}
	http.Redirect(w, r, tenantPath(t, "/people?done=removed"), http.StatusSeeOther)
}

// restrictPerson restricts processing for one account: its keys are
// refused until the restriction is lifted (PrivacyService.Restrict; admins,
// and only owners for an owner).
func (s *Server) restrictPerson(w http.ResponseWriter, r *http.Request, c *call) {
	t, a, ok := s.person(w, r, c)
	if !ok {
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		s.renderPeople(w, r, c, http.StatusBadRequest, peopleData{}, "Give a reason for restricting "+a.GetEmail()+": they see it while it lasts. Nothing was restricted.")
		return
	}
	_, err := s.privacy.Restrict(c.ctx(r), &adminv1.RestrictRequest{Subject: &adminv1.PrivacySubject{Tenant: t.GetId(), AccountId: a.GetId()}, Reason: reason})
	if err != nil {
		if formError(err) {
			s.renderPeople(w, r, c, http.StatusBadRequest, peopleData{}, errorText(err))
			return
		}
		s.fail(w, r, c, err)
		return
	}
	http.Redirect(w, r, tenantPath(t, "/people?done=restricted"), http.StatusSeeOther)
}

func (s *Server) unrestrictPerson(w http.ResponseWriter, r *http.Request, c *call) {
	t, a, ok := s.person(w, r, c)
	if !ok {
		return
	}
	if _, err := s.privacy.Unrestrict(c.ctx(r), &adminv1.UnrestrictRequest{Subject: &adminv1.PrivacySubject{Tenant: t.GetId(), AccountId: a.GetId()}}); err != nil {
		s.fail(w, r, c, err)
		return
	}
	http.Redirect(w, r, tenantPath(t, "/people?done=unrestricted"), http.StatusSeeOther)
}

func (s *Server) sendPasswordLink(w http.ResponseWriter, r *http.Request, c *call) {
	t, a, ok := s.person(w, r, c)
	if !ok {
		return
	}
	s.handOutLink(w, r, c, t, a, false)
}

type accountData struct {
	Account  *adminv1.Account
	Sessions []signin.SessionInfo
}

func (s *Server) accountPage(w http.ResponseWriter, r *http.Request, c *call) {
	s.renderAccount(w, r, c, http.StatusOK, flashFor(r))
}

func (s *Server) renderAccount(w http.ResponseWriter, r *http.Request, c *call, code int, msg string) {
	d := accountData{}
	v := c.view("Your account", "account")
	if !c.id.Operator {
		resp, err := s.accounts.GetAccount(c.ctx(r), &adminv1.GetAccountRequest{Id: c.id.AccountID.String()})
		if err != nil {
			s.fail(w, r, c, err)
			return
		}
		d.Account = resp.GetAccount()
		t, err := s.tenants.GetTenant(c.ctx(r), &adminv1.GetTenantRequest{Tenant: c.id.TenantID.String()})
		if err != nil {
			s.fail(w, r, c, err)
			return
		}
		v.Tenant = t.GetTenant()
	}
	sessions, err := s.cfg.Sessions.Sessions(r.Context(), c.id)
	if err != nil {
		s.log.ErrorContext(r.Context(), "web: listing sessions", "err", err)
		s.fail(w, r, c, err)
		return
	}
	d.Sessions = sessions
	v.Data = d
	if code >= 400 {
		v.Error = msg
	} else {
		v.Flash = msg
	}
	s.render(w, r, code, "account", v)
}

func (s *Server) changeName(w http.ResponseWriter, r *http.Request, c *call) {
	if c.id.Operator {
		s.notFound(w, r)
		return
	}
	_, err := s.accounts.UpdateAccount(c.ctx(r), &adminv1.UpdateAccountRequest{
		Account:    &adminv1.Account{Id: c.id.AccountID.String(), Name: strings.TrimSpace(r.PostFormValue("name"))},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}},
	})
	if err != nil {
		if formError(err) {
			s.renderAccount(w, r, c, http.StatusBadRequest, errorText(err))
			return
		}
		s.fail(w, r, c, err)
		return
	}
	http.Redirect(w, r, "/account?done=saved", http.StatusSeeOther)
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, c *call) {
	if r.PostFormValue("password") != r.PostFormValue("confirm") {
		s.renderAccount(w, r, c, http.StatusBadRequest, "The two new passwords differ; type the same password twice.")
		return
	}
	err := s.cfg.Sessions.ChangePassword(r.Context(), c.id, r.PostFormValue("current"), r.PostFormValue("password"))
	var perr *signin.PasswordError
	switch {
	case err == nil:
		http.Redirect(w, r, "/account?done=password", http.StatusSeeOther)
	case asPasswordError(err, &perr):
		s.renderAccount(w, r, c, http.StatusBadRequest, perr.Error())
	default:
		s.log.ErrorContext(r.Context(), "web: changing a password", "err", err)
		s.renderAccount(w, r, c, http.StatusServiceUnavailable, "The password could not be changed; try again in a moment.")
	}
}

func (s *Server) revokeSession(w http.ResponseWriter, r *http.Request, c *call) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		s.notFound(w, r)
		return
	}
	if err := s.cfg.Sessions.RevokeSession(r.Context(), c.id, id); err != nil {
		if isNoSession(err) {
			s.notFound(w, r)
			return
		}
		s.log.ErrorContext(r.Context(), "web: revoking a session", "err", err)
		s.renderAccount(w, r, c, http.StatusServiceUnavailable, "The session could not be signed out; try again.")
		return
	}
	if id == c.id.SessionID {
		s.setCookie(w, "session", "", -1)
		http.Redirect(w, r, "/signin?done=signout", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/account?done=session", http.StatusSeeOther)
}

func (s *Server) revokeOtherSessions(w http.ResponseWriter, r *http.Request, c *call) {
	if _, err := s.cfg.Sessions.RevokeOtherSessions(r.Context(), c.id); err != nil {
		s.log.ErrorContext(r.Context(), "web: revoking sessions", "err", err)
		s.renderAccount(w, r, c, http.StatusServiceUnavailable, "The sessions could not be signed out; try again.")
		return
	}
	http.Redirect(w, r, "/account?done=sessions", http.StatusSeeOther)
}

type tenantsData struct {
	Tenants []*adminv1.Tenant
	Spend   map[string]int64
	Since   *timestamppb.Timestamp
}

// tenantList is the operator's view across tenants; everyone else goes to
// their own tenant.
func (s *Server) tenantList(w http.ResponseWriter, r *http.Request, c *call) {
	if !c.id.Operator {
		http.Redirect(w, r, homeOf(c.id), http.StatusSeeOther)
		return
	}
	ctx := c.ctx(r)
	tenants, err := listAll(func(token string) ([]*adminv1.Tenant, string, error) {
		resp, err := s.tenants.ListTenants(ctx, &adminv1.ListTenantsRequest{PageSize: 500, PageToken: token})
		return resp.GetTenants(), resp.GetNextPageToken(), err
	})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	start := monthStart(s.now())
	d := tenantsData{Tenants: tenants, Spend: map[string]int64{}, Since: timestamppb.New(start)}
	if err := s.spendByTenant(r, c, start, d.Spend); err != nil {
		s.fail(w, r, c, err)
		return
	}
	v := c.view("Tenants", "tenants")
	v.Data, v.Flash = d, flashFor(r)
	s.render(w, r, http.StatusOK, "tenants", v)
}

func monthStart(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}
