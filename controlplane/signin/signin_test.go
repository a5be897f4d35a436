package signin

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/account"
	"github.com/tollgate-dev/tollgate/ent/tenant"
)

var cheap = Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1}

type fixture struct {
	t   *testing.T
	st  *store.Store
	svc *Service
	now time.Time
	op  string
}

func newFixture(t *testing.T, st *store.Store) *fixture {
	t.Helper()
	op, err := secret.New(secret.OperatorToken)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, st: st, now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), op: op.Plaintext}
	f.svc, err = New(st, Options{OperatorToken: op.Plaintext, Argon2: cheap, Now: func() time.Time { return f.now }, AttemptsPerAddr: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// account creates a tenant (once) and an account in it, with a password
// when pw is not empty.
func (f *fixture) account(slug, email, pw string) *ent.Account {
	f.t.Helper()
	ctx := context.Background()
	c := f.st.Client()
	tid, err := c.Tenant.Query().Where(tenant.Slug(slug)).Only(ctx)
	if ent.IsNotFound(err) {
		tid, err = c.Tenant.Create().SetSlug(slug).SetName(slug).Save(ctx)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	a, err := c.Account.Create().SetTenantID(tid.ID).SetEmail(email).SetRole(account.RoleMember).Save(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	if pw != "" {
		link, err := f.svc.IssuePasswordLink(ctx, a.ID)
		if err != nil {
			f.t.Fatal(err)
		}
		if err := f.svc.SetPassword(ctx, link.Secret, pw); err != nil {
			f.t.Fatal(err)
		}
	}
	return a
}

const pw = "a long enough passphrase"

func TestPasswordHashCarriesItsParameters(t *testing.T) {
	h, err := HashPassword(pw, cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q does not carry its parameters", h)
	}
	h2, _ := HashPassword(pw, cheap)
	if h == h2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	if ok, stale, err := VerifyPassword(pw, h, cheap); !ok || stale || err != nil {
		t.Errorf("VerifyPassword(right) = %v, %v, %v", ok, stale, err)
	}
	if ok, _, _ := VerifyPassword(pw+"x", h, cheap); ok {
		t.Error("a wrong password verified")
	}
	if _, stale, _ := VerifyPassword(pw, h, DefaultArgon2); !stale {
		t.Error("a hash with old parameters is not reported stale")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=64,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", "$argon2id$v=19$m=99999999,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		if _, _, err := VerifyPassword(pw, bad, cheap); !errors.Is(err, ErrBadHash) {
			t.Errorf("VerifyPassword(%q) error = %v, want ErrBadHash", bad, err)
		}
	}
	if err := CheckNewPassword("short", ""); err == nil {
		t.Error("a 5-character password was accepted")
	}
	if err := CheckNewPassword("me@example.com", "me@example.com"); err == nil {
		t.Error("the e-mail address was accepted as a password")
	}
}

func TestSignInWithPassword(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st)
		ctx := context.Background()
		a := f.account("acme", "ann@example.com", pw)
		f.account("acme", "nopw@example.com", "")

		opened, err := f.svc.SignIn(ctx, Attempt{Email: " Ann@Example.com ", Password: pw, Addr: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		if opened.AccountID != a.ID || opened.TenantSlug != "acme" || opened.Role != RoleMember {
			t.Errorf("identity = %+v", opened.Identity)
		}
		got, err := f.svc.Lookup(ctx, opened.Secret)
		if err != nil || got.AccountID != a.ID {
			t.Fatalf("Lookup = %+v, %v", got, err)
		}
		for name, at := range map[string]Attempt{
			"wrong password":  {Email: "ann@example.com", Password: "not the password"},
			"unknown e-mail":  {Email: "nobody@example.com", Password: pw},
			"no password set": {Email: "nopw@example.com", Password: pw},
			"other tenant":    {Email: "ann@example.com", Password: pw, Tenant: "globex"},
		} {
			if _, err := f.svc.SignIn(ctx, at); !errors.Is(err, ErrWrongCredentials) {
				t.Errorf("%s: err = %v, want ErrWrongCredentials", name, err)
			}
		}

		// The session ends when signed out, when idle too long, at its end.
		if err := f.svc.SignOut(ctx, opened.Secret); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Lookup(ctx, opened.Secret); !errors.Is(err, ErrNoSession) {
			t.Errorf("Lookup after sign-out: %v", err)
		}
		idle, _ := f.svc.SignIn(ctx, Attempt{Email: "ann@example.com", Password: pw})
		f.now = f.now.Add(2*time.Hour + time.Second)
		if _, err := f.svc.Lookup(ctx, idle.Secret); !errors.Is(err, ErrNoSession) {
			t.Errorf("Lookup of an idle session: %v", err)
		}
	})
}

func TestWrongPasswordsLockTheAccountForAWhile(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st)
		ctx := context.Background()
		f.account("acme", "ann@example.com", pw)
		for range lockAfter {
			if _, err := f.svc.SignIn(ctx, Attempt{Email: "ann@example.com", Password: "guess"}); !errors.Is(err, ErrWrongCredentials) {
				t.Fatalf("guess: %v", err)
			}
		}
		// Locked: even the right password is refused, with the same words.
		if _, err := f.svc.SignIn(ctx, Attempt{Email: "ann@example.com", Password: pw}); !errors.Is(err, ErrWrongCredentials) {
			t.Fatalf("right password while locked: %v", err)
		}
		f.now = f.now.Add(lockBase + time.Second)
		if _, err := f.svc.SignIn(ctx, Attempt{Email: "ann@example.com", Password: pw}); err != nil {
			t.Fatalf("right password after the lock: %v", err)
		}
	})
}

func TestAttemptsFromOneAddressAreLimited(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st)
		f.svc.ips = newAddrThrottle(st, f.op, 3, time.Minute)
		ctx := context.Background()
		try := func(addr string) error {
			_, err := f.svc.SignIn(ctx, Attempt{Email: "x@example.com", Password: "y", Addr: addr})
			return err
		}
		for range 3 {
			if err := try("198.51.100.7"); errors.Is(err, ErrThrottled) {
				t.Fatal("throttled within the limit")
			}
		}
		// A refusal is decided on a plain read: it opens no transaction,
		// which on SQLite would take the single writer lock.
		refusedCtx, txs := store.WithTxStats(ctx)
		if _, err := f.svc.SignIn(refusedCtx, Attempt{Email: "x@example.com", Password: "y", Addr: "198.51.100.7"}); !errors.Is(err, ErrThrottled) {
			t.Errorf("4th attempt: %v, want ErrThrottled", err)
		}
		// The operator's sign-in and password resets count too.
		if _, err := f.svc.SignInOperator(refusedCtx, f.op, "198.51.100.7", ""); !errors.Is(err, ErrThrottled) {
			t.Errorf("operator sign-in from the address: %v, want ErrThrottled", err)
		}
		if _, err := f.svc.RequestPasswordReset(refusedCtx, "x@example.com", "198.51.100.7"); !errors.Is(err, ErrThrottled) {
			t.Errorf("password reset from the address: %v, want ErrThrottled", err)
		}
		if n := txs.Transactions(); n != 0 {
			t.Errorf("3 refused attempts ran %d transactions, want 0", n)
		}
		allowedCtx, txs := store.WithTxStats(ctx)
		if ok, err := f.svc.ips.allow(allowedCtx, "198.51.100.8", f.now); err != nil || !ok {
			t.Errorf("another address: %v, %v, want allowed", ok, err)
		}
		if n := txs.Transactions(); n != 1 {
			t.Errorf("an allowed attempt ran %d transactions, want 1 (the count)", n)
		}
		// A window later, the previous window still weighs in fully...
		f.now = f.now.Add(time.Minute)
		if err := try("198.51.100.7"); !errors.Is(err, ErrThrottled) {
			t.Errorf("right after the window: %v, want ErrThrottled", err)
		}
		// ...and half a window on, half of it: 3·½ + 1 ≤ 3.
		f.now = f.now.Add(30 * time.Second)
		if err := try("198.51.100.7"); errors.Is(err, ErrThrottled) {
			t.Error("the address is still throttled half a window later")
		}
		if err := try("198.51.100.7"); !errors.Is(err, ErrThrottled) {
			t.Errorf("3·½ + 2 > 3: %v, want ErrThrottled", err)
		}
	})
}

func TestAnIPv6NetworkCountsAsOneAddress(t *testing.T) {
	th := newAddrThrottle(nil, "tgop-x", 1, time.Minute)
	same := [][2]string{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe"},
		{"192.0.2.1", "::ffff:192.0.2.1"},
		{"fe80::1%eth0", "fe80::2"},
	}
	for _, p := range same {
		if !bytes.Equal(th.addrKey(p[0]), th.addrKey(p[1])) {
			t.Errorf("%s and %s are counted apart", p[0], p[1])
		}
	}
	differ := [][2]string{{"2001:db8:1:2::1", "2001:db8:1:3::1"}, {"192.0.2.1", "192.0.2.2"}, {"", "192.0.2.1"}}
	for _, p := range differ {
		if bytes.Equal(th.addrKey(p[0]), th.addrKey(p[1])) {
			t.Errorf("%s and %s are counted together", p[0], p[1])
		}
	}
	if bytes.Equal(th.addrKey("192.0.2.1"), newAddrThrottle(nil, "tgop-y", 1, time.Minute).addrKey("192.0.2.1")) {
		t.Error("the stored key does not depend on the secret")
	}
}

// Two control-plane replicas share one limit per address, however their
// attempts interleave, and when attempts race on both at once exactly the
// limit gets through.
func TestReplicasShareTheLimitOfAnAddress(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st)
		other, err := New(st, Options{OperatorToken: f.op, Argon2: cheap, Now: func() time.Time { return f.now }, AttemptsPerAddr: 4})
		if err != nil {
			t.Fatal(err)
		}
		f.svc.ips = newAddrThrottle(st, f.op, 4, 10*time.Minute)
		replicas := []*Service{f.svc, other}
		ctx := context.Background()
		for i := range 4 {
			if _, err := replicas[i%2].SignIn(ctx, Attempt{Email: "x@example.com", Password: "y", Addr: "203.0.113.5"}); errors.Is(err, ErrThrottled) {
				t.Fatalf("attempt %d throttled within the limit", i+1)
			}
		}
		for i, r := range replicas {
			if _, err := r.SignIn(ctx, Attempt{Email: "x@example.com", Password: "y", Addr: "203.0.113.5"}); !errors.Is(err, ErrThrottled) {
				t.Errorf("replica %d let a 5th attempt through: %v", i, err)
			}
		}

		const racers = 12
		var (
			wg      sync.WaitGroup
			allowed atomic.Int32
			errs    = make(chan error, racers)
		)
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := replicas[i%2].ips.allow(ctx, "203.0.113.77", f.now)
				if err != nil {
					errs <- err
				}
				if ok {
					allowed.Add(1)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := allowed.Load(); n != 4 {
			t.Errorf("%d of %d racing attempts got through, want the limit, 4", n, racers)
		}

		// Pruning keeps the windows that still count and drops the rest.
		count := func() int {
			n, err := st.Client().SignInThrottle.Query().Count(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n := count(); n != 2 {
			t.Fatalf("%d counter rows, want 2 (two addresses, one window)", n)
		}
		f.now = f.now.Add(10 * time.Minute)
		if _, err := f.svc.Prune(ctx); err != nil || count() != 2 {
			t.Errorf("prune one window on: %v, %d rows left, want 2", err, count())
		}
		f.now = f.now.Add(10 * time.Minute)
		if _, err := f.svc.Prune(ctx); err != nil || count() != 0 {
			t.Errorf("prune two windows on: %v, %d rows left, want 0", err, count())
		}
	})
}

func TestOneEmailInSeveralTenantsNeedsTheTenant(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st)
		ctx := context.Background()
		f.account("acme", "ann@example.com", pw)
		g := f.account("globex", "ann@example.com", pw)
		if _, err := f.svc.SignIn(ctx, Attempt{Email: "ann@example.com", Password: pw}); !errors.Is(err, ErrAmbiguous) {
			t.Fatalf("err = %v, want ErrAmbiguous", err)
		}
		opened, err := f.svc.SignIn(ctx, Attempt{Email: "ann@example.com", Password: pw, Tenant: "globex"})
		if err != nil || opened.AccountID != g.ID {
			t.Fatalf("with the tenant: %+v, %v", opened.Identity, err)
		}
	})
}

func TestPasswordLinksAreSingleUseAndExpire(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st)
		ctx := context.Background()
		a := f.account("acme", "ann@example.com", pw)
		before, _ := f.svc.SignIn(ctx, Attempt{Email: "ann@example.com", Password: pw})

		links, err := f.svc.RequestPasswordReset(ctx, "ANN@example.com", "192.0.2.1")
		if err != nil || len(links) != 1 || links[0].AccountID != a.ID {
			t.Fatalf("RequestPasswordReset = %+v, %v", links, err)
		}
		var perr *PasswordError
		if err := f.svc.SetPassword(ctx, links[0].Secret, "short"); !errors.As(err, &perr) {
			t.Fatalf("short password: %v", err)
		}
		const next = "another long passphrase"
		if err := f.svc.SetPassword(ctx, links[0].Secret, next); err != nil {
			t.Fatalf("the link did not survive a rejected password: %v", err)
		}
		if err := f.svc.SetPassword(ctx, links[0].Secret, next+"!"); !errors.Is(err, ErrLinkInvalid) {
			t.Errorf("second use: %v, want ErrLinkInvalid", err)
		}
		if _, err := f.svc.Lookup(ctx, before.Secret); !errors.Is(err, ErrNoSession) {
			t.Errorf("a session from before the reset survived it: %v", err)
		}
		if _, err := f.svc.SignIn(ctx, Attempt{Email: "ann@example.com", Password: next}); err != nil {
			t.Errorf("the new password does not work: %v", err)
		}
		if links, _ := f.svc.RequestPasswordReset(ctx, "nobody@example.com", "192.0.2.1"); len(links) != 0 {
			t.Errorf("links for an unknown e-mail: %v", links)
		}
		late, _ := f.svc.IssuePasswordLink(ctx, a.ID)
		f.now = f.now.Add(time.Hour)
		if err := f.svc.SetPassword(ctx, late.Secret, "yet another passphrase"); !errors.Is(err, ErrLinkInvalid) {
			t.Errorf("expired link: %v, want ErrLinkInvalid", err)
		}
	})
}

func TestOperatorSessionsEndWhenTheTokenRotates(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st)
		ctx := context.Background()
		if _, err := f.svc.SignInOperator(ctx, "tgop-wrong", "", ""); err == nil {
			t.Fatal("a wrong operator token signed in")
		}
		opened, err := f.svc.SignInOperator(ctx, f.op, "", "")
		if err != nil {
			t.Fatal(err)
		}
		if id, err := f.svc.Lookup(ctx, opened.Secret); err != nil || !id.Operator {
			t.Fatalf("Lookup = %+v, %v", id, err)
		}
		next, _ := secret.New(secret.OperatorToken)
		rotated, err := New(st, Options{OperatorToken: next.Plaintext, Argon2: cheap, Now: func() time.Time { return f.now }})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rotated.Lookup(ctx, opened.Secret); !errors.Is(err, ErrNoSession) {
			t.Errorf("a session of the old operator token: %v, want ErrNoSession", err)
		}
	})
}

func TestSSOBindsByVerifiedEmailOnce(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st)
		ctx := context.Background()
		a := f.account("acme", "ann@example.com", "")
		id := SSOIdentity{Issuer: "https://idp.example", Subject: "u1", Email: "ann@example.com"}
		if _, err := f.svc.SignInSSO(ctx, id, "", ""); !errors.Is(err, ErrNoAccount) {
			t.Fatalf("unverified e-mail: %v, want ErrNoAccount", err)
		}
		id.EmailVerified = true
		opened, err := f.svc.SignInSSO(ctx, id, "", "")
		if err != nil || opened.AccountID != a.ID {
			t.Fatalf("first SSO: %+v, %v", opened.Identity, err)
		}
		// Bound: the subject finds the account even when the e-mail changes.
		id.Email = "ann@elsewhere.example"
		if again, err := f.svc.SignInSSO(ctx, id, "", ""); err != nil || again.AccountID != a.ID {
			t.Fatalf("second SSO: %+v, %v", again.Identity, err)
		}
		other := SSOIdentity{Issuer: "https://idp.example", Subject: "u2", Email: "ann@example.com", EmailVerified: true}
		if _, err := f.svc.SignInSSO(ctx, other, "", ""); !errors.Is(err, ErrNoAccount) {
			t.Errorf("a second identity took the bound account: %v", err)
		}
	})
}

func TestPruneDeletesWhatEndedADayAgo(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st)
		ctx := context.Background()
		a := f.account("acme", "ann@example.com", pw)
		old, _ := f.svc.SignIn(ctx, Attempt{Email: "ann@example.com", Password: pw})
		if err := f.svc.SignOut(ctx, old.Secret); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.IssuePasswordLink(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		f.now = f.now.Add(26 * time.Hour) // the links ended at +1h, a day ago at +25h
		live, _ := f.svc.SignIn(ctx, Attempt{Email: "ann@example.com", Password: pw})
		n, err := f.svc.Prune(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The signed-out session, the reset's own link, the new link and
		// the first sign-in's attempt count (the second's still counts).
		if n != 4 {
			t.Errorf("pruned %d rows, want 4", n)
		}
		if _, err := f.svc.Lookup(ctx, live.Secret); err != nil {
			t.Errorf("the live session was pruned: %v", err)
		}
	})
}

// A throttle table that cannot be pruned does not keep sessions and
// password links from being pruned; the error is still returned.
func TestPruneGoesOnPastAFailure(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st)
		ctx := context.Background()
		// A store without the schema: pruning the counts there fails.
		empty, err := store.Open(ctx, storetest.SQLiteDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = empty.Close() })
		f.svc.ips = newAddrThrottle(empty, f.op, 0, 10*time.Minute)
		a := f.account("acme", "ann@example.com", pw)
		if _, err := f.svc.IssuePasswordLink(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		f.now = f.now.Add(26 * time.Hour)
		n, err := f.svc.Prune(ctx)
		if err == nil || !strings.Contains(err.Error(), "pruning sign-in attempt counts") {
			t.Errorf("prune: %v, want the throttle's error", err)
		}
		// The reset's own link and the new one.
		if n != 2 {
			t.Errorf("pruned %d rows, want 2", n)
		}
		if left, err := st.Client().PasswordToken.Query().Count(ctx); err != nil || left != 0 {
			t.Errorf("%d password links left (%v), want 0", left, err)
		}
	})
}
