package admin

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/notify"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent/notification"
)

func (h *harness) notifications() adminv1.NotificationServiceClient {
	return adminv1.NewNotificationServiceClient(h.conn)
}

// A tenant admin manages its own endpoints: the webhook's signing secret is
// shown once and stored sealed, updates follow the mask, a test send shows
// up in the delivery log, and deleting takes the log with it. Every change
// is audited without its values.
func TestNotificationEndpointLifecycle(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		h := newHarness(t, s)
		acme := h.createTenant("acme")
		admin := h.ctx(h.tenantAdmin("acme"))
		svc := h.notifications()

		created, err := svc.CreateNotificationEndpoint(admin, &adminv1.CreateNotificationEndpointRequest{Endpoint: &adminv1.NotificationEndpoint{
			Name: "ops-hook", Kind: adminv1.NotificationEndpointKind_NOTIFICATION_ENDPOINT_KIND_WEBHOOK,
			Url: "https://hooks.acme.example/tollgate", EventTypes: []string{notify.TypeBudgetSoftLimit},
		}})
		if err != nil {
			t.Fatal(err)
		}
		ep, sec := created.GetEndpoint(), created.GetSigningSecret()
		if !strings.HasPrefix(sec, "tgwhsec-") || !strings.HasPrefix(sec, ep.GetSecretPrefix()) || ep.GetTenantId() != acme.GetId() {
			t.Fatalf("created %v with secret %q", ep, sec)
		}
		row, err := s.Client().NotificationEndpoint.Get(t.Context(), uuid.MustParse(ep.GetId()))
		if err != nil {
			t.Fatal(err)
		}
		if opened, err := h.keyring.Open(row.Secret, notify.SecretAD(row.ID)); err != nil || string(opened) != sec {
			t.Fatalf("the stored secret does not open to the one returned: %v", err)
		}
		got, err := svc.GetNotificationEndpoint(admin, &adminv1.GetNotificationEndpointRequest{Id: ep.GetId()})
		if err != nil || strings.Contains(got.String(), sec) {
			t.Fatalf("get: %v %v", got, err)
		}

		upd, err := svc.UpdateNotificationEndpoint(admin, &adminv1.UpdateNotificationEndpointRequest{
			Endpoint:   &adminv1.NotificationEndpoint{Id: ep.GetId(), Url: "https://hooks.acme.example/v2", Disabled: true},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"url", "event_types", "disabled"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if e := upd.GetEndpoint(); e.GetUrl() != "https://hooks.acme.example/v2" || len(e.GetEventTypes()) != 0 || !e.GetDisabled() || e.GetName() != "ops-hook" {
			t.Errorf("updated: %v", e)
		}
		rot, err := svc.RotateNotificationEndpointSecret(admin, &adminv1.RotateNotificationEndpointSecretRequest{Id: ep.GetId()})
		if err != nil || rot.GetSigningSecret() == sec || !strings.HasPrefix(rot.GetSigningSecret(), rot.GetEndpoint().GetSecretPrefix()) {
			t.Fatalf("rotate: %v %v", rot, err)
		}

		mail, err := svc.CreateNotificationEndpoint(admin, &adminv1.CreateNotificationEndpointRequest{Endpoint: &adminv1.NotificationEndpoint{
			Name: "billing-mail", Kind: adminv1.NotificationEndpointKind_NOTIFICATION_ENDPOINT_KIND_EMAIL,
			EmailRecipients: []string{"Billing@Acme.example", "ops@acme.example"},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if mail.GetSigningSecret() != "" || !slices.Equal(mail.GetEndpoint().GetEmailRecipients(), []string{"billing@acme.example", "ops@acme.example"}) {
			t.Errorf("e-mail endpoint: %v, secret %q", mail.GetEndpoint(), mail.GetSigningSecret())
		}
		_, err = svc.CreateNotificationEndpoint(admin, &adminv1.CreateNotificationEndpointRequest{Endpoint: &adminv1.NotificationEndpoint{
			Name: "billing-mail", Kind: adminv1.NotificationEndpointKind_NOTIFICATION_ENDPOINT_KIND_EMAIL, EmailRecipients: []string{"x@acme.example"},
		}})
		wantCode(t, err, codes.AlreadyExists)

		test, err := svc.TestNotificationEndpoint(admin, &adminv1.TestNotificationEndpointRequest{Id: ep.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		if d := test.GetDelivery(); d.GetEventType() != notify.TypeTest || d.GetStatus() != adminv1.NotificationDeliveryStatus_NOTIFICATION_DELIVERY_STATUS_PENDING ||
			d.GetData().GetFields()["endpoint_name"].GetStringValue() != "ops-hook" {
			t.Errorf("test delivery: %v", d)
		}
		list, err := svc.ListNotificationDeliveries(admin, &adminv1.ListNotificationDeliveriesRequest{
			Status: adminv1.NotificationDeliveryStatus_NOTIFICATION_DELIVERY_STATUS_PENDING,
		})
		if err != nil || len(list.GetDeliveries()) != 1 || list.GetDeliveries()[0].GetId() != test.GetDelivery().GetId() {
			t.Fatalf("pending deliveries: %v %v", list, err)
		}
		list, err = svc.ListNotificationDeliveries(admin, &adminv1.ListNotificationDeliveriesRequest{
			Status: adminv1.NotificationDeliveryStatus_NOTIFICATION_DELIVERY_STATUS_DELIVERED,
		})
		if err != nil || len(list.GetDeliveries()) != 0 {
			t.Fatalf("delivered deliveries: %v %v", list, err)
		}

		if _, err := svc.DeleteNotificationEndpoint(admin, &adminv1.DeleteNotificationEndpointRequest{Id: ep.GetId()}); err != nil {
			t.Fatal(err)
		}
		if n, err := s.Client().Notification.Query().Where(notification.EndpointID(uuid.MustParse(ep.GetId()))).Count(t.Context()); err != nil || n != 0 {
			t.Errorf("%d deliveries of a deleted endpoint remain (%v)", n, err)
		}
		eps, err := svc.ListNotificationEndpoints(admin, &adminv1.ListNotificationEndpointsRequest{})
		if err != nil || len(eps.GetEndpoints()) != 1 || eps.GetEndpoints()[0].GetName() != "billing-mail" {
			t.Fatalf("endpoints after delete: %v %v", eps, err)
		}

		ev, err := h.audit().ListAuditEvents(admin, &adminv1.ListAuditEventsRequest{Tenant: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, e := range ev.GetEvents() {
			if strings.HasPrefix(e.GetAction(), "notification_endpoint.") {
				actions = append(actions, e.GetAction())
			}
			if strings.Contains(e.String(), sec) || strings.Contains(e.String(), rot.GetSigningSecret()) || strings.Contains(e.String(), "hooks.acme") {
				t.Errorf("audit event carries a value: %v", e)
			}
		}
		slices.Sort(actions)
		want := []string{"notification_endpoint.create", "notification_endpoint.create", "notification_endpoint.delete",
			"notification_endpoint.rotate_secret", "notification_endpoint.test", "notification_endpoint.update"}
		if !slices.Equal(actions, want) {
			t.Errorf("audited %v, want %v", actions, want)
		}
	})
}

// Bad endpoints are refused field by field.
func TestNotificationEndpointValidation(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		h := newHarness(t, s)
		h.createTenant("acme")
		svc := h.notifications()
		webhook := adminv1.NotificationEndpointKind_NOTIFICATION_ENDPOINT_KIND_WEBHOOK
		email := adminv1.NotificationEndpointKind_NOTIFICATION_ENDPOINT_KIND_EMAIL
		for _, c := range []struct {
			ep   *adminv1.NotificationEndpoint
			want []string
		}{
			{&adminv1.NotificationEndpoint{Name: "h", Kind: webhook, Url: "http://hooks.example/x"}, []string{"endpoint.url"}},
			{&adminv1.NotificationEndpoint{Name: "h", Kind: webhook, Url: "https://u:p@hooks.example/x"}, []string{"endpoint.url"}},
			{&adminv1.NotificationEndpoint{Name: "h", Kind: webhook}, []string{"endpoint.url"}},
			{&adminv1.NotificationEndpoint{Name: "Bad Name", Kind: webhook, Url: "https://hooks.example", EventTypes: []string{"budget.nearly", notify.TypeKeyExpiring, notify.TypeKeyExpiring}},
				[]string{"endpoint.name", "endpoint.event_types[0]", "endpoint.event_types[2]"}},
			{&adminv1.NotificationEndpoint{Name: "m", Kind: email}, []string{"endpoint.email_recipients"}},
			{&adminv1.NotificationEndpoint{Name: "m", Kind: email, EmailRecipients: []string{"ops@example.com", "not an address"}, Url: "https://x.example"},
				[]string{"endpoint.email_recipients[1]", "endpoint.url"}},
			{&adminv1.NotificationEndpoint{Name: "k"}, []string{"endpoint.kind"}},
		} {
			_, err := svc.CreateNotificationEndpoint(h.op(), &adminv1.CreateNotificationEndpointRequest{Tenant: "acme", Endpoint: c.ep})
			if got := violations(t, err); !slices.Equal(got, c.want) {
				t.Errorf("%v: violations %v, want %v", c.ep, got, c.want)
			}
		}
		// The operator must name the tenant.
		_, err := svc.CreateNotificationEndpoint(h.op(), &adminv1.CreateNotificationEndpointRequest{Endpoint: &adminv1.NotificationEndpoint{
			Name: "h", Kind: webhook, Url: "https://hooks.example"}})
		if got := violations(t, err); !slices.Equal(got, []string{"tenant"}) {
			t.Errorf("no tenant: %v", got)
		}
	})
}

// Tenants see and change only their own endpoints and deliveries.
func TestNotificationEndpointsAreTenantScoped(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		h := newHarness(t, s)
		h.createTenant("acme")
		h.createTenant("globex")
		acme, globex := h.ctx(h.tenantAdmin("acme")), h.ctx(h.tenantAdmin("globex"))
		svc := h.notifications()
		created, err := svc.CreateNotificationEndpoint(acme, &adminv1.CreateNotificationEndpointRequest{Endpoint: &adminv1.NotificationEndpoint{
			Name: "hook", Kind: adminv1.NotificationEndpointKind_NOTIFICATION_ENDPOINT_KIND_WEBHOOK, Url: "https://hooks.acme.example"}})
		if err != nil {
			t.Fatal(err)
		}
		id := created.GetEndpoint().GetId()
		_, err = svc.GetNotificationEndpoint(globex, &adminv1.GetNotificationEndpointRequest{Id: id})
		wantCode(t, err, codes.NotFound)
		_, err = svc.TestNotificationEndpoint(globex, &adminv1.TestNotificationEndpointRequest{Id: id})
		wantCode(t, err, codes.NotFound)
		_, err = svc.DeleteNotificationEndpoint(globex, &adminv1.DeleteNotificationEndpointRequest{Id: id})
		wantCode(t, err, codes.NotFound)
		_, err = svc.ListNotificationEndpoints(globex, &adminv1.ListNotificationEndpointsRequest{Tenant: "acme"})
		wantCode(t, err, codes.NotFound)
		_, err = svc.ListNotificationDeliveries(globex, &adminv1.ListNotificationDeliveriesRequest{EndpointId: id})
		wantCode(t, err, codes.NotFound)
		if l, err := svc.ListNotificationEndpoints(globex, &adminv1.ListNotificationEndpointsRequest{}); err != nil || len(l.GetEndpoints()) != 0 {
			t.Errorf("globex sees %v (%v)", l, err)
		}
		if l, err := svc.ListNotificationEndpoints(h.op(), &adminv1.ListNotificationEndpointsRequest{}); err != nil || len(l.GetEndpoints()) != 1 {
			t.Errorf("the operator sees %v (%v)", l, err)
		}
	})
}

// Security notices: a new or revoked admin token, and a key the operator
// revoked, are enqueued in the change's transaction; a tenant revoking its
// own key is not news to it.
func TestSecurityNoticesAreEnqueued(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		h := newHarness(t, s)
		h.createTenant("acme")
		_, err := h.notifications().CreateNotificationEndpoint(h.op(), &adminv1.CreateNotificationEndpointRequest{Tenant: "acme", Endpoint: &adminv1.NotificationEndpoint{
			Name: "sec", Kind: adminv1.NotificationEndpointKind_NOTIFICATION_ENDPOINT_KIND_EMAIL, EmailRecipients: []string{"sec@acme.example"},
			EventTypes: []string{notify.TypeAdminTokenCreated, notify.TypeAdminTokenRevoked, notify.TypeKeyRevokedByOperator}}})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := h.tokens().CreateAdminToken(h.op(), &adminv1.CreateAdminTokenRequest{Tenant: "acme", AdminToken: &adminv1.AdminToken{Name: "ci"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.tokens().RevokeAdminToken(h.op(), &adminv1.RevokeAdminTokenRequest{Id: tok.GetAdminToken().GetId()}); err != nil {
			t.Fatal(err)
		}
		admin := h.ctx(h.tenantAdmin("acme")) // a second admin_token_created
		own := h.createKey(admin, "acme", "own")
		if _, err := h.keys().RevokeKey(admin, &adminv1.RevokeKeyRequest{Id: own.GetKey().GetId()}); err != nil {
			t.Fatal(err)
		}
		byOp := h.createKey(h.op(), "acme", "leaked")
		if _, err := h.keys().RevokeKey(h.op(), &adminv1.RevokeKeyRequest{Id: byOp.GetKey().GetId()}); err != nil {
			t.Fatal(err)
		}
		ds, err := h.notifications().ListNotificationDeliveries(h.op(), &adminv1.ListNotificationDeliveriesRequest{Tenant: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, d := range ds.GetDeliveries() {
			types = append(types, d.GetEventType())
			if strings.Contains(d.GetData().String(), tok.GetSecret()) {
				t.Errorf("a notice carries the token's secret: %v", d)
			}
		}
		slices.Sort(types)
		want := []string{notify.TypeAdminTokenCreated, notify.TypeAdminTokenCreated, notify.TypeAdminTokenRevoked, notify.TypeKeyRevokedByOperator}
		if !slices.Equal(types, want) {
			t.Errorf("notices %v, want %v", types, want)
		}
	})
}

// The operator issuing a draft invoice notifies the tenant, in the issuing
// transaction.
func TestIssuingAnInvoiceNotifies(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		h := newHarness(t, s)
		acme := h.createTenant("acme")
		_, err := h.notifications().CreateNotificationEndpoint(h.op(), &adminv1.CreateNotificationEndpointRequest{Tenant: "acme", Endpoint: &adminv1.NotificationEndpoint{
			Name: "finance", Kind: adminv1.NotificationEndpointKind_NOTIFICATION_ENDPOINT_KIND_EMAIL, EmailRecipients: []string{"billing@acme.example"},
			EventTypes: []string{notify.TypeInvoiceIssued}}})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
		inv, err := s.Client().Invoice.Create().SetTenantID(uuid.MustParse(acme.GetId())).SetNumber("TG-202610-acme").
			SetPeriodStart(start).SetPeriodEnd(start.AddDate(0, 1, 0)).SetCurrency("USD").SetExchangeRateMicros(1_000_000).
			SetTotalMicros(2_000_000).SetTotalCurrencyMicros(2_000_000).SetRequests(7).Save(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		_, err = adminv1.NewBillingServiceClient(h.conn).TransitionInvoice(h.op(), &adminv1.TransitionInvoiceRequest{
			Id: inv.ID.String(), Status: adminv1.InvoiceStatus_INVOICE_STATUS_ISSUED})
		if err != nil {
			t.Fatal(err)
		}
		ds, err := h.notifications().ListNotificationDeliveries(h.op(), &adminv1.ListNotificationDeliveriesRequest{Tenant: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		if len(ds.GetDeliveries()) != 1 || ds.GetDeliveries()[0].GetEventType() != notify.TypeInvoiceIssued ||
			ds.GetDeliveries()[0].GetData().GetFields()["number"].GetStringValue() != "TG-202610-acme" {
			t.Fatalf("deliveries %v, want one invoice.issued", ds.GetDeliveries())
		}
	})
}
