package hostnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// This file holds what the underlays need to look at and adjust a host's
// own networking (its default route, the addresses and bridge ports of
// interfaces nimbo did not create) without ever replacing it wholesale.

// DefaultRoute returns the main table's unicast default route (IPv4, or
// IPv6 if v6) with the lowest metric, whoever made it (unlike ListRoutes,
// which sees only nimbo's), with Dev filled in. For a multipath route, the
// first next hop's device and gateway are returned. ok is false when there
// is none.
func (n *NS) DefaultRoute(ctx context.Context, v6 bool) (r Route, ok bool, err error) {
	if err := ctx.Err(); err != nil {
		return Route{}, false, err
	}
	family := netlink.FAMILY_V4
	if v6 {
		family = netlink.FAMILY_V6
	}
	filter := &netlink.Route{Table: unix.RT_TABLE_MAIN}
	rs, err := dump(func() ([]netlink.Route, error) {
		return n.nl.RouteListFiltered(family, filter, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return Route{}, false, fmt.Errorf("hostnet: list routes: %w", err)
	}
	var best *netlink.Route
	for i := range rs {
		nr := &rs[i]
		if nr.Type != unix.RTN_UNICAST {
			continue // unreachable, blackhole, prohibit: no way out
		}
		if p, ok := prefixOf(nr.Dst); ok && p.Bits() != 0 {
			continue
		}
		if best == nil || nr.Priority < best.Priority {
			best = nr
		}
	}
	if best == nil {
		return Route{}, false, nil
	}
	dst := "0.0.0.0/0"
	if v6 {
		dst = "::/0"
	}
	r = Route{Dst: netip.MustParsePrefix(dst), Metric: best.Priority}
	index, gw := best.LinkIndex, best.Gw
	if index == 0 && len(best.MultiPath) > 0 {
		index, gw = best.MultiPath[0].LinkIndex, best.MultiPath[0].Gw
	}
	if a, ok := netip.AddrFromSlice(gw); ok {
		r.Gw = a.Unmap()
	}
	if a, ok := netip.AddrFromSlice(best.Src); ok {
		r.Src = a.Unmap()
	}
	if index != 0 {
		l, err := n.nl.LinkByIndex(index)
		if err != nil {
			return Route{}, false, fmt.Errorf("hostnet: link %d of the default route: %w", index, err)
		}
		r.Dev = l.Attrs().Name
	}
	return r, true, nil
}

// RouteGet asks the kernel which route a packet from this namespace to dst
// would take, like `ip route get`: the output device, the gateway (zero when
// dst is on-link) and the source address the kernel would pick. Nothing is
// sent.
func (n *NS) RouteGet(ctx context.Context, dst netip.Addr) (Route, error) {
	if err := ctx.Err(); err != nil {
		return Route{}, err
	}
	if !dst.IsValid() {
		return Route{}, errdefs.Invalidf("hostnet: route get: invalid destination")
	}
	rs, err := n.nl.RouteGet(net.IP(dst.AsSlice()))
	if err != nil {
		return Route{}, fmt.Errorf("hostnet: route get %s: %w", dst, err)
	}
	if len(rs) == 0 {
		return Route{}, fmt.Errorf("hostnet: route get %s: no answer", dst)
	}
	nr := rs[0]
	r := Route{Dst: netip.PrefixFrom(dst, dst.BitLen())}
	if a, ok := netip.AddrFromSlice(nr.Gw); ok {
		r.Gw = a.Unmap()
	}
	if a, ok := netip.AddrFromSlice(nr.Src); ok {
		r.Src = a.Unmap()
	}
	if nr.LinkIndex != 0 {
		l, err := n.nl.LinkByIndex(nr.LinkIndex)
		if err != nil {
			return Route{}, fmt.Errorf("hostnet: link %d of the route to %s: %w", nr.LinkIndex, dst, err)
		}
		r.Dev = l.Attrs().Name
	}
	return r, nil
}

// AddAddr makes sure the named link has address p (an address with its
// prefix length, like 172.24.4.1/24), leaving its other addresses alone
// (unlike SetAddrs). The same address with another prefix length is
// replaced.
func (n *NS) AddAddr(ctx context.Context, name string, p netip.Prefix) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := validPrefixes([]netip.Prefix{p}); err != nil {
		return err
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits())
	l, err := n.link(name)
	if err != nil {
		return err
	}
	if l == nil {
		return errdefs.NotFoundf("hostnet: link %s not found", name)
	}
	have, err := dump(func() ([]netlink.Addr, error) { return n.nl.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("hostnet: list addresses of %s: %w", name, err)
	}
	for _, a := range have {
		q, ok := prefixOf(a.IPNet)
		if !ok || q.Addr() != p.Addr() {
			continue
		}
		if q == p {
			return nil
		}
		if err := n.nl.AddrDel(l, &a); err != nil {
			return fmt.Errorf("hostnet: remove %s from %s: %w", q, name, err)
		}
	}
	a := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := n.nl.AddrReplace(l, a); err != nil {
		return fmt.Errorf("hostnet: add %s to %s: %w", p, name, err)
	}
	return nil
}

// DelAddr removes address a, whatever its prefix length, from the named
// link. It is not an error if the link or the address is gone.
func (n *NS) DelAddr(ctx context.Context, name string, a netip.Addr) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l, err := n.link(name)
	if err != nil || l == nil {
		return err
	}
	have, err := dump(func() ([]netlink.Addr, error) { return n.nl.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("hostnet: list addresses of %s: %w", name, err)
	}
	for _, na := range have {
		q, ok := prefixOf(na.IPNet)
		if !ok || q.Addr() != a.Unmap() {
			continue
		}
		if err := n.nl.AddrDel(l, &na); err != nil && !isNotFound(err) && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("hostnet: remove %s from %s: %w", q, name, err)
		}
	}
	return nil
}

// AddrLink returns the name of the link that holds address a, or "" when
// no link in the namespace has it.
func (n *NS) AddrLink(ctx context.Context, a netip.Addr) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	family := netlink.FAMILY_V4
	if a.Is6() && !a.Is4In6() {
		family = netlink.FAMILY_V6
	}
	have, err := dump(func() ([]netlink.Addr, error) { return n.nl.AddrList(nil, family) })
	if err != nil {
		return "", fmt.Errorf("hostnet: list addresses: %w", err)
	}
	for _, na := range have {
		if q, ok := prefixOf(na.IPNet); ok && q.Addr() == a.Unmap() {
			l, err := n.nl.LinkByIndex(na.LinkIndex)
			if err != nil {
				return "", fmt.Errorf("hostnet: link %d holding %s: %w", na.LinkIndex, a, err)
			}
			return l.Attrs().Name, nil
		}
	}
	return "", nil
}

// LinkByName describes the named interface; an ErrNotFound error if there
// is none.
func (n *NS) LinkByName(ctx context.Context, name string) (Link, error) {
	if err := ctx.Err(); err != nil {
		return Link{}, err
	}
	l, err := n.link(name)
	if err != nil {
		return Link{}, err
	}
	if l == nil {
		return Link{}, errdefs.NotFoundf("hostnet: link %s not found", name)
	}
	a := l.Attrs()
	out := Link{Name: a.Name, Index: a.Index, Kind: l.Type(), MAC: a.HardwareAddr, MTU: a.MTU, Up: a.RawFlags&unix.IFF_UP != 0}
	if a.MasterIndex != 0 {
		m, err := n.nl.LinkByIndex(a.MasterIndex)
		if err != nil && !isNotFound(err) {
			return Link{}, fmt.Errorf("hostnet: master of %s: %w", name, err)
		}
		if m != nil {
			out.Master = m.Attrs().Name
		}
	}
	return out, nil
}

// Carrier reports whether the named link has carrier (IFF_LOWER_UP: a
// cable, or for a veth a peer that is up).
func (n *NS) Carrier(ctx context.Context, name string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	l, err := n.link(name)
	if err != nil {
		return false, err
	}
	if l == nil {
		return false, errdefs.NotFoundf("hostnet: link %s not found", name)
	}
	return l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0, nil
}

// SetMaster attaches the named existing interface (of any kind: a physical
// NIC, a VLAN, a bond) to bridge and brings it up; with bridge "" it detaches
// the interface from whatever master it has, leaving it otherwise as it is.
// Detaching an interface that is gone or has no master is not an error.
func (n *NS) SetMaster(ctx context.Context, name, bridge string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ValidIfName(name); err != nil {
		return err
	}
	l, err := n.link(name)
	if err != nil {
		return err
	}
	if bridge == "" {
		if l == nil || l.Attrs().MasterIndex == 0 {
			return nil
		}
		if err := n.nl.LinkSetNoMaster(l); err != nil && !isNotFound(err) {
			return fmt.Errorf("hostnet: detach %s from its master: %w", name, err)
		}
		return nil
	}
	if l == nil {
		return errdefs.NotFoundf("hostnet: link %s not found", name)
	}
	return n.setLinkAttrs(l, nil, 0, bridge, true)
}
