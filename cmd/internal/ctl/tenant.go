package ctl

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

var tenantStatuses = map[string]adminv1.TenantStatus{
	"active":     adminv1.TenantStatus_TENANT_STATUS_ACTIVE,
	"suspended":  adminv1.TenantStatus_TENANT_STATUS_SUSPENDED,
	"restricted": adminv1.TenantStatus_TENANT_STATUS_RESTRICTED,
}

func (c *cli) tenantCmd() *cobra.Command {
	return resource("tenant", "tenants", "Manage tenants",
		c.tenantList(), c.tenantGet(), c.tenantCreate(), c.tenantUpdate(), c.tenantDelete())
}

func (c *cli) tenants() (adminv1.TenantServiceClient, error) {
	conn, err := c.connect()
	if err != nil {
		return nil, err
	}
	return adminv1.NewTenantServiceClient(conn), nil
}

func tenantTable(t *table, tenants ...*adminv1.Tenant) {
	t.row("ID", "SLUG", "NAME", "STATUS", "PLAN", "CURRENCY", "BILLING_EMAIL", "BILLING_REFERENCE", "BUDGET_ALERT", "CREATED")
	for _, x := range tenants {
		alert := "-"
		if x.GetBudgetAlert() != "" {
			alert = timestamp(x.GetBudgetAlertTime()) + " " + x.GetBudgetAlert()
		}
		t.row(x.GetId(), x.GetSlug(), x.GetName(), enumName(x.GetStatus(), "TENANT_STATUS_"),
			x.GetPlan(), x.GetCurrency(), x.GetBillingEmail(), x.GetBillingReference(), alert, timestamp(x.GetCreateTime()))
	}
}

func (c *cli) tenantList() *cobra.Command {
	var statusFlag string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tenants",
		Example: `  tollgatectl tenants list
  tollgatectl tenants list --status suspended -o json`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			req := &adminv1.ListTenantsRequest{}
			if cmd.Flags().Changed("status") {
				s, err := parseEnum("status", statusFlag, tenantStatuses)
				if err != nil {
					return err
				}
				req.Status = s
			}
			client, err := c.tenants()
			if err != nil {
				return err
			}
			all, err := collect(cmd.Context(), limit, func(ctx context.Context, size int32, token string) ([]*adminv1.Tenant, string, error) {
				req.PageSize, req.PageToken = size, token
				resp, err := client.ListTenants(ctx, req)
				return resp.GetTenants(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			return c.print(&adminv1.ListTenantsResponse{Tenants: all}, func(t *table) { tenantTable(t, all...) })
		}),
	}
	cmd.Flags().StringVar(&statusFlag, "status", "", "only tenants with this status: active, suspended or restricted")
	limitFlag(cmd.Flags(), &limit)
	return cmd
}

func (c *cli) tenantGet() *cobra.Command {
	return &cobra.Command{
		Use:     "get SLUG|ID",
		Short:   "Show one tenant",
		Example: `  tollgatectl tenant get acme`,
		Args:    exactArgs("SLUG|ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.tenants()
			if err != nil {
				return err
			}
			resp, err := client.GetTenant(cmd.Context(), &adminv1.GetTenantRequest{Tenant: args[0]})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { tenantTable(t, resp.GetTenant()) })
		}),
	}
}

func (c *cli) tenantCreate() *cobra.Command {
	tenant := &adminv1.Tenant{}
	cmd := &cobra.Command{
		Use:   "create SLUG",
		Short: "Create a tenant (operator only)",
		Long: `Create a tenant. SLUG is its permanent short name: lower-case letters, digits
and hyphens, starting with a letter. The tenant starts active.`,
		Example: `  tollgatectl tenant create acme --name "Acme Corp" --billing-email billing@acme.example --plan pro`,
		Args:    exactArgs("SLUG"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			tenant.Slug = args[0]
			client, err := c.tenants()
			if err != nil {
				return err
			}
			resp, err := client.CreateTenant(cmd.Context(), &adminv1.CreateTenantRequest{Tenant: tenant})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { tenantTable(t, resp.GetTenant()) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&tenant.Name, "name", "", "display name (default: the slug)")
	f.StringVar(&tenant.BillingEmail, "billing-email", "", "where invoices go")
	f.StringVar(&tenant.BillingReference, "billing-reference", "", "the tenant's reference in your billing system")
	f.StringVar(&tenant.Plan, "plan", "", "plan name, for your own records")
	f.StringVar(&tenant.Currency, "currency", "", "ISO 4217 code invoices are rendered in (default USD; needs the control plane's --exchange-rate for it)")
	return cmd
}

func (c *cli) tenantUpdate() *cobra.Command {
	tenant := &adminv1.Tenant{}
	var statusFlag string
	cmd := &cobra.Command{
		Use:   "update SLUG|ID",
		Short: "Change a tenant",
		Long: `Change a tenant. Only the flags given are changed; --status and --currency may
be changed by the operator only. A suspended or restricted tenant's requests are refused.`,
		Example: `  tollgatectl tenant update acme --status suspended
  tollgatectl tenant update acme --plan enterprise --billing-email ap@acme.example`,
		Args: exactArgs("SLUG|ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			mask, err := updateMask(cmd.Flags(), []flagPath{
				{"name", "name"},
				{"status", "status"},
				{"billing-email", "billing_email"},
				{"billing-reference", "billing_reference"},
				{"plan", "plan"},
				{"currency", "currency"},
			})
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("status") {
				if tenant.Status, err = parseEnum("status", statusFlag, tenantStatuses); err != nil {
					return err
				}
			}
			if isUUID(args[0]) {
				tenant.Id = args[0]
			} else {
				tenant.Slug = args[0]
			}
			client, err := c.tenants()
			if err != nil {
				return err
			}
			resp, err := client.UpdateTenant(cmd.Context(), &adminv1.UpdateTenantRequest{Tenant: tenant, UpdateMask: mask})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { tenantTable(t, resp.GetTenant()) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&tenant.Name, "name", "", "display name")
	f.StringVar(&statusFlag, "status", "", "active, suspended or restricted")
	f.StringVar(&tenant.BillingEmail, "billing-email", "", "where invoices go")
	f.StringVar(&tenant.BillingReference, "billing-reference", "", "the tenant's reference in your billing system")
	f.StringVar(&tenant.Plan, "plan", "", "plan name")
	f.StringVar(&tenant.Currency, "currency", "", "ISO 4217 code invoices are rendered in (operator only)")
	return cmd
}

func (c *cli) tenantDelete() *cobra.Command {
	return &cobra.Command{
		Use:   "delete SLUG|ID",
		Short: "Delete a tenant and everything it owns (operator only)",
		Long: `Delete a tenant. Its accounts, keys, admin tokens, policies and its own
providers and models are deleted with it; usage records and audit events are
kept.`,
		Example: `  tollgatectl tenant delete acme`,
		Args:    exactArgs("SLUG|ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.tenants()
			if err != nil {
				return err
			}
			resp, err := client.DeleteTenant(cmd.Context(), &adminv1.DeleteTenantRequest{Tenant: args[0]})
			if err != nil {
				return err
			}
			return c.printDeleted(resp, "tenant", args[0])
		}),
	}
}

// tenantID turns a slug into an id for the few messages that take only an id
// (a provider's or model's owner), asking the API; an id passes through.
func (c *cli) tenantID(ctx context.Context, tenant string) (string, error) {
	if tenant == "" || isUUID(tenant) {
		return tenant, nil
	}
	client, err := c.tenants()
	if err != nil {
		return "", err
	}
	resp, err := client.GetTenant(ctx, &adminv1.GetTenantRequest{Tenant: tenant})
	if err != nil {
		return "", fmt.Errorf("look up tenant %q: %w", tenant, err)
	}
	return resp.GetTenant().GetId(), nil
}
