package networkapi

import (
	"sync"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/network"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// renderCache keeps each port's wire rendering at the store revision it was
// made from, so a list of 10,000 ports renders only the ports that changed
// since the last list instead of all of them (rendering is a JSON round
// trip, about 20 µs a port). The maps it hands out are shared: nothing may
// change them (listquery.Apply does not; it makes new maps for fields=).
type renderCache struct {
	mu    sync.Mutex
	m     map[string]*[2]rendered // port ID -> without, with binding:* attributes
	swept time.Time               // when entries of deleted ports were last dropped
}

type rendered struct {
	rev int64 // store revision of the port rendered; 0: none
	m   map[string]any
}

func newRenderCache() *renderCache { return &renderCache{m: map[string]*[2]rendered{}} }

// The cache looks for entries of deleted ports when it holds sweepSlack
// more than a list returned, at most every sweepEvery (a member's list
// returns few of the ports an admin's filled it with).
const (
	sweepSlack = 1024
	sweepEvery = 10 * time.Second
)

// list renders ports as c sees them.
func (rc *renderCache) list(svc *network.Service, c policy.Creds, ports []store.Versioned[network.Port]) []map[string]any {
	out := make([]map[string]any, len(ports))
	slot := make([]int, len(ports)) // 1: with binding:* attributes
	var todo []int                  // indexes still to render
	rc.mu.Lock()
	for k, v := range ports {
		if bindingVisible(c, v.Value) {
			slot[k] = 1
		}
		if e := rc.m[v.Value.ID]; e != nil && e[slot[k]].rev == v.Rev {
			out[k] = e[slot[k]].m
		} else {
			todo = append(todo, k)
		}
	}
	rc.mu.Unlock()
	for _, k := range todo { // outside the lock: the slow part
		out[k] = renderPort(ports[k].Value, slot[k] == 1)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, k := range todo {
		v := ports[k]
		e := rc.m[v.Value.ID]
		if e == nil {
			e = &[2]rendered{}
			rc.m[v.Value.ID] = e
		}
		if v.Rev > e[slot[k]].rev { // a concurrent list may have stored a newer one
			e[slot[k]] = rendered{rev: v.Rev, m: out[k]}
		}
	}
	if len(rc.m) > len(ports)+sweepSlack && time.Since(rc.swept) > sweepEvery {
		rc.swept = time.Now()
		for id := range rc.m {
			if _, ok := svc.Port(id); !ok {
				delete(rc.m, id)
			}
		}
	}
	return out
}
