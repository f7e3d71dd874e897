package nft

import (
	"net"
	"net/netip"
	"sort"
)

// ipRange is an inclusive range of addresses of one family.
type ipRange struct{ from, to netip.Addr }

func (r ipRange) String() string {
	if r.from == r.to {
		return r.from.String()
	}
	return r.from.String() + "-" + r.to.String()
}

// lastAddr returns the last address of prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// mergeRanges turns prefixes into the fewest non-overlapping, non-adjacent
// ranges, IPv4 ones first, each family sorted. Interval sets reject
// overlapping elements, so this is required, not an optimisation.
func mergeRanges(ps []netip.Prefix) []ipRange {
	rs := make([]ipRange, 0, len(ps))
	for _, p := range ps {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()
		rs = append(rs, ipRange{p.Addr(), lastAddr(p)})
	}
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].from.Is4() != rs[j].from.Is4() {
			return rs[i].from.Is4()
		}
		return rs[i].from.Less(rs[j].from)
	})
	var out []ipRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.from.Is4() == r.from.Is4() {
				next := last.to.Next()
				if !last.to.Less(r.from) || (next.IsValid() && next == r.from) {
					if last.to.Less(r.to) {
						last.to = r.to
					}
					continue
				}
			}
		}
		out = append(out, r)
	}
	return out
}

// linkLocal returns the IPv6 link-local address derived from mac (modified
// EUI-64), as a guest's kernel configures it by default.
func linkLocal(mac net.HardwareAddr) netip.Addr {
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	b[8] = mac[0] ^ 0x02
	b[9], b[10] = mac[1], mac[2]
	b[11], b[12] = 0xff, 0xfe
	b[13], b[14], b[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(b)
}
