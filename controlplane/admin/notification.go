package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/invalid"
	"github.com/tollgate-dev/tollgate/controlplane/notify"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/notification"
	"github.com/tollgate-dev/tollgate/ent/notificationendpoint"
)

// maxRecipients bounds an e-mail endpoint's list: notifications go to a
// team's addresses, not to a mailing list.
const maxRecipients = 10

type notificationService struct {
	adminv1.UnimplementedNotificationServiceServer
	*Server
}

var endpointKindToProto = map[notificationendpoint.Kind]adminv1.NotificationEndpointKind{
	notificationendpoint.KindWebhook: adminv1.NotificationEndpointKind_NOTIFICATION_ENDPOINT_KIND_WEBHOOK,
	notificationendpoint.KindEmail:   adminv1.NotificationEndpointKind_NOTIFICATION_ENDPOINT_KIND_EMAIL,
}

var deliveryStatusToProto = map[notification.Status]adminv1.NotificationDeliveryStatus{
	notification.StatusPending:   adminv1.NotificationDeliveryStatus_NOTIFICATION_DELIVERY_STATUS_PENDING,
	notification.StatusDelivered: adminv1.NotificationDeliveryStatus_NOTIFICATION_DELIVERY_STATUS_DELIVERED,
	notification.StatusFailed:    adminv1.NotificationDeliveryStatus_NOTIFICATION_DELIVERY_STATUS_FAILED,
	notification.StatusDead:      adminv1.NotificationDeliveryStatus_NOTIFICATION_DELIVERY_STATUS_DEAD,
}

// endpointToProto never includes the signing secret, only its prefix.
func endpointToProto(e *ent.NotificationEndpoint) *adminv1.NotificationEndpoint {
	return &adminv1.NotificationEndpoint{
		Id:              e.ID.String(),
		TenantId:        e.TenantID.String(),
		Name:            e.Name,
		Kind:            endpointKindToProto[e.Kind],
		Url:             e.URL,
		EmailRecipients: e.EmailRecipients,
		EventTypes:      e.EventTypes,
		Disabled:        e.Disabled,
		SecretPrefix:    e.SecretPrefix,
		CreateTime:      ts(e.CreatedAt),
		UpdateTime:      ts(e.UpdatedAt),
	}
}

func deliveryToProto(n *ent.Notification) *adminv1.NotificationDelivery {
	out := &adminv1.NotificationDelivery{
		Id:              n.ID.String(),
		EventId:         n.EventID.String(),
		EventType:       n.EventType,
		TenantId:        n.TenantID.String(),
		EndpointId:      n.EndpointID.String(),
		Status:          deliveryStatusToProto[n.Status],
		Attempts:        int32(n.Attempts),
		LastAttemptTime: tsp(n.LastAttemptAt),
		DeliverTime:     tsp(n.DeliveredAt),
		LastError:       n.LastError,
		ResponseCode:    int32(n.ResponseCode),
		CreateTime:      ts(n.CreatedAt),
	}
	if n.Status == notification.StatusPending {
		out.NextAttemptTime = ts(n.NextAttemptAt)
	}
	var data map[string]any
	if json.Unmarshal(n.Data, &data) == nil {
		out.Data, _ = structpb.NewStruct(data) // data is JSON, so always convertible
	}
	return out
}

// checkWebhookURL accepts https anywhere and plain http only to loopback,
// for receivers on the operator's own machine during testing. Where a URL
// may lead once resolved is the deliverer's business (it refuses private
// addresses unless the operator allows them).
func checkWebhookURL(field, raw string) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return invalid.Field(field, "is required for webhooks")
	case len(raw) > 2048:
		return invalid.Field(field, "must be at most 2048 bytes")
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return invalid.Field(field, "must be an absolute https URL such as https://hooks.example.com/tollgate, got %q", raw)
	case u.User != nil:
		return invalid.Field(field, "must not carry credentials; verify deliveries by their signature instead")
	case u.Fragment != "":
		return invalid.Field(field, "must not have a fragment")
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return invalid.Field(field, "must use https (plain http is allowed only to loopback)")
	}
	return nil
}

func checkRecipients(field string, rcpts []string) ([]string, error) {
	if len(rcpts) == 0 || len(rcpts) > maxRecipients {
		return nil, invalid.Field(field, "must list 1 to %d addresses, got %d", maxRecipients, len(rcpts))
	}
	var errs []error
	out := make([]string, 0, len(rcpts))
	for i, r := range rcpts {
		f := fmt.Sprintf("%s[%d]", field, i)
		a, err := normalizeEmail(f, r, true)
		switch {
		case err != nil:
			errs = append(errs, err)
		case slices.Contains(out, a):
			errs = append(errs, invalid.Field(f, "%q is listed twice", r))
		default:
			out = append(out, a)
		}
	}
	return out, errors.Join(errs...)
}

func checkEventTypes(field string, types []string) error {
	var errs []error
	for i, t := range types {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case !notify.KnownType(t):
			errs = append(errs, invalid.Field(f, "unknown event type %q; known: %s", t, strings.Join(notify.Types, ", ")))
		case slices.Index(types, t) != i:
			errs = append(errs, invalid.Field(f, "%q is listed twice", t))
		}
	}
	return errors.Join(errs...)
}

// getEndpoint loads an endpoint p may see; other tenants' are NotFound.
func getEndpoint(ctx context.Context, c *ent.NotificationEndpointClient, p Principal, field, ref string) (*ent.NotificationEndpoint, error) {
	id, err := parseID(field, ref)
	if err != nil {
		return nil, err
	}
	e, err := c.Get(ctx, id)
	if ent.IsNotFound(err) || (err == nil && !p.canSeeTenant(e.TenantID)) {
		return nil, notFound("notification endpoint", ref)
	}
	return e, err
}

// ownTenant resolves a request's tenant, defaulting to a tenant admin's own.
func ownTenant(ctx context.Context, c *ent.TenantClient, p Principal, field, ref string) (*ent.Tenant, error) {
	if ref == "" && !p.Operator {
		ref = p.TenantID.String()
	}
	return resolveTenant(ctx, c, p, field, ref)
}

func checkEndpointNameFree(ctx context.Context, tx *ent.Tx, tenantID uuid.UUID, name string, self uuid.UUID) error {
	taken, err := tx.NotificationEndpoint.Query().Where(notificationendpoint.TenantID(tenantID),
		notificationendpoint.Name(name), notificationendpoint.IDNEQ(self)).Exist(ctx)
	if err != nil {
		return err
	}
	if taken {
		return status.Errorf(codes.AlreadyExists, "a notification endpoint named %q already exists in this tenant", name)
	}
	return nil
}

// newSigningSecret makes a webhook secret and seals it for endpoint id.
func (s *Server) newSigningSecret(id uuid.UUID) (secret.Secret, []byte, error) {
	sec, err := secret.New(secret.WebhookSecret)
	if err != nil {
		return secret.Secret{}, nil, fmt.Errorf("generating the signing secret: %w", err)
	}
	sealed, err := s.keyring.Seal([]byte(sec.Plaintext), notify.SecretAD(id))
	if err != nil {
		return secret.Secret{}, nil, fmt.Errorf("sealing the signing secret: %w", err)
	}
	return sec, sealed, nil
}

func (s *notificationService) GetNotificationEndpoint(ctx context.Context, req *adminv1.GetNotificationEndpointRequest) (*adminv1.GetNotificationEndpointResponse, error) {
	e, err := getEndpoint(ctx, s.store.Client().NotificationEndpoint, principalFrom(ctx), "id", req.GetId())
	if err != nil {
		return nil, s.toStatus(ctx, "get notification endpoint", err)
	}
	return &adminv1.GetNotificationEndpointResponse{Endpoint: endpointToProto(e)}, nil
}

func (s *notificationService) ListNotificationEndpoints(ctx context.Context, req *adminv1.ListNotificationEndpointsRequest) (*adminv1.ListNotificationEndpointsResponse, error) {
	p := principalFrom(ctx)
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, badRequest(err)
	}
	after, err := decodeIDToken(req.GetPageToken())
	if err != nil {
		return nil, badRequest(err)
	}
	q := s.store.Client().NotificationEndpoint.Query().Where(notificationendpoint.IDGT(after)).
		Order(ent.Asc(notificationendpoint.FieldID)).Limit(size + 1)
	if req.GetTenant() != "" || !p.Operator {
		t, err := ownTenant(ctx, s.store.Client().Tenant, p, "tenant", req.GetTenant())
		if err != nil {
			return nil, s.toStatus(ctx, "list notification endpoints", err)
		}
		q.Where(notificationendpoint.TenantID(t.ID))
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, "list notification endpoints", err)
	}
	resp := &adminv1.ListNotificationEndpointsResponse{}
	resp.Endpoints, resp.NextPageToken = page(rows, size, endpointToProto, func(e *ent.NotificationEndpoint) string { return encodeIDToken(e.ID) })
	return resp, nil
}

func (s *notificationService) CreateNotificationEndpoint(ctx context.Context, req *adminv1.CreateNotificationEndpointRequest) (*adminv1.CreateNotificationEndpointResponse, error) {
	p := principalFrom(ctx)
	in := req.GetEndpoint()
	if in == nil {
		return nil, badRequest(invalid.Field("endpoint", "is required"))
	}
	errs := []error{checkName("endpoint.name", in.GetName()), checkEventTypes("endpoint.event_types", in.GetEventTypes())}
	if in.GetId() != "" {
		errs = append(errs, invalid.Field("endpoint.id", "is assigned by the server; leave it empty"))
	}
	var (
		kind  notificationendpoint.Kind
		rcpts []string
	)
	switch in.GetKind() {
	case adminv1.NotificationEndpointKind_NOTIFICATION_ENDPOINT_KIND_WEBHOOK:
		kind = notificationendpoint.KindWebhook
		errs = append(errs, checkWebhookURL("endpoint.url", in.GetUrl()))
		if len(in.GetEmailRecipients()) > 0 {
			errs = append(errs, invalid.Field("endpoint.email_recipients", "applies only to e-mail endpoints"))
		}
	case adminv1.NotificationEndpointKind_NOTIFICATION_ENDPOINT_KIND_EMAIL:
		kind = notificationendpoint.KindEmail
		var err error
		rcpts, err = checkRecipients("endpoint.email_recipients", in.GetEmailRecipients())
		errs = append(errs, err)
		if in.GetUrl() != "" {
			errs = append(errs, invalid.Field("endpoint.url", "applies only to webhooks"))
		}
	default:
		errs = append(errs, invalid.Field("endpoint.kind", "must be NOTIFICATION_ENDPOINT_KIND_WEBHOOK or NOTIFICATION_ENDPOINT_KIND_EMAIL"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}
	id := uuid.New()
	var sec secret.Secret
	var sealed []byte
	if kind == notificationendpoint.KindWebhook {
		var err error
		if sec, sealed, err = s.newSigningSecret(id); err != nil {
			return nil, s.toStatus(ctx, "create notification endpoint", err)
		}
	}
	var created *ent.NotificationEndpoint
	// Endpoints are not served over xDS: no config change to record.
	err := s.store.InTx(ctx, func(tx *ent.Tx) error {
		t, err := ownTenant(ctx, tx.Tenant, p, "tenant", req.GetTenant())
		if err != nil {
			return err
		}
		if err := checkEndpointNameFree(ctx, tx, t.ID, in.GetName(), uuid.Nil); err != nil {
			return err
		}
		c := tx.NotificationEndpoint.Create().SetID(id).SetTenantID(t.ID).SetName(in.GetName()).SetKind(kind).
			SetDisabled(in.GetDisabled())
		if kind == notificationendpoint.KindWebhook {
			c.SetURL(in.GetUrl()).SetSecret(sealed).SetSecretKeyID(s.keyring.ActiveID()).SetSecretPrefix(sec.Prefix)
		} else {
			c.SetEmailRecipients(rcpts)
		}
		if len(in.GetEventTypes()) > 0 {
			c.SetEventTypes(in.GetEventTypes())
		}
		if created, err = c.Save(ctx); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "notification_endpoint.create", targetType: "notification_endpoint", targetID: id, tenantID: &t.ID})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "create notification endpoint", err)
	}
	return &adminv1.CreateNotificationEndpointResponse{Endpoint: endpointToProto(created), SigningSecret: sec.Plaintext}, nil
}

func (s *notificationService) UpdateNotificationEndpoint(ctx context.Context, req *adminv1.UpdateNotificationEndpointRequest) (*adminv1.UpdateNotificationEndpointResponse, error) {
	p := principalFrom(ctx)
	in := req.GetEndpoint()
	if in == nil {
		return nil, badRequest(invalid.Field("endpoint", "is required"))
	}
	paths, err := maskPaths(req.GetUpdateMask(), "name", "url", "email_recipients", "event_types", "disabled")
	if err != nil {
		return nil, badRequest(err)
	}
	var updated *ent.NotificationEndpoint
	err = s.store.InTx(ctx, func(tx *ent.Tx) error {
		e, err := getEndpoint(ctx, tx.NotificationEndpoint, p, "endpoint.id", in.GetId())
		if err != nil {
			return err
		}
		webhook := e.Kind == notificationendpoint.KindWebhook
		var errs []error
		var rcpts []string
		for _, path := range paths {
			switch path {
			case "name":
				errs = append(errs, checkName("endpoint.name", in.GetName()))
			case "url":
				if !webhook {
					errs = append(errs, invalid.Field("endpoint.url", "applies only to webhooks"))
				} else {
					errs = append(errs, checkWebhookURL("endpoint.url", in.GetUrl()))
				}
			case "email_recipients":
				if webhook {
					errs = append(errs, invalid.Field("endpoint.email_recipients", "applies only to e-mail endpoints"))
				} else {
					var err error
					rcpts, err = checkRecipients("endpoint.email_recipients", in.GetEmailRecipients())
					errs = append(errs, err)
				}
			case "event_types":
				errs = append(errs, checkEventTypes("endpoint.event_types", in.GetEventTypes()))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		u := tx.NotificationEndpoint.UpdateOne(e)
		for _, path := range paths {
			switch path {
			case "name":
				if err := checkEndpointNameFree(ctx, tx, e.TenantID, in.GetName(), e.ID); err != nil {
					return err
				}
				u.SetName(in.GetName())
			case "url":
				u.SetURL(in.GetUrl())
			case "email_recipients":
				u.SetEmailRecipients(rcpts)
			case "event_types":
				if len(in.GetEventTypes()) == 0 {
					u.ClearEventTypes()
				} else {
					u.SetEventTypes(in.GetEventTypes())
				}
			case "disabled":
				u.SetDisabled(in.GetDisabled())
			}
		}
		if updated, err = u.Save(ctx); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "notification_endpoint.update", targetType: "notification_endpoint", targetID: e.ID, tenantID: &e.TenantID, fields: paths})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "update notification endpoint", err)
	}
	return &adminv1.UpdateNotificationEndpointResponse{Endpoint: endpointToProto(updated)}, nil
}

func (s *notificationService) DeleteNotificationEndpoint(ctx context.Context, req *adminv1.DeleteNotificationEndpointRequest) (*adminv1.DeleteNotificationEndpointResponse, error) {
	p := principalFrom(ctx)
	err := s.store.InTx(ctx, func(tx *ent.Tx) error {
		e, err := getEndpoint(ctx, tx.NotificationEndpoint, p, "id", req.GetId())
		if err != nil {
			return err
		}
		// Its deliveries go with it (ON DELETE CASCADE).
		if err := tx.NotificationEndpoint.DeleteOne(e).Exec(ctx); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "notification_endpoint.delete", targetType: "notification_endpoint", targetID: e.ID, tenantID: &e.TenantID})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "delete notification endpoint", err)
	}
	return &adminv1.DeleteNotificationEndpointResponse{}, nil
}

func (s *notificationService) RotateNotificationEndpointSecret(ctx context.Context, req *adminv1.RotateNotificationEndpointSecretRequest) (*adminv1.RotateNotificationEndpointSecretResponse, error) {
	p := principalFrom(ctx)
	var (
		updated *ent.NotificationEndpoint
		sec     secret.Secret
	)
	err := s.store.InTx(ctx, func(tx *ent.Tx) error {
		e, err := getEndpoint(ctx, tx.NotificationEndpoint, p, "id", req.GetId())
		if err != nil {
			return err
		}
		if e.Kind != notificationendpoint.KindWebhook {
			return status.Error(codes.FailedPrecondition, "only webhooks have a signing secret")
		}
		var sealed []byte
		if sec, sealed, err = s.newSigningSecret(e.ID); err != nil {
			return err
		}
		updated, err = tx.NotificationEndpoint.UpdateOne(e).SetSecret(sealed).SetSecretKeyID(s.keyring.ActiveID()).
			SetSecretPrefix(sec.Prefix).Save(ctx)
		if err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "notification_endpoint.rotate_secret", targetType: "notification_endpoint", targetID: e.ID, tenantID: &e.TenantID, fields: []string{"secret"}})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "rotate notification endpoint secret", err)
	}
	return &adminv1.RotateNotificationEndpointSecretResponse{Endpoint: endpointToProto(updated), SigningSecret: sec.Plaintext}, nil
}

func (s *notificationService) TestNotificationEndpoint(ctx context.Context, req *adminv1.TestNotificationEndpointRequest) (*adminv1.TestNotificationEndpointResponse, error) {
	p := principalFrom(ctx)
	var n *ent.Notification
	err := s.store.InTx(ctx, func(tx *ent.Tx) error {
		e, err := getEndpoint(ctx, tx.NotificationEndpoint, p, "id", req.GetId())
		if err != nil {
			return err
		}
		if n, err = notify.EnqueueTest(ctx, tx, e, p.Actor()); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "notification_endpoint.test", targetType: "notification_endpoint", targetID: e.ID, tenantID: &e.TenantID})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "test notification endpoint", err)
	}
	return &adminv1.TestNotificationEndpointResponse{Delivery: deliveryToProto(n)}, nil
}

func (s *notificationService) ListNotificationDeliveries(ctx context.Context, req *adminv1.ListNotificationDeliveriesRequest) (*adminv1.ListNotificationDeliveriesResponse, error) {
	p := principalFrom(ctx)
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, badRequest(err)
	}
	q := s.store.Client().Notification.Query().
		Order(ent.Desc(notification.FieldCreatedAt), ent.Desc(notification.FieldID)).Limit(size + 1)
	if req.GetPageToken() != "" {
		t, id, err := decodeTimeIDToken(req.GetPageToken())
		if err != nil {
			return nil, badRequest(err)
		}
		q.Where(notification.Or(notification.CreatedAtLT(t), notification.And(notification.CreatedAt(t), notification.IDLT(id))))
	}
	if req.GetStatus() != adminv1.NotificationDeliveryStatus_NOTIFICATION_DELIVERY_STATUS_UNSPECIFIED {
		st, ok := deliveryStatusFromProto(req.GetStatus())
		if !ok {
			return nil, badRequest(invalid.Field("status", "is not a delivery status"))
		}
		q.Where(notification.StatusEQ(st))
	}
	if req.GetEndpointId() != "" {
		e, err := getEndpoint(ctx, s.store.Client().NotificationEndpoint, p, "endpoint_id", req.GetEndpointId())
		if err != nil {
			return nil, s.toStatus(ctx, "list notification deliveries", err)
		}
		q.Where(notification.EndpointID(e.ID))
	}
	if req.GetTenant() != "" || !p.Operator {
		t, err := ownTenant(ctx, s.store.Client().Tenant, p, "tenant", req.GetTenant())
		if err != nil {
			return nil, s.toStatus(ctx, "list notification deliveries", err)
		}
		q.Where(notification.TenantID(t.ID))
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, "list notification deliveries", err)
	}
	resp := &adminv1.ListNotificationDeliveriesResponse{}
	resp.Deliveries, resp.NextPageToken = page(rows, size, deliveryToProto, func(n *ent.Notification) string { return encodeTimeIDToken(n.CreatedAt, n.ID) })
	return resp, nil
}

func deliveryStatusFromProto(s adminv1.NotificationDeliveryStatus) (notification.Status, bool) {
	for st, v := range deliveryStatusToProto {
		if v == s {
			return st, true
		}
	}
	return "", false
}
