package routercheck

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/nft"
	"github.com/nimbo-cloud/nimbo/internal/testenv"
)

// routerLab is a router namespace built by hand the way the agent builds
// one, with a next hop and an "outside" behind it, all in namespaces the
// test creates:
//
//	[router] qg-3f1c2a9e0b7 172.24.4.10/24 ── eth0 172.24.4.1/24 [next hop] eth1 203.0.113.1/24 ── eth0 203.0.113.7/24 [outside]
//
// The router has a default route via 172.24.4.1 and the NAT table with SNAT
// to 172.24.4.10; the next hop forwards; the outside routes back by
// 203.0.113.1. A fourth namespace plays "this host" (its default route is
// the uplink the uplink step looks at); it starts with none.
type routerLab struct {
	router, nextHop, outside, host *testenv.Netns
	routerNS, nextHopNS, hostNS    *hostnet.NS
	nat                            *nft.RouterNAT
	rules                          nft.RouterRules
}

func openTestNS(t *testing.T, n *testenv.Netns) *hostnet.NS {
	t.Helper()
	ns, err := hostnet.Open(n.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func newRouterLab(t *testing.T) *routerLab {
	t.Helper()
	ctx := context.Background()
	l := &routerLab{router: testenv.NewNetns(t), nextHop: testenv.NewNetns(t), outside: testenv.NewNetns(t), host: testenv.NewNetns(t)}
	l.routerNS, l.nextHopNS, l.hostNS = openTestNS(t, l.router), openTestNS(t, l.nextHop), openTestNS(t, l.host)
	outsideNS := openTestNS(t, l.outside)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.routerNS.EnsureVeth(ctx, hostnet.Veth{Name: testIface, Peer: hostnet.VethPeer{
		NS: l.nextHopNS, Name: "eth0", Addrs: []netip.Prefix{pfx("172.24.4.1/24")}}}))
	must(l.routerNS.SetAddrs(ctx, testIface, []netip.Prefix{pfx("172.24.4.10/24")}))
	must(l.routerNS.EnsureRoute(ctx, hostnet.Route{Dst: pfx("0.0.0.0/0"), Gw: addr("172.24.4.1"), Dev: testIface}))
	must(l.routerNS.SetSysctl(ctx, "net.ipv4.ip_forward", "1"))
	must(l.nextHopNS.EnsureVeth(ctx, hostnet.Veth{Name: "eth1", Peer: hostnet.VethPeer{
		NS: outsideNS, Name: "eth0", Addrs: []netip.Prefix{pfx("203.0.113.7/24")}}}))
	must(l.nextHopNS.SetAddrs(ctx, "eth1", []netip.Prefix{pfx("203.0.113.1/24")}))
	must(l.nextHopNS.SetSysctl(ctx, "net.ipv4.ip_forward", "1"))
	must(outsideNS.EnsureRoute(ctx, hostnet.Route{Dst: pfx("0.0.0.0/0"), Gw: addr("203.0.113.1")}))
	l.nat = nft.NewRouterNAT(l.routerNS, nil)
	l.rules = nft.RouterRules{GatewayIface: testIface, GatewayIP: addr("172.24.4.10"), SNAT: true,
		Internal: []netip.Prefix{pfx("10.0.0.0/24")}, Metadata: &nft.Metadata{Port: 9697}}
	_, err := l.nat.Apply(ctx, l.rules)
	must(err)
	return l
}

// check runs Check against the lab with the real System.
func (l *routerLab) check(t *testing.T, target string, port int, change ...func(*fakeAPI)) Report {
	t.Helper()
	api, _ := healthy()
	for _, f := range change {
		f(api)
	}
	o := Options{Router: "r1", Host: "lab", NetnsPrefix: "nimbo", Port: port, Timeout: time.Second,
		Netns: func(string) string { return l.router.Name() }}
	if target != "" {
		o.Target = addr(target)
	}
	rep := Check(context.Background(), api, System{Self: l.hostNS}, o)
	var b strings.Builder
	_ = rep.Write(&b)
	t.Logf("nimbo router check r1 --target %q --port %d:\n%s", target, port, b.String())
	return rep
}

func wantOK(t *testing.T, rep Report, steps string) {
	t.Helper()
	if f, failed := rep.Failed(); failed {
		t.Fatalf("step %s failed: %s", f.Name, f.Text)
	}
	var names []string
	for _, s := range rep.Steps {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != steps {
		t.Errorf("steps %q, want %q", got, steps)
	}
	if rep.ExitCode() != 0 {
		t.Errorf("exit code %d", rep.ExitCode())
	}
}

func wantFail(t *testing.T, rep Report, step string, texts ...string) {
	t.Helper()
	f, failed := rep.Failed()
	if !failed {
		t.Fatalf("nothing failed, want %s to", step)
	}
	if f.Name != step {
		t.Fatalf("first failure %s (%s), want %s", f.Name, f.Text, step)
	}
	for _, s := range texts {
		if !strings.Contains(f.Text+"\n"+rep.Verdict, s) {
			t.Errorf("%s: %q\nverdict %q\nwant %q in them", f.Name, f.Text, rep.Verdict, s)
		}
	}
	if rep.ExitCode() != 1 {
		t.Errorf("exit code %d", rep.ExitCode())
	}
}

func TestLab(t *testing.T) {
	ctx := context.Background()
	l := newRouterLab(t)
	all := "router gateway namespace interface snat route next-hop"

	t.Run("ok", func(t *testing.T) {
		rep := l.check(t, "", 0)
		wantOK(t, rep, all)
		rep = l.check(t, "203.0.113.7", 0)
		wantOK(t, rep, all+" target")
		if want := "ok: router r1 reaches 203.0.113.7 through " + testIface + " from 172.24.4.10"; rep.Verdict != want {
			t.Errorf("verdict %q, want %q", rep.Verdict, want)
		}
	})

	t.Run("tcp", func(t *testing.T) {
		ln, err := l.outside.Listen("tcp4", "203.0.113.7:8080")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		peers := make(chan string, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peers <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			c.Close()
		}()
		wantOK(t, l.check(t, "203.0.113.7", 8080), all+" target")
		if p := <-peers; p != "172.24.4.10" {
			t.Errorf("the connection came from %s, want the gateway IP", p)
		}
		wantFail(t, l.check(t, "203.0.113.7", 8081), "target", "203.0.113.7:8081 refused the connection", "nothing listens on port 8081")
	})

	t.Run("unreachable target", func(t *testing.T) {
		rep := l.check(t, "203.0.113.99", 0)
		wantFail(t, rep, "target",
			"packets leave through "+testIface+" with source 172.24.4.10 (SNAT) and the next hop 172.24.4.1 answers, but 203.0.113.99 does not",
			"the host's uplink or the outside network drops them",
			"this host has no default route: egress has no uplink")
		if last := rep.Steps[len(rep.Steps)-1]; last.Name != StepUplink || last.Status != Fail {
			t.Errorf("last step %+v, want a failed uplink", last)
		}

		// With an uplink, the host is not blamed.
		if err := l.hostNS.EnsureVeth(ctx, hostnet.Veth{Name: "up0", Peer: hostnet.VethPeer{Name: "up1"}}); err != nil {
			t.Fatal(err)
		}
		if err := l.hostNS.SetAddrs(ctx, "up0", []netip.Prefix{pfx("10.99.0.2/24")}); err != nil {
			t.Fatal(err)
		}
		if err := l.hostNS.EnsureRoute(ctx, hostnet.Route{Dst: pfx("0.0.0.0/0"), Gw: addr("10.99.0.1")}); err != nil {
			t.Fatal(err)
		}
		rep = l.check(t, "203.0.113.99", 0)
		wantFail(t, rep, "target", "but 203.0.113.99 does not")
		if last := rep.Steps[len(rep.Steps)-1]; last.Name != StepUplink || last.Status != OK || !strings.Contains(last.Text, "via 10.99.0.1 dev up0") {
			t.Errorf("last step %+v, want the host's default route", last)
		}
	})

	t.Run("missing SNAT table", func(t *testing.T) {
		if err := l.nat.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if _, err := l.nat.Apply(ctx, l.rules); err != nil {
				t.Fatal(err)
			}
		}()
		wantFail(t, l.check(t, "203.0.113.7", 0), "snat", "no SNAT rule: the namespace has no table ip nimbo_router")
	})

	t.Run("SNAT off", func(t *testing.T) {
		rr := l.rules
		rr.SNAT = false
		if _, err := l.nat.Apply(ctx, rr); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if _, err := l.nat.Apply(ctx, l.rules); err != nil {
				t.Fatal(err)
			}
		}()
		wantFail(t, l.check(t, "", 0), "snat", "no SNAT rule: table ip nimbo_router has no snat rule although enable_snat is true")
	})

	t.Run("missing route", func(t *testing.T) {
		def := hostnet.Route{Dst: pfx("0.0.0.0/0"), Gw: addr("172.24.4.1"), Dev: testIface}
		if err := l.routerNS.DeleteRoute(ctx, def); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := l.routerNS.EnsureRoute(ctx, def); err != nil {
				t.Fatal(err)
			}
		}()
		rep := l.check(t, "203.0.113.7", 0)
		wantFail(t, rep, "route", "no default route in the namespace, although the external subnet's gateway_ip is 172.24.4.1")
		if last := rep.Steps[len(rep.Steps)-1]; last.Name != StepRoute {
			t.Errorf("steps went on after the route: %+v", last)
		}
	})

	t.Run("next hop gone", func(t *testing.T) {
		// The subnet's gateway_ip is an address nobody on the external
		// network has: no ARP answer.
		def := hostnet.Route{Dst: pfx("0.0.0.0/0"), Gw: addr("172.24.4.254"), Dev: testIface}
		if err := l.routerNS.EnsureRoute(ctx, def); err != nil {
			t.Fatal(err)
		}
		defer func() {
			def.Gw = addr("172.24.4.1")
			if err := l.routerNS.EnsureRoute(ctx, def); err != nil {
				t.Fatal(err)
			}
		}()
		rep := l.check(t, "203.0.113.7", 0, func(a *fakeAPI) { a.r.Gateway.Subnet.GatewayIP = addr("172.24.4.254") })
		wantFail(t, rep, "next-hop", "172.24.4.254 does not answer ping from 172.24.4.10: no ARP answer for 172.24.4.254 on "+testIface)
		if last := rep.Steps[len(rep.Steps)-1]; last.Name != StepTarget || !strings.Contains(last.Text, "the next hop 172.24.4.254 does not answer either") {
			t.Errorf("last step %+v", last)
		}
	})

	t.Run("no namespace", func(t *testing.T) {
		api, _ := healthy()
		rep := Check(ctx, api, System{Self: l.hostNS}, Options{Router: "r1", Host: "lab", NetnsPrefix: "nimbo-test-absent", Timeout: time.Second})
		wantFail(t, rep, "namespace", "is not on this host (lab): the agent has not built this router here: is `nimbo up` running on this host with --netns-prefix nimbo-test-absent?")
	})

	// Everything put back: healthy again.
	wantOK(t, l.check(t, "203.0.113.7", 0), all+" target")
}
