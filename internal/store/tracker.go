package store

import (
	"strings"
	"sync"
)

// Tracker collects the keys under a prefix that change in a Cache, for
// consumers that work incrementally (an agent pass touching only the ports
// that changed instead of walking all of them). A key is noted once the
// cache's snapshot reflecting its change is visible, so a consumer that
// takes the keys and then reads the cache sees each change (or a later one).
type Tracker struct {
	prefix string

	mu    sync.Mutex
	keys  map[string]struct{}
	reset bool
}

// Track returns a tracker of the keys under prefix (which should lie under
// the cache's own prefix). Its first Take reports a reset: the consumer
// starts from a full read.
func (c *Cache) Track(prefix string) *Tracker {
	t := &Tracker{prefix: prefix, keys: map[string]struct{}{}, reset: true}
	c.mu.Lock()
	c.trackers = append(c.trackers, t)
	c.mu.Unlock()
	return t
}

// Untrack stops feeding t.
func (c *Cache) Untrack(t *Tracker) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.trackers {
		if x == t {
			c.trackers = append(c.trackers[:i], c.trackers[i+1:]...)
			return
		}
	}
}

func (t *Tracker) note(keys []string, reset bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if reset {
		t.reset, t.keys = true, map[string]struct{}{}
		return
	}
	if t.reset {
		return // the consumer reads everything anyway
	}
	for _, k := range keys {
		if strings.HasPrefix(k, t.prefix) {
			t.keys[k] = struct{}{}
		}
	}
}

// Take returns the keys that changed since the previous Take, in no
// particular order, or reset=true (and no keys) when the consumer must read
// the whole prefix again: on the first Take and after the cache re-listed
// its prefix.
func (t *Tracker) Take() (keys []string, reset bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reset {
		t.reset = false
		return nil, true
	}
	if len(t.keys) == 0 {
		return nil, false
	}
	keys = make([]string, 0, len(t.keys))
	for k := range t.keys {
		keys = append(keys, k)
	}
	t.keys = map[string]struct{}{}
	return keys, false
}
