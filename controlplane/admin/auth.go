package admin

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/signin"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/account"
	"github.com/tollgate-dev/tollgate/ent/admintoken"
)

// Principal is who is calling: the operator, a tenant admin token, or a
// person signed in to the web console with an account of one tenant.
type Principal struct {
	Operator bool
	TenantID uuid.UUID // set for tenant admin tokens and accounts
	TokenID  uuid.UUID // set for tenant admin tokens
	// AccountID and Role are set for accounts' sessions; the role limits
	// what the call may do (see roles.go).
	AccountID uuid.UUID
	Role      account.Role
}

// Actor names the principal in audit events.
func (p Principal) Actor() string {
	switch {
	case p.Operator:
		return "operator"
	case p.AccountID != uuid.Nil:
		return "account:" + p.AccountID.String()
	}
	return "admin-token:" + p.TokenID.String()
}

// canSeeTenant reports whether p may read or change tenant id's objects.
func (p Principal) canSeeTenant(id uuid.UUID) bool {
	return p.Operator || p.TenantID == id
}

type principalKey struct{}

func principalFrom(ctx context.Context) Principal {
	p, ok := ctx.Value(principalKey{}).(Principal)
	if !ok {
		// The interceptor always sets a principal; reaching here means a
		// service was registered without it. Deny rather than allow.
		return Principal{TenantID: uuid.Nil, TokenID: uuid.Nil}
	}
	return p
}

// unauthenticatedServices need no token: health checks come from probes that
// hold no secret, and reflection only describes the public API.
var unauthenticatedServices = []string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

func needsAuth(fullMethod string) bool {
	for _, p := range unauthenticatedServices {
		if strings.HasPrefix(fullMethod, p) {
			return false
		}
	}
	return true
}

// UnaryInterceptor authenticates every admin call and logs its outcome.
func (s *Server) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !needsAuth(info.FullMethod) {
			return handler(ctx, req)
		}
		start := time.Now()
		p, err := s.authenticate(ctx)
		if err == nil {
			err = authorizeRole(p, info.FullMethod)
		}
		if err != nil {
			s.log.WarnContext(ctx, "admin call refused", withTraceID(ctx, "method", info.FullMethod, "code", status.Code(err).String())...)
			return nil, err
		}
		traceCaller(ctx, p)
		resp, err := handler(context.WithValue(ctx, principalKey{}, p), req)
		s.log.InfoContext(ctx, "admin call", withTraceID(ctx, "method", info.FullMethod, "actor", p.Actor(),
			"code", status.Code(err).String(), "duration_ms", time.Since(start).Milliseconds())...)
		return resp, err
	}
}

// StreamInterceptor authenticates streaming calls the same way.
func (s *Server) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !needsAuth(info.FullMethod) {
			return handler(srv, ss)
		}
		p, err := s.authenticate(ss.Context())
		if err == nil {
			err = authorizeRole(p, info.FullMethod)
		}
		if err != nil {
			return err
		}
		traceCaller(ss.Context(), p)
		return handler(srv, &principalStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), principalKey{}, p)})
	}
}

// traceCaller names the authenticated caller on the call's span (the
// server span telemetry.GRPCServerTraces starts), by ids only: its role
// ("operator", "admin_token" or the account's role), its tenant's id, and
// the actor that audit events name ("account:<id>", "admin-token:<id>"), so
// that a trace leads to the audit log. Never a token, a name or an e-mail.
func traceCaller(ctx context.Context, p Principal) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	role := "admin_token"
	switch {
	case p.Operator:
		role = "operator"
	case p.AccountID != uuid.Nil:
		role = string(p.Role)
	}
	attrs := []attribute.KeyValue{attribute.String("tollgate.caller.role", role), attribute.String("tollgate.actor", p.Actor())}
	if !p.Operator {
		attrs = append(attrs, attribute.String("tollgate.tenant.id", p.TenantID.String()))
	}
	span.SetAttributes(attrs...)
}

// withTraceID adds the call's trace id to a log line's arguments when the
// call is traced, as ext_proc's lines carry their request's.
func withTraceID(ctx context.Context, args ...any) []any {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		args = append(args, "trace_id", sc.TraceID().String())
	}
	return args
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

var errUnauthenticated = status.Error(codes.Unauthenticated,
	`missing or invalid token: send "authorization: Bearer <operator token, tenant admin token or session>"`)

func (s *Server) authenticate(ctx context.Context) (Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) != 1 {
		return Principal{}, errUnauthenticated
	}
	token, ok := strings.CutPrefix(values[0], "Bearer ")
	if !ok {
		return Principal{}, errUnauthenticated
	}
	token = strings.TrimSpace(token)
	if _, ok := secret.Parse(secret.OperatorToken, token); ok {
		if secret.Equal(secret.Hash(token), s.operatorHash) {
			return Principal{Operator: true}, nil
		}
		return Principal{}, errUnauthenticated
	}
	if _, ok := secret.Parse(secret.Session, token); ok {
		return s.authenticateSession(ctx, token)
	}
	if _, ok := secret.Parse(secret.AdminToken, token); !ok {
		return Principal{}, errUnauthenticated
	}
	t, err := s.store.Client().AdminToken.Query().Where(admintoken.Hash(secret.Hash(token))).Only(ctx)
	if ent.IsNotFound(err) {
		return Principal{}, errUnauthenticated
	}
	if err != nil {
		s.log.ErrorContext(ctx, "looking up admin token", "err", err)
		return Principal{}, status.Error(codes.Unavailable, "cannot check the token right now; try again")
	}
	now := s.clock()
	if t.RevokedAt != nil {
		return Principal{}, status.Error(codes.Unauthenticated, "this admin token was revoked")
	}
	if t.ExpiresAt != nil && !now.Before(*t.ExpiresAt) {
		return Principal{}, status.Error(codes.Unauthenticated, "this admin token has expired")
	}
	return Principal{TenantID: t.TenantID, TokenID: t.ID}, nil
}

// authenticateSession turns a web console session into the operator or the
// account it belongs to, with the account's current role.
func (s *Server) authenticateSession(ctx context.Context, token string) (Principal, error) {
	if s.sessions == nil {
		return Principal{}, errUnauthenticated
	}
	id, err := s.sessions.Lookup(ctx, token)
	if errors.Is(err, signin.ErrNoSession) {
		return Principal{}, status.Error(codes.Unauthenticated, "the session ended; sign in again")
	}
	if err != nil {
		s.log.ErrorContext(ctx, "looking up a session", "err", err)
		return Principal{}, status.Error(codes.Unavailable, "cannot check the session right now; try again")
	}
	if id.Operator {
		return Principal{Operator: true}, nil
	}
	return Principal{TenantID: id.TenantID, AccountID: id.AccountID, Role: id.Role}, nil
}

// requireOperator refuses tenant admins with PermissionDenied.
func requireOperator(p Principal, what string) error {
	if p.Operator {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "only the operator may %s", what)
}
