package ctl

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

// testToken is the admin token most tests send. It is distinctive so a test
// can search every output for it.
const testToken = "tgop_test-token-Zq8vX3"

// testNow is the clock the CLI sees in tests, so relative times are exact.
var testNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// The fake services only embed the Unimplemented servers: the interceptor of
// fakeServer records and answers every call before they are reached. They
// exist so that the real generated service descriptors are registered, and a
// call to a method that does not exist fails as it would against the server.
type (
	fakeTenants struct {
		adminv1.UnimplementedTenantServiceServer
	}
	fakeAccounts struct {
		adminv1.UnimplementedAccountServiceServer
	}
	fakeKeys struct {
		adminv1.UnimplementedKeyServiceServer
	}
	fakeTokens struct {
		adminv1.UnimplementedTokenServiceServer
	}
	fakeProviders struct {
		adminv1.UnimplementedProviderServiceServer
	}
	fakeModels struct {
		adminv1.UnimplementedModelServiceServer
	}
	fakePolicies struct {
		adminv1.UnimplementedPolicyServiceServer
	}
	fakeAudit struct {
		adminv1.UnimplementedAuditServiceServer
	}
	fakeStatus struct {
		adminv1.UnimplementedStatusServiceServer
	}
	fakeUsage struct {
		adminv1.UnimplementedUsageServiceServer
	}
	fakeNotifications struct {
		adminv1.UnimplementedNotificationServiceServer
	}
	fakeBilling struct {
		adminv1.UnimplementedBillingServiceServer
	}
)

// call is one request the fake server received.
type call struct {
	method string // short name, e.g. "CreateKey"
	req    proto.Message
	md     metadata.MD
}

// replyFunc answers one call; req is the decoded request.
type replyFunc func(req proto.Message) (proto.Message, error)

// fakeServer is an admin API on 127.0.0.1:0 that records what tollgatectl
// sends and answers with replies programmed per method, or with the empty
// response message when none is.
type fakeServer struct {
	addr string

	mu      sync.Mutex
	calls   []call
	replies map[string]replyFunc
}

func newFakeServer(t *testing.T, opts ...grpc.ServerOption) *fakeServer {
	t.Helper()
	f := &fakeServer{replies: map[string]replyFunc{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = lis.Addr().String()
	s := grpc.NewServer(append(opts, grpc.UnaryInterceptor(f.intercept))...)
	adminv1.RegisterTenantServiceServer(s, fakeTenants{})
	adminv1.RegisterAccountServiceServer(s, fakeAccounts{})
	adminv1.RegisterKeyServiceServer(s, fakeKeys{})
	adminv1.RegisterTokenServiceServer(s, fakeTokens{})
	adminv1.RegisterProviderServiceServer(s, fakeProviders{})
	adminv1.RegisterModelServiceServer(s, fakeModels{})
	adminv1.RegisterPolicyServiceServer(s, fakePolicies{})
	adminv1.RegisterAuditServiceServer(s, fakeAudit{})
	adminv1.RegisterStatusServiceServer(s, fakeStatus{})
	adminv1.RegisterUsageServiceServer(s, fakeUsage{})
	adminv1.RegisterNotificationServiceServer(s, fakeNotifications{})
	adminv1.RegisterBillingServiceServer(s, fakeBilling{})
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return f
}

func (f *fakeServer) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	method := path.Base(info.FullMethod)
	f.mu.Lock()
	f.calls = append(f.calls, call{method: method, req: proto.Clone(req.(proto.Message)), md: md.Copy()})
	reply := f.replies[method]
	f.mu.Unlock()
	if reply != nil {
		return reply(req.(proto.Message))
	}
	return emptyResponse(info.FullMethod), nil
}

// emptyResponse is the zero response message of a method, found from the
// service descriptor so that no test has to spell out a reply it ignores.
func emptyResponse(fullMethod string) proto.Message {
	service, method := path.Split(strings.TrimPrefix(fullMethod, "/"))
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(strings.TrimSuffix(service, "/")))
	if err != nil {
		panic(err)
	}
	out := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(method)).Output()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(out.FullName())
	if err != nil {
		panic(err)
	}
	return mt.New().Interface()
}

// reply programs the answer to method.
func (f *fakeServer) reply(method string, fn replyFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies[method] = fn
}

// replyWith answers method with a fixed message.
func (f *fakeServer) replyWith(method string, m proto.Message) {
	f.reply(method, func(proto.Message) (proto.Message, error) { return m, nil })
}

func (f *fakeServer) recorded() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// only returns the single call to method, failing the test otherwise.
func (f *fakeServer) only(t *testing.T, method string) call {
	t.Helper()
	var got []call
	for _, c := range f.recorded() {
		if c.method == method {
			got = append(got, c)
		}
	}
	if len(got) != 1 {
		t.Fatalf("want one %s call, got %d (all calls: %v)", method, len(got), methods(f.recorded()))
	}
	return got[0]
}

func methods(calls []call) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.method)
	}
	return out
}

// result is what one tollgatectl run printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// cleanEnv clears every variable tollgatectl reads, so a developer's own
// $TOLLGATE_TOKEN cannot leak into a test, and points the data directory at
// an empty temporary one.
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, v := range []string{"TOLLGATE_SERVER", "TOLLGATE_TOKEN", "TOLLGATE_TOKEN_FILE", "XDG_DATA_HOME", "TRACEPARENT", "TRACESTATE"} {
		t.Setenv(v, "")
	}
	t.Setenv("TOLLGATE_DATA_DIR", t.TempDir())
}

// runCLI runs tollgatectl in-process with stdin and the test clock.
func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := run(ctx, args, strings.NewReader(stdin), &stdout, &stderr, func() time.Time { return testNow })
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// run runs tollgatectl against f with the test token in $TOLLGATE_TOKEN.
func (f *fakeServer) run(t *testing.T, args ...string) result {
	t.Helper()
	return f.runStdin(t, "", args...)
}

func (f *fakeServer) runStdin(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	cleanEnv(t)
	t.Setenv("TOLLGATE_TOKEN", testToken)
	return runCLI(t, stdin, append([]string{"--server", f.addr}, args...)...)
}

// assertProto fails when got and want differ, showing both as text.
func assertProto(t *testing.T, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("request mismatch\n got: %s\nwant: %s", prototext.Format(got), prototext.Format(want))
	}
}
