package etcdstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/store"
	"github.com/nimbo-cloud/nimbo/internal/store/etcdstore"
)

// The benchmarks run against the embedded store with its default settings
// (fsync on), one request at a time: they measure latency.

func BenchmarkGet(b *testing.B) {
	s, _ := openEmbedded(b, etcdstore.Embedded{})
	ctx := context.Background()
	if _, err := store.Put(ctx, s, "/bench/k", make([]byte, 512)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get(ctx, "/bench/k"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkList100(b *testing.B) {
	s, _ := openEmbedded(b, etcdstore.Embedded{})
	ctx := context.Background()
	var txn store.Txn
	for i := range 100 {
		txn.Ops = append(txn.Ops, store.Op{Kind: store.OpPut, Key: fmt.Sprintf("/bench/k%03d", i), Value: make([]byte, 512)})
	}
	if _, err := s.Txn(ctx, txn); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if kvs, _, err := s.List(ctx, "/bench/"); err != nil || len(kvs) != 100 {
			b.Fatal(len(kvs), err)
		}
	}
}

// BenchmarkTxn is a compare-and-swap update of one 512-byte value.
func BenchmarkTxn(b *testing.B) {
	s, _ := openEmbedded(b, etcdstore.Embedded{})
	ctx := context.Background()
	rev, err := store.Put(ctx, s, "/bench/k", make([]byte, 512))
	if err != nil {
		b.Fatal(err)
	}
	v := make([]byte, 512)
	b.ReportAllocs()
	for b.Loop() {
		if rev, err = store.Update(ctx, s, "/bench/k", v, rev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTxnParallel is BenchmarkTxn from many goroutines on distinct
// keys: etcd batches their fsyncs.
func BenchmarkTxnParallel(b *testing.B) {
	s, _ := openEmbedded(b, etcdstore.Embedded{})
	ctx := context.Background()
	v := make([]byte, 512)
	var n int64
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		key := fmt.Sprintf("/bench/p%d", nextID(&n))
		for pb.Next() {
			if _, err := store.Put(ctx, s, key, v); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
