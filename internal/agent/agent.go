// Package agent is nimbo's per-host reconciler: it reads the whole desired
// network state and makes this host's Linux networking match it — a bridge
// per network, a DHCP namespace and server per network with DHCP, a namespace
// per probe port, and the nftables firewall of every port here — then reports
// port status back. It is level-triggered: each pass converges from the whole
// state, a second pass changes nothing, a restart adopts what exists, and
// whatever is no longer desired is removed.
package agent

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/metadata"
	"github.com/nimbo-cloud/nimbo/internal/network"
	"github.com/nimbo-cloud/nimbo/internal/nft"
	"github.com/nimbo-cloud/nimbo/internal/underlay"
)

// Interface name prefixes (hostnet.IfName adds 11 hex digits of the ID).
const (
	bridgePrefix = "nb-" // a network's bridge
	dhcpPrefix   = "nd-" // bridge end of a DHCP namespace's veth
	probePrefix  = "np-" // bridge end of a probe namespace's veth
	// DHCPIface and ProbeIface are the interface names inside those namespaces.
	DHCPIface  = "dhcp0"
	ProbeIface = "eth0"
)

// VIFType is the binding:vif_type of ports the agent wires.
const VIFType = "bridge"

// Config configures an Agent.
type Config struct {
	// Host is this host's ID (ports bound here have binding:host_id == Host).
	Host string
	// Network is the network service whose state is reconciled.
	Network *network.Service
	// NS is the namespace bridges live in: the one nimbo runs in.
	NS *hostnet.NS
	// NetnsPrefix names the namespaces the agent makes ("<prefix>-dhcp-<network>",
	// "<prefix>-probe-<port>"); default "nimbo".
	NetnsPrefix string
	// Underlay connects the external networks to the outside world (nil:
	// they stay on their bridges, as in tests of the agent alone).
	Underlay underlay.Underlay
	// PublishAddr, if valid, is a host address on which the underlay also
	// publishes every port forwarding (same protocol and external port), so
	// that clients outside the host reach it (modes that support it).
	PublishAddr netip.Addr
	Logger      *slog.Logger
}

// Agent reconciles one host.
type Agent struct {
	cfg Config
	log *slog.Logger
	fw  *nft.Firewall

	view *portView // used by Reconcile only (passes do not overlap)

	mu      sync.Mutex
	servers map[string]*dhcpRunning   // network ID -> running server
	routers map[string]*routerRunning // router ID -> its open namespace, NAT and metadata listener

	// Used by Reconcile only. A network or router whose fingerprint (all
	// that its kernel state is made from) is unchanged since it was last
	// built without error is not checked against the kernel again until
	// the next full pass (every ResyncEvery, and after a failed one).
	netFP, routerFP      map[string]string
	lastFull             time.Time
	lastNetns, lastLinks map[string]bool // what the previous pass wanted
	uStatus              underlay.Status // what the underlay's last Set reported
	uFP                  string          // fingerprint of the config of the underlay's last successful Set
	uLookAt              time.Time       // without egress: when the underlay is to look for an uplink again
}

// New returns an agent; call Run.
func New(cfg Config) *Agent {
	if cfg.NetnsPrefix == "" {
		cfg.NetnsPrefix = "nimbo"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Agent{cfg: cfg, log: cfg.Logger, fw: nft.New(cfg.NS, cfg.Logger), servers: map[string]*dhcpRunning{},
		routers: map[string]*routerRunning{}, netFP: map[string]string{}, routerFP: map[string]string{}, view: newPortView(cfg.Network, cfg.Host)}
}

// DHCPNetns is the namespace serving DHCP for a network.
func (a *Agent) DHCPNetns(networkID string) string { return a.cfg.NetnsPrefix + "-dhcp-" + networkID }

// ProbeNetns is the namespace of a probe port.
func ProbeNetns(prefix, portID string) string { return prefix + "-probe-" + portID }

// BridgeName is the bridge of a network.
func BridgeName(networkID string) string { return hostnet.IfName(bridgePrefix, networkID) }

// Run reconciles until ctx ends: once at start, then after every change of
// the desired state (and every retryEvery after a failed pass). On return
// the DHCP servers stop; namespaces, links and rules stay, so traffic keeps
// flowing and the next start adopts them.
func (a *Agent) Run(ctx context.Context) error {
	defer a.stopServers()
	const retryEvery = 2 * time.Second
	cache := a.cfg.Network.Cache()
	var prevRev int64 // the store revision the previous pass started at
	for {
		changed := cache.Changed()
		start, rev := time.Now(), cache.Rev()
		batch := rev - prevRev // store changes this pass takes in
		prevRev = rev
		err := a.Reconcile(ctx)
		if ctx.Err() != nil {
			return nil
		}
		a.log.Debug("agent: pass done", "took", time.Since(start), "err", err)
		var retry, uplink <-chan time.Time
		if err != nil {
			a.log.Error("agent: reconcile failed; retrying", "err", err, "took", time.Since(start))
			retry = time.After(retryEvery)
		}
		if !a.uLookAt.IsZero() {
			uplink = time.After(time.Until(a.uLookAt))
		}
		done := time.Now()
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			// Let a burst of changes settle into one pass: briefly after a
			// quiet spell (a lone change is built at once), longer while
			// changes stream in (a stream of API calls is built in
			// batches, leaving the CPU to the API). A stream: the change
			// came soon after the previous pass, which itself took in
			// several changes (one client's calls one after the other,
			// each with the agent's status write, are no stream).
			settle := settleQuiet
			if time.Since(done) < busyWithin && batch >= busyBatch {
				settle = settleBusy
			}
			select {
			case <-time.After(settle):
			case <-ctx.Done():
				return nil
			}
		case <-retry:
		case <-uplink: // the underlay looks for an uplink again
		case <-time.After(ResyncEvery): // a full pass is due
		}
	}
}

// How long Run lets changes settle before a pass: settleBusy when the
// change came sooner than busyWithin after the previous pass and that pass
// took in busyBatch store revisions or more, settleQuiet otherwise.
const (
	settleQuiet = time.Millisecond
	settleBusy  = 5 * time.Millisecond
	busyWithin  = 20 * time.Millisecond
	busyBatch   = 3
)

// desired is one pass's view of what this host must have.
type desired struct {
	bridges map[string]network.Network // bridge name -> network
	links   map[string]bool            // every link name that must exist
	netns   map[string]bool            // every namespace that must exist
	dhcp    map[string]bool            // network IDs served here
	fwPorts []nft.Port
}

// Reconcile makes the host match the desired state once. It must not run
// concurrently with itself. Each pass checks every network's bridge, DHCP
// namespace and probes against the kernel, but its cost in ports is what
// changed since the previous pass (see portView).
func (a *Agent) Reconcile(ctx context.Context) error {
	ph := phases{start: time.Now()}
	svc := a.cfg.Network
	d := desired{bridges: map[string]network.Network{}, links: map[string]bool{}, netns: map[string]bool{}, dhcp: map[string]bool{}}
	var errs []error
	if a.view.sync(svc) {
		a.mu.Lock()
		for _, r := range a.servers {
			r.full = true
		}
		a.mu.Unlock()
	}
	full := a.lastFull.IsZero() || time.Since(a.lastFull) > ResyncEvery
	defer func() { a.log.Debug("agent: pass phases", "full", full, "took", ph.attrs()) }()
	ph.mark("sync")
	routers, routerNets := a.l3State()
	ph.mark("l3")
	for _, n := range svc.AllNetworks() {
		subnets := svc.NetworkSubnets(n.ID)
		serveDHCP := slices.ContainsFunc(subnets, func(sn network.Subnet) bool { return sn.EnableDHCP })
		local := a.view.localPorts(n.ID)
		if !serveDHCP && len(local) == 0 && !routerNets[n.ID] && !n.External {
			continue
		}
		br := BridgeName(n.ID)
		d.bridges[br], d.links[br] = n, true
		fp := a.networkFingerprint(n, subnets, local)
		if !full && a.netFP[n.ID] == fp && a.skipNetwork(ctx, n, serveDHCP, local, &d, &errs) {
			continue // nothing of it changed since it was last built
		}
		delete(a.netFP, n.ID)
		nerrs := len(errs)
		if err := a.cfg.NS.EnsureBridge(ctx, br, bridgeMAC(n.ID), n.MTU); err != nil {
			errs = append(errs, fmt.Errorf("network %s: bridge: %w", n.ID, err))
			continue
		}
		if serveDHCP {
			d.dhcp[n.ID] = true
			if p, err := a.ensureDHCP(ctx, n, subnets, &d); errdefs.IsNotFound(err) {
				a.log.Debug("agent: network went away during the pass", "network", n.ID) // the next pass sees it gone
			} else if err != nil {
				errs = append(errs, fmt.Errorf("network %s: dhcp: %w", n.ID, err))
			} else {
				d.fwPorts = append(d.fwPorts, firewallPort(p, hostnet.IfName(dhcpPrefix, n.ID)))
			}
		}
		for _, p := range local {
			if err := a.ensureProbe(ctx, n, subnets, p, &d); errdefs.IsNotFound(err) {
				a.log.Debug("agent: probe went away during the pass", "port", p.ID)
				continue
			} else if err != nil {
				errs = append(errs, fmt.Errorf("probe %s: %w", p.ID, err))
				continue
			}
			d.fwPorts = append(d.fwPorts, firewallPort(p, hostnet.IfName(probePrefix, p.ID)))
		}
		if len(errs) == nerrs {
			a.netFP[n.ID] = fp
		}
	}
	ph.mark("networks")
	for id, st := range routers {
		fp := routerFingerprint(st)
		if !full && a.routerFP[id] == fp && a.skipRouter(st, &d) {
			continue
		}
		delete(a.routerFP, id)
		if err := a.ensureRouter(ctx, st, &d); err == nil {
			a.routerFP[id] = fp
		} else if !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("router %s: %w", st.router.ID, err))
			if serr := svc.SetRouterStatus(ctx, st.router.ID, network.StatusError); serr != nil && !errdefs.IsNotFound(serr) {
				errs = append(errs, serr)
			}
		}
	}
	ph.mark("routers")
	// The underlay comes after the routers: it connects their external
	// networks (whose bridges exist by now) to the outside world, which
	// may take long (a cloud's API), and a router's NAT must not wait
	// for it.
	if err := a.setUnderlay(ctx, d, routers, full); err != nil {
		errs = append(errs, fmt.Errorf("underlay: %w", err))
	}
	ph.mark("underlay")
	if err := a.applyFirewall(ctx, d); err != nil {
		errs = append(errs, fmt.Errorf("firewall: %w", err))
	}
	ph.mark("firewall")
	if err := a.collect(ctx, d, full); err != nil {
		errs = append(errs, fmt.Errorf("garbage collection: %w", err))
	}
	ph.mark("collect")
	for id := range a.netFP {
		if _, ok := d.bridges[BridgeName(id)]; !ok {
			delete(a.netFP, id)
		}
	}
	for id := range a.routerFP {
		if _, ok := routers[id]; !ok {
			delete(a.routerFP, id)
		}
	}
	if full {
		a.lastFull = time.Time{}
		if len(errs) == 0 {
			a.lastFull = time.Now()
		}
	}
	return errors.Join(errs...)
}

// bridgeMAC is a stable, locally administered MAC for a network's bridge (a
// bridge otherwise takes its lowest port's MAC and changes it as ports come
// and go).
func bridgeMAC(id string) net.HardwareAddr {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	s := h.Sum64()
	return net.HardwareAddr{0x02, byte(s >> 32), byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}
}

// prefixes are a port's addresses with their subnets' prefix lengths.
func prefixes(p network.Port, subnets []network.Subnet) []netip.Prefix {
	var out []netip.Prefix
	for _, f := range p.FixedIPs {
		for _, sn := range subnets {
			if sn.ID == f.SubnetID {
				out = append(out, netip.PrefixFrom(f.IP, sn.CIDR.Bits()))
			}
		}
	}
	return out
}

func mac(s string) net.HardwareAddr {
	hw, _ := net.ParseMAC(s)
	return hw
}

// ensureProbe wires a probe port: its namespace, a veth into the network's
// bridge with the port's MAC and addresses, and a default route through the
// first subnet's gateway.
func (a *Agent) ensureProbe(ctx context.Context, n network.Network, subnets []network.Subnet, p network.Port, d *desired) error {
	name := ProbeNetns(a.cfg.NetnsPrefix, p.ID)
	host := hostnet.IfName(probePrefix, p.ID)
	d.netns[name], d.links[host] = true, true
	if err := hostnet.EnsureNetns(ctx, name); err != nil {
		return err
	}
	pns, err := hostnet.OpenNetns(name)
	if err != nil {
		return err
	}
	defer pns.Close()
	if err := a.cfg.NS.EnsureVeth(ctx, hostnet.Veth{Name: host, Bridge: BridgeName(n.ID), MTU: n.MTU,
		Peer: hostnet.VethPeer{NS: pns, Name: ProbeIface, MAC: mac(p.MAC), Addrs: prefixes(p, subnets)}}); err != nil {
		return err
	}
	if err := pns.SetLinkUp(ctx, "lo"); err != nil {
		return err
	}
	// The routes a DHCP client would install: the default route through
	// the first subnet's gateway, and the metadata route through the DHCP
	// port (option 121).
	var routes []hostnet.Route
	for _, f := range p.FixedIPs {
		for _, sn := range subnets {
			if sn.ID == f.SubnetID && sn.Gateway.IsValid() && len(routes) == 0 {
				routes = append(routes, hostnet.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: sn.Gateway, Dev: ProbeIface})
			}
		}
	}
	if dp, ok := a.view.dhcpPort(n.ID); ok {
		for _, df := range dp.FixedIPs {
			if slices.ContainsFunc(p.FixedIPs, func(f network.FixedIP) bool { return f.SubnetID == df.SubnetID }) {
				routes = append(routes, hostnet.Route{Dst: netip.PrefixFrom(metadata.Addr, 32), Gw: df.IP, Dev: ProbeIface})
				break
			}
		}
	}
	if err := syncRoutes(ctx, pns, routes); err != nil {
		return err
	}
	return a.setActive(ctx, p, n.ID)
}

// firewallPort is a port as the firewall sees it.
func firewallPort(p network.Port, iface string) nft.Port {
	fp := nft.Port{ID: p.ID, Iface: iface, MAC: mac(p.MAC), PortSecurity: p.PortSecurityEnabled && p.DeviceOwner != network.OwnerDHCP, Groups: p.SecurityGroups}
	for _, f := range p.FixedIPs {
		fp.IPs = append(fp.IPs, f.IP)
	}
	for _, ap := range p.AddressPairs {
		fp.AddressPairs = append(fp.AddressPairs, nft.AddressPair{Prefix: ap.IP, MAC: mac(ap.MAC)})
	}
	return fp
}

// applyFirewall programs the ports wired here with their groups' rules, and
// removes nimbo's tables when no port needs them.
func (a *Agent) applyFirewall(ctx context.Context, d desired) error {
	if len(d.fwPorts) == 0 {
		return a.fw.Delete(ctx)
	}
	svc := a.cfg.Network
	rs := nft.Ruleset{Ports: d.fwPorts, Groups: map[string]nft.Group{}, Zones: map[string]uint16{}}
	for br, n := range d.bridges {
		// External networks stay in zone 0: the host routes their traffic
		// (the nat underlay's gateway is on their bridge), and the replies
		// coming back through the uplink are in zone 0.
		if !n.External {
			rs.Zones[br] = zoneOf(n.ID)
		}
	}
	for _, p := range d.fwPorts {
		for _, gid := range p.Groups {
			if _, done := rs.Groups[gid]; done {
				continue
			}
			g := nft.Group{ID: gid}
			for _, r := range svc.GroupRules(gid) {
				g.Rules = append(g.Rules, firewallRule(r))
			}
			rs.Groups[gid] = g
		}
	}
	_, err := a.fw.Apply(ctx, rs)
	return err
}

// zoneOf is a network's conntrack zone (1..65535).
func zoneOf(id string) uint16 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return uint16(h.Sum32()%65535) + 1
}

func firewallRule(r network.Rule) nft.Rule {
	proto, _ := network.ProtocolNumber(r.Protocol)
	out := nft.Rule{Direction: nft.Direction(r.Direction), EtherType: nft.EtherType(r.EtherType), Protocol: proto,
		RemoteIPPrefix: r.RemoteIPPrefix, RemoteGroupID: r.RemoteGroupID}
	out.PortMin, out.PortMax = r.PortMin, r.PortMax
	return out
}

// collect removes what is no longer desired: links, namespaces and DHCP
// servers (and their ports) of networks and probes that are gone.
func (a *Agent) collect(ctx context.Context, d desired, full bool) error {
	var errs []error
	// The kernel is listed only when something may have gone: on full
	// passes and when a name desired at the last pass no longer is.
	scan := full || gone(a.lastNetns, d.netns) || gone(a.lastLinks, d.links)
	a.lastNetns, a.lastLinks = d.netns, d.links
	a.mu.Lock()
	for id, srv := range a.servers {
		if !d.dhcp[id] {
			srv.stop()
			delete(a.servers, id)
		}
	}
	a.mu.Unlock()
	a.stopRouters(&d)
	for _, prefix := range []string{a.cfg.NetnsPrefix + "-dhcp-", a.cfg.NetnsPrefix + "-probe-", a.cfg.NetnsPrefix + "-router-"} {
		if !scan {
			break
		}
		names, err := hostnet.ListNetns(prefix)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, name := range names {
			if !d.netns[name] {
				if err := hostnet.DeleteNetns(ctx, name); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	for _, prefix := range []string{bridgePrefix, dhcpPrefix, probePrefix, routerIntPrefix, routerGwPrefix} {
		if !scan {
			break
		}
		links, err := a.cfg.NS.ListLinks(ctx, prefix)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, l := range links {
			if !d.links[l.Name] {
				if err := a.cfg.NS.DeleteLink(ctx, l.Name); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	for netID, portID := range a.view.dhcp {
		if !d.dhcp[netID] {
			if err := a.cfg.Network.DeletePortByAgent(ctx, portID); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Networks served nowhere here need no record of their changed ports: a
	// server started later reads all of them.
	for netID := range a.view.dirty {
		if !d.dhcp[netID] {
			delete(a.view.dirty, netID)
		}
	}
	return errors.Join(errs...)
}

func (a *Agent) stopServers() {
	a.stopRouters(nil)
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, srv := range a.servers {
		srv.stop()
		delete(a.servers, id)
	}
}
