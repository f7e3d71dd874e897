package e2e

import (
	"maps"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/roles"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"
)

// TestRestart stops the server with SIGTERM and starts it again on the same
// data dir: the cloud must be the same one.
func TestRestart(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	first := c.startReady()
	env := c.openrc()
	ctx := ctxT(t, 2*time.Minute)

	id := c.identity(ctx, adminAuthOptions(env))
	adminBefore, err := tokens.Get(ctx, id, id.Token()).ExtractUser()
	fatalIf(t, err, "admin's token")
	tokenBefore := id.Token()
	p, err := projects.Create(ctx, id, projects.CreateOpts{Name: "survivor"}).Extract()
	fatalIf(t, err, "create project")
	u, err := users.Create(ctx, id, users.CreateOpts{Name: "carol", Password: "carol-pw", DefaultProjectID: p.ID}).Extract()
	fatalIf(t, err, "create user")
	rs, err := roles.ExtractRoles(allPages(t, roles.List(id, roles.ListOpts{Name: "member"})))
	fatalIf(t, err, "roles?name=member")
	if len(rs) != 1 {
		t.Fatalf("roles?name=member = %+v", rs)
	}
	fatalIf(t, roles.Assign(ctx, id, rs[0].ID, roles.AssignOpts{UserID: u.ID, ProjectID: p.ID}).ExtractErr(), "assign member")

	if code := first.stop(); code != 0 {
		t.Errorf("nimbo up exited with %s after SIGTERM, want exit status 0", first.exitStatus())
	}
	if conn, err := c.ns.DialContext(ctx, "tcp", listenAddr); err == nil {
		conn.Close()
		t.Errorf("something still listens on %s after nimbo up exited", listenAddr)
	}
	if pids, err := c.ns.PIDs(); err != nil || len(pids) != 0 {
		t.Errorf("processes left in the namespace after nimbo up exited: %v (%v)", pids, err)
	}

	// Resume the way nimbo up's own message says: without --admin-password.
	c.resume = true
	second := c.startReady()
	if env2 := c.openrc(); !maps.Equal(env, env2) {
		t.Errorf("openrc changed across the restart:\nbefore %v\nafter  %v", env, env2)
	}
	// The admin password from openrc still works, and it is the same admin.
	id = c.identity(ctx, adminAuthOptions(env))
	adminAfter, err := tokens.Get(ctx, id, id.Token()).ExtractUser()
	fatalIf(t, err, "admin's token after restart")
	if adminAfter.ID != adminBefore.ID {
		t.Errorf("admin user ID changed across the restart: %s -> %s (cloud re-bootstrapped?)", adminBefore.ID, adminAfter.ID)
	}
	got, err := projects.Get(ctx, id, p.ID).Extract()
	if err != nil || got.Name != "survivor" {
		t.Errorf("project after restart: %+v, %v; want survivor", got, err)
	}
	ps, err := projects.ExtractProjects(allPages(t, projects.List(id, projects.ListOpts{Name: "survivor"})))
	if err != nil || len(ps) != 1 || ps[0].ID != p.ID {
		t.Errorf("projects?name=survivor after restart = %+v, %v", ps, err)
	}
	carol := tokens.Create(ctx, id, &tokens.AuthOptions{Username: "carol", Password: "carol-pw", DomainName: "Default", Scope: tokens.Scope{ProjectID: p.ID}})
	checkToken(t, "carol's token after restart", carol, u.ID, p.ID, "member")
	// A token issued before the restart is still valid (Keystone's fernet
	// tokens survive restarts; long-running clients rely on it).
	if ok, err := tokens.Validate(ctx, id, tokenBefore); err != nil || !ok {
		t.Errorf("token issued before the restart: valid=%v err=%v, want still valid", ok, err)
	}
	// And the CLI sees the same cloud.
	var shown struct{ ID, Name string }
	c.osJSON(env, &shown, "project", "show", "survivor")
	if shown.ID != p.ID {
		t.Errorf("openstack project show survivor after restart = %+v, want id %s", shown, p.ID)
	}

	if code := second.stop(); code != 0 {
		t.Errorf("second nimbo up exited with %s after SIGTERM, want exit status 0", second.exitStatus())
	}
}
