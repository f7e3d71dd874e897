package identity

import (
	"context"
	"strings"

	"github.com/nimbo-cloud/nimbo/internal/store"
)

// live reports whether everything an assignment refers to still exists.
func (s *Service) live(a Assignment) bool {
	if _, ok := s.cache.Get(userKey(a.UserID)); !ok {
		return false
	}
	if _, ok := s.cache.Get(roleKey(a.RoleID)); !ok {
		return false
	}
	if k := targetKey(a); k != "" {
		_, ok := s.cache.Get(k)
		return ok
	}
	return true
}

// collectGarbage removes what interrupted cascading deletes left behind:
// assignments, application credentials and implication rules whose user,
// role, project or domain is gone, and projects and users of deleted domains.
// Reads already ignore such orphans; this reclaims their keys.
func (s *Service) collectGarbage(ctx context.Context) error {
	var ops []store.Op
	for _, kv := range s.cache.List(pAssign) {
		if a, ok := parseAssignKey(kv.Key); !ok || !s.live(a) {
			ops = append(ops, del(kv.Key))
		}
	}
	for _, ac := range list[AppCred](s, pAppCreds) {
		_, u := s.cache.Get(userKey(ac.UserID))
		_, p := s.cache.Get(projectKey(ac.ProjectID))
		if !u || !p {
			ops = append(ops, del(appCredKey(ac.ID)), del(nameKey("appcred", ac.UserID, ac.Name)))
		}
	}
	for _, kv := range s.cache.List(pImplies) {
		parts := strings.Split(strings.TrimPrefix(kv.Key, pImplies), "/")
		if len(parts) != 2 {
			ops = append(ops, del(kv.Key))
			continue
		}
		_, a := s.cache.Get(roleKey(parts[0]))
		_, b := s.cache.Get(roleKey(parts[1]))
		if !a || !b {
			ops = append(ops, del(kv.Key))
		}
	}
	for _, p := range list[Project](s, pProjects) {
		if _, ok := s.cache.Get(domainKey(p.DomainID)); !ok {
			ops = append(ops, del(projectKey(p.ID)), del(nameKey("project", p.DomainID, p.Name)))
		}
	}
	for _, u := range list[User](s, pUsers) {
		if _, ok := s.cache.Get(domainKey(u.DomainID)); !ok {
			ops = append(ops, del(userKey(u.ID)), del(nameKey("user", u.DomainID, u.Name)))
		}
	}
	if len(ops) > 0 {
		s.log.Info("identity: removing objects orphaned by interrupted deletes", "keys", len(ops))
	}
	return s.sweep(ctx, ops)
}
