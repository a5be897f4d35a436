package tollgatecmd

import (
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/controlplane/billing"
	"github.com/tollgate-dev/tollgate/controlplane/notify"
	"github.com/tollgate-dev/tollgate/controlplane/store"
)

// billingFlags configure the monthly invoices (docs/billing.md).
type billingFlags struct {
	rates  billing.Rates
	grace  time.Duration
	drafts bool
}

func (f *billingFlags) register(fs *flag.FlagSet) {
	f.rates = billing.Rates{}
	fs.Func("exchange-rate", "CUR=RATE: units of currency CUR per US dollar for invoices of tenants billed in CUR, e.g. EUR=0.92 (repeat per currency; each invoice records the rate it used)", func(v string) error {
		for _, part := range strings.Split(v, ",") {
			code, rate, err := billing.ParseRate(part)
			if err != nil {
				return err
			}
			f.rates[code] = rate
		}
		return nil
	})
	fs.DurationVar(&f.grace, "invoice-grace", billing.DefaultGrace, "how long after a month ends its invoices wait for usage records still on their way (later ones are billed on the tenant's next invoice); replicas' clocks must agree within it")
	fs.BoolVar(&f.drafts, "invoice-drafts", false, "leave each month's invoices as drafts for the operator to issue (tollgatectl billing issue) instead of issuing them")
}

func (f *billingFlags) service(st *store.Store, log *slog.Logger) (*billing.Service, error) {
	if f.grace < 0 {
		return nil, fmt.Errorf("%w: --invoice-grace must not be negative, got %s", errUsage, f.grace)
	}
	return billing.New(billing.Config{Store: st, Log: log, Rates: f.rates, Grace: f.grace, Drafts: f.drafts,
		OnIssued: notify.InvoiceIssued}), nil
}
