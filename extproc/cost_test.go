package extproc

import (
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	"github.com/tollgate-dev/tollgate/extproc/translate"
)

func TestCost(t *testing.T) {
	// $2.50 in, $10 out, $1.25 cached, per million tokens.
	p := &configv1.Price{InputMicrosPerMtok: 2_500_000, OutputMicrosPerMtok: 10_000_000, CachedInputMicrosPerMtok: 1_250_000}
	for _, c := range []struct {
		name string
		u    translate.Usage
		want int64
	}{
		{"nothing", translate.Usage{}, 0},
		{"one million in and out", translate.Usage{InputTokens: 1_000_000, OutputTokens: 1_000_000}, 12_500_000},
		{"cached part of input at the cached price", translate.Usage{InputTokens: 1_000_000, CachedInputTokens: 400_000}, 1_500_000 + 500_000},
		{"rounds half up once, not per type", translate.Usage{InputTokens: 1, OutputTokens: 1}, 13},   // 12.5 → 13
		{"half a micro-dollar rounds up", translate.Usage{InputTokens: 1}, 3},                         // 2.5 → 3
		{"below half rounds down", translate.Usage{InputTokens: 1, CachedInputTokens: 1}, 1},          // 1.25 → 1
		{"cached above input is capped", translate.Usage{InputTokens: 10, CachedInputTokens: 20}, 13}, // 10 cached × 1.25
		{"negative counts charge nothing", translate.Usage{InputTokens: -5, OutputTokens: -5}, 0},
		{"huge counts saturate", translate.Usage{OutputTokens: math.MaxInt64 / 2}, math.MaxInt64 / 1_000_000},
	} {
		if got := cost(p, c.u); got != c.want {
			t.Errorf("%s: cost = %d, want %d", c.name, got, c.want)
		}
	}
	if cost(nil, translate.Usage{InputTokens: 100}) != 0 {
		t.Error("a model without a price must cost 0")
	}
}

func TestPriceAtUsesThePriceInForceAtRequestTime(t *testing.T) {
	at := func(s string) *timestamppb.Timestamp {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return timestamppb.New(tm)
	}
	prices := []*configv1.Price{
		{EffectiveTime: at("2026-01-01T00:00:00Z"), InputMicrosPerMtok: 1},
		{EffectiveTime: at("2026-06-01T00:00:00Z"), InputMicrosPerMtok: 2},
		{EffectiveTime: at("2027-01-01T00:00:00Z"), InputMicrosPerMtok: 3},
	}
	for when, want := range map[string]int64{
		"2025-12-31T23:59:59Z": -1, "2026-01-01T00:00:00Z": 1, "2026-05-31T23:59:59Z": 1,
		"2026-06-01T00:00:00Z": 2, "2026-12-31T00:00:00Z": 2, "2027-02-01T00:00:00Z": 3,
	} {
		got := priceAt(prices, at(when).AsTime())
		if (got == nil && want != -1) || (got != nil && got.GetInputMicrosPerMtok() != want) {
			t.Errorf("at %s: %v, want price %d", when, got, want)
		}
	}
}
