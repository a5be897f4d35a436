package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Webhook headers.
const (
	// HeaderSignature carries "t=<unix seconds>,v1=<hex HMAC-SHA256 of
	// "<t>.<body>" under the endpoint's secret>". More v1= entries may
	// follow, one per secret, while a secret is being rotated.
	HeaderSignature = "Tollgate-Signature"
	// HeaderDeliveryID is the same on every attempt of one delivery:
	// receivers drop a delivery whose id they have already processed.
	HeaderDeliveryID = "Tollgate-Delivery-Id"
	// HeaderEventType is the event's type, for routing without parsing.
	HeaderEventType = "Tollgate-Event-Type"
)

// SecretAD is the associated data that binds an endpoint's sealed signing
// secret to the endpoint, so a sealed value copied to another row does not
// open.
func SecretAD(endpointID uuid.UUID) []byte {
	return []byte("notification-endpoint-secret:" + endpointID.String())
}

// Sign returns the Tollgate-Signature value of body sent at t.
func Sign(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Errors of Verify.
var (
	ErrBadSignatureHeader = errors.New("notify: malformed Tollgate-Signature header")
	ErrSignatureMismatch  = errors.New("notify: no signature matches the body")
	ErrSignatureTooOld    = errors.New("notify: signature timestamp outside the tolerance")
)

// Verify checks a Tollgate-Signature header against body, as a receiver
// does: some v1 signature must match the body under secret, and its
// timestamp must lie within tolerance of now, so that a recorded delivery
// cannot be replayed later. It is the reference for the snippet in
// docs/notifications.md.
func Verify(secret, body []byte, header string, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrBadSignatureHeader
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil {
				return ErrBadSignatureHeader
			}
			sigs = append(sigs, sig)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrBadSignatureHeader
	}
	want := mac(secret, ts, body)
	matched := false
	for _, s := range sigs {
		matched = matched || hmac.Equal(s, want)
	}
	if !matched {
		return ErrSignatureMismatch
	}
	if age := now.Sub(time.Unix(sec, 0)); age > tolerance || age < -tolerance {
		return fmt.Errorf("%w: signed %s ago", ErrSignatureTooOld, age.Round(time.Second))
	}
	return nil
}
