package secret

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func mustNew(t testing.TB, k Kind) Secret {
	t.Helper()
	s, err := New(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewShape(t *testing.T) {
	for _, tc := range []struct {
		kind   Kind
		prefix string
		length int
	}{
		{APIKey, "tg-", 46},
		{AdminToken, "tgadm-", 49},
		{OperatorToken, "tgop-", 48},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			s := mustNew(t, tc.kind)
			if !strings.HasPrefix(s.Plaintext, tc.prefix) || len(s.Plaintext) != tc.length || tc.kind.Len() != tc.length {
				t.Fatalf("Plaintext %q (len %d): want prefix %q and length %d", s.Plaintext, len(s.Plaintext), tc.prefix, tc.length)
			}
			for _, c := range s.Plaintext[len(tc.prefix):] {
				if !strings.ContainsRune(alphabet, c) {
					t.Fatalf("Plaintext %q has %q outside base62", s.Plaintext, c)
				}
			}
			if s.Prefix != s.Plaintext[:len(tc.prefix)+8] {
				t.Errorf("Prefix = %q, want kind prefix and 8 characters of %q", s.Prefix, s.Plaintext)
			}
			if !bytes.Equal(s.Hash, Hash(s.Plaintext)) || len(s.Hash) != 32 {
				t.Errorf("Hash is not SHA-256 of the plaintext")
			}
			if err := Check(tc.kind, s.Plaintext); err != nil {
				t.Errorf("Check(New()) = %v", err)
			}
			if p, ok := Parse(tc.kind, s.Plaintext); !ok || p != s.Prefix {
				t.Errorf("Parse = %q, %v; want %q, true", p, ok, s.Prefix)
			}
			if k, ok := KindOf(s.Plaintext); !ok || k != tc.kind {
				t.Errorf("KindOf = %v, %v", k, ok)
			}
		})
	}
}

func TestNewZeroKind(t *testing.T) {
	if _, err := New(Kind{}); err == nil {
		t.Fatal("New(Kind{}) succeeded")
	}
}

// TestNewIsUniqueAndUniform draws many secrets: none may repeat, and every
// base62 character must be about equally likely. Plain b%62 without
// rejection makes '0'…'7' 25% more likely, which this catches (the bound is
// over 5 standard deviations, so the test does not flake).
func TestNewIsUniqueAndUniform(t *testing.T) {
	const draws = 20000
	seen := make(map[string]bool, draws)
	hashes := make(map[string]bool, draws)
	var counts [256]int
	for range draws {
		s := mustNew(t, APIKey)
		if seen[s.Plaintext] || hashes[string(s.Hash)] {
			t.Fatalf("repeated secret after %d draws", len(seen))
		}
		seen[s.Plaintext], hashes[string(s.Hash)] = true, true
		for i := len("tg-"); i < len(s.Plaintext); i++ {
			counts[s.Plaintext[i]]++
		}
	}
	want := float64(draws*BodyLen) / 62
	for i := range len(alphabet) {
		c := alphabet[i]
		if got := float64(counts[c]); got < want*0.95 || got > want*1.05 {
			t.Errorf("character %q drawn %d times, want about %.0f", c, counts[c], want)
		}
	}
}

func TestHash(t *testing.T) {
	// The FIPS 180-2 test vector: Hash is plain SHA-256 of the whole string,
	// so any other implementation (a migration script, the ext_proc server)
	// can compute it.
	if got := hex.EncodeToString(Hash("abc")); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("Hash(abc) = %s", got)
	}
	s := mustNew(t, APIKey)
	if bytes.Equal(Hash(s.Plaintext), Hash(strings.TrimPrefix(s.Plaintext, "tg-"))) {
		t.Fatal("the prefix is not part of the hash")
	}
}

func TestEqual(t *testing.T) {
	a := Hash("tg-a")
	for _, tc := range []struct {
		b    []byte
		want bool
	}{
		{Hash("tg-a"), true},
		{Hash("tg-b"), false},
		{a[:31], false},
		{nil, false},
	} {
		if got := Equal(a, tc.b); got != tc.want {
			t.Errorf("Equal(%x, %x) = %v", a, tc.b, got)
		}
	}
}

func TestCheckMessages(t *testing.T) {
	key := mustNew(t, APIKey).Plaintext
	body := key[len("tg-"):]
	admin := mustNew(t, AdminToken).Plaintext
	for _, tc := range []struct {
		name string
		kind Kind
		s    string
		want string
	}{
		{"empty", APIKey, "", "no API key was given"},
		{"trailing newline", APIKey, key + "\n", "contains spaces or line breaks"},
		{"space inside", APIKey, key[:20] + " " + key[20:], "contains spaces or line breaks"},
		{"admin token as API key", APIKey, admin, `this is a Tollgate admin token, not an API key; an API key starts with "tg-"`},
		{"API key as admin token", AdminToken, key, "this is a Tollgate API key, not an admin token"},
		{"API key as operator token", OperatorToken, key, "not an operator token"},
		{"OpenAI key", APIKey, "sk-proj-" + body, `provider's API key (sk-…), not a Tollgate API key; a Tollgate API key starts with "tg-"`},
		{"Anthropic key", APIKey, "sk-ant-api03-" + body, "provider's API key"},
		{"no prefix", APIKey, body, `malformed API key: it must start with "tg-"`},
		{"upper-case prefix", APIKey, "TG-" + body, `must start with "tg-"`},
		{"truncated", APIKey, key[:40], `"tg-" followed by 43 letters and digits, but has 37 characters`},
		{"too long", APIKey, key + "a", "but has 44 characters"},
		{"url-safe character", APIKey, key[:10] + "_" + key[11:], `only letters and digits may follow "tg-"`},
		{"non-ASCII", APIKey, key[:10] + "é" + key[12:], "only letters and digits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.kind, tc.s)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			// The message goes back to whoever sent the credential, and into
			// logs: it must not quote it.
			for _, part := range []string{body[:12], body[len(body)-12:], admin[6:18]} {
				if strings.Contains(err.Error(), part) {
					t.Errorf("error %q quotes the credential", err)
				}
			}
			if p, ok := Parse(tc.kind, tc.s); ok || p != "" {
				t.Errorf("Parse = %q, %v; want \"\", false", p, ok)
			}
		})
	}
	if err := Check(Kind{}, key); err == nil || errors.Is(err, ErrMalformed) {
		t.Errorf("Check(Kind{}) = %v; want a programming error, not ErrMalformed", err)
	}
}

func TestKindOf(t *testing.T) {
	for s, want := range map[string]Kind{"tg-x": APIKey, "tgadm-x": AdminToken, "tgop-x": OperatorToken} {
		if got, ok := KindOf(s); !ok || got != want {
			t.Errorf("KindOf(%q) = %v, %v; want %v", s, got, ok, want)
		}
	}
	for _, s := range []string{"", "tg", "tgx-", "sk-tg-", "TG-x"} {
		if k, ok := KindOf(s); ok {
			t.Errorf("KindOf(%q) = %v, want none", s, k)
		}
	}
}

func TestRedact(t *testing.T) {
	key := mustNew(t, APIKey)
	op := mustNew(t, OperatorToken)
	for s, want := range map[string]string{
		key.Plaintext:       key.Prefix + "…",
		op.Plaintext:        op.Prefix + "…",
		key.Plaintext[:30]:  "[redacted]", // malformed: may be anything
		"sk-proj-abcdefghi": "[redacted]",
		"":                  "[redacted]",
	} {
		if got := Redact(s); got != want {
			t.Errorf("Redact(%q) = %q, want %q", s, got, want)
		}
	}
}

func TestSecretFormattingNeverShowsPlaintext(t *testing.T) {
	s := mustNew(t, APIKey)
	hidden := s.Plaintext[len(s.Prefix):]
	type holder struct{ Secret Secret }
	var outs []string
	for _, v := range []any{s, &s, holder{s}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, string(j))
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("made", "secret", s, "holder", holder{s})
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("made", "secret", s, "holder", holder{s})
	outs = append(outs, buf.String())
	for _, out := range outs {
		if strings.Contains(out, hidden[:8]) {
			t.Errorf("output shows the secret beyond its display prefix: %s", out)
		}
		if !strings.Contains(out, s.Prefix) {
			t.Errorf("output lacks the display prefix, which identifies the secret: %s", out)
		}
	}
}

func BenchmarkHash(b *testing.B) {
	s := mustNew(b, APIKey).Plaintext
	for b.Loop() {
		Hash(s)
	}
}

func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		if _, err := New(APIKey); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	s := mustNew(b, APIKey).Plaintext
	for b.Loop() {
		if err := Check(APIKey, s); err != nil {
			b.Fatal(err)
		}
	}
}
