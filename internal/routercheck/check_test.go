package routercheck

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/nft"
)

var (
	addr = netip.MustParseAddr
	pfx  = netip.MustParsePrefix
)

const (
	testRouterID = "7a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	testPortID   = "3f1c2a9e-0b7d-4c2e-9f1a-5b6c7d8e9f00"
	testIface    = "qg-3f1c2a9e0b7"
)

// fakeAPI answers with a fixed router or error.
type fakeAPI struct {
	r   Router
	err error
	got string
}

func (f *fakeAPI) Router(_ context.Context, nameOrID string) (Router, error) {
	f.got = nameOrID
	return f.r, f.err
}

// fakeHost hands out ns, or openErr.
type fakeHost struct {
	ns      *fakeNS
	openErr error
	opened  string
	route   hostnet.Route
	routeOK bool
}

func (h *fakeHost) OpenNamespace(_ context.Context, name string) (Namespace, error) {
	h.opened = name
	if h.openErr != nil {
		return nil, h.openErr
	}
	return h.ns, nil
}

func (h *fakeHost) DefaultRoute(context.Context) (hostnet.Route, bool, error) {
	return h.route, h.routeOK, nil
}

// fakeNS is a router namespace made of values.
type fakeNS struct {
	links    []Link
	nat      nft.RouterNATState
	natErr   error
	route    hostnet.Route
	routeOK  bool
	routeGet map[netip.Addr]hostnet.Route
	neigh    map[netip.Addr]string
	pings    map[netip.Addr]Reply
	dials    map[netip.AddrPort]Reply
	pinged   []string // "src>dst"
	closed   bool
}

func (n *fakeNS) Links(_ context.Context, prefix string) ([]Link, error) {
	var out []Link
	for _, l := range n.links {
		if strings.HasPrefix(l.Name, prefix) {
			out = append(out, l)
		}
	}
	return out, nil
}

func (n *fakeNS) NAT(context.Context) (nft.RouterNATState, error) { return n.nat, n.natErr }

func (n *fakeNS) DefaultRoute(context.Context) (hostnet.Route, bool, error) {
	return n.route, n.routeOK, nil
}

func (n *fakeNS) RouteGet(_ context.Context, dst netip.Addr) (hostnet.Route, error) {
	if r, ok := n.routeGet[dst]; ok {
		return r, nil
	}
	if n.routeOK {
		return hostnet.Route{Dst: netip.PrefixFrom(dst, 32), Gw: n.route.Gw, Dev: n.route.Dev, Src: addr("172.24.4.10")}, nil
	}
	return hostnet.Route{}, errors.New("network is unreachable")
}

func (n *fakeNS) Neighbor(_ context.Context, _ string, ip netip.Addr) (string, error) {
	return n.neigh[ip], nil
}

func (n *fakeNS) Ping(_ context.Context, src, dst netip.Addr, _ time.Duration) (Reply, error) {
	n.pinged = append(n.pinged, src.String()+">"+dst.String())
	return n.pings[dst], nil
}

func (n *fakeNS) Dial(_ context.Context, src, dst netip.Addr, port int, _ time.Duration) (Reply, error) {
	n.pinged = append(n.pinged, fmt.Sprintf("%s>%s:%d", src, dst, port))
	return n.dials[netip.AddrPortFrom(dst, uint16(port))], nil
}

func (n *fakeNS) Close() error { n.closed = true; return nil }

// healthy returns a router, its namespace and a host where everything works.
func healthy() (*fakeAPI, *fakeHost) {
	api := &fakeAPI{r: Router{ID: testRouterID, Name: "r1", Status: "ACTIVE", AdminStateUp: true,
		Gateway: &Gateway{NetworkID: "net-pub", NetworkName: "public", EnableSNAT: true, PortID: testPortID,
			IP: addr("172.24.4.10"), SubnetID: "sub-pub",
			Subnet: &Subnet{ID: "sub-pub", Name: "public-subnet", CIDR: pfx("172.24.4.0/24"), GatewayIP: addr("172.24.4.1")}}}}
	ns := &fakeNS{
		links: []Link{
			{Name: "qr-0011223344a", Up: true, Carrier: true, Addrs: []netip.Prefix{pfx("10.0.0.1/24")}},
			{Name: testIface, Up: true, Carrier: true, Addrs: []netip.Prefix{pfx("172.24.4.10/24")}},
		},
		nat:     nft.RouterNATState{Exists: true, SNAT: addr("172.24.4.10"), SNATIface: testIface, Internal: 1},
		route:   hostnet.Route{Dst: pfx("0.0.0.0/0"), Gw: addr("172.24.4.1"), Dev: testIface},
		routeOK: true,
		pings: map[netip.Addr]Reply{
			addr("172.24.4.1"):  {Answered: true, RTT: 420 * time.Microsecond},
			addr("203.0.113.7"): {Answered: true, RTT: 1500 * time.Microsecond},
		},
		dials: map[netip.AddrPort]Reply{
			netip.MustParseAddrPort("203.0.113.7:22"): {Answered: true, RTT: 2 * time.Millisecond},
			netip.MustParseAddrPort("203.0.113.7:23"): {Refused: true},
		},
	}
	return api, &fakeHost{ns: ns, route: hostnet.Route{Dst: pfx("0.0.0.0/0"), Gw: addr("10.9.0.1"), Dev: "eth0"}, routeOK: true}
}

func opts() Options {
	return Options{Router: "r1", Host: "h1", NetnsPrefix: "nimbo", Timeout: time.Second}
}

func TestTestIface(t *testing.T) {
	if got := hostnet.IfName("qg-", testPortID); got != testIface {
		t.Fatalf("IfName = %s, want %s", got, testIface)
	}
}

// TestOutput pins the exact output of the healthy path and one failure:
// the e2e tests and scripts parse it (see Report.Write).
func TestOutput(t *testing.T) {
	api, host := healthy()
	o := opts()
	o.Target = addr("203.0.113.7")
	rep := Check(context.Background(), api, host, o)
	var b strings.Builder
	if err := rep.Write(&b); err != nil {
		t.Fatal(err)
	}
	want := `ok    router     r1 (7a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d) is ACTIVE, admin_state_up true
ok    gateway    gateway 172.24.4.10 on network public (net-pub), subnet public-subnet 172.24.4.0/24, gateway_ip 172.24.4.1
ok    namespace  namespace nimbo-router-7a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d is on this host (h1)
ok    interface  qg-3f1c2a9e0b7 is up and carries 172.24.4.10/24
ok    snat       table ip nimbo_router SNATs the internal subnets (1 range) to 172.24.4.10 on qg-3f1c2a9e0b7 (0 floating IPs, 0 port forwards)
ok    route      default via 172.24.4.1 dev qg-3f1c2a9e0b7
ok    next-hop   172.24.4.1 answers ping from 172.24.4.10 (0.42 ms)
ok    target     203.0.113.7 answers ping from 172.24.4.10 through qg-3f1c2a9e0b7 (1.50 ms)
verdict: ok: router r1 reaches 203.0.113.7 through qg-3f1c2a9e0b7 from 172.24.4.10
`
	if b.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", b.String(), want)
	}
	if rep.ExitCode() != 0 || !rep.OK {
		t.Errorf("exit code %d, OK %v", rep.ExitCode(), rep.OK)
	}
	if !host.ns.closed {
		t.Error("the namespace was not closed")
	}
	if api.got != "r1" || host.opened != "nimbo-router-"+testRouterID {
		t.Errorf("asked the API for %q, opened %q", api.got, host.opened)
	}

	host.ns.pings[addr("203.0.113.7")] = Reply{}
	host.routeOK = false
	rep = Check(context.Background(), api, host, o)
	b.Reset()
	_ = rep.Write(&b)
	tail := `ok    next-hop   172.24.4.1 answers ping from 172.24.4.10 (0.42 ms)
FAIL  target     packets leave through qg-3f1c2a9e0b7 with source 172.24.4.10 (SNAT) and the next hop 172.24.4.1 answers, but 203.0.113.7 does not (no answer within 1s): the host's uplink or the outside network drops them
FAIL  uplink     this host has no default route: egress has no uplink
verdict: FAIL at target: packets leave through qg-3f1c2a9e0b7 with source 172.24.4.10 (SNAT) and the next hop 172.24.4.1 answers, but 203.0.113.7 does not (no answer within 1s): the host's uplink or the outside network drops them; this host has no default route: egress has no uplink
`
	if !strings.HasSuffix(b.String(), tail) {
		t.Errorf("output:\n%s\nwant it to end with:\n%s", b.String(), tail)
	}
	if rep.ExitCode() != 1 {
		t.Errorf("exit code %d, want 1", rep.ExitCode())
	}
}

func TestSteps(t *testing.T) {
	type tc struct {
		name   string
		target string
		port   int
		change func(*fakeAPI, *fakeHost)
		// fail is the first failed step and a part of its text ("" for
		// none); steps are the step names expected, in order.
		fail, text string
		steps      string
		verdict    string
	}
	all := "router gateway namespace interface snat route next-hop"
	cases := []tc{
		{name: "healthy, next hop only", steps: all,
			verdict: "ok: router r1 reaches its next hop 172.24.4.1 through qg-3f1c2a9e0b7 from 172.24.4.10 (give --target IP to look further)"},
		{name: "healthy, target", target: "203.0.113.7", steps: all + " target"},
		{name: "target is the next hop", target: "172.24.4.1", steps: all},
		{name: "not found", change: func(a *fakeAPI, _ *fakeHost) { a.err = errors.New(`no router named or with ID "r1"`) },
			fail: "router", text: `no router named or with ID "r1"`, steps: "router"},
		{name: "admin down", change: func(a *fakeAPI, _ *fakeHost) { a.r.AdminStateUp, a.r.Status = false, "DOWN" },
			fail: "router", text: "admin_state_up false: it is administratively down (`openstack router set --enable r1`)", steps: all},
		{name: "not built", change: func(a *fakeAPI, _ *fakeHost) { a.r.Status = "DOWN" },
			fail: "router", text: "is DOWN: no agent has reported it built (is `nimbo up` running?)", steps: all},
		{name: "error", change: func(a *fakeAPI, _ *fakeHost) { a.r.Status = "ERROR" },
			fail: "router", text: "is ERROR: the agent failed to build it", steps: all},
		{name: "no gateway", change: func(a *fakeAPI, _ *fakeHost) { a.r.Gateway = nil },
			fail: "gateway", text: "no gateway: the router has no leg on an external network — `openstack router set --external-gateway public r1`",
			steps: "router gateway"},
		{name: "gateway without address", change: func(a *fakeAPI, _ *fakeHost) { a.r.Gateway.IP = netip.Addr{} },
			fail: "gateway", text: "has no IPv4 address", steps: "router gateway"},
		{name: "subnet unreadable", change: func(a *fakeAPI, _ *fakeHost) { a.r.Gateway.Subnet, a.r.Gateway.SubnetError = nil, "403 Forbidden" },
			fail: "gateway", text: "its subnet sub-pub could not be read: 403 Forbidden", steps: all},
		{name: "no namespace", change: func(_ *fakeAPI, h *fakeHost) {
			h.openErr = fmt.Errorf("hostnet: open namespace x: %w", errdefs.ErrNotFound)
		}, fail: "namespace",
			text:  "the agent has not built this router here: is `nimbo up` running on this host with --netns-prefix nimbo?",
			steps: "router gateway namespace"},
		{name: "namespace not root", change: func(_ *fakeAPI, h *fakeHost) { h.openErr = fmt.Errorf("setns: %w", os.ErrPermission) },
			fail: "namespace", text: "permission denied: run `nimbo router check` as root", steps: "router gateway namespace"},
		{name: "no gateway interface", change: func(_ *fakeAPI, h *fakeHost) { h.ns.links = h.ns.links[:1] },
			fail: "interface", text: "no gateway interface qg-3f1c2a9e0b7 in the namespace: the agent has not wired", steps: "router gateway namespace interface snat route"},
		{name: "no gateway interface, port hidden", change: func(a *fakeAPI, h *fakeHost) { a.r.Gateway.PortID, h.ns.links = "", h.ns.links[:1] },
			fail: "interface", text: "no gateway interface qg-... in the namespace", steps: "router gateway namespace interface snat route"},
		{name: "port hidden, found by address", change: func(a *fakeAPI, h *fakeHost) {
			a.r.Gateway.PortID = ""
			h.ns.links = append(h.ns.links, Link{Name: "qg-99999999999", Up: true, Carrier: true})
		}, steps: all},
		{name: "interface down", change: func(_ *fakeAPI, h *fakeHost) { h.ns.links[1].Up = false },
			fail: "interface", text: "qg-3f1c2a9e0b7 is down", steps: "router gateway namespace interface snat route"},
		{name: "no carrier", change: func(_ *fakeAPI, h *fakeHost) { h.ns.links[1].Carrier = false },
			fail: "interface", text: "has no carrier: its other end", steps: "router gateway namespace interface snat route"},
		{name: "address missing", change: func(_ *fakeAPI, h *fakeHost) { h.ns.links[1].Addrs = []netip.Prefix{pfx("172.24.4.11/24")} },
			fail: "interface", text: "does not carry the gateway IP 172.24.4.10 (it has 172.24.4.11/24)", steps: "router gateway namespace interface snat route"},
		{name: "no NAT table", change: func(_ *fakeAPI, h *fakeHost) { h.ns.nat = nft.RouterNATState{} },
			fail: "snat", text: "no SNAT rule: the namespace has no table ip nimbo_router", steps: all},
		{name: "no SNAT rule", change: func(_ *fakeAPI, h *fakeHost) { h.ns.nat.SNAT, h.ns.nat.SNATIface = netip.Addr{}, "" },
			fail: "snat", text: "no SNAT rule: table ip nimbo_router has no snat rule although enable_snat is true", steps: all},
		{name: "SNAT to another address", change: func(_ *fakeAPI, h *fakeHost) { h.ns.nat.SNAT = addr("172.24.4.99") },
			fail: "snat", text: "SNATs to 172.24.4.99, not to the gateway IP 172.24.4.10", steps: all},
		{name: "SNAT on another interface", change: func(_ *fakeAPI, h *fakeHost) { h.ns.nat.SNATIface = "qg-00000000000" },
			fail: "snat", text: "SNATs packets leaving by qg-00000000000, not by the gateway interface qg-3f1c2a9e0b7", steps: all},
		{name: "enable_snat false", change: func(a *fakeAPI, h *fakeHost) {
			a.r.Gateway.EnableSNAT = false
			h.ns.nat.SNAT, h.ns.nat.SNATIface = netip.Addr{}, ""
		}, steps: all},
		{name: "enable_snat false, stale rule", change: func(a *fakeAPI, _ *fakeHost) { a.r.Gateway.EnableSNAT = false },
			fail: "snat", text: "enable_snat is false but table ip nimbo_router still SNATs to 172.24.4.10", steps: all},
		{name: "NAT unreadable", change: func(_ *fakeAPI, h *fakeHost) { h.ns.natErr = errors.New("EPERM") },
			fail: "snat", text: "cannot read the namespace's nftables: EPERM", steps: all},
		{name: "no route, no gateway_ip", change: func(a *fakeAPI, h *fakeHost) {
			a.r.Gateway.Subnet.GatewayIP = netip.Addr{}
			h.ns.routeOK = false
		}, fail: "route",
			text:  "no route: the external subnet public-subnet (172.24.4.0/24) has no gateway_ip, so the router has no default route (`openstack subnet set --gateway IP public-subnet`)",
			steps: "router gateway namespace interface snat route"},
		{name: "no route", change: func(_ *fakeAPI, h *fakeHost) { h.ns.routeOK = false },
			fail: "route", text: "no default route in the namespace, although the external subnet's gateway_ip is 172.24.4.1: the agent has not added it",
			steps: "router gateway namespace interface snat route"},
		{name: "route elsewhere", change: func(_ *fakeAPI, h *fakeHost) { h.ns.route.Gw = addr("172.24.4.254") },
			fail: "route", text: "the default route goes via 172.24.4.254 dev qg-3f1c2a9e0b7, not via the external subnet's gateway_ip 172.24.4.1", steps: all},
		{name: "route out another leg", change: func(_ *fakeAPI, h *fakeHost) { h.ns.route.Dev = "qr-0011223344a" },
			fail: "route", text: "goes out qr-0011223344a, not the gateway interface qg-3f1c2a9e0b7", steps: "router gateway namespace interface snat route"},
		{name: "next hop silent, no ARP", change: func(_ *fakeAPI, h *fakeHost) {
			h.ns.pings[addr("172.24.4.1")] = Reply{}
			h.ns.neigh = map[netip.Addr]string{addr("172.24.4.1"): "INCOMPLETE"}
		}, fail: "next-hop",
			text:  "172.24.4.1 does not answer ping from 172.24.4.10: no ARP answer for 172.24.4.1 on qg-3f1c2a9e0b7",
			steps: all},
		{name: "next hop silent", change: func(_ *fakeAPI, h *fakeHost) { h.ns.pings[addr("172.24.4.1")] = Reply{} },
			fail: "next-hop", text: "172.24.4.1 does not answer ping from 172.24.4.10: no answer within 1s", steps: all},
		{name: "next hop silent, target answers", target: "203.0.113.7",
			change: func(_ *fakeAPI, h *fakeHost) { h.ns.pings[addr("172.24.4.1")] = Reply{} },
			steps:  all + " target"},
		{name: "next hop and target silent", target: "203.0.113.7", change: func(_ *fakeAPI, h *fakeHost) {
			h.ns.pings = nil
			h.ns.neigh = map[netip.Addr]string{addr("172.24.4.1"): "FAILED"}
		}, fail: "next-hop", text: "no ARP answer", steps: all + " target"},
		{name: "target silent, host has no default route", target: "203.0.113.7", change: func(_ *fakeAPI, h *fakeHost) {
			delete(h.ns.pings, addr("203.0.113.7"))
			h.routeOK = false
		}, fail: "target",
			text:    "packets leave through qg-3f1c2a9e0b7 with source 172.24.4.10 (SNAT) and the next hop 172.24.4.1 answers, but 203.0.113.7 does not (no answer within 1s): the host's uplink or the outside network drops them",
			steps:   all + " target uplink",
			verdict: "; this host has no default route: egress has no uplink"},
		{name: "target silent, host has a default route", target: "203.0.113.7", change: func(_ *fakeAPI, h *fakeHost) {
			h.ns.pings[addr("203.0.113.7")] = Reply{Error: "172.24.4.1 says: host unreachable"}
		}, fail: "target", text: "but 203.0.113.7 does not (172.24.4.1 says: host unreachable)", steps: all + " target uplink"},
		{name: "target silent, no SNAT", target: "203.0.113.7", change: func(a *fakeAPI, h *fakeHost) {
			a.r.Gateway.EnableSNAT = false
			h.ns.nat.SNAT, h.ns.nat.SNATIface = netip.Addr{}, ""
			delete(h.ns.pings, addr("203.0.113.7"))
		}, fail: "target", text: "with source 172.24.4.10 (the gateway IP; enable_snat is false)", steps: all + " target uplink"},
		{name: "TCP accepted", target: "203.0.113.7", port: 22, steps: all + " target",
			verdict: "ok: router r1 reaches 203.0.113.7:22 through qg-3f1c2a9e0b7 from 172.24.4.10"},
		{name: "TCP refused", target: "203.0.113.7", port: 23, fail: "target",
			text:  "203.0.113.7:23 refused the connection from 172.24.4.10 through qg-3f1c2a9e0b7: packets get there and back, but nothing listens on port 23",
			steps: all + " target"},
		{name: "TCP silent", target: "203.0.113.7", port: 24, fail: "target",
			text: "but 203.0.113.7:24 does not (no answer within 1s)", steps: all + " target uplink"},
		{name: "target on an internal leg", target: "10.0.0.5", change: func(_ *fakeAPI, h *fakeHost) {
			h.ns.routeGet = map[netip.Addr]hostnet.Route{addr("10.0.0.5"): {Dev: "qr-0011223344a", Src: addr("10.0.0.1")}}
		}, fail: "target", text: "10.0.0.5 does not answer ping from 10.0.0.1 through qr-0011223344a (not the gateway qg-3f1c2a9e0b7)", steps: all + " target"},
		{name: "target unroutable", target: "203.0.113.7", change: func(_ *fakeAPI, h *fakeHost) {
			h.ns.routeGet = map[netip.Addr]hostnet.Route{}
			h.ns.routeOK = false
		}, fail: "route", steps: "router gateway namespace interface snat route"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			api, host := healthy()
			if c.change != nil {
				c.change(api, host)
			}
			o := opts()
			if c.target != "" {
				o.Target = addr(c.target)
			}
			o.Port = c.port
			rep := Check(context.Background(), api, host, o)
			var names []string
			for _, s := range rep.Steps {
				names = append(names, s.Name)
			}
			var out strings.Builder
			_ = rep.Write(&out)
			if got := strings.Join(names, " "); got != c.steps {
				t.Errorf("steps %q, want %q\n%s", got, c.steps, out.String())
			}
			f, failed := rep.Failed()
			switch {
			case c.fail == "" && failed:
				t.Errorf("step %s failed: %s", f.Name, f.Text)
			case c.fail != "" && !failed:
				t.Errorf("nothing failed, want %s to\n%s", c.fail, out.String())
			case c.fail != "" && (f.Name != c.fail || !strings.Contains(f.Text, c.text)):
				t.Errorf("first failure %s: %q\nwant %s: %q", f.Name, f.Text, c.fail, c.text)
			}
			wantCode := 0
			if c.fail != "" {
				wantCode = 1
			}
			if rep.ExitCode() != wantCode {
				t.Errorf("exit code %d, want %d", rep.ExitCode(), wantCode)
			}
			prefix := "ok: "
			if c.fail != "" {
				prefix = "FAIL at " + c.fail + ": "
			}
			if !strings.HasPrefix(rep.Verdict, prefix) || !strings.Contains(rep.Verdict, c.verdict) {
				t.Errorf("verdict %q, want it to start with %q and contain %q", rep.Verdict, prefix, c.verdict)
			}
			if host.opened != "" && host.openErr == nil && !host.ns.closed {
				t.Error("the namespace was not closed")
			}
		})
	}
}

// TestSourceAddress checks that every probe leaves from the gateway IP.
func TestSourceAddress(t *testing.T) {
	api, host := healthy()
	o := opts()
	o.Target = addr("203.0.113.7")
	Check(context.Background(), api, host, o)
	o.Port = 22
	Check(context.Background(), api, host, o)
	want := "172.24.4.10>172.24.4.1 172.24.4.10>203.0.113.7 172.24.4.10>172.24.4.1 172.24.4.10>203.0.113.7:22"
	if got := strings.Join(host.ns.pinged, " "); got != want {
		t.Errorf("probes %q, want %q", got, want)
	}
}

func TestNetnsName(t *testing.T) {
	api, host := healthy()
	o := opts()
	o.NetnsPrefix = "lab"
	Check(context.Background(), api, host, o)
	if host.opened != "lab-router-"+testRouterID {
		t.Errorf("opened %q", host.opened)
	}
	o.Netns = func(id string) string { return "x-" + id[:4] }
	Check(context.Background(), api, host, o)
	if host.opened != "x-7a1d" {
		t.Errorf("opened %q", host.opened)
	}
}

func TestEchoRequest(t *testing.T) {
	m, err := icmp.ParseMessage(1, echoRequest(0x1234, 7))
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := m.Body.(*icmp.Echo); m.Type != ipv4.ICMPTypeEcho || !ok || e.ID != 0x1234 || e.Seq != 7 {
		t.Errorf("echo request %+v %+v", m, m.Body)
	}
}

func TestParseICMP(t *testing.T) {
	dst, other := addr("203.0.113.7"), addr("172.24.4.1")
	sent := map[uint16]time.Time{1: time.Now()}
	reply, _ := (&icmp.Message{Type: ipv4.ICMPTypeEchoReply, Body: &icmp.Echo{ID: 0x1234, Seq: 1}}).Marshal(nil)
	if r, ok := parseICMP(reply, dst, dst, 0x1234, sent); !ok || !r.Answered {
		t.Errorf("echo reply: %+v %v", r, ok)
	}
	for name, args := range map[string]struct {
		from netip.Addr
		id   uint16
	}{"other sender": {other, 0x1234}, "other id": {dst, 0x4321}} {
		if _, ok := parseICMP(reply, args.from, dst, args.id, sent); ok {
			t.Errorf("%s: taken as ours", name)
		}
	}
	req := echoRequest(0x1234, 1)
	if _, ok := parseICMP(req, dst, dst, 0x1234, sent); ok {
		t.Error("an echo request was taken for a reply")
	}
	// Host unreachable from the next hop, quoting our request.
	ip := make([]byte, 20)
	ip[0], ip[9] = 0x45, 1
	unreach, _ := (&icmp.Message{Type: ipv4.ICMPTypeDestinationUnreachable, Code: 1, Body: &icmp.DstUnreach{Data: append(ip, req[:8]...)}}).Marshal(nil)
	r, ok := parseICMP(unreach, other, dst, 0x1234, sent)
	if !ok || r.Answered || r.Error != "172.24.4.1 says: host unreachable" {
		t.Errorf("unreachable: %+v %v", r, ok)
	}
	if _, ok := parseICMP(unreach, other, dst, 0x9999, sent); ok {
		t.Error("an error about someone else's echo was taken as ours")
	}
	if _, ok := parseICMP(unreach[:12], other, dst, 0x1234, sent); ok {
		t.Error("a truncated error was accepted")
	}
}
