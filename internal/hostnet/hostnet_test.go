package hostnet_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/testenv"
)

func TestIfName(t *testing.T) {
	cases := []struct{ prefix, id, want string }{
		{"tap", "3f1c2a4b-5d6e-4f70-8a9b-0c1d2e3f4a5b", "tap3f1c2a4b5d6"},
		{"tap", "3F1C2A4B-5D6E-4F70-8A9B-0C1D2E3F4A5B", "tap3f1c2a4b5d6"},
		{"qr-", "3f1c2a4b5d6e4f708a9b0c1d2e3f4a5b", "qr-3f1c2a4b5d6"},
		{"br", "3f1c2a4b-5d6e", "br3f1c2a4b5d6"},
	}
	for _, c := range cases {
		if got := hostnet.IfName(c.prefix, c.id); got != c.want {
			t.Errorf("IfName(%q, %q) = %q, want %q", c.prefix, c.id, got, c.want)
		}
	}
	// Non-UUID IDs are hashed: deterministic, distinct, 15 characters at most.
	a, b := hostnet.IfName("vm-x", "port-a"), hostnet.IfName("vm-x", "port-b")
	if a == b || a != hostnet.IfName("vm-x", "port-a") || len(a) != 15 || !strings.HasPrefix(a, "vm-x") {
		t.Errorf("IfName of non-UUIDs: %q, %q", a, b)
	}
	for _, bad := range []string{"", "abcde", "Tap", "t/"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("IfName(%q, ...) did not panic", bad)
				}
			}()
			hostnet.IfName(bad, "x")
		}()
	}
}

func TestValidIfName(t *testing.T) {
	for _, ok := range []string{"br0", "tap3f1c2a4b5d6", "a23456789012345", "eth0.100"} {
		if err := hostnet.ValidIfName(ok); err != nil {
			t.Errorf("ValidIfName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a234567890123456", "a/b", "a b", "a:1", ".", ".."} {
		if err := hostnet.ValidIfName(bad); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("ValidIfName(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

// open opens the fixture's namespace and closes it at the end of the test
// (before the fixture deletes the namespace).
func open(t *testing.T, n *testenv.Netns) *hostnet.NS {
	t.Helper()
	ns, err := hostnet.Open(n.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// netnsName returns a name for a namespace the library creates, in the form
// testenv's sweeper recognises (so a leftover from a killed test is removed).
func netnsName(t *testing.T) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s%d-hostnet%s", testenv.NetnsPrefix, os.Getpid(), hex.EncodeToString(b[:]))
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func TestNetnsLifecycle(t *testing.T) {
	testenv.RequireRoot(t)
	ctx := context.Background()
	name := netnsName(t)
	t.Cleanup(func() { _ = hostnet.DeleteNetns(ctx, name) })

	for i := 0; i < 2; i++ {
		if err := hostnet.EnsureNetns(ctx, name); err != nil {
			t.Fatalf("EnsureNetns #%d: %v", i+1, err)
		}
	}
	names, err := hostnet.ListNetns(testenv.NetnsPrefix)
	if err != nil || !slices.Contains(names, name) {
		t.Fatalf("ListNetns = %v, %v; want it to contain %s", names, err, name)
	}
	ns, err := hostnet.OpenNetns(name)
	if err != nil {
		t.Fatal(err)
	}
	links, err := ns.ListLinks(ctx, "")
	ns.Close()
	if err != nil || len(links) != 1 || links[0].Name != "lo" || !links[0].Up {
		t.Fatalf("links in a new namespace = %+v, %v; want lo, up", links, err)
	}

	if err := hostnet.DeleteNetns(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := hostnet.DeleteNetns(ctx, name); err != nil {
		t.Fatalf("second DeleteNetns: %v", err)
	}
	if names, _ := hostnet.ListNetns(name); len(names) != 0 {
		t.Fatalf("namespace still listed after delete: %v", names)
	}
	if _, err := hostnet.OpenNetns(name); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("OpenNetns of a deleted namespace = %v, want ErrNotFound", err)
	}

	// A stale, unmounted file (a crash between create and mount) is replaced.
	if err := os.WriteFile(hostnet.NetnsPath(name), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := hostnet.EnsureNetns(ctx, name); err != nil {
		t.Fatalf("EnsureNetns over a stale file: %v", err)
	}
	ns, err = hostnet.OpenNetns(name)
	if err != nil {
		t.Fatalf("open after replacing a stale file: %v", err)
	}
	ns.Close()
	if err := hostnet.EnsureNetns(ctx, "a/b"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("EnsureNetns(a/b) = %v, want ErrInvalid", err)
	}
}

var (
	brMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x01}
	p1MAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x01, 0x01}
	p2MAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x01, 0x02}
)

func TestBridgeVethTap(t *testing.T) {
	ctx := context.Background()
	swn, p1n, p2n := testenv.NewNetns(t), testenv.NewNetns(t), testenv.NewNetns(t)
	sw, p1, p2 := open(t, swn), open(t, p1n), open(t, p2n)

	for i := 0; i < 2; i++ {
		if err := sw.EnsureBridge(ctx, "br0", brMAC, 1400); err != nil {
			t.Fatalf("EnsureBridge #%d: %v", i+1, err)
		}
	}
	v1 := hostnet.Veth{Name: "v1", Bridge: "br0", MTU: 1400, Peer: hostnet.VethPeer{
		NS: p1, Name: "eth0", MAC: p1MAC, Addrs: []netip.Prefix{netip.MustParsePrefix("10.77.0.1/24"), netip.MustParsePrefix("fd00:77::1/64")},
	}}
	v2 := hostnet.Veth{Name: "v2", Bridge: "br0", MTU: 1400, Peer: hostnet.VethPeer{
		NS: p2, Name: "eth0", MAC: p2MAC, Addrs: []netip.Prefix{netip.MustParsePrefix("10.77.0.2/24")},
	}}
	start := time.Now()
	if err := sw.EnsureVeth(ctx, v1); err != nil {
		t.Fatal(err)
	}
	t.Logf("create veth pair into another namespace + attach to bridge + addresses: %v", time.Since(start))
	if err := sw.EnsureVeth(ctx, v2); err != nil {
		t.Fatal(err)
	}
	before, err := sw.ListLinks(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := sw.EnsureVeth(ctx, v1); err != nil {
		t.Fatalf("second EnsureVeth: %v", err)
	}
	t.Logf("EnsureVeth on an existing pair (no change): %v", time.Since(start))
	after, _ := sw.ListLinks(ctx, "")
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("second EnsureVeth changed links:\n%v\n%v", before, after)
	}

	// Hairpin mode: on for the port that asks for it (twice: adopted),
	// left off for the other.
	v2.Hairpin = true
	for range 2 {
		if err := sw.EnsureVeth(ctx, v2); err != nil {
			t.Fatalf("EnsureVeth with hairpin: %v", err)
		}
	}
	for port, want := range map[string]string{"v1": "hairpin off", "v2": "hairpin on"} {
		out, err := exec.Command("bridge", "-netns", swn.Name(), "-d", "link", "show", "dev", port).CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("bridge port %s: want %q: %v: %s", port, want, err, out)
		}
	}

	links, err := sw.ListLinks(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 2 || links[0].Name != "v1" || links[0].Master != "br0" || !links[0].Up || links[0].MTU != 1400 || links[0].Kind != "veth" {
		t.Fatalf("ListLinks(v) = %+v", links)
	}
	br, _ := sw.ListLinks(ctx, "br0")
	if len(br) != 1 || br[0].MAC.String() != brMAC.String() || br[0].Kind != "bridge" || !br[0].Up {
		t.Fatalf("bridge = %+v", br)
	}
	peer, _ := p1.ListLinks(ctx, "eth0")
	if len(peer) != 1 || peer[0].MAC.String() != p1MAC.String() || peer[0].MTU != 1400 || !peer[0].Up {
		t.Fatalf("peer = %+v", peer)
	}
	addrs, err := p1.Addrs(ctx, "eth0")
	if err != nil || fmt.Sprint(addrs) != "[10.77.0.1/24 fd00:77::1/64]" {
		t.Fatalf("peer addresses = %v, %v", addrs, err)
	}

	// The pair carries traffic through the bridge.
	run(t, "ip", "netns", "exec", p1n.Name(), "ping", "-c1", "-W2", "10.77.0.2")

	// Changing the desired addresses replaces them; the pair is kept.
	v1.Peer.Addrs = []netip.Prefix{netip.MustParsePrefix("10.77.0.11/24")}
	if err := sw.EnsureVeth(ctx, v1); err != nil {
		t.Fatal(err)
	}
	if addrs, _ := p1.Addrs(ctx, "eth0"); fmt.Sprint(addrs) != "[10.77.0.11/24]" {
		t.Fatalf("after address change: %v", addrs)
	}
	if l, _ := sw.ListLinks(ctx, "v1"); l[0].Index != links[0].Index {
		t.Errorf("veth recreated on an address change")
	}

	// A half pair (the peer gone) is recreated.
	if err := p1.DeleteLink(ctx, "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := sw.EnsureVeth(ctx, v1); err != nil {
		t.Fatalf("EnsureVeth after losing the peer: %v", err)
	}
	if l, _ := p1.ListLinks(ctx, "eth0"); len(l) != 1 {
		t.Fatalf("peer not recreated: %v", l)
	}

	// A tap for a VM.
	tapMAC := net.HardwareAddr{0xfe, 0x16, 0x3e, 0, 0, 1}
	for i := 0; i < 2; i++ {
		if err := sw.EnsureTap(ctx, "tap0", "br0", tapMAC, 1400); err != nil {
			t.Fatalf("EnsureTap #%d: %v", i+1, err)
		}
	}
	tap, _ := sw.ListLinks(ctx, "tap0")
	if len(tap) != 1 || tap[0].Kind != "tuntap" || tap[0].Master != "br0" || tap[0].MAC.String() != tapMAC.String() || tap[0].MTU != 1400 {
		t.Fatalf("tap = %+v", tap)
	}
	if out := run(t, "ip", "-n", swn.Name(), "-d", "link", "show", "tap0"); !strings.Contains(out, "tap") || !strings.Contains(out, "vnet_hdr") {
		t.Errorf("tap flags: %s", out)
	}

	// Names taken by another kind are conflicts.
	if err := sw.EnsureTap(ctx, "v2", "br0", tapMAC, 0); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("EnsureTap over a veth = %v, want ErrConflict", err)
	}
	if err := sw.EnsureBridge(ctx, "tap0", brMAC, 0); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("EnsureBridge over a tap = %v, want ErrConflict", err)
	}
	if err := sw.EnsureTap(ctx, "tap1", "nobridge", tapMAC, 0); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("EnsureTap onto a missing bridge = %v, want ErrNotFound", err)
	}
	if err := sw.EnsureBridge(ctx, "br1", nil, 0); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("EnsureBridge without a MAC = %v, want ErrInvalid", err)
	}

	// Garbage collection: delete what is no longer desired, twice.
	for _, name := range []string{"tap0", "tap1", "v2", "v2"} {
		if err := sw.DeleteLink(ctx, name); err != nil {
			t.Fatalf("DeleteLink(%s): %v", name, err)
		}
	}
	if l, _ := p2.ListLinks(ctx, "eth0"); len(l) != 0 {
		t.Errorf("deleting a veth left its peer: %v", l)
	}
	if l, _ := sw.ListLinks(ctx, ""); fmt.Sprint(names(l)) != "[br0 lo v1]" {
		t.Errorf("links left = %v", names(l))
	}
}

func names(ls []hostnet.Link) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Name)
	}
	return out
}

func TestVethAttachTime(t *testing.T) {
	ctx := context.Background()
	swn := testenv.NewNetns(t)
	sw := open(t, swn)
	if err := sw.EnsureBridge(ctx, "br0", brMAC, 0); err != nil {
		t.Fatal(err)
	}
	const n = 50
	var total time.Duration
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("h%d", i)
		// Create a veth pair in this namespace without a bridge, then time
		// only the attachment.
		if err := sw.EnsureVeth(ctx, hostnet.Veth{Name: name, Peer: hostnet.VethPeer{Name: fmt.Sprintf("p%d", i)}}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := sw.EnsureVeth(ctx, hostnet.Veth{Name: name, Bridge: "br0", Peer: hostnet.VethPeer{Name: fmt.Sprintf("p%d", i)}}); err != nil {
			t.Fatal(err)
		}
		total += time.Since(start)
	}
	t.Logf("attach an existing veth to a bridge (EnsureVeth with the pair present): %v on average over %d", total/n, n)
}

func TestRoutesAndSysctl(t *testing.T) {
	ctx := context.Background()
	pn := testenv.NewNetns(t)
	p := open(t, pn)
	if err := p.EnsureVeth(ctx, hostnet.Veth{Name: "a", Peer: hostnet.VethPeer{Name: "b", Addrs: []netip.Prefix{netip.MustParsePrefix("10.78.0.1/24")}}}); err != nil {
		t.Fatal(err)
	}
	if err := p.SetLinkUp(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	routes := []hostnet.Route{
		{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("10.78.0.254")},
		{Dst: netip.MustParsePrefix("10.79.0.0/16"), Gw: netip.MustParseAddr("10.78.0.253"), Dev: "b"},
		{Dst: netip.MustParsePrefix("203.0.113.0/24"), Dev: "b"},
	}
	for i := 0; i < 2; i++ {
		for _, r := range routes {
			if err := p.EnsureRoute(ctx, r); err != nil {
				t.Fatalf("EnsureRoute(%v) #%d: %v", r, i+1, err)
			}
		}
	}
	got, err := p.ListRoutes(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := "[0.0.0.0/0 via 10.78.0.254 dev b 10.79.0.0/16 via 10.78.0.253 dev b 203.0.113.0/24 dev b]"
	if fmt.Sprint(got) != want {
		t.Fatalf("ListRoutes = %v\nwant %s", got, want)
	}
	// Changing the gateway replaces the route.
	if err := p.EnsureRoute(ctx, hostnet.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("10.78.0.1")}); err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		for i := 0; i < 2; i++ {
			if err := p.DeleteRoute(ctx, r); err != nil {
				t.Fatalf("DeleteRoute(%v): %v", r, err)
			}
		}
	}
	if got, _ := p.ListRoutes(ctx, 0); len(got) != 0 {
		t.Fatalf("routes left: %v", got)
	}
	// The kernel's connected route was never nimbo's to touch.
	if out := run(t, "ip", "-n", pn.Name(), "route"); !strings.Contains(out, "10.78.0.0/24 dev b proto kernel") {
		t.Errorf("connected route gone:\n%s", out)
	}

	rootBefore, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	for i := 0; i < 2; i++ {
		if err := p.SetSysctl(ctx, "net.ipv4.ip_forward", "1"); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := p.Sysctl(ctx, "net/ipv4/ip_forward"); err != nil || v != "1" {
		t.Fatalf("Sysctl = %q, %v", v, err)
	}
	if v, _ := p.Sysctl(ctx, "net.ipv4.conf.b.forwarding"); v != "1" {
		t.Errorf("per-interface forwarding = %q", v)
	}
	rootAfter, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if string(rootBefore) != string(rootAfter) {
		t.Errorf("root namespace's ip_forward changed from %q to %q", rootBefore, rootAfter)
	}
	for _, bad := range []string{"kernel.hostname", "net/../kernel/hostname", "/net/ipv4/ip_forward"} {
		if err := p.SetSysctl(ctx, bad, "x"); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("SetSysctl(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}
