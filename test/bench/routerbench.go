package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

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
		res.ops[rOpRouterSNAT] = res.ops[rOpRouterSNAT].failed(firstErr)
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
