package hostnet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// MaxIfNameLen is the longest interface name Linux accepts (IFNAMSIZ - 1).
const MaxIfNameLen = 15

// ifNameIDLen is how many hex characters of an ID IfName uses.
const ifNameIDLen = 11

// IfName returns the interface name nimbo uses for the object with the given
// ID: prefix followed by 11 lower-case hex characters. For a UUID (dashes or
// not, any case) these are its first 11 hex digits, as Neutron names its taps
// ("tap" + the port ID's first 11 characters); for any other ID they are the
// first 11 hex digits of the SHA-256 of the ID. prefix must be 1 to 4
// characters of [a-z0-9-] (so the name fits the 15-character limit); IfName
// panics otherwise, as prefixes are constants chosen by the programmer.
// Two IDs sharing their first 44 bits would collide; for random UUIDs that
// needs about 4 million objects on one host to become likely.
func IfName(prefix, id string) string {
	if len(prefix) < 1 || len(prefix) > MaxIfNameLen-ifNameIDLen {
		panic(fmt.Sprintf("hostnet.IfName: prefix %q must have 1 to %d characters", prefix, MaxIfNameLen-ifNameIDLen))
	}
	for _, c := range prefix {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			panic(fmt.Sprintf("hostnet.IfName: prefix %q must be made of [a-z0-9-]", prefix))
		}
	}
	h := strings.ToLower(strings.ReplaceAll(id, "-", ""))
	if len(h) < ifNameIDLen || !isHex(h) {
		sum := sha256.Sum256([]byte(id))
		h = hex.EncodeToString(sum[:])
	}
	return prefix + h[:ifNameIDLen]
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ValidIfName returns an ErrInvalid error unless name is a valid Linux
// interface name: 1 to 15 bytes, none of them '/', ':' or white space, and not
// "." or "..".
func ValidIfName(name string) error {
	if name == "" || len(name) > MaxIfNameLen || name == "." || name == ".." ||
		strings.ContainsAny(name, "/: \t\n\r\x00") {
		return errdefs.Invalidf("invalid interface name %q (1 to %d characters, no '/', ':' or spaces)", name, MaxIfNameLen)
	}
	return nil
}

func validMAC(mac net.HardwareAddr, what string) error {
	if len(mac) != 6 {
		return errdefs.Invalidf("%s: MAC address %q is not a 6-byte Ethernet address", what, mac)
	}
	if mac[0]&1 != 0 {
		return errdefs.Invalidf("%s: MAC address %s is a multicast address", what, mac)
	}
	return nil
}

func validMTU(mtu int, what string) error {
	if mtu != 0 && (mtu < 68 || mtu > 65535) {
		return errdefs.Invalidf("%s: MTU %d out of range (68-65535, or 0 for the default)", what, mtu)
	}
	return nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// link returns the named link, or (nil, nil) when there is none.
func (n *NS) link(name string) (netlink.Link, error) {
	l, err := n.nl.LinkByName(name)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hostnet: find link %s: %w", name, err)
	}
	return l, nil
}

// EnsureBridge makes sure a Linux bridge called name exists in the
// namespace, up, with the given MAC address and MTU (0 keeps the kernel's
// choice). The MAC must be given: a bridge without an explicit address takes
// the lowest MAC of its ports and changes it as ports come and go. An
// interface of another kind with that name is an ErrConflict.
func (n *NS) EnsureBridge(ctx context.Context, name string, mac net.HardwareAddr, mtu int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ValidIfName(name); err != nil {
		return err
	}
	if err := validMAC(mac, "bridge "+name); err != nil {
		return err
	}
	if err := validMTU(mtu, "bridge "+name); err != nil {
		return err
	}
	l, err := n.link(name)
	if err != nil {
		return err
	}
	if l == nil {
		la := netlink.NewLinkAttrs()
		la.Name = name
		la.MTU = mtu
		la.HardwareAddr = mac
		if err := n.nl.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("hostnet: create bridge %s: %w", name, err)
		}
		if l, err = n.nl.LinkByName(name); err != nil {
			return fmt.Errorf("hostnet: find bridge %s: %w", name, err)
		}
	}
	if l.Type() != "bridge" {
		return errdefs.Conflictf("hostnet: %s exists and is a %s, not a bridge", name, l.Type())
	}
	return n.setLinkAttrs(l, mac, mtu, "", true)
}

// setLinkAttrs brings l to the given MAC (nil: unchanged), MTU (0:
// unchanged), master (""; unchanged) and up state, changing only what
// differs.
func (n *NS) setLinkAttrs(l netlink.Link, mac net.HardwareAddr, mtu int, master string, up bool) error {
	a := l.Attrs()
	if mac != nil && !bytes.Equal(a.HardwareAddr, mac) {
		if err := n.nl.LinkSetHardwareAddr(l, mac); err != nil {
			return fmt.Errorf("hostnet: set MAC of %s to %s: %w", a.Name, mac, err)
		}
	}
	if mtu != 0 && a.MTU != mtu {
		if err := n.nl.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("hostnet: set MTU of %s to %d: %w", a.Name, mtu, err)
		}
	}
	if master != "" {
		br, err := n.nl.LinkByName(master)
		if isNotFound(err) {
			return errdefs.NotFoundf("hostnet: bridge %s for %s not found", master, a.Name)
		}
		if err != nil {
			return fmt.Errorf("hostnet: find bridge %s: %w", master, err)
		}
		if br.Type() != "bridge" {
			return errdefs.Conflictf("hostnet: master %s of %s is a %s, not a bridge", master, a.Name, br.Type())
		}
		if a.MasterIndex != br.Attrs().Index {
			if err := n.nl.LinkSetMasterByIndex(l, br.Attrs().Index); err != nil {
				return fmt.Errorf("hostnet: attach %s to %s: %w", a.Name, master, err)
			}
		}
	}
	if up && a.RawFlags&unix.IFF_UP == 0 {
		if err := n.nl.LinkSetUp(l); err != nil {
			return fmt.Errorf("hostnet: set %s up: %w", a.Name, err)
		}
	}
	return nil
}

// Veth describes a veth pair: one end (Name) stays in the namespace the
// method is called on, optionally attached to a bridge there; the other
// (Peer) lives in another namespace (or the same one).
type Veth struct {
	Name   string // the end in this namespace
	Bridge string // bridge to attach Name to; "" for none
	MTU    int    // of both ends; 0 keeps the kernel's default
	// Hairpin turns on hairpin mode on Name's bridge port, so the bridge
	// may send a frame back out of the port it came in by: a router's
	// gateway leg needs it when the host translates a packet of the router
	// into one for the router itself (br_netfilter then bridges it back).
	// False leaves the port's mode as it is.
	Hairpin bool
	Peer    VethPeer
}

// VethPeer is the far end of a Veth.
type VethPeer struct {
	NS    *NS              // its namespace; nil for the same one
	Name  string           // its name there
	MAC   net.HardwareAddr // its address; nil keeps the kernel's random one
	Addrs []netip.Prefix   // exactly the addresses it has (IPv6 link-local ones aside)
}

// EnsureVeth makes sure the veth pair v exists and is configured: both ends
// up, the near end attached to v.Bridge, the peer with its MAC, MTU and
// exactly its addresses. A pair is adopted only if both ends exist and are
// each other's peers; otherwise whatever halves exist under those names are
// removed and the pair is created anew, with the peer created directly in
// its namespace (so its name never has to be free here). An interface of
// another kind under either name is an ErrConflict.
func (n *NS) EnsureVeth(ctx context.Context, v Veth) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ValidIfName(v.Name); err != nil {
		return err
	}
	if err := ValidIfName(v.Peer.Name); err != nil {
		return err
	}
	if v.Peer.MAC != nil {
		if err := validMAC(v.Peer.MAC, "veth "+v.Peer.Name); err != nil {
			return err
		}
	}
	if err := validMTU(v.MTU, "veth "+v.Name); err != nil {
		return err
	}
	if err := validPrefixes(v.Peer.Addrs); err != nil {
		return err
	}
	pns := v.Peer.NS
	if pns == nil {
		pns = n
	}
	host, err := n.link(v.Name)
	if err != nil {
		return err
	}
	peer, err := pns.link(v.Peer.Name)
	if err != nil {
		return err
	}
	for _, l := range []netlink.Link{host, peer} {
		if l != nil && l.Type() != "veth" {
			return errdefs.Conflictf("hostnet: %s exists and is a %s, not a veth", l.Attrs().Name, l.Type())
		}
	}
	paired := host != nil && peer != nil &&
		host.Attrs().ParentIndex == peer.Attrs().Index && peer.Attrs().ParentIndex == host.Attrs().Index
	if !paired {
		if host != nil {
			if err := n.nl.LinkDel(host); err != nil && !isNotFound(err) {
				return fmt.Errorf("hostnet: remove unpaired veth %s: %w", v.Name, err)
			}
		}
		if peer != nil {
			// Deleting host may already have taken it.
			if err := pns.nl.LinkDel(peer); err != nil && !isNotFound(err) {
				return fmt.Errorf("hostnet: remove unpaired veth %s: %w", v.Peer.Name, err)
			}
		}
		la := netlink.NewLinkAttrs()
		la.Name = v.Name
		la.MTU = v.MTU
		veth := &netlink.Veth{LinkAttrs: la, PeerName: v.Peer.Name, PeerHardwareAddr: v.Peer.MAC}
		if v.MTU != 0 {
			veth.PeerMTU = uint32(v.MTU)
		}
		if pns != n {
			veth.PeerNamespace = netlink.NsFd(pns.Fd())
		}
		if err := n.nl.LinkAdd(veth); err != nil {
			return fmt.Errorf("hostnet: create veth %s/%s: %w", v.Name, v.Peer.Name, err)
		}
		if host, err = n.nl.LinkByName(v.Name); err != nil {
			return fmt.Errorf("hostnet: find new veth %s: %w", v.Name, err)
		}
		if peer, err = pns.nl.LinkByName(v.Peer.Name); err != nil {
			return fmt.Errorf("hostnet: find new veth %s: %w", v.Peer.Name, err)
		}
	}
	if err := n.setLinkAttrs(host, nil, v.MTU, v.Bridge, true); err != nil {
		return err
	}
	if v.Hairpin && v.Bridge != "" {
		// Set, not read first: reading a port's flags dumps every bridge
		// port of the namespace (O(ports) per call), setting is one
		// message, and setting the mode it has changes nothing.
		if err := n.nl.LinkSetHairpin(host, true); err != nil {
			return fmt.Errorf("hostnet: hairpin mode on %s: %w", v.Name, err)
		}
	}
	if err := pns.setLinkAttrs(peer, v.Peer.MAC, v.MTU, "", true); err != nil {
		return err
	}
	return pns.setAddrs(peer, v.Peer.Addrs)
}

// EnsureTap makes sure a persistent TAP device called name exists, with the
// given MAC (the host side's address, not the guest's: by convention a
// variant of the guest's, such as fe:16:3e:... for fa:16:3e:..., so the
// bridge never sees the guest's MAC on a local port), MTU (0: default), up
// and attached to bridge (""; none). It is created with IFF_TAP, IFF_NO_PI and
// IFF_VNET_HDR and without IFF_MULTI_QUEUE, which is how QEMU opens a
// single-queue tap by name. An existing tap is adopted and not reopened (a
// running QEMU may hold it).
func (n *NS) EnsureTap(ctx context.Context, name, bridge string, mac net.HardwareAddr, mtu int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ValidIfName(name); err != nil {
		return err
	}
	if err := validMAC(mac, "tap "+name); err != nil {
		return err
	}
	if err := validMTU(mtu, "tap "+name); err != nil {
		return err
	}
	l, err := n.link(name)
	if err != nil {
		return err
	}
	if l == nil {
		// The tun driver creates the device in the namespace of the
		// thread that opens /dev/net/tun.
		err := n.Do(func() error {
			la := netlink.NewLinkAttrs()
			la.Name = name
			return netlink.LinkAdd(&netlink.Tuntap{
				LinkAttrs: la,
				Mode:      netlink.TUNTAP_MODE_TAP,
				Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
			})
		})
		if err != nil {
			return fmt.Errorf("hostnet: create tap %s: %w", name, err)
		}
		if l, err = n.nl.LinkByName(name); err != nil {
			return fmt.Errorf("hostnet: find new tap %s: %w", name, err)
		}
	}
	tap, ok := l.(*netlink.Tuntap)
	if !ok || tap.Mode != netlink.TUNTAP_MODE_TAP {
		return errdefs.Conflictf("hostnet: %s exists and is a %s, not a tap", name, l.Type())
	}
	return n.setLinkAttrs(l, mac, mtu, bridge, true)
}

// SetLinkUp brings the named link up.
func (n *NS) SetLinkUp(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l, err := n.link(name)
	if err != nil {
		return err
	}
	if l == nil {
		return errdefs.NotFoundf("hostnet: link %s not found", name)
	}
	return n.setLinkAttrs(l, nil, 0, "", true)
}

// DeleteLink removes the named interface (for a veth, both ends). It is not
// an error if there is none.
func (n *NS) DeleteLink(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ValidIfName(name); err != nil {
		return err
	}
	l, err := n.link(name)
	if err != nil || l == nil {
		return err
	}
	if err := n.nl.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("hostnet: delete link %s: %w", name, err)
	}
	return nil
}

// Link describes an existing interface.
type Link struct {
	Name   string
	Index  int
	Kind   string // "bridge", "veth", "tuntap", "device", ...
	MAC    net.HardwareAddr
	MTU    int
	Master string // the bridge it is attached to, if any
	Up     bool   // administratively up
}

// dump runs a netlink dump again when it was interrupted (the kernel's
// answer when what is dumped changes meanwhile: busy hosts see it often).
func dump[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for range 5 {
		if v, err = f(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

// ListLinks returns the interfaces whose names start with prefix, sorted by
// name, for garbage-collecting those no longer desired.
func (n *NS) ListLinks(ctx context.Context, prefix string) ([]Link, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	links, err := dump(n.nl.LinkList)
	if err != nil {
		return nil, fmt.Errorf("hostnet: list links: %w", err)
	}
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []Link
	for _, l := range links {
		a := l.Attrs()
		if !strings.HasPrefix(a.Name, prefix) {
			continue
		}
		out = append(out, Link{
			Name:   a.Name,
			Index:  a.Index,
			Kind:   l.Type(),
			MAC:    a.HardwareAddr,
			MTU:    a.MTU,
			Master: names[a.MasterIndex],
			Up:     a.RawFlags&unix.IFF_UP != 0,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
