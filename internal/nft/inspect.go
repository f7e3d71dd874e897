package nft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
)

// RouterNATState is what the NAT table of a router namespace (ip
// RouterTableName) holds, read back from the kernel, as far as someone
// debugging a router's egress cares. ReadRouterNAT fills it in.
type RouterNATState struct {
	// Exists tells whether the table is there at all.
	Exists bool
	// SNAT is the address of the gateway's source NAT rule (`oifname
	// GATEWAY ip saddr @internal snat ip to SNAT`); zero when the table
	// has no such rule (enable_snat false, or no gateway).
	SNAT netip.Addr
	// SNATIface is the interface that rule matches (oifname), "" without
	// a rule.
	SNATIface string
	// Internal is the number of address ranges in the @internal set: the
	// sources SNAT applies to (the router's internal subnets, merged).
	Internal int
	// FloatingIPs is the number of floating IPs (elements of @fip_dnat).
	FloatingIPs int
	// Forwards is the number of port-forward elements (@fwd and
	// @fwd_range; a range forwarded to a shifted range counts one per
	// port).
	Forwards int
}

// ReadRouterNAT reads the router NAT table in ns without changing
// anything. A missing table is not an error: Exists is then false.
func ReadRouterNAT(ctx context.Context, ns *hostnet.NS) (RouterNATState, error) {
	var st RouterNATState
	if err := ctx.Err(); err != nil {
		return st, err
	}
	conn, err := nftables.New(nftables.WithNetNSFd(ns.Fd()), nftables.AsLasting())
	if err != nil {
		return st, fmt.Errorf("nft: netlink connection in %s: %w", ns.Path(), err)
	}
	defer func() { _ = conn.CloseLasting() }()
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return st, fmt.Errorf("nft: list ip tables in %s: %w", ns.Path(), err)
	}
	var t *nftables.Table
	for _, x := range tables {
		if x.Name == RouterTableName {
			t = x
			break
		}
	}
	if t == nil {
		return st, nil
	}
	st.Exists = true
	rules, err := conn.GetRules(t, &nftables.Chain{Name: "postrouting", Table: t})
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return st, fmt.Errorf("nft: rules of %s postrouting: %w", RouterTableName, err)
	}
	for _, r := range rules {
		if a, iface, ok := snatRule(r.Exprs); ok {
			st.SNAT, st.SNATIface = a, iface
			break
		}
	}
	count := func(name string) (int, error) {
		s, err := conn.GetSetByName(t, name)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				return 0, nil
			}
			return 0, fmt.Errorf("nft: set %s: %w", name, err)
		}
		s.Table = t
		es, err := conn.GetSetElements(s)
		if err != nil {
			return 0, fmt.Errorf("nft: elements of set %s: %w", name, err)
		}
		n := 0
		for _, e := range es {
			if !e.IntervalEnd {
				n++
			}
		}
		return n, nil
	}
	for _, c := range []struct {
		name string
		n    *int
	}{{"internal", &st.Internal}, {"fip_dnat", &st.FloatingIPs}, {"fwd", &st.Forwards}, {"fwd_range", &st.Forwards}} {
		n, err := count(c.name)
		if err != nil {
			return st, err
		}
		*c.n += n
	}
	return st, nil
}

// snatRule recognises the gateway SNAT rule: a source NAT whose address
// comes from an immediate (the floating IP rules take theirs from a map),
// and the interface its oifname comparison names.
func snatRule(es []expr.Any) (netip.Addr, string, bool) {
	imm := map[uint32][]byte{}
	iface := ""
	var oifReg uint32
	oif := false
	for _, e := range es {
		switch e := e.(type) {
		case *expr.Meta:
			if e.Key == expr.MetaKeyOIFNAME && !e.SourceRegister {
				oifReg, oif = e.Register, true
			}
		case *expr.Cmp:
			if oif && e.Register == oifReg && e.Op == expr.CmpOpEq {
				iface = string(bytes.TrimRight(e.Data, "\x00"))
			}
			oif = false
		case *expr.Immediate:
			imm[e.Register] = e.Data
		case *expr.NAT:
			if e.Type != expr.NATTypeSourceNAT {
				continue
			}
			if d, ok := imm[e.RegAddrMin]; ok && len(d) == 4 {
				return netip.AddrFrom4([4]byte(d)), iface, true
			}
		}
	}
	return netip.Addr{}, "", false
}
