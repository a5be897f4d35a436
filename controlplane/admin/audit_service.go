package admin

import (
	"context"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/invalid"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/auditevent"
)

type auditService struct {
	adminv1.UnimplementedAuditServiceServer
	*Server
}

func auditEventToProto(e *ent.AuditEvent) *adminv1.AuditEvent {
	out := &adminv1.AuditEvent{
		Id:            e.ID.String(),
		Time:          ts(e.Time),
		Actor:         e.Actor,
		Action:        e.Action,
		TargetType:    e.TargetType,
		TargetId:      e.TargetID,
		ChangedFields: e.ChangedFields,
	}
	if e.TenantID != nil {
		out.TenantId = e.TenantID.String()
	}
	return out
}

func (s *auditService) ListAuditEvents(ctx context.Context, req *adminv1.ListAuditEventsRequest) (*adminv1.ListAuditEventsResponse, error) {
	p := principalFrom(ctx)
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, badRequest(err)
	}
	c := s.store.Client()
	q := c.AuditEvent.Query().Order(ent.Desc(auditevent.FieldTime), ent.Desc(auditevent.FieldID)).Limit(size + 1)
	if req.GetPageToken() != "" {
		t, id, err := decodeTimeIDToken(req.GetPageToken())
		if err != nil {
			return nil, badRequest(err)
		}
		// Newest first: continue strictly after (t, id) in descending order.
		q.Where(auditevent.Or(
			auditevent.TimeLT(t),
			auditevent.And(auditevent.TimeEQ(t), auditevent.IDLT(id)),
		))
	}
	switch {
	case req.GetTenant() != "":
		t, err := resolveTenant(ctx, c.Tenant, p, "tenant", req.GetTenant())
		if err != nil {
			return nil, s.toStatus(ctx, "list audit events", err)
		}
		q.Where(auditevent.TenantID(t.ID))
	case !p.Operator:
		q.Where(auditevent.TenantID(p.TenantID))
	}
	if req.GetAction() != "" {
		q.Where(auditevent.Action(req.GetAction()))
	}
	if st := req.GetStartTime(); st != nil {
		if st.CheckValid() != nil {
			return nil, badRequest(invalid.Field("start_time", "is not a valid timestamp"))
		}
		q.Where(auditevent.TimeGTE(st.AsTime()))
	}
	if et := req.GetEndTime(); et != nil {
		if et.CheckValid() != nil {
			return nil, badRequest(invalid.Field("end_time", "is not a valid timestamp"))
		}
		q.Where(auditevent.TimeLT(et.AsTime()))
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, "list audit events", err)
	}
	resp := &adminv1.ListAuditEventsResponse{}
	resp.Events, resp.NextPageToken = page(rows, size, auditEventToProto, func(e *ent.AuditEvent) string { return encodeTimeIDToken(e.Time, e.ID) })
	return resp, nil
}
