package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// Style is the fault body format of one OpenStack service.
type Style int

// Fault styles.
const (
	// Keystone: {"error": {"code", "title", "message"}}.
	Keystone Style = iota
	// Neutron: {"NeutronError": {"type", "message", "detail"}}.
	Neutron
	// Nova: {"<kind>": {"code", "message"}} with kind such as itemNotFound.
	Nova
	// Glance: {"code", "title", "message"}-free plain text bodies, as Glance's
	// webob errors ("404 Not Found\n\n<message>").
	Glance
)

// Status maps an error to its HTTP status: the one place where domain error
// sentinels become HTTP.
func Status(style Style, err error) int {
	switch {
	case errors.Is(err, errdefs.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, errdefs.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, errdefs.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, errdefs.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errdefs.ErrQuotaExceeded):
		if style == Nova {
			return http.StatusForbidden
		}
		return http.StatusConflict
	case errors.Is(err, errdefs.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, errdefs.ErrMethodNotAllowed):
		return http.StatusMethodNotAllowed
	case errors.Is(err, errdefs.ErrNotImplemented):
		return http.StatusNotImplemented
	case errors.Is(err, errdefs.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// novaKinds are Nova's fault body keys by status.
var novaKinds = map[int]string{400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
	405: "badMethod", 409: "conflictingRequest", 413: "overLimit", 501: "notImplemented", 503: "serviceUnavailable"}

// neutronTypes are Neutron's default fault types by status.
var neutronTypes = map[int]string{400: "HTTPBadRequest", 401: "HTTPUnauthorized", 403: "HTTPForbidden",
	404: "HTTPNotFound", 405: "HTTPMethodNotAllowed", 409: "HTTPConflict", 501: "HTTPNotImplemented", 503: "HTTPServiceUnavailable"}

// faultBody renders the body of an error response.
func faultBody(style Style, status int, err error) (contentType string, body []byte) {
	msg := errdefs.Message(err)
	if status == http.StatusInternalServerError {
		msg = "An unexpected error prevented the server from fulfilling your request."
	}
	var v any
	switch style {
	case Neutron:
		typ := errdefs.TypeOf(err)
		if typ == "" {
			typ = neutronTypes[status]
		}
		v = map[string]any{"NeutronError": map[string]string{"type": typ, "message": msg, "detail": ""}}
	case Nova:
		kind := novaKinds[status]
		if kind == "" {
			kind = "computeFault"
		}
		v = map[string]any{kind: map[string]any{"code": status, "message": msg}}
	case Glance:
		return "text/plain; charset=UTF-8", []byte(http.StatusText(status) + "\n\n" + msg + "\n\n")
	default:
		v = map[string]any{"error": map[string]any{"code": status, "title": http.StatusText(status), "message": msg}}
	}
	b, _ := json.Marshal(v)
	return "application/json", b
}
