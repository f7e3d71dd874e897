package nft

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ruleGeneration returns the namespace's nftables generation ID, which the
// kernel increments on every committed batch (by anyone). google/nftables
// v0.3.0 has no call for it, so this sends NFT_MSG_GETGEN itself.
func ruleGeneration(fd int) (uint32, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: fd})
	if err != nil {
		return 0, fmt.Errorf("nft: netlink dial: %w", err)
	}
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}, // struct nfgenmsg
	})
	if err != nil {
		return 0, fmt.Errorf("nft: get generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, fmt.Errorf("nft: get generation: no NFTA_GEN_ID in the reply")
}

// applied is what the kernel holds right after a successful Apply, with the
// generation it holds it at: while the generation has not moved, nobody has
// changed any table and the next Apply can diff against this instead of
// reading everything back.
type applied struct {
	gen    uint32
	tables []*tableState
}

// stateOf describes the kernel state that applying p leaves behind, in the
// form readTable returns.
func stateOf(p *program) []*tableState {
	var out []*tableState
	for _, t := range p.tables {
		nt := &nftables.Table{Family: t.family, Name: t.name}
		st := &tableState{table: nt, chains: map[string]*chainState{}, sets: map[string]*setState{}}
		for _, c := range t.chains {
			cs := &chainState{chain: c.nft(nt), rules: len(c.rules)}
			if len(c.rules) > 0 {
				cs.fp = c.fingerprint(t.family)
			}
			st.chains[c.name] = cs
		}
		for _, s := range t.sets {
			ss := &setState{set: s.nft(nt), elems: make(map[string]nftables.SetElement, len(s.elems))}
			for _, e := range s.elems {
				ss.elems[e.id()] = e.nft()
			}
			st.sets[s.name] = ss
		}
		out = append(out, st)
	}
	return out
}
