package web

import (
	"context"
	"time"
)

// Message is one plain-text e-mail.
type Message struct {
	To      string
	Subject string
	Text    string
}

// Mailer sends e-mail (the control plane's SMTP relay, controlplane/notify).
type Mailer interface {
	Send(ctx context.Context, m Message) error
}

type mailJob struct {
	msg  Message
	what string // for the log; never the address or the link
}

// mailQueue is how many e-mails may wait; past it new ones are dropped
// (and logged), so a flood of reset requests cannot grow memory.
const mailQueue = 256

// queueMail hands m to the sender without waiting: the answer to a reset
// request must not take longer when the address has an account.
func (s *Server) queueMail(ctx context.Context, m Message, what string) {
	select {
	case s.mails <- mailJob{msg: m, what: what}:
	default:
		s.log.WarnContext(ctx, "web: e-mail queue full; dropped a message", "what", what)
	}
}

func (s *Server) sendMail(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.mails:
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			if err := s.cfg.Mailer.Send(sctx, j.msg); err != nil {
				s.log.ErrorContext(ctx, "web: sending e-mail", "what", j.what, "err", err)
			} else {
				s.log.InfoContext(ctx, "web: sent e-mail", "what", j.what)
			}
			cancel()
		}
	}
}
