package network

import (
	"context"
	"net/netip"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// GetFloatingIP returns a floating IP the caller can see.
func (s *Service) GetFloatingIP(c policy.Creds, id string) (FloatingIP, error) {
	f, _, ok := store.GetJSON[FloatingIP](s.cache, fipKey(id))
	if !ok || !canSee(c, "network:get_floatingip", f.ProjectID, false) {
		return FloatingIP{}, notFound("FloatingIPNotFound", "Floating IP", id)
	}
	return f, nil
}

// ListFloatingIPs lists the floating IPs the caller can see.
func (s *Service) ListFloatingIPs(c policy.Creds) []FloatingIP {
	var out []FloatingIP
	for _, f := range store.ListJSON[FloatingIP](s.cache, pFIPs) {
		if canSee(c, "network:get_floatingip", f.ProjectID, false) {
			out = append(out, f)
		}
	}
	return out
}

// AllFloatingIPs lists every floating IP (for the agent).
func (s *Service) AllFloatingIPs() []FloatingIP { return s.fips.List(pFIPs) }

// FloatingIPStatus is the status the API reports for a floating IP: what
// the agent last reported, DOWN until it has. Changing what a floating IP
// does (its association, its last forwarding) resets it to DOWN until the
// agent reports again.
func FloatingIPStatus(f FloatingIP) string {
	if f.Status == "" {
		return StatusDown
	}
	return f.Status
}

// FloatingIPPort returns the port a floating IP is associated with, for
// port_details (no policy: the association is visible with the floating IP).
func (s *Service) FloatingIPPort(f FloatingIP) (Port, bool) {
	if f.FixedPortID == "" {
		return Port{}, false
	}
	return s.ports.Get(portKey(f.FixedPortID))
}

// associate resolves an association: the port (visible, of the floating
// IP's project unless admin), its fixed address, and the router that
// connects its subnet to the floating IP's network.
func (s *Service) associate(c policy.Creds, f *FloatingIP, portID string, fixed *v2.NullString, b *portBuild) error {
	p, prev, ok := store.GetJSON[Port](s.cache, portKey(portID))
	if !ok || !s.canSeePort(c, p) || (p.ProjectID != f.ProjectID && !c.IsAdmin()) {
		return notFound("PortNotFound", "Port", portID)
	}
	switch p.DeviceOwner {
	case OwnerRouterInterface, OwnerRouterGateway, OwnerFloatingIP, OwnerDHCP:
		return errdefs.Typed("BadRequest", errdefs.Invalidf("Bad floatingip request: Port %s has owner %s: a floating IP cannot be associated with it.", p.ID, p.DeviceOwner))
	}
	var ip netip.Addr
	var subnetID string
	switch {
	case fixed != nil && fixed.Valid:
		a, err := parseAddr("fixed_ip_address", fixed.Value)
		if err != nil {
			return err
		}
		for _, fi := range p.FixedIPs {
			if fi.IP == a {
				ip, subnetID = a, fi.SubnetID
			}
		}
		if !ip.IsValid() {
			return errdefs.Typed("BadRequest", errdefs.Invalidf("Bad floatingip request: Port %s does not have fixed ip %s.", p.ID, a))
		}
	case len(p.FixedIPs) == 1:
		ip, subnetID = p.FixedIPs[0].IP, p.FixedIPs[0].SubnetID
	case len(p.FixedIPs) == 0:
		return errdefs.Typed("BadRequest", errdefs.Invalidf("Bad floatingip request: Cannot add floating IP to port %s that has no fixed IPv4 addresses.", p.ID))
	default:
		return errdefs.Typed("BadRequest", errdefs.Invalidf("Bad floatingip request: Port %s has multiple fixed IPv4 addresses. Must provide a specific IPv4 address when assigning a floating IP.", p.ID))
	}
	rt, rrev, ok := s.routerForSubnet(subnetID, f.NetworkID)
	if !ok {
		return errdefs.Typed("ExternalGatewayForFloatingIPNotFound", errdefs.NotFoundf("External network %s is not reachable from subnet %s. Therefore, cannot associate Port %s with a Floating IP.", f.NetworkID, subnetID, p.ID))
	}
	if kv, ok := s.cache.Get(fipFixedKey(p.ID, ip)); ok && string(kv.Value) != f.ID {
		return errdefs.Typed("FloatingIPPortAlreadyAssociated", errdefs.Conflictf("Cannot associate floating IP %s (%s) with port %s using fixed IP %s, as that fixed IP already has a floating IP on external network %s.", f.IP, f.ID, p.ID, ip, f.NetworkID))
	}
	f.FixedPortID, f.FixedIP, f.RouterID, f.FixedSubnet = p.ID, ip, rt.ID, subnetID
	// Rewriting the router (unchanged) serialises this with the removal of
	// its interface or gateway, which check the index entry added here.
	b.conds = append(b.conds, atRev(portKey(p.ID), prev), atRev(routerKey(rt.ID), rrev))
	b.ops = append(b.ops, store.Op{Kind: store.OpPut, Key: fipFixedKey(p.ID, ip), Value: []byte(f.ID)},
		idx(fipRouterKey(rt.ID, subnetID, f.ID)), store.PutJSON(routerKey(rt.ID), rt))
	return nil
}

// routerForSubnet is the router that connects a subnet (by an interface) to
// an external network (by its gateway).
func (s *Service) routerForSubnet(subnetID, externalNetworkID string) (Router, int64, bool) {
	kv, routed := s.cache.Get(routedKey(subnetID))
	if !routed {
		return Router{}, 0, false
	}
	rt, rev, ok := store.GetJSON[Router](s.cache, routerKey(string(kv.Value)))
	if !ok || rt.Gateway == nil || rt.Gateway.NetworkID != externalNetworkID {
		return Router{}, 0, false
	}
	return rt, rev, true
}

// dissociateOps drop a floating IP's association indexes.
func dissociateOps(f FloatingIP) []store.Op {
	if f.FixedPortID == "" {
		return nil
	}
	return []store.Op{del(fipFixedKey(f.FixedPortID, f.FixedIP)), del(fipRouterKey(f.RouterID, f.FixedSubnet, f.ID))}
}

// CreateFloatingIP allocates an address on an external network, associated
// with a port when one is given.
func (s *Service) CreateFloatingIP(ctx context.Context, c policy.Creds, r v2.FloatingIPRequest) (FloatingIP, error) {
	if r.FloatingNetworkID == nil || *r.FloatingNetworkID == "" {
		return FloatingIP{}, errdefs.Invalidf("Failed to parse request. Required attribute 'floating_network_id' not specified.")
	}
	if err := checkDescription(r.Description); err != nil {
		return FloatingIP{}, err
	}
	if r.FixedIPAddress != nil && r.FixedIPAddress.Valid && (r.PortID == nil || !r.PortID.Valid) {
		return FloatingIP{}, errdefs.Typed("BadRequest", errdefs.Invalidf("Bad floatingip request: fixed_ip_address cannot be specified without a port_id."))
	}
	if r.FloatingIPAddress != nil {
		if err := policy.Check("network:create_floatingip:floating_ip_address", c, policy.Target{}); err != nil {
			return FloatingIP{}, err
		}
	}
	n, _, ok := store.GetJSON[Network](s.cache, networkKey(*r.FloatingNetworkID))
	if !ok || !n.External {
		if ok && canSee(c, "network:get_network", n.ProjectID, n.Shared) {
			return FloatingIP{}, errdefs.Typed("BadRequest", errdefs.Invalidf("Bad floatingip request: Network %s is not a valid external network.", n.ID))
		}
		return FloatingIP{}, notFound("NetworkNotFound", "Network", *r.FloatingNetworkID)
	}
	project, err := owner(c, r.ProjectID, r.TenantID)
	if err != nil {
		return FloatingIP{}, err
	}
	if err := s.checkQuota(project, "floatingip", 1); err != nil {
		return FloatingIP{}, err
	}
	var out FloatingIP
	err = s.cache.Update(ctx, func() (store.Txn, error) {
		f := FloatingIP{Meta: Meta{ID: NewID(), ProjectID: project}, NetworkID: n.ID}
		if r.Description != nil {
			f.Description = *r.Description
		}
		s.stamp(&f.Meta, true)
		p := Port{Meta: Meta{ID: NewID()}, NetworkID: n.ID, AdminStateUp: true, Status: StatusDown, DeviceOwner: OwnerFloatingIP,
			DeviceID: f.ID, VNICType: "normal"}
		s.stamp(&p.Meta, true)
		var req *[]v2.FixedIP
		if r.FloatingIPAddress != nil || r.SubnetID != nil {
			fi := v2.FixedIP{}
			if r.FloatingIPAddress != nil {
				fi.IPAddress = *r.FloatingIPAddress
			}
			if r.SubnetID != nil {
				fi.SubnetID = *r.SubnetID
			}
			req = &[]v2.FixedIP{fi}
		}
		b := portBuild{}
		if err := s.buildPort(n, &p, req, false, &b); err != nil {
			return store.Txn{}, err
		}
		if len(p.FixedIPs) == 0 {
			return store.Txn{}, errdefs.Typed("ExternalIpAddressExhausted", errdefs.Invalidf("Unable to find any IP address on external network %s.", n.ID))
		}
		f.PortID, f.IP, f.SubnetID = p.ID, p.FixedIPs[0].IP, p.FixedIPs[0].SubnetID
		if r.PortID != nil && r.PortID.Valid {
			if err := s.associate(c, &f, r.PortID.Value, r.FixedIPAddress, &b); err != nil {
				return store.Txn{}, err
			}
		}
		b.ops = append(b.ops, store.PutJSON(portKey(p.ID), p), store.PutJSON(fipKey(f.ID), f), ownOp(project, "floatingip", f.ID))
		out = f
		return store.Txn{Conds: b.conds, Ops: b.ops}, nil
	})
	return out, err
}

// UpdateFloatingIP associates a floating IP with a port, moves it, or
// dissociates it (port_id null).
func (s *Service) UpdateFloatingIP(ctx context.Context, c policy.Creds, id string, r v2.FloatingIPRequest) (FloatingIP, error) {
	if r.FloatingNetworkID != nil || r.FloatingIPAddress != nil || r.SubnetID != nil || r.ProjectID != nil || r.TenantID != nil {
		return FloatingIP{}, errdefs.Invalidf("Cannot update read-only attributes of a floating IP (only port_id, fixed_ip_address and description).")
	}
	if err := checkDescription(r.Description); err != nil {
		return FloatingIP{}, err
	}
	if r.FixedIPAddress != nil && r.FixedIPAddress.Valid && (r.PortID == nil || !r.PortID.Valid) {
		return FloatingIP{}, errdefs.Typed("BadRequest", errdefs.Invalidf("Bad floatingip request: fixed_ip_address cannot be specified without a port_id."))
	}
	var out FloatingIP
	err := s.cache.Update(ctx, func() (store.Txn, error) {
		f, rev, ok := store.GetJSON[FloatingIP](s.cache, fipKey(id))
		if !ok || !canSee(c, "network:get_floatingip", f.ProjectID, false) {
			return store.Txn{}, notFound("FloatingIPNotFound", "Floating IP", id)
		}
		if err := policy.Check("network:update_floatingip", c, target(f.ProjectID, false)); err != nil {
			return store.Txn{}, err
		}
		b := portBuild{conds: []store.Cond{atRev(fipKey(id), rev)}}
		if r.Description != nil {
			f.Description = *r.Description
		}
		if r.PortID != nil {
			hasPFs := len(s.cache.List(pPortFwd+id+"/")) > 0
			if r.PortID.Valid && hasPFs {
				return store.Txn{}, errdefs.Typed("FipInUseByPortForwarding", errdefs.Conflictf("Floating IP %s in use by Port Forwarding resources.", id))
			}
			if f.FixedPortID != "" {
				b.ops = append(b.ops, dissociateOps(f)...)
				f.FixedPortID, f.FixedIP, f.RouterID, f.FixedSubnet = "", netip.Addr{}, "", ""
				f.Status = StatusDown
			}
			if r.PortID.Valid {
				if err := s.associate(c, &f, r.PortID.Value, r.FixedIPAddress, &b); err != nil {
					return store.Txn{}, err
				}
				f.Status = StatusDown
				// Moving an association keeps the index entries of the
				// new one only (the same key may be dropped and set).
				b.ops = dedupOps(b.ops)
			}
		}
		s.stamp(&f.Meta, false)
		out = f
		b.ops = append(b.ops, store.PutJSON(fipKey(id), f))
		return store.Txn{Conds: b.conds, Ops: b.ops}, nil
	})
	return out, err
}

// dedupOps keeps the last operation on each key (a transaction may name a
// key once).
func dedupOps(ops []store.Op) []store.Op {
	last := map[string]int{}
	for i, op := range ops {
		last[op.Key] = i
	}
	var out []store.Op
	for i, op := range ops {
		if last[op.Key] == i {
			out = append(out, op)
		}
	}
	return out
}

// DeleteFloatingIP releases a floating IP, its port and its forwardings.
func (s *Service) DeleteFloatingIP(ctx context.Context, c policy.Creds, id string) error {
	return s.cache.Update(ctx, func() (store.Txn, error) {
		f, rev, ok := store.GetJSON[FloatingIP](s.cache, fipKey(id))
		if !ok || !canSee(c, "network:get_floatingip", f.ProjectID, false) {
			return store.Txn{}, notFound("FloatingIPNotFound", "Floating IP", id)
		}
		if err := policy.Check("network:delete_floatingip", c, target(f.ProjectID, false)); err != nil {
			return store.Txn{}, err
		}
		return s.fipDeleteTxn(f, rev), nil
	})
}

// fipDeleteTxn deletes a floating IP with its port, association indexes and
// port forwardings.
func (s *Service) fipDeleteTxn(f FloatingIP, rev int64) store.Txn {
	t := store.Txn{Conds: []store.Cond{atRev(fipKey(f.ID), rev)},
		Ops: append([]store.Op{del(fipKey(f.ID)), unownOp(f.ProjectID, "floatingip", f.ID), {Kind: store.OpDeletePrefix, Key: pPortFwd + f.ID + "/"}}, dissociateOps(f)...)}
	t.Ops = append(t.Ops, s.pfIndexDeleteOps(f.RouterID, f.ID, "")...)
	if p, prev, ok := store.GetJSON[Port](s.cache, portKey(f.PortID)); ok {
		t.Conds = append(t.Conds, atRev(portKey(p.ID), prev))
		t.Ops = append(t.Ops, portDeleteOps(p)...)
	}
	return t
}

// ReleaseNetworkFloatingIPs deletes the floating IPs of an external network
// that are not associated with a port, so that the network can be deleted
// (Neutron does the same before deleting a network). It does nothing when
// other ports (router gateways, associated floating IPs, anything but DHCP
// ports) would keep the network in use anyway. Each floating IP goes in its
// own transaction; no policy (the caller may delete the network).
func (s *Service) ReleaseNetworkFloatingIPs(ctx context.Context, networkID string) error {
	n, _, ok := store.GetJSON[Network](s.cache, networkKey(networkID))
	if !ok || !n.External {
		return nil
	}
	var fips []string
	for _, pid := range suffixes(s.cache, pNetPort+networkID+"/") {
		p, ok := s.ports.Get(portKey(pid))
		if !ok || p.DeviceOwner == OwnerDHCP {
			continue
		}
		if p.DeviceOwner != OwnerFloatingIP {
			return nil
		}
		f, _, ok := store.GetJSON[FloatingIP](s.cache, fipKey(p.DeviceID))
		if !ok || f.FixedPortID != "" {
			return nil
		}
		fips = append(fips, f.ID)
	}
	for _, id := range fips {
		err := s.cache.Update(ctx, func() (store.Txn, error) {
			f, rev, ok := store.GetJSON[FloatingIP](s.cache, fipKey(id))
			if !ok || f.FixedPortID != "" {
				return store.Txn{}, nil
			}
			return s.fipDeleteTxn(f, rev), nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// portFIPOps dissociates the floating IPs of a port being deleted and drops
// the port forwardings to it (Neutron does so rather than refusing); a
// floating IP left without forwardings is no longer bound to a router.
func (s *Service) portFIPOps(p Port) ([]store.Cond, []store.Op) {
	var conds []store.Cond
	var ops []store.Op
	for _, kv := range s.cache.List(pFIPFixed + p.ID + "/") {
		f, rev, ok := store.GetJSON[FloatingIP](s.cache, fipKey(string(kv.Value)))
		if !ok {
			ops = append(ops, del(kv.Key))
			continue
		}
		ops = append(ops, dissociateOps(f)...)
		f.FixedPortID, f.FixedIP, f.RouterID, f.FixedSubnet, f.Status = "", netip.Addr{}, "", "", StatusDown
		s.stamp(&f.Meta, false)
		conds = append(conds, atRev(fipKey(f.ID), rev))
		ops = append(ops, store.PutJSON(fipKey(f.ID), f))
	}
	c2, o2 := s.forwardingDeleteOps(p.ID, func(PortForwarding) bool { return true })
	return append(conds, c2...), append(ops, o2...)
}

// forwardingDeleteOps deletes the port forwardings to port portID that
// match (and, with the last forwarding of a floating IP that has no port,
// its router association).
func (s *Service) forwardingDeleteOps(portID string, match func(PortForwarding) bool) ([]store.Cond, []store.Op) {
	var conds []store.Cond
	var ops []store.Op
	gone := map[string][]string{} // floating IP -> its forwardings to the port
	for _, pf := range s.AllPortForwardings() {
		if pf.InternalPortID == portID && match(pf) {
			gone[pf.FloatingIPID] = append(gone[pf.FloatingIPID], pf.ID)
		}
	}
	for fipID, pfs := range gone {
		f, rev, ok := store.GetJSON[FloatingIP](s.cache, fipKey(fipID))
		all := len(s.cache.List(pPortFwd+fipID+"/")) == len(pfs)
		if all {
			// All of the floating IP's forwardings: in a constant number of
			// operations, however many there are.
			ops = append(ops, store.Op{Kind: store.OpDeletePrefix, Key: pPortFwd + fipID + "/"})
			if ok {
				ops = append(ops, s.pfIndexDeleteOps(f.RouterID, fipID, "")...)
			}
		} else {
			for _, id := range pfs {
				ops = append(ops, del(portFwdKey(fipID, id)))
				if ok {
					ops = append(ops, s.pfIndexDeleteOps(f.RouterID, fipID, id)...)
				}
			}
		}
		if ok && all && f.FixedPortID == "" {
			f.RouterID, f.Status = "", StatusDown
			s.stamp(&f.Meta, false)
			conds = append(conds, atRev(fipKey(f.ID), rev))
			ops = append(ops, store.PutJSON(fipKey(f.ID), f))
		}
	}
	return conds, ops
}
