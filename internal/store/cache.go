package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/btree"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// Cache is an in-memory copy of every key under a prefix, kept current by a
// watch, for hot paths that cannot afford a store round trip (token
// validation, policy lookups). It is safe for concurrent use; reads never wait
// for the writer: they load an immutable snapshot (a copy-on-write B-tree).
//
// Values returned by Get and List are shared with the cache and must not be
// modified.
//
// To read your own writes, wait for the revision the write returned:
//
//	rev, err := store.Put(ctx, s, key, value) // key under the cache's prefix
//	...
//	if err := c.WaitRev(ctx, rev); err != nil { ... }
//	kv, ok := c.Get(key) // reflects the Put (or a later change)
type Cache struct {
	s      Store
	prefix string
	log    *slog.Logger

	snap atomic.Pointer[cacheSnap] // what readers see

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever snap changes or err is set
	err     error         // set when the cache stopped following the store

	trackers []*Tracker // guarded by mu

	cancel context.CancelFunc
	done   chan struct{} // closed when the watch loop has returned
}

// cacheSnap is one immutable state of the cache.
type cacheSnap struct {
	tree *btree.BTreeG[KV] // by key; never modified once published
	rev  int64
}

// cacheDegree is the B-tree degree (nodes hold up to 2*degree-1 keys).
const cacheDegree = 32

// Backoff bounds between attempts to re-watch or re-list a failing store.
const (
	cacheMinBackoff = 50 * time.Millisecond
	cacheMaxBackoff = 5 * time.Second
)

func lessKV(a, b KV) bool { return a.Key < b.Key }

// NewCache lists every key under prefix, then follows the changes from the
// listing's revision on, until Close. ctx bounds the initial listing only.
//
// When the watch fails or is dropped, the cache resumes it from the last
// revision it reflects; when that revision has been compacted away, it lists
// the prefix again and swaps in the fresh copy. Changes are never lost, and
// meanwhile readers see the last state (Rev does not move). If the store is
// closed, the cache keeps its last state and WaitRev fails for later
// revisions.
func NewCache(ctx context.Context, s Store, prefix string) (*Cache, error) {
	kvs, rev, err := s.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("store: cache %q: %w", prefix, err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c := &Cache{
		s:       s,
		prefix:  prefix,
		log:     slog.Default().With("component", "store.cache", "prefix", prefix),
		changed: make(chan struct{}),
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	work := treeOf(kvs)
	c.snap.Store(&cacheSnap{tree: work.Clone(), rev: rev})
	go c.run(runCtx, work, rev)
	return c, nil
}

func treeOf(kvs []KV) *btree.BTreeG[KV] {
	t := btree.NewG(cacheDegree, lessKV)
	for _, kv := range kvs {
		t.ReplaceOrInsert(kv)
	}
	return t
}

// Get returns the cached key.
func (c *Cache) Get(key string) (KV, bool) {
	return c.snap.Load().tree.Get(KV{Key: key})
}

// List returns the cached keys starting with prefix, sorted by key, in
// O(log n + k).
func (c *Cache) List(prefix string) []KV {
	var out []KV
	c.snap.Load().tree.AscendGreaterOrEqual(KV{Key: prefix}, func(kv KV) bool {
		if !strings.HasPrefix(kv.Key, prefix) {
			return false
		}
		out = append(out, kv)
		return true
	})
	return out
}

// Len returns the number of cached keys.
func (c *Cache) Len() int { return c.snap.Load().tree.Len() }

// Changed returns a channel that is closed at the cache's next change (or
// when it stops following the store): level-triggered consumers such as the
// agent wait on it, then read the whole state again.
func (c *Cache) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// Rev returns the store revision the cache reflects: every change under the
// prefix up to Rev is in, none after it.
func (c *Cache) Rev() int64 { return c.snap.Load().rev }

// WaitRev blocks until the cache reflects every change at revisions <= rev.
// For a revision returned by a write under the cache's prefix this takes about
// a watch round trip; a revision of writes elsewhere is reached with the next
// change under the prefix or progress notification from the store (every
// couple of seconds for the embedded etcd). It fails when ctx ends (with ctx's
// error) or when the cache was closed or lost the store (wrapping
// errdefs.ErrUnavailable).
func (c *Cache) WaitRev(ctx context.Context, rev int64) error {
	if c.snap.Load().rev >= rev {
		return nil
	}
	for {
		c.mu.Lock()
		cur, ch, err := c.snap.Load().rev, c.changed, c.err
		c.mu.Unlock()
		if cur >= rev {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("store: cache %q: waiting for revision %d (at %d): %w", c.prefix, rev, cur, ctx.Err())
		}
	}
}

// Close stops following the store and wakes WaitRev callers, which then fail
// with ErrClosed unless already satisfied. The cached state stays readable.
// It does not close the Store.
func (c *Cache) Close() {
	c.cancel()
	<-c.done
	c.setErr(fmt.Errorf("store: cache %q: %w: %w", c.prefix, errdefs.ErrUnavailable, ErrClosed))
}

func (c *Cache) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		close(c.changed)
		c.changed = make(chan struct{})
	}
}

// publish makes work (a tree only the watch loop writes) visible at rev.
// mutated says whether work changed since the last publish; keys are the
// keys that changed, and reset says that everything may have (a re-list).
// Trackers hear of the keys only once the snapshot holding them is visible.
func (c *Cache) publish(work *btree.BTreeG[KV], rev int64, mutated bool, keys []string, reset bool) {
	cur := c.snap.Load()
	if !mutated && rev <= cur.rev {
		return
	}
	next := &cacheSnap{tree: cur.tree, rev: max(rev, cur.rev)}
	if mutated {
		next.tree = work.Clone() // O(1); work copies shared nodes on its next writes
	}
	c.mu.Lock()
	c.snap.Store(next)
	for _, t := range c.trackers {
		t.note(keys, reset)
	}
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// run follows the store until ctx ends. work is the writer's private tree,
// matching the published snapshot at rev.
func (c *Cache) run(ctx context.Context, work *btree.BTreeG[KV], rev int64) {
	defer close(c.done)
	backoff := cacheMinBackoff
	for {
		var err error
		var progressed bool
		work, rev, progressed, err = c.follow(ctx, work, rev)
		if ctx.Err() != nil {
			return
		}
		if progressed {
			backoff = cacheMinBackoff
		}
		switch {
		case errors.Is(err, ErrCompacted):
			c.log.Warn("store cache: watch revision compacted, listing again", "rev", rev+1)
			for {
				var kvs []KV
				var lrev int64
				kvs, lrev, err = c.s.List(ctx, c.prefix)
				if err == nil {
					work, rev = treeOf(kvs), max(rev, lrev)
					c.publish(work, rev, true, nil, true)
					backoff = cacheMinBackoff
					break
				}
				if ctx.Err() != nil {
					return
				}
				if errors.Is(err, ErrClosed) {
					c.lost(err)
					return
				}
				c.log.Warn("store cache: listing failed, retrying", "err", err, "backoff", backoff)
				if !sleep(ctx, &backoff) {
					return
				}
			}
		case errors.Is(err, ErrClosed):
			c.lost(err)
			return
		default:
			if err == nil {
				err = errors.New("watch channel closed")
			}
			c.log.Warn("store cache: watch ended, resuming", "err", err, "rev", rev+1, "backoff", backoff)
			if !sleep(ctx, &backoff) {
				return
			}
		}
	}
}

// lost records that the store went away for good.
func (c *Cache) lost(err error) {
	c.log.Error("store cache: store closed, cache frozen", "err", err, "rev", c.Rev())
	c.setErr(fmt.Errorf("store: cache %q: %w", c.prefix, err))
}

// follow applies one watch from rev+1 until it ends, and returns the tree, the
// revision reached, whether it moved, and the watch's error.
func (c *Cache) follow(ctx context.Context, work *btree.BTreeG[KV], rev int64) (*btree.BTreeG[KV], int64, bool, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := rev
	for resp := range c.s.Watch(wctx, c.prefix, rev+1) {
		if resp.Err != nil {
			return work, rev, rev > start, resp.Err
		}
		mutated := false
		var keys []string
		for _, ev := range resp.Events {
			if ev.KV.ModRev <= rev || !strings.HasPrefix(ev.KV.Key, c.prefix) {
				continue // already reflected, or not ours
			}
			switch ev.Type {
			case EventPut:
				work.ReplaceOrInsert(ev.KV)
			case EventDelete:
				work.Delete(KV{Key: ev.KV.Key})
			}
			mutated = true
			keys = append(keys, ev.KV.Key)
		}
		rev = max(rev, resp.Rev)
		c.publish(work, rev, mutated, keys, false)
	}
	return work, rev, rev > start, nil
}

// sleep waits for *backoff (doubling it for next time) or until ctx ends.
func sleep(ctx context.Context, backoff *time.Duration) bool {
	t := time.NewTimer(*backoff)
	defer t.Stop()
	*backoff = min(2*(*backoff), cacheMaxBackoff)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
