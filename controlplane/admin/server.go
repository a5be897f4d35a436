// Package admin implements the admin gRPC API (api/tollgate/admin/v1): the
// operator's and tenant admins' way to manage tenants, accounts, keys,
// providers, models and policies.
//
// Every mutation runs in one store transaction together with its audit event,
// so a failed call leaves nothing half-written and every change that lands is
// audited. Input is validated before the transaction starts and reported
// field by field (google.rpc.BadRequest).
package admin

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/billing"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/notify"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/signin"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent"
)

// Config is what the admin API needs.
type Config struct {
	Store *store.Store
	// Keyring seals provider credentials.
	Keyring *keyring.Keyring
	// OperatorToken is the operator's bearer token; it may do everything.
	OperatorToken string
	Logger        *slog.Logger
	// Changed, if set, is called after every committed mutation, so that the
	// control plane can rebuild what it serves from the store.
	Changed func()
	// Now is the clock; time.Now when nil. Tests set it.
	Now func() time.Time
	// ConfigStatus, if set, reports what xDS serves (StatusService).
	ConfigStatus func() ConfigStatus
	// Sessions, if set, lets web console sessions call the API as their
	// account (or as the operator), limited by the account's role.
	Sessions *signin.Service
	// Billing creates and moves invoices (BillingService); one with the
	// default settings when nil.
	Billing *billing.Service
}

// Server holds the state shared by the admin services.
type Server struct {
	store        *store.Store
	keyring      *keyring.Keyring
	operatorHash []byte
	log          *slog.Logger
	changed      func()
	now          func() time.Time
	configStatus func() ConfigStatus
	sessions     *signin.Service
	billing      *billing.Service
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("admin: a store is required")
	}
	if cfg.Keyring == nil {
		return nil, errors.New("admin: a keyring is required to seal provider credentials")
	}
	if _, ok := secret.Parse(secret.OperatorToken, cfg.OperatorToken); !ok {
		return nil, errors.New("admin: the operator token is missing or malformed (want tgop-…)")
	}
	s := &Server{
		store:        cfg.Store,
		keyring:      cfg.Keyring,
		operatorHash: secret.Hash(cfg.OperatorToken),
		log:          cfg.Logger,
		changed:      cfg.Changed,
		now:          cfg.Now,
		configStatus: cfg.ConfigStatus,
		sessions:     cfg.Sessions,
		billing:      cfg.Billing,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.billing == nil {
		s.billing = billing.New(billing.Config{Store: cfg.Store, Log: s.log, Now: s.now, OnIssued: notify.InvoiceIssued})
	}
	return s, nil
}

// Register adds every admin service to g. Install the interceptors from
// UnaryInterceptor and StreamInterceptor on g as well: the services rely on
// them for authentication.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	adminv1.RegisterTenantServiceServer(g, &tenantService{Server: s})
	adminv1.RegisterAccountServiceServer(g, &accountService{Server: s})
	adminv1.RegisterKeyServiceServer(g, &keyService{Server: s})
	adminv1.RegisterTokenServiceServer(g, &tokenService{Server: s})
	adminv1.RegisterProviderServiceServer(g, &providerService{Server: s})
	adminv1.RegisterModelServiceServer(g, &modelService{Server: s})
	adminv1.RegisterPolicyServiceServer(g, &policyService{Server: s})
	adminv1.RegisterAuditServiceServer(g, &auditService{Server: s})
	adminv1.RegisterStatusServiceServer(g, &statusService{Server: s})
	adminv1.RegisterUsageServiceServer(g, &usageService{Server: s})
	adminv1.RegisterNotificationServiceServer(g, &notificationService{Server: s})
	adminv1.RegisterPrivacyServiceServer(g, newPrivacyService(s))
	adminv1.RegisterBillingServiceServer(g, &billingService{Server: s})
}

// mutate runs fn in a transaction that also records a config change (how
// other control-plane replicas learn of the change) and, once it has
// committed, tells this control plane that the store changed.
func (s *Server) mutate(ctx context.Context, fn func(tx *ent.Tx) error) error {
	err := s.store.InTx(ctx, func(tx *ent.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return store.RecordConfigChange(ctx, tx)
	})
	if err != nil {
		return err
	}
	if s.changed != nil {
		s.changed()
	}
	return nil
}

func (s *Server) clock() time.Time { return s.now().UTC() }
