// Package server is nimbo's HTTP front: one port serving every OpenStack API
// under its path prefix (Keystone at /, Neutron at /networking, ...), with the
// middleware every call passes through — request IDs, access logs, panic
// recovery, token authentication — and the single mapping of domain errors to
// each service's OpenStack fault format (fault.go).
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/identity"
)

// Validator validates tokens (the identity service).
type Validator interface {
	Validate(ctx context.Context, token string) (*identity.Token, error)
}

// HandlerFunc is an API handler: it writes a response, or returns an error
// that the server renders as a fault of the route's style.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Server routes API requests.
type Server struct {
	mux       *http.ServeMux
	validator Validator
	log       *slog.Logger
	// AuthURL is advertised in WWW-Authenticate on 401s.
	authURL string
	// prefixes maps path prefixes to fault styles for unrouted requests.
	prefixes map[string]Style
	// jsonSuffix lists prefixes under which a trailing ".json" is ignored.
	jsonSuffix []string
}

// AcceptJSONSuffix makes paths under p also answer with a ".json" suffix
// (/quotas/x/details.json), as Neutron's do.
func (s *Server) AcceptJSONSuffix(p string) { s.jsonSuffix = append(s.jsonSuffix, p) }

// New returns a server that authenticates with v.
func New(v Validator, authURL string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{mux: http.NewServeMux(), validator: v, log: log, authURL: authURL, prefixes: map[string]Style{}}
}

// Prefix declares that unrouted requests under p get faults of style.
func (s *Server) Prefix(p string, style Style) { s.prefixes[p] = style }

type ctxKey int

const (
	tokenKey ctxKey = iota
	requestIDKey
)

// TokenFrom returns the caller's validated token (nil on public routes).
func TokenFrom(ctx context.Context) *identity.Token {
	t, _ := ctx.Value(tokenKey).(*identity.Token)
	return t
}

// RequestID returns the request's ID ("req-<uuid>").
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// Public registers a route that needs no token.
func (s *Server) Public(style Style, pattern string, h HandlerFunc) {
	s.mux.Handle(pattern, s.wrap(style, false, h))
}

// Authed registers a route that needs a valid X-Auth-Token.
func (s *Server) Authed(style Style, pattern string, h HandlerFunc) {
	s.mux.Handle(pattern, s.wrap(style, true, h))
}

func (s *Server) wrap(style Style, authed bool, h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if authed {
			tok := r.Header.Get("X-Auth-Token")
			if tok == "" {
				s.Fault(w, r, style, errdefs.Unauthorizedf("The request you have made requires authentication."))
				return
			}
			t, err := s.validator.Validate(r.Context(), tok)
			if err != nil {
				if errdefs.IsNotFound(err) {
					err = errdefs.Unauthorizedf("The request you have made requires authentication.")
				}
				s.Fault(w, r, style, err)
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), tokenKey, t))
			if sw, ok := w.(*statusWriter); ok {
				sw.user = t.User.ID
			}
		}
		if err := h(w, r); err != nil {
			s.Fault(w, r, style, err)
		}
	})
}

// Fault writes err as a fault of style, logging server errors.
func (s *Server) Fault(w http.ResponseWriter, r *http.Request, style Style, err error) {
	status := Status(style, err)
	if status >= 500 {
		s.log.Error("request failed", "request_id", RequestID(r.Context()), "method", r.Method, "path", r.URL.Path, "err", err)
	}
	ct, body := faultBody(style, status, err)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Keystone uri="`+s.authURL+`"`)
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// JSON writes v as a JSON response with status.
func JSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return nil
}

// NoContent writes an empty 204.
func NoContent(w http.ResponseWriter) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// statusWriter records the status for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
	user   string
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return "req-" + h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// styleFor picks the fault style of an unrouted path.
func (s *Server) styleFor(path string) Style {
	for p, st := range s.prefixes {
		if path == p || strings.HasPrefix(path, p+"/") {
			return st
		}
	}
	return Keystone
}

// ServeHTTP serves a request through the middleware.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := newRequestID()
	sw := &statusWriter{ResponseWriter: w}
	sw.Header().Set("X-Openstack-Request-Id", id)
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("panic serving request", "request_id", id, "panic", p, "stack", string(debug.Stack()))
			if sw.status == 0 {
				s.Fault(sw, r, s.styleFor(r.URL.Path), errors.New("panic while serving the request"))
			}
		}
		lvl := slog.LevelDebug
		if sw.status >= 500 {
			lvl = slog.LevelWarn
		}
		s.log.Log(r.Context(), lvl, "request", "request_id", id, "method", r.Method, "path", r.URL.Path,
			"status", sw.status, "user", sw.user, "duration", time.Since(start))
	}()
	for _, p := range s.jsonSuffix {
		if strings.HasPrefix(r.URL.Path, p+"/") && strings.HasSuffix(r.URL.Path, ".json") {
			r.URL.Path = strings.TrimSuffix(r.URL.Path, ".json")
			r.URL.RawPath = ""
		}
	}
	h, pattern := s.mux.Handler(r)
	if pattern == "" { // unrouted: a 404 or a 405 in the service's fault format
		probe := &statusProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		style := s.styleFor(r.URL.Path)
		if probe.status == http.StatusMethodNotAllowed {
			sw.Header().Set("Allow", probe.header.Get("Allow"))
			s.Fault(sw, r, style, &errdefs.Error{Kind: errdefs.ErrMethodNotAllowed, Msg: "The method " + r.Method + " is not allowed for " + r.URL.Path + "."})
			return
		}
		s.Fault(sw, r, style, errdefs.NotFoundf("The resource could not be found."))
		return
	}
	s.mux.ServeHTTP(sw, r) // (not h: only the mux fills in r.PathValue)
}

// statusProbe captures what the mux's own 404/405 handler would answer.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(code int)        { p.status = code }
