// Package invalid describes bad input field by field, so that the admin API can
// answer with google.rpc.BadRequest field violations and a CLI user learns
// exactly which flag to fix.
package invalid

import (
	"errors"
	"fmt"
)

// FieldError says that one input field is wrong and why.
type FieldError struct {
	Field  string // path in the request, e.g. "tenant.slug"
	Reason string // what is wrong, phrased as what the value must be
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Field returns a *FieldError for field.
func Field(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Prefix returns err with prefix+"." in front of every field name it holds,
// for validating a nested message with the validator of its own type.
func Prefix(prefix string, err error) error {
	if err == nil {
		return nil
	}
	fields := Fields(err)
	if len(fields) == 0 {
		return err
	}
	errs := make([]error, 0, len(fields))
	for _, f := range fields {
		errs = append(errs, &FieldError{Field: prefix + "." + f.Field, Reason: f.Reason})
	}
	return errors.Join(errs...)
}

// Fields returns every *FieldError in err's tree, in order.
func Fields(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		// Type assertions, not errors.As: the walk visits every node of
		// the tree itself, and errors.As would stop at the first match.
		if fe, ok := err.(*FieldError); ok { //nolint:errorlint // walks the tree itself; see above
			out = append(out, fe)
			return
		}
		switch u := err.(type) { //nolint:errorlint // walks the tree itself; see above
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}
