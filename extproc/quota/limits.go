package quota

import (
	"fmt"
	"math"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
)

// Kind says what a subject is.
type Kind uint8

const (
	Tenant Kind = iota + 1
	Key
)

func (k Kind) String() string {
	switch k {
	case Tenant:
		return "tenant"
	case Key:
		return "key"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// SubjectID names whose counters a limit applies to.
type SubjectID struct {
	Kind Kind
	ID   string
}

func (s SubjectID) String() string { return s.Kind.String() + " " + s.ID }

// Subject is one party a request is checked against, with the limits its
// policy sets now. Limits travel with every call rather than being stored
// ahead: configuration changes between requests, and the counters must keep
// their usage when it does.
type Subject struct {
	Kind   Kind
	ID     string
	Limits Limits
}

// SubjectID returns the subject's name without its limits.
func (s Subject) SubjectID() SubjectID { return SubjectID{Kind: s.Kind, ID: s.ID} }

// Limit is an optional cap; the zero value is "no limit".
type Limit struct {
	n   int64
	set bool
}

// Max returns a limit of n (n < 0 counts as 0: nothing passes).
func Max(n int64) Limit { return Limit{n: max(n, 0), set: true} }

// NoLimit is the absence of a limit.
var NoLimit = Limit{}

// Value returns the cap and whether there is one.
func (l Limit) Value() (int64, bool) { return l.n, l.set }

// orMax is the cap, or MaxInt64 when there is none: meters that are
// counted even without a limit compare against that.
func (l Limit) orMax() int64 {
	if !l.set {
		return math.MaxInt64
	}
	return l.n
}

func (l Limit) String() string {
	if !l.set {
		return "none"
	}
	return fmt.Sprint(l.n)
}

// Period is the calendar window a budget counts spend over, in UTC.
type Period uint8

const (
	Day Period = iota
	Month
	Total
	numPeriods
)

func (p Period) String() string {
	switch p {
	case Day:
		return "day"
	case Month:
		return "month"
	case Total:
		return "total"
	}
	return fmt.Sprintf("period(%d)", uint8(p))
}

// Budget caps spend in micro-dollars over a period. Reaching Hard refuses
// requests; reaching Soft is reported once per period (an Event).
type Budget struct {
	Hard Limit
	Soft Limit
}

// Limits are the enforceable limits of one subject's policy. The zero value
// limits nothing.
type Limits struct {
	RequestsPerMinute  Limit
	TokensPerMinute    Limit // input + output tokens
	ConcurrentRequests Limit
	Budgets            [numPeriods]Budget // indexed by Period
}

// FromPolicy reads the limits out of a policy as ext_proc receives it. A nil
// policy limits nothing.
func FromPolicy(p *configv1.Policy) Limits {
	var l Limits
	if p == nil {
		return l
	}
	opt := func(set bool, v int64) Limit {
		if !set {
			return NoLimit
		}
		return Max(v)
	}
	l.RequestsPerMinute = opt(p.RequestsPerMinute != nil, p.GetRequestsPerMinute())
	l.TokensPerMinute = opt(p.TokensPerMinute != nil, p.GetTokensPerMinute())
	l.ConcurrentRequests = opt(p.ConcurrentRequests != nil, p.GetConcurrentRequests())
	for _, b := range p.GetBudgets() {
		var period Period
		switch b.GetPeriod() {
		case configv1.BudgetPeriod_BUDGET_PERIOD_DAY:
			period = Day
		case configv1.BudgetPeriod_BUDGET_PERIOD_MONTH:
			period = Month
		case configv1.BudgetPeriod_BUDGET_PERIOD_TOTAL:
			period = Total
		default:
			continue // the control plane validates periods; an unknown one limits nothing
		}
		l.Budgets[period] = Budget{
			Hard: opt(b.HardLimitMicros != nil, b.GetHardLimitMicros()),
			Soft: opt(b.SoftLimitMicros != nil, b.GetSoftLimitMicros()),
		}
	}
	return l
}

// Meter is one thing a subject's usage is counted by; each subject has one
// counter per meter.
type Meter uint8

const (
	RequestsPerMinute  Meter = iota // rolling one-minute window (GCRA)
	TokensPerMinute                 // rolling one-minute window (GCRA)
	ConcurrentRequests              // requests admitted and not yet settled
	DaySpend                        // micro-dollars in the current UTC day
	MonthSpend                      // micro-dollars in the current UTC calendar month
	TotalSpend                      // micro-dollars ever
	numMeters
)

var meterNames = [numMeters]string{
	"requests_per_minute", "tokens_per_minute", "concurrent_requests",
	"day_budget", "month_budget", "total_budget",
}

func (m Meter) String() string {
	if m < numMeters {
		return meterNames[m]
	}
	return fmt.Sprintf("meter(%d)", uint8(m))
}

// Period returns the budget period of a spend meter.
func (m Meter) Period() (Period, bool) {
	if m >= DaySpend && m <= TotalSpend {
		return Period(m - DaySpend), true
	}
	return 0, false
}

// rolling reports whether m is a rate over a rolling window. Those are
// counted only while a limit is set: a token bucket has no drain rate
// without one.
func (m Meter) rolling() bool { return m == RequestsPerMinute || m == TokensPerMinute }

// limit is the cap l sets on m (a budget's hard limit).
func (l *Limits) limit(m Meter) Limit {
	switch m {
	case RequestsPerMinute:
		return l.RequestsPerMinute
	case TokensPerMinute:
		return l.TokensPerMinute
	case ConcurrentRequests:
		return l.ConcurrentRequests
	}
	p, _ := m.Period()
	return l.Budgets[p].Hard
}

// Cost is what a request uses: tokens (input + output) and money.
type Cost struct {
	Tokens int64
	Micros int64 // micro-dollars
}

func (c Cost) clamp() Cost { return Cost{Tokens: max(c.Tokens, 0), Micros: max(c.Micros, 0)} }

// of is how many units of m the cost takes.
func (c Cost) of(m Meter) int64 {
	switch m {
	case RequestsPerMinute, ConcurrentRequests:
		return 1
	case TokensPerMinute:
		return c.Tokens
	}
	return c.Micros
}

// spendMeter is the meter that counts a budget of period p.
func (p Period) spendMeter() Meter { return DaySpend + Meter(p) }
