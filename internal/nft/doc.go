// Package nft is the per-port firewall: Neutron's security groups and
// anti-spoofing for the ports (VM taps, veth ends) on the Linux bridges of
// one network namespace, programmed through netlink with google/nftables.
//
// One call, Firewall.Apply(ctx, Ruleset), makes the kernel match the whole
// desired state, in one atomic netlink batch, touching only the two tables
// nimbo owns (TableName in the bridge and inet families). It diffs against
// what the kernel holds (set elements one by one, chains by a fingerprint
// kept in their first rule's comment), so a second call sends nothing, adding
// a port adds a handful of set elements, and a restarted agent adopts the
// tables it finds.
//
// # Semantics (Neutron's)
//
//   - Stateful: established and related traffic passes both ways; invalid
//     is dropped.
//   - Ingress to a port is denied except what its groups' ingress rules
//     allow; egress likewise (Neutron's default group allows all egress).
//     A port with port security and no groups gets nothing through.
//   - Always allowed: DHCP (client out, server replies in), DHCPv6, and the
//     ICMPv6 of neighbour discovery and MLD.
//   - Anti-spoofing: a port may send only from its MAC and its IPs (fixed
//     IPs, allowed address pairs with their own MAC or the port's, and the
//     IPv6 link-local address derived from each MAC); ARP sender MAC and IP
//     and neighbour advertisement targets are checked too; DHCP from 0.0.0.0
//     and IPv6 duplicate address detection from :: are let out; DHCP(v6)
//     server replies and router advertisements from ports are dropped;
//     ether types other than ARP, IPv4 and IPv6 are dropped.
//   - PortSecurity false: no filtering at all for the port.
//   - A remote group is the set of addresses (fixed IPs and address pairs)
//     of the ports in that group.
//
// # Why two families (measured on the kernel nimbo's CI runs on)
//
// The bridge family sees the bridge ports (iifname/oifname are the tap or
// veth), but stateful filtering there needs nf_conntrack_bridge, and the
// kernel here is built without it: `ct state` in a bridge table fails with
// EPROTO ("Could not process rule: Protocol error"). br_netfilter, on the
// other hand, is built in and bridge-nf-call-iptables/ip6tables are 1 in new
// namespaces, so bridged IP traffic also traverses the inet hooks, where
// conntrack works; but there iifname and oifname are the bridge, not the
// port (nftables has no physdev match). So the work is split:
//
//   - bridge table: a prerouting chain (priority -200, before br_netfilter
//     runs the IP hooks at 0) does the anti-spoofing with sets keyed by
//     interface name (ifname . MAC, ifname . MAC . IP ranges) and sets the
//     packet mark to the sending port's group list; a forward chain sets the
//     mark to the receiving port's group list.
//   - inet table: prerouting (priority -150, after conntrack) looks the mark
//     up in a verdict map and jumps to that group list's egress chain;
//     forward (priority 0) does the same with the ingress chain. A third
//     chain (priority -300, before conntrack) puts the traffic of each
//     bridge in its own conntrack zone (Ruleset.Zones), so networks with
//     overlapping addresses never share conntrack entries.
//
// Apply sets bridge-nf-call-iptables and -ip6tables to 1 in the namespace.
// In that namespace nimbo owns the packet mark of frames coming from or
// going to ports with port security.
//
// # Cost per packet
//
// Nothing on the packet path is linear in the number of ports: one hash
// lookup by interface name, one or two set lookups for anti-spoofing, one
// verdict-map lookup by mark. Ports with the same group list share chains
// (the mark identifies the list: the first 32 bits of a hash of it, so it is
// stable as other lists come and go). A group list's chain jumps to each
// group's chain, which has one rule per security group rule (as Neutron's
// iptables driver; remote groups are sets).
//
// Not filtered: traffic the bridge device itself sends or receives (nimbo's
// bridges carry no address; DHCP and routers sit behind veth ports).
//
// # Router NAT
//
// RouterNAT is the L3 data plane of a Neutron router, in the router's own
// namespace and its own table (ip RouterTableName), with the same applier:
// SNAT to the gateway IP, floating IPs (1:1, hairpin included), port
// forwards (single ports, ranges port for port, N:1), the metadata redirect,
// and a forward rule that never lets a guest reach 169.254.0.0/16 beyond
// the router. Floating IPs and forwards are map elements, so the cost of a
// new connection does not grow with their number. The addresses the
// gateway leg must carry (floating IPs as /32s, so the router answers ARP
// for them) are the caller's: see RouterRules.GatewayAddrs.
package nft
