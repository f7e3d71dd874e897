package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// nimboBin is the path of the binary TestMain built; empty when the tests
// are going to skip (not root).
var nimboBin string

// TestMain builds ./cmd/nimbo once for all the tests (see run).
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 && os.Getenv("CI") == "" {
		// Every test skips through testenv.RequireRoot: don't build.
		return m.Run()
	}
	if bin := os.Getenv("NIMBO_E2E_BINARY"); bin != "" {
		// A prebuilt binary (for example one being debugged): no build.
		nimboBin = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "nimbo-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	bin := filepath.Join(dir, "nimbo")
	start := time.Now()
	build := exec.Command("go", "build", "-o", bin, "./cmd/nimbo")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/nimbo (in %s): %v\n%s", root, err, out)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: built %s in %v\n", bin, time.Since(start).Round(time.Millisecond))
	nimboBin = bin
	return m.Run()
}

// moduleRoot finds the directory holding go.mod, from the package directory
// (go test's working directory) upwards.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}
