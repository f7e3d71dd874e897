// Package identityapi serves the Keystone v3 API over the identity service:
// it decodes requests, checks policy (internal/policy) for every call, calls
// internal/identity and renders Keystone's JSON exactly as clients expect.
package identityapi

import (
	"encoding/json"
	"net/http"
	"strings"

	v3 "github.com/nimbo-cloud/nimbo/api/identity/v3"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/identity"
	"github.com/nimbo-cloud/nimbo/internal/jsondec"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/server"
)

// API is the Keystone v3 HTTP API.
type API struct {
	svc  *identity.Service
	base string // public base URL, e.g. http://10.0.0.5:5000
}

// Register adds the identity routes to srv. base is the public base URL.
func Register(srv *server.Server, svc *identity.Service, base string) *API {
	a := &API{svc: svc, base: strings.TrimSuffix(base, "/")}
	pub := func(p string, h server.HandlerFunc) { srv.Public(server.Keystone, p, h) }
	authed := func(p string, h server.HandlerFunc) { srv.Authed(server.Keystone, p, h) }

	pub("GET /{$}", a.versions)
	pub("GET /v3", a.version)
	pub("GET /v3/{$}", a.version)
	pub("POST /v3/auth/tokens", a.issueToken)
	authed("GET /v3/auth/tokens", a.validateToken)
	authed("HEAD /v3/auth/tokens", a.checkToken)
	authed("DELETE /v3/auth/tokens", a.revokeToken)
	authed("GET /v3/auth/catalog", a.authCatalog)
	authed("GET /v3/auth/projects", a.authProjects)
	authed("GET /v3/auth/domains", a.authDomains)
	authed("GET /v3/auth/system", a.authSystem)

	authed("GET /v3/domains", a.listDomains)
	authed("POST /v3/domains", a.createDomain)
	authed("GET /v3/domains/{id}", a.getDomain)
	authed("PATCH /v3/domains/{id}", a.updateDomain)
	authed("DELETE /v3/domains/{id}", a.deleteDomain)

	authed("GET /v3/projects", a.listProjects)
	authed("POST /v3/projects", a.createProject)
	authed("GET /v3/projects/{id}", a.getProject)
	authed("PATCH /v3/projects/{id}", a.updateProject)
	authed("DELETE /v3/projects/{id}", a.deleteProject)

	authed("GET /v3/users", a.listUsers)
	authed("POST /v3/users", a.createUser)
	authed("GET /v3/users/{id}", a.getUser)
	authed("PATCH /v3/users/{id}", a.updateUser)
	authed("DELETE /v3/users/{id}", a.deleteUser)
	authed("POST /v3/users/{id}/password", a.changePassword)
	authed("GET /v3/users/{id}/projects", a.userProjects)
	authed("GET /v3/users/{id}/groups", a.userGroups)

	authed("GET /v3/roles", a.listRoles)
	authed("POST /v3/roles", a.createRole)
	authed("GET /v3/roles/{id}", a.getRole)
	authed("PATCH /v3/roles/{id}", a.updateRole)
	authed("DELETE /v3/roles/{id}", a.deleteRole)
	authed("GET /v3/role_inferences", a.roleInferences)
	authed("GET /v3/roles/{id}/implies", a.impliedRoles)
	authed("GET /v3/role_assignments", a.roleAssignments)
	for _, st := range []string{"projects", "domains"} {
		authed("GET /v3/"+st+"/{target}/users/{user}/roles", a.listGrants)
		authed("PUT /v3/"+st+"/{target}/users/{user}/roles/{role}", a.grant)
		authed("HEAD /v3/"+st+"/{target}/users/{user}/roles/{role}", a.checkGrant)
		authed("GET /v3/"+st+"/{target}/users/{user}/roles/{role}", a.checkGrant)
		authed("DELETE /v3/"+st+"/{target}/users/{user}/roles/{role}", a.revokeGrant)
	}
	authed("GET /v3/system/users/{user}/roles", a.listGrants)
	authed("PUT /v3/system/users/{user}/roles/{role}", a.grant)
	authed("HEAD /v3/system/users/{user}/roles/{role}", a.checkGrant)
	authed("GET /v3/system/users/{user}/roles/{role}", a.checkGrant)
	authed("DELETE /v3/system/users/{user}/roles/{role}", a.revokeGrant)

	authed("GET /v3/services", a.listServices)
	authed("GET /v3/services/{id}", a.getService)
	authed("GET /v3/endpoints", a.listEndpoints)
	authed("GET /v3/endpoints/{id}", a.getEndpoint)
	authed("GET /v3/regions", a.listRegions)
	authed("GET /v3/regions/{id}", a.getRegion)

	authed("GET /v3/users/{user}/application_credentials", a.listAppCreds)
	authed("POST /v3/users/{user}/application_credentials", a.createAppCred)
	authed("GET /v3/users/{user}/application_credentials/{id}", a.getAppCred)
	authed("DELETE /v3/users/{user}/application_credentials/{id}", a.deleteAppCred)
	return a
}

// decodeObject decodes a body of the form {"<key>": {...}} into v.
func decodeObject(r *http.Request, key string, v any) error {
	var outer map[string]json.RawMessage
	if err := jsondec.Decode(r.Body, &outer, false); err != nil {
		return err
	}
	raw, ok := outer[key]
	if !ok || string(raw) == "null" {
		return errdefs.Invalidf("Invalid input for field '%s': it is a required property.", key)
	}
	if len(raw) == 0 || raw[0] != '{' {
		return errdefs.Invalidf("Invalid input for field '%s': expected an object.", key)
	}
	return jsondec.DecodeBytes(raw, v, false)
}

// check applies policy for the caller of r.
func check(r *http.Request, action string, t policy.Target) error {
	return policy.Check(action, server.TokenFrom(r.Context()).Creds(), t)
}

func (a *API) link(path string) v3.Link { return v3.Link{"self": a.base + path} }

func (a *API) listLinks(r *http.Request) v3.Link {
	u := a.base + r.URL.Path
	if r.URL.RawQuery != "" {
		u += "?" + r.URL.RawQuery
	}
	return v3.Link{"self": u, "previous": nil, "next": nil}
}

// boolQuery parses an optional boolean query parameter (Keystone accepts
// true/false/1/0 in any case).
func boolQuery(r *http.Request, name string) (*bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		if r.URL.Query().Has(name) {
			t := true
			return &t, nil
		}
		return nil, nil
	}
	switch strings.ToLower(v) {
	case "true", "1", "yes", "on":
		t := true
		return &t, nil
	case "false", "0", "no", "off":
		f := false
		return &f, nil
	}
	return nil, errdefs.Invalidf("Invalid input for query parameter '%s': %q is not a boolean.", name, v)
}

func (a *API) versionDoc() v3.Version {
	return v3.Version{ID: "v3.14", Status: "stable", Updated: "2020-04-07T00:00:00Z",
		Links:      []v3.VerLink{{Rel: "self", Href: a.base + "/v3/"}},
		MediaTypes: []v3.MediaType{{Base: "application/json", Type: "application/vnd.openstack.identity-v3+json"}}}
}

func (a *API) versions(w http.ResponseWriter, _ *http.Request) error {
	var v v3.Versions
	v.Versions.Values = []v3.Version{a.versionDoc()}
	return server.JSON(w, http.StatusMultipleChoices, v)
}

func (a *API) version(w http.ResponseWriter, _ *http.Request) error {
	return server.JSON(w, http.StatusOK, v3.VersionDoc{Version: a.versionDoc()})
}
