// Package identity is nimbo's identity service (the domain layer behind the
// Keystone v3 API): domains, projects, users, roles and their assignments,
// application credentials, the service catalog, and tokens. It validates input,
// enforces uniqueness and referential rules with store transactions, and keeps
// an in-memory, watch-fed copy of its keyspace (store.Cache) so token
// validation — the check every API call makes — never waits on etcd.
// Authorisation (policy) is the caller's job: see internal/policy.
package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// DefaultTokenTTL is how long an issued token lives (Keystone's default).
const DefaultTokenTTL = time.Hour

// DefaultDomainID is the ID of the "Default" domain, as in Keystone.
const DefaultDomainID = "default"

// Options tunes a Service.
type Options struct {
	// TokenTTL is the lifetime of issued tokens (DefaultTokenTTL if zero).
	TokenTTL time.Duration
	// Now is the clock (time.Now if nil); tests inject a fake one.
	Now func() time.Time
	// Logger receives the service's logs (slog.Default if nil).
	Logger *slog.Logger
}

// Service is the identity service.
type Service struct {
	st     store.Store
	cache  *store.Cache
	ttl    time.Duration
	now    func() time.Time
	log    *slog.Logger
	sealer *sealer
	hashes chan struct{} // bounds concurrent password KDF runs (memory)
}

// New starts the identity service on st: it loads its keyspace into memory,
// keeps it current by watching, and makes sure token keys exist.
func New(ctx context.Context, st store.Store, o Options) (*Service, error) {
	if o.TokenTTL <= 0 {
		o.TokenTTL = DefaultTokenTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c, err := store.NewCache(ctx, st, prefix)
	if err != nil {
		return nil, fmt.Errorf("identity: loading state: %w", err)
	}
	s := &Service{st: st, cache: c, ttl: o.TokenTTL, now: o.Now, log: o.Logger,
		hashes: make(chan struct{}, max(1, runtime.NumCPU()))}
	if s.sealer, err = s.loadTokenKeys(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// Close stops the service's watch.
func (s *Service) Close() { s.cache.Close() }

// commit applies t and waits until the in-memory copy reflects it, so that a
// caller's next read sees its own write.
func (s *Service) commit(ctx context.Context, t store.Txn) error {
	if len(t.Ops) == 0 {
		return nil // nothing to write (and no revision to wait for)
	}
	rev, err := s.st.Txn(ctx, t)
	if err != nil {
		return err
	}
	return s.cache.WaitRev(ctx, rev)
}

// maxOps is how many operations one transaction carries at most (etcd's
// default limit is 128).
const maxOps = 100

// sweep applies deletions of dependent objects in transactions of at most
// maxOps. They are idempotent: if one fails, the orphans it leaves are
// ignored by every read and removed by the next sweep (collectGarbage).
func (s *Service) sweep(ctx context.Context, ops []store.Op) error {
	for len(ops) > 0 {
		n := min(len(ops), maxOps)
		if err := s.commit(ctx, store.Txn{Ops: ops[:n]}); err != nil {
			return err
		}
		ops = ops[n:]
	}
	return nil
}

// get decodes one object from the in-memory copy.
func get[T any](s *Service, key string) (T, int64, bool) {
	var v T
	kv, ok := s.cache.Get(key)
	if !ok {
		return v, 0, false
	}
	if err := json.Unmarshal(kv.Value, &v); err != nil {
		s.log.Error("identity: corrupt object in store", "key", key, "err", err)
		return v, 0, false
	}
	return v, kv.ModRev, true
}

// list decodes every object under p from the in-memory copy, in key order.
func list[T any](s *Service, p string) []T {
	kvs := s.cache.List(p)
	out := make([]T, 0, len(kvs))
	for _, kv := range kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			s.log.Error("identity: corrupt object in store", "key", kv.Key, "err", err)
			continue
		}
		out = append(out, v)
	}
	return out
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain structs are marshalled here
	}
	return b
}

func put(key string, v any) store.Op {
	return store.Op{Kind: store.OpPut, Key: key, Value: mustJSON(v)}
}
func del(key string) store.Op       { return store.Op{Kind: store.OpDelete, Key: key} }
func absent(key string) store.Cond  { return store.Cond{Key: key, Kind: store.CondAbsent} }
func present(key string) store.Cond { return store.Cond{Key: key, Kind: store.CondPresent} }
func atRev(key string, rev int64) store.Cond {
	return store.Cond{Key: key, Kind: store.CondModRev, Rev: rev}
}

// retry runs an optimistic read-modify-write until it does not lose a race
// (a few times at most).
func (s *Service) retry(ctx context.Context, f func() (store.Txn, error)) error {
	var err error
	for range 8 {
		var t store.Txn
		if t, err = f(); err != nil {
			return err
		}
		if err = s.commit(ctx, t); !errors.Is(err, errdefs.ErrConflict) {
			return err
		}
		if err := s.cache.WaitRev(ctx, s.cache.Rev()); err != nil {
			return err
		}
	}
	return fmt.Errorf("identity: too much contention, try again: %w", err)
}
