// Package redact replaces personal data and secrets in prompt text with
// typed placeholders before a request leaves Tollgate: e-mail addresses
// ([EMAIL]), phone numbers ([PHONE]), payment card numbers ([CARD], Luhn
// checked), IBANs ([IBAN], mod-97 checked) and secret-looking tokens
// ([SECRET]: API keys by their known prefixes, and long random-looking
// strings). It counts what it replaced, by kind, and never keeps a value.
//
// The detectors are written to miss rather than mangle: a prompt is the
// user's work, and a date, a version number, an order number, a hash or an
// identifier replaced by a placeholder changes what the model answers. Each
// detector says below what it does not match, and the table tests hold
// true and false positives alike.
//
// Text redacts a string; Body redacts the prompt text fields of a JSON
// request body (Fields lists them per client API) and leaves everything
// else byte for byte.
package redact

import "strings"

// Kind is a kind of value that is redacted.
type Kind int

// The kinds. Text looks for secrets first, then e-mail addresses, IBANs,
// and cards and phone numbers last (in one pass over runs of digits): a
// secret or an IBAN can contain runs of digits that would otherwise look
// like a card or a phone number.
const (
	Secret Kind = iota
	Email
	IBAN
	Card
	Phone
	numKinds
)

// passes are the scans Text makes, in order; numbers finds cards and phone
// numbers.
var passes = [...]Kind{Secret, Email, IBAN, Card}

// Placeholder is the text that replaces a value of kind k.
func (k Kind) Placeholder() string {
	return [...]string{"[SECRET]", "[EMAIL]", "[IBAN]", "[CARD]", "[PHONE]"}[k]
}

func (k Kind) String() string {
	return [...]string{"secret", "email", "iban", "card", "phone"}[k]
}

// Counts is how many values of each kind were replaced.
type Counts [numKinds]int

// Total is the number of values replaced.
func (c Counts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	for i, v := range o {
		c[i] += v
	}
}

// next finds the next value of pass p in s at or after from, and returns
// its span and kind; ok is false when there is none. Detectors run in time
// linear in len(s) over all the calls of one pass (st carries what a pass
// learnt), so that no prompt can make redaction slow. (A switch, not a
// table of funcs: direct calls keep st on the stack.)
func next(p Kind, s string, from int, st *passState) (start, end int, k Kind, ok bool) {
	switch p {
	case Secret:
		start, end, ok = nextSecret(s, from, st)
	case Email:
		start, end, ok = nextEmail(s, from)
	case IBAN:
		start, end, ok = nextIBAN(s, from)
	default:
		return nextNumber(s, from)
	}
	return start, end, p, ok
}

// passState is what a detector remembers between the calls of one pass.
type passState struct {
	// lastPEMEnd is the last "-----END " in s (-1 if none): a PEM block
	// cannot start after it. It is found when first needed (unknown
	// before): most text has no PEM header, and the search is slow.
	lastPEMEnd int
}

const unknown = -2

// Text returns s with every value it detects replaced by its kind's
// placeholder, and adds what it replaced to c. Each kind runs over the
// result of the previous one; placeholders contain nothing a later
// detector matches. A string without anything to replace is returned as
// it is, without allocating.
func Text(s string, c *Counts) string {
	for _, p := range passes {
		s = replaceAll(s, p, c)
	}
	return s
}

func replaceAll(s string, p Kind, c *Counts) string {
	st := passState{lastPEMEnd: unknown}
	start, end, k, ok := next(p, s, 0, &st)
	if !ok {
		return s
	}
	var out strings.Builder
	out.Grow(len(s))
	last := 0
	for ok {
		out.WriteString(s[last:start])
		out.WriteString(k.Placeholder())
		c[k]++
		last = end
		start, end, k, ok = next(p, s, end, &st)
	}
	out.WriteString(s[last:])
	return out.String()
}

// Character classes, by byte: the detectors look at ASCII only; other
// bytes (UTF-8 sequences included) are boundaries.
func isDigit(b byte) bool { return '0' <= b && b <= '9' }
func isUpper(b byte) bool { return 'A' <= b && b <= 'Z' }
func isLower(b byte) bool { return 'a' <= b && b <= 'z' }
func isAlnum(b byte) bool { return isDigit(b) || isUpper(b) || isLower(b) }
