package tollgatecmd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tollgate-dev/tollgate/controlplane/store"
)

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("tollgate migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dsn := fs.String("database", os.Getenv("TOLLGATE_DATABASE"), "database DSN: postgres://…, cockroachdb://… or sqlite:///path (env TOLLGATE_DATABASE)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dsn == "" {
		return fmt.Errorf("%w: --database (or TOLLGATE_DATABASE) is required", errUsage)
	}
	st, err := store.Open(ctx, *dsn)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	start := time.Now()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	// The schema is migrated whether or not this line gets written.
	_, _ = fmt.Fprintf(stdout, "schema is up to date (%s, %s)\n", st.Dialect(), time.Since(start).Round(time.Millisecond))
	return nil
}
