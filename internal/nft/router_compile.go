package nft

import (
	stdcmp "cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
)

// The router table, in one picture (see testdata/router.golden for all of
// it):
//
//	prerouting (nat, -100): metadata redirect; dnat via @fip_dnat; via @fwd; via @fwd_range
//	postrouting (nat, 100): hairpin snat via @fip_snat, else masquerade; snat via @fip_snat; snat to GatewayIP
//	forward (filter, 0):    ip daddr 169.254.0.0/16 drop
//	input (filter, 0):      the metadata port only for redirected connections (ct mark)
//
// Each chain has a handful of rules, each one at most one hash or set
// lookup: the cost of a new connection does not grow with the number of
// floating IPs or forwards (and NAT chains see only the first packet of a
// connection; the rest follow conntrack).
//
// Port forwards are looked up by protocol . address . port:
//
//   - a single port, and every port of a range mapped port for port to a
//     shifted range (8000-8009 -> 9000-9009), is one element of the hash map
//     @fwd: O(1) per lookup, whatever its size. Shifted ranges are expanded
//     (one element per port) because a map value is one value for a whole
//     interval and nftables cannot add an offset to a port (the kernel's
//     NF_NAT_RANGE_PROTO_OFFSET exists but nft_nat gives it no base
//     register); maxExpandedPorts bounds the expansion.
//   - a range mapped to one port (N:1), or to the same ports (7000-7009 ->
//     7000-7009), is one element of the interval map @fwd_range whose value
//     is address . first port . last port: the kernel keeps a destination
//     port that is already inside the NAT range (nf_nat's get_unique_tuple),
//     which is exactly port for port. That map (pipapo) is only consulted
//     when @fwd missed, and holds one element per such range, however wide.

// Priorities of the router table's base chains (as nft's dstnat, srcnat and
// filter).
const (
	prioDstNAT       = -100
	prioSrcNAT       = 100
	prioRouterFilter = 0
)

// maxExpandedPorts bounds the elements that shifted port ranges expand to in
// one router (a whole port space of them): each costs about 100 bytes of
// kernel memory and some Apply time, and the bound keeps one tenant from
// making a router's table arbitrarily large. Single-port forwards are not
// counted.
const maxExpandedPorts = 65536

// metadataCtMark marks the connections the metadata redirect made, so that
// the input chain lets only those reach the metadata port. (Matching `ct
// original ip daddr 169.254.169.254` instead would be neater, but
// google/nftables v0.3.0 encodes the ct direction as 4 bytes and cannot
// read back the 1-byte attribute the kernel returns, so such a rule breaks
// reading the table.) nimbo owns the conntrack mark in router namespaces.
const metadataCtMark = 0x6e6d6431 // "nmd1"

// ipsDstNAT is IPS_DST_NAT, the conntrack status bit of DNATed connections.
const ipsDstNAT = 1 << 5

var (
	typeProtoAddrPort = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeIPAddr, nftables.TypeInetService)
	typeAddrPort      = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	typeAddrPortPort  = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService, nftables.TypeInetService)
)

// fwdSpan is a Forward with its defaults filled in.
type fwdSpan struct {
	proto        byte
	ext, intl    netip.Addr
	eMin, eMax   uint16
	iMin, iMax   uint16
	expandedSize int // elements in @fwd if expanded, else 0
}

func (f fwdSpan) size() int { return int(f.eMax) - int(f.eMin) + 1 }

func protoName(p byte) string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	}
	return fmt.Sprint(p)
}

// routable reports whether a may be a NAT address: a unicast IPv4 address
// that is not loopback or link-local.
func routable(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback() &&
		!LinkLocal.Contains(a) && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// routerPlan is RouterRules validated and normalised.
type routerPlan struct {
	gwIface  string
	gwIP     netip.Addr
	snat     bool
	internal []ipRange
	fips     []FloatingIP // by External
	fwds     []fwdSpan    // by protocol, External, first port
	mdPort   uint16       // 0: no metadata redirect
}

func planRouter(rr RouterRules) (*routerPlan, error) {
	p := &routerPlan{gwIface: rr.GatewayIface, snat: rr.SNAT}
	if rr.GatewayIface != "" {
		if err := hostnet.ValidIfName(rr.GatewayIface); err != nil {
			return nil, fmt.Errorf("nft: router gateway: %w", err)
		}
		p.gwIP = rr.GatewayIP.Unmap()
		if !routable(p.gwIP) {
			return nil, errdefs.Invalidf("nft: router gateway IP %s is not a unicast IPv4 address", rr.GatewayIP)
		}
	} else {
		if rr.GatewayIP.IsValid() {
			return nil, errdefs.Invalidf("nft: router gateway IP %s without a gateway interface", rr.GatewayIP)
		}
		if len(rr.FloatingIPs) > 0 || len(rr.Forwards) > 0 {
			return nil, errdefs.Invalidf("nft: floating IPs and port forwards need a router gateway")
		}
	}
	var v4 []netip.Prefix
	for _, pfx := range rr.Internal {
		if !pfx.IsValid() {
			return nil, errdefs.Invalidf("nft: router internal subnet %v is invalid", pfx)
		}
		if pfx.Addr().Unmap().Is4() {
			v4 = append(v4, pfx)
		}
	}
	p.internal = mergeRanges(v4)

	exts := map[netip.Addr]bool{}
	ints := map[netip.Addr]bool{}
	for _, f := range rr.FloatingIPs {
		f := FloatingIP{External: f.External.Unmap(), Internal: f.Internal.Unmap()}
		if !routable(f.External) || !routable(f.Internal) {
			return nil, errdefs.Invalidf("nft: floating IP %s -> %s: both must be unicast IPv4 addresses", f.External, f.Internal)
		}
		if f.External == p.gwIP {
			return nil, errdefs.Invalidf("nft: floating IP %s is the router's gateway IP", f.External)
		}
		if exts[f.External] {
			return nil, errdefs.Invalidf("nft: floating IP %s listed twice", f.External)
		}
		if ints[f.Internal] {
			return nil, errdefs.Invalidf("nft: %s has two floating IPs", f.Internal)
		}
		exts[f.External], ints[f.Internal] = true, true
		p.fips = append(p.fips, f)
	}
	slices.SortFunc(p.fips, func(a, b FloatingIP) int { return a.External.Compare(b.External) })

	expanded := 0
	p.fwds = make([]fwdSpan, 0, len(rr.Forwards))
	for _, f := range rr.Forwards {
		s := fwdSpan{ext: f.External.Unmap(), intl: f.Internal.Unmap(), eMin: f.ExternalPortMin, eMax: f.ExternalPortMax,
			iMin: f.InternalPortMin, iMax: f.InternalPortMax}
		if s.eMax == 0 {
			s.eMax = s.eMin
		}
		if s.iMax == 0 {
			s.iMax = s.iMin
		}
		invalid := func(format string, args ...any) error {
			what := fmt.Sprintf("port forward %d %s:%d-%d -> %s:%d-%d", f.Protocol, f.External, s.eMin, s.eMax, f.Internal, s.iMin, s.iMax)
			return errdefs.Invalidf("nft: %s: %s", what, fmt.Sprintf(format, args...))
		}
		switch f.Protocol {
		case ProtoTCP, ProtoUDP:
			s.proto = byte(f.Protocol)
		default:
			return nil, invalid("protocol must be TCP (6) or UDP (17)")
		}
		if !routable(s.ext) || !routable(s.intl) {
			return nil, invalid("addresses must be unicast IPv4 addresses")
		}
		if exts[s.ext] {
			return nil, invalid("%s is a floating IP (1:1 already)", s.ext)
		}
		if s.eMin == 0 || s.iMin == 0 || s.eMax < s.eMin || s.iMax < s.iMin {
			return nil, invalid("invalid port range")
		}
		isize := int(s.iMax) - int(s.iMin) + 1
		if isize != 1 && isize != s.size() {
			return nil, invalid("the internal range must be one port or as long as the external one")
		}
		if s.size() > 1 && isize > 1 && s.iMin != s.eMin {
			s.expandedSize = s.size()
			expanded += s.size()
		}
		p.fwds = append(p.fwds, s)
	}
	if expanded > maxExpandedPorts {
		return nil, errdefs.Invalidf("nft: port ranges forwarded to shifted ranges cover %d ports, more than %d", expanded, maxExpandedPorts)
	}
	slices.SortFunc(p.fwds, func(a, b fwdSpan) int {
		return stdcmp.Or(stdcmp.Compare(a.proto, b.proto), a.ext.Compare(b.ext), stdcmp.Compare(a.eMin, b.eMin))
	})
	for i := 1; i < len(p.fwds); i++ {
		a, b := p.fwds[i-1], p.fwds[i]
		if a.proto == b.proto && a.ext == b.ext && b.eMin <= a.eMax {
			return nil, errdefs.Invalidf("nft: port forwards overlap on %s %s:%d-%d", protoName(a.proto), a.ext, b.eMin, min(a.eMax, b.eMax))
		}
	}
	if rr.Metadata != nil {
		if rr.Metadata.Port == 0 {
			return nil, errdefs.Invalidf("nft: metadata port 0")
		}
		p.mdPort = rr.Metadata.Port
	}
	return p, nil
}

// compileRouter turns RouterRules into the program RouterNAT.Apply installs.
// The sets and chains are always the same (some empty), so that the table's
// layout never changes with the rules.
func compileRouter(rr RouterRules) (*program, error) {
	p, err := planRouter(rr)
	if err != nil {
		return nil, err
	}
	c := &compiler{}
	t := &table{family: nftables.TableFamilyIPv4, name: RouterTableName}
	internal := c.addSet(t, &set{name: "internal", keyType: nftables.TypeIPAddr, interval: true})
	fipDNAT := c.addSet(t, &set{name: "fip_dnat", keyType: nftables.TypeIPAddr, isMap: true, dataType: nftables.TypeIPAddr})
	fipSNAT := c.addSet(t, &set{name: "fip_snat", keyType: nftables.TypeIPAddr, isMap: true, dataType: nftables.TypeIPAddr})
	fwd := c.addSet(t, &set{name: "fwd", keyType: typeProtoAddrPort, concat: true, isMap: true, dataType: typeAddrPort})
	fwdRange := c.addSet(t, &set{name: "fwd_range", keyType: typeProtoAddrPort, concat: true, interval: true,
		isMap: true, dataType: typeAddrPortPort})

	for _, r := range p.internal {
		internal.elems = append(internal.elems, elem{key: r.from.AsSlice(), text: r.String()})
		if next := r.to.Next(); next.IsValid() {
			internal.elems = append(internal.elems, elem{key: next.AsSlice(), intervalEnd: true, text: next.String() + " (end)"})
		}
	}
	for _, f := range p.fips {
		fipDNAT.elems = append(fipDNAT.elems, elem{key: f.External.AsSlice(), val: f.Internal.AsSlice(),
			text: fmt.Sprintf("%s : %s", f.External, f.Internal)})
	}
	bySrc := slices.Clone(p.fips)
	slices.SortFunc(bySrc, func(a, b FloatingIP) int { return a.Internal.Compare(b.Internal) })
	for _, f := range bySrc {
		fipSNAT.elems = append(fipSNAT.elems, elem{key: f.Internal.AsSlice(), val: f.External.AsSlice(),
			text: fmt.Sprintf("%s : %s", f.Internal, f.External)})
	}
	nfwd := 0
	for _, f := range p.fwds {
		if f.size() == 1 || f.expandedSize > 0 {
			nfwd += f.size()
		}
	}
	fwd.elems = make([]elem, 0, nfwd)
	for _, f := range p.fwds {
		key := func(port uint16) []byte { return ConcatKey([]byte{f.proto}, f.ext.AsSlice(), BE16(port)) }
		switch {
		case f.size() == 1 || f.expandedSize > 0:
			for k := 0; k < f.size(); k++ {
				ep, ip := f.eMin+uint16(k), f.iMin+uint16(k)
				fwd.elems = append(fwd.elems, elem{key: key(ep), val: ConcatKey(f.intl.AsSlice(), BE16(ip)),
					text: fmt.Sprintf("%s . %s . %d : %s . %d", protoName(f.proto), f.ext, ep, f.intl, ip)})
			}
		default: // N:1, or the same ports
			note := "same ports"
			if f.iMin == f.iMax {
				note = "all to one port"
			}
			fwdRange.elems = append(fwdRange.elems, elem{key: key(f.eMin), keyEnd: key(f.eMax),
				val:  ConcatKey(f.intl.AsSlice(), BE16(f.iMin), BE16(f.iMax)),
				text: fmt.Sprintf("%s . %s . %d-%d : %s . %d . %d  # %s", protoName(f.proto), f.ext, f.eMin, f.eMax, f.intl, f.iMin, f.iMax, note)})
		}
	}

	pre := &chain{name: "prerouting", hook: nftables.ChainHookPrerouting, priority: nftables.ChainPriorityRef(prioDstNAT), kind: nftables.ChainTypeNAT}
	post := &chain{name: "postrouting", hook: nftables.ChainHookPostrouting, priority: nftables.ChainPriorityRef(prioSrcNAT), kind: nftables.ChainTypeNAT}
	fwdChain := &chain{name: "forward", hook: nftables.ChainHookForward, priority: nftables.ChainPriorityRef(prioRouterFilter)}
	input := &chain{name: "input", hook: nftables.ChainHookInput, priority: nftables.ChainPriorityRef(prioRouterFilter)}
	t.chains = append(t.chains, pre, post, fwdChain, input)

	gw := p.gwIface
	if p.mdPort != 0 {
		var text string
		var es []expr.Any
		if gw != "" {
			text = fmt.Sprintf("iifname != %q ", gw)
			es = append(es, metaLoad(expr.MetaKeyIIFNAME, reg1), cmp(expr.CmpOpNeq, reg1, IfnameKey(gw)))
		}
		pre.rules = append(pre.rules, r(text+fmt.Sprintf("ip daddr %s tcp dport 80 ct mark set 0x%08x redirect to :%d  # metadata, from internal legs", MetadataAddr, metadataCtMark, p.mdPort),
			es,
			payload(expr.PayloadBaseNetworkHeader, 16, 4, reg1), cmp(expr.CmpOpEq, reg1, MetadataAddr.AsSlice()),
			l4proto(unix.IPPROTO_TCP),
			payload(expr.PayloadBaseTransportHeader, 2, 2, reg1), cmp(expr.CmpOpEq, reg1, BE16(80)),
			&expr.Immediate{Register: reg1, Data: Native32(metadataCtMark)}, &expr.Ct{Key: expr.CtKeyMARK, Register: reg1, SourceRegister: true},
			&expr.Immediate{Register: reg1, Data: BE16(p.mdPort)},
			&expr.Redir{RegisterProtoMin: reg1, Flags: expr.NF_NAT_RANGE_PROTO_SPECIFIED}))
		input.rules = append(input.rules,
			r(fmt.Sprintf("tcp dport %d ct mark 0x%08x accept  # redirected metadata requests", p.mdPort, metadataCtMark),
				l4proto(unix.IPPROTO_TCP),
				payload(expr.PayloadBaseTransportHeader, 2, 2, reg1), cmp(expr.CmpOpEq, reg1, BE16(p.mdPort)),
				&expr.Ct{Key: expr.CtKeyMARK, Register: reg1}, cmp(expr.CmpOpEq, reg1, Native32(metadataCtMark)),
				verdict(expr.VerdictAccept, "")),
			r(fmt.Sprintf("tcp dport %d drop  # the metadata listener only through the redirect", p.mdPort),
				l4proto(unix.IPPROTO_TCP),
				payload(expr.PayloadBaseTransportHeader, 2, 2, reg1), cmp(expr.CmpOpEq, reg1, BE16(p.mdPort)),
				verdict(expr.VerdictDrop, "")))
	}
	if gw != "" {
		fwdKey := []expr.Any{
			metaLoad(expr.MetaKeyL4PROTO, reg32(0)),
			payload(expr.PayloadBaseNetworkHeader, 16, 4, reg32(1)),
			payload(expr.PayloadBaseTransportHeader, 2, 2, reg32(2)),
		}
		pre.rules = append(pre.rules,
			r("dnat ip to ip daddr map @fip_dnat  # floating IPs, arriving on any leg (hairpin)",
				payload(expr.PayloadBaseNetworkHeader, 16, 4, reg1), mapLookup(reg1, reg1, fipDNAT),
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1}),
			r("dnat ip to meta l4proto . ip daddr . th dport map @fwd  # port forwards, arriving on any leg",
				fwdKey, mapLookup(reg32(0), reg32(0), fwd),
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg32(0), RegProtoMin: reg32(1), Specified: true}),
			r("dnat ip to meta l4proto . ip daddr . th dport map @fwd_range  # port-range forwards (N:1, same ports)",
				fwdKey, mapLookup(reg32(0), reg32(0), fwdRange),
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg32(0), RegProtoMin: reg32(1), RegProtoMax: reg32(2), Specified: true}),
		)
		hairpin := []expr.Any{
			&expr.Ct{Key: expr.CtKeySTATUS, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: Native32(ipsDstNAT), Xor: Native32(0)},
			cmp(expr.CmpOpNeq, reg1, Native32(0)),
			metaLoad(expr.MetaKeyOIFNAME, reg1), cmp(expr.CmpOpNeq, reg1, IfnameKey(gw)),
			payload(expr.PayloadBaseNetworkHeader, 12, 4, reg1), lookup(reg1, internal),
		}
		post.rules = append(post.rules,
			r(fmt.Sprintf("ct status dnat oifname != %q ip saddr @internal snat ip to ip saddr map @fip_snat  # hairpin from a host with a floating IP", gw),
				hairpin, mapLookup(reg1, reg1, fipSNAT),
				&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1}),
			r(fmt.Sprintf("ct status dnat oifname != %q ip saddr @internal masquerade  # hairpin from other hosts: the router's address on the leg", gw),
				hairpin, &expr.Masq{}),
			r(fmt.Sprintf("oifname %q snat ip to ip saddr map @fip_snat  # floating IPs", gw),
				metaLoad(expr.MetaKeyOIFNAME, reg1), cmp(expr.CmpOpEq, reg1, IfnameKey(gw)),
				payload(expr.PayloadBaseNetworkHeader, 12, 4, reg1), mapLookup(reg1, reg1, fipSNAT),
				&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1}),
		)
		if p.snat {
			post.rules = append(post.rules,
				r(fmt.Sprintf("oifname %q ip saddr @internal snat ip to %s", gw, p.gwIP),
					metaLoad(expr.MetaKeyOIFNAME, reg1), cmp(expr.CmpOpEq, reg1, IfnameKey(gw)),
					payload(expr.PayloadBaseNetworkHeader, 12, 4, reg1), lookup(reg1, internal),
					&expr.Immediate{Register: reg1, Data: p.gwIP.AsSlice()},
					&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1}))
		}
	}
	fwdChain.rules = append(fwdChain.rules,
		r(fmt.Sprintf("ip daddr %s drop  # never forwarded: no guest reaches a link-local service beyond the router", LinkLocal),
			payload(expr.PayloadBaseNetworkHeader, 16, 4, reg1),
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: []byte{255, 255, 0, 0}, Xor: make([]byte, 4)},
			cmp(expr.CmpOpEq, reg1, LinkLocal.Addr().AsSlice()),
			verdict(expr.VerdictDrop, "")))
	return &program{tables: []*table{t}}, nil
}
