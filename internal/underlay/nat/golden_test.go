package nat

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/underlay"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update if intended):\n--- got:\n%s--- want:\n%s", path, got, want)
	}
}

// TestGolden renders the table for two external networks, published
// forwards and bookkeeping, without root.
func TestGolden(t *testing.T) {
	p := plan{
		externals: []underlay.External{
			{NetworkID: "public2", Bridge: "nb-bbbbbbbbbbb", CIDR: netip.MustParsePrefix("10.99.0.0/16"), Gateway: netip.MustParseAddr("10.99.0.1")},
			{NetworkID: "public", Bridge: "nb-aaaaaaaaaaa", CIDR: netip.MustParsePrefix("172.24.4.0/24"), Gateway: netip.MustParseAddr("172.24.4.1")},
		},
		published: []underlay.Publish{
			{Protocol: underlay.UDP, Host: netip.MustParseAddrPort("203.0.113.2:5353"), Target: netip.MustParseAddrPort("172.24.4.21:53")},
			{Protocol: underlay.TCP, Host: netip.MustParseAddrPort("203.0.113.2:522"), Target: netip.MustParseAddrPort("172.24.4.20:22")},
		},
		bridges:   "nb-",
		fwdOwned:  []string{"nb-aaaaaaaaaaa", "eth0", "nb-bbbbbbbbbbb"},
		addrOwned: []ownedAddr{{"nb-bbbbbbbbbbb", netip.MustParseAddr("10.99.0.1")}, {"nb-aaaaaaaaaaa", netip.MustParseAddr("172.24.4.1")}},
	}
	golden(t, "sample.golden", program(p).Render())
	golden(t, "empty.golden", program(plan{}).Render())

	// Order does not matter; content does.
	q := p
	q.externals = []underlay.External{p.externals[1], p.externals[0]}
	q.fwdOwned = []string{"eth0", "nb-bbbbbbbbbbb", "nb-aaaaaaaaaaa", "eth0"}
	if program(p).Fingerprint() != program(q).Fingerprint() {
		t.Error("the fingerprint depends on input order")
	}
	q.published = p.published[:1]
	if program(p).Fingerprint() == program(q).Fingerprint() {
		t.Error("the fingerprint ignores published forwards")
	}
	q = p
	q.bridges = ""
	if program(p).Fingerprint() == program(q).Fingerprint() {
		t.Error("the fingerprint ignores the bridge prefix")
	}
}
