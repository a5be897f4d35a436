package web

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

// The privacy page carries out the rights of the people whose data the
// gateway holds (PrivacyService): everyone may download, and erase, their
// own account's data; a tenant's admins may download the tenant's; the
// operator restricts a tenant, lifts its restriction and erases it. The
// admin API decides (controlplane/admin/roles.go: privacySelfCheck, and
// requireOperator for a whole tenant); the pages only leave out what it
// would refuse.

type privacyData struct {
	Account *adminv1.Account
	Tenant  *adminv1.Tenant
	// Erasure is set on the confirmation step.
	Erasure *erasureData
}

type erasureData struct {
	Plan    *adminv1.ErasurePlan
	Token   string
	Subject string // "me" or "tenant"
	// Confirm is what the person types to confirm: their e-mail address
	// for their account, the tenant's short name for a tenant.
	Confirm string
	Expires string
}

func (s *Server) privacyPage(w http.ResponseWriter, r *http.Request, c *call) {
	t, ok := s.tenantOf(w, r, c)
	if !ok {
		return
	}
	s.renderPrivacy(w, r, c, t, http.StatusOK, privacyData{}, flashFor(r))
}

func (s *Server) renderPrivacy(w http.ResponseWriter, r *http.Request, c *call, t *adminv1.Tenant, code int, d privacyData, msg string) {
	d.Tenant = t
	if !c.id.Operator && c.id.TenantID.String() == t.GetId() {
		resp, err := s.accounts.GetAccount(c.ctx(r), &adminv1.GetAccountRequest{Id: c.id.AccountID.String()})
		if err != nil {
			s.fail(w, r, c, err)
			return
		}
		d.Account = resp.GetAccount()
	}
	v := c.view("Privacy", "privacy")
	v.Tenant, v.Data = t, d
	if code >= 400 {
		v.Error = msg
	} else {
		v.Flash = msg
	}
	s.render(w, r, code, "privacy", v)
}

// subjectOf reads the form's subject: "me" (the signed-in account) or
// "tenant".
func (c *call) subjectOf(r *http.Request, t *adminv1.Tenant) (*adminv1.PrivacySubject, string, bool) {
	switch r.PostFormValue("subject") {
	case "me":
		if c.id.Operator {
			return nil, "", false
		}
		return &adminv1.PrivacySubject{Tenant: t.GetId(), AccountId: c.id.AccountID.String()}, "account", true
	case "tenant":
		return &adminv1.PrivacySubject{Tenant: t.GetId()}, "tenant", true
	}
	return nil, "", false
}

// exportData streams the export to the browser as an NDJSON download.
func (s *Server) exportData(w http.ResponseWriter, r *http.Request, c *call) {
	t, ok := s.tenantOf(w, r, c)
	if !ok {
		return
	}
	subj, kind, ok := c.subjectOf(r, t)
	if !ok {
		s.renderPrivacy(w, r, c, t, http.StatusBadRequest, privacyData{}, "Choose whose data to download.")
		return
	}
	stream, err := s.privacy.ExportData(c.ctx(r), &adminv1.ExportDataRequest{Subject: subj})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	// The first message tells whether the call was allowed: errors before
	// it become a page, errors after it cut the download short.
	first, err := stream.Recv()
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="tollgate-export-%s-%s-%s.ndjson"`, t.GetSlug(), kind, s.now().Format("20060102")))
	if _, err := w.Write(first.GetChunk()); err != nil {
		return
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			s.log.ErrorContext(r.Context(), "web: export cut short", "err", err)
			return
		}
		if _, err := w.Write(msg.GetChunk()); err != nil {
			return
		}
	}
}

// prepareErasure shows what erasing one's own account, or (the operator) a
// whole tenant, removes, and asks for confirmation.
func (s *Server) prepareErasure(w http.ResponseWriter, r *http.Request, c *call) {
	t, ok := s.tenantOf(w, r, c)
	if !ok {
		return
	}
	subj, kind, ok := c.subjectOf(r, t)
	if !ok {
		s.renderPrivacy(w, r, c, t, http.StatusBadRequest, privacyData{}, "Choose what to erase: your own account, or (the operator) the tenant.")
		return
	}
	resp, err := s.privacy.PrepareErasure(c.ctx(r), &adminv1.PrepareErasureRequest{Subject: subj})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	d := &erasureData{Plan: resp.GetPlan(), Token: resp.GetConfirmationToken(), Subject: "me", Confirm: c.id.Email, Expires: tsText(resp.GetExpireTime())}
	if kind == "tenant" {
		d.Subject, d.Confirm = "tenant", t.GetSlug()
	}
	s.renderPrivacy(w, r, c, t, http.StatusOK, privacyData{Erasure: d}, "")
}

// erase erases the signed-in person's account once they typed their
// e-mail address to confirm, or, for the operator, the whole tenant once
// its short name is typed. The API checks the confirmation token: it was
// issued for this subject and this caller, minutes ago.
func (s *Server) erase(w http.ResponseWriter, r *http.Request, c *call) {
	t, ok := s.tenantOf(w, r, c)
	if !ok {
		return
	}
	subj, kind, ok := c.subjectOf(r, t)
	if !ok {
		s.renderPrivacy(w, r, c, t, http.StatusBadRequest, privacyData{}, "Choose what to erase. Nothing was erased.")
		return
	}
	typed := strings.TrimSpace(r.PostFormValue("confirm"))
	if kind == "tenant" && typed != t.GetSlug() {
		s.renderPrivacy(w, r, c, t, http.StatusBadRequest, privacyData{}, "Type the tenant's short name exactly to confirm the erasure. Nothing was erased.")
		return
	}
	if kind == "account" && !strings.EqualFold(typed, c.id.Email) {
		s.renderPrivacy(w, r, c, t, http.StatusBadRequest, privacyData{}, "Type your e-mail address exactly to confirm the erasure. Nothing was erased.")
		return
	}
	_, err := s.privacy.Erase(c.ctx(r), &adminv1.EraseRequest{Subject: subj, ConfirmationToken: r.PostFormValue("token")})
	if err != nil {
		if formError(err) {
			s.renderPrivacy(w, r, c, t, http.StatusBadRequest, privacyData{}, errorText(err)+" Nothing was erased; start again.")
			return
		}
		s.fail(w, r, c, err)
		return
	}
	if kind == "tenant" {
		http.Redirect(w, r, "/tenants?done=erased", http.StatusSeeOther)
		return
	}
	// The account and its sessions are gone.
	s.setCookie(w, "session", "", -1)
	s.render(w, r, http.StatusOK, "error", view{Title: "Your account is erased",
		Flash: "Your account, its keys and its stored request content are erased. Usage records stay for billing, no longer linked to you."})
}

// restrictTenant restricts processing for the whole tenant (the operator's;
// the API refuses everyone else), with the reason its people will see.
func (s *Server) restrictTenant(w http.ResponseWriter, r *http.Request, c *call) {
	t, ok := s.tenantOf(w, r, c)
	if !ok {
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		s.renderPrivacy(w, r, c, t, http.StatusBadRequest, privacyData{}, "Give a reason: the tenant's people see it while the restriction lasts. Nothing was restricted.")
		return
	}
	_, err := s.privacy.Restrict(c.ctx(r), &adminv1.RestrictRequest{Subject: &adminv1.PrivacySubject{Tenant: t.GetId()}, Reason: reason})
	if err != nil {
		if formError(err) {
			s.renderPrivacy(w, r, c, t, http.StatusBadRequest, privacyData{}, errorText(err))
			return
		}
		s.fail(w, r, c, err)
		return
	}
	http.Redirect(w, r, tenantPath(t, "/privacy?done=restricted"), http.StatusSeeOther)
}

// unrestrictTenant lifts the tenant's restriction.
func (s *Server) unrestrictTenant(w http.ResponseWriter, r *http.Request, c *call) {
	t, ok := s.tenantOf(w, r, c)
	if !ok {
		return
	}
	_, err := s.privacy.Unrestrict(c.ctx(r), &adminv1.UnrestrictRequest{Subject: &adminv1.PrivacySubject{Tenant: t.GetId()}})
	if err != nil {
		if formError(err) {
			s.renderPrivacy(w, r, c, t, http.StatusBadRequest, privacyData{}, errorText(err))
			return
		}
		s.fail(w, r, c, err)
		return
	}
	http.Redirect(w, r, tenantPath(t, "/privacy?done=unrestricted"), http.StatusSeeOther)
}
