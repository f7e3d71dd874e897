package network

import (
	"context"
	"net/netip"

	"github.com/nimbo-cloud/nimbo/internal/store"
)

// The agent's L3 side: status reports and lookups without policy.

// SetRouterStatus records the status the agent found a router in.
func (s *Service) SetRouterStatus(ctx context.Context, id, status string) error {
	return s.cache.Update(ctx, func() (store.Txn, error) {
		r, rev, ok := store.GetJSON[Router](s.cache, routerKey(id))
		if !ok {
			return store.Txn{}, notFound("RouterNotFound", "Router", id)
		}
		if r.Status == status {
			return store.Txn{}, nil
		}
		r.Status = status
		s.stamp(&r.Meta, false)
		return store.Txn{Conds: []store.Cond{atRev(routerKey(id), rev)}, Ops: []store.Op{store.PutJSON(routerKey(id), r)}}, nil
	})
}

// SetFloatingIPStatus records the status the agent found a floating IP in.
func (s *Service) SetFloatingIPStatus(ctx context.Context, id, status string) error {
	return s.cache.Update(ctx, func() (store.Txn, error) {
		f, rev, ok := store.GetJSON[FloatingIP](s.cache, fipKey(id))
		if !ok {
			return store.Txn{}, notFound("FloatingIPNotFound", "FloatingIP", id)
		}
		if f.Status == status {
			return store.Txn{}, nil
		}
		f.Status = status
		s.stamp(&f.Meta, false)
		return store.Txn{Conds: []store.Cond{atRev(fipKey(id), rev)}, Ops: []store.Op{store.PutJSON(fipKey(id), f)}}, nil
	})
}

// PortByIP returns the port holding a fixed address on a network (the
// metadata service identifies its callers this way), in O(subnets).
func (s *Service) PortByIP(networkID string, ip netip.Addr) (Port, bool) {
	for _, sid := range s.SubnetIDs(networkID) {
		kv, ok := s.cache.Get(ipKey(sid, ip.String()))
		if !ok {
			continue
		}
		if p, ok := s.Port(string(kv.Value)); ok && p.NetworkID == networkID {
			return p, true
		}
	}
	return Port{}, false
}

// Subnet returns a subnet by ID without policy.
func (s *Service) Subnet(id string) (Subnet, bool) {
	sn, _, ok := store.GetJSON[Subnet](s.cache, subnetKey(id))
	return sn, ok
}

// Network returns a network by ID without policy.
func (s *Service) Network(id string) (Network, bool) {
	n, _, ok := store.GetJSON[Network](s.cache, networkKey(id))
	return n, ok
}

// RouterOfSubnet returns the ID of the router with an interface on a
// subnet (at most one: see AddInterface).
func (s *Service) RouterOfSubnet(subnetID string) (string, bool) {
	kv, ok := s.cache.Get(routedKey(subnetID))
	return string(kv.Value), ok
}
