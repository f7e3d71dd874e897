package dhcp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/nimbo-cloud/nimbo/internal/dhcp"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/testenv"
)

var (
	knownMAC   = net.HardwareAddr{0xfa, 0x16, 0x3e, 0x00, 0x00, 0x01}
	unknownMAC = net.HardwareAddr{0xfa, 0x16, 0x3e, 0x00, 0x00, 0x02}
)

func openNS(t *testing.T, n *testenv.Netns) *hostnet.NS {
	t.Helper()
	ns, err := hostnet.Open(n.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// syncBuffer is a log sink tests can read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// network builds a switch namespace with a bridge, a server namespace (its
// name chosen here so the test can delete it itself) with the DHCP port
// dhcp0 = 10.90.0.2/24, and a client namespace whose eth0 has knownMAC.
type network struct {
	sw, srv, cli *hostnet.NS
	srvName      string
	cliN         *testenv.Netns
}

func newNetwork(t *testing.T) *network {
	t.Helper()
	ctx := context.Background()
	swN, cliN := testenv.NewNetns(t), testenv.NewNetns(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	// In the form testenv sweeps if the test process dies.
	srvName := fmt.Sprintf("%s%d-dhcp%s", testenv.NetnsPrefix, os.Getpid(), hex.EncodeToString(b[:]))
	if err := hostnet.EnsureNetns(ctx, srvName); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hostnet.DeleteNetns(context.Background(), srvName) })
	srv, err := hostnet.OpenNetns(srvName)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	nw := &network{sw: openNS(t, swN), srv: srv, cli: openNS(t, cliN), srvName: srvName, cliN: cliN}
	if err := nw.sw.EnsureBridge(ctx, "br0", net.HardwareAddr{2, 0, 0x5e, 0x20, 0, 1}, 0); err != nil {
		t.Fatal(err)
	}
	if err := nw.sw.EnsureVeth(ctx, hostnet.Veth{Name: "vsrv", Bridge: "br0", Peer: hostnet.VethPeer{
		NS: srv, Name: "dhcp0", Addrs: []netip.Prefix{netip.MustParsePrefix("10.90.0.2/24")},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := nw.sw.EnsureVeth(ctx, hostnet.Veth{Name: "vcli", Bridge: "br0", Peer: hostnet.VethPeer{
		NS: nw.cli, Name: "eth0", MAC: knownMAC,
	}}); err != nil {
		t.Fatal(err)
	}
	return nw
}

func (nw *network) config(log *slog.Logger) dhcp.Config {
	return dhcp.Config{
		NS:          nw.srv,
		Interface:   "dhcp0",
		ServerIP:    netip.MustParseAddr("10.90.0.2"),
		Subnet:      netip.MustParsePrefix("10.90.0.0/24"),
		Router:      netip.MustParseAddr("10.90.0.1"),
		DNS:         []netip.Addr{netip.MustParseAddr("10.90.0.3"), netip.MustParseAddr("10.90.0.4")},
		DomainName:  "nimbo.test",
		MTU:         1450,
		Routes:      []dhcp.Route{{Dst: netip.MustParsePrefix("10.91.0.0/16"), Via: netip.MustParseAddr("10.90.0.254")}},
		MetadataVia: netip.MustParseAddr("10.90.0.2"),
		LeaseTime:   time.Hour,
		Hosts:       []dhcp.Host{{MAC: knownMAC, IP: netip.MustParseAddr("10.90.0.10"), Hostname: "vm-1"}},
		Logger:      log,
	}
}

// client runs nclient4 in the client namespace with the given chaddr.
func (nw *network) client(t *testing.T, mac net.HardwareAddr) *nclient4.Client {
	t.Helper()
	var c *nclient4.Client
	err := nw.cli.Do(func() error {
		var err error
		c, err = nclient4.New("eth0", nclient4.WithHWAddr(mac), nclient4.WithTimeout(400*time.Millisecond), nclient4.WithRetry(2))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestServe(t *testing.T) {
	ctx := context.Background()
	nw := newNetwork(t)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := dhcp.Start(ctx, nw.config(log))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

	c := nw.client(t, knownMAC)
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	offer, err := c.DiscoverOffer(lctx)
	if err != nil {
		t.Fatalf("DiscoverOffer: %v\nserver log:\n%s", err, logs.String())
	}
	t.Logf("DHCP offer latency (discover sent -> offer received): %v", time.Since(start))
	start = time.Now()
	lease, err := c.Request(lctx)
	if err != nil {
		t.Fatalf("Request: %v\nserver log:\n%s", err, logs.String())
	}
	t.Logf("full DORA exchange: %v", time.Since(start))
	ack := lease.ACK
	for _, m := range []*dhcpv4.DHCPv4{offer, ack} {
		if got := m.YourIPAddr.String(); got != "10.90.0.10" {
			t.Errorf("%s yiaddr = %s", m.MessageType(), got)
		}
	}
	checks := map[string][2]string{
		"server id": {ack.ServerIdentifier().String(), "10.90.0.2"},
		"mask":      {net.IP(ack.SubnetMask()).String(), "255.255.255.0"},
		"router":    {fmt.Sprint(ack.Router()), "[10.90.0.1]"},
		"dns":       {fmt.Sprint(ack.DNS()), "[10.90.0.3 10.90.0.4]"},
		"domain":    {ack.DomainName(), "nimbo.test"},
		"hostname":  {ack.HostName(), "vm-1"},
		"lease":     {ack.IPAddressLeaseTime(0).String(), "1h0m0s"},
		"mtu":       {fmt.Sprintf("%x", ack.Options.Get(dhcpv4.OptionInterfaceMTU)), "05aa"},
		"broadcast": {ack.BroadcastAddress().String(), "10.90.0.255"},
		"routes":    {fmt.Sprint(ack.ClasslessStaticRoute()), "[route to 10.91.0.0/16 via 10.90.0.254 route to 169.254.169.254/32 via 10.90.0.2 route to 0.0.0.0/0 via 10.90.0.1]"},
	}
	for what, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %s, want %s", what, c[0], c[1])
		}
	}

	// Renewal: unicast to the server identifier from the leased address.
	if err := nw.cli.SetAddrs(ctx, "eth0", []netip.Prefix{netip.MustParsePrefix("10.90.0.10/24")}); err != nil {
		t.Fatal(err)
	}
	renewed, err := c.Renew(lctx, lease)
	if err != nil {
		t.Fatalf("Renew: %v\nserver log:\n%s", err, logs.String())
	}
	if renewed.ACK.YourIPAddr.String() != "10.90.0.10" {
		t.Errorf("renewal yiaddr = %s", renewed.ACK.YourIPAddr)
	}

	// An unknown MAC gets no answer.
	u := nw.client(t, unknownMAC)
	uctx, ucancel := context.WithTimeout(ctx, 3*time.Second)
	defer ucancel()
	if _, err := u.DiscoverOffer(uctx); err == nil {
		t.Fatal("an unknown MAC got an offer")
	}
	if !strings.Contains(logs.String(), "unknown MAC") {
		t.Errorf("no log of the unknown MAC:\n%s", logs.String())
	}

	// Update changes the answer without a restart.
	if err := srv.Update([]dhcp.Host{
		{MAC: knownMAC, IP: netip.MustParseAddr("10.90.0.11")},
		{MAC: unknownMAC, IP: netip.MustParseAddr("10.90.0.12")},
	}); err != nil {
		t.Fatal(err)
	}
	if o, err := u.DiscoverOffer(uctx); err != nil || o.YourIPAddr.String() != "10.90.0.12" {
		t.Fatalf("after Update, the new MAC got %v, %v", o, err)
	}
	if o, err := c.DiscoverOffer(lctx); err != nil || o.YourIPAddr.String() != "10.90.0.11" {
		t.Fatalf("after Update, the known MAC got %v, %v", o, err)
	}
	// Its old address is refused on renewal (NAK), so it starts over.
	if _, err := c.Renew(lctx, lease); !errors.As(err, new(*nclient4.ErrNak)) {
		t.Errorf("renewing a changed address = %v, want a NAK", err)
	}
	if err := srv.Update([]dhcp.Host{{MAC: knownMAC, IP: netip.MustParseAddr("192.168.1.1")}}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Update with an address outside the subnet = %v", err)
	}
	// Change edits single entries: the unknown MAC goes, the known one moves.
	if err := srv.Change([]dhcp.Host{{MAC: knownMAC, IP: netip.MustParseAddr("10.90.0.13")}}, []net.HardwareAddr{unknownMAC}); err != nil {
		t.Fatal(err)
	}
	if n := srv.Hosts(); n != 1 {
		t.Errorf("after Change, %d hosts, want 1", n)
	}
	if o, err := c.DiscoverOffer(lctx); err != nil || o.YourIPAddr.String() != "10.90.0.13" {
		t.Fatalf("after Change, the known MAC got %v, %v", o, err)
	}
	if err := srv.Change([]dhcp.Host{{MAC: unknownMAC, IP: netip.MustParseAddr("192.168.1.1")}}, []net.HardwareAddr{knownMAC}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Change with an address outside the subnet = %v", err)
	}
	if n := srv.Hosts(); n != 1 {
		t.Errorf("a failed Change changed the table: %d hosts, want 1", n)
	}

	// An unparsable packet is logged, not lost in the library's logger.
	err = nw.cli.Do(func() error {
		conn, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP("10.90.0.2"), Port: 67})
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Write([]byte("not a DHCP packet"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(logs.String(), "Error parsing") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "Error parsing") {
		t.Errorf("unparsable packet not logged:\n%s", logs.String())
	}
}

// TestStopReleasesNamespace checks that after Stop no descriptor keeps the
// server's namespace alive: once it is deleted, the kernel destroys it, and
// with it the veth pair, whose other end disappears from the switch.
func TestStopReleasesNamespace(t *testing.T) {
	ctx := context.Background()
	nw := newNetwork(t)
	before := countFDs(t)
	srv, err := dhcp.Start(ctx, nw.config(nil))
	if err != nil {
		t.Fatal(err)
	}
	if countFDs(t) <= before {
		t.Fatal("Start opened no descriptor?")
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if after := countFDs(t); after != before {
		t.Errorf("descriptors: %d before Start, %d after Stop", before, after)
	}
	nw.srv.Close()
	if err := hostnet.DeleteNetns(ctx, nw.srvName); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		links, err := nw.sw.ListLinks(ctx, "vsrv")
		if err != nil {
			t.Fatal(err)
		}
		if len(links) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server's namespace is still alive 5s after deletion (a descriptor leaked)")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestContextStops(t *testing.T) {
	nw := newNetwork(t)
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := dhcp.Start(ctx, nw.config(nil))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-srv.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("server still running after its context was cancelled")
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	nw := newNetwork(t)
	base := nw.config(nil)
	bad := []func(c *dhcp.Config){
		func(c *dhcp.Config) { c.ServerIP = netip.MustParseAddr("10.99.0.2") },
		func(c *dhcp.Config) { c.Subnet = netip.MustParsePrefix("fd00::/64") },
		func(c *dhcp.Config) { c.Interface = "" },
		func(c *dhcp.Config) { c.Hosts = []dhcp.Host{{MAC: knownMAC, IP: netip.MustParseAddr("10.99.0.9")}} },
		func(c *dhcp.Config) { c.Hosts = append(c.Hosts, c.Hosts[0]) },
		// The interface lacks the server address (renewals would miss it).
		func(c *dhcp.Config) { c.ServerIP = netip.MustParseAddr("10.90.0.3") },
	}
	for i, mod := range bad {
		c := base
		c.Hosts = append([]dhcp.Host{}, base.Hosts...)
		mod(&c)
		if s, err := dhcp.Start(ctx, c); !errors.Is(err, errdefs.ErrInvalid) {
			if s != nil {
				s.Stop()
			}
			t.Errorf("case %d: Start = %v, want ErrInvalid", i, err)
		}
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}
