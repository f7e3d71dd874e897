package underlaytest

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/google/nftables"
	mnl "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
)

// snapshot is what an underlay may change in a namespace, in text form:
// links (kind, master, state, MTU, MAC), addresses, routes of every table
// (IPv6 link-local and multicast ones aside: they come and go with duplicate
// address detection), the IPv4 forwarding and proxy ARP flags, IPv6
// forwarding, and every nftables table, chain, rule (with its handle), set
// and element. gen is the nftables generation, which moves on every commit.
type snapshot struct {
	text string
	gen  uint32
}

func take(t *testing.T, ns *hostnet.NS) snapshot {
	t.Helper()
	s, err := takeSnapshot(ns)
	if err != nil {
		t.Fatalf("snapshot of the host: %v", err)
	}
	return s
}

// mustEqual fails the test if the snapshots differ (and, with sameGen, if
// anything was committed to nftables in between).
func (s snapshot) mustEqual(t *testing.T, o snapshot, what string, sameGen bool) {
	t.Helper()
	if s.text != o.text {
		a, b := strings.Split(s.text, "\n"), strings.Split(o.text, "\n")
		var diff []string
		for i := 0; i < len(a) || i < len(b); i++ {
			var x, y string
			if i < len(a) {
				x = a[i]
			}
			if i < len(b) {
				y = b[i]
			}
			if x != y {
				diff = append(diff, fmt.Sprintf("line %d:\n  before: %s\n  after:  %s", i+1, x, y))
			}
		}
		t.Errorf("%s changed the host:\n%s\n--- before:\n%s\n--- after:\n%s", what, strings.Join(diff, "\n"), s.text, o.text)
	}
	if sameGen && s.gen != o.gen {
		t.Errorf("%s committed to nftables (generation %d -> %d)", what, s.gen, o.gen)
	}
}

func takeSnapshot(ns *hostnet.NS) (snapshot, error) {
	var b strings.Builder
	nl, err := netlink.NewHandleAt(netns.NsHandle(ns.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return snapshot{}, err
	}
	defer nl.Close()
	links, err := nl.LinkList()
	if err != nil {
		return snapshot{}, fmt.Errorf("links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	sort.Slice(links, func(i, j int) bool { return links[i].Attrs().Name < links[j].Attrs().Name })
	for _, l := range links {
		a := l.Attrs()
		fmt.Fprintf(&b, "link %s %s master=%q up=%v mtu=%d mac=%s\n", a.Name, l.Type(), names[a.MasterIndex], a.RawFlags&unix.IFF_UP != 0, a.MTU, a.HardwareAddr)
		addrs, err := nl.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return snapshot{}, fmt.Errorf("addresses of %s: %w", a.Name, err)
		}
		var as []string
		for _, ad := range addrs {
			if ad.IP.IsLinkLocalUnicast() && ad.IP.To4() == nil {
				continue
			}
			as = append(as, ad.IPNet.String())
		}
		sort.Strings(as)
		fmt.Fprintf(&b, "  addrs %v\n", as)
		for _, key := range []string{"ipv4/conf/%s/forwarding", "ipv4/conf/%s/proxy_arp", "ipv6/conf/%s/forwarding"} {
			k := fmt.Sprintf(key, a.Name)
			v, err := ns.Sysctl(context.Background(), "net/"+k)
			if err != nil {
				v = "?"
			}
			fmt.Fprintf(&b, "  %s=%s\n", k, v)
		}
	}
	for _, k := range []string{"net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/ipv4/conf/default/forwarding", "net/ipv6/conf/all/forwarding"} {
		v, err := ns.Sysctl(context.Background(), k)
		if err != nil {
			return snapshot{}, err
		}
		fmt.Fprintf(&b, "sysctl %s=%s\n", k, v)
	}
	routes, err := nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return snapshot{}, fmt.Errorf("routes: %w", err)
	}
	var rs []string
	for _, r := range routes {
		dst := "default"
		if r.Dst != nil {
			dst = r.Dst.String()
			if p, err := netip.ParsePrefix(dst); err == nil && p.Addr().Is6() && (p.Addr().IsLinkLocalUnicast() || p.Addr().IsMulticast()) {
				continue
			}
		}
		rs = append(rs, fmt.Sprintf("route table=%d type=%d %s via=%v dev=%s src=%v proto=%d scope=%d metric=%d", r.Table, r.Type, dst, r.Gw, names[r.LinkIndex], r.Src, r.Protocol, r.Scope, r.Priority))
	}
	sort.Strings(rs)
	for _, r := range rs {
		b.WriteString(r + "\n")
	}
	if err := nftDump(&b, ns.Fd()); err != nil {
		return snapshot{}, fmt.Errorf("nftables: %w", err)
	}
	gen, err := generation(ns.Fd())
	if err != nil {
		return snapshot{}, err
	}
	return snapshot{text: b.String(), gen: gen}, nil
}

func nftDump(b *strings.Builder, fd int) error {
	c, err := nftables.New(nftables.WithNetNSFd(fd), nftables.AsLasting())
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	tables, err := c.ListTables()
	if err != nil {
		return err
	}
	sort.Slice(tables, func(i, j int) bool {
		return fmt.Sprint(tables[i].Family, tables[i].Name) < fmt.Sprint(tables[j].Family, tables[j].Name)
	})
	for _, t := range tables {
		fmt.Fprintf(b, "nft table family=%d %s flags=%d\n", t.Family, t.Name, t.Flags)
		chains, err := c.ListChainsOfTableFamily(t.Family)
		if err != nil {
			return err
		}
		sort.Slice(chains, func(i, j int) bool { return chains[i].Name < chains[j].Name })
		for _, ch := range chains {
			if ch.Table.Name != t.Name {
				continue
			}
			fmt.Fprintf(b, "  chain %s type=%s", ch.Name, ch.Type)
			if ch.Hooknum != nil {
				fmt.Fprintf(b, " hook=%d prio=%d", *ch.Hooknum, *ch.Priority)
			}
			if ch.Policy != nil {
				fmt.Fprintf(b, " policy=%d", *ch.Policy)
			}
			b.WriteString("\n")
			rules, err := c.GetRules(t, ch)
			if err != nil {
				return err
			}
			for _, r := range rules {
				fmt.Fprintf(b, "    rule handle=%d userdata=%x", r.Handle, r.UserData)
				for _, e := range r.Exprs {
					fmt.Fprintf(b, " %T%+v", e, e)
				}
				b.WriteString("\n")
			}
		}
		sets, err := c.GetSets(t)
		if err != nil {
			return err
		}
		sort.Slice(sets, func(i, j int) bool { return sets[i].Name < sets[j].Name })
		for _, s := range sets {
			s.Table = t
			fmt.Fprintf(b, "  set %s map=%v interval=%v concat=%v key=%d data=%d\n", s.Name, s.IsMap, s.Interval, s.Concatenation, s.KeyType.Bytes, s.DataType.Bytes)
			elems, err := c.GetSetElements(s)
			if err != nil {
				return err
			}
			var es []string
			for _, e := range elems {
				es = append(es, fmt.Sprintf("    %s : %s end=%v", hex.EncodeToString(e.Key), hex.EncodeToString(e.Val), e.IntervalEnd))
			}
			sort.Strings(es)
			for _, e := range es {
				b.WriteString(e + "\n")
			}
		}
	}
	return nil
}

// generation returns the namespace's nftables generation ID (NFT_MSG_GETGEN;
// google/nftables v0.3.0 has no call for it).
func generation(fd int) (uint32, error) {
	c, err := mnl.Dial(unix.NETLINK_NETFILTER, &mnl.Config{NetNS: fd})
	if err != nil {
		return 0, fmt.Errorf("netlink dial: %w", err)
	}
	defer c.Close()
	msgs, err := c.Execute(mnl.Message{
		Header: mnl.Header{Type: mnl.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: mnl.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return 0, fmt.Errorf("get nftables generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := mnl.NewAttributeDecoder(m.Data[4:])
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
	return 0, fmt.Errorf("get nftables generation: no NFTA_GEN_ID")
}
