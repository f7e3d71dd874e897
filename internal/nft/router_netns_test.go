package nft

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/testenv"
)

// routerLab is a Neutron-style router between two VMs on 10.0.0.0/24 and an
// "internet" on 203.0.113.0/24:
//
//	vm1 10.0.0.5 ─┐
//	vm2 10.0.0.6 ─┼─ br0 (switch ns) ─ qr0 10.0.0.1 [router] qg0 203.0.113.10 ─ eth0 203.0.113.1 [upstream]
//	                                                                             (+169.254.169.254)
//
// Both VMs route by 10.0.0.1; the router by 203.0.113.1; upstream has a
// route back to 10.0.0.0/24 (only used when SNAT is off).
type routerLab struct {
	router, vm1, vm2, up *testenv.Netns
	routerNS             *hostnet.NS
}

func newRouterLab(t *testing.T) *routerLab {
	t.Helper()
	ctx := context.Background()
	l := &routerLab{}
	swn := testenv.NewNetns(t)
	sw := openNS(t, swn)
	if err := sw.EnsureBridge(ctx, "br0", mac("02:00:5e:20:00:01"), 0); err != nil {
		t.Fatal(err)
	}
	l.router, l.vm1, l.vm2, l.up = testenv.NewNetns(t), testenv.NewNetns(t), testenv.NewNetns(t), testenv.NewNetns(t)
	l.routerNS = openNS(t, l.router)
	upNS := openNS(t, l.up)
	for _, v := range []struct {
		port string
		peer *testenv.Netns
		name string
		addr string
	}{{"pr", l.router, "qr0", "10.0.0.1/24"}, {"p1", l.vm1, "eth0", "10.0.0.5/24"}, {"p2", l.vm2, "eth0", "10.0.0.6/24"}} {
		ns := l.routerNS
		if v.peer != l.router {
			ns = openNS(t, v.peer)
		}
		if err := sw.EnsureVeth(ctx, hostnet.Veth{Name: v.port, Bridge: "br0", Peer: hostnet.VethPeer{
			NS: ns, Name: v.name, Addrs: []netip.Prefix{pfx4(v.addr)}}}); err != nil {
			t.Fatal(err)
		}
		if v.peer != l.router {
			if err := ns.EnsureRoute(ctx, hostnet.Route{Dst: pfx4("0.0.0.0/0"), Gw: ip4("10.0.0.1")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.routerNS.EnsureVeth(ctx, hostnet.Veth{Name: "qg0", Peer: hostnet.VethPeer{
		NS: upNS, Name: "eth0", Addrs: []netip.Prefix{pfx4("203.0.113.1/24"), pfx4("169.254.169.254/32")}}}); err != nil {
		t.Fatal(err)
	}
	if err := l.routerNS.SetAddrs(ctx, "qg0", []netip.Prefix{pfx4("203.0.113.10/24")}); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		l.routerNS.EnsureRoute(ctx, hostnet.Route{Dst: pfx4("0.0.0.0/0"), Gw: ip4("203.0.113.1")}),
		l.routerNS.SetSysctl(ctx, "net.ipv4.ip_forward", "1"),
		upNS.EnsureRoute(ctx, hostnet.Route{Dst: pfx4("10.0.0.0/24"), Gw: ip4("203.0.113.10")}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// server counts the connections or datagrams it got.
type server struct{ hits atomic.Int32 }

// serveTCP listens on addr in n. Each connection gets the line
// "local=ADDR:PORT remote=ADDR:PORT" and then an echo of what it sends.
func serveTCP(t *testing.T, n *testenv.Netns, addr string) *server {
	t.Helper()
	ln, err := n.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &server{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.hits.Add(1)
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "local=%s remote=%s\n", c.LocalAddr(), c.RemoteAddr())
				buf := make([]byte, 512)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return s
}

// serveUDP answers each datagram to addr in n with the same kind of line.
func serveUDP(t *testing.T, n *testenv.Netns, addr string) *server {
	t.Helper()
	var pc net.PacketConn
	if err := n.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	s := &server{}
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			s.hits.Add(1)
			_, _ = pc.WriteTo(fmt.Appendf(nil, "local=%s remote=%s\n", pc.LocalAddr(), from), from)
		}
	}()
	return s
}

// hello connects from n to addr (for UDP, sends a datagram) and returns the
// server's line, or an error if nothing came back within wait.
func hello(n *testenv.Netns, network, addr string, wait time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := n.DialContext(ctx, network, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	if network == "udp" {
		if _, err := c.Write([]byte("hi\n")); err != nil {
			return "", err
		}
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

const (
	passWait  = 3 * time.Second
	blockWait = 800 * time.Millisecond
)

// expectLine checks that a connection from n to addr gets through and that
// the server saw the wanted local and remote addresses (a remote's port is
// ignored; "" matches anything).
func expectLine(t *testing.T, what string, n *testenv.Netns, network, addr, local, remoteIP string) {
	t.Helper()
	line, err := hello(n, network, addr, passWait)
	if err != nil {
		t.Errorf("%s: %s %s: %v", what, network, addr, err)
		return
	}
	var gotLocal, gotRemote string
	if _, err := fmt.Sscanf(line, "local=%s remote=%s", &gotLocal, &gotRemote); err != nil {
		t.Errorf("%s: server said %q", what, line)
		return
	}
	ap, err := netip.ParseAddrPort(gotRemote)
	if err != nil {
		t.Errorf("%s: server said %q", what, line)
		return
	}
	if (local != "" && gotLocal != local) || (remoteIP != "" && ap.Addr().String() != remoteIP) {
		t.Errorf("%s: server saw local=%s remote=%s, want local=%s remote=%s:*", what, gotLocal, ap.Addr(), local, remoteIP)
	}
}

func expectBlocked(t *testing.T, what string, n *testenv.Netns, network, addr string) {
	t.Helper()
	if line, err := hello(n, network, addr, blockWait); err == nil {
		t.Errorf("%s: %s %s got through: %q", what, network, addr, line)
	}
}

func labRules() RouterRules {
	return RouterRules{
		GatewayIface: "qg0",
		GatewayIP:    ip4("203.0.113.10"),
		SNAT:         true,
		Internal:     []netip.Prefix{pfx4("10.0.0.0/24")},
		FloatingIPs:  []FloatingIP{{External: ip4("203.0.113.20"), Internal: ip4("10.0.0.5")}},
		Forwards: []Forward{
			{Protocol: ProtoTCP, External: ip4("203.0.113.10"), ExternalPortMin: 2222, Internal: ip4("10.0.0.6"), InternalPortMin: 22},
			{Protocol: ProtoUDP, External: ip4("203.0.113.10"), ExternalPortMin: 5353, Internal: ip4("10.0.0.6"), InternalPortMin: 53},
			// A shifted range (expanded port for port), on an address of its own.
			{Protocol: ProtoTCP, External: ip4("203.0.113.30"), ExternalPortMin: 8000, ExternalPortMax: 8009, Internal: ip4("10.0.0.6"), InternalPortMin: 9000, InternalPortMax: 9009},
			// The same ports, and N:1 (interval map).
			{Protocol: ProtoTCP, External: ip4("203.0.113.10"), ExternalPortMin: 7000, ExternalPortMax: 7009, Internal: ip4("10.0.0.6"), InternalPortMin: 7000, InternalPortMax: 7009},
			{Protocol: ProtoTCP, External: ip4("203.0.113.10"), ExternalPortMin: 6000, ExternalPortMax: 6009, Internal: ip4("10.0.0.6"), InternalPortMin: 22},
		},
		Metadata: &Metadata{Port: 9697},
	}
}

func TestRouterNATInNamespaces(t *testing.T) {
	ctx := context.Background()
	l := newRouterLab(t)
	upWeb := serveTCP(t, l.up, "203.0.113.1:80")
	upIMDS := serveTCP(t, l.up, "169.254.169.254:80")
	serveTCP(t, l.vm1, "10.0.0.5:80")
	for _, p := range []int{22, 9003, 7005} {
		serveTCP(t, l.vm2, fmt.Sprintf("10.0.0.6:%d", p))
	}
	serveUDP(t, l.vm2, "10.0.0.6:53")
	serveTCP(t, l.router, "0.0.0.0:9697")
	// Someone else's table in the router namespace is left alone.
	nftOut(t, l.router, "add", "table", "ip", "other")

	// Without NAT, upstream cannot answer the VMs' private addresses... it
	// can here (it has a route back), so check the source it sees instead.
	expectLine(t, "no NAT yet", l.vm2, "tcp", "203.0.113.1:80", "203.0.113.1:80", "10.0.0.6")

	rr := labRules()
	if err := SetGatewayAddrs(ctx, l.routerNS, rr, 24); err != nil {
		t.Fatal(err)
	}
	nat := NewRouterNAT(l.routerNS, nil)
	t.Cleanup(func() { _ = nat.Delete(context.Background()) })
	start := time.Now()
	st, err := nat.Apply(ctx, rr)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first Apply: %v, %+v", time.Since(start), st)
	if !st.Rebuilt || st.ElementsAdded == 0 {
		t.Errorf("first Apply stats = %+v", st)
	}

	t.Run("SNAT", func(t *testing.T) {
		expectLine(t, "vm2 -> upstream", l.vm2, "tcp", "203.0.113.1:80", "203.0.113.1:80", "203.0.113.10")
	})
	t.Run("floating IP", func(t *testing.T) {
		expectLine(t, "upstream -> FIP", l.up, "tcp", "203.0.113.20:80", "10.0.0.5:80", "203.0.113.1")
		expectLine(t, "vm1 -> upstream", l.vm1, "tcp", "203.0.113.1:80", "203.0.113.1:80", "203.0.113.20")
	})
	t.Run("port forwards", func(t *testing.T) {
		expectLine(t, "tcp 2222 -> vm2:22", l.up, "tcp", "203.0.113.10:2222", "10.0.0.6:22", "203.0.113.1")
		expectLine(t, "udp 5353 -> vm2:53", l.up, "udp", "203.0.113.10:5353", "10.0.0.6:53", "203.0.113.1")
		expectLine(t, "shifted range 8003 -> 9003", l.up, "tcp", "203.0.113.30:8003", "10.0.0.6:9003", "203.0.113.1")
		expectLine(t, "same-port range 7005", l.up, "tcp", "203.0.113.10:7005", "10.0.0.6:7005", "203.0.113.1")
		expectLine(t, "N:1 range 6007 -> 22", l.up, "tcp", "203.0.113.10:6007", "10.0.0.6:22", "203.0.113.1")
		expectBlocked(t, "a port not forwarded", l.up, "tcp", "203.0.113.10:2223")
	})
	t.Run("a TCP session through a forward", func(t *testing.T) {
		c, err := l.up.DialContext(ctx, "tcp", "203.0.113.10:2222")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(passWait))
		r := bufio.NewReader(c)
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			msg := fmt.Sprintf("ping %d\n", i)
			if _, err := c.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			if got, err := r.ReadString('\n'); err != nil || got != msg {
				t.Fatalf("echo = %q, %v", got, err)
			}
		}
	})
	t.Run("hairpin", func(t *testing.T) {
		// vm2 has no floating IP: vm1 sees the router's internal address.
		expectLine(t, "vm2 -> vm1's FIP", l.vm2, "tcp", "203.0.113.20:80", "10.0.0.5:80", "10.0.0.1")
		// vm1 has one: vm2 sees it.
		expectLine(t, "vm1 -> forward to vm2", l.vm1, "tcp", "203.0.113.10:2222", "10.0.0.6:22", "203.0.113.20")
		expectLine(t, "vm1 -> its own FIP", l.vm1, "tcp", "203.0.113.20:80", "10.0.0.5:80", "203.0.113.20")
	})
	t.Run("metadata", func(t *testing.T) {
		expectLine(t, "vm1 -> 169.254.169.254:80", l.vm1, "tcp", "169.254.169.254:80", "10.0.0.1:9697", "10.0.0.5")
		expectLine(t, "vm2 -> 169.254.169.254:80", l.vm2, "tcp", "169.254.169.254:80", "10.0.0.1:9697", "10.0.0.6")
		expectBlocked(t, "vm1 -> the metadata port directly", l.vm1, "tcp", "10.0.0.1:9697")
		expectBlocked(t, "upstream -> the metadata port", l.up, "tcp", "203.0.113.10:9697")
		expectBlocked(t, "vm1 -> 169.254.169.254:81", l.vm1, "tcp", "169.254.169.254:81")
		// The router itself reaches upstream's 169.254.169.254 (so the
		// listener is there and routed to), the VMs never do.
		expectLine(t, "router -> upstream's 169.254.169.254", l.router, "tcp", "169.254.169.254:80", "169.254.169.254:80", "")
		if n := upIMDS.hits.Load(); n != 1 {
			t.Errorf("upstream's 169.254.169.254:80 got %d connections, want only the router's", n)
		}
		noMD := labRules()
		noMD.Metadata = nil
		if _, err := nat.Apply(ctx, noMD); err != nil {
			t.Fatal(err)
		}
		expectBlocked(t, "vm1 -> 169.254.169.254:80 without metadata", l.vm1, "tcp", "169.254.169.254:80")
		if n := upIMDS.hits.Load(); n != 1 {
			t.Errorf("upstream's 169.254.169.254:80 got %d connections, want only the router's", n)
		}
		if _, err := nat.Apply(ctx, rr); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SNAT off", func(t *testing.T) {
		off := labRules()
		off.SNAT = false
		st, err := nat.Apply(ctx, off)
		if err != nil {
			t.Fatal(err)
		}
		if st.Chains != 1 || st.ElementsAdded+st.ElementsDeleted != 0 || st.Rebuilt {
			t.Errorf("SNAT off: stats = %+v, want only postrouting rewritten", st)
		}
		expectLine(t, "vm2 -> upstream", l.vm2, "tcp", "203.0.113.1:80", "203.0.113.1:80", "10.0.0.6")
		expectLine(t, "vm1 (FIP) -> upstream", l.vm1, "tcp", "203.0.113.1:80", "203.0.113.1:80", "203.0.113.20")
		expectLine(t, "upstream -> FIP", l.up, "tcp", "203.0.113.20:80", "10.0.0.5:80", "203.0.113.1")
		if _, err := nat.Apply(ctx, rr); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("second Apply sends nothing", func(t *testing.T) {
		if st, err := nat.Apply(ctx, rr); err != nil || st != (Stats{}) {
			t.Errorf("second Apply = %+v, %v", st, err)
		}
		// A new RouterNAT (a restarted agent) reads the table back and
		// finds nothing to do either.
		if st, err := NewRouterNAT(l.routerNS, nil).Apply(ctx, rr); err != nil || st != (Stats{}) {
			t.Errorf("Apply by a new RouterNAT = %+v, %v", st, err)
		}
	})
	t.Run("changes keep established connections", func(t *testing.T) {
		c, err := l.up.DialContext(ctx, "tcp", "203.0.113.10:2222")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := bufio.NewReader(c)
		_ = c.SetDeadline(time.Now().Add(passWait))
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		// Change everything around that forward: the floating IP goes,
		// forwards come and go, SNAT and metadata are switched off.
		other := labRules()
		other.FloatingIPs = nil
		other.Forwards = append(other.Forwards[:1], Forward{Protocol: ProtoTCP, External: ip4("203.0.113.10"),
			ExternalPortMin: 3000, ExternalPortMax: 3099, Internal: ip4("10.0.0.5"), InternalPortMin: 4000, InternalPortMax: 4099})
		other.SNAT, other.Metadata = false, nil
		if _, err := nat.Apply(ctx, other); err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(passWait))
		if _, err := c.Write([]byte("still there?\n")); err != nil {
			t.Fatal(err)
		}
		if got, err := r.ReadString('\n'); err != nil || got != "still there?\n" {
			t.Errorf("echo after the change = %q, %v", got, err)
		}
		if _, err := nat.Apply(ctx, rr); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("removing a FIP and forwards removes their elements", func(t *testing.T) {
		less := labRules()
		less.FloatingIPs = nil
		less.Forwards = less.Forwards[:1] // only tcp 2222
		st, err := nat.Apply(ctx, less)
		if err != nil {
			t.Fatal(err)
		}
		// fip_dnat, fip_snat, the udp forward, 10 expanded ports, 2 ranges.
		if st.ElementsDeleted != 15 || st.ElementsAdded != 0 || st.Chains != 0 || st.Rebuilt {
			t.Errorf("stats = %+v", st)
		}
		if err := SetGatewayAddrs(ctx, l.routerNS, less, 24); err != nil {
			t.Fatal(err)
		}
		out := nftOut(t, l.router, "list", "table", "ip", RouterTableName)
		for _, gone := range []string{"203.0.113.20", "10.0.0.5", "5353", "203.0.113.30", "7000", "6000"} {
			if strings.Contains(out, gone) {
				t.Errorf("%s is left in the table:\n%s", gone, out)
			}
		}
		if !strings.Contains(out, "2222") {
			t.Errorf("the remaining forward is missing:\n%s", out)
		}
		expectBlocked(t, "upstream -> removed FIP", l.up, "tcp", "203.0.113.20:80")
		expectBlocked(t, "upstream -> removed udp forward", l.up, "udp", "203.0.113.10:5353")
		expectLine(t, "vm1 -> upstream without its FIP", l.vm1, "tcp", "203.0.113.1:80", "203.0.113.1:80", "203.0.113.10")
		expectLine(t, "the remaining forward", l.up, "tcp", "203.0.113.10:2222", "10.0.0.6:22", "203.0.113.1")
	})
	t.Run("Delete", func(t *testing.T) {
		if err := nat.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		if err := nat.Delete(ctx); err != nil {
			t.Fatalf("second Delete: %v", err)
		}
		if out := strings.TrimSpace(nftOut(t, l.router, "list", "tables")); out != "table ip other" {
			t.Errorf("tables after Delete: %q", out)
		}
		expectLine(t, "no NAT after Delete", l.vm2, "tcp", "203.0.113.1:80", "203.0.113.1:80", "10.0.0.6")
	})
	if upWeb.hits.Load() == 0 {
		t.Error("upstream's web server never got a connection")
	}
}

// TestRouterNATScale applies 10,000 port forwards in one Apply and checks
// that a connection through the last one still works. It reports timings;
// it asserts only correctness.
func TestRouterNATScale(t *testing.T) {
	ctx := context.Background()
	l := newRouterLab(t)
	serveTCP(t, l.vm2, "10.0.0.6:22")
	rr := RouterRules{GatewayIface: "qg0", GatewayIP: ip4("203.0.113.10"), SNAT: true, Internal: []netip.Prefix{pfx4("10.0.0.0/24")}}
	const n = 10000
	for i := range n {
		rr.Forwards = append(rr.Forwards, Forward{Protocol: ProtoTCP, External: ip4("203.0.113.10"),
			ExternalPortMin: uint16(20000 + i), Internal: ip4("10.0.0.6"), InternalPortMin: 22})
	}
	nat := NewRouterNAT(l.routerNS, nil)
	t.Cleanup(func() { _ = nat.Delete(context.Background()) })
	start := time.Now()
	st, err := nat.Apply(ctx, rr)
	full := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if st.ElementsAdded != n+2 { // + the internal set's start and end
		t.Errorf("stats = %+v", st)
	}
	start = time.Now()
	expectLine(t, "the last forward", l.up, "tcp", fmt.Sprintf("203.0.113.10:%d", 20000+n-1), "10.0.0.6:22", "203.0.113.1")
	first := time.Since(start)
	start = time.Now()
	st2, err := nat.Apply(ctx, rr)
	noop := time.Since(start)
	if err != nil || st2 != (Stats{}) {
		t.Fatalf("no-op Apply = %+v, %v", st2, err)
	}
	more := rr
	more.Forwards = append(more.Forwards[:n:n], Forward{Protocol: ProtoTCP, External: ip4("203.0.113.10"),
		ExternalPortMin: 19999, Internal: ip4("10.0.0.6"), InternalPortMin: 22})
	start = time.Now()
	st3, err := nat.Apply(ctx, more)
	incr := time.Since(start)
	if err != nil || st3.ElementsAdded != 1 || st3.Messages != 1 {
		t.Fatalf("adding one forward = %+v, %v", st3, err)
	}
	start = time.Now()
	expectLine(t, "the new forward", l.up, "tcp", "203.0.113.10:19999", "10.0.0.6:22", "203.0.113.1")
	newFirst := time.Since(start)
	start = time.Now()
	st4, err := NewRouterNAT(l.routerNS, nil).Apply(ctx, more)
	adopt := time.Since(start)
	if err != nil || st4 != (Stats{}) {
		t.Fatalf("Apply by a new RouterNAT = %+v, %v", st4, err)
	}
	t.Logf("%d forwards: full Apply %v (%d messages), first connection %v, no-op Apply %v, add one %v, connection through it %v, adopt (read back) %v",
		n, full, st.Messages, first, noop, incr, newFirst, adopt)
}

// TestRouterNATChangeValues changes the value of existing keys (a floating
// IP moving to another VM, a forward to another port or host), which the
// kernel takes only as a delete and an add in one batch, and applies
// adjacent ranges and a whole port space.
func TestRouterNATChangeValues(t *testing.T) {
	ctx := context.Background()
	n := testenv.NewNetns(t)
	nat := NewRouterNAT(openNS(t, n), nil)
	rr := sampleRouterRules()
	if _, err := nat.Apply(ctx, rr); err != nil {
		t.Fatal(err)
	}
	moved := sampleRouterRules()
	moved.FloatingIPs[0].Internal = ip4("10.0.1.8")  // fip_dnat and fip_snat
	moved.Forwards[0].InternalPortMin = 2022         // fwd
	moved.Forwards[3].Internal = ip4("10.0.0.66")    // fwd_range
	moved.Forwards = append(moved.Forwards, Forward{ // adjacent to 7000-7009
		Protocol: ProtoTCP, External: ip4("203.0.113.10"), ExternalPortMin: 7010, ExternalPortMax: 7019,
		Internal: ip4("10.0.0.7"), InternalPortMin: 7010, InternalPortMax: 7019})
	st, err := nat.Apply(ctx, moved)
	if err != nil {
		t.Fatal(err)
	}
	// fip_dnat: 1 changed; fip_snat: 1 gone, 1 new; fwd and fwd_range: 1 changed each; 1 new range.
	if st.ElementsDeleted != 4 || st.ElementsAdded != 5 || st.Chains != 0 {
		t.Errorf("stats = %+v", st)
	}
	out := nftOut(t, n, "list", "table", "ip", RouterTableName)
	for _, want := range []string{"203.0.113.21 : 10.0.1.8", "10.0.1.8 : 203.0.113.21", "2222 : 10.0.0.6 . 2022",
		"7000-7009 : 10.0.0.66 . 7000 . 7009", "7010-7019 : 10.0.0.7 . 7010 . 7019"} {
		if !strings.Contains(out, want) {
			t.Errorf("%q missing from\n%s", want, out)
		}
	}
	if st, err := NewRouterNAT(openNS(t, n), nil).Apply(ctx, moved); err != nil || st != (Stats{}) {
		t.Errorf("Apply by a new RouterNAT = %+v, %v", st, err)
	}
	whole := RouterRules{GatewayIface: "qg0", GatewayIP: ip4("203.0.113.10"), Forwards: []Forward{
		{Protocol: ProtoTCP, External: ip4("203.0.113.40"), ExternalPortMin: 1, ExternalPortMax: 65535, Internal: ip4("10.0.0.9"), InternalPortMin: 1, InternalPortMax: 65535},
		{Protocol: ProtoUDP, External: ip4("203.0.113.40"), ExternalPortMin: 1, ExternalPortMax: 65534, Internal: ip4("10.0.0.9"), InternalPortMin: 2, InternalPortMax: 65535},
	}}
	start := time.Now()
	if st, err := nat.Apply(ctx, whole); err != nil || st.ElementsAdded != 65534+1 {
		t.Fatalf("whole port space = %+v, %v", st, err)
	}
	t.Logf("a whole port space, and one shifted (65,534 elements): %v", time.Since(start))
	if err := nat.Delete(ctx); err != nil {
		t.Fatal(err)
	}
}
