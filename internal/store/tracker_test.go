package store_test

import (
	"slices"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/store"
	"github.com/nimbo-cloud/nimbo/internal/store/etcdstore"
)

func TestTrackerTakesChangedKeys(t *testing.T) {
	s := openStore(t, etcdstore.Embedded{})
	put(t, s, "/x/a/1", "v")
	c := newCache(t, s, "/x/")
	tr := c.Track("/x/a/")
	if keys, reset := tr.Take(); !reset || keys != nil {
		t.Fatalf("first Take = %v, %v; want a reset", keys, reset)
	}
	if keys, reset := tr.Take(); reset || keys != nil {
		t.Fatalf("Take with no change = %v, %v", keys, reset)
	}
	ctx := ctxT(t)
	put(t, s, "/x/a/2", "v")
	put(t, s, "/x/b/1", "v") // outside the tracked prefix
	put(t, s, "/x/a/2", "w") // the same key twice: reported once
	if _, err := s.Txn(ctx, store.Txn{Ops: []store.Op{{Kind: store.OpDelete, Key: "/x/a/1"}}}); err != nil {
		t.Fatal(err)
	}
	rev := put(t, s, "/x/b/2", "v")
	if err := c.WaitRev(ctx, rev); err != nil {
		t.Fatal(err)
	}
	keys, reset := tr.Take()
	slices.Sort(keys)
	if reset || !slices.Equal(keys, []string{"/x/a/1", "/x/a/2"}) {
		t.Fatalf("Take = %v, %v; want [/x/a/1 /x/a/2]", keys, reset)
	}
	// A taken key's change is visible in the cache.
	if kv, ok := c.Get("/x/a/2"); !ok || string(kv.Value) != "w" {
		t.Fatalf("cache has %q, %v", kv.Value, ok)
	}
	c.Untrack(tr)
	rev = put(t, s, "/x/a/3", "v")
	if err := c.WaitRev(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if keys, reset := tr.Take(); reset || keys != nil {
		t.Fatalf("an untracked tracker got %v, %v", keys, reset)
	}
}
