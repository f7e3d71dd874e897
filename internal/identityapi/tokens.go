package identityapi

import (
	"net/http"

	v3 "github.com/nimbo-cloud/nimbo/api/identity/v3"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/identity"
	"github.com/nimbo-cloud/nimbo/internal/jsondec"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/server"
)

func domainRef(d identity.Domain) v3.DomainRef { return v3.DomainRef{ID: d.ID, Name: d.Name} }

// tokenBody renders a token as Keystone does.
func (a *API) tokenBody(t *identity.Token, withCatalog bool) v3.TokenBody {
	b := v3.Token{Methods: t.Methods, AuditIDs: t.AuditIDs,
		ExpiresAt: t.ExpiresAt.UTC().Format(v3.TimeFormat), IssuedAt: t.IssuedAt.UTC().Format(v3.TimeFormat),
		User: v3.TokenUser{ID: t.User.ID, Name: t.User.Name, Domain: domainRef(t.UserDomain)}}
	switch {
	case t.Project != nil:
		b.Project = &v3.TokenProject{ID: t.Project.ID, Name: t.Project.Name, Domain: domainRef(*t.ProjectDomain)}
		f := false
		b.IsDomain = &f
	case t.Domain != nil:
		d := domainRef(*t.Domain)
		b.Domain = &d
	case t.System:
		b.System = map[string]bool{identity.SystemAll: true}
	}
	for _, r := range t.Roles {
		b.Roles = append(b.Roles, v3.RoleRef{ID: r.ID, Name: r.Name})
	}
	if t.AppCred != nil {
		b.ApplicationCredential = &v3.TokenAppCred{ID: t.AppCred.ID, Name: t.AppCred.Name, Restricted: !t.AppCred.Unrestricted}
	}
	if withCatalog && t.Scoped() {
		c := a.catalog()
		b.Catalog = &c
	} else if withCatalog {
		c := []v3.CatalogEntry{}
		b.Catalog = &c
	}
	return v3.TokenBody{Token: b}
}

func (a *API) catalog() []v3.CatalogEntry {
	out := []v3.CatalogEntry{}
	for _, e := range a.svc.Catalog() {
		ce := v3.CatalogEntry{ID: e.Service.ID, Type: e.Service.Type, Name: e.Service.Name, Endpoints: []v3.CatalogEndpoint{}}
		for _, ep := range e.Endpoints {
			ce.Endpoints = append(ce.Endpoints, v3.CatalogEndpoint{ID: ep.ID, Interface: ep.Interface, Region: ep.RegionID, RegionID: ep.RegionID, URL: ep.URL})
		}
		out = append(out, ce)
	}
	return out
}

func (a *API) issueToken(w http.ResponseWriter, r *http.Request) error {
	var req v3.AuthRequest
	if err := jsondec.Decode(r.Body, &req, false); err != nil {
		return err
	}
	t, err := a.svc.Authenticate(r.Context(), &req)
	if err != nil {
		return err
	}
	w.Header().Set("X-Subject-Token", t.ID)
	return server.JSON(w, http.StatusCreated, a.tokenBody(t, !r.URL.Query().Has("nocatalog")))
}

// subject validates the X-Subject-Token of r after checking that the caller
// may act on it.
func (a *API) subject(r *http.Request, action string) (*identity.Token, error) {
	id := r.Header.Get("X-Subject-Token")
	if id == "" {
		return nil, errdefs.Invalidf("Invalid input for header 'X-Subject-Token': it is required.")
	}
	t, err := a.svc.Validate(r.Context(), id)
	if err != nil {
		// Only those who may validate any token learn that it is invalid.
		if e := check(r, action, policy.Target{}); e != nil {
			return nil, e
		}
		return nil, err
	}
	if err := check(r, action, policy.Target{UserID: t.User.ID}); err != nil {
		return nil, err
	}
	return t, nil
}

func (a *API) validateToken(w http.ResponseWriter, r *http.Request) error {
	t, err := a.subject(r, "identity:validate_token")
	if err != nil {
		return err
	}
	w.Header().Set("X-Subject-Token", t.ID)
	return server.JSON(w, http.StatusOK, a.tokenBody(t, !r.URL.Query().Has("nocatalog")))
}

func (a *API) checkToken(w http.ResponseWriter, r *http.Request) error {
	t, err := a.subject(r, "identity:check_token")
	if err != nil {
		return err
	}
	w.Header().Set("X-Subject-Token", t.ID)
	w.WriteHeader(http.StatusOK)
	return nil
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) error {
	t, err := a.subject(r, "identity:revoke_token")
	if err != nil {
		return err
	}
	if err := a.svc.Revoke(r.Context(), t); err != nil {
		return err
	}
	return server.NoContent(w)
}

func (a *API) authCatalog(w http.ResponseWriter, r *http.Request) error {
	if !server.TokenFrom(r.Context()).Scoped() {
		return errdefs.Forbiddenf("The service catalog needs a scoped token.")
	}
	return server.JSON(w, http.StatusOK, v3.CatalogBody{Catalog: a.catalog(), Links: v3.Link{"self": a.base + "/v3/auth/catalog"}})
}

func (a *API) authProjects(w http.ResponseWriter, r *http.Request) error {
	out := []v3.Project{}
	for _, p := range a.svc.UserProjects(server.TokenFrom(r.Context()).User.ID) {
		out = append(out, a.project(p))
	}
	return server.JSON(w, http.StatusOK, map[string]any{"projects": out, "links": a.listLinks(r)})
}

func (a *API) authDomains(w http.ResponseWriter, r *http.Request) error {
	out := []v3.Domain{}
	for _, d := range a.svc.UserDomains(server.TokenFrom(r.Context()).User.ID) {
		out = append(out, a.domain(d))
	}
	return server.JSON(w, http.StatusOK, map[string]any{"domains": out, "links": a.listLinks(r)})
}

func (a *API) authSystem(w http.ResponseWriter, r *http.Request) error {
	out := []map[string]bool{}
	if a.svc.HasSystemRoles(server.TokenFrom(r.Context()).User.ID) {
		out = append(out, map[string]bool{identity.SystemAll: true})
	}
	return server.JSON(w, http.StatusOK, map[string]any{"system": out, "links": a.listLinks(r)})
}
