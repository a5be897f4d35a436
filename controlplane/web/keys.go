package web

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

// tenantOf loads the tenant named in the URL through the admin API, which
// answers NotFound for a tenant that is not the caller's.
func (s *Server) tenantOf(w http.ResponseWriter, r *http.Request, c *call) (*adminv1.Tenant, bool) {
	resp, err := s.tenants.GetTenant(c.ctx(r), &adminv1.GetTenantRequest{Tenant: r.PathValue("tenant")})
	if err != nil {
		s.fail(w, r, c, err)
		return nil, false
	}
	return resp.GetTenant(), true
}

func tenantPath(t *adminv1.Tenant, rest string) string {
	return "/t/" + url.PathEscape(t.GetSlug()) + rest
}

type keyRow struct {
	Key   *adminv1.Key
	Owner string
	// Mine is set when the key is the signed-in person's own.
	Mine bool
}

type keysData struct {
	Keys        []keyRow
	ShowRevoked bool
	// New is a key just created or rotated, with its secret (shown once).
	New       *adminv1.Key
	NewSecret string
	Form      keyForm
}

type keyForm struct {
	Name, Expires, Models string
}

func (s *Server) keysPage(w http.ResponseWriter, r *http.Request, c *call) {
	s.renderKeys(w, r, c, http.StatusOK, keysData{}, flashFor(r))
}

func (s *Server) renderKeys(w http.ResponseWriter, r *http.Request, c *call, code int, d keysData, flash string) {
	t, ok := s.tenantOf(w, r, c)
	if !ok {
		return
	}
	ctx := c.ctx(r)
	d.ShowRevoked = r.URL.Query().Get("revoked") == "1"
	keys, err := listAll(func(token string) ([]*adminv1.Key, string, error) {
		resp, err := s.keys.ListKeys(ctx, &adminv1.ListKeysRequest{Tenant: t.GetId(), PageSize: 500, PageToken: token, IncludeRevoked: d.ShowRevoked})
		return resp.GetKeys(), resp.GetNextPageToken(), err
	})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	people, err := s.peopleByID(r, c, t)
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	for _, k := range keys {
		d.Keys = append(d.Keys, keyRow{Key: k, Owner: people[k.GetAccountId()], Mine: k.GetAccountId() != "" && k.GetAccountId() == c.id.AccountID.String()})
	}
	v := c.view("Keys", "keys")
	v.Tenant, v.Data, v.Flash = t, d, flash
	if code >= 400 {
		v.Error, v.Flash = flash, ""
	}
	s.render(w, r, code, "keys", v)
}

// peopleByID maps account ids to a name to show.
func (s *Server) peopleByID(r *http.Request, c *call, t *adminv1.Tenant) (map[string]string, error) {
	accounts, err := listAll(func(token string) ([]*adminv1.Account, string, error) {
		resp, err := s.accounts.ListAccounts(c.ctx(r), &adminv1.ListAccountsRequest{Tenant: t.GetId(), PageSize: 500, PageToken: token})
		return resp.GetAccounts(), resp.GetNextPageToken(), err
	})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, a := range accounts {
		out[a.GetId()] = cmpOr(a.GetName(), a.GetEmail())
	}
	return out, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// listAll follows page tokens; the console's lists are bounded by what
// one tenant has (keys, people), and each page is one admin call.
func listAll[T any](page func(token string) ([]T, string, error)) ([]T, error) {
	var out []T
	token := ""
	for range 100 {
		items, next, err := page(token)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if next == "" {
			break
		}
		token = next
	}
	return out, nil
}

// parseModels reads a list of model names, one per line or comma-separated.
func parseModels(v string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if f = strings.TrimSpace(f); f != "" && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// parseDate reads a yyyy-mm-dd date input as the end of that day (UTC).
func parseDate(v string) (*timestamppb.Timestamp, string) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, ""
	}
	d, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return nil, "Give the expiry as a date, e.g. 2027-01-31."
	}
	return timestamppb.New(d.Add(24*time.Hour - time.Second)), ""
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, c *call) {
	t, ok := s.tenantOf(w, r, c)
	if !ok {
		return
	}
	form := keyForm{Name: strings.TrimSpace(r.PostFormValue("name")), Expires: r.PostFormValue("expires"), Models: r.PostFormValue("models")}
	expires, msg := parseDate(form.Expires)
	if msg != "" {
		s.renderKeys(w, r, c, http.StatusBadRequest, keysData{Form: form}, msg)
		return
	}
	resp, err := s.keys.CreateKey(c.ctx(r), &adminv1.CreateKeyRequest{Tenant: t.GetId(), Key: &adminv1.Key{
		Name: form.Name, ExpireTime: expires, AllowedModels: parseModels(form.Models),
	}})
	if err != nil {
		if formError(err) {
			s.renderKeys(w, r, c, http.StatusBadRequest, keysData{Form: form}, errorText(err))
			return
		}
		s.fail(w, r, c, err)
		return
	}
	s.renderKeys(w, r, c, http.StatusOK, keysData{New: resp.GetKey(), NewSecret: resp.GetSecret()}, "")
}

type keyData struct {
	Key       *adminv1.Key
	Owner     string
	CanChange bool
	NewSecret string
	Usage     *adminv1.UsageTotals
	Limits    []*adminv1.LimitStatus
	Form      keyForm
}

// loadKey loads the key in the URL (see inTenant).
func (s *Server) loadKey(w http.ResponseWriter, r *http.Request, c *call) (*adminv1.Tenant, *adminv1.Key, bool) {
	return inTenant(s, w, r, c, func(ctx context.Context) (*adminv1.Key, error) {
		resp, err := s.keys.GetKey(ctx, &adminv1.GetKeyRequest{Id: r.PathValue("id")})
		return resp.GetKey(), err
	})
}

// inTenant loads, with get, the object a URL under /t/<tenant>/ names and
// checks that it is that tenant's: /t/a/keys/<id of b's key> is NotFound
// even for the operator, so that a URL always means one thing. It answers
// the request itself when it returns false.
func inTenant[T interface{ GetTenantId() string }](s *Server, w http.ResponseWriter, r *http.Request, c *call, get func(context.Context) (T, error)) (*adminv1.Tenant, T, bool) {
	var zero T
	t, ok := s.tenantOf(w, r, c)
	if !ok {
		return nil, zero, false
	}
	obj, err := get(c.ctx(r))
	if err == nil && obj.GetTenantId() != t.GetId() {
		s.notFound(w, r)
		return nil, zero, false
	}
	if err != nil {
		s.fail(w, r, c, err)
		return nil, zero, false
	}
	return t, obj, true
}

func (s *Server) keyPage(w http.ResponseWriter, r *http.Request, c *call) {
	t, k, ok := s.loadKey(w, r, c)
	if !ok {
		return
	}
	s.renderKey(w, r, c, t, k, http.StatusOK, keyData{}, flashFor(r))
}

func (s *Server) renderKey(w http.ResponseWriter, r *http.Request, c *call, t *adminv1.Tenant, k *adminv1.Key, code int, d keyData, msg string) {
	ctx := c.ctx(r)
	d.Key = k
	people, err := s.peopleByID(r, c, t)
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	d.Owner = people[k.GetAccountId()]
	v := c.view(k.GetName(), "keys")
	d.CanChange = k.GetRevokeTime() == nil && (v.Can("admin") || (v.Can("member") && k.GetAccountId() == c.id.AccountID.String()))
	if d.Form == (keyForm{}) {
		d.Form = keyForm{Name: k.GetName(), Expires: tsInput(k.GetExpireTime()), Models: strings.Join(k.GetAllowedModels(), "\n")}
	}
	sum, err := s.usage.SummarizeUsage(ctx, &adminv1.SummarizeUsageRequest{Tenant: t.GetId(), KeyId: k.GetId(), GroupBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_DAY})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	d.Usage = sum.GetTotals()
	lim, err := s.policies.GetLimitStatus(ctx, &adminv1.GetLimitStatusRequest{Target: &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_KeyId{KeyId: k.GetId()}}})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	d.Limits = lim.GetLimits()
	v.Tenant, v.Data = t, d
	if code >= 400 {
		v.Error = msg
	} else {
		v.Flash = msg
	}
	s.render(w, r, code, "key", v)
}

func (s *Server) updateKey(w http.ResponseWriter, r *http.Request, c *call) {
	t, k, ok := s.loadKey(w, r, c)
	if !ok {
		return
	}
	form := keyForm{Name: strings.TrimSpace(r.PostFormValue("name")), Expires: r.PostFormValue("expires"), Models: r.PostFormValue("models")}
	expires, msg := parseDate(form.Expires)
	if msg != "" {
		s.renderKey(w, r, c, t, k, http.StatusBadRequest, keyData{Form: form}, msg)
		return
	}
	_, err := s.keys.UpdateKey(c.ctx(r), &adminv1.UpdateKeyRequest{
		Key:        &adminv1.Key{Id: k.GetId(), Name: form.Name, ExpireTime: expires, AllowedModels: parseModels(form.Models)},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name", "expire_time", "allowed_models"}},
	})
	if err != nil {
		if formError(err) {
			s.renderKey(w, r, c, t, k, http.StatusBadRequest, keyData{Form: form}, errorText(err))
			return
		}
		s.fail(w, r, c, err)
		return
	}
	http.Redirect(w, r, tenantPath(t, "/keys/"+k.GetId()+"?done=saved"), http.StatusSeeOther)
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, c *call) {
	t, k, ok := s.loadKey(w, r, c)
	if !ok {
		return
	}
	if _, err := s.keys.RevokeKey(c.ctx(r), &adminv1.RevokeKeyRequest{Id: k.GetId()}); err != nil {
		s.fail(w, r, c, err)
		return
	}
	http.Redirect(w, r, tenantPath(t, "/keys?done=revoked"), http.StatusSeeOther)
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request, c *call) {
	t, k, ok := s.loadKey(w, r, c)
	if !ok {
		return
	}
	resp, err := s.keys.RotateKey(c.ctx(r), &adminv1.RotateKeyRequest{Id: k.GetId()})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	s.renderKey(w, r, c, t, resp.GetKey(), http.StatusOK, keyData{NewSecret: resp.GetSecret()}, "")
}
