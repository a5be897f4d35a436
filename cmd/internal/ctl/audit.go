package ctl

import (
	"context"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

func (c *cli) auditCmd() *cobra.Command {
	return resource("audit", "audits", "Read the audit log of admin API changes", c.auditList())
}

func auditTable(t *table, events ...*adminv1.AuditEvent) {
	t.row("TIME", "ACTOR", "TENANT", "ACTION", "TARGET", "CHANGED")
	for _, e := range events {
		target := e.GetTargetType()
		if e.GetTargetId() != "" {
			target += "/" + e.GetTargetId()
		}
		t.row(timestamp(e.GetTime()), e.GetActor(), e.GetTenantId(), e.GetAction(), target, strings.Join(e.GetChangedFields(), ","))
	}
}

func (c *cli) auditList() *cobra.Command {
	var since, until string
	var limit int
	req := &adminv1.ListAuditEventsRequest{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List audit events, newest first",
		Long: `List audit events, newest first: who changed what, and when. Events name the
fields that changed, never their values. --since and --until take an RFC 3339
time or a duration before now (24h, 7d).`,
		Example: `  tollgatectl audit list --tenant acme --since 24h
  tollgatectl audit list --action key.create --since 2026-01-01T00:00:00Z --until 2026-02-01T00:00:00Z`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			now := c.now()
			for _, x := range []struct {
				flag, value string
				dst         **timestamppb.Timestamp
			}{
				{"since", since, &req.StartTime},
				{"until", until, &req.EndTime},
			} {
				if !cmd.Flags().Changed(x.flag) {
					continue
				}
				t, err := parseTime(x.value, now, false)
				if err != nil {
					return usagef("--%s: %v", x.flag, err)
				}
				*x.dst = timestamppb.New(t)
			}
			if req.StartTime != nil && req.EndTime != nil && !req.EndTime.AsTime().After(req.StartTime.AsTime()) {
				return usagef("--until must be after --since")
			}
			conn, err := c.connect()
			if err != nil {
				return err
			}
			client := adminv1.NewAuditServiceClient(conn)
			all, err := collect(cmd.Context(), limit, func(ctx context.Context, size int32, token string) ([]*adminv1.AuditEvent, string, error) {
				req.PageSize, req.PageToken = size, token
				resp, err := client.ListAuditEvents(ctx, req)
				return resp.GetEvents(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			return c.print(&adminv1.ListAuditEventsResponse{Events: all}, func(t *table) { auditTable(t, all...) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.Tenant, "tenant", "", "only this tenant's events (slug or id)")
	f.StringVar(&req.Action, "action", "", "only events with this action, e.g. key.create")
	f.StringVar(&since, "since", "", "only events at or after this time")
	f.StringVar(&until, "until", "", "only events before this time")
	limitFlag(f, &limit)
	return cmd
}
