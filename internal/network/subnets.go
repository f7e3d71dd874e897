package network

import (
	"context"
	"net/netip"
	"slices"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// Limits of Neutron's defaults.
const (
	MaxDNSNameservers = 5
	MaxHostRoutes     = 20
)

// GetSubnet returns a subnet the caller can see.
func (s *Service) GetSubnet(c policy.Creds, id string) (Subnet, error) {
	sn, _, ok := store.GetJSON[Subnet](s.cache, subnetKey(id))
	if !ok || !s.canSeeSubnet(c, sn) {
		return Subnet{}, notFound("SubnetNotFound", "Subnet", id)
	}
	return sn, nil
}

func (s *Service) canSeeSubnet(c policy.Creds, sn Subnet) bool {
	n, _, ok := store.GetJSON[Network](s.cache, networkKey(sn.NetworkID))
	return ok && canSee(c, "network:get_subnet", sn.ProjectID, n.Shared || n.External)
}

// ListSubnets lists the subnets the caller can see.
func (s *Service) ListSubnets(c policy.Creds) []Subnet {
	var out []Subnet
	for _, sn := range store.ListJSON[Subnet](s.cache, pSubnets) {
		if s.canSeeSubnet(c, sn) {
			out = append(out, sn)
		}
	}
	return out
}

func parseAddr(field, v string) (netip.Addr, error) {
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() {
		return netip.Addr{}, errdefs.Invalidf("Invalid input for %s. Reason: '%s' is not a valid IPv4 address.", field, v)
	}
	return a, nil
}

// subnetParams validates the mutable parameters against the CIDR.
func subnetParams(sn *Subnet, r v2.SubnetRequest, create bool) error {
	if r.GatewayIP != nil {
		sn.Gateway = netip.Addr{}
		if r.GatewayIP.Valid {
			gw, err := parseAddr("gateway_ip", r.GatewayIP.Value)
			if err != nil {
				return err
			}
			sn.Gateway = gw
		}
	} else if create {
		if first, _, ok := hostRange(sn.CIDR); ok {
			sn.Gateway = first
		}
	}
	if sn.Gateway.IsValid() {
		first, last, ok := hostRange(sn.CIDR)
		if !sn.CIDR.Contains(sn.Gateway) || !ok || u32(sn.Gateway) < u32(first) || u32(sn.Gateway) > u32(last) {
			return errdefs.Invalidf("Invalid input for gateway_ip. Reason: gateway %s is not a valid host address of subnet %s.", sn.Gateway, sn.CIDR)
		}
	}
	if r.AllocationPools != nil {
		sn.Pools = nil
		for _, p := range *r.AllocationPools {
			start, err := parseAddr("allocation_pools", p.Start)
			if err != nil {
				return err
			}
			end, err := parseAddr("allocation_pools", p.End)
			if err != nil {
				return err
			}
			first, last, ok := hostRange(sn.CIDR)
			if !ok || u32(start) < u32(first) || u32(end) > u32(last) {
				return errdefs.Invalidf("The allocation pool %s-%s spans beyond the subnet cidr %s.", start, end, sn.CIDR)
			}
			if u32(start) > u32(end) {
				return errdefs.Invalidf("The allocation pool %s-%s is not valid: its start is after its end.", start, end)
			}
			for _, q := range sn.Pools {
				if q.Contains(start) || q.Contains(end) || (start.Compare(q.Start) < 0 && end.Compare(q.End) > 0) {
					return errdefs.Invalidf("Found overlapping allocation pools: %s-%s and %s-%s.", q.Start, q.End, start, end)
				}
			}
			sn.Pools = append(sn.Pools, Pool{Start: start, End: end})
		}
		slices.SortFunc(sn.Pools, func(a, b Pool) int { return a.Start.Compare(b.Start) })
	} else if create {
		sn.Pools = defaultPools(sn.CIDR, sn.Gateway)
	}
	for _, p := range sn.Pools {
		if sn.Gateway.IsValid() && p.Contains(sn.Gateway) {
			return errdefs.Typed("GatewayConflictWithAllocationPools", errdefs.Conflictf("Gateway ip %s conflicts with allocation pool %s-%s.", sn.Gateway, p.Start, p.End))
		}
	}
	if r.DNSNameservers != nil {
		if len(*r.DNSNameservers) > MaxDNSNameservers {
			return errdefs.Invalidf("Unable to complete operation for subnet. The number of DNS nameservers exceeds the limit %d.", MaxDNSNameservers)
		}
		sn.DNS = nil
		for _, d := range *r.DNSNameservers {
			a, err := parseAddr("dns_nameservers", d)
			if err != nil {
				return err
			}
			if slices.Contains(sn.DNS, a) {
				return errdefs.Invalidf("Invalid input for dns_nameservers. Reason: duplicate nameserver '%s'.", d)
			}
			sn.DNS = append(sn.DNS, a)
		}
	}
	if r.HostRoutes != nil {
		if len(*r.HostRoutes) > MaxHostRoutes {
			return errdefs.Invalidf("Unable to complete operation for subnet. The number of host routes exceeds the limit %d.", MaxHostRoutes)
		}
		sn.HostRoutes = nil
		for _, hr := range *r.HostRoutes {
			dst, err := netip.ParsePrefix(hr.Destination)
			if err != nil || !dst.Addr().Is4() || dst != dst.Masked() {
				return errdefs.Invalidf("Invalid input for host_routes. Reason: '%s' is not a valid IPv4 network destination.", hr.Destination)
			}
			hop, err := parseAddr("host_routes", hr.NextHop)
			if err != nil {
				return err
			}
			rt := Route{Destination: dst, NextHop: hop}
			if slices.Contains(sn.HostRoutes, rt) {
				return errdefs.Invalidf("Invalid input for host_routes. Reason: duplicate route to %s.", dst)
			}
			sn.HostRoutes = append(sn.HostRoutes, rt)
		}
	}
	if r.EnableDHCP != nil {
		sn.EnableDHCP = *r.EnableDHCP
	}
	if r.Name != nil {
		sn.Name = *r.Name
	}
	if r.Description != nil {
		sn.Description = *r.Description
	}
	return nil
}

// CreateSubnet creates an IPv4 subnet on a network.
func (s *Service) CreateSubnet(ctx context.Context, c policy.Creds, r v2.SubnetRequest) (Subnet, error) {
	if err := checkName("name", r.Name); err != nil {
		return Subnet{}, err
	}
	if err := checkDescription(r.Description); err != nil {
		return Subnet{}, err
	}
	if r.NetworkID == nil || *r.NetworkID == "" {
		return Subnet{}, errdefs.Invalidf("Failed to parse request. Required attribute 'network_id' not specified.")
	}
	n, err := s.GetNetwork(c, *r.NetworkID)
	if err != nil {
		return Subnet{}, err
	}
	if err := policy.Check("network:create_subnet", c, target(n.ProjectID, false)); err != nil {
		return Subnet{}, err
	}
	if r.IPVersion != nil && *r.IPVersion == 6 {
		return Subnet{}, errdefs.Invalidf("Invalid input for ip_version. Reason: IPv6 subnets are not supported yet; only ip_version 4 is.")
	}
	if r.IPVersion != nil && *r.IPVersion != 4 {
		return Subnet{}, errdefs.Invalidf("Invalid input for ip_version. Reason: %d is not in [4, 6].", *r.IPVersion)
	}
	if r.SubnetPoolID != nil || r.PrefixLen != nil {
		return Subnet{}, errdefs.Invalidf("Invalid input for subnetpool_id. Reason: subnet pools are not supported; give a 'cidr'.")
	}
	if r.IPv6RAMode != nil || r.IPv6AddressMode != nil {
		return Subnet{}, errdefs.Invalidf("Invalid input for ipv6_ra_mode. Reason: IPv6 subnets are not supported yet.")
	}
	if r.SegmentID != nil || (r.ServiceTypes != nil && len(*r.ServiceTypes) > 0) {
		return Subnet{}, errdefs.Invalidf("Invalid input: segments and service types are not supported.")
	}
	if r.CIDR == nil {
		return Subnet{}, errdefs.Invalidf("Failed to parse request. Required attribute 'cidr' not specified.")
	}
	cidr, err := netip.ParsePrefix(*r.CIDR)
	if err != nil {
		return Subnet{}, errdefs.Invalidf("Invalid input for cidr. Reason: '%s' is not a valid IP subnet.", *r.CIDR)
	}
	if !cidr.Addr().Is4() {
		return Subnet{}, errdefs.Invalidf("Invalid input for cidr. Reason: IPv6 subnets are not supported yet.")
	}
	if cidr != cidr.Masked() {
		return Subnet{}, errdefs.Invalidf("Invalid input for cidr. Reason: '%s' isn't a recognized IP subnet cidr, '%s' is recommended.", *r.CIDR, cidr.Masked())
	}
	project, err := owner(c, r.ProjectID, r.TenantID)
	if err != nil {
		return Subnet{}, err
	}
	sn := Subnet{Meta: Meta{ID: NewID(), ProjectID: project}, NetworkID: n.ID, CIDR: cidr, EnableDHCP: true}
	s.stamp(&sn.Meta, true)
	if err := subnetParams(&sn, r, true); err != nil {
		return Subnet{}, err
	}
	if err := s.checkQuota(project, "subnet", 1); err != nil {
		return Subnet{}, err
	}
	err = s.cache.Update(ctx, func() (store.Txn, error) {
		t := store.Txn{Conds: []store.Cond{present(networkKey(n.ID))},
			Ops: []store.Op{store.PutJSON(subnetKey(sn.ID), sn), idx(netSubnetKey(n.ID, sn.ID)), ownOp(project, "subnet", sn.ID)}}
		for _, other := range s.SubnetIDs(n.ID) {
			o, rev, ok := store.GetJSON[Subnet](s.cache, subnetKey(other))
			if !ok {
				continue
			}
			if o.CIDR.Overlaps(cidr) {
				return store.Txn{}, errdefs.Invalidf("Invalid input for operation: Requested subnet with cidr: %s for network: %s overlaps with another subnet.", cidr, n.ID)
			}
			t.Conds = append(t.Conds, atRev(subnetKey(other), rev))
		}
		// A subnet appearing meanwhile changes the network's subnet index.
		t.Conds = append(t.Conds, absent(netSubnetKey(n.ID, sn.ID)))
		return t, nil
	})
	if errdefs.IsConflict(err) && !s.networkExists(n.ID) {
		return Subnet{}, notFound("NetworkNotFound", "Network", n.ID)
	}
	return sn, err
}

func (s *Service) networkExists(id string) bool {
	_, ok := s.cache.Get(networkKey(id))
	return ok
}

// UpdateSubnet changes a subnet's mutable attributes.
func (s *Service) UpdateSubnet(ctx context.Context, c policy.Creds, id string, r v2.SubnetRequest) (Subnet, error) {
	if err := checkName("name", r.Name); err != nil {
		return Subnet{}, err
	}
	if err := checkDescription(r.Description); err != nil {
		return Subnet{}, err
	}
	for field, set := range map[string]bool{"cidr": r.CIDR != nil, "network_id": r.NetworkID != nil, "ip_version": r.IPVersion != nil,
		"project_id": r.ProjectID != nil || r.TenantID != nil, "subnetpool_id": r.SubnetPoolID != nil} {
		if set {
			return Subnet{}, errdefs.Invalidf("Cannot update read-only attribute %s.", field)
		}
	}
	var out Subnet
	err := s.cache.Update(ctx, func() (store.Txn, error) {
		sn, rev, ok := store.GetJSON[Subnet](s.cache, subnetKey(id))
		if !ok || !s.canSeeSubnet(c, sn) {
			return store.Txn{}, notFound("SubnetNotFound", "Subnet", id)
		}
		if err := policy.Check("network:update_subnet", c, target(sn.ProjectID, false)); err != nil {
			return store.Txn{}, err
		}
		oldGW := sn.Gateway
		if err := subnetParams(&sn, r, false); err != nil {
			return store.Txn{}, err
		}
		if sn.Gateway.IsValid() && sn.Gateway != oldGW && s.ipTaken(sn.ID, sn.Gateway) {
			return store.Txn{}, errdefs.Typed("IpAddressInUse", errdefs.Conflictf("Unable to complete operation for network %s. The IP address %s is in use.", sn.NetworkID, sn.Gateway))
		}
		s.stamp(&sn.Meta, false)
		out = sn
		return store.Txn{Conds: []store.Cond{atRev(subnetKey(id), rev)}, Ops: []store.Op{store.PutJSON(subnetKey(id), sn)}}, nil
	})
	return out, err
}

func subnetDeleteOps(sn Subnet) []store.Op {
	return []store.Op{del(subnetKey(sn.ID)), del(netSubnetKey(sn.NetworkID, sn.ID)), unownOp(sn.ProjectID, "subnet", sn.ID),
		{Kind: store.OpDeletePrefix, Key: pIPs + sn.ID + "/"}}
}

// DeleteSubnet deletes a subnet; addresses allocated to ports other than
// DHCP ports make it a 409 SubnetInUse, as in Neutron.
func (s *Service) DeleteSubnet(ctx context.Context, c policy.Creds, id string) error {
	return s.cache.Update(ctx, func() (store.Txn, error) {
		sn, rev, ok := store.GetJSON[Subnet](s.cache, subnetKey(id))
		if !ok || !s.canSeeSubnet(c, sn) {
			return store.Txn{}, notFound("SubnetNotFound", "Subnet", id)
		}
		if err := policy.Check("network:delete_subnet", c, target(sn.ProjectID, false)); err != nil {
			return store.Txn{}, err
		}
		t := store.Txn{Conds: []store.Cond{atRev(subnetKey(id), rev)}, Ops: subnetDeleteOps(sn)}
		for _, pid := range suffixes(s.cache, pNetPort+sn.NetworkID+"/") {
			p, prev, ok := store.GetJSON[Port](s.cache, portKey(pid))
			if !ok || !slices.ContainsFunc(p.FixedIPs, func(f FixedIP) bool { return f.SubnetID == id }) {
				continue
			}
			if p.DeviceOwner != OwnerDHCP {
				return store.Txn{}, errdefs.Typed("SubnetInUse", errdefs.Conflictf("Unable to complete operation on subnet %s: One or more ports have an IP allocation from this subnet.", id))
			}
			p.FixedIPs = slices.DeleteFunc(p.FixedIPs, func(f FixedIP) bool { return f.SubnetID == id })
			s.stamp(&p.Meta, false)
			t.Conds = append(t.Conds, atRev(portKey(pid), prev))
			t.Ops = append(t.Ops, store.PutJSON(portKey(pid), p))
		}
		return t, nil
	})
}
