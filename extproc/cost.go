package extproc

import (
	"math"
	"time"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	"github.com/tollgate-dev/tollgate/extproc/translate"
)

// priceAt returns the price in force at t: the last one whose effective
// time is not after t. Prices arrive oldest first.
func priceAt(prices []*configv1.Price, t time.Time) *configv1.Price {
	var in *configv1.Price
	for _, p := range prices {
		if p.GetEffectiveTime().AsTime().After(t) {
			break
		}
		in = p
	}
	return in
}

// cost is the price of u in micro-dollars. Prices are micro-dollars per
// million tokens, so the sum of token×price products is divided by a
// million once, at the end, rounding half up: a request is never charged
// a rounding error per token type. Cached input tokens are charged at the
// cached price and the rest of the input at the input price; tokens written
// to a provider's cache are charged as input. Money is never a float.
func cost(p *configv1.Price, u translate.Usage) int64 {
	if p == nil {
		return 0
	}
	cached := min(u.CachedInputTokens, u.InputTokens)
	sum := mulSat(u.InputTokens-cached, p.GetInputMicrosPerMtok())
	sum = addSat(sum, mulSat(cached, p.GetCachedInputMicrosPerMtok()))
	sum = addSat(sum, mulSat(u.OutputTokens, p.GetOutputMicrosPerMtok()))
	if sum == math.MaxInt64 {
		return sum / 1_000_000
	}
	return (sum + 500_000) / 1_000_000
}

// mulSat and addSat saturate instead of wrapping: an absurd count must not
// turn into a negative charge.
func mulSat(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
