package routercheck

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/nft"
)

// System is the Host of the machine the command runs on: named namespaces
// under /run/netns, read through netlink, probed with raw ICMP and TCP
// sockets created inside them (which needs root). It changes nothing.
type System struct {
	// Self is the namespace whose default route is this host's uplink;
	// nil means the one the process runs in.
	Self *hostnet.NS
}

// OpenNamespace opens the named namespace.
func (s System) OpenNamespace(ctx context.Context, name string) (Namespace, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ns, err := hostnet.OpenNetns(name)
	if err != nil {
		return nil, err
	}
	return &systemNS{ns: ns}, nil
}

// DefaultRoute returns the IPv4 default route of s.Self.
func (s System) DefaultRoute(ctx context.Context) (hostnet.Route, bool, error) {
	self := s.Self
	if self == nil {
		var err error
		if self, err = hostnet.OpenSelf(); err != nil {
			return hostnet.Route{}, false, err
		}
		defer self.Close()
	}
	return self.DefaultRoute(ctx, false)
}

// systemNS is an open router namespace.
type systemNS struct{ ns *hostnet.NS }

func (n *systemNS) Close() error { return n.ns.Close() }

func (n *systemNS) Links(ctx context.Context, prefix string) ([]Link, error) {
	ls, err := n.ns.ListLinks(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]Link, 0, len(ls))
	for _, l := range ls {
		carrier, err := n.ns.Carrier(ctx, l.Name)
		if err != nil {
			return nil, err
		}
		addrs, err := n.ns.Addrs(ctx, l.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, Link{Name: l.Name, Up: l.Up, Carrier: carrier, Addrs: addrs})
	}
	return out, nil
}

func (n *systemNS) NAT(ctx context.Context) (nft.RouterNATState, error) {
	return nft.ReadRouterNAT(ctx, n.ns)
}

func (n *systemNS) DefaultRoute(ctx context.Context) (hostnet.Route, bool, error) {
	return n.ns.DefaultRoute(ctx, false)
}

func (n *systemNS) RouteGet(ctx context.Context, dst netip.Addr) (hostnet.Route, error) {
	return n.ns.RouteGet(ctx, dst)
}

// neighStates names the NUD_* states of the kernel's neighbour table.
var neighStates = []struct {
	bit  int
	name string
}{
	{netlink.NUD_PERMANENT, "PERMANENT"}, {netlink.NUD_NOARP, "NOARP"}, {netlink.NUD_REACHABLE, "REACHABLE"},
	{netlink.NUD_STALE, "STALE"}, {netlink.NUD_DELAY, "DELAY"}, {netlink.NUD_PROBE, "PROBE"},
	{netlink.NUD_INCOMPLETE, "INCOMPLETE"}, {netlink.NUD_FAILED, "FAILED"},
}

func (n *systemNS) Neighbor(ctx context.Context, dev string, ip netip.Addr) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(n.ns.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return "", fmt.Errorf("netlink handle in %s: %w", n.ns.Path(), err)
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		return "", fmt.Errorf("link %s: %w", dev, err)
	}
	ns, err := h.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		return "", fmt.Errorf("neighbours of %s: %w", dev, err)
	}
	for _, e := range ns {
		if a, ok := netip.AddrFromSlice(e.IP); ok && a.Unmap() == ip {
			for _, s := range neighStates {
				if e.State&s.bit != 0 {
					return s.name, nil
				}
			}
			return fmt.Sprintf("0x%x", e.State), nil
		}
	}
	return "", nil
}

func (n *systemNS) Ping(ctx context.Context, src, dst netip.Addr, timeout time.Duration) (Reply, error) {
	return ping(ctx, n.ns, src, dst, timeout)
}

func (n *systemNS) Dial(ctx context.Context, src, dst netip.Addr, port int, timeout time.Duration) (Reply, error) {
	return dial(ctx, n.ns, src, dst, port, timeout)
}
