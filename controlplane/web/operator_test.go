package web

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/billing"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

const adminRole = adminv1.AccountRole_ACCOUNT_ROLE_ADMIN

// The console's restriction, tenant erasure and invoice forms: what each
// role is offered and refused, another tenant's ids, and form tokens.

func (c *console) tenantNow(slug string) *adminv1.Tenant {
	c.t.Helper()
	resp, err := adminv1.NewTenantServiceClient(c.conn).GetTenant(c.op(), &adminv1.GetTenantRequest{Tenant: slug})
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.GetTenant()
}

func (c *console) accountNow(id string) *adminv1.Account {
	c.t.Helper()
	resp, err := adminv1.NewAccountServiceClient(c.conn).GetAccount(c.op(), &adminv1.GetAccountRequest{Id: id})
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.GetAccount()
}

// wantRefusedWithoutToken posts form to path with no form token and with a
// wrong one, and wants both refused.
func wantRefusedWithoutToken(t *testing.T, b *browser, path string, form url.Values) {
	t.Helper()
	for name, token := range map[string]string{"none": "", "wrong": wrongToken(b.csrf)} {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		f.Set("csrf", token)
		wantStatus(t, name+" token: POST "+path, b.post(path, f), http.StatusForbidden)
	}
}

// wrongToken is a form token that differs from the right one in one
// character.
func wrongToken(right string) string {
	if strings.HasPrefix(right, "x") {
		return "y" + right[1:]
	}
	return "x" + right[1:]
}

func notIn(t *testing.T, what string, p page, parts ...string) {
	t.Helper()
	for _, s := range parts {
		if strings.Contains(p.body, s) {
			t.Errorf("%s: the page offers %q", what, s)
		}
	}
}

func TestOperatorRestrictsAndLiftsATenant(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := newConsole(t, st)
		c.tenant("acme")
		c.tenant("globex")
		c.person("acme", "olga@acme.example", owner)
		c.person("acme", "ad@acme.example", adminRole)
		c.person("globex", "gus@globex.example", owner)
		restricted := adminv1.TenantStatus_TENANT_STATUS_RESTRICTED

		op := c.browser()
		op.signInOperator()
		p := op.get("/t/acme/privacy")
		wantStatus(t, "operator's privacy page", p, http.StatusOK)
		wantIn(t, "operator's privacy page", p, "Restrict processing", `name="reason"`, "data-confirm=")
		notIn(t, "operator's privacy page of an active tenant", p, "Lift the restriction")

		wantRefusedWithoutToken(t, op, "/t/acme/privacy/restrict", url.Values{"reason": {"unpaid"}})
		p = op.post("/t/acme/privacy/restrict", url.Values{"reason": {"  "}})
		wantStatus(t, "restrict without a reason", p, http.StatusBadRequest)
		wantIn(t, "restrict without a reason", p, "Give a reason")
		if c.tenantNow("acme").GetStatus() == restricted {
			t.Fatal("restricted without a reason")
		}
		p = op.post("/t/acme/privacy/restrict", url.Values{"reason": {strings.Repeat("x", 501)}})
		wantStatus(t, "restrict with a reason too long", p, http.StatusBadRequest)
		wantIn(t, "restrict with a reason too long", p, "at most 500")

		p = op.post("/t/acme/privacy/restrict", url.Values{"reason": {"Invoice TG-202610-acme unpaid"}})
		wantStatus(t, "restrict", p, http.StatusSeeOther)
		if p.location != "/t/acme/privacy?done=restricted" {
			t.Errorf("restrict redirects to %q", p.location)
		}
		if tn := c.tenantNow("acme"); tn.GetStatus() != restricted || tn.GetRestrictionReason() != "Invoice TG-202610-acme unpaid" {
			t.Fatalf("after restricting: %v %q", tn.GetStatus(), tn.GetRestrictionReason())
		}
		p = op.get("/t/acme/privacy?done=restricted")
		wantIn(t, "restricted tenant, operator", p, "Processing is restricted", "Reason: Invoice TG-202610-acme unpaid", "Lift the restriction", "Save the reason")
		wantIn(t, "tenant list", op.get("/tenants"), "restricted: Invoice TG-202610-acme unpaid")

		// The tenant's own owner and admins see why, and may not lift it:
		// a whole tenant's restriction is the operator's (the API says so).
		for _, email := range []string{"olga@acme.example", "ad@acme.example"} {
			b := c.browser()
			b.signIn(email)
			p := b.get("/t/acme/privacy")
			wantStatus(t, email+"'s privacy page", p, http.StatusOK)
			wantIn(t, email+"'s privacy page", p, "restricted: every request is refused", "Reason: Invoice TG-202610-acme unpaid")
			notIn(t, email+"'s privacy page", p, "Lift the restriction", "Restrict processing", "/privacy/restrict", "/privacy/unrestrict")
			wantStatus(t, email+" lifts the tenant's restriction", b.post("/t/acme/privacy/unrestrict", nil), http.StatusForbidden)
			wantStatus(t, email+" restricts the tenant", b.post("/t/acme/privacy/restrict", url.Values{"reason": {"mine"}}), http.StatusForbidden)
		}
		g := c.browser()
		g.signIn("gus@globex.example")
		g.get("/t/globex/privacy")
		wantStatus(t, "another tenant's owner lifts it", g.post("/t/acme/privacy/unrestrict", nil), http.StatusNotFound)
		if tn := c.tenantNow("acme"); tn.GetStatus() != restricted || tn.GetRestrictionReason() != "Invoice TG-202610-acme unpaid" {
			t.Fatalf("a refused post changed the restriction: %v %q", tn.GetStatus(), tn.GetRestrictionReason())
		}

		op.get("/t/acme/privacy")
		wantRefusedWithoutToken(t, op, "/t/acme/privacy/unrestrict", nil)
		p = op.post("/t/acme/privacy/unrestrict", nil)
		wantStatus(t, "lift", p, http.StatusSeeOther)
		if tn := c.tenantNow("acme"); tn.GetStatus() != adminv1.TenantStatus_TENANT_STATUS_ACTIVE || tn.GetRestrictionReason() != "" {
			t.Fatalf("after lifting: %v %q", tn.GetStatus(), tn.GetRestrictionReason())
		}
		wantIn(t, "lifted", op.get("/t/acme/privacy?done=unrestricted"), "The restriction is lifted")

		// A suspended tenant is not restricted from here; the page says how.
		if _, err := adminv1.NewTenantServiceClient(c.conn).UpdateTenant(c.op(), &adminv1.UpdateTenantRequest{
			Tenant: &adminv1.Tenant{Id: "acme", Status: adminv1.TenantStatus_TENANT_STATUS_SUSPENDED}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"status"}}}); err != nil {
			t.Fatal(err)
		}
		p = op.get("/t/acme/privacy")
		wantIn(t, "suspended tenant", p, "lift that first")
		notIn(t, "suspended tenant", p, "Restrict processing")
		p = op.post("/t/acme/privacy/restrict", url.Values{"reason": {"x"}})
		wantStatus(t, "restrict a suspended tenant", p, http.StatusBadRequest)
		wantIn(t, "restrict a suspended tenant", p, "suspended")
	})
}

func TestAdminsRestrictTheirTenantsPeople(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := newConsole(t, st)
		c.tenant("acme")
		c.tenant("globex")
		olga := c.person("acme", "olga@acme.example", owner)
		c.person("acme", "ad@acme.example", adminRole)
		mo := c.person("acme", "mo@acme.example", member)
		vi := c.person("acme", "vi@acme.example", viewer)
		c.person("globex", "gus@globex.example", owner)
		restrictPath := "/t/acme/people/" + mo.GetId() + "/restrict"

		ad := c.browser()
		ad.signIn("ad@acme.example")
		p := ad.get("/t/acme/people")
		wantIn(t, "admin's people page", p, restrictPath, "Restrict…", `id="reason-`+mo.GetId()+`"`)
		notIn(t, "admin's people page", p, "/people/"+olga.GetId()+"/restrict")

		wantRefusedWithoutToken(t, ad, restrictPath, url.Values{"reason": {"x"}})
		p = ad.post(restrictPath, url.Values{"reason": {""}})
		wantStatus(t, "restrict without a reason", p, http.StatusBadRequest)
		wantIn(t, "restrict without a reason", p, "Give a reason")
		wantStatus(t, "admin restricts the owner", ad.post("/t/acme/people/"+olga.GetId()+"/restrict", url.Values{"reason": {"x"}}), http.StatusForbidden)
		p = ad.post(restrictPath, url.Values{"reason": {"Laptop stolen on 3 Nov"}})
		wantStatus(t, "admin restricts a member", p, http.StatusSeeOther)
		if a := c.accountNow(mo.GetId()); !a.GetRestricted() || a.GetRestrictionReason() != "Laptop stolen on 3 Nov" {
			t.Fatalf("after restricting: %v", a)
		}
		if a := c.accountNow(olga.GetId()); a.GetRestricted() {
			t.Fatal("an admin restricted the owner")
		}
		wantIn(t, "people after restricting", ad.get("/t/acme/people?done=restricted"), "Processing is restricted", "restricted: Laptop stolen on 3 Nov", "/people/"+mo.GetId()+"/unrestrict")

		// The person sees it, and may not lift it, nor restrict others.
		mb := c.browser()
		mb.signIn("mo@acme.example")
		wantIn(t, "member's privacy page", mb.get("/t/acme/privacy"), "restricted: requests with your keys are refused", "Reason: Laptop stolen on 3 Nov")
		p = mb.get("/t/acme/people")
		notIn(t, "member's people page", p, "/restrict", "/unrestrict")
		wantStatus(t, "member lifts their own restriction", mb.post("/t/acme/people/"+mo.GetId()+"/unrestrict", nil), http.StatusForbidden)
		wantStatus(t, "member restricts a viewer", mb.post("/t/acme/people/"+vi.GetId()+"/restrict", url.Values{"reason": {"x"}}), http.StatusForbidden)
		vb := c.browser()
		vb.signIn("vi@acme.example")
		vb.get("/t/acme/people")
		wantStatus(t, "viewer lifts a restriction", vb.post("/t/acme/people/"+mo.GetId()+"/unrestrict", nil), http.StatusForbidden)
		g := c.browser()
		g.signIn("gus@globex.example")
		g.get("/t/globex/people")
		for _, path := range []string{"/t/acme/people/" + mo.GetId() + "/unrestrict", "/t/globex/people/" + mo.GetId() + "/unrestrict"} {
			wantStatus(t, "another tenant's owner: POST "+path, g.post(path, nil), http.StatusNotFound)
		}
		if a := c.accountNow(mo.GetId()); !a.GetRestricted() {
			t.Fatal("a refused post lifted the restriction")
		}

		ad.get("/t/acme/people")
		wantRefusedWithoutToken(t, ad, "/t/acme/people/"+mo.GetId()+"/unrestrict", nil)
		wantStatus(t, "admin lifts it", ad.post("/t/acme/people/"+mo.GetId()+"/unrestrict", nil), http.StatusSeeOther)
		if a := c.accountNow(mo.GetId()); a.GetRestricted() || a.GetRestrictionReason() != "" {
			t.Fatalf("after lifting: %v", a)
		}
		// An owner restricts an owner.
		ob := c.browser()
		ob.signIn("olga@acme.example")
		wantIn(t, "owner's people page", ob.get("/t/acme/people"), "/people/"+olga.GetId()+"/restrict")
		wantStatus(t, "owner restricts an owner", ob.post("/t/acme/people/"+olga.GetId()+"/restrict", url.Values{"reason": {"Leaving; handing over"}}), http.StatusSeeOther)
	})
}

var tokenField = regexp.MustCompile(`name="token" value="([^"]+)"`)

func TestOperatorErasesATenant(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := newConsole(t, st)
		acme := c.tenant("acme")
		c.tenant("globex")
		olga := c.person("acme", "olga@acme.example", owner)
		c.key("acme", "ci", olga.GetId())
		c.person("globex", "gus@globex.example", owner)

		// The tenant's owner is not offered it, and the API refuses it.
		ob := c.browser()
		ob.signIn("olga@acme.example")
		p := ob.get("/t/acme/privacy")
		notIn(t, "owner's privacy page", p, `id="erase-tenant"`, "Erase Acme Inc…")
		wantIn(t, "owner's privacy page", p, "Erasing the whole tenant is the operator's")
		wantStatus(t, "owner prepares the tenant's erasure", ob.post("/t/acme/privacy/erase/prepare", url.Values{"subject": {"tenant"}}), http.StatusForbidden)
		wantStatus(t, "owner erases the tenant", ob.post("/t/acme/privacy/erase", url.Values{"subject": {"tenant"}, "token": {"x"}, "confirm": {"acme"}}), http.StatusForbidden)
		g := c.browser()
		g.signIn("gus@globex.example")
		g.get("/t/globex/privacy")
		wantStatus(t, "another tenant's owner prepares it", g.post("/t/acme/privacy/erase/prepare", url.Values{"subject": {"tenant"}}), http.StatusNotFound)

		op := c.browser()
		op.signInOperator()
		p = op.get("/t/acme/privacy")
		wantIn(t, "operator's privacy page", p, "Erase Acme Inc…", "irreversible")
		wantRefusedWithoutToken(t, op, "/t/acme/privacy/erase/prepare", url.Values{"subject": {"tenant"}})
		prep := op.post("/t/acme/privacy/erase/prepare", url.Values{"subject": {"tenant"}})
		wantStatus(t, "prepare", prep, http.StatusOK)
		wantIn(t, "prepare", prep, "Erase the tenant Acme Inc?", "cannot be undone", "1 account(s)", "1 key(s)", `name="confirm"`, "<span class=\"mono\">acme</span>")
		token := tokenField.FindStringSubmatch(prep.body)
		if token == nil {
			t.Fatal("no confirmation token on the page")
		}
		// Globex's token does not erase acme.
		gprep := op.post("/t/globex/privacy/erase/prepare", url.Values{"subject": {"tenant"}})
		gtoken := tokenField.FindStringSubmatch(gprep.body)
		if gtoken == nil {
			t.Fatal("no confirmation token for globex")
		}
		for name, form := range map[string]url.Values{
			"the slug mistyped":      {"subject": {"tenant"}, "token": {token[1]}, "confirm": {"acme-inc"}},
			"no slug":                {"subject": {"tenant"}, "token": {token[1]}},
			"another tenant's token": {"subject": {"tenant"}, "token": {gtoken[1]}, "confirm": {"acme"}},
			"no token":               {"subject": {"tenant"}, "confirm": {"acme"}},
		} {
			p := op.post("/t/acme/privacy/erase", form)
			wantStatus(t, name, p, http.StatusBadRequest)
			wantIn(t, name, p, "Nothing was erased")
		}
		wantRefusedWithoutToken(t, op, "/t/acme/privacy/erase", url.Values{"subject": {"tenant"}, "token": {token[1]}, "confirm": {"acme"}})
		if c.tenantNow("acme").GetId() != acme.GetId() {
			t.Fatal("the tenant changed")
		}

		done := op.post("/t/acme/privacy/erase", url.Values{"subject": {"tenant"}, "token": {token[1]}, "confirm": {"acme"}})
		wantStatus(t, "erase", done, http.StatusSeeOther)
		if done.location != "/tenants?done=erased" {
			t.Errorf("erase redirects to %q", done.location)
		}
		list := op.get("/tenants?done=erased")
		wantIn(t, "tenants after erasure", list, "The tenant is erased", "Globex Inc")
		notIn(t, "tenants after erasure", list, "Acme Inc")
		_, err := adminv1.NewTenantServiceClient(c.conn).GetTenant(c.op(), &adminv1.GetTenantRequest{Tenant: acme.GetId()})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("the erased tenant: %v", err)
		}
		wantStatus(t, "the erased tenant's page", op.get("/t/acme/"), http.StatusNotFound)
		wantStatus(t, "the erased tenant's owner", ob.get("/t/acme/"), http.StatusSeeOther)
		wantStatus(t, "globex lives on", g.get("/t/globex/"), http.StatusOK)
	})
}

func TestOperatorChangesAnInvoicesStatus(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := newConsole(t, st)
		acme := c.tenant("acme")
		globex := c.tenant("globex")
		c.person("acme", "olga@acme.example", owner)
		c.person("acme", "ad@acme.example", adminRole)
		c.person("acme", "vi@acme.example", viewer)
		bill := billing.New(billing.Config{Store: st})
		lastMonth := monthStart(time.Now().UTC()).AddDate(0, -1, 0)
		c.usage(st, acme.GetId(), "", "gpt-4o-mini", lastMonth.Add(36*time.Hour), 1000, 500, 1_500)
		c.usage(st, globex.GetId(), "", "gpt-4o", lastMonth.Add(36*time.Hour), 1000, 500, 9_000)
		inv, err := bill.CreateInvoice(context.Background(), uuid.MustParse(acme.GetId()), lastMonth, false)
		if err != nil {
			t.Fatal(err)
		}
		ginv, err := bill.CreateInvoice(context.Background(), uuid.MustParse(globex.GetId()), lastMonth, false)
		if err != nil {
			t.Fatal(err)
		}
		page := "/t/acme/invoices/" + inv.ID.String()
		post := page + "/status"
		statusNow := func(id uuid.UUID) adminv1.InvoiceStatus {
			resp, err := adminv1.NewBillingServiceClient(c.conn).GetInvoice(c.op(), &adminv1.GetInvoiceRequest{Id: id.String()})
			if err != nil {
				t.Fatal(err)
			}
			return resp.GetInvoice().GetStatus()
		}
		draft := adminv1.InvoiceStatus_INVOICE_STATUS_DRAFT

		// Tenant roles read the invoice and are neither offered nor
		// allowed a status change.
		for _, email := range []string{"olga@acme.example", "ad@acme.example", "vi@acme.example"} {
			b := c.browser()
			b.signIn(email)
			p := b.get(page)
			wantStatus(t, email+" reads the invoice", p, http.StatusOK)
			notIn(t, email+"'s invoice page", p, "Change the status", "/status")
			wantStatus(t, email+" issues it", b.post(post, url.Values{"status": {"issued"}}), http.StatusForbidden)
			wantStatus(t, email+" changes globex's", b.post("/t/acme/invoices/"+ginv.ID.String()+"/status", url.Values{"status": {"void"}}), http.StatusNotFound)
		}
		if statusNow(inv.ID) != draft || statusNow(ginv.ID) != draft {
			t.Fatal("a tenant's person changed an invoice's status")
		}

		op := c.browser()
		op.signInOperator()
		p := op.get(page)
		wantIn(t, "draft, operator", p, "Change the status", `value="issued"`, `value="void"`, "data-confirm=\"Issue invoice "+inv.Number)
		notIn(t, "draft, operator", p, `value="paid"`)
		wantRefusedWithoutToken(t, op, post, url.Values{"status": {"issued"}})
		wantStatus(t, "another tenant's invoice under acme", op.post("/t/acme/invoices/"+ginv.ID.String()+"/status", url.Values{"status": {"void"}}), http.StatusNotFound)
		p = op.post(post, url.Values{"status": {"refunded"}})
		wantStatus(t, "an unknown status", p, http.StatusBadRequest)
		wantIn(t, "an unknown status", p, "Choose a status")
		p = op.post(post, url.Values{"status": {"paid"}})
		wantStatus(t, "paying a draft", p, http.StatusBadRequest)
		wantIn(t, "paying a draft", p, "draft → paid", "Nothing was changed", `value="issued"`)
		if statusNow(inv.ID) != draft || statusNow(ginv.ID) != draft {
			t.Fatal("a refused change changed an invoice")
		}

		p = op.post(post, url.Values{"status": {"issued"}})
		wantStatus(t, "issue", p, http.StatusSeeOther)
		if p.location != page+"?done=issued" {
			t.Errorf("issue redirects to %q", p.location)
		}
		p = op.get(p.location)
		wantIn(t, "issued", p, "The invoice is issued", `value="paid"`, `value="void"`)
		notIn(t, "issued", p, `value="issued"`)
		wantStatus(t, "pay", op.post(post, url.Values{"status": {"paid"}}), http.StatusSeeOther)
		if statusNow(inv.ID) != adminv1.InvoiceStatus_INVOICE_STATUS_PAID {
			t.Fatalf("status %v, want paid", statusNow(inv.ID))
		}
		p = op.get(page)
		notIn(t, "paid", p, "Change the status")
		p = op.post(post, url.Values{"status": {"void"}})
		wantStatus(t, "voiding a paid invoice", p, http.StatusBadRequest)
		wantIn(t, "voiding a paid invoice", p, "paid → void")
		wantStatus(t, "void globex's draft", op.post("/t/globex/invoices/"+ginv.ID.String()+"/status", url.Values{"status": {"void"}}), http.StatusSeeOther)
		if statusNow(ginv.ID) != adminv1.InvoiceStatus_INVOICE_STATUS_VOID {
			t.Fatalf("globex's status %v, want void", statusNow(ginv.ID))
		}
	})
}
