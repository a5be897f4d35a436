package ctl

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

func (c *cli) billingCmd() *cobra.Command {
	return resource("billing", "billings", "Read, export and settle monthly invoices",
		c.billingList(), c.billingGet(),
		c.billingTransition("issue", adminv1.InvoiceStatus_INVOICE_STATUS_ISSUED, "Issue a draft invoice (operator only)"),
		c.billingTransition("pay", adminv1.InvoiceStatus_INVOICE_STATUS_PAID, "Mark an issued invoice paid (operator only)"),
		c.billingTransition("void", adminv1.InvoiceStatus_INVOICE_STATUS_VOID, "Void a draft or issued invoice (operator only)"),
		c.billingExport(), c.billingVerify())
}

var invoiceStatuses = map[string]adminv1.InvoiceStatus{
	"draft":  adminv1.InvoiceStatus_INVOICE_STATUS_DRAFT,
	"issued": adminv1.InvoiceStatus_INVOICE_STATUS_ISSUED,
	"paid":   adminv1.InvoiceStatus_INVOICE_STATUS_PAID,
	"void":   adminv1.InvoiceStatus_INVOICE_STATUS_VOID,
}

// money prints micro-units of a currency with all six decimals: USD as
// dollars ($1.500000), others with their code (EUR 1.380000).
func money(micros int64, currency string) string {
	if currency == "" || currency == "USD" {
		return dollars(micros)
	}
	d := dollars(micros)
	if d[0] == '-' {
		return currency + " -" + d[2:]
	}
	return currency + " " + d[1:]
}

func month(inv *adminv1.Invoice) string {
	return inv.GetPeriodStartTime().AsTime().UTC().Format("2006-01")
}

func invoiceTable(t *table, invs ...*adminv1.Invoice) {
	t.row("ID", "NUMBER", "TENANT", "MONTH", "STATUS", "REQUESTS", "TOTAL", "TOTAL_IN_CURRENCY", "ISSUED")
	for _, inv := range invs {
		t.row(inv.GetId(), inv.GetNumber(), inv.GetTenantId(), month(inv), enumName(inv.GetStatus(), "INVOICE_STATUS_"),
			itoa(inv.GetRequests()), dollars(inv.GetTotalMicros()), money(inv.GetTotalCurrencyMicros(), inv.GetCurrency()),
			timestamp(inv.GetIssueTime()))
	}
}

// invoiceDetail is an invoice with its lines, as an invoice reads.
func invoiceDetail(t *table, inv *adminv1.Invoice) {
	invoiceTable(t, inv)
	t.row()
	t.row("USAGE_MONTH", "MODEL", "KIND", "PRICE_FROM", "UNIT_PRICE/MTOK", "QUANTITY", "AMOUNT", "AMOUNT_IN_CURRENCY")
	for _, l := range inv.GetLines() {
		from := "-"
		if l.GetPriceEffectiveTime() != nil {
			from = timestamp(l.GetPriceEffectiveTime())
		}
		// Late records of an earlier month, billed on this invoice.
		usageMonth := month(inv)
		if p := l.GetServicePeriodStartTime(); p != nil {
			usageMonth = p.AsTime().UTC().Format("2006-01") + " (prior period)"
		}
		t.row(usageMonth, l.GetModel(), enumName(l.GetKind(), "INVOICE_LINE_KIND_"), from, dollars(l.GetUnitPriceMicrosPerMtok()),
			itoa(l.GetQuantity()), dollars(l.GetAmountMicros()), money(l.GetAmountCurrencyMicros(), inv.GetCurrency()))
	}
	t.row("TOTAL", "", "", "", "", "", dollars(inv.GetTotalMicros()), money(inv.GetTotalCurrencyMicros(), inv.GetCurrency()))
}

func (c *cli) billing() (adminv1.BillingServiceClient, error) {
	conn, err := c.connect()
	if err != nil {
		return nil, err
	}
	return adminv1.NewBillingServiceClient(conn), nil
}

func (c *cli) billingList() *cobra.Command {
	var (
		statusFlag string
		limit      int
	)
	req := &adminv1.ListInvoicesRequest{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List invoices, newest month first",
		Long: `List invoices, newest month first. The control plane makes one per tenant and
calendar month (UTC) from the month's usage records, a day after the month ends.`,
		Example: `  tollgatectl billing list --tenant acme
  tollgatectl billing list --status draft -o json`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("status") {
				st, err := parseEnum("status", statusFlag, invoiceStatuses)
				if err != nil {
					return err
				}
				req.Status = st
			}
			client, err := c.billing()
			if err != nil {
				return err
			}
			all, err := collect(cmd.Context(), limit, func(ctx context.Context, size int32, token string) ([]*adminv1.Invoice, string, error) {
				req.PageSize, req.PageToken = size, token
				resp, err := client.ListInvoices(ctx, req)
				return resp.GetInvoices(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			return c.print(&adminv1.ListInvoicesResponse{Invoices: all}, func(t *table) { invoiceTable(t, all...) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.Tenant, "tenant", "", "only this tenant's invoices (slug or id)")
	f.StringVar(&statusFlag, "status", "", "only invoices in this status: draft, issued, paid or void")
	f.IntVar(&limit, "limit", 0, "stop after this many invoices (0 means all)")
	return cmd
}

func (c *cli) billingGet() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show an invoice with its lines",
		Long: `Show an invoice and its lines: per model, the input, cached input and output
tokens at each price in force during the month, and an adjustment that makes
the lines add up to what the requests were charged. Usage records that reached
the control plane after their month's invoice was made follow as prior-period
lines of their own month (USAGE_MONTH "2026-03 (prior period)").`,
		Example: `  tollgatectl billing get 3f0c9a52-1b7e-4d55-9a0e-6c1d2b3a4f5e`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.billing()
			if err != nil {
				return err
			}
			resp, err := client.GetInvoice(cmd.Context(), &adminv1.GetInvoiceRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { invoiceDetail(t, resp.GetInvoice()) })
		}),
	}
}

func (c *cli) billingTransition(verb string, to adminv1.InvoiceStatus, short string) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Long: short + `. Invoices go draft → issued → paid, and a draft or
issued invoice may be voided; nothing else.`,
		Example: fmt.Sprintf("  tollgatectl billing %s 3f0c9a52-1b7e-4d55-9a0e-6c1d2b3a4f5e", verb),
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.billing()
			if err != nil {
				return err
			}
			resp, err := client.TransitionInvoice(cmd.Context(), &adminv1.TransitionInvoiceRequest{Id: args[0], Status: to})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { invoiceTable(t, resp.GetInvoice()) })
		}),
	}
}

var invoiceFormats = map[string]adminv1.InvoiceFormat{
	"json": adminv1.InvoiceFormat_INVOICE_FORMAT_JSON,
	"csv":  adminv1.InvoiceFormat_INVOICE_FORMAT_CSV,
}

func (c *cli) billingExport() *cobra.Command {
	var format, out string
	cmd := &cobra.Command{
		Use:   "export ID",
		Short: "Write an invoice as JSON or CSV",
		Long: `Write an invoice as JSON (the Invoice message with its lines) or CSV (a row per
line and a total row, amounts in dollars and in the invoice's currency) to
standard output, or to the file --out names.`,
		Example: `  tollgatectl billing export 3f0c9a52-1b7e-4d55-9a0e-6c1d2b3a4f5e --format csv > march.csv
  tollgatectl billing export 3f0c9a52-1b7e-4d55-9a0e-6c1d2b3a4f5e --format json --out march.json`,
		Args: exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			f, err := parseEnum("format", format, invoiceFormats)
			if err != nil {
				return err
			}
			client, err := c.billing()
			if err != nil {
				return err
			}
			resp, err := client.ExportInvoice(cmd.Context(), &adminv1.ExportInvoiceRequest{Id: args[0], Format: f})
			if err != nil {
				return err
			}
			if out != "" {
				if err := os.WriteFile(out, resp.GetContent(), 0o600); err != nil {
					return fmt.Errorf("writing the invoice: %w", err)
				}
				return nil
			}
			_, err = c.stdout.Write(resp.GetContent())
			return err
		}),
	}
	cmd.Flags().StringVar(&format, "format", "csv", "csv or json")
	cmd.Flags().StringVar(&out, "out", "", "write to this file (mode 0600: invoices name people) instead of standard output")
	return cmd
}

func (c *cli) billingVerify() *cobra.Command {
	return &cobra.Command{
		Use:   "verify ID",
		Short: "Recompute an invoice from the usage records and compare",
		Long: `Recompute an invoice from the raw usage records it bills (its month's, and the
late records of earlier months it bills as prior-period usage) and the price
history, and list every difference. Exits 0 either way; the MATCHES column (or
"matches" in JSON) says whether the invoice still adds up. Records that arrive
after an invoice was made do not change it: they are billed by the tenant's
next invoice, and PENDING_LATE counts those still waiting.`,
		Example: `  tollgatectl billing verify 3f0c9a52-1b7e-4d55-9a0e-6c1d2b3a4f5e`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.billing()
			if err != nil {
				return err
			}
			resp, err := client.VerifyInvoice(cmd.Context(), &adminv1.VerifyInvoiceRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) {
				t.row("MATCHES", "RECOMPUTED_TOTAL", "RECOMPUTED_REQUESTS", "PENDING_LATE")
				t.row(fmt.Sprint(resp.GetMatches()), dollars(resp.GetRecomputedTotalMicros()), itoa(resp.GetRecomputedRequests()),
					itoa(resp.GetPendingLateRequests()))
				for _, d := range resp.GetDifferences() {
					t.row("difference:", d)
				}
			})
		}),
	}
}
