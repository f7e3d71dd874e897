package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/nimbo-cloud/nimbo/internal/dhcp"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/metadata"
	"github.com/nimbo-cloud/nimbo/internal/network"
)

// dhcpRunning is a network's DHCP server and what it was started with.
type dhcpRunning struct {
	srv    *dhcp.Server
	md     *metadata.Server // the network's metadata listener
	ns     *hostnet.NS
	base   string                 // fingerprint of the configuration apart from the hosts
	subnet string                 // the subnet served
	byPort map[string][]dhcp.Host // what the server holds for each port
	full   bool                   // rebuild the host table from the whole view
}

func (r *dhcpRunning) stop() {
	_ = r.srv.Stop()
	_ = r.md.Close()
	_ = r.ns.Close()
}

// startMetadata runs the network's metadata listener on 169.254.169.254:80
// in the DHCP namespace: every caller there is on this network.
func (r *dhcpRunning) startMetadata(networkID string, a *Agent) error {
	ln, err := metadata.Listen(r.ns, net.JoinHostPort(metadata.Addr.String(), "80"))
	if err != nil {
		return err
	}
	r.md = metadata.New(metadata.Config{Source: metadata.Fixed(networkID), Lookup: portLookup{a.cfg.Network},
		Content: metadata.DefaultContent{}, Logger: a.log})
	go func() { _ = r.md.Serve(ln) }()
	return nil
}

// ensureDHCP makes sure a network's DHCP service runs here: its port (with an
// address on each DHCP subnet), its namespace with a veth into the bridge,
// and a server answering the network's ports. It returns the DHCP port.
func (a *Agent) ensureDHCP(ctx context.Context, n network.Network, subnets []network.Subnet, d *desired) (network.Port, error) {
	svc := a.cfg.Network
	dp, ok := a.view.dhcpPort(n.ID)
	if !ok || !network.DHCPPortCurrent(dp, subnets) {
		var err error
		if dp, err = svc.EnsureDHCPPort(ctx, n.ID, a.cfg.Host); err != nil {
			return network.Port{}, err
		}
	}
	name := a.DHCPNetns(n.ID)
	host := hostnet.IfName(dhcpPrefix, n.ID)
	d.netns[name], d.links[host] = true, true
	if err := hostnet.EnsureNetns(ctx, name); err != nil {
		return dp, err
	}
	dns, err := hostnet.OpenNetns(name)
	if err != nil {
		return dp, err
	}
	defer dns.Close()
	// The DHCP leg also carries the metadata address: guests get a route to
	// it through the DHCP port (option 121), on routed and isolated
	// networks alike.
	addrs := append(prefixes(dp, subnets), netip.PrefixFrom(metadata.Addr, 32))
	if err := a.cfg.NS.EnsureVeth(ctx, hostnet.Veth{Name: host, Bridge: BridgeName(n.ID), MTU: n.MTU,
		Peer: hostnet.VethPeer{NS: dns, Name: DHCPIface, MAC: mac(dp.MAC), Addrs: addrs}}); err != nil {
		return dp, err
	}
	// One server per network, for its first DHCP subnet that has a server
	// address (more than one IPv4 DHCP subnet per network is not served yet).
	var sn network.Subnet
	var server netip.Addr
	for _, s := range subnets {
		if !s.EnableDHCP {
			continue
		}
		if i := slices.IndexFunc(dp.FixedIPs, func(f network.FixedIP) bool { return f.SubnetID == s.ID }); i >= 0 {
			sn, server = s, dp.FixedIPs[i].IP
			break
		}
	}
	if !server.IsValid() {
		return dp, fmt.Errorf("the DHCP port has no address on a DHCP subnet (subnet full?)")
	}
	cfg := dhcp.Config{Interface: DHCPIface, ServerIP: server, Subnet: sn.CIDR, Router: sn.Gateway, DNS: sn.DNS, MTU: n.MTU,
		MetadataVia: server, Logger: a.log}
	for _, r := range sn.HostRoutes {
		cfg.Routes = append(cfg.Routes, dhcp.Route{Dst: r.Destination, Via: r.NextHop})
	}
	base := fmt.Sprintf("%+v", cfg)
	a.mu.Lock()
	defer a.mu.Unlock()
	if r, ok := a.servers[n.ID]; ok {
		select {
		case <-r.srv.Done(): // it died: start again below
			r.stop()
			delete(a.servers, n.ID)
		default:
			if r.base == base {
				if err := a.updateHosts(r, n.ID, dp.ID); err != nil {
					return dp, err
				}
				if dp.Status == network.StatusActive {
					return dp, nil
				}
				return dp, svc.SetPortStatus(ctx, dp.ID, network.StatusActive, VIFType, map[string]any{"bridge_name": BridgeName(n.ID)})
			}
			r.stop() // the subnet's options changed: restart with them
			delete(a.servers, n.ID)
		}
	}
	ns, err := hostnet.OpenNetns(name)
	if err != nil {
		return dp, err
	}
	r := &dhcpRunning{ns: ns, base: base, subnet: sn.ID}
	if err := r.startMetadata(n.ID, a); err != nil {
		_ = ns.Close()
		return dp, fmt.Errorf("metadata: %w", err)
	}
	a.view.takeDirty(n.ID) // the server starts from the whole view
	r.byPort = a.hostsOf(n.ID, dp.ID, sn.ID)
	for _, hs := range r.byPort {
		cfg.Hosts = append(cfg.Hosts, hs...)
	}
	cfg.NS = ns
	if r.srv, err = dhcp.Start(context.WithoutCancel(ctx), cfg); err != nil {
		_ = r.md.Close()
		_ = ns.Close()
		return dp, err
	}
	a.servers[n.ID] = r
	return dp, svc.SetPortStatus(ctx, dp.ID, network.StatusActive, VIFType, map[string]any{"bridge_name": BridgeName(n.ID)})
}

// hostsFor returns the DHCP entries of a port on a subnet.
func hostsFor(p network.Port, subnetID string) []dhcp.Host {
	var out []dhcp.Host
	for _, f := range p.FixedIPs {
		if f.SubnetID == subnetID {
			out = append(out, dhcp.Host{MAC: mac(p.MAC), IP: f.IP})
		}
	}
	return out
}

// hostsOf returns the DHCP entries of every port of a network on a subnet,
// by port, leaving out the DHCP port itself.
func (a *Agent) hostsOf(networkID, dhcpPortID, subnetID string) map[string][]dhcp.Host {
	out := map[string][]dhcp.Host{}
	for id := range a.view.byNet[networkID] {
		if id == dhcpPortID {
			continue
		}
		if hs := hostsFor(a.view.ports[id], subnetID); len(hs) > 0 {
			out[id] = hs
		}
	}
	return out
}

// updateHosts brings a running server's host table up to date: entry by
// entry for the ports changed since its last update, or whole when r.full.
// On failure the next pass rebuilds the whole table.
func (a *Agent) updateHosts(r *dhcpRunning, networkID, dhcpPortID string) error {
	dirty := a.view.takeDirty(networkID)
	if r.full {
		byPort := a.hostsOf(networkID, dhcpPortID, r.subnet)
		var hosts []dhcp.Host
		for _, hs := range byPort {
			hosts = append(hosts, hs...)
		}
		if err := r.srv.Update(hosts); err != nil {
			return err
		}
		r.byPort, r.full = byPort, false
		return nil
	}
	var set []dhcp.Host
	var remove []net.HardwareAddr
	next := map[string][]dhcp.Host{}
	for id := range dirty {
		var hs []dhcp.Host
		if p, ok := a.view.ports[id]; ok && p.NetworkID == networkID && id != dhcpPortID {
			hs = hostsFor(p, r.subnet)
		}
		for _, old := range r.byPort[id] {
			if !slices.ContainsFunc(hs, func(h dhcp.Host) bool { return h.MAC.String() == old.MAC.String() }) {
				remove = append(remove, old.MAC)
			}
		}
		set = append(set, hs...)
		next[id] = hs
	}
	if len(set) == 0 && len(remove) == 0 {
		return nil
	}
	if err := r.srv.Change(set, remove); err != nil {
		r.full = true
		return err
	}
	for id, hs := range next {
		if len(hs) == 0 {
			delete(r.byPort, id)
		} else {
			r.byPort[id] = hs
		}
	}
	return nil
}
