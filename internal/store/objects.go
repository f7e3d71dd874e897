package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// Services keep their objects as JSON under their prefix and read them from
// a Cache; these helpers are the typed glue shared by every service.

// GetJSON decodes the object at key from the cache, with its ModRev. A value
// that does not decode is logged and reported absent.
func GetJSON[T any](c *Cache, key string) (T, int64, bool) {
	var v T
	kv, ok := c.Get(key)
	if !ok {
		return v, 0, false
	}
	if err := json.Unmarshal(kv.Value, &v); err != nil {
		c.log.Error("store: undecodable object", "key", key, "err", err)
		return v, 0, false
	}
	return v, kv.ModRev, true
}

// ListJSON decodes every object under prefix from the cache, in key order,
// skipping (and logging) values that do not decode.
func ListJSON[T any](c *Cache, prefix string) []T {
	kvs := c.List(prefix)
	out := make([]T, 0, len(kvs))
	for _, kv := range kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			c.log.Error("store: undecodable object", "key", kv.Key, "err", err)
			continue
		}
		out = append(out, v)
	}
	return out
}

// PutJSON is a put of v encoded as JSON. v must be a plain data type (it
// panics otherwise: a programming error, not an input one).
func PutJSON(key string, v any) Op {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("store: PutJSON(%s): %v", key, err))
	}
	return Op{Kind: OpPut, Key: key, Value: b}
}

// Commit applies t to the cache's store and waits until the cache reflects
// it, so the caller reads its own write. An empty transaction is a no-op.
func (c *Cache) Commit(ctx context.Context, t Txn) error {
	if len(t.Ops) == 0 {
		return nil
	}
	rev, err := c.s.Txn(ctx, t)
	if err != nil {
		if errors.Is(err, errdefs.ErrConflict) && rev > 0 {
			// Whatever beat us is at or below rev: let the cache see it, so
			// a rebuilt transaction starts from the state that won.
			if werr := c.WaitRev(ctx, rev); werr != nil {
				return werr
			}
		}
		return err
	}
	return c.WaitRev(ctx, rev)
}

// Update runs an optimistic read-modify-write: build reads the cache and
// returns a transaction conditioned on what it read; when a condition fails
// (someone else wrote first) it is built again from fresh state, up to
// updateAttempts times, after a short random pause that grows with each
// attempt so that writers racing for the same object spread out.
func (c *Cache) Update(ctx context.Context, build func() (Txn, error)) error {
	var err error
	for attempt := range updateAttempts {
		if attempt > 0 {
			pause := time.Duration(rand.Int64N(int64(attempt) * int64(time.Millisecond)))
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		var t Txn
		if t, err = build(); err != nil {
			return err
		}
		if err = c.Commit(ctx, t); !errors.Is(err, errdefs.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("store: too much contention, try again: %w", err)
}

// updateAttempts bounds Update's retries (the pauses add up to at most
// about 120 ms).
const updateAttempts = 16
