package flat_test

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
	"github.com/nimbo-cloud/nimbo/internal/underlay/flat"
	"github.com/nimbo-cloud/nimbo/internal/underlay/underlaytest"
)

var (
	flatCIDR = netip.MustParsePrefix("10.64.0.0/24")
	flatGw   = netip.MustParseAddr("10.64.0.1") // upstream, on the flat L2
)

// fixture gives the host a "physical" interface, phys0: a veth whose peer
// is upstream's leg on the flat network, where upstream is the gateway.
func fixture(t *testing.T, h *underlaytest.Host) underlaytest.Fixture {
	if err := h.NS.EnsureVeth(context.Background(), hostnet.Veth{Name: "phys0", Peer: hostnet.VethPeer{
		NS: h.Upstream, Name: "lan0", Addrs: []netip.Prefix{netip.PrefixFrom(flatGw, flatCIDR.Bits())}}}); err != nil {
		t.Fatal(err)
	}
	router := netip.MustParsePrefix("10.64.0.10/24")
	return underlaytest.Fixture{
		New: func() underlay.Underlay {
			return flat.New(h.NS, map[string]string{"physnet1": "phys0"}, nil)
		},
		External:      underlay.External{CIDR: flatCIDR, Gateway: flatGw, PhysicalNetwork: "physnet1"},
		Router:        router,
		RouterGateway: flatGw,
		WantSource:    router.Addr(),
	}
}

func TestConformance(t *testing.T) { underlaytest.Run(t, fixture) }

// TestRefusals checks that flat never bridges an interface the host depends
// on, and says why.
func TestRefusals(t *testing.T) {
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
	for _, name := range []string{"eth0", "eth1", "eth2"} {
		if err := h.EnsureVeth(ctx, hostnet.Veth{Name: name, Peer: hostnet.VethPeer{NS: p, Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.SetAddrs(ctx, "eth0", []netip.Prefix{netip.MustParsePrefix("10.70.0.2/24")}))
	must(h.EnsureRoute(ctx, hostnet.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Dev: "eth1"}))
	must(h.EnsureBridge(ctx, "nb-a", []byte{2, 0, 0, 0, 0, 1}, 0))
	must(h.EnsureBridge(ctx, "br-other", []byte{2, 0, 0, 0, 0, 2}, 0))
	must(h.SetMaster(ctx, "eth2", "br-other"))

	u := flat.New(h, map[string]string{"addr": "eth0", "default": "eth1", "taken": "eth2", "missing": "eth9"}, nil)
	ext := func(physnet string) underlay.Config {
		return underlay.Config{Externals: []underlay.External{{NetworkID: "n-" + physnet, Bridge: "nb-a", CIDR: flatCIDR, PhysicalNetwork: physnet}}}
	}
	cases := []struct {
		physnet string
		kind    error
		words   string
	}{
		{"addr", errdefs.ErrInvalid, "it has addresses (10.70.0.2/24)"},
		{"default", errdefs.ErrInvalid, "carries this host's default route"},
		{"taken", errdefs.ErrConflict, "already a port of br-other"},
		{"missing", errdefs.ErrNotFound, "eth9"},
		{"unmapped", errdefs.ErrInvalid, `physical network "unmapped" has no interface mapping`},
	}
	before, _ := h.ListLinks(ctx, "")
	for _, c := range cases {
		st, err := u.Set(ctx, ext(c.physnet))
		if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.words) {
			t.Errorf("%s: Set = %v; want %v saying %q", c.physnet, err, c.kind, c.words)
		}
		if st.Egress || !strings.Contains(st.Message, "no uplink") {
			t.Errorf("%s: status %+v", c.physnet, st)
		}
		t.Logf("%s: %v", c.physnet, err)
	}
	if after, _ := h.ListLinks(ctx, ""); len(after) != len(before) {
		t.Errorf("links changed")
	}
	for _, l := range []string{"eth0", "eth1"} {
		if got, _ := h.LinkByName(ctx, l); got.Master != "" {
			t.Errorf("%s was attached to %s", l, got.Master)
		}
	}
	if got, _ := h.LinkByName(ctx, "eth2"); got.Master != "br-other" {
		t.Errorf("eth2 moved to %q", got.Master)
	}

	// Published forwards are refused, but the network is still bridged.
	must(h.SetAddrs(ctx, "eth0", nil))
	cfg := ext("addr")
	cfg.Published = []underlay.Publish{{Protocol: underlay.TCP, Host: netip.MustParseAddrPort("10.70.0.2:522"), Target: netip.MustParseAddrPort("10.64.0.20:22")}}
	st, err := u.Set(ctx, cfg)
	if !errors.Is(err, errdefs.ErrInvalid) || !st.Egress {
		t.Errorf("Set with a published forward = %+v, %v", st, err)
	}
	if got, _ := h.LinkByName(ctx, "eth0"); got.Master != "nb-a" {
		t.Errorf("eth0 not bridged: %+v", got)
	}
	// Moving the network to another interface releases the first.
	u2 := flat.New(h, map[string]string{"addr": "eth1"}, nil)
	must(h.DeleteRoute(ctx, hostnet.Route{Dst: netip.MustParsePrefix("0.0.0.0/0")}))
	if _, err := u2.Set(ctx, ext("addr")); err != nil {
		t.Fatal(err)
	}
	if a, b := func() (hostnet.Link, hostnet.Link) {
		a, _ := h.LinkByName(ctx, "eth0")
		b, _ := h.LinkByName(ctx, "eth1")
		return a, b
	}(); a.Master != "" || b.Master != "nb-a" {
		t.Errorf("after the move: eth0 on %q, eth1 on %q", a.Master, b.Master)
	}
	must(u2.Teardown(ctx))
	if got, _ := h.LinkByName(ctx, "eth1"); got.Master != "" || !got.Up {
		t.Errorf("after Teardown eth1 = %+v, want released and still up", got)
	}
}
