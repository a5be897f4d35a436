package signin

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"time"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/signinthrottle"
)

// addrThrottle limits sign-in attempts (passwords, the operator token,
// password resets) per client address. The counts are in the store
// (sign_in_throttles), so every control-plane replica enforces one limit:
// behind a balancer an address gets the limit once, not once per replica.
//
// Windows are aligned to the window's length, so all replicas count into
// the same row, and the limit is applied to a sliding estimate: the current
// window's count plus the previous window's, weighted by how much of it
// the sliding window still covers. That keeps a client from spending two
// windows' worth around a boundary. Refused attempts are not counted: the
// limit is a rate, and a refusal is decided on a plain read, outside any
// transaction, so a flood of refused attempts is neither a flood of writes
// nor of write locks.
type addrThrottle struct {
	store  *store.Store
	key    []byte
	limit  int
	window time.Duration
}

func newAddrThrottle(st *store.Store, operatorToken string, limit int, window time.Duration) *addrThrottle {
	// The key comes from the operator token, which every replica has: it
	// makes the stored hashes useless to anyone who reads the table
	// without the token (an IPv4 address hashed without a key is found by
	// trying all 2^32). Rotating the token starts the counts afresh.
	k := sha256.Sum256([]byte("tollgate sign-in throttle\x00" + operatorToken))
	return &addrThrottle{store: st, key: k[:], limit: limit, window: window}
}

// addrKey is what an address is counted as: an IPv4 address itself, an
// IPv6 address's /64 network (one subscriber usually holds a whole /64, and
// would otherwise have 2^64 fresh addresses to try from), anything else
// (no address at all) as it is; stored as a keyed hash.
func (t *addrThrottle) addrKey(addr string) []byte {
	s := addr
	if a, err := netip.ParseAddr(addr); err == nil {
		a = a.Unmap().WithZone("")
		s = a.String()
		if a.Is6() {
			p, _ := a.Prefix(64) // cannot fail: 64 bits of an IPv6 address
			s = p.String()
		}
	}
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(s))
	return m.Sum(nil)[:16]
}

// allow counts one attempt from addr at now and reports whether it is
// within the limit.
//
// The counts are read first with a plain query, outside any transaction:
// an address over the limit is refused on that read alone, so a flood of
// refused attempts takes no write lock (on SQLite a transaction is BEGIN
// IMMEDIATE, the single writer lock usage ingest needs too). Only an
// attempt that looks allowed opens the write transaction, which reads the
// counts again and decides: two replicas racing past the first read still
// let exactly the limit through.
func (t *addrThrottle) allow(ctx context.Context, addr string, now time.Time) (bool, error) {
	if t.limit <= 0 {
		return true, nil
	}
	key := t.addrKey(addr)
	cur := now.UTC().Truncate(t.window)
	prev := cur.Add(-t.window)
	// How much of the previous window the sliding window [now-window, now]
	// still covers.
	weight := 1 - float64(now.Sub(cur))/float64(t.window)
	within := func(c *ent.SignInThrottleClient) (bool, error) {
		rows, err := c.Query().
			Where(signinthrottle.Addr(key), signinthrottle.WindowStartIn(prev, cur)).All(ctx)
		if err != nil {
			return false, fmt.Errorf("reading the attempts: %w", err)
		}
		var before, current int64
		for _, r := range rows {
			if r.WindowStart.Equal(cur) {
				current = r.Attempts
			} else {
				before = r.Attempts
			}
		}
		return float64(before)*weight+float64(current+1) <= float64(t.limit), nil
	}
	ok, err := within(t.store.Client().SignInThrottle)
	if err != nil {
		return false, fmt.Errorf("counting a sign-in attempt: %w", err)
	}
	if !ok {
		return false, nil
	}
	allowed := false
	err = t.store.InTx(ctx, func(tx *ent.Tx) error {
		ok, err := within(tx.SignInThrottle)
		if allowed = ok; err != nil || !ok {
			return err
		}
		// Serializable: two replicas counting the same attempt row at once
		// cannot both read the old count and commit; one is retried.
		return tx.SignInThrottle.Create().SetAddr(key).SetWindowStart(cur).SetAttempts(1).
			OnConflictColumns(signinthrottle.FieldAddr, signinthrottle.FieldWindowStart).
			AddAttempts(1).Exec(ctx)
	})
	if err != nil {
		return false, fmt.Errorf("counting a sign-in attempt: %w", err)
	}
	return allowed, nil
}

// prune deletes windows that no longer count, and returns how many.
func (t *addrThrottle) prune(ctx context.Context, now time.Time) (int, error) {
	n, err := t.store.Client().SignInThrottle.Delete().
		Where(signinthrottle.WindowStartLT(now.UTC().Truncate(t.window).Add(-t.window))).Exec(ctx)
	if err != nil {
		return n, fmt.Errorf("pruning sign-in attempt counts: %w", err)
	}
	return n, nil
}
