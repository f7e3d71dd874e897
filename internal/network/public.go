package network

import (
	"context"
	"fmt"
	"net/netip"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// PublicNetwork describes the external network a cloud starts with
// (DevStack's "public"): flat, router:external, no DHCP, its gateway on the
// host (the nat underlay puts it on the network's bridge).
type PublicNetwork struct {
	Name            string       // default "public"
	PhysicalNetwork string       // provider:physical_network; default "public"
	CIDR            netip.Prefix // default 172.24.4.0/24
	Gateway         netip.Addr   // default: the CIDR's first host
}

// DefaultPublicCIDR is the nat underlay's default public range.
var DefaultPublicCIDR = netip.MustParsePrefix("172.24.4.0/24")

// pPublicMade records that the public network was made once, so that a
// user who deletes it does not get it back at the next start.
const pPublicMade = prefix + "bootstrap/public"

// EnsurePublicNetwork makes the cloud's public network and its subnet, in
// projectID (the admin project), unless it was made before (then it returns
// the network if it still exists, and made=false). A start interrupted
// between the steps is completed by the next one.
func (s *Service) EnsurePublicNetwork(ctx context.Context, projectID string, pn PublicNetwork) (n Network, made bool, err error) {
	if pn.Name == "" {
		pn.Name = "public"
	}
	if pn.PhysicalNetwork == "" {
		pn.PhysicalNetwork = "public"
	}
	if !pn.CIDR.IsValid() {
		pn.CIDR = DefaultPublicCIDR
	}
	pn.CIDR = pn.CIDR.Masked()
	if !pn.Gateway.IsValid() {
		pn.Gateway = pn.CIDR.Addr().Next()
	}
	if kv, ok := s.cache.Get(pPublicMade); ok {
		n, ok := s.Network(string(kv.Value))
		if !ok {
			return Network{}, false, nil // deleted by a user: not made again
		}
		return n, false, nil
	}
	admin := policy.Creds{UserID: "nimbo", ProjectID: projectID, Roles: []string{"admin", "member", "reader"}}
	for _, x := range s.AllNetworks() {
		if x.Name == pn.Name && x.External {
			n = x // a start interrupted after the network was made
		}
	}
	if n.ID == "" {
		flat, ext := "flat", true
		if n, err = s.CreateNetwork(ctx, admin, v2.NetworkRequest{Name: &pn.Name, External: &ext, NetworkType: &flat,
			PhysicalNetwork: &pn.PhysicalNetwork, ProjectID: &projectID}); err != nil {
			return Network{}, false, fmt.Errorf("public network: %w", err)
		}
	}
	if len(s.SubnetIDs(n.ID)) == 0 {
		name, cidr, dhcp := pn.Name+"-subnet", pn.CIDR.String(), false
		gw := v2.NullString{Value: pn.Gateway.String(), Valid: true}
		if _, err := s.CreateSubnet(ctx, admin, v2.SubnetRequest{Name: &name, NetworkID: &n.ID, CIDR: &cidr, GatewayIP: &gw,
			EnableDHCP: &dhcp, ProjectID: &projectID}); err != nil {
			return Network{}, false, fmt.Errorf("public network: subnet: %w", err)
		}
	}
	if err := s.cache.Commit(ctx, store.Txn{Ops: []store.Op{{Kind: store.OpPut, Key: pPublicMade, Value: []byte(n.ID)}}}); err != nil {
		return Network{}, false, fmt.Errorf("public network: %w", err)
	}
	return n, true, nil
}
