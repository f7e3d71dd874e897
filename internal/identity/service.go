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
	"fmt"
	"log/slog"
	"runtime"
	"time"

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

// commit applies t and waits until the in-memory copy reflects it.
func (s *Service) commit(ctx context.Context, t store.Txn) error { return s.cache.Commit(ctx, t) }

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

func get[T any](s *Service, key string) (T, int64, bool) { return store.GetJSON[T](s.cache, key) }
func list[T any](s *Service, p string) []T               { return store.ListJSON[T](s.cache, p) }

func put(key string, v any) store.Op { return store.PutJSON(key, v) }

// mustJSON encodes a plain value (see store.PutJSON).
func mustJSON(v any) []byte         { return store.PutJSON("", v).Value }
func del(key string) store.Op       { return store.Op{Kind: store.OpDelete, Key: key} }
func absent(key string) store.Cond  { return store.Cond{Key: key, Kind: store.CondAbsent} }
func present(key string) store.Cond { return store.Cond{Key: key, Kind: store.CondPresent} }
func atRev(key string, rev int64) store.Cond {
	return store.Cond{Key: key, Kind: store.CondModRev, Rev: rev}
}

// retry runs an optimistic read-modify-write (see store.Cache.Update).
func (s *Service) retry(ctx context.Context, f func() (store.Txn, error)) error {
	return s.cache.Update(ctx, f)
}
