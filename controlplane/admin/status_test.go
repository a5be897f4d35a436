package admin

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

// GetConfigStatus passes on what the publisher knows of each node, to the
// operator only.
func TestConfigStatusReportsEachNode(t *testing.T) {
	const clusters = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	svc := &statusService{Server: &Server{configStatus: func() ConfigStatus {
		return ConfigStatus{
			Version: "l.r.c", Nodes: []string{"envoy-0"}, Resources: map[string]int{clusters: 2},
			NodeStates: []NodeConfigState{{
				Node: "envoy-0", Envoy: true, Connected: true, ListenPort: 10001,
				Accepted: map[string]string{clusters: "c0"}, Rejections: map[string]string{clusters: "bad cluster"},
			}},
		}
	}}}
	op := context.WithValue(context.Background(), principalKey{}, Principal{Operator: true})
	resp, err := svc.GetConfigStatus(op, &adminv1.GetConfigStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &adminv1.NodeConfigStatus{
		Node: "envoy-0", Envoy: true, Connected: true, ListenPort: 10001,
		AcceptedVersions: map[string]string{clusters: "c0"}, Rejections: map[string]string{clusters: "bad cluster"},
	}
	if len(resp.GetNodeStatuses()) != 1 || !proto.Equal(resp.GetNodeStatuses()[0], want) || resp.GetResources()[clusters] != 2 {
		t.Errorf("response = %v", resp)
	}
	tenantAdmin := context.WithValue(context.Background(), principalKey{}, Principal{TenantID: uuid.New(), TokenID: uuid.New()})
	if _, err := svc.GetConfigStatus(tenantAdmin, &adminv1.GetConfigStatusRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a tenant admin got %v, want PermissionDenied", err)
	}
}
