package network

import (
	"context"
	"slices"
	"strings"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// The agent reads the whole desired state without policy (it is part of
// nimbo) through these methods.

// AllNetworks lists every network.
func (s *Service) AllNetworks() []Network { return s.networks.List(pNetworks) }

// AllPorts lists every port (read-only values: see store.Memo).
func (s *Service) AllPorts() []Port { return s.ports.List(pPorts) }

// PortChanges follows which ports change, for an agent that works on the
// changed ports only (see store.Tracker); Changed turns its keys into port
// IDs.
type PortChanges struct{ t *store.Tracker }

// TrackPorts starts following port changes. The first Changed reports a
// reset: start from AllPorts.
func (s *Service) TrackPorts() *PortChanges { return &PortChanges{t: s.cache.Track(pPorts)} }

// Changed returns the IDs of the ports created, changed or deleted since the
// previous call (look each up with Port), or reset=true when the caller must
// start over from AllPorts.
func (c *PortChanges) Changed() (ids []string, reset bool) {
	keys, reset := c.t.Take()
	for _, k := range keys {
		ids = append(ids, strings.TrimPrefix(k, pPorts))
	}
	return ids, reset
}

// Port returns a port by ID without policy (a read-only value: see
// store.Memo).
func (s *Service) Port(id string) (Port, bool) { return s.ports.Get(portKey(id)) }

// DHCPPortCurrent says whether p, the DHCP port of a network, already has
// what EnsureDHCPPort would give it: one address on each DHCP-enabled
// subnet of subnets (the network's) and none elsewhere. An agent that knows
// the port skips the read-modify-write when it does.
func DHCPPortCurrent(p Port, subnets []Subnet) bool {
	want := 0
	for _, sn := range subnets {
		if !sn.EnableDHCP {
			continue
		}
		want++
		if !slices.ContainsFunc(p.FixedIPs, func(f FixedIP) bool { return f.SubnetID == sn.ID }) {
			return false
		}
	}
	return len(p.FixedIPs) == want
}

// NetworkSubnets lists a network's subnets.
func (s *Service) NetworkSubnets(networkID string) []Subnet {
	var out []Subnet
	for _, id := range s.SubnetIDs(networkID) {
		if sn, _, ok := store.GetJSON[Subnet](s.cache, subnetKey(id)); ok {
			out = append(out, sn)
		}
	}
	return out
}

// Group returns a security group by ID.
func (s *Service) Group(id string) (SecurityGroup, bool) {
	g, _, ok := store.GetJSON[SecurityGroup](s.cache, groupKey(id))
	return g, ok
}

// DHCPDeviceID is the device_id of the DHCP port a host serves a network with.
func DHCPDeviceID(host string) string { return "dhcp-" + host }

// EnsureDHCPPort makes sure the network has the DHCP port of host, with one
// address on each DHCP-enabled subnet (kept across calls), and returns it.
// DHCP ports are not filtered: they answer DHCP, which ports may not.
func (s *Service) EnsureDHCPPort(ctx context.Context, networkID, host string) (Port, error) {
	var out Port
	err := s.cache.Update(ctx, func() (store.Txn, error) {
		n, _, ok := store.GetJSON[Network](s.cache, networkKey(networkID))
		if !ok {
			return store.Txn{}, notFound("NetworkNotFound", "Network", networkID)
		}
		var cur *Port
		var rev int64
		for _, p := range s.ListNetworkPorts(networkID) {
			if p.DeviceOwner == OwnerDHCP && p.DeviceID == DHCPDeviceID(host) {
				_, rev, _ = store.GetJSON[Port](s.cache, portKey(p.ID))
				cur = &p
				break
			}
		}
		p := Port{Meta: Meta{ID: NewID(), ProjectID: n.ProjectID}, NetworkID: n.ID, AdminStateUp: true, Status: StatusDown,
			DeviceOwner: OwnerDHCP, DeviceID: DHCPDeviceID(host), HostID: host, VNICType: "normal"}
		t := store.Txn{Conds: []store.Cond{present(networkKey(n.ID))}}
		if cur != nil {
			p = *cur
			p.FixedIPs = slices.Clone(p.FixedIPs) // cur is a shared, read-only copy
			t.Conds = append(t.Conds, atRev(portKey(p.ID), rev))
		} else {
			s.stamp(&p.Meta, true)
			for p.MAC = newMAC(); s.macTaken(n.ID, p.MAC); p.MAC = newMAC() {
			}
			t.Conds = append(t.Conds, absent(macKey(n.ID, p.MAC)))
			t.Ops = append(t.Ops, idx(netPortKey(n.ID, p.ID)), store.Op{Kind: store.OpPut, Key: macKey(n.ID, p.MAC), Value: []byte(p.ID)})
		}
		changed := cur == nil
		want := map[string]bool{}
		for _, sn := range s.NetworkSubnets(n.ID) {
			if !sn.EnableDHCP {
				continue
			}
			want[sn.ID] = true
			if slices.ContainsFunc(p.FixedIPs, func(f FixedIP) bool { return f.SubnetID == sn.ID }) {
				continue
			}
			ip, err := s.allocate(sn, nil)
			if err != nil {
				if errdefs.IsConflict(err) {
					continue // a full subnet gets no DHCP server address; retried on the next change
				}
				return store.Txn{}, err
			}
			k := ipKey(sn.ID, ip.String())
			t.Conds = append(t.Conds, absent(k), present(subnetKey(sn.ID)))
			t.Ops = append(t.Ops, store.Op{Kind: store.OpPut, Key: k, Value: []byte(p.ID)})
			p.FixedIPs = append(p.FixedIPs, FixedIP{SubnetID: sn.ID, IP: ip})
			changed = true
		}
		p.FixedIPs = slices.DeleteFunc(p.FixedIPs, func(f FixedIP) bool {
			if !want[f.SubnetID] {
				t.Ops = append(t.Ops, del(ipKey(f.SubnetID, f.IP.String())))
				changed = true
				return true
			}
			return false
		})
		out = p
		if !changed {
			return store.Txn{}, nil
		}
		if cur != nil {
			s.stamp(&p.Meta, false)
			out = p
		}
		t.Ops = append(t.Ops, store.PutJSON(portKey(p.ID), p))
		return t, nil
	})
	return out, err
}

// DeletePortByAgent deletes a port nimbo itself made (a DHCP port no longer
// needed), without policy.
func (s *Service) DeletePortByAgent(ctx context.Context, id string) error {
	return s.cache.Update(ctx, func() (store.Txn, error) {
		p, rev, ok := store.GetJSON[Port](s.cache, portKey(id))
		if !ok {
			return store.Txn{}, nil
		}
		return store.Txn{Conds: []store.Cond{atRev(portKey(id), rev)}, Ops: portDeleteOps(p)}, nil
	})
}
