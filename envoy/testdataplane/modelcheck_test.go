package testdataplane

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"sigs.k8s.io/yaml"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

const goldenDir = "../../controlplane/xdstranslate/testdata/out"

// readGolden decodes one of the control plane's golden files (a YAML list of
// resources) strictly.
func readGolden[M proto.Message](t *testing.T, path string, newM func() M) []M {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(js, &items); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := make([]M, 0, len(items))
	for _, it := range items {
		m := newM()
		if err := protojson.Unmarshal(it, m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, m)
	}
	return out
}

// Everything the control plane emits today must be modelled: the golden
// files are the control plane's contract with the data plane.
func TestGoldenResourcesAreModelled(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(goldenDir, "*.listeners.yaml"))
	if len(files) == 0 {
		t.Fatal("no golden files found")
	}
	for _, lf := range files {
		base := strings.TrimSuffix(lf, ".listeners.yaml")
		t.Run(filepath.Base(base), func(t *testing.T) {
			for _, l := range readGolden(t, base+".listeners.yaml", func() *listenerv3.Listener { return &listenerv3.Listener{} }) {
				if v := modelViolations(l); len(v) > 0 {
					t.Errorf("listener %s: %v", l.GetName(), v)
				}
				if _, err := buildListener(l); err != nil {
					t.Errorf("listener %s: %v", l.GetName(), err)
				}
			}
			for _, r := range readGolden(t, base+".routes.yaml", func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} }) {
				if v := modelViolations(r); len(v) > 0 {
					t.Errorf("routes %s: %v", r.GetName(), v)
				}
				if _, err := buildRouteTable(r); err != nil {
					t.Errorf("routes %s: %v", r.GetName(), err)
				}
			}
			for _, c := range readGolden(t, base+".clusters.yaml", func() *clusterv3.Cluster { return &clusterv3.Cluster{} }) {
				if v := modelViolations(c); len(v) > 0 {
					t.Errorf("cluster %s: %v", c.GetName(), v)
				}
				if _, err := buildCluster(c, staticNames{"tollgate_extproc": true}); err != nil {
					t.Errorf("cluster %s: %v", c.GetName(), err)
				}
			}
		})
	}
}

func TestUnmodelledFieldsAreNamed(t *testing.T) {
	goldenListener := func(t *testing.T) *listenerv3.Listener {
		return readGolden(t, filepath.Join(goldenDir, "openai.listeners.yaml"), func() *listenerv3.Listener { return &listenerv3.Listener{} })[0]
	}
	goldenCluster := func(t *testing.T) *clusterv3.Cluster {
		return readGolden(t, filepath.Join(goldenDir, "fallback.clusters.yaml"), func() *clusterv3.Cluster { return &clusterv3.Cluster{} })[0]
	}
	for name, tc := range map[string]struct {
		msg  func(t *testing.T) proto.Message
		want string
	}{
		"cluster field": {
			msg: func(t *testing.T) proto.Message {
				c := goldenCluster(t)
				c.CleanupInterval = durationpb.New(1e9)
				return c
			},
			want: "envoy.config.cluster.v3.Cluster.cleanup_interval",
		},
		"cluster enum value": {
			msg: func(t *testing.T) proto.Message {
				c := goldenCluster(t)
				c.LbPolicy = clusterv3.Cluster_MAGLEV
				return c
			},
			want: "value MAGLEV of envoy.config.cluster.v3.Cluster.lb_policy",
		},
		"field inside typed_config": {
			msg: func(t *testing.T) proto.Message {
				l := goldenListener(t)
				hcm := &hcmv3.HttpConnectionManager{}
				tc := l.FilterChains[0].Filters[0].GetTypedConfig()
				if err := tc.UnmarshalTo(hcm); err != nil {
					t.Fatal(err)
				}
				hcm.Via = "tollgate"
				a, err := anypb.New(hcm)
				if err != nil {
					t.Fatal(err)
				}
				l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
				return l
			},
			want: "filter_chains[0].filters[0].typed_config<HttpConnectionManager>.via",
		},
		"typed_config type": {
			msg: func(t *testing.T) proto.Message {
				l := goldenListener(t)
				a, _ := anypb.New(&clusterv3.Cluster{})
				l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
				return l
			},
			want: "typed_config type type.googleapis.com/envoy.config.cluster.v3.Cluster",
		},
		"unknown field number": {
			msg: func(t *testing.T) proto.Message {
				c := goldenCluster(t)
				c.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 9999, protowire.VarintType), 1))
				return c
			},
			want: "unknown field number(s) [9999]",
		},
	} {
		t.Run(name, func(t *testing.T) {
			v := modelViolations(tc.msg(t))
			if len(v) != 1 || !strings.Contains(v[0], tc.want) {
				t.Errorf("violations = %q, want one containing %q", v, tc.want)
			}
		})
	}
}
