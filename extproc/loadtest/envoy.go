package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
)

// This file plays Envoy: the messages its two ext_proc filters send for one
// chat completion, in the order they send them (docs/design.md and the
// filters' processing modes in controlplane/xdstranslate/extproc.go).
//
//	downstream: request headers (source.address attribute) → reply
//	downstream: request body, BUFFERED, end_of_stream → reply
//	upstream:   request headers (deployment attribute) → reply (mode_override: response body STREAMED)
//	upstream:   response headers → reply
//	downstream: response headers → reply (response body mode NONE: no body follows here)
//	upstream:   response body, one message per chunk, the last with end_of_stream → one reply each
//	upstream, then downstream: half-close; the stream ends when the server returns
//
// Envoy resets a stream rather than waiting for the server to return; the
// load test waits, so that a request's time includes the work ext_proc does
// after the last reply (its usage record), and so that every record is
// written when the request is counted.

const (
	promptTokens = 12
	chatRequest  = `{"model":"smart","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"Capital of France?"}]}`
	chatStream   = `{"model":"smart","stream":true,"messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"Capital of France?"}]}`
	// chatAnswer is OpenAI's non-streaming answer.
	chatAnswer = `{"id":"chatcmpl-lt","object":"chat.completion","created":1767225600,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Paris.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14},"system_fingerprint":"fp_lt"}`
	// streamChunk is one event of OpenAI's stream: one token of content.
	streamChunk = `data: {"id":"chatcmpl-lt","object":"chat.completion.chunk","created":1767225600,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_lt","choices":[{"index":0,"delta":{"content":" word"},"logprobs":null,"finish_reason":null}]}` + "\n\n"
	// streamUsage is the usage event ext_proc asked for (include_usage)
	// and removes again, since the client did not.
	streamUsage = `data: {"id":"chatcmpl-lt","object":"chat.completion.chunk","created":1767225600,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_lt","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":%d,"total_tokens":%d}}` + "\n\n"
	streamDone  = "data: [DONE]\n\n"
)

// exchange is the part of a request's messages that is the same for every
// request of a scenario, built once: the load generator shares the CPU with
// the servers, and should spend as little of it as it can.
type exchange struct {
	body                  *extprocv3.ProcessingRequest
	upstreamRespHeaders   *extprocv3.ProcessingRequest
	downstreamRespHeaders *extprocv3.ProcessingRequest
	chunks                []*extprocv3.ProcessingRequest
	contentLength         *corev3.HeaderValue
	outputTokens          int64 // what the provider reports per request
}

// newExchange builds a non-streaming request (chunks == 0, one response
// body message) or a streamed one of chunks content events followed by the
// usage event and [DONE].
func newExchange(chunks int) *exchange {
	ex := &exchange{}
	ctype := "application/json"
	reqBody := chatRequest
	if chunks == 0 {
		ex.chunks = []*extprocv3.ProcessingRequest{responseBody(chatAnswer, true)}
		ex.outputTokens = 2
		ex.upstreamRespHeaders = responseHeaders("200", ctype, strconv.Itoa(len(chatAnswer)))
	} else {
		ctype, reqBody = "text/event-stream", chatStream
		for range chunks {
			ex.chunks = append(ex.chunks, responseBody(streamChunk, false))
		}
		ex.chunks = append(ex.chunks,
			responseBody(fmt.Sprintf(streamUsage, chunks, promptTokens+chunks), false),
			responseBody(streamDone, true))
		ex.outputTokens = int64(chunks)
		ex.upstreamRespHeaders = responseHeaders("200", ctype, "")
	}
	// What the client sees once the upstream filter has answered.
	ex.downstreamRespHeaders = responseHeaders("200", ctype, "")
	ex.body = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: []byte(reqBody), EndOfStream: true},
	}}
	ex.contentLength = hv("content-length", strconv.Itoa(len(reqBody)))
	return ex
}

func hv(k, v string) *corev3.HeaderValue { return &corev3.HeaderValue{Key: k, RawValue: []byte(v)} }

func responseHeaders(status, ctype, length string) *extprocv3.ProcessingRequest {
	h := []*corev3.HeaderValue{hv(":status", status), hv("content-type", ctype), hv("date", "Thu, 01 Jan 2026 00:00:00 GMT"),
		hv("openai-processing-ms", "412"), hv("x-ratelimit-remaining-requests", "9999")}
	if length != "" {
		h = append(h, hv("content-length", length))
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: h}},
	}}
}

func responseBody(b string, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: []byte(b), EndOfStream: eos},
	}}
}

// Headers every request carries, shared by all messages (marshalling only
// reads them).
var (
	downstreamHeaders = []*corev3.HeaderValue{
		hv(":authority", "gateway.example.com"), hv(":path", "/v1/chat/completions"), hv(":method", "POST"), hv(":scheme", "https"),
		hv("content-type", "application/json"), hv("accept", "application/json"), hv("user-agent", "OpenAI/Python 1.109.1"),
		hv("x-stainless-lang", "python"), hv("x-forwarded-proto", "https"),
	}
	upstreamHeaders = []*corev3.HeaderValue{
		hv(":authority", "api.openai.com"), hv(":path", "/v1/chat/completions"), hv(":method", "POST"), hv(":scheme", "https"),
		hv("content-type", "application/json"), hv("accept", "application/json"), hv("user-agent", "OpenAI/Python 1.109.1"),
		hv("x-stainless-lang", "python"), hv("x-forwarded-proto", "https"), hv("x-envoy-expected-rq-timeout-ms", "600000"),
	}
	downstreamAttributes = map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: map[string]*structpb.Value{
		"source.address": structpb.NewStringValue("10.0.0.7:53124"),
	}}}
	upstreamAttributes = map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: map[string]*structpb.Value{
		xdstranslate.DeploymentAttribute: structpb.NewStringValue(DeploymentID),
	}}}
)

func requestHeaders(common []*corev3.HeaderValue, attrs map[string]*structpb.Struct, extra ...*corev3.HeaderValue) *extprocv3.ProcessingRequest {
	h := make([]*corev3.HeaderValue, 0, len(common)+len(extra))
	h = append(h, common...)
	h = append(h, extra...)
	return &extprocv3.ProcessingRequest{
		Attributes: attrs,
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: &corev3.HeaderMap{Headers: h},
		}},
	}
}

// errRefused is a request the server answered with an immediate response:
// the load test never sends one that should be refused.
var errRefused = errors.New("refused")

// do sends one request's messages through c, as Envoy would, and checks
// that each reply answers the message it follows.
func (ex *exchange) do(ctx context.Context, c extprocv3.ExternalProcessorClient, id, key string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends both streams if anything fails midway
	idh := hv("x-request-id", id)

	ds, err := c.Process(ctx)
	if err != nil {
		return fmt.Errorf("open the downstream stream: %w", err)
	}
	r, err := roundTripReply(ds, requestHeaders(downstreamHeaders, downstreamAttributes, idh, ex.contentLength, hv("authorization", "Bearer "+key)), "downstream request headers")
	if err != nil {
		return err
	}
	// Envoy sends the try the headers as the downstream filter left them:
	// Tollgate's ext_proc gives each request its own x-request-id.
	for _, h := range r.GetRequestHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
		if h.GetHeader().GetKey() == "x-request-id" {
			idh = hv("x-request-id", string(h.GetHeader().GetRawValue()))
		}
	}
	if err := roundTrip(ds, ex.body, "downstream request body"); err != nil {
		return err
	}
	us, err := c.Process(ctx)
	if err != nil {
		return fmt.Errorf("open the upstream stream: %w", err)
	}
	if err := roundTrip(us, requestHeaders(upstreamHeaders, upstreamAttributes, idh, ex.contentLength), "upstream request headers"); err != nil {
		return err
	}
	if err := roundTrip(us, ex.upstreamRespHeaders, "upstream response headers"); err != nil {
		return err
	}
	if err := roundTrip(ds, ex.downstreamRespHeaders, "downstream response headers"); err != nil {
		return err
	}
	for i, m := range ex.chunks {
		if err := roundTrip(us, m, "upstream response body"); err != nil {
			return fmt.Errorf("chunk %d: %w", i, err)
		}
	}
	if err := closeStream(us); err != nil {
		return fmt.Errorf("upstream stream: %w", err)
	}
	if err := closeStream(ds); err != nil {
		return fmt.Errorf("downstream stream: %w", err)
	}
	return nil
}

func roundTrip(st extprocv3.ExternalProcessor_ProcessClient, m *extprocv3.ProcessingRequest, what string) error {
	_, err := roundTripReply(st, m, what)
	return err
}

// roundTripReply sends m and returns the reply, checking that it answers m.
func roundTripReply(st extprocv3.ExternalProcessor_ProcessClient, m *extprocv3.ProcessingRequest, what string) (*extprocv3.ProcessingResponse, error) {
	if err := st.Send(m); err != nil {
		if errors.Is(err, io.EOF) {
			// The server ended the stream; Recv has its reason.
			_, err = st.Recv()
		}
		return nil, fmt.Errorf("%s: send: %w", what, err)
	}
	r, err := st.Recv()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if ir := r.GetImmediateResponse(); ir != nil {
		body := string(ir.GetBody())
		if len(body) > 300 {
			body = body[:300] + "…"
		}
		return nil, fmt.Errorf("%s: %w with %d: %s", what, errRefused, ir.GetStatus().GetCode(), strings.TrimSpace(body))
	}
	ok := false
	switch m.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		ok = r.GetRequestHeaders() != nil
	case *extprocv3.ProcessingRequest_RequestBody:
		ok = r.GetRequestBody() != nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		ok = r.GetResponseHeaders() != nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		ok = r.GetResponseBody() != nil
	}
	if !ok {
		return nil, fmt.Errorf("%s: the reply is a %T", what, r.GetResponse())
	}
	return r, nil
}

// closeStream half-closes st and waits for the server to end it.
func closeStream(st extprocv3.ExternalProcessor_ProcessClient) error {
	if err := st.CloseSend(); err != nil {
		return err
	}
	if r, err := st.Recv(); err == nil {
		return fmt.Errorf("an unexpected %T after the last message", r.GetResponse())
	} else if !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
