package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	v3 "github.com/nimbo-cloud/nimbo/api/identity/v3"
	"github.com/nimbo-cloud/nimbo/internal/identity"
	"github.com/nimbo-cloud/nimbo/internal/store/etcdstore"
)

// inprocFixture is nimbo's identity service on an embedded etcd in a temp
// dir, bootstrapped, with the tokens and application credential the
// in-process benchmarks use. Nothing listens on any socket.
type inprocFixture struct {
	st  *etcdstore.Store
	svc *identity.Service

	password      string
	scoped        string // project-scoped admin token
	unscoped      string // unscoped admin token
	projectID     string // the admin project
	appCredID     string
	appCredSecret string

	mu      sync.Mutex
	lastErr error // the last failure of a benchmark, for the report
}

// newInprocFixture starts the service with its data in dir.
func newInprocFixture(ctx context.Context, dir string) (_ *inprocFixture, err error) {
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	f := &inprocFixture{password: "bench-inproc-password"}
	f.st, err = etcdstore.Open(ctx, etcdstore.Config{Embedded: &etcdstore.Embedded{Dir: filepath.Join(dir, "etcd")}, Logger: quiet})
	if err != nil {
		return nil, fmt.Errorf("opening the embedded etcd: %w", err)
	}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	if f.svc, err = identity.New(ctx, f.st, identity.Options{Logger: quiet}); err != nil {
		return nil, err
	}
	if _, err = f.svc.Bootstrap(ctx, identity.BootstrapConfig{AdminPassword: f.password, PublicURL: "http://127.0.0.1:5000"}); err != nil {
		return nil, err
	}
	tok, err := f.svc.Authenticate(ctx, mustAuthRequest(passwordAuth("admin", f.password, "admin")))
	if err != nil {
		return nil, fmt.Errorf("password auth: %w", err)
	}
	f.scoped, f.projectID = tok.ID, tok.Project.ID
	un, err := f.svc.Authenticate(ctx, mustAuthRequest(passwordAuth("admin", f.password, "")))
	if err != nil {
		return nil, fmt.Errorf("unscoped password auth: %w", err)
	}
	f.unscoped = un.ID
	name := "bench-inproc"
	ac, secret, err := f.svc.CreateAppCred(ctx, tok, tok.User.ID, v3.AppCredRequest{Name: &name})
	if err != nil {
		return nil, fmt.Errorf("creating an application credential: %w", err)
	}
	f.appCredID, f.appCredSecret = ac.ID, secret
	return f, nil
}

// close stops the service and the embedded etcd.
func (f *inprocFixture) close() {
	if f.svc != nil {
		f.svc.Close()
	}
	if f.st != nil {
		_ = f.st.Close()
	}
}

// mustAuthRequest turns an HTTP auth body into the service's request type,
// decoding the very JSON the HTTP benchmarks send.
func mustAuthRequest(body authBody) *v3.AuthRequest {
	b, err := json.Marshal(body)
	if err != nil {
		panic(err)
	}
	var r v3.AuthRequest
	if err := json.Unmarshal(b, &r); err != nil {
		panic(err)
	}
	return &r
}

// inprocBench is one in-process benchmark.
type inprocBench struct {
	name string // as `go test -bench` names it
	what string
	fn   func(f *inprocFixture, b *testing.B)
}

// inprocBenches are the in-process benchmarks, in report order; the
// Benchmark functions of bench_test.go run the same functions.
var inprocBenches = []inprocBench{
	{"BenchmarkValidate", "Service.Validate of a project-scoped token", (*inprocFixture).benchValidate},
	{"BenchmarkValidateParallel", "Service.Validate from GOMAXPROCS goroutines (time per op over all of them)", (*inprocFixture).benchValidateParallel},
	{"BenchmarkAuthenticateRescope", "Service.Authenticate, method token, unscoped → project", (*inprocFixture).benchRescope},
	{"BenchmarkAuthenticateAppCred", "Service.Authenticate, method application_credential", (*inprocFixture).benchAppCred},
	{"BenchmarkAuthenticatePassword", "Service.Authenticate, method password (" + identity.KDFDescription + "), project scope", (*inprocFixture).benchPassword},
}

// fail records err for the report and fails b.
func (f *inprocFixture) fail(b *testing.B, err error) {
	f.mu.Lock()
	f.lastErr = err
	f.mu.Unlock()
	b.Error(err)
}

// takeErr returns and clears the last recorded failure.
func (f *inprocFixture) takeErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.lastErr
	f.lastErr = nil
	return err
}

// benchValidate measures Service.Validate of a project-scoped token.
func (f *inprocFixture) benchValidate(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.svc.Validate(ctx, f.scoped); err != nil {
			f.fail(b, err)
			return
		}
	}
}

// benchValidateParallel measures Service.Validate from parallel goroutines.
func (f *inprocFixture) benchValidateParallel(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.svc.Validate(ctx, f.scoped); err != nil {
				f.fail(b, err)
				return
			}
		}
	})
}

// benchRescope measures issuing a project-scoped token from an unscoped one.
func (f *inprocFixture) benchRescope(b *testing.B) {
	ctx := context.Background()
	req := mustAuthRequest(rescopeAuth(f.unscoped, f.projectID))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.svc.Authenticate(ctx, req); err != nil {
			f.fail(b, err)
			return
		}
	}
}

// benchAppCred measures issuing a token from an application credential.
func (f *inprocFixture) benchAppCred(b *testing.B) {
	ctx := context.Background()
	req := mustAuthRequest(appCredAuth(f.appCredID, f.appCredSecret))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.svc.Authenticate(ctx, req); err != nil {
			f.fail(b, err)
			return
		}
	}
}

// benchPassword measures issuing a project-scoped token by password.
func (f *inprocFixture) benchPassword(b *testing.B) {
	ctx := context.Background()
	req := mustAuthRequest(passwordAuth("admin", f.password, "admin"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.svc.Authenticate(ctx, req); err != nil {
			f.fail(b, err)
			return
		}
	}
}

// inprocResult is the outcome of one in-process benchmark.
type inprocResult struct {
	bench inprocBench
	res   testing.BenchmarkResult
	err   string
}

// runInproc runs every in-process benchmark with testing.Benchmark (about a
// second each) on one fixture in dir.
func runInproc(ctx context.Context, dir string) ([]inprocResult, error) {
	f, err := newInprocFixture(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer f.close()
	var out []inprocResult
	for _, bench := range inprocBenches {
		res := testing.Benchmark(func(b *testing.B) { bench.fn(f, b) })
		var failure string
		if err := f.takeErr(); err != nil {
			failure = err.Error()
		} else if res.N == 0 {
			failure = "the benchmark did not run"
		}
		out = append(out, inprocResult{bench: bench, res: res, err: failure})
	}
	return out, nil
}
