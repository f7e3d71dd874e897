// Package etcdstore implements store.Store on etcd's v3 API: either a
// single-member etcd embedded in the nimbo process (the default deployment) or
// an external etcd cluster.
//
// The embedded member listens on no TCP port at all: nimbo talks to it through
// an in-process client (etcd's v3client, plain function calls), it has no peer
// listener (a single member never dials peers), and it can optionally serve the
// etcd API on a unix socket for etcdctl (Embedded.ClientSocket).
package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// Defaults of Config.
const (
	// DefaultRequestTimeout bounds one Get, List or Txn.
	DefaultRequestTimeout = 5 * time.Second
	// DefaultDialTimeout bounds connecting to an external cluster.
	DefaultDialTimeout = 5 * time.Second
)

// listPageSize is the number of keys List reads per request.
const listPageSize = 1000

// Config selects and tunes the etcd behind a Store. Exactly one of Embedded and
// External must be set.
type Config struct {
	// Embedded runs a single-member etcd inside this process.
	Embedded *Embedded
	// External connects to an existing etcd cluster.
	External *External
	// RequestTimeout bounds each Get, List, Txn and Compact whose context has
	// no earlier deadline; 0 means DefaultRequestTimeout. A request that runs
	// out of time fails with an error wrapping errdefs.ErrUnavailable.
	RequestTimeout time.Duration
	// Logger receives the store's and etcd's warnings and errors (etcd's own
	// logs are forwarded at warn level and above); nil means slog.Default().
	Logger *slog.Logger
}

// External is an existing etcd cluster (v3.4 or later).
type External struct {
	// Endpoints are the cluster's client URLs: "http://10.0.0.1:2379",
	// "unix:///run/etcd.sock" and the like.
	Endpoints []string
	// DialTimeout bounds connecting (and Open's first request); 0 means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// Username and Password authenticate to a cluster with auth enabled.
	Username, Password string
}

// Store is a store.Store on etcd. It is safe for concurrent use.
type Store struct {
	cli     *clientv3.Client
	member  *embedded // nil for an external cluster
	log     *slog.Logger
	timeout time.Duration
	mute    atomic.Bool // silences etcd's logs during Close

	mu     sync.Mutex // guards closed and wg.Add against Close
	closed bool
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup
}

var _ store.Store = (*Store)(nil)

// Open starts (Embedded) or connects to (External) etcd and returns the Store.
// It returns once the store can serve requests, or fails with an error wrapping
// errdefs.ErrInvalid (bad Config) or errdefs.ErrUnavailable (etcd did not come
// up or cannot be reached before ctx ends or the dial timeout).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if (cfg.Embedded == nil) == (cfg.External == nil) {
		return nil, fmt.Errorf("etcdstore: exactly one of Embedded and External must be set: %w", errdefs.ErrInvalid)
	}
	s := &Store{
		log:     cfg.Logger,
		timeout: cfg.RequestTimeout,
		done:    make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.timeout <= 0 {
		s.timeout = DefaultRequestTimeout
	}
	if cfg.Embedded != nil {
		m, cli, err := startEmbedded(ctx, *cfg.Embedded, s.log, &s.mute)
		if err != nil {
			return nil, err
		}
		s.member, s.cli = m, cli
		return s, nil
	}
	cli, err := dialExternal(ctx, *cfg.External, s.log, &s.mute)
	if err != nil {
		return nil, err
	}
	s.cli = cli
	return s, nil
}

func dialExternal(ctx context.Context, x External, log *slog.Logger, mute *atomic.Bool) (*clientv3.Client, error) {
	if len(x.Endpoints) == 0 {
		return nil, fmt.Errorf("etcdstore: External.Endpoints is empty: %w", errdefs.ErrInvalid)
	}
	dt := x.DialTimeout
	if dt <= 0 {
		dt = DefaultDialTimeout
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            x.Endpoints,
		DialTimeout:          dt,
		DialKeepAliveTime:    30 * time.Second,
		DialKeepAliveTimeout: 10 * time.Second,
		Username:             x.Username,
		Password:             x.Password,
		Context:              context.WithoutCancel(ctx),
		Logger:               newZapLogger(log.Handler(), zapcore.WarnLevel, mute, slog.String("component", "etcd-client")),
	})
	if err != nil {
		return nil, fmt.Errorf("etcdstore: connect to %v: %w: %w", x.Endpoints, errdefs.ErrUnavailable, err)
	}
	// Make sure the cluster answers: fail fast rather than on first use.
	pctx, cancel := context.WithTimeout(ctx, dt)
	defer cancel()
	if _, err := cli.Get(pctx, "health", clientv3.WithCountOnly()); err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		cli.Close()
		return nil, fmt.Errorf("etcdstore: connect to %v: %w: %w", x.Endpoints, errdefs.ErrUnavailable, err)
	}
	return cli, nil
}

// Close stops the store (for an embedded one, the etcd member too, releasing
// its data directory) and ends its watches. Calls after the first return nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	s.mute.Store(true)

	err := s.cli.Close()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	s.wg.Wait()
	if s.member != nil {
		s.member.close()
	}
	return err
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// precheck fails early on a closed store or an ended ctx, so that a request
// the caller gave up on is never sent (and a write never applied).
func (s *Store) precheck(ctx context.Context, op string) error {
	if s.isClosed() {
		return s.errClosed(op)
	}
	if ctx.Err() != nil {
		return s.wrap(ctx, op, ctx.Err())
	}
	return nil
}

func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if key == "" {
		return store.KV{}, fmt.Errorf("store: get: empty key: %w", errdefs.ErrInvalid)
	}
	if err := s.precheck(ctx, "get "+key); err != nil {
		return store.KV{}, err
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(octx, key)
	if err != nil {
		return store.KV{}, s.wrap(ctx, "get "+key, err)
	}
	if len(resp.Kvs) == 0 {
		return store.KV{}, fmt.Errorf("store: key %q: %w", key, errdefs.ErrNotFound)
	}
	return kvOf(resp.Kvs[0]), nil
}

// List implements store.Store. It reads large prefixes in pages, all at the
// revision of the first page.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	if err := s.precheck(ctx, "list "+prefix); err != nil {
		return nil, 0, err
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	begin, end := prefix, clientv3.GetPrefixRangeEnd(prefix)
	if prefix == "" {
		begin, end = "\x00", "\x00" // the whole key space
	}
	for attempt := 0; ; attempt++ {
		kvs, rev, err := s.listOnce(octx, begin, end)
		if err != nil && errors.Is(err, rpctypes.ErrCompacted) && attempt < 3 {
			continue // compacted between two pages: start over
		}
		if err != nil {
			return nil, 0, s.wrap(ctx, "list "+prefix, err)
		}
		return kvs, rev, nil
	}
}

func (s *Store) listOnce(ctx context.Context, begin, end string) ([]store.KV, int64, error) {
	var (
		out []store.KV
		rev int64
	)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, begin, opts...)
		if err != nil {
			return nil, 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
			out = make([]store.KV, 0, len(resp.Kvs))
		}
		for _, kv := range resp.Kvs {
			out = append(out, kvOf(kv))
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, rev, nil
		}
		begin = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Txn implements store.Store. Puts with a TTL are attached to one etcd lease
// per distinct TTL (in whole seconds), granted before the transaction and
// revoked again if it fails.
func (s *Store) Txn(ctx context.Context, t store.Txn) (int64, error) {
	cmps := make([]clientv3.Cmp, 0, len(t.Conds))
	for _, c := range t.Conds {
		if c.Key == "" {
			return 0, fmt.Errorf("store: txn: condition on an empty key: %w", errdefs.ErrInvalid)
		}
		switch c.Kind {
		case store.CondAbsent:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(c.Key), "=", 0))
		case store.CondPresent:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(c.Key), ">", 0))
		case store.CondModRev:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(c.Key), "=", c.Rev))
		default:
			return 0, fmt.Errorf("store: txn: unknown condition kind %d: %w", c.Kind, errdefs.ErrInvalid)
		}
	}
	for _, op := range t.Ops {
		if op.Key == "" {
			return 0, fmt.Errorf("store: txn: op on an empty key: %w", errdefs.ErrInvalid)
		}
		if op.Kind != store.OpPut && op.Kind != store.OpDelete && op.Kind != store.OpDeletePrefix {
			return 0, fmt.Errorf("store: txn: unknown op kind %d: %w", op.Kind, errdefs.ErrInvalid)
		}
	}
	if err := s.precheck(ctx, "txn"); err != nil {
		return 0, err
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()

	var leases map[int64]clientv3.LeaseID // TTL seconds -> lease
	revoke := func() {
		if len(leases) == 0 {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		for _, id := range leases {
			if _, err := s.cli.Revoke(rctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
				s.log.Debug("store: revoking unused lease", "lease", int64(id), "err", err)
			}
		}
	}
	ops := make([]clientv3.Op, 0, len(t.Ops))
	for _, op := range t.Ops {
		switch op.Kind {
		case store.OpPut:
			var opts []clientv3.OpOption
			if op.TTL > 0 {
				secs := int64((op.TTL + time.Second - 1) / time.Second)
				id, ok := leases[secs]
				if !ok {
					g, err := s.cli.Grant(octx, secs)
					if err != nil {
						revoke()
						return 0, s.wrap(ctx, "txn: grant lease", err)
					}
					if leases == nil {
						leases = make(map[int64]clientv3.LeaseID)
					}
					id = g.ID
					leases[secs] = id
				}
				opts = append(opts, clientv3.WithLease(id))
			}
			ops = append(ops, clientv3.OpPut(op.Key, string(op.Value), opts...))
		case store.OpDelete:
			ops = append(ops, clientv3.OpDelete(op.Key))
		case store.OpDeletePrefix:
			ops = append(ops, clientv3.OpDelete(op.Key, clientv3.WithPrefix()))
		}
	}
	resp, err := s.cli.Txn(octx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		revoke()
		return 0, s.wrap(ctx, "txn", err)
	}
	if !resp.Succeeded {
		revoke()
		// The revision the conditions were checked at: a caller waits for
		// its cache to reach it before building the transaction again.
		return resp.Header.Revision, fmt.Errorf("store: txn: a condition does not hold: %w", errdefs.ErrConflict)
	}
	return resp.Header.Revision, nil
}

// Watch implements store.Store. The batches' Rev is the ModRev of their last
// event, or for a progress notification (sent after the store's progress
// interval without changes under prefix) the store revision it reports; etcd
// keeps a watcher that lags far behind unsynced while its response headers
// already carry the current revision, so the header is not used for batches.
func (s *Store) Watch(ctx context.Context, prefix string, rev int64) <-chan store.WatchResponse {
	out := make(chan store.WatchResponse, 16)
	fail := func(err error) <-chan store.WatchResponse {
		if ctx.Err() == nil {
			out <- store.WatchResponse{Err: err}
		}
		close(out)
		return out
	}
	if err := s.precheck(ctx, "watch "+prefix); err != nil {
		return fail(err)
	}
	if rev <= 0 {
		// Pin "changes after the call" now: etcd would only start the
		// watch once its create request reaches the server.
		octx, cancel := s.opCtx(ctx)
		resp, err := s.cli.Get(octx, "\x00", clientv3.WithCountOnly())
		cancel()
		if err != nil {
			return fail(s.wrap(ctx, "watch "+prefix, err))
		}
		rev = resp.Header.Revision + 1
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fail(s.errClosed("watch " + prefix))
	}
	s.wg.Add(1)
	s.mu.Unlock()

	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	opts := []clientv3.OpOption{clientv3.WithProgressNotify()}
	key := prefix
	if prefix == "" {
		key = "\x00"
		opts = append(opts, clientv3.WithFromKey())
	} else {
		opts = append(opts, clientv3.WithPrefix())
	}
	opts = append(opts, clientv3.WithRev(rev))
	wch := s.cli.Watch(wctx, key, opts...)
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer cancel()
		send := func(r store.WatchResponse) bool {
			select {
			case out <- r:
				return true
			default:
			}
			select {
			case out <- r:
				return true
			case <-ctx.Done():
			case <-s.done:
			}
			return false
		}
		var last int64
		for wr := range wch {
			if ctx.Err() != nil {
				return
			}
			if wr.CompactRevision != 0 {
				send(store.WatchResponse{Err: store.ErrCompacted, Rev: last})
				return
			}
			if err := wr.Err(); err != nil {
				send(store.WatchResponse{Err: s.wrap(ctx, "watch "+prefix, err), Rev: last})
				return
			}
			if len(wr.Events) == 0 {
				if !wr.IsProgressNotify() {
					continue
				}
				last = max(last, wr.Header.Revision)
				if !send(store.WatchResponse{Rev: last}) {
					return
				}
				continue
			}
			evs := make([]store.Event, len(wr.Events))
			for i, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					evs[i] = store.Event{Type: store.EventDelete, KV: store.KV{Key: string(ev.Kv.Key), ModRev: ev.Kv.ModRevision}}
				} else {
					evs[i] = store.Event{Type: store.EventPut, KV: kvOf(ev.Kv)}
				}
			}
			last = max(last, wr.Events[len(wr.Events)-1].Kv.ModRevision)
			if !send(store.WatchResponse{Events: evs, Rev: last}) {
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		if s.isClosed() {
			send(store.WatchResponse{Err: s.errClosed("watch"), Rev: last})
			return
		}
		send(store.WatchResponse{Err: fmt.Errorf("store: watch %s: stream ended: %w", prefix, errdefs.ErrUnavailable), Rev: last})
	}()
	return out
}

// Compact discards the history before rev (the state at rev itself is kept):
// watches from earlier revisions then fail with store.ErrCompacted. Compacting
// to an already compacted revision is not an error. The embedded store also
// compacts by itself (Embedded.CompactionRetention).
func (s *Store) Compact(ctx context.Context, rev int64) error {
	if err := s.precheck(ctx, "compact"); err != nil {
		return err
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	_, err := s.cli.Compact(octx, rev, clientv3.WithCompactPhysical())
	if errors.Is(err, rpctypes.ErrCompacted) {
		return nil
	}
	if errors.Is(err, rpctypes.ErrFutureRev) {
		return fmt.Errorf("store: compact to future revision %d: %w", rev, errdefs.ErrInvalid)
	}
	return s.wrap(ctx, "compact", err)
}

// Client returns the underlying etcd client, for maintenance tools and tests.
// Writing through it bypasses nothing in the Store, which keeps no state.
func (s *Store) Client() *clientv3.Client { return s.cli }

func kvOf(kv *mvccpb.KeyValue) store.KV {
	return store.KV{Key: string(kv.Key), Value: kv.Value, CreateRev: kv.CreateRevision, ModRev: kv.ModRevision}
}

func (s *Store) errClosed(op string) error {
	return fmt.Errorf("store: %s: %w: %w", op, errdefs.ErrUnavailable, store.ErrClosed)
}

// wrap maps an etcd client error of operation op, run under the caller's ctx,
// to nimbo's error kinds.
func (s *Store) wrap(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case s.isClosed():
		return s.errClosed(op)
	case errors.Is(ctx.Err(), context.Canceled):
		return fmt.Errorf("store: %s: %w", op, ctx.Err())
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("store: %s: %w: %w", op, errdefs.ErrUnavailable, context.DeadlineExceeded)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("store: %s: %w: %w", op, errdefs.ErrUnavailable, err)
	case errors.Is(err, rpctypes.ErrCompacted):
		return fmt.Errorf("store: %s: %w", op, store.ErrCompacted)
	case errors.Is(err, rpctypes.ErrLeaseTTLTooLarge):
		return fmt.Errorf("store: %s: %w: %w", op, errdefs.ErrInvalid, err)
	}
	code := codes.Unknown
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	} else if st, ok := status.FromError(err); ok {
		code = st.Code()
	}
	if code == codes.InvalidArgument {
		return fmt.Errorf("store: %s: %w: %w", op, errdefs.ErrInvalid, err)
	}
	return fmt.Errorf("store: %s: %w: %w", op, errdefs.ErrUnavailable, err)
}
