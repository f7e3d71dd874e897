// Package underlay defines how nimbo's external ("provider", "public")
// networks meet the fabric of the host they run on, and the pieces every
// implementation shares.
//
// nimbo's agent makes one Linux bridge per network in the host namespace
// (nb-<11 hex>). A tenant router is a namespace whose gateway leg (a veth)
// sits on an external network's bridge and holds the router's gateway IP and
// its floating IPs, all addresses of the external subnet. An Underlay makes
// those addresses work with the outside world. It is level-triggered, like
// tailscale's Router.Set: Set is given the whole desired state (every external
// network on the host), changes only what differs, changes nothing when
// called twice, and adopts after a restart what a previous process made.
// Teardown removes everything the underlay made, also when called by a new
// process without any configuration: each implementation records what it
// changed on the host inside the host itself (in the nftables table it owns),
// never in a file.
//
// # Modes
//
//   - nat (package nat, the default where there is no cloud metadata): the
//     external networks are host-internal. The host holds each external
//     subnet's gateway address on its bridge, routes and masquerades their
//     traffic out of whatever interface its routes pick (the default route),
//     and forwards published host ports to floating IPs. Floating IPs are
//     reachable from the host; from outside only through published forwards.
//   - flat (package flat, bare metal or a lab L2 without filtering): classic
//     provider bridging. A host interface without addresses is enslaved to
//     the external network's bridge; the network's addresses are real
//     addresses of that L2; no NAT.
//   - aws-routed and aws-adopt (later): External.Addresses are registered on
//     the host's ENI, answered by proxy ARP and routed into the bridge as
//     /32s, or the ENI's own address is adopted by the router gateway.
//
// Whatever the mode, traffic from an external network never reaches the host
// cloud's instance metadata service (169.254.169.254, and fd00:ec2::254 where
// the mode can carry IPv6): guests must only ever see nimbo's own.
//
// The conformance suite every implementation passes is in underlaytest.
package underlay

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
)

// Underlay connects the external networks of one host to the outside world.
// Implementations are safe for concurrent use (calls are serialised).
type Underlay interface {
	// Name is the mode's name, as configured ("nat", "flat", ...).
	Name() string
	// Set makes the host match cfg: what cfg needs is added, what an
	// earlier Set made and cfg no longer needs is removed, the rest is left
	// alone. Calling it twice changes nothing; a new Underlay value (after a
	// restart) adopts what exists. It does as much as it can and returns
	// every problem it met, joined; the Status describes the host as Set
	// left it, also when the error is not nil.
	Set(ctx context.Context, cfg Config) (Status, error)
	// Teardown removes everything the underlay made on the host (tables,
	// addresses, bridge ports, sysctls it changed), and nothing else. It
	// needs no configuration, so a new process can run it, and it is
	// harmless when there is nothing to remove.
	Teardown(ctx context.Context) error
}

// Config is the desired state of the underlay on one host.
type Config struct {
	// Externals are the external networks present on this host.
	Externals []External
	// Published are forwards of host ports to addresses on the external
	// networks (such as "SSH to the VM through the host's address, port
	// 522"). Only modes whose external networks are not reachable from
	// outside support them.
	Published []Publish
	// BridgePrefix is the name prefix of the bridges the agent makes on
	// this host (external and tenant networks alike). Traffic leaving
	// through one of them is bridged, not routed out of the host — with
	// br_netfilter the IP hooks see it with the bridge as output interface,
	// such as a connection to a floating IP that a router has DNATed onto a
	// tenant network — and must never be translated by the host. "" if the
	// agent's bridges have no common prefix (then only the external bridges
	// are recognised).
	BridgePrefix string
}

// External is one external network as the underlay needs to know it.
type External struct {
	// NetworkID is the Neutron network's ID (for messages).
	NetworkID string
	// Bridge is the network's bridge in the host namespace, which the agent
	// creates before calling Set.
	Bridge string
	// CIDR is the network's (IPv4) subnet, such as 172.24.4.0/24.
	CIDR netip.Prefix
	// Gateway is the subnet's gateway address, which routers use as their
	// default route; the zero Addr for none. Under nat the host holds it.
	Gateway netip.Addr
	// PhysicalNetwork is the Neutron provider:physical_network ("physnet1"),
	// which flat maps to a host interface; "" if none.
	PhysicalNetwork string
	// Addresses are the network's addresses in use on this host (router
	// gateway IPs and floating IPs), for modes that must register each one
	// with the host cloud. nat and flat do not use them.
	Addresses []netip.Addr
}

// Protocol is a transport protocol of a published forward.
type Protocol string

// Protocols of published forwards.
const (
	TCP Protocol = "tcp"
	UDP Protocol = "udp"
)

// Number is the IP protocol number.
func (p Protocol) Number() byte {
	switch p {
	case TCP:
		return 6
	case UDP:
		return 17
	}
	return 0
}

// Publish forwards a port of a host address to an address (a floating IP or
// a router gateway IP) and port on an external network.
type Publish struct {
	Protocol Protocol
	// Host is the host's address and port that clients connect to; the
	// address must be one of the host's own.
	Host netip.AddrPort
	// Target is the address on an external network and its port.
	Target netip.AddrPort
}

func (p Publish) String() string {
	return fmt.Sprintf("%s %s -> %s", p.Protocol, p.Host, p.Target)
}

// Status is what Set found and left on the host.
type Status struct {
	// Uplink is the host interface the external networks' traffic leaves
	// through: the default route's interface for nat, the bridged interfaces
	// for flat (comma-separated); "" for none.
	Uplink string
	// Egress reports whether traffic from every external network Set
	// serves (the valid ones) can reach the outside world now.
	Egress bool
	// EgressSource is the source address the outside world sees on that
	// traffic: the host's own address for nat; the zero Addr when the
	// external addresses themselves are seen (flat).
	EgressSource netip.Addr
	// Message says the same in words for people (`nimbo doctor`, router
	// status), such as "no default route: the public network has no uplink
	// (floating IPs stay reachable from this host)".
	Message string
}

// ImdsV4 and ImdsV6 are the addresses at which public clouds serve instance
// metadata (AWS, GCP, Azure, OpenStack; AWS Nitro's IPv6 one). Traffic from
// the external networks must never reach them through the host.
var (
	ImdsV4 = netip.MustParseAddr("169.254.169.254")
	ImdsV6 = netip.MustParseAddr("fd00:ec2::254")
)

// Validate reports, as one error, everything Check finds wrong with c.
func (c Config) Validate() error {
	_, err := c.Check()
	return err
}

// Check returns the part of c that every mode can rely on, and what it left
// out and why (errors wrapping errdefs.ErrInvalid, joined), so that Set
// still serves the valid networks when one is wrong. An external network is
// kept if it has an ID, a valid bridge name and an IPv4 subnet in canonical
// form holding its gateway (if any) and its addresses, and if its ID,
// bridge and subnet clash with no network kept before it. A published
// forward is kept if it is TCP or UDP, from a host IPv4 address and port to
// an address of a kept external subnet, and is the first on its protocol,
// host address and port.
func (c Config) Check() (Config, error) {
	out := Config{BridgePrefix: c.BridgePrefix}
	var errs []error
	ids, bridges := map[string]bool{}, map[string]bool{}
	for i, e := range c.Externals {
		if err := checkExternal(i, e, out.Externals, ids, bridges); err != nil {
			errs = append(errs, err)
			continue
		}
		ids[e.NetworkID], bridges[e.Bridge] = true, true
		out.Externals = append(out.Externals, e)
	}
	seen := map[string]bool{}
	for _, p := range c.Published {
		var err error
		key := string(p.Protocol) + " " + p.Host.String()
		switch {
		case p.Protocol.Number() == 0:
			err = errdefs.Invalidf("underlay: published forward %v: protocol must be tcp or udp", p)
		case !p.Host.Addr().Is4() || p.Host.Port() == 0 || p.Host.Addr().IsUnspecified():
			err = errdefs.Invalidf("underlay: published forward %v: the host side must be an IPv4 address of the host and a port", p)
		case !p.Target.Addr().Is4() || p.Target.Port() == 0:
			err = errdefs.Invalidf("underlay: published forward %v: the target must be an IPv4 address and a port", p)
		case out.externalOf(p.Target.Addr()) == nil:
			err = errdefs.Invalidf("underlay: published forward %v: %v is on none of the external networks", p, p.Target.Addr())
		case seen[key]:
			err = errdefs.Invalidf("underlay: published forward %v: %s is published twice", p, key)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		seen[key] = true
		out.Published = append(out.Published, p)
	}
	return out, errors.Join(errs...)
}

func checkExternal(i int, e External, kept []External, ids, bridges map[string]bool) error {
	what := fmt.Sprintf("external network %d (%s)", i, e.NetworkID)
	switch {
	case e.NetworkID == "":
		return errdefs.Invalidf("underlay: %s: no network ID", what)
	case ids[e.NetworkID]:
		return errdefs.Invalidf("underlay: %s: listed twice", what)
	case bridges[e.Bridge]:
		return errdefs.Invalidf("underlay: %s: bridge %s is used by another external network", what, e.Bridge)
	case !e.CIDR.IsValid() || !e.CIDR.Addr().Is4():
		return errdefs.Invalidf("underlay: %s: subnet %v is not an IPv4 prefix", what, e.CIDR)
	case e.CIDR != e.CIDR.Masked():
		return errdefs.Invalidf("underlay: %s: subnet %v has host bits set (%v?)", what, e.CIDR, e.CIDR.Masked())
	case e.CIDR.Bits() < 8:
		return errdefs.Invalidf("underlay: %s: subnet %v is implausibly large", what, e.CIDR)
	case e.Gateway.IsValid() && !e.CIDR.Contains(e.Gateway):
		return errdefs.Invalidf("underlay: %s: gateway %v is outside %v", what, e.Gateway, e.CIDR)
	}
	if err := hostnet.ValidIfName(e.Bridge); err != nil {
		return errdefs.Invalidf("underlay: %s: bridge: %v", what, err)
	}
	for _, a := range e.Addresses {
		if !e.CIDR.Contains(a) {
			return errdefs.Invalidf("underlay: %s: address %v is outside %v", what, a, e.CIDR)
		}
	}
	for _, o := range kept {
		if o.CIDR.Overlaps(e.CIDR) {
			return errdefs.Invalidf("underlay: %s: subnet %v overlaps %v of network %s", what, e.CIDR, o.CIDR, o.NetworkID)
		}
	}
	return nil
}

func (c Config) externalOf(a netip.Addr) *External {
	for i := range c.Externals {
		if c.Externals[i].CIDR.Contains(a) {
			return &c.Externals[i]
		}
	}
	return nil
}

// NoUplinkMessage is the Status.Message of modes that leave through the
// host's default route when there is none.
const NoUplinkMessage = "no default route: the public network has no uplink (floating IPs stay reachable from this host)"
