// Package keyring encrypts secrets at rest (provider credentials today,
// per-tenant data keys later) under master keys that never enter the
// database.
//
// A Keyring holds one or more 256-bit master keys, each named by a short id.
// The first key is active: it seals every new value. Every key can open, so
// the master key can be rotated without downtime: add a new key in front,
// re-seal stored values, then drop the old key once nothing refers to it.
//
// Sealed values are AES-256-GCM with a random 96-bit nonce, in a
// self-describing format that names the key that sealed them:
//
//	version (1 byte, = 1) | id length (1 byte) | id | nonce (12 bytes) | ciphertext | tag (16 bytes)
//
// The header (version, id length, id) is authenticated together with the
// caller's associated data, so neither can be altered without Open failing.
package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
)

const (
	// SecretSize is the size of a master key in bytes: AES-256.
	SecretSize = 32
	// MaxIDLen bounds key ids: they are stored in every sealed value and in
	// the database next to it, so they should stay short.
	MaxIDLen = 32

	formatV1 byte = 1
	// overhead is what cipher.NewGCMWithRandomNonce adds: nonce and tag.
	overhead = 12 + 16
)

var (
	// ErrUnknownKey means the value was sealed by a key that is not in the
	// keyring, typically because the key was dropped before every value was
	// re-sealed, or because the process was started with the wrong keyring.
	ErrUnknownKey = errors.New("keyring: unknown key id")

	// ErrDecrypt means a sealed value cannot be opened with the key it names:
	// it was altered, it was sealed with other associated data (copied from
	// another row), or the key with that id has a different secret.
	ErrDecrypt = errors.New("keyring: cannot decrypt")

	// ErrMalformed means the bytes are not a sealed value at all (truncated,
	// or another format). It matches ErrDecrypt too, so that callers of Open
	// can branch on ErrDecrypt alone.
	ErrMalformed = fmt.Errorf("%w: malformed sealed value", ErrDecrypt)
)

// Key is one master key.
type Key struct {
	// ID names the key inside every sealed value: 1 to MaxIDLen characters
	// of a-z, 0-9 and '-', starting with a letter or digit. Pick ids that
	// say when the key was made (e.g. "2026-01") so rotation is easy to read.
	ID string
	// Secret is SecretSize random bytes.
	Secret []byte
}

// Keyring holds master keys by id. It is immutable and safe for concurrent
// use.
//
// All state sits behind one pointer so that a Keyring embedded by value in
// another struct prints as an address, never as key material, even through
// reflection (fmt's %v of an unexported field does not call methods).
type Keyring struct{ s *state }

type state struct {
	active string
	ids    []string // in keyring order, the active one first
	aeads  map[string]cipher.AEAD
}

// New returns a keyring of keys; the first is active. It keeps no reference
// to the callers' Secret slices.
func New(keys ...Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("keyring: no keys")
	}
	for i, k := range keys {
		if err := checkKey(k); err != nil {
			return nil, fmt.Errorf("keyring: key %d: %w", i+1, err)
		}
	}
	return build(keys)
}

// build makes a keyring from keys that checkKey accepted.
func build(keys []Key) (*Keyring, error) {
	s := &state{active: keys[0].ID, aeads: make(map[string]cipher.AEAD, len(keys))}
	for _, k := range keys {
		if _, dup := s.aeads[k.ID]; dup {
			return nil, fmt.Errorf("keyring: key id %q appears twice", k.ID)
		}
		block, err := aes.NewCipher(k.Secret) // copies the key schedule
		if err != nil {
			return nil, fmt.Errorf("keyring: key %q: %w", k.ID, err)
		}
		// The random-nonce GCM is the FIPS 140-3 approved way to use GCM
		// with random nonces in Go; a nonce we drew ourselves would not be.
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("keyring: key %q: %w", k.ID, err)
		}
		s.aeads[k.ID] = aead
		s.ids = append(s.ids, k.ID)
	}
	return &Keyring{s: s}, nil
}

// checkKey validates one key. Its errors never contain the secret, nor the id
// when the id is invalid: a misplaced secret is often what an invalid id is.
func checkKey(k Key) error {
	if err := checkID(k.ID); err != nil {
		return err
	}
	if len(k.Secret) != SecretSize {
		return fmt.Errorf("key %q: secret is %d bytes, want %d (make one with: openssl rand -base64 %d)",
			k.ID, len(k.Secret), SecretSize, SecretSize)
	}
	return nil
}

func checkID(id string) error {
	if id == "" {
		return errors.New("key id is empty")
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("key id is %d characters, the limit is %d", len(id), MaxIDLen)
	}
	if !validID(id) {
		return errors.New("key id may contain only a-z, 0-9 and '-', and must start with a letter or digit")
	}
	return nil
}

func validID(id string) bool {
	if id == "" || len(id) > MaxIDLen || id[0] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// ActiveID returns the id of the key that Seal uses.
func (k *Keyring) ActiveID() string {
	if k == nil || k.s == nil {
		return ""
	}
	return k.s.active
}

// IDs returns the ids of all keys, the active one first.
func (k *Keyring) IDs() []string {
	if k == nil || k.s == nil {
		return nil
	}
	return slices.Clone(k.s.ids)
}

var errEmpty = errors.New("keyring: empty keyring (use New, Parse or Load)")

// Seal encrypts plaintext with the active key. associatedData is not stored
// but must be given again to Open: pass what identifies the row the value
// belongs to (e.g. "provider/<uuid>/credential"), so that a sealed value
// copied into another row cannot be opened there.
//
// A key must not seal more than 2^32 values (random nonces could collide
// beyond that); rotate long before.
func (k *Keyring) Seal(plaintext, associatedData []byte) ([]byte, error) {
	if k == nil || k.s == nil {
		return nil, errEmpty
	}
	id := k.s.active
	aead := k.s.aeads[id]
	hdrLen := 2 + len(id)
	out := make([]byte, hdrLen, hdrLen+overhead+len(plaintext))
	out[0] = formatV1
	out[1] = byte(len(id))
	copy(out[2:], id)
	return aead.Seal(out, nil, plaintext, authData(out[:hdrLen], associatedData)), nil
}

// Open decrypts a value sealed by any key in the keyring. Errors match
// ErrUnknownKey when the sealing key is not in the keyring, and ErrDecrypt
// when the value was altered, is malformed, or was sealed with other
// associated data.
func (k *Keyring) Open(sealed, associatedData []byte) ([]byte, error) {
	if k == nil || k.s == nil {
		return nil, errEmpty
	}
	id, hdrLen, err := parseHeader(sealed)
	if err != nil {
		return nil, err
	}
	aead, ok := k.s.aeads[id]
	if !ok {
		return nil, fmt.Errorf("%w %q: the keyring holds %s", ErrUnknownKey, id, strings.Join(k.s.ids, ", "))
	}
	if len(sealed)-hdrLen < overhead {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrMalformed, len(sealed))
	}
	plaintext, err := aead.Open(nil, nil, sealed[hdrLen:], authData(sealed[:hdrLen], associatedData))
	if err != nil {
		// GCM's own error says nothing more; name the likely causes.
		return nil, fmt.Errorf("%w: value sealed by key %q was altered, belongs to another record, or key %q has a different secret than when it was sealed",
			ErrDecrypt, id, id)
	}
	return plaintext, nil
}

// KeyID returns the id of the key that sealed a value, without decrypting
// it, so a rotation job can find values still sealed by an old key.
func KeyID(sealed []byte) (string, error) {
	id, _, err := parseHeader(sealed)
	return id, err
}

// parseHeader returns the key id and the header's length.
func parseHeader(sealed []byte) (id string, hdrLen int, err error) {
	if len(sealed) < 2 {
		return "", 0, fmt.Errorf("%w: %d bytes is too short", ErrMalformed, len(sealed))
	}
	if sealed[0] != formatV1 {
		return "", 0, fmt.Errorf("%w: unknown format version %d", ErrMalformed, sealed[0])
	}
	n := int(sealed[1])
	if len(sealed) < 2+n {
		return "", 0, fmt.Errorf("%w: %d bytes is too short", ErrMalformed, len(sealed))
	}
	id = string(sealed[2 : 2+n])
	// Checked so that error messages can quote the id safely.
	if !validID(id) {
		return "", 0, fmt.Errorf("%w: invalid key id", ErrMalformed)
	}
	return id, 2 + n, nil
}

// authData is what GCM authenticates besides the ciphertext: the header,
// then the caller's associated data. The header is length-prefixed, so the
// concatenation is unambiguous.
func authData(header, associatedData []byte) []byte {
	ad := make([]byte, 0, len(header)+len(associatedData))
	return append(append(ad, header...), associatedData...)
}

// The methods below have value receivers so that a Keyring printed or logged
// by value reads like a *Keyring. (Either way no key material shows: the
// state behind the pointer is out of reach of fmt's reflection.)

// String describes the keyring by key ids only.
func (k Keyring) String() string {
	if k.s == nil {
		return "keyring.Keyring{}"
	}
	return "keyring.Keyring{active: " + k.s.active + ", keys: [" + strings.Join(k.s.ids, " ") + "]}"
}

// GoString makes %#v print String: the default would print the structure.
func (k Keyring) GoString() string { return k.String() }

// Format makes every fmt verb, including %x and %#v, print String.
func (k Keyring) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// LogValue logs the key ids only.
func (k Keyring) LogValue() slog.Value {
	if k.s == nil {
		return slog.GroupValue()
	}
	return slog.GroupValue(slog.String("active", k.s.active), slog.Any("keys", slices.Clone(k.s.ids)))
}

// String redacts the secret.
func (k Key) String() string { return "keyring.Key{ID: " + k.ID + ", Secret: [redacted]}" }

// GoString redacts the secret.
func (k Key) GoString() string { return k.String() }

// Format makes every fmt verb print String, so no verb shows the secret.
func (k Key) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// LogValue logs the id only.
func (k Key) LogValue() slog.Value { return slog.GroupValue(slog.String("id", k.ID)) }

// MarshalJSON leaves the secret out, so that a Key put in a JSON log or
// response by mistake does not leak it.
func (k Key) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID string `json:"id"`
	}{k.ID})
}
