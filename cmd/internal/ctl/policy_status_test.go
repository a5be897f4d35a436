package ctl

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

func TestPolicyStatus(t *testing.T) {
	f := newFakeServer(t)
	day := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	limit, soft := int64(5_000_000), int64(4_000_000)
	rpm := int64(60)
	f.replyWith("GetLimitStatus", &adminv1.GetLimitStatusResponse{Limits: []*adminv1.LimitStatus{
		{Name: "requests_per_minute", Limit: &rpm, Used: 12, Held: 3, WindowStart: timestamppb.New(day), ResetTime: timestamppb.New(day.Add(time.Minute))},
		{Name: "budget_day", Limit: &limit, SoftLimit: &soft, Used: 1_234_567, Held: 89, WindowStart: timestamppb.New(day), ResetTime: timestamppb.New(day.AddDate(0, 0, 1))},
		{Name: "budget_total", Used: 7, WindowStart: timestamppb.New(time.Unix(0, 0))},
	}})
	res := f.run(t, "policy", "status", "--key", "5f1d7c1e-8f0a-4b8e-9a57-2d6c0a3e9b11")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res)
	}
	for _, want := range []string{"requests_per_minute", "12", "60", "budget_day", "$1.234567", "$5.000000", "$4.000000", "2026-11-28T00:00:00Z", "budget_total", "never"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, res.stdout)
		}
	}
	assertProto(t, f.only(t, "GetLimitStatus").req, proto.Message(&adminv1.GetLimitStatusRequest{
		Target: &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_KeyId{KeyId: "5f1d7c1e-8f0a-4b8e-9a57-2d6c0a3e9b11"}},
	}))
	if res := f.run(t, "policy", "status"); res.code != 2 {
		t.Errorf("no target: exit %d, want 2", res.code)
	}
}
