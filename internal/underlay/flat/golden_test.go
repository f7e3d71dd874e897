package flat

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGolden renders the table without root.
func TestGolden(t *testing.T) {
	got := program([]port{{"eth2", "nb-bbbbbbbbbbb"}, {"eth1", "nb-aaaaaaaaaaa"}}).Render()
	path := filepath.Join("testdata", "sample.golden")
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
