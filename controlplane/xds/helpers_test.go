package xds_test

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

func fieldMask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

func nodeProto(id string) *corev3.Node { return &corev3.Node{Id: id} }
