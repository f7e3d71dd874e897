package agent_test

import (
	"context"
	"maps"
	"testing"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/agent"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/network"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/store/etcdstore"
	"github.com/nimbo-cloud/nimbo/internal/testenv"
)

func ptr[T any](v T) *T { return &v }

var admin = policy.Creds{UserID: "admin", ProjectID: "p", Roles: []string{"admin", "member", "reader"}}

// links returns the agent's links in ns with their indexes.
func links(t *testing.T, ns *hostnet.NS) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, p := range []string{"nb-", "nd-", "np-"} {
		ls, err := ns.ListLinks(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			out[l.Name] = l.Index
		}
	}
	return out
}

// wantDHCPHosts checks that the network's DHCP server answers exactly the
// network's ports (other than the DHCP port) with their addresses.
func wantDHCPHosts(t *testing.T, a *agent.Agent, svc *network.Service, networkID string) {
	t.Helper()
	want := map[string]string{}
	for _, p := range svc.AllPorts() {
		if p.NetworkID == networkID && p.DeviceOwner != network.OwnerDHCP {
			for _, f := range p.FixedIPs {
				want[p.MAC] = f.IP.String()
			}
		}
	}
	got, served, ok := agent.DHCPHosts(a, networkID)
	if !ok {
		t.Fatal("no DHCP server runs")
	}
	if !maps.Equal(got, want) || served != len(want) {
		t.Fatalf("DHCP hosts %v (server holds %d), want %v", got, served, want)
	}
}

// testHost is a throwaway namespace for an agent's bridges and a network
// service on an embedded etcd, closed when the test ends; prefix is a
// namespace prefix of the test's own.
func testHost(t *testing.T, prefix string) (*hostnet.NS, *network.Service, string) {
	t.Helper()
	testenv.RequireRoot(t)
	ctx := context.Background()
	tn := testenv.NewNetns(t)
	ns, err := hostnet.Open(tn.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	st, err := etcdstore.Open(ctx, etcdstore.Config{Embedded: &etcdstore.Embedded{Dir: t.TempDir(), UnsafeNoFsync: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	svc, err := network.New(ctx, st, network.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return ns, svc, prefix + tn.Name()[len(tn.Name())-6:]
}

func TestReconcile(t *testing.T) {
	ctx := context.Background()
	ns, svc, prefix := testHost(t, "nimbo-agt")
	t.Cleanup(func() {
		names, _ := hostnet.ListNetns(prefix + "-")
		for _, n := range names {
			_ = hostnet.DeleteNetns(context.Background(), n)
		}
	})
	a := agent.New(agent.Config{Host: "h1", Network: svc, NS: ns, NetnsPrefix: prefix})

	n, err := svc.CreateNetwork(ctx, admin, v2.NetworkRequest{Name: ptr("n")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateSubnet(ctx, admin, v2.SubnetRequest{NetworkID: &n.ID, CIDR: ptr("10.0.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	p, err := svc.CreatePort(ctx, admin, v2.PortRequest{NetworkID: &n.ID, DeviceOwner: ptr(network.OwnerProbe), HostID: ptr("h1")})
	if err != nil {
		t.Fatal(err)
	}
	other, err := svc.CreatePort(ctx, admin, v2.PortRequest{NetworkID: &n.ID, DeviceOwner: ptr(network.OwnerProbe), HostID: ptr("h2")})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Reconcile(ctx); err != nil {
		t.Fatalf("first pass: %v", err)
	}
	first := links(t, ns)
	if len(first) != 3 { // bridge, DHCP veth, the probe bound here (not the one on h2)
		t.Fatalf("links after the first pass: %v", first)
	}
	if got, _ := svc.GetPort(admin, p.ID); got.Status != network.StatusActive || got.VIFType != agent.VIFType {
		t.Fatalf("probe port after wiring: %+v", got)
	}
	if got, _ := svc.GetPort(admin, other.ID); got.Status != network.StatusDown {
		t.Fatalf("a port bound to another host was touched: %+v", got)
	}
	dhcpPorts := 0
	for _, q := range svc.AllPorts() {
		if q.DeviceOwner == network.OwnerDHCP {
			dhcpPorts++
		}
	}
	if dhcpPorts != 1 {
		t.Fatalf("%d DHCP ports, want 1", dhcpPorts)
	}
	revBefore := svc.Cache().Rev()
	if err := a.Reconcile(ctx); err != nil {
		t.Fatalf("second pass: %v", err)
	}
	if second := links(t, ns); len(second) != len(first) {
		t.Fatalf("second pass changed links: %v -> %v", first, second)
	} else {
		for k, v := range first {
			if second[k] != v {
				t.Fatalf("second pass re-created %s", k)
			}
		}
	}
	if svc.Cache().Rev() != revBefore {
		t.Fatalf("second pass wrote to the store (rev %d -> %d)", revBefore, svc.Cache().Rev())
	}
	wantDHCPHosts(t, a, svc, n.ID)

	// The DHCP table follows port changes one entry at a time.
	extra, err := svc.CreatePort(ctx, admin, v2.PortRequest{NetworkID: &n.ID})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	wantDHCPHosts(t, a, svc, n.ID)
	if _, err := svc.UpdatePort(ctx, admin, extra.ID, v2.PortRequest{MACAddress: ptr("fa:16:3e:00:00:99")}); err != nil {
		t.Fatal(err)
	}
	if err := a.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	wantDHCPHosts(t, a, svc, n.ID)
	if err := svc.DeletePort(ctx, admin, extra.ID); err != nil {
		t.Fatal(err)
	}
	if err := a.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	wantDHCPHosts(t, a, svc, n.ID)

	// Garbage: delete everything, one pass removes it all.
	for _, id := range []string{p.ID, other.ID} {
		if err := svc.DeletePort(ctx, admin, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.DeleteNetwork(ctx, admin, n.ID); err != nil {
		t.Fatal(err)
	}
	if err := a.Reconcile(ctx); err != nil {
		t.Fatalf("cleanup pass: %v", err)
	}
	if left := links(t, ns); len(left) != 0 {
		t.Fatalf("links left: %v", left)
	}
	if names, _ := hostnet.ListNetns(prefix + "-"); len(names) != 0 {
		t.Fatalf("namespaces left: %v", names)
	}
}
