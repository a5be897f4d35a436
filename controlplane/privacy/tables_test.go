package privacy

import (
	"testing"

	"github.com/tollgate-dev/tollgate/ent/migrate"
)

// A table added to the schema must say what export and erasure do with it
// (tables.go) before the tests pass: otherwise it could hold personal data
// that an export forgets and an erasure leaves behind.
func TestEveryTableIsClassified(t *testing.T) {
	inSchema := map[string]bool{}
	for _, tbl := range migrate.Tables {
		inSchema[tbl.Name] = true
		if _, ok := tableNamed(tbl.Name); !ok {
			t.Errorf("table %s is not classified in controlplane/privacy/tables.go: decide what export and erasure do with its rows", tbl.Name)
		}
	}
	for _, rule := range tables {
		if !inSchema[rule.name] {
			t.Errorf("tables.go classifies %s, which the schema no longer has", rule.name)
		}
		if rule.erasure == "" {
			t.Errorf("table %s: say what erasure does with it", rule.name)
		}
		if (rule.tenant != nil || rule.account != nil) && schemaTable(rule.name) == nil {
			t.Errorf("table %s is exported but not in the schema", rule.name)
		}
		for _, c := range rule.omit {
			found := false
			for _, col := range schemaTable(rule.name).Columns {
				found = found || col.Name == c
			}
			if !found {
				t.Errorf("table %s omits column %s, which it does not have", rule.name, c)
			}
		}
	}
}
