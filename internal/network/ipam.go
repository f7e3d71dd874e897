package network

import (
	"encoding/binary"
	"net/netip"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// u32 and addr4 convert IPv4 addresses to and from integers.
func u32(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }
func addr4(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// hostRange is the first and last usable host address of an IPv4 prefix
// (network and broadcast addresses excluded; /31 and /32 have none).
func hostRange(p netip.Prefix) (first, last netip.Addr, ok bool) {
	bits := p.Bits()
	if bits > 30 {
		return netip.Addr{}, netip.Addr{}, false
	}
	base := u32(p.Addr())
	size := uint32(1) << (32 - bits)
	return addr4(base + 1), addr4(base + size - 2), true
}

// defaultPools are the subnet's hosts minus the gateway.
func defaultPools(cidr netip.Prefix, gw netip.Addr) []Pool {
	first, last, ok := hostRange(cidr)
	if !ok {
		return nil
	}
	if !gw.IsValid() || !cidr.Contains(gw) || u32(gw) < u32(first) || u32(gw) > u32(last) {
		return []Pool{{Start: first, End: last}}
	}
	var out []Pool
	if gw != first {
		out = append(out, Pool{Start: first, End: addr4(u32(gw) - 1)})
	}
	if gw != last {
		out = append(out, Pool{Start: addr4(u32(gw) + 1), End: last})
	}
	return out
}

// ipTaken reports whether an address of a subnet is allocated.
func (s *Service) ipTaken(subnetID string, ip netip.Addr) bool {
	_, ok := s.cache.Get(ipKey(subnetID, ip.String()))
	return ok
}

// allocate picks a free address from the subnet's pools, skipping taken ones
// (this request's other picks), starting where the last search stopped.
func (s *Service) allocate(sn Subnet, taken map[netip.Addr]bool) (netip.Addr, error) {
	var total uint64
	for _, p := range sn.Pools {
		total += uint64(u32(p.End)-u32(p.Start)) + 1
	}
	if total == 0 {
		return netip.Addr{}, noAddresses(sn.NetworkID)
	}
	// The search position moves under the lock, so concurrent requests of
	// this process start from different addresses instead of colliding.
	s.mu.Lock()
	defer s.mu.Unlock()
	start := uint64(s.hint[sn.ID]) % total
	for i := range total {
		off := (start + i) % total
		ip := nth(sn.Pools, off)
		if taken[ip] || s.ipTaken(sn.ID, ip) {
			continue
		}
		s.hint[sn.ID] = uint32((off + 1) % total)
		return ip, nil
	}
	return netip.Addr{}, noAddresses(sn.NetworkID)
}

// nth is the off-th address across the pools.
func nth(pools []Pool, off uint64) netip.Addr {
	for _, p := range pools {
		n := uint64(u32(p.End)-u32(p.Start)) + 1
		if off < n {
			return addr4(u32(p.Start) + uint32(off))
		}
		off -= n
	}
	return netip.Addr{}
}

func noAddresses(networkID string) error {
	return errdefs.Typed("IpAddressGenerationFailure", errdefs.Conflictf("No more IP addresses available on network %s.", networkID))
}
