package hostnet_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/testenv"
)

func TestUplinkHelpers(t *testing.T) {
	ctx := context.Background()
	hn, pn := testenv.NewNetns(t), testenv.NewNetns(t)
	h, p := open(t, hn), open(t, pn)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.EnsureVeth(ctx, hostnet.Veth{Name: "up0", Peer: hostnet.VethPeer{NS: p, Name: "up0", Addrs: []netip.Prefix{netip.MustParsePrefix("10.83.0.1/24")}}}))
	must(h.EnsureVeth(ctx, hostnet.Veth{Name: "up1", Peer: hostnet.VethPeer{NS: p, Name: "up1"}}))

	// Addresses, one at a time.
	for range 2 {
		must(h.AddAddr(ctx, "up0", netip.MustParsePrefix("10.83.0.2/24")))
	}
	must(h.AddAddr(ctx, "up0", netip.MustParsePrefix("10.84.0.2/24")))
	must(h.AddAddr(ctx, "up0", netip.MustParsePrefix("10.84.0.2/16"))) // another length replaces it
	if got, _ := h.Addrs(ctx, "up0"); len(got) != 2 || got[0] != netip.MustParsePrefix("10.83.0.2/24") || got[1] != netip.MustParsePrefix("10.84.0.2/16") {
		t.Fatalf("addresses = %v", got)
	}
	if dev, err := h.AddrLink(ctx, netip.MustParseAddr("10.84.0.2")); err != nil || dev != "up0" {
		t.Errorf("AddrLink = %q, %v", dev, err)
	}
	if dev, err := h.AddrLink(ctx, netip.MustParseAddr("10.84.0.3")); err != nil || dev != "" {
		t.Errorf("AddrLink(absent) = %q, %v", dev, err)
	}
	for range 2 {
		must(h.DelAddr(ctx, "up0", netip.MustParseAddr("10.84.0.2")))
	}
	must(h.DelAddr(ctx, "gone0", netip.MustParseAddr("10.84.0.2")))
	if err := h.AddAddr(ctx, "gone0", netip.MustParsePrefix("10.84.0.2/24")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("AddAddr on a missing link = %v", err)
	}

	// Default route: none, then the one with the lowest metric, whoever made it.
	if _, ok, err := h.DefaultRoute(ctx, false); ok || err != nil {
		t.Fatalf("DefaultRoute without one = %v, %v", ok, err)
	}
	run(t, "ip", "-n", hn.Name(), "route", "add", "default", "via", "10.83.0.1", "metric", "200")
	run(t, "ip", "-n", hn.Name(), "route", "add", "default", "dev", "up1", "metric", "300")
	run(t, "ip", "-n", hn.Name(), "route", "add", "unreachable", "default", "metric", "100")
	r, ok, err := h.DefaultRoute(ctx, false)
	if err != nil || !ok || r.Dev != "up0" || r.Gw != netip.MustParseAddr("10.83.0.1") || r.Metric != 200 {
		t.Fatalf("DefaultRoute = %+v, %v, %v", r, ok, err)
	}
	g, err := h.RouteGet(ctx, r.Gw)
	if err != nil || g.Dev != "up0" || g.Src != netip.MustParseAddr("10.83.0.2") || g.Gw.IsValid() {
		t.Fatalf("RouteGet(%v) = %+v, %v", r.Gw, g, err)
	}
	if _, ok, _ := h.DefaultRoute(ctx, true); ok {
		t.Errorf("an IPv6 default route out of nowhere")
	}

	// Bridge ports of interfaces nimbo did not create.
	must(h.EnsureBridge(ctx, "br0", brMAC, 0))
	for range 2 {
		must(h.SetMaster(ctx, "up1", "br0"))
	}
	l, err := h.LinkByName(ctx, "up1")
	if err != nil || l.Master != "br0" || !l.Up || l.Kind != "veth" {
		t.Fatalf("LinkByName(up1) = %+v, %v", l, err)
	}
	if c, err := h.Carrier(ctx, "up1"); err != nil || !c {
		t.Errorf("Carrier(up1) = %v, %v", c, err)
	}
	for range 2 {
		must(h.SetMaster(ctx, "up1", ""))
	}
	if l, _ := h.LinkByName(ctx, "up1"); l.Master != "" || !l.Up {
		t.Errorf("after release: %+v", l)
	}
	must(h.SetMaster(ctx, "gone0", ""))
	if err := h.SetMaster(ctx, "gone0", "br0"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("SetMaster of a missing link = %v", err)
	}
	if _, err := h.LinkByName(ctx, "gone0"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("LinkByName(gone0) = %v", err)
	}
	must(p.DeleteLink(ctx, "up1"))
	if _, err := h.Carrier(ctx, "up1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Carrier of a deleted veth = %v", err)
	}
}
