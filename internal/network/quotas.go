package network

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// Quotas returns a project's effective limits (defaults merged with overrides).
func (s *Service) Quotas(project string) Quota {
	q := maps.Clone(s.quotas)
	if o, _, ok := store.GetJSON[Quota](s.cache, pQuotas+project); ok {
		maps.Copy(q, o)
	}
	return q
}

// DefaultQuotas returns the default limits.
func (s *Service) DefaultQuotas() Quota { return maps.Clone(s.quotas) }

// Usage returns how many of each quota resource a project has.
func (s *Service) Usage(project string) map[string]int {
	out := map[string]int{}
	for k := range s.quotas {
		out[k] = s.used(project, k)
	}
	return out
}

// OverriddenProjects lists the projects with quota overrides.
func (s *Service) OverriddenProjects() []string {
	return suffixes(s.cache, pQuotas)
}

// SetQuotas overrides some of a project's limits (-1: unlimited).
func (s *Service) SetQuotas(ctx context.Context, project string, set map[string]int) (Quota, error) {
	for k, v := range set {
		if _, ok := s.quotas[k]; !ok {
			known := slices.Sorted(maps.Keys(s.quotas))
			return nil, errdefs.Invalidf("Unrecognized attribute(s) '%s'; quota resources are %s.", k, strings.Join(known, ", "))
		}
		if v < -1 {
			return nil, errdefs.Invalidf("Invalid input for %s. Reason: '%d' should be greater than or equal to -1.", k, v)
		}
	}
	err := s.cache.Update(ctx, func() (store.Txn, error) {
		cur, rev, ok := store.GetJSON[Quota](s.cache, pQuotas+project)
		if !ok {
			cur = Quota{}
		}
		maps.Copy(cur, set)
		cond := absent(pQuotas + project)
		if ok {
			cond = atRev(pQuotas+project, rev)
		}
		return store.Txn{Conds: []store.Cond{cond}, Ops: []store.Op{store.PutJSON(pQuotas+project, cur)}}, nil
	})
	if err != nil {
		return nil, err
	}
	return s.Quotas(project), nil
}

// ResetQuotas drops a project's overrides.
func (s *Service) ResetQuotas(ctx context.Context, project string) error {
	if _, ok := s.cache.Get(pQuotas + project); !ok {
		return errdefs.NotFoundf("Quota for tenant %s could not be found.", project)
	}
	return s.cache.Commit(ctx, store.Txn{Ops: []store.Op{del(pQuotas + project)}})
}
