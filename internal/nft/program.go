package nft

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// A program is what Apply wants the kernel to hold: nimbo's tables with
// their sets (and elements) and chains (and rules). compile builds it from a
// Ruleset; render prints it for golden tests; apply diffs it with the kernel.
type program struct {
	tables []*table
}

type table struct {
	family nftables.TableFamily
	name   string
	sets   []*set   // in creation order
	chains []*chain // in creation order: base chains first
}

func (t *table) set(name string) *set {
	for _, s := range t.sets {
		if s.name == name {
			return s
		}
	}
	return nil
}

type set struct {
	id       uint32 // unique within a batch, so rules can refer to a set created in it
	name     string
	keyType  nftables.SetDatatype
	keyOrder binaryutil.ByteOrder // for nft's display only
	dataType nftables.SetDatatype // maps
	isMap    bool
	interval bool
	concat   bool
	constant bool
	elems    []elem
}

func (s *set) nft(t *nftables.Table) *nftables.Set {
	return &nftables.Set{
		Table:         t,
		ID:            s.id,
		Name:          s.name,
		IsMap:         s.isMap,
		Interval:      s.interval,
		Concatenation: s.concat,
		KeyType:       s.keyType,
		DataType:      s.dataType,
		KeyByteOrder:  s.keyOrder,
	}
}

type elem struct {
	key, keyEnd []byte
	intervalEnd bool
	val         []byte        // maps
	verdict     *expr.Verdict // verdict maps
	text        string        // readable form, for golden tests
}

// id identifies an element with its value, for diffing: a key whose value
// changes is deleted and added again.
func (e elem) id() string {
	var b strings.Builder
	b.WriteString(hex.EncodeToString(e.key))
	b.WriteByte('-')
	b.WriteString(hex.EncodeToString(e.keyEnd))
	if e.intervalEnd {
		b.WriteString("/end")
	}
	b.WriteByte('=')
	b.WriteString(hex.EncodeToString(e.val))
	if e.verdict != nil {
		fmt.Fprintf(&b, "%d:%s", e.verdict.Kind, e.verdict.Chain)
	}
	return b.String()
}

func (e elem) nft() nftables.SetElement {
	return nftables.SetElement{Key: e.key, KeyEnd: e.keyEnd, IntervalEnd: e.intervalEnd, Val: e.val, VerdictData: e.verdict}
}

type chain struct {
	name     string
	hook     *nftables.ChainHook // nil for a regular chain
	priority *nftables.ChainPriority
	kind     nftables.ChainType // of a base chain; "" means filter
	rules    []rule
}

// chainType is the base chain's type: filter unless kind says otherwise.
func (c *chain) chainType() nftables.ChainType {
	if c.kind == "" {
		return nftables.ChainTypeFilter
	}
	return c.kind
}

func (c *chain) nft(t *nftables.Table) *nftables.Chain {
	ch := &nftables.Chain{Name: c.name, Table: t}
	if c.hook != nil {
		accept := nftables.ChainPolicyAccept
		ch.Hooknum = c.hook
		ch.Priority = c.priority
		ch.Type = c.chainType()
		ch.Policy = &accept
	}
	return ch
}

// header is the chain's definition line, part of its fingerprint.
func (c *chain) header(family nftables.TableFamily) string {
	if c.hook == nil {
		return "chain " + c.name
	}
	return fmt.Sprintf("chain %s { type %s hook %s priority %d; policy accept }", c.name, c.chainType(), HookName(*c.hook, family), *c.priority)
}

// fingerprint identifies the chain's whole content. Apply stores it in the
// first rule's comment and rewrites a chain only when it differs.
func (c *chain) fingerprint(family nftables.TableFamily) string {
	h := sha256.New()
	fmt.Fprintln(h, c.header(family))
	for _, r := range c.rules {
		fmt.Fprintln(h, r.text)
		fmt.Fprintln(h, DumpExprs(r.exprs))
	}
	return fpPrefix + hex.EncodeToString(h.Sum(nil)[:16])
}

// fpPrefix starts the comment of a chain's first rule.
const fpPrefix = "nimbo fp="

type rule struct {
	text  string // nft-like rendering, for golden tests and readers
	exprs []expr.Any
}

// HookName is nft's name of a netfilter hook.
func HookName(h nftables.ChainHook, family nftables.TableFamily) string {
	switch h {
	case unix.NF_INET_PRE_ROUTING:
		return "prerouting"
	case unix.NF_INET_LOCAL_IN:
		return "input"
	case unix.NF_INET_FORWARD:
		return "forward"
	case unix.NF_INET_LOCAL_OUT:
		return "output"
	case unix.NF_INET_POST_ROUTING:
		return "postrouting"
	}
	return fmt.Sprintf("hook%d", h)
}

// FamilyName is nft's name of a table family.
func FamilyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	}
	return fmt.Sprintf("family%d", f)
}

// render prints the program: every table, set (with its elements) and chain
// (with each rule's readable form and the exact expressions sent to the
// kernel, in the style of `nft --debug=netlink`).
func (p *program) render() string {
	var b strings.Builder
	for _, t := range p.tables {
		fmt.Fprintf(&b, "table %s %s\n", FamilyName(t.family), t.name)
		for _, s := range t.sets {
			kind := "set"
			typ := s.keyType.Name
			if s.isMap {
				kind = "map"
				typ += " : " + s.dataType.Name
			}
			var flags []string
			if s.interval {
				flags = append(flags, "interval")
			}
			if s.concat {
				flags = append(flags, "concat")
			}
			if s.constant {
				flags = append(flags, "constant")
			}
			fmt.Fprintf(&b, "\t%s %s { type %s", kind, s.name, typ)
			if len(flags) > 0 {
				fmt.Fprintf(&b, "; flags %s", strings.Join(flags, ","))
			}
			b.WriteString(" }\n")
			for _, e := range s.elems {
				fmt.Fprintf(&b, "\t\t%s\n", e.text)
			}
		}
		for _, c := range t.chains {
			fmt.Fprintf(&b, "\t%s\n", c.header(t.family))
			for _, r := range c.rules {
				fmt.Fprintf(&b, "\t\t%s\n\t\t\t%s\n", r.text, DumpExprs(r.exprs))
			}
		}
	}
	return b.String()
}

// Registers. Single values go to the 16-byte register 1; concatenations to
// consecutive 4-byte registers from reg32(0) on.
const (
	regVerdict = 0
	reg1       = 1
	reg32base  = 8 // NFT_REG32_00
)

func regName(r uint32) string {
	switch {
	case r == 0:
		return "reg 0"
	case r < reg32base:
		return fmt.Sprintf("reg %d", r)
	}
	return fmt.Sprintf("reg32 %d", r-reg32base)
}

func metaKeyName(k expr.MetaKey) string {
	switch k {
	case expr.MetaKeyIIFNAME:
		return "iifname"
	case expr.MetaKeyOIFNAME:
		return "oifname"
	case expr.MetaKeyMARK:
		return "mark"
	case expr.MetaKeyNFPROTO:
		return "nfproto"
	case expr.MetaKeyL4PROTO:
		return "l4proto"
	case expr.MetaKeyPROTOCOL:
		return "protocol"
	}
	return fmt.Sprintf("meta%d", k)
}

func ctKeyName(k expr.CtKey) string {
	switch k {
	case expr.CtKeySTATE:
		return "state"
	case expr.CtKeyZONE:
		return "zone"
	case expr.CtKeySTATUS:
		return "status"
	case expr.CtKeyMARK:
		return "mark"
	case expr.CtKeySRC:
		return "src"
	case expr.CtKeyDST:
		return "dst"
	}
	return fmt.Sprintf("ct%d", k)
}

func payloadBaseName(b expr.PayloadBase) string {
	switch b {
	case expr.PayloadBaseLLHeader:
		return "link"
	case expr.PayloadBaseNetworkHeader:
		return "network"
	case expr.PayloadBaseTransportHeader:
		return "transport"
	}
	return fmt.Sprintf("base%d", b)
}

func verdictName(v expr.VerdictKind) string {
	switch v {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictJump:
		return "jump"
	case expr.VerdictGoto:
		return "goto"
	case expr.VerdictReturn:
		return "return"
	}
	return fmt.Sprintf("verdict%d", v)
}

// DumpExprs prints expressions like `nft --debug=netlink` does; the golden
// tests of nimbo's tables (firewall, router NAT, underlays) compare it.
func DumpExprs(es []expr.Any) string {
	parts := make([]string, 0, len(es))
	for _, e := range es {
		var s string
		switch e := e.(type) {
		case *expr.Meta:
			if e.SourceRegister {
				s = fmt.Sprintf("meta set %s with %s", metaKeyName(e.Key), regName(e.Register))
			} else {
				s = fmt.Sprintf("meta load %s => %s", metaKeyName(e.Key), regName(e.Register))
			}
		case *expr.Ct:
			if e.SourceRegister {
				s = fmt.Sprintf("ct set %s with %s", ctKeyName(e.Key), regName(e.Register))
			} else {
				s = fmt.Sprintf("ct load %s => %s", ctKeyName(e.Key), regName(e.Register))
			}
			switch e.Key {
			case expr.CtKeySRC, expr.CtKeyDST, expr.CtKeyPROTOSRC, expr.CtKeyPROTODST:
				s += [2]string{" , dir original", " , dir reply"}[e.Direction&1]
			}
		case *expr.Payload:
			s = fmt.Sprintf("payload load %db @ %s header + %d => %s", e.Len, payloadBaseName(e.Base), e.Offset, regName(e.DestRegister))
		case *expr.Cmp:
			op := map[expr.CmpOp]string{expr.CmpOpEq: "eq", expr.CmpOpNeq: "neq", expr.CmpOpLt: "lt", expr.CmpOpLte: "lte", expr.CmpOpGt: "gt", expr.CmpOpGte: "gte"}[e.Op]
			s = fmt.Sprintf("cmp %s %s 0x%x", op, regName(e.Register), e.Data)
		case *expr.Range:
			s = fmt.Sprintf("range eq %s 0x%x 0x%x", regName(e.Register), e.FromData, e.ToData)
		case *expr.Bitwise:
			s = fmt.Sprintf("bitwise %s = (%s & 0x%x) ^ 0x%x", regName(e.DestRegister), regName(e.SourceRegister), e.Mask, e.Xor)
		case *expr.Lookup:
			s = fmt.Sprintf("lookup %s set %s", regName(e.SourceRegister), e.SetName)
			if e.IsDestRegSet {
				s += " dreg " + regName(e.DestRegister)
			}
			if e.Invert {
				s += " 0x1"
			}
		case *expr.Immediate:
			s = fmt.Sprintf("immediate %s 0x%x", regName(e.Register), e.Data)
		case *expr.Verdict:
			s = "immediate reg 0 " + verdictName(e.Kind)
			if e.Chain != "" {
				s += " -> " + e.Chain
			}
		case *expr.Counter:
			s = "counter"
		case *expr.NAT:
			s = dumpNAT(e)
		case *expr.Redir:
			s = "redir"
			if e.RegisterProtoMin != 0 {
				s += " proto_min " + regName(e.RegisterProtoMin)
			}
			if e.RegisterProtoMax != 0 {
				s += " proto_max " + regName(e.RegisterProtoMax)
			}
			if e.Flags != 0 {
				s += fmt.Sprintf(" flags 0x%x", e.Flags)
			}
		case *expr.Masq:
			s = "masq"
		default:
			s = fmt.Sprintf("%T", e)
		}
		parts = append(parts, "[ "+s+" ]")
	}
	return strings.Join(parts, " ")
}

// dumpNAT prints a nat expression like `nft --debug=netlink` does.
func dumpNAT(e *expr.NAT) string {
	s := "nat snat"
	if e.Type == expr.NATTypeDestNAT {
		s = "nat dnat"
	}
	s += " " + FamilyName(nftables.TableFamily(e.Family))
	for _, f := range []struct {
		name string
		reg  uint32
	}{{"addr_min", e.RegAddrMin}, {"addr_max", e.RegAddrMax}, {"proto_min", e.RegProtoMin}, {"proto_max", e.RegProtoMax}} {
		if f.reg != 0 {
			s += " " + f.name + " " + regName(f.reg)
		}
	}
	var flags uint32
	if e.Specified {
		flags |= expr.NF_NAT_RANGE_PROTO_SPECIFIED
	}
	if e.Persistent {
		flags |= expr.NF_NAT_RANGE_PERSISTENT
	}
	if e.Random {
		flags |= expr.NF_NAT_RANGE_PROTO_RANDOM
	}
	if e.FullyRandom {
		flags |= expr.NF_NAT_RANGE_PROTO_RANDOM_FULLY
	}
	if e.Prefix {
		flags |= expr.NF_NAT_RANGE_PREFIX
	}
	if flags != 0 {
		s += fmt.Sprintf(" flags 0x%x", flags)
	}
	return s
}

// Encodings of keys and values.

// IfnameKey encodes an interface name as a set key (IFNAMSIZ, zero-padded).
func IfnameKey(name string) []byte {
	b := make([]byte, 16) // IFNAMSIZ, zero-padded
	copy(b, name)
	return b
}

func pad4(b []byte) []byte {
	if n := len(b) % 4; n != 0 {
		return append(append([]byte{}, b...), make([]byte, 4-n)...)
	}
	return b
}

// ConcatKey joins the parts of a concatenated key or value, each padded to
// 4 bytes.
func ConcatKey(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, pad4(p)...)
	}
	return out
}

// Native32 encodes a host-order 32-bit value (marks, ct state and status
// bits).
func Native32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}

func native16(v uint16) []byte {
	b := make([]byte, 2)
	binary.NativeEndian.PutUint16(b, v)
	return b
}

// BE16 encodes a port (network order).
func BE16(v uint16) []byte {
	b := make([]byte, 2)
	binary.BigEndian.PutUint16(b, v)
	return b
}
