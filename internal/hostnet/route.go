package hostnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// RouteProtocol is the routing protocol number nimbo's routes carry
// (`proto 78` in `ip route`), so ListRoutes finds exactly the routes nimbo
// made and garbage collection never touches routes of the kernel or of
// others.
const RouteProtocol = 78

// Route is an IPv4 or IPv6 unicast route.
type Route struct {
	Dst    netip.Prefix // destination; 0.0.0.0/0 or ::/0 for a default route
	Gw     netip.Addr   // next hop; zero for an on-link route (then Dev is required)
	Dev    string       // output interface; "" to let the kernel resolve it from Gw
	Src    netip.Addr   // preferred source address; zero for none
	Table  int          // routing table; 0 for main
	Metric int          // priority; 0 for the kernel's default
}

func (r Route) String() string {
	s := r.Dst.String()
	if r.Gw.IsValid() {
		s += " via " + r.Gw.String()
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	if r.Table != 0 {
		s += fmt.Sprintf(" table %d", r.Table)
	}
	return s
}

func (n *NS) toNetlinkRoute(r Route) (*netlink.Route, error) {
	if !r.Dst.IsValid() {
		return nil, errdefs.Invalidf("hostnet: route %v: destination required", r)
	}
	if r.Gw.IsValid() && r.Gw.Is4() != r.Dst.Addr().Is4() {
		return nil, errdefs.Invalidf("hostnet: route %v: gateway family differs from destination's", r)
	}
	if !r.Gw.IsValid() && r.Dev == "" {
		return nil, errdefs.Invalidf("hostnet: route %v: needs a gateway or a device", r)
	}
	nr := &netlink.Route{
		Dst:      ipNet(r.Dst.Masked()),
		Protocol: RouteProtocol,
		Table:    r.Table,
		Priority: r.Metric,
		Family:   unix.AF_INET,
	}
	if r.Dst.Addr().Is6() {
		nr.Family = unix.AF_INET6
	}
	if nr.Table == 0 {
		nr.Table = unix.RT_TABLE_MAIN
	}
	if r.Gw.IsValid() {
		nr.Gw = r.Gw.AsSlice()
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	if r.Dev != "" {
		l, err := n.link(r.Dev)
		if err != nil {
			return nil, err
		}
		if l == nil {
			return nil, errdefs.NotFoundf("hostnet: route %v: link %s not found", r, r.Dev)
		}
		nr.LinkIndex = l.Attrs().Index
	}
	return nr, nil
}

// EnsureRoute adds r, or replaces the route to the same destination (same
// table and metric) so it matches r.
func (n *NS) EnsureRoute(ctx context.Context, r Route) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	nr, err := n.toNetlinkRoute(r)
	if err != nil {
		return err
	}
	if err := n.nl.RouteReplace(nr); err != nil {
		return fmt.Errorf("hostnet: route %v: %w", r, err)
	}
	return nil
}

// DeleteRoute removes the route to r.Dst in r's table with r's metric (only
// one nimbo made). It is not an error if there is none.
func (n *NS) DeleteRoute(ctx context.Context, r Route) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !r.Dst.IsValid() {
		return errdefs.Invalidf("hostnet: route %v: destination required", r)
	}
	// Match on destination, table, metric and protocol only: the rest of a
	// route to delete need not be known.
	// Scope "nowhere" matches any scope (IPv4 would otherwise require the
	// route's own).
	nr := &netlink.Route{Dst: ipNet(r.Dst.Masked()), Protocol: RouteProtocol, Table: r.Table, Priority: r.Metric, Scope: netlink.SCOPE_NOWHERE}
	if nr.Table == 0 {
		nr.Table = unix.RT_TABLE_MAIN
	}
	if err := n.nl.RouteDel(nr); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("hostnet: delete route %v: %w", r, err)
	}
	return nil
}

// ListRoutes returns the routes nimbo made (RouteProtocol) in table (0 for
// main), IPv4 and IPv6, sorted by destination.
func (n *NS) ListRoutes(ctx context.Context, table int) ([]Route, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if table == 0 {
		table = unix.RT_TABLE_MAIN
	}
	filter := &netlink.Route{Table: table, Protocol: RouteProtocol}
	rs, err := dump(func() ([]netlink.Route, error) {
		return n.nl.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	})
	if err != nil {
		return nil, fmt.Errorf("hostnet: list routes: %w", err)
	}
	links, err := dump(n.nl.LinkList)
	if err != nil {
		return nil, fmt.Errorf("hostnet: list links: %w", err)
	}
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []Route
	for _, nr := range rs {
		r := Route{Dev: names[nr.LinkIndex], Metric: nr.Priority}
		if nr.Table != unix.RT_TABLE_MAIN {
			r.Table = nr.Table
		}
		if p, ok := prefixOf(nr.Dst); ok {
			r.Dst = p
		} else if nr.Family == unix.AF_INET6 {
			r.Dst = netip.MustParsePrefix("::/0")
		} else {
			r.Dst = netip.MustParsePrefix("0.0.0.0/0")
		}
		if a, ok := netip.AddrFromSlice(nr.Gw); ok {
			r.Gw = a.Unmap()
		}
		if a, ok := netip.AddrFromSlice(nr.Src); ok {
			r.Src = a.Unmap()
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Dst.Addr().Compare(out[j].Dst.Addr()); c != 0 {
			return c < 0
		}
		return out[i].Dst.Bits() < out[j].Dst.Bits()
	})
	return out, nil
}
