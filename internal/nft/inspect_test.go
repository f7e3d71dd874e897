package nft

import (
	"context"
	"net/netip"
	"testing"

	"github.com/google/nftables/expr"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/testenv"
)

// TestSNATRuleCompiled checks, without root, that snatRule recognises the
// gateway SNAT rule compileRouter emits and none of the others.
func TestSNATRuleCompiled(t *testing.T) {
	rr := RouterRules{GatewayIface: "qg-0123456789a", GatewayIP: netip.MustParseAddr("172.24.4.10"), SNAT: true,
		Internal:    []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")},
		FloatingIPs: []FloatingIP{{External: netip.MustParseAddr("172.24.4.20"), Internal: netip.MustParseAddr("10.0.0.5")}},
		Metadata:    &Metadata{Port: 9697}}
	for _, snat := range []bool{true, false} {
		rr.SNAT = snat
		prog, err := compileRouter(rr)
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, c := range prog.tables[0].chains {
			for _, r := range c.rules {
				a, iface, ok := snatRule(r.exprs)
				if !ok {
					continue
				}
				found++
				if c.name != "postrouting" || a != rr.GatewayIP || iface != rr.GatewayIface {
					t.Errorf("snat=%v: chain %s rule %q: got %s on %q", snat, c.name, r.text, a, iface)
				}
			}
		}
		if want := map[bool]int{true: 1, false: 0}[snat]; found != want {
			t.Errorf("snat=%v: %d SNAT rules recognised, want %d", snat, found, want)
		}
	}
	if _, _, ok := snatRule([]expr.Any{&expr.NAT{Type: expr.NATTypeSourceNAT, RegAddrMin: 1}}); ok {
		t.Error("a source NAT without an immediate address was taken for the gateway rule")
	}
}

// TestReadRouterNAT applies router rules in a throwaway namespace and reads
// them back.
func TestReadRouterNAT(t *testing.T) {
	ctx := context.Background()
	n := testenv.NewNetns(t)
	ns, err := hostnet.Open(n.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()

	st, err := ReadRouterNAT(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if st != (RouterNATState{}) {
		t.Fatalf("empty namespace: got %+v", st)
	}

	gw := netip.MustParseAddr("172.24.4.10")
	rr := RouterRules{GatewayIface: "qg-0123456789a", GatewayIP: gw, SNAT: true,
		Internal: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("10.0.1.0/24"), netip.MustParsePrefix("10.9.0.0/24")},
		FloatingIPs: []FloatingIP{
			{External: netip.MustParseAddr("172.24.4.20"), Internal: netip.MustParseAddr("10.0.0.5")},
			{External: netip.MustParseAddr("172.24.4.21"), Internal: netip.MustParseAddr("10.0.0.6")},
		},
		Forwards: []Forward{
			{Protocol: ProtoTCP, External: gw, ExternalPortMin: 2222, Internal: netip.MustParseAddr("10.0.0.7"), InternalPortMin: 22},
			{Protocol: ProtoUDP, External: gw, ExternalPortMin: 5000, ExternalPortMax: 5009, Internal: netip.MustParseAddr("10.0.0.7"), InternalPortMin: 5000, InternalPortMax: 5009},
		},
		Metadata: &Metadata{Port: 9697}}
	nat := NewRouterNAT(ns, nil)
	if _, err := nat.Apply(ctx, rr); err != nil {
		t.Fatal(err)
	}
	st, err = ReadRouterNAT(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	// 10.0.0.0/24 and 10.0.1.0/24 merge into one range.
	want := RouterNATState{Exists: true, SNAT: gw, SNATIface: "qg-0123456789a", Internal: 2, FloatingIPs: 2, Forwards: 2}
	if st != want {
		t.Errorf("got %+v, want %+v", st, want)
	}

	rr.SNAT = false
	if _, err := nat.Apply(ctx, rr); err != nil {
		t.Fatal(err)
	}
	st, err = ReadRouterNAT(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	want.SNAT, want.SNATIface = netip.Addr{}, ""
	if st != want {
		t.Errorf("enable_snat false: got %+v, want %+v", st, want)
	}

	if err := nat.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	st, err = ReadRouterNAT(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if st.Exists {
		t.Errorf("after Delete: got %+v", st)
	}
}
