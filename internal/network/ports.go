package network

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// MaxAddressPairs is Neutron's default limit of allowed address pairs.
const MaxAddressPairs = 10

// GetPort returns a port the caller can see.
func (s *Service) GetPort(c policy.Creds, id string) (Port, error) {
	p, _, ok := store.GetJSON[Port](s.cache, portKey(id))
	if !ok || !s.canSeePort(c, p) {
		return Port{}, notFound("PortNotFound", "Port", id)
	}
	return p, nil
}

// canSeePort: a port is visible to its project and to the owner of its network.
func (s *Service) canSeePort(c policy.Creds, p Port) bool {
	if canSee(c, "network:get_port", p.ProjectID, false) {
		return true
	}
	n, _, ok := store.GetJSON[Network](s.cache, networkKey(p.NetworkID))
	return ok && canSee(c, "network:get_port", n.ProjectID, false)
}

// ListPorts lists the ports the caller can see.
func (s *Service) ListPorts(c policy.Creds) []Port {
	var out []Port
	for _, p := range s.ports.List(pPorts) {
		if s.canSeePort(c, p) {
			out = append(out, p)
		}
	}
	return out
}

// ListPortsVersioned is ListPorts with each port's store revision (read-only
// values, see store.Memo): a port with the same ID and revision is the same,
// so callers may keep what they derive from it.
func (s *Service) ListPortsVersioned(c policy.Creds) []store.Versioned[Port] {
	var out []store.Versioned[Port]
	for _, v := range s.ports.ListVersioned(pPorts) {
		if s.canSeePort(c, v.Value) {
			out = append(out, v)
		}
	}
	return out
}

// ListNetworkPorts lists every port of a network (for the agent; no policy;
// read-only values, see store.Memo).
func (s *Service) ListNetworkPorts(networkID string) []Port {
	var out []Port
	for _, id := range suffixes(s.cache, pNetPort+networkID+"/") {
		if p, ok := s.ports.Get(portKey(id)); ok {
			out = append(out, p)
		}
	}
	return out
}

// newMAC returns a random MAC with OpenStack's fa:16:3e prefix.
func newMAC() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", b[0], b[1], b[2])
}

// normMAC validates and normalises a unicast MAC.
func normMAC(field, v string) (string, error) {
	hw, err := net.ParseMAC(v)
	if err != nil || len(hw) != 6 || hw[0]&1 == 1 || hw.String() == "00:00:00:00:00:00" {
		return "", errdefs.Invalidf("Invalid input for %s. Reason: '%s' is not a valid unicast MAC address.", field, v)
	}
	return hw.String(), nil
}

// portPolicy applies the field-level rules of a port create or update: the
// target of the network-owner rules is the network's project.
func portPolicy(c policy.Creds, n Network, r v2.PortRequest, update bool) error {
	verb := "create_port"
	if update {
		verb = "update_port"
	}
	nt := target(n.ProjectID, false)
	checks := []struct {
		set    bool
		action string
	}{
		{r.MACAddress != nil, "network:" + verb + ":mac_address"},
		{r.HostID != nil || r.Profile != nil || (r.VNICType != nil && *r.VNICType != "normal"), "network:" + verb + ":binding"},
		{!update && r.FixedIPs != nil && slices.ContainsFunc(*r.FixedIPs, func(f v2.FixedIP) bool { return f.IPAddress != "" }), "network:create_port:fixed_ips:ip_address"},
		{!update && r.PortSecurityEnabled != nil, "network:create_port:port_security_enabled"},
		{!update && r.AllowedAddressPairs != nil, "network:create_port:allowed_address_pairs"},
		{r.DeviceOwner != nil && strings.HasPrefix(*r.DeviceOwner, "network:"), "network:create_port:device_owner"},
	}
	for _, ch := range checks {
		if ch.set {
			if err := policy.Check(ch.action, c, nt); err != nil {
				return err
			}
		}
	}
	return nil
}

// portBuild carries the store operations of a port change.
type portBuild struct {
	conds []store.Cond
	ops   []store.Op
}

// assignIPs resolves requested fixed IPs (or the default: one address from
// the network's first subnet with room) into allocations.
func (s *Service) assignIPs(n Network, req *[]v2.FixedIP, keep []FixedIP, owner string) ([]FixedIP, error) {
	subnets := map[string]Subnet{}
	var order []Subnet
	for _, id := range s.SubnetIDs(n.ID) {
		if sn, _, ok := store.GetJSON[Subnet](s.cache, subnetKey(id)); ok {
			subnets[id] = sn
			order = append(order, sn)
		}
	}
	taken := map[netip.Addr]bool{}
	if req == nil {
		for _, sn := range order {
			ip, err := s.allocate(sn, taken)
			if err == nil {
				return []FixedIP{{SubnetID: sn.ID, IP: ip}}, nil
			}
		}
		if len(order) > 0 {
			return nil, noAddresses(n.ID)
		}
		return nil, nil
	}
	var out []FixedIP
	for _, f := range *req {
		var sn Subnet
		var ip netip.Addr
		if f.IPAddress != "" {
			a, err := parseAddr("fixed_ips", f.IPAddress)
			if err != nil {
				return nil, err
			}
			ip = a
		}
		switch {
		case f.SubnetID != "":
			var ok bool
			if sn, ok = subnets[f.SubnetID]; !ok {
				return nil, errdefs.Invalidf("Invalid input for operation: Failed to create port on network %s, because fixed_ips included invalid subnet %s.", n.ID, f.SubnetID)
			}
			if ip.IsValid() && !sn.CIDR.Contains(ip) {
				return nil, errdefs.Invalidf("Invalid input for operation: IP address %s is not a valid IP for the specified subnet.", ip)
			}
		case ip.IsValid():
			i := slices.IndexFunc(order, func(sn Subnet) bool { return sn.CIDR.Contains(ip) })
			if i < 0 {
				return nil, errdefs.Invalidf("Invalid input for operation: IP address %s is not a valid IP for any subnet on network %s.", ip, n.ID)
			}
			sn = order[i]
		default:
			return nil, errdefs.Invalidf("Invalid input for fixed_ips. Reason: each entry needs a 'subnet_id' or an 'ip_address'.")
		}
		if ip.IsValid() {
			if first, last, ok := hostRange(sn.CIDR); !ok || u32(ip) < u32(first) || u32(ip) > u32(last) {
				return nil, errdefs.Invalidf("Invalid input for operation: IP address %s is not a valid IP for the specified subnet.", ip)
			}
			mine := slices.Contains(keep, FixedIP{SubnetID: sn.ID, IP: ip})
			gwOK := owner == "network:router_interface" || owner == "network:router_gateway"
			if taken[ip] || (!mine && (s.ipTaken(sn.ID, ip) || (ip == sn.Gateway && !gwOK))) {
				return nil, errdefs.Typed("IpAddressAlreadyAllocated", errdefs.Conflictf("IP address %s already allocated in subnet %s", ip, sn.ID))
			}
		} else {
			var err error
			if ip, err = s.allocate(sn, taken); err != nil {
				return nil, err
			}
		}
		taken[ip] = true
		out = append(out, FixedIP{SubnetID: sn.ID, IP: ip})
	}
	return out, nil
}

// resolveGroups checks requested security groups exist and may be used by
// the port's project.
func (s *Service) resolveGroups(c policy.Creds, project string, ids []string) error {
	for _, id := range ids {
		g, _, ok := store.GetJSON[SecurityGroup](s.cache, groupKey(id))
		if !ok || (g.ProjectID != project && !c.IsAdmin()) || !canSee(c, "network:get_security_group", g.ProjectID, false) {
			return notFound("SecurityGroupNotFound", "Security group", id)
		}
	}
	return nil
}

func parsePairs(macDefault string, req []v2.AddressPair) ([]AddressPair, error) {
	if len(req) > MaxAddressPairs {
		return nil, errdefs.Invalidf("Invalid input for allowed_address_pairs. Reason: more than %d pairs.", MaxAddressPairs)
	}
	var out []AddressPair
	for _, p := range req {
		pfx, err := netip.ParsePrefix(p.IPAddress)
		if err != nil {
			a, err2 := netip.ParseAddr(p.IPAddress)
			if err2 != nil || !a.Is4() {
				return nil, errdefs.Invalidf("Invalid input for allowed_address_pairs. Reason: '%s' is not a valid IPv4 address or CIDR.", p.IPAddress)
			}
			pfx = netip.PrefixFrom(a, 32)
		}
		if !pfx.Addr().Is4() {
			return nil, errdefs.Invalidf("Invalid input for allowed_address_pairs. Reason: IPv6 is not supported yet.")
		}
		mac := ""
		if p.MACAddress != "" {
			m, err := normMAC("allowed_address_pairs", p.MACAddress)
			if err != nil {
				return nil, err
			}
			if m != macDefault {
				mac = m
			}
		}
		ap := AddressPair{IP: pfx.Masked(), MAC: mac}
		if slices.Contains(out, ap) {
			return nil, errdefs.Invalidf("Invalid input for allowed_address_pairs. Reason: duplicate address pair %s.", p.IPAddress)
		}
		out = append(out, ap)
	}
	return out, nil
}

// CreatePort creates a port on a network.
func (s *Service) CreatePort(ctx context.Context, c policy.Creds, r v2.PortRequest) (Port, error) {
	if err := checkName("name", r.Name); err != nil {
		return Port{}, err
	}
	if err := checkDescription(r.Description); err != nil {
		return Port{}, err
	}
	if r.NetworkID == nil || *r.NetworkID == "" {
		return Port{}, errdefs.Invalidf("Failed to parse request. Required attribute 'network_id' not specified.")
	}
	n, err := s.GetNetwork(c, *r.NetworkID)
	if err != nil {
		return Port{}, err
	}
	if err := policy.Check("network:create_port", c, target(n.ProjectID, n.Shared)); err != nil {
		return Port{}, err
	}
	if err := portPolicy(c, n, r, false); err != nil {
		return Port{}, err
	}
	project, err := owner(c, r.ProjectID, r.TenantID)
	if err != nil {
		return Port{}, err
	}
	p := Port{Meta: Meta{ID: NewID(), ProjectID: project}, NetworkID: n.ID, AdminStateUp: true, Status: StatusDown,
		PortSecurityEnabled: n.PortSecurityEnabled, VNICType: "normal"}
	s.stamp(&p.Meta, true)
	applyPort(&p, r)
	if r.PortSecurityEnabled != nil {
		p.PortSecurityEnabled = *r.PortSecurityEnabled
	}
	if r.MACAddress != nil {
		if p.MAC, err = normMAC("mac_address", *r.MACAddress); err != nil {
			return Port{}, err
		}
	}
	if err := s.checkQuota(project, "port", 1); err != nil {
		return Port{}, err
	}
	var out Port
	err = s.cache.Update(ctx, func() (store.Txn, error) {
		q := p
		b := portBuild{}
		if err := s.checkRouterDevice(c, q, &b); err != nil {
			return store.Txn{}, err
		}
		if err := s.buildPort(n, &q, r.FixedIPs, r.MACAddress != nil, &b); err != nil {
			return store.Txn{}, err
		}
		if err := s.portGroups(ctx, c, &q, r.SecurityGroups, r.SecurityGroups != nil, &b); err != nil {
			return store.Txn{}, err
		}
		if r.AllowedAddressPairs != nil {
			var err error
			if q.AddressPairs, err = parsePairs(q.MAC, *r.AllowedAddressPairs); err != nil {
				return store.Txn{}, err
			}
		}
		if err := checkPortSecurity(q); err != nil {
			return store.Txn{}, err
		}
		b.ops = append(b.ops, store.PutJSON(portKey(q.ID), q), ownOp(project, "port", q.ID))
		out = q
		return store.Txn{Conds: b.conds, Ops: b.ops}, nil
	})
	if errdefs.IsConflict(err) && errdefs.TypeOf(err) == "" && !s.networkExists(n.ID) {
		return Port{}, notFound("NetworkNotFound", "Network", n.ID)
	}
	return out, err
}

// buildPort completes a new port (a MAC unless one was given, addresses
// from req or the default) and adds the index entries and preconditions
// that make its MAC and addresses unique. The caller adds the port itself.
func (s *Service) buildPort(n Network, q *Port, req *[]v2.FixedIP, macGiven bool, b *portBuild) error {
	if !macGiven {
		for q.MAC = newMAC(); s.macTaken(n.ID, q.MAC); q.MAC = newMAC() {
		}
	} else if s.macTaken(n.ID, q.MAC) {
		return errdefs.Typed("MacAddressInUse", errdefs.Conflictf("Unable to complete operation for network %s. The mac address %s is in use.", n.ID, q.MAC))
	}
	ips, err := s.assignIPs(n, req, nil, q.DeviceOwner)
	if err != nil {
		return err
	}
	q.FixedIPs = ips
	b.conds = append(b.conds, present(networkKey(n.ID)), absent(macKey(n.ID, q.MAC)))
	b.ops = append(b.ops, idx(netPortKey(n.ID, q.ID)), store.Op{Kind: store.OpPut, Key: macKey(n.ID, q.MAC), Value: []byte(q.ID)})
	for _, f := range q.FixedIPs {
		k := ipKey(f.SubnetID, f.IP.String())
		b.conds = append(b.conds, absent(k), present(subnetKey(f.SubnetID)))
		b.ops = append(b.ops, store.Op{Kind: store.OpPut, Key: k, Value: []byte(q.ID)})
	}
	return nil
}

func (s *Service) macTaken(networkID, mac string) bool {
	_, ok := s.cache.Get(macKey(networkID, mac))
	return ok
}

// portGroups sets the port's security groups: the requested ones, or the
// project's default group (made on first use) when none were asked for and
// port security is on.
func (s *Service) portGroups(ctx context.Context, c policy.Creds, p *Port, req *[]string, asked bool, b *portBuild) error {
	if asked {
		ids := slices.Compact(slices.Sorted(slices.Values(*req)))
		if err := s.resolveGroups(c, p.ProjectID, ids); err != nil {
			return err
		}
		for _, id := range ids {
			b.conds = append(b.conds, present(groupKey(id)))
		}
		p.SecurityGroups = ids
		return nil
	}
	if !p.PortSecurityEnabled {
		p.SecurityGroups = nil
		return nil
	}
	id, conds, ops := s.defaultGroupOps(p.ProjectID)
	b.conds = append(b.conds, conds...)
	b.ops = append(b.ops, ops...)
	p.SecurityGroups = []string{id}
	return nil
}

// checkPortSecurity: security groups and address pairs need port security.
func checkPortSecurity(p Port) error {
	if p.PortSecurityEnabled {
		return nil
	}
	if len(p.SecurityGroups) > 0 {
		return errdefs.Typed("PortSecurityAndIPRequiredForSecurityGroups", errdefs.Invalidf("Port security must be enabled and port must have an IP address in order to use security groups."))
	}
	if len(p.AddressPairs) > 0 {
		return errdefs.Typed("AddressPairAndPortSecurityRequired", errdefs.Conflictf("Port Security must be enabled in order to have allowed address pairs on a port."))
	}
	return nil
}

func applyPort(p *Port, r v2.PortRequest) {
	if r.Name != nil {
		p.Name = *r.Name
	}
	if r.Description != nil {
		p.Description = *r.Description
	}
	if r.AdminStateUp != nil {
		p.AdminStateUp = *r.AdminStateUp
	}
	if r.DeviceID != nil {
		p.DeviceID = *r.DeviceID
	}
	if r.DeviceOwner != nil {
		p.DeviceOwner = *r.DeviceOwner
	}
	if r.HostID != nil {
		p.HostID = *r.HostID
	}
	if r.VNICType != nil {
		p.VNICType = *r.VNICType
	}
	if r.Profile != nil {
		p.Profile = *r.Profile
	}
}

// UpdatePort changes a port: its addresses are re-allocated (kept ones stay,
// dropped ones are freed), groups and address pairs replaced.
func (s *Service) UpdatePort(ctx context.Context, c policy.Creds, id string, r v2.PortRequest) (Port, error) {
	if err := checkName("name", r.Name); err != nil {
		return Port{}, err
	}
	if err := checkDescription(r.Description); err != nil {
		return Port{}, err
	}
	if r.NetworkID != nil || r.ProjectID != nil || r.TenantID != nil {
		return Port{}, errdefs.Invalidf("Cannot update read-only attribute network_id or project_id.")
	}
	if r.VNICType != nil && *r.VNICType != "normal" {
		return Port{}, errdefs.Invalidf("Invalid input for binding:vnic_type. Reason: only 'normal' is supported.")
	}
	var out Port
	err := s.cache.Update(ctx, func() (store.Txn, error) {
		p, rev, ok := store.GetJSON[Port](s.cache, portKey(id))
		if !ok || !s.canSeePort(c, p) {
			return store.Txn{}, notFound("PortNotFound", "Port", id)
		}
		if err := policy.Check("network:update_port", c, target(p.ProjectID, false)); err != nil {
			if n, _, ok := store.GetJSON[Network](s.cache, networkKey(p.NetworkID)); !ok || policy.Check("network:update_port", c, target(n.ProjectID, false)) != nil {
				return store.Txn{}, err
			}
		}
		n, _, ok := store.GetJSON[Network](s.cache, networkKey(p.NetworkID))
		if !ok {
			return store.Txn{}, notFound("NetworkNotFound", "Network", p.NetworkID)
		}
		if err := portPolicy(c, n, r, true); err != nil {
			return store.Txn{}, err
		}
		b := portBuild{conds: []store.Cond{atRev(portKey(id), rev)}}
		q := p
		applyPort(&q, r)
		if q.DeviceOwner != p.DeviceOwner || q.DeviceID != p.DeviceID {
			if l3Owned(p.DeviceOwner) && !c.IsAdmin() {
				return store.Txn{}, errdefs.Typed("L3PortInUse", errdefs.Conflictf(
					"Port %s has owner %s: its device_owner and device_id are set through the router and floating IP APIs, not the port API.", id, p.DeviceOwner))
			}
			if err := s.checkRouterDevice(c, q, &b); err != nil {
				return store.Txn{}, err
			}
		}
		if r.MACAddress != nil {
			mac, err := normMAC("mac_address", *r.MACAddress)
			if err != nil {
				return store.Txn{}, err
			}
			if mac != p.MAC {
				if p.Status == StatusActive {
					return store.Txn{}, errdefs.Typed("PortBound", errdefs.Conflictf("Unable to complete operation on port %s: the MAC of a bound port cannot change.", id))
				}
				if s.macTaken(n.ID, mac) {
					return store.Txn{}, errdefs.Typed("MacAddressInUse", errdefs.Conflictf("Unable to complete operation for network %s. The mac address %s is in use.", n.ID, mac))
				}
				q.MAC = mac
				b.conds = append(b.conds, absent(macKey(n.ID, mac)))
				b.ops = append(b.ops, del(macKey(n.ID, p.MAC)), store.Op{Kind: store.OpPut, Key: macKey(n.ID, mac), Value: []byte(id)})
			}
		}
		if r.FixedIPs != nil {
			ips, err := s.assignIPs(n, r.FixedIPs, p.FixedIPs, q.DeviceOwner)
			if err != nil {
				return store.Txn{}, err
			}
			for _, f := range p.FixedIPs {
				if !slices.Contains(ips, f) {
					b.ops = append(b.ops, del(ipKey(f.SubnetID, f.IP.String())))
				}
			}
			for _, f := range ips {
				if !slices.Contains(p.FixedIPs, f) {
					k := ipKey(f.SubnetID, f.IP.String())
					b.conds = append(b.conds, absent(k), present(subnetKey(f.SubnetID)))
					b.ops = append(b.ops, store.Op{Kind: store.OpPut, Key: k, Value: []byte(id)})
				}
			}
			if p.DeviceOwner == OwnerRouterInterface && len(p.FixedIPs) > 0 &&
				(len(ips) != 1 || ips[0].SubnetID != p.FixedIPs[0].SubnetID) {
				return store.Txn{}, errdefs.Invalidf("Invalid input for fixed_ips. Reason: router interface port %s must keep exactly one fixed IP, on subnet %s (remove the interface and add another to route a different subnet).", id, p.FixedIPs[0].SubnetID)
			}
			q.FixedIPs = ips
			conds, ops, err := s.fixedIPsChangeOps(p, ips)
			if err != nil {
				return store.Txn{}, err
			}
			b.conds, b.ops = append(b.conds, conds...), append(b.ops, ops...)
		}
		if r.PortSecurityEnabled != nil {
			q.PortSecurityEnabled = *r.PortSecurityEnabled
		}
		if r.SecurityGroups != nil {
			if err := s.portGroups(ctx, c, &q, r.SecurityGroups, true, &b); err != nil {
				return store.Txn{}, err
			}
		}
		if r.AllowedAddressPairs != nil {
			pairs, err := parsePairs(q.MAC, *r.AllowedAddressPairs)
			if err != nil {
				return store.Txn{}, err
			}
			q.AddressPairs = pairs
		}
		if err := checkPortSecurity(q); err != nil {
			return store.Txn{}, err
		}
		s.stamp(&q.Meta, false)
		out = q
		b.ops = append(b.ops, store.PutJSON(portKey(id), q))
		return store.Txn{Conds: b.conds, Ops: b.ops}, nil
	})
	return out, err
}

// l3Owned reports whether ports of this device_owner belong to a router
// or a floating IP (made and removed by the L3 APIs).
func l3Owned(owner string) bool {
	switch owner {
	case OwnerRouterInterface, OwnerRouterGateway, OwnerFloatingIP:
		return true
	}
	return false
}

// checkRouterDevice enforces Neutron's rule for ports a caller marks as a
// router's (device_owner network:router_interface or
// network:router_gateway): unless the caller is an admin, device_id must
// be empty or a router of the port's project, so nobody attaches a network
// of theirs to someone else's router. The router's revision joins the
// transaction's preconditions.
func (s *Service) checkRouterDevice(c policy.Creds, p Port, b *portBuild) error {
	if c.IsAdmin() || p.DeviceID == "" || (p.DeviceOwner != OwnerRouterInterface && p.DeviceOwner != OwnerRouterGateway) {
		return nil
	}
	r, rev, ok := store.GetJSON[Router](s.cache, routerKey(p.DeviceID))
	if !ok || r.ProjectID != p.ProjectID {
		return errdefs.Typed("DeviceIDNotOwnedByTenant", errdefs.Conflictf(
			"The following device_id %s is not owned by your tenant or matches another tenants router.", p.DeviceID))
	}
	b.conds = append(b.conds, atRev(routerKey(r.ID), rev))
	return nil
}

// fixedIPsChangeOps checks a change of p's fixed IPs to ips against the
// floating IPs and port forwardings that use them, as Neutron does: the
// address a floating IP is associated with cannot go (400), and the port
// forwardings to an address that goes are deleted with the change.
func (s *Service) fixedIPsChangeOps(p Port, ips []FixedIP) ([]store.Cond, []store.Op, error) {
	kept := func(a netip.Addr) bool { return slices.ContainsFunc(ips, func(f FixedIP) bool { return f.IP == a }) }
	var conds []store.Cond
	for _, kv := range s.cache.List(pFIPFixed + p.ID + "/") {
		f, rev, ok := store.GetJSON[FloatingIP](s.cache, fipKey(string(kv.Value)))
		if !ok {
			continue
		}
		if !kept(f.FixedIP) {
			return nil, nil, errdefs.Invalidf("Cannot update the fixed_ips of the port %s, because its original fixed_ip has been associated to a floating ip", p.ID)
		}
		conds = append(conds, atRev(fipKey(f.ID), rev))
	}
	c2, ops := s.forwardingDeleteOps(p.ID, func(pf PortForwarding) bool { return !kept(pf.InternalIP) })
	return append(conds, c2...), ops, nil
}

func portDeleteOps(p Port) []store.Op {
	ops := []store.Op{del(portKey(p.ID)), del(netPortKey(p.NetworkID, p.ID)), unownOp(p.ProjectID, "port", p.ID),
		del(macKey(p.NetworkID, p.MAC))}
	for _, f := range p.FixedIPs {
		ops = append(ops, del(ipKey(f.SubnetID, f.IP.String())))
	}
	return ops
}

// DeletePort deletes a port and frees its addresses and MAC.
func (s *Service) DeletePort(ctx context.Context, c policy.Creds, id string) error {
	return s.cache.Update(ctx, func() (store.Txn, error) {
		p, rev, ok := store.GetJSON[Port](s.cache, portKey(id))
		if !ok || !s.canSeePort(c, p) {
			return store.Txn{}, notFound("PortNotFound", "Port", id)
		}
		if err := policy.Check("network:delete_port", c, target(p.ProjectID, false)); err != nil {
			if n, _, ok := store.GetJSON[Network](s.cache, networkKey(p.NetworkID)); !ok || policy.Check("network:delete_port", c, target(n.ProjectID, false)) != nil {
				return store.Txn{}, err
			}
		}
		switch p.DeviceOwner {
		case OwnerRouterInterface, OwnerRouterGateway, OwnerFloatingIP:
			return store.Txn{}, errdefs.Typed("L3PortInUse", errdefs.Conflictf("Port %s has owner %s and therefore cannot be deleted directly via the port API.", id, p.DeviceOwner))
		}
		conds, ops := s.portFIPOps(p)
		return store.Txn{Conds: append(conds, atRev(portKey(id), rev)), Ops: append(portDeleteOps(p), ops...)}, nil
	})
}

// SetPortStatus records what the agent did with a port (no policy: the agent
// is part of nimbo). It is a no-op when nothing changes.
func (s *Service) SetPortStatus(ctx context.Context, id, status, vifType string, details map[string]any) error {
	return s.cache.Update(ctx, func() (store.Txn, error) {
		p, rev, ok := store.GetJSON[Port](s.cache, portKey(id))
		if !ok {
			return store.Txn{}, notFound("PortNotFound", "Port", id)
		}
		if p.Status == status && p.VIFType == vifType {
			return store.Txn{}, nil
		}
		p.Status, p.VIFType, p.VIFDetails = status, vifType, details
		s.stamp(&p.Meta, false)
		return store.Txn{Conds: []store.Cond{atRev(portKey(id), rev)}, Ops: []store.Op{store.PutJSON(portKey(id), p)}}, nil
	})
}
