package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/ent"
)

// TLS modes of an SMTP connection.
const (
	// SMTPStartTLSIfOffered upgrades with STARTTLS when the server offers it
	// and otherwise sends in clear text (but never a password: net/smtp
	// refuses PLAIN authentication without TLS, except to localhost).
	SMTPStartTLSIfOffered = "starttls-if-offered"
	// SMTPStartTLS requires STARTTLS.
	SMTPStartTLS = "starttls"
	// SMTPImplicitTLS speaks TLS from the first byte (port 465).
	SMTPImplicitTLS = "tls"
)

// SMTPConfig is the operator's mail relay. Notifications are e-mailed from
// From through Addr.
type SMTPConfig struct {
	// Addr is host:port, e.g. smtp.example.com:587.
	Addr string
	// From is the sender address, e.g. tollgate@example.com.
	From string
	// Username and Password, when Username is set, authenticate with
	// PLAIN, only over TLS (or to localhost).
	Username, Password string
	// TLS is one of the modes above; SMTPStartTLSIfOffered when empty.
	TLS string
	// TLSConfig verifies the server; nil means the system roots and the
	// host of Addr. Tests set their own roots.
	TLSConfig *tls.Config
	// HelloName is sent in EHLO; "localhost" when empty.
	HelloName string
	// Timeout bounds one message, connection included; 30 s when zero.
	Timeout time.Duration
}

// Check reports what is wrong with c, naming the flags that set it.
func (c *SMTPConfig) Check() error {
	host, port, err := net.SplitHostPort(c.Addr)
	var errs []error
	if err != nil || host == "" || port == "" {
		errs = append(errs, fmt.Errorf("--smtp-addr must be host:port, e.g. smtp.example.com:587, got %q", c.Addr))
	}
	if a, err := mail.ParseAddress(c.From); err != nil || a.Address != c.From {
		errs = append(errs, fmt.Errorf("--smtp-from must be a plain e-mail address such as tollgate@example.com, got %q", c.From))
	}
	switch c.TLS {
	case "", SMTPStartTLSIfOffered, SMTPStartTLS, SMTPImplicitTLS:
	default:
		errs = append(errs, fmt.Errorf("--smtp-tls must be %s, %s or %s, got %q", SMTPStartTLSIfOffered, SMTPStartTLS, SMTPImplicitTLS, c.TLS))
	}
	if c.Username == "" && c.Password != "" {
		errs = append(errs, errors.New("an SMTP password needs --smtp-username"))
	}
	return errors.Join(errs...)
}

// send delivers msg to rcpts. A 5xx reply is permanent; other failures are
// retried. code is the SMTP server's last reply code, when there was one.
func (c *SMTPConfig) send(ctx context.Context, rcpts []string, msg []byte) (code int, permanent bool, err error) {
	err = c.deliver(ctx, rcpts, msg)
	if err == nil {
		return 250, false, nil
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code, te.Code >= 500, err
	}
	return 0, false, err
}

func (c *SMTPConfig) deliver(ctx context.Context, rcpts []string, msg []byte) error {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	host, _, _ := net.SplitHostPort(c.Addr)
	tlsConf := c.TLSConfig
	if tlsConf == nil {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tlsConf = tlsConf.Clone()
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = host
	}
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("connecting to the SMTP server: %w", err)
	}
	// net/smtp has no contexts: the deadline bounds every exchange, and
	// cancelling ctx (the job stopping) closes the connection.
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if c.TLS == SMTPImplicitTLS {
		tc := tls.Client(conn, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return fmt.Errorf("TLS with the SMTP server: %w", err)
		}
		conn = tc
	}
	sc, err := smtp.NewClient(conn, host)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("greeting the SMTP server: %w", err)
	}
	defer func() { _ = sc.Close() }()
	hello := c.HelloName
	if hello == "" {
		hello = "localhost"
	}
	if err := sc.Hello(hello); err != nil {
		return fmt.Errorf("SMTP EHLO: %w", err)
	}
	if c.TLS != SMTPImplicitTLS {
		offered, _ := sc.Extension("STARTTLS")
		switch {
		case offered:
			if err := sc.StartTLS(tlsConf); err != nil {
				return fmt.Errorf("SMTP STARTTLS: %w", err)
			}
		case c.TLS == SMTPStartTLS:
			return errors.New("the SMTP server does not offer STARTTLS, which --smtp-tls=starttls requires")
		}
	}
	if c.Username != "" {
		if err := sc.Auth(smtp.PlainAuth("", c.Username, c.Password, host)); err != nil {
			return fmt.Errorf("SMTP authentication: %w", err)
		}
	}
	if err := sc.Mail(c.From); err != nil {
		return fmt.Errorf("SMTP MAIL FROM: %w", err)
	}
	for _, r := range rcpts {
		if err := sc.Rcpt(r); err != nil {
			return fmt.Errorf("SMTP RCPT TO %s: %w", r, err)
		}
	}
	w, err := sc.Data()
	if err != nil {
		return fmt.Errorf("SMTP DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("sending the message: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("SMTP end of data: %w", err)
	}
	// The message was accepted at the end of DATA; a failed QUIT does not
	// undo that.
	_ = sc.Quit()
	return nil
}

// titles are e-mail subjects and first lines, by event type.
var titles = map[string]string{
	TypeBudgetSoftLimit:      "Budget soft limit reached",
	TypeBudgetExhausted:      "Budget exhausted: requests are being refused",
	TypeKeyExpiring:          "API key expiring soon",
	TypeInvoiceIssued:        "Invoice issued",
	TypeAdminTokenCreated:    "Security notice: admin token created",
	TypeAdminTokenRevoked:    "Security notice: admin token revoked",
	TypeKeyRevokedByOperator: "Security notice: API key revoked by the operator",
	TypeTest:                 "Test notification",
}

// emailMessage renders n as a plain-text e-mail: a title, the event's data
// one field per line, and the ids that identify it. Message-ID is the
// delivery id, so a message sent twice (at-least-once) threads as one.
func emailMessage(from string, to []string, n *ent.Notification, now time.Time) ([]byte, error) {
	title := titles[n.EventType]
	if title == "" {
		title = n.EventType
	}
	tenant := n.TenantID.String()
	if ep := n.Edges.Endpoint; ep != nil && ep.Edges.Tenant != nil {
		tenant = ep.Edges.Tenant.Slug
	}
	var data map[string]any
	if err := json.Unmarshal(n.Data, &data); err != nil {
		return nil, fmt.Errorf("reading the data of notification %s: %w", n.ID, err)
	}
	var body strings.Builder
	fmt.Fprintf(&body, "%s for tenant %s.\n\n", title, tenant)
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&body, "%s: %v\n", k, data[k])
	}
	fmt.Fprintf(&body, "\nEvent: %s (%s)\nDelivery: %s\nTime: %s\n", n.EventType, n.EventID, n.ID, n.CreatedAt.UTC().Format(time.RFC3339))

	var msg bytes.Buffer
	header := func(k, v string) {
		// Values come from validated addresses and our own strings; CR and
		// LF are dropped all the same, so no value can add a header.
		v = strings.NewReplacer("\r", "", "\n", "").Replace(v)
		fmt.Fprintf(&msg, "%s: %s\r\n", k, v)
	}
	header("From", from)
	header("To", strings.Join(to, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", "[Tollgate] "+tenant+": "+title))
	header("Date", now.UTC().Format(time.RFC1123Z))
	header("Message-ID", "<"+n.ID.String()+"@tollgate>")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	header(HeaderDeliveryID, n.ID.String())
	header(HeaderEventType, n.EventType)
	msg.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&msg)
	if _, err := qp.Write([]byte(strings.ReplaceAll(body.String(), "\n", "\r\n"))); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return msg.Bytes(), nil
}
