package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"github.com/tollgate-dev/tollgate/ent"
)

// webhookTimeout bounds one webhook attempt, connection included.
const webhookTimeout = 10 * time.Second

// userAgent names the sender to receivers' logs.
const userAgent = "Tollgate-Webhooks/1"

// errPrivateAddress refuses a webhook that resolves to a non-public address.
var errPrivateAddress = errors.New("the webhook's address is not public (loopback, private or link-local); the operator may allow such addresses with --notify-allow-private-webhooks")

// webhookClient is the client for tenants' webhook URLs. It follows no
// redirects (a receiver that moved updates its endpoint) and, unless
// allowPrivate, connects only to public addresses: the check runs on the
// address actually dialled, after DNS, so a name that resolves to an
// internal address is refused too. It uses no proxy from the environment.
func webhookClient(allowPrivate bool) *http.Client {
	dialer := &net.Dialer{Timeout: webhookTimeout}
	if !allowPrivate {
		dialer.Control = func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("webhook address %q: %w", address, err)
			}
			if !publicAddr(ap.Addr()) {
				return errPrivateAddress
			}
			return nil
		}
	}
	tr := &http.Transport{
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   webhookTimeout,
		ResponseHeaderTimeout: webhookTimeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       time.Minute,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   webhookTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsGlobalUnicast() && !a.IsPrivate() && !a.IsLoopback() && !a.IsLinkLocalUnicast() &&
		!netip.MustParsePrefix("100.64.0.0/10").Contains(a) // carrier-grade NAT, often internal
}

// postWebhook sends one signed delivery. 2xx is delivered; 4xx other than
// 408 and 429 is a permanent refusal; anything else is retried.
func (d *Deliverer) postWebhook(ctx context.Context, url string, secret, body []byte, n *ent.Notification, now time.Time) (code int, permanent bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, true, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(HeaderSignature, Sign(secret, body, now))
	req.Header.Set(HeaderDeliveryID, n.ID.String())
	req.Header.Set(HeaderEventType, n.EventType)
	resp, err := d.webhook.Do(req)
	if err != nil {
		// A refused address stays refused until the operator says
		// otherwise; retrying would only fill the log.
		return 0, errors.Is(err, errPrivateAddress), fmt.Errorf("posting the webhook: %w", err)
	}
	// Drain a little so the connection can be reused; the body itself is
	// the receiver's and is not kept.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return c, false, nil
	case c >= 400 && c < 500 && c != http.StatusRequestTimeout && c != http.StatusTooManyRequests:
		return c, true, fmt.Errorf("the receiver refused the delivery: HTTP %d", c)
	default:
		return c, false, fmt.Errorf("the receiver answered HTTP %d", c)
	}
}
