package identity

import (
	"context"
	"slices"
	"strings"

	v3 "github.com/nimbo-cloud/nimbo/api/identity/v3"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// GetRole returns a role.
func (s *Service) GetRole(id string) (Role, error) {
	r, _, ok := get[Role](s, roleKey(id))
	if !ok {
		return r, errdefs.NotFoundf("Could not find role: %s.", id)
	}
	return r, nil
}

// FindRole returns a role by ID, or else by name.
func (s *Service) FindRole(idOrName string) (Role, error) {
	if r, err := s.GetRole(idOrName); err == nil {
		return r, nil
	}
	if id, ok := s.nameIndex("role", "-", idOrName); ok {
		return s.GetRole(id)
	}
	return Role{}, errdefs.NotFoundf("Could not find role: %s.", idOrName)
}

// ListRoles lists roles, optionally by name.
func (s *Service) ListRoles(name string) []Role {
	var out []Role
	for _, r := range list[Role](s, pRoles) {
		if name == "" || r.Name == name {
			out = append(out, r)
		}
	}
	return out
}

// CreateRole creates a global role.
func (s *Service) CreateRole(ctx context.Context, r v3.RoleRequest) (Role, error) {
	if err := checkName("name", r.Name, 255, true); err != nil {
		return Role{}, err
	}
	if r.DomainID != nil && *r.DomainID != "" {
		return Role{}, errdefs.Invalidf("Invalid input for field 'domain_id': domain-specific roles are not supported.")
	}
	role := Role{ID: NewID(), Name: *r.Name}
	if r.Description != nil {
		role.Description = *r.Description
	}
	return role, s.createRole(ctx, role)
}

func (s *Service) createRole(ctx context.Context, r Role) error {
	nk := nameKey("role", "-", r.Name)
	err := s.commit(ctx, store.Txn{Conds: []store.Cond{absent(roleKey(r.ID)), absent(nk)},
		Ops: []store.Op{put(roleKey(r.ID), r), {Kind: store.OpPut, Key: nk, Value: []byte(r.ID)}}})
	if errdefs.IsConflict(err) {
		return dupName("role", r.Name, "")
	}
	return err
}

// UpdateRole changes a role's name or description.
func (s *Service) UpdateRole(ctx context.Context, id string, r v3.RoleRequest) (Role, error) {
	if err := checkName("name", r.Name, 255, false); err != nil {
		return Role{}, err
	}
	var out Role
	err := s.retry(ctx, func() (store.Txn, error) {
		role, rev, ok := get[Role](s, roleKey(id))
		if !ok {
			return store.Txn{}, errdefs.NotFoundf("Could not find role: %s.", id)
		}
		old := role.Name
		if r.Name != nil {
			if isBuiltinRole(old) && *r.Name != old {
				return store.Txn{}, errdefs.Forbiddenf("The built-in role %s cannot be renamed.", old)
			}
			role.Name = *r.Name
		}
		if r.Description != nil {
			role.Description = *r.Description
		}
		out = role
		t := store.Txn{Conds: []store.Cond{atRev(roleKey(id), rev)}, Ops: []store.Op{put(roleKey(id), role)}}
		renameOps(&t, nameKey("role", "-", old), nameKey("role", "-", role.Name), id)
		return t, nil
	})
	if errdefs.IsConflict(err) {
		return Role{}, dupName("role", out.Name, "")
	}
	return out, err
}

// builtinRoles are the roles every cloud has, in implication order.
var builtinRoles = []string{"admin", "member", "reader", "service"}

func isBuiltinRole(name string) bool { return slices.Contains(builtinRoles, name) }

// DeleteRole deletes a role with its assignments and implication rules.
func (s *Service) DeleteRole(ctx context.Context, id string) error {
	err := s.retry(ctx, func() (store.Txn, error) {
		r, rev, ok := get[Role](s, roleKey(id))
		if !ok {
			return store.Txn{}, errdefs.NotFoundf("Could not find role: %s.", id)
		}
		if isBuiltinRole(r.Name) {
			return store.Txn{}, errdefs.Forbiddenf("The built-in role %s cannot be deleted.", r.Name)
		}
		return store.Txn{Conds: []store.Cond{atRev(roleKey(id), rev)},
			Ops: []store.Op{del(roleKey(id)), del(nameKey("role", "-", r.Name)),
				{Kind: store.OpDeletePrefix, Key: pImplies + id + "/"}}}, nil
	})
	if err != nil {
		return err
	}
	var ops []store.Op
	for _, kv := range s.cache.List(pImplies) {
		if strings.HasSuffix(kv.Key, "/"+id) {
			ops = append(ops, del(kv.Key))
		}
	}
	for _, kv := range s.cache.List(pAssign) {
		if a, ok := parseAssignKey(kv.Key); ok && a.RoleID == id {
			ops = append(ops, del(kv.Key))
		}
	}
	return s.sweep(ctx, ops)
}

// Implications lists the implied-role rules as prior -> implied role IDs.
func (s *Service) Implications() map[string][]string {
	out := map[string][]string{}
	for _, kv := range s.cache.List(pImplies) {
		parts := strings.Split(strings.TrimPrefix(kv.Key, pImplies), "/")
		if len(parts) == 2 {
			out[parts[0]] = append(out[parts[0]], parts[1])
		}
	}
	return out
}

// expandRoles returns roleIDs with every role they imply, transitively.
func (s *Service) expandRoles(roleIDs []string) []string {
	out := slices.Clone(roleIDs)
	for i := 0; i < len(out); i++ {
		for _, kv := range s.cache.List(pImplies + out[i] + "/") {
			implied := strings.TrimPrefix(kv.Key, pImplies+out[i]+"/")
			if !slices.Contains(out, implied) {
				out = append(out, implied)
			}
		}
	}
	return out
}

// directRoles are the role IDs granted to a user on one target.
func (s *Service) directRoles(st ScopeType, scopeID, userID string) []string {
	p := assignUserPrefix(st, scopeID, userID)
	var ids []string
	for _, kv := range s.cache.List(p) {
		ids = append(ids, strings.TrimPrefix(kv.Key, p))
	}
	return ids
}

// effectiveRoles are the roles a user holds on a target, implied ones included.
func (s *Service) effectiveRoles(st ScopeType, scopeID, userID string) []Role {
	var out []Role
	for _, id := range s.expandRoles(s.directRoles(st, scopeID, userID)) {
		if r, _, ok := get[Role](s, roleKey(id)); ok {
			out = append(out, r)
		}
	}
	return out
}

// checkTarget verifies that an assignment's user, role and target exist.
func (s *Service) checkTarget(a Assignment) error {
	if _, ok := s.cache.Get(userKey(a.UserID)); !ok {
		return errdefs.NotFoundf("Could not find user: %s.", a.UserID)
	}
	if _, ok := s.cache.Get(roleKey(a.RoleID)); !ok {
		return errdefs.NotFoundf("Could not find role: %s.", a.RoleID)
	}
	switch a.ScopeType {
	case ScopeProject:
		if _, ok := s.cache.Get(projectKey(a.ScopeID)); !ok {
			return errdefs.NotFoundf("Could not find project: %s.", a.ScopeID)
		}
	case ScopeDomain:
		if _, ok := s.cache.Get(domainKey(a.ScopeID)); !ok {
			return errdefs.NotFoundf("Could not find domain: %s.", a.ScopeID)
		}
	case ScopeSystem:
		if a.ScopeID != SystemAll {
			return errdefs.NotFoundf("Could not find system scope: %s.", a.ScopeID)
		}
	default:
		return errdefs.Invalidf("Invalid scope type %q.", a.ScopeType)
	}
	return nil
}

func targetKey(a Assignment) string {
	switch a.ScopeType {
	case ScopeProject:
		return projectKey(a.ScopeID)
	case ScopeDomain:
		return domainKey(a.ScopeID)
	}
	return ""
}

// Grant gives a user a role on a target (idempotent).
func (s *Service) Grant(ctx context.Context, a Assignment) error {
	if err := s.checkTarget(a); err != nil {
		return err
	}
	conds := []store.Cond{present(userKey(a.UserID)), present(roleKey(a.RoleID))}
	if k := targetKey(a); k != "" {
		conds = append(conds, present(k))
	}
	err := s.commit(ctx, store.Txn{Conds: conds, Ops: []store.Op{put(assignKey(a), a)}})
	if errdefs.IsConflict(err) { // the user, role or target vanished meanwhile
		if e := s.checkTarget(a); e != nil {
			return e
		}
	}
	return err
}

// Revoke takes a role away from a user on a target.
func (s *Service) RevokeGrant(ctx context.Context, a Assignment) error {
	if err := s.checkTarget(a); err != nil {
		return err
	}
	if !s.HasGrant(a) {
		return errdefs.NotFoundf("Could not find role assignment with role: %s, user or group: %s, project, domain, or system: %s.", a.RoleID, a.UserID, a.ScopeID)
	}
	return s.commit(ctx, store.Txn{Ops: []store.Op{del(assignKey(a))}})
}

// HasGrant reports whether exactly this (direct) assignment exists.
func (s *Service) HasGrant(a Assignment) bool {
	_, ok := s.cache.Get(assignKey(a))
	return ok
}

// CheckGrant returns nil when the assignment exists, else a not-found error
// naming what is missing.
func (s *Service) CheckGrant(a Assignment) error {
	if err := s.checkTarget(a); err != nil {
		return err
	}
	if !s.HasGrant(a) {
		return errdefs.NotFoundf("Could not find role assignment with role: %s, user or group: %s, project, domain, or system: %s.", a.RoleID, a.UserID, a.ScopeID)
	}
	return nil
}

// AssignmentFilter selects role assignments.
type AssignmentFilter struct {
	UserID    string
	RoleID    string
	ScopeType ScopeType // "" for any
	ScopeID   string
	// Effective expands implied roles (as GET /v3/role_assignments?effective).
	Effective bool
}

// ListAssignments lists role assignments. With Effective, each direct
// assignment also yields the roles it implies.
func (s *Service) ListAssignments(f AssignmentFilter) []Assignment {
	var out []Assignment
	seen := map[Assignment]bool{}
	for _, kv := range s.cache.List(pAssign) {
		a, ok := parseAssignKey(kv.Key)
		if !ok || (f.UserID != "" && a.UserID != f.UserID) || (f.ScopeType != "" && a.ScopeType != f.ScopeType) ||
			(f.ScopeID != "" && a.ScopeID != f.ScopeID) {
			continue
		}
		if !s.live(a) {
			continue // an orphan of an interrupted delete: see collectGarbage
		}
		roles := []string{a.RoleID}
		if f.Effective {
			roles = s.expandRoles(roles)
		}
		for _, r := range roles {
			e := a
			e.RoleID = r
			if (f.RoleID != "" && r != f.RoleID) || seen[e] {
				continue
			}
			seen[e] = true
			out = append(out, e)
		}
	}
	return out
}

// AddImplication makes prior imply implied (idempotent).
func (s *Service) AddImplication(ctx context.Context, prior, implied string) error {
	if prior == implied {
		return errdefs.Invalidf("A role cannot imply itself.")
	}
	if slices.Contains(s.expandRoles([]string{implied}), prior) {
		return errdefs.Conflictf("Role %s already implies %s: the rule would make a loop.", implied, prior)
	}
	return s.commit(ctx, store.Txn{Conds: []store.Cond{present(roleKey(prior)), present(roleKey(implied))},
		Ops: []store.Op{{Kind: store.OpPut, Key: impliesKey(prior, implied), Value: []byte("{}")}}})
}
