// Package ctl is tollgatectl, the operator's command line for Tollgate's admin
// gRPC API. The binary in cmd/tollgatectl only wires signals to Main, so every
// command can be driven from a test against an in-process gRPC server.
package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
)

// Exit codes. Scripts branch on them, so they are part of the interface.
const (
	exitOK    = 0
	exitError = 1 // the API refused the request, or the server could not be reached
	exitUsage = 2 // the command line itself is wrong
)

// Main runs tollgatectl with args (without the program name) and returns the
// process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return run(ctx, args, os.Stdin, stdout, stderr, time.Now)
}

// cli holds what one invocation needs: its streams, its clock, the global
// flags and, once a command needs it, the connection.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	now            func() time.Time

	server        string
	tokenFile     string
	output        string
	timeout       time.Duration
	useTLS        bool
	tlsCA         string
	tlsServerName string
	insecure      bool

	conn *grpc.ClientConn
	// tokenSource says where the token came from (a flag, a variable name or a
	// path, never the token) so that an Unauthenticated error can point at it.
	tokenSource string
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, now func() time.Time) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, now: now}
	defer c.close()

	root := c.rootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetIn(stdin)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	return c.report(cmd, err)
}

// usageError is a mistake in the command line. It exits 2 and shows the
// command's usage, like the errors cobra itself returns for unknown commands
// and flags.
type usageError struct {
	msg string
	// terse leaves out the usage text when the message alone says what to do
	// and a page of flags would bury it.
	terse bool
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error {
	return &usageError{msg: fmt.Sprintf(format, a...)}
}

// runtimeError marks an error that happened while running a well-formed
// command: the API said no, a file could not be read, the server was down.
// Errors cobra returns before a command runs never carry it, which is how
// report tells the two apart.
type runtimeError struct{ err error }

func (e *runtimeError) Error() string { return e.err.Error() }
func (e *runtimeError) Unwrap() error { return e.err }

// action adapts a command body to cobra, marking its errors as runtime errors
// unless the body said the command line was wrong.
func action(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		if err == nil {
			return nil
		}
		var ue *usageError
		if errors.As(err, &ue) {
			return err
		}
		return &runtimeError{err: err}
	}
}

func (c *cli) report(cmd *cobra.Command, err error) int {
	var re *runtimeError
	if errors.As(err, &re) {
		c.printError(re.err)
		return exitError
	}
	c.errorf("Error: %s\n", err)
	var ue *usageError
	if errors.As(err, &ue) && ue.terse {
		return exitUsage
	}
	if cmd != nil {
		c.errorf("\n%s", cmd.UsageString())
	}
	return exitUsage
}

// errorf writes to stderr. A failed write there has nowhere left to be
// reported, so its error is dropped here, once.
func (c *cli) errorf(format string, a ...any) {
	_, _ = fmt.Fprintf(c.stderr, format, a...)
}

func (c *cli) close() {
	if c.conn != nil {
		_ = c.conn.Close()
	}
}

// exactArgs wants exactly the named positional arguments, and says which one
// is missing rather than cobra's "accepts 1 arg(s), received 0".
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < len(names) {
			return usagef("missing %s", names[len(args)])
		}
		if len(args) > len(names) {
			return usagef("unexpected argument %q", args[len(names)])
		}
		return nil
	}
}

// resource makes the command for one resource. Its verbs are subcommands; the
// resource alone, or with an unknown verb, is a usage error (cobra would
// otherwise print help and exit 0, which hides typos in scripts).
func resource(name, plural, short string, verbs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:     name,
		Aliases: []string{plural},
		Short:   short,
		Args:    cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("missing verb for %s", name)
			}
			return usagef("unknown verb %q for %s", args[0], name)
		},
	}
	cmd.AddCommand(verbs...)
	return cmd
}
