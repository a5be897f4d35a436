package ctl

import (
	"context"
	"strings"

	"github.com/spf13/cobra"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

var accountRoles = map[string]adminv1.AccountRole{
	"owner":  adminv1.AccountRole_ACCOUNT_ROLE_OWNER,
	"admin":  adminv1.AccountRole_ACCOUNT_ROLE_ADMIN,
	"member": adminv1.AccountRole_ACCOUNT_ROLE_MEMBER,
	"viewer": adminv1.AccountRole_ACCOUNT_ROLE_VIEWER,
}

func (c *cli) accountCmd() *cobra.Command {
	return resource("account", "accounts", "Manage the people of a tenant",
		c.accountList(), c.accountGet(), c.accountCreate(), c.accountUpdate(), c.accountDelete(), c.accountPasswordLink())
}

func (c *cli) accounts() (adminv1.AccountServiceClient, error) {
	conn, err := c.connect()
	if err != nil {
		return nil, err
	}
	return adminv1.NewAccountServiceClient(conn), nil
}

func accountTable(t *table, accounts ...*adminv1.Account) {
	t.row("ID", "TENANT", "EMAIL", "NAME", "ROLE", "CREATED")
	for _, a := range accounts {
		t.row(a.GetId(), a.GetTenantId(), a.GetEmail(), a.GetName(),
			enumName(a.GetRole(), "ACCOUNT_ROLE_"), timestamp(a.GetCreateTime()))
	}
}

func (c *cli) accountList() *cobra.Command {
	var tenant string
	var limit int
	cmd := &cobra.Command{
		Use:     "list --tenant T",
		Short:   "List a tenant's accounts",
		Example: `  tollgatectl accounts list --tenant acme`,
		Args:    exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			if tenant == "" {
				return usagef("--tenant is required")
			}
			client, err := c.accounts()
			if err != nil {
				return err
			}
			req := &adminv1.ListAccountsRequest{Tenant: tenant}
			all, err := collect(cmd.Context(), limit, func(ctx context.Context, size int32, token string) ([]*adminv1.Account, string, error) {
				req.PageSize, req.PageToken = size, token
				resp, err := client.ListAccounts(ctx, req)
				return resp.GetAccounts(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			return c.print(&adminv1.ListAccountsResponse{Accounts: all}, func(t *table) { accountTable(t, all...) })
		}),
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "the tenant's slug or id (required)")
	limitFlag(cmd.Flags(), &limit)
	return cmd
}

func (c *cli) accountGet() *cobra.Command {
	return &cobra.Command{
		Use:     "get ID",
		Short:   "Show one account",
		Example: `  tollgatectl account get 0b5c9a5e-2f4e-4c55-8a43-3f0f7b1f4b2a`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.accounts()
			if err != nil {
				return err
			}
			resp, err := client.GetAccount(cmd.Context(), &adminv1.GetAccountRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { accountTable(t, resp.GetAccount()) })
		}),
	}
}

func (c *cli) accountCreate() *cobra.Command {
	var tenant, role string
	account := &adminv1.Account{}
	cmd := &cobra.Command{
		Use:     "create --tenant T --email E",
		Short:   "Add a person to a tenant",
		Example: `  tollgatectl account create --tenant acme --email ada@acme.example --name "Ada" --role admin`,
		Args:    exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			if tenant == "" {
				return usagef("--tenant is required")
			}
			if account.Email == "" {
				return usagef("--email is required")
			}
			if cmd.Flags().Changed("role") {
				var err error
				if account.Role, err = parseEnum("role", role, accountRoles); err != nil {
					return err
				}
			}
			client, err := c.accounts()
			if err != nil {
				return err
			}
			resp, err := client.CreateAccount(cmd.Context(), &adminv1.CreateAccountRequest{Tenant: tenant, Account: account})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { accountTable(t, resp.GetAccount()) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant", "", "the tenant's slug or id (required)")
	f.StringVar(&account.Email, "email", "", "the person's email, unique within the tenant (required)")
	f.StringVar(&account.Name, "name", "", "the person's name")
	f.StringVar(&role, "role", "", "owner, admin, member or viewer (default member)")
	return cmd
}

func (c *cli) accountUpdate() *cobra.Command {
	var role string
	account := &adminv1.Account{}
	cmd := &cobra.Command{
		Use:     "update ID",
		Short:   "Change an account",
		Long:    `Change an account. Only the flags given are changed.`,
		Example: `  tollgatectl account update 0b5c9a5e-2f4e-4c55-8a43-3f0f7b1f4b2a --role viewer`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			mask, err := updateMask(cmd.Flags(), []flagPath{
				{"email", "email"},
				{"name", "name"},
				{"role", "role"},
			})
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("role") {
				if account.Role, err = parseEnum("role", role, accountRoles); err != nil {
					return err
				}
			}
			account.Id = args[0]
			client, err := c.accounts()
			if err != nil {
				return err
			}
			resp, err := client.UpdateAccount(cmd.Context(), &adminv1.UpdateAccountRequest{Account: account, UpdateMask: mask})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { accountTable(t, resp.GetAccount()) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&account.Email, "email", "", "the person's email")
	f.StringVar(&account.Name, "name", "", "the person's name")
	f.StringVar(&role, "role", "", "owner, admin, member or viewer")
	return cmd
}

func (c *cli) accountDelete() *cobra.Command {
	return &cobra.Command{
		Use:     "delete ID",
		Short:   "Remove a person from a tenant",
		Example: `  tollgatectl account delete 0b5c9a5e-2f4e-4c55-8a43-3f0f7b1f4b2a`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.accounts()
			if err != nil {
				return err
			}
			resp, err := client.DeleteAccount(cmd.Context(), &adminv1.DeleteAccountRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.printDeleted(resp, "account", args[0])
		}),
	}
}

func (c *cli) accountPasswordLink() *cobra.Command {
	var console string
	cmd := &cobra.Command{
		Use:   "password-link ID",
		Short: "Make a link that sets an account's web console password",
		Long: `Make a single-use link, valid for an hour, that sets the account's password in
the web console (docs/dashboard.md): for a new account, or a forgotten
password. Give it to the account's owner only: whoever holds it can sign in
as the account. Only an owner may make one for an owner.`,
		Example: `  tollgatectl account password-link 0b7e… --console https://console.example.com`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.accounts()
			if err != nil {
				return err
			}
			resp, err := client.CreatePasswordLink(cmd.Context(), &adminv1.CreatePasswordLinkRequest{Id: args[0]})
			if err != nil {
				return err
			}
			link := strings.TrimSuffix(console, "/") + "/signin/password?token=" + resp.GetSecret()
			return c.printSecret(resp, resp.GetSecret(), func(t *table) {
				t.row("LINK", "EXPIRES")
				t.row(link, timestamp(resp.GetExpireTime()))
			})
		}),
	}
	cmd.Flags().StringVar(&console, "console", "http://127.0.0.1:7080", "the web console's address, to print the whole link")
	return cmd
}
