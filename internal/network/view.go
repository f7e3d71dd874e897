package network

import (
	"context"
	"slices"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// The agent reads the whole desired state without policy (it is part of
// nimbo) through these methods.

// AllNetworks lists every network.
func (s *Service) AllNetworks() []Network { return store.ListJSON[Network](s.cache, pNetworks) }

// AllPorts lists every port (read-only values: see store.Memo).
func (s *Service) AllPorts() []Port { return s.ports.List(pPorts) }

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
