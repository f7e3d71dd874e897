package agent

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/network"
	"github.com/nimbo-cloud/nimbo/internal/nft"
)

func TestGoneFlows(t *testing.T) {
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	fip := nft.FloatingIP{External: a("172.24.4.20"), Internal: a("10.0.0.5")}
	moved := nft.FloatingIP{External: a("172.24.4.21"), Internal: a("10.0.0.6")}
	fwd := nft.Forward{Protocol: nft.ProtoTCP, External: a("172.24.4.30"), ExternalPortMin: 2222, Internal: a("10.0.0.7"), InternalPortMin: 22}
	rng := nft.Forward{Protocol: nft.ProtoUDP, External: a("172.24.4.30"), ExternalPortMin: 5000, ExternalPortMax: 5001, Internal: a("10.0.0.7"), InternalPortMin: 5000, InternalPortMax: 5001}
	wide := nft.Forward{Protocol: nft.ProtoTCP, External: a("172.24.4.31"), ExternalPortMin: 1000, ExternalPortMax: 2000, Internal: a("10.0.0.8"), InternalPortMin: 1000, InternalPortMax: 2000}
	before := nft.RouterRules{FloatingIPs: []nft.FloatingIP{fip, moved}, Forwards: []nft.Forward{fwd, rng, wide}}
	if got := goneFlows(before, before); len(got) != 0 {
		t.Fatalf("nothing changed, yet %v", got)
	}
	movedNow := moved
	movedNow.Internal = a("10.0.0.9")
	after := nft.RouterRules{FloatingIPs: []nft.FloatingIP{movedNow}, Forwards: []nft.Forward{fwd}}
	got := goneFlows(before, after)
	want := []hostnet.ConnMatch{
		{Dst: fip.External}, {Dst: fip.External, Reply: true},
		{Dst: moved.External}, {Dst: moved.External, Reply: true}, // re-associated: its old flows go
		{Dst: rng.External, Proto: nft.ProtoUDP, Port: 5000}, {Dst: rng.External, Proto: nft.ProtoUDP, Port: 5001},
		{Dst: wide.External, Proto: nft.ProtoTCP},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("goneFlows = %v\nwant %v", got, want)
	}
}

// A router's fingerprint depends on its state's values only: two equal
// states gathered apart (fresh pointers for the gateway, the metadata
// rule) give the same one, and a change behind a pointer gives another.
func TestRouterFingerprintFollowsValues(t *testing.T) {
	state := func(snat bool) *routerState {
		gw := network.Port{MAC: "fa:16:3e:00:00:01"}
		gw.ID = "gw"
		return &routerState{
			router:  network.Router{Gateway: &network.RouterGateway{NetworkID: "public", PortID: "gw", EnableSNAT: snat}},
			gateway: &gw,
			rules:   nft.RouterRules{GatewayIface: "qg-x", Metadata: &nft.Metadata{Port: MetadataPort}, SNAT: snat},
		}
	}
	if a, b := routerFingerprint(state(true)), routerFingerprint(state(true)); a != b {
		t.Fatalf("equal states, fingerprints %s and %s", a, b)
	}
	if a, b := routerFingerprint(state(true)), routerFingerprint(state(false)); a == b {
		t.Fatalf("enable_snat changed behind a pointer, fingerprint stayed %s", a)
	}
}

// A part JSON cannot encode never lets two fingerprints match (the state
// is built every time rather than skipped wrongly).
func TestFingerprintOfUnencodable(t *testing.T) {
	ch := make(chan int)
	if a, b := fingerprint("x", ch), fingerprint("x", ch); a == b {
		t.Fatalf("two fingerprints of an unencodable part match: %s", a)
	}
}
