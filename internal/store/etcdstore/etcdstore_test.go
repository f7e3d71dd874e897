package etcdstore_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/store"
	"github.com/nimbo-cloud/nimbo/internal/store/etcdstore"
	"github.com/nimbo-cloud/nimbo/internal/store/storetest"
)

// logSink is a slog.Handler that records what it gets, to check the store is
// quiet and to show etcd's complaints when a test fails.
type logSink struct {
	mu   sync.Mutex
	recs []string
}

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	l.mu.Lock()
	l.recs = append(l.recs, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logSink) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logSink) WithGroup(string) slog.Handler      { return l }
func (l *logSink) records() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.recs...)
}

// openEmbedded opens an embedded store in a fresh temporary directory and
// closes it when the test ends.
func openEmbedded(t testing.TB, x etcdstore.Embedded) (*etcdstore.Store, *logSink) {
	t.Helper()
	if x.Dir == "" {
		x.Dir = filepath.Join(t.TempDir(), "etcd")
	}
	sink := &logSink{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := etcdstore.Open(ctx, etcdstore.Config{Embedded: &x, Logger: slog.New(sink)})
	if err != nil {
		t.Fatalf("Open embedded: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			for _, r := range sink.records() {
				t.Logf("log: %s", r)
			}
		}
	})
	return s, sink
}

func TestEmbeddedConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := etcdstore.Open(context.Background(), etcdstore.Config{
			Embedded: &etcdstore.Embedded{Dir: filepath.Join(t.TempDir(), "etcd")},
		})
		if err != nil {
			t.Fatalf("Open embedded: %v", err)
		}
		return s
	})
}

// externalEtcd is an etcd server process started by a test.
type externalEtcd struct {
	Endpoint string
	cmd      *exec.Cmd
	log      *bytes.Buffer
}

// startExternal runs /usr/bin/etcd on a temporary data dir, listening on unix
// sockets only, and kills it when the test ends.
func startExternal(t *testing.T) *externalEtcd {
	t.Helper()
	const bin = "/usr/bin/etcd"
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("external etcd tests need %s (Debian package etcd-server): %v", bin, err)
	}
	dir := t.TempDir()
	// Unix socket URLs "unix://name:port" are files named "name:port" in the
	// working directory: no TCP port is used at all.
	args := []string{
		"--name", "test",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", "unix://client:0",
		"--advertise-client-urls", "unix://client:0",
		"--listen-peer-urls", "unix://peer:0",
		"--initial-advertise-peer-urls", "unix://peer:0",
		"--initial-cluster", "test=unix://peer:0",
		"--logger", "zap",
		"--log-level", "warn",
	}
	var logBuf bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = &syncWriter{w: &logBuf}
	cmd.Stderr = cmd.Stdout
	// Die with the test binary, even if it panics or times out.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	x := &externalEtcd{Endpoint: "unix://" + filepath.Join(dir, "client:0"), cmd: cmd, log: &logBuf}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			sc := bufio.NewScanner(strings.NewReader(cmd.Stdout.(*syncWriter).String()))
			for sc.Scan() {
				t.Logf("etcd: %s", sc.Text())
			}
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := x.open(t, time.Second)
		if err == nil {
			s.Close()
			return x
		}
		select {
		case <-exited:
			t.Fatalf("etcd exited: %s", cmd.Stdout.(*syncWriter).String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (x *externalEtcd) open(t *testing.T, dial time.Duration) (*etcdstore.Store, error) {
	return etcdstore.Open(context.Background(), etcdstore.Config{
		External:       &etcdstore.External{Endpoints: []string{x.Endpoint}, DialTimeout: dial},
		RequestTimeout: 5 * time.Second,
	})
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.String()
}

func TestExternalConformance(t *testing.T) {
	x := startExternal(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := x.open(t, 5*time.Second)
		if err != nil {
			t.Fatalf("Open external: %v", err)
		}
		return s
	})
}

func TestExternalDown(t *testing.T) {
	x := startExternal(t)
	s, err := x.open(t, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := store.Put(ctx, s, "/k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := s.Watch(wctx, "/", 0)

	// Kill the server: requests fail with ErrUnavailable within their timeout.
	if err := x.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, time.Second)
	defer rcancel()
	start := time.Now()
	_, err = s.Get(rctx, "/k")
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("Get with the server down: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Get with the server down took %v", d)
	}
	if _, err := store.Put(rctx, s, "/k", []byte("w")); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("Put with the server down: %v, want ErrUnavailable", err)
	}
	// The watch ends with an error once the store is closed.
	s.Close()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for {
		select {
		case r, ok := <-w:
			if !ok {
				t.Fatal("watch closed without an error")
			}
			if r.Err != nil {
				if !errors.Is(r.Err, errdefs.ErrUnavailable) {
					t.Fatalf("watch error %v, want ErrUnavailable", r.Err)
				}
				return
			}
		case <-timer.C:
			t.Fatal("watch did not end after Close")
		}
	}
}

func TestExternalUnreachable(t *testing.T) {
	ep := "unix://" + filepath.Join(t.TempDir(), "nothing:0")
	start := time.Now()
	_, err := etcdstore.Open(context.Background(), etcdstore.Config{
		External: &etcdstore.External{Endpoints: []string{ep}, DialTimeout: 500 * time.Millisecond},
	})
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("Open of an unreachable cluster: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Open of an unreachable cluster took %v", d)
	}
}

func TestOpenInvalid(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range map[string]etcdstore.Config{
		"neither":        {},
		"both":           {Embedded: &etcdstore.Embedded{Dir: t.TempDir()}, External: &etcdstore.External{Endpoints: []string{"unix:///x"}}},
		"no dir":         {Embedded: &etcdstore.Embedded{}},
		"no endpoints":   {External: &etcdstore.External{}},
		"long socket":    {Embedded: &etcdstore.Embedded{Dir: t.TempDir(), ClientSocket: "/" + strings.Repeat("x", 120)}},
		"relative+long ": {Embedded: &etcdstore.Embedded{Dir: t.TempDir(), ClientSocket: strings.Repeat("y", 110)}},
	} {
		s, err := etcdstore.Open(ctx, cfg)
		if !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
		if s != nil {
			s.Close()
		}
	}
}

func TestEmbeddedReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd")
	ctx := context.Background()
	cfg := etcdstore.Config{Embedded: &etcdstore.Embedded{Dir: dir}}
	s, err := etcdstore.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := store.Put(ctx, s, "/persist", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}

	// The directory is locked while in use: a second store fails at once.
	start := time.Now()
	s2, err := etcdstore.Open(ctx, cfg)
	if !errors.Is(err, errdefs.ErrUnavailable) {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("second Open on a directory in use: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("second Open took %v", d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Closing released it, and the data is still there.
	s, err = etcdstore.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	kv, err := s.Get(ctx, "/persist")
	if err != nil || string(kv.Value) != "v" || kv.ModRev != rev {
		t.Fatalf("after reopen: %+v, %v; want v at %d", kv, err, rev)
	}
	rev2, err := store.Put(ctx, s, "/persist2", []byte("w"))
	if err != nil || rev2 <= rev {
		t.Fatalf("Put after reopen: rev %d, %v", rev2, err)
	}
}

func TestEmbeddedQuiet(t *testing.T) {
	s, sink := openEmbedded(t, etcdstore.Embedded{})
	ctx := context.Background()
	rev, err := store.Put(ctx, s, "/q", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	collectRev(t, s.Watch(wctx, "/", rev), rev)
	cancel()
	if _, err := s.Txn(ctx, store.Txn{Ops: []store.Op{{Kind: store.OpPut, Key: "/ttl", Value: []byte("x"), TTL: time.Minute}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if recs := sink.records(); len(recs) > 0 {
		t.Fatalf("the embedded store logged:\n%s", strings.Join(recs, "\n"))
	}
}

func collectRev(t *testing.T, ch <-chan store.WatchResponse, rev int64) {
	t.Helper()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for {
		select {
		case r, ok := <-ch:
			if !ok || r.Err != nil {
				t.Fatalf("watch ended: %v", r.Err)
			}
			if r.Rev >= rev {
				return
			}
		case <-timer.C:
			t.Fatalf("watch did not reach rev %d", rev)
		}
	}
}

// TestEmbeddedNoTCPListeners checks that the embedded member opens no TCP or
// UDP socket: every socket of this process must be a unix socket.
func TestEmbeddedNoTCPListeners(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("needs /proc")
	}
	before := inetSockets(t)
	dir := t.TempDir()
	s, _ := openEmbedded(t, etcdstore.Embedded{Dir: filepath.Join(dir, "etcd"), ClientSocket: filepath.Join(dir, "etcd.sock")})
	if _, err := store.Put(context.Background(), s, "/k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	after := inetSockets(t)
	for ino, desc := range after {
		if _, ok := before[ino]; !ok {
			t.Errorf("the embedded store opened an inet socket: %s", desc)
		}
	}
}

// inetSockets returns this process's TCP and UDP sockets by inode.
func inetSockets(t *testing.T) map[string]string {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		l, err := os.Readlink("/proc/self/fd/" + fd.Name())
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	out := map[string]string{}
	for _, f := range []string{"tcp", "tcp6", "udp", "udp6"} {
		b, err := os.ReadFile("/proc/self/net/" + f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) > 9 && inodes[fields[9]] {
				out[fields[9]] = f + " " + line
			}
		}
	}
	return out
}

func TestEmbeddedClientSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "etcd.sock")
	// A stale socket file from a crashed run is replaced.
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	s, _ := openEmbedded(t, etcdstore.Embedded{Dir: filepath.Join(dir, "etcd"), ClientSocket: sock})
	ctx := context.Background()
	if _, err := store.Put(ctx, s, "/via-nimbo", []byte("v")); err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"unix://" + sock}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cli.Get(cctx, "/via-nimbo")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("Get over the client socket: %v, %v", resp, err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket file: %v, %v", fi, err)
	}
}

var idMu sync.Mutex

func nextID(n *int64) int64 {
	idMu.Lock()
	defer idMu.Unlock()
	*n++
	return *n
}
