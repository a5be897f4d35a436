package ctl

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Version is set at link time:
//
//	go build -ldflags "-X github.com/tollgate-dev/tollgate/cmd/internal/ctl.Version=v0.1.0"
//
// Without it, the module version from the build info is used.
var Version = ""

const defaultServer = "127.0.0.1:7070"

const rootLong = `tollgatectl manages a Tollgate gateway through its admin gRPC API.

Commands take the form

  tollgatectl [global flags] <resource> <verb> [arguments] [flags]

where every resource may be named in the singular or the plural (tenant or
tenants). The server is --server, else $TOLLGATE_SERVER, else ` + defaultServer + `.

The token is read from --token-file, else $TOLLGATE_TOKEN (the token itself),
else the file named by $TOLLGATE_TOKEN_FILE, else the operator-token file that
` + "`tollgate dev`" + ` writes to its data directory. It is sent only as gRPC
metadata and never printed.

With $TRACEPARENT (and $TRACESTATE) set to a W3C trace context, every call
carries it, and the admin API's spans of the calls join that trace.

Output is a table by default. With -o json each command prints one JSON
document: the API's response message in protobuf's JSON mapping. A list verb
follows every next_page_token and prints one List…Response holding all the
items, with nextPageToken left empty.

Exit status is 0 on success, 1 when the API refuses the request or cannot be
reached, and 2 when the command line is wrong.`

const rootExample = `  # Create a tenant and a key for it, on a local ` + "`tollgate dev`" + `
  tollgatectl tenant create acme --name "Acme Corp" --plan pro
  tollgatectl key create --tenant acme --name ci --expires 720h

  # Talk to a remote gateway over TLS
  tollgatectl --server admin.example.com:443 --tls --token-file ~/.tollgate-token tenants list

  # Script against JSON output
  tollgatectl tenants list -o json | jq -r '.tenants[].slug'`

func (c *cli) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "tollgatectl",
		Short:         "Operate a Tollgate AI gateway",
		Long:          rootLong,
		Example:       rootExample,
		SilenceErrors: true,
		SilenceUsage:  true,
		// A bare `tollgatectl` is a usage error rather than help with exit 0,
		// so a script with an empty variable in the resource position fails.
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("missing resource")
		},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			switch c.output {
			case "table", "json":
				return nil
			}
			return usagef("unknown output format %q: use table or json", c.output)
		},
	}
	// The default template shows "tollgatectl [flags]" for any runnable
	// command; ours only run to report a missing verb, so show just the
	// subcommand line for them.
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(),
		"{{if .Runnable}}", "{{if and .Runnable (not .HasAvailableSubCommands)}}", 1))

	f := root.PersistentFlags()
	f.StringVar(&c.server, "server", "", "admin API address (default $TOLLGATE_SERVER, else "+defaultServer+")")
	f.StringVar(&c.tokenFile, "token-file", "", "file holding the admin token (see above for the other sources)")
	f.StringVarP(&c.output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&c.timeout, "timeout", 30*time.Second, "deadline for each API call")
	f.BoolVar(&c.useTLS, "tls", false, "connect with TLS, verifying the server against the system roots")
	f.StringVar(&c.tlsCA, "tls-ca", "", "connect with TLS, verifying the server against the CA certificates in this PEM file")
	f.StringVar(&c.tlsServerName, "tls-server-name", "", "connect with TLS, expecting this name in the server's certificate")
	f.BoolVar(&c.insecure, "insecure", false, "allow sending the token without TLS to a server that is not on this machine")

	root.AddCommand(
		c.tenantCmd(),
		c.accountCmd(),
		c.keyCmd(),
		c.tokenCmd(),
		c.providerCmd(),
		c.modelCmd(),
		c.policyCmd(),
		c.auditCmd(),
		c.usageCmd(),
		c.notificationCmd(),
		c.billingCmd(),
		c.privacyCmd(),
		c.statusCmd(),
		c.versionCmd(),
	)
	return root
}

func (c *cli) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print tollgatectl's version",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintf(c.stdout, "tollgatectl %s %s %s/%s\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
