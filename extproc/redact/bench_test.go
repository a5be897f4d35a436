package redact

import (
	"strings"
	"testing"
)

// A prompt of ordinary prose and code with nothing to redact, and the same
// with one value of each kind per paragraph.
var (
	benchClean = strings.Repeat("The quarterly report (v2.3, 2024-01-15) lists 1,234 orders; see https://example.com/r/12345 and call getUserAccountSettings(42). ", 80)
	benchDirty = strings.Repeat("Mail ada@example.com or call +49 30 1234567; card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z. ", 40)
)

func BenchmarkText(b *testing.B) {
	for _, c := range []struct{ name, s string }{{"clean", benchClean}, {"dirty", benchDirty}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.s)))
			b.ReportAllocs()
			for b.Loop() {
				var n Counts
				_ = Text(c.s, &n)
			}
		})
	}
}

// Inputs built to make a careless detector quadratic; each must stay
// linear (compare ns/op per byte with clean text).
func BenchmarkTextAdversarial(b *testing.B) {
	for _, c := range []struct{ name, s string }{
		{"pem headers without end", strings.Repeat("-----BEGIN PRIVATE KEY-----\n", 40000)},
		{"at signs", strings.Repeat("a.b.c.d.e@", 100000)},
		{"digit groups", strings.Repeat("1-", 500000)},
		{"parentheses", strings.Repeat("(1", 500000)},
		{"iban shapes", strings.Repeat("DE89 ", 200000)},
		{"jwt shapes", strings.Repeat("eyJabcdefghij.", 70000)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.s)))
			for b.Loop() {
				var n Counts
				_ = Text(c.s, &n)
			}
		})
	}
}

func BenchmarkBody(b *testing.B) {
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"system","content":"` + benchClean + `"},{"role":"user","content":"` + benchDirty + `"}]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Body(body, OpenAIChat); err != nil {
			b.Fatal(err)
		}
	}
}
