package ctl

import (
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func TestBadRequestViolationsPrinted(t *testing.T) {
	f := newFakeServer(t)
	f.reply("CreateTenant", func(proto.Message) (proto.Message, error) {
		st, err := status.New(codes.InvalidArgument, "invalid tenant").WithDetails(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{
				{Field: "tenant.slug", Description: "must start with a letter"},
				{Field: "tenant.billing_email", Description: "is not an email address"},
			},
		})
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	})
	r := f.run(t, "tenant", "create", "9acme", "--billing-email", "nope")
	if r.code != exitError {
		t.Fatalf("exit %d, want 1: %v", r.code, r)
	}
	want := "Error: invalid tenant\n" +
		"  tenant.slug: must start with a letter\n" +
		"  tenant.billing_email: is not an email address\n"
	if r.stderr != want {
		t.Errorf("stderr =\n%s\nwant\n%s", r.stderr, want)
	}
	if r.stdout != "" {
		t.Errorf("stdout = %q, want nothing on error", r.stdout)
	}
}

func TestAPIErrorsExitOne(t *testing.T) {
	f := newFakeServer(t)
	f.reply("GetKey", func(proto.Message) (proto.Message, error) {
		return nil, status.Error(codes.NotFound, `key "k1" not found`)
	})
	r := f.run(t, "key", "get", "k1")
	if r.code != exitError || r.stderr != "Error: key \"k1\" not found\n" {
		t.Fatalf("want exit 1 with the status message: %v", r)
	}
}

// TestUsageErrors checks that command-line mistakes exit 2 with the usage
// text, and are caught before anything is sent to the server.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no resource", nil, "missing resource"},
		{"unknown resource", []string{"tenantz", "list"}, `unknown command "tenantz"`},
		{"no verb", []string{"tenant"}, "missing verb for tenant"},
		{"unknown verb", []string{"tenants", "frob"}, `unknown verb "frob" for tenant`},
		{"unknown flag", []string{"tenant", "list", "--frob"}, "unknown flag: --frob"},
		{"missing argument", []string{"tenant", "get"}, "missing SLUG|ID"},
		{"extra argument", []string{"tenant", "get", "a", "b"}, `unexpected argument "b"`},
		{"bad output format", []string{"-o", "yaml", "tenant", "list"}, `unknown output format "yaml"`},
		{"bad enum", []string{"tenant", "list", "--status", "deleted"}, "use one of active, restricted, suspended"},
		{"update with nothing to change", []string{"tenant", "update", "acme"}, "nothing to change"},
		{"required flag", []string{"account", "list"}, "--tenant is required"},
		{"key without name", []string{"key", "create", "--tenant", "acme"}, "--name is required"},
		{"bad expiry", []string{"key", "create", "--tenant", "acme", "--name", "n", "--expires", "tomorrow"}, "invalid time"},
		{"past expiry", []string{"key", "create", "--tenant", "acme", "--name", "n", "--expires", "2020-01-01T00:00:00Z"}, "in the past"},
		{"model without deployment", []string{"model", "create", "m"}, "at least one --deployment"},
		{"bad deployment", []string{"model", "create", "m", "--deployment", "provider=p"}, "provider and upstream are required"},
		{"zero weight", []string{"model", "create", "m", "--deployment", "provider=p,upstream=u,weight=0"}, "weight must be"},
		{"negative price", []string{"model", "create", "m", "--deployment", "provider=p,upstream=u", "--input-price", "-1"}, "must not be negative"},
		{"shell-mangled price", []string{"model", "create", "m", "--deployment", "provider=p,upstream=u", "--input-price", ".50"}, "quote dollar amounts"},
		{"price-effective alone", []string{"model", "update", "m", "--price-effective", "1h"}, "needs at least one of"},
		{"policy without target", []string{"policy", "get"}, "give --tenant or --key"},
		{"policy with two targets", []string{"policy", "get", "--tenant", "a", "--key", "k"}, "not both"},
		{"policy set with no settings", []string{"policy", "set", "--tenant", "a"}, "nothing to change"},
		{"two budgets for a period", []string{"policy", "set", "--tenant", "a", "--budget", "day:hard=1", "--budget", "day:soft=2"}, "two budgets for day"},
		{"bad budget", []string{"policy", "set", "--tenant", "a", "--budget", "week:hard=1"}, `unknown period "week"`},
		{"bad optional int", []string{"policy", "set", "--tenant", "a", "--rpm", "-5"}, "non-negative integer or none"},
		{"negative days", []string{"policy", "set", "--tenant", "a", "--retention-days", "-1"}, "must not be negative"},
		{"bad provider kind", []string{"provider", "create", "--name", "x", "--kind", "bedrock", "--base-url", "https://x"}, "unknown value \"bedrock\""},
		{"until before since", []string{"audit", "list", "--since", "1h", "--until", "2h"}, "--until must be after --since"},
		{"negative limit", []string{"keys", "list", "--limit", "-1"}, "--limit must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			r := f.run(t, tt.args...)
			if r.code != exitUsage {
				t.Fatalf("exit %d, want %d: %v", r.code, exitUsage, r)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, r.stderr)
			}
			if !strings.Contains(r.stderr, "Usage:") {
				t.Errorf("stderr lacks the usage text:\n%s", r.stderr)
			}
			if calls := f.recorded(); len(calls) != 0 {
				t.Errorf("a usage error still called %v", methods(calls))
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	cleanEnv(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"help"}, "Available Commands:"},
		{[]string{"help", "policy", "set"}, "--budget"},
		{[]string{"tenant", "create", "--help"}, "Examples:"},
		{[]string{"model", "create", "-h"}, "--deployment provider=ID1,upstream=claude-sonnet-4-5"},
		{[]string{"version"}, "tollgatectl "},
	} {
		r := runCLI(t, "", tt.args...)
		if r.code != exitOK || !strings.Contains(r.stdout, tt.want) {
			t.Errorf("tollgatectl %v: want exit 0 and %q on stdout: %v", tt.args, tt.want, r)
		}
	}
}
