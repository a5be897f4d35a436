package admin

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tollgate-dev/tollgate/controlplane/invalid"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent"
)

// badRequest turns field errors into InvalidArgument with one
// google.rpc.BadRequest field violation per field.
func badRequest(err error) error {
	fields := invalid.Fields(err)
	if len(fields) == 0 {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	msg := fields[0].Error()
	if len(fields) > 1 {
		msg = fmt.Sprintf("%s (and %d more)", msg, len(fields)-1)
	}
	br := &errdetails.BadRequest{}
	for _, f := range fields {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f.Field, Description: f.Reason})
	}
	st, derr := status.New(codes.InvalidArgument, msg).WithDetails(br)
	if derr != nil {
		return status.Error(codes.InvalidArgument, msg)
	}
	return st.Err()
}

func notFound(kind, ref string) error {
	return status.Errorf(codes.NotFound, "%s %q not found", kind, ref)
}

// toStatus maps an error from a handler to a gRPC status. Status errors pass
// through; anything unexpected is logged and reported as Internal without
// its text, which may name tables or values.
func (s *Server) toStatus(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if len(invalid.Fields(err)) > 0 {
		return badRequest(err)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "the call was canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "the call ran out of time")
	case store.IsRetryable(err):
		// The store retried and gave up: the call collided with concurrent
		// changes too often. Nothing was written; the caller may retry.
		return status.Error(codes.Aborted, "the change collided with concurrent changes too often and was not made; retry it")
	case ent.IsNotFound(err):
		return status.Error(codes.NotFound, "not found")
	case ent.IsConstraintError(err):
		// Handlers check the constraints they expect and give a precise
		// message; this is the fallback for a race that slipped past.
		return status.Error(codes.FailedPrecondition, "the change conflicts with existing data; read it again and retry")
	}
	s.log.ErrorContext(ctx, "admin call failed", "op", op, "err", err)
	return status.Errorf(codes.Internal, "%s failed; the error is in the control plane's log", op)
}
