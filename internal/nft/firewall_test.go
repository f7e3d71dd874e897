package nft

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/nimbo-cloud/nimbo/internal/dhcp"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/testenv"
)

// lab is a switch namespace with a bridge and probe namespaces attached to
// it by veth pairs, each probe standing for a VM.
type lab struct {
	t      *testing.T
	swn    *testenv.Netns
	sw     *hostnet.NS
	probes []*probe
}

type probe struct {
	n     *testenv.Netns
	ns    *hostnet.NS
	iface string // the bridge port, in the switch namespace
	mac   net.HardwareAddr
	ip    netip.Addr
}

func openNS(t *testing.T, n *testenv.Netns) *hostnet.NS {
	t.Helper()
	ns, err := hostnet.Open(n.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func newLab(t *testing.T, count int) *lab {
	t.Helper()
	ctx := context.Background()
	l := &lab{t: t, swn: testenv.NewNetns(t)}
	l.sw = openNS(t, l.swn)
	if err := l.sw.EnsureBridge(ctx, "br0", mac("02:00:5e:10:00:01"), 0); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= count; i++ {
		p := &probe{n: testenv.NewNetns(t), iface: fmt.Sprintf("vp%d", i),
			mac: mac(fmt.Sprintf("02:00:5e:10:01:%02x", i)), ip: netip.MustParseAddr(fmt.Sprintf("10.80.0.%d", i))}
		p.ns = openNS(t, p.n)
		err := l.sw.EnsureVeth(ctx, hostnet.Veth{Name: p.iface, Bridge: "br0", Peer: hostnet.VethPeer{
			NS: p.ns, Name: "eth0", MAC: p.mac, Addrs: []netip.Prefix{netip.PrefixFrom(p.ip, 24)},
		}})
		if err != nil {
			t.Fatal(err)
		}
		l.probes = append(l.probes, p)
	}
	return l
}

func (p *probe) port(groups ...string) Port {
	return Port{ID: "port-" + p.iface, Iface: p.iface, MAC: p.mac, IPs: []netip.Addr{p.ip}, PortSecurity: true, Groups: groups}
}

// ping reports whether one echo from p to dst (optionally from source src)
// is answered within a second.
func (p *probe) ping(dst netip.Addr, src ...string) bool {
	args := []string{"netns", "exec", p.n.Name(), "ping", "-c1", "-W1", "-q"}
	if len(src) > 0 {
		args = append(args, "-I", src[0])
	}
	return exec.Command("ip", append(args, dst.String())...).Run() == nil
}

// dial reports whether a TCP connection from p to dst:port is established.
func (p *probe) dial(dst netip.Addr, port int) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	c, err := p.n.DialContext(ctx, "tcp", netip.AddrPortFrom(dst, uint16(port)).String())
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// listen accepts (and closes) TCP connections on p's address and port.
func (p *probe) listen(t *testing.T, port int) {
	ln, err := p.n.Listen("tcp", netip.AddrPortFrom(p.ip, uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func nftOut(t *testing.T, n *testenv.Netns, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.Name(), "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func expect(t *testing.T, what string, got, want bool) {
	t.Helper()
	if got != want {
		verb := "passes"
		if !want {
			verb = "is blocked"
		}
		t.Errorf("%s: want it %s, got the opposite", what, verb)
	}
}

func TestFirewallInNamespaces(t *testing.T) {
	ctx := context.Background()
	l := newLab(t, 4)
	p1, p2, p3, p4 := l.probes[0], l.probes[1], l.probes[2], l.probes[3]
	for _, port := range []int{22, 23} {
		p3.listen(t, port)
	}
	// Without a firewall everything passes (so a blocked probe below is
	// the firewall's doing).
	expect(t, "ping p1->p3 before any firewall", p1.ping(p3.ip), true)
	expect(t, "tcp p1->p3:23 before any firewall", p1.dial(p3.ip, 23), true)

	groups := map[string]Group{
		"g": {Rules: []Rule{
			{Direction: Ingress, EtherType: IPv4, RemoteGroupID: "g"},
			{Direction: Egress, EtherType: IPv4},
			{Direction: Egress, EtherType: IPv6},
		}},
		"ssh": {Rules: []Rule{
			{Direction: Ingress, EtherType: IPv4, Protocol: ProtoTCP, PortMin: Ptr(22), PortMax: Ptr(22)},
			{Direction: Egress, EtherType: IPv4},
		}},
	}
	rs := Ruleset{
		Ports: []Port{
			p1.port("g"), p2.port("g"), p3.port("ssh"),
			{ID: "port-vp4", Iface: p4.iface, MAC: p4.mac, IPs: []netip.Addr{p4.ip}}, // no port security
		},
		Groups: groups,
		Zones:  map[string]uint16{"br0": 7},
	}
	fw := New(l.sw, nil)
	t.Cleanup(func() { _ = fw.Delete(context.Background()) })
	st, err := fw.Apply(ctx, rs)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Rebuilt || st.Messages == 0 {
		t.Errorf("first Apply stats = %+v", st)
	}

	t.Run("group members reach each other", func(t *testing.T) {
		expect(t, "ping p1->p2", p1.ping(p2.ip), true)
		expect(t, "ping p2->p1", p2.ping(p1.ip), true)
	})
	t.Run("only the opened port", func(t *testing.T) {
		expect(t, "tcp p1->p3:22", p1.dial(p3.ip, 22), true)
		expect(t, "tcp p1->p3:23", p1.dial(p3.ip, 23), false)
		expect(t, "ping p1->p3", p1.ping(p3.ip), false)
		// p3 is not in g: p1 does not admit it.
		expect(t, "ping p3->p1", p3.ping(p1.ip), false)
	})
	t.Run("port without port security", func(t *testing.T) {
		// p1's egress allows everything and replies are established.
		expect(t, "ping p1->p4", p1.ping(p4.ip), true)
		expect(t, "ping p4->p1", p4.ping(p1.ip), false)
	})
	t.Run("conntrack zone", func(t *testing.T) {
		expect(t, "ping p1->p2", p1.ping(p2.ip), true)
		out, err := exec.Command("ip", "netns", "exec", l.swn.Name(), "cat", "/proc/net/nf_conntrack").CombinedOutput()
		if err != nil {
			t.Skipf("no conntrack table to read: %v %s", err, out)
		}
		if !strings.Contains(string(out), "zone=7") {
			t.Errorf("no conntrack entry in zone 7:\n%s", out)
		}
	})
	t.Run("spoofed source IP", func(t *testing.T) {
		if err := p1.ns.SetAddrs(ctx, "eth0", []netip.Prefix{netip.PrefixFrom(p1.ip, 24), netip.MustParsePrefix("10.80.0.99/24")}); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = p1.ns.SetAddrs(ctx, "eth0", []netip.Prefix{netip.PrefixFrom(p1.ip, 24)}) }()
		expect(t, "ping p1->p2 from its own IP", p1.ping(p2.ip, p1.ip.String()), true)
		expect(t, "ping p1->p2 from a spoofed IP", p1.ping(p2.ip, "10.80.0.99"), false)

		// An allowed address pair makes it legitimate (and a member of g).
		rs2 := rs
		rs2.Ports = append([]Port{}, rs.Ports...)
		rs2.Ports[0].AddressPairs = []AddressPair{{Prefix: netip.MustParsePrefix("10.80.0.99/32")}}
		if _, err := fw.Apply(ctx, rs2); err != nil {
			t.Fatal(err)
		}
		expect(t, "ping p1->p2 from an allowed address pair", p1.ping(p2.ip, "10.80.0.99"), true)
		if _, err := fw.Apply(ctx, rs); err != nil {
			t.Fatal(err)
		}
		expect(t, "ping p1->p2 from the removed pair", p1.ping(p2.ip, "10.80.0.99"), false)
	})
	t.Run("spoofed MAC", func(t *testing.T) {
		run := func(args ...string) {
			if out, err := exec.Command("ip", append([]string{"-n", p1.n.Name()}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("ip %v: %v %s", args, err, out)
			}
		}
		run("link", "set", "eth0", "address", "02:00:5e:10:01:99")
		run("neigh", "flush", "dev", "eth0")
		defer run("link", "set", "eth0", "address", p1.mac.String())
		expect(t, "ping p1->p2 with a spoofed MAC", p1.ping(p2.ip), false)
		// Even ARP is dropped: p2 never learns the new MAC.
		out, _ := exec.Command("ip", "-n", p2.n.Name(), "neigh", "show", p1.ip.String()).CombinedOutput()
		if strings.Contains(string(out), "02:00:5e:10:01:99") {
			t.Errorf("p2 learnt the spoofed MAC: %s", out)
		}
	})
	t.Run("IPv6", func(t *testing.T) {
		v6 := func(p *probe) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("fd00:80::%d", p.ip.As4()[3])) }
		rs6 := rs
		rs6.Ports = append([]Port{}, rs.Ports...)
		rs6.Groups = map[string]Group{"g": {Rules: append([]Rule{{Direction: Ingress, EtherType: IPv6, RemoteGroupID: "g"}}, groups["g"].Rules...)},
			"ssh": {Rules: append([]Rule{{Direction: Egress, EtherType: IPv6}}, groups["ssh"].Rules...)}}
		for i, p := range []*probe{p1, p2, p3} {
			if err := p.ns.SetAddrs(ctx, "eth0", []netip.Prefix{netip.PrefixFrom(p.ip, 24), netip.PrefixFrom(v6(p), 64)}); err != nil {
				t.Fatal(err)
			}
			rs6.Ports[i].IPs = []netip.Addr{p.ip, v6(p)}
		}
		defer func() {
			for _, p := range []*probe{p1, p2, p3} {
				_ = p.ns.SetAddrs(ctx, "eth0", []netip.Prefix{netip.PrefixFrom(p.ip, 24)})
			}
			if _, err := fw.Apply(ctx, rs); err != nil {
				t.Fatal(err)
			}
		}()
		if _, err := fw.Apply(ctx, rs6); err != nil {
			t.Fatal(err)
		}
		// Neighbour discovery (from link-local addresses) and group
		// membership work over IPv6.
		expect(t, "ping fd00:80::1 -> fd00:80::2", p1.ping(v6(p2)), true)
		expect(t, "ping fd00:80::3 -> fd00:80::1 (not in g)", p3.ping(v6(p1)), false)
		if err := p1.ns.SetAddrs(ctx, "eth0", []netip.Prefix{netip.PrefixFrom(p1.ip, 24), netip.PrefixFrom(v6(p1), 64), netip.MustParsePrefix("fd00:80::99/64")}); err != nil {
			t.Fatal(err)
		}
		expect(t, "ping from a spoofed IPv6 address", p1.ping(v6(p2), "fd00:80::99"), false)
	})
	t.Run("Apply twice is a no-op", func(t *testing.T) {
		before := nftOut(t, l.swn, "-a", "list", "ruleset")
		st, err := fw.Apply(ctx, rs)
		if err != nil {
			t.Fatal(err)
		}
		if st != (Stats{}) {
			t.Errorf("second Apply changed something: %+v", st)
		}
		// A new Firewall (as after a restart) adopts the tables.
		st, err = New(l.sw, nil).Apply(ctx, rs)
		if err != nil || st != (Stats{}) {
			t.Errorf("Apply from a new Firewall = %+v, %v; want no change", st, err)
		}
		if after := nftOut(t, l.swn, "-a", "list", "ruleset"); after != before {
			t.Errorf("ruleset changed:\n%s\n---\n%s", before, after)
		}
	})
	t.Run("port security off passes everything", func(t *testing.T) {
		rs2 := rs
		rs2.Ports = append([]Port{}, rs.Ports...)
		rs2.Ports[2].PortSecurity = false
		if _, err := fw.Apply(ctx, rs2); err != nil {
			t.Fatal(err)
		}
		expect(t, "tcp p1->p3:23", p1.dial(p3.ip, 23), true)
		expect(t, "ping p1->p3", p1.ping(p3.ip), true)
		if _, err := fw.Apply(ctx, rs); err != nil {
			t.Fatal(err)
		}
		expect(t, "tcp p1->p3:23 with port security back", p1.dial(p3.ip, 23), false)
	})
	t.Run("removing a port removes its elements", func(t *testing.T) {
		rs2 := rs
		rs2.Ports = []Port{rs.Ports[0], rs.Ports[2], rs.Ports[3]}
		st, err := fw.Apply(ctx, rs2)
		if err != nil {
			t.Fatal(err)
		}
		if st.ElementsDeleted == 0 || st.Rebuilt {
			t.Errorf("stats = %+v", st)
		}
		bridge := nftOut(t, l.swn, "list", "table", "bridge", TableName)
		inet := nftOut(t, l.swn, "list", "table", "inet", TableName)
		if strings.Contains(bridge, `"vp2"`) || strings.Contains(inet, "10.80.0.2") {
			t.Errorf("p2's elements are left:\n%s\n%s", bridge, inet)
		}
		if !strings.Contains(bridge, `"vp1" . 02:00:5e:10:01:01 . 10.80.0.1`) || !strings.Contains(inet, "10.80.0.1") {
			t.Errorf("p1's elements are missing:\n%s\n%s", bridge, inet)
		}
		// p2 is no longer filtered at all.
		expect(t, "ping p3->p2", p3.ping(p2.ip), true)
	})
	t.Run("empty ruleset and delete", func(t *testing.T) {
		st, err := fw.Apply(ctx, Ruleset{})
		if err != nil {
			t.Fatal(err)
		}
		if st.ChainsDeleted == 0 {
			t.Errorf("stats = %+v", st)
		}
		expect(t, "tcp p1->p3:23 with an empty ruleset", p1.dial(p3.ip, 23), true)
		if err := fw.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		if err := fw.Delete(ctx); err != nil {
			t.Fatalf("second Delete: %v", err)
		}
		if out := nftOut(t, l.swn, "list", "tables"); strings.TrimSpace(out) != "" {
			t.Errorf("tables left: %s", out)
		}
	})
}

// TestForeignTablesUntouched checks that Apply and Delete leave other
// tables alone.
func TestForeignTablesUntouched(t *testing.T) {
	ctx := context.Background()
	n := testenv.NewNetns(t)
	ns := openNS(t, n)
	nftOut(t, n, "add", "table", "inet", "other")
	nftOut(t, n, "add", "chain", "inet", "other", "c", "{ type filter hook forward priority 0; }")
	fw := New(ns, nil)
	if _, err := fw.Apply(ctx, sampleRuleset()); err != nil {
		t.Fatal(err)
	}
	if err := fw.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if out := nftOut(t, n, "list", "tables"); strings.TrimSpace(out) != "table inet other" {
		t.Errorf("tables = %q", out)
	}
}

// TestLayoutChangeRebuilds checks that a table whose layout is not ours
// (a set of another type under our name) is rebuilt in one batch.
func TestLayoutChangeRebuilds(t *testing.T) {
	ctx := context.Background()
	n := testenv.NewNetns(t)
	ns := openNS(t, n)
	nftOut(t, n, "add", "table", "bridge", TableName)
	nftOut(t, n, "add", "set", "bridge", TableName, "mac_ok", "{ type ipv4_addr; }")
	fw := New(ns, nil)
	st, err := fw.Apply(ctx, sampleRuleset())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Rebuilt {
		t.Errorf("stats = %+v, want a rebuild", st)
	}
	if st, err := fw.Apply(ctx, sampleRuleset()); err != nil || st != (Stats{}) {
		t.Errorf("Apply after rebuild = %+v, %v", st, err)
	}
	if out := nftOut(t, n, "list", "set", "bridge", TableName, "mac_ok"); !strings.Contains(out, "ifname . ether_addr") {
		t.Errorf("mac_ok not rebuilt:\n%s", out)
	}
}

// TestDHCPThroughFirewall checks the always-allowed DHCP exchange: a client
// port with port security and no groups at all still gets its lease, and a
// DHCP server behind a port with port security is silenced.
func TestDHCPThroughFirewall(t *testing.T) {
	ctx := context.Background()
	l := newLab(t, 2)
	cli, srvp := l.probes[0], l.probes[1]
	srv, err := dhcp.Start(ctx, dhcp.Config{
		NS: srvp.ns, Interface: "eth0", ServerIP: srvp.ip, Subnet: netip.PrefixFrom(srvp.ip, 24).Masked(),
		Hosts: []dhcp.Host{{MAC: cli.mac, IP: netip.MustParseAddr("10.80.0.50")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	// The client starts without an address, as a booting VM.
	if err := cli.ns.SetAddrs(ctx, "eth0", nil); err != nil {
		t.Fatal(err)
	}
	var c *nclient4.Client
	if err := cli.ns.Do(func() error {
		var err error
		c, err = nclient4.New("eth0", nclient4.WithTimeout(500*time.Millisecond), nclient4.WithRetry(2))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	request := func() error {
		rctx, cancel := context.WithTimeout(ctx, 4*time.Second)
		defer cancel()
		lease, err := c.Request(rctx)
		if err == nil && lease.ACK.YourIPAddr.String() != "10.80.0.50" {
			err = fmt.Errorf("leased %s", lease.ACK.YourIPAddr)
		}
		return err
	}
	fw := New(l.sw, nil)
	t.Cleanup(func() { _ = fw.Delete(context.Background()) })
	client := Port{ID: "cli", Iface: cli.iface, MAC: cli.mac, IPs: []netip.Addr{netip.MustParseAddr("10.80.0.50")}, PortSecurity: true}
	server := Port{ID: "dhcp", Iface: srvp.iface, MAC: srvp.mac, IPs: []netip.Addr{srvp.ip}}
	if _, err := fw.Apply(ctx, Ruleset{Ports: []Port{client, server}}); err != nil {
		t.Fatal(err)
	}
	if err := request(); err != nil {
		t.Errorf("DHCP for a port with no groups: %v", err)
	}
	// The same server behind a port with port security is a rogue server.
	server.PortSecurity = true
	server.Groups = []string{"open"}
	open := Group{Rules: []Rule{{Direction: Egress, EtherType: IPv4}, {Direction: Ingress, EtherType: IPv4}}}
	if _, err := fw.Apply(ctx, Ruleset{Ports: []Port{client, server}, Groups: map[string]Group{"open": open}}); err != nil {
		t.Fatal(err)
	}
	if err := request(); err == nil {
		t.Error("a DHCP server behind a port with port security was answered")
	}
}

func scaleRuleset(n int) Ruleset {
	rs := Ruleset{Groups: map[string]Group{
		"default": {Rules: []Rule{
			{Direction: Ingress, EtherType: IPv4, RemoteGroupID: "default"},
			{Direction: Ingress, EtherType: IPv6, RemoteGroupID: "default"},
			{Direction: Egress, EtherType: IPv4},
			{Direction: Egress, EtherType: IPv6},
		}},
		"web": {Rules: []Rule{
			{Direction: Ingress, EtherType: IPv4, Protocol: ProtoTCP, PortMin: Ptr(80)},
			{Direction: Ingress, EtherType: IPv4, Protocol: ProtoTCP, PortMin: Ptr(443)},
		}},
	}}
	for i := 0; i < n; i++ {
		groups := []string{"default"}
		if i%3 == 0 {
			groups = append(groups, "web")
		}
		rs.Ports = append(rs.Ports, Port{
			ID: fmt.Sprintf("port-%d", i), Iface: fmt.Sprintf("tap%06d", i),
			MAC:          net.HardwareAddr{0xfa, 0x16, 0x3e, byte(i >> 16), byte(i >> 8), byte(i)},
			IPs:          []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})},
			PortSecurity: true, Groups: groups,
		})
	}
	return rs
}

// TestApplyScale measures Apply for 1, 100 and 1000 ports (interfaces need
// not exist: the sets are keyed by name). It reports; it asserts only
// correctness.
func TestApplyScale(t *testing.T) {
	ctx := context.Background()
	for _, n := range []int{1, 100, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ns := openNS(t, testenv.NewNetns(t))
			fw := New(ns, nil)
			rs := scaleRuleset(n)
			start := time.Now()
			st, err := fw.Apply(ctx, rs)
			full := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			start = time.Now()
			st2, err := fw.Apply(ctx, rs)
			noop := time.Since(start)
			if err != nil || st2 != (Stats{}) {
				t.Fatalf("no-op Apply = %+v, %v", st2, err)
			}
			more := scaleRuleset(n + 1)
			start = time.Now()
			st3, err := fw.Apply(ctx, more)
			incr := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			// 4 bridge elements and the remote-group set's start and end
			// (and, with one port before, the new group list's chains).
			if n > 1 && st3.Chains != 0 || st3.ElementsAdded < 4 || st3.ElementsAdded > 8 {
				t.Errorf("adding one port: %+v", st3)
			}
			start = time.Now()
			if _, err := fw.Apply(ctx, rs); err != nil {
				t.Fatal(err)
			}
			remove := time.Since(start)
			t.Logf("%4d ports: full %v (%d messages, %d elements), no-op %v, add one port %v (%d messages), remove it %v",
				n, full, st.Messages, st.ElementsAdded, noop, incr, st3.Messages, remove)
			if err := fw.Delete(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestApplyInvalid(t *testing.T) {
	// Validation happens before any namespace is touched.
	fw := New(nil, nil)
	_, err := fw.Apply(context.Background(), Ruleset{Ports: []Port{{ID: "x", Iface: ""}}})
	if err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("Apply of an invalid ruleset = %v", err)
	}
}
