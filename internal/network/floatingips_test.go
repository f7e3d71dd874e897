package network_test

import (
	"testing"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

func TestFloatingIPs(t *testing.T) {
	s, ctx := newService(t)
	ext, err := s.CreateNetwork(ctx, admin, v2.NetworkRequest{Name: ptr("public"), External: ptr(true), NetworkType: ptr("flat"), PhysicalNetwork: ptr("public")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSubnet(ctx, admin, v2.SubnetRequest{NetworkID: &ext.ID, CIDR: ptr("172.24.4.0/24"), EnableDHCP: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	n, sn := netAndSubnet(t, s, ctx, alice, "10.0.0.0/24")
	vm, err := s.CreatePort(ctx, alice, v2.PortRequest{NetworkID: &n.ID})
	if err != nil {
		t.Fatal(err)
	}
	// Not reachable before a router connects the subnet to the external network.
	_, err = s.CreateFloatingIP(ctx, alice, v2.FloatingIPRequest{FloatingNetworkID: &ext.ID, PortID: &v2.NullString{Value: vm.ID, Valid: true}})
	wantErr(t, err, errdefs.ErrNotFound, "ExternalGatewayForFloatingIPNotFound")
	_, err = s.CreateFloatingIP(ctx, alice, v2.FloatingIPRequest{FloatingNetworkID: &n.ID})
	wantErr(t, err, errdefs.ErrInvalid, "BadRequest") // not external
	_, err = s.CreateFloatingIP(ctx, alice, v2.FloatingIPRequest{FloatingNetworkID: &ext.ID, FloatingIPAddress: ptr("172.24.4.99")})
	wantErr(t, err, errdefs.ErrForbidden, "")

	r, err := s.CreateRouter(ctx, alice, v2.RouterRequest{ExternalGatewayInfo: &v2.NullGateway{Valid: true, Value: v2.GatewayInfo{NetworkID: ext.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddInterface(ctx, alice, r.ID, v2.RouterInterfaceRequest{SubnetID: sn.ID}); err != nil {
		t.Fatal(err)
	}
	f, err := s.CreateFloatingIP(ctx, alice, v2.FloatingIPRequest{FloatingNetworkID: &ext.ID, PortID: &v2.NullString{Value: vm.ID, Valid: true}})
	if err != nil {
		t.Fatal(err)
	}
	if f.RouterID != r.ID || f.FixedIP != vm.FixedIPs[0].IP || !f.IP.IsValid() {
		t.Fatalf("floating IP: %+v", f)
	}
	_, err = s.CreateFloatingIP(ctx, alice, v2.FloatingIPRequest{FloatingNetworkID: &ext.ID, PortID: &v2.NullString{Value: vm.ID, Valid: true}})
	wantErr(t, err, errdefs.ErrConflict, "FloatingIPPortAlreadyAssociated")
	_, err = s.GetFloatingIP(bob, f.ID)
	wantErr(t, err, errdefs.ErrNotFound, "FloatingIPNotFound")
	// The router and its interface are in use by the floating IP.
	_, err = s.RemoveInterface(ctx, alice, r.ID, v2.RouterInterfaceRequest{SubnetID: sn.ID})
	wantErr(t, err, errdefs.ErrConflict, "RouterInterfaceInUseByFloatingIP")
	_, err = s.UpdateRouter(ctx, alice, r.ID, v2.RouterRequest{ExternalGatewayInfo: &v2.NullGateway{}})
	wantErr(t, err, errdefs.ErrConflict, "RouterExternalGatewayInUseByFloatingIp")

	// Deleting the port dissociates the floating IP (as Neutron does).
	if err := s.DeletePort(ctx, alice, vm.ID); err != nil {
		t.Fatal(err)
	}
	if f, _ = s.GetFloatingIP(alice, f.ID); f.FixedPortID != "" || f.RouterID != "" {
		t.Fatalf("floating IP still associated with a deleted port: %+v", f)
	}
	if _, err := s.RemoveInterface(ctx, alice, r.ID, v2.RouterInterfaceRequest{SubnetID: sn.ID}); err != nil {
		t.Fatalf("interface after the floating IP's port went: %v", err)
	}
	if err := s.DeleteFloatingIP(ctx, alice, f.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRouter(ctx, alice, r.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNetwork(ctx, admin, ext.ID); err != nil {
		t.Fatalf("external network still in use: %v", err)
	}
}
