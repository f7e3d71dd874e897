// Package routercheck explains where a router's outbound packets stop. It
// turns what one does by hand to debug a Neutron router (look at it in the
// API, then `ip netns exec qrouter-... ping 8.8.8.8`) into ordered steps,
// from what the API says down to what the router's namespace on this host
// holds:
//
//	router     the router exists; its status and admin_state_up
//	gateway    external_gateway_info: the gateway IP, its subnet and gateway_ip
//	namespace  the agent built the router's namespace on this host
//	interface  the gateway leg (qg-...) is up, has carrier, carries the gateway IP
//	snat       the NAT table SNATs to the gateway IP (when enable_snat)
//	route      the namespace's default route goes via the external gateway_ip
//	next-hop   that gateway_ip answers ping from the gateway IP
//	target     with a target: it answers ping (or a TCP connect) from the gateway IP
//	uplink     only when the target did not answer: does this host have a default route
//
// Check runs the steps against two small interfaces, API (what the network
// service says) and Host (what this host has), so that every failure message
// can be tested without root; OpenStack and System are the real ones. The
// Report prints one line per step run, then a verdict (see Report.Write for
// the exact format, which scripts and tests may rely on).
package routercheck

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/agent"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/network"
	"github.com/nimbo-cloud/nimbo/internal/nft"
)

// Router is what the network API says about a router.
type Router struct {
	ID           string
	Name         string
	Status       string // ACTIVE, DOWN, BUILD, ERROR
	AdminStateUp bool
	// Gateway is the router's external_gateway_info; nil when it has none.
	Gateway *Gateway
}

// Gateway is a router's leg on an external network, as the API tells it.
type Gateway struct {
	NetworkID   string
	NetworkName string // "" when unknown
	EnableSNAT  bool
	// PortID is the gateway port's ID; "" when the caller cannot see that
	// port (Neutron shows it to admins only). It names the qg- interface.
	PortID string
	// IP is the first IPv4 address of external_fixed_ips; zero if none.
	IP netip.Addr
	// SubnetID is the subnet IP belongs to.
	SubnetID string
	// Subnet is that subnet; nil when it could not be read (SubnetError
	// then says why).
	Subnet      *Subnet
	SubnetError string
}

// Subnet is the part of an external subnet that egress depends on.
type Subnet struct {
	ID   string
	Name string
	CIDR netip.Prefix
	// GatewayIP is the subnet's gateway_ip, the router's next hop; zero
	// when the subnet has none.
	GatewayIP netip.Addr
}

// API is what Check asks the network service.
type API interface {
	// Router finds a router by ID or by name and fills in its gateway.
	// Its error is printed as is, so it should say what was looked for.
	Router(ctx context.Context, nameOrID string) (Router, error)
}

// Host is what Check looks at on this host.
type Host interface {
	// OpenNamespace opens the named network namespace; an error wrapping
	// errdefs.ErrNotFound when there is none.
	OpenNamespace(ctx context.Context, name string) (Namespace, error)
	// DefaultRoute returns the IPv4 default route of the namespace the
	// command runs in (this host's uplink); ok is false when there is none.
	DefaultRoute(ctx context.Context) (r hostnet.Route, ok bool, err error)
}

// Namespace is an open router namespace. Nothing in it is changed.
type Namespace interface {
	// Links describes the interfaces whose names start with prefix.
	Links(ctx context.Context, prefix string) ([]Link, error)
	// NAT reads the router's NAT table.
	NAT(ctx context.Context) (nft.RouterNATState, error)
	// DefaultRoute returns the namespace's IPv4 default route.
	DefaultRoute(ctx context.Context) (r hostnet.Route, ok bool, err error)
	// RouteGet tells which route a packet to dst would take.
	RouteGet(ctx context.Context, dst netip.Addr) (hostnet.Route, error)
	// Neighbor returns the state of the ARP entry for ip on dev
	// ("REACHABLE", "STALE", "INCOMPLETE", "FAILED", ...; "" for none).
	Neighbor(ctx context.Context, dev string, ip netip.Addr) (string, error)
	// Ping sends ICMP echo requests from src to dst until one is answered
	// or timeout passes.
	Ping(ctx context.Context, src, dst netip.Addr, timeout time.Duration) (Reply, error)
	// Dial opens (and closes) a TCP connection from src to dst:port.
	Dial(ctx context.Context, src, dst netip.Addr, port int, timeout time.Duration) (Reply, error)
	// Close releases the namespace.
	Close() error
}

// Link is an interface of a router namespace.
type Link struct {
	Name    string
	Up      bool // administratively up
	Carrier bool // lower up: for a veth, its peer is up
	Addrs   []netip.Prefix
}

// Reply is how a ping or a TCP connect was answered.
type Reply struct {
	// Answered: an echo reply came back, or the connection was accepted.
	Answered bool
	// RTT is the time to the answer.
	RTT time.Duration
	// Refused: the TCP connection was refused (a reset came back).
	Refused bool
	// Error, when not answered, is what came back instead, in words (an
	// ICMP error and who sent it, a socket error); "" for silence.
	Error string
}

// Step names: the second column of a report line.
const (
	StepRouter    = "router"
	StepGateway   = "gateway"
	StepNamespace = "namespace"
	StepInterface = "interface"
	StepSNAT      = "snat"
	StepRoute     = "route"
	StepNextHop   = "next-hop"
	StepTarget    = "target"
	StepUplink    = "uplink"
)

// Status is a step's outcome: the first column of a report line.
type Status string

// Outcomes of a step.
const (
	OK   Status = "ok"
	Fail Status = "FAIL"
)

// Step is one checked step.
type Step struct {
	Name   string // one of the Step* constants
	Status Status
	Text   string // what was found, in words
}

// DefaultTimeout is how long a ping or a TCP connect waits for an answer
// when Options.Timeout is zero.
const DefaultTimeout = 2 * time.Second

// Options say what to check.
type Options struct {
	// Router is the router's name or ID.
	Router string
	// Target is an address beyond the router to reach; zero means the
	// next hop only.
	Target netip.Addr
	// Port, if not zero, makes the target check a TCP connect to
	// Target:Port instead of a ping.
	Port int
	// Host is this host's ID (the agent's --host), for messages.
	Host string
	// NetnsPrefix is the agent's --netns-prefix.
	NetnsPrefix string
	// Netns names a router's namespace; nil means
	// agent.RouterNetns(NetnsPrefix, routerID).
	Netns func(routerID string) string
	// Timeout bounds each ping and TCP connect; zero means DefaultTimeout.
	Timeout time.Duration
}

// checker holds one run's state.
type checker struct {
	o     Options
	steps []Step
}

func (c *checker) ok(name, format string, args ...any) {
	c.steps = append(c.steps, Step{Name: name, Status: OK, Text: fmt.Sprintf(format, args...)})
}

func (c *checker) fail(name, format string, args ...any) {
	c.steps = append(c.steps, Step{Name: name, Status: Fail, Text: fmt.Sprintf(format, args...)})
}

// Check runs the steps in order and reports what it found. A step whose
// premise failed is not run (no namespace: nothing inside it is looked at;
// no gateway interface or no route: nothing is pinged). It returns a
// Report in every case; the context's cancellation shows as a failed step.
func Check(ctx context.Context, api API, host Host, o Options) Report {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Netns == nil {
		prefix := o.NetnsPrefix
		o.Netns = func(id string) string { return agent.RouterNetns(prefix, id) }
	}
	c := &checker{o: o}
	rep := c.run(ctx, api, host)
	rep.Steps = c.steps
	rep.Verdict, rep.OK = c.verdict(rep)
	return rep
}

func (c *checker) run(ctx context.Context, api API, host Host) Report {
	o := c.o
	rep := Report{Target: o.Target, Port: o.Port}

	// 1. The router.
	r, err := api.Router(ctx, o.Router)
	if err != nil {
		c.fail(StepRouter, "%v", err)
		return rep
	}
	rep.Router, rep.RouterName = r.ID, r.Name
	who := r.ID
	if r.Name != "" {
		who = fmt.Sprintf("%s (%s)", r.Name, r.ID)
	}
	ref := r.ID
	if r.Name != "" {
		ref = r.Name
	}
	switch {
	case !r.AdminStateUp:
		c.fail(StepRouter, "%s has admin_state_up false: it is administratively down (`openstack router set --enable %s`)", who, ref)
	case r.Status == network.StatusActive:
		c.ok(StepRouter, "%s is ACTIVE, admin_state_up true", who)
	case r.Status == network.StatusError:
		c.fail(StepRouter, "%s is ERROR: the agent failed to build it (see the log of `nimbo up`)", who)
	case r.Status == network.StatusDown || r.Status == network.StatusBuild || r.Status == "":
		c.fail(StepRouter, "%s is %s: no agent has reported it built (is `nimbo up` running?)", who, orNone(r.Status))
	default:
		c.fail(StepRouter, "%s has status %s, not ACTIVE", who, r.Status)
	}

	// 2. Its gateway, as the API says.
	g := r.Gateway
	if g == nil {
		c.fail(StepGateway, "no gateway: the router has no leg on an external network — `openstack router set --external-gateway public %s`", ref)
		return rep
	}
	netName := g.NetworkID
	if g.NetworkName != "" {
		netName = fmt.Sprintf("%s (%s)", g.NetworkName, g.NetworkID)
	}
	if !g.IP.IsValid() {
		c.fail(StepGateway, "the gateway on network %s has no IPv4 address (external_fixed_ips has none)", netName)
		return rep
	}
	rep.GatewayIP = g.IP
	var nextHop netip.Addr // the external subnet's gateway_ip, if known
	switch sn := g.Subnet; {
	case sn == nil:
		c.fail(StepGateway, "gateway %s on network %s, but its subnet %s could not be read: %s", g.IP, netName, g.SubnetID, orNone(g.SubnetError))
	case !sn.GatewayIP.IsValid():
		c.ok(StepGateway, "gateway %s on network %s, subnet %s %s, gateway_ip none", g.IP, netName, subnetName(sn), sn.CIDR)
	default:
		nextHop = sn.GatewayIP
		c.ok(StepGateway, "gateway %s on network %s, subnet %s %s, gateway_ip %s", g.IP, netName, subnetName(sn), sn.CIDR, sn.GatewayIP)
	}

	// 3. The namespace on this host.
	name := o.Netns(r.ID)
	rep.Netns = name
	ns, err := host.OpenNamespace(ctx, name)
	switch {
	case errdefs.IsNotFound(err) || errors.Is(err, os.ErrNotExist):
		c.fail(StepNamespace, "namespace %s is not on this host (%s): the agent has not built this router here: is `nimbo up` running on this host with --netns-prefix %s?",
			name, o.Host, o.NetnsPrefix)
		return rep
	case errors.Is(err, os.ErrPermission):
		c.fail(StepNamespace, "namespace %s: permission denied: run `nimbo router check` as root", name)
		return rep
	case err != nil:
		c.fail(StepNamespace, "namespace %s: %v", name, err)
		return rep
	}
	defer ns.Close()
	c.ok(StepNamespace, "namespace %s is on this host (%s)", name, o.Host)

	// 4. The gateway interface.
	iface, ifaceOK := c.checkInterface(ctx, ns, g)
	rep.Iface = iface

	// 5. SNAT.
	c.checkSNAT(ctx, ns, g, iface)

	// 6. The default route.
	nextHop, routeOK := c.checkRoute(ctx, ns, g, iface, nextHop)
	if !ifaceOK || !routeOK {
		return rep
	}
	rep.NextHop = nextHop

	// 7. The next hop.
	nh, err := ns.Ping(ctx, g.IP, nextHop, o.Timeout)
	nhAnswered := err == nil && nh.Answered
	var arpFailed bool
	switch {
	case err != nil:
		c.fail(StepNextHop, "cannot ping %s from %s: %v", nextHop, g.IP, err)
	case nh.Answered:
		c.ok(StepNextHop, "%s answers ping from %s (%s)", nextHop, g.IP, ms(nh.RTT))
	default:
		why := c.silence(nh)
		if st, _ := ns.Neighbor(ctx, iface, nextHop); st == "INCOMPLETE" || st == "FAILED" {
			arpFailed = true
			why = fmt.Sprintf("no ARP answer for %s on %s: nothing on the external network has that address, or the network drops frames from the router's MAC", nextHop, iface)
		}
		c.fail(StepNextHop, "%s does not answer ping from %s: %s", nextHop, g.IP, why)
	}
	nhStep := len(c.steps) - 1

	// 8. The target.
	if !o.Target.IsValid() || (o.Target == nextHop && o.Port == 0) {
		return rep
	}
	rt, err := ns.RouteGet(ctx, o.Target)
	if err != nil {
		c.fail(StepTarget, "no route to %s in the namespace: %v", o.Target, err)
		return rep
	}
	dst := o.Target.String()
	if o.Port != 0 {
		dst = netip.AddrPortFrom(o.Target, uint16(o.Port)).String()
	}
	if rt.Dev != iface {
		// Not out the gateway (an internal subnet, an extra route): say so
		// and try anyway, from the address the kernel would pick.
		path := fmt.Sprintf("through %s (not the gateway %s)", orNone(rt.Dev), iface)
		if t := c.probeTarget(ctx, ns, rt.Src); t.answered {
			c.ok(StepTarget, "%s %s from %s %s (%s)", dst, t.how, rt.Src, path, ms(t.rtt))
		} else {
			c.fail(StepTarget, "%s %s from %s %s: %s", dst, t.how, orNone(addrString(rt.Src)), path, t.why)
		}
		return rep
	}
	t := c.probeTarget(ctx, ns, g.IP)
	switch {
	case t.answered:
		c.ok(StepTarget, "%s %s from %s through %s (%s)", dst, t.how, g.IP, iface, ms(t.rtt))
		if !nhAnswered && !arpFailed {
			// A next hop that drops pings but forwards is fine.
			c.steps[nhStep] = Step{Name: StepNextHop, Status: OK,
				Text: fmt.Sprintf("%s does not answer ping, but forwards: %s answered", nextHop, o.Target)}
		}
	case t.refused:
		c.fail(StepTarget, "%s refused the connection from %s through %s: packets get there and back, but nothing listens on port %d", dst, g.IP, iface, o.Port)
	case nhAnswered:
		how := "(SNAT)"
		if !g.EnableSNAT {
			how = "(the gateway IP; enable_snat is false)"
		}
		c.fail(StepTarget, "packets leave through %s with source %s %s and the next hop %s answers, but %s does not (%s): the host's uplink or the outside network drops them",
			iface, g.IP, how, nextHop, dst, t.why)
		c.checkUplink(ctx, host)
	default:
		c.fail(StepTarget, "%s %s from %s through %s: %s; the next hop %s does not answer either: packets stop at the router's gateway leg or the next hop",
			dst, t.how, g.IP, iface, t.why, nextHop)
	}
	return rep
}

// targetResult is how the target answered.
type targetResult struct {
	answered, refused bool
	rtt               time.Duration
	how               string // "answers ping", "does not accept a TCP connection", ...
	why               string // when not answered
}

// probeTarget pings (or connects to) the target from src.
func (c *checker) probeTarget(ctx context.Context, ns Namespace, src netip.Addr) targetResult {
	o := c.o
	var r Reply
	var err error
	if o.Port != 0 {
		r, err = ns.Dial(ctx, src, o.Target, o.Port, o.Timeout)
	} else {
		r, err = ns.Ping(ctx, src, o.Target, o.Timeout)
	}
	t := targetResult{answered: err == nil && r.Answered, refused: err == nil && r.Refused, rtt: r.RTT}
	switch {
	case o.Port != 0 && t.answered:
		t.how = "accepts TCP connections"
	case o.Port != 0 && t.refused:
		t.how, t.why = "refuses TCP connections", "nothing listens there"
	case o.Port != 0:
		t.how = "does not accept a TCP connection"
	case t.answered:
		t.how = "answers ping"
	default:
		t.how = "does not answer ping"
	}
	switch {
	case err != nil:
		t.why = err.Error()
	case !t.answered && !t.refused:
		t.why = c.silence(r)
	}
	return t
}

// checkInterface finds the gateway leg and checks it; it returns its name
// ("" if not found) and whether packets can leave through it.
func (c *checker) checkInterface(ctx context.Context, ns Namespace, g *Gateway) (string, bool) {
	want := ""
	if g.PortID != "" {
		want = hostnet.IfName(agent.RouterGwIfacePrefix, g.PortID)
	}
	links, err := ns.Links(ctx, agent.RouterGwIfacePrefix)
	if err != nil {
		c.fail(StepInterface, "cannot list the namespace's interfaces: %v", err)
		return want, false
	}
	hasIP := func(l Link) bool {
		return slices.ContainsFunc(l.Addrs, func(p netip.Prefix) bool { return p.Addr() == g.IP })
	}
	var l *Link
	for i := range links {
		if want != "" && links[i].Name == want || want == "" && hasIP(links[i]) {
			l = &links[i]
			break
		}
	}
	if l == nil && want == "" && len(links) == 1 {
		l = &links[0]
	}
	if l == nil {
		if want == "" {
			want = agent.RouterGwIfacePrefix + "..."
		}
		c.fail(StepInterface, "no gateway interface %s in the namespace: the agent has not wired the router's gateway (see the log of `nimbo up`)", want)
		return "", false
	}
	switch {
	case !l.Up:
		c.fail(StepInterface, "%s is down", l.Name)
		return l.Name, false
	case !l.Carrier:
		c.fail(StepInterface, "%s is up but has no carrier: its other end, on the external network's bridge in the host namespace, is down or gone", l.Name)
		return l.Name, false
	case !hasIP(*l):
		have := make([]string, len(l.Addrs))
		for i, p := range l.Addrs {
			have[i] = p.String()
		}
		c.fail(StepInterface, "%s is up but does not carry the gateway IP %s (it has %s)", l.Name, g.IP, orNone(strings.Join(have, ", ")))
		return l.Name, false
	}
	i := slices.IndexFunc(l.Addrs, func(p netip.Prefix) bool { return p.Addr() == g.IP })
	c.ok(StepInterface, "%s is up and carries %s", l.Name, l.Addrs[i])
	return l.Name, true
}

// checkSNAT compares the NAT table with enable_snat.
func (c *checker) checkSNAT(ctx context.Context, ns Namespace, g *Gateway, iface string) {
	st, err := ns.NAT(ctx)
	if err != nil {
		c.fail(StepSNAT, "cannot read the namespace's nftables: %v", err)
		return
	}
	table := "table ip " + nft.RouterTableName
	counts := plural(st.FloatingIPs, "floating IP") + ", " + plural(st.Forwards, "port forward")
	switch {
	case !st.Exists:
		c.fail(StepSNAT, "no SNAT rule: the namespace has no %s: the agent has not programmed the router's NAT (floating IPs and port forwards do not work either)", table)
	case g.EnableSNAT && !st.SNAT.IsValid():
		c.fail(StepSNAT, "no SNAT rule: %s has no snat rule although enable_snat is true: the agent has not caught up (see the log of `nimbo up`)", table)
	case g.EnableSNAT && st.SNAT != g.IP:
		c.fail(StepSNAT, "%s SNATs to %s, not to the gateway IP %s: the agent has not caught up", table, st.SNAT, g.IP)
	case g.EnableSNAT && iface != "" && st.SNATIface != iface:
		c.fail(StepSNAT, "%s SNATs packets leaving by %s, not by the gateway interface %s", table, st.SNATIface, iface)
	case g.EnableSNAT:
		c.ok(StepSNAT, "%s SNATs the internal subnets (%s) to %s on %s (%s)", table, plural(st.Internal, "range"), st.SNAT, st.SNATIface, counts)
	case st.SNAT.IsValid():
		c.fail(StepSNAT, "enable_snat is false but %s still SNATs to %s: the agent has not caught up", table, st.SNAT)
	default:
		c.ok(StepSNAT, "enable_snat is false: only floating IPs leave the router translated; other internal addresses leave as they are (%s)", counts)
	}
}

// checkRoute checks the namespace's default route; it returns the next hop
// to ping and whether there is a usable route.
func (c *checker) checkRoute(ctx context.Context, ns Namespace, g *Gateway, iface string, want netip.Addr) (netip.Addr, bool) {
	rt, ok, err := ns.DefaultRoute(ctx)
	switch {
	case err != nil:
		c.fail(StepRoute, "cannot read the namespace's routes: %v", err)
		return want, false
	case !ok && g.Subnet != nil && !g.Subnet.GatewayIP.IsValid():
		c.fail(StepRoute, "no route: the external subnet %s (%s) has no gateway_ip, so the router has no default route (`openstack subnet set --gateway IP %s`)",
			subnetName(g.Subnet), g.Subnet.CIDR, subnetName(g.Subnet))
		return want, false
	case !ok && want.IsValid():
		c.fail(StepRoute, "no default route in the namespace, although the external subnet's gateway_ip is %s: the agent has not added it (see the log of `nimbo up`)", want)
		return want, false
	case !ok:
		c.fail(StepRoute, "no default route in the namespace")
		return want, false
	case !rt.Gw.IsValid():
		c.fail(StepRoute, "the default route has no next hop (dev %s only): packets to the outside are sent on-link", orNone(rt.Dev))
		return want, false
	case want.IsValid() && rt.Gw != want:
		c.fail(StepRoute, "the default route goes via %s dev %s, not via the external subnet's gateway_ip %s", rt.Gw, orNone(rt.Dev), want)
		return rt.Gw, true
	case iface != "" && rt.Dev != iface:
		c.fail(StepRoute, "the default route via %s goes out %s, not the gateway interface %s", rt.Gw, orNone(rt.Dev), iface)
		return rt.Gw, false
	}
	c.ok(StepRoute, "default via %s dev %s", rt.Gw, rt.Dev)
	return rt.Gw, true
}

// checkUplink looks at this host's own default route.
func (c *checker) checkUplink(ctx context.Context, host Host) {
	rt, ok, err := host.DefaultRoute(ctx)
	switch {
	case err != nil:
		c.fail(StepUplink, "cannot read this host's routes: %v", err)
	case !ok:
		c.fail(StepUplink, "this host has no default route: egress has no uplink")
	default:
		via := ""
		if rt.Gw.IsValid() {
			via = " via " + rt.Gw.String()
		}
		c.ok(StepUplink, "this host has a default route%s dev %s: look further out (the host's firewall and NAT, the cloud's security groups and network ACLs)", via, orNone(rt.Dev))
	}
}

// silence describes an unanswered probe.
func (c *checker) silence(r Reply) string {
	if r.Error != "" {
		return r.Error
	}
	return "no answer within " + c.o.Timeout.String()
}

// verdict sums the steps up in one sentence.
func (c *checker) verdict(rep Report) (string, bool) {
	if first, failed := rep.Failed(); failed {
		v := fmt.Sprintf("FAIL at %s: %s", first.Name, first.Text)
		if last := rep.Steps[len(rep.Steps)-1]; last.Name == StepUplink && last.Status != OK && first.Name != StepUplink {
			v += "; " + last.Text
		}
		return v, false
	}
	if len(rep.Steps) == 0 {
		return "FAIL: nothing was checked", false
	}
	what := "its next hop " + rep.NextHop.String()
	if c.o.Target.IsValid() && (c.o.Target != rep.NextHop || c.o.Port != 0) {
		what = c.o.Target.String()
		if c.o.Port != 0 {
			what = netip.AddrPortFrom(c.o.Target, uint16(c.o.Port)).String()
		}
	}
	name := rep.RouterName
	if name == "" {
		name = rep.Router
	}
	v := fmt.Sprintf("ok: router %s reaches %s through %s from %s", name, what, rep.Iface, rep.GatewayIP)
	if !c.o.Target.IsValid() {
		v += " (give --target IP to look further)"
	}
	return v, true
}

// plural prints a count and a noun, with an "s" unless the count is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func subnetName(sn *Subnet) string {
	if sn.Name != "" {
		return sn.Name
	}
	return sn.ID
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// ms prints a round-trip time in milliseconds with two decimals.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
}
