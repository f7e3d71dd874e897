package identity_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v3 "github.com/nimbo-cloud/nimbo/api/identity/v3"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/identity"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/store/etcdstore"
)

// clock is a settable fake clock.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func newClock() *clock                   { c := &clock{}; c.ns.Store(time.Now().UnixNano()); return c }
func ptr[T any](v T) *T                  { return &v }

type fixture struct {
	svc   *identity.Service
	clock *clock
	ctx   context.Context
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := etcdstore.Open(ctx, etcdstore.Config{Embedded: &etcdstore.Embedded{Dir: t.TempDir(), UnsafeNoFsync: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c := newClock()
	svc, err := identity.New(ctx, st, identity.Options{Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	if _, err := svc.Bootstrap(ctx, identity.BootstrapConfig{AdminPassword: "adminpw", PublicURL: "http://127.0.0.1:5000"}); err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: svc, clock: c, ctx: ctx}
}

// passwordAuth builds a password auth request scoped as given (raw JSON).
func passwordAuth(user, pw, scope string) *v3.AuthRequest {
	var r v3.AuthRequest
	r.Auth.Identity.Methods = []string{"password"}
	r.Auth.Identity.Password = &v3.PasswordMethod{}
	r.Auth.Identity.Password.User.Name = user
	r.Auth.Identity.Password.User.Domain = &v3.NameID{ID: "default"}
	r.Auth.Identity.Password.User.Password = &pw
	if scope != "" {
		r.Auth.Scope = json.RawMessage(scope)
	}
	return &r
}

const adminProject = `{"project": {"name": "admin", "domain": {"name": "Default"}}}`

func roleNames(t *identity.Token) []string {
	var out []string
	for _, r := range t.Roles {
		out = append(out, r.Name)
	}
	slices.Sort(out)
	return out
}

func mustAuth(t *testing.T, f *fixture, r *v3.AuthRequest) *identity.Token {
	t.Helper()
	tok, err := f.svc.Authenticate(f.ctx, r)
	if err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	return tok
}

func wantKind(t *testing.T, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("got error %v, want one wrapping %v", err, kind)
	}
}

func TestBootstrapAndPasswordAuth(t *testing.T) {
	f := newFixture(t)
	tok := mustAuth(t, f, passwordAuth("admin", "adminpw", adminProject))
	if got := roleNames(tok); !slices.Equal(got, []string{"admin", "member", "reader"}) {
		t.Fatalf("admin roles = %v, want admin, member, reader (implied)", got)
	}
	if tok.Project == nil || tok.Project.Name != "admin" {
		t.Fatalf("token scope = %+v, want project admin", tok.Project)
	}
	if !tok.ExpiresAt.Equal(tok.IssuedAt.Add(identity.DefaultTokenTTL)) {
		t.Fatalf("expiry %v, issued %v", tok.ExpiresAt, tok.IssuedAt)
	}
	got, err := f.svc.Validate(f.ctx, tok.ID)
	if err != nil || got.User.Name != "admin" {
		t.Fatalf("validate: %v %+v", err, got)
	}
	// Unscoped with no scope asked: the admin's default project is used.
	if tok := mustAuth(t, f, passwordAuth("admin", "adminpw", "")); tok.Project == nil {
		t.Fatal("no scope asked: want the default project")
	}
	if tok := mustAuth(t, f, passwordAuth("admin", "adminpw", `"unscoped"`)); tok.Scoped() {
		t.Fatal(`"unscoped" asked, got a scoped token`)
	}
	if tok := mustAuth(t, f, passwordAuth("admin", "adminpw", `{"system": {"all": true}}`)); !tok.System {
		t.Fatal("want a system token")
	}
	_, err = f.svc.Authenticate(f.ctx, passwordAuth("admin", "adminpw", `{"domain": {"id": "default"}}`))
	wantKind(t, err, errdefs.ErrUnauthorized) // admin has no role on the default domain
	// A second bootstrap changes nothing and keeps the password.
	res, err := f.svc.Bootstrap(f.ctx, identity.BootstrapConfig{PublicURL: "http://127.0.0.1:5000"})
	if err != nil || res.New || res.PasswordChanged {
		t.Fatalf("second bootstrap: %+v %v", res, err)
	}
	if _, err := f.svc.Validate(f.ctx, tok.ID); err != nil {
		t.Fatalf("second bootstrap revoked the admin token: %v", err)
	}
}

func TestAuthFailures(t *testing.T) {
	f := newFixture(t)
	cases := map[string]struct {
		req  *v3.AuthRequest
		kind error
	}{
		"wrong password":  {passwordAuth("admin", "nope", adminProject), errdefs.ErrUnauthorized},
		"unknown user":    {passwordAuth("ghost", "adminpw", adminProject), errdefs.ErrUnauthorized},
		"unknown project": {passwordAuth("admin", "adminpw", `{"project": {"name": "nope", "domain": {"id": "default"}}}`), errdefs.ErrUnauthorized},
		"two scopes":      {passwordAuth("admin", "adminpw", `{"project": {"id": "x"}, "domain": {"id": "default"}}`), errdefs.ErrInvalid},
		"bad scope type":  {passwordAuth("admin", "adminpw", `{"project": "admin"}`), errdefs.ErrInvalid},
		"no methods":      {&v3.AuthRequest{}, errdefs.ErrInvalid},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := f.svc.Authenticate(f.ctx, c.req)
			wantKind(t, err, c.kind)
		})
	}
	unknown := passwordAuth("admin", "adminpw", "")
	unknown.Auth.Identity.Methods = []string{"totp"}
	_, err := f.svc.Authenticate(f.ctx, unknown)
	wantKind(t, err, errdefs.ErrUnauthorized)
	missing := passwordAuth("admin", "adminpw", "")
	missing.Auth.Identity.Password.User.Password = nil
	_, err = f.svc.Authenticate(f.ctx, missing)
	wantKind(t, err, errdefs.ErrInvalid)
}

// demo makes project demo and user alice (member of demo) and returns them.
func demo(t *testing.T, f *fixture) (identity.Project, identity.User) {
	t.Helper()
	p, err := f.svc.CreateProject(f.ctx, v3.ProjectRequest{Name: ptr("demo")})
	if err != nil {
		t.Fatal(err)
	}
	u, err := f.svc.CreateUser(f.ctx, v3.UserRequest{Name: ptr("alice"), Password: ptr("s3cret"), DefaultProjectID: &p.ID})
	if err != nil {
		t.Fatal(err)
	}
	member, err := f.svc.FindRole("member")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Grant(f.ctx, identity.Assignment{ScopeType: identity.ScopeProject, ScopeID: p.ID, UserID: u.ID, RoleID: member.ID}); err != nil {
		t.Fatal(err)
	}
	return p, u
}

const demoProject = `{"project": {"name": "demo", "domain": {"id": "default"}}}`

func TestMemberPolicy(t *testing.T) {
	f := newFixture(t)
	demo(t, f)
	tok := mustAuth(t, f, passwordAuth("alice", "s3cret", demoProject))
	if got := roleNames(tok); !slices.Equal(got, []string{"member", "reader"}) {
		t.Fatalf("alice roles = %v", got)
	}
	if err := policy.Check("identity:list_users", tok.Creds(), policy.Target{}); !errors.Is(err, errdefs.ErrForbidden) {
		t.Fatalf("member list_users: %v, want forbidden", err)
	}
	if err := policy.Check("identity:get_user", tok.Creds(), policy.Target{UserID: tok.User.ID}); err != nil {
		t.Fatalf("member get self: %v", err)
	}
	if _, err := f.svc.Authenticate(f.ctx, passwordAuth("alice", "s3cret", adminProject)); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Fatalf("alice scoping to admin project: %v, want unauthorized", err)
	}
}

func TestRevocationTakesEffectAtOnce(t *testing.T) {
	f := newFixture(t)
	p, u := demo(t, f)
	tok := mustAuth(t, f, passwordAuth("alice", "s3cret", demoProject))

	// Token delete.
	if err := f.svc.Revoke(f.ctx, tok); err != nil {
		t.Fatal(err)
	}
	_, err := f.svc.Validate(f.ctx, tok.ID)
	wantKind(t, err, errdefs.ErrNotFound)

	// Disable: old tokens die and stay dead after re-enabling.
	tok = mustAuth(t, f, passwordAuth("alice", "s3cret", demoProject))
	if _, err := f.svc.UpdateUser(f.ctx, u.ID, v3.UserRequest{Enabled: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.Validate(f.ctx, tok.ID)
	wantKind(t, err, errdefs.ErrNotFound)
	_, err = f.svc.Authenticate(f.ctx, passwordAuth("alice", "s3cret", demoProject))
	wantKind(t, err, errdefs.ErrUnauthorized)
	if _, err := f.svc.UpdateUser(f.ctx, u.ID, v3.UserRequest{Enabled: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.Validate(f.ctx, tok.ID)
	wantKind(t, err, errdefs.ErrNotFound)

	// Password change.
	f.clock.advance(time.Millisecond)
	tok = mustAuth(t, f, passwordAuth("alice", "s3cret", demoProject))
	f.clock.advance(time.Millisecond)
	if err := f.svc.ChangePassword(f.ctx, u.ID, v3.PasswordChange{OriginalPassword: ptr("s3cret"), Password: ptr("n3w")}); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.Validate(f.ctx, tok.ID)
	wantKind(t, err, errdefs.ErrNotFound)
	_, err = f.svc.Authenticate(f.ctx, passwordAuth("alice", "s3cret", demoProject))
	wantKind(t, err, errdefs.ErrUnauthorized)
	f.clock.advance(time.Millisecond)
	tok = mustAuth(t, f, passwordAuth("alice", "n3w", demoProject))

	// Losing the role voids the project token.
	member, _ := f.svc.FindRole("member")
	if err := f.svc.RevokeGrant(f.ctx, identity.Assignment{ScopeType: identity.ScopeProject, ScopeID: p.ID, UserID: u.ID, RoleID: member.ID}); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.Validate(f.ctx, tok.ID)
	wantKind(t, err, errdefs.ErrNotFound)

	// User delete.
	tok = mustAuth(t, f, passwordAuth("alice", "n3w", `"unscoped"`))
	if err := f.svc.DeleteUser(f.ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.Validate(f.ctx, tok.ID)
	wantKind(t, err, errdefs.ErrNotFound)
	if got := f.svc.ListAssignments(identity.AssignmentFilter{UserID: u.ID}); len(got) != 0 {
		t.Fatalf("assignments of a deleted user remain: %v", got)
	}
}

func TestExpiry(t *testing.T) {
	f := newFixture(t)
	tok := mustAuth(t, f, passwordAuth("admin", "adminpw", adminProject))
	f.clock.advance(identity.DefaultTokenTTL + time.Second)
	_, err := f.svc.Validate(f.ctx, tok.ID)
	wantKind(t, err, errdefs.ErrNotFound)
}

func TestRescope(t *testing.T) {
	f := newFixture(t)
	unscoped := mustAuth(t, f, passwordAuth("admin", "adminpw", `"unscoped"`))
	f.clock.advance(time.Minute)
	var r v3.AuthRequest
	r.Auth.Identity.Methods = []string{"token"}
	r.Auth.Identity.Token = &v3.TokenMethod{ID: unscoped.ID}
	r.Auth.Scope = json.RawMessage(adminProject)
	scoped := mustAuth(t, f, &r)
	if scoped.Project == nil || !scoped.ExpiresAt.Equal(unscoped.ExpiresAt) {
		t.Fatalf("rescoped: project %v expires %v (original %v)", scoped.Project, scoped.ExpiresAt, unscoped.ExpiresAt)
	}
	if len(scoped.AuditIDs) != 2 || scoped.AuditIDs[1] != unscoped.AuditIDs[0] {
		t.Fatalf("audit chain %v from %v", scoped.AuditIDs, unscoped.AuditIDs)
	}
	if !slices.Equal(scoped.Methods, []string{"password", "token"}) {
		t.Fatalf("methods %v", scoped.Methods)
	}
	r.Auth.Identity.Token.ID = "garbage"
	_, err := f.svc.Authenticate(f.ctx, &r)
	wantKind(t, err, errdefs.ErrUnauthorized)
}

func TestAppCred(t *testing.T) {
	f := newFixture(t)
	demo(t, f)
	tok := mustAuth(t, f, passwordAuth("alice", "s3cret", demoProject))
	ac, secret, err := f.svc.CreateAppCred(f.ctx, tok, tok.User.ID, v3.AppCredRequest{Name: ptr("ci"), Roles: []v3.AppCredRole{{Name: "reader"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = f.svc.CreateAppCred(f.ctx, tok, tok.User.ID, v3.AppCredRequest{Name: ptr("ci")})
	wantKind(t, err, errdefs.ErrConflict)
	_, _, err = f.svc.CreateAppCred(f.ctx, tok, tok.User.ID, v3.AppCredRequest{Name: ptr("x"), Roles: []v3.AppCredRole{{Name: "admin"}}})
	wantKind(t, err, errdefs.ErrForbidden)

	var r v3.AuthRequest
	r.Auth.Identity.Methods = []string{"application_credential"}
	r.Auth.Identity.ApplicationCredential = &v3.AppCredMethod{ID: ac.ID, Secret: secret}
	at := mustAuth(t, f, &r)
	if got := roleNames(at); !slices.Equal(got, []string{"reader"}) || at.Project == nil || at.AppCred == nil {
		t.Fatalf("app cred token: roles %v project %v", got, at.Project)
	}
	r.Auth.Identity.ApplicationCredential.Secret = "wrong"
	_, err = f.svc.Authenticate(f.ctx, &r)
	wantKind(t, err, errdefs.ErrUnauthorized)
	if err := f.svc.DeleteAppCred(f.ctx, tok.User.ID, ac.ID); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.Validate(f.ctx, at.ID)
	wantKind(t, err, errdefs.ErrNotFound)
}

func TestUniquenessAndValidation(t *testing.T) {
	f := newFixture(t)
	if _, err := f.svc.CreateProject(f.ctx, v3.ProjectRequest{Name: ptr("p")}); err != nil {
		t.Fatal(err)
	}
	_, err := f.svc.CreateProject(f.ctx, v3.ProjectRequest{Name: ptr("p")})
	wantKind(t, err, errdefs.ErrConflict)
	_, err = f.svc.CreateProject(f.ctx, v3.ProjectRequest{Name: ptr("")})
	wantKind(t, err, errdefs.ErrInvalid)
	_, err = f.svc.CreateProject(f.ctx, v3.ProjectRequest{})
	wantKind(t, err, errdefs.ErrInvalid)
	_, err = f.svc.CreateProject(f.ctx, v3.ProjectRequest{Name: ptr("q"), DomainID: ptr("nope")})
	wantKind(t, err, errdefs.ErrInvalid)
	_, err = f.svc.CreateUser(f.ctx, v3.UserRequest{Name: ptr("admin")})
	wantKind(t, err, errdefs.ErrConflict)
	_, err = f.svc.CreateRole(f.ctx, v3.RoleRequest{Name: ptr("member")})
	wantKind(t, err, errdefs.ErrConflict)
	err = f.svc.DeleteDomain(f.ctx, identity.DefaultDomainID)
	wantKind(t, err, errdefs.ErrForbidden)

	// Concurrent creates of one name: exactly one wins.
	var wg sync.WaitGroup
	var wins atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.svc.CreateProject(f.ctx, v3.ProjectRequest{Name: ptr("race")}); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, errdefs.ErrConflict) {
				t.Errorf("racing create: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d racing creates won, want 1", wins.Load())
	}
}

func TestDomainCascade(t *testing.T) {
	f := newFixture(t)
	d, err := f.svc.CreateDomain(f.ctx, v3.DomainRequest{Name: ptr("acme")})
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.svc.CreateProject(f.ctx, v3.ProjectRequest{Name: ptr("web"), DomainID: &d.ID})
	if err != nil {
		t.Fatal(err)
	}
	u, err := f.svc.CreateUser(f.ctx, v3.UserRequest{Name: ptr("bob"), DomainID: &d.ID, Password: ptr("pw")})
	if err != nil {
		t.Fatal(err)
	}
	member, _ := f.svc.FindRole("member")
	if err := f.svc.Grant(f.ctx, identity.Assignment{ScopeType: identity.ScopeProject, ScopeID: p.ID, UserID: u.ID, RoleID: member.ID}); err != nil {
		t.Fatal(err)
	}
	wantKind(t, f.svc.DeleteDomain(f.ctx, d.ID), errdefs.ErrForbidden) // still enabled
	if _, err := f.svc.UpdateDomain(f.ctx, d.ID, v3.DomainRequest{Enabled: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeleteDomain(f.ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.GetProject(p.ID)
	wantKind(t, err, errdefs.ErrNotFound)
	_, err = f.svc.GetUser(u.ID)
	wantKind(t, err, errdefs.ErrNotFound)
	if got := f.svc.ListAssignments(identity.AssignmentFilter{ScopeID: p.ID}); len(got) != 0 {
		t.Fatalf("assignments left: %v", got)
	}
	// The name is free again.
	if _, err := f.svc.CreateDomain(f.ctx, v3.DomainRequest{Name: ptr("acme")}); err != nil {
		t.Fatal(err)
	}
}

// A cascade bigger than one transaction may carry (etcd allows 128
// operations) still completes.
func TestLargeCascade(t *testing.T) {
	f := newFixture(t)
	u, err := f.svc.CreateUser(f.ctx, v3.UserRequest{Name: ptr("many")})
	if err != nil {
		t.Fatal(err)
	}
	role, err := f.svc.CreateRole(f.ctx, v3.RoleRequest{Name: ptr("custom")})
	if err != nil {
		t.Fatal(err)
	}
	const n = 140
	for i := range n {
		p, err := f.svc.CreateProject(f.ctx, v3.ProjectRequest{Name: ptr("p" + strconv.Itoa(i))})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.svc.Grant(f.ctx, identity.Assignment{ScopeType: identity.ScopeProject, ScopeID: p.ID, UserID: u.ID, RoleID: role.ID}); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(f.svc.ListAssignments(identity.AssignmentFilter{UserID: u.ID})); got != n {
		t.Fatalf("%d assignments, want %d", got, n)
	}
	if err := f.svc.DeleteRole(f.ctx, role.ID); err != nil {
		t.Fatal(err)
	}
	if got := len(f.svc.ListAssignments(identity.AssignmentFilter{UserID: u.ID})); got != 0 {
		t.Fatalf("%d assignments left after deleting their role", got)
	}
	if err := f.svc.DeleteUser(f.ctx, u.ID); err != nil {
		t.Fatal(err)
	}
}
