package hostnet

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

func validPrefixes(ps []netip.Prefix) error {
	for _, p := range ps {
		if !p.IsValid() {
			return errdefs.Invalidf("invalid address %v", p)
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// SetAddrs makes the named link's addresses exactly addrs (each an address
// with its prefix length, like 10.0.0.2/24): missing ones are added, others
// removed. IPv6 link-local addresses are left alone. IPv6 addresses are added
// without duplicate address detection so they are usable at once.
func (n *NS) SetAddrs(ctx context.Context, name string, addrs []netip.Prefix) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := validPrefixes(addrs); err != nil {
		return err
	}
	l, err := n.link(name)
	if err != nil {
		return err
	}
	if l == nil {
		return errdefs.NotFoundf("hostnet: link %s not found", name)
	}
	return n.setAddrs(l, addrs)
}

func (n *NS) setAddrs(l netlink.Link, addrs []netip.Prefix) error {
	have, err := dump(func() ([]netlink.Addr, error) { return n.nl.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("hostnet: list addresses of %s: %w", l.Attrs().Name, err)
	}
	want := make(map[netip.Prefix]bool, len(addrs))
	for _, p := range addrs {
		want[netip.PrefixFrom(p.Addr().Unmap(), p.Bits())] = true
	}
	for _, a := range have {
		p, ok := prefixOf(a.IPNet)
		if !ok || p.Addr().IsLinkLocalUnicast() && p.Addr().Is6() {
			continue
		}
		if want[p] {
			delete(want, p)
			continue
		}
		if err := n.nl.AddrDel(l, &a); err != nil {
			return fmt.Errorf("hostnet: remove %s from %s: %w", p, l.Attrs().Name, err)
		}
	}
	for _, p := range addrs {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits())
		if !want[p] {
			continue
		}
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := n.nl.AddrReplace(l, a); err != nil {
			return fmt.Errorf("hostnet: add %s to %s: %w", p, l.Attrs().Name, err)
		}
		delete(want, p)
	}
	return nil
}

// Addrs returns the named link's addresses, IPv6 link-local ones excluded.
func (n *NS) Addrs(ctx context.Context, name string) ([]netip.Prefix, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l, err := n.link(name)
	if err != nil {
		return nil, err
	}
	if l == nil {
		return nil, errdefs.NotFoundf("hostnet: link %s not found", name)
	}
	have, err := dump(func() ([]netlink.Addr, error) { return n.nl.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("hostnet: list addresses of %s: %w", name, err)
	}
	var out []netip.Prefix
	for _, a := range have {
		if p, ok := prefixOf(a.IPNet); ok && !(p.Addr().Is6() && p.Addr().IsLinkLocalUnicast()) {
			out = append(out, p)
		}
	}
	return out, nil
}

// sysctlPath turns "net.ipv4.ip_forward" or "net/ipv4/ip_forward" into its
// /proc/sys path. Only per-namespace keys (under net/) are accepted: others
// would change the whole host.
func sysctlPath(key string) (string, error) {
	k := key
	if !strings.Contains(k, "/") {
		k = strings.ReplaceAll(k, ".", "/")
	}
	clean := filepath.Clean(k)
	if clean != k || !strings.HasPrefix(k, "net/") || strings.Contains(k, "..") {
		return "", errdefs.Invalidf("hostnet: sysctl %q: want a key under net/ (like net.ipv4.ip_forward)", key)
	}
	return filepath.Join("/proc/sys", k), nil
}

// SetSysctl sets the namespace's sysctl key (for example
// "net.ipv4.ip_forward", or "net/ipv4/conf/eth0.100/forwarding" for names
// with dots) to value, writing only if it differs. Only keys under net/ are
// accepted, since only those are per namespace.
func (n *NS) SetSysctl(ctx context.Context, key, value string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	path, err := sysctlPath(key)
	if err != nil {
		return err
	}
	// /proc/sys/net resolves to the namespace of the thread that opens it.
	err = n.Do(func() error {
		cur, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(cur)) == strings.TrimSpace(value) {
			return nil
		}
		return os.WriteFile(path, []byte(value), 0o644)
	})
	if err != nil {
		return fmt.Errorf("hostnet: set %s=%s in %s: %w", key, value, n.path, err)
	}
	return nil
}

// Sysctl returns the namespace's value of sysctl key (see SetSysctl), with
// surrounding white space trimmed.
func (n *NS) Sysctl(ctx context.Context, key string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	path, err := sysctlPath(key)
	if err != nil {
		return "", err
	}
	var v []byte
	err = n.Do(func() error {
		var err error
		v, err = os.ReadFile(path)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("hostnet: read %s in %s: %w", key, n.path, err)
	}
	return strings.TrimSpace(string(v)), nil
}
