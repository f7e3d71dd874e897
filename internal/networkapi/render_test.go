package networkapi

import (
	"context"
	"encoding/json"
	"testing"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/network"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/store/etcdstore"
)

// The port list's render cache gives the same rendering as rendering anew,
// follows every change (an update, the agent's status, a delete), keeps
// the binding:* attributes to those allowed them, and renders an
// unchanged port once.
func TestRenderCacheFollowsChanges(t *testing.T) {
	ctx := context.Background()
	st, err := etcdstore.Open(ctx, etcdstore.Config{Embedded: &etcdstore.Embedded{Dir: t.TempDir(), UnsafeNoFsync: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc, err := network.New(ctx, st, network.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	admin := policy.Creds{UserID: "admin", ProjectID: "p", Roles: []string{"admin", "member", "reader"}}
	member := policy.Creds{UserID: "alice", ProjectID: "p", Roles: []string{"member", "reader"}}
	str := func(s string) *string { return &s }

	n, err := svc.CreateNetwork(ctx, admin, v2.NetworkRequest{Name: str("n")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateSubnet(ctx, admin, v2.SubnetRequest{NetworkID: &n.ID, CIDR: str("10.0.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 3 {
		p, err := svc.CreatePort(ctx, admin, v2.PortRequest{NetworkID: &n.ID, HostID: str("h1")})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, p.ID)
	}
	rc := newRenderCache()
	byID := func(c policy.Creds) map[string]map[string]any {
		out := map[string]map[string]any{}
		for _, m := range rc.list(svc, c, svc.ListPortsVersioned(c)) {
			out[m["id"].(string)] = m
		}
		// Whatever the cache held, the same as rendering anew.
		for _, p := range svc.ListPorts(c) {
			want := renderPort(p, bindingVisible(c, p))
			if got := out[p.ID]; !equalJSON(t, got, want) {
				t.Fatalf("port %s: cached %v, anew %v", p.ID, got, want)
			}
		}
		return out
	}

	first := byID(admin)
	if len(first) != 3 || first[ids[0]]["binding:host_id"] != "h1" {
		t.Fatalf("admin's list: %v", first)
	}
	if m := byID(member); len(m) != 3 || m[ids[0]]["binding:host_id"] != nil {
		t.Fatalf("a member sees binding attributes: %v", m[ids[0]])
	}
	again := byID(admin)
	for _, id := range ids {
		if !sameMap(first[id], again[id]) {
			t.Fatalf("port %s was rendered again without a change", id)
		}
	}

	if _, err := svc.UpdatePort(ctx, admin, ids[0], v2.PortRequest{Name: str("renamed")}); err != nil {
		t.Fatal(err)
	}
	if err := svc.SetPortStatus(ctx, ids[1], network.StatusActive, "bridge", map[string]any{"bridge_name": "nb-x"}); err != nil {
		t.Fatal(err)
	}
	if err := svc.DeletePort(ctx, admin, ids[2]); err != nil {
		t.Fatal(err)
	}
	now := byID(admin)
	if len(now) != 2 || now[ids[0]]["name"] != "renamed" || now[ids[1]]["status"] != "ACTIVE" || now[ids[1]]["binding:vif_type"] != "bridge" {
		t.Fatalf("after changes: %v", now)
	}
	if sameMap(now[ids[0]], first[ids[0]]) || sameMap(now[ids[1]], first[ids[1]]) {
		t.Fatal("a changed port kept its old rendering")
	}
}

// equalJSON reports whether a and b encode the same.
func equalJSON(t *testing.T, a, b map[string]any) bool {
	t.Helper()
	x, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return a != nil && string(x) == string(y)
}

// sameMap reports whether a and b are the same map (not just equal).
func sameMap(a, b map[string]any) bool {
	if a == nil || b == nil {
		return false
	}
	a["\x00probe"] = true
	defer delete(a, "\x00probe")
	_, ok := b["\x00probe"]
	return ok
}
