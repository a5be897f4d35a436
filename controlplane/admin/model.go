package admin

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/invalid"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/model"
	"github.com/tollgate-dev/tollgate/ent/modeldeployment"
	"github.com/tollgate-dev/tollgate/ent/modelprice"
)

type modelService struct {
	adminv1.UnimplementedModelServiceServer
	*Server
}

// modelNamePattern admits the names providers use: "gpt-4o-mini",
// "claude-sonnet-4-5", "meta-llama/Llama-3.1-8B-Instruct", "llama3.1:8b".
var modelNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$`)

func checkModelName(field, v string) error {
	if !modelNamePattern.MatchString(v) {
		return invalid.Field(field, "must be 1-200 letters, digits or . _ : / @ + -, starting with a letter or digit; got %q", v)
	}
	return nil
}

// priceSkew is how far in the past a new price may be dated, to allow for
// clock differences between the caller and the server. Anything older would
// change the price of usage that has already happened.
const priceSkew = time.Minute

func modelToProto(m *ent.Model, now time.Time) *adminv1.Model {
	out := &adminv1.Model{
		Id:            m.ID.String(),
		Name:          m.Name,
		ContextWindow: m.ContextWindow,
		CreateTime:    ts(m.CreatedAt),
		UpdateTime:    ts(m.UpdatedAt),
	}
	if m.TenantID != nil {
		out.TenantId = m.TenantID.String()
	}
	for _, d := range m.Edges.Deployments {
		out.Deployments = append(out.Deployments, &adminv1.Deployment{
			ProviderId:    d.ProviderID.String(),
			UpstreamModel: d.UpstreamModel,
			Weight:        d.Weight,
			Priority:      d.Priority,
			NoTraining:    d.NoTraining,
			Retention:     dataRetentionToProto[d.Retention],
			RetentionDays: d.RetentionDays,
		})
	}
	if p := currentPrice(m.Edges.Prices, now); p != nil {
		out.Pricing = &adminv1.Pricing{
			InputMicrosPerMtok:       p.InputMicrosPerMtok,
			OutputMicrosPerMtok:      p.OutputMicrosPerMtok,
			CachedInputMicrosPerMtok: p.CachedInputMicrosPerMtok,
			EffectiveTime:            ts(p.EffectiveFrom),
		}
	}
	return out
}

// currentPrice is the price in force at now: the latest one that has taken
// effect.
func currentPrice(prices []*ent.ModelPrice, now time.Time) *ent.ModelPrice {
	var best *ent.ModelPrice
	for _, p := range prices {
		if p.EffectiveFrom.After(now) {
			continue
		}
		if best == nil || p.EffectiveFrom.After(best.EffectiveFrom) {
			best = p
		}
	}
	return best
}

func withModelEdges(q *ent.ModelQuery) *ent.ModelQuery {
	return q.WithDeployments(func(q *ent.ModelDeploymentQuery) {
		q.Order(ent.Asc(modeldeployment.FieldPriority), ent.Asc(modeldeployment.FieldID))
	}).WithPrices()
}

func getModel(ctx context.Context, c *ent.ModelClient, p Principal, field, ref string) (*ent.Model, error) {
	id, err := parseID(field, ref)
	if err != nil {
		return nil, err
	}
	m, err := withModelEdges(c.Query().Where(model.ID(id))).Only(ctx)
	if ent.IsNotFound(err) || (err == nil && !visible(p, m.TenantID)) {
		return nil, notFound("model", ref)
	}
	return m, err
}

type deploymentSpec struct {
	providerID    uuid.UUID
	upstream      string
	weight        int32
	priority      int32
	noTraining    bool
	retention     modeldeployment.Retention
	retentionDays int32
}

var dataRetentionToProto = map[modeldeployment.Retention]adminv1.DataRetention{
	modeldeployment.RetentionUnknown: adminv1.DataRetention_DATA_RETENTION_UNKNOWN,
	modeldeployment.RetentionZero:    adminv1.DataRetention_DATA_RETENTION_ZERO,
	modeldeployment.RetentionLimited: adminv1.DataRetention_DATA_RETENTION_LIMITED,
}

// maxRetentionDays bounds a declared retention period: ten years is
// longer than any provider keeps API data, and a larger number is a typo.
const maxRetentionDays = 3650

// checkRetention reads a deployment's declared retention.
func checkRetention(f string, d *adminv1.Deployment) (modeldeployment.Retention, error) {
	days := d.GetRetentionDays()
	switch d.GetRetention() {
	case adminv1.DataRetention_DATA_RETENTION_UNSPECIFIED, adminv1.DataRetention_DATA_RETENTION_UNKNOWN, adminv1.DataRetention_DATA_RETENTION_ZERO:
		if days != 0 {
			return "", invalid.Field(f+".retention_days", "applies only with retention DATA_RETENTION_LIMITED; got %d", days)
		}
		if d.GetRetention() == adminv1.DataRetention_DATA_RETENTION_ZERO {
			return modeldeployment.RetentionZero, nil
		}
		return modeldeployment.RetentionUnknown, nil
	case adminv1.DataRetention_DATA_RETENTION_LIMITED:
		if days < 1 || days > maxRetentionDays {
			return "", invalid.Field(f+".retention_days", "must be 1 to %d days with retention DATA_RETENTION_LIMITED; got %d", maxRetentionDays, days)
		}
		return modeldeployment.RetentionLimited, nil
	}
	return "", invalid.Field(f+".retention", "must be DATA_RETENTION_UNKNOWN, DATA_RETENTION_ZERO or DATA_RETENTION_LIMITED")
}

// checkDeployments validates deployments without the store.
func checkDeployments(in []*adminv1.Deployment) ([]deploymentSpec, error) {
	if len(in) == 0 {
		return nil, invalid.Field("model.deployments", "needs at least one deployment (provider_id and upstream_model)")
	}
	var (
		errs []error
		out  []deploymentSpec
		seen = map[string]bool{}
	)
	for i, d := range in {
		f := fmt.Sprintf("model.deployments[%d]", i)
		id, err := parseID(f+".provider_id", d.GetProviderId())
		errs = append(errs, err, checkModelName(f+".upstream_model", d.GetUpstreamModel()))
		if d.GetWeight() < 0 {
			errs = append(errs, invalid.Field(f+".weight", "must not be negative"))
		}
		if d.GetPriority() < 0 {
			errs = append(errs, invalid.Field(f+".priority", "must not be negative"))
		}
		retention, err := checkRetention(f, d)
		errs = append(errs, err)
		k := d.GetProviderId() + "|" + d.GetUpstreamModel()
		if seen[k] {
			errs = append(errs, invalid.Field(f, "repeats provider %s with upstream model %q", d.GetProviderId(), d.GetUpstreamModel()))
		}
		seen[k] = true
		w := d.GetWeight()
		if w == 0 {
			w = 1
		}
		out = append(out, deploymentSpec{providerID: id, upstream: d.GetUpstreamModel(), weight: w, priority: d.GetPriority(),
			noTraining: d.GetNoTraining(), retention: retention, retentionDays: d.GetRetentionDays()})
	}
	return out, errors.Join(errs...)
}

// checkDeploymentProviders makes sure each provider exists and may serve a
// model of this owner: platform models use platform providers only; a
// tenant's model may use the platform's or its own. What a platform
// provider guarantees is in the operator's contract with it, so only the
// operator declares it: a tenant admin who could would satisfy the
// operator's privacy requirements on the tenant by saying so.
func checkDeploymentProviders(ctx context.Context, tx *ent.Tx, p Principal, owner *uuid.UUID, ds []deploymentSpec) error {
	var errs []error
	for i, d := range ds {
		f := fmt.Sprintf("model.deployments[%d].provider_id", i)
		pr, err := tx.Provider.Get(ctx, d.providerID)
		if ent.IsNotFound(err) {
			errs = append(errs, invalid.Field(f, "no provider %s", d.providerID))
			continue
		}
		if err != nil {
			return err
		}
		switch {
		case pr.TenantID == nil:
			if !p.Operator && (d.noTraining || d.retention != modeldeployment.RetentionUnknown) {
				return status.Errorf(codes.PermissionDenied,
					"model.deployments[%d]: only the operator may declare what a platform provider guarantees (no_training, retention); leave them unset, or use a provider of your own", i)
			}
		case owner == nil:
			// Do not reveal whether another tenant's provider exists.
			errs = append(errs, invalid.Field(f, "no platform provider %s; platform models can use platform providers only", d.providerID))
		case *pr.TenantID != *owner:
			errs = append(errs, invalid.Field(f, "no provider %s", d.providerID))
		}
	}
	return errors.Join(errs...)
}

func createDeployments(ctx context.Context, tx *ent.Tx, modelID uuid.UUID, ds []deploymentSpec) error {
	builders := make([]*ent.ModelDeploymentCreate, 0, len(ds))
	for _, d := range ds {
		builders = append(builders, tx.ModelDeployment.Create().
			SetModelID(modelID).SetProviderID(d.providerID).SetUpstreamModel(d.upstream).
			SetWeight(d.weight).SetPriority(d.priority).
			SetNoTraining(d.noTraining).SetRetention(d.retention).SetRetentionDays(d.retentionDays))
	}
	return tx.ModelDeployment.CreateBulk(builders...).Exec(ctx)
}

type priceSpec struct {
	input, output, cachedInput int64
	effective                  time.Time
}

func checkPricing(in *adminv1.Pricing, now time.Time, allowPast bool) (priceSpec, error) {
	if in == nil {
		return priceSpec{}, invalid.Field("model.pricing", "is required (give zeros for a model that is free)")
	}
	var errs []error
	for _, v := range []struct {
		f string
		n int64
	}{
		{"input_micros_per_mtok", in.GetInputMicrosPerMtok()},
		{"output_micros_per_mtok", in.GetOutputMicrosPerMtok()},
		{"cached_input_micros_per_mtok", in.GetCachedInputMicrosPerMtok()},
	} {
		if v.n < 0 {
			errs = append(errs, invalid.Field("model.pricing."+v.f, "must not be negative"))
		}
	}
	eff := now
	if in.GetEffectiveTime() != nil {
		if err := in.GetEffectiveTime().CheckValid(); err != nil {
			errs = append(errs, invalid.Field("model.pricing.effective_time", "is not a valid timestamp"))
		} else {
			eff = in.GetEffectiveTime().AsTime().UTC()
			if !allowPast && eff.Before(now.Add(-priceSkew)) {
				errs = append(errs, invalid.Field("model.pricing.effective_time", "must not be in the past: usage already recorded keeps its price"))
			}
		}
	}
	return priceSpec{in.GetInputMicrosPerMtok(), in.GetOutputMicrosPerMtok(), in.GetCachedInputMicrosPerMtok(), eff}, errors.Join(errs...)
}

func addPrice(ctx context.Context, tx *ent.Tx, modelID uuid.UUID, p priceSpec) error {
	taken, err := tx.ModelPrice.Query().Where(modelprice.ModelID(modelID), modelprice.EffectiveFrom(p.effective)).Exist(ctx)
	if err != nil {
		return err
	}
	if taken {
		return status.Errorf(codes.AlreadyExists, "a price already takes effect at %s", p.effective.Format(time.RFC3339Nano))
	}
	return tx.ModelPrice.Create().SetModelID(modelID).SetEffectiveFrom(p.effective).
		SetInputMicrosPerMtok(p.input).SetOutputMicrosPerMtok(p.output).SetCachedInputMicrosPerMtok(p.cachedInput).
		Exec(ctx)
}

func checkModelNameFree(ctx context.Context, tx *ent.Tx, owner *uuid.UUID, name string, self uuid.UUID) error {
	q := tx.Model.Query().Where(model.Name(name), model.IDNEQ(self))
	if owner == nil {
		q.Where(model.TenantIDIsNil())
	} else {
		q.Where(model.TenantID(*owner))
	}
	taken, err := q.Exist(ctx)
	if err != nil {
		return err
	}
	if taken {
		return status.Errorf(codes.AlreadyExists, "a model named %q already exists", name)
	}
	return nil
}

func (s *modelService) GetModel(ctx context.Context, req *adminv1.GetModelRequest) (*adminv1.GetModelResponse, error) {
	m, err := getModel(ctx, s.store.Client().Model, principalFrom(ctx), "id", req.GetId())
	if err != nil {
		return nil, s.toStatus(ctx, "get model", err)
	}
	return &adminv1.GetModelResponse{Model: modelToProto(m, s.clock())}, nil
}

func (s *modelService) ListModels(ctx context.Context, req *adminv1.ListModelsRequest) (*adminv1.ListModelsResponse, error) {
	p := principalFrom(ctx)
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, badRequest(err)
	}
	after, err := decodeIDToken(req.GetPageToken())
	if err != nil {
		return nil, badRequest(err)
	}
	q := withModelEdges(s.store.Client().Model.Query().Where(model.IDGT(after)).Order(ent.Asc(model.FieldID)).Limit(size + 1))
	scope, err := ownerFilter(ctx, s.store.Client(), p, req.GetTenant(), model.TenantIDIsNil, model.TenantID, model.Or)
	if err != nil {
		return nil, s.toStatus(ctx, "list models", err)
	}
	if scope != nil {
		q.Where(scope)
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, "list models", err)
	}
	now := s.clock()
	resp := &adminv1.ListModelsResponse{}
	resp.Models, resp.NextPageToken = page(rows, size, func(m *ent.Model) *adminv1.Model { return modelToProto(m, now) }, func(m *ent.Model) string { return encodeIDToken(m.ID) })
	return resp, nil
}

func (s *modelService) CreateModel(ctx context.Context, req *adminv1.CreateModelRequest) (*adminv1.CreateModelResponse, error) {
	p := principalFrom(ctx)
	in := req.GetModel()
	if in == nil {
		return nil, badRequest(invalid.Field("model", "is required"))
	}
	now := s.clock()
	ds, derr := checkDeployments(in.GetDeployments())
	price, perr := checkPricing(in.GetPricing(), now, true)
	errs := []error{checkModelName("model.name", in.GetName()), derr, perr}
	if in.GetContextWindow() < 0 {
		errs = append(errs, invalid.Field("model.context_window", "must not be negative"))
	}
	if in.GetId() != "" {
		errs = append(errs, invalid.Field("model.id", "is assigned by the server; leave it empty"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}
	var id uuid.UUID
	err := s.mutate(ctx, func(tx *ent.Tx) error {
		var owner *uuid.UUID
		if in.GetTenantId() != "" {
			t, err := resolveTenant(ctx, tx.Tenant, p, "model.tenant_id", in.GetTenantId())
			if err != nil {
				return err
			}
			owner = &t.ID
		} else if err := requireOperator(p, "create platform models (set model.tenant_id to your tenant)"); err != nil {
			return err
		}
		if err := checkModelNameFree(ctx, tx, owner, in.GetName(), uuid.Nil); err != nil {
			return err
		}
		if err := checkDeploymentProviders(ctx, tx, p, owner, ds); err != nil {
			return err
		}
		m, err := tx.Model.Create().SetNillableTenantID(owner).SetName(in.GetName()).SetContextWindow(in.GetContextWindow()).Save(ctx)
		if err != nil {
			return err
		}
		id = m.ID
		if err := createDeployments(ctx, tx, m.ID, ds); err != nil {
			return err
		}
		if err := addPrice(ctx, tx, m.ID, price); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "model.create", targetType: "model", targetID: m.ID, tenantID: owner})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "create model", err)
	}
	m, err := getModel(ctx, s.store.Client().Model, p, "id", id.String())
	if err != nil {
		return nil, s.toStatus(ctx, "create model", err)
	}
	return &adminv1.CreateModelResponse{Model: modelToProto(m, s.clock())}, nil
}

func (s *modelService) UpdateModel(ctx context.Context, req *adminv1.UpdateModelRequest) (*adminv1.UpdateModelResponse, error) {
	p := principalFrom(ctx)
	in := req.GetModel()
	if in == nil {
		return nil, badRequest(invalid.Field("model", "is required"))
	}
	paths, err := maskPaths(req.GetUpdateMask(), "name", "context_window", "deployments", "pricing")
	if err != nil {
		return nil, badRequest(err)
	}
	now := s.clock()
	var (
		errs  []error
		ds    []deploymentSpec
		price priceSpec
	)
	for _, path := range paths {
		switch path {
		case "name":
			errs = append(errs, checkModelName("model.name", in.GetName()))
		case "context_window":
			if in.GetContextWindow() < 0 {
				errs = append(errs, invalid.Field("model.context_window", "must not be negative"))
			}
		case "deployments":
			ds, err = checkDeployments(in.GetDeployments())
			errs = append(errs, err)
		case "pricing":
			price, err = checkPricing(in.GetPricing(), now, false)
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}
	var id uuid.UUID
	err = s.mutate(ctx, func(tx *ent.Tx) error {
		m, err := getModel(ctx, tx.Model, p, "model.id", in.GetId())
		if err != nil {
			return err
		}
		if !writable(p, m.TenantID) {
			return status.Error(codes.PermissionDenied, "only the operator may change platform models")
		}
		id = m.ID
		u := tx.Model.UpdateOne(m)
		for _, path := range paths {
			switch path {
			case "name":
				if err := checkModelNameFree(ctx, tx, m.TenantID, in.GetName(), m.ID); err != nil {
					return err
				}
				u.SetName(in.GetName())
			case "context_window":
				u.SetContextWindow(in.GetContextWindow())
			case "deployments":
				if err := checkDeploymentProviders(ctx, tx, p, m.TenantID, ds); err != nil {
					return err
				}
				if _, err := tx.ModelDeployment.Delete().Where(modeldeployment.ModelID(m.ID)).Exec(ctx); err != nil {
					return err
				}
				if err := createDeployments(ctx, tx, m.ID, ds); err != nil {
					return err
				}
			case "pricing":
				if err := addPrice(ctx, tx, m.ID, price); err != nil {
					return err
				}
			}
		}
		// Save even when only edges changed, so update_time moves.
		if err := u.Exec(ctx); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "model.update", targetType: "model", targetID: m.ID, tenantID: m.TenantID, fields: paths})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "update model", err)
	}
	m, err := getModel(ctx, s.store.Client().Model, p, "id", id.String())
	if err != nil {
		return nil, s.toStatus(ctx, "update model", err)
	}
	return &adminv1.UpdateModelResponse{Model: modelToProto(m, s.clock())}, nil
}

func (s *modelService) DeleteModel(ctx context.Context, req *adminv1.DeleteModelRequest) (*adminv1.DeleteModelResponse, error) {
	p := principalFrom(ctx)
	err := s.mutate(ctx, func(tx *ent.Tx) error {
		m, err := getModel(ctx, tx.Model, p, "id", req.GetId())
		if err != nil {
			return err
		}
		if !writable(p, m.TenantID) {
			return status.Error(codes.PermissionDenied, "only the operator may delete platform models")
		}
		if err := tx.Model.DeleteOne(m).Exec(ctx); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "model.delete", targetType: "model", targetID: m.ID, tenantID: m.TenantID})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "delete model", err)
	}
	return &adminv1.DeleteModelResponse{}, nil
}
