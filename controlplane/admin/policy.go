package admin

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/invalid"
	"github.com/tollgate-dev/tollgate/controlplane/policy"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/apikey"
	"github.com/tollgate-dev/tollgate/ent/gatewaypolicy"
)

type policyService struct {
	adminv1.UnimplementedPolicyServiceServer
	*Server
}

// policyTarget is a resolved PolicyTarget: a tenant, or a key of a tenant.
type policyTarget struct {
	tenantID uuid.UUID
	keyID    *uuid.UUID
}

func (t policyTarget) proto() *adminv1.PolicyTarget {
	if t.keyID != nil {
		return &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_KeyId{KeyId: t.keyID.String()}}
	}
	return &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_Tenant{Tenant: t.tenantID.String()}}
}

func (t policyTarget) where() func(*ent.GatewayPolicyQuery) {
	return func(q *ent.GatewayPolicyQuery) {
		if t.keyID != nil {
			q.Where(gatewaypolicy.APIKeyID(*t.keyID))
		} else {
			q.Where(gatewaypolicy.TenantID(t.tenantID))
		}
	}
}

func resolvePolicyTarget(ctx context.Context, c *ent.Client, p Principal, field string, in *adminv1.PolicyTarget) (policyTarget, error) {
	switch t := in.GetTarget().(type) {
	case *adminv1.PolicyTarget_Tenant:
		tn, err := resolveTenant(ctx, c.Tenant, p, field+".tenant", t.Tenant)
		if err != nil {
			return policyTarget{}, err
		}
		return policyTarget{tenantID: tn.ID}, nil
	case *adminv1.PolicyTarget_KeyId:
		k, err := getKey(ctx, c.APIKey, p, field+".key_id", t.KeyId)
		if err != nil {
			return policyTarget{}, err
		}
		return policyTarget{tenantID: k.TenantID, keyID: &k.ID}, nil
	}
	return policyTarget{}, invalid.Field(field, "is required: set tenant or key_id")
}

// checkPolicyWrite enforces who sets which policy: a tenant's policy is the
// operator's limit on that tenant, so only the operator changes it; a key's
// policy is the tenant's own limit on its key, so its admins may change it.
func checkPolicyWrite(p Principal, t policyTarget) error {
	if t.keyID == nil {
		return requireOperator(p, "change a tenant's policy; tenant admins set policies on their keys")
	}
	return nil
}

var budgetPeriodToProto = map[policy.Period]adminv1.BudgetPeriod{
	policy.PeriodDay:   adminv1.BudgetPeriod_BUDGET_PERIOD_DAY,
	policy.PeriodMonth: adminv1.BudgetPeriod_BUDGET_PERIOD_MONTH,
	policy.PeriodTotal: adminv1.BudgetPeriod_BUDGET_PERIOD_TOTAL,
}

var retentionToProto = map[policy.ContentRetention]adminv1.ContentRetention{
	policy.RetentionUnset:    adminv1.ContentRetention_CONTENT_RETENTION_UNSPECIFIED,
	policy.RetentionNone:     adminv1.ContentRetention_CONTENT_RETENTION_NONE,
	policy.RetentionMetadata: adminv1.ContentRetention_CONTENT_RETENTION_METADATA,
	policy.RetentionFull:     adminv1.ContentRetention_CONTENT_RETENTION_FULL,
}

func policyToProto(t policyTarget, spec policy.Spec, row *ent.GatewayPolicy) *adminv1.Policy {
	out := &adminv1.Policy{
		Target:               t.proto(),
		RequestsPerMinute:    spec.RequestsPerMinute,
		TokensPerMinute:      spec.TokensPerMinute,
		ConcurrentRequests:   spec.ConcurrentRequests,
		MaxOutputTokens:      spec.MaxOutputTokens,
		ClampOutputTokens:    spec.ClampOutputTokens,
		AllowedModels:        spec.AllowedModels,
		DeniedModels:         spec.DeniedModels,
		AllowedProviders:     spec.AllowedProviders,
		DeniedProviders:      spec.DeniedProviders,
		AllowedCidrs:         spec.AllowedCIDRs,
		ContentRetention:     retentionToProto[spec.Retention.Content],
		ContentRetentionDays: spec.Retention.ContentDays,
		UsageRetentionDays:   spec.Retention.UsageDays,
		RequireNoTraining:    spec.Privacy.RequireNoTraining,
		RequireZeroRetention: spec.Privacy.RequireZeroRetention,
		AllowProviderStorage: spec.Privacy.AllowProviderStorage,
		Redact:               spec.Privacy.Redact,
	}
	for _, b := range spec.Budgets {
		out.Budgets = append(out.Budgets, &adminv1.Budget{
			Period:          budgetPeriodToProto[b.Period],
			HardLimitMicros: b.HardLimitMicros,
			SoftLimitMicros: b.SoftLimitMicros,
		})
	}
	if row != nil {
		out.UpdateTime = ts(row.UpdatedAt)
	}
	return out
}

// policyFields are the Policy fields an update mask may name.
var policyFields = []string{
	"requests_per_minute", "tokens_per_minute", "concurrent_requests", "max_output_tokens",
	"clamp_output_tokens", "budgets", "allowed_models", "denied_models", "allowed_providers",
	"denied_providers", "allowed_cidrs", "content_retention", "content_retention_days",
	"usage_retention_days", "require_no_training", "require_zero_retention",
	"allow_provider_storage", "redact",
}

// applyPolicy copies the fields named in paths from in onto spec.
func applyPolicy(spec *policy.Spec, in *adminv1.Policy, paths []string) error {
	for _, path := range paths {
		switch path {
		case "requests_per_minute":
			spec.RequestsPerMinute = in.RequestsPerMinute
		case "tokens_per_minute":
			spec.TokensPerMinute = in.TokensPerMinute
		case "concurrent_requests":
			spec.ConcurrentRequests = in.ConcurrentRequests
		case "max_output_tokens":
			spec.MaxOutputTokens = in.MaxOutputTokens
		case "clamp_output_tokens":
			spec.ClampOutputTokens = in.GetClampOutputTokens()
		case "budgets":
			spec.Budgets = nil
			for i, b := range in.GetBudgets() {
				var period policy.Period
				for k, v := range budgetPeriodToProto {
					if v == b.GetPeriod() {
						period = k
					}
				}
				if period == "" {
					return invalid.Field(fmt.Sprintf("policy.budgets[%d].period", i), "must be BUDGET_PERIOD_DAY, BUDGET_PERIOD_MONTH or BUDGET_PERIOD_TOTAL")
				}
				spec.Budgets = append(spec.Budgets, policy.Budget{Period: period, HardLimitMicros: b.HardLimitMicros, SoftLimitMicros: b.SoftLimitMicros})
			}
		case "allowed_models":
			spec.AllowedModels = in.GetAllowedModels()
		case "denied_models":
			spec.DeniedModels = in.GetDeniedModels()
		case "allowed_providers":
			spec.AllowedProviders = in.GetAllowedProviders()
		case "denied_providers":
			spec.DeniedProviders = in.GetDeniedProviders()
		case "allowed_cidrs":
			spec.AllowedCIDRs = in.GetAllowedCidrs()
		case "content_retention":
			var r policy.ContentRetention
			found := false
			for k, v := range retentionToProto {
				if v == in.GetContentRetention() {
					r, found = k, true
				}
			}
			if !found {
				return invalid.Field("policy.content_retention", "is not a known retention")
			}
			spec.Retention.Content = r
		case "content_retention_days":
			spec.Retention.ContentDays = in.GetContentRetentionDays()
		case "usage_retention_days":
			spec.Retention.UsageDays = in.GetUsageRetentionDays()
		case "require_no_training":
			spec.Privacy.RequireNoTraining = in.GetRequireNoTraining()
		case "require_zero_retention":
			spec.Privacy.RequireZeroRetention = in.GetRequireZeroRetention()
		case "allow_provider_storage":
			spec.Privacy.AllowProviderStorage = in.GetAllowProviderStorage()
		case "redact":
			spec.Privacy.Redact = in.GetRedact()
		}
	}
	return nil
}

func (s *policyService) GetPolicy(ctx context.Context, req *adminv1.GetPolicyRequest) (*adminv1.GetPolicyResponse, error) {
	p := principalFrom(ctx)
	c := s.store.Client()
	t, err := resolvePolicyTarget(ctx, c, p, "target", req.GetTarget())
	if err != nil {
		return nil, s.toStatus(ctx, "get policy", err)
	}
	q := c.GatewayPolicy.Query()
	t.where()(q)
	row, err := q.Only(ctx)
	if ent.IsNotFound(err) {
		// No policy is the empty policy: nothing limited beyond what the
		// tenant (for a key) already says.
		return &adminv1.GetPolicyResponse{Policy: policyToProto(t, policy.Spec{}, nil)}, nil
	}
	if err != nil {
		return nil, s.toStatus(ctx, "get policy", err)
	}
	return &adminv1.GetPolicyResponse{Policy: policyToProto(t, row.Spec, row)}, nil
}

func (s *policyService) ListPolicies(ctx context.Context, req *adminv1.ListPoliciesRequest) (*adminv1.ListPoliciesResponse, error) {
	p := principalFrom(ctx)
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, badRequest(err)
	}
	after, err := decodeIDToken(req.GetPageToken())
	if err != nil {
		return nil, badRequest(err)
	}
	c := s.store.Client()
	tn, err := resolveTenant(ctx, c.Tenant, p, "tenant", req.GetTenant())
	if err != nil {
		return nil, s.toStatus(ctx, "list policies", err)
	}
	rows, err := c.GatewayPolicy.Query().
		Where(gatewaypolicy.IDGT(after), gatewaypolicy.Or(
			gatewaypolicy.TenantID(tn.ID),
			gatewaypolicy.HasAPIKeyWith(apikey.TenantID(tn.ID)),
		)).
		Order(ent.Asc(gatewaypolicy.FieldID)).Limit(size + 1).All(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, "list policies", err)
	}
	resp := &adminv1.ListPoliciesResponse{}
	resp.Policies, resp.NextPageToken = page(rows, size, func(row *ent.GatewayPolicy) *adminv1.Policy {
		return policyToProto(policyTarget{tenantID: tn.ID, keyID: row.APIKeyID}, row.Spec, row)
	}, func(row *ent.GatewayPolicy) string { return encodeIDToken(row.ID) })
	return resp, nil
}

func (s *policyService) UpdatePolicy(ctx context.Context, req *adminv1.UpdatePolicyRequest) (*adminv1.UpdatePolicyResponse, error) {
	p := principalFrom(ctx)
	in := req.GetPolicy()
	if in == nil {
		return nil, badRequest(invalid.Field("policy", "is required"))
	}
	paths := policyFields
	if len(req.GetUpdateMask().GetPaths()) > 0 {
		var err error
		if paths, err = maskPaths(req.GetUpdateMask(), policyFields...); err != nil {
			return nil, badRequest(err)
		}
	}
	var out *adminv1.Policy
	err := s.mutate(ctx, func(tx *ent.Tx) error {
		t, err := resolvePolicyTarget(ctx, tx.Client(), p, "policy.target", in.GetTarget())
		if err != nil {
			return err
		}
		if err := checkPolicyWrite(p, t); err != nil {
			return err
		}
		q := tx.GatewayPolicy.Query()
		t.where()(q)
		row, err := q.Only(ctx)
		if err != nil && !ent.IsNotFound(err) {
			return err
		}
		var spec policy.Spec
		if row != nil {
			spec = row.Spec
		}
		if err := applyPolicy(&spec, in, paths); err != nil {
			return err
		}
		if err := spec.Validate(); err != nil {
			return invalid.Prefix("policy", err)
		}
		if t.keyID != nil && spec.Privacy.AllowProviderStorage {
			// ext_proc reads it from the tenant only: a key's policy can
			// only be stricter, and accepting it here would look like a
			// permission that is never applied.
			return invalid.Field("policy.allow_provider_storage", "applies to a tenant's policy only; a key's policy can only be stricter than its tenant's")
		}
		if row == nil {
			c := tx.GatewayPolicy.Create().SetSpec(spec)
			if t.keyID != nil {
				c.SetAPIKeyID(*t.keyID)
			} else {
				c.SetTenantID(t.tenantID)
			}
			row, err = c.Save(ctx)
		} else {
			row, err = tx.GatewayPolicy.UpdateOne(row).SetSpec(spec).Save(ctx)
		}
		if err != nil {
			return err
		}
		out = policyToProto(t, spec, row)
		target := t.tenantID
		if t.keyID != nil {
			target = *t.keyID
		}
		return record(ctx, tx, p, event{action: "policy.update", targetType: targetType(t), targetID: target, tenantID: &t.tenantID, fields: paths})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "update policy", err)
	}
	return &adminv1.UpdatePolicyResponse{Policy: out}, nil
}

func targetType(t policyTarget) string {
	if t.keyID != nil {
		return "key"
	}
	return "tenant"
}

func (s *policyService) DeletePolicy(ctx context.Context, req *adminv1.DeletePolicyRequest) (*adminv1.DeletePolicyResponse, error) {
	p := principalFrom(ctx)
	err := s.mutate(ctx, func(tx *ent.Tx) error {
		t, err := resolvePolicyTarget(ctx, tx.Client(), p, "target", req.GetTarget())
		if err != nil {
			return err
		}
		if err := checkPolicyWrite(p, t); err != nil {
			return err
		}
		d := tx.GatewayPolicy.Delete()
		if t.keyID != nil {
			d.Where(gatewaypolicy.APIKeyID(*t.keyID))
		} else {
			d.Where(gatewaypolicy.TenantID(t.tenantID))
		}
		n, err := d.Exec(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return status.Error(codes.NotFound, "no policy is set on this target")
		}
		target := t.tenantID
		if t.keyID != nil {
			target = *t.keyID
		}
		return record(ctx, tx, p, event{action: "policy.delete", targetType: targetType(t), targetID: target, tenantID: &t.tenantID})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "delete policy", err)
	}
	return &adminv1.DeletePolicyResponse{}, nil
}
