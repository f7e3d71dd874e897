// Package network is nimbo's network service (the domain layer behind the
// Neutron v2.0 API): networks, subnets with IPv4 address management, ports,
// security groups and their rules, quotas and tags. It validates input,
// enforces Neutron's referential rules and uniqueness (IPs, MACs, segment
// IDs) with store transactions, and keeps its keyspace in a store.Cache so
// lookups never wait on etcd. The per-host agent reads the same keyspace and
// reports port status back. Field-level authorisation happens in the API
// layer (internal/networkapi); this package enforces visibility: a caller
// only reaches what it owns or what is shared.
package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// Options tunes a Service.
type Options struct {
	// DefaultQuotas are the per-project limits unless overridden.
	DefaultQuotas Quota
	// VNIRange is the VXLAN segment range tenant networks take IDs from.
	VNIMin, VNIMax int
	// Now is the clock (time.Now if nil).
	Now    func() time.Time
	Logger *slog.Logger
}

// DefaultQuotas are Neutron's default limits.
var DefaultQuotas = Quota{"network": 100, "subnet": 100, "port": 500, "security_group": 10,
	"security_group_rule": 100, "router": 10, "floatingip": 50}

// Service is the network service.
type Service struct {
	cache *store.Cache
	ports *store.Memo[Port] // decoded ports for read-only walks
	// Decoded copies of what the agent walks on every pass.
	networks *store.Memo[Network]
	routers  *store.Memo[Router]
	fips     *store.Memo[FloatingIP]
	pfs      *store.Memo[PortForwarding]
	quotas   Quota
	vniMin   int
	vniMax   int
	now      func() time.Time
	log      *slog.Logger

	mu   sync.Mutex
	hint map[string]uint32 // subnet ID -> where the next free-IP search starts
}

// New starts the network service on st.
func New(ctx context.Context, st store.Store, o Options) (*Service, error) {
	if o.DefaultQuotas == nil {
		o.DefaultQuotas = DefaultQuotas
	}
	if o.VNIMin <= 0 || o.VNIMax < o.VNIMin {
		o.VNIMin, o.VNIMax = 1, 1<<24-1
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c, err := store.NewCache(ctx, st, prefix)
	if err != nil {
		return nil, fmt.Errorf("network: loading state: %w", err)
	}
	return &Service{cache: c, ports: store.NewMemo[Port](c), networks: store.NewMemo[Network](c), routers: store.NewMemo[Router](c),
		fips: store.NewMemo[FloatingIP](c), pfs: store.NewMemo[PortForwarding](c), quotas: o.DefaultQuotas, vniMin: o.VNIMin, vniMax: o.VNIMax, now: o.Now,
		log: o.Logger, hint: map[string]uint32{}}, nil
}

// Close stops the service's watch.
func (s *Service) Close() { s.cache.Close() }

// Cache exposes the service's view of its keyspace (for the agent in the
// same process and for tests).
func (s *Service) Cache() *store.Cache { return s.cache }

// NewID returns a Neutron-style ID (a UUID4 string).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (s *Service) stamp(m *Meta, create bool) {
	now := s.now().UTC().Truncate(time.Second)
	if create {
		m.CreatedAt, m.Revision = now, 0
	}
	m.UpdatedAt = now
	m.Revision++
}

// target is the policy target of a resource.
func target(projectID string, shared bool) policy.Target {
	return policy.Target{ProjectID: projectID, Shared: shared}
}

// canSee reports whether a caller may see a resource of projectID.
func canSee(c policy.Creds, action, projectID string, shared bool) bool {
	return policy.Allowed(action, c, target(projectID, shared))
}

func notFound(typ, kind, id string) error {
	return errdefs.Typed(typ, errdefs.NotFoundf("%s %s could not be found.", kind, id))
}

// owner decides the project a new resource belongs to: the caller's unless
// an admin asks for another one.
func owner(c policy.Creds, projectID, tenantID *string) (string, error) {
	p := c.ProjectID
	for _, v := range []*string{projectID, tenantID} {
		if v != nil && *v != "" {
			if *v != p && p != "" && !c.IsAdmin() {
				return "", errdefs.Forbiddenf("Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires admin privileges.")
			}
			p = *v
		}
	}
	if projectID != nil && tenantID != nil && *projectID != "" && *tenantID != "" && *projectID != *tenantID {
		return "", errdefs.Invalidf("'project_id' and 'tenant_id' do not match.")
	}
	if p == "" {
		return "", errdefs.Invalidf("Invalid input: 'project_id' is required (the token has no project).")
	}
	return p, nil
}

// quota returns a project's limit for a resource (-1: unlimited).
func (s *Service) quota(project, resource string) int {
	if q, _, ok := store.GetJSON[Quota](s.cache, pQuotas+project); ok {
		if v, ok := q[resource]; ok {
			return v
		}
	}
	if v, ok := s.quotas[resource]; ok {
		return v
	}
	return -1
}

// used counts a project's resources of one kind (from the ownership index).
func (s *Service) used(project, kind string) int {
	return len(s.cache.List(pOwned + project + "/" + kind + "/"))
}

// checkQuota fails when creating n more resources would exceed the quota.
// Like Neutron's no-lock quota driver, racing creates may overshoot by the
// number of concurrent requests.
func (s *Service) checkQuota(project, kind string, n int) error {
	limit := s.quota(project, kind)
	if limit >= 0 && s.used(project, kind)+n > limit {
		return errdefs.Typed("OverQuota", &errdefs.Error{Kind: errdefs.ErrQuotaExceeded,
			Msg: fmt.Sprintf("Quota exceeded for resources: ['%s'].", kind)})
	}
	return nil
}

// ownOps are the ownership index entries of a resource.
func ownOp(project, kind, id string) store.Op {
	return store.Op{Kind: store.OpPut, Key: ownedKey(project, kind, id), Value: []byte("1")}
}

func unownOp(project, kind, id string) store.Op {
	return store.Op{Kind: store.OpDelete, Key: ownedKey(project, kind, id)}
}

func del(key string) store.Op       { return store.Op{Kind: store.OpDelete, Key: key} }
func absent(key string) store.Cond  { return store.Cond{Key: key, Kind: store.CondAbsent} }
func present(key string) store.Cond { return store.Cond{Key: key, Kind: store.CondPresent} }
func atRev(key string, rev int64) store.Cond {
	return store.Cond{Key: key, Kind: store.CondModRev, Rev: rev}
}

// checkTags validates a tag list (Neutron: 1..255 characters, no commas).
func checkTags(tags []string) error {
	for _, t := range tags {
		if t == "" || len(t) > 255 || slices.Contains([]rune(t), ',') {
			return errdefs.Invalidf("Invalid input for tags: %q is not a valid tag.", t)
		}
	}
	return nil
}
