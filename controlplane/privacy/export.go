package privacy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	entdialect "entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	entschema "entgo.io/ent/dialect/sql/schema"
	"entgo.io/ent/schema/field"
	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/controlplane/contentlog"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/account"
	entcontentlog "github.com/tollgate-dev/tollgate/ent/contentlog"
	"github.com/tollgate-dev/tollgate/ent/migrate"
	"github.com/tollgate-dev/tollgate/ent/predicate"
	"github.com/tollgate-dev/tollgate/ent/tenant"
)

// ExportPageSize is how many rows export reads per query: memory is bounded
// by a page, whatever the size of the tenant.
const ExportPageSize = 500

// Line is one line of an export (NDJSON): a record of one section (a table
// of the store), or the export's header.
type Line struct {
	Section string         `json:"section"`
	Record  map[string]any `json:"record"`
}

// Exporter reads everything the store holds about a subject.
type Exporter struct {
	store *store.Store
	vault *contentlog.Vault
	// PageSize is the rows per query (ExportPageSize when 0).
	PageSize int
}

// NewExporter returns an Exporter; vault opens kept content.
func NewExporter(st *store.Store, vault *contentlog.Vault) *Exporter {
	return &Exporter{store: st, vault: vault, PageSize: ExportPageSize}
}

// Export calls emit with every record about subj, table by table, page by
// page, in a stable order. A subject that no longer exists (erased) has
// nothing to export: no record is emitted.
func (e *Exporter) Export(ctx context.Context, subj Subject, emit func(Line) error) error {
	// What is kept after an erasure (usage for billing, audit events) is
	// no longer the subject's to export: only ids that resolve to nothing
	// connect it to the subject.
	exists, err := e.exists(ctx, subj)
	if err != nil || !exists {
		return err
	}
	for _, t := range tables {
		scope := t.tenant
		id := subj.TenantID
		if subj.IsAccount() {
			scope, id = t.account, subj.AccountID
		}
		if scope == nil {
			continue
		}
		var err error
		if t.name == entcontentlog.Table {
			err = e.exportContent(ctx, subj, scope(id), emit)
		} else {
			err = e.exportTable(ctx, t, scope(id), emit)
		}
		if err != nil {
			return fmt.Errorf("exporting %s: %w", t.name, err)
		}
	}
	return nil
}

func (e *Exporter) exists(ctx context.Context, subj Subject) (bool, error) {
	c := e.store.Client()
	if subj.IsAccount() {
		return c.Account.Query().Where(account.ID(subj.AccountID), account.TenantID(subj.TenantID)).Exist(ctx)
	}
	return c.Tenant.Query().Where(tenant.ID(subj.TenantID)).Exist(ctx)
}

func (e *Exporter) pageSize() int {
	if e.PageSize <= 0 {
		return ExportPageSize
	}
	return e.PageSize
}

func (e *Exporter) dialect() string {
	if e.store.Dialect() == store.SQLite {
		return entdialect.SQLite
	}
	return entdialect.Postgres
}

func schemaTable(name string) *entschema.Table {
	i := slices.IndexFunc(migrate.Tables, func(t *entschema.Table) bool { return t.Name == name })
	if i < 0 {
		return nil
	}
	return migrate.Tables[i]
}

// exportTable pages through the subject's rows of one table by id.
func (e *Exporter) exportTable(ctx context.Context, t table, scope *entsql.Predicate, emit func(Line) error) error {
	st := schemaTable(t.name)
	if st == nil {
		return fmt.Errorf("no table %q in the schema", t.name)
	}
	var cols []*entschema.Column
	for _, c := range st.Columns {
		if !slices.Contains(t.omit, c.Name) {
			cols = append(cols, c)
		}
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	var last any
	for {
		where := scope
		if last != nil {
			where = entsql.And(scope, entsql.GT("id", last))
		}
		query, args := entsql.Dialect(e.dialect()).Select(names...).From(entsql.Table(t.name)).
			Where(where).OrderBy("id").Limit(e.pageSize()).Query()
		n, lastID, err := e.readPage(ctx, query, args, cols, func(rec map[string]any) error {
			return emit(Line{Section: t.name, Record: rec})
		})
		if err != nil {
			return err
		}
		if n < e.pageSize() {
			return nil
		}
		last = lastID
	}
}

func (e *Exporter) readPage(ctx context.Context, query string, args []any, cols []*entschema.Column, each func(map[string]any) error) (int, any, error) {
	rows, err := e.store.DB().QueryContext(ctx, query, args...)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = rows.Close() }()
	var recs []map[string]any
	var lastID any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return 0, nil, err
		}
		rec := make(map[string]any, len(cols))
		for i, c := range cols {
			rec[c.Name] = jsonValue(c, vals[i])
			if c.Name == "id" {
				lastID = rec[c.Name]
			}
		}
		recs = append(recs, rec)
	}
	if err := rows.Err(); err != nil {
		return 0, nil, err
	}
	// The page is read whole before it is emitted: the caller may send on
	// a slow stream, which must not hold a database cursor open.
	_ = rows.Close()
	for _, rec := range recs {
		if err := each(rec); err != nil {
			return 0, nil, err
		}
	}
	return len(recs), lastID, nil
}

// jsonValue turns what a driver scanned into something encoding/json shows
// as the value it is on every dialect.
func jsonValue(c *entschema.Column, v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case [16]byte:
		return uuid.UUID(x).String()
	case []byte:
		if c.Type == field.TypeJSON && json.Valid(x) {
			return json.RawMessage(slices.Clone(x))
		}
		if c.Type == field.TypeUUID && len(x) == 16 {
			return uuid.UUID(x).String()
		}
		if utf8.Valid(x) {
			return string(x)
		}
		return map[string]string{"base64": base64.StdEncoding.EncodeToString(x)}
	case string:
		if c.Type == field.TypeJSON && json.Valid([]byte(x)) {
			return json.RawMessage(x)
		}
		if c.Type == field.TypeTime {
			if t, err := parseSQLiteTime(x); err == nil {
				return t.UTC().Format(time.RFC3339Nano)
			}
		}
		return x
	}
	return v
}

// parseSQLiteTime reads the text forms SQLite drivers store times in.
func parseSQLiteTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("not a time")
}

// exportContent exports kept content decrypted: what the tenant sent and
// received, which is what the subject is entitled to see.
func (e *Exporter) exportContent(ctx context.Context, subj Subject, scope *entsql.Predicate, emit func(Line) error) error {
	var key *contentlog.DataKey
	if e.vault != nil {
		k, err := e.vault.Lookup(ctx, e.store.Client().DataKey, subj.TenantID)
		switch {
		case errors.Is(err, contentlog.ErrNoDataKey):
			return nil // never kept content, or shredded: nothing readable
		case err != nil:
			return err
		}
		key = k
	}
	pred := predicate.ContentLog(func(s *entsql.Selector) { s.Where(scope) })
	var last uuid.UUID
	for {
		rows, err := e.store.Client().ContentLog.Query().
			Where(pred, entcontentlog.IDGT(last)).Order(ent.Asc(entcontentlog.FieldID)).Limit(e.pageSize()).All(ctx)
		if err != nil {
			return err
		}
		for _, row := range rows {
			rec := map[string]any{
				"id": row.ID.String(), "request_id": row.RequestID, "tenant_id": row.TenantID.String(),
				"created_at": row.CreatedAt.UTC().Format(time.RFC3339Nano), "expires_at": row.ExpiresAt.UTC().Format(time.RFC3339Nano),
				"truncated": row.Truncated,
			}
			if row.APIKeyID != nil {
				rec["api_key_id"] = row.APIKeyID.String()
			}
			if key != nil {
				c, err := key.Open(row)
				if err != nil {
					rec["unreadable"] = err.Error()
				} else {
					rec["request_body"] = bodyValue(c.GetRequestBody())
					rec["response_body"] = bodyValue(c.GetResponseBody())
				}
			}
			if err := emit(Line{Section: entcontentlog.Table, Record: rec}); err != nil {
				return err
			}
		}
		if len(rows) < e.pageSize() {
			return nil
		}
		last = rows[len(rows)-1].ID
	}
}

func bodyValue(b []byte) any {
	if utf8.Valid(b) {
		return string(b)
	}
	return map[string]string{"base64": base64.StdEncoding.EncodeToString(b)}
}
