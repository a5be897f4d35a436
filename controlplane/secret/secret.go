// Package secret makes and checks Tollgate's bearer secrets: data-plane API
// keys, tenant admin tokens, the operator token, web console sessions and
// password links.
//
// A secret is a kind prefix followed by 43 random base62 characters (256
// bits), e.g. "tg-" + "7hQ2…". Only its SHA-256 hash is stored; the plaintext
// is shown once, when the secret is made.
//
// Base62 rather than base64url: a base62 secret is one "word", so a double
// click selects all of it in a terminal or browser, and it never needs
// escaping in a URL, a shell, YAML or an HTTP header. base64url's '-' would
// also blur the boundary with the "tg-" prefix and break word selection.
package secret

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Kind is a type of bearer secret, told apart by its prefix. The prefixes
// let a person, a log scrubber or a secret scanner recognise a Tollgate
// secret and its purpose, and let the gateway say "this is an admin token,
// not an API key" instead of "invalid key".
type Kind struct {
	prefix string
	name   string
}

// The kinds. No prefix is a prefix of another, so a secret has one kind.
var (
	// APIKey authenticates data-plane requests.
	APIKey = Kind{prefix: "tg-", name: "API key"}
	// AdminToken authenticates admin API calls for one tenant.
	AdminToken = Kind{prefix: "tgadm-", name: "admin token"}
	// OperatorToken authenticates admin API calls for the whole gateway.
	OperatorToken = Kind{prefix: "tgop-", name: "operator token"}
	// Session authenticates a signed-in person of the web console (its
	// cookie), and admin API calls made on that person's behalf.
	Session = Kind{prefix: "tgses-", name: "session"}
	// PasswordToken is the secret in an e-mailed link that sets a password.
	PasswordToken = Kind{prefix: "tgpwd-", name: "password link"}
	// WebhookSecret signs webhook deliveries (controlplane/notify). Unlike
	// the others it is stored sealed rather than hashed: signing needs it.
	WebhookSecret = Kind{prefix: "tgwhsec-", name: "webhook signing secret"}
)

var kinds = []Kind{APIKey, AdminToken, OperatorToken, Session, PasswordToken, WebhookSecret}

const (
	// BodyLen is the number of random characters after the prefix:
	// 43 × log2(62) ≈ 256.03 bits, the least length that holds 256 bits.
	BodyLen = 43
	// DisplayLen is how many random characters the display prefix keeps:
	// enough (≈48 bits) to tell a tenant's keys apart in a list and in
	// logs, leaving ≈208 bits unknown.
	DisplayLen = 8

	alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// Prefix returns the kind's prefix, e.g. "tg-".
func (k Kind) Prefix() string { return k.prefix }

// String returns the kind's name for messages, e.g. "API key".
func (k Kind) String() string { return k.name }

// Len returns the length of a secret of this kind.
func (k Kind) Len() int { return len(k.prefix) + BodyLen }

// Secret is a newly made secret. Plaintext goes to its owner once; Prefix
// and Hash go to the database.
type Secret struct {
	Plaintext string
	// Prefix is the kind prefix and the first DisplayLen random characters,
	// e.g. "tg-7hQ2xK9a": enough to recognise a key, far too little to use it.
	Prefix string
	// Hash is Hash(Plaintext).
	Hash []byte
}

// New makes a secret of kind from 256 bits of crypto/rand entropy.
func New(kind Kind) (Secret, error) {
	if kind.prefix == "" {
		return Secret{}, errors.New("secret: zero Kind")
	}
	body, err := randomBase62(BodyLen)
	if err != nil {
		return Secret{}, err
	}
	s := kind.prefix + body
	return Secret{Plaintext: s, Prefix: s[:len(kind.prefix)+DisplayLen], Hash: Hash(s)}, nil
}

// randomBase62 draws n characters uniformly from alphabet. Bytes of 248 and
// above are rejected: 248 = 4×62, so b%62 of the rest is exactly uniform,
// where b%62 of every byte would favour the first 8 characters by 25%.
func randomBase62(n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/8) // about 3% of bytes are rejected
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("secret: reading random bytes: %w", err)
		}
		for _, b := range buf {
			if b >= 248 {
				continue
			}
			out = append(out, alphabet[b%62])
			if len(out) == n {
				break
			}
		}
	}
	return string(out), nil
}

// Hash returns the SHA-256 of the whole secret, prefix included, which is
// what the database stores and looks secrets up by.
//
// A fast, unsalted hash is right here, unlike for passwords: the secrets are
// 256 random bits, so there is nothing to guess and no dictionary to
// precompute, and a slow KDF would add nothing but its cost. That cost would
// fall on every data-plane request, which must find its key in O(1) by
// exact hash (a map in the ext_proc server, a unique index in the database);
// a per-secret salt would make that lookup impossible without first finding
// the row some other way.
func Hash(plaintext string) []byte {
	h := sha256.Sum256([]byte(plaintext))
	return h[:]
}

// Equal reports whether two hashes are equal, in time that does not depend
// on their contents. (It returns early when the lengths differ; hash lengths
// are not secret.)
func Equal(a, b []byte) bool {
	return subtle.ConstantTimeCompare(a, b) == 1
}

// ErrMalformed matches every error from Check.
var ErrMalformed = errors.New("malformed credential")

// malformedError carries a message written for the person who sent the
// credential: the data plane returns it in its 401 body as is. It never
// quotes the credential.
type malformedError struct{ msg string }

func (e *malformedError) Error() string        { return e.msg }
func (e *malformedError) Is(target error) bool { return target == ErrMalformed }

func malformed(format string, args ...any) error {
	return &malformedError{msg: fmt.Sprintf(format, args...)}
}

// Check tells whether s has the shape of a secret of kind (prefix, length,
// alphabet), so that a malformed credential is refused with a clear message
// before any lookup. The error matches ErrMalformed and never contains s.
func Check(kind Kind, s string) error {
	if kind.prefix == "" {
		return errors.New("secret: zero Kind")
	}
	if s == "" {
		return malformed("no %s was given", kind.name)
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return malformed("the %s contains spaces or line breaks; copy it again without them", kind.name)
	}
	if !strings.HasPrefix(s, kind.prefix) {
		if other, ok := KindOf(s); ok {
			return malformed("this is a Tollgate %s, not %s; %s starts with %q", other.name, article(kind), article(kind), kind.prefix)
		}
		if strings.HasPrefix(s, "sk-") {
			// The commonest mistake behind a gateway: the provider's own key
			// is still in the client's configuration.
			return malformed("this looks like a provider's API key (sk-…), not a Tollgate %s; a Tollgate %s starts with %q",
				kind.name, kind.name, kind.prefix)
		}
		return malformed("malformed %s: it must start with %q", kind.name, kind.prefix)
	}
	body := s[len(kind.prefix):]
	if len(body) != BodyLen {
		return malformed("malformed %s: it must be %q followed by %d letters and digits, but has %d characters after %q",
			kind.name, kind.prefix, BodyLen, len(body), kind.prefix)
	}
	for i := 0; i < len(body); i++ {
		if !isBase62(body[i]) {
			return malformed("malformed %s: only letters and digits may follow %q", kind.name, kind.prefix)
		}
	}
	return nil
}

// article returns "an API key", "an admin token" and so on.
func article(k Kind) string {
	if strings.ContainsRune("aeiouAEIOU", rune(k.name[0])) {
		return "an " + k.name
	}
	return "a " + k.name
}

func isBase62(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}

// Parse checks s like Check and returns its display prefix (e.g.
// "tg-7hQ2xK9a"), which is safe to log and to show.
func Parse(kind Kind, s string) (prefix string, ok bool) {
	if Check(kind, s) != nil {
		return "", false
	}
	return s[:len(kind.prefix)+DisplayLen], true
}

// KindOf returns the kind whose prefix s starts with, without checking the
// rest; the admin API uses it to tell an operator token from an admin token.
func KindOf(s string) (Kind, bool) {
	for _, k := range kinds {
		if strings.HasPrefix(s, k.prefix) {
			return k, true
		}
	}
	return Kind{}, false
}

// Redact returns a form of s that is safe to log: the display prefix and
// "…" for a well-formed secret of any kind, "[redacted]" for anything else,
// since a string of unknown shape may be all secret.
func Redact(s string) string {
	if k, ok := KindOf(s); ok {
		if p, ok := Parse(k, s); ok {
			return p + "…"
		}
	}
	return "[redacted]"
}

// The methods below keep the plaintext out of fmt, slog and JSON output, so
// that logging a Secret by mistake does not leak it.

// String returns the display prefix and "…".
func (s Secret) String() string {
	if s.Prefix == "" {
		return "[redacted]"
	}
	return s.Prefix + "…"
}

// GoString redacts the plaintext.
func (s Secret) GoString() string {
	return fmt.Sprintf("secret.Secret{Prefix: %q, Plaintext: [redacted]}", s.Prefix)
}

// Format makes %#v print GoString and every other verb print String.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, s.GoString())
		return
	}
	_, _ = io.WriteString(f, s.String())
}

// LogValue logs the display prefix only.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON writes the display prefix only: the plaintext must be copied
// into a response deliberately, by name.
func (s Secret) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Prefix string `json:"prefix"`
	}{s.Prefix})
}
