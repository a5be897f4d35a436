package loadtest

import (
	"errors"
	"io"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// NoopServer is the baseline: an ext_proc server that answers CONTINUE,
// with no change, to every message. What it costs is the floor any ext_proc
// pays for gRPC and the stream protocol.
type NoopServer struct {
	extprocv3.UnimplementedExternalProcessorServer
}

// The replies are built once: a baseline that allocated them per message
// would flatter the server it is compared with.
var (
	continueRequestHeaders   = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
	continueRequestBody      = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
	continueRequestTrailers  = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
	continueResponseHeaders  = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
	continueResponseBody     = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
	continueResponseTrailers = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
)

// Process answers each message of one stream with CONTINUE.
func (NoopServer) Process(st extprocv3.ExternalProcessor_ProcessServer) error {
	for {
		msg, err := st.Recv()
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
			return nil
		}
		if err != nil {
			return err
		}
		var resp *extprocv3.ProcessingResponse
		switch msg.GetRequest().(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			resp = continueRequestHeaders
		case *extprocv3.ProcessingRequest_RequestBody:
			resp = continueRequestBody
		case *extprocv3.ProcessingRequest_RequestTrailers:
			resp = continueRequestTrailers
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			resp = continueResponseHeaders
		case *extprocv3.ProcessingRequest_ResponseBody:
			resp = continueResponseBody
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			resp = continueResponseTrailers
		default:
			return status.Errorf(codes.InvalidArgument, "noop: unknown message %T", msg.GetRequest())
		}
		if err := st.Send(resp); err != nil {
			return err
		}
	}
}
