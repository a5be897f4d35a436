package admin

import (
	"cmp"
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/billing"
	"github.com/tollgate-dev/tollgate/controlplane/invalid"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/tenant"
)

type tenantService struct {
	adminv1.UnimplementedTenantServiceServer
	*Server
}

var tenantStatusToProto = map[tenant.Status]adminv1.TenantStatus{
	tenant.StatusActive:     adminv1.TenantStatus_TENANT_STATUS_ACTIVE,
	tenant.StatusSuspended:  adminv1.TenantStatus_TENANT_STATUS_SUSPENDED,
	tenant.StatusRestricted: adminv1.TenantStatus_TENANT_STATUS_RESTRICTED,
}

func tenantStatusFromProto(field string, s adminv1.TenantStatus) (tenant.Status, error) {
	for k, v := range tenantStatusToProto {
		if v == s {
			return k, nil
		}
	}
	return "", invalid.Field(field, "must be TENANT_STATUS_ACTIVE, TENANT_STATUS_SUSPENDED or TENANT_STATUS_RESTRICTED")
}

func tenantToProto(t *ent.Tenant) *adminv1.Tenant {
	return &adminv1.Tenant{
		Id:               t.ID.String(),
		Slug:             t.Slug,
		Name:             t.Name,
		Status:           tenantStatusToProto[t.Status],
		BillingEmail:     t.BillingEmail,
		BillingReference: t.BillingReference,
		Plan:             t.Plan,
		CreateTime:       ts(t.CreatedAt),
		UpdateTime:       ts(t.UpdatedAt),
		BudgetAlertTime:  tsp(t.BudgetAlertAt),
		BudgetAlert:      t.BudgetAlert,
		Currency:         t.Currency,
		// A reason outlives nothing: it is shown only while restricted.
		RestrictionReason: restrictionReason(t.Status == tenant.StatusRestricted, t.RestrictionReason),
	}
}

func (s *tenantService) GetTenant(ctx context.Context, req *adminv1.GetTenantRequest) (*adminv1.GetTenantResponse, error) {
	t, err := resolveTenant(ctx, s.store.Client().Tenant, principalFrom(ctx), "tenant", req.GetTenant())
	if err != nil {
		return nil, s.toStatus(ctx, "get tenant", err)
	}
	return &adminv1.GetTenantResponse{Tenant: tenantToProto(t)}, nil
}

func (s *tenantService) ListTenants(ctx context.Context, req *adminv1.ListTenantsRequest) (*adminv1.ListTenantsResponse, error) {
	p := principalFrom(ctx)
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, badRequest(err)
	}
	after, err := decodeIDToken(req.GetPageToken())
	if err != nil {
		return nil, badRequest(err)
	}
	q := s.store.Client().Tenant.Query().Where(tenant.IDGT(after)).Order(ent.Asc(tenant.FieldID)).Limit(size + 1)
	if !p.Operator {
		q.Where(tenant.ID(p.TenantID))
	}
	if req.GetStatus() != adminv1.TenantStatus_TENANT_STATUS_UNSPECIFIED {
		st, err := tenantStatusFromProto("status", req.GetStatus())
		if err != nil {
			return nil, badRequest(err)
		}
		q.Where(tenant.StatusEQ(st))
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, "list tenants", err)
	}
	resp := &adminv1.ListTenantsResponse{}
	resp.Tenants, resp.NextPageToken = page(rows, size, tenantToProto, func(t *ent.Tenant) string { return encodeIDToken(t.ID) })
	return resp, nil
}

func (s *tenantService) CreateTenant(ctx context.Context, req *adminv1.CreateTenantRequest) (*adminv1.CreateTenantResponse, error) {
	p := principalFrom(ctx)
	if err := requireOperator(p, "create tenants"); err != nil {
		return nil, err
	}
	in := req.GetTenant()
	if in == nil {
		return nil, badRequest(invalid.Field("tenant", "is required"))
	}
	st := tenant.StatusActive
	var errs []error
	errs = append(errs, checkSlug("tenant.slug", in.GetSlug()))
	errs = append(errs, checkText("tenant.name", in.GetName(), 200, false))
	errs = append(errs, checkText("tenant.billing_reference", in.GetBillingReference(), 200, false))
	errs = append(errs, checkText("tenant.plan", in.GetPlan(), 100, false))
	currency := cmp.Or(in.GetCurrency(), billing.USD)
	errs = append(errs, billing.CheckCurrency("tenant.currency", currency))
	email, err := normalizeEmail("tenant.billing_email", in.GetBillingEmail(), false)
	errs = append(errs, err)
	if in.GetStatus() != adminv1.TenantStatus_TENANT_STATUS_UNSPECIFIED {
		st, err = tenantStatusFromProto("tenant.status", in.GetStatus())
		errs = append(errs, err)
	}
	if in.GetId() != "" {
		errs = append(errs, invalid.Field("tenant.id", "is assigned by the server; leave it empty"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}
	name := in.GetName()
	if name == "" {
		name = in.GetSlug()
	}

	var created *ent.Tenant
	err = s.mutate(ctx, func(tx *ent.Tx) error {
		exists, err := tx.Tenant.Query().Where(tenant.Slug(in.GetSlug())).Exist(ctx)
		if err != nil {
			return err
		}
		if exists {
			return status.Errorf(codes.AlreadyExists, "a tenant with slug %q already exists", in.GetSlug())
		}
		created, err = tx.Tenant.Create().
			SetSlug(in.GetSlug()).
			SetName(name).
			SetStatus(st).
			SetBillingEmail(email).
			SetBillingReference(in.GetBillingReference()).
			SetPlan(in.GetPlan()).
			SetCurrency(currency).
			Save(ctx)
		if err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "tenant.create", targetType: "tenant", targetID: created.ID, tenantID: &created.ID})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "create tenant", err)
	}
	return &adminv1.CreateTenantResponse{Tenant: tenantToProto(created)}, nil
}

func (s *tenantService) UpdateTenant(ctx context.Context, req *adminv1.UpdateTenantRequest) (*adminv1.UpdateTenantResponse, error) {
	p := principalFrom(ctx)
	in := req.GetTenant()
	if in == nil {
		return nil, badRequest(invalid.Field("tenant", "is required"))
	}
	paths, err := maskPaths(req.GetUpdateMask(), "name", "status", "billing_email", "billing_reference", "plan", "currency")
	if err != nil {
		return nil, badRequest(err)
	}
	ref := in.GetId()
	if ref == "" {
		ref = in.GetSlug()
	}
	var (
		errs  []error
		email string
		st    tenant.Status
	)
	for _, path := range paths {
		switch path {
		case "name":
			errs = append(errs, checkText("tenant.name", in.GetName(), 200, true))
		case "status":
			if err := requireOperator(p, "change a tenant's status"); err != nil {
				return nil, err
			}
			st, err = tenantStatusFromProto("tenant.status", in.GetStatus())
			errs = append(errs, err)
		case "billing_email":
			email, err = normalizeEmail("tenant.billing_email", in.GetBillingEmail(), false)
			errs = append(errs, err)
		case "billing_reference":
			errs = append(errs, checkText("tenant.billing_reference", in.GetBillingReference(), 200, false))
		case "plan":
			errs = append(errs, checkText("tenant.plan", in.GetPlan(), 100, false))
		case "currency":
			// Invoices are the operator's terms.
			if err := requireOperator(p, "change a tenant's currency"); err != nil {
				return nil, err
			}
			errs = append(errs, billing.CheckCurrency("tenant.currency", in.GetCurrency()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}

	var updated *ent.Tenant
	err = s.mutate(ctx, func(tx *ent.Tx) error {
		t, err := resolveTenant(ctx, tx.Tenant, p, "tenant.id", ref)
		if err != nil {
			return err
		}
		u := tx.Tenant.UpdateOne(t)
		for _, path := range paths {
			switch path {
			case "name":
				u.SetName(in.GetName())
			case "status":
				u.SetStatus(st)
				if st != tenant.StatusRestricted {
					u.SetRestrictionReason("")
				}
			case "billing_email":
				u.SetBillingEmail(email)
			case "billing_reference":
				u.SetBillingReference(in.GetBillingReference())
			case "plan":
				u.SetPlan(in.GetPlan())
			case "currency":
				u.SetCurrency(in.GetCurrency())
			}
		}
		if updated, err = u.Save(ctx); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "tenant.update", targetType: "tenant", targetID: t.ID, tenantID: &t.ID, fields: paths})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "update tenant", err)
	}
	return &adminv1.UpdateTenantResponse{Tenant: tenantToProto(updated)}, nil
}

func (s *tenantService) DeleteTenant(ctx context.Context, req *adminv1.DeleteTenantRequest) (*adminv1.DeleteTenantResponse, error) {
	p := principalFrom(ctx)
	if err := requireOperator(p, "delete tenants"); err != nil {
		return nil, err
	}
	err := s.mutate(ctx, func(tx *ent.Tx) error {
		t, err := resolveTenant(ctx, tx.Tenant, p, "tenant", req.GetTenant())
		if err != nil {
			return err
		}
		if err := tx.Tenant.DeleteOne(t).Exec(ctx); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "tenant.delete", targetType: "tenant", targetID: t.ID, tenantID: &t.ID})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "delete tenant", err)
	}
	return &adminv1.DeleteTenantResponse{}, nil
}
