package tollgatecmd

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func TestExchangeRateFlags(t *testing.T) {
	parse := func(args ...string) (billingFlags, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var f billingFlags
		f.register(fs)
		return f, fs.Parse(args)
	}
	f, err := parse("--exchange-rate", "EUR=0.92", "--exchange-rate", "gbp=0.79,JPY=151.5")
	if err != nil {
		t.Fatal(err)
	}
	if f.rates["EUR"] != 920_000 || f.rates["GBP"] != 790_000 || f.rates["JPY"] != 151_500_000 || len(f.rates) != 3 {
		t.Errorf("rates %v", f.rates)
	}
	for _, bad := range []string{"EUR", "EUR=0", "EURO=1", "EUR=0.0000001"} {
		if _, err := parse("--exchange-rate", bad); err == nil || !strings.Contains(err.Error(), "exchange rate") {
			t.Errorf("--exchange-rate %s: %v", bad, err)
		}
	}
	f, err = parse("--invoice-grace", "-1h")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.service(nil, nil); err == nil {
		t.Error("a negative grace was accepted")
	}
}
