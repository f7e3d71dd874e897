package store

import (
	"encoding/json"
	"sync"
)

// Memo keeps decoded copies of a cache's objects, each valid for the
// revision it was decoded at, so read paths that walk many objects (an agent
// pass, a list request) decode only what changed since the last walk. The
// values it returns are shared: callers must treat them as read-only (clone
// slices and maps before changing them).
type Memo[T any] struct {
	c  *Cache
	mu sync.Mutex
	m  map[string]memoEntry[T]
}

type memoEntry[T any] struct {
	rev int64
	v   T
}

// NewMemo returns a memo over c.
func NewMemo[T any](c *Cache) *Memo[T] { return &Memo[T]{c: c, m: map[string]memoEntry[T]{}} }

// decode returns kv's value, decoding it only when it changed.
func (m *Memo[T]) decode(kv KV) (T, bool) {
	if e, ok := m.m[kv.Key]; ok && e.rev == kv.ModRev {
		return e.v, true
	}
	var v T
	if err := json.Unmarshal(kv.Value, &v); err != nil {
		m.c.log.Error("store: undecodable object", "key", kv.Key, "err", err)
		return v, false
	}
	m.m[kv.Key] = memoEntry[T]{rev: kv.ModRev, v: v}
	return v, true
}

// Get returns the object at key (read-only).
func (m *Memo[T]) Get(key string) (T, bool) {
	kv, ok := m.c.Get(key)
	if !ok {
		var zero T
		return zero, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.decode(kv)
}

// List returns every object under prefix in key order (read-only), and
// forgets the decoded copies of keys under prefix that are gone.
func (m *Memo[T]) List(prefix string) []T {
	out := []T{}
	m.walk(prefix, func(_ KV, v T) { out = append(out, v) })
	return out
}

// Versioned is an object with the store revision it was last changed at:
// the same key and Rev always mean the same value, so callers can keep
// what they derive from it (a rendering) until Rev moves.
type Versioned[T any] struct {
	Value T
	Rev   int64
}

// ListVersioned is List with each object's revision.
func (m *Memo[T]) ListVersioned(prefix string) []Versioned[T] {
	var out []Versioned[T]
	m.walk(prefix, func(kv KV, v T) { out = append(out, Versioned[T]{Value: v, Rev: kv.ModRev}) })
	return out
}

// walk calls fn with every object under prefix in key order, and forgets
// the decoded copies of keys under prefix that are gone.
func (m *Memo[T]) walk(prefix string, fn func(KV, T)) {
	kvs := m.c.List(prefix)
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		seen[kv.Key] = true
		if v, ok := m.decode(kv); ok {
			fn(kv, v)
		}
	}
	for k := range m.m {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix && !seen[k] {
			delete(m.m, k)
		}
	}
}
