package signin

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

// BenchmarkAddrThrottle is what the shared per-address limit adds to a
// sign-in attempt: a read of two windows and one serializable transaction
// that reads them again and counts the attempt (allowed), or the read
// alone, outside any transaction (refused).
func BenchmarkAddrThrottle(b *testing.B) {
	for _, db := range []struct {
		name string
		open func(testing.TB) *store.Store
	}{{"sqlite", storetest.SQLite}, {"postgres", storetest.Postgres}} {
		b.Run(db.name, func(b *testing.B) {
			st := db.open(b)
			ctx := context.Background()
			now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			b.Run("allowed", func(b *testing.B) {
				th := newAddrThrottle(st, "tgop-bench", 1<<30, 10*time.Minute)
				i := 0
				for b.Loop() {
					i++
					// A thousand addresses, as from many clients.
					if ok, err := th.allow(ctx, fmt.Sprintf("198.51.%d.%d", i/250%4, i%250), now); err != nil || !ok {
						b.Fatal(ok, err)
					}
				}
			})
			b.Run("refused", func(b *testing.B) {
				th := newAddrThrottle(st, "tgop-bench", 1, 10*time.Minute)
				if _, err := th.allow(ctx, "203.0.113.1", now); err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if ok, err := th.allow(ctx, "203.0.113.1", now); err != nil || ok {
						b.Fatal(ok, err)
					}
				}
			})
		})
	}
}

// BenchmarkVerifyPassword is the argon2id check the throttle guards, for
// comparison.
func BenchmarkVerifyPassword(b *testing.B) {
	h, err := HashPassword("correct horse battery staple", DefaultArgon2)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, _, err := VerifyPassword("correct horse battery staple", h, DefaultArgon2); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
