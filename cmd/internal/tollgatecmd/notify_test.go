package tollgatecmd

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The SMTP password comes from a file or the environment, never a flag;
// settings without an address, and bad settings, are refused by name.
func TestSMTPFlags(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) (*notifyFlags, error) {
		var f notifyFlags
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f.register(fs)
		return &f, fs.Parse(args)
	}
	f, err := parse("--smtp-addr", "127.0.0.1:2525", "--smtp-from", "tollgate@example.com", "--smtp-username", "u", "--smtp-password-file", pwFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.smtpConfig()
	if err != nil || c.Password != "s3cret" || c.Username != "u" || c.TLS != "starttls-if-offered" {
		t.Fatalf("config %+v, %v", c, err)
	}
	if _, err := parse("--smtp-password", "x"); err == nil {
		t.Error("a --smtp-password flag exists; passwords must not be flag values")
	}
	t.Setenv("TOLLGATE_SMTP_PASSWORD", "from-env")
	f, _ = parse("--smtp-addr", "mail:587", "--smtp-from", "a@example.com", "--smtp-username", "u")
	if c, err := f.smtpConfig(); err != nil || c.Password != "from-env" {
		t.Errorf("password from the environment: %+v, %v", c, err)
	}
	for _, bad := range [][]string{
		{"--smtp-from", "a@example.com"},
		{"--smtp-addr", "mail", "--smtp-from", "a@example.com"},
		{"--smtp-addr", "mail:25", "--smtp-from", "Ops <a@example.com>"},
		{"--smtp-addr", "mail:25", "--smtp-from", "a@example.com", "--smtp-tls", "maybe"},
		{"--smtp-addr", "mail:25", "--smtp-from", "a@example.com", "--smtp-password-file", filepath.Join(dir, "missing")},
	} {
		f, err := parse(bad...)
		if err == nil {
			_, err = f.smtpConfig()
		}
		if err == nil || (!errors.Is(err, errUsage) && !strings.Contains(err.Error(), "password")) {
			t.Errorf("%v: %v, want a usage error", bad, err)
		}
	}
	if f, _ := parse(); f != nil {
		if c, err := f.smtpConfig(); c != nil || err != nil {
			t.Errorf("no flags: %+v, %v; want no e-mail", c, err)
		}
	}
}
