// Package e2e holds nimbo's end-to-end tests. TestMain builds the real binary
// (./cmd/nimbo) once; each test starts `nimbo up` inside its own throwaway
// network namespace (internal/testenv) on 127.0.0.1:5000 and drives it with
// the clients people use: Debian's openstack CLI and gophercloud v2. The
// tests need root; they clean up their namespaces and processes also when
// they fail.
//
// Run them with `go test ./test/e2e/ -v -count=1`. Set NIMBO_E2E_VERBOSE=1 to
// stream the server's output into the test log as it comes (by default only
// its tail is shown, when a test fails), NIMBO_E2E_LOGDIR=DIR to keep each
// server's full output in DIR, and NIMBO_E2E_BINARY=PATH to test a prebuilt
// binary instead of building ./cmd/nimbo.
package e2e
