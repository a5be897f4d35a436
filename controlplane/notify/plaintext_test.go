package notify_test

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/controlplane/notify"
)

func TestSendTextMailsOnePlainMessageOverTLS(t *testing.T) {
	sink := newMailSink(t, 0)
	c := &notify.SMTPConfig{Addr: sink.addr, From: "tollgate@example.com", TLSConfig: &tls.Config{RootCAs: sink.roots, MinVersion: tls.VersionTLS12}}
	if err := c.SendText(t.Context(), "ann@example.com", "Réinitialiser", "line one\nline two\n"); err != nil {
		t.Fatal(err)
	}
	_, got := sink.state()
	if len(got) != 1 || got[0].to[0] != "ann@example.com" || !got[0].tls {
		t.Fatalf("accepted = %+v", got)
	}
	data := string(got[0].data)
	for _, want := range []string{"Subject: =?utf-8?q?R=C3=A9initialiser?=", "Content-Type: text/plain; charset=utf-8", "line one\r\nline two\r\n"} {
		if !strings.Contains(data, want) {
			t.Errorf("the message lacks %q:\n%s", want, data)
		}
	}
	if err := c.SendText(t.Context(), "a@example.com\r\nBcc: x@example.com", "s", "b"); err == nil {
		t.Error("a header injection was sent")
	}
}
