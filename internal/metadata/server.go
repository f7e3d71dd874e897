package metadata

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
)

// ServerName is the value of the Server header on every response the
// handler writes.
const ServerName = "nimbo-metadata"

// Limits of the HTTP server. Guests are untrusted: requests are small GETs
// (and, for Nova's password, a POST of at most 255 bytes), so headers and
// bodies are kept small and slow clients are cut off.
const (
	DefaultLookupTimeout = 5 * time.Second  // Config.LookupTimeout when 0
	ReadHeaderTimeout    = 5 * time.Second  // to read a request's headers
	ReadTimeout          = 10 * time.Second // to read a whole request
	WriteTimeout         = 30 * time.Second // from the end of the headers to the end of the response
	IdleTimeout          = 60 * time.Second // a keep-alive connection between requests
	MaxHeaderBytes       = 8 << 10          // request line and headers
	MaxBodyBytes         = 64 << 10         // a request body; reading more fails
)

// forgeable are request headers that name a client or an instance and that a
// guest can simply send. The requester is identified from the connection,
// never from these; they are removed before the request reaches the Content
// so that no Content can trust them by mistake.
var forgeable = []string{
	"Forwarded",
	"X-Forwarded-For",
	"X-Forwarded-Host",
	"X-Forwarded-Port",
	"X-Forwarded-Proto",
	"X-Forwarded-Server",
	"X-Original-Forwarded-For",
	"X-Real-Ip",
	"X-Client-Ip",
	"True-Client-Ip",
	"Cf-Connecting-Ip",
	// Neutron's metadata proxy headers, which Nova trusts when they are
	// signed: nimbo has no proxy, so a guest sending them is forging.
	"X-Instance-Id",
	"X-Instance-Id-Signature",
	"X-Tenant-Id",
	"X-Metadata-Provider",
	"X-Metadata-Provider-Signature",
}

// Config configures a Server.
type Config struct {
	// Source picks the network of a request's source address (required).
	Source Source
	// Lookup finds the port behind a network and source address (required).
	Lookup Lookup
	// Content answers identified requesters; nil for DefaultContent.
	Content Content
	// LookupTimeout bounds one Lookup call; 0 for DefaultLookupTimeout.
	LookupTimeout time.Duration
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
}

// Server is a metadata HTTP server. It can serve several listeners at once.
// Its handler is usable on its own (ServeHTTP), for example with
// net/http/httptest.
type Server struct {
	cfg    Config
	log    *slog.Logger
	srv    *http.Server
	ctx    context.Context // the parent of every request's context
	cancel context.CancelFunc
}

// New returns a server for cfg. It panics if cfg.Source or cfg.Lookup is
// nil (a programming error, like registering a nil http.Handler).
func New(cfg Config) *Server {
	if cfg.Source == nil || cfg.Lookup == nil {
		panic("metadata: Config.Source and Config.Lookup are required")
	}
	if cfg.Content == nil {
		cfg.Content = DefaultContent{}
	}
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = DefaultLookupTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

// Listen opens a TCP listener on addr (an IP literal and a port, such as
// "169.254.169.254:80" or "10.0.0.1:9697"; an empty host means every
// address) inside the namespace ns, or in the process's own namespace if ns
// is nil. The socket belongs to that namespace for its whole life, whichever
// goroutine later accepts on it. Serve closes it when it returns.
func Listen(ns *hostnet.NS, addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, errdefs.Invalidf("metadata: listen address %q: %v", addr, err)
	}
	if host != "" {
		// A name would be resolved, possibly on other threads (outside the
		// namespace) and over the network.
		if _, err := netip.ParseAddr(host); err != nil {
			return nil, errdefs.Invalidf("metadata: listen address %q: host must be an IP address", addr)
		}
	}
	var ln net.Listener
	listen := func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}
	if ns != nil {
		err = ns.Do(listen)
	} else {
		err = listen()
	}
	if err != nil {
		where := "own namespace"
		if ns != nil {
			where = ns.Path()
		}
		return nil, fmt.Errorf("metadata: listen on %s in %s: %w", addr, where, err)
	}
	return ln, nil
}

// Serve accepts connections on ln and answers them until Shutdown or Close,
// then returns nil (other errors from accepting are returned). It closes ln
// when it returns.
func (s *Server) Serve(ln net.Listener) error {
	s.log.Info("metadata: serving", "addr", ln.Addr().String())
	err := s.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the server gracefully: it closes the listeners, then waits
// for the requests being answered until ctx is done, after which it closes
// the remaining connections and cancels their requests. It returns ctx's
// error if it had to cut requests off. Serve returns once it is called.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.cancel()
	if err != nil {
		_ = s.srv.Close()
	}
	s.log.Info("metadata: stopped")
	return err
}

// Close stops the server at once: it closes the listeners and every
// connection and cancels the requests being answered.
func (s *Server) Close() error {
	s.cancel()
	err := s.srv.Close()
	s.log.Info("metadata: stopped")
	return err
}

// ServeHTTP identifies the requester from the connection's peer address
// (r.RemoteAddr), resolves its port and hands the request to the Content.
// The EC2 version index at / is answered to anyone, as Nova does; every other
// path from a source that is on no served network or has no port gets a
// 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Server", ServerName)
	sw := &statusWriter{ResponseWriter: w}
	w = sw
	var stripped []string
	for _, h := range forgeable {
		if _, ok := r.Header[h]; ok {
			stripped = append(stripped, h)
			r.Header.Del(h)
		}
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	}
	log := s.log.With("remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
	if len(stripped) > 0 {
		log.Debug("metadata: ignoring client-supplied identity headers", "headers", stripped)
	}
	defer func() { log.Debug("metadata: answered", "status", sw.status) }()

	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		// Only a listener that is not TCP/IP gets here.
		log.Error("metadata: cannot identify the requester", "err", err)
		writeText(w, http.StatusForbidden, "cannot identify the requester: its address is not an IP address\n")
		return
	}
	ip := ap.Addr().Unmap().WithZone("")
	log = log.With("src", ip.String())

	if CleanPath(r.URL.Path) == "/" && ServeVersions(w, r) {
		return
	}
	networkID, ok := s.cfg.Source(ip)
	if !ok {
		log.Info("metadata: request from an address on no served network")
		writeText(w, http.StatusNotFound, fmt.Sprintf("no instance found: address %s is on no network this metadata service serves\n", ip))
		return
	}
	log = log.With("network", networkID)
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.LookupTimeout)
	who, err := s.cfg.Lookup.Port(ctx, networkID, ip)
	cancel()
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		log.Info("metadata: request from an unknown address")
		writeText(w, http.StatusNotFound, fmt.Sprintf("no instance found: no port has address %s on network %s\n", ip, networkID))
		return
	case err != nil:
		log.Error("metadata: looking up the requester's port", "err", err)
		// Nova's answer when it cannot look the instance up.
		writeText(w, http.StatusInternalServerError, "An unknown error has occurred. Please try your request again.\n")
		return
	}
	// The observed network and address are the identity, whatever the
	// lookup echoes.
	who.NetworkID, who.IP = networkID, ip
	log = log.With("port", who.PortID, "device", who.DeviceID)
	s.cfg.Content.Serve(w, r, who)
}

// statusWriter records the status code of a response for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
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

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
