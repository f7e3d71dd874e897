package metadata_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/metadata"
	"github.com/nimbo-cloud/nimbo/internal/testenv"
)

// The main thread stays in the process's namespace, so that no goroutine that
// switches namespaces (hostnet.NS.Do, testenv.Netns.Do) ever runs on it.
func init() { runtime.LockOSThread() }

func openNS(t *testing.T, n *testenv.Netns) *hostnet.NS {
	t.Helper()
	ns, err := hostnet.Open(n.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// clientFrom returns an HTTP client whose connections are opened inside n
// from the source address src.
func clientFrom(t *testing.T, n *testenv.Netns, src netip.Addr) *http.Client {
	t.Helper()
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := n.Do(func() error {
			// A literal address and no fallback racer: the socket is made on
			// this thread, inside the namespace.
			d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), FallbackDelay: -1}
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	tr := &http.Transport{Proxy: nil, DialContext: dial}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestServeInNamespace runs the server on 169.254.169.254:80 inside one
// namespace (as in a network's DHCP namespace) and reaches it from a guest
// namespace connected by a veth, with a route to 169.254.169.254 via the
// server's leg: the socket lives in the server's namespace, and the requester
// is told apart by its source address.
func TestServeInNamespace(t *testing.T) {
	testenv.RequireRoot(t)
	ctx := context.Background()
	srvN, guestN := testenv.NewNetns(t), testenv.NewNetns(t)
	srvNS, guestNS := openNS(t, srvN), openNS(t, guestN)

	known, stranger := netip.MustParseAddr("10.77.0.5"), netip.MustParseAddr("10.77.0.6")
	if err := srvNS.EnsureVeth(ctx, hostnet.Veth{Name: "md0", Peer: hostnet.VethPeer{
		NS: guestNS, Name: "eth0",
		Addrs: []netip.Prefix{netip.PrefixFrom(known, 24), netip.PrefixFrom(stranger, 24)},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := srvNS.SetAddrs(ctx, "md0", []netip.Prefix{
		netip.MustParsePrefix("10.77.0.2/24"),
		netip.PrefixFrom(metadata.Addr, 32),
	}); err != nil {
		t.Fatal(err)
	}
	if err := guestNS.EnsureRoute(ctx, hostnet.Route{
		Dst: netip.PrefixFrom(metadata.Addr, 32), Gw: netip.MustParseAddr("10.77.0.2"), Dev: "eth0",
	}); err != nil {
		t.Fatal(err)
	}

	ln, err := metadata.Listen(srvNS, "169.254.169.254:80")
	if err != nil {
		t.Fatal(err)
	}
	lk := &fakeLookup{ports: map[string]metadata.Requester{
		key("net-md", known): {PortID: "port-probe", DeviceID: "probe-1", DeviceOwner: "network:probe", ProjectID: "proj-1"},
	}}
	srv := metadata.New(metadata.Config{Source: metadata.Fixed("net-md"), Lookup: lk})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// Registered after the namespaces, so it runs before they are deleted.
	t.Cleanup(func() {
		srv.Close()
		<-served
	})

	// The listening socket is in the server's namespace's TCP table
	// (169.254.169.254:80 is FEA9FEA9:0050 there, state 0A is LISTEN).
	err = srvNS.Do(func() error {
		b, err := os.ReadFile("/proc/thread-self/net/tcp")
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), " FEA9FEA9:0050 00000000:0000 0A ") {
			t.Errorf("no listener on 169.254.169.254:80 in the server's namespace:\n%s", b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	get := func(c *http.Client, path string) (int, string, http.Header) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "GET", "http://169.254.169.254"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Forwarded-For", known.String()) // must not matter
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp.StatusCode, string(b), resp.Header
	}
	guest, other := clientFrom(t, guestN, known), clientFrom(t, guestN, stranger)

	if code, body, h := get(guest, "/"); code != 200 || body != ec2Index || h.Get("Server") != metadata.ServerName {
		t.Errorf("GET /: %d %q, Server %q", code, body, h.Get("Server"))
	}
	if code, body, _ := get(guest, "/openstack/"); code != 200 || body != osIndex {
		t.Errorf("GET /openstack/: %d %q", code, body)
	}
	if code, body, _ := get(guest, "/openstack/latest/meta_data.json"); code != 404 ||
		body != "no instance is attached to port port-probe (device_owner network:probe)\n" {
		t.Errorf("GET meta_data.json from the known port: %d %q", code, body)
	}
	if code, body, _ := get(other, "/openstack/latest/meta_data.json"); code != 404 ||
		!strings.Contains(body, "no port has address 10.77.0.6 on network net-md") {
		t.Errorf("GET meta_data.json from an unknown address: %d %q", code, body)
	}
	calls := lk.Calls()
	want := []string{"net-md 10.77.0.5", "net-md 10.77.0.5", "net-md 10.77.0.6"}
	if strings.Join(calls, ",") != strings.Join(want, ",") {
		t.Errorf("lookup calls %q, want %q", calls, want)
	}

	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
