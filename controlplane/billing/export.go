package billing

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"strconv"
	"time"

	"github.com/tollgate-dev/tollgate/ent"
)

// CSVHeader is the first row of an exported invoice.
var CSVHeader = []string{
	"invoice", "period_start", "period_end", "model", "kind", "price_effective_from",
	"unit_price_usd_per_mtok", "quantity", "amount_usd", "currency", "amount_currency", "service_period_start",
}

// CSV renders an invoice and its lines (in their order): one row per line
// and a last row of kind "total". A prior-period line (late usage of an
// earlier month) names that month's first day in service_period_start,
// the last column (so that readers of the older columns by position read
// on); lines of the invoice's own month leave it empty. Amounts are decimal numbers with six
// decimals, computed from the integer micro-units (never through floating
// point); quantities are tokens.
func CSV(inv *ent.Invoice, lines []*ent.InvoiceLine) ([]byte, error) {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	day := func(t time.Time) string { return t.UTC().Format(time.DateOnly) }
	rows := [][]string{CSVHeader}
	for _, l := range lines {
		from, period := "", ""
		if l.PriceEffectiveFrom != nil {
			from = l.PriceEffectiveFrom.UTC().Format(time.RFC3339)
		}
		if l.ServicePeriodStart != nil {
			period = day(*l.ServicePeriodStart)
		}
		rows = append(rows, []string{
			inv.Number, day(inv.PeriodStart), day(inv.PeriodEnd), l.Model, string(l.Kind), from,
			Decimal(l.UnitPriceMicrosPerMtok), strconv.FormatInt(l.Quantity, 10), Decimal(l.AmountMicros),
			inv.Currency, Decimal(l.AmountCurrencyMicros), period,
		})
	}
	rows = append(rows, []string{
		inv.Number, day(inv.PeriodStart), day(inv.PeriodEnd), "", "total", "", "", "",
		Decimal(inv.TotalMicros), inv.Currency, Decimal(inv.TotalCurrencyMicros), "",
	})
	if err := w.WriteAll(rows); err != nil {
		return nil, fmt.Errorf("writing CSV: %w", err)
	}
	return buf.Bytes(), nil
}

// Decimal renders micro-units as a decimal number with six decimals:
// 1500 is "0.001500", -2 is "-0.000002".
func Decimal(micros int64) string {
	sign := ""
	u := uint64(micros)
	if micros < 0 {
		sign, u = "-", uint64(-(micros+1))+1 // no overflow for MinInt64
	}
	return fmt.Sprintf("%s%d.%06d", sign, u/1_000_000, u%1_000_000)
}
