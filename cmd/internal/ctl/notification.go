package ctl

import (
	"context"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

var deliveryStatuses = map[string]adminv1.NotificationDeliveryStatus{
	"pending":   adminv1.NotificationDeliveryStatus_NOTIFICATION_DELIVERY_STATUS_PENDING,
	"delivered": adminv1.NotificationDeliveryStatus_NOTIFICATION_DELIVERY_STATUS_DELIVERED,
	"failed":    adminv1.NotificationDeliveryStatus_NOTIFICATION_DELIVERY_STATUS_FAILED,
	"dead":      adminv1.NotificationDeliveryStatus_NOTIFICATION_DELIVERY_STATUS_DEAD,
}

const notificationLong = `Manage where a tenant's notifications go, and see how they were delivered.

An endpoint is a webhook (an HTTPS URL that receives each event as JSON,
signed with HMAC-SHA256 under the endpoint's secret) or a list of e-mail
recipients. Event types: budget.soft_limit_reached, budget.exhausted,
key.expiring, invoice.issued, security.admin_token_created,
security.admin_token_revoked, security.key_revoked_by_operator. See
docs/notifications.md for payloads and how to verify signatures.`

func (c *cli) notificationCmd() *cobra.Command {
	cmd := resource("notification", "notifications", "Manage notification endpoints (webhooks, e-mail) and see deliveries",
		c.notificationList(), c.notificationGet(), c.notificationCreate(), c.notificationUpdate(), c.notificationDelete(),
		c.notificationRotateSecret(), c.notificationTest(), c.notificationDeliveries())
	cmd.Long = notificationLong
	return cmd
}

func (c *cli) notifications() (adminv1.NotificationServiceClient, error) {
	conn, err := c.connect()
	if err != nil {
		return nil, err
	}
	return adminv1.NewNotificationServiceClient(conn), nil
}

// endpointTable shows where an endpoint sends (URL or recipients) and the
// prefix of its signing secret, never the secret.
func endpointTable(t *table, eps ...*adminv1.NotificationEndpoint) {
	t.row("ID", "TENANT", "NAME", "KIND", "TARGET", "EVENTS", "DISABLED", "SECRET", "CREATED")
	for _, e := range eps {
		target := e.GetUrl()
		if target == "" {
			target = strings.Join(e.GetEmailRecipients(), ",")
		}
		events := strings.Join(e.GetEventTypes(), ",")
		if events == "" {
			events = "all"
		}
		t.row(e.GetId(), e.GetTenantId(), e.GetName(), enumName(e.GetKind(), "NOTIFICATION_ENDPOINT_KIND_"), target, events,
			yesNo(e.GetDisabled()), e.GetSecretPrefix(), timestamp(e.GetCreateTime()))
	}
}

func deliveryTable(t *table, ds ...*adminv1.NotificationDelivery) {
	t.row("ID", "TYPE", "ENDPOINT", "STATUS", "ATTEMPTS", "CODE", "NEXT_ATTEMPT", "DELIVERED", "CREATED", "LAST_ERROR")
	for _, d := range ds {
		code := ""
		if d.GetResponseCode() != 0 {
			code = strconv.Itoa(int(d.GetResponseCode()))
		}
		t.row(d.GetId(), d.GetEventType(), d.GetEndpointId(), enumName(d.GetStatus(), "NOTIFICATION_DELIVERY_STATUS_"),
			strconv.Itoa(int(d.GetAttempts())), code, timestamp(d.GetNextAttemptTime()), timestamp(d.GetDeliverTime()),
			timestamp(d.GetCreateTime()), d.GetLastError())
	}
}

func (c *cli) notificationList() *cobra.Command {
	var tenant string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List notification endpoints",
		Example: `  tollgatectl notifications list --tenant acme
  tollgatectl notifications list            # the operator: every tenant's`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.notifications()
			if err != nil {
				return err
			}
			req := &adminv1.ListNotificationEndpointsRequest{Tenant: tenant}
			all, err := collect(cmd.Context(), limit, func(ctx context.Context, size int32, token string) ([]*adminv1.NotificationEndpoint, string, error) {
				req.PageSize, req.PageToken = size, token
				resp, err := client.ListNotificationEndpoints(ctx, req)
				return resp.GetEndpoints(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			return c.print(&adminv1.ListNotificationEndpointsResponse{Endpoints: all}, func(t *table) { endpointTable(t, all...) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant", "", "only this tenant's endpoints (slug or id)")
	limitFlag(f, &limit)
	return cmd
}

func (c *cli) notificationGet() *cobra.Command {
	return &cobra.Command{
		Use:     "get ID",
		Short:   "Show one notification endpoint (never its signing secret)",
		Example: `  tollgatectl notification get 0e6f2a1c-5b7d-4c3e-9f8a-1b2c3d4e5f60`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.notifications()
			if err != nil {
				return err
			}
			resp, err := client.GetNotificationEndpoint(cmd.Context(), &adminv1.GetNotificationEndpointRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { endpointTable(t, resp.GetEndpoint()) })
		}),
	}
}

func (c *cli) notificationCreate() *cobra.Command {
	var tenant string
	ep := &adminv1.NotificationEndpoint{}
	cmd := &cobra.Command{
		Use:   "create --tenant T --name N (--webhook URL | --email ADDR,...)",
		Short: "Add a webhook or e-mail endpoint; a webhook's signing secret is printed once",
		Long: `Add a notification endpoint for a tenant: a webhook (--webhook URL) or e-mail
recipients (--email). Without --events it receives every event type.

A webhook's signing secret is printed once and cannot be retrieved again; give
it to the receiver, which checks the Tollgate-Signature header with it
(docs/notifications.md). ` + "`notification rotate-secret`" + ` replaces it.`,
		Example: `  tollgatectl notification create --tenant acme --name ops-hook --webhook https://hooks.acme.example/tollgate
  tollgatectl notification create --tenant acme --name finance --email billing@acme.example,cfo@acme.example \
    --events budget.soft_limit_reached,budget.exhausted,invoice.issued`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			if ep.Name == "" {
				return usagef("--name is required")
			}
			switch {
			case ep.Url != "" && len(ep.EmailRecipients) > 0:
				return usagef("give --webhook or --email, not both")
			case ep.Url != "":
				ep.Kind = adminv1.NotificationEndpointKind_NOTIFICATION_ENDPOINT_KIND_WEBHOOK
			case len(ep.EmailRecipients) > 0:
				ep.Kind = adminv1.NotificationEndpointKind_NOTIFICATION_ENDPOINT_KIND_EMAIL
			default:
				return usagef("--webhook URL or --email ADDR,... is required")
			}
			client, err := c.notifications()
			if err != nil {
				return err
			}
			resp, err := client.CreateNotificationEndpoint(cmd.Context(), &adminv1.CreateNotificationEndpointRequest{Tenant: tenant, Endpoint: ep})
			if err != nil {
				return err
			}
			if ep.Kind == adminv1.NotificationEndpointKind_NOTIFICATION_ENDPOINT_KIND_WEBHOOK {
				return c.printSecret(resp, resp.GetSigningSecret(), func(t *table) { endpointTable(t, resp.GetEndpoint()) })
			}
			return c.print(resp, func(t *table) { endpointTable(t, resp.GetEndpoint()) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant", "", "the tenant's slug or id (required for the operator)")
	f.StringVar(&ep.Name, "name", "", "unique name in the tenant: lower-case letters, digits and hyphens (required)")
	f.StringVar(&ep.Url, "webhook", "", "the webhook URL (https)")
	f.StringSliceVar(&ep.EmailRecipients, "email", nil, "e-mail recipients, comma-separated (1 to 10)")
	f.StringSliceVar(&ep.EventTypes, "events", nil, "event types to receive, comma-separated (default: all)")
	f.BoolVar(&ep.Disabled, "disabled", false, "create it disabled")
	return cmd
}

func (c *cli) notificationUpdate() *cobra.Command {
	ep := &adminv1.NotificationEndpoint{}
	cmd := &cobra.Command{
		Use:   "update ID",
		Short: "Change a notification endpoint",
		Long: `Change a notification endpoint. Only the flags given are changed; its kind and
tenant are fixed at creation. --events "" receives every type again.`,
		Example: `  tollgatectl notification update 0e6f2a1c-5b7d-4c3e-9f8a-1b2c3d4e5f60 --disabled
  tollgatectl notification update 0e6f2a1c-5b7d-4c3e-9f8a-1b2c3d4e5f60 --events key.expiring --webhook https://hooks.acme.example/v2`,
		Args: exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			mask, err := updateMask(cmd.Flags(), []flagPath{
				{"name", "name"},
				{"webhook", "url"},
				{"email", "email_recipients"},
				{"events", "event_types"},
				{"disabled", "disabled"},
			})
			if err != nil {
				return err
			}
			ep.Id = args[0]
			client, err := c.notifications()
			if err != nil {
				return err
			}
			resp, err := client.UpdateNotificationEndpoint(cmd.Context(), &adminv1.UpdateNotificationEndpointRequest{Endpoint: ep, UpdateMask: mask})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { endpointTable(t, resp.GetEndpoint()) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&ep.Name, "name", "", "unique name in the tenant")
	f.StringVar(&ep.Url, "webhook", "", "the webhook URL (webhooks only)")
	f.StringSliceVar(&ep.EmailRecipients, "email", nil, "e-mail recipients, comma-separated (e-mail endpoints only)")
	f.StringSliceVar(&ep.EventTypes, "events", nil, `event types to receive, comma-separated; "" for all`)
	f.BoolVar(&ep.Disabled, "disabled", false, "stop (true) or resume (--disabled=false) deliveries")
	return cmd
}

func (c *cli) notificationDelete() *cobra.Command {
	return &cobra.Command{
		Use:     "delete ID",
		Short:   "Delete a notification endpoint and its delivery log",
		Example: `  tollgatectl notification delete 0e6f2a1c-5b7d-4c3e-9f8a-1b2c3d4e5f60`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.notifications()
			if err != nil {
				return err
			}
			resp, err := client.DeleteNotificationEndpoint(cmd.Context(), &adminv1.DeleteNotificationEndpointRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.printDeleted(resp, "notification endpoint", args[0])
		}),
	}
}

func (c *cli) notificationRotateSecret() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate-secret ID",
		Short: "Replace a webhook's signing secret and print the new one once",
		Long: `Replace a webhook's signing secret. Deliveries from now on are signed with the
new secret only, so update the receiver right away (a receiver may accept
both secrets while it switches).`,
		Example: `  tollgatectl notification rotate-secret 0e6f2a1c-5b7d-4c3e-9f8a-1b2c3d4e5f60`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.notifications()
			if err != nil {
				return err
			}
			resp, err := client.RotateNotificationEndpointSecret(cmd.Context(), &adminv1.RotateNotificationEndpointSecretRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.printSecret(resp, resp.GetSigningSecret(), func(t *table) { endpointTable(t, resp.GetEndpoint()) })
		}),
	}
}

func (c *cli) notificationTest() *cobra.Command {
	return &cobra.Command{
		Use:   "test ID",
		Short: "Send a test notification to one endpoint",
		Long: `Queue a notification.test event for one endpoint. The delivery job sends it
within seconds; follow it with ` + "`notification deliveries --endpoint ID`" + `.`,
		Example: `  tollgatectl notification test 0e6f2a1c-5b7d-4c3e-9f8a-1b2c3d4e5f60`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.notifications()
			if err != nil {
				return err
			}
			resp, err := client.TestNotificationEndpoint(cmd.Context(), &adminv1.TestNotificationEndpointRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { deliveryTable(t, resp.GetDelivery()) })
		}),
	}
}

func (c *cli) notificationDeliveries() *cobra.Command {
	var tenant, endpoint, status string
	var limit int
	cmd := &cobra.Command{
		Use:   "deliveries",
		Short: "Show the delivery log, newest first",
		Example: `  tollgatectl notification deliveries --tenant acme
  tollgatectl notification deliveries --endpoint 0e6f2a1c-5b7d-4c3e-9f8a-1b2c3d4e5f60 --status failed`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			req := &adminv1.ListNotificationDeliveriesRequest{Tenant: tenant, EndpointId: endpoint}
			if status != "" {
				var err error
				if req.Status, err = parseEnum("status", status, deliveryStatuses); err != nil {
					return err
				}
			}
			client, err := c.notifications()
			if err != nil {
				return err
			}
			all, err := collect(cmd.Context(), limit, func(ctx context.Context, size int32, token string) ([]*adminv1.NotificationDelivery, string, error) {
				req.PageSize, req.PageToken = size, token
				resp, err := client.ListNotificationDeliveries(ctx, req)
				return resp.GetDeliveries(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			return c.print(&adminv1.ListNotificationDeliveriesResponse{Deliveries: all}, func(t *table) { deliveryTable(t, all...) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant", "", "only this tenant's deliveries (slug or id)")
	f.StringVar(&endpoint, "endpoint", "", "only deliveries to this endpoint id")
	f.StringVar(&status, "status", "", "only deliveries in this status: pending, delivered, failed or dead")
	limitFlag(f, &limit)
	return cmd
}
