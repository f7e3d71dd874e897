// Package testenv holds helpers for nimbo's privileged tests: RequireRoot, and
// throwaway network namespaces (NewNetns) in which a test can start programs
// and to which it can open sockets from the test process, without ever
// touching the root namespace's interfaces, addresses or routes.
//
// Everything a fixture creates is removed in t.Cleanup, also when the test
// fails: processes left in a namespace are killed by PID before the namespace
// is deleted.
package testenv

import (
	"os"
	"testing"
)

// RequireRoot skips the test when the process is not running as root. Under
// CI (the CI environment variable is set) it fails instead, because CI runs as
// root and a privileged test that silently skips there tests nothing.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("test needs root (euid is %d) and CI=%q is set: privileged tests must run in CI", os.Geteuid(), os.Getenv("CI"))
	}
	t.Skipf("skipping: test needs root (network namespaces, netlink); euid is %d", os.Geteuid())
}
