package network_test

import (
	"sync"
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
	wantErr(t, err, errdefs.ErrConflict, "FipInUseByPortForwarding")
	// Deleting the internal port drops its forwardings.
	if err := s.DeletePort(ctx, alice, vm.ID); err != nil {
		t.Fatal(err)
	}
	if pfs, err := s.PortForwardings(alice, f.ID); err != nil || len(pfs) != 0 {
		t.Fatalf("forwardings left after their port went: %+v %v", pfs, err)
	}
	// ... and with them the floating IP's binding to the router.
	if f, _ = s.GetFloatingIP(alice, f.ID); f.RouterID != "" {
		t.Fatalf("floating IP still bound to the router: %+v", f)
	}
	if _, err := s.RemoveInterface(ctx, alice, r.ID, v2.RouterInterfaceRequest{SubnetID: sn.ID}); err != nil {
		t.Fatalf("interface still in use after the forwardings went: %v", err)
	}
}

func TestPortForwardingRouters(t *testing.T) {
	s, ctx := newService(t)
	ext, err := s.CreateNetwork(ctx, admin, v2.NetworkRequest{Name: ptr("public"), External: ptr(true), NetworkType: ptr("flat"), PhysicalNetwork: ptr("public")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSubnet(ctx, admin, v2.SubnetRequest{NetworkID: &ext.ID, CIDR: ptr("172.24.4.0/24"), EnableDHCP: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	f, err := s.CreateFloatingIP(ctx, alice, v2.FloatingIPRequest{FloatingNetworkID: &ext.ID})
	if err != nil {
		t.Fatal(err)
	}
	// Two subnets behind two routers: a floating IP's forwardings go
	// through one router.
	var vms []string
	for _, cidr := range []string{"10.1.0.0/24", "10.2.0.0/24"} {
		n, sn := netAndSubnet(t, s, ctx, alice, cidr)
		r, err := s.CreateRouter(ctx, alice, v2.RouterRequest{ExternalGatewayInfo: &v2.NullGateway{Valid: true, Value: v2.GatewayInfo{NetworkID: ext.ID}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddInterface(ctx, alice, r.ID, v2.RouterInterfaceRequest{SubnetID: sn.ID}); err != nil {
			t.Fatal(err)
		}
		vm, err := s.CreatePort(ctx, alice, v2.PortRequest{NetworkID: &n.ID})
		if err != nil {
			t.Fatal(err)
		}
		vms = append(vms, vm.ID)
	}
	pf := func(vm string, ext int) v2.PortForwardingRequest {
		return v2.PortForwardingRequest{Protocol: ptr("tcp"), InternalPortID: &vm, InternalPort: ptr(v2.Int(22)), ExternalPort: ptr(v2.Int(ext))}
	}
	first, err := s.CreatePortForwarding(ctx, alice, f.ID, pf(vms[0], 2201))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.CreatePortForwarding(ctx, alice, f.ID, pf(vms[1], 2202))
	wantErr(t, err, errdefs.ErrInvalid, "BadRequest")
	// The only forwarding may move behind the other router.
	if _, err := s.UpdatePortForwarding(ctx, alice, f.ID, first.ID, v2.PortForwardingRequest{InternalPortID: &vms[1]}); err != nil {
		t.Fatalf("moving the only forwarding: %v", err)
	}
	if _, err := s.UpdatePortForwarding(ctx, alice, f.ID, first.ID, v2.PortForwardingRequest{Description: ptr("same place")}); err != nil {
		t.Fatalf("updating in place: %v", err)
	}
	if err := s.DeleteFloatingIP(ctx, alice, f.ID); err != nil {
		t.Fatal(err)
	}
	for _, r := range s.ListRouters(alice) {
		for _, p := range s.RouterInterfaces(r.ID) {
			if _, err := s.RemoveInterface(ctx, alice, r.ID, v2.RouterInterfaceRequest{PortID: p.ID}); err != nil {
				t.Fatalf("interface in use after the floating IP went: %v", err)
			}
		}
	}
}

// TestManyPortForwardings deletes a floating IP, and a port, with more
// forwardings than an etcd transaction may hold operations (128).
func TestManyPortForwardings(t *testing.T) {
	s, ctx := newService(t)
	ext, err := s.CreateNetwork(ctx, admin, v2.NetworkRequest{Name: ptr("public"), External: ptr(true), NetworkType: ptr("flat"), PhysicalNetwork: ptr("public")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSubnet(ctx, admin, v2.SubnetRequest{NetworkID: &ext.ID, CIDR: ptr("172.24.4.0/24"), EnableDHCP: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	n, sn := netAndSubnet(t, s, ctx, admin, "10.0.0.0/24")
	r, _ := s.CreateRouter(ctx, admin, v2.RouterRequest{ExternalGatewayInfo: &v2.NullGateway{Valid: true, Value: v2.GatewayInfo{NetworkID: ext.ID}}})
	if _, err := s.AddInterface(ctx, admin, r.ID, v2.RouterInterfaceRequest{SubnetID: sn.ID}); err != nil {
		t.Fatal(err)
	}
	for _, deletePort := range []bool{false, true} {
		vm, err := s.CreatePort(ctx, admin, v2.PortRequest{NetworkID: &n.ID})
		if err != nil {
			t.Fatal(err)
		}
		f, err := s.CreateFloatingIP(ctx, admin, v2.FloatingIPRequest{FloatingNetworkID: &ext.ID})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 150 {
			if _, err := s.CreatePortForwarding(ctx, admin, f.ID, v2.PortForwardingRequest{Protocol: ptr("tcp"), InternalPortID: &vm.ID,
				InternalIPAddress: ptr(vm.FixedIPs[0].IP.String()), InternalPort: ptr(v2.Int(1000 + i)), ExternalPort: ptr(v2.Int(1000 + i))}); err != nil {
				t.Fatal(err)
			}
		}
		if deletePort {
			err = s.DeletePort(ctx, admin, vm.ID)
		} else {
			err = s.DeleteFloatingIP(ctx, admin, f.ID)
		}
		if err != nil {
			t.Fatalf("delete (port %v) with 150 forwardings: %v", deletePort, err)
		}
		if pfs := s.AllPortForwardings(); len(pfs) != 0 {
			t.Fatalf("%d forwardings left", len(pfs))
		}
	}
	// Nothing of them is left in the index: the interface can go.
	if _, err := s.RemoveInterface(ctx, admin, r.ID, v2.RouterInterfaceRequest{SubnetID: sn.ID}); err != nil {
		t.Fatalf("remove interface after the forwardings went: %v", err)
	}
}

// TestConcurrentPortForwardings creates forwardings on one floating IP from
// several goroutines: optimistic retries must absorb the races.
func TestConcurrentPortForwardings(t *testing.T) {
	s, ctx := newService(t)
	ext, _ := s.CreateNetwork(ctx, admin, v2.NetworkRequest{Name: ptr("public"), External: ptr(true), NetworkType: ptr("flat"), PhysicalNetwork: ptr("public")})
	if _, err := s.CreateSubnet(ctx, admin, v2.SubnetRequest{NetworkID: &ext.ID, CIDR: ptr("172.24.4.0/24"), EnableDHCP: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	n, sn := netAndSubnet(t, s, ctx, admin, "10.0.0.0/24")
	r, _ := s.CreateRouter(ctx, admin, v2.RouterRequest{ExternalGatewayInfo: &v2.NullGateway{Valid: true, Value: v2.GatewayInfo{NetworkID: ext.ID}}})
	if _, err := s.AddInterface(ctx, admin, r.ID, v2.RouterInterfaceRequest{SubnetID: sn.ID}); err != nil {
		t.Fatal(err)
	}
	vm, _ := s.CreatePort(ctx, admin, v2.PortRequest{NetworkID: &n.ID})
	f, err := s.CreateFloatingIP(ctx, admin, v2.FloatingIPRequest{FloatingNetworkID: &ext.ID})
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 6, 10
	errs := make(chan error, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				port := 2000 + w*each + i
				_, err := s.CreatePortForwarding(ctx, admin, f.ID, v2.PortForwardingRequest{Protocol: ptr("tcp"), InternalPortID: &vm.ID,
					InternalIPAddress: ptr(vm.FixedIPs[0].IP.String()), InternalPort: ptr(v2.Int(port)), ExternalPort: ptr(v2.Int(port))})
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent create: %v", err)
		}
	}
	if got := len(s.AllPortForwardings()); got != workers*each {
		t.Fatalf("%d forwardings, want %d", got, workers*each)
	}
}
