// Package flat is the underlay of classic provider bridging, for bare metal
// or a lab L2 that carries any MAC and IP: each external network's bridge
// gets a host interface as a port, so routers and VMs on it are directly on
// the physical network, with their own addresses. There is no NAT, and the
// host routes nothing.
//
// # What Set changes on the host namespace it is given
//
//  1. Bridge ports: for each external network, the interface its physical
//     network maps to (New's mappings, like {"physnet1": "eth1"}) is
//     attached to the network's bridge and brought up. Set refuses an
//     interface that carries the host's default route or has addresses
//     (IPv6 link-local ones aside): enslaving it would cut the host off. It
//     also refuses one that is already a port of another master it did not
//     put it on. An interface no longer needed is detached (nomaster) but
//     neither deleted nor brought down.
//  2. nftables: one table, bridge nimbo_underlay (TableName), whose forward
//     chain drops frames leaving through those interfaces to the cloud
//     metadata addresses 169.254.169.254 and fd00:ec2::254, so that a
//     nested VM never reaches a host cloud's metadata service (on a link,
//     other link-local addresses are legitimate and pass). The table also
//     records which interface Set attached to which bridge (set
//     ports_owned), so a restarted process adopts it and Teardown, which
//     detaches them and deletes the table, needs no configuration.
//
// Published forwards have no meaning here (the external addresses are
// reachable as they are): Set reports them as invalid, after setting up
// everything else. Note that br_netfilter makes bridged IPv4 traffic cross
// the host's IP forward hooks, so a FORWARD policy of drop set by another
// program (Docker does this) also drops the flat networks' traffic.
package flat

import (
	"cmp"
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
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/nft"
	"github.com/nimbo-cloud/nimbo/internal/underlay"
	"github.com/nimbo-cloud/nimbo/internal/underlay/internal/nftprog"
)

// Name is the mode's name.
const Name = "flat"

// TableName is the name of the bridge-family table flat owns in the host
// namespace.
const TableName = "nimbo_underlay"

const setPortsOwned = "ports_owned"

// Flat is the flat underlay for one host namespace.
type Flat struct {
	ns       *hostnet.NS
	mappings map[string]string
	log      *slog.Logger
	mu       sync.Mutex
}

var _ underlay.Underlay = (*Flat)(nil)

// New returns the flat underlay of the host namespace ns (which the caller
// keeps open while using it), with mappings from physical network names to
// host interfaces, like {"physnet1": "eth1"}. A nil log discards logs.
func New(ns *hostnet.NS, mappings map[string]string, log *slog.Logger) *Flat {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := make(map[string]string, len(mappings))
	for k, v := range mappings {
		m[k] = v
	}
	return &Flat{ns: ns, mappings: m, log: log}
}

// Name returns "flat".
func (u *Flat) Name() string { return Name }

// port is a host interface attached to a bridge.
type port struct{ ifname, bridge string }

func program(ports []port) *nftprog.Table {
	ports = slices.Clone(ports)
	slices.SortFunc(ports, func(a, b port) int { return cmp.Or(cmp.Compare(a.ifname, b.ifname), cmp.Compare(a.bridge, b.bridge)) })
	ports = slices.Compact(ports)
	t := &nftprog.Table{Family: nftables.TableFamilyBridge, Name: TableName}
	phys := t.AddSet(&nftprog.Set{Name: "phys", KeyType: nftables.TypeIFName, KeyOrder: binaryutil.NativeEndian,
		Comment: "host interfaces bridged into external networks"})
	owned := t.AddSet(&nftprog.Set{Name: setPortsOwned, KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIFName), Concat: true,
		Comment: "bookkeeping: interface . the bridge flat attached it to"})
	seen := map[string]bool{}
	for _, p := range ports {
		if !seen[p.ifname] {
			phys.Elems = append(phys.Elems, nftprog.Elem{Key: nft.IfnameKey(p.ifname), Text: fmt.Sprintf("%q", p.ifname)})
			seen[p.ifname] = true
		}
		owned.Elems = append(owned.Elems, nftprog.Elem{Key: nft.ConcatKey(nft.IfnameKey(p.ifname), nft.IfnameKey(p.bridge)),
			Text: fmt.Sprintf("%q . %q", p.ifname, p.bridge)})
	}
	etherType := func(v uint16) []expr.Any {
		return []expr.Any{nftprog.Payload(expr.PayloadBaseLLHeader, 12, 2, nftprog.Reg1), nftprog.Cmp(expr.CmpOpEq, nftprog.Reg1, nft.BE16(v))}
	}
	t.Chains = append(t.Chains, &nftprog.Chain{Name: "forward", Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookForward,
		Priority: nftables.ChainPriorityRef(-200), Rules: []nftprog.Rule{
			nftprog.R("oifname @phys ether type ip ip daddr 169.254.169.254 drop  # the host cloud's metadata service",
				nftprog.IfnameIn(true, true, phys), etherType(0x0800),
				nftprog.Payload(expr.PayloadBaseNetworkHeader, 16, 4, nftprog.Reg1), nftprog.Cmp(expr.CmpOpEq, nftprog.Reg1, underlay.ImdsV4.AsSlice()),
				nftprog.Verdict(expr.VerdictDrop, "")),
			nftprog.R("oifname @phys ether type ip6 ip6 daddr fd00:ec2::254 drop  # the same over IPv6 (AWS Nitro)",
				nftprog.IfnameIn(true, true, phys), etherType(0x86dd),
				nftprog.Payload(expr.PayloadBaseNetworkHeader, 24, 16, nftprog.Reg1), nftprog.Cmp(expr.CmpOpEq, nftprog.Reg1, underlay.ImdsV6.AsSlice()),
				nftprog.Verdict(expr.VerdictDrop, "")),
		}})
	return t
}

func decodePorts(keys map[string][][]byte) map[port]bool {
	out := map[port]bool{}
	for _, k := range keys[setPortsOwned] {
		if len(k) == 32 {
			out[port{nftprog.IfnameOf(k[:16]), nftprog.IfnameOf(k[16:])}] = true
		}
	}
	return out
}

// Set makes the host match cfg (see the package documentation). Each
// external network is handled on its own: one that is invalid or cannot be
// bridged is reported in the error and the others are still set up.
func (u *Flat) Set(ctx context.Context, cfg underlay.Config) (underlay.Status, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	cfg, cerr := cfg.Check()
	have, err := nftprog.Read(u.ns, nftables.TableFamilyBridge, TableName, setPortsOwned)
	if err != nil {
		return underlay.Status{Message: "cannot read nftables"}, fmt.Errorf("flat: %w", err)
	}
	havePorts := decodePorts(have.Keys)
	ownedBy := map[string]string{} // interface -> the bridge flat attached it to
	for p := range havePorts {
		ownedBy[p.ifname] = p.bridge
	}
	var defaults []string
	for _, v6 := range []bool{false, true} {
		r, ok, err := u.ns.DefaultRoute(ctx, v6)
		if err != nil {
			return underlay.Status{Message: "cannot read the routing table"}, fmt.Errorf("flat: %w", err)
		}
		if ok && r.Dev != "" {
			defaults = append(defaults, r.Dev)
		}
	}
	bridges := map[string]bool{}
	for _, e := range cfg.Externals {
		bridges[e.Bridge] = true
	}

	errs := []error{cerr}
	want := map[string]string{} // interface -> bridge
	wantNet := map[string]string{}
	externals := slices.Clone(cfg.Externals)
	slices.SortFunc(externals, func(a, b underlay.External) int { return cmp.Compare(a.NetworkID, b.NetworkID) })
	for _, e := range externals {
		dev, err := u.check(ctx, e, want, wantNet, ownedBy, defaults, bridges)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		want[dev], wantNet[dev] = e.Bridge, e.NetworkID
	}
	var ports, stale []port
	for dev, br := range want {
		ports = append(ports, port{dev, br})
	}
	for p := range havePorts {
		if want[p.ifname] != p.bridge {
			stale = append(stale, p)
		}
	}
	slices.SortFunc(stale, func(a, b port) int { return cmp.Compare(a.ifname, b.ifname) })

	t1 := program(append(slices.Clone(ports), stale...))
	sent, err := nftprog.Apply(u.ns, t1, have)
	if err != nil {
		return underlay.Status{Message: "cannot program nftables"}, fmt.Errorf("flat: %w", err)
	}
	if sent {
		u.log.Info("flat: nftables table installed", "table", TableName, "ports", len(ports))
	}
	// Detach first: an interface moving to another bridge is simply
	// re-attached below.
	var kept []port
	for _, p := range stale {
		if _, moving := want[p.ifname]; moving {
			continue
		}
		if err := u.release(ctx, p); err != nil {
			errs = append(errs, err)
			kept = append(kept, p)
		}
	}
	attached := map[string]bool{}
	for _, dev := range sortedKeys(want) {
		if err := u.ns.SetMaster(ctx, dev, want[dev]); err != nil {
			errs = append(errs, fmt.Errorf("flat: external network %s: attach %s to %s: %w", wantNet[dev], dev, want[dev], err))
			continue
		}
		attached[dev] = true
	}
	if len(stale) > len(kept) {
		if _, err := nftprog.Apply(u.ns, program(append(slices.Clone(ports), kept...)), nftprog.State{Exists: true, Fingerprint: t1.Fingerprint()}); err != nil {
			errs = append(errs, fmt.Errorf("flat: %w", err))
		}
	}
	if len(cfg.Published) > 0 {
		errs = append(errs, errdefs.Invalidf("flat: %d published forwards ignored: on a flat network the floating IPs are reachable directly", len(cfg.Published)))
	}
	return u.status(ctx, externals, want, attached), errors.Join(errs...)
}

// check returns the interface to attach for external network e, or why it
// must not be.
func (u *Flat) check(ctx context.Context, e underlay.External, want, wantNet, ownedBy map[string]string, defaults []string, bridges map[string]bool) (string, error) {
	what := fmt.Sprintf("flat: external network %s", e.NetworkID)
	dev, ok := u.mappings[e.PhysicalNetwork]
	if !ok {
		known := sortedKeys(u.mappings)
		return "", errdefs.Invalidf("%s: physical network %q has no interface mapping (mapped: %s)", what, e.PhysicalNetwork, strings.Join(known, ", "))
	}
	if err := hostnet.ValidIfName(dev); err != nil {
		return "", fmt.Errorf("%s: physical network %q: %w", what, e.PhysicalNetwork, err)
	}
	if other, ok := want[dev]; ok && other != e.Bridge {
		return "", errdefs.Conflictf("%s: interface %s (physical network %q) is already bridged for network %s", what, dev, e.PhysicalNetwork, wantNet[dev])
	}
	if bridges[dev] {
		return "", errdefs.Invalidf("%s: %s is an external network's own bridge, not a physical interface", what, dev)
	}
	l, err := u.ns.LinkByName(ctx, dev)
	if err != nil {
		return "", fmt.Errorf("%s: physical network %q: %w", what, e.PhysicalNetwork, err)
	}
	if slices.Contains(defaults, dev) {
		return "", errdefs.Invalidf("%s: refusing to bridge %s: it carries this host's default route, and bridging it would cut the host off; give the physical network an interface of its own", what, dev)
	}
	addrs, err := u.ns.Addrs(ctx, dev)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if len(addrs) > 0 {
		return "", errdefs.Invalidf("%s: refusing to bridge %s: it has addresses (%s) that the host would lose; give the physical network an interface without addresses", what, dev, joinPrefixes(addrs))
	}
	if l.Master != "" && l.Master != e.Bridge && ownedBy[dev] != l.Master {
		return "", errdefs.Conflictf("%s: %s is already a port of %s, which nimbo did not do", what, dev, l.Master)
	}
	return dev, nil
}

// release detaches p's interface if it is still attached to the bridge
// flat put it on.
func (u *Flat) release(ctx context.Context, p port) error {
	l, err := u.ns.LinkByName(ctx, p.ifname)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("flat: %w", err)
	}
	if l.Master != p.bridge {
		return nil // someone else's now
	}
	if err := u.ns.SetMaster(ctx, p.ifname, ""); err != nil {
		return fmt.Errorf("flat: %w", err)
	}
	return nil
}

func (u *Flat) status(ctx context.Context, externals []underlay.External, want map[string]string, attached map[string]bool) underlay.Status {
	if len(externals) == 0 {
		return underlay.Status{Message: "no external networks on this host"}
	}
	var devs, notes []string
	egress := len(attached) == len(externals)
	for _, e := range externals {
		dev := ""
		for d, br := range want {
			if br == e.Bridge {
				dev = d
			}
		}
		switch {
		case dev == "" || !attached[dev]:
			notes = append(notes, fmt.Sprintf("network %s (%s) is not bridged: no uplink (see the error)", e.NetworkID, e.PhysicalNetwork))
			egress = false
			continue
		}
		devs = append(devs, dev)
		if up, err := u.ns.Carrier(ctx, dev); err != nil || !up {
			notes = append(notes, fmt.Sprintf("%s (%s) has no carrier: no uplink for network %s", dev, e.PhysicalNetwork, e.NetworkID))
			egress = false
			continue
		}
		notes = append(notes, fmt.Sprintf("%s bridged to %s (%s)", e.CIDR, dev, e.PhysicalNetwork))
	}
	msg := strings.Join(notes, "; ")
	if egress {
		msg += "; routers and floating IPs use their own addresses on the physical network"
	}
	return underlay.Status{Uplink: strings.Join(devs, ","), Egress: egress, Message: msg}
}

// Teardown detaches the interfaces Set attached (if they are still on the
// bridge it put them on) and deletes the table. If an interface cannot be
// detached, the table is kept so that a later Teardown can try again.
func (u *Flat) Teardown(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	have, err := nftprog.Read(u.ns, nftables.TableFamilyBridge, TableName, setPortsOwned)
	if err != nil {
		return fmt.Errorf("flat: %w", err)
	}
	if !have.Exists {
		return nil
	}
	var errs []error
	for p := range decodePorts(have.Keys) {
		if err := u.release(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := nftprog.Delete(u.ns, nftables.TableFamilyBridge, TableName); err != nil {
		return fmt.Errorf("flat: %w", err)
	}
	u.log.Info("flat: torn down", "table", TableName)
	return nil
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
