// Package privacytest finds strings anywhere in a store, for tests that
// prove nothing personal or content-bearing is left behind: it reads every
// table of the schema (ent's migrate description, so tables added later
// are scanned too) and every column that can hold text.
package privacytest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	entsql "entgo.io/ent/dialect/sql"
	"entgo.io/ent/schema/field"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent/migrate"
)

// Finding is one marker found in one row's column.
type Finding struct {
	Table, Column, Marker string
}

func (f Finding) String() string { return fmt.Sprintf("%s.%s holds %q", f.Table, f.Column, f.Marker) }

// textual reports whether a column can hold a marker string.
func textual(t field.Type) bool {
	switch t {
	case field.TypeString, field.TypeBytes, field.TypeJSON, field.TypeEnum, field.TypeOther:
		return true
	}
	return false
}

// Scan returns every place in the store where one of markers appears, compared
// case-insensitively. It reads whole tables: for tests only.
func Scan(ctx context.Context, st *store.Store, markers ...string) ([]Finding, error) {
	var out []Finding
	for _, tbl := range migrate.Tables {
		var cols []string
		for _, c := range tbl.Columns {
			if textual(c.Type) {
				cols = append(cols, c.Name)
			}
		}
		if len(cols) == 0 {
			continue
		}
		dialect := "postgres"
		if st.Dialect() == store.SQLite {
			dialect = "sqlite3"
		}
		query, args := entsql.Dialect(dialect).Select(cols...).From(entsql.Table(tbl.Name)).Query()
		rows, err := st.DB().QueryContext(ctx, query, args...)
		if err != nil {
			return nil, fmt.Errorf("scanning %s: %w", tbl.Name, err)
		}
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				_ = rows.Close()
				return nil, err
			}
			for i, v := range vals {
				var s string
				switch x := v.(type) {
				case string:
					s = x
				case []byte:
					s = string(x)
				case nil:
					continue
				default:
					s = fmt.Sprint(x)
				}
				s = strings.ToLower(s)
				for _, m := range markers {
					if m != "" && strings.Contains(s, strings.ToLower(m)) {
						out = append(out, Finding{Table: tbl.Name, Column: cols[i], Marker: m})
					}
				}
			}
		}
		err = rows.Err()
		_ = rows.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// NoTrace fails t for every marker found in the store.
func NoTrace(t testing.TB, st *store.Store, markers ...string) {
	t.Helper()
	found, err := Scan(t.Context(), st, markers...)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range found {
		t.Errorf("left behind: %s", f)
	}
}
