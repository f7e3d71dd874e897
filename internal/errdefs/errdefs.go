// Package errdefs holds nimbo's domain error sentinels. Services wrap them
// (with %w, or with the constructors here, which also carry the message a user
// sees) and the HTTP layer maps them to each OpenStack service's fault format in
// exactly one place (internal/server).
package errdefs

import (
	"errors"
	"fmt"
)

// Sentinels. Test with errors.Is.
var (
	// ErrInvalid is bad input: malformed JSON, a missing or wrong field (HTTP 400).
	ErrInvalid = errors.New("invalid request")
	// ErrUnauthorized is a missing, expired, revoked or wrong credential (HTTP 401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden is an authenticated caller that policy does not allow (HTTP 403).
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound is a resource that does not exist or is not visible (HTTP 404).
	ErrNotFound = errors.New("not found")
	// ErrConflict is a duplicate, an in-use resource or a lost compare-and-swap (HTTP 409).
	ErrConflict = errors.New("conflict")
	// ErrQuotaExceeded is a request over a project quota (HTTP 409 in Neutron, 403 in Nova).
	ErrQuotaExceeded = errors.New("quota exceeded")
	// ErrNotImplemented is a valid request nimbo does not support (HTTP 501).
	ErrNotImplemented = errors.New("not implemented")
	// ErrMethodNotAllowed is an HTTP method a resource does not have (HTTP 405).
	ErrMethodNotAllowed = errors.New("method not allowed")
	// ErrUnavailable is a dependency that is down, such as the store (HTTP 503).
	ErrUnavailable = errors.New("service unavailable")
)

// Error is a domain error: a sentinel kind, the message shown to the user and
// optionally a machine-readable type (Neutron's "NetworkNotFound" and the like).
type Error struct {
	Kind error  // one of the sentinels above
	Type string // optional fault type name, e.g. "NetworkInUse"
	Msg  string // the message shown to users
}

// Error returns the user-facing message.
func (e *Error) Error() string { return e.Msg }

// Unwrap returns the sentinel so errors.Is works.
func (e *Error) Unwrap() error { return e.Kind }

func newf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Invalidf returns an ErrInvalid error with a formatted message naming the field.
func Invalidf(format string, args ...any) error { return newf(ErrInvalid, format, args...) }

// Unauthorizedf returns an ErrUnauthorized error with a formatted message.
func Unauthorizedf(format string, args ...any) error {
	return newf(ErrUnauthorized, format, args...)
}

// Forbiddenf returns an ErrForbidden error with a formatted message.
func Forbiddenf(format string, args ...any) error { return newf(ErrForbidden, format, args...) }

// NotFoundf returns an ErrNotFound error with a formatted message.
func NotFoundf(format string, args ...any) error { return newf(ErrNotFound, format, args...) }

// Conflictf returns an ErrConflict error with a formatted message.
func Conflictf(format string, args ...any) error { return newf(ErrConflict, format, args...) }

// NotImplementedf returns an ErrNotImplemented error with a formatted message.
func NotImplementedf(format string, args ...any) error {
	return newf(ErrNotImplemented, format, args...)
}

// Typed returns err with a fault type name attached (kept if err already has one).
func Typed(typ string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		c := *e
		if c.Type == "" {
			c.Type = typ
		}
		return &c
	}
	return &Error{Kind: err, Type: typ, Msg: err.Error()}
}

// Message returns the user-facing message of err: the domain message when err
// carries one, else err's text.
func Message(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Msg
	}
	return err.Error()
}

// TypeOf returns the fault type name carried by err, or "".
func TypeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Type
	}
	return ""
}

// IsConflict reports whether err wraps ErrConflict.
func IsConflict(err error) bool { return errors.Is(err, ErrConflict) }

// IsNotFound reports whether err wraps ErrNotFound.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
