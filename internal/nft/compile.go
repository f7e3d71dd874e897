package nft

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the name of the two tables nimbo owns in a namespace: one in
// the bridge family and one in the inet family. Nothing else is touched.
const TableName = "nimbo_portsec"

// Chain priorities. br_netfilter runs the IP hooks from the bridge hooks at
// priority 0 (NF_BR_PRI_BRNF), so the bridge chains (-200, "filter" for
// bridged frames) run before it.
const (
	prioBridge  = -200 // bridge prerouting and forward
	prioZone    = -300 // inet prerouting, before conntrack (-200)
	prioEgress  = -150 // inet prerouting, after conntrack
	prioIngress = 0    // inet forward
)

var (
	typeIfMAC    = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr)
	typeIfMACIP4 = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr, nftables.TypeIPAddr)
	typeIfMACIP6 = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr, nftables.TypeIP6Addr)
	typeZone     = func() nftables.SetDatatype {
		t := nftables.SetDatatype{Name: "ct_zone", Bytes: 2}
		t.SetNFTMagic(nftables.TypeInteger.GetNFTMagic())
		return t
	}()
)

// ICMPv6 types always let through: neighbour discovery and MLD (and router
// solicitations out, advertisements in), as Neutron does.
var (
	ndIn  = []byte{130, 131, 132, 134, 135, 136, 143}
	ndOut = []byte{130, 131, 132, 133, 135, 136, 143}
)

type compiler struct {
	nextSetID uint32
}

func (c *compiler) addSet(t *table, s *set) *set {
	c.nextSetID++
	s.id = c.nextSetID
	t.sets = append(t.sets, s)
	return s
}

// combo is one distinct list of security groups; ports with the same list
// share its chains, and the packet mark names the combo.
type combo struct {
	key    string
	groups []string
	mark   uint32
}

func (k *combo) chain(dir Direction) string {
	if dir == Ingress {
		return fmt.Sprintf("gs_%08x_in", k.mark)
	}
	return fmt.Sprintf("gs_%08x_out", k.mark)
}

func groupChain(g string, dir Direction) string {
	if dir == Ingress {
		return "sg_" + g + "_in"
	}
	return "sg_" + g + "_out"
}

func remoteSet(g string, et EtherType) string {
	if et == IPv4 {
		return "rg4_" + g
	}
	return "rg6_" + g
}

// combos assigns each distinct group list a mark: the first 32 bits of its
// SHA-256, so that a list keeps its mark when others come and go (collisions
// are resolved in key order).
func combos(ports []Port) map[string]*combo {
	out := map[string]*combo{}
	for _, p := range ports {
		if !p.PortSecurity {
			continue
		}
		gs := slices.Clone(p.Groups)
		sort.Strings(gs)
		gs = slices.Compact(gs)
		key := strings.Join(gs, ",")
		if out[key] == nil {
			out[key] = &combo{key: key, groups: gs}
		}
	}
	keys := make([]string, 0, len(out))
	for k := range out {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	used := map[uint32]bool{}
	for _, k := range keys {
		sum := sha256.Sum256([]byte("groups:" + k))
		m := binary.BigEndian.Uint32(sum[:4])
		for m == 0 || used[m] {
			m++
		}
		used[m] = true
		out[k].mark = m
	}
	return out
}

func portCombo(cs map[string]*combo, p Port) *combo {
	gs := slices.Clone(p.Groups)
	sort.Strings(gs)
	return cs[strings.Join(slices.Compact(gs), ",")]
}

// compile turns a Ruleset into the program Apply installs.
func compile(rs Ruleset) (*program, error) {
	if err := validate(&rs); err != nil {
		return nil, err
	}
	ports := slices.Clone(rs.Ports)
	sort.Slice(ports, func(i, j int) bool { return ports[i].Iface < ports[j].Iface })
	cs := combos(ports)
	c := &compiler{}
	bt := c.bridgeTable(ports, cs)
	it := c.inetTable(rs, ports, cs)
	return &program{tables: []*table{bt, it}}, nil
}

func (c *compiler) bridgeTable(ports []Port, cs map[string]*combo) *table {
	t := &table{family: nftables.TableFamilyBridge, name: TableName}
	portMark := c.addSet(t, &set{name: "port_mark", keyType: nftables.TypeIFName, keyOrder: binaryutil.NativeEndian,
		isMap: true, dataType: nftables.TypeMark})
	macOK := c.addSet(t, &set{name: "mac_ok", keyType: typeIfMAC, concat: true})
	ip4OK := c.addSet(t, &set{name: "ip4_ok", keyType: typeIfMACIP4, concat: true, interval: true})
	ip6OK := c.addSet(t, &set{name: "ip6_ok", keyType: typeIfMACIP6, concat: true, interval: true})

	for _, p := range ports {
		if !p.PortSecurity {
			continue
		}
		k := portCombo(cs, p)
		portMark.elems = append(portMark.elems, elem{
			key: IfnameKey(p.Iface), val: Native32(k.mark),
			text: fmt.Sprintf("%q : 0x%08x", p.Iface, k.mark),
		})
		// Addresses by the MAC they may be sent with.
		byMAC := map[string][]netip.Prefix{}
		macs := []net.HardwareAddr{p.MAC}
		add := func(mac net.HardwareAddr, pfx netip.Prefix) {
			if _, ok := byMAC[mac.String()]; !ok && mac.String() != p.MAC.String() {
				macs = append(macs, mac)
			}
			byMAC[mac.String()] = append(byMAC[mac.String()], pfx)
		}
		for _, ip := range p.IPs {
			add(p.MAC, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
		}
		for _, ap := range p.AddressPairs {
			mac := ap.MAC
			if mac == nil {
				mac = p.MAC
			}
			add(mac, ap.Prefix)
		}
		seen := map[string]bool{}
		for _, mac := range macs {
			if seen[mac.String()] {
				continue
			}
			seen[mac.String()] = true
			macOK.elems = append(macOK.elems, elem{
				key:  ConcatKey(IfnameKey(p.Iface), mac),
				text: fmt.Sprintf("%q . %s", p.Iface, mac),
			})
			// The IPv6 link-local address derived from the MAC is always
			// allowed (as Neutron does), so neighbour discovery works.
			pfxs := append(byMAC[mac.String()], netip.PrefixFrom(linkLocal(mac), 128))
			for _, r := range mergeRanges(pfxs) {
				s := ip4OK
				if r.from.Is6() {
					s = ip6OK
				}
				s.elems = append(s.elems, elem{
					key:    ConcatKey(IfnameKey(p.Iface), mac, r.from.AsSlice()),
					keyEnd: ConcatKey(IfnameKey(p.Iface), mac, r.to.AsSlice()),
					text:   fmt.Sprintf("%q . %s . %s", p.Iface, mac, r),
				})
			}
		}
	}

	const (
		fromPort = "from_port"
		arpChain = "from_port_arp"
		ip4Chain = "from_port_ip4"
		ip6Chain = "from_port_ip6"
	)
	t.chains = append(t.chains,
		&chain{name: "prerouting", hook: nftables.ChainHookPrerouting, priority: nftables.ChainPriorityRef(prioBridge), rules: []rule{
			r("iifname @port_mark jump "+fromPort+"  # frames sent by ports with port security",
				metaLoad(expr.MetaKeyIIFNAME, reg1), lookup(reg1, portMark), verdict(expr.VerdictJump, fromPort)),
		}},
		&chain{name: "forward", hook: nftables.ChainHookForward, priority: nftables.ChainPriorityRef(prioBridge), rules: []rule{
			r("meta mark set oifname map @port_mark accept  # names the receiving port's groups for inet forward",
				metaLoad(expr.MetaKeyOIFNAME, reg1), mapLookup(reg1, reg1, portMark), metaSet(expr.MetaKeyMARK, reg1), verdict(expr.VerdictAccept, "")),
			r("iifname @port_mark meta mark set 0x0  # to a port without port security: no ingress filter",
				metaLoad(expr.MetaKeyIIFNAME, reg1), lookup(reg1, portMark), &expr.Immediate{Register: reg1, Data: Native32(0)}, metaSet(expr.MetaKeyMARK, reg1)),
		}},
		&chain{name: fromPort, rules: []rule{
			r("meta mark set iifname map @port_mark  # names the sending port's groups for inet prerouting",
				metaLoad(expr.MetaKeyIIFNAME, reg1), mapLookup(reg1, reg1, portMark), metaSet(expr.MetaKeyMARK, reg1)),
			r("iifname . ether saddr != @mac_ok drop",
				metaLoad(expr.MetaKeyIIFNAME, reg32(0)), payload(expr.PayloadBaseLLHeader, 6, 6, reg32(4)), lookupInv(reg32(0), macOK), verdict(expr.VerdictDrop, "")),
			r("ether type arp jump "+arpChain,
				payload(expr.PayloadBaseLLHeader, 12, 2, reg1), cmp(expr.CmpOpEq, reg1, BE16(unix.ETH_P_ARP)), verdict(expr.VerdictJump, arpChain)),
			r("ether type ip jump "+ip4Chain,
				payload(expr.PayloadBaseLLHeader, 12, 2, reg1), cmp(expr.CmpOpEq, reg1, BE16(unix.ETH_P_IP)), verdict(expr.VerdictJump, ip4Chain)),
			r("ether type ip6 jump "+ip6Chain,
				payload(expr.PayloadBaseLLHeader, 12, 2, reg1), cmp(expr.CmpOpEq, reg1, BE16(unix.ETH_P_IPV6)), verdict(expr.VerdictJump, ip6Chain)),
			r("drop  # any other ether type", verdict(expr.VerdictDrop, "")),
		}},
		&chain{name: arpChain, rules: []rule{
			r("arp htype 1 ptype ip hlen 6 plen 4 or drop",
				payload(expr.PayloadBaseNetworkHeader, 0, 6, reg1), cmp(expr.CmpOpNeq, reg1, []byte{0, 1, 8, 0, 6, 4}), verdict(expr.VerdictDrop, "")),
			r("iifname . arp saddr ether . arp saddr ip @ip4_ok accept",
				metaLoad(expr.MetaKeyIIFNAME, reg32(0)), payload(expr.PayloadBaseNetworkHeader, 8, 6, reg32(4)),
				payload(expr.PayloadBaseNetworkHeader, 14, 4, reg32(6)), lookup(reg32(0), ip4OK), verdict(expr.VerdictAccept, "")),
			r("arp saddr ip 0.0.0.0 iifname . arp saddr ether @mac_ok accept  # ARP probe (RFC 5227)",
				payload(expr.PayloadBaseNetworkHeader, 14, 4, reg1), cmp(expr.CmpOpEq, reg1, []byte{0, 0, 0, 0}),
				metaLoad(expr.MetaKeyIIFNAME, reg32(0)), payload(expr.PayloadBaseNetworkHeader, 8, 6, reg32(4)), lookup(reg32(0), macOK), verdict(expr.VerdictAccept, "")),
			r("drop", verdict(expr.VerdictDrop, "")),
		}},
		&chain{name: ip4Chain, rules: []rule{
			r("udp sport 67 udp dport 68 drop  # DHCP server replies",
				l4proto(unix.IPPROTO_UDP), payload(expr.PayloadBaseTransportHeader, 0, 4, reg1), cmp(expr.CmpOpEq, reg1, thPorts(67, 68)), verdict(expr.VerdictDrop, "")),
			r("ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept  # DHCP client without an address",
				payload(expr.PayloadBaseNetworkHeader, 12, 8, reg1), cmp(expr.CmpOpEq, reg1, []byte{0, 0, 0, 0, 255, 255, 255, 255}),
				l4proto(unix.IPPROTO_UDP), payload(expr.PayloadBaseTransportHeader, 0, 4, reg1), cmp(expr.CmpOpEq, reg1, thPorts(68, 67)), verdict(expr.VerdictAccept, "")),
			r("iifname . ether saddr . ip saddr @ip4_ok accept",
				metaLoad(expr.MetaKeyIIFNAME, reg32(0)), payload(expr.PayloadBaseLLHeader, 6, 6, reg32(4)),
				payload(expr.PayloadBaseNetworkHeader, 12, 4, reg32(6)), lookup(reg32(0), ip4OK), verdict(expr.VerdictAccept, "")),
			r("drop", verdict(expr.VerdictDrop, "")),
		}},
		&chain{name: ip6Chain, rules: []rule{
			r("icmpv6 type nd-router-advert drop",
				l4proto(unix.IPPROTO_ICMPV6), payload(expr.PayloadBaseTransportHeader, 0, 1, reg1), cmp(expr.CmpOpEq, reg1, []byte{134}), verdict(expr.VerdictDrop, "")),
			r("udp sport 547 udp dport 546 drop  # DHCPv6 server replies",
				l4proto(unix.IPPROTO_UDP), payload(expr.PayloadBaseTransportHeader, 0, 4, reg1), cmp(expr.CmpOpEq, reg1, thPorts(547, 546)), verdict(expr.VerdictDrop, "")),
			r("ip6 saddr :: icmpv6 type nd-neighbor-solicit accept  # duplicate address detection",
				payload(expr.PayloadBaseNetworkHeader, 8, 16, reg1), cmp(expr.CmpOpEq, reg1, make([]byte, 16)),
				l4proto(unix.IPPROTO_ICMPV6), payload(expr.PayloadBaseTransportHeader, 0, 1, reg1), cmp(expr.CmpOpEq, reg1, []byte{135}), verdict(expr.VerdictAccept, "")),
			r("ip6 saddr :: icmpv6 type mld2-listener-report accept  # MLD during duplicate address detection",
				payload(expr.PayloadBaseNetworkHeader, 8, 16, reg1), cmp(expr.CmpOpEq, reg1, make([]byte, 16)),
				l4proto(unix.IPPROTO_ICMPV6), payload(expr.PayloadBaseTransportHeader, 0, 1, reg1), cmp(expr.CmpOpEq, reg1, []byte{143}), verdict(expr.VerdictAccept, "")),
			r("icmpv6 type nd-neighbor-advert iifname . ether saddr . icmpv6 target != @ip6_ok drop  # advertising others' addresses",
				l4proto(unix.IPPROTO_ICMPV6), payload(expr.PayloadBaseTransportHeader, 0, 1, reg1), cmp(expr.CmpOpEq, reg1, []byte{136}),
				metaLoad(expr.MetaKeyIIFNAME, reg32(0)), payload(expr.PayloadBaseLLHeader, 6, 6, reg32(4)),
				payload(expr.PayloadBaseTransportHeader, 8, 16, reg32(6)), lookupInv(reg32(0), ip6OK), verdict(expr.VerdictDrop, "")),
			r("iifname . ether saddr . ip6 saddr @ip6_ok accept",
				metaLoad(expr.MetaKeyIIFNAME, reg32(0)), payload(expr.PayloadBaseLLHeader, 6, 6, reg32(4)),
				payload(expr.PayloadBaseNetworkHeader, 8, 16, reg32(6)), lookup(reg32(0), ip6OK), verdict(expr.VerdictAccept, "")),
			r("drop", verdict(expr.VerdictDrop, "")),
		}},
	)
	return t
}

func (c *compiler) inetTable(rs Ruleset, ports []Port, cs map[string]*combo) *table {
	t := &table{family: nftables.TableFamilyINet, name: TableName}
	egress := c.addSet(t, &set{name: "egress", keyType: nftables.TypeMark, keyOrder: binaryutil.NativeEndian, isMap: true, dataType: nftables.TypeVerdict})
	ingress := c.addSet(t, &set{name: "ingress", keyType: nftables.TypeMark, keyOrder: binaryutil.NativeEndian, isMap: true, dataType: nftables.TypeVerdict})
	ndInSet := c.addSet(t, &set{name: "nd_in", keyType: nftables.TypeICMP6Type})
	ndOutSet := c.addSet(t, &set{name: "nd_out", keyType: nftables.TypeICMP6Type})
	for _, v := range ndIn {
		ndInSet.elems = append(ndInSet.elems, elem{key: []byte{v}, text: fmt.Sprint(v)})
	}
	for _, v := range ndOut {
		ndOutSet.elems = append(ndOutSet.elems, elem{key: []byte{v}, text: fmt.Sprint(v)})
	}
	zones := c.addSet(t, &set{name: "zones", keyType: nftables.TypeIFName, keyOrder: binaryutil.NativeEndian, isMap: true, dataType: typeZone})
	brs := make([]string, 0, len(rs.Zones))
	for br := range rs.Zones {
		brs = append(brs, br)
	}
	sort.Strings(brs)
	for _, br := range brs {
		zones.elems = append(zones.elems, elem{key: IfnameKey(br), val: native16(rs.Zones[br]), text: fmt.Sprintf("%q : %d", br, rs.Zones[br])})
	}

	// Remote group sets: the addresses of the ports in each group that a
	// rule refers to.
	groupIDs := make([]string, 0, len(rs.Groups))
	for id := range rs.Groups {
		groupIDs = append(groupIDs, id)
	}
	sort.Strings(groupIDs)
	remote := map[string]bool{}
	for _, id := range groupIDs {
		for _, r := range rs.Groups[id].Rules {
			if r.RemoteGroupID != "" {
				remote[r.RemoteGroupID] = true
			}
		}
	}
	remoteIDs := make([]string, 0, len(remote))
	for id := range remote {
		remoteIDs = append(remoteIDs, id)
	}
	sort.Strings(remoteIDs)
	for _, g := range remoteIDs {
		var pfxs []netip.Prefix
		for _, p := range ports {
			if !slices.Contains(p.Groups, g) {
				continue
			}
			for _, ip := range p.IPs {
				pfxs = append(pfxs, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			}
			for _, ap := range p.AddressPairs {
				pfxs = append(pfxs, ap.Prefix)
			}
		}
		s4 := c.addSet(t, &set{name: remoteSet(g, IPv4), keyType: nftables.TypeIPAddr, interval: true})
		s6 := c.addSet(t, &set{name: remoteSet(g, IPv6), keyType: nftables.TypeIP6Addr, interval: true})
		for _, r := range mergeRanges(pfxs) {
			s := s4
			if r.from.Is6() {
				s = s6
			}
			// An rbtree interval set holds a start element and, unless the
			// range runs to the last address, an end element one past it.
			s.elems = append(s.elems, elem{key: r.from.AsSlice(), text: r.String()})
			if next := r.to.Next(); next.IsValid() {
				s.elems = append(s.elems, elem{key: next.AsSlice(), intervalEnd: true, text: next.String() + " (end)"})
			}
		}
	}

	t.chains = append(t.chains,
		&chain{name: "zone", hook: nftables.ChainHookPrerouting, priority: nftables.ChainPriorityRef(prioZone), rules: []rule{
			r("ct zone set iifname map @zones  # bridged frames: iifname is the bridge",
				metaLoad(expr.MetaKeyIIFNAME, reg1), mapLookup(reg1, reg1, zones), &expr.Ct{Key: expr.CtKeyZONE, Register: reg1, SourceRegister: true}),
		}},
		&chain{name: "prerouting", hook: nftables.ChainHookPrerouting, priority: nftables.ChainPriorityRef(prioEgress), rules: []rule{
			r("meta mark vmap @egress  # from a port with port security: its groups' egress rules",
				metaLoad(expr.MetaKeyMARK, reg1), mapLookup(reg1, regVerdict, egress)),
		}},
		&chain{name: "forward", hook: nftables.ChainHookForward, priority: nftables.ChainPriorityRef(prioIngress), rules: []rule{
			r("meta mark vmap @ingress  # to a port with port security: its groups' ingress rules",
				metaLoad(expr.MetaKeyMARK, reg1), mapLookup(reg1, regVerdict, ingress)),
		}},
	)

	keys := make([]string, 0, len(cs))
	for k := range cs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return cs[keys[i]].mark < cs[keys[j]].mark })
	for _, k := range keys {
		cb := cs[k]
		for _, dir := range []Direction{Egress, Ingress} {
			m := egress
			if dir == Ingress {
				m = ingress
			}
			m.elems = append(m.elems, elem{
				key: Native32(cb.mark), verdict: &expr.Verdict{Kind: expr.VerdictJump, Chain: cb.chain(dir)},
				text: fmt.Sprintf("0x%08x : jump %s  # groups [%s]", cb.mark, cb.chain(dir), cb.key),
			})
			t.chains = append(t.chains, comboChain(cb, dir, ndInSet, ndOutSet))
		}
	}
	for _, id := range groupIDs {
		for _, dir := range []Direction{Egress, Ingress} {
			ch := &chain{name: groupChain(id, dir)}
			for _, rl := range rs.Groups[id].Rules {
				if rl.Direction == dir {
					ch.rules = append(ch.rules, ruleFor(rl, t))
				}
			}
			t.chains = append(t.chains, ch)
		}
	}
	// Groups that ports name but the Ruleset lacks: empty chains, so the
	// jumps resolve (and such a port gets nothing through).
	missing := map[string]bool{}
	for _, cb := range cs {
		for _, g := range cb.groups {
			if _, ok := rs.Groups[g]; !ok {
				missing[g] = true
			}
		}
	}
	missingIDs := make([]string, 0, len(missing))
	for g := range missing {
		missingIDs = append(missingIDs, g)
	}
	sort.Strings(missingIDs)
	for _, g := range missingIDs {
		t.chains = append(t.chains, &chain{name: groupChain(g, Egress)}, &chain{name: groupChain(g, Ingress)})
	}
	return t
}

// comboChain is the chain of one group list in one direction: conntrack,
// the always-allowed DHCP and neighbour discovery, each group's rules, then
// drop.
func comboChain(cb *combo, dir Direction, ndInSet, ndOutSet *set) *chain {
	ch := &chain{name: cb.chain(dir)}
	ch.rules = append(ch.rules,
		r("ct state established,related accept",
			ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept, "")))
	if dir == Egress {
		ch.rules = append(ch.rules,
			r("meta nfproto ipv6 icmpv6 type @nd_out accept",
				nfproto(unix.NFPROTO_IPV6), l4proto(unix.IPPROTO_ICMPV6), payload(expr.PayloadBaseTransportHeader, 0, 1, reg1), lookup(reg1, ndOutSet), verdict(expr.VerdictAccept, "")),
			r("meta nfproto ipv4 udp sport 68 udp dport 67 accept  # DHCP",
				nfproto(unix.NFPROTO_IPV4), l4proto(unix.IPPROTO_UDP), payload(expr.PayloadBaseTransportHeader, 0, 4, reg1), cmp(expr.CmpOpEq, reg1, thPorts(68, 67)), verdict(expr.VerdictAccept, "")),
			r("meta nfproto ipv6 udp sport 546 udp dport 547 accept  # DHCPv6",
				nfproto(unix.NFPROTO_IPV6), l4proto(unix.IPPROTO_UDP), payload(expr.PayloadBaseTransportHeader, 0, 4, reg1), cmp(expr.CmpOpEq, reg1, thPorts(546, 547)), verdict(expr.VerdictAccept, "")),
		)
	} else {
		ch.rules = append(ch.rules,
			r("meta nfproto ipv6 icmpv6 type @nd_in accept",
				nfproto(unix.NFPROTO_IPV6), l4proto(unix.IPPROTO_ICMPV6), payload(expr.PayloadBaseTransportHeader, 0, 1, reg1), lookup(reg1, ndInSet), verdict(expr.VerdictAccept, "")),
			r("meta nfproto ipv4 udp sport 67 udp dport 68 accept  # DHCP replies",
				nfproto(unix.NFPROTO_IPV4), l4proto(unix.IPPROTO_UDP), payload(expr.PayloadBaseTransportHeader, 0, 4, reg1), cmp(expr.CmpOpEq, reg1, thPorts(67, 68)), verdict(expr.VerdictAccept, "")),
			r("meta nfproto ipv6 udp sport 547 udp dport 546 accept  # DHCPv6 replies",
				nfproto(unix.NFPROTO_IPV6), l4proto(unix.IPPROTO_UDP), payload(expr.PayloadBaseTransportHeader, 0, 4, reg1), cmp(expr.CmpOpEq, reg1, thPorts(547, 546)), verdict(expr.VerdictAccept, "")),
		)
	}
	ch.rules = append(ch.rules,
		r("ct state invalid drop", ctState(expr.CtStateBitINVALID), verdict(expr.VerdictDrop, "")))
	for _, g := range cb.groups {
		ch.rules = append(ch.rules, r("jump "+groupChain(g, dir), verdict(expr.VerdictJump, groupChain(g, dir))))
	}
	ch.rules = append(ch.rules, r("drop", verdict(expr.VerdictDrop, "")))
	return ch
}

// ruleFor translates one security group rule.
func ruleFor(rl Rule, t *table) rule {
	var text []string
	var es []expr.Any
	v4 := rl.EtherType == IPv4
	if v4 {
		text = append(text, "meta nfproto ipv4")
		es = append(es, nfproto(unix.NFPROTO_IPV4)...)
	} else {
		text = append(text, "meta nfproto ipv6")
		es = append(es, nfproto(unix.NFPROTO_IPV6)...)
	}
	// The remote side: the source of ingress traffic, the destination of
	// egress traffic.
	off, n, fam, dirWord := uint32(12), uint32(4), "ip", "saddr"
	if !v4 {
		off, n, fam = 8, 16, "ip6"
	}
	if rl.Direction == Egress {
		off += n
		dirWord = "daddr"
	}
	switch {
	case rl.RemoteGroupID != "":
		s := t.set(remoteSet(rl.RemoteGroupID, rl.EtherType))
		text = append(text, fmt.Sprintf("%s %s @%s", fam, dirWord, s.name))
		es = append(es, payload(expr.PayloadBaseNetworkHeader, off, n, reg1), lookup(reg1, s))
	case rl.RemoteIPPrefix.IsValid() && rl.RemoteIPPrefix.Bits() > 0:
		p := rl.RemoteIPPrefix.Masked()
		text = append(text, fmt.Sprintf("%s %s %s", fam, dirWord, p))
		es = append(es, payload(expr.PayloadBaseNetworkHeader, off, n, reg1))
		if p.Bits() < p.Addr().BitLen() {
			mask := net.CIDRMask(p.Bits(), p.Addr().BitLen())
			es = append(es, &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: n, Mask: mask, Xor: make([]byte, n)})
		}
		es = append(es, cmp(expr.CmpOpEq, reg1, p.Addr().AsSlice()))
	}
	proto := rl.Protocol
	if !v4 && proto == ProtoICMP {
		proto = ProtoICMPv6
	}
	if proto != ProtoAny {
		text = append(text, fmt.Sprintf("meta l4proto %d", proto))
		es = append(es, l4proto(byte(proto))...)
	}
	switch {
	case portsProto(proto) && rl.PortMin != nil:
		lo, hi := *rl.PortMin, *rl.PortMin
		if rl.PortMax != nil {
			hi = *rl.PortMax
		}
		es = append(es, payload(expr.PayloadBaseTransportHeader, 2, 2, reg1))
		if lo == hi {
			text = append(text, fmt.Sprintf("th dport %d", lo))
			es = append(es, cmp(expr.CmpOpEq, reg1, BE16(uint16(lo))))
		} else {
			text = append(text, fmt.Sprintf("th dport %d-%d", lo, hi))
			es = append(es, &expr.Range{Op: expr.CmpOpEq, Register: reg1, FromData: BE16(uint16(lo)), ToData: BE16(uint16(hi))})
		}
	case (proto == ProtoICMP || proto == ProtoICMPv6) && rl.PortMin != nil:
		word := "icmp"
		if proto == ProtoICMPv6 {
			word = "icmpv6"
		}
		text = append(text, fmt.Sprintf("%s type %d", word, *rl.PortMin))
		es = append(es, payload(expr.PayloadBaseTransportHeader, 0, 1, reg1), cmp(expr.CmpOpEq, reg1, []byte{byte(*rl.PortMin)}))
		if rl.PortMax != nil {
			text = append(text, fmt.Sprintf("%s code %d", word, *rl.PortMax))
			es = append(es, payload(expr.PayloadBaseTransportHeader, 1, 1, reg1), cmp(expr.CmpOpEq, reg1, []byte{byte(*rl.PortMax)}))
		}
	}
	text = append(text, "accept")
	es = append(es, verdict(expr.VerdictAccept, ""))
	return rule{text: strings.Join(text, " "), exprs: es}
}

// Expression helpers.

// r builds a rule from expressions and runs of expressions ([]expr.Any).
func r(text string, parts ...any) rule {
	var es []expr.Any
	for _, p := range parts {
		switch p := p.(type) {
		case expr.Any:
			es = append(es, p)
		case []expr.Any:
			es = append(es, p...)
		default:
			panic(fmt.Sprintf("nft: rule part %T", p))
		}
	}
	return rule{text: text, exprs: es}
}

func reg32(i uint32) uint32 { return reg32base + i }

func metaLoad(k expr.MetaKey, reg uint32) expr.Any { return &expr.Meta{Key: k, Register: reg} }

func metaSet(k expr.MetaKey, reg uint32) expr.Any {
	return &expr.Meta{Key: k, Register: reg, SourceRegister: true}
}

func payload(base expr.PayloadBase, off, n, reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: base, Offset: off, Len: n}
}

func cmp(op expr.CmpOp, reg uint32, data []byte) expr.Any {
	return &expr.Cmp{Op: op, Register: reg, Data: data}
}

func lookup(reg uint32, s *set) expr.Any {
	return &expr.Lookup{SourceRegister: reg, SetName: s.name, SetID: s.id}
}

func lookupInv(reg uint32, s *set) expr.Any {
	return &expr.Lookup{SourceRegister: reg, SetName: s.name, SetID: s.id, Invert: true}
}

func mapLookup(reg, dreg uint32, s *set) expr.Any {
	return &expr.Lookup{SourceRegister: reg, DestRegister: dreg, IsDestRegSet: true, SetName: s.name, SetID: s.id}
}

func verdict(k expr.VerdictKind, chain string) expr.Any {
	return &expr.Verdict{Kind: k, Chain: chain}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{metaLoad(expr.MetaKeyL4PROTO, reg1), cmp(expr.CmpOpEq, reg1, []byte{p})}
}

func nfproto(p byte) []expr.Any {
	return []expr.Any{metaLoad(expr.MetaKeyNFPROTO, reg1), cmp(expr.CmpOpEq, reg1, []byte{p})}
}

func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: Native32(bits), Xor: Native32(0)},
		cmp(expr.CmpOpNeq, reg1, Native32(0)),
	}
}

// thPorts is a transport header's first 4 bytes: source and destination port.
func thPorts(src, dst uint16) []byte { return append(BE16(src), BE16(dst)...) }
