// Package underlaytest is the conformance suite every underlay.Underlay
// passes, like containerd's snapshots testsuite: an implementation's test
// calls Run with a function that sets its mode up on an emulated host.
//
// Each test builds its own throwaway namespaces (testenv.NewNetns, removed
// even when the test fails) and never touches the root namespace:
//
//	upstream ("the internet" and its router)
//	  up0 203.0.113.1/28; lo 203.0.113.100/32 (a server) and 169.254.169.254/32
//	  (a stand-in for the host cloud's metadata service)
//	   |  veth
//	host (given to the underlay)
//	  up0 203.0.113.2/28, default route via 203.0.113.1, and a route to
//	  169.254.169.254 via 203.0.113.1 (as on a cloud VM)
//	  nb-<11 hex>: the external network's bridge (made as the agent does)
//	   |  veth rg0 (port of the bridge)
//	router
//	  eth0 with the fixture's router address, default route via its gateway
//
// The server at 203.0.113.100 is reachable from the host only through its
// default route. Fixtures add what their mode needs (flat: a "physical"
// veth whose peer sits in upstream, on the flat network's L2).
package underlaytest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/testenv"
	"github.com/nimbo-cloud/nimbo/internal/underlay"
)

// Addresses of the emulated host and its upstream.
var (
	UpstreamAddr = netip.MustParseAddr("203.0.113.1")   // upstream's end of the uplink, the host's default gateway
	HostAddr     = netip.MustParseAddr("203.0.113.2")   // the host's uplink address
	ServerAddr   = netip.MustParseAddr("203.0.113.100") // a server "on the internet", in upstream
	uplinkBits   = 28
)

// Names in the host namespace.
const (
	// Uplink is the host's interface towards upstream.
	Uplink = "up0"
	// NetworkID is the external network's ID.
	NetworkID = "5e1f0c2a-9d7b-4c3e-8f21-6a0b9c8d7e6f"
	// ServerPort is the port of the server at ServerAddr and of the fake
	// metadata service.
	ServerPort = 8080
	// PublishedPort is the host port the suite publishes.
	PublishedPort = 522
	// TargetPort is the port published forwards reach on the floating IP.
	TargetPort = 22
)

// Host is the emulated host of one test.
type Host struct {
	NS            *hostnet.NS // the host namespace: give it to the underlay
	Netns         *testenv.Netns
	Upstream      *hostnet.NS
	UpstreamNetns *testenv.Netns
	// Bridge is the external network's bridge in NS.
	Bridge string
}

// Fixture is what an implementation's test tells the suite about its mode
// on a Host.
type Fixture struct {
	// New returns a new Underlay for the host; the suite calls it again to
	// emulate a restart of nimbo.
	New func() underlay.Underlay
	// External is the external network (the suite sets Bridge).
	External underlay.External
	// Router is the router's address on the external network, with the
	// subnet's prefix length, and RouterGateway its default gateway.
	Router        netip.Prefix
	RouterGateway netip.Addr
	// WantSource is the source address the server must see on the
	// router's connections (nat: the host's uplink address; flat: the
	// router's own).
	WantSource netip.Addr
	// FloatingIP, if valid, is an address of the external subnet that the
	// suite puts on the router too, to test published forwards from
	// HostAddr:PublishedPort to it.
	FloatingIP netip.Addr
	// EgressViaHostRoute is true when the external networks leave through
	// the host's default route (nat), so that without one there must be no
	// egress.
	EgressViaHostRoute bool
}

// env is one test's host, router and fixture.
type env struct {
	t          *testing.T
	h          *Host
	fx         Fixture
	router     *testenv.Netns
	routerNS   *hostnet.NS
	u          underlay.Underlay
	ctx        context.Context
	defaultRte hostnet.Route
}

func open(t *testing.T, n *testenv.Netns) *hostnet.NS {
	t.Helper()
	ns, err := hostnet.Open(n.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// setup builds the emulated host and its upstream, lets the fixture add its
// part, then adds the router.
func setup(t *testing.T, newFixture func(*testing.T, *Host) Fixture) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	hn, un, rn := testenv.NewNetns(t), testenv.NewNetns(t), testenv.NewNetns(t)
	h := &Host{NS: open(t, hn), Netns: hn, Upstream: open(t, un), UpstreamNetns: un, Bridge: hostnet.IfName("nb-", NetworkID)}
	must(t, h.NS.EnsureVeth(ctx, hostnet.Veth{Name: Uplink, Peer: hostnet.VethPeer{
		NS: h.Upstream, Name: Uplink, Addrs: []netip.Prefix{netip.PrefixFrom(UpstreamAddr, uplinkBits)}}}))
	must(t, h.NS.SetAddrs(ctx, Uplink, []netip.Prefix{netip.PrefixFrom(HostAddr, uplinkBits)}))
	must(t, h.Upstream.AddAddr(ctx, "lo", netip.PrefixFrom(ServerAddr, 32)))
	must(t, h.Upstream.AddAddr(ctx, "lo", netip.PrefixFrom(underlay.ImdsV4, 32)))
	def := hostnet.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: UpstreamAddr}
	must(t, h.NS.EnsureRoute(ctx, def))
	must(t, h.NS.EnsureRoute(ctx, hostnet.Route{Dst: netip.PrefixFrom(underlay.ImdsV4, 32), Gw: UpstreamAddr}))
	must(t, h.NS.EnsureBridge(ctx, h.Bridge, net.HardwareAddr{0x02, 0x6e, 0x62, 0, 0, 1}, 0))

	fx := newFixture(t, h)
	fx.External.Bridge = h.Bridge
	if fx.External.NetworkID == "" {
		fx.External.NetworkID = NetworkID
	}
	e := &env{t: t, h: h, fx: fx, router: rn, routerNS: open(t, rn), ctx: ctx, defaultRte: def}
	addrs := []netip.Prefix{fx.Router}
	if fx.FloatingIP.IsValid() {
		addrs = append(addrs, netip.PrefixFrom(fx.FloatingIP, fx.Router.Bits()))
	}
	must(t, h.NS.EnsureVeth(ctx, hostnet.Veth{Name: "rg0", Bridge: h.Bridge, Peer: hostnet.VethPeer{
		NS: e.routerNS, Name: "eth0", MAC: net.HardwareAddr{0x02, 0x6e, 0x62, 0, 0, 0x10}, Addrs: addrs}}))
	must(t, e.routerNS.EnsureRoute(ctx, hostnet.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: fx.RouterGateway}))

	e.serve(un, netip.AddrPortFrom(ServerAddr, ServerPort))
	e.serve(un, netip.AddrPortFrom(underlay.ImdsV4, ServerPort))
	e.u = fx.New()
	return e
}

func (e *env) cfg() underlay.Config {
	return underlay.Config{Externals: []underlay.External{e.fx.External}}
}

// serve starts a TCP server in n at addr that writes the client's address
// (as it sees it) and closes the connection.
func (e *env) serve(n *testenv.Netns, addr netip.AddrPort) {
	e.t.Helper()
	l, err := n.Listen("tcp", addr.String())
	if err != nil {
		e.t.Fatalf("listen on %v: %v", addr, err)
	}
	e.t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap())
			c.Close()
		}
	}()
}

// dial connects from n to addr and returns the source address the server
// saw.
func dial(ctx context.Context, n *testenv.Netns, addr netip.AddrPort, timeout time.Duration) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := n.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return netip.Addr{}, fmt.Errorf("read from %v: %w", addr, err)
	}
	return netip.ParseAddr(strings.TrimSpace(line))
}

const (
	reachTimeout   = 5 * time.Second
	blockedTimeout = 1500 * time.Millisecond
)

func (e *env) set() underlay.Status {
	e.t.Helper()
	return e.setCfg(e.cfg())
}

func (e *env) setCfg(cfg underlay.Config) underlay.Status {
	e.t.Helper()
	st, err := e.u.Set(e.ctx, cfg)
	if err != nil {
		e.t.Fatalf("%s: Set: %v (status %+v)", e.u.Name(), err, st)
	}
	if st.Message == "" {
		e.t.Errorf("%s: Set returned no status message: %+v", e.u.Name(), st)
	}
	return st
}

// reach dials the server from the router and checks the source it saw.
func (e *env) reach(st underlay.Status) {
	e.t.Helper()
	got, err := dial(e.ctx, e.router, netip.AddrPortFrom(ServerAddr, ServerPort), reachTimeout)
	if err != nil {
		e.t.Fatalf("router cannot reach the server at %v: %v (status %+v)", ServerAddr, err, st)
	}
	want := st.EgressSource
	if !want.IsValid() {
		want = e.fx.Router.Addr()
	}
	if got != want {
		e.t.Errorf("the server saw the router's connection from %v; the status says %v (EgressSource %v)", got, want, st.EgressSource)
	}
	if got != e.fx.WantSource {
		e.t.Errorf("the server saw the router's connection from %v, want %v", got, e.fx.WantSource)
	}
}

func (e *env) unreachable(what string, from *testenv.Netns, addr netip.AddrPort) {
	e.t.Helper()
	if src, err := dial(e.ctx, from, addr, blockedTimeout); err == nil {
		e.t.Errorf("%s: %v reached (seen from %v), want it blocked", what, addr, src)
	}
}

// Run runs the conformance suite. newFixture is called once per test, on a
// fresh Host, and may add to it what the mode needs.
func Run(t *testing.T, newFixture func(*testing.T, *Host) Fixture) {
	testenv.RequireRoot(t)
	t.Run("Egress", func(t *testing.T) { testEgress(t, newFixture) })
	t.Run("Idempotent", func(t *testing.T) { testIdempotent(t, newFixture) })
	t.Run("AdoptAfterRestart", func(t *testing.T) { testAdopt(t, newFixture) })
	t.Run("NoDefaultRoute", func(t *testing.T) { testNoDefaultRoute(t, newFixture) })
	t.Run("MetadataBlocked", func(t *testing.T) { testMetadata(t, newFixture) })
	t.Run("Teardown", func(t *testing.T) { testTeardown(t, newFixture) })
	t.Run("TeardownAfterRestart", func(t *testing.T) { testTeardownAfterRestart(t, newFixture) })
	t.Run("RemoveExternal", func(t *testing.T) { testRemoveExternal(t, newFixture) })
	t.Run("Published", func(t *testing.T) { testPublished(t, newFixture) })
}

func testEgress(t *testing.T, nf func(*testing.T, *Host) Fixture) {
	e := setup(t, nf)
	st := e.set()
	if !st.Egress || st.Uplink == "" {
		t.Fatalf("status after Set = %+v, want egress through an uplink", st)
	}
	e.reach(st)
	t.Logf("%s: %s", e.u.Name(), st.Message)
}

func testIdempotent(t *testing.T, nf func(*testing.T, *Host) Fixture) {
	e := setup(t, nf)
	st1 := e.set()
	before := take(t, e.h.NS)
	st2 := e.set()
	after := take(t, e.h.NS)
	before.mustEqual(t, after, "a second Set", true)
	if st1 != st2 {
		t.Errorf("second Set's status differs:\n%+v\n%+v", st1, st2)
	}
	e.reach(st2)
}

func testAdopt(t *testing.T, nf func(*testing.T, *Host) Fixture) {
	e := setup(t, nf)
	st1 := e.set()
	before := take(t, e.h.NS)
	e.u = e.fx.New() // "restart"
	st2 := e.set()
	after := take(t, e.h.NS)
	before.mustEqual(t, after, "Set from a new Underlay value (a restart)", true)
	if st1 != st2 {
		t.Errorf("status after a restart differs:\n%+v\n%+v", st1, st2)
	}
	e.reach(st2)
}

func testNoDefaultRoute(t *testing.T, nf func(*testing.T, *Host) Fixture) {
	e := setup(t, nf)
	must(t, e.h.NS.DeleteRoute(e.ctx, e.defaultRte))
	st := e.set()
	// The status must tell the truth.
	if st.Egress {
		e.reach(st)
	} else {
		e.unreachable("router without egress", e.router, netip.AddrPortFrom(ServerAddr, ServerPort))
	}
	if e.fx.EgressViaHostRoute && st.Egress {
		t.Errorf("without a default route the status says egress: %+v", st)
	}
	if !st.Egress && !strings.Contains(st.Message, "no uplink") {
		t.Errorf("without egress the message should say there is no uplink: %q", st.Message)
	}
	t.Logf("%s without a default route: %+v", e.u.Name(), st)

	// The route comes (back): the next Set picks it up.
	must(t, e.h.NS.EnsureRoute(e.ctx, e.defaultRte))
	st = e.set()
	if !st.Egress {
		t.Fatalf("after the default route came back: %+v", st)
	}
	e.reach(st)
}

func testMetadata(t *testing.T, nf func(*testing.T, *Host) Fixture) {
	e := setup(t, nf)
	st := e.set()
	e.reach(st) // the way out works...
	imds := netip.AddrPortFrom(underlay.ImdsV4, ServerPort)
	// ...the host itself reaches the metadata stand-in...
	if _, err := dial(e.ctx, e.h.Netns, imds, reachTimeout); err != nil {
		t.Fatalf("control: the host cannot reach %v: %v", imds, err)
	}
	// ...but the router must not.
	e.unreachable("router to the host cloud's metadata service", e.router, imds)
}

func testTeardown(t *testing.T, nf func(*testing.T, *Host) Fixture) {
	e := setup(t, nf)
	pristine := take(t, e.h.NS)
	st := e.set()
	e.reach(st)
	for i := range 2 {
		if err := e.u.Teardown(e.ctx); err != nil {
			t.Fatalf("Teardown #%d: %v", i+1, err)
		}
		pristine.mustEqual(t, take(t, e.h.NS), fmt.Sprintf("Teardown #%d (compared with the host before Set)", i+1), false)
	}
	e.unreachable("router after Teardown", e.router, netip.AddrPortFrom(ServerAddr, ServerPort))
}

func testTeardownAfterRestart(t *testing.T, nf func(*testing.T, *Host) Fixture) {
	e := setup(t, nf)
	pristine := take(t, e.h.NS)
	e.set()
	if err := e.fx.New().Teardown(e.ctx); err != nil {
		t.Fatalf("Teardown from a new Underlay value: %v", err)
	}
	pristine.mustEqual(t, take(t, e.h.NS), "Teardown after a restart (compared with the host before Set)", false)
}

func testRemoveExternal(t *testing.T, nf func(*testing.T, *Host) Fixture) {
	e := setup(t, nf)
	pristine := take(t, e.h.NS)
	e.reach(e.set())
	st := e.setCfg(underlay.Config{})
	if st.Egress {
		t.Errorf("status without external networks: %+v", st)
	}
	e.unreachable("router after its network was removed from the config", e.router, netip.AddrPortFrom(ServerAddr, ServerPort))
	// Only the (emptied) table may remain; Teardown takes it.
	must(t, e.u.Teardown(e.ctx))
	pristine.mustEqual(t, take(t, e.h.NS), "Set without externals then Teardown", false)
	e.reach(e.set()) // and back
}

func testPublished(t *testing.T, nf func(*testing.T, *Host) Fixture) {
	e := setup(t, nf)
	if !e.fx.FloatingIP.IsValid() {
		t.Skipf("%s: no published forwards in this mode", e.u.Name())
	}
	target := netip.AddrPortFrom(e.fx.FloatingIP, TargetPort)
	e.serve(e.router, target)
	host := netip.AddrPortFrom(HostAddr, PublishedPort)
	cfg := e.cfg()
	cfg.Published = []underlay.Publish{{Protocol: underlay.TCP, Host: host, Target: target}}
	st := e.setCfg(cfg)
	before := take(t, e.h.NS)
	e.setCfg(cfg)
	before.mustEqual(t, take(t, e.h.NS), "a second Set with a published forward", true)

	// From outside: the floating IP sees the real client.
	if src, err := dial(e.ctx, e.h.UpstreamNetns, host, reachTimeout); err != nil || src != UpstreamAddr {
		t.Errorf("upstream to %v: seen from %v, %v; want %v", host, src, err, UpstreamAddr)
	}
	// From the host itself.
	if src, err := dial(e.ctx, e.h.Netns, host, reachTimeout); err != nil {
		t.Errorf("host to %v: %v", host, err)
	} else {
		t.Logf("host to %v seen from %v", host, src)
	}
	// From another router on the external network (hairpin through the
	// host). From the very router holding the target, the reply would have
	// to leave through the bridge port it came in on: with br_netfilter the
	// DNATed packet is bridged, not routed, and that needs the port's
	// hairpin mode, which is the agent's to set on its ports.
	other := testenv.NewNetns(t)
	otherNS := open(t, other)
	otherAddr := e.fx.Router.Addr().Next()
	must(t, e.h.NS.EnsureVeth(e.ctx, hostnet.Veth{Name: "rg1", Bridge: e.h.Bridge, Peer: hostnet.VethPeer{
		NS: otherNS, Name: "eth0", Addrs: []netip.Prefix{netip.PrefixFrom(otherAddr, e.fx.Router.Bits())}}}))
	must(t, otherNS.EnsureRoute(e.ctx, hostnet.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: e.fx.RouterGateway}))
	if src, err := dial(e.ctx, other, host, reachTimeout); err != nil {
		t.Errorf("another router to %v (hairpin): %v", host, err)
	} else {
		t.Logf("another router to %v (hairpin) seen from %v", host, src)
	}
	// Without a published forward, the floating IP is not reachable from
	// outside, even with a route to it.
	must(t, e.h.Upstream.EnsureRoute(e.ctx, hostnet.Route{Dst: e.fx.External.CIDR, Gw: HostAddr}))
	e.unreachable("upstream straight to the floating IP", e.h.UpstreamNetns, target)
	e.reach(st)

	st = e.set() // the forward goes
	if _, err := dial(e.ctx, e.h.UpstreamNetns, host, blockedTimeout); err == nil {
		t.Errorf("upstream still reaches %v after the forward was removed", host)
	}
	e.reach(st)
}
