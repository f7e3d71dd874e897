package underlay_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/underlay"
)

func TestCheck(t *testing.T) {
	good := underlay.External{NetworkID: "pub", Bridge: "nb-aaaaaaaaaaa", CIDR: netip.MustParsePrefix("172.24.4.0/24"),
		Gateway: netip.MustParseAddr("172.24.4.1"), Addresses: []netip.Addr{netip.MustParseAddr("172.24.4.20")}}
	pub := underlay.Publish{Protocol: underlay.TCP, Host: netip.MustParseAddrPort("203.0.113.2:522"), Target: netip.MustParseAddrPort("172.24.4.20:22")}
	if err := (underlay.Config{Externals: []underlay.External{good}, Published: []underlay.Publish{pub}}).Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	bad := map[string]underlay.External{
		"no id":       {Bridge: "nb-b", CIDR: netip.MustParsePrefix("10.1.0.0/24")},
		"same id":     {NetworkID: "pub", Bridge: "nb-b", CIDR: netip.MustParsePrefix("10.1.0.0/24")},
		"same bridge": {NetworkID: "b", Bridge: good.Bridge, CIDR: netip.MustParsePrefix("10.1.0.0/24")},
		"ipv6":        {NetworkID: "b", Bridge: "nb-b", CIDR: netip.MustParsePrefix("fd00::/64")},
		"host bits":   {NetworkID: "b", Bridge: "nb-b", CIDR: netip.MustParsePrefix("10.1.0.1/24")},
		"gw outside":  {NetworkID: "b", Bridge: "nb-b", CIDR: netip.MustParsePrefix("10.1.0.0/24"), Gateway: netip.MustParseAddr("10.2.0.1")},
		"bad bridge":  {NetworkID: "b", Bridge: "nb/b", CIDR: netip.MustParsePrefix("10.1.0.0/24")},
		"addr out":    {NetworkID: "b", Bridge: "nb-b", CIDR: netip.MustParsePrefix("10.1.0.0/24"), Addresses: []netip.Addr{netip.MustParseAddr("10.2.0.5")}},
		"overlap":     {NetworkID: "b", Bridge: "nb-b", CIDR: netip.MustParsePrefix("172.24.0.0/16")},
	}
	for name, e := range bad {
		got, err := underlay.Config{Externals: []underlay.External{good, e}, Published: []underlay.Publish{pub}}.Check()
		if !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: Check error = %v, want ErrInvalid", name, err)
		}
		// The valid part is kept.
		if len(got.Externals) != 1 || got.Externals[0].NetworkID != "pub" || len(got.Published) != 1 {
			t.Errorf("%s: Check kept %+v", name, got)
		}
	}
	badPub := map[string]underlay.Publish{
		"sctp":        {Protocol: "sctp", Host: pub.Host, Target: pub.Target},
		"no port":     {Protocol: underlay.UDP, Host: netip.MustParseAddrPort("203.0.113.2:0"), Target: pub.Target},
		"unspecified": {Protocol: underlay.UDP, Host: netip.MustParseAddrPort("0.0.0.0:53"), Target: pub.Target},
		"off network": {Protocol: underlay.UDP, Host: pub.Host, Target: netip.MustParseAddrPort("10.9.9.9:53")},
		"twice":       pub,
	}
	for name, p := range badPub {
		got, err := underlay.Config{Externals: []underlay.External{good}, Published: []underlay.Publish{pub, p}}.Check()
		if !errors.Is(err, errdefs.ErrInvalid) || len(got.Published) != 1 || got.Published[0] != pub {
			t.Errorf("%s: Check = %+v, %v", name, got, err)
		}
		if !strings.Contains(err.Error(), "published forward") {
			t.Errorf("%s: message %q does not say what is wrong", name, err)
		}
	}
}
