package agent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/nimbo-cloud/nimbo/internal/dhcp"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/network"
)

// dhcpRunning is a network's DHCP server and what it was started with.
type dhcpRunning struct {
	srv  *dhcp.Server
	ns   *hostnet.NS
	base string // fingerprint of the configuration apart from the hosts
}

func (r *dhcpRunning) stop() {
	_ = r.srv.Stop()
	_ = r.ns.Close()
}

// ensureDHCP makes sure a network's DHCP service runs here: its port (with an
// address on each DHCP subnet), its namespace with a veth into the bridge,
// and a server answering the network's ports. It returns the DHCP port.
func (a *Agent) ensureDHCP(ctx context.Context, n network.Network, subnets []network.Subnet, ports []network.Port, d *desired) (network.Port, error) {
	svc := a.cfg.Network
	dp, err := svc.EnsureDHCPPort(ctx, n.ID, a.cfg.Host)
	if err != nil {
		return network.Port{}, err
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
	if err := a.cfg.NS.EnsureVeth(ctx, hostnet.Veth{Name: host, Bridge: BridgeName(n.ID), MTU: n.MTU,
		Peer: hostnet.VethPeer{NS: dns, Name: DHCPIface, MAC: mac(dp.MAC), Addrs: prefixes(dp, subnets)}}); err != nil {
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
	// No metadata route yet: the metadata service arrives with routers
	// (until then a route to 169.254.169.254 would lead nowhere).
	cfg := dhcp.Config{Interface: DHCPIface, ServerIP: server, Subnet: sn.CIDR, Router: sn.Gateway, DNS: sn.DNS, MTU: n.MTU,
		Logger: a.log}
	for _, r := range sn.HostRoutes {
		cfg.Routes = append(cfg.Routes, dhcp.Route{Dst: r.Destination, Via: r.NextHop})
	}
	base := fmt.Sprintf("%+v", cfg)
	var hosts []dhcp.Host
	for _, p := range ports {
		if p.NetworkID != n.ID || p.ID == dp.ID {
			continue
		}
		for _, f := range p.FixedIPs {
			if f.SubnetID == sn.ID {
				hosts = append(hosts, dhcp.Host{MAC: mac(p.MAC), IP: f.IP})
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if r, ok := a.servers[n.ID]; ok {
		select {
		case <-r.srv.Done(): // it died: start again below
			r.stop()
			delete(a.servers, n.ID)
		default:
			if r.base == base {
				if err := r.srv.Update(hosts); err != nil {
					return dp, err
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
	cfg.NS, cfg.Hosts = ns, hosts
	srv, err := dhcp.Start(context.WithoutCancel(ctx), cfg)
	if err != nil {
		_ = ns.Close()
		return dp, err
	}
	a.servers[n.ID] = &dhcpRunning{srv: srv, ns: ns, base: base}
	return dp, svc.SetPortStatus(ctx, dp.ID, network.StatusActive, VIFType, map[string]any{"bridge_name": BridgeName(n.ID)})
}
