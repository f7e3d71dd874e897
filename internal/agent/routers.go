package agent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/metadata"
	"github.com/nimbo-cloud/nimbo/internal/network"
	"github.com/nimbo-cloud/nimbo/internal/nft"
)

// Router legs: the bridge ends in the host namespace, and the names of the
// other ends inside the router namespace (Neutron's qr-/qg- devices).
const (
	routerIntPrefix = "nr-" // bridge end of an interface leg
	routerGwPrefix  = "ng-" // bridge end of the gateway leg
	// RouterIntIfacePrefix and RouterGwIfacePrefix name the legs inside a
	// router namespace ("qr-" / "qg-" and 11 hex digits of the port ID).
	RouterIntIfacePrefix = "qr-"
	RouterGwIfacePrefix  = "qg-"
	// MetadataPort is where a router namespace's metadata listener runs;
	// nftables redirects guests' 169.254.169.254:80 to it.
	MetadataPort = 9697
)

// RouterNetns is the namespace of a router.
func RouterNetns(prefix, routerID string) string { return prefix + "-router-" + routerID }

// routerRunning is what the agent keeps open for a router namespace.
type routerRunning struct {
	ns      *hostnet.NS
	nat     *nft.RouterNAT
	applied *nft.RouterRules // what the last successful Apply installed
	md      *metadata.Server
	subnets *metadata.Subnets
}

func (r *routerRunning) stop() {
	if r.md != nil {
		_ = r.md.Close()
	}
	_ = r.ns.Close()
}

// routerState is one router's desired state, gathered from the store.
type routerState struct {
	router     network.Router
	interfaces []network.Port
	gateway    *network.Port
	gwSubnet   network.Subnet // the subnet of the gateway's first IPv4 address
	rules      nft.RouterRules
	fips       []string // floating IPs the rules carry (ACTIVE)
}

// l3State gathers every router's desired state, and the networks their legs
// need a bridge on.
func (a *Agent) l3State() (map[string]*routerState, map[string]bool) {
	svc := a.cfg.Network
	states := map[string]*routerState{}
	nets := map[string]bool{}
	for _, r := range svc.AllRouters() {
		st := &routerState{router: r}
		for id := range a.view.byDevice[r.ID] {
			p := a.view.ports[id]
			switch p.DeviceOwner {
			case network.OwnerRouterInterface:
				// Only the interfaces add_router_interface recorded (the
				// subnet routed by this router): a port merely marked
				// with this owner through the port API gets no leg.
				if len(p.FixedIPs) == 0 {
					continue
				}
				if rid, ok := svc.RouterOfSubnet(p.FixedIPs[0].SubnetID); !ok || rid != r.ID {
					continue
				}
				st.interfaces = append(st.interfaces, p)
				nets[p.NetworkID] = true
			case network.OwnerRouterGateway:
				if r.Gateway != nil && r.Gateway.PortID == p.ID {
					st.gateway = &p
					nets[p.NetworkID] = true
				}
			}
		}
		slices.SortFunc(st.interfaces, func(x, y network.Port) int { return strings.Compare(x.ID, y.ID) })
		rr := &st.rules
		for _, p := range st.interfaces {
			for _, f := range p.FixedIPs {
				if sn, ok := svc.Subnet(f.SubnetID); ok && sn.CIDR.Addr().Is4() {
					rr.Internal = append(rr.Internal, sn.CIDR)
				}
			}
		}
		rr.Metadata = &nft.Metadata{Port: MetadataPort}
		if st.gateway != nil {
			for _, f := range st.gateway.FixedIPs {
				if sn, ok := svc.Subnet(f.SubnetID); ok && f.IP.Is4() {
					rr.GatewayIface, rr.GatewayIP, st.gwSubnet = hostnet.IfName(RouterGwIfacePrefix, st.gateway.ID), f.IP, sn
					break
				}
			}
			rr.SNAT = r.Gateway.EnableSNAT
		}
		states[r.ID] = st
	}
	// Floating IPs: 1:1 through the router of their association; port
	// forwardings: through the router of the internal address's subnet.
	fips := map[string]network.FloatingIP{}
	for _, f := range svc.AllFloatingIPs() {
		fips[f.ID] = f
		if st := states[f.RouterID]; st != nil && f.FixedIP.IsValid() && st.rules.GatewayIface != "" {
			st.rules.FloatingIPs = append(st.rules.FloatingIPs, nft.FloatingIP{External: f.IP, Internal: f.FixedIP})
			st.fips = append(st.fips, f.ID)
		}
	}
	for _, pf := range svc.AllPortForwardings() {
		f, ok := fips[pf.FloatingIPID]
		p, pok := a.view.ports[pf.InternalPortID]
		if !ok || !pok {
			continue
		}
		i := slices.IndexFunc(p.FixedIPs, func(x network.FixedIP) bool { return x.IP == pf.InternalIP })
		if i < 0 {
			continue
		}
		rid, ok := svc.RouterOfSubnet(p.FixedIPs[i].SubnetID)
		st := states[rid]
		if !ok || st == nil || st.rules.GatewayIface == "" {
			continue
		}
		proto := nft.ProtoTCP
		if pf.Protocol == "udp" {
			proto = nft.ProtoUDP
		}
		st.rules.Forwards = append(st.rules.Forwards, nft.Forward{Protocol: proto, External: f.IP,
			ExternalPortMin: uint16(pf.ExternalMin), ExternalPortMax: uint16(pf.ExternalMax),
			Internal: pf.InternalIP, InternalPortMin: uint16(pf.InternalMin), InternalPortMax: uint16(pf.InternalMax)})
		if !slices.Contains(st.fips, f.ID) {
			st.fips = append(st.fips, f.ID)
		}
	}
	return states, nets
}

// ensureRouter makes a router's namespace match st: legs on its networks'
// bridges (with the ports' MACs and addresses, floating IPs as /32s on the
// gateway leg), forwarding on, a default route through the external
// subnet's gateway, the extra routes, the NAT table and the metadata
// listener.
func (a *Agent) ensureRouter(ctx context.Context, st *routerState, d *desired) error {
	svc := a.cfg.Network
	r := st.router
	ph := phases{start: time.Now()}
	defer func() { a.log.Debug("agent: router built", "router", r.ID, "took", ph.attrs()) }()
	name := RouterNetns(a.cfg.NetnsPrefix, r.ID)
	d.netns[name] = true
	if err := hostnet.EnsureNetns(ctx, name); err != nil {
		return err
	}
	a.mu.Lock()
	run := a.routers[r.ID]
	a.mu.Unlock()
	if run == nil {
		ns, err := hostnet.OpenNetns(name)
		if err != nil {
			return err
		}
		run = &routerRunning{ns: ns, nat: nft.NewRouterNAT(ns, a.log)}
		a.mu.Lock()
		a.routers[r.ID] = run
		a.mu.Unlock()
	}
	ns := run.ns
	if err := ns.SetLinkUp(ctx, "lo"); err != nil {
		return err
	}
	// NAT first, forwarding last: no packet may leave through a new leg or
	// route before the rules that translate it are in place (a tenant
	// address must never reach the external network untranslated).
	ph.mark("netns")
	if _, err := run.nat.Apply(ctx, st.rules); err != nil {
		return err
	}
	ph.mark("nat")
	if run.applied != nil {
		// Flows of floating IPs and forwards that are gone stop now rather
		// than live on in conntrack (as Neutron's L3 agent does).
		if gone := goneFlows(*run.applied, st.rules); len(gone) > 0 {
			n, err := ns.ForgetConnections(ctx, gone)
			if err != nil {
				return err
			}
			a.log.Debug("agent: router connections forgotten", "router", r.ID, "entries", n)
		}
	}
	applied := st.rules
	run.applied = &applied
	ph.mark("conntrack")
	mdSubnets := map[netip.Prefix]string{}
	for _, p := range st.interfaces {
		n, ok := svc.Network(p.NetworkID)
		if !ok {
			continue // going away; the next pass sees it gone
		}
		host := hostnet.IfName(routerIntPrefix, p.ID)
		d.links[host] = true
		subnets := svc.NetworkSubnets(n.ID)
		if err := a.cfg.NS.EnsureVeth(ctx, hostnet.Veth{Name: host, Bridge: BridgeName(n.ID), MTU: n.MTU,
			Peer: hostnet.VethPeer{NS: ns, Name: hostnet.IfName(RouterIntIfacePrefix, p.ID), MAC: mac(p.MAC), Addrs: prefixes(p, subnets)}}); err != nil {
			return fmt.Errorf("interface %s: %w", p.ID, err)
		}
		for _, f := range p.FixedIPs {
			for _, sn := range subnets {
				if sn.ID == f.SubnetID {
					mdSubnets[sn.CIDR] = n.ID
				}
			}
		}
	}
	ph.mark("interfaces")
	var routes []hostnet.Route
	if g := st.gateway; g != nil && st.rules.GatewayIface != "" {
		n, ok := svc.Network(g.NetworkID)
		if !ok {
			return errdefs.NotFoundf("external network %s", g.NetworkID)
		}
		host := hostnet.IfName(routerGwPrefix, g.ID)
		d.links[host] = true
		addrs := st.rules.GatewayAddrs(st.gwSubnet.CIDR.Bits())
		// Hairpin: a packet the host translates from this router to one
		// of its own floating IPs (a published forward used from behind
		// the router) is bridged back out of the leg it came in by.
		if err := a.cfg.NS.EnsureVeth(ctx, hostnet.Veth{Name: host, Bridge: BridgeName(n.ID), MTU: n.MTU, Hairpin: true,
			Peer: hostnet.VethPeer{NS: ns, Name: st.rules.GatewayIface, MAC: mac(g.MAC), Addrs: addrs}}); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		if gw := st.gwSubnet.Gateway; gw.IsValid() {
			routes = append(routes, hostnet.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: gw, Dev: st.rules.GatewayIface})
		}
	}
	ph.mark("gateway")
	for _, rt := range r.Routes {
		routes = append(routes, hostnet.Route{Dst: rt.Destination, Gw: rt.NextHop})
	}
	if err := syncRoutes(ctx, ns, routes); err != nil {
		return err
	}
	ph.mark("routes")
	if err := ns.SetSysctl(ctx, "net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	ph.mark("forwarding")
	if err := a.ensureRouterMetadata(run, mdSubnets); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	ph.mark("metadata")
	defer ph.mark("status")
	// Report: the legs are wired, the router and its floating IPs active.
	for _, p := range st.interfaces {
		if err := a.setActive(ctx, p, p.NetworkID); err != nil {
			return err
		}
	}
	if st.gateway != nil {
		if err := a.setActive(ctx, *st.gateway, st.gateway.NetworkID); err != nil {
			return err
		}
	}
	for _, id := range st.fips {
		if err := svc.SetFloatingIPStatus(ctx, id, network.StatusActive); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	return svc.SetRouterStatus(ctx, r.ID, network.StatusActive)
}

// setActive marks a wired port ACTIVE (a no-op when it is already).
func (a *Agent) setActive(ctx context.Context, p network.Port, networkID string) error {
	if p.Status == network.StatusActive && p.VIFType == VIFType {
		return nil
	}
	err := a.cfg.Network.SetPortStatus(ctx, p.ID, network.StatusActive, VIFType, map[string]any{"bridge_name": BridgeName(networkID)})
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// syncRoutes makes nimbo's routes in ns exactly want (routes of the kernel,
// such as those of connected subnets, are left alone).
func syncRoutes(ctx context.Context, ns *hostnet.NS, want []hostnet.Route) error {
	have, err := ns.ListRoutes(ctx, 0)
	if err != nil {
		return err
	}
	for _, h := range have {
		if !slices.ContainsFunc(want, func(w hostnet.Route) bool { return w.Dst == h.Dst && w.Table == h.Table && w.Metric == h.Metric }) {
			if err := ns.DeleteRoute(ctx, h); err != nil {
				return err
			}
		}
	}
	for _, w := range want {
		if slices.ContainsFunc(have, func(h hostnet.Route) bool {
			return h.Dst == w.Dst && h.Gw == w.Gw && (w.Dev == "" || h.Dev == w.Dev) && h.Table == w.Table && h.Metric == w.Metric
		}) {
			continue
		}
		if err := ns.EnsureRoute(ctx, w); err != nil {
			return err
		}
	}
	return nil
}

// ensureRouterMetadata runs the router's metadata listener (once) and keeps
// its subnet -> network table current.
func (a *Agent) ensureRouterMetadata(run *routerRunning, subnets map[netip.Prefix]string) error {
	if run.md != nil {
		run.subnets.Set(subnets)
		return nil
	}
	ln, err := metadata.Listen(run.ns, fmt.Sprintf("0.0.0.0:%d", MetadataPort))
	if err != nil {
		return err
	}
	run.subnets = metadata.NewSubnets(subnets)
	run.md = metadata.New(metadata.Config{Source: run.subnets.Network, Lookup: portLookup{a.cfg.Network},
		Content: metadata.DefaultContent{}, Logger: a.log})
	go func() { _ = run.md.Serve(ln) }()
	return nil
}

// portLookup finds the port behind a metadata request.
type portLookup struct{ svc *network.Service }

func (l portLookup) Port(_ context.Context, networkID string, ip netip.Addr) (metadata.Requester, error) {
	p, ok := l.svc.PortByIP(networkID, ip)
	if !ok {
		return metadata.Requester{}, errdefs.NotFoundf("no port has address %s on network %s", ip, networkID)
	}
	return metadata.Requester{NetworkID: networkID, IP: ip, PortID: p.ID, DeviceID: p.DeviceID,
		DeviceOwner: p.DeviceOwner, ProjectID: p.ProjectID}, nil
}

// stopRouters stops what runs for the routers whose namespaces are not
// desired (all of them when d is nil); collect then deletes the namespaces
// and the legs.
func (a *Agent) stopRouters(d *desired) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, run := range a.routers {
		if d == nil || !d.netns[RouterNetns(a.cfg.NetnsPrefix, id)] {
			run.stop()
			delete(a.routers, id)
		}
	}
}

// goneFlows selects the connections translated by floating IPs and forwards
// that were in before and are not in after.
func goneFlows(before, after nft.RouterRules) []hostnet.ConnMatch {
	var out []hostnet.ConnMatch
	fips := make(map[nft.FloatingIP]bool, len(after.FloatingIPs))
	for _, f := range after.FloatingIPs {
		fips[f] = true
	}
	for _, f := range before.FloatingIPs {
		if !fips[f] {
			out = append(out, hostnet.ConnMatch{Dst: f.External}, hostnet.ConnMatch{Dst: f.External, Reply: true})
		}
	}
	fwds := make(map[nft.Forward]bool, len(after.Forwards))
	for _, f := range after.Forwards {
		fwds[f] = true
	}
	for _, f := range before.Forwards {
		if fwds[f] {
			continue
		}
		hi := max(f.ExternalPortMax, f.ExternalPortMin)
		if hi-f.ExternalPortMin >= 64 {
			// A wide range: every flow of that protocol to the address.
			out = append(out, hostnet.ConnMatch{Dst: f.External, Proto: uint8(f.Protocol)})
			continue
		}
		for p := int(f.ExternalPortMin); p <= int(hi); p++ {
			out = append(out, hostnet.ConnMatch{Dst: f.External, Proto: uint8(f.Protocol), Port: uint16(p)})
		}
	}
	return out
}
