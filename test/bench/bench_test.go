package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
)

// The in-process benchmarks of nimbo's identity service, for
// `go test -run '^$' -bench . -benchmem ./test/bench`. They share one fixture
// (an embedded etcd in a temp dir, bootstrapped), created on first use, so
// plain `go test ./...` starts nothing. Benchmarks report, they never assert
// timings (netbench_test.go tests only the driver's helpers).

var shared struct {
	once sync.Once
	dir  string
	f    *inprocFixture
	err  error
}

// TestMain runs the benchmarks and then removes the shared fixture.
func TestMain(m *testing.M) {
	code := m.Run()
	if shared.f != nil {
		shared.f.close()
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// fixture returns the shared fixture, creating it on first use.
func fixture(b *testing.B) *inprocFixture {
	b.Helper()
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "nimbo-bench-"); shared.err != nil {
			return
		}
		shared.f, shared.err = newInprocFixture(context.Background(), shared.dir)
	})
	if shared.err != nil {
		b.Fatal(shared.err)
	}
	return shared.f
}

// benchFn returns the function of the named in-process benchmark.
func benchFn(name string) func(*inprocFixture, *testing.B) {
	for _, ib := range inprocBenches {
		if ib.name == name {
			return ib.fn
		}
	}
	panic(fmt.Sprintf("no in-process benchmark %s", name))
}

// BenchmarkValidate measures Service.Validate of a project-scoped token.
func BenchmarkValidate(b *testing.B) { benchFn("BenchmarkValidate")(fixture(b), b) }

// BenchmarkValidateParallel measures Service.Validate from GOMAXPROCS goroutines.
func BenchmarkValidateParallel(b *testing.B) { benchFn("BenchmarkValidateParallel")(fixture(b), b) }

// BenchmarkAuthenticateRescope measures re-scoping an unscoped token to a project.
func BenchmarkAuthenticateRescope(b *testing.B) {
	benchFn("BenchmarkAuthenticateRescope")(fixture(b), b)
}

// BenchmarkAuthenticateAppCred measures token issue by application credential.
func BenchmarkAuthenticateAppCred(b *testing.B) {
	benchFn("BenchmarkAuthenticateAppCred")(fixture(b), b)
}

// BenchmarkAuthenticatePassword measures token issue by password (argon2id).
func BenchmarkAuthenticatePassword(b *testing.B) {
	benchFn("BenchmarkAuthenticatePassword")(fixture(b), b)
}
