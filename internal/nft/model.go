package nft

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
)

// Ruleset is the whole desired firewall of one namespace: every port on its
// bridges that nimbo manages and every security group they use. Apply makes
// the kernel match it exactly.
type Ruleset struct {
	Ports  []Port
	Groups map[string]Group // by Group.ID; a group a port names but that is missing here has no rules
	// Zones maps a bridge's name to the conntrack zone of the traffic
	// bridged through it, so that two networks with overlapping addresses
	// never share connection-tracking entries. Bridges not listed use zone 0.
	Zones map[string]uint16
}

// Port is a port on a bridge: a VM's tap, or the bridge-side end of a veth.
type Port struct {
	ID    string
	Iface string           // the bridge port's interface name
	MAC   net.HardwareAddr // the address the port's owner sends from
	IPs   []netip.Addr     // its fixed IPs
	// AddressPairs are Neutron's allowed address pairs: more addresses (or
	// whole prefixes) the port may send from, each with its own MAC or, if
	// that is nil, the port's MAC.
	AddressPairs []AddressPair
	// PortSecurity false turns all filtering off for the port (Neutron's
	// port_security_enabled=false): no anti-spoofing and no groups.
	PortSecurity bool
	Groups       []string // security group IDs
}

// AddressPair is an allowed address pair.
type AddressPair struct {
	Prefix netip.Prefix     // an address (/32, /128) or a prefix
	MAC    net.HardwareAddr // nil: the port's MAC
}

// Group is a security group.
type Group struct {
	ID    string
	Rules []Rule
}

// Direction says whether a rule admits traffic to the port (ingress) or from
// it (egress).
type Direction string

// Directions.
const (
	Ingress Direction = "ingress"
	Egress  Direction = "egress"
)

// EtherType is the IP version a rule applies to.
type EtherType string

// Ether types.
const (
	IPv4 EtherType = "IPv4"
	IPv6 EtherType = "IPv6"
)

// Well-known IP protocol numbers for Rule.Protocol.
const (
	ProtoAny    = 0
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoDCCP   = 33
	ProtoICMPv6 = 58
	ProtoSCTP   = 132
	ProtoUDPLit = 136
)

// Rule is a security group rule, with Neutron's meaning: traffic in
// Direction of EtherType, with Protocol (0: any) and, for TCP, UDP, SCTP,
// DCCP and UDP-Lite, a destination port in [PortMin, PortMax] (nil PortMin:
// any port; nil PortMax: PortMin only). For ICMP and ICMPv6 PortMin is the
// ICMP type and PortMax the code (nil: any). The remote side (the source for
// ingress, the destination for egress) must be in RemoteIPPrefix or be an
// address of a port in group RemoteGroupID; with neither, any. ICMP (1) in an
// IPv6 rule means ICMPv6, as in Neutron.
type Rule struct {
	Direction      Direction
	EtherType      EtherType
	Protocol       int
	PortMin        *int
	PortMax        *int
	RemoteIPPrefix netip.Prefix
	RemoteGroupID  string
}

// Ptr returns a pointer to v, for Rule.PortMin and Rule.PortMax.
func Ptr(v int) *int { return &v }

// idRE is what a group or port ID may look like: it ends up in chain and set
// names.
var idRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

func portsProto(p int) bool {
	switch p {
	case ProtoTCP, ProtoUDP, ProtoDCCP, ProtoSCTP, ProtoUDPLit:
		return true
	}
	return false
}

func validate(rs *Ruleset) error {
	ids := map[string]bool{}
	ifaces := map[string]bool{}
	for i := range rs.Ports {
		p := &rs.Ports[i]
		if !idRE.MatchString(p.ID) {
			return errdefs.Invalidf("nft: port %q: invalid ID", p.ID)
		}
		if ids[p.ID] {
			return errdefs.Invalidf("nft: port %s listed twice", p.ID)
		}
		ids[p.ID] = true
		if err := hostnet.ValidIfName(p.Iface); err != nil {
			return fmt.Errorf("nft: port %s: %w", p.ID, err)
		}
		if ifaces[p.Iface] {
			return errdefs.Invalidf("nft: interface %s used by two ports", p.Iface)
		}
		ifaces[p.Iface] = true
		if !p.PortSecurity {
			continue
		}
		if len(p.MAC) != 6 {
			return errdefs.Invalidf("nft: port %s: port security needs a 6-byte MAC, got %q", p.ID, p.MAC)
		}
		for _, ip := range p.IPs {
			if !ip.IsValid() {
				return errdefs.Invalidf("nft: port %s: invalid IP", p.ID)
			}
		}
		for _, ap := range p.AddressPairs {
			if !ap.Prefix.IsValid() {
				return errdefs.Invalidf("nft: port %s: invalid allowed address pair", p.ID)
			}
			if ap.MAC != nil && len(ap.MAC) != 6 {
				return errdefs.Invalidf("nft: port %s: allowed address pair %s: invalid MAC %q", p.ID, ap.Prefix, ap.MAC)
			}
		}
		for _, g := range p.Groups {
			if !idRE.MatchString(g) {
				return errdefs.Invalidf("nft: port %s: invalid group ID %q", p.ID, g)
			}
		}
	}
	for id, g := range rs.Groups {
		if !idRE.MatchString(id) || (g.ID != "" && g.ID != id) {
			return errdefs.Invalidf("nft: group %q: invalid ID or key differs from ID %q", id, g.ID)
		}
		for i, r := range g.Rules {
			if err := validRule(r); err != nil {
				return fmt.Errorf("nft: group %s rule %d: %w", id, i, err)
			}
		}
	}
	for br := range rs.Zones {
		if err := hostnet.ValidIfName(br); err != nil {
			return fmt.Errorf("nft: zone of bridge: %w", err)
		}
	}
	return nil
}

func validRule(r Rule) error {
	if r.Direction != Ingress && r.Direction != Egress {
		return errdefs.Invalidf("direction %q is neither ingress nor egress", r.Direction)
	}
	if r.EtherType != IPv4 && r.EtherType != IPv6 {
		return errdefs.Invalidf("ethertype %q is neither IPv4 nor IPv6", r.EtherType)
	}
	if r.Protocol < 0 || r.Protocol > 255 {
		return errdefs.Invalidf("protocol %d out of range", r.Protocol)
	}
	if r.RemoteIPPrefix.IsValid() {
		if r.RemoteIPPrefix.Addr().Is4() != (r.EtherType == IPv4) {
			return errdefs.Invalidf("remote prefix %s does not match ethertype %s", r.RemoteIPPrefix, r.EtherType)
		}
		if r.RemoteGroupID != "" {
			return errdefs.Invalidf("remote prefix and remote group are mutually exclusive")
		}
	}
	if r.RemoteGroupID != "" && !idRE.MatchString(r.RemoteGroupID) {
		return errdefs.Invalidf("invalid remote group ID %q", r.RemoteGroupID)
	}
	switch {
	case portsProto(r.Protocol):
		if r.PortMin == nil && r.PortMax != nil {
			return errdefs.Invalidf("port_range_max without port_range_min")
		}
		if r.PortMin != nil {
			hi := *r.PortMin
			if r.PortMax != nil {
				hi = *r.PortMax
			}
			if *r.PortMin < 0 || hi > 65535 || *r.PortMin > hi {
				return errdefs.Invalidf("port range %d-%d invalid", *r.PortMin, hi)
			}
		}
	case r.Protocol == ProtoICMP || r.Protocol == ProtoICMPv6:
		if r.PortMin == nil && r.PortMax != nil {
			return errdefs.Invalidf("ICMP code without ICMP type")
		}
		for _, v := range []*int{r.PortMin, r.PortMax} {
			if v != nil && (*v < 0 || *v > 255) {
				return errdefs.Invalidf("ICMP type/code %d out of range", *v)
			}
		}
	default:
		if r.PortMin != nil || r.PortMax != nil {
			return errdefs.Invalidf("ports given for protocol %d, which has none", r.Protocol)
		}
	}
	return nil
}
