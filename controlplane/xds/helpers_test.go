package xds_test

import "google.golang.org/protobuf/types/known/fieldmaskpb"

func fieldMask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }
