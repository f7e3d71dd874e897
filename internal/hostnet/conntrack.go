package hostnet

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ConnMatch selects IPv4 connection-tracking entries: those whose original
// destination is Dst (a floating IP or forwarded address, as clients
// reached it) or, with Reply, whose reply destination is Dst (connections
// that were source-NATed to Dst). Proto and Port (original destination
// port) narrow it when non-zero.
type ConnMatch struct {
	Dst   netip.Addr
	Reply bool
	Proto uint8
	Port  uint16
}

// ForgetConnections deletes the connection-tracking entries matching any of
// ms in the namespace, so that flows translated by NAT rules that are gone
// stop instead of living on in conntrack (Neutron does the same when a
// floating IP or forward goes). It returns how many entries it deleted.
func (n *NS) ForgetConnections(ctx context.Context, ms []ConnMatch) (uint, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var filters []netlink.CustomConntrackFilter
	for _, m := range ms {
		f := &netlink.ConntrackFilter{}
		tp := netlink.ConntrackFilterType(netlink.ConntrackOrigDstIP)
		if m.Reply {
			tp = netlink.ConntrackReplyDstIP
		}
		if err := f.AddIP(tp, net.IP(m.Dst.AsSlice())); err != nil {
			return 0, fmt.Errorf("hostnet: conntrack filter: %w", err)
		}
		if m.Proto != 0 {
			if err := f.AddProtocol(m.Proto); err != nil {
				return 0, fmt.Errorf("hostnet: conntrack filter: %w", err)
			}
			if m.Port != 0 {
				if err := f.AddPort(netlink.ConntrackOrigDstPort, m.Port); err != nil {
					return 0, fmt.Errorf("hostnet: conntrack filter: %w", err)
				}
			}
		}
		filters = append(filters, f)
	}
	h, err := netlink.NewHandleAt(n.handle, unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, fmt.Errorf("hostnet: conntrack handle in %s: %w", n.path, err)
	}
	defer h.Close()
	deleted, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...)
	if err != nil {
		return deleted, fmt.Errorf("hostnet: delete conntrack entries in %s: %w", n.path, err)
	}
	return deleted, nil
}
