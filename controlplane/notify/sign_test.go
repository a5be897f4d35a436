package notify_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/controlplane/notify"
)

// A receiver accepts exactly the body that was signed, with the secret it
// holds, recently; anything else is refused with a reason.
func TestSignatureVerification(t *testing.T) {
	secret := []byte("tgwhsec-0123456789abcdefghijklmnopqrstuvwxyzABCDEFG")
	body := []byte(`{"id":"e1","type":"budget.exhausted"}`)
	at := time.Unix(1_800_000_000, 0)
	sig := notify.Sign(secret, body, at)
	if want := "t=1800000000,v1="; sig[:len(want)] != want || len(sig) != len(want)+64 {
		t.Fatalf("signature header %q, want t=…,v1=<64 hex digits>", sig)
	}
	other := notify.Sign([]byte("another secret"), body, at)
	for _, c := range []struct {
		name   string
		secret []byte
		body   []byte
		header string
		now    time.Time
		want   error
	}{
		{"the signed body", secret, body, sig, at.Add(time.Minute), nil},
		{"a rotated secret among several signatures", secret, body, other + ",v1=" + sig[len("t=1800000000,v1="):], at, nil},
		{"a changed body", secret, []byte(`{"id":"e1","type":"budget.soft_limit_reached"}`), sig, at, notify.ErrSignatureMismatch},
		{"another secret", []byte("wrong"), body, sig, at, notify.ErrSignatureMismatch},
		{"a changed timestamp", secret, body, "t=1800000001" + sig[len("t=1800000000"):], at, notify.ErrSignatureMismatch},
		{"a replay an hour later", secret, body, sig, at.Add(time.Hour), notify.ErrSignatureTooOld},
		{"no signature", secret, body, "t=1800000000", at, notify.ErrBadSignatureHeader},
		{"no timestamp", secret, body, sig[len("t=1800000000,"):], at, notify.ErrBadSignatureHeader},
		{"not hex", secret, body, "t=1800000000,v1=zz", at, notify.ErrBadSignatureHeader},
		{"empty", secret, body, "", at, notify.ErrBadSignatureHeader},
	} {
		err := notify.Verify(c.secret, c.body, c.header, c.now, 5*time.Minute)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: Verify = %v, want %v", c.name, err, c.want)
		}
	}
}

// The verification snippet of docs/notifications.md, in Go: what a receiver
// computes is what Sign sends.
func ExampleVerify() {
	secret := []byte("tgwhsec-example")
	body := []byte(`{"type":"notification.test"}`)
	header := notify.Sign(secret, body, time.Unix(1_800_000_000, 0))
	fmt.Println(header)
	fmt.Println(notify.Verify(secret, body, header, time.Unix(1_800_000_060, 0), 5*time.Minute))
	// Output:
	// t=1800000000,v1=2f58ab9e1b4a1f512e76802fd2f4e5090e63142a2659858b20a9df945f48d98d
	// <nil>
}
