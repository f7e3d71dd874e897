package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/applicationcredentials"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/catalog"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/domains"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/endpoints"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/roles"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/services"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"
	"github.com/gophercloud/gophercloud/v2/pagination"
)

// expiresAtRE is Keystone's expires_at format, %Y-%m-%dT%H:%M:%S.%fZ.
var expiresAtRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$`)

// TestGophercloudIdentity drives the identity API with gophercloud v2.
func TestGophercloudIdentity(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	c.startReady()
	env := c.openrc()
	ctx := ctxT(t, 2*time.Minute)

	// Password auth, project scope; the identity client's endpoint comes
	// from the catalog.
	id := c.identity(ctx, adminAuthOptions(env))
	if want := authURL + "/"; id.Endpoint != want {
		t.Errorf("identity endpoint from the catalog = %q, want %q", id.Endpoint, want)
	}
	// Version discovery from the unversioned root, as with an OS_AUTH_URL
	// lacking /v3 (gophercloud then reads GET /).
	unversioned := adminAuthOptions(env)
	unversioned.IdentityEndpoint = "http://" + listenAddr + "/"
	if _, err := c.provider(ctx, unversioned); err != nil {
		t.Errorf("authenticating through version discovery at %s: %v", unversioned.IdentityEndpoint, err)
	}
	adminTok := tokens.Get(ctx, id, id.Token())
	adminUser, err := adminTok.ExtractUser()
	fatalIf(t, err, "GET /v3/auth/tokens (admin's own token)")
	adminProject, err := adminTok.ExtractProject()
	fatalIf(t, err, "admin token's project")
	if adminUser.Name != "admin" || adminProject == nil || adminProject.Name != "admin" {
		t.Fatalf("admin token: user %+v, project %+v", adminUser, adminProject)
	}
	adminRoles, err := adminTok.ExtractRoles()
	fatalIf(t, err, "admin token's roles")
	if !slices.ContainsFunc(adminRoles, func(r tokens.Role) bool { return r.Name == "admin" }) {
		t.Errorf("admin token roles %+v lack admin", adminRoles)
	}

	// Domain lookup by name, as tempest does.
	ds, err := domains.ExtractDomains(allPages(t, domains.List(id, domains.ListOpts{Name: "Default"})))
	fatalIf(t, err, "domains?name=Default")
	if len(ds) != 1 || ds[0].Name != "Default" {
		t.Fatalf("domains?name=Default = %+v", ds)
	}
	domainID := ds[0].ID

	// Project and user.
	p, err := projects.Create(ctx, id, projects.CreateOpts{Name: "gc-demo", DomainID: domainID, Description: "e2e"}).Extract()
	fatalIf(t, err, "create project")
	if p.ID == "" || p.Name != "gc-demo" || p.DomainID != domainID || !p.Enabled || p.Description != "e2e" {
		t.Errorf("created project = %+v", p)
	}
	ps, err := projects.ExtractProjects(allPages(t, projects.List(id, projects.ListOpts{Name: "gc-demo"})))
	fatalIf(t, err, "projects?name=gc-demo")
	if len(ps) != 1 || ps[0].ID != p.ID {
		t.Errorf("projects?name=gc-demo = %+v, want just %s", ps, p.ID)
	}
	// No default project: a password auth without scope is then unscoped.
	u, err := users.Create(ctx, id, users.CreateOpts{Name: "bob", Password: "bob-pw", DomainID: domainID}).Extract()
	fatalIf(t, err, "create user")
	if u.ID == "" || u.Name != "bob" || u.DomainID != domainID || !u.Enabled {
		t.Errorf("created user = %+v", u)
	}
	got, err := users.Get(ctx, id, u.ID).Extract()
	fatalIf(t, err, "get user")
	if got.Name != "bob" {
		t.Errorf("get user = %+v", got)
	}

	// Role assignment and listings with filters.
	rs, err := roles.ExtractRoles(allPages(t, roles.List(id, roles.ListOpts{Name: "member"})))
	fatalIf(t, err, "roles?name=member")
	if len(rs) != 1 {
		t.Fatalf("roles?name=member = %+v", rs)
	}
	memberID := rs[0].ID
	rs, err = roles.ExtractRoles(allPages(t, roles.List(id, roles.ListOpts{Name: "admin"})))
	fatalIf(t, err, "roles?name=admin")
	if len(rs) != 1 {
		t.Fatalf("roles?name=admin = %+v", rs)
	}
	adminRoleID := rs[0].ID
	fatalIf(t, roles.Assign(ctx, id, memberID, roles.AssignOpts{UserID: u.ID, ProjectID: p.ID}).ExtractErr(), "assign member")

	as := listAssignments(t, id, roles.ListAssignmentsOpts{UserID: u.ID, ScopeProjectID: p.ID})
	if len(as) != 1 || as[0].Role.ID != memberID || as[0].User.ID != u.ID || as[0].Scope.Project.ID != p.ID {
		t.Errorf("role_assignments?user.id&scope.project.id = %+v, want bob's member on gc-demo", as)
	}
	as = listAssignments(t, id, roles.ListAssignmentsOpts{ScopeProjectID: p.ID})
	if len(as) != 1 || as[0].User.ID != u.ID {
		t.Errorf("role_assignments?scope.project.id = %+v, want only bob's", as)
	}
	effective := true
	as = listAssignments(t, id, roles.ListAssignmentsOpts{UserID: u.ID, Effective: &effective})
	if !slices.ContainsFunc(as, func(a roles.RoleAssignment) bool {
		return a.Role.ID == memberID && a.Scope.Project.ID == p.ID
	}) {
		t.Errorf("role_assignments?user.id&effective = %+v, want member on gc-demo", as)
	}
	for _, a := range as {
		if a.User.ID != u.ID || a.Scope.Project.ID != p.ID {
			t.Errorf("role_assignments?user.id&effective: unexpected %+v", a)
		}
	}
	as = listAssignments(t, id, roles.ListAssignmentsOpts{UserID: adminUser.ID, ScopeProjectID: adminProject.ID})
	if !slices.ContainsFunc(as, func(a roles.RoleAssignment) bool { return a.Role.ID == adminRoleID }) {
		t.Errorf("role_assignments for admin on project admin = %+v, want the admin role", as)
	}
	onProject, err := roles.ExtractRoles(allPages(t, roles.ListAssignmentsOnResource(id, roles.ListAssignmentsOnResourceOpts{UserID: u.ID, ProjectID: p.ID})))
	fatalIf(t, err, "GET /v3/projects/{p}/users/{u}/roles")
	if len(onProject) != 1 || onProject[0].ID != memberID {
		t.Errorf("GET /v3/projects/{p}/users/{u}/roles = %+v, want member", onProject)
	}

	// Authenticate as bob.
	bobOpts := gophercloud.AuthOptions{
		IdentityEndpoint: authURL,
		Username:         "bob",
		Password:         "bob-pw",
		DomainID:         domainID,
		Scope:            &gophercloud.AuthScope{ProjectID: p.ID},
	}
	bob := c.identity(ctx, bobOpts)
	bobTokID := bob.Token()
	bobTok := tokens.Get(ctx, id, bobTokID)
	checkToken(t, "bob's token validated by admin", bobTok, u.ID, p.ID, "member")
	if ok, err := tokens.Validate(ctx, id, bobTokID); err != nil || !ok {
		t.Errorf("HEAD /v3/auth/tokens (bob's token) = %v, %v; want valid", ok, err)
	}
	if _, err := users.List(bob, nil).AllPages(ctx); !gophercloud.ResponseCodeIs(err, http.StatusForbidden) {
		t.Errorf("GET /v3/users as a member: err = %v, want 403", err)
	}

	// Re-scope: an unscoped token, then the token method with a project scope.
	unscoped := tokens.Create(ctx, id, &tokens.AuthOptions{Username: "bob", Password: "bob-pw", DomainID: domainID})
	unscopedTok, err := unscoped.ExtractToken()
	fatalIf(t, err, "unscoped password auth")
	if proj, err := unscoped.ExtractProject(); err != nil || proj != nil {
		t.Errorf("unscoped token has project %+v (%v)", proj, err)
	}
	rescoped := tokens.Create(ctx, id, &tokens.AuthOptions{TokenID: unscopedTok.ID, Scope: tokens.Scope{ProjectID: p.ID}})
	rescopedTok := checkToken(t, "re-scoped token", rescoped, u.ID, p.ID, "member")
	if rescopedTok != nil && rescopedTok.ID == unscopedTok.ID {
		t.Errorf("re-scoping returned the same token")
	}

	// Revoke: validation then fails with 404.
	if rescopedTok != nil {
		fatalIf(t, tokens.Revoke(ctx, id, rescopedTok.ID).Err, "DELETE /v3/auth/tokens")
		if _, err := tokens.Get(ctx, id, rescopedTok.ID).ExtractToken(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			t.Errorf("GET /v3/auth/tokens on a revoked token: err = %v, want 404", err)
		}
		if ok, err := tokens.Validate(ctx, id, rescopedTok.ID); err != nil || ok {
			t.Errorf("HEAD /v3/auth/tokens on a revoked token = %v, %v; want not valid", ok, err)
		}
	}
	if ok, err := tokens.Validate(ctx, id, bobTokID); err != nil || !ok {
		t.Errorf("revoking one token invalidated bob's other token: %v, %v", ok, err)
	}

	// Domain scope for admin (after granting admin on the domain, as
	// Keystone requires) and system scope.
	fatalIf(t, roles.Assign(ctx, id, adminRoleID, roles.AssignOpts{UserID: adminUser.ID, DomainID: domainID}).ExtractErr(), "assign admin on domain")
	domTok := tokens.Create(ctx, id, &tokens.AuthOptions{Username: "admin", Password: env["OS_PASSWORD"], DomainName: "Default", Scope: tokens.Scope{DomainID: domainID}})
	if _, err := domTok.ExtractToken(); err != nil {
		t.Errorf("domain-scoped token: %v", err)
	} else {
		d, _ := domTok.ExtractDomain()
		proj, _ := domTok.ExtractProject()
		if d == nil || d.ID != domainID || proj != nil {
			t.Errorf("domain-scoped token: domain %+v, project %+v", d, proj)
		}
	}
	sysTok := tokens.Create(ctx, id, &tokens.AuthOptions{Username: "admin", Password: env["OS_PASSWORD"], DomainName: "Default", Scope: tokens.Scope{System: true}})
	if _, err := sysTok.ExtractToken(); err != nil {
		t.Errorf("system-scoped token: %v", err)
	} else {
		var sys struct {
			System map[string]any `json:"system"`
		}
		if err := sysTok.ExtractInto(&sys); err != nil || sys.System["all"] != true {
			t.Errorf("system-scoped token: system = %v (%v), want {\"all\": true}", sys.System, err)
		}
		if proj, _ := sysTok.ExtractProject(); proj != nil {
			t.Errorf("system-scoped token has project %+v", proj)
		}
	}

	// Application credential: created by bob, then used to authenticate.
	ac, err := applicationcredentials.Create(ctx, bob, u.ID, applicationcredentials.CreateOpts{Name: "e2e-ac", Description: "e2e"}).Extract()
	fatalIf(t, err, "create application credential")
	if ac.ID == "" || ac.Secret == "" || ac.ProjectID != p.ID {
		t.Errorf("created application credential = %+v", ac)
	}
	if !slices.ContainsFunc(ac.Roles, func(r applicationcredentials.Role) bool { return r.ID == memberID || r.Name == "member" }) {
		t.Errorf("application credential roles = %+v, want member", ac.Roles)
	}
	acTok := tokens.Create(ctx, id, &tokens.AuthOptions{ApplicationCredentialID: ac.ID, ApplicationCredentialSecret: ac.Secret})
	checkToken(t, "token from application credential", acTok, u.ID, p.ID, "member")
	var acBody struct {
		AppCred struct {
			ID string `json:"id"`
		} `json:"application_credential"`
	}
	if err := acTok.ExtractInto(&acBody); err == nil && acBody.AppCred.ID != ac.ID {
		t.Errorf("token from application credential: application_credential.id = %q, want %q", acBody.AppCred.ID, ac.ID)
	}
	byName := tokens.Create(ctx, id, &tokens.AuthOptions{ApplicationCredentialName: "e2e-ac", UserID: u.ID, ApplicationCredentialSecret: ac.Secret})
	checkToken(t, "token from application credential by name", byName, u.ID, p.ID, "member")
	bad := tokens.Create(ctx, id, &tokens.AuthOptions{ApplicationCredentialID: ac.ID, ApplicationCredentialSecret: "wrong"})
	if !gophercloud.ResponseCodeIs(bad.Err, http.StatusUnauthorized) {
		t.Errorf("application credential with a wrong secret: err = %v, want 401", bad.Err)
	}
	// The path clients (clouds.yaml, Terraform) take.
	if _, err := c.provider(ctx, gophercloud.AuthOptions{IdentityEndpoint: authURL, ApplicationCredentialID: ac.ID, ApplicationCredentialSecret: ac.Secret}); err != nil {
		t.Errorf("openstack.Authenticate with an application credential: %v", err)
	}
	acs, err := applicationcredentials.ExtractApplicationCredentials(allPages(t, applicationcredentials.List(bob, u.ID, nil)))
	fatalIf(t, err, "list application credentials")
	if len(acs) != 1 || acs[0].ID != ac.ID || acs[0].Secret != "" {
		t.Errorf("application credentials = %+v, want e2e-ac without its secret", acs)
	}

	// Catalog, services and endpoints.
	entries, err := catalog.ExtractServiceCatalog(allPages(t, catalog.List(id)))
	fatalIf(t, err, "GET /v3/auth/catalog")
	checkIdentityCatalog(t, "GET /v3/auth/catalog", entries)
	svcs, err := services.ExtractServices(allPages(t, services.List(id, services.ListOpts{ServiceType: "identity"})))
	fatalIf(t, err, "services?type=identity")
	if len(svcs) != 1 || svcs[0].Type != "identity" || !svcs[0].Enabled {
		t.Fatalf("services?type=identity = %+v", svcs)
	}
	eps, err := endpoints.ExtractEndpoints(allPages(t, endpoints.List(id, endpoints.ListOpts{ServiceID: svcs[0].ID})))
	fatalIf(t, err, "endpoints?service_id")
	var ifaces []string
	for _, e := range eps {
		ifaces = append(ifaces, string(e.Availability))
		if e.Region != "RegionOne" || e.RegionID != "RegionOne" || strings.TrimSuffix(e.URL, "/") != authURL || e.ServiceID != svcs[0].ID {
			t.Errorf("identity endpoint %+v: want region RegionOne, url %s", e, authURL)
		}
	}
	slices.Sort(ifaces)
	if !slices.Equal(ifaces, []string{"admin", "internal", "public"}) {
		t.Errorf("identity endpoints' interfaces = %v, want admin, internal, public", ifaces)
	}

	checkRawTokenResponse(t, c, env)

	// Delete.
	fatalIf(t, users.Delete(ctx, id, u.ID).ExtractErr(), "delete user")
	if _, err := users.Get(ctx, id, u.ID).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("get deleted user: err = %v, want 404", err)
	}
	if ok, err := tokens.Validate(ctx, id, bobTokID); err != nil || ok {
		t.Errorf("deleted user's token still valid: %v, %v", ok, err)
	}
	fatalIf(t, projects.Delete(ctx, id, p.ID).ExtractErr(), "delete project")
	if _, err := projects.Get(ctx, id, p.ID).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("get deleted project: err = %v, want 404", err)
	}
}

// checkIdentityCatalog checks that a catalog has the identity service with
// public, internal and admin endpoints in RegionOne.
func checkIdentityCatalog(t *testing.T, what string, entries []tokens.CatalogEntry) {
	t.Helper()
	for _, e := range entries {
		if e.Type != "identity" {
			continue
		}
		var ifaces []string
		for _, ep := range e.Endpoints {
			ifaces = append(ifaces, ep.Interface)
			if ep.Region != "RegionOne" || ep.RegionID != "RegionOne" || strings.TrimSuffix(ep.URL, "/") != authURL {
				t.Errorf("%s: identity endpoint %+v, want region and region_id RegionOne, url %s", what, ep, authURL)
			}
		}
		slices.Sort(ifaces)
		if !slices.Equal(ifaces, []string{"admin", "internal", "public"}) {
			t.Errorf("%s: identity interfaces %v, want admin, internal, public", what, ifaces)
		}
		return
	}
	t.Errorf("%s: no identity service in %+v", what, entries)
}

// checkRawTokenResponse checks the wire format of POST /v3/auth/tokens and
// GET / that clients depend on, below gophercloud's struct decoding.
func checkRawTokenResponse(t *testing.T, c *cloud, env map[string]string) {
	t.Helper()
	hc := c.ns.HTTPClient()
	body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"name":"Default"},"password":` +
		mustJSON(env["OS_PASSWORD"]) + `}}},"scope":{"project":{"name":"admin","domain":{"name":"Default"}}}}}`
	resp, err := hc.Post(authURL+"/auth/tokens", "application/json", strings.NewReader(body))
	fatalIf(t, err, "POST /v3/auth/tokens")
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("X-Subject-Token") == "" {
		t.Fatalf("POST /v3/auth/tokens: %s, X-Subject-Token %q, body %s; want 201 with a token", resp.Status, resp.Header.Get("X-Subject-Token"), raw)
	}
	var tok struct {
		Token struct {
			ExpiresAt string `json:"expires_at"`
			IssuedAt  string `json:"issued_at"`
			Methods   []string
			Catalog   []struct {
				Type      string
				Name      string
				ID        string
				Endpoints []map[string]any
			}
		}
	}
	fatalIf(t, json.Unmarshal(raw, &tok), "decoding POST /v3/auth/tokens")
	if !expiresAtRE.MatchString(tok.Token.ExpiresAt) {
		t.Errorf("token expires_at %q, want %%Y-%%m-%%dT%%H:%%M:%%S.%%fZ", tok.Token.ExpiresAt)
	}
	if !slices.Equal(tok.Token.Methods, []string{"password"}) {
		t.Errorf("token methods %v, want [password]", tok.Token.Methods)
	}
	foundIdentity := false
	for _, e := range tok.Token.Catalog {
		if e.Type == "identity" {
			foundIdentity = true
		}
		if e.Name == "" || e.ID == "" {
			t.Errorf("catalog entry %q lacks name or id", e.Type)
		}
		for _, ep := range e.Endpoints {
			for _, k := range []string{"id", "interface", "region", "region_id", "url"} {
				if _, ok := ep[k]; !ok {
					t.Errorf("catalog %s endpoint %v lacks %q", e.Type, ep, k)
				}
			}
		}
	}
	if !foundIdentity {
		t.Errorf("token catalog has no identity service: %s", raw)
	}

	// GET / -> 300 with the versions.
	resp, err = hc.Get("http://" + listenAddr + "/")
	fatalIf(t, err, "GET /")
	raw, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMultipleChoices || !bytes.Contains(raw, []byte(`"v3`)) {
		t.Errorf("GET /: %s %s; want 300 with the v3 version", resp.Status, raw)
	}
}

// checkToken checks a token result's user, project and roles; it returns
// the token, or nil when the result is an error.
func checkToken(t *testing.T, what string, r tokenResult, userID, projectID, role string) *tokens.Token {
	t.Helper()
	tok, err := r.ExtractToken()
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return nil
	}
	if tok.ID == "" || !tok.ExpiresAt.After(time.Now()) {
		t.Errorf("%s: id %q, expires %v", what, tok.ID, tok.ExpiresAt)
	}
	user, err := r.ExtractUser()
	if err != nil || user == nil || user.ID != userID {
		t.Errorf("%s: user %+v (%v), want %s", what, user, err, userID)
	}
	proj, err := r.ExtractProject()
	if err != nil || proj == nil || proj.ID != projectID {
		t.Errorf("%s: project %+v (%v), want %s", what, proj, err, projectID)
	}
	rs, err := r.ExtractRoles()
	if err != nil || !slices.ContainsFunc(rs, func(x tokens.Role) bool { return x.Name == role }) {
		t.Errorf("%s: roles %+v (%v), want %s", what, rs, err, role)
	}
	return tok
}

// tokenResult is what tokens.CreateResult and tokens.GetResult share.
type tokenResult interface {
	ExtractToken() (*tokens.Token, error)
	ExtractUser() (*tokens.User, error)
	ExtractProject() (*tokens.Project, error)
	ExtractRoles() ([]tokens.Role, error)
}

func listAssignments(t *testing.T, id *gophercloud.ServiceClient, opts roles.ListAssignmentsOpts) []roles.RoleAssignment {
	t.Helper()
	as, err := roles.ExtractRoleAssignments(allPages(t, roles.ListAssignments(id, opts)))
	fatalIf(t, err, "GET /v3/role_assignments")
	return as
}

func allPages(t *testing.T, p pagination.Pager) pagination.Page {
	t.Helper()
	page, err := p.AllPages(ctxT(t, time.Minute))
	fatalIf(t, err, "listing")
	return page
}

func fatalIf(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
