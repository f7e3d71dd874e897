package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/store"
)

// collect reads ch until it has seen a batch with Rev >= rev, and returns the
// events. It fails the test on an error response, a closed channel, a
// decreasing Rev, or a timeout.
func collect(t *testing.T, ch <-chan store.WatchResponse, rev int64) []store.Event {
	t.Helper()
	var (
		evs  []store.Event
		last int64
	)
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for last < rev {
		select {
		case r, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed before rev %d (got %d events)", rev, len(evs))
			}
			if r.Err != nil {
				t.Fatalf("watch error: %v", r.Err)
			}
			if r.Rev < last {
				t.Fatalf("watch Rev went back from %d to %d", last, r.Rev)
			}
			for _, ev := range r.Events {
				if ev.KV.ModRev > r.Rev {
					t.Fatalf("event at rev %d in a batch with Rev %d", ev.KV.ModRev, r.Rev)
				}
				if ev.KV.ModRev <= last {
					t.Fatalf("event at rev %d after a batch with Rev %d, which promised all changes up to it", ev.KV.ModRev, last)
				}
			}
			last = r.Rev
			evs = append(evs, r.Events...)
		case <-timer.C:
			t.Fatalf("no watch batch up to rev %d after %v (at %d, %d events)", rev, waitTimeout, last, len(evs))
		}
	}
	return evs
}

type evSummary struct {
	Type  store.EventType
	Key   string
	Value string
	Rev   int64
}

func summarize(evs []store.Event) []evSummary {
	out := make([]evSummary, len(evs))
	for i, ev := range evs {
		out[i] = evSummary{ev.Type, ev.KV.Key, string(ev.KV.Value), ev.KV.ModRev}
	}
	return out
}

func testWatch(t *testing.T, s store.Store, p string) {
	ctx, cancel := context.WithCancel(bg(t))
	defer cancel()
	r0 := mustPut(t, s, p+"before", "x")
	ch := s.Watch(ctx, p, r0+1)

	var want []evSummary
	r1 := mustPut(t, s, p+"a", "1")
	want = append(want, evSummary{store.EventPut, p + "a", "1", r1})
	mustPut(t, s, strings.TrimSuffix(p, "/")+"-outside", "o")
	r2 := mustPut(t, s, p+"a", "2")
	want = append(want, evSummary{store.EventPut, p + "a", "2", r2})
	r3 := mustTxn(t, s, store.Txn{Ops: []store.Op{
		{Kind: store.OpPut, Key: p + "b", Value: []byte("b")},
		{Kind: store.OpPut, Key: p + "c", Value: []byte("c")},
	}})
	want = append(want, evSummary{store.EventPut, p + "b", "b", r3}, evSummary{store.EventPut, p + "c", "c", r3})
	r4, err := store.Delete(ctx, s, p+"a", 0)
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, evSummary{store.EventDelete, p + "a", "", r4})
	r5 := mustTxn(t, s, store.Txn{Ops: []store.Op{{Kind: store.OpDeletePrefix, Key: p}}})
	want = append(want, evSummary{store.EventDelete, p + "b", "", r5}, evSummary{store.EventDelete, p + "before", "", r5}, evSummary{store.EventDelete, p + "c", "", r5})

	evs := collect(t, ch, r5)
	got := summarize(evs)
	// Events of one revision may come in any key order.
	slices.SortStableFunc(got, func(a, b evSummary) int {
		if a.Rev != b.Rev {
			return int(a.Rev - b.Rev)
		}
		return strings.Compare(a.Key, b.Key)
	})
	if !slices.Equal(got, want) {
		t.Fatalf("watch events:\n got %+v\nwant %+v", got, want)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].KV.ModRev < evs[i-1].KV.ModRev {
			t.Fatalf("events out of revision order: %+v", summarize(evs))
		}
	}
	for _, ev := range evs {
		if ev.Type == store.EventPut && ev.KV.CreateRev == 0 {
			t.Fatalf("put event without CreateRev: %+v", ev)
		}
	}
	if evs[1].KV.CreateRev != r1 {
		t.Fatalf("update event CreateRev = %d, want %d", evs[1].KV.CreateRev, r1)
	}
}

func testWatchFromPast(t *testing.T, s store.Store, p string) {
	ctx, cancel := context.WithCancel(bg(t))
	defer cancel()
	r1 := mustPut(t, s, p+"k", "1")
	r2 := mustPut(t, s, p+"k", "2")
	r3 := mustPut(t, s, p+"k", "3")
	// From r2 inclusive: the put at r1 is not replayed.
	got := summarize(collect(t, s.Watch(ctx, p, r2), r3))
	want := []evSummary{{store.EventPut, p + "k", "2", r2}, {store.EventPut, p + "k", "3", r3}}
	if !slices.Equal(got, want) {
		t.Fatalf("watch from %d (first write at %d):\n got %+v\nwant %+v", r2, r1, got, want)
	}
}

func testWatchFromNow(t *testing.T, s store.Store, p string) {
	ctx, cancel := context.WithCancel(bg(t))
	defer cancel()
	mustPut(t, s, p+"old", "x")
	ch := s.Watch(ctx, p, 0)
	r := mustPut(t, s, p+"new", "y") // written right after Watch returned
	got := summarize(collect(t, ch, r))
	want := []evSummary{{store.EventPut, p + "new", "y", r}}
	if !slices.Equal(got, want) {
		t.Fatalf("watch from now:\n got %+v\nwant %+v", got, want)
	}
}

// testWatchCatchUp watches from far behind (etcd sends a lagging watcher its
// backlog in chunks of 1000 revisions) and checks that no batch claims a Rev
// beyond what it delivered.
func testWatchCatchUp(t *testing.T, s store.Store, p string) {
	const n, workers = 1300, 8
	first := mustPut(t, s, p+"first", "x")
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if _, err := store.Put(bg(t), s, fmt.Sprintf("%sk%04d", p, i), []byte("v")); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	last := mustPut(t, s, p+"last", "x")
	ctx, cancel := context.WithCancel(bg(t))
	defer cancel()
	evs := collect(t, s.Watch(ctx, p, first), last)
	if len(evs) != n+2 {
		t.Fatalf("got %d events, want %d", len(evs), n+2)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].KV.ModRev <= evs[i-1].KV.ModRev {
			t.Fatalf("events %d and %d at revs %d, %d", i-1, i, evs[i-1].KV.ModRev, evs[i].KV.ModRev)
		}
	}
}

func testWatchCancel(t *testing.T, s store.Store, p string) {
	ctx, cancel := context.WithCancel(bg(t))
	ch := s.Watch(ctx, p, 0)
	r := mustPut(t, s, p+"k", "v")
	collect(t, ch, r)
	cancel()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				goto closed
			}
			if resp.Err != nil {
				t.Fatalf("watch ended by its context reported %v", resp.Err)
			}
		case <-timer.C:
			t.Fatal("watch channel not closed after its context was canceled")
		}
	}
closed:
	// A watch whose context has already ended closes without events.
	ch = s.Watch(ctx, p, 1)
	timer.Reset(waitTimeout)
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				return
			}
			if resp.Err != nil || len(resp.Events) > 0 {
				t.Fatalf("watch with a canceled context delivered %+v", resp)
			}
		case <-timer.C:
			t.Fatal("watch with a canceled context not closed")
		}
	}
}

func testWatchCompacted(t *testing.T, s store.Store, p string) {
	c, ok := s.(Compactor)
	if !ok {
		t.Skip("store does not implement storetest.Compactor")
	}
	ctx, cancel := context.WithCancel(bg(t))
	defer cancel()
	r1 := mustPut(t, s, p+"k", "1")
	mustPut(t, s, p+"k", "2")
	r3 := mustPut(t, s, p+"k", "3")
	if err := c.Compact(ctx, r3); err != nil {
		t.Fatalf("Compact(%d): %v", r3, err)
	}
	if err := c.Compact(ctx, r3); err != nil {
		t.Fatalf("Compact(%d) again: %v", r3, err)
	}
	ch := s.Watch(ctx, p, r1)
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	sawErr := false
	for done := false; !done; {
		select {
		case r, ok := <-ch:
			switch {
			case !ok:
				done = true
			case errors.Is(r.Err, store.ErrCompacted) && !sawErr:
				sawErr = true
			default:
				t.Fatalf("watch from compacted rev %d delivered %+v", r1, r)
			}
		case <-timer.C:
			t.Fatalf("watch from compacted rev %d: channel not closed (ErrCompacted seen: %v)", r1, sawErr)
		}
	}
	if !sawErr {
		t.Fatalf("watch from compacted rev %d closed without ErrCompacted", r1)
	}
	// The state itself survives compaction, and watching after it works.
	wantValue(t, s, p+"k", "3")
	r4 := mustPut(t, s, p+"k", "4")
	got := summarize(collect(t, s.Watch(ctx, p, r3+1), r4))
	if want := []evSummary{{store.EventPut, p + "k", "4", r4}}; !slices.Equal(got, want) {
		t.Fatalf("watch after compaction:\n got %+v\nwant %+v", got, want)
	}
}
