package ctl

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

func (c *cli) privacyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "privacy",
		Short: "Export, correct, erase or restrict a tenant's or an account's data",
		Long: `The data subject's rights, for a whole tenant (--tenant) or one of its
accounts (--tenant and --account). See docs/privacy.md.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("missing verb: export, correct, erase, restrict or unrestrict")
		},
	}
	cmd.AddCommand(c.privacyExport(), c.privacyCorrect(), c.privacyErase(), c.privacyRestrict(true), c.privacyRestrict(false))
	return cmd
}

func (c *cli) privacyClient() (adminv1.PrivacyServiceClient, error) {
	conn, err := c.connect()
	if err != nil {
		return nil, err
	}
	return adminv1.NewPrivacyServiceClient(conn), nil
}

// subjectFlags adds --tenant and --account.
func subjectFlags(cmd *cobra.Command, s *adminv1.PrivacySubject) {
	cmd.Flags().StringVar(&s.Tenant, "tenant", "", "the tenant's slug or id (required)")
	cmd.Flags().StringVar(&s.AccountId, "account", "", "one account of the tenant (its id); without it, the whole tenant")
}

func checkSubject(s *adminv1.PrivacySubject) error {
	if s.GetTenant() == "" {
		return usagef("--tenant is required")
	}
	return nil
}

func (c *cli) privacyExport() *cobra.Command {
	subj := &adminv1.PrivacySubject{}
	var file string
	cmd := &cobra.Command{
		Use:   "export --tenant T [--account ID] --file F",
		Short: "Write everything held about a tenant or an account to a file",
		Long: `Write everything the gateway holds about a tenant or one account to a file,
as NDJSON: one {"section": "<table>", "record": {...}} per line, kept request
content decrypted. The export streams, so a large tenant needs no memory
here either. The file is created with mode 0600 (it holds personal data),
and appears only once complete. --file - writes to standard output.`,
		Example: `  tollgatectl privacy export --tenant acme --file acme-export.ndjson
  tollgatectl privacy export --tenant acme --account 0b5c9a5e-2f4e-4c55-8a43-3f0f7b1f4b2a --file - | jq -c 'select(.section=="usage_records")'`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			if err := checkSubject(subj); err != nil {
				return err
			}
			if file == "" {
				return usagef("--file is required (- for standard output)")
			}
			client, err := c.privacyClient()
			if err != nil {
				return err
			}
			stream, err := client.ExportData(cmd.Context(), &adminv1.ExportDataRequest{Subject: subj})
			if err != nil {
				return err
			}
			out := c.stdout
			var tmp *os.File
			if file != "-" {
				tmp, err = os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
				if err != nil {
					return err
				}
				defer func() { _ = os.Remove(tmp.Name()) }() // gone after the rename; left only on failure
				if err := tmp.Chmod(0o600); err != nil {
					_ = tmp.Close()
					return err
				}
				out = tmp
			}
			bw := bufio.NewWriter(out)
			var bytesOut, lines int
			for {
				msg, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					if tmp != nil {
						_ = tmp.Close()
					}
					return err
				}
				n, _ := bw.Write(msg.GetChunk())
				bytesOut += n
				lines += bytes.Count(msg.GetChunk(), []byte("\n"))
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			if tmp == nil {
				return nil
			}
			if err := tmp.Sync(); err != nil {
				_ = tmp.Close()
				return err
			}
			if err := tmp.Close(); err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), file); err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.stderr, "wrote %d records (%d bytes) to %s\n", max(lines-1, 0), bytesOut, file)
			return err
		}),
	}
	subjectFlags(cmd, subj)
	cmd.Flags().StringVar(&file, "file", "", "where to write the export; - for standard output")
	return cmd
}

func (c *cli) privacyCorrect() *cobra.Command {
	subj := &adminv1.PrivacySubject{}
	req := &adminv1.CorrectDataRequest{Subject: subj}
	cmd := &cobra.Command{
		Use:   "correct --tenant T [--account ID] [--email E] [--name N] [--billing-email E] [--billing-reference R]",
		Short: "Correct an account's or a tenant's personal and billing fields",
		Long: `Correct an account's e-mail or name, or a tenant's name, billing e-mail or
billing reference. Only the flags given change; the audit log records which
fields changed, never their values.`,
		Example: `  tollgatectl privacy correct --tenant acme --account 0b5c9a5e-2f4e-4c55-8a43-3f0f7b1f4b2a --email ada@acme.example
  tollgatectl privacy correct --tenant acme --billing-email ap@acme.example`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			if err := checkSubject(subj); err != nil {
				return err
			}
			mask, err := updateMask(cmd.Flags(), []flagPath{
				{"email", "email"}, {"name", "name"}, {"billing-email", "billing_email"}, {"billing-reference", "billing_reference"},
			})
			if err != nil {
				return err
			}
			req.UpdateMask = mask
			client, err := c.privacyClient()
			if err != nil {
				return err
			}
			resp, err := client.CorrectData(cmd.Context(), req)
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) {
				t.row("CORRECTED")
				t.row(strings.Join(resp.GetChangedFields(), ", "))
			})
		}),
	}
	subjectFlags(cmd, subj)
	f := cmd.Flags()
	f.StringVar(&req.Email, "email", "", "the account's e-mail")
	f.StringVar(&req.Name, "name", "", "the account's or the tenant's name")
	f.StringVar(&req.BillingEmail, "billing-email", "", "the tenant's billing e-mail")
	f.StringVar(&req.BillingReference, "billing-reference", "", "the tenant's billing reference")
	return cmd
}

func (c *cli) privacyErase() *cobra.Command {
	subj := &adminv1.PrivacySubject{}
	var yes bool
	cmd := &cobra.Command{
		Use:   "erase --tenant T [--account ID] [--yes]",
		Short: "Irreversibly erase a tenant or an account",
		Long: `Irreversibly erase a tenant or one account. It shows what will be erased and
asks you to type the subject (the tenant as given, or the account id) to
confirm, unless --yes. Keys are revoked at once, stored request content is
destroyed, personal fields are removed; usage is kept for billing, linked to
no one; a tenant's invoices are kept for the legal period without their
billing contact. The command returns when the erasure is complete.`,
		Example: `  tollgatectl privacy erase --tenant acme --account 0b5c9a5e-2f4e-4c55-8a43-3f0f7b1f4b2a
  tollgatectl privacy erase --tenant acme --yes`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			if err := checkSubject(subj); err != nil {
				return err
			}
			client, err := c.privacyClient()
			if err != nil {
				return err
			}
			prep, err := client.PrepareErasure(cmd.Context(), &adminv1.PrepareErasureRequest{Subject: subj})
			if err != nil {
				return err
			}
			what := subj.GetTenant()
			if subj.GetAccountId() != "" {
				what = subj.GetAccountId()
			}
			if !yes {
				p := prep.GetPlan()
				_, _ = fmt.Fprintf(c.stderr, "This erases %s for good: %d accounts and %d keys deleted, %d stored contents destroyed; %d usage records and %d invoices kept without personal data.\nType %s to confirm: ",
					what, p.GetAccounts(), p.GetKeys(), p.GetContentLogs(), p.GetUsageRecords(), p.GetInvoices(), what)
				line, _ := bufio.NewReader(c.stdin).ReadString('\n')
				if strings.TrimSpace(line) != what {
					return usagef("not confirmed; nothing was erased")
				}
			}
			resp, err := client.Erase(cmd.Context(), &adminv1.EraseRequest{Subject: subj, ConfirmationToken: prep.GetConfirmationToken()})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) {
				e := resp.GetErased()
				t.row("ERASED", "ACCOUNTS", "KEYS", "CONTENT", "USAGE KEPT", "INVOICES KEPT", "COMPLETE")
				t.row(what, itoa(e.GetAccounts()), itoa(e.GetKeys()), itoa(e.GetContentLogs()), itoa(e.GetUsageRecords()), itoa(e.GetInvoices()), timestamp(resp.GetCompleteTime()))
			})
		}),
	}
	subjectFlags(cmd, subj)
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	return cmd
}

func (c *cli) privacyRestrict(on bool) *cobra.Command {
	subj := &adminv1.PrivacySubject{}
	var reason string
	use, short := "restrict", "Refuse every request of a tenant or an account, keeping its data"
	if !on {
		use, short = "unrestrict", "Lift a restriction"
	}
	cmd := &cobra.Command{
		Use:     use + " --tenant T [--account ID]",
		Short:   short,
		Example: "  tollgatectl privacy " + use + " --tenant acme --account 0b5c9a5e-2f4e-4c55-8a43-3f0f7b1f4b2a",
		Args:    exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			if err := checkSubject(subj); err != nil {
				return err
			}
			client, err := c.privacyClient()
			if err != nil {
				return err
			}
			var resp proto.Message
			if on {
				resp, err = client.Restrict(cmd.Context(), &adminv1.RestrictRequest{Subject: subj, Reason: reason})
			} else {
				resp, err = client.Unrestrict(cmd.Context(), &adminv1.UnrestrictRequest{Subject: subj})
			}
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) {
				t.row("TENANT", "ACCOUNT", "RESTRICTED")
				t.row(subj.GetTenant(), subj.GetAccountId(), yesNo(on))
			})
		}),
	}
	subjectFlags(cmd, subj)
	if on {
		cmd.Example += "\n  tollgatectl privacy restrict --tenant acme --reason \"invoice TG-202610-acme unpaid\""
		cmd.Flags().StringVar(&reason, "reason", "", "why, shown to the tenant's people until the restriction is lifted (one line, at most 500 bytes)")
	}
	return cmd
}
