package identityapi

import (
	"net/http"

	v3 "github.com/nimbo-cloud/nimbo/api/identity/v3"
	"github.com/nimbo-cloud/nimbo/internal/identity"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/server"
)

func (a *API) appCred(ac identity.AppCred, secret string) v3.ApplicationCredential {
	out := v3.ApplicationCredential{ID: ac.ID, Name: ac.Name, Description: ac.Description, UserID: ac.UserID,
		ProjectID: ac.ProjectID, Unrestricted: ac.Unrestricted, AccessRules: []any{}, Secret: secret, Roles: []v3.AppCredRole{},
		Links: a.link("/v3/users/" + ac.UserID + "/application_credentials/" + ac.ID)}
	if ac.ExpiresAt != nil {
		s := ac.ExpiresAt.UTC().Format(v3.TimeFormat)
		out.ExpiresAt = &s
	}
	for _, id := range ac.RoleIDs {
		ref := a.roleRef(id)
		out.Roles = append(out.Roles, v3.AppCredRole{ID: ref.ID, Name: ref.Name})
	}
	return out
}

func (a *API) createAppCred(w http.ResponseWriter, r *http.Request) error {
	user := r.PathValue("user")
	if err := check(r, "identity:create_application_credential", policy.Target{UserID: user}); err != nil {
		return err
	}
	var req v3.AppCredRequest
	if err := decodeObject(r, "application_credential", &req); err != nil {
		return err
	}
	ac, secret, err := a.svc.CreateAppCred(r.Context(), server.TokenFrom(r.Context()), user, req)
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusCreated, map[string]any{"application_credential": a.appCred(ac, secret)})
}

func (a *API) listAppCreds(w http.ResponseWriter, r *http.Request) error {
	user := r.PathValue("user")
	if err := check(r, "identity:list_application_credentials", policy.Target{UserID: user}); err != nil {
		return err
	}
	if _, err := a.svc.GetUser(user); err != nil {
		return err
	}
	out := []v3.ApplicationCredential{}
	for _, ac := range a.svc.ListAppCreds(user, r.URL.Query().Get("name")) {
		out = append(out, a.appCred(ac, ""))
	}
	return server.JSON(w, http.StatusOK, map[string]any{"application_credentials": out, "links": a.listLinks(r)})
}

func (a *API) getAppCred(w http.ResponseWriter, r *http.Request) error {
	user := r.PathValue("user")
	if err := check(r, "identity:get_application_credential", policy.Target{UserID: user}); err != nil {
		return err
	}
	ac, err := a.svc.GetAppCred(user, r.PathValue("id"))
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"application_credential": a.appCred(ac, "")})
}

func (a *API) deleteAppCred(w http.ResponseWriter, r *http.Request) error {
	user := r.PathValue("user")
	if err := check(r, "identity:delete_application_credential", policy.Target{UserID: user}); err != nil {
		return err
	}
	if err := a.svc.DeleteAppCred(r.Context(), user, r.PathValue("id")); err != nil {
		return err
	}
	return server.NoContent(w)
}
