package nft

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// sampleRuleset covers every feature: fixed IPs of both families, address
// pairs with and without their own MAC, a port without port security, one
// with no groups, a missing group, remote groups and prefixes, port ranges,
// ICMP type and code, and a conntrack zone.
func sampleRuleset() Ruleset {
	return Ruleset{
		Ports: []Port{
			{ID: "pa", Iface: "tapa", MAC: mac("fa:16:3e:00:00:0a"), IPs: addrs("10.0.0.10", "fd00::a"), PortSecurity: true,
				Groups: []string{"default"},
				AddressPairs: []AddressPair{
					{Prefix: netip.MustParsePrefix("10.0.0.128/25")},
					{Prefix: netip.MustParsePrefix("10.0.5.5/32"), MAC: mac("fa:16:3e:00:00:ff")},
				}},
			{ID: "pb", Iface: "tapb", MAC: mac("fa:16:3e:00:00:0b"), IPs: addrs("10.0.0.11"), PortSecurity: true,
				Groups: []string{"web", "default", "web"}},
			{ID: "pc", Iface: "tapc", MAC: mac("fa:16:3e:00:00:0c"), IPs: addrs("10.0.0.12")},
			{ID: "pd", Iface: "tapd", MAC: mac("fa:16:3e:00:00:0d"), IPs: addrs("10.0.0.13"), PortSecurity: true},
			{ID: "pe", Iface: "tape", MAC: mac("fa:16:3e:00:00:0e"), IPs: addrs("10.0.0.14"), PortSecurity: true, Groups: []string{"gone"}},
		},
		Groups: map[string]Group{
			"default": {ID: "default", Rules: []Rule{
				{Direction: Ingress, EtherType: IPv4, RemoteGroupID: "default"},
				{Direction: Ingress, EtherType: IPv6, RemoteGroupID: "default"},
				{Direction: Egress, EtherType: IPv4},
				{Direction: Egress, EtherType: IPv6},
			}},
			"web": {Rules: []Rule{
				{Direction: Ingress, EtherType: IPv4, Protocol: ProtoTCP, PortMin: Ptr(80)},
				{Direction: Ingress, EtherType: IPv4, Protocol: ProtoTCP, PortMin: Ptr(8000), PortMax: Ptr(8080), RemoteIPPrefix: netip.MustParsePrefix("203.0.113.0/24")},
				{Direction: Ingress, EtherType: IPv4, Protocol: ProtoICMP, PortMin: Ptr(8), PortMax: Ptr(0)},
				{Direction: Ingress, EtherType: IPv6, Protocol: ProtoICMP},
				{Direction: Egress, EtherType: IPv4, Protocol: ProtoUDP, PortMin: Ptr(53), RemoteIPPrefix: netip.MustParsePrefix("10.0.0.1/32")},
			}},
		},
		Zones: map[string]uint16{"brnet1": 1},
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s differs at line %d:\n got: %s\nwant: %s\n(run with -update if the change is intended)", path, i+1, g, w)
			}
		}
	}
}

// TestGolden renders the whole program for a sample Ruleset: rules in
// readable form and the exact expressions sent to the kernel.
func TestGolden(t *testing.T) {
	p, err := compile(sampleRuleset())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "sample.golden", p.render())

	empty, err := compile(Ruleset{})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "empty.golden", empty.render())
}

// TestCompileDeterministic checks that the program does not depend on the
// order of ports, groups or map iteration.
func TestCompileDeterministic(t *testing.T) {
	rs := sampleRuleset()
	a, _ := compile(rs)
	rs.Ports[0], rs.Ports[3] = rs.Ports[3], rs.Ports[0]
	for i := 0; i < 20; i++ {
		b, _ := compile(rs)
		if a.render() != b.render() {
			t.Fatal("program depends on input order")
		}
	}
}

func TestComboMarksStable(t *testing.T) {
	base := []Port{{PortSecurity: true, Groups: []string{"a"}}, {PortSecurity: true, Groups: []string{"b", "a"}}}
	cs := combos(base)
	more := combos(append(base, Port{PortSecurity: true, Groups: []string{"c"}}, Port{PortSecurity: true}))
	for k, c := range cs {
		if more[k].mark != c.mark {
			t.Errorf("mark of %q changed from %x to %x when other combos were added", k, c.mark, more[k].mark)
		}
	}
	if len(more) != 4 || more[""] == nil {
		t.Errorf("combos = %v", more)
	}
}

func TestMergeRanges(t *testing.T) {
	var ps []netip.Prefix
	for _, s := range []string{"10.0.0.5/32", "10.0.0.0/24", "10.0.1.0/24", "10.0.3.1/32", "fd00::1/128", "fd00::2/128", "255.255.255.255/32", "0.0.0.0/1"} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	got := fmt.Sprint(mergeRanges(ps))
	// 10.x is inside 0.0.0.0/1; the IPv6 addresses are adjacent.
	if want := "[0.0.0.0-127.255.255.255 255.255.255.255 fd00::1-fd00::2]"; got != want {
		t.Errorf("mergeRanges = %s, want %s", got, want)
	}
	ps = ps[:4] // without 0.0.0.0/1
	if got, want := fmt.Sprint(mergeRanges(ps)), "[10.0.0.0-10.0.1.255 10.0.3.1]"; got != want {
		t.Errorf("mergeRanges = %s, want %s", got, want)
	}
	if ll := linkLocal(mac("fa:16:3e:00:00:0a")); ll.String() != "fe80::f816:3eff:fe00:a" {
		t.Errorf("linkLocal = %s", ll)
	}
}

func TestValidate(t *testing.T) {
	good := Port{ID: "p", Iface: "tap0", MAC: mac("fa:16:3e:00:00:01"), PortSecurity: true}
	bad := []Ruleset{
		{Ports: []Port{good, good}},
		{Ports: []Port{{ID: "p", Iface: "this-name-is-too-long"}}},
		{Ports: []Port{{ID: "p", Iface: "tap0", PortSecurity: true}}},
		{Ports: []Port{{ID: "bad id", Iface: "tap0"}}},
		{Groups: map[string]Group{"g": {Rules: []Rule{{Direction: "sideways", EtherType: IPv4}}}}},
		{Groups: map[string]Group{"g": {Rules: []Rule{{Direction: Ingress, EtherType: IPv4, RemoteIPPrefix: netip.MustParsePrefix("fd00::/8")}}}}},
		{Groups: map[string]Group{"g": {Rules: []Rule{{Direction: Ingress, EtherType: IPv4, Protocol: ProtoTCP, PortMin: Ptr(90), PortMax: Ptr(80)}}}}},
		{Groups: map[string]Group{"g": {Rules: []Rule{{Direction: Ingress, EtherType: IPv4, Protocol: 47, PortMin: Ptr(1)}}}}},
		{Groups: map[string]Group{"g": {ID: "h"}}},
	}
	for i, rs := range bad {
		if _, err := compile(rs); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("case %d: compile = %v, want ErrInvalid", i, err)
		}
	}
}
