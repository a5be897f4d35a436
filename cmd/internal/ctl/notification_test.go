package ctl

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

const endpointID = "0e6f2a1c-5b7d-4c3e-9f8a-1b2c3d4e5f60"

// Each notification verb sends the request its flags describe; an update's
// mask names exactly the flags given.
func TestNotificationRequests(t *testing.T) {
	for _, tt := range []struct {
		name   string
		args   []string
		method string
		want   proto.Message
	}{
		{"list one tenant's endpoints", []string{"notifications", "list", "--tenant", "acme"}, "ListNotificationEndpoints",
			&adminv1.ListNotificationEndpointsRequest{Tenant: "acme"}},
		{"create an e-mail endpoint for some events", []string{"notification", "create", "--tenant", "acme", "--name", "finance",
			"--email", "billing@acme.example,cfo@acme.example", "--events", "budget.exhausted,invoice.issued"}, "CreateNotificationEndpoint",
			&adminv1.CreateNotificationEndpointRequest{Tenant: "acme", Endpoint: &adminv1.NotificationEndpoint{
				Name: "finance", Kind: adminv1.NotificationEndpointKind_NOTIFICATION_ENDPOINT_KIND_EMAIL,
				EmailRecipients: []string{"billing@acme.example", "cfo@acme.example"}, EventTypes: []string{"budget.exhausted", "invoice.issued"}}}},
		{"update: disable and receive every type again", []string{"notification", "update", endpointID, "--disabled", "--events", ""}, "UpdateNotificationEndpoint",
			&adminv1.UpdateNotificationEndpointRequest{Endpoint: &adminv1.NotificationEndpoint{Id: endpointID, Disabled: true},
				UpdateMask: mask("event_types", "disabled")}},
		{"update the webhook URL", []string{"notification", "update", endpointID, "--webhook", "https://hooks.acme.example/v2"}, "UpdateNotificationEndpoint",
			&adminv1.UpdateNotificationEndpointRequest{Endpoint: &adminv1.NotificationEndpoint{Id: endpointID, Url: "https://hooks.acme.example/v2"},
				UpdateMask: mask("url")}},
		{"delete", []string{"notification", "delete", endpointID}, "DeleteNotificationEndpoint",
			&adminv1.DeleteNotificationEndpointRequest{Id: endpointID}},
		{"test send", []string{"notification", "test", endpointID}, "TestNotificationEndpoint",
			&adminv1.TestNotificationEndpointRequest{Id: endpointID}},
		{"failed deliveries of one endpoint", []string{"notification", "deliveries", "--endpoint", endpointID, "--status", "failed"}, "ListNotificationDeliveries",
			&adminv1.ListNotificationDeliveriesRequest{EndpointId: endpointID, Status: adminv1.NotificationDeliveryStatus_NOTIFICATION_DELIVERY_STATUS_FAILED}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			cleanEnv(t)
			t.Setenv("TOLLGATE_TOKEN", testToken)
			r := runCLI(t, "", append([]string{"--server", f.addr}, tt.args...)...)
			if r.code != exitOK {
				t.Fatalf("tollgatectl %v: %v", tt.args, r)
			}
			assertProto(t, f.only(t, tt.method).req, tt.want)
		})
	}
}

// A webhook's signing secret is printed once, on creation and rotation;
// tables never show more than its prefix.
func TestWebhookSecretIsPrintedOnce(t *testing.T) {
	const sec = "tgwhsec-Zq8vX3secretbody"
	f := newFakeServer(t)
	ep := &adminv1.NotificationEndpoint{Id: endpointID, Name: "hook", Kind: adminv1.NotificationEndpointKind_NOTIFICATION_ENDPOINT_KIND_WEBHOOK,
		Url: "https://hooks.acme.example", SecretPrefix: "tgwhsec-Zq8vX3"}
	f.replyWith("CreateNotificationEndpoint", &adminv1.CreateNotificationEndpointResponse{Endpoint: ep, SigningSecret: sec})
	f.replyWith("RotateNotificationEndpointSecret", &adminv1.RotateNotificationEndpointSecretResponse{Endpoint: ep, SigningSecret: sec})
	f.replyWith("GetNotificationEndpoint", &adminv1.GetNotificationEndpointResponse{Endpoint: ep})
	cleanEnv(t)
	t.Setenv("TOLLGATE_TOKEN", testToken)
	for _, args := range [][]string{
		{"notification", "create", "--tenant", "acme", "--name", "hook", "--webhook", "https://hooks.acme.example"},
		{"notification", "rotate-secret", endpointID},
	} {
		r := runCLI(t, "", append([]string{"--server", f.addr}, args...)...)
		if r.code != exitOK || !strings.HasPrefix(r.stdout, sec+"\n") || !strings.Contains(r.stderr, "shown this once") {
			t.Errorf("%v: %v", args, r)
		}
	}
	r := runCLI(t, "", "--server", f.addr, "notification", "get", endpointID)
	if r.code != exitOK || strings.Contains(r.stdout, sec) || !strings.Contains(r.stdout, "tgwhsec-Zq8vX3") {
		t.Errorf("get: %v", r)
	}
	r = runCLI(t, "", "--server", f.addr, "notification", "create", "--tenant", "acme", "--name", "x", "--webhook", "https://a", "--email", "a@b.example")
	if r.code != exitUsage {
		t.Errorf("--webhook with --email: %v", r)
	}
}
