package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOpenrc checks the openrc contract: the variables, their values, and
// that a real shell sourcing the file gets the same.
func TestOpenrc(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	s := c.startReady()
	env := c.openrc()
	want := map[string]string{
		"OS_AUTH_URL":             authURL,
		"OS_USERNAME":             "admin",
		"OS_PASSWORD":             c.password,
		"OS_PROJECT_NAME":         "admin",
		"OS_USER_DOMAIN_NAME":     "Default",
		"OS_PROJECT_DOMAIN_NAME":  "Default",
		"OS_IDENTITY_API_VERSION": "3",
		"OS_REGION_NAME":          "RegionOne",
	}
	for k, v := range want {
		if got, ok := env[k]; !ok {
			t.Errorf("openrc lacks %s", k)
		} else if got != v {
			t.Errorf("openrc: %s=%q, want %q", k, got, v)
		}
	}

	// What sh gets from sourcing the file must match what we parsed.
	out, err := exec.Command("/bin/sh", "-c", `set -e; . "$1"; env`, "sh", filepath.Join(c.dataDir, "openrc")).Output()
	if err != nil {
		t.Fatalf("sourcing openrc with sh: %v", err)
	}
	shellEnv := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "OS_") {
			shellEnv[k] = v
		}
	}
	for k, v := range env {
		if shellEnv[k] != v {
			t.Errorf("sh sourcing openrc: %s=%q, parser says %q", k, shellEnv[k], v)
		}
	}
	// The final block tells where the credentials are.
	if rc := filepath.Join(c.dataDir, "openrc"); !strings.Contains(s.output(), rc) {
		t.Errorf("nimbo up's output does not mention %s:\n%s", rc, s.output())
	}
}

// TestOpenstackCLI drives the cloud with Debian's python3-openstackclient.
func TestOpenstackCLI(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	c.startReady()
	admin := c.openrc()

	// Token and catalog.
	var tok struct {
		ID        string `json:"id"`
		Expires   string `json:"expires"`
		ProjectID string `json:"project_id"`
		UserID    string `json:"user_id"`
	}
	c.osJSON(admin, &tok, "token", "issue")
	if tok.ID == "" || tok.ProjectID == "" || tok.UserID == "" {
		t.Errorf("token issue: missing fields in %+v", tok)
	}
	// openstackclient prints strftime('%Y-%m-%dT%H:%M:%S%z').
	if exp, err := time.Parse("2006-01-02T15:04:05-0700", tok.Expires); err != nil {
		t.Errorf("token issue: expires %q: %v", tok.Expires, err)
	} else if !exp.After(time.Now().Add(30 * time.Minute)) {
		t.Errorf("token issue: expires %v, want more than 30 minutes from now", exp)
	}

	var catalog []struct {
		Name      string          `json:"Name"`
		Type      string          `json:"Type"`
		Endpoints json.RawMessage `json:"Endpoints"`
	}
	c.osJSON(admin, &catalog, "catalog", "list")
	foundIdentity := false
	for _, e := range catalog {
		if e.Type != "identity" {
			continue
		}
		foundIdentity = true
		eps := string(e.Endpoints)
		for _, want := range []string{"public", "internal", "admin", "RegionOne", authURL} {
			if !strings.Contains(eps, want) {
				t.Errorf("catalog list: identity endpoints lack %q: %s", want, eps)
			}
		}
	}
	if !foundIdentity {
		t.Errorf("catalog list: no identity service in %+v", catalog)
	}

	// Project, user, role assignment.
	var project struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		DomainID string `json:"domain_id"`
		Enabled  bool   `json:"enabled"`
	}
	c.osJSON(admin, &project, "project", "create", "demo")
	if project.ID == "" || project.Name != "demo" || !project.Enabled || project.DomainID == "" {
		t.Errorf("project create demo: got %+v", project)
	}
	c.osFail(admin, []string{"Conflict", "HTTP 409"}, "project", "create", "demo")

	var user struct {
		ID               string `json:"id"`
		Name             string `json:"name"`
		DefaultProjectID string `json:"default_project_id"`
		Enabled          bool   `json:"enabled"`
	}
	c.osJSON(admin, &user, "user", "create", "--password", "s3cret", "--project", "demo", "alice")
	if user.ID == "" || user.Name != "alice" || !user.Enabled || user.DefaultProjectID != project.ID {
		t.Errorf("user create alice: got %+v, want default_project_id %s", user, project.ID)
	}
	if out := c.osOK(admin, "role", "add", "--project", "demo", "--user", "alice", "member"); strings.TrimSpace(out) != "" {
		t.Logf("role add printed %q", out)
	}

	// As alice.
	alice := withEnv(admin, "OS_USERNAME", "alice", "OS_PASSWORD", "s3cret", "OS_PROJECT_NAME", "demo")
	var aliceTok struct {
		ID        string `json:"id"`
		ProjectID string `json:"project_id"`
		UserID    string `json:"user_id"`
	}
	c.osJSON(alice, &aliceTok, "token", "issue")
	if aliceTok.ID == "" || aliceTok.ProjectID != project.ID || aliceTok.UserID != user.ID {
		t.Errorf("alice's token issue: got %+v, want project %s and user %s", aliceTok, project.ID, user.ID)
	}
	c.osFail(alice, []string{"HTTP 403"}, "user", "list")

	// Listings as admin.
	var projects []struct{ ID, Name string }
	c.osJSON(admin, &projects, "project", "list")
	assertNames(t, "project list", projects, "admin", "demo")
	var users []struct{ ID, Name string }
	c.osJSON(admin, &users, "user", "list")
	assertNames(t, "user list", users, "admin", "alice")
	var roles []struct{ ID, Name string }
	c.osJSON(admin, &roles, "role", "list")
	assertNames(t, "role list", roles, "admin", "member")

	var assignments []struct {
		Role, User, Group, Project, Domain string
		Inherited                          bool
	}
	c.osJSON(admin, &assignments, "role", "assignment", "list", "--project", "demo", "--names")
	if len(assignments) != 1 {
		t.Errorf("role assignment list --project demo: want exactly alice's member role, got %+v", assignments)
	}
	found := false
	for _, a := range assignments {
		if a.Role == "member" && strings.HasPrefix(a.User, "alice") && strings.HasPrefix(a.Project, "demo") {
			found = true
		}
	}
	if !found {
		t.Errorf("role assignment list --project demo --names: no member/alice/demo in %+v", assignments)
	}

	var shown struct {
		ID, Name string
		DomainID string `json:"domain_id"`
		Enabled  bool
	}
	c.osJSON(admin, &shown, "project", "show", "demo")
	if shown.ID != project.ID || shown.Name != "demo" || !shown.Enabled || shown.DomainID != project.DomainID {
		t.Errorf("project show demo: got %+v, want %+v", shown, project)
	}

	// Disable and enable alice.
	c.osOK(admin, "user", "set", "--disable", "alice")
	var aliceShown struct {
		Name    string
		Enabled bool
	}
	c.osJSON(admin, &aliceShown, "user", "show", "alice")
	if aliceShown.Enabled {
		t.Errorf("user show alice after --disable: %+v", aliceShown)
	}
	c.osFail(alice, []string{"HTTP 401"}, "token", "issue")
	c.osOK(admin, "user", "set", "--enable", "alice")
	c.osOK(alice, "token", "issue")

	// Change alice's password: the old one stops working.
	c.osOK(admin, "user", "set", "--password", "newpw", "alice")
	c.osFail(alice, []string{"HTTP 401"}, "token", "issue")
	c.osOK(withEnv(alice, "OS_PASSWORD", "newpw"), "token", "issue")

	// Delete.
	c.osOK(admin, "user", "delete", "alice")
	users = nil
	c.osJSON(admin, &users, "user", "list")
	for _, u := range users {
		if u.Name == "alice" {
			t.Errorf("user list after delete still has alice: %+v", users)
		}
	}
	c.osFail(admin, []string{"No user with a name or ID of 'alice' exists."}, "user", "show", "alice")
	c.osOK(admin, "project", "delete", "demo")
	projects = nil
	c.osJSON(admin, &projects, "project", "list")
	for _, p := range projects {
		if p.Name == "demo" {
			t.Errorf("project list after delete still has demo: %+v", projects)
		}
	}
	c.osFail(admin, []string{"No project with a name or ID of 'demo' exists."}, "project", "show", "demo")
}

// assertNames checks that every name in want is among the listed items.
func assertNames(t *testing.T, what string, items []struct{ ID, Name string }, want ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, it := range items {
		if it.ID == "" {
			t.Errorf("%s: item %+v has no ID", what, it)
		}
		have[it.Name] = true
	}
	for _, w := range want {
		if !have[w] {
			t.Errorf("%s: %q missing from %+v", what, w, items)
		}
	}
}

// ctxT returns a context that ends with the test or after d.
func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
