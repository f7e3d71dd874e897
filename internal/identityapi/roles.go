package identityapi

import (
	"net/http"
	"strings"

	v3 "github.com/nimbo-cloud/nimbo/api/identity/v3"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/identity"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/server"
)

func (a *API) role(r identity.Role) v3.Role {
	return v3.Role{ID: r.ID, Name: r.Name, Description: r.Description, Options: map[string]any{}, Links: a.link("/v3/roles/" + r.ID)}
}

func (a *API) listRoles(w http.ResponseWriter, r *http.Request) error {
	if err := check(r, "identity:list_roles", policy.Target{}); err != nil {
		return err
	}
	out := []v3.Role{}
	if r.URL.Query().Get("domain_id") == "" { // domain-specific roles do not exist
		for _, role := range a.svc.ListRoles(r.URL.Query().Get("name")) {
			out = append(out, a.role(role))
		}
	}
	return server.JSON(w, http.StatusOK, map[string]any{"roles": out, "links": a.listLinks(r)})
}

func (a *API) getRole(w http.ResponseWriter, r *http.Request) error {
	if err := check(r, "identity:get_role", policy.Target{}); err != nil {
		return err
	}
	role, err := a.svc.GetRole(r.PathValue("id"))
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"role": a.role(role)})
}

func (a *API) createRole(w http.ResponseWriter, r *http.Request) error {
	if err := check(r, "identity:create_role", policy.Target{}); err != nil {
		return err
	}
	var req v3.RoleRequest
	if err := decodeObject(r, "role", &req); err != nil {
		return err
	}
	role, err := a.svc.CreateRole(r.Context(), req)
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusCreated, map[string]any{"role": a.role(role)})
}

func (a *API) updateRole(w http.ResponseWriter, r *http.Request) error {
	if err := check(r, "identity:update_role", policy.Target{}); err != nil {
		return err
	}
	var req v3.RoleRequest
	if err := decodeObject(r, "role", &req); err != nil {
		return err
	}
	role, err := a.svc.UpdateRole(r.Context(), r.PathValue("id"), req)
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"role": a.role(role)})
}

func (a *API) deleteRole(w http.ResponseWriter, r *http.Request) error {
	if err := check(r, "identity:delete_role", policy.Target{}); err != nil {
		return err
	}
	if err := a.svc.DeleteRole(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	return server.NoContent(w)
}

func (a *API) roleRef(id string) v3.RoleRef {
	ref := v3.RoleRef{ID: id}
	if role, err := a.svc.GetRole(id); err == nil {
		ref.Name = role.Name
	}
	return ref
}

func (a *API) inference(prior string, implied []string) v3.RoleInference {
	inf := v3.RoleInference{PriorRole: a.roleRef(prior), Implies: []v3.RoleRef{}}
	for _, id := range implied {
		inf.Implies = append(inf.Implies, a.roleRef(id))
	}
	return inf
}

func (a *API) roleInferences(w http.ResponseWriter, r *http.Request) error {
	if err := check(r, "identity:list_role_inference_rules", policy.Target{}); err != nil {
		return err
	}
	out := []v3.RoleInference{}
	for prior, implied := range a.svc.Implications() {
		out = append(out, a.inference(prior, implied))
	}
	return server.JSON(w, http.StatusOK, map[string]any{"role_inferences": out, "links": a.listLinks(r)})
}

func (a *API) impliedRoles(w http.ResponseWriter, r *http.Request) error {
	if err := check(r, "identity:list_implied_roles", policy.Target{}); err != nil {
		return err
	}
	id := r.PathValue("id")
	if _, err := a.svc.GetRole(id); err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"role_inference": a.inference(id, a.svc.Implications()[id]), "links": a.listLinks(r)})
}

// grantOf reads the assignment a grant URL names, and the policy target.
func grantOf(r *http.Request) (identity.Assignment, policy.Target) {
	g := identity.Assignment{UserID: r.PathValue("user"), RoleID: r.PathValue("role")}
	t := policy.Target{UserID: g.UserID}
	switch {
	case strings.HasPrefix(r.URL.Path, "/v3/projects/"):
		g.ScopeType, g.ScopeID, t.ProjectID = identity.ScopeProject, r.PathValue("target"), r.PathValue("target")
	case strings.HasPrefix(r.URL.Path, "/v3/domains/"):
		g.ScopeType, g.ScopeID, t.DomainID = identity.ScopeDomain, r.PathValue("target"), r.PathValue("target")
	default:
		g.ScopeType, g.ScopeID = identity.ScopeSystem, identity.SystemAll
	}
	return g, t
}

// grantAction names the policy action of a grant call.
func grantAction(g identity.Assignment, verb string) string {
	if g.ScopeType == identity.ScopeSystem {
		return map[string]string{"check": "identity:check_system_grant_for_user", "list": "identity:list_system_grants_for_user",
			"create": "identity:create_system_grant_for_user", "revoke": "identity:revoke_system_grant_for_user"}[verb]
	}
	return map[string]string{"check": "identity:check_grant", "list": "identity:list_grants",
		"create": "identity:create_grant", "revoke": "identity:revoke_grant"}[verb]
}

func (a *API) grant(w http.ResponseWriter, r *http.Request) error {
	g, t := grantOf(r)
	if err := check(r, grantAction(g, "create"), t); err != nil {
		return err
	}
	if err := a.svc.Grant(r.Context(), g); err != nil {
		return err
	}
	return server.NoContent(w)
}

func (a *API) checkGrant(w http.ResponseWriter, r *http.Request) error {
	g, t := grantOf(r)
	if err := check(r, grantAction(g, "check"), t); err != nil {
		return err
	}
	if err := a.svc.CheckGrant(g); err != nil {
		return err
	}
	return server.NoContent(w)
}

func (a *API) revokeGrant(w http.ResponseWriter, r *http.Request) error {
	g, t := grantOf(r)
	if err := check(r, grantAction(g, "revoke"), t); err != nil {
		return err
	}
	if err := a.svc.RevokeGrant(r.Context(), g); err != nil {
		return err
	}
	return server.NoContent(w)
}

func (a *API) listGrants(w http.ResponseWriter, r *http.Request) error {
	g, t := grantOf(r)
	if err := check(r, grantAction(g, "list"), t); err != nil {
		return err
	}
	if _, err := a.svc.GetUser(g.UserID); err != nil {
		return err
	}
	out := []v3.Role{}
	for _, as := range a.svc.ListAssignments(identity.AssignmentFilter{UserID: g.UserID, ScopeType: g.ScopeType, ScopeID: g.ScopeID}) {
		if role, err := a.svc.GetRole(as.RoleID); err == nil {
			out = append(out, a.role(role))
		}
	}
	return server.JSON(w, http.StatusOK, map[string]any{"roles": out, "links": a.listLinks(r)})
}

func (a *API) roleAssignments(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := identity.AssignmentFilter{UserID: q.Get("user.id"), RoleID: q.Get("role.id")}
	switch {
	case q.Get("scope.project.id") != "":
		f.ScopeType, f.ScopeID = identity.ScopeProject, q.Get("scope.project.id")
	case q.Get("scope.domain.id") != "":
		f.ScopeType, f.ScopeID = identity.ScopeDomain, q.Get("scope.domain.id")
	case q.Get("scope.system") != "":
		if q.Get("scope.system") != identity.SystemAll {
			return errdefs.Invalidf("Invalid input for query parameter 'scope.system': only 'all' is supported.")
		}
		f.ScopeType, f.ScopeID = identity.ScopeSystem, identity.SystemAll
	}
	if err := check(r, "identity:list_role_assignments", policy.Target{DomainID: q.Get("scope.domain.id")}); err != nil {
		return err
	}
	eff, err := boolQuery(r, "effective")
	if err != nil {
		return err
	}
	names, err := boolQuery(r, "include_names")
	if err != nil {
		return err
	}
	f.Effective = eff != nil && *eff
	out := []v3.RoleAssignment{}
	if q.Get("group.id") == "" { // no groups: a group filter matches nothing
		for _, as := range a.svc.ListAssignments(f) {
			out = append(out, a.assignment(as, names != nil && *names))
		}
	}
	return server.JSON(w, http.StatusOK, map[string]any{"role_assignments": out, "links": a.listLinks(r)})
}

func (a *API) assignment(as identity.Assignment, names bool) v3.RoleAssignment {
	ra := v3.RoleAssignment{Role: v3.RoleRef{ID: as.RoleID}, User: &v3.AssignActor{ID: as.UserID}}
	var path string
	switch as.ScopeType {
	case identity.ScopeProject:
		ra.Scope.Project = &v3.AssignTarget{ID: as.ScopeID}
		path = "/v3/projects/" + as.ScopeID
	case identity.ScopeDomain:
		ra.Scope.Domain = &v3.AssignTarget{ID: as.ScopeID}
		path = "/v3/domains/" + as.ScopeID
	default:
		ra.Scope.System = map[string]bool{identity.SystemAll: true}
		path = "/v3/system"
	}
	ra.Links = v3.Link{"assignment": a.base + path + "/users/" + as.UserID + "/roles/" + as.RoleID}
	if names {
		ra.Role = a.roleRef(as.RoleID)
		if u, err := a.svc.GetUser(as.UserID); err == nil {
			ra.User.Name = u.Name
			ra.User.Domain = a.domainRef(u.DomainID)
		}
		if p, err := a.svc.GetProject(as.ScopeID); err == nil && ra.Scope.Project != nil {
			ra.Scope.Project.Name, ra.Scope.Project.Domain = p.Name, a.domainRef(p.DomainID)
		}
		if d, err := a.svc.GetDomain(as.ScopeID); err == nil && ra.Scope.Domain != nil {
			ra.Scope.Domain.Name = d.Name
		}
	}
	return ra
}

func (a *API) domainRef(id string) *v3.DomainRef {
	ref := &v3.DomainRef{ID: id}
	if d, err := a.svc.GetDomain(id); err == nil {
		ref.Name = d.Name
	}
	return ref
}
