package network_test

import (
	"net/netip"
	"testing"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/network"
)

func TestRouters(t *testing.T) {
	s, ctx := newService(t)
	ext, err := s.CreateNetwork(ctx, admin, v2.NetworkRequest{Name: ptr("public"), External: ptr(true), Shared: ptr(false),
		NetworkType: ptr("flat"), PhysicalNetwork: ptr("public")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSubnet(ctx, admin, v2.SubnetRequest{NetworkID: &ext.ID, CIDR: ptr("172.24.4.0/24"), EnableDHCP: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	_, sn := netAndSubnet(t, s, ctx, alice, "10.0.0.0/24")

	// A member can create a router with a gateway, but not pick its address.
	_, err = s.CreateRouter(ctx, alice, v2.RouterRequest{ExternalGatewayInfo: &v2.NullGateway{Valid: true,
		Value: v2.GatewayInfo{NetworkID: ext.ID, ExternalFixedIPs: []v2.FixedIP{{IPAddress: "172.24.4.10"}}}}})
	wantErr(t, err, errdefs.ErrForbidden, "")
	_, err = s.CreateRouter(ctx, alice, v2.RouterRequest{ExternalGatewayInfo: &v2.NullGateway{Valid: true, Value: v2.GatewayInfo{NetworkID: sn.NetworkID}}})
	wantErr(t, err, errdefs.ErrInvalid, "BadRequest") // not an external network
	r, err := s.CreateRouter(ctx, alice, v2.RouterRequest{Name: ptr("r1"), ExternalGatewayInfo: &v2.NullGateway{Valid: true, Value: v2.GatewayInfo{NetworkID: ext.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Gateway == nil || !r.Gateway.EnableSNAT || len(r.Gateway.FixedIPs) != 1 || !netip.MustParsePrefix("172.24.4.0/24").Contains(r.Gateway.FixedIPs[0].IP) {
		t.Fatalf("gateway: %+v", r.Gateway)
	}
	wantErr(t, s.DeletePort(ctx, admin, r.Gateway.PortID), errdefs.ErrConflict, "L3PortInUse")

	// Interfaces.
	info, err := s.AddInterface(ctx, alice, r.ID, v2.RouterInterfaceRequest{SubnetID: sn.ID})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.GetPort(alice, info.PortID)
	if err != nil || p.FixedIPs[0].IP != sn.Gateway || p.DeviceOwner != network.OwnerRouterInterface {
		t.Fatalf("interface port: %+v %v", p, err)
	}
	_, err = s.AddInterface(ctx, alice, r.ID, v2.RouterInterfaceRequest{SubnetID: sn.ID})
	wantErr(t, err, errdefs.ErrInvalid, "BadRequest") // already on this router
	r2, err := s.CreateRouter(ctx, alice, v2.RouterRequest{Name: ptr("r2")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.AddInterface(ctx, alice, r2.ID, v2.RouterInterfaceRequest{SubnetID: sn.ID})
	wantErr(t, err, errdefs.ErrConflict, "") // routed elsewhere (its gateway address is taken)
	_, err = s.AddInterface(ctx, bob, r.ID, v2.RouterInterfaceRequest{SubnetID: sn.ID})
	wantErr(t, err, errdefs.ErrNotFound, "RouterNotFound")
	wantErr(t, s.DeleteSubnet(ctx, alice, sn.ID), errdefs.ErrConflict, "SubnetInUse")

	// Extra routes need a connected next hop.
	_, err = s.UpdateRouter(ctx, alice, r.ID, v2.RouterRequest{Routes: &v2.NullRoutes{Valid: true, Value: []v2.HostRoute{{Destination: "192.168.9.0/24", NextHop: "10.9.9.9"}}}})
	wantErr(t, err, errdefs.ErrInvalid, "InvalidRoutes")
	r, err = s.UpdateRouter(ctx, alice, r.ID, v2.RouterRequest{Routes: &v2.NullRoutes{Valid: true, Value: []v2.HostRoute{{Destination: "192.168.9.0/24", NextHop: "10.0.0.5"}}}})
	if err != nil || len(r.Routes) != 1 {
		t.Fatalf("extra route: %+v %v", r.Routes, err)
	}

	wantErr(t, s.DeleteRouter(ctx, alice, r.ID), errdefs.ErrConflict, "RouterInUse")
	_, err = s.RemoveInterface(ctx, alice, r.ID, v2.RouterInterfaceRequest{SubnetID: sn.ID})
	wantErr(t, err, errdefs.ErrConflict, "RouterInterfaceInUseByRoute")
	if r, err = s.UpdateRouter(ctx, alice, r.ID, v2.RouterRequest{Routes: &v2.NullRoutes{}}); err != nil || len(r.Routes) != 0 {
		t.Fatalf("routes: null: %+v %v", r.Routes, err)
	}
	if _, err := s.RemoveInterface(ctx, alice, r.ID, v2.RouterInterfaceRequest{SubnetID: sn.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetPort(alice, info.PortID); !errdefs.IsNotFound(err) {
		t.Fatalf("interface port survived its removal: %v", err)
	}
	_, err = s.RemoveInterface(ctx, alice, r.ID, v2.RouterInterfaceRequest{SubnetID: sn.ID})
	wantErr(t, err, errdefs.ErrNotFound, "")
	// Clearing the gateway frees its port and address.
	r, err = s.UpdateRouter(ctx, alice, r.ID, v2.RouterRequest{ExternalGatewayInfo: &v2.NullGateway{}})
	if err != nil || r.Gateway != nil {
		t.Fatalf("clear gateway: %+v %v", r.Gateway, err)
	}
	if err := s.DeleteRouter(ctx, alice, r.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNetwork(ctx, admin, ext.ID); err != nil {
		t.Fatalf("external network still in use after its routers went: %v", err)
	}
}
