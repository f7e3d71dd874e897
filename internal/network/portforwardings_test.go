package network_test

import (
	"testing"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

func TestPortForwardings(t *testing.T) {
	s, ctx := newService(t)
	ext, err := s.CreateNetwork(ctx, admin, v2.NetworkRequest{Name: ptr("public"), External: ptr(true), NetworkType: ptr("flat"), PhysicalNetwork: ptr("public")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSubnet(ctx, admin, v2.SubnetRequest{NetworkID: &ext.ID, CIDR: ptr("172.24.4.0/24"), EnableDHCP: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	n, sn := netAndSubnet(t, s, ctx, alice, "10.0.0.0/24")
	vm, _ := s.CreatePort(ctx, alice, v2.PortRequest{NetworkID: &n.ID})
	r, _ := s.CreateRouter(ctx, alice, v2.RouterRequest{ExternalGatewayInfo: &v2.NullGateway{Valid: true, Value: v2.GatewayInfo{NetworkID: ext.ID}}})
	if _, err := s.AddInterface(ctx, alice, r.ID, v2.RouterInterfaceRequest{SubnetID: sn.ID}); err != nil {
		t.Fatal(err)
	}
	f, err := s.CreateFloatingIP(ctx, alice, v2.FloatingIPRequest{FloatingNetworkID: &ext.ID})
	if err != nil {
		t.Fatal(err)
	}
	ssh := v2.PortForwardingRequest{Protocol: ptr("tcp"), InternalPortID: &vm.ID, InternalIPAddress: ptr(vm.FixedIPs[0].IP.String()),
		InternalPort: ptr(v2.Int(22)), ExternalPort: ptr(v2.Int(2222))}
	pf, err := s.CreatePortForwarding(ctx, alice, f.ID, ssh)
	if err != nil || pf.ExternalMin != 2222 || pf.InternalMin != 22 {
		t.Fatalf("forwarding: %+v %v", pf, err)
	}
	_, err = s.CreatePortForwarding(ctx, alice, f.ID, ssh)
	wantErr(t, err, errdefs.ErrInvalid, "BadRequest") // overlapping external port
	udp := ssh
	udp.Protocol = ptr("udp")
	if _, err := s.CreatePortForwarding(ctx, alice, f.ID, udp); err != nil {
		t.Fatalf("same port, other protocol: %v", err)
	}
	rng := v2.PortForwardingRequest{Protocol: ptr("tcp"), InternalPortID: &vm.ID, InternalPortRange: ptr("8000:8010"), ExternalPortRange: ptr("9000:9005")}
	_, err = s.CreatePortForwarding(ctx, alice, f.ID, rng)
	wantErr(t, err, errdefs.ErrInvalid, "") // ranges of different lengths
	rng.ExternalPortRange = ptr("9000:9010")
	if _, err := s.CreatePortForwarding(ctx, alice, f.ID, rng); err != nil {
		t.Fatalf("range: %v", err)
	}
	bad := ssh
	bad.ExternalPort = ptr(v2.Int(70000))
	_, err = s.CreatePortForwarding(ctx, alice, f.ID, bad)
	wantErr(t, err, errdefs.ErrInvalid, "")
	_, err = s.CreatePortForwarding(ctx, bob, f.ID, ssh)
	wantErr(t, err, errdefs.ErrNotFound, "FloatingIPNotFound")
	// A floating IP with forwardings cannot also be associated.
	_, err = s.UpdateFloatingIP(ctx, alice, f.ID, v2.FloatingIPRequest{PortID: &v2.NullString{Value: vm.ID, Valid: true}})
	wantErr(t, err, errdefs.ErrConflict, "FloatingIPPortAlreadyAssociated")
	// Deleting the internal port drops its forwardings.
	if err := s.DeletePort(ctx, alice, vm.ID); err != nil {
		t.Fatal(err)
	}
	if pfs, err := s.PortForwardings(alice, f.ID); err != nil || len(pfs) != 0 {
		t.Fatalf("forwardings left after their port went: %+v %v", pfs, err)
	}
}
