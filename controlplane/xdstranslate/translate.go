package xdstranslate

import (
	"errors"
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/tollgate-dev/tollgate/controlplane/ir"
)

// Envoy is the configuration for Envoy nodes.
type Envoy struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
}

// validator is what every generated Envoy message implements.
type validator interface{ ValidateAll() error }

// TranslateEnvoy builds Envoy's configuration from g. It is best effort, as
// Envoy Gateway's translator is: a model that cannot be translated (say, its
// provider's URL is broken) is left out and reported in the error, and every
// other model is still served. The result is always usable; the error says
// what is missing from it.
func TranslateEnvoy(g *ir.Gateway, o Options) (*Envoy, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("data-plane options: %w", err)
	}
	var (
		errs   []error
		routes []*routev3.Route
		out    = &Envoy{}
	)
	for i := range g.Models {
		m := &g.Models[i]
		eps, err := modelEndpoints(g, m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		mRoutes := []*routev3.Route{modelRoute(m.RouteName(), m, o)}
		mClusters := []*clusterv3.Cluster{modelCluster(m.RouteName(), eps, o)}
		for _, v := range privacyVariants(m) {
			if v.shared {
				continue
			}
			veps, err := modelEndpoints(g, &v.model)
			if err != nil {
				// Cannot happen when the whole model resolved; kept so a
				// change to modelEndpoints cannot serve a half model.
				errs = append(errs, err)
				continue
			}
			mRoutes = append(mRoutes, modelRoute(v.route, &v.model, o))
			mClusters = append(mClusters, modelCluster(v.route, veps, o))
		}
		var vs []validator
		for i := range mRoutes {
			vs = append(vs, mRoutes[i], mClusters[i])
		}
		if err := validateAll(vs...); err != nil {
			errs = append(errs, fmt.Errorf("model %s (%s): %w", m.Name, m.ID, err))
			continue
		}
		routes = append(routes, mRoutes...)
		out.Clusters = append(out.Clusters, mClusters...)
	}
	out.Listeners = []*listenerv3.Listener{listener(o)}
	out.Routes = []*routev3.RouteConfiguration{routeConfiguration(routes)}
	// The listener and route table do not depend on any one model: if they
	// fail validation, nothing can be served and the caller must keep the
	// last good configuration.
	if err := validateAll(out.Listeners[0], out.Routes[0]); err != nil {
		return nil, fmt.Errorf("listener or route table invalid: %w", err)
	}
	return out, errors.Join(errs...)
}

// modelEndpoints resolves a model's deployments to endpoints. A deployment
// whose provider is unusable makes the whole model unusable: serving it
// with fewer deployments would silently change its fallback order.
func modelEndpoints(g *ir.Gateway, m *ir.Model) ([]endpoint, error) {
	if len(m.Deployments) == 0 {
		return nil, fmt.Errorf("model %s (%s): no deployments", m.Name, m.ID)
	}
	ranks := m.DenseRanks()
	eps := make([]endpoint, 0, len(m.Deployments))
	for i, d := range m.Deployments {
		p := g.Provider(d.ProviderID)
		if p == nil {
			return nil, fmt.Errorf("model %s (%s): deployment %s names unknown provider %s", m.Name, m.ID, d.ID, d.ProviderID)
		}
		host, port, tls, err := parseEndpoint(p)
		if err != nil {
			return nil, fmt.Errorf("model %s (%s): %w", m.Name, m.ID, err)
		}
		if d.Weight <= 0 {
			return nil, fmt.Errorf("model %s (%s): deployment %s has weight %d", m.Name, m.ID, d.ID, d.Weight)
		}
		eps = append(eps, endpoint{deployment: d, provider: p, rank: ranks[i], host: host, port: port, tls: tls})
	}
	return eps, nil
}

func validateAll(ms ...validator) error {
	var errs []error
	for _, m := range ms {
		if err := m.ValidateAll(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
