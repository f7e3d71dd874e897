package metadata_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/metadata"
)

const (
	ec2Index = "1.0\n2007-01-19\n2007-03-01\n2007-08-29\n2007-10-10\n2007-12-15\n2008-02-01\n2008-09-01\n2009-04-04\nlatest"
	osIndex  = "2012-08-10\n2013-04-04\n2013-10-17\n2015-10-15\n2016-06-30\n2016-10-06\n2017-02-22\n2018-08-27\n2020-10-14\n2025-04-04\nlatest"
)

// fakeLookup knows ports by network and address and records its calls.
type fakeLookup struct {
	mu    sync.Mutex
	ports map[string]metadata.Requester // key: network + " " + ip
	err   error                         // returned for every call when set
	calls []string
}

func key(network string, ip netip.Addr) string { return network + " " + ip.String() }

func (f *fakeLookup) Port(ctx context.Context, networkID string, ip netip.Addr) (metadata.Requester, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, key(networkID, ip))
	if f.err != nil {
		return metadata.Requester{}, f.err
	}
	if _, ok := ctx.Deadline(); !ok {
		return metadata.Requester{}, errors.New("lookup called without a deadline")
	}
	r, ok := f.ports[key(networkID, ip)]
	if !ok {
		return metadata.Requester{}, errdefs.NotFoundf("no port with %s on %s", ip, networkID)
	}
	return r, nil
}

func (f *fakeLookup) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// recordingContent records whom it served and which headers it saw.
type recordingContent struct {
	mu     sync.Mutex
	who    []metadata.Requester
	header []http.Header
}

func (c *recordingContent) Serve(w http.ResponseWriter, r *http.Request, who metadata.Requester) {
	c.mu.Lock()
	c.who = append(c.who, who)
	c.header = append(c.header, r.Header.Clone())
	c.mu.Unlock()
	fmt.Fprintf(w, "hello %s", who.PortID)
}

var (
	vm = metadata.Requester{
		PortID: "port-vm", DeviceID: "inst-1", DeviceOwner: "compute:nova", ProjectID: "proj-1",
		// A lookup that echoes something else must not change the identity.
		NetworkID: "echoed", IP: netip.MustParseAddr("10.99.99.99"),
	}
	dhcpPort = metadata.Requester{PortID: "port-dhcp", DeviceID: "dhcp-net-a", DeviceOwner: "network:dhcp", ProjectID: "proj-1"}
)

func newLookup() *fakeLookup {
	return &fakeLookup{ports: map[string]metadata.Requester{
		key("net-a", netip.MustParseAddr("10.10.0.5")): vm,
		key("net-a", netip.MustParseAddr("10.10.0.2")): dhcpPort,
		key("net-b", netip.MustParseAddr("10.20.0.5")): {PortID: "port-b", DeviceID: "inst-2", DeviceOwner: "compute:az1"},
	}}
}

// do sends one request through the handler as if from remote.
func do(t *testing.T, h http.Handler, method, path, remote string, hdr http.Header) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, "http://169.254.169.254"+path, nil)
	r.RemoteAddr = remote
	for k, v := range hdr {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if got := w.Header().Get("Server"); got != metadata.ServerName {
		t.Errorf("%s %s from %s: Server header %q, want %q", method, path, remote, got, metadata.ServerName)
	}
	return w
}

func TestRequesterFromRemoteAddr(t *testing.T) {
	lk, c := newLookup(), &recordingContent{}
	srv := metadata.New(metadata.Config{Source: metadata.Fixed("net-a"), Lookup: lk, Content: c})
	for _, remote := range []string{"10.10.0.5:43210", "[::ffff:10.10.0.5]:43210"} {
		w := do(t, srv, "GET", "/openstack/latest/meta_data.json", remote, nil)
		if w.Code != 200 || w.Body.String() != "hello port-vm" {
			t.Fatalf("from %s: got %d %q", remote, w.Code, w.Body)
		}
	}
	want := vm
	want.NetworkID, want.IP = "net-a", netip.MustParseAddr("10.10.0.5")
	for i, got := range c.who {
		if got != want {
			t.Errorf("request %d: content got requester %+v, want %+v", i, got, want)
		}
	}
	if calls := lk.Calls(); len(calls) != 2 || calls[0] != "net-a 10.10.0.5" || calls[1] != "net-a 10.10.0.5" {
		t.Errorf("lookup calls %q", calls)
	}
}

func TestForgedHeadersIgnored(t *testing.T) {
	lk, c := newLookup(), &recordingContent{}
	srv := metadata.New(metadata.Config{Source: metadata.Fixed("net-a"), Lookup: lk, Content: c})
	forged := http.Header{
		"X-Forwarded-For":         {"10.10.0.5"},
		"Forwarded":               {"for=10.10.0.5"},
		"X-Real-Ip":               {"10.10.0.5"},
		"X-Instance-Id":           {"inst-1"},
		"X-Instance-Id-Signature": {"abc"},
		"X-Tenant-Id":             {"proj-1"},
		"X-Metadata-Provider":     {"x"},
		"User-Agent":              {"cloud-init"},
	}
	// An unknown guest claiming to be the known one is still unknown.
	w := do(t, srv, "GET", "/openstack/latest/meta_data.json", "10.10.0.66:5000", forged)
	if w.Code != http.StatusNotFound {
		t.Fatalf("forged X-Forwarded-For from an unknown source: got %d %q, want 404", w.Code, w.Body)
	}
	if len(c.who) != 0 {
		t.Fatalf("content served a forged requester: %+v", c.who)
	}
	// A known guest is identified by its own address, and the content never
	// sees the forgeable headers.
	w = do(t, srv, "GET", "/latest/meta-data/", "10.10.0.2:5000", forged)
	if w.Code != 200 || len(c.who) != 1 || c.who[0].PortID != "port-dhcp" {
		t.Fatalf("got %d %q, requesters %+v", w.Code, w.Body, c.who)
	}
	for h := range forged {
		if h == "User-Agent" {
			if c.header[0].Get(h) != "cloud-init" {
				t.Errorf("ordinary header %s was removed", h)
			}
			continue
		}
		if v, ok := c.header[0][h]; ok {
			t.Errorf("content saw forgeable header %s: %q", h, v)
		}
	}
	if calls := lk.Calls(); len(calls) != 2 || calls[0] != "net-a 10.10.0.66" || calls[1] != "net-a 10.10.0.2" {
		t.Errorf("lookup calls %q", calls)
	}
}

func TestUnknownSource(t *testing.T) {
	subnets := metadata.NewSubnets(map[netip.Prefix]string{
		netip.MustParsePrefix("10.10.0.0/24"): "net-a",
		netip.MustParsePrefix("10.20.0.0/24"): "net-b",
	})
	lk := newLookup()
	srv := metadata.New(metadata.Config{Source: subnets.Network, Lookup: lk})
	for _, tc := range []struct {
		remote, path, want string
	}{
		{"10.30.0.5:1000", "/openstack", "address 10.30.0.5 is on no network this metadata service serves"},
		{"10.30.0.5:1000", "/latest/meta-data/instance-id", "address 10.30.0.5 is on no network"},
		{"10.10.0.77:1000", "/openstack/latest/meta_data.json", "no port has address 10.10.0.77 on network net-a"},
		{"10.20.0.77:1000", "/2009-04-04/user-data", "no port has address 10.20.0.77 on network net-b"},
	} {
		w := do(t, srv, "GET", tc.path, tc.remote, nil)
		if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("GET %s from %s: got %d %q, want 404 with %q", tc.path, tc.remote, w.Code, w.Body, tc.want)
		}
		if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("GET %s from %s: Content-Type %q", tc.path, tc.remote, ct)
		}
	}
	// Sources on no served network are never looked up.
	if calls := lk.Calls(); len(calls) != 2 || calls[0] != "net-a 10.10.0.77" || calls[1] != "net-b 10.20.0.77" {
		t.Errorf("lookup calls %q", calls)
	}
	// The EC2 index needs no identity (Nova answers it to anyone).
	if w := do(t, srv, "GET", "/", "10.30.0.5:1000", nil); w.Code != 200 || w.Body.String() != ec2Index {
		t.Errorf("GET / from an unknown source: got %d %q", w.Code, w.Body)
	}
}

func TestLookupFailure(t *testing.T) {
	lk := newLookup()
	lk.err = errdefs.ErrUnavailable
	srv := metadata.New(metadata.Config{Source: metadata.Fixed("net-a"), Lookup: lk})
	w := do(t, srv, "GET", "/openstack/latest/meta_data.json", "10.10.0.5:1000", nil)
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "try your request again") {
		t.Errorf("got %d %q, want 500", w.Code, w.Body)
	}
}

func TestKnownPortDefaultContent(t *testing.T) {
	srv := metadata.New(metadata.Config{Source: metadata.Fixed("net-a"), Lookup: newLookup()})
	for _, tc := range []struct {
		remote, path string
		code         int
		want         string
	}{
		{"10.10.0.2:1000", "/openstack/latest/meta_data.json", 404, "no instance is attached to port port-dhcp (device_owner network:dhcp)\n"},
		{"10.10.0.2:1000", "/latest/meta-data/", 404, "no instance is attached to port port-dhcp (device_owner network:dhcp)\n"},
		{"10.10.0.2:1000", "/openstack/2012-08-10/user_data", 404, "no instance is attached to port port-dhcp (device_owner network:dhcp)\n"},
		{"10.10.0.5:1000", "/openstack/latest/meta_data.json", 404, "no metadata is available for instance inst-1 (port port-vm)\n"},
		{"10.10.0.2:1000", "/openstack", 200, osIndex},
		{"10.10.0.5:1000", "/openstack/", 200, osIndex},
	} {
		w := do(t, srv, "GET", tc.path, tc.remote, nil)
		if w.Code != tc.code || w.Body.String() != tc.want {
			t.Errorf("GET %s from %s: got %d %q, want %d %q", tc.path, tc.remote, w.Code, w.Body, tc.code, tc.want)
		}
	}
}

func TestVersionIndexes(t *testing.T) {
	srv := metadata.New(metadata.Config{Source: metadata.Fixed("net-a"), Lookup: newLookup()})
	for _, tc := range []struct{ path, want string }{
		{"/", ec2Index},
		{"//", ec2Index},
		{"/ec2", ec2Index},
		{"/ec2/", ec2Index},
		{"/openstack", osIndex},
		{"/openstack/", osIndex},
		{"/openstack/.", osIndex},
		{"/latest/..", ec2Index},
	} {
		w := do(t, srv, "GET", tc.path, "10.10.0.5:1000", nil)
		if w.Code != 200 || w.Body.String() != tc.want {
			t.Errorf("GET %s: got %d %q, want %q", tc.path, w.Code, w.Body, tc.want)
		}
		if ct := w.Header().Get("Content-Type"); ct != "text/plain; charset=UTF-8" {
			t.Errorf("GET %s: Content-Type %q", tc.path, ct)
		}
	}
	if w := do(t, srv, "HEAD", "/openstack", "10.10.0.5:1000", nil); w.Code != 200 {
		t.Errorf("HEAD /openstack: %d", w.Code)
	}
	if w := do(t, srv, "DELETE", "/", "10.10.0.5:1000", nil); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("DELETE /: %d, Allow %q", w.Code, w.Header().Get("Allow"))
	}
	if got := strings.Join(append(metadata.EC2Versions(), metadata.Latest), "\n"); got != ec2Index {
		t.Errorf("EC2Versions: %q", got)
	}
	if got := strings.Join(append(metadata.OpenStackVersions(), metadata.Latest), "\n"); got != osIndex {
		t.Errorf("OpenStackVersions: %q", got)
	}
}

func TestSubnets(t *testing.T) {
	var empty metadata.Subnets
	if id, ok := empty.Network(netip.MustParseAddr("10.0.0.1")); ok {
		t.Errorf("zero Subnets found %q", id)
	}
	s := metadata.NewSubnets(map[netip.Prefix]string{
		netip.MustParsePrefix("10.10.0.0/16"):   "wide",
		netip.MustParsePrefix("10.10.5.1/24"):   "narrow", // not masked on purpose
		netip.MustParsePrefix("fd00:1::/64"):    "v6",
		netip.MustParsePrefix("172.24.4.0/24"):  "ext",
		netip.MustParsePrefix("10.200.0.0/30"):  "tiny",
		netip.MustParsePrefix("10.200.0.64/26"): "other",
	})
	for _, tc := range []struct {
		ip, want string
		ok       bool
	}{
		{"10.10.5.9", "narrow", true},
		{"10.10.6.9", "wide", true},
		{"::ffff:10.10.5.9", "narrow", true},
		{"fd00:1::5", "v6", true},
		{"10.200.0.2", "tiny", true},
		{"10.200.0.5", "", false},
		{"10.11.0.1", "", false},
	} {
		id, ok := s.Network(netip.MustParseAddr(tc.ip))
		if id != tc.want || ok != tc.ok {
			t.Errorf("Network(%s) = %q, %v; want %q, %v", tc.ip, id, ok, tc.want, tc.ok)
		}
	}
	s.Set(map[netip.Prefix]string{netip.MustParsePrefix("10.11.0.0/24"): "new"})
	if id, ok := s.Network(netip.MustParseAddr("10.11.0.1")); !ok || id != "new" {
		t.Errorf("after Set: %q, %v", id, ok)
	}
	if _, ok := s.Network(netip.MustParseAddr("10.10.5.9")); ok {
		t.Error("after Set: old subnet still found")
	}
}

func TestNewRequiresSourceAndLookup(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New without a Lookup did not panic")
		}
	}()
	metadata.New(metadata.Config{Source: metadata.Fixed("x")})
}

func TestListenRejectsNames(t *testing.T) {
	for _, addr := range []string{"localhost:80", "metadata.example:80", "no-port"} {
		if ln, err := metadata.Listen(nil, addr); err == nil || !errors.Is(err, errdefs.ErrInvalid) {
			if ln != nil {
				ln.Close()
			}
			t.Errorf("Listen(%q): err %v, want ErrInvalid", addr, err)
		}
	}
}

// pipeListener is an in-memory listener whose connections claim to come
// from a chosen TCP address, so the real http.Server (timeouts, header
// limits, Serve and Shutdown) is tested without root and without any socket.
type pipeListener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

type pipeConn struct {
	net.Conn
	remote net.Addr
}

func (c pipeConn) RemoteAddr() net.Addr { return c.remote }
func (c pipeConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: metadata.Addr.AsSlice(), Port: 80}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: metadata.Addr.AsSlice(), Port: 80} }

// client returns an HTTP client whose connections reach l from src.
func (l *pipeListener) client(src netip.AddrPort) *http.Client {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		client, server := net.Pipe()
		select {
		case l.conns <- pipeConn{Conn: server, remote: net.TCPAddrFromAddrPort(src)}:
			return client, nil
		case <-l.closed:
			return nil, net.ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: dial}, Timeout: 10 * time.Second}
}

// TestServeRealServer runs the real http.Server of a Server: the requester
// is the connection's peer, forged headers do not matter, the header limit
// holds, and Shutdown ends Serve with nil and closes the listener.
func TestServeRealServer(t *testing.T) {
	lk := newLookup()
	srv := metadata.New(metadata.Config{Source: metadata.Fixed("net-a"), Lookup: lk})
	ln := newPipeListener()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	dhcpClient := ln.client(netip.MustParseAddrPort("10.10.0.2:40000"))
	strangerClient := ln.client(netip.MustParseAddrPort("10.10.0.66:40000"))
	defer dhcpClient.CloseIdleConnections()
	defer strangerClient.CloseIdleConnections()

	get := func(c *http.Client, path string, hdr http.Header) (int, string, http.Header) {
		t.Helper()
		req, err := http.NewRequest("GET", "http://169.254.169.254"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	if code, body, h := get(dhcpClient, "/openstack", nil); code != 200 || body != osIndex || h.Get("Server") != metadata.ServerName {
		t.Errorf("GET /openstack: %d %q, Server %q", code, body, h.Get("Server"))
	}
	code, body, _ := get(dhcpClient, "/openstack/latest/meta_data.json", nil)
	if code != 404 || body != "no instance is attached to port port-dhcp (device_owner network:dhcp)\n" {
		t.Errorf("GET meta_data.json: %d %q", code, body)
	}
	code, body, _ = get(strangerClient, "/openstack/latest/meta_data.json", http.Header{"X-Forwarded-For": {"10.10.0.2"}})
	if code != 404 || !strings.Contains(body, "no port has address 10.10.0.66") {
		t.Errorf("GET meta_data.json with a forged X-Forwarded-For: %d %q", code, body)
	}
	if calls := lk.Calls(); len(calls) != 3 || calls[2] != "net-a 10.10.0.66" {
		t.Errorf("lookup calls %q", calls)
	}
	if code, _, _ := get(dhcpClient, "/", http.Header{"X-Big": {strings.Repeat("a", 2*metadata.MaxHeaderBytes)}}); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized headers: %d, want 431", code)
	}

	dhcpClient.CloseIdleConnections()
	strangerClient.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve returned %v after Shutdown, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
	select {
	case <-ln.closed:
	default:
		t.Error("Serve did not close its listener")
	}
}
