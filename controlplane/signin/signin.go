// Package signin is how people sign in to the web console: passwords
// (argon2id), sessions, e-mailed password links, sign-in throttling and
// OpenID Connect identities bound to accounts.
//
// It owns authentication only. What a signed-in person may see and change
// is decided by the admin API, which takes the session secret as a bearer
// credential (Lookup) and enforces the account's role; the console reads
// and changes tenant data only through that API.
//
// Session secrets and password links are 256-bit random secrets
// (controlplane/secret); only their SHA-256 is stored. Passwords are stored
// as argon2id hashes with a per-hash salt and their parameters.
package signin

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/account"
	"github.com/tollgate-dev/tollgate/ent/passwordtoken"
	entsession "github.com/tollgate-dev/tollgate/ent/session"
	"github.com/tollgate-dev/tollgate/ent/tenant"
)

// Options configure a Service. Zero values take the defaults noted.
type Options struct {
	// OperatorToken lets the operator sign in with it (required).
	OperatorToken string
	// Argon2 is the cost of new password hashes (DefaultArgon2).
	Argon2 Argon2Params
	// SessionTTL is how long a session lasts at most (12h).
	SessionTTL time.Duration
	// IdleTimeout ends a session unused for this long (2h).
	IdleTimeout time.Duration
	// PasswordLinkTTL is how long an e-mailed password link works (1h).
	PasswordLinkTTL time.Duration
	// AttemptsPerAddr and AttemptWindow limit sign-in attempts from one
	// client address (20 per 10 minutes), counted in the store so that
	// every replica shares the limit; a negative AttemptsPerAddr turns the
	// limit off.
	AttemptsPerAddr int
	AttemptWindow   time.Duration
	// Now is the clock (time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Account lock: after lockAfter wrong passwords in a row, each further
// attempt must wait lockBase·2^(n−lockAfter), at most lockMax.
const (
	lockAfter = 5
	lockBase  = time.Minute
	lockMax   = 15 * time.Minute
	// touchEvery bounds writes of last_seen_at to one a minute per session.
	touchEvery = time.Minute
	// maxCandidates bounds the accounts one e-mail is tried against.
	maxCandidates = 20
)

// Service signs people in and keeps their sessions.
type Service struct {
	store        *store.Store
	opt          Options
	operatorHash []byte
	operatorFP   []byte
	dummyHash    string
	ips          *addrThrottle
	log          *slog.Logger
}

// Errors callers branch on; their texts are fit to show.
var (
	ErrNoSession          = errors.New("not signed in, or the session ended; sign in again")
	ErrWrongCredentials   = errors.New("wrong e-mail or password, or too many wrong attempts; wait a minute and try again")
	ErrThrottled          = errors.New("too many sign-in attempts from your address; wait a few minutes and try again")
	ErrWrongOperatorToken = errors.New("that is not the operator token")
	ErrAmbiguous          = errors.New("this e-mail address has accounts in several tenants; give the tenant as well")
	ErrLinkInvalid        = errors.New("this link is invalid, was used already or has expired; ask for a new one")
	ErrNoAccount          = errors.New("no account matches this identity; ask an administrator of your tenant to add you")
)

// New returns a Service on st.
func New(st *store.Store, opt Options) (*Service, error) {
	if _, ok := secret.Parse(secret.OperatorToken, opt.OperatorToken); !ok {
		return nil, errors.New("signin: the operator token is missing or malformed")
	}
	if opt.Argon2 == (Argon2Params{}) {
		opt.Argon2 = DefaultArgon2
	}
	if opt.SessionTTL <= 0 {
		opt.SessionTTL = 12 * time.Hour
	}
	if opt.IdleTimeout <= 0 {
		opt.IdleTimeout = 2 * time.Hour
	}
	if opt.PasswordLinkTTL <= 0 {
		opt.PasswordLinkTTL = time.Hour
	}
	if opt.AttemptsPerAddr == 0 {
		opt.AttemptsPerAddr = 20
	}
	if opt.AttemptWindow <= 0 {
		opt.AttemptWindow = 10 * time.Minute
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	// Unknown e-mails are checked against this hash, so that they take as
	// long as known ones and a stopwatch cannot tell which addresses exist.
	dummy, err := HashPassword("not a password anyone has", opt.Argon2)
	if err != nil {
		return nil, err
	}
	return &Service{
		store: st, opt: opt,
		operatorHash: secret.Hash(opt.OperatorToken),
		operatorFP:   operatorFingerprint(opt.OperatorToken),
		dummyHash:    dummy,
		ips:          newAddrThrottle(st, opt.OperatorToken, opt.AttemptsPerAddr, opt.AttemptWindow),
		log:          opt.Logger,
	}, nil
}

// operatorFingerprint tells operator tokens apart without storing anything
// that would help recover one.
func operatorFingerprint(token string) []byte {
	h := sha256.Sum256([]byte("tollgate session fingerprint\x00" + token))
	return h[:16]
}

func (s *Service) now() time.Time { return s.opt.Now().UTC() }

// Role is an account's role in its tenant.
type Role = account.Role

// The roles, most powerful first.
const (
	RoleOwner  = account.RoleOwner
	RoleAdmin  = account.RoleAdmin
	RoleMember = account.RoleMember
	RoleViewer = account.RoleViewer
)

// Identity is who a session belongs to.
type Identity struct {
	SessionID uuid.UUID
	// Operator is set for the operator's sessions; the account fields are
	// then empty.
	Operator   bool
	AccountID  uuid.UUID
	TenantID   uuid.UUID
	TenantSlug string
	TenantName string
	Email      string
	Name       string
	Role       Role
	ExpiresAt  time.Time
}

// Actor names the person in audit events, as the admin API does.
func (id Identity) Actor() string {
	if id.Operator {
		return "operator"
	}
	return "account:" + id.AccountID.String()
}

// Opened is a new session: its secret goes into the person's cookie.
type Opened struct {
	Secret string
	Identity
}

// Lookup returns the identity behind a session secret, or ErrNoSession.
func (s *Service) Lookup(ctx context.Context, plaintext string) (Identity, error) {
	if _, ok := secret.Parse(secret.Session, plaintext); !ok {
		return Identity{}, ErrNoSession
	}
	c := s.store.Client()
	row, err := c.Session.Query().
		Where(entsession.Hash(secret.Hash(plaintext))).
		WithAccount(func(q *ent.AccountQuery) { q.WithTenant() }).
		Only(ctx)
	if ent.IsNotFound(err) {
		return Identity{}, ErrNoSession
	}
	if err != nil {
		return Identity{}, fmt.Errorf("looking up the session: %w", err)
	}
	now := s.now()
	switch {
	case row.RevokedAt != nil, !now.Before(row.ExpiresAt), now.Sub(row.LastSeenAt) >= s.opt.IdleTimeout:
		return Identity{}, ErrNoSession
	case row.AccountID == nil && (row.OperatorToken == nil || !secret.Equal(*row.OperatorToken, s.operatorFP)):
		// The operator token was rotated: its sessions end with it.
		return Identity{}, ErrNoSession
	case row.AccountID != nil && row.Edges.Account == nil:
		return Identity{}, ErrNoSession
	}
	if now.Sub(row.LastSeenAt) >= touchEvery {
		// Best effort: a missed touch only shortens the idle window.
		if err := c.Session.UpdateOneID(row.ID).SetLastSeenAt(now).Exec(ctx); err != nil {
			s.log.WarnContext(ctx, "recording session activity", "err", err)
		}
	}
	return identityOf(row, row.Edges.Account), nil
}

func identityOf(row *ent.Session, a *ent.Account) Identity {
	id := Identity{SessionID: row.ID, ExpiresAt: row.ExpiresAt}
	if a == nil {
		id.Operator = true
		return id
	}
	id.AccountID, id.TenantID, id.Email, id.Name, id.Role = a.ID, a.TenantID, a.Email, a.Name, a.Role
	if t := a.Edges.Tenant; t != nil {
		id.TenantSlug, id.TenantName = t.Slug, t.Name
	}
	return id
}

// Attempt is one sign-in with a password.
type Attempt struct {
	Email    string
	Password string
	// Tenant (slug) narrows the e-mail to one tenant's account; needed
	// only when the e-mail has accounts in several tenants.
	Tenant string
	// Addr is the client's address, for throttling.
	Addr      string
	UserAgent string
}

// SignIn checks an e-mail and password and opens a session.
func (s *Service) SignIn(ctx context.Context, a Attempt) (Opened, error) {
	now := s.now()
	if ok, err := s.ips.allow(ctx, a.Addr, now); err != nil || !ok {
		return Opened{}, throttled(err)
	}
	email := strings.ToLower(strings.TrimSpace(a.Email))
	if email == "" || a.Password == "" || len(a.Password) > MaxPasswordLen {
		return Opened{}, ErrWrongCredentials
	}
	q := s.store.Client().Account.Query().Where(account.Email(email)).WithTenant().Limit(maxCandidates)
	if t := strings.TrimSpace(a.Tenant); t != "" {
		q.Where(account.HasTenantWith(tenant.Slug(strings.ToLower(t))))
	}
	candidates, err := q.All(ctx)
	if err != nil {
		return Opened{}, fmt.Errorf("finding the account: %w", err)
	}
	var matched, failed []*ent.Account
	checked := false
	for _, c := range candidates {
		if c.PasswordHash == "" {
			continue
		}
		checked = true
		ok, _, err := VerifyPassword(a.Password, c.PasswordHash, s.opt.Argon2)
		if err != nil {
			s.log.ErrorContext(ctx, "an account's password hash cannot be read", "account", c.ID, "err", err)
			continue
		}
		locked := c.SignInLockedUntil != nil && now.Before(*c.SignInLockedUntil)
		switch {
		case ok && !locked:
			matched = append(matched, c)
		case !ok:
			failed = append(failed, c)
		}
	}
	if !checked {
		_, _, _ = VerifyPassword(a.Password, s.dummyHash, s.opt.Argon2)
	}
	switch len(matched) {
	case 0:
		if err := s.recordFailures(ctx, failed, now); err != nil {
			return Opened{}, err
		}
		return Opened{}, ErrWrongCredentials
	case 1:
	default:
		return Opened{}, ErrAmbiguous
	}
	acc := matched[0]
	var opened Opened
	err = s.store.InTx(ctx, func(tx *ent.Tx) error {
		u := tx.Account.UpdateOneID(acc.ID).SetFailedSignIns(0).ClearSignInLockedUntil()
		if _, stale, _ := VerifyPassword(a.Password, acc.PasswordHash, s.opt.Argon2); stale {
			// The hash predates the current cost: upgrade it while the
			// password is at hand.
			h, err := HashPassword(a.Password, s.opt.Argon2)
			if err != nil {
				return err
			}
			u.SetPasswordHash(h)
		}
		if err := u.Exec(ctx); err != nil {
			return err
		}
		opened, err = s.open(ctx, tx, acc, entsession.MethodPassword, a.UserAgent, now)
		return err
	})
	if err != nil {
		return Opened{}, fmt.Errorf("opening the session: %w", err)
	}
	return opened, nil
}

// recordFailures counts a wrong password against each account and locks
// those that had too many.
func (s *Service) recordFailures(ctx context.Context, accounts []*ent.Account, now time.Time) error {
	if len(accounts) == 0 {
		return nil
	}
	err := s.store.InTx(ctx, func(tx *ent.Tx) error {
		for _, a := range accounts {
			cur, err := tx.Account.Get(ctx, a.ID)
			if ent.IsNotFound(err) {
				continue
			}
			if err != nil {
				return err
			}
			n := cur.FailedSignIns + 1
			u := tx.Account.UpdateOne(cur).SetFailedSignIns(n)
			if n >= lockAfter {
				u.SetSignInLockedUntil(now.Add(lockDelay(n)))
			}
			if err := u.Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recording a failed sign-in: %w", err)
	}
	return nil
}

func lockDelay(failures int) time.Duration {
	shift := failures - lockAfter
	if shift > 4 {
		return lockMax
	}
	return min(lockBase<<shift, lockMax)
}

// SignInOperator opens an operator session for the operator token.
func (s *Service) SignInOperator(ctx context.Context, token, addr, userAgent string) (Opened, error) {
	now := s.now()
	if ok, err := s.ips.allow(ctx, addr, now); err != nil || !ok {
		return Opened{}, throttled(err)
	}
	token = strings.TrimSpace(token)
	if !secret.Equal(secret.Hash(token), s.operatorHash) {
		return Opened{}, ErrWrongOperatorToken
	}
	var opened Opened
	err := s.store.InTx(ctx, func(tx *ent.Tx) error {
		var err error
		opened, err = s.open(ctx, tx, nil, entsession.MethodOperatorToken, userAgent, now)
		return err
	})
	if err != nil {
		return Opened{}, fmt.Errorf("opening the session: %w", err)
	}
	return opened, nil
}

// open creates a session for acc (nil: the operator) in tx, with its audit
// event.
func (s *Service) open(ctx context.Context, tx *ent.Tx, acc *ent.Account, method entsession.Method, userAgent string, now time.Time) (Opened, error) {
	sec, err := secret.New(secret.Session)
	if err != nil {
		return Opened{}, err
	}
	c := tx.Session.Create().
		SetHash(sec.Hash).
		SetMethod(method).
		SetUserAgent(truncate(userAgent, 200)).
		SetLastSeenAt(now).
		SetExpiresAt(now.Add(s.opt.SessionTTL))
	if acc != nil {
		c.SetAccountID(acc.ID)
	} else {
		c.SetOperatorToken(s.operatorFP)
	}
	row, err := c.Save(ctx)
	if err != nil {
		return Opened{}, err
	}
	id := identityOf(row, acc)
	ev := tx.AuditEvent.Create().SetActor(id.Actor()).SetAction("session.create").
		SetTargetType("session").SetTargetID(row.ID.String())
	if acc != nil {
		ev.SetTenantID(acc.TenantID)
	}
	if err := ev.Exec(ctx); err != nil {
		return Opened{}, err
	}
	return Opened{Secret: sec.Plaintext, Identity: id}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// SignOut ends the session with this secret. Unknown secrets are ignored.
func (s *Service) SignOut(ctx context.Context, plaintext string) error {
	if _, ok := secret.Parse(secret.Session, plaintext); !ok {
		return nil
	}
	now := s.now()
	return s.store.InTx(ctx, func(tx *ent.Tx) error {
		row, err := tx.Session.Query().Where(entsession.Hash(secret.Hash(plaintext)), entsession.RevokedAtIsNil()).WithAccount().Only(ctx)
		if ent.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return s.revoke(ctx, tx, row, identityOf(row, row.Edges.Account), now, "session.delete")
	})
}

func (s *Service) revoke(ctx context.Context, tx *ent.Tx, row *ent.Session, by Identity, now time.Time, action string) error {
	if err := tx.Session.UpdateOne(row).SetRevokedAt(now).Exec(ctx); err != nil {
		return err
	}
	ev := tx.AuditEvent.Create().SetActor(by.Actor()).SetAction(action).
		SetTargetType("session").SetTargetID(row.ID.String())
	if !by.Operator {
		ev.SetTenantID(by.TenantID)
	}
	return ev.Exec(ctx)
}

// SessionInfo describes one of a person's sessions.
type SessionInfo struct {
	ID        uuid.UUID
	Method    string
	UserAgent string
	Created   time.Time
	LastSeen  time.Time
	Expires   time.Time
	Current   bool
}

// Sessions lists the live sessions of the person signed in as who, newest
// first. Operators' sessions are listed for the operator.
func (s *Service) Sessions(ctx context.Context, who Identity) ([]SessionInfo, error) {
	now := s.now()
	q := s.store.Client().Session.Query().
		Where(entsession.RevokedAtIsNil(), entsession.ExpiresAtGT(now), entsession.LastSeenAtGT(now.Add(-s.opt.IdleTimeout))).
		Order(ent.Desc(entsession.FieldCreatedAt)).Limit(100)
	if who.Operator {
		q.Where(entsession.AccountIDIsNil())
	} else {
		q.Where(entsession.AccountID(who.AccountID))
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing sessions: %w", err)
	}
	out := make([]SessionInfo, 0, len(rows))
	for _, r := range rows {
		out = append(out, SessionInfo{
			ID: r.ID, Method: r.Method.String(), UserAgent: r.UserAgent,
			Created: r.CreatedAt, LastSeen: r.LastSeenAt, Expires: r.ExpiresAt,
			Current: r.ID == who.SessionID,
		})
	}
	return out, nil
}

// RevokeSession ends one of who's own sessions. Another person's session is
// ErrNoSession, as one that does not exist.
func (s *Service) RevokeSession(ctx context.Context, who Identity, id uuid.UUID) error {
	now := s.now()
	return s.store.InTx(ctx, func(tx *ent.Tx) error {
		row, err := tx.Session.Get(ctx, id)
		if ent.IsNotFound(err) {
			return ErrNoSession
		}
		if err != nil {
			return err
		}
		mine := (who.Operator && row.AccountID == nil) || (!who.Operator && row.AccountID != nil && *row.AccountID == who.AccountID)
		if !mine {
			return ErrNoSession
		}
		if row.RevokedAt != nil {
			return nil
		}
		return s.revoke(ctx, tx, row, who, now, "session.revoke")
	})
}

// RevokeOtherSessions ends every session of who but the current one.
func (s *Service) RevokeOtherSessions(ctx context.Context, who Identity) (int, error) {
	now := s.now()
	n := 0
	err := s.store.InTx(ctx, func(tx *ent.Tx) error {
		q := tx.Session.Update().Where(entsession.RevokedAtIsNil(), entsession.IDNEQ(who.SessionID))
		if who.Operator {
			q.Where(entsession.AccountIDIsNil())
		} else {
			q.Where(entsession.AccountID(who.AccountID))
		}
		var err error
		if n, err = q.SetRevokedAt(now).Save(ctx); err != nil {
			return err
		}
		ev := tx.AuditEvent.Create().SetActor(who.Actor()).SetAction("session.revoke_others").
			SetTargetType("session").SetTargetID(who.SessionID.String())
		if !who.Operator {
			ev.SetTenantID(who.TenantID)
		}
		return ev.Exec(ctx)
	})
	return n, err
}

// PasswordLink is a link to send to an account's e-mail address.
type PasswordLink struct {
	Secret     string
	AccountID  uuid.UUID
	Email      string
	Name       string
	TenantName string
	TenantSlug string
	Expires    time.Time
}

// RequestPasswordReset makes a password link for every account with this
// e-mail (none for an unknown one: the caller answers the same either way
// and sends the links in the background, so neither the answer nor its
// timing tells whether the address has an account).
func (s *Service) RequestPasswordReset(ctx context.Context, email, addr string) ([]PasswordLink, error) {
	if ok, err := s.ips.allow(ctx, addr, s.now()); err != nil || !ok {
		return nil, throttled(err)
	}
	email = strings.ToLower(strings.TrimSpace(email))
	if email == "" {
		return nil, nil
	}
	accounts, err := s.store.Client().Account.Query().Where(account.Email(email)).Limit(maxCandidates).IDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("finding accounts: %w", err)
	}
	var links []PasswordLink
	for _, id := range accounts {
		l, err := s.IssuePasswordLink(ctx, id)
		if err != nil {
			return nil, err
		}
		links = append(links, l)
	}
	return links, nil
}

// IssuePasswordLink makes a single-use link that sets account id's
// password. The caller must be entitled to it: the account's own reset, or
// an administrator through the admin API (AccountService.CreatePasswordLink).
func (s *Service) IssuePasswordLink(ctx context.Context, id uuid.UUID) (PasswordLink, error) {
	var link PasswordLink
	err := s.store.InTx(ctx, func(tx *ent.Tx) error {
		var err error
		link, err = s.IssuePasswordLinkTx(ctx, tx, id)
		return err
	})
	if err != nil {
		return PasswordLink{}, fmt.Errorf("making a password link: %w", err)
	}
	return link, nil
}

// IssuePasswordLinkTx is IssuePasswordLink inside the caller's transaction,
// so that the link lands together with the caller's audit event.
func (s *Service) IssuePasswordLinkTx(ctx context.Context, tx *ent.Tx, id uuid.UUID) (PasswordLink, error) {
	sec, err := secret.New(secret.PasswordToken)
	if err != nil {
		return PasswordLink{}, err
	}
	a, err := tx.Account.Query().Where(account.ID(id)).WithTenant().Only(ctx)
	if err != nil {
		return PasswordLink{}, err
	}
	row, err := tx.PasswordToken.Create().SetAccountID(a.ID).SetHash(sec.Hash).SetExpiresAt(s.now().Add(s.opt.PasswordLinkTTL)).Save(ctx)
	if err != nil {
		return PasswordLink{}, err
	}
	link := PasswordLink{Secret: sec.Plaintext, AccountID: a.ID, Email: a.Email, Name: a.Name, Expires: row.ExpiresAt}
	if t := a.Edges.Tenant; t != nil {
		link.TenantName, link.TenantSlug = t.Name, t.Slug
	}
	return link, nil
}

// CheckPasswordLink tells whether a link still works, and for whom.
func (s *Service) CheckPasswordLink(ctx context.Context, plaintext string) (email string, err error) {
	row, err := s.linkRow(ctx, s.store.Client(), plaintext)
	if err != nil {
		return "", err
	}
	return row.Edges.Account.Email, nil
}

func (s *Service) linkRow(ctx context.Context, c *ent.Client, plaintext string) (*ent.PasswordToken, error) {
	if _, ok := secret.Parse(secret.PasswordToken, plaintext); !ok {
		return nil, ErrLinkInvalid
	}
	row, err := c.PasswordToken.Query().Where(passwordtoken.Hash(secret.Hash(plaintext))).WithAccount().Only(ctx)
	if ent.IsNotFound(err) {
		return nil, ErrLinkInvalid
	}
	if err != nil {
		return nil, fmt.Errorf("looking up the link: %w", err)
	}
	if row.UsedAt != nil || !s.now().Before(row.ExpiresAt) || row.Edges.Account == nil {
		return nil, ErrLinkInvalid
	}
	return row, nil
}

// SetPassword uses a password link: it sets the password, spends every
// outstanding link of the account and ends its sessions. A bad password is
// reported with a message for the person (the link stays usable).
func (s *Service) SetPassword(ctx context.Context, link, password string) error {
	now := s.now()
	return s.store.InTx(ctx, func(tx *ent.Tx) error {
		row, err := s.linkRow(ctx, tx.Client(), link)
		if err != nil {
			return err
		}
		a := row.Edges.Account
		if err := CheckNewPassword(password, a.Email); err != nil {
			return &PasswordError{err}
		}
		return s.setPassword(ctx, tx, a, password, uuid.Nil, now, "account.password_reset")
	})
}

// PasswordError is a new password that breaks a rule; its text is for the
// person who chose it.
type PasswordError struct{ Err error }

func (e *PasswordError) Error() string { return e.Err.Error() }
func (e *PasswordError) Unwrap() error { return e.Err }

// ChangePassword changes who's password after checking the current one, and
// ends who's other sessions.
func (s *Service) ChangePassword(ctx context.Context, who Identity, current, password string) error {
	if who.Operator {
		return errors.New("the operator has no password: the operator token is the credential")
	}
	now := s.now()
	return s.store.InTx(ctx, func(tx *ent.Tx) error {
		a, err := tx.Account.Get(ctx, who.AccountID)
		if err != nil {
			return err
		}
		ok := false
		if a.PasswordHash != "" {
			ok, _, _ = VerifyPassword(current, a.PasswordHash, s.opt.Argon2)
		}
		if !ok {
			return &PasswordError{errors.New("the current password is wrong")}
		}
		if err := CheckNewPassword(password, a.Email); err != nil {
			return &PasswordError{err}
		}
		return s.setPassword(ctx, tx, a, password, who.SessionID, now, "account.password_change")
	})
}

func (s *Service) setPassword(ctx context.Context, tx *ent.Tx, a *ent.Account, password string, keep uuid.UUID, now time.Time, action string) error {
	h, err := HashPassword(password, s.opt.Argon2)
	if err != nil {
		return err
	}
	if err := tx.Account.UpdateOne(a).SetPasswordHash(h).SetFailedSignIns(0).ClearSignInLockedUntil().Exec(ctx); err != nil {
		return err
	}
	if err := tx.PasswordToken.Update().Where(passwordtoken.AccountID(a.ID), passwordtoken.UsedAtIsNil()).SetUsedAt(now).Exec(ctx); err != nil {
		return err
	}
	if err := tx.Session.Update().Where(entsession.AccountID(a.ID), entsession.RevokedAtIsNil(), entsession.IDNEQ(keep)).SetRevokedAt(now).Exec(ctx); err != nil {
		return err
	}
	return tx.AuditEvent.Create().SetActor("account:" + a.ID.String()).SetAction(action).
		SetTargetType("account").SetTargetID(a.ID.String()).SetTenantID(a.TenantID).Exec(ctx)
}

// throttled is the error of an attempt the address throttle refused, or
// could not count.
func throttled(err error) error {
	if err != nil {
		return err
	}
	return ErrThrottled
}

// Prune deletes sessions and password links that ended more than a day ago
// (a day of history for the sessions list and for support questions), and
// sign-in attempt counts whose windows have passed.
func (s *Service) Prune(ctx context.Context) (int, error) {
	// Each kind is pruned whatever happened to the others: one failing
	// table does not leave the rest growing.
	now := s.now()
	throttles, errThrottles := s.ips.prune(ctx, now)
	cut := now.Add(-24 * time.Hour)
	c := s.store.Client()
	sessions, errSessions := c.Session.Delete().Where(entsession.Or(entsession.ExpiresAtLT(cut), entsession.RevokedAtLT(cut), entsession.LastSeenAtLT(cut.Add(-s.opt.IdleTimeout)))).Exec(ctx)
	if errSessions != nil {
		errSessions = fmt.Errorf("pruning sessions: %w", errSessions)
	}
	links, errLinks := c.PasswordToken.Delete().Where(passwordtoken.ExpiresAtLT(cut)).Exec(ctx)
	if errLinks != nil {
		errLinks = fmt.Errorf("pruning password links: %w", errLinks)
	}
	return throttles + sessions + links, errors.Join(errThrottles, errSessions, errLinks)
}
