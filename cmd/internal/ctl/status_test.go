package ctl

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

func TestStatusShowsWhatIsServedAndWhatIsNot(t *testing.T) {
	f := newFakeServer(t)
	f.replyWith("GetConfigStatus", &adminv1.GetConfigStatusResponse{
		Version:     "abc.def.123",
		PublishTime: timestamppb.New(time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)),
		Errors:      []string{`model broken (m1): provider p1: base URL "x" is not an absolute http(s) URL`},
		Nodes:       []string{"envoy-0", "extproc-0"},
		Resources: map[string]int64{
			"type.googleapis.com/envoy.config.cluster.v3.Cluster": 3,
			"type.googleapis.com/tollgate.config.v1.Key":          42,
		},
	})
	res := f.run(t, "status")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res)
	}
	for _, want := range []string{"abc.def.123", "2026-11-27T02:00:00Z", "clusters", "3", "keys", "42", "envoy-0,extproc-0", "model broken (m1)"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("status output lacks %q:\n%s", want, res.stdout)
		}
	}
	assertProto(t, f.only(t, "GetConfigStatus").req, proto.Message(&adminv1.GetConfigStatusRequest{}))
}

// Each node's state: current, behind with what it accepted, the error of a
// refused version, and whether it is connected.
func TestStatusShowsWhatEachNodeRuns(t *testing.T) {
	f := newFakeServer(t)
	f.replyWith("GetConfigStatus", &adminv1.GetConfigStatusResponse{
		Version: "l1.r2.c2",
		Nodes:   []string{"envoy-0", "envoy-1", "extproc-0"},
		NodeStatuses: []*adminv1.NodeConfigStatus{
			{Node: "envoy-0", Envoy: true, Connected: true, Current: true, ListenPort: 10001,
				AcceptedVersions: map[string]string{listenerType: "l1", routeType: "r2", clusterType: "c2"}},
			{Node: "envoy-1", Envoy: true, Connected: true,
				AcceptedVersions: map[string]string{listenerType: "l1", routeType: "r1", clusterType: "c1"},
				Rejections:       map[string]string{clusterType: "cluster model-x: unknown field"}},
			{Node: "extproc-0", Connected: false},
		},
	})
	res := f.run(t, "status")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res)
	}
	for _, want := range []string{
		"node envoy-0", "envoy, runs the current configuration; own listener on port 10001",
		"node envoy-1", "envoy, BEHIND: accepted listeners l1, routeconfigurations r1, clusters c1",
		"rejected envoy-1 clusters", "cluster model-x: unknown field",
		"node extproc-0", "ext_proc or other client; not connected to this replica",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("status output lacks %q:\n%s", want, res.stdout)
		}
	}
	if strings.Contains(res.stdout, "envoy-0,envoy-1") {
		t.Errorf("the plain node list is shown beside the node states:\n%s", res.stdout)
	}
}

// A tenant whose budget crossed its soft limit shows the alert in the table.
func TestTenantTableShowsTheBudgetAlert(t *testing.T) {
	f := newFakeServer(t)
	f.replyWith("GetTenant", &adminv1.GetTenantResponse{Tenant: &adminv1.Tenant{
		Id: "t1", Slug: "acme", Name: "Acme", Status: adminv1.TenantStatus_TENANT_STATUS_ACTIVE,
		BudgetAlertTime: timestamppb.New(time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)),
		BudgetAlert:     "key k1: budget_day soft limit reached",
	}})
	res := f.run(t, "tenant", "get", "acme")
	if res.code != 0 || !strings.Contains(res.stdout, "BUDGET_ALERT") || !strings.Contains(res.stdout, "2026-11-27T03:00:00Z key k1: budget_day soft limit reached") {
		t.Errorf("exit %d, output:\n%s", res.code, res.stdout)
	}
}
