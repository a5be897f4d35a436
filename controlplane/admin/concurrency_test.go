package admin

import (
	"fmt"
	"sync"
	"testing"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent/auditevent"
)

// 50 concurrent key creations and tenant updates: under SERIALIZABLE on
// PostgreSQL many of them conflict and are retried by the store. None may be
// lost, none may fail, and each must leave exactly one audit event.
func TestConcurrentKeyCreationsAndTenantUpdatesLoseNothing(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		h.createTenant("acme")
		const n = 50
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			errs   []error
			keyIDs = map[string]bool{}
			names  = map[string]bool{}
			refs   = map[string]bool{}
		)
		for i := range n {
			wg.Add(2)
			go func() {
				defer wg.Done()
				resp, err := h.keys().CreateKey(h.op(), &adminv1.CreateKeyRequest{Tenant: "acme", Key: &adminv1.Key{Name: fmt.Sprintf("key-%d", i)}})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				keyIDs[resp.GetKey().GetId()] = true
			}()
			go func() {
				defer wg.Done()
				// Half the updates change the name, half the billing
				// reference: with field masks neither may undo the other.
				tn := &adminv1.Tenant{Slug: "acme", Name: fmt.Sprintf("name-%d", i), BillingReference: fmt.Sprintf("ref-%d", i)}
				path := "name"
				if i%2 == 1 {
					path = "billing_reference"
				}
				_, err := h.tenants().UpdateTenant(h.op(), &adminv1.UpdateTenantRequest{Tenant: tn, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{path}}})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				if path == "name" {
					names[tn.Name] = true
				} else {
					refs[tn.BillingReference] = true
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			t.Errorf("call failed: %v", err)
		}
		if len(errs) > 0 {
			t.Logf("admin log:\n%s", h.logs)
		}
		ctx := t.Context()
		stored, err := st.Client().APIKey.Query().Count(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if stored != n || len(keyIDs) != n {
			t.Errorf("stored %d keys, returned %d ids, want %d", stored, len(keyIDs), n)
		}
		tn, err := h.tenants().GetTenant(h.op(), &adminv1.GetTenantRequest{Tenant: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		if !names[tn.GetTenant().GetName()] || !refs[tn.GetTenant().GetBillingReference()] {
			t.Errorf("final tenant %q / %q is not the result of the updates: a write was lost", tn.GetTenant().GetName(), tn.GetTenant().GetBillingReference())
		}
		for action, want := range map[string]int{"key.create": n, "tenant.update": n} {
			got, err := st.Client().AuditEvent.Query().Where(auditevent.Action(action)).Count(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%d %s audit events, want %d", got, action, want)
			}
		}
	})
}
