package admin

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

// ConfigStatus is what the xDS publisher reports.
type ConfigStatus struct {
	Version     string
	PublishTime time.Time
	Errors      []string
	Nodes       []string
	NodeStates  []NodeConfigState
	Resources   map[string]int
}

// NodeConfigState is what one node has accepted and refused
// (adminv1.NodeConfigStatus).
type NodeConfigState struct {
	Node                      string
	Envoy, Connected, Current bool
	Accepted, Rejections      map[string]string
	ListenPort                uint32
}

type statusService struct {
	adminv1.UnimplementedStatusServiceServer
	*Server
}

func (s *statusService) GetConfigStatus(ctx context.Context, _ *adminv1.GetConfigStatusRequest) (*adminv1.GetConfigStatusResponse, error) {
	if err := requireOperator(principalFrom(ctx), "read the configuration status"); err != nil {
		return nil, err
	}
	if s.configStatus == nil {
		return nil, status.Error(codes.Unavailable, "this control plane does not serve xDS")
	}
	st := s.configStatus()
	resp := &adminv1.GetConfigStatusResponse{
		Version: st.Version, PublishTime: ts(st.PublishTime), Errors: st.Errors, Nodes: st.Nodes,
		Resources: map[string]int64{},
	}
	for t, n := range st.Resources {
		resp.Resources[t] = int64(n)
	}
	for _, ns := range st.NodeStates {
		resp.NodeStatuses = append(resp.NodeStatuses, &adminv1.NodeConfigStatus{
			Node: ns.Node, Envoy: ns.Envoy, Connected: ns.Connected, Current: ns.Current,
			AcceptedVersions: ns.Accepted, Rejections: ns.Rejections, ListenPort: ns.ListenPort,
		})
	}
	return resp, nil
}
