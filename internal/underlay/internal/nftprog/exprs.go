package nftprog

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables/expr"

	"github.com/nimbo-cloud/nimbo/internal/nft"
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
		&expr.Bitwise{SourceRegister: Reg1, DestRegister: Reg1, Len: 4, Mask: nft.Native32(bits), Xor: nft.Native32(0)},
		Cmp(expr.CmpOpNeq, Reg1, nft.Native32(0)),
	}
}

// IfnameOf decodes nft.IfnameKey.
func IfnameOf(key []byte) string {
	if i := strings.IndexByte(string(key), 0); i >= 0 {
		key = key[:i]
	}
	return string(key)
}
