package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nimbo-cloud/nimbo/internal/agent"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
)

// The router part of the benchmark ("Network II" in the report; nimbo only,
// against the issue's targets). It runs after nimbo's identity and network
// measurements, on a second `nimbo up` with a fresh data dir (same --host,
// --netns-prefix and listen address; the first one has stopped and its
// namespaces are gone), in the same named namespace. The nat underlay's
// public network (172.24.4.0/24, gateway 172.24.4.1 on a bridge of this
// namespace) is host-internal; this namespace has no default route, so the
// underlay reports no uplink and every packet measured here goes between
// probe namespaces and this namespace, never further.
//
// Packets prove the data plane: a probe (a port bound to this host with
// device_owner network:probe, which the agent wires as a namespace with eth0
// on the network's bridge) or this namespace sends a UDP datagram every
// packetEvery, each from a new socket (a new source port, so a datagram sent
// before the NAT rule existed cannot pin its conntrack entry on the flow the
// next one uses), with a sample-specific payload; a socket on the other side
// records when it arrives and from which address. With each datagram the
// sender also sends an ARP request for the next hop from its interface: the
// kernel retries an unresolved neighbour only every 10 ms at best (1 s by
// default), while any ARP reply from the address completes the pending entry
// at once, so the measurement is not held by the sender's ARP timers.
//
//  1. router create -> SNAT working: for each of -router-n fresh tenant
//     networks (10.64.I.0/24, DHCP off) with a probe already wired, POST
//     /v2.0/routers with external_gateway_info {network_id: public}, then PUT
//     add_router_interface {subnet_id}; the probe sends to 172.24.4.1 from
//     the start, and the time is taken when a datagram arrives whose source is
//     the router's gateway IP (namespace, legs, routes and SNAT all in place).
//     Datagrams that arrive with a tenant source (left the router untranslated)
//     are counted.
//  2. floating IP / port forwarding create -> first packet through, on the
//     first router, at each -router-forwards checkpoint (port forwardings
//     already on the router, added by the API one after the other onto one
//     floating IP: nimbo serialises a router's forwards): POST /v2.0/floatingips {floating_network_id, port_id} for
//     probe A, then datagrams from this namespace to the new address until one
//     arrives in probe A (then the floating IP is deleted, and the driver waits
//     until the router no longer carries its address); and POST
//     .../port_forwardings (udp, a new external port each time) onto the
//     floating IP holding the forwards, datagrams to that port until one
//     arrives in probe B (then it is deleted).
//  3. TCP throughput (iperf3, Debian's package, -router-iperf-time per run,
//     -router-iperf-runs rounds, paths interleaved) through SNAT, a floating IP
//     and a port forward, against the same path routed without NAT (this
//     namespace gets a route to the tenant subnet via the router's gateway IP
//     for that).
//  4. restart: -router-restart-n routers on a second external network
//     (10.224.0.0/N, sized to fit), each with a gateway and one interface on
//     its own tenant network, created from -router-clients clients; once all
//     are ACTIVE and nimbo is idle, nimbo is stopped (SIGTERM) and started
//     again on the same data dir: the agent's first pass is the `agent:` step
//     that `nimbo up` prints with its duration. Then one router's namespace
//     is checked to be the same (inode) and every router still ACTIVE, and
//     all routers are deleted, timed until their namespaces are gone.

// routerOptions are the -router* flags. config holds a pointer to it, so the
// result runRouters fills in reaches the report (which keeps a copy of
// config).
type routerOptions struct {
	enabled   bool
	n         int   // routers created one after the other (create -> SNAT)
	fipN      int   // floating IP creates at each checkpoint
	pfN       int   // port forwarding creates at each checkpoint
	forwards  []int // port forwardings on the router at which to measure
	iperf3    string
	iperfTime time.Duration
	iperfRuns int
	restartN  int
	clients   int           // for the restart's routers
	timeout   time.Duration // a first packet, a namespace to go
	result    *routerResult
}

// Targets from the issue (nimbo; there is no Neutron here).
const (
	targetRouterSNAT  = 20 * time.Millisecond // router create -> SNAT working (p50)
	targetFirstPacket = 20 * time.Millisecond // floating IP / forward create -> first packet (p50)
	targetNATRatio    = 0.90                  // NAT throughput vs the same path without NAT
	targetRestart     = 30 * time.Second      // agent's first pass with 1,000 routers
)

// packetEvery is how often a sender sends its datagram (and ARP request).
const packetEvery = 500 * time.Microsecond

// UDP ports the catchers listen on.
const (
	portSNAT    = 39001 // in this namespace, for the SNAT probes
	portFIP     = 39002 // in probe A, for the floating IPs
	portPF      = 39003 // in probe B, the forwards' internal port
	portIperf   = 5201  // iperf3 servers in the probes
	portIperfNS = 5202  // iperf3 server in this namespace
	portIperfPF = 39201 // the forward onto probe B's iperf3
	portFillMin = 1024  // the fill forwards use this port and up (up to 36023)
	portPFMin   = 40000 // the measured forwards: portPFMin + 1000*checkpoint + sample
)

// Keys of routerResult.ops and routerCheckpoint.ops.
const (
	rOpRouterPost   = "router_post"
	rOpRouterAPI    = "router_api"
	rOpRouterSNAT   = "router_snat"
	rOpRouterDelete = "router_delete"
	rOpFIPPost      = "fip_post"
	rOpFIPFirst     = "fip_first"
	rOpFIPDelete    = "fip_delete"
	rOpPFPost       = "pf_post"
	rOpPFFirst      = "pf_first"
	rOpFill         = "pf_fill"
	rOpMassCreate   = "mass_create"
)

// routerResult is the router part of the run.
type routerResult struct {
	skipped     string // why it did not run
	fatal       string // why it stopped early
	netns       string
	dataDir     string
	underlay    string // what `nimbo up` said about the underlay
	publicCIDR  netip.Prefix
	publicGW    netip.Addr
	elapsed     time.Duration
	startup     time.Duration
	ops         map[string]stats // router create, delete
	leaks       int              // SNAT probe datagrams that arrived with a tenant source
	checkpoints []*routerCheckpoint
	iperf       *iperfResult
	restart     *restartResult
	memL3       memSample // idle, after the floating IP and forward measurements
	notes       []string
	log         []logGroup
}

// routerCheckpoint is what was measured with that many forwards on the router.
type routerCheckpoint struct {
	target   int
	forwards int // on the router when the samples ran
	ops      map[string]stats
	quiet    time.Duration
}

// iperfPath is one path iperf3 measured: the receiver's throughput of each
// run, in bits/s.
type iperfPath struct {
	key, title string
	baseline   string // key of the path without NAT it is compared with ("" for a baseline)
	runs       []float64
	retrans    []int
	err        string
}

type iperfResult struct {
	skipped string
	paths   []*iperfPath
}

func (ir *iperfResult) path(key string) *iperfPath {
	for _, p := range ir.paths {
		if p.key == key {
			return p
		}
	}
	return nil
}

// restartResult is the restart measurement with many routers.
type restartResult struct {
	n           int // routers asked for
	created     int // created
	extCIDR     netip.Prefix
	create      stats         // network + subnet + router + interface, per router
	allActive   time.Duration // from the first create until every router was ACTIVE
	memWith     memSample     // idle with them
	nsBefore    int           // router namespaces before the stop
	stop        time.Duration // SIGTERM -> exited
	agentPass   time.Duration // the agent step `nimbo up` printed
	upLine      time.Duration // "nimbo is up (...)"
	upSeen      time.Duration // exec -> that line in the log
	apiReady    time.Duration // exec -> GET /v3 answers
	incomplete  string        // the first pass's error, if nimbo said it was incomplete
	activeAfter int           // routers ACTIVE right after the restart
	nsAfter     int
	witness     string // the router whose namespace was checked
	sameNetns   bool
	deleteAPI   stats         // remove interface + delete router, per router
	deleteAll   time.Duration // first delete -> every router namespace gone
	err         string
}

// ---- the Neutron calls of the router part ----

// subnetInfo is what the benchmark needs from a subnet.
type subnetInfo struct {
	ID        string `json:"id"`
	CIDR      string `json:"cidr"`
	GatewayIP string `json:"gateway_ip"`
}

// routerInfo is what the benchmark needs from a router.
type routerInfo struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Gateway *struct {
		NetworkID        string `json:"network_id"`
		ExternalFixedIPs []struct {
			SubnetID string `json:"subnet_id"`
			IP       string `json:"ip_address"`
		} `json:"external_fixed_ips"`
	} `json:"external_gateway_info"`
}

// gatewayIP is the router's first external address (zero if none).
func (r routerInfo) gatewayIP() netip.Addr {
	if r.Gateway == nil {
		return netip.Addr{}
	}
	for _, f := range r.Gateway.ExternalFixedIPs {
		if a, err := netip.ParseAddr(f.IP); err == nil && a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}

// fipInfo is what the benchmark needs from a floating IP.
type fipInfo struct {
	ID string `json:"id"`
	IP string `json:"floating_ip_address"`
}

// create POSTs {key: attrs} to path (201) and decodes the key's object into v.
func (c netClient) create(ctx context.Context, token, path, key string, attrs map[string]any, v any) error {
	_, b, err := c.do(ctx, http.MethodPost, path, map[string]any{key: attrs}, token, "", http.StatusCreated)
	if err != nil {
		return err
	}
	var r map[string]json.RawMessage
	if err := decode("POST", c.base+path, b, &r); err != nil {
		return err
	}
	obj, ok := r[key]
	if !ok {
		return fmt.Errorf("POST %s%s: no %q in the answer: %.300s", c.base, path, key, b)
	}
	return decode("POST", c.base+path, obj, v)
}

// createNet creates a network (attrs added to its name) and returns its ID.
func (c netClient) createNet(ctx context.Context, token, name string, attrs map[string]any) (string, error) {
	body := map[string]any{"name": name}
	for k, v := range attrs {
		body[k] = v
	}
	var n struct{ ID string }
	err := c.create(ctx, token, "/networks", "network", body, &n)
	return n.ID, err
}

// createSubnetNoDHCP creates an IPv4 subnet with DHCP off (its gateway is
// the first address, Neutron's default).
func (c netClient) createSubnetNoDHCP(ctx context.Context, token, networkID, name string, cidr netip.Prefix) (subnetInfo, error) {
	var s subnetInfo
	err := c.create(ctx, token, "/subnets", "subnet", map[string]any{"network_id": networkID, "name": name,
		"ip_version": 4, "cidr": cidr.String(), "enable_dhcp": false}, &s)
	return s, err
}

// createRouter creates a router with a gateway on externalID.
func (c netClient) createRouter(ctx context.Context, token, name, externalID string) (routerInfo, error) {
	var r routerInfo
	err := c.create(ctx, token, "/routers", "router", map[string]any{"name": name,
		"external_gateway_info": map[string]any{"network_id": externalID}}, &r)
	if err == nil && r.ID == "" {
		err = fmt.Errorf("POST %s/routers: 201 without a router id", c.base)
	}
	return r, err
}

// routerInterface adds (or removes) a router's interface on a subnet.
func (c netClient) routerInterface(ctx context.Context, token, routerID, subnetID string, add bool) error {
	action := "add_router_interface"
	if !add {
		action = "remove_router_interface"
	}
	_, _, err := c.do(ctx, http.MethodPut, "/routers/"+routerID+"/"+action, map[string]any{"subnet_id": subnetID}, token, "", http.StatusOK)
	return err
}

// del sends DELETE path (204 expected).
func (c netClient) del(ctx context.Context, token, path string) error {
	_, _, err := c.do(ctx, http.MethodDelete, path, nil, token, "", http.StatusNoContent)
	return err
}

// get GETs path (200) into v.
func (c netClient) get(ctx context.Context, token, path string, v any) error {
	_, b, err := c.do(ctx, http.MethodGet, path, nil, token, "", http.StatusOK)
	if err != nil {
		return err
	}
	return decode("GET", c.base+path, b, v)
}

// routerStatus reads a router's status.
func (c netClient) routerStatus(ctx context.Context, token, id string) (string, error) {
	var r struct {
		Router struct{ Status string } `json:"router"`
	}
	err := c.get(ctx, token, "/routers/"+id+"?fields=status", &r)
	return r.Router.Status, err
}

// routerStatuses counts routers by status.
func (c netClient) routerStatuses(ctx context.Context, token string) (map[string]int, error) {
	var r struct {
		Routers []struct{ Status string } `json:"routers"`
	}
	if err := c.get(ctx, token, "/routers?fields=id&fields=status", &r); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, rt := range r.Routers {
		out[rt.Status]++
	}
	return out, nil
}

// createFIP allocates a floating IP on externalID, associated with portID
// unless it is "".
func (c netClient) createFIP(ctx context.Context, token, externalID, portID string) (fipInfo, error) {
	attrs := map[string]any{"floating_network_id": externalID}
	if portID != "" {
		attrs["port_id"] = portID
	}
	var f fipInfo
	err := c.create(ctx, token, "/floatingips", "floatingip", attrs, &f)
	if err == nil && (f.ID == "" || f.IP == "") {
		err = fmt.Errorf("POST %s/floatingips: 201 without an id and address", c.base)
	}
	return f, err
}

// createPF adds a single-port forwarding to a floating IP.
func (c netClient) createPF(ctx context.Context, token, fipID, proto string, target portInfo, internal, external int) (string, error) {
	var pf struct{ ID string }
	err := c.create(ctx, token, "/floatingips/"+fipID+"/port_forwardings", "port_forwarding", map[string]any{
		"protocol": proto, "internal_port_id": target.ID, "internal_ip_address": target.ip(),
		"internal_port": internal, "external_port": external}, &pf)
	return pf.ID, err
}

// ---- packets ----

// arpRequest is the payload of an ARP request (Ethernet/IPv4) from
// mac/src asking for target, as sent on an AF_PACKET SOCK_DGRAM socket.
func arpRequest(mac net.HardwareAddr, src, target netip.Addr) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], 1) // request
	copy(b[8:14], mac)
	s, t := src.As4(), target.As4()
	copy(b[14:18], s[:])
	copy(b[24:28], t[:])
	return b
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// arpKick makes a sender also ask for its next hop (see the package
// comment above).
type arpKick struct {
	iface       string
	mac         net.HardwareAddr
	src, target netip.Addr
}

// udpSender sends payload to dst every packetEvery, each time from a new
// socket, from namespace ns (nil: this process's), until stop is closed or
// timeout passes.
type udpSender struct {
	ns      *hostnet.NS
	dst     netip.AddrPort
	payload []byte
	arp     *arpKick
}

var errSendTimeout = errors.New("timed out")

func (u udpSender) run(stop <-chan struct{}, timeout time.Duration) error {
	loop := func() error {
		afd := -1
		var sll unix.SockaddrLinklayer
		var req []byte
		if u.arp != nil {
			ifi, err := net.InterfaceByName(u.arp.iface)
			if err != nil {
				return fmt.Errorf("interface %s: %w", u.arp.iface, err)
			}
			if afd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP))); err != nil {
				return fmt.Errorf("ARP socket on %s: %w", u.arp.iface, err)
			}
			defer unix.Close(afd)
			sll = unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index, Halen: 6,
				Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
			req = arpRequest(u.arp.mac, u.arp.src, u.arp.target)
		}
		dst := unix.SockaddrInet4{Port: int(u.dst.Port()), Addr: u.dst.Addr().As4()}
		deadline := time.Now().Add(timeout)
		for {
			select {
			case <-stop:
				return nil
			default:
			}
			if time.Now().After(deadline) {
				return errSendTimeout
			}
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			// Errors are expected until the path exists (no neighbour,
			// unreachable): keep sending.
			_ = unix.Sendto(fd, u.payload, 0, &dst)
			_ = unix.Close(fd)
			if afd >= 0 {
				_ = unix.Sendto(afd, req, 0, &sll)
			}
			time.Sleep(packetEvery)
		}
	}
	if u.ns == nil {
		return loop()
	}
	return u.ns.Do(loop)
}

// arrival is a datagram a catcher received.
type arrival struct {
	at      time.Time
	src     netip.Addr
	payload string
}

// udpCatcher receives datagrams on a port of a namespace.
type udpCatcher struct {
	conn *net.UDPConn
	ch   chan arrival
}

// listenUDP opens a catcher on port in ns (nil: this process's namespace);
// the socket stays in that namespace.
func listenUDP(ns *hostnet.NS, port int) (*udpCatcher, error) {
	var conn *net.UDPConn
	open := func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: port})
		return err
	}
	var err error
	if ns == nil {
		err = open()
	} else {
		err = ns.Do(open)
	}
	if err != nil {
		return nil, err
	}
	u := &udpCatcher{conn: conn, ch: make(chan arrival, 4096)}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				close(u.ch)
				return
			}
			select {
			case u.ch <- arrival{at: time.Now(), src: from.Addr().Unmap(), payload: string(buf[:n])}:
			default:
			}
		}
	}()
	return u, nil
}

func (u *udpCatcher) close() { _ = u.conn.Close() }

// wait returns the first datagram with payload from want (any source if
// want is zero) until deadline. Datagrams with the payload from another
// source are passed to other.
func (u *udpCatcher) wait(payload string, want netip.Addr, deadline time.Time, other func(arrival)) (arrival, bool) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		select {
		case a, ok := <-u.ch:
			if !ok {
				return arrival{}, false
			}
			if a.payload != payload {
				continue
			}
			if want.IsValid() && a.src != want {
				if other != nil {
					other(a)
				}
				continue
			}
			return a, true
		case <-t.C:
			return arrival{}, false
		}
	}
}

// firstPacket runs sender until catcher sees its payload from want() (any
// source if that is zero), or timeout; it returns when the datagram
// arrived. start, the operation being timed, is called once the sender
// runs; want is read after it (datagrams that arrive meanwhile wait in the
// catcher's queue).
func firstPacket(s udpSender, c *udpCatcher, want func() netip.Addr, timeout time.Duration, other func(arrival), start func() error) (time.Time, error) {
	stop := make(chan struct{})
	sent := make(chan error, 1)
	go func() { sent <- s.run(stop, timeout) }()
	defer func() {
		close(stop)
		<-sent
	}()
	deadline := time.Now().Add(timeout)
	if start != nil {
		if err := start(); err != nil {
			return time.Time{}, err
		}
	}
	type res struct {
		a  arrival
		ok bool
	}
	got := make(chan res, 1)
	go func() {
		var w netip.Addr
		if want != nil {
			w = want()
		}
		a, ok := c.wait(string(s.payload), w, deadline, other)
		got <- res{a, ok}
	}()
	select {
	case r := <-got:
		if !r.ok {
			return time.Time{}, fmt.Errorf("no datagram %q arrived within %v", s.payload, timeout)
		}
		return r.a.at, nil
	case err := <-sent:
		sent <- err // for the deferred receive
		if err == nil || errors.Is(err, errSendTimeout) {
			r := <-got
			if r.ok {
				return r.a.at, nil
			}
			return time.Time{}, fmt.Errorf("no datagram %q arrived within %v", s.payload, timeout)
		}
		return time.Time{}, fmt.Errorf("sending from %v: %w", nsName(s.ns), err)
	}
}

func nsName(ns *hostnet.NS) string {
	if ns == nil {
		return "this namespace"
	}
	return ns.Path()
}

// ---- the run ----

// routerRun is the state of one router part.
type routerRun struct {
	cfg   config
	opts  *routerOptions
	res   *routerResult
	logf  func(string, ...any)
	argv  []string
	srv   *server
	pid   int
	ic    *client // identity
	nc    netClient
	tok   string
	self  *hostnet.NS
	runID int64

	publicID string
	bridge   string // the public network's bridge here
	bridgeHW net.HardwareAddr
}

// probeNode is a wired probe: its port and open namespace.
type probeNode struct {
	port portInfo
	ns   *hostnet.NS
	name string
	gw   netip.Addr // its subnet's gateway
}

func (p *probeNode) addr() netip.Addr { a, _ := netip.ParseAddr(p.port.ip()); return a }

// close releases the probe's namespace (once: an open descriptor keeps a
// deleted namespace alive).
func (p *probeNode) close() {
	if p.ns != nil {
		_ = p.ns.Close()
		p.ns = nil
	}
}

// l3Sample is a tenant network with a probe and, once made, a router.
type l3Sample struct {
	networkID string
	subnet    subnetInfo
	cidr      netip.Prefix
	probe     *probeNode
	router    routerInfo
}

// runRouters measures nimbo's routers, floating IPs and port forwarding.
func runRouters(ctx context.Context, cfg config, logf func(string, ...any)) *routerResult {
	opts := cfg.routers
	res := &routerResult{ops: map[string]stats{}, dataDir: filepath.Join(cfg.workDir, "nimbo-routers-data")}
	start := time.Now()
	defer func() { res.elapsed = time.Since(start) }()
	var err error
	if res.netns, err = ownNetns(); err != nil {
		res.skipped = err.Error()
		logf("routers: not measured: %s", res.skipped)
		return res
	}
	r := &routerRun{cfg: cfg, opts: opts, res: res, logf: logf, runID: time.Now().Unix()}
	logPaths := []string{filepath.Join(cfg.workDir, "nimbo-routers.log"), filepath.Join(cfg.workDir, "nimbo-routers-restart.log")}
	defer func() {
		for _, p := range logPaths {
			if g, err := scanLog(p, 0); err == nil {
				res.log = append(res.log, g...)
			}
		}
		slices.SortStableFunc(res.log, func(a, b logGroup) int { return b.count - a.count })
	}()
	if err := r.start(ctx, logPaths[0]); err != nil {
		res.fatal = err.Error()
		logf("routers: %s", res.fatal)
		return res
	}
	defer func() {
		if r.srv != nil {
			if err := r.srv.stop(); err != nil {
				res.notes = append(res.notes, err.Error())
			}
		}
		if r.self != nil {
			_ = r.self.Close()
		}
		// Stopping nimbo leaves its data plane: remove its namespaces.
		if names, err := removeNetns(cfg.netnsPrefix); err != nil {
			res.notes = append(res.notes, "removing the agent's namespaces: "+err.Error())
		} else if len(names) > 0 {
			logf("routers: removed the %d namespace(s) nimbo's agent left", len(names))
		}
	}()
	if err := r.l3(ctx); err != nil {
		res.fatal = err.Error()
		logf("routers: %s", res.fatal)
	}
	if ctx.Err() == nil && opts.restartN > 0 {
		res.restart = r.restartBench(ctx, logPaths[1])
	}
	if ctx.Err() != nil && res.fatal == "" {
		res.fatal = "interrupted"
	}
	logf("routers: done in %v", time.Since(start).Round(time.Second))
	return res
}

// start runs a fresh `nimbo up`, gets an admin token, lifts the admin
// project's quotas and finds the public network and its bridge here.
func (r *routerRun) start(ctx context.Context, logPath string) error {
	cfg := r.cfg
	if err := os.RemoveAll(r.res.dataDir); err != nil {
		return err
	}
	r.argv = []string{cfg.nimboBin, "up", "--data-dir", r.res.dataDir, "--listen", cfg.nimboListen,
		"--public-url", "http://" + cfg.nimboListen, "--admin-password", cfg.password,
		"--host", cfg.host, "--netns-prefix", cfg.netnsPrefix, "--log-level", cfg.nimboLogLevel}
	r.logf("routers: starting a second nimbo (fresh data dir %s)", r.res.dataDir)
	r.ic = newClient("http://"+cfg.nimboListen+"/v3", 4)
	t0 := time.Now()
	s, err := startServer("nimbo", logPath, cleanEnv(), r.argv...)
	if err != nil {
		return err
	}
	r.srv, r.pid = s, s.cmd.Process.Pid
	if r.res.startup, err = s.waitReady(ctx, r.ic, t0, cfg.readyTimeout); err != nil {
		return err
	}
	if b, err := os.ReadFile(logPath); err == nil {
		r.res.underlay = parseUp(string(b)).underlay
	}
	admin, err := r.ic.issue(ctx, passwordAuth("admin", cfg.password, "admin"))
	if err != nil {
		return fmt.Errorf("issuing the admin token failed:\n%v", err)
	}
	r.tok = admin.ID
	r.nc = netClient{newClient("http://"+cfg.nimboListen+"/networking/v2.0", r.opts.clients+4)}
	for _, q := range []string{"network", "subnet", "port", "router", "floatingip"} {
		if err := r.nc.setQuota(ctx, r.tok, admin.ProjectID, q, -1); err != nil {
			return fmt.Errorf("lifting the admin project's %s quota failed:\n%v", q, err)
		}
	}
	var nets struct {
		Networks []struct{ ID string } `json:"networks"`
	}
	if err := r.nc.get(ctx, r.tok, "/networks?name=public", &nets); err != nil {
		return err
	}
	if len(nets.Networks) != 1 {
		return fmt.Errorf("GET %s/networks?name=public: %d networks; `nimbo up` should have made one", r.nc.base, len(nets.Networks))
	}
	r.publicID = nets.Networks[0].ID
	var subs struct {
		Subnets []subnetInfo `json:"subnets"`
	}
	if err := r.nc.get(ctx, r.tok, "/subnets?network_id="+r.publicID, &subs); err != nil {
		return err
	}
	if len(subs.Subnets) == 0 {
		return fmt.Errorf("the public network %s has no subnet", r.publicID)
	}
	if r.res.publicCIDR, err = netip.ParsePrefix(subs.Subnets[0].CIDR); err != nil {
		return fmt.Errorf("the public subnet's cidr %q: %v", subs.Subnets[0].CIDR, err)
	}
	if r.res.publicGW, err = netip.ParseAddr(subs.Subnets[0].GatewayIP); err != nil {
		return fmt.Errorf("the public subnet's gateway_ip %q: %v", subs.Subnets[0].GatewayIP, err)
	}
	if r.self, err = hostnet.OpenSelf(); err != nil {
		return err
	}
	// The agent's first pass (before the API answered) made the bridge and
	// the underlay gave it the gateway address.
	r.bridge = agent.BridgeName(r.publicID)
	for {
		addrs, err := r.self.Addrs(ctx, r.bridge)
		if err == nil && slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.Addr() == r.res.publicGW }) {
			break
		}
		if time.Since(t0) > 30*time.Second {
			return fmt.Errorf("the public network's bridge %s does not carry %v (the underlay's gateway) 30 s after the start: %v %v", r.bridge, r.res.publicGW, addrs, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ifi, err := net.InterfaceByName(r.bridge)
	if err != nil {
		return err
	}
	r.bridgeHW = ifi.HardwareAddr
	r.logf("routers: nimbo ready after %v; public network %s (%s, gateway %v on %s)", r.res.startup.Round(time.Millisecond),
		r.publicID, r.res.publicCIDR, r.res.publicGW, r.bridge)
	return nil
}

// newProbe creates a probe on networkID (port security off: these numbers
// are about routing and NAT, not security groups), waits until it is ACTIVE
// and opens its namespace.
func (r *routerRun) newProbe(ctx context.Context, networkID, name string, gw netip.Addr) (*probeNode, error) {
	body := probeBody(networkID, r.cfg.host, name)
	body["port_security_enabled"] = false
	p, err := r.nc.createPort(ctx, r.tok, body)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	for status := p.Status; status != "ACTIVE"; {
		if time.Since(t0) > r.cfg.probeTimeout {
			return nil, fmt.Errorf("probe %s not ACTIVE %v after its create (status %q)", p.ID, r.cfg.probeTimeout, status)
		}
		time.Sleep(2 * time.Millisecond)
		if status, err = r.nc.portStatus(ctx, r.tok, p.ID); err != nil {
			return nil, err
		}
	}
	name = agent.ProbeNetns(r.cfg.netnsPrefix, p.ID)
	ns, err := hostnet.OpenNetns(name)
	if err != nil {
		return nil, err
	}
	return &probeNode{port: p, ns: ns, name: name, gw: gw}, nil
}

// arpKick asks for the probe's gateway from the probe.
func (p *probeNode) arpKick() *arpKick {
	hw, _ := net.ParseMAC(p.port.MAC)
	return &arpKick{iface: agent.ProbeIface, mac: hw, src: p.addr(), target: p.gw}
}

// arpKick asks for target on the public bridge of this namespace.
func (r *routerRun) arpKick(target netip.Addr) *arpKick {
	return &arpKick{iface: r.bridge, mac: r.bridgeHW, src: r.res.publicGW, target: target}
}

// waitRouterActive polls a router's status until ACTIVE.
func (r *routerRun) waitRouterActive(ctx context.Context, id string) error {
	t0 := time.Now()
	for {
		st, err := r.nc.routerStatus(ctx, r.tok, id)
		if err != nil || st == "ACTIVE" {
			return err
		}
		if time.Since(t0) > r.opts.timeout {
			return fmt.Errorf("router %s not ACTIVE %v after its first packet got through (status %q)", id, r.opts.timeout, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// gone polls until the named namespace does not exist.
func gone(name string, timeout time.Duration) error {
	t0 := time.Now()
	for {
		if _, err := os.Stat(hostnet.NetnsPath(name)); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Since(t0) > timeout {
			return fmt.Errorf("namespace %s still exists %v later", name, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// l3 runs measurements 1 to 3 and removes what they made.
func (r *routerRun) l3(ctx context.Context) error {
	opts, res := r.opts, r.res
	n := max(1, min(opts.n, 250))
	r.logf("routers: %d tenant networks with a wired probe each", n)
	samples := make([]*l3Sample, 0, n)
	var probes []*probeNode
	defer func() {
		for _, p := range probes {
			p.close()
		}
	}()
	for i := range n {
		cidr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 64, byte(i), 0}), 24)
		netID, err := r.nc.createNet(ctx, r.tok, fmt.Sprintf("bench-rnet-%d", i), nil)
		if err != nil {
			return fmt.Errorf("creating tenant network %d failed:\n%v", i, err)
		}
		sn, err := r.nc.createSubnetNoDHCP(ctx, r.tok, netID, fmt.Sprintf("bench-rsubnet-%d", i), cidr)
		if err != nil {
			return fmt.Errorf("creating tenant subnet %d failed:\n%v", i, err)
		}
		gw, err := netip.ParseAddr(sn.GatewayIP)
		if err != nil {
			return fmt.Errorf("subnet %s: gateway_ip %q: %v", sn.ID, sn.GatewayIP, err)
		}
		p, err := r.newProbe(ctx, netID, fmt.Sprintf("bench-rprobe-%d", i), gw)
		if err != nil {
			return fmt.Errorf("probe on tenant network %d: %v", i, err)
		}
		probes = append(probes, p)
		samples = append(samples, &l3Sample{networkID: netID, subnet: sn, cidr: cidr, probe: p})
	}
	settle(ctx, r.pid, 30*time.Second)

	// 1. Router create -> SNAT working.
	snat, err := listenUDP(nil, portSNAT)
	if err != nil {
		return fmt.Errorf("UDP socket on :%d here: %v", portSNAT, err)
	}
	defer snat.close()
	r.logf("routers: %d routers, create → SNAT working", n)
	since := time.Now()
	var post, api, first []time.Duration
	var firstErr error
	for i, s := range samples {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		payload := fmt.Sprintf("nimbo-bench snat %d %d", r.runID, i)
		send := udpSender{ns: s.probe.ns, dst: netip.AddrPortFrom(res.publicGW, portSNAT), payload: []byte(payload), arp: s.probe.arpKick()}
		var t0 time.Time
		var tPost, tAPI time.Duration
		var gw netip.Addr
		leak := func(a arrival) {
			if s.cidr.Contains(a.src) {
				res.leaks++
			}
		}
		at, err := firstPacket(send, snat, func() netip.Addr { return gw }, opts.timeout, leak, func() error {
			t0 = time.Now()
			rt, err := r.nc.createRouter(ctx, r.tok, fmt.Sprintf("bench-router-%d", i), r.publicID)
			if err != nil {
				return err
			}
			s.router = rt
			tPost = time.Since(t0)
			if gw = rt.gatewayIP(); !gw.IsValid() {
				return fmt.Errorf("router %s: no IPv4 gateway address in its external_gateway_info", rt.ID)
			}
			if err := r.nc.routerInterface(ctx, r.tok, rt.ID, s.subnet.ID, true); err != nil {
				return err
			}
			tAPI = time.Since(t0)
			return nil
		})
		if err != nil {
			firstErr = fmt.Errorf("router %d (%s) on subnet %s, probe %s: %v", i, s.router.ID, s.cidr, s.probe.port.ID, err)
			break
		}
		post, api, first = append(post, tPost), append(api, tAPI), append(first, at.Sub(t0))
		if err := r.waitRouterActive(ctx, s.router.ID); err != nil {
			firstErr = err
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for k, d := range map[string][]time.Duration{rOpRouterPost: post, rOpRouterAPI: api, rOpRouterSNAT: first} {
		res.ops[k] = timed(summarize(d), since)
	}
	if firstErr != nil {
		s := res.ops[rOpRouterSNAT]
		s.Errors, s.FirstError = 1, firstErr.Error()
		res.ops[rOpRouterSNAT] = s
		r.cleanupSamples(ctx, samples)
		return errors.New("router create → SNAT failed; see below")
	}

	// 2 and 3 on the first router.
	err = r.natBench(ctx, samples[0])
	r.cleanupSamples(ctx, samples)
	return err
}

// timed completes the stats of a sequence of samples (one client) begun
// at start.
func timed(s stats, start time.Time) stats {
	s.Clients, s.Elapsed = 1, time.Since(start)
	return s
}

// gatewayIface returns the name of a router's gateway leg inside its
// namespace (qg- and the gateway port's ID).
func (r *routerRun) gatewayIface(ctx context.Context, routerID string) (string, error) {
	var ps struct {
		Ports []portInfo `json:"ports"`
	}
	q := url.Values{"device_id": {routerID}, "device_owner": {"network:router_gateway"}}
	if err := r.nc.get(ctx, r.tok, "/ports?"+q.Encode(), &ps); err != nil {
		return "", err
	}
	if len(ps.Ports) != 1 {
		return "", fmt.Errorf("GET %s/ports?%s: %d ports, want the router's gateway port", r.nc.base, q.Encode(), len(ps.Ports))
	}
	return hostnet.IfName(agent.RouterGwIfacePrefix, ps.Ports[0].ID), nil
}

// natBench measures floating IP and port forwarding creates at each
// checkpoint, then the throughput (measurements 2 and 3), on s's router.
func (r *routerRun) natBench(ctx context.Context, s *l3Sample) error {
	opts, res, tok := r.opts, r.res, r.tok
	rt := s.router
	qg, err := r.gatewayIface(ctx, rt.ID)
	if err != nil {
		return err
	}
	rns, err := hostnet.OpenNetns(agent.RouterNetns(r.cfg.netnsPrefix, rt.ID))
	if err != nil {
		return err
	}
	defer rns.Close()
	pa, err := r.newProbe(ctx, s.networkID, "bench-probe-fip", s.probe.gw)
	if err != nil {
		return fmt.Errorf("probe A (floating IPs): %v", err)
	}
	pb, err := r.newProbe(ctx, s.networkID, "bench-probe-pf", s.probe.gw)
	if err != nil {
		pa.close()
		return fmt.Errorf("probe B (port forwardings): %v", err)
	}
	var made []string // probe ports, deleted at the end
	made = append(made, pa.port.ID, pb.port.ID)
	dctx := context.WithoutCancel(ctx)
	defer func() {
		pa.close()
		pb.close()
		if del := deleteProbes(dctx, r.cfg, r.nc, tok, made); del.FirstError != "" {
			res.notes = append(res.notes, "deleting probes A and B: "+del.FirstError)
		}
	}()
	// The forwards' target: a plain port (not wired; forwards only need its
	// address on a subnet of the router).
	target, err := r.nc.createPort(ctx, tok, map[string]any{"network_id": s.networkID, "name": "bench-pf-fill"})
	if err != nil {
		return err
	}
	// The floating IP that holds the forwards.
	holder, err := r.nc.createFIP(ctx, tok, r.publicID, "")
	if err != nil {
		return err
	}
	defer func() {
		// Its forwards go with it; then the fill target.
		if err := r.deleteFIP(dctx, holder.ID); err != nil {
			res.notes = append(res.notes, "deleting the floating IP of the forwards: "+err.Error())
		}
		if err := r.nc.deletePort(dctx, tok, target.ID); err != nil {
			res.notes = append(res.notes, "deleting the forwards' target port: "+err.Error())
		}
	}()
	holderIP, err := netip.ParseAddr(holder.IP)
	if err != nil {
		return err
	}
	fipC, err := listenUDP(pa.ns, portFIP)
	if err != nil {
		return fmt.Errorf("UDP socket on :%d in %s: %v", portFIP, pa.name, err)
	}
	defer fipC.close()
	pfC, err := listenUDP(pb.ns, portPF)
	if err != nil {
		return fmt.Errorf("UDP socket on :%d in %s: %v", portPF, pb.name, err)
	}
	defer pfC.close()

	forwards := 0
	for ci, want := range opts.forwards {
		cp := &routerCheckpoint{target: want, ops: map[string]stats{}}
		res.checkpoints = append(res.checkpoints, cp)
		if need := want - forwards; need > 0 {
			// One after the other: nimbo serialises the forwards of a
			// router on the router (from several clients, some creates
			// fail with 409 "too much contention").
			r.logf("routers: adding %d port forwardings (tcp, one after the other) onto floating IP %s", need, holder.IP)
			base := forwards
			f := concurrentN(ctx, 1, need, 30*time.Minute, func(ctx context.Context, _, i int) error {
				port := portFillMin + base + i
				_, err := r.nc.createPF(ctx, tok, holder.ID, "tcp", target, port, port)
				return err
			})
			forwards += f.N
			cp.ops[rOpFill] = f
			cp.forwards = forwards
			if f.FirstError != "" || f.N < need {
				return fmt.Errorf("adding port forwardings up to %d failed after %d; see below", want, forwards)
			}
		}
		cp.forwards = forwards
		cp.quiet = settle(ctx, r.pid, 60*time.Second)
		if ctx.Err() != nil {
			return ctx.Err()
		}

		r.logf("routers: %d floating IP creates with %d forwards on the router", opts.fipN, forwards)
		var fPost, fFirst, fDel []time.Duration
		var firstErr error
		since := time.Now()
		for j := 0; j < opts.fipN && firstErr == nil; j++ {
			payload := fmt.Sprintf("nimbo-bench fip %d %d %d", r.runID, ci, j)
			t0 := time.Now()
			f, err := r.nc.createFIP(ctx, tok, r.publicID, pa.port.ID)
			if err != nil {
				firstErr = err
				break
			}
			tPost := time.Since(t0)
			addr, err := netip.ParseAddr(f.IP)
			if err != nil {
				firstErr = err
				break
			}
			send := udpSender{dst: netip.AddrPortFrom(addr, portFIP), payload: []byte(payload), arp: r.arpKick(addr)}
			at, err := firstPacket(send, fipC, nil, opts.timeout, nil, nil)
			if err != nil {
				firstErr = fmt.Errorf("floating IP %s (%s) of probe %s (%s): %v", f.ID, f.IP, pa.port.ID, pa.port.ip(), err)
			} else {
				fPost, fFirst = append(fPost, tPost), append(fFirst, at.Sub(t0))
			}
			// Deleted, and gone from the router before the next one (which
			// may get the same address).
			t1 := time.Now()
			if err := r.nc.del(ctx, tok, "/floatingips/"+f.ID); err != nil {
				firstErr = errors.Join(firstErr, err)
				break
			}
			for {
				addrs, err := rns.Addrs(ctx, qg)
				if err != nil {
					firstErr = errors.Join(firstErr, err)
					break
				}
				if !slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.Addr() == addr }) {
					fDel = append(fDel, time.Since(t1))
					break
				}
				if time.Since(t1) > opts.timeout {
					firstErr = errors.Join(firstErr, fmt.Errorf("floating IP %s deleted, but the router's %s still carries %s %v later", f.ID, qg, f.IP, opts.timeout))
					break
				}
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
		}
		cp.ops[rOpFIPPost] = timed(summarize(fPost), since)
		cp.ops[rOpFIPFirst] = timed(summarize(fFirst), since)
		cp.ops[rOpFIPDelete] = timed(summarize(fDel), since)
		if firstErr != nil {
			s := cp.ops[rOpFIPFirst]
			s.Errors, s.FirstError = 1, firstErr.Error()
			cp.ops[rOpFIPFirst] = s
			return fmt.Errorf("floating IPs at %d forwards failed; see below", forwards)
		}

		r.logf("routers: %d port forwarding creates with %d forwards on the router", opts.pfN, forwards)
		var pPost, pFirst []time.Duration
		since = time.Now()
		for j := 0; j < opts.pfN && firstErr == nil; j++ {
			ext := portPFMin + 1000*ci + j
			payload := fmt.Sprintf("nimbo-bench pf %d %d %d", r.runID, ci, j)
			send := udpSender{dst: netip.AddrPortFrom(holderIP, uint16(ext)), payload: []byte(payload), arp: r.arpKick(holderIP)}
			var t0 time.Time
			var tPost time.Duration
			var id string
			at, err := firstPacket(send, pfC, nil, opts.timeout, nil, func() error {
				t0 = time.Now()
				var err error
				id, err = r.nc.createPF(ctx, tok, holder.ID, "udp", pb.port, portPF, ext)
				tPost = time.Since(t0)
				return err
			})
			if err != nil {
				firstErr = fmt.Errorf("port forwarding udp %s:%d -> %s:%d (probe %s): %v", holder.IP, ext, pb.port.ip(), portPF, pb.port.ID, err)
			} else {
				pPost, pFirst = append(pPost, tPost), append(pFirst, at.Sub(t0))
			}
			if id != "" {
				if err := r.nc.del(ctx, tok, "/floatingips/"+holder.ID+"/port_forwardings/"+id); err != nil {
					firstErr = errors.Join(firstErr, err)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		cp.ops[rOpPFPost] = timed(summarize(pPost), since)
		cp.ops[rOpPFFirst] = timed(summarize(pFirst), since)
		if firstErr != nil {
			s := cp.ops[rOpPFFirst]
			s.Errors, s.FirstError = 1, firstErr.Error()
			cp.ops[rOpPFFirst] = s
			return fmt.Errorf("port forwardings at %d forwards failed; see below", forwards)
		}
	}
	settle(ctx, r.pid, 30*time.Second)
	if m, err := measureMem(r.pid); err == nil {
		res.memL3 = m
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	res.iperf = r.iperfBench(ctx, s, pa, pb, fipC, holder, holderIP)
	return nil
}

// deleteFIP deletes a floating IP with its forwards. If nimbo refuses to
// delete it (when it holds many forwards), the refusal is noted and its
// forwards are deleted one by one first.
func (r *routerRun) deleteFIP(ctx context.Context, id string) error {
	err := r.nc.del(ctx, r.tok, "/floatingips/"+id)
	if err == nil {
		return nil
	}
	var pfs struct {
		PortForwardings []struct{ ID string } `json:"port_forwardings"`
	}
	if lerr := r.nc.get(ctx, r.tok, "/floatingips/"+id+"/port_forwardings", &pfs); lerr != nil {
		return errors.Join(err, lerr)
	}
	r.res.notes = append(r.res.notes, fmt.Sprintf("DELETE of the floating IP holding %d port forwardings failed (its forwards were then deleted one by one):\n%v", len(pfs.PortForwardings), err))
	for _, pf := range pfs.PortForwardings {
		if derr := r.nc.del(ctx, r.tok, "/floatingips/"+id+"/port_forwardings/"+pf.ID); derr != nil {
			return derr
		}
	}
	return r.nc.del(ctx, r.tok, "/floatingips/"+id)
}

// cleanupSamples deletes the routers of measurement 1 (timed until their
// namespaces are gone), then their probes and networks.
func (r *routerRun) cleanupSamples(ctx context.Context, samples []*l3Sample) {
	if ctx.Err() != nil {
		return // nimbo is stopped and its namespaces removed anyway
	}
	res, tok := r.res, r.tok
	var lat []time.Duration
	var errs int
	var firstErr error
	start := time.Now()
	for _, s := range samples {
		if s.router.ID == "" {
			continue
		}
		t0 := time.Now()
		err := r.nc.routerInterface(ctx, tok, s.router.ID, s.subnet.ID, false)
		if err == nil {
			err = r.nc.del(ctx, tok, "/routers/"+s.router.ID)
		}
		if err == nil {
			err = gone(agent.RouterNetns(r.cfg.netnsPrefix, s.router.ID), r.opts.timeout)
		}
		if err != nil {
			errs++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		lat = append(lat, time.Since(t0))
	}
	st := summarize(lat)
	st.Elapsed, st.Clients, st.Errors = time.Since(start), 1, errs
	if firstErr != nil {
		st.FirstError = firstErr.Error()
	}
	res.ops[rOpRouterDelete] = st
	var ids []string
	for _, s := range samples {
		s.probe.close()
		ids = append(ids, s.probe.port.ID)
	}
	if del := deleteProbes(ctx, r.cfg, r.nc, tok, ids); del.FirstError != "" {
		res.notes = append(res.notes, "deleting the routers' probes: "+del.FirstError)
	}
	for _, s := range samples {
		if err := r.nc.del(ctx, tok, "/networks/"+s.networkID); err != nil {
			res.notes = append(res.notes, "deleting a tenant network: "+err.Error())
			break
		}
	}
}

// ---- iperf3 ----

// iperfCommand is iperf3 with args, in probe p's namespace (nsenter --net,
// which execs iperf3: the PID is iperf3's) or here when p is nil.
func iperfCommand(ctx context.Context, bin string, p *probeNode, args ...string) *exec.Cmd {
	argv := append([]string{bin}, args...)
	if p != nil {
		argv = append([]string{"nsenter", "--net=" + hostnet.NetnsPath(p.name), bin}, args...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// iperfReport is the part of iperf3 -J's output the benchmark reads.
type iperfReport struct {
	Error string `json:"error"`
	End   struct {
		SumSent struct {
			Retransmits int `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// parseIperf reads iperf3 -J's output: the receiver's bits/s and the
// sender's retransmits.
func parseIperf(b []byte) (float64, int, error) {
	var r iperfReport
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, 0, fmt.Errorf("iperf3 -J output: %v: %.300s", err, b)
	}
	if r.Error != "" {
		return 0, 0, errors.New("iperf3: " + r.Error)
	}
	if r.End.SumReceived.BitsPerSecond <= 0 {
		return 0, 0, fmt.Errorf("iperf3 -J output without end.sum_received.bits_per_second: %.300s", b)
	}
	return r.End.SumReceived.BitsPerSecond, r.End.SumSent.Retransmits, nil
}

// iperfSpec is one iperf3 run: a server in srv (nil: here) bound to bind,
// a client in cli (nil: here) connecting to dst; reverse makes the server
// send.
type iperfSpec struct {
	srv     *probeNode
	bind    netip.AddrPort
	cli     *probeNode
	dst     netip.AddrPort
	reverse bool
}

// iperfOnce runs one measurement and returns the receiver's bits/s and the
// sender's retransmits. It stops the server (by its PID) if it is still
// there afterwards.
func (r *routerRun) iperfOnce(ctx context.Context, bin string, sp iperfSpec) (float64, int, error) {
	secs := max(1, int(math.Round(r.opts.iperfTime.Seconds())))
	sctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+60*time.Second)
	defer cancel()
	srv := iperfCommand(sctx, bin, sp.srv, "-s", "-1", "-B", sp.bind.Addr().String(), "-p", strconv.Itoa(int(sp.bind.Port())), "--forceflush")
	out, err := srv.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	var srvErr strings.Builder
	srv.Stderr = &srvErr
	if err := srv.Start(); err != nil {
		return 0, 0, fmt.Errorf("%s: %v", strings.Join(srv.Args, " "), err)
	}
	exited := make(chan error, 1)
	listening := make(chan struct{})
	var srvOut strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			srvOut.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "Server listening") {
				once.Do(func() { close(listening) })
			}
		}
		exited <- srv.Wait()
	}()
	stopServer := func() {
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = srv.Process.Kill() // the PID this run started
			<-exited
		}
	}
	select {
	case <-listening:
	case err := <-exited:
		return 0, 0, fmt.Errorf("%s exited before listening: %v %s %s", strings.Join(srv.Args, " "), err, srvOut.String(), srvErr.String())
	case <-time.After(10 * time.Second):
		_ = srv.Process.Kill()
		<-exited
		return 0, 0, fmt.Errorf("%s: not listening after 10 s", strings.Join(srv.Args, " "))
	}
	args := []string{"-c", sp.dst.Addr().String(), "-p", strconv.Itoa(int(sp.dst.Port())), "-t", strconv.Itoa(secs), "-J", "--connect-timeout", "5000"}
	if sp.reverse {
		args = append(args, "-R")
	}
	cli := iperfCommand(sctx, bin, sp.cli, args...)
	b, err := cli.Output()
	stopServer()
	bps, retrans, perr := parseIperf(b)
	if perr != nil {
		return 0, 0, fmt.Errorf("%s: %v (exit: %v)", strings.Join(cli.Args, " "), perr, err)
	}
	return bps, retrans, nil
}

// iperfBench measures TCP throughput through SNAT, a floating IP and a port
// forward, and the same paths routed without NAT, on s's router; pa gets a
// floating IP, pb a TCP forward on holder.
func (r *routerRun) iperfBench(ctx context.Context, s *l3Sample, pa, pb *probeNode, fipC *udpCatcher, holder fipInfo, holderIP netip.Addr) *iperfResult {
	ir := &iperfResult{}
	opts, tok := r.opts, r.tok
	if opts.iperfRuns <= 0 {
		ir.skipped = "-router-iperf-runs 0"
		return ir
	}
	bin, err := exec.LookPath(opts.iperf3)
	if err != nil {
		ir.skipped = fmt.Sprintf("no iperf3 (%v): scripts/bench installs Debian's package", err)
		return ir
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		ir.skipped = fmt.Sprintf("no nsenter (%v)", err)
		return ir
	}
	dctx := context.WithoutCancel(ctx)
	fail := func(format string, a ...any) *iperfResult {
		ir.skipped = fmt.Sprintf(format, a...)
		return ir
	}
	// Probe A's floating IP, checked with a datagram.
	fip, err := r.nc.createFIP(ctx, tok, r.publicID, pa.port.ID)
	if err != nil {
		return fail("creating probe A's floating IP failed:\n%v", err)
	}
	defer func() { _ = r.nc.del(dctx, tok, "/floatingips/"+fip.ID) }()
	fipAddr, err := netip.ParseAddr(fip.IP)
	if err != nil {
		return fail("%v", err)
	}
	payload := fmt.Sprintf("nimbo-bench iperf-fip %d", r.runID)
	if _, err := firstPacket(udpSender{dst: netip.AddrPortFrom(fipAddr, portFIP), payload: []byte(payload), arp: r.arpKick(fipAddr)},
		fipC, nil, opts.timeout, nil, nil); err != nil {
		return fail("probe A's floating IP %s passes no datagram: %v", fip.IP, err)
	}
	// Probe B's TCP forward.
	pfID, err := r.nc.createPF(ctx, tok, holder.ID, "tcp", pb.port, portIperf, portIperfPF)
	if err != nil {
		return fail("creating the TCP forward to probe B failed:\n%v", err)
	}
	defer func() { _ = r.nc.del(dctx, tok, "/floatingips/"+holder.ID+"/port_forwardings/"+pfID) }()
	// The tenant subnet routed here through the router's gateway, for the
	// paths without NAT.
	route := hostnet.Route{Dst: s.cidr, Gw: s.router.gatewayIP(), Dev: r.bridge}
	if err := r.self.EnsureRoute(ctx, route); err != nil {
		return fail("adding the route %s here: %v", route, err)
	}
	defer func() {
		if err := r.self.DeleteRoute(dctx, route); err != nil {
			r.res.notes = append(r.res.notes, fmt.Sprintf("removing the route %s here: %v", route, err))
		}
	}()
	settle(ctx, r.pid, 10*time.Second)

	pc := s.probe
	here := r.res.publicGW
	ap := func(a netip.Addr, port int) netip.AddrPort { return netip.AddrPortFrom(a, uint16(port)) }
	type path struct {
		p  *iperfPath
		sp iperfSpec
	}
	paths := []path{
		{&iperfPath{key: "route_in", title: "routed, no NAT: here → probe's fixed IP"},
			iperfSpec{srv: pa, bind: ap(pa.addr(), portIperf), dst: ap(pa.addr(), portIperf)}},
		{&iperfPath{key: "fip", title: "floating IP (1:1 DNAT): here → floating IP → probe", baseline: "route_in"},
			iperfSpec{srv: pa, bind: ap(pa.addr(), portIperf), dst: ap(fipAddr, portIperf)}},
		{&iperfPath{key: "pf", title: "port forward (DNAT by port): here → floating IP:port → probe", baseline: "route_in"},
			iperfSpec{srv: pb, bind: ap(pb.addr(), portIperf), dst: ap(holderIP, portIperfPF)}},
		{&iperfPath{key: "route_out", title: "routed, no NAT: probe → here (iperf3 -R, connection opened from here)"},
			iperfSpec{srv: pc, bind: ap(pc.addr(), portIperf), dst: ap(pc.addr(), portIperf), reverse: true}},
		{&iperfPath{key: "snat", title: "SNAT: probe → here (" + here.String() + "), source translated to the router's gateway IP", baseline: "route_out"},
			iperfSpec{bind: ap(here, portIperfNS), cli: pc, dst: ap(here, portIperfNS)}},
	}
	for _, p := range paths {
		ir.paths = append(ir.paths, p.p)
	}
	r.logf("routers: iperf3, %d paths × %d runs of %v", len(paths), opts.iperfRuns, opts.iperfTime)
	for range opts.iperfRuns {
		for _, p := range paths {
			if ctx.Err() != nil {
				return ir
			}
			if p.p.err != "" {
				continue
			}
			bps, retrans, err := r.iperfOnce(ctx, bin, p.sp)
			if err != nil {
				p.p.err = err.Error()
				continue
			}
			p.p.runs = append(p.p.runs, bps)
			p.p.retrans = append(p.p.retrans, retrans)
		}
	}
	return ir
}

// median of xs (0 if empty); the mean of the middle two for an even count.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ---- restart with many routers ----

// extCIDRFor is the external subnet for n routers: 10.224.0.0 with room
// for n gateway addresses and a few more (a /24 at least, a /16 at most).
func extCIDRFor(n int) netip.Prefix {
	bits := 32 - int(math.Ceil(math.Log2(float64(n+16))))
	bits = min(24, max(16, bits))
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 224, 0, 0}), bits)
}

// upInfo is what `nimbo up` printed about its start.
type upInfo struct {
	agent, up         time.Duration
	agentSeen, upSeen bool
	underlay          string
	incomplete        string // the error of "agent: first pass incomplete"
}

var (
	reAgentStep = regexp.MustCompile(`(?m)^\s+agent:\s.*\(([^()\s]+)\)\s*$`)
	reUp        = regexp.MustCompile(`(?m)^nimbo is up \(([^()\s]+)\)\.`)
	reUnderlay  = regexp.MustCompile(`(?m)^\s+underlay:\s+(.*?)\s*$`)
)

// parseUp reads `nimbo up`'s output (with its log lines mixed in).
func parseUp(log string) upInfo {
	var u upInfo
	if m := reAgentStep.FindStringSubmatch(log); m != nil {
		if d, err := time.ParseDuration(m[1]); err == nil {
			u.agent, u.agentSeen = d, true
		}
	}
	if m := reUp.FindStringSubmatch(log); m != nil {
		if d, err := time.ParseDuration(m[1]); err == nil {
			u.up, u.upSeen = d, true
		}
	}
	if m := reUnderlay.FindStringSubmatch(log); m != nil {
		u.underlay = m[1]
	}
	for _, line := range strings.Split(log, "\n") {
		if logField(line, "msg") == "agent: first pass incomplete" {
			u.incomplete = logField(line, "err")
			break
		}
	}
	return u
}

// netnsInode identifies a namespace (its nsfs inode).
func netnsInode(name string) (uint64, error) {
	fi, err := os.Stat(hostnet.NetnsPath(name))
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("%s: no inode", name)
	}
	return st.Ino, nil
}

// restartBench creates opts.restartN routers, restarts nimbo and deletes
// them (measurement 4).
func (r *routerRun) restartBench(ctx context.Context, logPath string) *restartResult {
	opts := r.opts
	rr := &restartResult{n: opts.restartN, extCIDR: extCIDRFor(opts.restartN)}
	fail := func(format string, a ...any) *restartResult {
		rr.err = fmt.Sprintf(format, a...)
		r.logf("routers: restart: %s", rr.err)
		return rr
	}
	tok := r.tok
	extID, err := r.nc.createNet(ctx, tok, "bench-ext", map[string]any{"router:external": true})
	if err != nil {
		return fail("creating the external network failed:\n%v", err)
	}
	if _, err := r.nc.createSubnetNoDHCP(ctx, tok, extID, "bench-ext-subnet", rr.extCIDR); err != nil {
		return fail("creating the external subnet failed:\n%v", err)
	}
	type mass struct{ network, subnet, router string }
	var mu sync.Mutex
	var made []*mass
	tenant := netip.MustParsePrefix("10.225.0.0/24")
	r.logf("routers: creating %d routers (network, subnet, router with gateway, interface) from %d clients", rr.n, opts.clients)
	t0 := time.Now()
	rr.create = concurrentN(ctx, opts.clients, rr.n, 30*time.Minute, func(ctx context.Context, _, i int) error {
		m := &mass{}
		mu.Lock()
		made = append(made, m)
		mu.Unlock()
		var err error
		if m.network, err = r.nc.createNet(ctx, tok, fmt.Sprintf("bench-mnet-%d", i), nil); err != nil {
			return err
		}
		sn, err := r.nc.createSubnetNoDHCP(ctx, tok, m.network, fmt.Sprintf("bench-msubnet-%d", i), tenant)
		if err != nil {
			return err
		}
		m.subnet = sn.ID
		rt, err := r.nc.createRouter(ctx, tok, fmt.Sprintf("bench-mrouter-%d", i), extID)
		if err != nil {
			return err
		}
		m.router = rt.ID
		return r.nc.routerInterface(ctx, tok, rt.ID, sn.ID, true)
	})
	rr.created = rr.create.N
	var routers []*mass
	for _, m := range made {
		if m.router != "" {
			routers = append(routers, m)
		}
	}
	if rr.create.FirstError != "" {
		rr.err = fmt.Sprintf("%d of %d router creates failed; the first:\n%s", rr.create.Errors, rr.n, rr.create.FirstError)
	}
	if len(routers) == 0 {
		return rr
	}
	r.logf("routers: %d routers created in %v; waiting for the agent", rr.created, time.Since(t0).Round(time.Millisecond))
	for {
		st, err := r.nc.routerStatuses(ctx, tok)
		if err != nil {
			return fail("listing the routers failed:\n%v", err)
		}
		if st["ACTIVE"] >= len(routers) {
			break
		}
		if time.Since(t0) > 5*time.Minute || ctx.Err() != nil {
			return fail("only %d of %d routers ACTIVE %v after the first create (%v)", st["ACTIVE"], len(routers), time.Since(t0).Round(time.Second), st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rr.allActive = time.Since(t0)
	settle(ctx, r.pid, 60*time.Second)
	rr.memWith, _ = measureMem(r.pid)
	rr.witness = routers[0].router
	witnessNS := agent.RouterNetns(r.cfg.netnsPrefix, rr.witness)
	ino, err := netnsInode(witnessNS)
	if err != nil {
		return fail("router %s's namespace: %v", rr.witness, err)
	}
	names, _ := hostnet.ListNetns(r.cfg.netnsPrefix + "-router-")
	rr.nsBefore = len(names)

	r.logf("routers: %d routers ACTIVE after %v; restarting nimbo", len(routers), rr.allActive.Round(time.Millisecond))
	t1 := time.Now()
	err = r.srv.stop()
	rr.stop = time.Since(t1)
	r.srv = nil
	if err != nil {
		r.res.notes = append(r.res.notes, "stopping nimbo for the restart: "+err.Error())
	}
	t2 := time.Now()
	s, err := startServer("nimbo", logPath, cleanEnv(), r.argv...)
	if err != nil {
		return fail("%v", err)
	}
	r.srv, r.pid = s, s.cmd.Process.Pid
	var up upInfo
	for {
		select {
		case <-s.exited:
			return fail("nimbo exited during its restart: %v; last lines of its log:\n%s", s.err, s.tail(2048))
		default:
		}
		if b, err := os.ReadFile(logPath); err == nil {
			if up = parseUp(string(b)); up.upSeen {
				rr.upSeen = time.Since(t2)
				break
			}
		}
		if time.Since(t2) > r.cfg.readyTimeout || ctx.Err() != nil {
			return fail("nimbo did not print \"nimbo is up\" within %v of its restart; last lines of its log:\n%s", r.cfg.readyTimeout, s.tail(2048))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if rr.apiReady, err = s.waitReady(ctx, r.ic, t2, r.cfg.readyTimeout); err != nil {
		return fail("%v", err)
	}
	rr.agentPass, rr.upLine, rr.incomplete = up.agent, up.up, up.incomplete
	if !up.agentSeen {
		rr.agentPass = -1
	}
	admin, err := r.ic.issue(ctx, passwordAuth("admin", r.cfg.password, "admin"))
	if err != nil {
		return fail("issuing a token after the restart failed:\n%v", err)
	}
	r.tok, tok = admin.ID, admin.ID
	st, err := r.nc.routerStatuses(ctx, tok)
	if err != nil {
		return fail("listing the routers after the restart failed:\n%v", err)
	}
	rr.activeAfter = st["ACTIVE"]
	names, _ = hostnet.ListNetns(r.cfg.netnsPrefix + "-router-")
	rr.nsAfter = len(names)
	if ino2, err := netnsInode(witnessNS); err == nil {
		rr.sameNetns = ino2 == ino
	}
	r.logf("routers: restarted: agent's first pass %v, \"nimbo is up\" after %v; %d routers ACTIVE", rr.agentPass, rr.upSeen.Round(time.Millisecond), rr.activeAfter)
	settle(ctx, r.pid, 30*time.Second)

	r.logf("routers: deleting the %d routers", len(routers))
	t3 := time.Now()
	rr.deleteAPI = concurrentN(ctx, opts.clients, len(routers), 30*time.Minute, func(ctx context.Context, _, i int) error {
		m := routers[i]
		if err := r.nc.routerInterface(ctx, tok, m.router, m.subnet, false); err != nil {
			return err
		}
		return r.nc.del(ctx, tok, "/routers/"+m.router)
	})
	mine := map[string]bool{}
	for _, m := range routers {
		mine[agent.RouterNetns(r.cfg.netnsPrefix, m.router)] = true
	}
	for {
		names, err := hostnet.ListNetns(r.cfg.netnsPrefix + "-router-")
		if err != nil {
			return fail("%v", err)
		}
		left := 0
		for _, n := range names {
			if mine[n] {
				left++
			}
		}
		if left == 0 {
			rr.deleteAll = time.Since(t3)
			break
		}
		if time.Since(t3) > 5*time.Minute || ctx.Err() != nil {
			return fail("%d of the routers' namespaces still there %v after the deletes began", left, time.Since(t3).Round(time.Second))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if rr.deleteAPI.FirstError != "" && rr.err == "" {
		rr.err = fmt.Sprintf("%d router deletes failed; the first:\n%s", rr.deleteAPI.Errors, rr.deleteAPI.FirstError)
	}
	r.logf("routers: deleted in %v (namespaces gone)", rr.deleteAll.Round(time.Millisecond))
	// The networks (not timed).
	concurrentN(ctx, opts.clients, len(made), 30*time.Minute, func(ctx context.Context, _, i int) error {
		if made[i].network == "" {
			return nil
		}
		return r.nc.del(ctx, tok, "/networks/"+made[i].network)
	})
	_ = r.nc.del(ctx, tok, "/networks/"+extID)
	return rr
}
