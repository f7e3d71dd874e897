// Package metadata is nimbo's instance metadata service: the HTTP endpoint
// guests reach at 169.254.169.254:80, answering like Nova's metadata API
// (the EC2-compatible tree under / and the OpenStack tree under /openstack).
//
// The per-host agent runs one listener per place a guest's request can
// arrive: inside each network's DHCP namespace, on 169.254.169.254:80 (an
// address on the DHCP leg; DHCP option 121 routes guests to it through the
// DHCP port), and inside each router namespace, on a local port that
// nftables redirects 169.254.169.254:80 to. Listen opens the socket inside
// the namespace (a socket keeps the namespace it was created in) and Serve
// then answers from ordinary goroutines.
//
// A requester is identified only by where its packets come from: the
// network (fixed for a DHCP namespace, picked by subnet in a router
// namespace: see Source) and the TCP peer address of the connection. Headers
// a guest can forge (X-Forwarded-For, Forwarded, X-Real-IP, Neutron's
// X-Instance-ID and the like) are never used and are removed before the
// request reaches the Content. A Lookup maps (network, address) to the port
// behind it; an unknown source gets a 404, as Nova answers for an unknown
// instance. The instance data itself comes from a Content; DefaultContent
// answers the version indexes and reports that no instance data is
// available, until the compute service provides a real one.
//
// This is also what keeps guests away from the host cloud's own metadata
// service (AWS IMDS and the like): every path a guest's 169.254.169.254
// takes ends at one of these listeners.
package metadata

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
)

// Addr is the address guests reach the metadata service at.
var Addr = netip.MustParseAddr("169.254.169.254")

// Requester is the identity of a guest making a metadata request: the
// network and source address its request came from (as the server observed
// them) and the port the Lookup found behind them.
type Requester struct {
	NetworkID   string     // the network the request came from
	IP          netip.Addr // the TCP peer address of the request
	PortID      string     // the port that has IP on NetworkID
	DeviceID    string     // the port's device_id (an instance ID for compute ports)
	DeviceOwner string     // the port's device_owner ("compute:nova", "network:dhcp", ...)
	ProjectID   string     // the port's project
}

// HasInstance reports whether the requester's port belongs to an instance
// (its device_owner is compute:*, as Neutron sets it for Nova's ports, and
// its device_id is set).
func (r Requester) HasInstance() bool {
	return strings.HasPrefix(r.DeviceOwner, "compute:") && r.DeviceID != ""
}

// Lookup resolves the port behind a source address on a network. The agent
// implements it over the network service.
type Lookup interface {
	// Port returns the port on networkID that has the fixed address ip, with
	// NetworkID and IP filled in. When there is none it returns an error that
	// wraps errdefs.ErrNotFound; any other error is a failure to look up
	// (the guest gets a 500 and may retry).
	Port(ctx context.Context, networkID string, ip netip.Addr) (Requester, error)
}

// Source picks the network a source address belongs to, reporting false
// when it belongs to none the listener serves. A DHCP namespace's listener
// uses Fixed; a router namespace's uses a Subnets table.
type Source func(ip netip.Addr) (networkID string, ok bool)

// Fixed returns a Source that puts every address on networkID: the source
// for a listener in a network's DHCP namespace, which only that network's
// guests can reach.
func Fixed(networkID string) Source {
	return func(netip.Addr) (string, bool) { return networkID, true }
}

// Subnets is a table of the subnets attached to a router, each with its
// network, that picks a requester's network by its source address (the most
// specific subnet that contains it). One router never has overlapping
// subnets, so the choice is unambiguous. The zero value is an empty table.
// It is safe for concurrent use; Set replaces the table while a server uses
// it.
type Subnets struct {
	table atomic.Pointer[[]subnet]
}

type subnet struct {
	prefix    netip.Prefix
	networkID string
}

// NewSubnets returns a table holding subnets (prefix -> network ID).
func NewSubnets(subnets map[netip.Prefix]string) *Subnets {
	s := &Subnets{}
	s.Set(subnets)
	return s
}

// Set replaces the table with subnets (prefix -> network ID). Invalid
// prefixes are ignored.
func (s *Subnets) Set(subnets map[netip.Prefix]string) {
	t := make([]subnet, 0, len(subnets))
	for p, id := range subnets {
		if p.IsValid() {
			t = append(t, subnet{prefix: p.Masked(), networkID: id})
		}
	}
	// Most specific first.
	slices.SortFunc(t, func(a, b subnet) int { return b.prefix.Bits() - a.prefix.Bits() })
	s.table.Store(&t)
}

// Network returns the network of the subnet that contains ip. Its method
// value (s.Network) is a Source.
func (s *Subnets) Network(ip netip.Addr) (string, bool) {
	t := s.table.Load()
	if t == nil {
		return "", false
	}
	ip = ip.Unmap()
	for _, e := range *t {
		if e.prefix.Contains(ip) {
			return e.networkID, true
		}
	}
	return "", false
}

// Content serves instance data to an identified requester. The compute
// service implements it with the instance's data; DefaultContent is the one
// used until then.
type Content interface {
	// Serve answers r for who. The request's forwarding headers have been
	// removed; who is the only identity to trust.
	Serve(w http.ResponseWriter, r *http.Request, who Requester)
}
