package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

var (
	ip4  = netip.MustParseAddr
	pfx4 = netip.MustParsePrefix
)

// sampleRouterRules covers every feature: SNAT, two internal subnets (and
// an IPv6 one, ignored), floating IPs, single-port TCP and UDP forwards
// (one on the gateway IP, one on a floating-IP-like address), a shifted
// range (expanded), a same-ports range and an N:1 range (interval map), and
// the metadata redirect.
func sampleRouterRules() RouterRules {
	return RouterRules{
		GatewayIface: "qg-1234",
		GatewayIP:    ip4("203.0.113.10"),
		SNAT:         true,
		Internal:     []netip.Prefix{pfx4("10.0.1.0/24"), pfx4("10.0.0.0/24"), pfx4("fd00::/64")},
		FloatingIPs: []FloatingIP{
			{External: ip4("203.0.113.21"), Internal: ip4("10.0.1.7")},
			{External: ip4("203.0.113.20"), Internal: ip4("10.0.0.5")},
		},
		Forwards: []Forward{
			{Protocol: ProtoTCP, External: ip4("203.0.113.10"), ExternalPortMin: 2222, Internal: ip4("10.0.0.6"), InternalPortMin: 22},
			{Protocol: ProtoUDP, External: ip4("203.0.113.10"), ExternalPortMin: 5353, Internal: ip4("10.0.0.6"), InternalPortMin: 53},
			{Protocol: ProtoTCP, External: ip4("203.0.113.30"), ExternalPortMin: 8000, ExternalPortMax: 8003, Internal: ip4("10.0.0.6"), InternalPortMin: 9000, InternalPortMax: 9003},
			{Protocol: ProtoTCP, External: ip4("203.0.113.10"), ExternalPortMin: 7000, ExternalPortMax: 7009, Internal: ip4("10.0.0.6"), InternalPortMin: 7000, InternalPortMax: 7009},
			{Protocol: ProtoUDP, External: ip4("203.0.113.10"), ExternalPortMin: 6000, ExternalPortMax: 6009, Internal: ip4("10.0.0.7"), InternalPortMin: 6000},
		},
		Metadata: &Metadata{Port: 9697},
	}
}

// TestRouterGolden renders the router's program for representative rules:
// everything, no gateway (metadata only), and SNAT off.
func TestRouterGolden(t *testing.T) {
	for _, tc := range []struct {
		file string
		rr   RouterRules
	}{
		{"router.golden", sampleRouterRules()},
		{"router_nogw.golden", RouterRules{Internal: []netip.Prefix{pfx4("10.0.0.0/24")}, Metadata: &Metadata{Port: 9697}}},
		{"router_nosnat.golden", RouterRules{GatewayIface: "qg-1234", GatewayIP: ip4("203.0.113.10"),
			Internal: []netip.Prefix{pfx4("10.0.0.0/24")}, FloatingIPs: sampleRouterRules().FloatingIPs[:1]}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			p, err := compileRouter(tc.rr)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.file, p.render())
		})
	}
}

// TestRouterCompileDeterministic checks that the program depends neither on
// the order of the lists nor on map iteration.
func TestRouterCompileDeterministic(t *testing.T) {
	rr := sampleRouterRules()
	a, err := compileRouter(rr)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(rr.Forwards)
	slices.Reverse(rr.FloatingIPs)
	slices.Reverse(rr.Internal)
	for range 10 {
		b, _ := compileRouter(rr)
		if a.render() != b.render() {
			t.Fatal("router program depends on input order")
		}
	}
}

// TestRouterLayoutStable checks that the table has the same sets and chains
// whatever the rules, so an Apply never has to rebuild it.
func TestRouterLayoutStable(t *testing.T) {
	layout := func(rr RouterRules) string {
		p, err := compileRouter(rr)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, s := range p.tables[0].sets {
			fmt.Fprintf(&b, "%s %s %v %v %v|", s.name, s.keyType.Name, s.isMap, s.interval, s.concat)
		}
		for _, c := range p.tables[0].chains {
			b.WriteString(c.header(p.tables[0].family) + "|")
		}
		return b.String()
	}
	want := layout(sampleRouterRules())
	for _, rr := range []RouterRules{{}, {GatewayIface: "qg0", GatewayIP: ip4("203.0.113.10")}, {Metadata: &Metadata{Port: 1}}} {
		if got := layout(rr); got != want {
			t.Errorf("layout of %+v:\n got %s\nwant %s", rr, got, want)
		}
	}
}

// TestRouterForwardElements checks how forwards become elements: single
// ports and shifted ranges (port for port) in the hash map, N:1 and
// same-port ranges as one interval element.
func TestRouterForwardElements(t *testing.T) {
	p, err := compileRouter(sampleRouterRules())
	if err != nil {
		t.Fatal(err)
	}
	tb := p.tables[0]
	var fwd, rng []string
	for _, e := range tb.set("fwd").elems {
		fwd = append(fwd, e.text)
	}
	for _, e := range tb.set("fwd_range").elems {
		rng = append(rng, e.text)
	}
	wantFwd := []string{
		"tcp . 203.0.113.10 . 2222 : 10.0.0.6 . 22",
		"tcp . 203.0.113.30 . 8000 : 10.0.0.6 . 9000",
		"tcp . 203.0.113.30 . 8001 : 10.0.0.6 . 9001",
		"tcp . 203.0.113.30 . 8002 : 10.0.0.6 . 9002",
		"tcp . 203.0.113.30 . 8003 : 10.0.0.6 . 9003",
		"udp . 203.0.113.10 . 5353 : 10.0.0.6 . 53",
	}
	if !slices.Equal(fwd, wantFwd) {
		t.Errorf("fwd elements:\n%s\nwant\n%s", strings.Join(fwd, "\n"), strings.Join(wantFwd, "\n"))
	}
	if len(rng) != 2 || !strings.HasPrefix(rng[0], "tcp . 203.0.113.10 . 7000-7009 : 10.0.0.6 . 7000 . 7009") ||
		!strings.HasPrefix(rng[1], "udp . 203.0.113.10 . 6000-6009 : 10.0.0.7 . 6000 . 6000") {
		t.Errorf("fwd_range elements: %q", rng)
	}
	// The key is protocol . address . port, each padded to 4 bytes.
	if got := fmt.Sprintf("%x", tb.set("fwd").elems[0].key); got != "06000000cb00710a08ae0000" {
		t.Errorf("fwd key = %s", got)
	}
	if got := fmt.Sprintf("%x", tb.set("fwd").elems[0].val); got != "0a00000600160000" {
		t.Errorf("fwd value = %s", got)
	}
}

func TestRouterGatewayAddrs(t *testing.T) {
	got := sampleRouterRules().GatewayAddrs(24)
	want := []netip.Prefix{pfx4("203.0.113.10/24"), pfx4("203.0.113.21/32"), pfx4("203.0.113.20/32"), pfx4("203.0.113.30/32")}
	if !slices.Equal(got, want) {
		t.Errorf("GatewayAddrs = %v, want %v", got, want)
	}
	if got := (RouterRules{}).GatewayAddrs(24); got != nil {
		t.Errorf("GatewayAddrs without a gateway = %v", got)
	}
}

func TestRouterValidate(t *testing.T) {
	base := func(f func(*RouterRules)) RouterRules {
		rr := sampleRouterRules()
		rr.FloatingIPs = slices.Clone(rr.FloatingIPs)
		rr.Forwards = slices.Clone(rr.Forwards)
		f(&rr)
		return rr
	}
	fw := func(proto int, ext string, eMin, eMax uint16, in string, iMin, iMax uint16) Forward {
		return Forward{Protocol: proto, External: ip4(ext), ExternalPortMin: eMin, ExternalPortMax: eMax, Internal: ip4(in), InternalPortMin: iMin, InternalPortMax: iMax}
	}
	bad := map[string]RouterRules{
		"bad iface":            base(func(rr *RouterRules) { rr.GatewayIface = "a-name-that-is-too-long" }),
		"no gateway IP":        base(func(rr *RouterRules) { rr.GatewayIP = netip.Addr{} }),
		"IPv6 gateway IP":      base(func(rr *RouterRules) { rr.GatewayIP = ip4("2001:db8::1") }),
		"FIPs without gateway": base(func(rr *RouterRules) { rr.GatewayIface, rr.GatewayIP, rr.Forwards = "", netip.Addr{}, nil }),
		"fwd without gateway":  base(func(rr *RouterRules) { rr.GatewayIface, rr.GatewayIP, rr.FloatingIPs = "", netip.Addr{}, nil }),
		"IP without iface":     base(func(rr *RouterRules) { rr.GatewayIface, rr.FloatingIPs, rr.Forwards = "", nil, nil }),
		"FIP is gateway":       base(func(rr *RouterRules) { rr.FloatingIPs[0].External = rr.GatewayIP }),
		"FIP twice":            base(func(rr *RouterRules) { rr.FloatingIPs[0].External = rr.FloatingIPs[1].External }),
		"two FIPs for one IP":  base(func(rr *RouterRules) { rr.FloatingIPs[0].Internal = rr.FloatingIPs[1].Internal }),
		"link-local FIP":       base(func(rr *RouterRules) { rr.FloatingIPs[0].Internal = MetadataAddr }),
		"invalid internal":     base(func(rr *RouterRules) { rr.Internal = append(rr.Internal, netip.Prefix{}) }),
		"ICMP forward":         base(func(rr *RouterRules) { rr.Forwards[0].Protocol = ProtoICMP }),
		"port 0":               base(func(rr *RouterRules) { rr.Forwards[0].ExternalPortMin = 0 }),
		"reversed range":       base(func(rr *RouterRules) { rr.Forwards[2].ExternalPortMax = 7999 }),
		"range sizes differ":   base(func(rr *RouterRules) { rr.Forwards[2].InternalPortMax = 9001 }),
		"forward on a FIP":     base(func(rr *RouterRules) { rr.Forwards[0].External = ip4("203.0.113.20") }),
		"overlapping forwards": base(func(rr *RouterRules) {
			rr.Forwards = append(rr.Forwards, fw(ProtoTCP, "203.0.113.10", 7009, 7010, "10.0.0.9", 1, 2))
		}),
		"same port twice": base(func(rr *RouterRules) {
			rr.Forwards = append(rr.Forwards, fw(ProtoTCP, "203.0.113.10", 2222, 0, "10.0.0.9", 22, 0))
		}),
		"metadata port 0": base(func(rr *RouterRules) { rr.Metadata = &Metadata{} }),
		"too many expanded": base(func(rr *RouterRules) {
			rr.Forwards = []Forward{fw(ProtoTCP, "203.0.113.40", 1, 40000, "10.0.0.9", 2, 40001), fw(ProtoUDP, "203.0.113.40", 1, 40000, "10.0.0.9", 2, 40001)}
		}),
	}
	for name, rr := range bad {
		if _, err := compileRouter(rr); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: compileRouter = %v, want ErrInvalid", name, err)
		}
	}
	good := map[string]RouterRules{
		"no gateway": {Internal: []netip.Prefix{pfx4("10.0.0.0/24")}},
		"same port, 2 procs": base(func(rr *RouterRules) {
			rr.Forwards = append(rr.Forwards, fw(ProtoUDP, "203.0.113.10", 2222, 0, "10.0.0.9", 22, 0))
		}),
		"adjacent ranges": base(func(rr *RouterRules) {
			rr.Forwards = append(rr.Forwards, fw(ProtoTCP, "203.0.113.10", 7010, 7019, "10.0.0.9", 7010, 7019))
		}),
		"whole port space": base(func(rr *RouterRules) {
			rr.Forwards = []Forward{fw(ProtoTCP, "203.0.113.40", 1, 65535, "10.0.0.9", 1, 65535)}
		}),
		"a full shift": base(func(rr *RouterRules) {
			rr.Forwards = []Forward{fw(ProtoTCP, "203.0.113.40", 1, 65534, "10.0.0.9", 2, 65535)}
		}),
	}
	for name, rr := range good {
		if _, err := compileRouter(rr); err != nil {
			t.Errorf("%s: compileRouter = %v", name, err)
		}
	}
}

func TestRouterApplyInvalid(t *testing.T) {
	// Validation happens before any namespace is touched.
	_, err := NewRouterNAT(nil, nil).Apply(t.Context(), RouterRules{FloatingIPs: sampleRouterRules().FloatingIPs})
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("Apply of invalid rules = %v", err)
	}
}
