package nat

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/nimbo-cloud/nimbo/internal/nft"
	"github.com/nimbo-cloud/nimbo/internal/underlay"
	"github.com/nimbo-cloud/nimbo/internal/underlay/internal/nftprog"
)

// Names of the table and of its bookkeeping sets.
const (
	// TableName is the name of the ip-family table nat owns in the host
	// namespace. Nothing else in nftables is touched.
	TableName = "nimbo_underlay"

	setFwdOwned  = "fwd_owned"
	setAddrOwned = "addr_owned"
)

// ipsDstNAT is the conntrack status bit of a destination-NATed connection
// (IPS_DST_NAT in linux/netfilter/nf_conntrack_common.h).
const ipsDstNAT = 1 << 5

var (
	linkLocal4 = netip.MustParsePrefix("169.254.0.0/16")

	typePubKey  = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeIPAddr, nftables.TypeInetService)
	typePubVal  = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	typeIfAddr4 = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr)
)

// ownedAddr is an address nat put on an interface (a gateway on its bridge).
type ownedAddr struct {
	ifname string
	addr   netip.Addr
}

// plan is everything the table holds: what the rules need and the record of
// what nat changed on the host.
type plan struct {
	externals []underlay.External
	published []underlay.Publish
	bridges   string      // underlay.Config.BridgePrefix
	fwdOwned  []string    // interfaces whose IPv4 forwarding nat switched on
	addrOwned []ownedAddr // gateway addresses nat put on bridges
}

// normalise sorts everything so that the same desired state always renders
// (and fingerprints) the same.
func (p *plan) normalise() {
	p.externals = slices.Clone(p.externals)
	slices.SortFunc(p.externals, func(a, b underlay.External) int { return cmp.Compare(a.Bridge, b.Bridge) })
	p.published = slices.Clone(p.published)
	slices.SortFunc(p.published, func(a, b underlay.Publish) int {
		return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), a.Host.Compare(b.Host))
	})
	p.fwdOwned = slices.Clone(p.fwdOwned)
	slices.Sort(p.fwdOwned)
	p.fwdOwned = slices.Compact(p.fwdOwned)
	p.addrOwned = slices.Clone(p.addrOwned)
	slices.SortFunc(p.addrOwned, func(a, b ownedAddr) int {
		return cmp.Or(cmp.Compare(a.ifname, b.ifname), a.addr.Compare(b.addr))
	})
	p.addrOwned = slices.CompactFunc(p.addrOwned, func(a, b ownedAddr) bool {
		return a == b
	})
}

// program compiles the plan into nat's table:
//
//	forward (filter, priority 0):
//	  from an external bridge to anywhere else, 169.254.0.0/16: drop
//	  to an external bridge from anywhere else: jump into_ext
//	into_ext: established/related accept; DNATed (published) accept; drop
//	prerouting (nat, -100), from an external bridge or a non-bridge interface:
//	  dnat to (l4proto . daddr . dport) map @published
//	output (nat, -100): the same, for the host's own connections
//	postrouting (nat, 100), per external subnet:
//	  from the subnet to anything but an external bridge: masquerade
//	  from the subnet, DNATed, back to an external bridge: masquerade (hairpin)
func program(p plan) *nftprog.Table {
	p.normalise()
	t := &nftprog.Table{Family: nftables.TableFamilyIPv4, Name: TableName}

	extIfs := t.AddSet(&nftprog.Set{Name: "ext_ifs", KeyType: nftables.TypeIFName, KeyOrder: binaryutil.NativeEndian,
		Comment: "the external networks' bridges"})
	for _, e := range p.externals {
		extIfs.Elems = append(extIfs.Elems, nftprog.Elem{Key: nft.IfnameKey(e.Bridge), Text: fmt.Sprintf("%q  # %s %s", e.Bridge, e.NetworkID, e.CIDR)})
	}
	pub := t.AddSet(&nftprog.Set{Name: "published", KeyType: typePubKey, DataType: typePubVal, IsMap: true, Concat: true,
		Comment: "published forwards: protocol . host address . port : target address . port"})
	for _, f := range p.published {
		pub.Elems = append(pub.Elems, nftprog.Elem{
			Key:  nft.ConcatKey([]byte{f.Protocol.Number()}, f.Host.Addr().AsSlice(), nft.BE16(f.Host.Port())),
			Val:  nft.ConcatKey(f.Target.Addr().AsSlice(), nft.BE16(f.Target.Port())),
			Text: fmt.Sprintf("%s . %s . %d : %s . %d", f.Protocol, f.Host.Addr(), f.Host.Port(), f.Target.Addr(), f.Target.Port()),
		})
	}
	fwd := t.AddSet(&nftprog.Set{Name: setFwdOwned, KeyType: nftables.TypeIFName, KeyOrder: binaryutil.NativeEndian,
		Comment: "bookkeeping: interfaces whose net.ipv4.conf.*.forwarding nat turned on"})
	for _, name := range p.fwdOwned {
		fwd.Elems = append(fwd.Elems, nftprog.Elem{Key: nft.IfnameKey(name), Text: fmt.Sprintf("%q", name)})
	}
	addrs := t.AddSet(&nftprog.Set{Name: setAddrOwned, KeyType: typeIfAddr4, Concat: true,
		Comment: "bookkeeping: gateway addresses nat put on bridges"})
	for _, a := range p.addrOwned {
		addrs.Elems = append(addrs.Elems, nftprog.Elem{Key: nft.ConcatKey(nft.IfnameKey(a.ifname), a.addr.AsSlice()),
			Text: fmt.Sprintf("%q . %s", a.ifname, a.addr)})
	}

	const daddr, saddr = 16, 12
	t.Chains = append(t.Chains,
		&nftprog.Chain{Name: "forward", Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter,
			Rules: []nftprog.Rule{
				nftprog.R("iifname @ext_ifs oifname != @ext_ifs ip daddr 169.254.0.0/16 drop  # link-local, above all the host cloud's metadata service, is never routed off an external network",
					nftprog.IfnameIn(false, true, extIfs), nftprog.IfnameIn(true, false, extIfs), nftprog.IPv4In(daddr, linkLocal4),
					nftprog.Verdict(expr.VerdictDrop, "")),
				nftprog.R("oifname @ext_ifs iifname != @ext_ifs jump into_ext  # routed into an external network from elsewhere",
					nftprog.IfnameIn(true, true, extIfs), nftprog.IfnameIn(false, false, extIfs), nftprog.Verdict(expr.VerdictJump, "into_ext")),
			}},
		&nftprog.Chain{Name: "into_ext", Rules: []nftprog.Rule{
			nftprog.R("ct state established,related accept",
				nftprog.CtBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), nftprog.Verdict(expr.VerdictAccept, "")),
			nftprog.R("ct status dnat accept  # published forwards",
				nftprog.CtBits(expr.CtKeySTATUS, ipsDstNAT), nftprog.Verdict(expr.VerdictAccept, "")),
			nftprog.R("drop  # from outside, floating IPs are reachable only through published forwards",
				nftprog.Verdict(expr.VerdictDrop, "")),
		}},
	)
	dnat := func(text string, match ...any) nftprog.Rule {
		return nftprog.R(text+"dnat ip to meta l4proto . ip daddr . th dport map @published", append(match,
			nftprog.Meta(expr.MetaKeyL4PROTO, nftprog.Reg32(0)),
			nftprog.Payload(expr.PayloadBaseNetworkHeader, daddr, 4, nftprog.Reg32(1)),
			nftprog.Payload(expr.PayloadBaseTransportHeader, 2, 2, nftprog.Reg32(2)),
			nftprog.MapTo(nftprog.Reg32(0), nftprog.Reg1, pub),
			// The value lands in register 1: the address in its first 4
			// bytes (reg32 0), the port in the next 4 (reg32 1).
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: nftprog.Reg1, RegProtoMin: nftprog.Reg32(1)})...)
	}
	// Published forwards apply to what the host routes: packets from its
	// own interfaces and from the external networks (a router using a
	// published address, hairpinned back to it), never to frames bridged
	// on a tenant network, which br_netfilter also shows to this hook
	// (with the bridge as their input interface).
	pre := []nftprog.Rule{dnat("iifname @ext_ifs ", nftprog.IfnameIn(false, true, extIfs))}
	if p.bridges != "" {
		pre = append(pre, dnat(fmt.Sprintf("iifname != \"%s*\" ", p.bridges),
			[]expr.Any{nftprog.Meta(expr.MetaKeyIIFNAME, nftprog.Reg1), nftprog.Cmp(expr.CmpOpNeq, nftprog.Reg1, []byte(p.bridges))}))
	} else {
		pre = []nftprog.Rule{dnat("")}
	}
	t.Chains = append(t.Chains,
		&nftprog.Chain{Name: "prerouting", Type: nftables.ChainTypeNAT, Hook: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest,
			Rules: pre},
		&nftprog.Chain{Name: "output", Type: nftables.ChainTypeNAT, Hook: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest,
			Rules: []nftprog.Rule{dnat("")}},
	)
	post := &nftprog.Chain{Name: "postrouting", Type: nftables.ChainTypeNAT, Hook: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource}
	for _, e := range p.externals {
		masq := nftprog.R(fmt.Sprintf("ip saddr %s oifname != @ext_ifs masquerade  # leaving %s for anywhere else", e.CIDR, e.NetworkID),
			nftprog.IPv4In(saddr, e.CIDR), nftprog.IfnameIn(true, false, extIfs), &expr.Masq{})
		if p.bridges != "" {
			// Bridged through one of the agent's bridges (br_netfilter):
			// never routed out of the host, never translated.
			masq = nftprog.R(fmt.Sprintf("ip saddr %s oifname != @ext_ifs oifname != \"%s*\" masquerade  # leaving %s for anywhere else but a bridge", e.CIDR, p.bridges, e.NetworkID),
				nftprog.IPv4In(saddr, e.CIDR), nftprog.IfnameIn(true, false, extIfs),
				[]expr.Any{nftprog.Meta(expr.MetaKeyOIFNAME, nftprog.Reg1), nftprog.Cmp(expr.CmpOpNeq, nftprog.Reg1, []byte(p.bridges))}, &expr.Masq{})
		}
		post.Rules = append(post.Rules, masq,
			nftprog.R(fmt.Sprintf("ip saddr %s oifname @ext_ifs ct status dnat masquerade  # hairpin: a published forward used from an external network", e.CIDR),
				nftprog.IPv4In(saddr, e.CIDR), nftprog.IfnameIn(true, true, extIfs), nftprog.CtBits(expr.CtKeySTATUS, ipsDstNAT), &expr.Masq{}),
		)
	}
	t.Chains = append(t.Chains, post)
	return t
}

// decodeOwned reads the bookkeeping sets' keys back.
func decodeOwned(keys map[string][][]byte) (fwd map[string]bool, addrs map[ownedAddr]bool) {
	fwd, addrs = map[string]bool{}, map[ownedAddr]bool{}
	for _, k := range keys[setFwdOwned] {
		fwd[nftprog.IfnameOf(k)] = true
	}
	for _, k := range keys[setAddrOwned] {
		if len(k) != 20 {
			continue
		}
		a, _ := netip.AddrFromSlice(k[16:20])
		addrs[ownedAddr{ifname: nftprog.IfnameOf(k[:16]), addr: a}] = true
	}
	return fwd, addrs
}
