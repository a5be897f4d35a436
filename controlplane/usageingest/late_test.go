package usageingest

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
)

// statementLog is an ent driver over a store's database that keeps every
// statement its transactions send.
type statementLog struct {
	*entsql.Driver
	mu    sync.Mutex
	stmts []string
}

func (d *statementLog) Tx(ctx context.Context) (dialect.Tx, error) { return d.BeginTx(ctx, nil) }

func (d *statementLog) BeginTx(ctx context.Context, opts *sql.TxOptions) (dialect.Tx, error) {
	tx, err := d.Driver.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return loggedTx{Tx: tx.(*entsql.Tx), log: d}, nil
}

func (d *statementLog) note(query string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stmts = append(d.stmts, query)
}

// take returns the statements sent since the last take.
func (d *statementLog) take() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.stmts
	d.stmts = nil
	return out
}

type loggedTx struct {
	*entsql.Tx
	log *statementLog
}

func (t loggedTx) Exec(ctx context.Context, query string, args, v any) error {
	t.log.note(query)
	return t.Tx.Exec(ctx, query, args, v)
}

func (t loggedTx) Query(ctx context.Context, query string, args, v any) error {
	t.log.note(query)
	return t.Tx.Query(ctx, query, args, v)
}

func (t loggedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	t.log.note(query)
	return t.Tx.ExecContext(ctx, query, args...)
}

func (t loggedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	t.log.note(query)
	return t.Tx.QueryContext(ctx, query, args...)
}

// storeLogged runs storeRows for records made at the given times in a
// transaction of its own, as write does, and returns the statements it
// sent.
func storeLogged(t *testing.T, st *store.Store, log *statementLog, thisMonth time.Time, at ...time.Time) []string {
	t.Helper()
	ctx := context.Background()
	rows := make([]row, len(at))
	for i, a := range at {
		r := record(i)
		r.Time = timestamppb.New(a)
		rw, err := validate(r)
		if err != nil {
			t.Fatal(err)
		}
		rows[i] = rw
	}
	var opts *sql.TxOptions
	if st.Dialect() != store.SQLite {
		opts = &sql.TxOptions{Isolation: sql.LevelSerializable}
	}
	tx, err := ent.NewClient(ent.Driver(log)).BeginTx(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := storeRows(ctx, tx, st.Dialect(), rows, 0, thisMonth); err != nil {
		_ = tx.Rollback()
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return log.take()
}

func naming(stmts []string, table string) []string {
	var out []string
	for _, s := range stmts {
		if strings.Contains(s, `"`+table+`"`) || strings.Contains(s, "`"+table+"`") {
			out = append(out, s)
		}
	}
	return out
}

// A batch of the current month's records, which is all of normal traffic,
// sends no statement about invoices: the late-record check costs nothing
// there. A batch of a past month sends one lookup, and an update only when
// the month's invoice exists.
func TestLateCheckRunsOnlyForPastMonths(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		d := dialect.Postgres
		if st.Dialect() == store.SQLite {
			d = dialect.SQLite
		}
		log := &statementLog{Driver: entsql.OpenDB(d, st.DB())}
		thisMonth := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		february := thisMonth.AddDate(0, -1, 0)

		stmts := storeLogged(t, st, log, thisMonth, thisMonth.Add(time.Hour), thisMonth.Add(40*24*time.Hour-time.Hour), thisMonth.AddDate(0, 1, 0))
		for _, s := range stmts {
			if len(naming([]string{s}, "usage_records"))+len(naming([]string{s}, "usage_rollups")) != 1 || !strings.HasPrefix(s, "INSERT") {
				t.Errorf("a batch of this month (and a later one) sent %q; want only the records' and rollups' inserts", s)
			}
		}
		if len(naming(stmts, "usage_records")) != 1 {
			t.Errorf("statements %q: want one insert of the records", stmts)
		}

		// February has no invoice yet: one lookup for the whole batch.
		stmts = storeLogged(t, st, log, thisMonth, february.Add(time.Hour), february.Add(2*time.Hour), thisMonth.Add(time.Hour))
		if got := naming(stmts, "invoices"); len(got) != 1 || !strings.HasPrefix(got[0], "SELECT") {
			t.Errorf("a batch with February's records asked %q of invoices, want one lookup", got)
		}
		if n := len(naming(stmts, "usage_records")); n != 1 {
			t.Errorf("%d statements about usage records, want the insert only: %q", n, stmts)
		}

		// Once February's invoice exists, its records are marked late.
		st.Client().Invoice.Create().SetTenantID(tenantA).SetNumber("TG-202602-a").SetPeriodStart(february).SetPeriodEnd(thisMonth).
			SetCurrency("USD").SetExchangeRateMicros(1_000_000).SetTotalMicros(0).SetTotalCurrencyMicros(0).SetRequests(0).ExecX(ctx)
		stmts = storeLogged(t, st, log, thisMonth, february.Add(3*time.Hour), thisMonth.Add(2*time.Hour))
		if got := naming(stmts, "invoices"); len(got) != 1 {
			t.Errorf("asked %q of invoices, want one lookup", got)
		}
		if got := naming(stmts, "usage_records"); len(got) != 2 || !strings.HasPrefix(got[1], "UPDATE") {
			t.Errorf("statements about usage records %q, want the insert and one update", got)
		}
		late := st.Client().UsageRecord.Query().Where(usagerecord.Late(true)).AllX(ctx)
		if len(late) != 1 || !late[0].CreatedAt.Equal(february.Add(3*time.Hour)) {
			t.Errorf("late records %v, want February's last one only", late)
		}
	})
}
