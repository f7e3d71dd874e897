// Package storetest is the conformance suite of store.Store: every
// implementation runs Run from its tests.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// Compactor is implemented by stores that can discard their history on demand.
// When the store under test implements it, Run checks that a watch from a
// compacted revision reports store.ErrCompacted.
type Compactor interface {
	// Compact discards the history before rev; the state at rev is kept.
	Compact(ctx context.Context, rev int64) error
}

// waitTimeout bounds every wait for a watch event or an expiry.
const waitTimeout = 15 * time.Second

// Run runs the conformance suite. newStore is called once per subtest and must
// return a new Store instance, which the suite closes at the end of the
// subtest; instances may share one backend (clients of one etcd), since every
// subtest works under its own key prefix, and subtests that compact the store
// run before the others, which run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	open := func(t *testing.T) (store.Store, string) {
		t.Helper()
		s := newStore(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s, "/storetest/" + strings.ReplaceAll(t.Name(), "/", "_") + "/"
	}
	serial := []struct {
		name string
		fn   func(*testing.T, store.Store, string)
	}{
		{"WatchCompacted", testWatchCompacted},
	}
	parallel := []struct {
		name string
		fn   func(*testing.T, store.Store, string)
	}{
		{"GetMissing", testGetMissing},
		{"CreateGetUpdate", testCreateGetUpdate},
		{"CondModRevZero", testCondModRevZero},
		{"Put", testPut},
		{"Delete", testDelete},
		{"DeletePrefix", testDeletePrefix},
		{"TxnAtomic", testTxnAtomic},
		{"TxnInvalid", testTxnInvalid},
		{"RevisionsIncrease", testRevisionsIncrease},
		{"List", testList},
		{"ListLarge", testListLarge},
		{"Watch", testWatch},
		{"WatchFromPast", testWatchFromPast},
		{"WatchFromNow", testWatchFromNow},
		{"WatchCancel", testWatchCancel},
		{"WatchCatchUp", testWatchCatchUp},
		{"TTL", testTTL},
		{"ConcurrentCreate", testConcurrentCreate},
		{"ConcurrentUpdate", testConcurrentUpdate},
		{"ContextCanceled", testContextCanceled},
	}
	for _, tc := range serial {
		t.Run(tc.name, func(t *testing.T) {
			s, p := open(t)
			tc.fn(t, s, p)
		})
	}
	for _, tc := range parallel {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, p := open(t)
			tc.fn(t, s, p)
		})
	}
	t.Run("Close", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		ctx := context.Background()
		if _, err := s.Get(ctx, "/storetest/closed"); !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("Get after Close: %v, want ErrUnavailable", err)
		}
		if _, err := store.Put(ctx, s, "/storetest/closed", []byte("x")); !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("Put after Close: %v, want ErrUnavailable", err)
		}
		if _, _, err := s.List(ctx, "/storetest/"); !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("List after Close: %v, want ErrUnavailable", err)
		}
		wctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		for r := range s.Watch(wctx, "/storetest/", 1) {
			if r.Err == nil {
				t.Errorf("Watch after Close delivered %+v", r)
			}
		}
		if wctx.Err() != nil {
			t.Errorf("Watch after Close: channel not closed")
		}
	})
}

func bg(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func mustTxn(t *testing.T, s store.Store, txn store.Txn) int64 {
	t.Helper()
	rev, err := s.Txn(bg(t), txn)
	if err != nil {
		t.Fatalf("Txn(%+v): %v", txn, err)
	}
	if rev <= 0 {
		t.Fatalf("Txn(%+v) returned revision %d", txn, rev)
	}
	return rev
}

func mustPut(t *testing.T, s store.Store, key, value string) int64 {
	t.Helper()
	rev, err := store.Put(bg(t), s, key, []byte(value))
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return rev
}

func mustGet(t *testing.T, s store.Store, key string) store.KV {
	t.Helper()
	kv, err := s.Get(bg(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if kv.Key != key {
		t.Fatalf("Get(%q) returned key %q", key, kv.Key)
	}
	return kv
}

func mustAbsent(t *testing.T, s store.Store, key string) {
	t.Helper()
	kv, err := s.Get(bg(t), key)
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Get(%q) = %+v, %v; want ErrNotFound", key, kv, err)
	}
}

func wantValue(t *testing.T, s store.Store, key, value string) store.KV {
	t.Helper()
	kv := mustGet(t, s, key)
	if string(kv.Value) != value {
		t.Fatalf("Get(%q) value = %q, want %q", key, kv.Value, value)
	}
	return kv
}

func wantConflict(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("%s: err = %v, want ErrConflict", what, err)
	}
}

func testGetMissing(t *testing.T, s store.Store, p string) {
	mustAbsent(t, s, p+"missing")
	mustPut(t, s, p+"missing-not", "x")
	mustAbsent(t, s, p+"missing") // a longer key is no match
	mustAbsent(t, s, p+"missing-no")
}

func testCreateGetUpdate(t *testing.T, s store.Store, p string) {
	ctx := bg(t)
	k := p + "k"
	r1, err := store.Create(ctx, s, k, []byte("v1"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	kv := wantValue(t, s, k, "v1")
	if kv.CreateRev != r1 || kv.ModRev != r1 {
		t.Fatalf("after Create at %d: CreateRev=%d ModRev=%d", r1, kv.CreateRev, kv.ModRev)
	}
	_, err = store.Create(ctx, s, k, []byte("v2"))
	wantConflict(t, "second Create", err)
	wantValue(t, s, k, "v1")

	r2, err := store.Update(ctx, s, k, []byte("v2"), r1)
	if err != nil {
		t.Fatalf("Update at current rev: %v", err)
	}
	if r2 <= r1 {
		t.Fatalf("Update returned rev %d <= %d", r2, r1)
	}
	kv = wantValue(t, s, k, "v2")
	if kv.CreateRev != r1 || kv.ModRev != r2 {
		t.Fatalf("after Update: CreateRev=%d ModRev=%d, want %d %d", kv.CreateRev, kv.ModRev, r1, r2)
	}
	crev, err := store.Update(ctx, s, k, []byte("v3"), r1)
	wantConflict(t, "Update at stale rev", err)
	if crev < r2 {
		t.Fatalf("a failed Txn returned rev %d, want the revision its conditions were checked at (>= %d, the winning write)", crev, r2)
	}
	wantValue(t, s, k, "v2")

	_, err = store.Update(ctx, s, p+"absent", []byte("x"), r2)
	wantConflict(t, "Update of an absent key", err)
	mustAbsent(t, s, p+"absent")
}

func testCondModRevZero(t *testing.T, s store.Store, p string) {
	ctx := bg(t)
	k := p + "k"
	// ModRev 0 means absent: Update with rev 0 creates...
	rev, err := store.Update(ctx, s, k, []byte("v1"), 0)
	if err != nil {
		t.Fatalf("Update(rev 0) of an absent key: %v", err)
	}
	kv := wantValue(t, s, k, "v1")
	if kv.CreateRev != rev {
		t.Fatalf("CreateRev = %d, want %d", kv.CreateRev, rev)
	}
	// ...but fails once the key exists.
	_, err = store.Update(ctx, s, k, []byte("v2"), 0)
	wantConflict(t, "Update(rev 0) of a present key", err)
	wantValue(t, s, k, "v1")

	_, err = s.Txn(ctx, store.Txn{
		Conds: []store.Cond{{Key: k, Kind: store.CondPresent}},
		Ops:   []store.Op{{Kind: store.OpPut, Key: k, Value: []byte("v3")}},
	})
	if err != nil {
		t.Fatalf("CondPresent on a present key: %v", err)
	}
	wantValue(t, s, k, "v3")
	_, err = s.Txn(ctx, store.Txn{
		Conds: []store.Cond{{Key: p + "absent", Kind: store.CondPresent}},
		Ops:   []store.Op{{Kind: store.OpPut, Key: k, Value: []byte("v4")}},
	})
	wantConflict(t, "CondPresent on an absent key", err)
	wantValue(t, s, k, "v3")
	_, err = s.Txn(ctx, store.Txn{
		Conds: []store.Cond{{Key: k, Kind: store.CondAbsent}},
		Ops:   []store.Op{{Kind: store.OpPut, Key: p + "other", Value: []byte("v")}},
	})
	wantConflict(t, "CondAbsent on a present key", err)
	mustAbsent(t, s, p+"other")
}

func testPut(t *testing.T, s store.Store, p string) {
	k := p + "k"
	r1 := mustPut(t, s, k, "a")
	r2 := mustPut(t, s, k, "b")
	if r2 <= r1 {
		t.Fatalf("second Put rev %d <= %d", r2, r1)
	}
	kv := wantValue(t, s, k, "b")
	if kv.CreateRev != r1 || kv.ModRev != r2 {
		t.Fatalf("CreateRev=%d ModRev=%d, want %d %d", kv.CreateRev, kv.ModRev, r1, r2)
	}
	mustPut(t, s, k, "")
	if kv := mustGet(t, s, k); len(kv.Value) != 0 {
		t.Fatalf("empty value read back as %q", kv.Value)
	}
	bin := string([]byte{0, 1, 2, 255, '\n'})
	mustPut(t, s, k, bin)
	wantValue(t, s, k, bin)
}

func testDelete(t *testing.T, s store.Store, p string) {
	ctx := bg(t)
	k := p + "k"
	r1 := mustPut(t, s, k, "v")
	r2 := mustPut(t, s, k, "w")
	_, err := store.Delete(ctx, s, k, r1)
	wantConflict(t, "Delete at stale rev", err)
	wantValue(t, s, k, "w")
	_, err = store.Delete(ctx, s, p+"absent", r1)
	wantConflict(t, "conditional Delete of an absent key", err)

	r3, err := store.Delete(ctx, s, k, r2)
	if err != nil {
		t.Fatalf("Delete at current rev: %v", err)
	}
	if r3 <= r2 {
		t.Fatalf("Delete rev %d <= %d", r3, r2)
	}
	mustAbsent(t, s, k)

	mustPut(t, s, k, "again")
	if _, err := store.Delete(ctx, s, k, 0); err != nil {
		t.Fatalf("unconditional Delete: %v", err)
	}
	mustAbsent(t, s, k)
	if _, err := store.Delete(ctx, s, k, 0); err != nil {
		t.Fatalf("unconditional Delete of an absent key: %v", err)
	}
	// A re-created key starts a new life.
	r4 := mustPut(t, s, k, "new")
	if kv := mustGet(t, s, k); kv.CreateRev != r4 {
		t.Fatalf("re-created key CreateRev = %d, want %d", kv.CreateRev, r4)
	}
}

func testDeletePrefix(t *testing.T, s store.Store, p string) {
	keys := []string{p + "a/1", p + "a/2", p + "a/2/x", p + "ab", p + "b", p + "a"}
	for _, k := range keys {
		mustPut(t, s, k, k)
	}
	rev := mustTxn(t, s, store.Txn{Ops: []store.Op{{Kind: store.OpDeletePrefix, Key: p + "a/"}}})
	for _, k := range keys[:3] {
		mustAbsent(t, s, k)
	}
	for _, k := range keys[3:] {
		wantValue(t, s, k, k)
	}
	kvs, lrev, err := s.List(bg(t), p)
	if err != nil {
		t.Fatal(err)
	}
	if lrev < rev {
		t.Fatalf("List rev %d < delete rev %d", lrev, rev)
	}
	if got := keysOf(kvs); !slices.Equal(got, []string{p + "a", p + "ab", p + "b"}) {
		t.Fatalf("after DeletePrefix: %q", got)
	}
	// Deleting an empty prefix range is fine.
	mustTxn(t, s, store.Txn{Ops: []store.Op{{Kind: store.OpDeletePrefix, Key: p + "nothing/"}}})
}

func testTxnAtomic(t *testing.T, s store.Store, p string) {
	ctx := bg(t)
	present := p + "present"
	r0 := mustPut(t, s, present, "p")
	mustPut(t, s, p+"doomed", "d")

	// One failing condition among holding ones: nothing is written.
	_, err := s.Txn(ctx, store.Txn{
		Conds: []store.Cond{
			{Key: p + "new1", Kind: store.CondAbsent},
			{Key: present, Kind: store.CondModRev, Rev: r0},
			{Key: p + "nope", Kind: store.CondPresent},
		},
		Ops: []store.Op{
			{Kind: store.OpPut, Key: p + "new1", Value: []byte("1")},
			{Kind: store.OpPut, Key: present, Value: []byte("changed")},
			{Kind: store.OpDelete, Key: p + "doomed"},
		},
	})
	wantConflict(t, "Txn with a failing condition", err)
	mustAbsent(t, s, p+"new1")
	wantValue(t, s, present, "p")
	wantValue(t, s, p+"doomed", "d")

	// All conditions hold: every op applies at one revision.
	rev := mustTxn(t, s, store.Txn{
		Conds: []store.Cond{
			{Key: p + "new1", Kind: store.CondAbsent},
			{Key: present, Kind: store.CondModRev, Rev: r0},
			{Key: present, Kind: store.CondPresent},
		},
		Ops: []store.Op{
			{Kind: store.OpPut, Key: p + "new1", Value: []byte("1")},
			{Kind: store.OpPut, Key: p + "new2", Value: []byte("2")},
			{Kind: store.OpPut, Key: present, Value: []byte("changed")},
			{Kind: store.OpDelete, Key: p + "doomed"},
		},
	})
	for k, v := range map[string]string{p + "new1": "1", p + "new2": "2", present: "changed"} {
		if kv := wantValue(t, s, k, v); kv.ModRev != rev {
			t.Fatalf("%s ModRev = %d, want the txn's revision %d", k, kv.ModRev, rev)
		}
	}
	mustAbsent(t, s, p+"doomed")

	// A txn with conditions only writes nothing and reports the outcome.
	if _, err := s.Txn(ctx, store.Txn{Conds: []store.Cond{{Key: present, Kind: store.CondModRev, Rev: rev}}}); err != nil {
		t.Fatalf("condition-only Txn that holds: %v", err)
	}
	_, err = s.Txn(ctx, store.Txn{Conds: []store.Cond{{Key: present, Kind: store.CondModRev, Rev: r0}}})
	wantConflict(t, "condition-only Txn that fails", err)
}

func testTxnInvalid(t *testing.T, s store.Store, p string) {
	ctx := bg(t)
	for name, txn := range map[string]store.Txn{
		"empty put key":       {Ops: []store.Op{{Kind: store.OpPut, Key: "", Value: []byte("x")}, {Kind: store.OpPut, Key: p + "a", Value: []byte("x")}}},
		"empty delete prefix": {Ops: []store.Op{{Kind: store.OpDeletePrefix, Key: ""}, {Kind: store.OpPut, Key: p + "a", Value: []byte("x")}}},
		"empty cond key":      {Conds: []store.Cond{{Key: "", Kind: store.CondAbsent}}, Ops: []store.Op{{Kind: store.OpPut, Key: p + "a", Value: []byte("x")}}},
		"unknown op kind":     {Ops: []store.Op{{Kind: store.OpKind(99), Key: p + "b"}, {Kind: store.OpPut, Key: p + "a", Value: []byte("x")}}},
		"unknown cond kind":   {Conds: []store.Cond{{Key: p + "a", Kind: store.CondKind(99)}}, Ops: []store.Op{{Kind: store.OpPut, Key: p + "a", Value: []byte("x")}}},
		"same key twice":      {Ops: []store.Op{{Kind: store.OpPut, Key: p + "a", Value: []byte("x")}, {Kind: store.OpPut, Key: p + "a", Value: []byte("y")}}},
		"put in deleted prefix": {Ops: []store.Op{
			{Kind: store.OpDeletePrefix, Key: p},
			{Kind: store.OpPut, Key: p + "a", Value: []byte("x")},
		}},
	} {
		_, err := s.Txn(ctx, txn)
		if !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	mustAbsent(t, s, p+"a")
	if _, err := s.Get(ctx, ""); !errors.Is(err, errdefs.ErrInvalid) && !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get(\"\"): err = %v, want ErrInvalid or ErrNotFound", err)
	}
}

func testRevisionsIncrease(t *testing.T, s store.Store, p string) {
	var last int64
	for i := range 20 {
		rev := mustPut(t, s, p+strconv.Itoa(i%3), "v")
		if rev <= last {
			t.Fatalf("write %d: rev %d after %d", i, rev, last)
		}
		last = rev
	}
	_, lrev, err := s.List(bg(t), p)
	if err != nil {
		t.Fatal(err)
	}
	if lrev < last {
		t.Fatalf("List rev %d < last write rev %d", lrev, last)
	}
}

func keysOf(kvs []store.KV) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Key
	}
	return out
}

func testList(t *testing.T, s store.Store, p string) {
	ctx := bg(t)
	kvs, rev0, err := s.List(ctx, p)
	if err != nil || len(kvs) != 0 || rev0 <= 0 {
		t.Fatalf("List of an empty prefix = %v, %d, %v", kvs, rev0, err)
	}
	want := []string{p + "a", p + "a/b", p + "a/c", p + "b", p + "b\x00", p + "z", p + "é"}
	order := slices.Clone(want)
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	revs := map[string]int64{}
	var last int64
	for _, k := range order {
		last = mustPut(t, s, k, "v:"+k)
		revs[k] = last
	}
	// Keys just outside the prefix.
	outside := strings.TrimSuffix(p, "/")
	mustPut(t, s, outside, "out")
	mustPut(t, s, outside+"0", "out")
	mustPut(t, s, outside+".", "out")

	kvs, rev, err := s.List(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(kvs); !slices.Equal(got, want) {
		t.Fatalf("List keys = %q, want %q", got, want)
	}
	if rev < last {
		t.Fatalf("List rev %d < last write %d", rev, last)
	}
	for _, kv := range kvs {
		if string(kv.Value) != "v:"+kv.Key || kv.ModRev != revs[kv.Key] || kv.CreateRev != revs[kv.Key] {
			t.Fatalf("List entry %+v, want value %q at rev %d", kv, "v:"+kv.Key, revs[kv.Key])
		}
	}
	kvs, _, err = s.List(ctx, p+"a/")
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(kvs); !slices.Equal(got, []string{p + "a/b", p + "a/c"}) {
		t.Fatalf("List(a/) = %q", got)
	}
	// The empty prefix lists everything, sorted.
	kvs, _, err = s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	all := keysOf(kvs)
	if !slices.IsSorted(all) {
		t.Fatalf("List(\"\") is not sorted")
	}
	for _, k := range append(want, outside) {
		if _, ok := slices.BinarySearch(all, k); !ok {
			t.Fatalf("List(\"\") misses %q", k)
		}
	}
}

func testListLarge(t *testing.T, s store.Store, p string) {
	const n = 5000 // several pages for a paging implementation
	key := func(i int) string { return fmt.Sprintf("%sk%05d", p, i) }
	var last int64
	for i := 0; i < n; i += 100 {
		var txn store.Txn
		for j := i; j < i+100 && j < n; j++ {
			txn.Ops = append(txn.Ops, store.Op{Kind: store.OpPut, Key: key(j), Value: []byte(strconv.Itoa(j))})
		}
		last = mustTxn(t, s, txn)
	}
	// A concurrent writer, updating keys from the end (the last pages), must
	// not tear the snapshot.
	var (
		stop   = make(chan struct{})
		wg     sync.WaitGroup
		writes atomic.Int64
	)
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := store.Put(context.Background(), s, key(n-1-i%n), []byte("changed")); err != nil {
				return
			}
			writes.Add(1)
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for writes.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	for range 5 {
		kvs, rev, err := s.List(bg(t), p)
		if err != nil {
			t.Fatal(err)
		}
		if len(kvs) != n || rev < last {
			t.Fatalf("List returned %d keys at rev %d, want %d at >= %d", len(kvs), rev, n, last)
		}
		for i, kv := range kvs {
			if kv.Key != key(i) {
				t.Fatalf("entry %d is %q", i, kv.Key)
			}
			if kv.ModRev > rev {
				t.Fatalf("entry %q has ModRev %d after the listing's rev %d: not one snapshot", kv.Key, kv.ModRev, rev)
			}
		}
	}
}

func testTTL(t *testing.T, s store.Store, p string) {
	ctx, cancel := context.WithCancel(bg(t))
	defer cancel()
	rev := mustTxn(t, s, store.Txn{Ops: []store.Op{
		{Kind: store.OpPut, Key: p + "short", Value: []byte("s"), TTL: time.Second},
		{Kind: store.OpPut, Key: p + "short2", Value: []byte("s"), TTL: 1500 * time.Millisecond},
		{Kind: store.OpPut, Key: p + "long", Value: []byte("l"), TTL: time.Hour},
		{Kind: store.OpPut, Key: p + "forever", Value: []byte("f")},
	}})
	ch := s.Watch(ctx, p, rev+1)
	wantValue(t, s, p+"short", "s")
	// A TTL key rewritten without TTL becomes permanent.
	mustTxn(t, s, store.Txn{Ops: []store.Op{{Kind: store.OpPut, Key: p + "kept", Value: []byte("k"), TTL: time.Second}}})
	mustPut(t, s, p+"kept", "k2")

	deadline := time.Now().Add(waitTimeout)
	for {
		_, err1 := s.Get(ctx, p+"short")
		_, err2 := s.Get(ctx, p+"short2")
		if errors.Is(err1, errdefs.ErrNotFound) && errors.Is(err2, errdefs.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TTL keys still there after %v: %v, %v", waitTimeout, err1, err2)
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantValue(t, s, p+"long", "l")
	wantValue(t, s, p+"forever", "f")
	wantValue(t, s, p+"kept", "k2")
	// The expiry is seen by watches as deletes.
	seen := map[string]bool{}
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for !seen[p+"short"] || !seen[p+"short2"] {
		select {
		case r, ok := <-ch:
			if !ok || r.Err != nil {
				t.Fatalf("watch ended: %v", r.Err)
			}
			for _, ev := range r.Events {
				if ev.Type == store.EventDelete {
					seen[ev.KV.Key] = true
				}
			}
		case <-timer.C:
			t.Fatalf("no delete events for expired keys (seen %v)", seen)
		}
	}
	if seen[p+"kept"] || seen[p+"long"] {
		t.Fatalf("unexpected deletes: %v", seen)
	}
}

func testConcurrentCreate(t *testing.T, s store.Store, p string) {
	const n = 16
	k := p + "contended"
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		errs    [n]error
		revs    [n]int64
		ctx     = bg(t)
		winners []int
	)
	for i := range n {
		wg.Go(func() {
			<-start
			revs[i], errs[i] = store.Create(ctx, s, k, []byte(strconv.Itoa(i)))
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		switch {
		case err == nil:
			winners = append(winners, i)
		case errors.Is(err, errdefs.ErrConflict):
		default:
			t.Fatalf("Create %d: %v", i, err)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d creates succeeded (%v), want exactly 1", len(winners), winners)
	}
	kv := wantValue(t, s, k, strconv.Itoa(winners[0]))
	if kv.CreateRev != revs[winners[0]] {
		t.Fatalf("CreateRev %d, winner's rev %d", kv.CreateRev, revs[winners[0]])
	}
}

func testConcurrentUpdate(t *testing.T, s store.Store, p string) {
	const workers, incs = 8, 10
	k := p + "counter"
	mustPut(t, s, k, "0")
	ctx := bg(t)
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for done := 0; done < incs; {
				kv, err := s.Get(ctx, k)
				if err != nil {
					errc <- err
					return
				}
				n, _ := strconv.Atoi(string(kv.Value))
				_, err = store.Update(ctx, s, k, []byte(strconv.Itoa(n+1)), kv.ModRev)
				switch {
				case err == nil:
					done++
				case errors.Is(err, errdefs.ErrConflict):
				default:
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
	wantValue(t, s, k, strconv.Itoa(workers*incs))
}

func testContextCanceled(t *testing.T, s store.Store, p string) {
	k := p + "k"
	mustPut(t, s, k, "v")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(ctx, k); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a canceled context: %v", err)
	}
	if _, _, err := s.List(ctx, p); !errors.Is(err, context.Canceled) {
		t.Errorf("List with a canceled context: %v", err)
	}
	if _, err := store.Put(ctx, s, p+"never", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a canceled context: %v", err)
	}
	if _, err := store.Create(ctx, s, p+"never", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Create with a canceled context: %v", err)
	}
	dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer dcancel()
	if _, err := s.Get(dctx, k); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get with an expired deadline: %v", err)
	}
	if _, err := store.Put(dctx, s, p+"never", []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Put with an expired deadline: %v", err)
	}
	mustAbsent(t, s, p+"never")
	wantValue(t, s, k, "v")
}
