package nat_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/testenv"
	"github.com/nimbo-cloud/nimbo/internal/underlay"
	"github.com/nimbo-cloud/nimbo/internal/underlay/nat"
	"github.com/nimbo-cloud/nimbo/internal/underlay/underlaytest"
)

var (
	publicCIDR = netip.MustParsePrefix("172.24.4.0/24")
	publicGw   = netip.MustParseAddr("172.24.4.1")
)

func fixture(t *testing.T, h *underlaytest.Host) underlaytest.Fixture {
	return underlaytest.Fixture{
		New:                func() underlay.Underlay { return nat.New(h.NS, nil) },
		External:           underlay.External{CIDR: publicCIDR, Gateway: publicGw, PhysicalNetwork: "public"},
		Router:             netip.MustParsePrefix("172.24.4.10/24"),
		RouterGateway:      publicGw,
		WantSource:         underlaytest.HostAddr,
		FloatingIP:         netip.MustParseAddr("172.24.4.20"),
		EgressViaHostRoute: true,
	}
}

func TestConformance(t *testing.T) { underlaytest.Run(t, fixture) }

// TestUplinkMoves moves the default route to a second uplink: the next Set
// reports it, egress works through it, and the forwarding flag nat turned
// on for the old uplink is turned off again.
func TestUplinkMoves(t *testing.T) {
	ctx := context.Background()
	hn, u2n := testenv.NewNetns(t), testenv.NewNetns(t)
	h, err := hostnet.Open(hn.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	u2, err := hostnet.Open(u2n.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer u2.Close()
	for i, up := range []*hostnet.NS{u2, u2} {
		name := []string{"up0", "up1"}[i]
		if err := h.EnsureVeth(ctx, hostnet.Veth{Name: name, Peer: hostnet.VethPeer{NS: up, Name: name,
			Addrs: []netip.Prefix{netip.MustParsePrefix([]string{"10.81.0.1/24", "10.82.0.1/24"}[i])}}}); err != nil {
			t.Fatal(err)
		}
		if err := h.SetAddrs(ctx, name, []netip.Prefix{netip.MustParsePrefix([]string{"10.81.0.2/24", "10.82.0.2/24"}[i])}); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.EnsureBridge(ctx, "nb-test", []byte{2, 0, 0, 0, 0, 1}, 0); err != nil {
		t.Fatal(err)
	}
	def := hostnet.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("10.81.0.1")}
	if err := h.EnsureRoute(ctx, def); err != nil {
		t.Fatal(err)
	}
	u := nat.New(h, nil)
	cfg := underlay.Config{Externals: []underlay.External{{NetworkID: "pub", Bridge: "nb-test", CIDR: publicCIDR, Gateway: publicGw}}}
	st, err := u.Set(ctx, cfg)
	if err != nil || st.Uplink != "up0" || !st.Egress || st.EgressSource != netip.MustParseAddr("10.81.0.2") {
		t.Fatalf("Set = %+v, %v", st, err)
	}
	fwd := func(dev string) string {
		v, err := h.Sysctl(ctx, "net/ipv4/conf/"+dev+"/forwarding")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if fwd("up0") != "1" || fwd("up1") != "0" || fwd("nb-test") != "1" {
		t.Fatalf("forwarding up0=%s up1=%s nb-test=%s", fwd("up0"), fwd("up1"), fwd("nb-test"))
	}
	def.Gw = netip.MustParseAddr("10.82.0.1")
	if err := h.EnsureRoute(ctx, def); err != nil {
		t.Fatal(err)
	}
	st, err = u.Set(ctx, cfg)
	if err != nil || st.Uplink != "up1" || !st.Egress || st.EgressSource != netip.MustParseAddr("10.82.0.2") {
		t.Fatalf("Set after the move = %+v, %v", st, err)
	}
	if fwd("up0") != "0" || fwd("up1") != "1" {
		t.Fatalf("after the move: forwarding up0=%s up1=%s", fwd("up0"), fwd("up1"))
	}
	// A flag that was already on is not nat's: left alone, also by Teardown.
	if err := h.SetSysctl(ctx, "net/ipv4/conf/up0/forwarding", "1"); err != nil {
		t.Fatal(err)
	}
	def.Gw = netip.MustParseAddr("10.81.0.1")
	if err := h.EnsureRoute(ctx, def); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := u.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	if fwd("up0") != "1" || fwd("up1") != "0" || fwd("nb-test") != "0" {
		t.Fatalf("after Teardown: forwarding up0=%s up1=%s nb-test=%s", fwd("up0"), fwd("up1"), fwd("nb-test"))
	}
}

func TestValidation(t *testing.T) {
	testenv.RequireRoot(t)
	ctx := context.Background()
	hn := testenv.NewNetns(t)
	h, err := hostnet.Open(hn.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	u := nat.New(h, nil)
	ext := underlay.External{NetworkID: "pub", Bridge: "nb-test", CIDR: publicCIDR, Gateway: publicGw}
	bad := map[string]underlay.Config{
		"no gateway":        {Externals: []underlay.External{{NetworkID: "pub", Bridge: "nb-test", CIDR: publicCIDR}}},
		"IPv6":              {Externals: []underlay.External{{NetworkID: "pub", Bridge: "nb-test", CIDR: netip.MustParsePrefix("fd00::/64"), Gateway: netip.MustParseAddr("fd00::1")}}},
		"gateway outside":   {Externals: []underlay.External{{NetworkID: "pub", Bridge: "nb-test", CIDR: publicCIDR, Gateway: netip.MustParseAddr("10.0.0.1")}}},
		"broadcast gateway": {Externals: []underlay.External{{NetworkID: "pub", Bridge: "nb-test", CIDR: publicCIDR, Gateway: netip.MustParseAddr("172.24.4.255")}}},
		"host bits":         {Externals: []underlay.External{{NetworkID: "pub", Bridge: "nb-test", CIDR: netip.MustParsePrefix("172.24.4.1/24"), Gateway: publicGw}}},
		"overlap": {Externals: []underlay.External{ext,
			{NetworkID: "pub2", Bridge: "nb-test2", CIDR: netip.MustParsePrefix("172.24.0.0/16"), Gateway: netip.MustParseAddr("172.24.0.1")}}},
		"publish sctp": {Externals: []underlay.External{ext}, Published: []underlay.Publish{{Protocol: "sctp",
			Host: netip.MustParseAddrPort("10.0.0.1:1"), Target: netip.MustParseAddrPort("172.24.4.20:22")}}},
		"publish off-network": {Externals: []underlay.External{ext}, Published: []underlay.Publish{{Protocol: underlay.TCP,
			Host: netip.MustParseAddrPort("10.0.0.1:1"), Target: netip.MustParseAddrPort("10.9.9.9:22")}}},
	}
	for name, cfg := range bad {
		if _, err := u.Set(ctx, cfg); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: Set = %v, want ErrInvalid", name, err)
		}
	}
	// The valid part of a config is still served.
	if err := h.EnsureBridge(ctx, "nb-good", []byte{2, 0, 0, 0, 0, 1}, 0); err != nil {
		t.Fatal(err)
	}
	good := underlay.External{NetworkID: "good", Bridge: "nb-good", CIDR: netip.MustParsePrefix("10.90.0.0/24"), Gateway: netip.MustParseAddr("10.90.0.1")}
	_, err = u.Set(ctx, underlay.Config{Externals: []underlay.External{good, {NetworkID: "pub", Bridge: "nb-test", CIDR: publicCIDR}}})
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "no gateway") {
		t.Errorf("Set with a network without gateway = %v", err)
	}
	if addrs, _ := h.Addrs(ctx, "nb-good"); len(addrs) != 1 || addrs[0] != netip.MustParsePrefix("10.90.0.1/24") {
		t.Errorf("the valid network was not set up: addresses of nb-good %v", addrs)
	}
	// A missing bridge is reported, and the rest is still done.
	st, err := u.Set(ctx, underlay.Config{Externals: []underlay.External{ext}})
	if err == nil || !strings.Contains(err.Error(), "nb-test") || st.Egress {
		t.Errorf("Set with a missing bridge = %+v, %v", st, err)
	}
	if err := u.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	if addrs, _ := h.Addrs(ctx, "nb-good"); len(addrs) != 0 {
		t.Errorf("after Teardown nb-good has %v", addrs)
	}
}

// TestManyPublished installs thousands of published forwards (a port range)
// in one Set: all land in the map (the batch is chunked), and a second Set
// sends nothing.
func TestManyPublished(t *testing.T) {
	ctx := context.Background()
	hn, pn := testenv.NewNetns(t), testenv.NewNetns(t)
	h, err := hostnet.Open(hn.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	p, err := hostnet.Open(pn.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := h.EnsureVeth(ctx, hostnet.Veth{Name: "up0", Peer: hostnet.VethPeer{NS: p, Name: "up0"}}); err != nil {
		t.Fatal(err)
	}
	if err := h.SetAddrs(ctx, "up0", []netip.Prefix{netip.MustParsePrefix("10.85.0.2/24")}); err != nil {
		t.Fatal(err)
	}
	if err := h.EnsureBridge(ctx, "nb-test", []byte{2, 0, 0, 0, 0, 1}, 0); err != nil {
		t.Fatal(err)
	}
	cfg := underlay.Config{Externals: []underlay.External{{NetworkID: "pub", Bridge: "nb-test", CIDR: publicCIDR, Gateway: publicGw}}}
	const n = 3000
	for i := range n {
		cfg.Published = append(cfg.Published, underlay.Publish{Protocol: underlay.TCP,
			Host:   netip.AddrPortFrom(netip.MustParseAddr("10.85.0.2"), uint16(20000+i)),
			Target: netip.AddrPortFrom(netip.MustParseAddr("172.24.4.20"), uint16(20000+i))})
	}
	u := nat.New(h, nil)
	if _, err := u.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	out, err := hn.Command(ctx, "nft", "list", "map", "ip", nat.TableName, "published").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v\n%s", err, out)
	}
	if got := strings.Count(string(out), " : 172.24.4.20 . "); got != n {
		t.Fatalf("%d published forwards in the map, want %d", got, n)
	}
	if fp := fingerprint(t, hn); fp == "" {
		t.Fatal("no fingerprint")
	}
	before := fingerprintAndHandles(t, hn)
	if _, err := u.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if after := fingerprintAndHandles(t, hn); after != before {
		t.Errorf("second Set rebuilt the table:\n%s\n%s", before, after)
	}
}

func fingerprint(t *testing.T, n *testenv.Netns) string {
	out, err := n.Command(context.Background(), "nft", "list", "chain", "ip", nat.TableName, "forward").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v\n%s", err, out)
	}
	_, rest, _ := strings.Cut(string(out), `comment "nimbo fp=`)
	fp, _, _ := strings.Cut(rest, `"`)
	return fp
}

func fingerprintAndHandles(t *testing.T, n *testenv.Netns) string {
	out, err := n.Command(context.Background(), "nft", "-a", "list", "table", "ip", nat.TableName).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v\n%s", err, out)
	}
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "# handle") {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	return strings.Join(keep, "\n")
}
