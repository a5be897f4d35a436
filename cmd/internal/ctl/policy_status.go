package ctl

import (
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

func (c *cli) policyStatus() *cobra.Command {
	var tf targetFlags
	cmd := &cobra.Command{
		Use:   "status --tenant T | --key ID",
		Short: "Show each limit's current use and when it resets",
		Long: "Show each limit of a tenant or key with its use in the current window, the units held by\n" +
			"requests in flight (leases of the ext_proc replicas), and when the window resets, as the\n" +
			"control plane counts them across every replica. Budgets are in dollars. " + policyTargetNote,
		Example: `  tollgatectl policy status --tenant acme
  tollgatectl policy status --key 5f1d7c1e-8f0a-4b8e-9a57-2d6c0a3e9b11 -o json`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			target, err := tf.target()
			if err != nil {
				return err
			}
			client, err := c.policies()
			if err != nil {
				return err
			}
			resp, err := client.GetLimitStatus(cmd.Context(), &adminv1.GetLimitStatusRequest{Target: target})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { limitStatusTable(t, resp.GetLimits()) })
		}),
	}
	tf.register(cmd.Flags())
	return cmd
}

func limitStatusTable(t *table, limits []*adminv1.LimitStatus) {
	t.row("LIMIT", "USED", "HELD", "LIMIT", "SOFT", "RESETS")
	for _, l := range limits {
		amount := func(v int64) string { return strconv.FormatInt(v, 10) }
		if strings.HasPrefix(l.GetName(), "budget_") {
			amount = dollars
		}
		limit, soft, reset := "-", "-", "never"
		if l.Limit != nil {
			limit = amount(l.GetLimit())
		}
		if l.SoftLimit != nil {
			soft = amount(l.GetSoftLimit())
		}
		if l.GetResetTime() != nil {
			reset = timestamp(l.GetResetTime())
		}
		t.row(l.GetName(), amount(l.GetUsed()), amount(l.GetHeld()), limit, soft, reset)
	}
}
