package identityapi

import (
	"net/http"

	v3 "github.com/nimbo-cloud/nimbo/api/identity/v3"
	"github.com/nimbo-cloud/nimbo/internal/identity"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/server"
)

func tags(t []string) []string {
	if t == nil {
		return []string{}
	}
	return t
}

func (a *API) domain(d identity.Domain) v3.Domain {
	return v3.Domain{ID: d.ID, Name: d.Name, Description: d.Description, Enabled: d.Enabled, Tags: tags(d.Tags),
		Options: map[string]any{}, Links: a.link("/v3/domains/" + d.ID)}
}

func (a *API) project(p identity.Project) v3.Project {
	return v3.Project{ID: p.ID, Name: p.Name, DomainID: p.DomainID, Description: p.Description, Enabled: p.Enabled,
		ParentID: p.DomainID, Tags: tags(p.Tags), Options: map[string]any{}, Links: a.link("/v3/projects/" + p.ID)}
}

func (a *API) user(u identity.User) v3.User {
	return v3.User{ID: u.ID, Name: u.Name, DomainID: u.DomainID, Enabled: u.Enabled, DefaultProjectID: u.DefaultProjectID,
		Description: u.Description, Email: u.Email, Options: map[string]any{}, Links: a.link("/v3/users/" + u.ID)}
}

// filter reads the common list filters.
func filter(r *http.Request) (identity.Filter, error) {
	en, err := boolQuery(r, "enabled")
	q := r.URL.Query()
	return identity.Filter{Name: q.Get("name"), DomainID: q.Get("domain_id"), Enabled: en}, err
}

// ---- domains ----

func (a *API) listDomains(w http.ResponseWriter, r *http.Request) error {
	if err := check(r, "identity:list_domains", policy.Target{}); err != nil {
		return err
	}
	f, err := filter(r)
	if err != nil {
		return err
	}
	out := []v3.Domain{}
	for _, d := range a.svc.ListDomains(f) {
		out = append(out, a.domain(d))
	}
	return server.JSON(w, http.StatusOK, map[string]any{"domains": out, "links": a.listLinks(r)})
}

func (a *API) getDomain(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := check(r, "identity:get_domain", policy.Target{DomainID: id}); err != nil {
		return err
	}
	d, err := a.svc.GetDomain(id)
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"domain": a.domain(d)})
}

func (a *API) createDomain(w http.ResponseWriter, r *http.Request) error {
	if err := check(r, "identity:create_domain", policy.Target{}); err != nil {
		return err
	}
	var req v3.DomainRequest
	if err := decodeObject(r, "domain", &req); err != nil {
		return err
	}
	d, err := a.svc.CreateDomain(r.Context(), req)
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusCreated, map[string]any{"domain": a.domain(d)})
}

func (a *API) updateDomain(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := check(r, "identity:update_domain", policy.Target{DomainID: id}); err != nil {
		return err
	}
	var req v3.DomainRequest
	if err := decodeObject(r, "domain", &req); err != nil {
		return err
	}
	d, err := a.svc.UpdateDomain(r.Context(), id, req)
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"domain": a.domain(d)})
}

func (a *API) deleteDomain(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := check(r, "identity:delete_domain", policy.Target{DomainID: id}); err != nil {
		return err
	}
	if err := a.svc.DeleteDomain(r.Context(), id); err != nil {
		return err
	}
	return server.NoContent(w)
}

// ---- projects ----

func (a *API) projectTarget(id string) (identity.Project, policy.Target, error) {
	p, err := a.svc.GetProject(id)
	return p, policy.Target{ProjectID: id, DomainID: p.DomainID}, err
}

func (a *API) listProjects(w http.ResponseWriter, r *http.Request) error {
	f, err := filter(r)
	if err != nil {
		return err
	}
	if err := check(r, "identity:list_projects", policy.Target{DomainID: f.DomainID}); err != nil {
		return err
	}
	out := []v3.Project{}
	for _, p := range a.svc.ListProjects(f) {
		out = append(out, a.project(p))
	}
	return server.JSON(w, http.StatusOK, map[string]any{"projects": out, "links": a.listLinks(r)})
}

func (a *API) getProject(w http.ResponseWriter, r *http.Request) error {
	p, t, err := a.projectTarget(r.PathValue("id"))
	if e := check(r, "identity:get_project", t); e != nil {
		return e
	}
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"project": a.project(p)})
}

func (a *API) createProject(w http.ResponseWriter, r *http.Request) error {
	var req v3.ProjectRequest
	if err := decodeObject(r, "project", &req); err != nil {
		return err
	}
	t := policy.Target{DomainID: identity.DefaultDomainID}
	if req.DomainID != nil {
		t.DomainID = *req.DomainID
	}
	if err := check(r, "identity:create_project", t); err != nil {
		return err
	}
	p, err := a.svc.CreateProject(r.Context(), req)
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusCreated, map[string]any{"project": a.project(p)})
}

func (a *API) updateProject(w http.ResponseWriter, r *http.Request) error {
	_, t, err := a.projectTarget(r.PathValue("id"))
	if e := check(r, "identity:update_project", t); e != nil {
		return e
	}
	if err != nil {
		return err
	}
	var req v3.ProjectRequest
	if err := decodeObject(r, "project", &req); err != nil {
		return err
	}
	p, err := a.svc.UpdateProject(r.Context(), t.ProjectID, req)
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"project": a.project(p)})
}

func (a *API) deleteProject(w http.ResponseWriter, r *http.Request) error {
	_, t, err := a.projectTarget(r.PathValue("id"))
	if e := check(r, "identity:delete_project", t); e != nil {
		return e
	}
	if err != nil {
		return err
	}
	if err := a.svc.DeleteProject(r.Context(), t.ProjectID); err != nil {
		return err
	}
	return server.NoContent(w)
}

// ---- users ----

func (a *API) userTarget(id string) (identity.User, policy.Target, error) {
	u, err := a.svc.GetUser(id)
	return u, policy.Target{UserID: id, DomainID: u.DomainID}, err
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) error {
	f, err := filter(r)
	if err != nil {
		return err
	}
	if err := check(r, "identity:list_users", policy.Target{DomainID: f.DomainID}); err != nil {
		return err
	}
	out := []v3.User{}
	for _, u := range a.svc.ListUsers(f) {
		out = append(out, a.user(u))
	}
	return server.JSON(w, http.StatusOK, map[string]any{"users": out, "links": a.listLinks(r)})
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request) error {
	u, t, err := a.userTarget(r.PathValue("id"))
	if e := check(r, "identity:get_user", t); e != nil {
		return e
	}
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"user": a.user(u)})
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request) error {
	var req v3.UserRequest
	if err := decodeObject(r, "user", &req); err != nil {
		return err
	}
	t := policy.Target{DomainID: identity.DefaultDomainID}
	if req.DomainID != nil {
		t.DomainID = *req.DomainID
	}
	if err := check(r, "identity:create_user", t); err != nil {
		return err
	}
	u, err := a.svc.CreateUser(r.Context(), req)
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusCreated, map[string]any{"user": a.user(u)})
}

func (a *API) updateUser(w http.ResponseWriter, r *http.Request) error {
	_, t, err := a.userTarget(r.PathValue("id"))
	if e := check(r, "identity:update_user", t); e != nil {
		return e
	}
	if err != nil {
		return err
	}
	var req v3.UserRequest
	if err := decodeObject(r, "user", &req); err != nil {
		return err
	}
	u, err := a.svc.UpdateUser(r.Context(), t.UserID, req)
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"user": a.user(u)})
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request) error {
	_, t, err := a.userTarget(r.PathValue("id"))
	if e := check(r, "identity:delete_user", t); e != nil {
		return e
	}
	if err != nil {
		return err
	}
	if err := a.svc.DeleteUser(r.Context(), t.UserID); err != nil {
		return err
	}
	return server.NoContent(w)
}

func (a *API) changePassword(w http.ResponseWriter, r *http.Request) error {
	_, t, err := a.userTarget(r.PathValue("id"))
	if e := check(r, "identity:change_password", t); e != nil {
		return e
	}
	if err != nil {
		return err
	}
	var req v3.PasswordChange
	if err := decodeObject(r, "user", &req); err != nil {
		return err
	}
	if err := a.svc.ChangePassword(r.Context(), t.UserID, req); err != nil {
		return err
	}
	return server.NoContent(w)
}

func (a *API) userProjects(w http.ResponseWriter, r *http.Request) error {
	_, t, err := a.userTarget(r.PathValue("id"))
	if e := check(r, "identity:list_user_projects", t); e != nil {
		return e
	}
	if err != nil {
		return err
	}
	out := []v3.Project{}
	for _, p := range a.svc.UserProjects(t.UserID) {
		out = append(out, a.project(p))
	}
	return server.JSON(w, http.StatusOK, map[string]any{"projects": out, "links": a.listLinks(r)})
}

// userGroups answers that the user is in no group: nimbo has no groups yet.
func (a *API) userGroups(w http.ResponseWriter, r *http.Request) error {
	_, t, err := a.userTarget(r.PathValue("id"))
	if e := check(r, "identity:get_user", t); e != nil {
		return e
	}
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"groups": []any{}, "links": a.listLinks(r)})
}
