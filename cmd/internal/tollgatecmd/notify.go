package tollgatecmd

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/notify"
	"github.com/tollgate-dev/tollgate/controlplane/store"
)

// notifyFlags configure notification delivery (docs/notifications.md): the
// operator's SMTP relay and the webhook address policy. The SMTP password
// comes from a file or the environment, never from a flag value, which
// would show in `ps` and shell history.
type notifyFlags struct {
	smtp                 notify.SMTPConfig
	passwordFile         string
	allowPrivateWebhooks bool
}

func (f *notifyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.smtp.Addr, "smtp-addr", os.Getenv("TOLLGATE_SMTP_ADDR"), "host:port of the SMTP relay that e-mails notifications, e.g. smtp.example.com:587; unset, e-mail endpoints' deliveries fail (env TOLLGATE_SMTP_ADDR)")
	fs.StringVar(&f.smtp.From, "smtp-from", os.Getenv("TOLLGATE_SMTP_FROM"), "sender address of notification e-mails (env TOLLGATE_SMTP_FROM)")
	fs.StringVar(&f.smtp.Username, "smtp-username", os.Getenv("TOLLGATE_SMTP_USERNAME"), "SMTP user name; authenticates with PLAIN, over TLS only (env TOLLGATE_SMTP_USERNAME)")
	fs.StringVar(&f.passwordFile, "smtp-password-file", os.Getenv("TOLLGATE_SMTP_PASSWORD_FILE"), "file holding the SMTP password (or env TOLLGATE_SMTP_PASSWORD with the password itself)")
	fs.StringVar(&f.smtp.TLS, "smtp-tls", envOr("TOLLGATE_SMTP_TLS", notify.SMTPStartTLSIfOffered),
		"SMTP TLS: "+notify.SMTPStartTLSIfOffered+" (STARTTLS when the relay offers it), "+notify.SMTPStartTLS+" (required) or "+notify.SMTPImplicitTLS+" (implicit TLS, port 465) (env TOLLGATE_SMTP_TLS)")
	fs.BoolVar(&f.allowPrivateWebhooks, "notify-allow-private-webhooks", false, "let tenants' webhooks reach loopback, private and link-local addresses (off: a tenant must not reach the operator's internal network)")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// smtpConfig returns the SMTP relay, or nil when none is configured.
func (f *notifyFlags) smtpConfig() (*notify.SMTPConfig, error) {
	if f.smtp.Addr == "" {
		if f.smtp.From != "" || f.smtp.Username != "" || f.passwordFile != "" {
			return nil, fmt.Errorf("%w: --smtp-from, --smtp-username and --smtp-password-file need --smtp-addr", errUsage)
		}
		return nil, nil
	}
	c := f.smtp
	c.Password = os.Getenv("TOLLGATE_SMTP_PASSWORD")
	if f.passwordFile != "" {
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("reading the SMTP password: %w", err)
		}
		c.Password = strings.TrimRight(string(b), "\r\n")
	}
	if err := c.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	return &c, nil
}

// deliverer builds the notification delivery job's worker.
func (f *notifyFlags) deliverer(st *store.Store, ring *keyring.Keyring, log *slog.Logger) (*notify.Deliverer, error) {
	smtp, err := f.smtpConfig()
	if err != nil {
		return nil, err
	}
	return notify.NewDeliverer(notify.Options{
		Store: st, Keyring: ring, SMTP: smtp, AllowPrivateWebhooks: f.allowPrivateWebhooks, Logger: log,
	})
}
