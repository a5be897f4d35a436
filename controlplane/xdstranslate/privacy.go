package xdstranslate

import (
	"slices"

	"github.com/tollgate-dev/tollgate/controlplane/ir"
)

// privacyVariant is the part of a model that meets a privacy requirement:
// its own route and cluster, holding only the deployments that give the
// guarantee, so that Envoy cannot pick (or fall back to) any other. ext_proc
// sends a request there when its policy requires the guarantee
// (configv1.Model.privacy_routes).
//
// Variants exist only where they change something: when every deployment
// meets the requirement the model's own route serves, and when none does
// the request is refused before it leaves. Two requirements met by the same
// deployments share one route.
type privacyVariant struct {
	req   ir.Requirement
	route string
	// model is the model with only the deployments that meet req, in their
	// order; their priorities are re-ranked from 0 by DenseRanks.
	model ir.Model
	// shared: an earlier variant has the same deployments, and route is
	// its route.
	shared bool
}

// privacyVariants lists m's variants in the order of ir.Requirements.
func privacyVariants(m *ir.Model) []privacyVariant {
	var out []privacyVariant
	for _, r := range ir.Requirements {
		var deps []ir.Deployment
		for _, d := range m.Deployments {
			if d.Meets(r) {
				deps = append(deps, d)
			}
		}
		if len(deps) == 0 || len(deps) == len(m.Deployments) {
			continue
		}
		v := privacyVariant{req: r, route: m.RouteName() + "." + r.Suffix(), model: *m}
		v.model.Deployments = deps
		for _, prev := range out {
			if !prev.shared && slices.EqualFunc(prev.model.Deployments, deps, func(a, b ir.Deployment) bool { return a.ID == b.ID }) {
				v.route, v.shared = prev.route, true
				break
			}
		}
		out = append(out, v)
	}
	return out
}
