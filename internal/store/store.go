// Package store is nimbo's state store: a small interface over a revisioned,
// transactional, watchable key-value space, implemented on etcd (embedded single
// member by default, or an external cluster). Every implementation passes the
// conformance suite in internal/store/storetest.
//
// Keys are plain strings ("/nimbo/identity/users/<id>"); values are opaque bytes
// (JSON by convention). Every key carries the revision of its last change, which
// callers use for compare-and-swap.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrCompacted is returned on a watch asked to start at a revision the store
// has already compacted away; the caller must List again and re-watch.
var ErrCompacted = errors.New("store: revision compacted")

// ErrClosed is wrapped (together with errdefs.ErrUnavailable) by the errors of
// a Store or Cache used after Close.
var ErrClosed = errors.New("store: closed")

// KV is one key with its value and revisions.
type KV struct {
	Key       string
	Value     []byte
	CreateRev int64 // revision at which the key was created
	ModRev    int64 // revision of the last change; use it for compare-and-swap
}

// CondKind says what a Cond compares.
type CondKind int

// Condition kinds.
const (
	// CondAbsent holds when the key does not exist.
	CondAbsent CondKind = iota
	// CondPresent holds when the key exists.
	CondPresent
	// CondModRev holds when the key's ModRev equals Cond.Rev (0 means absent).
	CondModRev
)

// Cond is a precondition of a transaction.
type Cond struct {
	Key  string
	Kind CondKind
	Rev  int64
}

// OpKind says what an Op does.
type OpKind int

// Op kinds.
const (
	// OpPut writes Value at Key.
	OpPut OpKind = iota
	// OpDelete removes Key (no error if absent).
	OpDelete
	// OpDeletePrefix removes every key starting with Key.
	OpDeletePrefix
)

// Op is one write of a transaction.
type Op struct {
	Kind  OpKind
	Key   string
	Value []byte
	// TTL, when > 0 on a put, makes the key expire by itself after that long.
	// It is rounded up to whole seconds, and the store may enforce a minimum
	// (etcd: about 2s with default timings); expiry is a delete seen by watches.
	// Rewriting the key without a TTL makes it permanent again.
	TTL time.Duration
}

// Txn is an atomic, conditional batch of writes: when every Cond holds, all Ops
// are applied at one new revision; otherwise nothing is written and Txn returns
// an error wrapping errdefs.ErrConflict.
//
// Keys must not be empty, and no two Ops of one Txn may touch the same key
// (a put inside a deleted prefix counts): such a Txn, or one with more Ops than
// the store accepts (etcd: 128 by default), fails with errdefs.ErrInvalid.
type Txn struct {
	Conds []Cond
	Ops   []Op
}

// EventType is the kind of change a watch reports.
type EventType int

// Event types.
const (
	// EventPut is a create or an update.
	EventPut EventType = iota
	// EventDelete is a delete (Value is nil).
	EventDelete
)

// Event is one change seen by a watch. For EventDelete, KV holds only Key and
// ModRev (the revision of the delete).
type Event struct {
	Type EventType
	KV   KV
}

// WatchResponse is a batch of events in revision order, or a terminal error.
// A batch without Events and without Err is a progress notification: nothing
// changed under the watched prefix up to Rev.
type WatchResponse struct {
	Events []Event
	// Rev is the store revision this batch brings the watcher up to: every
	// change under the prefix at a revision <= Rev has been delivered. It never
	// decreases along one watch, and a watch resumed from Rev+1 misses nothing.
	Rev int64
	// Err, when set, ends the watch (ErrCompacted or a store failure).
	Err error
}

// Store is the state store.
type Store interface {
	// Get returns one key, or an error wrapping errdefs.ErrNotFound.
	//
	// Like every method, it returns an error wrapping errdefs.ErrUnavailable
	// when the store cannot be reached in time (or was closed, ErrClosed), and
	// one wrapping the context's error when ctx ends first.
	Get(ctx context.Context, key string) (KV, error)
	// List returns every key with the prefix, sorted by key, and the store
	// revision the listing was read at (the revision to watch from, plus one).
	// The listing is one consistent snapshot. An empty prefix lists everything.
	List(ctx context.Context, prefix string) ([]KV, int64, error)
	// Txn applies t atomically and returns the store revision after it: the
	// revision of its writes (unchanged when it wrote nothing, e.g. deleted an
	// absent key). When a condition fails it returns an error wrapping
	// errdefs.ErrConflict together with the revision the conditions were
	// checked at, so that a caller can wait for its view to catch up before
	// trying again.
	Txn(ctx context.Context, t Txn) (int64, error)
	// Watch reports changes under prefix from revision rev (inclusive; rev <= 0
	// means changes after the call) until ctx ends, which closes the channel,
	// or an error response (ErrCompacted when rev was compacted away, or a
	// store failure), after which the channel is closed. The caller must drain
	// the channel or cancel ctx.
	Watch(ctx context.Context, prefix string, rev int64) <-chan WatchResponse
	// Close releases the store's resources (and, for an embedded store, stops
	// it). Calls after the first return nil.
	Close() error
}

// Create writes key only if it does not exist yet (else errdefs.ErrConflict).
func Create(ctx context.Context, s Store, key string, value []byte) (int64, error) {
	return s.Txn(ctx, Txn{
		Conds: []Cond{{Key: key, Kind: CondAbsent}},
		Ops:   []Op{{Kind: OpPut, Key: key, Value: value}},
	})
}

// Put writes key unconditionally.
func Put(ctx context.Context, s Store, key string, value []byte) (int64, error) {
	return s.Txn(ctx, Txn{Ops: []Op{{Kind: OpPut, Key: key, Value: value}}})
}

// Update writes key only if its ModRev is still rev (else errdefs.ErrConflict).
func Update(ctx context.Context, s Store, key string, value []byte, rev int64) (int64, error) {
	return s.Txn(ctx, Txn{
		Conds: []Cond{{Key: key, Kind: CondModRev, Rev: rev}},
		Ops:   []Op{{Kind: OpPut, Key: key, Value: value}},
	})
}

// Delete removes key only if its ModRev is still rev (else errdefs.ErrConflict);
// rev 0 deletes unconditionally.
func Delete(ctx context.Context, s Store, key string, rev int64) (int64, error) {
	t := Txn{Ops: []Op{{Kind: OpDelete, Key: key}}}
	if rev != 0 {
		t.Conds = []Cond{{Key: key, Kind: CondModRev, Rev: rev}}
	}
	return s.Txn(ctx, t)
}
