package ctl

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

func (c *cli) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show what the control plane serves to Envoy and ext_proc",
		Long: `Show the configuration the control plane serves over xDS: its version and when
it was published, how many listeners, routes, clusters, keys, tenants,
providers and models it holds, which Envoy and ext_proc nodes have
connected, and anything that could not be served (for example, a model whose
provider URL is broken). For each Envoy node it says whether the node runs
the configuration served or is BEHIND (with the versions it accepted), and
the error of any version it refused (NACK). The nodes are those of the
replica that answers. Operator only.`,
		Example: `  tollgatectl status
  tollgatectl status -o json`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			conn, err := c.connect()
			if err != nil {
				return err
			}
			resp, err := adminv1.NewStatusServiceClient(conn).GetConfigStatus(cmd.Context(), &adminv1.GetConfigStatusRequest{})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { statusTable(t, resp) })
		}),
	}
}

func statusTable(t *table, s *adminv1.GetConfigStatusResponse) {
	t.row("SETTING", "VALUE")
	version := s.GetVersion()
	if version == "" {
		version = "(nothing published yet)"
	}
	t.row("version", version)
	t.row("published", timestamp(s.GetPublishTime()))
	types := make([]string, 0, len(s.GetResources()))
	for k := range s.GetResources() {
		types = append(types, k)
	}
	sort.Strings(types)
	for _, k := range types {
		t.row(shortType(k), fmt.Sprint(s.GetResources()[k]))
	}
	if len(s.GetNodeStatuses()) == 0 {
		nodes := "-"
		if len(s.GetNodes()) > 0 {
			nodes = strings.Join(s.GetNodes(), ",")
		}
		t.row("nodes", nodes)
	}
	for _, n := range s.GetNodeStatuses() {
		t.row("node "+n.GetNode(), nodeState(n))
		rejected := make([]string, 0, len(n.GetRejections()))
		for typ := range n.GetRejections() {
			rejected = append(rejected, typ)
		}
		sort.Strings(rejected)
		for _, typ := range rejected {
			t.row("rejected "+n.GetNode()+" "+shortType(typ), n.GetRejections()[typ])
		}
	}
	if len(s.GetErrors()) == 0 {
		t.row("errors", "-")
	}
	for _, e := range s.GetErrors() {
		t.row("error", e)
	}
}

// nodeState says in a few words whether a node runs what is served.
func nodeState(n *adminv1.NodeConfigStatus) string {
	state := []string{}
	switch {
	case !n.GetEnvoy():
		state = append(state, "ext_proc or other client")
	case n.GetCurrent():
		state = append(state, "envoy, runs the current configuration")
	default:
		behind := []string{}
		for _, typ := range []string{listenerType, routeType, clusterType} {
			v := n.GetAcceptedVersions()[typ]
			if v == "" {
				v = "none"
			}
			behind = append(behind, shortType(typ)+" "+v)
		}
		state = append(state, "envoy, BEHIND: accepted "+strings.Join(behind, ", "))
	}
	if p := n.GetListenPort(); p != 0 {
		state = append(state, fmt.Sprintf("own listener on port %d", p))
	}
	if !n.GetConnected() {
		state = append(state, "not connected to this replica")
	}
	return strings.Join(state, "; ")
}

// Envoy's resource types, in the order of the status version.
const (
	listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	routeType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
)

// shortType turns type.googleapis.com/envoy.config.cluster.v3.Cluster into
// "clusters" for the table.
func shortType(typeURL string) string {
	name := typeURL[strings.LastIndex(typeURL, ".")+1:]
	return strings.ToLower(name) + "s"
}
