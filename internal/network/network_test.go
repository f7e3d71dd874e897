package network_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/network"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/store/etcdstore"
)

func ptr[T any](v T) *T { return &v }

var (
	alice = policy.Creds{UserID: "alice", ProjectID: "p1", Roles: []string{"member", "reader"}}
	bob   = policy.Creds{UserID: "bob", ProjectID: "p2", Roles: []string{"member", "reader"}}
	admin = policy.Creds{UserID: "admin", ProjectID: "padmin", Roles: []string{"admin", "member", "reader"}}
)

func newService(t *testing.T) (*network.Service, context.Context) {
	t.Helper()
	ctx := context.Background()
	st, err := etcdstore.Open(ctx, etcdstore.Config{Embedded: &etcdstore.Embedded{Dir: t.TempDir(), UnsafeNoFsync: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	s, err := network.New(ctx, st, network.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, ctx
}

func wantErr(t *testing.T, err error, kind error, typ string) {
	t.Helper()
	if !errors.Is(err, kind) || (typ != "" && errdefs.TypeOf(err) != typ) {
		t.Fatalf("got %v (type %q), want %v %s", err, errdefs.TypeOf(err), kind, typ)
	}
}

func netAndSubnet(t *testing.T, s *network.Service, ctx context.Context, c policy.Creds, cidr string) (network.Network, network.Subnet) {
	t.Helper()
	n, err := s.CreateNetwork(ctx, c, v2.NetworkRequest{Name: ptr("n")})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := s.CreateSubnet(ctx, c, v2.SubnetRequest{NetworkID: &n.ID, CIDR: &cidr, IPVersion: ptr(v2.Int(4))})
	if err != nil {
		t.Fatal(err)
	}
	return n, sn
}

func TestNetworkSubnetPort(t *testing.T) {
	s, ctx := newService(t)
	n, sn := netAndSubnet(t, s, ctx, alice, "10.0.0.0/29")
	if n.Type != network.TypeVXLAN || n.SegmentationID == 0 || n.MTU != network.MTUVXLAN {
		t.Fatalf("network defaults: %+v", n)
	}
	if sn.Gateway != netip.MustParseAddr("10.0.0.1") || len(sn.Pools) != 1 || sn.Pools[0].Start != netip.MustParseAddr("10.0.0.2") || sn.Pools[0].End != netip.MustParseAddr("10.0.0.6") {
		t.Fatalf("subnet defaults: %+v", sn)
	}
	// Five addresses in the pool: five ports get distinct ones, the sixth fails.
	seen := map[netip.Addr]bool{}
	var ports []network.Port
	for range 5 {
		p, err := s.CreatePort(ctx, alice, v2.PortRequest{NetworkID: &n.ID})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.FixedIPs) != 1 || seen[p.FixedIPs[0].IP] || p.Status != network.StatusDown || len(p.SecurityGroups) != 1 {
			t.Fatalf("port %+v", p)
		}
		seen[p.FixedIPs[0].IP] = true
		ports = append(ports, p)
	}
	_, err := s.CreatePort(ctx, alice, v2.PortRequest{NetworkID: &n.ID})
	wantErr(t, err, errdefs.ErrConflict, "IpAddressGenerationFailure")
	// Deleting a port frees its address for the next one.
	if err := s.DeletePort(ctx, alice, ports[0].ID); err != nil {
		t.Fatal(err)
	}
	p, err := s.CreatePort(ctx, alice, v2.PortRequest{NetworkID: &n.ID, FixedIPs: &[]v2.FixedIP{{IPAddress: ports[0].FixedIPs[0].IP.String()}}})
	if err != nil {
		t.Fatalf("reusing a freed address: %v", err)
	}
	_, err = s.CreatePort(ctx, alice, v2.PortRequest{NetworkID: &n.ID, FixedIPs: &[]v2.FixedIP{{IPAddress: p.FixedIPs[0].IP.String()}}})
	wantErr(t, err, errdefs.ErrConflict, "IpAddressAlreadyAllocated")
	_, err = s.CreatePort(ctx, alice, v2.PortRequest{NetworkID: &n.ID, MACAddress: &p.MAC, FixedIPs: &[]v2.FixedIP{}})
	wantErr(t, err, errdefs.ErrConflict, "MacAddressInUse")
	_, err = s.CreatePort(ctx, alice, v2.PortRequest{NetworkID: &n.ID, FixedIPs: &[]v2.FixedIP{{IPAddress: "10.9.9.9"}}})
	wantErr(t, err, errdefs.ErrInvalid, "")
	_, err = s.CreatePort(ctx, alice, v2.PortRequest{NetworkID: &n.ID, FixedIPs: &[]v2.FixedIP{{IPAddress: "10.0.0.7"}}}) // broadcast
	wantErr(t, err, errdefs.ErrInvalid, "")
	_, err = s.CreatePort(ctx, alice, v2.PortRequest{NetworkID: &n.ID, HostID: ptr("h1")})
	wantErr(t, err, errdefs.ErrForbidden, "")

	// In use: 409s; other projects: 404.
	wantErr(t, s.DeleteSubnet(ctx, alice, sn.ID), errdefs.ErrConflict, "SubnetInUse")
	wantErr(t, s.DeleteNetwork(ctx, alice, n.ID), errdefs.ErrConflict, "NetworkInUse")
	_, err = s.GetNetwork(bob, n.ID)
	wantErr(t, err, errdefs.ErrNotFound, "NetworkNotFound")
	_, err = s.CreatePort(ctx, bob, v2.PortRequest{NetworkID: &n.ID})
	wantErr(t, err, errdefs.ErrNotFound, "NetworkNotFound")
	for _, p := range append(ports[1:], p) {
		if err := s.DeletePort(ctx, alice, p.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteNetwork(ctx, alice, n.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSubnet(alice, sn.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("subnet survived its network: %v", err)
	}
}

func TestSubnetValidation(t *testing.T) {
	s, ctx := newService(t)
	n, _ := netAndSubnet(t, s, ctx, alice, "10.1.0.0/24")
	cases := map[string]struct {
		r    v2.SubnetRequest
		kind error
	}{
		"host bits":    {v2.SubnetRequest{CIDR: ptr("10.2.0.5/24")}, errdefs.ErrInvalid},
		"garbage":      {v2.SubnetRequest{CIDR: ptr("10.2.0.0/33")}, errdefs.ErrInvalid},
		"overlap":      {v2.SubnetRequest{CIDR: ptr("10.1.0.128/25")}, errdefs.ErrInvalid},
		"ipv6":         {v2.SubnetRequest{CIDR: ptr("fd00::/64"), IPVersion: ptr(v2.Int(6))}, errdefs.ErrInvalid},
		"pool outside": {v2.SubnetRequest{CIDR: ptr("10.3.0.0/24"), AllocationPools: &[]v2.AllocationPool{{Start: "10.3.1.1", End: "10.3.1.9"}}}, errdefs.ErrInvalid},
		"pool reverse": {v2.SubnetRequest{CIDR: ptr("10.3.0.0/24"), AllocationPools: &[]v2.AllocationPool{{Start: "10.3.0.9", End: "10.3.0.2"}}}, errdefs.ErrInvalid},
		"gw in pool":   {v2.SubnetRequest{CIDR: ptr("10.3.0.0/24"), GatewayIP: &v2.NullString{Value: "10.3.0.5", Valid: true}, AllocationPools: &[]v2.AllocationPool{{Start: "10.3.0.2", End: "10.3.0.9"}}}, errdefs.ErrConflict},
		"gw outside":   {v2.SubnetRequest{CIDR: ptr("10.3.0.0/24"), GatewayIP: &v2.NullString{Value: "10.4.0.1", Valid: true}}, errdefs.ErrInvalid},
		"bad dns":      {v2.SubnetRequest{CIDR: ptr("10.3.0.0/24"), DNSNameservers: &[]string{"nope"}}, errdefs.ErrInvalid},
		"no cidr":      {v2.SubnetRequest{}, errdefs.ErrInvalid},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			c.r.NetworkID = &n.ID
			_, err := s.CreateSubnet(ctx, alice, c.r)
			wantErr(t, err, c.kind, "")
		})
	}
	sn, err := s.CreateSubnet(ctx, alice, v2.SubnetRequest{NetworkID: &n.ID, CIDR: ptr("10.5.0.0/24"), GatewayIP: &v2.NullString{}})
	if err != nil || sn.Gateway.IsValid() || sn.Pools[0].Start != netip.MustParseAddr("10.5.0.1") {
		t.Fatalf("gateway null: %+v %v", sn, err)
	}
}

func TestConcurrentAllocationNeverDuplicates(t *testing.T) {
	s, ctx := newService(t)
	n, _ := netAndSubnet(t, s, ctx, admin, "10.8.0.0/26")
	var mu sync.Mutex
	seen := map[netip.Addr]string{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				p, err := s.CreatePort(ctx, admin, v2.PortRequest{NetworkID: &n.ID})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if other, dup := seen[p.FixedIPs[0].IP]; dup {
					t.Errorf("%s given to %s and %s", p.FixedIPs[0].IP, other, p.ID)
				}
				seen[p.FixedIPs[0].IP] = p.ID
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 40 {
		t.Fatalf("%d distinct addresses, want 40", len(seen))
	}
}

func TestSecurityGroups(t *testing.T) {
	s, ctx := newService(t)
	gs, err := s.ListGroups(ctx, alice)
	if err != nil || len(gs) != 1 || gs[0].Name != "default" || len(s.GroupRules(gs[0].ID)) != 4 {
		t.Fatalf("default group: %+v %v", gs, err)
	}
	g, err := s.CreateGroup(ctx, alice, v2.SecurityGroupRequest{Name: ptr("web")})
	if err != nil || len(s.GroupRules(g.ID)) != 2 {
		t.Fatalf("create group: %+v %v", g, err)
	}
	rule := func(proto string, min, max int) v2.SecurityGroupRuleRequest {
		return v2.SecurityGroupRuleRequest{SecurityGroupID: &g.ID, Direction: ptr("ingress"),
			Protocol: &v2.NullStringOrInt{Value: proto, Valid: true}, PortRangeMin: &v2.NullInt{Value: min, Valid: true}, PortRangeMax: &v2.NullInt{Value: max, Valid: true}}
	}
	if _, err := s.CreateRule(ctx, alice, rule("tcp", 22, 22)); err != nil {
		t.Fatal(err)
	}
	_, err = s.CreateRule(ctx, alice, rule("6", 22, 22))
	wantErr(t, err, errdefs.ErrConflict, "SecurityGroupRuleExists")
	_, err = s.CreateRule(ctx, alice, rule("tcp", 30, 20))
	wantErr(t, err, errdefs.ErrInvalid, "SecurityGroupInvalidPortRange")
	_, err = s.CreateRule(ctx, alice, rule("gre", 1, 2))
	wantErr(t, err, errdefs.ErrInvalid, "SecurityGroupInvalidProtocolForPort")
	_, err = s.CreateRule(ctx, alice, rule("bogus", 1, 2))
	wantErr(t, err, errdefs.ErrInvalid, "SecurityGroupRuleInvalidProtocol")
	_, err = s.CreateRule(ctx, bob, rule("udp", 53, 53))
	wantErr(t, err, errdefs.ErrNotFound, "SecurityGroupNotFound")
	_, err = s.CreateGroup(ctx, alice, v2.SecurityGroupRequest{Name: ptr("default")})
	wantErr(t, err, errdefs.ErrConflict, "")

	n, _ := netAndSubnet(t, s, ctx, alice, "10.9.0.0/24")
	p, err := s.CreatePort(ctx, alice, v2.PortRequest{NetworkID: &n.ID, SecurityGroups: &[]string{g.ID}})
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.DeleteGroup(ctx, alice, g.ID), errdefs.ErrConflict, "SecurityGroupInUse")
	wantErr(t, s.DeleteGroup(ctx, alice, gs[0].ID), errdefs.ErrConflict, "SecurityGroupCannotRemoveDefault")
	_, err = s.UpdatePort(ctx, alice, p.ID, v2.PortRequest{PortSecurityEnabled: ptr(false)})
	wantErr(t, err, errdefs.ErrInvalid, "PortSecurityAndIPRequiredForSecurityGroups")
	if _, err := s.UpdatePort(ctx, alice, p.ID, v2.PortRequest{PortSecurityEnabled: ptr(false), SecurityGroups: &[]string{}}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteGroup(ctx, alice, g.ID); err != nil {
		t.Fatal(err)
	}

	// Found by tempest: ICMP type/code 0 is not "any"; a bad port is named;
	// an admin may delete a project's default group (project clean-up).
	g2, err := s.CreateGroup(ctx, alice, v2.SecurityGroupRequest{Name: ptr("icmp")})
	if err != nil {
		t.Fatal(err)
	}
	icmp := v2.SecurityGroupRuleRequest{SecurityGroupID: &g2.ID, Direction: ptr("ingress"), Protocol: &v2.NullStringOrInt{Value: "icmp", Valid: true},
		PortRangeMin: &v2.NullInt{Value: 0, Valid: true}, PortRangeMax: &v2.NullInt{Value: 0, Valid: true}}
	r, err := s.CreateRule(ctx, alice, icmp)
	if err != nil || r.PortMin == nil || *r.PortMin != 0 || r.PortMax == nil || *r.PortMax != 0 {
		t.Fatalf("ICMP type 0 code 0: %+v %v", r, err)
	}
	bad := v2.SecurityGroupRuleRequest{SecurityGroupID: &g2.ID, Direction: ptr("ingress"), Protocol: &v2.NullStringOrInt{Value: "tcp", Valid: true},
		PortRangeMin: &v2.NullInt{Value: -16, Valid: true}, PortRangeMax: &v2.NullInt{Value: 80, Valid: true}}
	if _, err := s.CreateRule(ctx, alice, bad); err == nil || !strings.Contains(err.Error(), "Invalid value for port -16") {
		t.Fatalf("bad port: %v", err)
	}
	if err := s.DeleteGroup(ctx, admin, gs[0].ID); err != nil {
		t.Fatalf("admin deleting a default group: %v", err)
	}
	if gs, err := s.ListGroups(ctx, alice); err != nil || !slices.ContainsFunc(gs, func(g network.SecurityGroup) bool { return g.Name == "default" }) {
		t.Fatalf("the default group is not made again on next use: %+v %v", gs, err)
	}
}

func TestQuotas(t *testing.T) {
	s, ctx := newService(t)
	if _, err := s.SetQuotas(ctx, "p1", map[string]int{"network": 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateNetwork(ctx, alice, v2.NetworkRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err := s.CreateNetwork(ctx, alice, v2.NetworkRequest{})
	wantErr(t, err, errdefs.ErrQuotaExceeded, "OverQuota")
	if _, err := s.CreateNetwork(ctx, bob, v2.NetworkRequest{}); err != nil {
		t.Fatalf("another project is not limited: %v", err)
	}
	_, err = s.SetQuotas(ctx, "p1", map[string]int{"bogus": 1})
	wantErr(t, err, errdefs.ErrInvalid, "")
	if err := s.ResetQuotas(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateNetwork(ctx, alice, v2.NetworkRequest{}); err != nil {
		t.Fatalf("after reset: %v", err)
	}
}
