// Package nat is the default underlay: nimbo's external networks are
// host-internal and the host routes and masquerades their traffic, like
// DevStack's br-ex default, but with every change to the host named here and
// undone by Teardown.
//
// # What Set changes on the host namespace it is given
//
//  1. Addresses: each external subnet's gateway (172.24.4.1/24 for the
//     default public network) on that network's bridge. This gives the host
//     the connected route to the subnet, so floating IPs, router gateway IPs
//     and published forwards are reachable from the host, and routers have
//     their default gateway.
//  2. Sysctls: net.ipv4.conf.IF.forwarding=1 on exactly these interfaces,
//     because Linux checks the forwarding flag of the interface a packet
//     comes in on: each external bridge (routers' traffic enters there), the
//     interface of the default route (replies to masqueraded connections and
//     inbound published forwards enter there) and each interface holding a
//     published host address. net.ipv4.ip_forward (conf/all, which flips
//     every interface at once) is never written, and nor is IPv6 forwarding.
//     Only flags Set turned from 0 to 1 are recorded as its own; it turns
//     those back to 0 when they are no longer needed (the default route moved,
//     a network went) and at Teardown; flags that were already 1 are left as
//     they are.
//  3. nftables: one table, ip nimbo_underlay (TableName); no other table or
//     rule is touched. Its chains:
//     - forward: traffic from an external bridge routed anywhere but another
//     external bridge to 169.254.0.0/16 is dropped (link-local is never
//     routable, and 169.254.169.254 is the host cloud's metadata service,
//     which a nested VM must never reach through the host); traffic routed
//     into an external bridge from anywhere else is accepted only if it
//     belongs to a connection the external side opened (established,
//     related) or to a published forward (DNAT), and dropped otherwise, so
//     that forwarding on the uplink does not open the floating IPs to the
//     uplink's neighbours.
//     - prerouting and output (dnat): one map lookup, protocol . host
//     address . port -> target address . port, for published forwards,
//     arriving or locally originated (O(1) in the number of forwards).
//     - postrouting (snat): traffic from an external subnet leaving through
//     any interface but an external bridge is masqueraded (to the address
//     the kernel picks on that interface), and so is a published forward
//     used from an external network (hairpin), so its replies come back
//     through the host.
//     The table also records what Set changed (sets fwd_owned and
//     addr_owned), so that a restarted process adopts it and Teardown needs
//     no configuration. Teardown undoes 1 and 2 and then deletes the table.
//
// Masquerading "whatever leaves for anything but an external bridge",
// rather than "whatever leaves through the default route's interface", is
// deliberate: the kernel's routing decides the way out, and whatever it
// picks, an external address must never leave the host untranslated (nobody
// outside can answer it). So nothing leaks when the default route moves to
// another interface between two Sets, and routes other than the default
// (a VPN, a second NIC) work the same. Which networks are actually reachable
// is decided by forwarding: replies are only forwarded from interfaces whose
// forwarding flag Set turned on, so after the default route moves, egress
// works again at the next Set (Status reports the current uplink).
//
// Not covered: IPv6 (nat's external networks are IPv4; the host's IPv6
// forwarding is left as it is), and the host's own services: routers reach
// the host's addresses (the gateway first) as any local network does. In
// nftables a drop in any table wins, so a FORWARD policy of drop set by
// another program (Docker does this) also drops nimbo's routed traffic; nat
// does not override other tables.
package nat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/google/nftables"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/underlay"
	"github.com/nimbo-cloud/nimbo/internal/underlay/internal/nftprog"
)

// Name is the mode's name.
const Name = "nat"

// NAT is the nat underlay for one host namespace.
type NAT struct {
	ns  *hostnet.NS
	log *slog.Logger
	mu  sync.Mutex
}

var _ underlay.Underlay = (*NAT)(nil)

// New returns the nat underlay of the host namespace ns, which the caller
// keeps open while using it. A nil log discards logs.
func New(ns *hostnet.NS, log *slog.Logger) *NAT {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &NAT{ns: ns, log: log}
}

// Name returns "nat".
func (u *NAT) Name() string { return Name }

func fwdKey(ifname string) string { return "net/ipv4/conf/" + ifname + "/forwarding" }

// check returns the part of cfg nat can serve (see underlay.Config.Check;
// nat also needs each external subnet's gateway, which the host takes) and
// what it left out.
func check(cfg underlay.Config) (underlay.Config, error) {
	cfg, err := cfg.Check()
	errs := []error{err}
	out := underlay.Config{BridgePrefix: cfg.BridgePrefix}
	for _, e := range cfg.Externals {
		switch {
		case !e.Gateway.IsValid():
			errs = append(errs, errdefs.Invalidf("nat: external network %s (%s) has no gateway: under nat the host is its gateway", e.NetworkID, e.CIDR))
		case e.Gateway == e.CIDR.Addr() || e.CIDR.Bits() < 31 && e.Gateway == lastAddr(e.CIDR):
			errs = append(errs, errdefs.Invalidf("nat: external network %s: gateway %v is the subnet's network or broadcast address", e.NetworkID, e.Gateway))
		default:
			out.Externals = append(out.Externals, e)
		}
	}
	for _, p := range cfg.Published {
		if slices.ContainsFunc(out.Externals, func(e underlay.External) bool { return e.CIDR.Contains(p.Target.Addr()) }) {
			out.Published = append(out.Published, p)
		}
	}
	return out, errors.Join(errs...)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}

// Set makes the host match cfg (see the package documentation for what it
// changes). External networks and published forwards that are invalid are
// left out and reported in the error; the rest is set up. Bookkeeping comes first: what Set is about to change is recorded
// in the table (in the same batch as the rules, so masquerading is in place
// before any forwarding flag is turned on) before it changes it, and what it
// no longer needs is forgotten only once undone, so a crash at any point
// leaves nothing that Teardown would not find.
func (u *NAT) Set(ctx context.Context, cfg underlay.Config) (underlay.Status, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	cfg, cerr := check(cfg)
	have, err := nftprog.Read(u.ns, nftables.TableFamilyIPv4, TableName, setFwdOwned, setAddrOwned)
	if err != nil {
		return underlay.Status{Message: "cannot read nftables"}, fmt.Errorf("nat: %w", err)
	}
	haveFwd, haveAddrs := decodeOwned(have.Keys)
	def, hasDef, err := u.ns.DefaultRoute(ctx, false)
	if err != nil {
		return underlay.Status{Message: "cannot read the routing table"}, fmt.Errorf("nat: %w", err)
	}
	errs := []error{cerr}

	// Interfaces that must forward, and which of those are (or become) ours.
	want := map[string]bool{}
	for _, e := range cfg.Externals {
		want[e.Bridge] = true
	}
	if hasDef && def.Dev != "" {
		want[def.Dev] = true
	}
	hostAddrs := map[netip.Addr]bool{}
	for _, p := range cfg.Published {
		if hostAddrs[p.Host.Addr()] {
			continue // usually all on one address: look it up once
		}
		hostAddrs[p.Host.Addr()] = true
		dev, err := u.ns.AddrLink(ctx, p.Host.Addr())
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("nat: published forwards on %v: %w", p.Host.Addr(), err))
		case dev == "":
			errs = append(errs, errdefs.NotFoundf("nat: published forwards on %v: not an address of this host", p.Host.Addr()))
		default:
			want[dev] = true
		}
	}
	owned := map[string]bool{}
	for dev := range want {
		if haveFwd[dev] {
			owned[dev] = true
			continue
		}
		v, err := u.ns.Sysctl(ctx, fwdKey(dev))
		if err != nil {
			errs = append(errs, fmt.Errorf("nat: interface %s: %w", dev, err))
			delete(want, dev)
			continue
		}
		if v != "1" {
			owned[dev] = true
		}
	}
	var staleFwd []string
	for dev := range haveFwd {
		if !want[dev] {
			staleFwd = append(staleFwd, dev)
		}
	}
	sort.Strings(staleFwd)
	wantAddrs := map[ownedAddr]netip.Prefix{}
	for _, e := range cfg.Externals {
		wantAddrs[ownedAddr{e.Bridge, e.Gateway}] = netip.PrefixFrom(e.Gateway, e.CIDR.Bits())
	}
	var staleAddrs []ownedAddr
	for a := range haveAddrs {
		if _, ok := wantAddrs[a]; !ok {
			staleAddrs = append(staleAddrs, a)
		}
	}

	// Phase 1: rules, and the record of everything owned, old and new.
	p := plan{externals: cfg.Externals, published: cfg.Published, bridges: cfg.BridgePrefix}
	for dev := range owned {
		p.fwdOwned = append(p.fwdOwned, dev)
	}
	for a := range wantAddrs {
		p.addrOwned = append(p.addrOwned, a)
	}
	p1 := p
	p1.fwdOwned = append(slices.Clone(p.fwdOwned), staleFwd...)
	p1.addrOwned = append(slices.Clone(p.addrOwned), staleAddrs...)
	t1 := program(p1)
	sent, err := nftprog.Apply(u.ns, t1, have)
	if err != nil {
		return underlay.Status{Message: "cannot program nftables"}, fmt.Errorf("nat: %w", err)
	}
	if sent {
		u.log.Info("nat: nftables table installed", "table", TableName, "externals", len(cfg.Externals), "published", len(cfg.Published))
	}

	// The host changes.
	fwdOK := true
	for _, e := range cfg.Externals {
		if err := u.ns.AddAddr(ctx, e.Bridge, wantAddrs[ownedAddr{e.Bridge, e.Gateway}]); err != nil {
			errs = append(errs, fmt.Errorf("nat: external network %s: gateway address: %w", e.NetworkID, err))
			fwdOK = false
		}
	}
	for _, dev := range sortedKeys(owned) {
		if err := u.ns.SetSysctl(ctx, fwdKey(dev), "1"); err != nil {
			errs = append(errs, fmt.Errorf("nat: %w", err))
			fwdOK = false
		}
	}
	for _, e := range cfg.Externals {
		if !want[e.Bridge] {
			fwdOK = false // its forwarding flag could not be read: the bridge is missing
		}
	}
	var keptFwd []string
	var keptAddrs []ownedAddr
	for _, a := range staleAddrs {
		if err := u.ns.DelAddr(ctx, a.ifname, a.addr); err != nil {
			errs = append(errs, fmt.Errorf("nat: remove %v from %s: %w", a.addr, a.ifname, err))
			keptAddrs = append(keptAddrs, a)
		}
	}
	for _, dev := range staleFwd {
		if err := u.resetForwarding(ctx, dev); err != nil {
			errs = append(errs, err)
			keptFwd = append(keptFwd, dev)
		}
	}

	// Phase 2: forget what was undone.
	if len(staleFwd)+len(staleAddrs) > len(keptFwd)+len(keptAddrs) {
		p2 := p
		p2.fwdOwned = append(slices.Clone(p.fwdOwned), keptFwd...)
		p2.addrOwned = append(slices.Clone(p.addrOwned), keptAddrs...)
		if _, err := nftprog.Apply(u.ns, program(p2), nftprog.State{Exists: true, Fingerprint: t1.Fingerprint()}); err != nil {
			errs = append(errs, fmt.Errorf("nat: %w", err))
		}
	}

	st := u.status(ctx, cfg, def, hasDef, fwdOK)
	return st, errors.Join(errs...)
}

// resetForwarding turns dev's forwarding flag back off, unless dev is gone.
func (u *NAT) resetForwarding(ctx context.Context, dev string) error {
	if _, err := u.ns.LinkByName(ctx, dev); errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err := u.ns.SetSysctl(ctx, fwdKey(dev), "0"); err != nil {
		return fmt.Errorf("nat: %w", err)
	}
	return nil
}

func (u *NAT) status(ctx context.Context, cfg underlay.Config, def hostnet.Route, hasDef, fwdOK bool) underlay.Status {
	var bridges []string
	for _, e := range cfg.Externals {
		bridges = append(bridges, e.Bridge)
	}
	switch {
	case len(cfg.Externals) == 0:
		return underlay.Status{Message: "no external networks on this host"}
	case !hasDef || def.Dev == "":
		return underlay.Status{Message: underlay.NoUplinkMessage}
	case slices.Contains(bridges, def.Dev):
		return underlay.Status{Uplink: def.Dev, Message: fmt.Sprintf("the default route goes through %s, an external network's own bridge: the public network has no uplink", def.Dev)}
	}
	st := underlay.Status{Uplink: def.Dev, Egress: fwdOK}
	st.EgressSource = u.source(ctx, def)
	src := "the address the kernel picks there"
	if st.EgressSource.IsValid() {
		src = st.EgressSource.String()
	}
	if !fwdOK {
		st.Message = fmt.Sprintf("uplink %s, but forwarding from the external networks could not be set up (see the error)", def.Dev)
		return st
	}
	var nets []string
	for _, e := range cfg.Externals {
		nets = append(nets, e.CIDR.String())
	}
	st.Message = fmt.Sprintf("egress from %s through %s, masqueraded to %s; floating IPs are reachable from this host, and from outside only through published forwards",
		strings.Join(nets, ", "), def.Dev, src)
	return st
}

// source returns the address masquerading uses on the default route: the
// primary address of its interface in the gateway's subnet, which is the
// source the kernel picks for the gateway itself.
func (u *NAT) source(ctx context.Context, def hostnet.Route) netip.Addr {
	if def.Gw.IsValid() {
		if r, err := u.ns.RouteGet(ctx, def.Gw); err == nil && r.Src.IsValid() {
			return r.Src
		}
	}
	addrs, err := u.ns.Addrs(ctx, def.Dev)
	if err != nil {
		return netip.Addr{}
	}
	for _, a := range addrs {
		if a.Addr().Is4() {
			return a.Addr()
		}
	}
	return netip.Addr{}
}

// Teardown undoes what Set recorded in the table (gateway addresses,
// forwarding flags) and then deletes the table. If something cannot be
// undone, the table is kept so that a later Teardown can try again.
func (u *NAT) Teardown(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	have, err := nftprog.Read(u.ns, nftables.TableFamilyIPv4, TableName, setFwdOwned, setAddrOwned)
	if err != nil {
		return fmt.Errorf("nat: %w", err)
	}
	if !have.Exists {
		return nil
	}
	fwd, addrs := decodeOwned(have.Keys)
	var errs []error
	for a := range addrs {
		if err := u.ns.DelAddr(ctx, a.ifname, a.addr); err != nil {
			errs = append(errs, fmt.Errorf("nat: remove %v from %s: %w", a.addr, a.ifname, err))
		}
	}
	for _, dev := range sortedKeys(fwd) {
		if err := u.resetForwarding(ctx, dev); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := nftprog.Delete(u.ns, nftables.TableFamilyIPv4, TableName); err != nil {
		return fmt.Errorf("nat: %w", err)
	}
	u.log.Info("nat: torn down", "table", TableName)
	return nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
