package hostnet_test

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/testenv"
)

// TestForgetConnections makes tracked TCP connections inside a namespace and
// deletes the entries of one of them by destination, protocol and port.
func TestForgetConnections(t *testing.T) {
	testenv.RequireRoot(t)
	n := testenv.NewNetns(t)
	ns := open(t, n)
	ctx := context.Background()
	if err := ns.SetLinkUp(ctx, "lo"); err != nil {
		t.Fatal(err)
	}
	// Conntrack runs in a namespace once a rule there needs it.
	cmd := n.Command(ctx, "nft", "add table ip ct_on; add chain ip ct_on out { type filter hook output priority 0; }; add rule ip ct_on out ct state new accept")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	ports := map[string]uint16{}
	for _, name := range []string{"kept", "forgotten"} {
		ln, err := n.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports[name] = uint16(ln.Addr().(*net.TCPAddr).Port)
		c, err := n.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	lo := netip.MustParseAddr("127.0.0.1")
	got, err := ns.ForgetConnections(ctx, []hostnet.ConnMatch{{Dst: lo, Proto: 6, Port: ports["forgotten"]}})
	if err != nil {
		t.Fatal(err)
	}
	if got != 1 {
		t.Fatalf("deleted %d entries, want 1 (the forgotten connection's)", got)
	}
	if got, err = ns.ForgetConnections(ctx, []hostnet.ConnMatch{{Dst: lo, Proto: 6, Port: ports["forgotten"]}}); err != nil || got != 0 {
		t.Fatalf("second delete: %d, %v; want 0, nil", got, err)
	}
	if got, err = ns.ForgetConnections(ctx, []hostnet.ConnMatch{{Dst: lo, Reply: true}}); err != nil || got != 1 {
		t.Fatalf("delete by reply destination: %d, %v; want the kept connection's entry", got, err)
	}
	if got, _ := ns.ForgetConnections(ctx, nil); got != 0 {
		t.Fatalf("no matches deleted %d", got)
	}
}
