package notify

import (
	"context"
	"errors"
	"mime"
	"strings"
	"time"
)

// SendText e-mails a plain-text message to one address through the relay:
// for mail that is not a tenant notification, such as the web console's
// password links. It is sent once, now; the caller decides about retries.
func (c *SMTPConfig) SendText(ctx context.Context, to, subject, body string) error {
	if strings.ContainsAny(to, "\r\n<>,") || strings.ContainsAny(subject, "\r\n") {
		return errors.New("smtp: a line break or a list in a header")
	}
	msg := "From: " + c.From + "\r\nTo: " + to + "\r\nSubject: " + mime.QEncoding.Encode("utf-8", subject) +
		"\r\nDate: " + time.Now().UTC().Format(time.RFC1123Z) +
		"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")
	return c.deliver(ctx, []string{to}, []byte(msg))
}
