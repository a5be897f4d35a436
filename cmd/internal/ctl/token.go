package ctl

import (
	"context"

	"github.com/spf13/cobra"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

func (c *cli) tokenCmd() *cobra.Command {
	return resource("token", "tokens", "Manage tenant admin tokens for the admin API",
		c.tokenList(), c.tokenCreate(), c.tokenRevoke())
}

func (c *cli) adminTokens() (adminv1.TokenServiceClient, error) {
	conn, err := c.connect()
	if err != nil {
		return nil, err
	}
	return adminv1.NewTokenServiceClient(conn), nil
}

func tokenTable(t *table, tokens ...*adminv1.AdminToken) {
	t.row("ID", "TENANT", "NAME", "PREFIX", "EXPIRES", "REVOKED", "CREATED")
	for _, x := range tokens {
		t.row(x.GetId(), x.GetTenantId(), x.GetName(), x.GetPrefix(),
			timestamp(x.GetExpireTime()), timestamp(x.GetRevokeTime()), timestamp(x.GetCreateTime()))
	}
}

func (c *cli) tokenList() *cobra.Command {
	var tenant string
	var includeRevoked bool
	var limit int
	cmd := &cobra.Command{
		Use:     "list --tenant T",
		Short:   "List a tenant's admin tokens",
		Example: `  tollgatectl tokens list --tenant acme --include-revoked`,
		Args:    exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			if tenant == "" {
				return usagef("--tenant is required")
			}
			client, err := c.adminTokens()
			if err != nil {
				return err
			}
			req := &adminv1.ListAdminTokensRequest{Tenant: tenant, IncludeRevoked: includeRevoked}
			all, err := collect(cmd.Context(), limit, func(ctx context.Context, size int32, token string) ([]*adminv1.AdminToken, string, error) {
				req.PageSize, req.PageToken = size, token
				resp, err := client.ListAdminTokens(ctx, req)
				return resp.GetAdminTokens(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			return c.print(&adminv1.ListAdminTokensResponse{AdminTokens: all}, func(t *table) { tokenTable(t, all...) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant", "", "the tenant's slug or id (required)")
	f.BoolVar(&includeRevoked, "include-revoked", false, "include revoked tokens")
	limitFlag(f, &limit)
	return cmd
}

func (c *cli) tokenCreate() *cobra.Command {
	var tenant, expires string
	token := &adminv1.AdminToken{}
	cmd := &cobra.Command{
		Use:   "create --tenant T --name N",
		Short: "Create a tenant admin token and print its secret once",
		Long: `Create an admin-API token that can see and change only one tenant. Its secret
is printed once and cannot be retrieved again. Hand it to the tenant's
administrator; they use it with tollgatectl --token-file.`,
		Example: `  tollgatectl token create --tenant acme --name acme-ops --expires 90d`,
		Args:    exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			if tenant == "" {
				return usagef("--tenant is required")
			}
			if token.Name == "" {
				return usagef("--name is required")
			}
			if cmd.Flags().Changed("expires") {
				var err error
				if token.ExpireTime, err = expiry("expires", expires, c.now()); err != nil {
					return err
				}
			}
			client, err := c.adminTokens()
			if err != nil {
				return err
			}
			resp, err := client.CreateAdminToken(cmd.Context(), &adminv1.CreateAdminTokenRequest{Tenant: tenant, AdminToken: token})
			if err != nil {
				return err
			}
			return c.printSecret(resp, resp.GetSecret(), func(t *table) { tokenTable(t, resp.GetAdminToken()) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant", "", "the tenant's slug or id (required)")
	f.StringVar(&token.Name, "name", "", "a name to recognise the token by (required)")
	f.StringVar(&expires, "expires", "", "when the token stops working: RFC 3339 time or a duration from now (720h, 30d)")
	return cmd
}

func (c *cli) tokenRevoke() *cobra.Command {
	return &cobra.Command{
		Use:     "revoke ID",
		Short:   "Stop an admin token from working, for good",
		Example: `  tollgatectl token revoke 7d2f3c4b-1a2b-4c3d-8e9f-0a1b2c3d4e5f`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.adminTokens()
			if err != nil {
				return err
			}
			resp, err := client.RevokeAdminToken(cmd.Context(), &adminv1.RevokeAdminTokenRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { tokenTable(t, resp.GetAdminToken()) })
		}),
	}
}
