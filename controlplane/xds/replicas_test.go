package xds_test

import (
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

// Two control-plane replicas on one database: a change made through one
// reaches what the other serves, through the config change log it polls.
func TestReplicasConverge(t *testing.T) {
	for name, dsn := range map[string]func(*testing.T) string{"sqlite": storetest.SQLiteDSN, "postgres": storetest.PostgresDSN} {
		t.Run(name, func(t *testing.T) {
			open := func(dsn string) *store.Store {
				st, err := store.Open(t.Context(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = st.Close() })
				if err := st.Migrate(t.Context()); err != nil {
					t.Fatal(err)
				}
				return st
			}
			d := dsn(t)
			a, b := startPlane(t, open(d)), startPlane(t, open(d))
			start := time.Now()
			a.setup() // through replica a only
			eventually(t, 2*time.Second, "replica b serves the model created through replica a", func() bool {
				return b.publisher.Status().Resources[resource.ClusterType] == 1
			})
			t.Logf("replica b converged %v after the first change began (poll interval 50ms)", time.Since(start))
		})
	}
}
