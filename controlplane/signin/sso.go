package signin

import (
	"context"
	"fmt"
	"strings"

	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/account"
	entsession "github.com/tollgate-dev/tollgate/ent/session"
	"github.com/tollgate-dev/tollgate/ent/tenant"
)

// SSOIdentity is what an OpenID Connect provider vouched for in a verified
// ID token.
type SSOIdentity struct {
	Issuer        string
	Subject       string
	Email         string
	EmailVerified bool
}

func (id SSOIdentity) key() string { return id.Issuer + " " + id.Subject }

// SignInSSO opens a session for the account bound to id. An identity seen
// for the first time is bound to the account with its verified e-mail
// address (in tenant, when the address has accounts in several): the
// operator configures one provider and trusts what it says about e-mail
// addresses. An unverified address binds nothing.
func (s *Service) SignInSSO(ctx context.Context, id SSOIdentity, tenantSlug, userAgent string) (Opened, error) {
	if id.Issuer == "" || id.Subject == "" {
		return Opened{}, ErrNoAccount
	}
	now := s.now()
	var opened Opened
	err := s.store.InTx(ctx, func(tx *ent.Tx) error {
		acc, err := tx.Account.Query().Where(account.SSOSubject(id.key())).WithTenant().Only(ctx)
		if ent.IsNotFound(err) {
			acc, err = s.bindSSO(ctx, tx, id, tenantSlug)
		}
		if err != nil {
			return err
		}
		opened, err = s.open(ctx, tx, acc, entsession.MethodSSO, userAgent, now)
		return err
	})
	if err != nil {
		return Opened{}, err
	}
	return opened, nil
}

func (s *Service) bindSSO(ctx context.Context, tx *ent.Tx, id SSOIdentity, tenantSlug string) (*ent.Account, error) {
	email := strings.ToLower(strings.TrimSpace(id.Email))
	if email == "" || !id.EmailVerified {
		return nil, ErrNoAccount
	}
	q := tx.Account.Query().Where(account.Email(email), account.SSOSubjectIsNil()).WithTenant().Limit(maxCandidates)
	if tenantSlug != "" {
		q.Where(account.HasTenantWith(tenant.Slug(strings.ToLower(tenantSlug))))
	}
	accounts, err := q.All(ctx)
	if err != nil {
		return nil, fmt.Errorf("finding the account: %w", err)
	}
	switch len(accounts) {
	case 0:
		return nil, ErrNoAccount
	case 1:
	default:
		return nil, ErrAmbiguous
	}
	a := accounts[0]
	if err := tx.Account.UpdateOne(a).SetSSOSubject(id.key()).Exec(ctx); err != nil {
		return nil, err
	}
	err = tx.AuditEvent.Create().SetActor("account:" + a.ID.String()).SetAction("account.sso_bind").
		SetTargetType("account").SetTargetID(a.ID.String()).SetTenantID(a.TenantID).Exec(ctx)
	return a, err
}
