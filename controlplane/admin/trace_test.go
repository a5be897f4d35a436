package admin

import (
	"fmt"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/telemetry"
)

// An admin call is a server span that continues the caller's trace, names
// the method, its status and the caller by ids, and holds none of the
// call's personal data or tokens; its transaction is a child span.
func TestAdminCallsAreTraced(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		spans := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(1))))
		h := newHarness(t, st, telemetry.GRPCServerTraces(tp))
		const email, name, tenantName = "ada.lovelace@example.com", "Ada Lovelace", "Lovelace Analytical Engines"
		tenant, err := h.tenants().CreateTenant(h.op(), &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: "acme", Name: tenantName, BillingEmail: email}})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := h.tokens().CreateAdminToken(h.op(), &adminv1.CreateAdminTokenRequest{Tenant: "acme", AdminToken: &adminv1.AdminToken{Name: "ci"}})
		if err != nil {
			t.Fatal(err)
		}

		const traceID, parentID = "5cf92f3577b34da6a3ce929d0e0e4736", "01f067aa0ba902b7"
		ctx := metadata.AppendToOutgoingContext(h.ctx(tok.GetSecret()), "traceparent", "00-"+traceID+"-"+parentID+"-01")
		if _, err := h.accounts().CreateAccount(ctx, &adminv1.CreateAccountRequest{Tenant: "acme", Account: &adminv1.Account{Email: email, Name: name}}); err != nil {
			t.Fatal(err)
		}
		_, err = h.tenants().GetTenant(h.ctx(tok.GetSecret()+"x"), &adminv1.GetTenantRequest{Tenant: "acme"})
		wantCode(t, err, codes.Unauthenticated)

		if !strings.Contains(h.logs.String(), `"trace_id":"`+traceID+`"`) {
			t.Error("the traced call's log line has no trace_id")
		}

		byMethod := map[string]sdktrace.ReadOnlySpan{}
		var txUnderCreate bool
		for _, s := range spans.Ended() {
			if s.SpanKind() == trace.SpanKindServer {
				byMethod[s.Name()] = s
			}
			for _, secret := range []string{email, name, tenantName, tok.GetSecret(), h.operator} {
				text := fmt.Sprint(s.Attributes(), s.Status(), s.Events(), s.Links())
				if strings.Contains(text, secret) {
					t.Errorf("span %s holds %q: %s", s.Name(), secret, text)
				}
			}
		}
		create := byMethod["tollgate.admin.v1.AccountService/CreateAccount"]
		if create == nil {
			t.Fatalf("no CreateAccount server span among %v", byMethod)
		}
		for _, s := range spans.Ended() {
			if s.Name() == "tollgate.db.transaction" && s.Parent().SpanID() == create.SpanContext().SpanID() {
				txUnderCreate = true
			}
		}
		if !txUnderCreate {
			t.Error("CreateAccount's transaction has no span under the call's")
		}
		if got := create.SpanContext().TraceID().String(); got != traceID || create.Parent().SpanID().String() != parentID {
			t.Errorf("CreateAccount's span is in trace %s under %s, want the caller's %s under %s", got, create.Parent().SpanID(), traceID, parentID)
		}
		want := map[string]string{
			"rpc.system.name":          "grpc",
			"rpc.method":               "tollgate.admin.v1.AccountService/CreateAccount",
			"rpc.response.status_code": "OK",
			"tollgate.caller.role":     "admin_token",
			"tollgate.tenant.id":       tenant.GetTenant().GetId(),
			"tollgate.actor":           "admin-token:" + tok.GetAdminToken().GetId(),
		}
		got := map[string]string{}
		for _, a := range create.Attributes() {
			got[string(a.Key)] = a.Value.String()
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("CreateAccount span: %s = %q, want %q (all: %v)", k, got[k], v, got)
			}
		}

		op := byMethod["tollgate.admin.v1.TenantService/CreateTenant"]
		if op == nil {
			t.Fatal("no CreateTenant server span")
		}
		if op.Parent().IsValid() {
			t.Errorf("CreateTenant, called without a traceparent, has parent %s", op.Parent().SpanID())
		}
		for _, a := range op.Attributes() {
			if a.Key == "tollgate.caller.role" && a.Value.String() != "operator" {
				t.Errorf("the operator's call has role %q", a.Value.String())
			}
			if a.Key == "tollgate.tenant.id" {
				t.Errorf("the operator's call names tenant %q as the caller's", a.Value.String())
			}
		}

		refused := byMethod["tollgate.admin.v1.TenantService/GetTenant"]
		if refused == nil {
			t.Fatal("no span for the refused call")
		}
		for _, a := range refused.Attributes() {
			switch {
			case a.Key == "rpc.response.status_code" && a.Value.String() != "UNAUTHENTICATED":
				t.Errorf("the refused call's status code is %s", a.Value.String())
			case strings.HasPrefix(string(a.Key), "tollgate."):
				t.Errorf("the refused call names a caller: %s = %s", a.Key, a.Value.String())
			}
		}
	})
}
