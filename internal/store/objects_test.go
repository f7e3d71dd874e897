package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/store"
	"github.com/nimbo-cloud/nimbo/internal/store/etcdstore"
)

type thing struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

func TestObjects(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, etcdstore.Embedded{Dir: t.TempDir(), UnsafeNoFsync: true})
	c := newCache(t, s, "/o/")

	if err := c.Commit(ctx, store.Txn{}); err != nil {
		t.Fatalf("empty commit: %v", err)
	}
	if err := c.Commit(ctx, store.Txn{Ops: []store.Op{store.PutJSON("/o/a", thing{Name: "a"}), {Kind: store.OpPut, Key: "/o/bad", Value: []byte("{")}}}); err != nil {
		t.Fatal(err)
	}
	// Read-your-write: no waiting needed after Commit.
	got, rev, ok := store.GetJSON[thing](c, "/o/a")
	if !ok || got.Name != "a" || rev == 0 {
		t.Fatalf("GetJSON = %+v %d %v", got, rev, ok)
	}
	if _, _, ok := store.GetJSON[thing](c, "/o/bad"); ok {
		t.Fatal("an undecodable value was reported present")
	}
	if all := store.ListJSON[thing](c, "/o/"); len(all) != 1 {
		t.Fatalf("ListJSON = %+v, want only the decodable object", all)
	}

	// Update rebuilds after losing a race, and gives up on persistent errors.
	builds := 0
	err := c.Update(ctx, func() (store.Txn, error) {
		builds++
		cur, rev, _ := store.GetJSON[thing](c, "/o/a")
		if builds == 1 { // someone else writes between our read and our commit
			if _, err := store.Put(ctx, s, "/o/a", []byte(`{"name":"a","count":10}`)); err != nil {
				t.Fatal(err)
			}
		}
		cur.Count++
		return store.Txn{Conds: []store.Cond{{Key: "/o/a", Kind: store.CondModRev, Rev: rev}}, Ops: []store.Op{store.PutJSON("/o/a", cur)}}, nil
	})
	if err != nil || builds != 2 {
		t.Fatalf("Update: err %v after %d builds, want success on the 2nd", err, builds)
	}
	if got, _, _ := store.GetJSON[thing](c, "/o/a"); got.Count != 11 {
		t.Fatalf("count = %d, want 11 (the concurrent write kept)", got.Count)
	}
	err = c.Update(ctx, func() (store.Txn, error) {
		return store.Txn{Conds: []store.Cond{{Key: "/o/a", Kind: store.CondAbsent}}, Ops: []store.Op{store.PutJSON("/o/a", thing{})}}, nil
	})
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("Update that can never succeed: %v, want a conflict", err)
	}
}

func TestMemo(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, etcdstore.Embedded{Dir: t.TempDir(), UnsafeNoFsync: true})
	c := newCache(t, s, "/m/")
	m := store.NewMemo[thing](c)
	if err := c.Commit(ctx, store.Txn{Ops: []store.Op{store.PutJSON("/m/a", thing{Name: "a"}), store.PutJSON("/m/b", thing{Name: "b"})}}); err != nil {
		t.Fatal(err)
	}
	if all := m.List("/m/"); len(all) != 2 || all[0].Name != "a" {
		t.Fatalf("List = %+v", all)
	}
	// A changed object is decoded again; a deleted one disappears.
	if err := c.Commit(ctx, store.Txn{Ops: []store.Op{store.PutJSON("/m/a", thing{Name: "a", Count: 7}), {Kind: store.OpDelete, Key: "/m/b"}}}); err != nil {
		t.Fatal(err)
	}
	all := m.List("/m/")
	if len(all) != 1 || all[0].Count != 7 {
		t.Fatalf("after changes: %+v", all)
	}
	if v, ok := m.Get("/m/a"); !ok || v.Count != 7 {
		t.Fatalf("Get = %+v %v", v, ok)
	}
	if _, ok := m.Get("/m/b"); ok {
		t.Fatal("a deleted object is still there")
	}
	// Versions: the same revision until the object changes.
	v1 := m.ListVersioned("/m/")
	if len(v1) != 1 || v1[0].Value.Count != 7 || v1[0].Rev == 0 {
		t.Fatalf("ListVersioned = %+v", v1)
	}
	if v := m.ListVersioned("/m/"); v[0].Rev != v1[0].Rev {
		t.Fatalf("revision moved without a change: %d, then %d", v1[0].Rev, v[0].Rev)
	}
	if err := c.Commit(ctx, store.Txn{Ops: []store.Op{store.PutJSON("/m/a", thing{Name: "a", Count: 8})}}); err != nil {
		t.Fatal(err)
	}
	if v := m.ListVersioned("/m/"); v[0].Rev <= v1[0].Rev || v[0].Value.Count != 8 {
		t.Fatalf("after a change: %+v (before %+v)", v, v1)
	}
}
