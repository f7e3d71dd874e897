package nftprog

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables/expr"
)

// Registers. Single values go to the 16-byte register 1; concatenations to
// consecutive 4-byte registers from Reg32(0) on (Reg32(0) is the first
// quarter of register 1).
const (
	Reg1      = 1
	reg32base = 8 // NFT_REG32_00
)

// Reg32 is the i-th 4-byte register.
func Reg32(i uint32) uint32 { return reg32base + i }

// R builds a rule from expressions and slices of them.
func R(text string, parts ...any) Rule {
	var es []expr.Any
	for _, p := range parts {
		switch p := p.(type) {
		case expr.Any:
			es = append(es, p)
		case []expr.Any:
			es = append(es, p...)
		default:
			panic(fmt.Sprintf("nftprog: rule part %T", p))
		}
	}
	return Rule{Text: text, Exprs: es}
}

// Meta loads a meta key into reg.
func Meta(k expr.MetaKey, reg uint32) expr.Any { return &expr.Meta{Key: k, Register: reg} }

// Payload loads n bytes at off of a header into reg.
func Payload(base expr.PayloadBase, off, n, reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: base, Offset: off, Len: n}
}

// Cmp compares reg with data.
func Cmp(op expr.CmpOp, reg uint32, data []byte) expr.Any {
	return &expr.Cmp{Op: op, Register: reg, Data: data}
}

// In matches when reg's content is in s.
func In(reg uint32, s *Set) expr.Any {
	return &expr.Lookup{SourceRegister: reg, SetName: s.Name, SetID: s.ID}
}

// NotIn matches when reg's content is not in s.
func NotIn(reg uint32, s *Set) expr.Any {
	return &expr.Lookup{SourceRegister: reg, SetName: s.Name, SetID: s.ID, Invert: true}
}

// MapTo looks reg's content up in map s and loads the value into dreg; no
// match ends the rule.
func MapTo(reg, dreg uint32, s *Set) expr.Any {
	return &expr.Lookup{SourceRegister: reg, DestRegister: dreg, IsDestRegSet: true, SetName: s.Name, SetID: s.ID}
}

// Verdict ends a rule with a verdict (chain for jump and goto).
func Verdict(k expr.VerdictKind, chain string) expr.Any { return &expr.Verdict{Kind: k, Chain: chain} }

// IfnameIn matches when the input (or output, with oif) interface's name is
// (or, with !in, is not) in s.
func IfnameIn(oif, in bool, s *Set) []expr.Any {
	k := expr.MetaKeyIIFNAME
	if oif {
		k = expr.MetaKeyOIFNAME
	}
	l := In(Reg1, s)
	if !in {
		l = NotIn(Reg1, s)
	}
	return []expr.Any{Meta(k, Reg1), l}
}

// IPv4In matches an IPv4 address field (off 12 source, 16 destination) in
// prefix p, reading the network header.
func IPv4In(off uint32, p netip.Prefix) []expr.Any {
	p = p.Masked()
	ld := Payload(expr.PayloadBaseNetworkHeader, off, 4, Reg1)
	if p.Bits() == 32 {
		return []expr.Any{ld, Cmp(expr.CmpOpEq, Reg1, p.Addr().AsSlice())}
	}
	mask := make([]byte, 4)
	binary.BigEndian.PutUint32(mask, ^uint32(0)<<(32-p.Bits()))
	return []expr.Any{ld,
		&expr.Bitwise{SourceRegister: Reg1, DestRegister: Reg1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		Cmp(expr.CmpOpEq, Reg1, p.Addr().AsSlice()),
	}
}

// CtBits matches when any of bits is set in the connection's state
// (expr.CtKeySTATE) or status (expr.CtKeySTATUS).
func CtBits(k expr.CtKey, bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: k, Register: Reg1},
		&expr.Bitwise{SourceRegister: Reg1, DestRegister: Reg1, Len: 4, Mask: Native32(bits), Xor: Native32(0)},
		Cmp(expr.CmpOpNeq, Reg1, Native32(0)),
	}
}

// IfnameKey encodes an interface name as a set key (IFNAMSIZ, zero-padded).
func IfnameKey(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}

// IfnameOf decodes IfnameKey.
func IfnameOf(key []byte) string {
	if i := strings.IndexByte(string(key), 0); i >= 0 {
		key = key[:i]
	}
	return string(key)
}

// Pad4 pads b to a multiple of 4 bytes, as each part of a concatenation is.
func Pad4(b []byte) []byte {
	if n := len(b) % 4; n != 0 {
		return append(append([]byte{}, b...), make([]byte, 4-n)...)
	}
	return b
}

// Concat joins the parts of a concatenated key or value, each padded.
func Concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, Pad4(p)...)
	}
	return out
}

// Native32 encodes a host-order 32-bit value (ct state and status bits).
func Native32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}

// BE16 encodes a port.
func BE16(v uint16) []byte {
	b := make([]byte, 2)
	binary.BigEndian.PutUint16(b, v)
	return b
}

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
	case expr.CtKeySTATUS:
		return "status"
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

// DumpExprs prints expressions like `nft --debug=netlink` does.
func DumpExprs(es []expr.Any) string {
	parts := make([]string, 0, len(es))
	for _, e := range es {
		var s string
		switch e := e.(type) {
		case *expr.Meta:
			s = fmt.Sprintf("meta load %s => %s", metaKeyName(e.Key), regName(e.Register))
		case *expr.Ct:
			s = fmt.Sprintf("ct load %s => %s", ctKeyName(e.Key), regName(e.Register))
		case *expr.Payload:
			s = fmt.Sprintf("payload load %db @ %s header + %d => %s", e.Len, payloadBaseName(e.Base), e.Offset, regName(e.DestRegister))
		case *expr.Cmp:
			op := map[expr.CmpOp]string{expr.CmpOpEq: "eq", expr.CmpOpNeq: "neq", expr.CmpOpLt: "lt", expr.CmpOpLte: "lte", expr.CmpOpGt: "gt", expr.CmpOpGte: "gte"}[e.Op]
			s = fmt.Sprintf("cmp %s %s 0x%x", op, regName(e.Register), e.Data)
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
		case *expr.Verdict:
			s = "immediate reg 0 " + verdictName(e.Kind)
			if e.Chain != "" {
				s += " -> " + e.Chain
			}
		case *expr.Masq:
			s = "masq"
		case *expr.NAT:
			kind := "snat"
			if e.Type == expr.NATTypeDestNAT {
				kind = "dnat"
			}
			s = fmt.Sprintf("nat %s family %d", kind, e.Family)
			if e.RegAddrMin != 0 {
				s += " addr_min " + regName(e.RegAddrMin)
			}
			if e.RegProtoMin != 0 {
				s += " proto_min " + regName(e.RegProtoMin)
			}
		case *expr.Counter:
			s = "counter"
		default:
			s = fmt.Sprintf("%T", e)
		}
		parts = append(parts, "[ "+s+" ]")
	}
	return strings.Join(parts, " ")
}
