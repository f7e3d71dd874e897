package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/store"
	"github.com/nimbo-cloud/nimbo/internal/store/etcdstore"
)

func openStore(t testing.TB, x etcdstore.Embedded) *etcdstore.Store {
	t.Helper()
	x.Dir = filepath.Join(t.TempDir(), "etcd")
	s, err := etcdstore.Open(context.Background(), etcdstore.Config{Embedded: &x})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newCache(t testing.TB, s store.Store, prefix string) *store.Cache {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := store.NewCache(ctx, s, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func put(t testing.TB, s store.Store, k, v string) int64 {
	t.Helper()
	rev, err := store.Put(ctxT(t), s, k, []byte(v))
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func wantCached(t *testing.T, c *store.Cache, key, value string, rev int64) {
	t.Helper()
	kv, ok := c.Get(key)
	if !ok || string(kv.Value) != value || (rev != 0 && kv.ModRev != rev) {
		t.Fatalf("cache Get(%q) = %+v, %v; want %q at rev %d", key, kv, ok, value, rev)
	}
}

func wantUncached(t *testing.T, c *store.Cache, key string) {
	t.Helper()
	if kv, ok := c.Get(key); ok {
		t.Fatalf("cache Get(%q) = %+v, want absent", key, kv)
	}
}

func cachedKeys(kvs []store.KV) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Key
	}
	return out
}

// sameAsStore checks that the cache holds exactly what the store lists.
func sameAsStore(t *testing.T, c *store.Cache, s store.Store, prefix string) {
	t.Helper()
	kvs, rev, err := s.List(ctxT(t), prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitRev(ctxT(t), rev); err != nil {
		t.Fatal(err)
	}
	got := c.List(prefix)
	if len(got) != len(kvs) {
		t.Fatalf("cache has %d keys, store %d:\ncache %q\nstore %q", len(got), len(kvs), cachedKeys(got), cachedKeys(kvs))
	}
	for i := range kvs {
		if got[i].Key != kvs[i].Key || string(got[i].Value) != string(kvs[i].Value) ||
			got[i].ModRev != kvs[i].ModRev || got[i].CreateRev != kvs[i].CreateRev {
			t.Fatalf("entry %d: cache %+v, store %+v", i, got[i], kvs[i])
		}
	}
}

func TestCacheReadYourWrites(t *testing.T) {
	s := openStore(t, etcdstore.Embedded{})
	put(t, s, "/c/pre", "existing")
	put(t, s, "/other/x", "outside")
	c := newCache(t, s, "/c/")
	wantCached(t, c, "/c/pre", "existing", 0)
	wantUncached(t, c, "/other/x")

	ctx := ctxT(t)
	for i := range 100 {
		k := fmt.Sprintf("/c/k%03d", i)
		rev := put(t, s, k, strconv.Itoa(i))
		if err := c.WaitRev(ctx, rev); err != nil {
			t.Fatal(err)
		}
		if c.Rev() < rev {
			t.Fatalf("Rev %d < %d after WaitRev", c.Rev(), rev)
		}
		wantCached(t, c, k, strconv.Itoa(i), rev)
		if i%10 == 0 {
			rev, err := store.Delete(ctx, s, k, rev)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.WaitRev(ctx, rev); err != nil {
				t.Fatal(err)
			}
			wantUncached(t, c, k)
		}
	}
	kv, _ := c.Get("/c/k001")
	rev, err := store.Update(ctx, s, "/c/k001", []byte("updated"), kv.ModRev)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitRev(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Get("/c/k001"); string(got.Value) != "updated" || got.CreateRev != kv.CreateRev || got.ModRev != rev {
		t.Fatalf("after update: %+v", got)
	}
	sameAsStore(t, c, s, "/c/")
	if c.Len() != 91 {
		t.Fatalf("Len = %d, want 91", c.Len())
	}

	rev, err = s.Txn(ctx, store.Txn{Ops: []store.Op{{Kind: store.OpDeletePrefix, Key: "/c/k0"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitRev(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if got := cachedKeys(c.List("/c/")); !slices.Equal(got, []string{"/c/pre"}) {
		t.Fatalf("after delete prefix: %q", got)
	}
}

func TestCacheList(t *testing.T) {
	s := openStore(t, etcdstore.Embedded{})
	keys := []string{"/l/a", "/l/a/1", "/l/a/2", "/l/ab", "/l/b", "/l/b/x/y"}
	for _, k := range slices.Backward(keys) {
		put(t, s, k, k)
	}
	put(t, s, "/m", "outside")
	put(t, s, "/l", "outside")
	c := newCache(t, s, "/l/")
	for prefix, want := range map[string][]string{
		"/l/":   keys,
		"":      keys,
		"/l/a":  keys[:4],
		"/l/a/": keys[1:3],
		"/l/b/": keys[5:],
		"/l/c":  nil,
		"/m":    nil,
		"/l/b":  keys[4:],
	} {
		if got := cachedKeys(c.List(prefix)); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("List(%q) = %q, want %q", prefix, got, want)
		}
	}
	for _, kv := range c.List("/l/") {
		if string(kv.Value) != kv.Key || kv.ModRev == 0 || kv.CreateRev != kv.ModRev {
			t.Errorf("entry %+v", kv)
		}
	}
}

func TestCacheWaitRev(t *testing.T) {
	s := openStore(t, etcdstore.Embedded{WatchProgressInterval: 200 * time.Millisecond})
	c := newCache(t, s, "/w/")

	// Already reached: immediate.
	if err := c.WaitRev(ctxT(t), c.Rev()); err != nil {
		t.Fatal(err)
	}
	// A revision that does not exist yet: ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.WaitRev(ctx, c.Rev()+1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitRev of a future revision: %v", err)
	}
	// A waiter blocked before the write is woken by it.
	done := make(chan error, 1)
	target := c.Rev() + 1
	go func() { done <- c.WaitRev(ctxT(t), target) }()
	time.Sleep(20 * time.Millisecond)
	rev := put(t, s, "/w/k", "v")
	if rev != target {
		t.Fatalf("write rev %d, expected %d", rev, target)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitRev not woken by the write")
	}
	wantCached(t, c, "/w/k", "v", rev)

	// A revision of a write outside the prefix is reached through the
	// store's progress notifications.
	rev = put(t, s, "/elsewhere", "x")
	start := time.Now()
	if err := c.WaitRev(ctxT(t), rev); err != nil {
		t.Fatal(err)
	}
	t.Logf("WaitRev of a foreign revision took %v", time.Since(start))

	// Close wakes waiters with ErrClosed.
	go func() { done <- c.WaitRev(context.Background(), rev+1000) }()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrClosed) || !errors.Is(err, errdefs.ErrUnavailable) {
			t.Fatalf("WaitRev after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake WaitRev")
	}
	wantCached(t, c, "/w/k", "v", 0) // still readable
}

// flakyStore wraps a Store so a test can drop its watches and hold new ones
// back, and counts List calls.
type flakyStore struct {
	store.Store
	lists atomic.Int32

	mu      sync.Mutex
	drops   []func()
	gate    chan struct{} // while non-nil, new watches wait for it to close
	watches []int64       // start revisions of watches
}

func (f *flakyStore) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	f.lists.Add(1)
	return f.Store.List(ctx, prefix)
}

func (f *flakyStore) Watch(ctx context.Context, prefix string, rev int64) <-chan store.WatchResponse {
	f.mu.Lock()
	gate := f.gate
	f.watches = append(f.watches, rev)
	f.mu.Unlock()
	out := make(chan store.WatchResponse)
	wctx, cancel := context.WithCancel(ctx)
	dropped := make(chan struct{})
	var once sync.Once
	f.mu.Lock()
	f.drops = append(f.drops, func() { once.Do(func() { close(dropped) }) })
	f.mu.Unlock()
	go func() {
		defer close(out)
		defer cancel()
		if gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
				return
			}
		}
		in := f.Store.Watch(wctx, prefix, rev)
		for {
			select {
			case r, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- r:
				case <-ctx.Done():
					return
				}
				if r.Err != nil {
					return
				}
			case <-dropped:
				select {
				case out <- store.WatchResponse{Err: fmt.Errorf("test: watch dropped: %w", errdefs.ErrUnavailable)}:
				case <-ctx.Done():
				}
				return
			}
		}
	}()
	return out
}

// dropAndHold ends every current watch and holds new ones until release.
func (f *flakyStore) dropAndHold() (release func()) {
	f.mu.Lock()
	gate := make(chan struct{})
	f.gate = gate
	drops := f.drops
	f.drops = nil
	f.mu.Unlock()
	for _, d := range drops {
		d()
	}
	return func() {
		f.mu.Lock()
		f.gate = nil
		f.mu.Unlock()
		close(gate)
	}
}

func (f *flakyStore) watchStarts() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.watches)
}

func TestCacheResumesDroppedWatch(t *testing.T) {
	es := openStore(t, etcdstore.Embedded{})
	f := &flakyStore{Store: es}
	put(t, f, "/r/a", "1")
	c := newCache(t, f, "/r/")
	rev := put(t, f, "/r/b", "2")
	if err := c.WaitRev(ctxT(t), rev); err != nil {
		t.Fatal(err)
	}

	at := c.Rev()
	release := f.dropAndHold()
	// Changes while the cache has no watch.
	put(t, f, "/r/c", "3")
	if _, err := store.Delete(ctxT(t), f, "/r/a", 0); err != nil {
		t.Fatal(err)
	}
	last := put(t, f, "/r/b", "2b")
	time.Sleep(100 * time.Millisecond)
	if c.Rev() >= last {
		t.Fatalf("cache at %d while its watch is held", c.Rev())
	}
	release()
	if err := c.WaitRev(ctxT(t), last); err != nil {
		t.Fatal(err)
	}
	if n := f.lists.Load(); n != 1 {
		t.Fatalf("cache listed %d times, want 1 (resume without relisting)", n)
	}
	sameAsStore(t, c, f, "/r/")
	starts := f.watchStarts()
	if len(starts) < 2 || starts[len(starts)-1] != at+1 {
		t.Fatalf("watch start revisions %v, want a resume from %d", starts, at+1)
	}
}

func TestCacheRelistsAfterCompaction(t *testing.T) {
	es := openStore(t, etcdstore.Embedded{})
	f := &flakyStore{Store: es}
	for i := range 20 {
		put(t, f, fmt.Sprintf("/x/k%02d", i), "v")
	}
	c := newCache(t, f, "/x/")
	tr := c.Track("/x/")
	if _, reset := tr.Take(); !reset {
		t.Fatal("a new tracker's first Take is not a reset")
	}
	release := f.dropAndHold()
	ctx := ctxT(t)
	// While the watch is down: updates, deletes, creates, then compaction of
	// all that history.
	put(t, f, "/x/k00", "changed")
	if _, err := f.Txn(ctx, store.Txn{Ops: []store.Op{{Kind: store.OpDeletePrefix, Key: "/x/k1"}}}); err != nil {
		t.Fatal(err)
	}
	put(t, f, "/x/new", "n")
	last := put(t, f, "/y/outside", "o")
	if err := es.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	release()
	if err := c.WaitRev(ctx, last); err != nil {
		t.Fatal(err)
	}
	if n := f.lists.Load(); n != 2 {
		t.Fatalf("cache listed %d times, want 2 (relist after compaction)", n)
	}
	sameAsStore(t, c, f, "/x/")
	wantCached(t, c, "/x/k00", "changed", 0)
	wantUncached(t, c, "/x/k10")
	if keys, reset := tr.Take(); !reset || len(keys) != 0 {
		t.Fatalf("after a re-list, Take = %v, %v; want a reset", keys, reset)
	}
	// And it follows changes again afterwards.
	rev := put(t, f, "/x/after", "a")
	if err := c.WaitRev(ctx, rev); err != nil {
		t.Fatal(err)
	}
	wantCached(t, c, "/x/after", "a", rev)
}

func TestCacheStoreClosed(t *testing.T) {
	s := openStore(t, etcdstore.Embedded{})
	rev := put(t, s, "/s/k", "v")
	c := newCache(t, s, "/s/")
	if err := c.WaitRev(ctxT(t), rev); err != nil {
		t.Fatal(err)
	}
	s.Close()
	err := c.WaitRev(ctxT(t), rev+1)
	if !errors.Is(err, store.ErrClosed) || !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("WaitRev after the store closed: %v", err)
	}
	wantCached(t, c, "/s/k", "v", rev)
}

func TestCacheConcurrent(t *testing.T) {
	s := openStore(t, etcdstore.Embedded{})
	c := newCache(t, s, "/p/")
	ctx := ctxT(t)
	const writers, writes = 4, 50
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var reads atomic.Int64
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				kvs := c.List("/p/")
				if !slices.IsSortedFunc(kvs, func(a, b store.KV) int {
					if a.Key < b.Key {
						return -1
					}
					return 1
				}) {
					t.Error("List not sorted")
					return
				}
				c.Get("/p/w0-k0")
				reads.Add(1)
				runtime.Gosched() // leave the CPUs to etcd too
			}
		})
	}
	var ww sync.WaitGroup
	for w := range writers {
		ww.Go(func() {
			for i := range writes {
				k := fmt.Sprintf("/p/w%d-k%d", w, rand.IntN(10))
				var err error
				if i%4 == 3 {
					_, err = store.Delete(ctx, s, k, 0)
				} else {
					var rev int64
					rev, err = store.Put(ctx, s, k, []byte(strconv.Itoa(i)))
					if err == nil {
						err = c.WaitRev(ctx, rev)
					}
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	ww.Wait()
	close(stop)
	wg.Wait()
	sameAsStore(t, c, s, "/p/")
	t.Logf("%d concurrent reads", reads.Load())
}

func BenchmarkCacheGet(b *testing.B) {
	s := openStore(b, etcdstore.Embedded{UnsafeNoFsync: true})
	const n = 10000
	for i := 0; i < n; i += 100 {
		var txn store.Txn
		for j := i; j < i+100; j++ {
			txn.Ops = append(txn.Ops, store.Op{Kind: store.OpPut, Key: fmt.Sprintf("/b/k%05d", j), Value: []byte("token-data")})
		}
		if _, err := s.Txn(context.Background(), txn); err != nil {
			b.Fatal(err)
		}
	}
	c := newCache(b, s, "/b/")
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("/b/k%05d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(n)
		for pb.Next() {
			if _, ok := c.Get(keys[i%n]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
}
