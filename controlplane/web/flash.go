package web

import (
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tollgate-dev/tollgate/controlplane/signin"
)

// flashes are the confirmations a redirect may ask for with ?done=…; the
// text is fixed here, so a link cannot make the page say anything else.
var flashes = map[string]string{
	"saved":    "Saved.",
	"revoked":  "The key is revoked. Requests with it are refused within about a second.",
	"added":    "Added.",
	"removed":  "Removed.",
	"sent":     "A password link is on its way by e-mail.",
	"password": "Your password is changed. Your other sessions are signed out.",
	"sessions": "Your other sessions are signed out.",
	"session":  "The session is signed out.",
	// Restriction, erasure and invoices.
	"restricted":   "Processing is restricted: requests are refused within about a second, and the data is kept.",
	"unrestricted": "The restriction is lifted: requests are served again within about a second.",
	"erased":       "The tenant is erased: its keys are refused, its content destroyed, its people's accounts gone. Its invoices are kept for the legal period without their billing contact.",
	"issued":       "The invoice is issued; its amounts no longer change.",
	"paid":         "The invoice is marked paid.",
	"voided":       "The invoice is void.",
}

func flashFor(r *http.Request) string { return flashes[r.URL.Query().Get("done")] }

// formError reports whether an admin API error is about what was typed, to
// be shown beside the form rather than as an error page.
func formError(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.AlreadyExists, codes.FailedPrecondition:
		return true
	}
	return false
}

func asPasswordError(err error, target **signin.PasswordError) bool { return errors.As(err, target) }

func isNoSession(err error) bool { return errors.Is(err, signin.ErrNoSession) }
