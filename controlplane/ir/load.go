package ir

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/account"
	"github.com/tollgate-dev/tollgate/ent/apikey"
	"github.com/tollgate-dev/tollgate/ent/modelprice"
)

// keyExpiryGrace keeps expired keys in the view for a day, so that ext_proc
// can tell a client its key expired rather than that it is unknown.
const keyExpiryGrace = 24 * time.Hour

// Load reads the gateway from st in one transaction, so the snapshot is
// consistent: no key of a tenant that the same snapshot lacks, no deployment
// of a provider it lacks.
func Load(ctx context.Context, st *store.Store, now time.Time) (*Gateway, error) {
	var g *Gateway
	err := st.InTx(ctx, func(tx *ent.Tx) error {
		var err error
		g, err = load(ctx, tx, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("loading the gateway from the store: %w", err)
	}
	g.Sort()
	return g, nil
}

func load(ctx context.Context, tx *ent.Tx, now time.Time) (*Gateway, error) {
	g := &Gateway{}
	policies, err := tx.GatewayPolicy.Query().All(ctx)
	if err != nil {
		return nil, err
	}
	tenantPolicy := map[string]*ent.GatewayPolicy{}
	keyPolicy := map[string]*ent.GatewayPolicy{}
	for _, p := range policies {
		switch {
		case p.TenantID != nil:
			tenantPolicy[p.TenantID.String()] = p
		case p.APIKeyID != nil:
			keyPolicy[p.APIKeyID.String()] = p
		}
	}

	tenants, err := tx.Tenant.Query().All(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range tenants {
		it := Tenant{ID: t.ID, Slug: t.Slug, Status: string(t.Status)}
		if p := tenantPolicy[t.ID.String()]; p != nil {
			it.Policy = &p.Spec
		}
		g.Tenants = append(g.Tenants, it)
	}

	// Only restricted accounts matter to the data plane, and there are few.
	restricted, err := tx.Account.Query().Where(account.Restricted(true)).IDs(ctx)
	if err != nil {
		return nil, err
	}
	restrictedAccount := make(map[uuid.UUID]bool, len(restricted))
	for _, id := range restricted {
		restrictedAccount[id] = true
	}

	keys, err := tx.APIKey.Query().
		Where(apikey.RevokedAtIsNil(), apikey.Or(apikey.ExpiresAtIsNil(), apikey.ExpiresAtGT(now.Add(-keyExpiryGrace)))).
		All(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		ik := Key{ID: k.ID, TenantID: k.TenantID, Prefix: k.Prefix, Hash: k.Hash, AllowedModels: k.AllowedModels, ExpiresAt: k.ExpiresAt, AccountID: k.AccountID}
		if k.AccountID != nil {
			ik.AccountRestricted = restrictedAccount[*k.AccountID]
		}
		if p := keyPolicy[k.ID.String()]; p != nil {
			ik.Policy = &p.Spec
		}
		g.Keys = append(g.Keys, ik)
	}

	providers, err := tx.Provider.Query().All(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range providers {
		g.Providers = append(g.Providers, Provider{
			ID: p.ID, TenantID: p.TenantID, Name: p.Name, Kind: string(p.Kind),
			BaseURL: p.BaseURL, APIVersion: p.APIVersion, Credential: p.Credential,
		})
	}

	models, err := tx.Model.Query().WithDeployments().WithPrices(func(q *ent.ModelPriceQuery) {
		q.Order(ent.Asc(modelprice.FieldEffectiveFrom))
	}).All(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range models {
		im := Model{ID: m.ID, TenantID: m.TenantID, Name: m.Name, ContextWindow: m.ContextWindow}
		for _, d := range m.Edges.Deployments {
			im.Deployments = append(im.Deployments, Deployment{
				ID: d.ID, ProviderID: d.ProviderID, UpstreamModel: d.UpstreamModel, Weight: d.Weight, Priority: d.Priority,
				NoTraining: d.NoTraining, Retention: string(d.Retention), RetentionDays: d.RetentionDays,
			})
		}
		im.Prices = currentAndScheduled(m.Edges.Prices, now)
		g.Models = append(g.Models, im)
	}
	return g, nil
}

// currentAndScheduled keeps the price in force at now and every later one;
// older prices matter only to usage already recorded.
func currentAndScheduled(prices []*ent.ModelPrice, now time.Time) []Price {
	var out []Price
	for i, p := range prices {
		next := i+1 < len(prices) && !prices[i+1].EffectiveFrom.After(now)
		if next {
			continue // superseded before now
		}
		out = append(out, Price{
			EffectiveFrom:            p.EffectiveFrom.UTC(),
			InputMicrosPerMtok:       p.InputMicrosPerMtok,
			OutputMicrosPerMtok:      p.OutputMicrosPerMtok,
			CachedInputMicrosPerMtok: p.CachedInputMicrosPerMtok,
		})
	}
	return out
}
