package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/testenv"
)

// The router data-plane tests build, next to the namespace nimbo runs in
// (c.ns, "the host"), an "upstream" namespace standing in for the internet:
//
//	upstream eth0 203.0.113.1/24 <-veth-> c.ns uplink0 203.0.113.2/24 (default route via 203.0.113.1)
//
// The upstream also holds 169.254.169.254 (a host cloud's IMDS, which c.ns
// routes to it) so that a probe reaching the host cloud's metadata service
// would be seen. nimbo's nat underlay puts 172.24.4.1/24 (the public
// network's gateway) on a bridge in c.ns and masquerades the public range
// out of uplink0.
const (
	upstreamIP = "203.0.113.1"
	hostUpIP   = "203.0.113.2"
	publicGW   = "172.24.4.1"
	imdsIP     = "169.254.169.254"
	// convergeTimeout bounds waiting for the agent (it normally converges
	// within ~100 ms).
	convergeTimeout = 30 * time.Second
	// dialTimeout bounds one TCP connect that is expected to fail.
	dialTimeout = 2 * time.Second
)

// newRouterCloud makes a cloud with an upstream namespace wired to it (the
// uplink exists before nimbo starts, so the underlay finds it) and starts
// nimbo with extra flags.
func newRouterCloud(t *testing.T, extra ...string) (*cloud, *testenv.Netns, *server) {
	t.Helper()
	c := newCloud(t)
	up := testenv.NewNetns(t)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	host, upn := c.ns.Name(), up.Name()
	ip("-n", host, "link", "add", "uplink0", "type", "veth", "peer", "name", "eth0", "netns", upn)
	ip("-n", host, "addr", "add", hostUpIP+"/24", "dev", "uplink0")
	ip("-n", upn, "addr", "add", upstreamIP+"/24", "dev", "eth0")
	ip("-n", host, "link", "set", "uplink0", "up")
	ip("-n", upn, "link", "set", "eth0", "up")
	ip("-n", host, "route", "add", "default", "via", upstreamIP)
	ip("-n", upn, "addr", "add", imdsIP+"/32", "dev", "lo")
	ip("-n", host, "route", "add", imdsIP+"/32", "via", upstreamIP)
	c.extraArgs = append(c.extraArgs, extra...)
	s := c.startReady()
	return c, up, s
}

// echoServer accepts TCP connections, records each peer's address and
// echoes what it reads.
type echoServer struct {
	l  net.Listener
	mu sync.Mutex
	// peers are the remote addresses of the connections accepted so far.
	peers []string
	conns []net.Conn
}

func serveEcho(t *testing.T, l net.Listener) *echoServer {
	e := &echoServer{l: l}
	t.Cleanup(e.close)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
			e.mu.Lock()
			e.peers = append(e.peers, host)
			e.conns = append(e.conns, conn)
			e.mu.Unlock()
			go func() { _, _ = io.Copy(conn, conn) }()
		}
	}()
	return e
}

func (e *echoServer) close() {
	_ = e.l.Close()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.conns {
		_ = c.Close()
	}
}

// port is the listener's port.
func (e *echoServer) port() int { return e.l.Addr().(*net.TCPAddr).Port }

// seen returns the peers recorded so far.
func (e *echoServer) seen() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.peers)
}

// nthPeer waits for the n-th connection (1-based) and returns its peer.
func (e *echoServer) nthPeer(t *testing.T, n int) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if s := e.seen(); len(s) >= n {
			return s[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("listener %s: no connection #%d (peers so far %v)", e.l.Addr(), n, e.seen())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inNetns runs fn on a thread inside the namespace at path; sockets it opens
// stay there.
func inNetns(path string, fn func() error) error {
	ns, err := hostnet.Open(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	return ns.Do(fn)
}

// dialIn opens a TCP connection from inside the namespace at path.
func dialIn(path, addr string, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := inNetns(path, func() error {
		d := net.Dialer{Timeout: timeout, FallbackDelay: -1}
		var err error
		conn, err = d.Dial("tcp", addr)
		return err
	})
	return conn, err
}

// listenIn opens a TCP listener inside the namespace at path, retrying for
// a while when the address is not there yet (the agent is adding it).
func listenIn(t *testing.T, path, addr string) net.Listener {
	t.Helper()
	deadline := time.Now().Add(convergeTimeout)
	for {
		var l net.Listener
		err := inNetns(path, func() error {
			var err error
			l, err = net.Listen("tcp", addr)
			return err
		})
		if err == nil {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("listen on %s in %s: %v", addr, path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// echoIn listens on addr in the namespace at path and echoes.
func echoIn(t *testing.T, path, addr string) *echoServer {
	t.Helper()
	return serveEcho(t, listenIn(t, path, addr))
}

// roundTrip sends msg on conn and checks that it comes back.
func roundTrip(conn net.Conn, msg string) error {
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = conn.SetDeadline(time.Time{}) }()
	if _, err := conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return fmt.Errorf("read the echo: %w", err)
	}
	if !bytes.Equal(buf, []byte(msg)) {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// session dials addr from the namespace at path, sends some bytes and
// checks the echo; it returns the open connection (closed at cleanup).
func session(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	conn, err := dialIn(from, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect to %s from %s: %v", addr, from, err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := roundTrip(conn, "hello through "+addr+"\n"); err != nil {
		t.Fatalf("session to %s from %s: %v", addr, from, err)
	}
	return conn
}

// unreachable checks that a TCP connect to addr from the namespace at path
// fails; it returns an error describing the connection if it succeeded.
func unreachable(from, addr string) error {
	conn, err := dialIn(from, addr, dialTimeout)
	if err != nil {
		return nil
	}
	defer conn.Close()
	return fmt.Errorf("connected to %s from %s (local %s)", addr, from, conn.LocalAddr())
}

// probePath is the namespace path of a probe made by probeCreate or
// probeCreateStatic.
func (c *cloud) probePath(name string) string {
	c.t.Helper()
	ns := c.probeNetnsCached[name]
	if ns == "" {
		ns = c.probeNetns(name)
	}
	return hostnet.NetnsPath(ns)
}

// probeCreateStatic creates a probe on a network whose subnet has no DHCP
// (the agent configures its address) and returns its address.
func (c *cloud) probeCreateStatic(env map[string]string, args ...string) string {
	c.t.Helper()
	out, code := c.nimbo(env, append([]string{"probe", "create", "--netns-prefix", c.netnsPrefix}, args...)...)
	if code != 0 {
		c.t.Fatalf("probe create %v: exit %d: %s", args, code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		c.t.Fatalf("probe create output: %q", out)
	}
	f := strings.Fields(lines[1])
	if len(f) < 8 {
		c.t.Fatalf("probe create output: %q", out)
	}
	if c.probeNetnsCached == nil {
		c.probeNetnsCached = map[string]string{}
	}
	c.probeNetnsCached[f[1]] = f[7]
	return f[3]
}

// openSecurityGroup creates a group allowing ICMP and TCP in from anywhere,
// as a user opening their VMs would, and returns its ID.
func (c *cloud) openSecurityGroup(env map[string]string, name string) string {
	c.t.Helper()
	var sg struct{ ID string }
	c.osJSON(env, &sg, "security", "group", "create", name)
	c.osOK(env, "security", "group", "rule", "create", "--protocol", "icmp", sg.ID)
	c.osOK(env, "security", "group", "rule", "create", "--protocol", "tcp", sg.ID)
	return sg.ID
}

// routedNetwork creates a network with a subnet and a router with a
// gateway on public and an interface on the subnet; it returns the
// router's ID.
func (c *cloud) routedNetwork(env map[string]string, name, cidr string, subnetArgs ...string) string {
	c.t.Helper()
	c.osOK(env, "network", "create", name)
	c.osOK(env, append(append([]string{"subnet", "create", "--network", name, "--subnet-range", cidr}, subnetArgs...), name+"-subnet")...)
	var r struct{ ID string }
	c.osJSON(env, &r, "router", "create", name+"-router")
	c.osOK(env, "router", "set", "--external-gateway", "public", r.ID)
	c.osOK(env, "router", "add", "subnet", r.ID, name+"-subnet")
	return r.ID
}

// routerInfo is what the tests read from `openstack router show`.
type routerInfo struct {
	ID      string
	Status  string
	Gateway *struct {
		FixedIPs []struct {
			IPAddress string `json:"ip_address"`
		} `json:"external_fixed_ips"`
	} `json:"external_gateway_info"`
}

// waitRouterActive waits for the router's status to be ACTIVE and returns
// its gateway address.
func (c *cloud) waitRouterActive(env map[string]string, id string) string {
	c.t.Helper()
	var r routerInfo
	c.eventually(fmt.Sprintf("router %s ACTIVE", id), func() (bool, string) {
		c.osJSON(env, &r, "router", "show", id)
		return r.Status == "ACTIVE", r.Status
	})
	if r.Gateway == nil || len(r.Gateway.FixedIPs) == 0 || !strings.HasPrefix(r.Gateway.FixedIPs[0].IPAddress, "172.24.4.") {
		c.t.Fatalf("router %s gateway: %+v", id, r.Gateway)
	}
	return r.Gateway.FixedIPs[0].IPAddress
}

// fipInfo is what the tests read from `openstack floating ip show`.
type fipInfo struct {
	ID      string
	Address string `json:"floating_ip_address"`
	Status  string
}

func (c *cloud) fipCreate(env map[string]string) fipInfo {
	c.t.Helper()
	var f fipInfo
	c.osJSON(env, &f, "floating", "ip", "create", "public")
	if f.ID == "" || !strings.HasPrefix(f.Address, "172.24.4.") {
		c.t.Fatalf("floating ip create public: %+v", f)
	}
	return f
}

// waitFIPStatus waits for a floating IP's status.
func (c *cloud) waitFIPStatus(env map[string]string, id, want string) {
	c.t.Helper()
	c.eventually(fmt.Sprintf("floating IP %s %s", id, want), func() (bool, string) {
		var f fipInfo
		c.osJSON(env, &f, "floating", "ip", "show", id)
		return f.Status == want, f.Status
	})
}

// eventually polls cond until it holds or convergeTimeout passes (then the
// test fails with cond's last description).
func (c *cloud) eventually(what string, cond func() (bool, string)) {
	c.t.Helper()
	deadline := time.Now().Add(convergeTimeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not within %v (last: %s)", what, convergeTimeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// routerLeftovers describes what of the agent's routers is still present:
// router namespaces, nr-/ng- legs in c.ns, nimbo_router tables; or "".
func (c *cloud) routerLeftovers() string {
	var left []string
	names, _ := hostnet.ListNetns(c.netnsPrefix + "-router-")
	left = append(left, names...)
	ns, err := hostnet.Open(c.ns.Path())
	if err == nil {
		for _, prefix := range []string{"nr-", "ng-"} {
			links, _ := ns.ListLinks(context.Background(), prefix)
			for _, l := range links {
				left = append(left, "link "+l.Name)
			}
		}
		ns.Close()
	}
	if out, err := c.ns.Command(context.Background(), "nft", "list", "tables").Output(); err == nil && strings.Contains(string(out), "nimbo_router") {
		left = append(left, "nft: "+strings.TrimSpace(string(out)))
	}
	return strings.Join(left, ", ")
}

// waitGone waits until check reports nothing left.
func (c *cloud) waitGone(what string, check func() string) {
	c.t.Helper()
	deadline := time.Now().Add(convergeTimeout)
	for {
		left := check()
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Errorf("%s: still there after %v: %s", what, convergeTimeout, left)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// linksWith returns the links (name -> index) in c.ns whose names start
// with one of prefixes.
func (c *cloud) linksWith(prefixes ...string) map[string]int {
	c.t.Helper()
	ns, err := hostnet.Open(c.ns.Path())
	fatalIf(c.t, err, "open the host namespace")
	defer ns.Close()
	out := map[string]int{}
	for _, prefix := range prefixes {
		links, err := ns.ListLinks(context.Background(), prefix)
		fatalIf(c.t, err, "list links")
		for _, l := range links {
			out[l.Name] = l.Index
		}
	}
	return out
}

// routerLinks returns every link (name -> index) in a router's namespace.
func (c *cloud) routerLinks(routerID string) map[string]int {
	c.t.Helper()
	ns, err := hostnet.OpenNetns(c.netnsPrefix + "-router-" + routerID)
	fatalIf(c.t, err, "open the router namespace")
	defer ns.Close()
	links, err := ns.ListLinks(context.Background(), "")
	fatalIf(c.t, err, "list the router's links")
	out := map[string]int{}
	for _, l := range links {
		out[l.Name] = l.Index
	}
	return out
}

// TestRouterDataplane checks Neutron L3 on the nat underlay end to end:
// SNAT (a probe's connection leaves the router from its gateway address and
// the host from its uplink address), a floating IP (reachable from the
// host, the probe's egress leaves from it, ACTIVE, and DOWN and unreachable
// once dissociated; never reachable from the upstream side), a port
// forwarding (from the host, and from the upstream through the address
// given to --publish-address), and that tearing it all down leaves no
// router namespace, leg or table behind.
func TestRouterDataplane(t *testing.T) {
	t.Parallel()
	c, up, _ := newRouterCloud(t, "--publish-address", hostUpIP)
	admin := c.openrc()
	host := c.ns.Path()

	routerID := c.routedNetwork(admin, "net1", "10.0.0.0/24")
	gwIP := c.waitRouterActive(admin, routerID)
	sg := c.openSecurityGroup(admin, "open")
	ipA := c.probeCreate(admin, "--name", "a", "--security-group", sg, "net1")
	ipB := c.probeCreate(admin, "--name", "b", "--security-group", sg, "net1")

	// 1. SNAT: the upstream sees the host's uplink address (the host's
	// masquerade); the host sees the router's gateway address.
	upEcho := echoIn(t, up.Path(), upstreamIP+":0")
	session(t, c.probePath("a"), fmt.Sprintf("%s:%d", upstreamIP, upEcho.port()))
	if got := upEcho.nthPeer(t, 1); got != hostUpIP {
		t.Errorf("the upstream sees a probe's connection from %s, want %s (the host's masquerade)", got, hostUpIP)
	}
	hostEcho := echoIn(t, host, publicGW+":0")
	session(t, c.probePath("a"), fmt.Sprintf("%s:%d", publicGW, hostEcho.port()))
	if got := hostEcho.nthPeer(t, 1); got != gwIP {
		t.Errorf("the host sees a probe's connection from %s, want the router's gateway %s (SNAT)", got, gwIP)
	}

	// 2. Floating IP on a.
	fip := c.fipCreate(admin)
	c.osOK(admin, "floating", "ip", "set", "--port", "a", fip.ID)
	c.waitFIPStatus(admin, fip.ID, "ACTIVE")
	aEcho := echoIn(t, c.probePath("a"), ipA+":8080")
	session(t, host, fip.Address+":8080")
	if got := aEcho.nthPeer(t, 1); got != publicGW {
		t.Errorf("the probe sees a connection to its floating IP from %s, want the host's %s", got, publicGW)
	}
	session(t, c.probePath("a"), fmt.Sprintf("%s:%d", publicGW, hostEcho.port()))
	if got := hostEcho.nthPeer(t, 2); got != fip.Address {
		t.Errorf("the host sees a connection from the probe with a floating IP from %s, want %s", got, fip.Address)
	}
	if code := c.probeExec(admin, "a", "ping", "-c1", "-W2", publicGW); code != 0 {
		t.Errorf("a probe with a floating IP cannot ping the public network's gateway")
	}
	if out, err := c.ns.Command(context.Background(), "ping", "-c1", "-W2", fip.Address).CombinedOutput(); err != nil {
		t.Errorf("the host cannot ping the floating IP %s: %v: %s", fip.Address, err, out)
	}
	// The upstream (a neighbour of the host's uplink) does not reach
	// floating IPs even with a route to them through the host.
	if out, err := exec.Command("ip", "-n", up.Name(), "route", "add", "172.24.4.0/24", "via", hostUpIP).CombinedOutput(); err != nil {
		t.Fatalf("route in the upstream: %v: %s", err, out)
	}
	if err := unreachable(up.Path(), fip.Address+":8080"); err != nil {
		t.Errorf("the upstream reaches a floating IP: %v", err)
	}

	// 3. Port forwarding to b's :22 through another floating IP.
	bSSH := echoIn(t, c.probePath("b"), ipB+":22")
	fip2 := c.fipCreate(admin)
	c.osOK(admin, "floating", "ip", "port", "forwarding", "create", "--internal-ip-address", ipB, "--port", "b",
		"--internal-protocol-port", "22", "--external-protocol-port", "2222", "--protocol", "tcp", fip2.ID)
	c.waitFIPStatus(admin, fip2.ID, "ACTIVE")
	session(t, host, fip2.Address+":2222")
	if got := bSSH.nthPeer(t, 1); got != publicGW {
		t.Errorf("the probe sees the forwarded connection from %s, want the host's %s", got, publicGW)
	}
	// Published on the host's uplink address: the seed's "SSH to the VM
	// through the elastic IP and port 522".
	session(t, up.Path(), hostUpIP+":2222")
	if got := bSSH.nthPeer(t, 2); got != upstreamIP {
		t.Errorf("the probe sees the published forward's connection from %s, want the client's %s", got, upstreamIP)
	}
	// Hairpin through the host: a probe behind the same router uses the
	// published address too (the host translates the source to its own
	// gateway address, so the replies come back through it).
	session(t, c.probePath("a"), hostUpIP+":2222")
	if got := bSSH.nthPeer(t, 3); got != publicGW {
		t.Errorf("the probe sees the published forward's hairpinned connection from %s, want the host's %s", got, publicGW)
	}
	if err := unreachable(up.Path(), hostUpIP+":2223"); err != nil {
		t.Errorf("an unforwarded port of the publish address: %v", err)
	}
	if err := unreachable(up.Path(), fip2.Address+":2222"); err != nil {
		t.Errorf("the upstream reaches a floating IP's forward directly: %v", err)
	}
	if err := unreachable(host, fip2.Address+":22"); err != nil {
		t.Errorf("a port that is not forwarded: %v", err)
	}

	// Dissociating the floating IP: DOWN, and new connections no longer
	// reach the probe.
	c.osOK(admin, "floating", "ip", "unset", "--port", fip.ID)
	c.waitFIPStatus(admin, fip.ID, "DOWN")
	c.eventually("the dissociated floating IP stops reaching the probe", func() (bool, string) {
		err := unreachable(host, fip.Address+":8080")
		return err == nil, fmt.Sprint(err)
	})
	n := len(aEcho.seen())
	session(t, c.probePath("a"), fmt.Sprintf("%s:%d", publicGW, hostEcho.port()))
	if got := hostEcho.nthPeer(t, 3); got != gwIP {
		t.Errorf("after dissociation the host sees the probe from %s, want the router's gateway %s", got, gwIP)
	}
	if len(aEcho.seen()) != n {
		t.Errorf("the probe got connections after its floating IP was dissociated: %v", aEcho.seen())
	}

	// 6. Teardown in Neutron's order leaves nothing of the router behind.
	if len(c.linksWith("nr-")) != 1 || len(c.linksWith("ng-")) != 1 {
		t.Errorf("router legs in the host namespace: %v", c.linksWith("nr-", "ng-"))
	}
	c.osOK(admin, "floating", "ip", "delete", fip.ID, fip2.ID)
	c.osOK(admin, "router", "remove", "subnet", routerID, "net1-subnet")
	c.waitGone("the interface leg", func() string { return joinKeys(c.linksWith("nr-")) })
	c.osOK(admin, "router", "unset", "--external-gateway", routerID)
	c.waitGone("the gateway leg", func() string { return joinKeys(c.linksWith("ng-")) })
	c.osOK(admin, "router", "delete", routerID)
	c.waitGone("the router", c.routerLeftovers)
	if _, err := os.Stat(hostnet.NetnsPath(c.netnsPrefix + "-router-" + routerID)); err == nil {
		t.Errorf("router namespace still there")
	}
}

func joinKeys(m map[string]int) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return strings.Join(ks, ", ")
}

// TestRouterIsolation checks that two projects' routed networks do not
// reach each other by fixed IP (ICMP nor TCP), though both probes accept
// anything and reach each other through a floating IP.
func TestRouterIsolation(t *testing.T) {
	t.Parallel()
	c, _, _ := newRouterCloud(t)
	admin := c.openrc()

	c.osOK(admin, "project", "create", "blue")
	c.osOK(admin, "user", "create", "--password", "s3cret", "--project", "blue", "bob")
	c.osOK(admin, "role", "add", "--project", "blue", "--user", "bob", "member")
	bob := withEnv(admin, "OS_USERNAME", "bob", "OS_PASSWORD", "s3cret", "OS_PROJECT_NAME", "blue")

	rA := c.routedNetwork(admin, "netA", "10.0.0.0/24")
	rB := c.routedNetwork(bob, "netB", "10.1.0.0/24")
	c.waitRouterActive(admin, rA)
	c.waitRouterActive(bob, rB)
	sg := c.openSecurityGroup(admin, "open")
	ipA := c.probeCreate(admin, "--name", "a", "--security-group", sg, "netA")
	ipB := c.probeCreate(admin, "--name", "b", "--security-group", sg, "netB")
	bEcho := echoIn(t, c.probePath("b"), ipB+":8080")
	aEcho := echoIn(t, c.probePath("a"), ipA+":8080")

	// Both are alive: each pings its own router.
	if code := c.probeExec(admin, "a", "ping", "-c1", "-W2", "10.0.0.1"); code != 0 {
		t.Errorf("a cannot ping its router")
	}
	if code := c.probeExec(admin, "b", "ping", "-c1", "-W2", "10.1.0.1"); code != 0 {
		t.Errorf("b cannot ping its router")
	}
	// Not by fixed IP.
	if code := c.probeExec(admin, "a", "ping", "-c1", "-W1", ipB); code == 0 {
		t.Errorf("a (project admin) pings b (project blue) at its fixed IP %s", ipB)
	}
	if code := c.probeExec(admin, "b", "ping", "-c1", "-W1", ipA); code == 0 {
		t.Errorf("b (project blue) pings a (project admin) at its fixed IP %s", ipA)
	}
	if err := unreachable(c.probePath("a"), ipB+":8080"); err != nil {
		t.Errorf("a reaches b over TCP by fixed IP: %v", err)
	}
	if err := unreachable(c.probePath("b"), ipA+":8080"); err != nil {
		t.Errorf("b reaches a over TCP by fixed IP: %v", err)
	}
	if n := len(bEcho.seen()) + len(aEcho.seen()); n != 0 {
		t.Errorf("connections by fixed IP got through: a %v, b %v", aEcho.seen(), bEcho.seen())
	}
	// bob cannot mark a port of netB as an interface of the other
	// project's router (Neutron's DeviceIDNotOwnedByTenant); a port an
	// admin marks so is not wired into it either (only interfaces that
	// add_router_interface recorded get a leg), so a still cannot reach b.
	c.osFail(bob, []string{"is not owned by your tenant"}, "port", "create", "--network", "netB",
		"--device-owner", "network:router_interface", "--device", rA, "sneaky")
	linksBefore := c.routerLinks(rA)
	var marked struct{ ID string }
	c.osJSON(admin, &marked, "port", "create", "--network", "netB", "--device-owner", "network:router_interface", "--device", rA, "marked")
	time.Sleep(time.Second) // an agent pass takes milliseconds
	if after := c.routerLinks(rA); !maps.Equal(after, linksBefore) {
		t.Errorf("a port marked as router %s's interface through the port API (%s) changed its legs: %v, before %v", rA, marked.ID, after, linksBefore)
	}
	if code := c.probeExec(admin, "a", "ping", "-c1", "-W1", ipB); code == 0 {
		t.Errorf("after a port of netB was marked as router %s's interface, a pings b", rA)
	}
	// Through public addresses, as in Neutron, they do.
	fip := c.fipCreate(admin)
	c.osOK(admin, "floating", "ip", "set", "--port", "b", fip.ID)
	c.waitFIPStatus(admin, fip.ID, "ACTIVE")
	session(t, c.probePath("a"), fip.Address+":8080")
}

// TestRouterMetadata checks that probes get nimbo's metadata at
// 169.254.169.254: through the DHCP namespace on a network with DHCP, and
// through the router's metadata listener on a routed network without DHCP;
// and that no probe ever reaches the host cloud's metadata service (a
// listener at 169.254.169.254 in the upstream, which the host routes to).
func TestRouterMetadata(t *testing.T) {
	t.Parallel()
	c, up, _ := newRouterCloud(t)
	admin := c.openrc()

	// The stand-in for the host cloud's IMDS, reachable from the host.
	imds := map[string]*echoServer{}
	for _, port := range []string{"80", "8080"} {
		l := listenIn(t, up.Path(), imdsIP+":"+port)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Server", "host-cloud-imds")
			fmt.Fprintln(w, "host cloud metadata")
		}), ReadHeaderTimeout: 5 * time.Second}
		rec := &recordingListener{Listener: l}
		go func() { _ = srv.Serve(rec) }()
		t.Cleanup(func() { srv.Close() })
		imds[port] = &echoServer{l: l}
		rec.e = imds[port]
	}
	resp, err := nsHTTPClient(c.ns.Path()).Get("http://" + imdsIP + "/")
	if err != nil {
		t.Fatalf("the host does not reach the IMDS stand-in: %v", err)
	}
	resp.Body.Close()
	if resp.Header.Get("Server") != "host-cloud-imds" || len(imds["80"].seen()) != 1 {
		t.Fatalf("the IMDS stand-in: Server %q, connections %v", resp.Header.Get("Server"), imds["80"].seen())
	}

	sg := c.openSecurityGroup(admin, "open")
	// A routed network with DHCP and a routed network without.
	routerID := c.routedNetwork(admin, "dhcpnet", "10.0.0.0/24")
	c.osOK(admin, "network", "create", "static")
	c.osOK(admin, "subnet", "create", "--network", "static", "--subnet-range", "10.2.0.0/24", "--no-dhcp", "static-subnet")
	c.osOK(admin, "router", "add", "subnet", routerID, "static-subnet")
	c.waitRouterActive(admin, routerID)
	c.probeCreate(admin, "--name", "d", "--security-group", sg, "dhcpnet")
	ipS := c.probeCreateStatic(admin, "--name", "s", "--security-group", sg, "static")

	// s got its address and its default route through the router without
	// DHCP.
	sns, err := hostnet.Open(c.probePath("s"))
	fatalIf(t, err, "open s's namespace")
	addrs, err := sns.Addrs(context.Background(), "eth0")
	fatalIf(t, err, "s's addresses")
	routes, err := sns.ListRoutes(context.Background(), 0)
	fatalIf(t, err, "s's routes")
	sns.Close()
	if !slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.String() == ipS+"/24" }) {
		t.Errorf("s's addresses %v, want %s/24", addrs, ipS)
	}
	if !slices.ContainsFunc(routes, func(r hostnet.Route) bool { return r.Dst.Bits() == 0 && r.Gw.String() == "10.2.0.1" }) {
		t.Errorf("s's routes %v, want a default route via 10.2.0.1", routes)
	}

	for _, p := range []string{"d", "s"} {
		resp, err := nsHTTPClient(c.probePath(p)).Get("http://" + imdsIP + "/openstack")
		if err != nil {
			t.Errorf("probe %s: GET http://%s/openstack: %v", p, imdsIP, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("probe %s: GET /openstack: %s, Server %q:\n%s", p, resp.Status, resp.Header.Get("Server"), body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Server") != "nimbo-metadata" ||
			!strings.HasPrefix(string(body), "2012-08-10\n") || !strings.HasSuffix(string(body), "\nlatest") {
			t.Errorf("probe %s: GET /openstack answered %s, Server %q: %q", p, resp.Status, resp.Header.Get("Server"), body)
		}
		// Other ports of the address are not the host cloud's either.
		if err := unreachable(c.probePath(p), imdsIP+":8080"); err != nil {
			t.Errorf("probe %s: %v", p, err)
		}
	}
	// Even a probe that routes 169.254.169.254 through its router.
	if code := c.probeExec(admin, "d", "ip", "route", "replace", imdsIP+"/32", "via", "10.0.0.1"); code != 0 {
		t.Fatal("route in probe d")
	}
	if err := unreachable(c.probePath("d"), imdsIP+":8080"); err != nil {
		t.Errorf("probe d through its router: %v", err)
	}
	resp, err = nsHTTPClient(c.probePath("d")).Get("http://" + imdsIP + "/openstack")
	if err != nil || resp.Header.Get("Server") != "nimbo-metadata" {
		t.Errorf("probe d, metadata through its router: %v %v", resp, err)
	}
	if err == nil {
		resp.Body.Close()
	}
	if got80, got8080 := imds["80"].seen(), imds["8080"].seen(); len(got80) != 1 || len(got8080) != 0 {
		t.Errorf("the host cloud's metadata service was reached: port 80 from %v (1 is the host's own check), 8080 from %v", got80, got8080)
	}
}

// recordingListener records the peers of the connections it accepts.
type recordingListener struct {
	net.Listener
	e *echoServer
}

func (l *recordingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
		l.e.mu.Lock()
		l.e.peers = append(l.e.peers, host)
		l.e.mu.Unlock()
	}
	return conn, err
}

// nsHTTPClient is an HTTP client whose connections are opened inside the
// namespace at path, without keep-alives or proxies.
func nsHTTPClient(path string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := inNetns(path, func() error {
				d := net.Dialer{FallbackDelay: -1}
				var err error
				conn, err = d.DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}}
}

// TestRouterRestart keeps connections through a floating IP and through
// SNAT open while nimbo stops and starts again: they carry data all along,
// new ones work while nimbo is down, and the router's links are adopted,
// not re-created.
func TestRouterRestart(t *testing.T) {
	t.Parallel()
	c, up, first := newRouterCloud(t)
	admin := c.openrc()
	routerID := c.routedNetwork(admin, "net1", "10.0.0.0/24")
	c.waitRouterActive(admin, routerID)
	sg := c.openSecurityGroup(admin, "open")
	ipA := c.probeCreate(admin, "--name", "a", "--security-group", sg, "net1")
	ipB := c.probeCreate(admin, "--name", "b", "--security-group", sg, "net1")
	fip := c.fipCreate(admin)
	c.osOK(admin, "floating", "ip", "set", "--port", "a", fip.ID)
	c.waitFIPStatus(admin, fip.ID, "ACTIVE")

	echoIn(t, c.probePath("a"), ipA+":8080")
	echoIn(t, c.probePath("b"), ipB+":8081")
	upEcho := echoIn(t, up.Path(), upstreamIP+":0")
	inbound := session(t, c.ns.Path(), fip.Address+":8080")
	outbound := session(t, c.probePath("b"), fmt.Sprintf("%s:%d", upstreamIP, upEcho.port()))
	check := func(when string) {
		t.Helper()
		if err := roundTrip(inbound, "in "+when+"\n"); err != nil {
			t.Errorf("%s: the connection to the floating IP: %v", when, err)
		}
		if err := roundTrip(outbound, "out "+when+"\n"); err != nil {
			t.Errorf("%s: the SNAT connection to the upstream: %v", when, err)
		}
	}
	hostBefore := c.linksWith("nb-", "nr-", "ng-", "np-", "nd-")
	routerBefore := c.routerLinks(routerID)
	t.Logf("links before: host %v, router %v", hostBefore, routerBefore)

	if code := first.stop(); code != 0 {
		t.Fatalf("nimbo up exited with code %d", code)
	}
	check("while nimbo is stopped")
	session(t, c.ns.Path(), fip.Address+":8080")

	c.resume = true
	c.startReady()
	// A change after the restart: the agent has made a pass once it shows.
	fip2 := c.fipCreate(admin)
	c.osOK(admin, "floating", "ip", "set", "--port", "b", fip2.ID)
	c.waitFIPStatus(admin, fip2.ID, "ACTIVE")
	check("after the restart")
	session(t, c.ns.Path(), fip.Address+":8080")
	session(t, c.ns.Path(), fip2.Address+":8081")
	hostAfter := c.linksWith("nb-", "nr-", "ng-", "np-", "nd-")
	routerAfter := c.routerLinks(routerID)
	for name, idx := range hostBefore {
		if hostAfter[name] != idx {
			t.Errorf("host link %s was re-created by the restart (index %d -> %d)", name, idx, hostAfter[name])
		}
	}
	for name, idx := range routerBefore {
		if routerAfter[name] != idx {
			t.Errorf("router link %s was re-created by the restart (index %d -> %d)", name, idx, routerAfter[name])
		}
	}
}
