package tollgatecmd

import (
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/controlplane/billing"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/privacy"
	"github.com/tollgate-dev/tollgate/controlplane/quotaauthority"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/signin"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/controlplane/usageingest"
)

// Every background job runs against a real store, and names follow the
// area.verb convention the leases are listed by.
func TestBackgroundJobsRun(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		var nf notifyFlags
		notifier, err := nf.deliverer(st, testKeyring(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		op, err := secret.New(secret.OperatorToken)
		if err != nil {
			t.Fatal(err)
		}
		sessions, err := signin.New(st, signin.Options{OperatorToken: op.Plaintext, Argon2: signin.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1}})
		if err != nil {
			t.Fatal(err)
		}
		js := backgroundJobs(jobDeps{store: st, authority: quotaauthority.New(st, quotaauthority.Options{}), notifier: notifier,
			purger: privacy.NewPurger(st, nil, nil), billing: billing.New(billing.Config{Store: st}), sessions: sessions,
			rollups: usageingest.New(st, nil)})
		if len(js) == 0 {
			t.Fatal("no background jobs")
		}
		seen := map[string]bool{}
		for _, j := range js {
			if seen[j.Name] || !strings.Contains(j.Name, ".") || j.Every <= 0 {
				t.Errorf("job %q (every %v): names must be unique and dotted, intervals positive", j.Name, j.Every)
			}
			seen[j.Name] = true
			if err := j.Run(t.Context()); err != nil {
				t.Errorf("job %s: %v", j.Name, err)
			}
		}
	})
}

func TestReplicaNamesDifferByProcess(t *testing.T) {
	if n := replicaName(); !strings.Contains(n, "/") {
		t.Fatalf("replica name %q lacks the process id", n)
	}
}

func testKeyring(t *testing.T) *keyring.Keyring {
	t.Helper()
	ring, err := keyring.New(keyring.Key{ID: "test", Secret: make([]byte, keyring.SecretSize)})
	if err != nil {
		t.Fatal(err)
	}
	return ring
}
