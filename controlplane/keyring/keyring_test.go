package keyring

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// testKey returns a deterministic key, distinct per id, so failures are
// reproducible and leak checks know exactly what to look for.
func testKey(id string) Key {
	s := sha256.Sum256([]byte("tollgate keyring test " + id))
	return Key{ID: id, Secret: s[:]}
}

func mustNew(t testing.TB, keys ...Key) *Keyring {
	t.Helper()
	kr, err := New(keys...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return kr
}

func TestSealOpenRoundTrip(t *testing.T) {
	kr := mustNew(t, testKey("k1"))
	for _, tc := range []struct {
		name      string
		plaintext []byte
		ad        []byte
	}{
		{"empty", nil, []byte("provider/1")},
		{"short", []byte("sk-proj-abc"), []byte("provider/1")},
		{"no associated data", []byte("sk-proj-abc"), nil},
		{"binary", []byte{0, 1, 2, 255, 254}, []byte("x")},
		{"large", bytes.Repeat([]byte("a"), 1<<20), []byte("provider/2")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sealed, err := kr.Seal(tc.plaintext, tc.ad)
			if err != nil {
				t.Fatal(err)
			}
			if len(tc.plaintext) >= 8 && bytes.Contains(sealed, tc.plaintext) {
				t.Fatal("sealed value contains the plaintext")
			}
			got, err := kr.Open(sealed, tc.ad)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.plaintext) {
				t.Fatalf("Open = %q, want %q", got, tc.plaintext)
			}
			if want := 2 + len("k1") + 12 + len(tc.plaintext) + 16; len(sealed) != want {
				t.Errorf("sealed length = %d, want %d", len(sealed), want)
			}
		})
	}
}

func TestSealUsesFreshNonce(t *testing.T) {
	kr := mustNew(t, testKey("k1"))
	a, _ := kr.Seal([]byte("same"), []byte("ad"))
	b, _ := kr.Seal([]byte("same"), []byte("ad"))
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext are identical: nonce reuse")
	}
}

func TestSealedFormatIsSelfDescribing(t *testing.T) {
	kr := mustNew(t, testKey("2026-03"))
	sealed, _ := kr.Seal([]byte("x"), nil)
	want := append([]byte{1, 7}, "2026-03"...)
	if !bytes.HasPrefix(sealed, want) {
		t.Fatalf("sealed header = %v, want %v", sealed[:len(want)], want)
	}
}

func TestOpenWrongAssociatedDataFails(t *testing.T) {
	kr := mustNew(t, testKey("k1"))
	sealed, _ := kr.Seal([]byte("sk-secret"), []byte("provider/1"))
	for _, ad := range [][]byte{[]byte("provider/2"), nil, []byte("provider/1 "), []byte("provider/")} {
		_, err := kr.Open(sealed, ad)
		if !errors.Is(err, ErrDecrypt) {
			t.Errorf("Open with AD %q: err = %v, want ErrDecrypt", ad, err)
		}
	}
}

func TestOpenSameIDOtherSecretFails(t *testing.T) {
	sealed, _ := mustNew(t, testKey("k1")).Seal([]byte("x"), nil)
	other := Key{ID: "k1", Secret: testKey("other").Secret}
	_, err := mustNew(t, other).Open(sealed, nil)
	if !errors.Is(err, ErrDecrypt) || errors.Is(err, ErrUnknownKey) {
		t.Fatalf("err = %v, want ErrDecrypt only", err)
	}
}

// TestOpenTamperedFails flips every bit of every byte, and truncates and
// extends the value: nothing may open, and the error must say why.
func TestOpenTamperedFails(t *testing.T) {
	kr := mustNew(t, testKey("k1"), testKey("k2"))
	ad := []byte("provider/1")
	sealed, _ := kr.Seal([]byte("sk-proj-credential"), ad)
	const hdr = 2 + 2 // version, id length, "k1"
	region := func(i int) string {
		switch {
		case i == 0:
			return "version"
		case i == 1:
			return "id length"
		case i < hdr:
			return "key id"
		case i < hdr+12:
			return "nonce"
		case i < len(sealed)-16:
			return "ciphertext"
		default:
			return "tag"
		}
	}
	for i := range sealed {
		for bit := range 8 {
			tampered := bytes.Clone(sealed)
			tampered[i] ^= 1 << bit
			_, err := kr.Open(tampered, ad)
			switch r := region(i); r {
			case "id length", "key id":
				// The id can turn into another valid id ("k1" → "k3", or
				// "k" for length 1) that is not in the ring.
				if !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrUnknownKey) {
					t.Errorf("%s byte %d bit %d: err = %v", r, i, bit, err)
				}
			default:
				if !errors.Is(err, ErrDecrypt) {
					t.Errorf("%s byte %d bit %d: err = %v, want ErrDecrypt", r, i, bit, err)
				}
			}
		}
	}
	// Nor may relabelling it as sealed by the other key in the ring.
	swapped := bytes.Clone(sealed)
	swapped[3] = '2'
	if _, err := kr.Open(swapped, ad); !errors.Is(err, ErrDecrypt) {
		t.Errorf("id k1→k2: err = %v, want ErrDecrypt", err)
	}
	for n := range len(sealed) {
		if _, err := kr.Open(sealed[:n], ad); !errors.Is(err, ErrDecrypt) {
			t.Errorf("truncated to %d bytes: err = %v, want ErrDecrypt", n, err)
		}
	}
	if _, err := kr.Open(append(bytes.Clone(sealed), 0), ad); !errors.Is(err, ErrDecrypt) {
		t.Errorf("extended by a byte: err = %v, want ErrDecrypt", err)
	}
}

// TestHeaderIsAuthenticated uses two ids for one secret, the one case where
// an altered id would select a working key: the header must be bound too.
func TestHeaderIsAuthenticated(t *testing.T) {
	secret := testKey("shared").Secret
	kr := mustNew(t, Key{ID: "k1", Secret: secret}, Key{ID: "k2", Secret: secret})
	sealed, _ := kr.Seal([]byte("x"), nil)
	sealed[3] = '2' // "k1" → "k2"
	if _, err := kr.Open(sealed, nil); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("relabelled value: err = %v, want ErrDecrypt", err)
	}
}

func TestOpenMalformedMatchesErrMalformed(t *testing.T) {
	kr := mustNew(t, testKey("k1"))
	for _, b := range [][]byte{nil, {1}, {2, 2, 'k', '1'}, {1, 5, 'k'}, {1, 2, 'K', '1'}, {1, 0}} {
		_, err := kr.Open(b, nil)
		if !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrDecrypt) {
			t.Errorf("Open(%v): err = %v, want ErrMalformed and ErrDecrypt", b, err)
		}
	}
}

func TestOpenUnknownKey(t *testing.T) {
	sealed, _ := mustNew(t, testKey("old")).Seal([]byte("x"), nil)
	_, err := mustNew(t, testKey("new"), testKey("newer")).Open(sealed, nil)
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("err = %v, want ErrUnknownKey", err)
	}
	if errors.Is(err, ErrDecrypt) {
		t.Error("an unknown key is not a decryption failure")
	}
	// The operator needs to know which key is missing and what is loaded.
	for _, want := range []string{`"old"`, "new, newer"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestRotation(t *testing.T) {
	ad := []byte("provider/1")
	before := mustNew(t, testKey("2025-09"))
	oldSealed, _ := before.Seal([]byte("credential"), ad)

	// Step 1: the new key goes in front; old values still open.
	during := mustNew(t, testKey("2026-03"), testKey("2025-09"))
	if got := during.ActiveID(); got != "2026-03" {
		t.Fatalf("ActiveID = %q, want the first key", got)
	}
	pt, err := during.Open(oldSealed, ad)
	if err != nil || string(pt) != "credential" {
		t.Fatalf("old value under the rotated keyring: %q, %v", pt, err)
	}
	// Step 2: a re-seal job finds old values by KeyID and seals them anew.
	if id, _ := KeyID(oldSealed); id != "2025-09" {
		t.Fatalf("KeyID(old) = %q", id)
	}
	newSealed, err := during.Seal(pt, ad)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := KeyID(newSealed); id != "2026-03" {
		t.Fatalf("KeyID(new) = %q, want 2026-03", id)
	}
	// Step 3: the old key is dropped; re-sealed values open, stale ones say
	// which key they need.
	after := mustNew(t, testKey("2026-03"))
	if pt, err := after.Open(newSealed, ad); err != nil || string(pt) != "credential" {
		t.Fatalf("re-sealed value after dropping the old key: %q, %v", pt, err)
	}
	if _, err := after.Open(oldSealed, ad); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("stale value after dropping the old key: err = %v, want ErrUnknownKey", err)
	}
}

func TestKeyID(t *testing.T) {
	sealed, _ := mustNew(t, testKey("a-1")).Seal([]byte("x"), nil)
	if id, err := KeyID(sealed); err != nil || id != "a-1" {
		t.Fatalf("KeyID = %q, %v", id, err)
	}
	if _, err := KeyID([]byte("plaintext credential")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("KeyID(plaintext): err = %v, want ErrMalformed", err)
	}
}

func TestNewRejectsBadKeys(t *testing.T) {
	long := strings.Repeat("a", MaxIDLen+1)
	for _, tc := range []struct {
		name string
		keys []Key
		want string
	}{
		{"no keys", nil, "no keys"},
		{"empty id", []Key{{ID: "", Secret: testKey("x").Secret}}, "key 1: key id is empty"},
		{"upper case", []Key{testKey("ok"), {ID: "Prod", Secret: testKey("x").Secret}}, "key 2: key id may contain only"},
		{"leading hyphen", []Key{{ID: "-a", Secret: testKey("x").Secret}}, "must start with a letter or digit"},
		{"colon", []Key{{ID: "a:b", Secret: testKey("x").Secret}}, "may contain only"},
		{"too long", []Key{{ID: long, Secret: testKey("x").Secret}}, "33 characters, the limit is 32"},
		{"short secret", []Key{{ID: "k", Secret: make([]byte, 16)}}, "secret is 16 bytes, want 32"},
		{"nil secret", []Key{{ID: "k"}}, "secret is 0 bytes, want 32"},
		{"duplicate", []Key{testKey("k"), testKey("k")}, `key id "k" appears twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.keys...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if _, err := New(Key{ID: long[:MaxIDLen], Secret: testKey("x").Secret}); err != nil {
		t.Errorf("id of exactly MaxIDLen: %v", err)
	}
}

func TestNewKeepsNoReferenceToSecret(t *testing.T) {
	k := testKey("k1")
	kr := mustNew(t, k)
	sealed, _ := kr.Seal([]byte("x"), nil)
	clear(k.Secret) // e.g. a caller wiping its copy
	if _, err := kr.Open(sealed, nil); err != nil {
		t.Fatalf("keyring changed when the caller's slice did: %v", err)
	}
}

func TestZeroKeyringFailsCleanly(t *testing.T) {
	var kr *Keyring
	if _, err := kr.Seal([]byte("x"), nil); err == nil {
		t.Error("nil Keyring sealed")
	}
	if _, err := (&Keyring{}).Open([]byte{1, 1, 'k'}, nil); err == nil {
		t.Error("zero Keyring opened")
	}
	if kr.ActiveID() != "" || kr.IDs() != nil {
		t.Error("nil Keyring has keys")
	}
}

func TestIDs(t *testing.T) {
	kr := mustNew(t, testKey("b"), testKey("a"))
	ids := kr.IDs()
	if strings.Join(ids, ",") != "b,a" {
		t.Fatalf("IDs = %v, want keyring order", ids)
	}
	ids[0] = "mutated"
	if kr.ActiveID() != "b" || kr.IDs()[0] != "b" {
		t.Fatal("IDs returned the keyring's own slice")
	}
}

// leaks returns the encodings of secret that output must not contain.
func leaks(secret []byte) map[string]string {
	return map[string]string{
		"raw":           string(secret),
		"hex":           hex.EncodeToString(secret),
		"HEX":           strings.ToUpper(hex.EncodeToString(secret)),
		"base64":        base64.StdEncoding.EncodeToString(secret),
		"base64 prefix": base64.StdEncoding.EncodeToString(secret)[:12],
		"decimal bytes": strings.Trim(fmt.Sprintf("%d", secret[:6]), "[]"),
		"go bytes":      strings.TrimSuffix(fmt.Sprintf("%#v", secret[:4])[len("[]byte{"):], "}"),
	}
}

func assertNoLeak(t *testing.T, what, out string, secrets ...[]byte) {
	t.Helper()
	for _, s := range secrets {
		for enc, needle := range leaks(s) {
			if strings.Contains(out, needle) {
				t.Errorf("%s shows the secret (%s): %s", what, enc, out)
			}
		}
	}
}

func TestFormattingNeverShowsKeyMaterial(t *testing.T) {
	k1, k2 := testKey("k1"), testKey("k2")
	kr := mustNew(t, k1, k2)
	// No unexported Key field: fmt cannot call a Key's methods through an
	// unexported field and prints the secret. Keyring has no such gap.
	type holder struct {
		Exported   *Keyring
		unexported Keyring
		Key        Key
	}
	h := holder{Exported: kr, unexported: *kr, Key: k1}
	values := map[string]any{"*Keyring": kr, "Keyring": *kr, "Key": k1, "holder": h, "*holder": &h}
	for name, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
			assertNoLeak(t, name+" "+verb, fmt.Sprintf(verb, v), k1.Secret, k2.Secret)
		}
	}
	if got := fmt.Sprint(kr); !strings.Contains(got, "active: k1") || !strings.Contains(got, "k2") {
		t.Errorf("fmt.Sprint(kr) = %q; want the key ids, which help debugging", got)
	}

	var buf bytes.Buffer
	for _, hdl := range []slog.Handler{slog.NewTextHandler(&buf, nil), slog.NewJSONHandler(&buf, nil)} {
		slog.New(hdl).Info("loaded", "keyring", kr, "value", *kr, "key", k1, "holder", h)
	}
	assertNoLeak(t, "slog", buf.String(), k1.Secret, k2.Secret)
	if !strings.Contains(buf.String(), "k2") {
		t.Errorf("slog output lacks the key ids: %s", buf.String())
	}

	for name, v := range values {
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%s): %v", name, err)
		}
		assertNoLeak(t, "json "+name, string(out), k1.Secret, k2.Secret)
	}
}

func BenchmarkSeal(b *testing.B) {
	kr := mustNew(b, testKey("k1"))
	ad := []byte("provider/0b9c5e0e-9a43-4c3e-8a8e-2c4f5f3b1a7d")
	for _, size := range []int{64, 4096} {
		pt := make([]byte, size)
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := kr.Seal(pt, ad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	kr := mustNew(b, testKey("k1"))
	ad := []byte("provider/0b9c5e0e-9a43-4c3e-8a8e-2c4f5f3b1a7d")
	for _, size := range []int{64, 4096} {
		sealed, _ := kr.Seal(make([]byte, size), ad)
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := kr.Open(sealed, ad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
