package testdataplane

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"
)

// bootstrapInfo is what the harness takes from Envoy's bootstrap.
type bootstrapInfo struct {
	nodeID      string
	nodeCluster string
	// nodeMetadata is passed on to the control plane with the node, as
	// Envoy does; nothing here reads it.
	nodeMetadata *structpb.Struct
	// adminAddress is where /ready is served; empty when there is no admin.
	adminAddress string
	// xdsCluster names the static cluster ADS is reached through.
	xdsCluster                string
	setNodeOnFirstMessageOnly bool
	// static are the bootstrap's clusters by name.
	static map[string]*clusterConfig
}

// parseBootstrap decodes a rendered bootstrap (YAML) strictly: an unknown or
// misspelt field fails, as it fails Envoy, and a known field the harness
// does not model fails the model check.
func parseBootstrap(yamlText []byte) (*bootstrapInfo, error) {
	js, err := yaml.YAMLToJSON(yamlText)
	if err != nil {
		return nil, fmt.Errorf("bootstrap is not YAML: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("bootstrap is not an Envoy Bootstrap: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap is invalid: %w", err)
	}
	if err := checkModelled("bootstrap", b.GetNode().GetId(), b); err != nil {
		return nil, err
	}
	out := &bootstrapInfo{
		nodeID:       b.GetNode().GetId(),
		nodeCluster:  b.GetNode().GetCluster(),
		nodeMetadata: b.GetNode().GetMetadata(),
		static:       map[string]*clusterConfig{},
	}
	var errs []error
	if out.nodeID == "" {
		errs = append(errs, errors.New("bootstrap: node.id is required"))
	}
	if sa := b.GetAdmin().GetAddress().GetSocketAddress(); sa != nil {
		out.adminAddress = net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
	}
	names := staticNames{}
	for _, c := range b.GetStaticResources().GetClusters() {
		names[c.GetName()] = true
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		cc, err := buildCluster(c, names)
		if err != nil {
			errs = append(errs, fmt.Errorf("bootstrap: %w", err))
			continue
		}
		out.static[c.GetName()] = cc
	}
	dr := b.GetDynamicResources()
	ads := dr.GetAdsConfig()
	if ads == nil || dr.GetCdsConfig().GetAds() == nil || dr.GetLdsConfig().GetAds() == nil {
		errs = append(errs, errors.New("bootstrap: CDS and LDS must come over ADS (the only mode modelled)"))
	} else {
		if len(ads.GetGrpcServices()) != 1 {
			errs = append(errs, errors.New("bootstrap: ads_config needs exactly one grpc_service"))
		} else {
			out.xdsCluster = ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName()
			if out.static[out.xdsCluster] == nil {
				errs = append(errs, fmt.Errorf("bootstrap: ADS names cluster %q, which is not a static cluster", out.xdsCluster))
			}
		}
		out.setNodeOnFirstMessageOnly = ads.GetSetNodeOnFirstMessageOnly()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}
