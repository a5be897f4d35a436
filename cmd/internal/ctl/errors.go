package ctl

import (
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// printError writes a runtime error for a person: the status message, the
// field violations of an InvalidArgument, and a hint where the usual cause is
// known.
func (c *cli) printError(err error) {
	st, ok := status.FromError(err)
	if !ok {
		c.errorf("Error: %s\n", err)
		return
	}
	msg := st.Message()
	if msg == "" {
		msg = st.Code().String()
	}
	c.errorf("Error: %s\n", msg)
	for _, d := range st.Details() {
		br, ok := d.(*errdetails.BadRequest)
		if !ok {
			continue
		}
		for _, v := range br.GetFieldViolations() {
			c.errorf("  %s: %s\n", v.GetField(), v.GetDescription())
		}
	}
	if hint := c.hint(st); hint != "" {
		c.errorf("hint: %s\n", hint)
	}
}

func (c *cli) hint(st *status.Status) string {
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		switch {
		case strings.Contains(msg, "connection refused"):
			return fmt.Sprintf("nothing is listening on %s; is `tollgate dev` running? (make run)", c.target())
		case strings.Contains(msg, "first record does not look like a TLS handshake"):
			return "the server does not speak TLS; leave out --tls"
		case !c.tlsWanted() && (strings.Contains(msg, "server preface") || strings.Contains(msg, "connection reset")):
			return "the server may require TLS; try --tls"
		}
	case codes.Unauthenticated:
		if c.tokenSource != "" {
			return "the admin token came from " + c.tokenSource + "; check that it is current and not revoked"
		}
	case codes.PermissionDenied:
		return "a tenant admin token can only act on its own tenant; platform-wide commands need the operator token"
	}
	return ""
}
