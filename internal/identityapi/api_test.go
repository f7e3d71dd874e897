package identityapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/identity"
	"github.com/nimbo-cloud/nimbo/internal/identityapi"
	"github.com/nimbo-cloud/nimbo/internal/server"
	"github.com/nimbo-cloud/nimbo/internal/store/etcdstore"
)

// newHandler starts an identity service on an embedded store and returns the
// API handler with its base URL.
func newHandler(tb testing.TB, dir string) (http.Handler, func()) {
	tb.Helper()
	ctx := context.Background()
	st, err := etcdstore.Open(ctx, etcdstore.Config{Embedded: &etcdstore.Embedded{Dir: dir, UnsafeNoFsync: true}})
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := identity.New(ctx, st, identity.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	const base = "http://nimbo.test:5000"
	if _, err := svc.Bootstrap(ctx, identity.BootstrapConfig{AdminPassword: "adminpw", PublicURL: base}); err != nil {
		tb.Fatal(err)
	}
	srv := server.New(svc, base+"/v3", nil)
	identityapi.Register(srv, svc, base)
	return srv, func() { svc.Close(); _ = st.Close() }
}

type client struct {
	t     *testing.T
	h     http.Handler
	token string
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (c *client) do(method, path, body string) response {
	c.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if c.token != "" {
		req.Header.Set("X-Auth-Token", c.token)
	}
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, req)
	r := response{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	if rec.Body.Len() > 0 {
		if err := json.Unmarshal(rec.Body.Bytes(), &r.body); err != nil {
			c.t.Fatalf("%s %s: body is not JSON: %q", method, path, rec.Body.String())
		}
	}
	return r
}

func (c *client) login(user, pw, project string) string {
	c.t.Helper()
	body := `{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "` + user +
		`", "domain": {"id": "default"}, "password": "` + pw + `"}}}, "scope": {"project": {"name": "` + project +
		`", "domain": {"id": "default"}}}}}`
	r := c.do("POST", "/v3/auth/tokens", body)
	if r.status != 201 || r.header.Get("X-Subject-Token") == "" {
		c.t.Fatalf("login %s: %d %s", user, r.status, r.raw)
	}
	return r.header.Get("X-Subject-Token")
}

// fault checks a Keystone error body and returns its message.
func fault(t *testing.T, r response, status int) string {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	e, ok := r.body["error"].(map[string]any)
	if !ok || e["code"] != float64(status) || e["title"] != http.StatusText(status) {
		t.Fatalf("not a Keystone fault body for %d: %s", status, r.raw)
	}
	return e["message"].(string)
}

func TestAPI(t *testing.T) {
	h, stop := newHandler(t, t.TempDir())
	defer stop()
	anon := &client{t: t, h: h}

	r := anon.do("GET", "/", "")
	if r.status != 300 || !strings.Contains(r.raw, `"id":"v3.14"`) || !strings.Contains(r.raw, "http://nimbo.test:5000/v3/") {
		t.Fatalf("GET /: %d %s", r.status, r.raw)
	}
	if r := anon.do("GET", "/v3", ""); r.status != 200 || r.body["version"] == nil {
		t.Fatalf("GET /v3: %d %s", r.status, r.raw)
	}

	// Bad input is a 400 naming the problem, never a 500.
	msg := fault(t, anon.do("POST", "/v3/auth/tokens", `{"auth": `), 400)
	if !strings.Contains(msg, "Malformed JSON") {
		t.Fatalf("malformed JSON message: %q", msg)
	}
	msg = fault(t, anon.do("POST", "/v3/auth/tokens", `{"auth": {"identity": {"methods": "password"}}}`), 400)
	if !strings.Contains(msg, "auth.identity.methods") {
		t.Fatalf("wrong type message does not name the field: %q", msg)
	}
	r = anon.do("POST", "/v3/auth/tokens", `{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "domain": {"id": "default"}, "password": "bad"}}}}}`)
	fault(t, r, 401)
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Keystone uri=") {
		t.Fatalf("401 without WWW-Authenticate: %v", r.header)
	}

	admin := &client{t: t, h: h}
	admin.token = admin.login("admin", "adminpw", "admin")
	r = anon.do("POST", "/v3/auth/tokens", `{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "domain": {"name": "Default"}, "password": "adminpw"}}}, "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}`)
	tok := r.body["token"].(map[string]any)
	cat := tok["catalog"].([]any)
	if len(cat) != 1 || !strings.Contains(r.raw, `"region":"RegionOne"`) || !strings.Contains(r.raw, `"region_id":"RegionOne"`) ||
		!strings.HasSuffix(tok["expires_at"].(string), "Z") || len(tok["expires_at"].(string)) != len("2026-01-01T00:00:00.000000Z") {
		t.Fatalf("token body: %s", r.raw)
	}

	// Validation, check, revocation.
	sub := r.header.Get("X-Subject-Token")
	req := httptest.NewRequest("GET", "/v3/auth/tokens", nil)
	req.Header.Set("X-Auth-Token", admin.token)
	req.Header.Set("X-Subject-Token", sub)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Header().Get("X-Subject-Token") != sub {
		t.Fatalf("validate: %d %s", rec.Code, rec.Body)
	}
	req.Method = "DELETE"
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 204 {
		t.Fatalf("revoke: %d %s", rec.Code, rec.Body)
	}
	req.Method = "HEAD"
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 404 {
		t.Fatalf("check revoked: %d", rec.Code)
	}

	// Resources, conflicts, not found, wrong types.
	r = admin.do("POST", "/v3/projects", `{"project": {"name": "demo", "description": "d"}}`)
	if r.status != 201 {
		t.Fatalf("create project: %d %s", r.status, r.raw)
	}
	pid := r.body["project"].(map[string]any)["id"].(string)
	if msg := fault(t, admin.do("POST", "/v3/projects", `{"project": {"name": "demo"}}`), 409); !strings.Contains(msg, "Duplicate entry found with name demo") {
		t.Fatalf("conflict message %q", msg)
	}
	fault(t, admin.do("GET", "/v3/projects/nope", ""), 404)
	if msg := fault(t, admin.do("POST", "/v3/projects", `{"projects": {}}`), 400); !strings.Contains(msg, "'project'") {
		t.Fatalf("missing object message %q", msg)
	}
	if msg := fault(t, admin.do("PATCH", "/v3/projects/"+pid, `{"project": {"enabled": "yes"}}`), 400); !strings.Contains(msg, "enabled") {
		t.Fatalf("wrong type message %q", msg)
	}
	r = admin.do("POST", "/v3/users", `{"user": {"name": "alice", "password": "s3cret", "default_project_id": "`+pid+`"}}`)
	if r.status != 201 {
		t.Fatalf("create user: %d %s", r.status, r.raw)
	}
	uid := r.body["user"].(map[string]any)["id"].(string)
	r = admin.do("GET", "/v3/roles?name=member", "")
	rid := r.body["roles"].([]any)[0].(map[string]any)["id"].(string)
	if r := admin.do("PUT", "/v3/projects/"+pid+"/users/"+uid+"/roles/"+rid, ""); r.status != 204 {
		t.Fatalf("grant: %d %s", r.status, r.raw)
	}
	fault(t, admin.do("PUT", "/v3/projects/"+pid+"/users/"+uid+"/roles/nope", ""), 404)
	r = admin.do("GET", "/v3/role_assignments?scope.project.id="+pid+"&include_names=1&effective", "")
	if n := len(r.body["role_assignments"].([]any)); n != 2 || !strings.Contains(r.raw, `"name":"alice"`) || !strings.Contains(r.raw, `"name":"reader"`) {
		t.Fatalf("effective assignments with names (%d): %s", n, r.raw)
	}

	// A member may not list users.
	alice := &client{t: t, h: h}
	alice.token = alice.login("alice", "s3cret", "demo")
	if msg := fault(t, alice.do("GET", "/v3/users", ""), 403); !strings.Contains(msg, "identity:list_users") {
		t.Fatalf("403 message %q", msg)
	}
	if r := alice.do("GET", "/v3/users/"+uid, ""); r.status != 200 {
		t.Fatalf("alice get self: %d", r.status)
	}
	if r := alice.do("GET", "/v3/auth/projects", ""); r.status != 200 || len(r.body["projects"].([]any)) != 1 {
		t.Fatalf("alice auth/projects: %s", r.raw)
	}
	fault(t, anon.do("GET", "/v3/users", ""), 401)

	// Unrouted paths and methods are faults too.
	fault(t, admin.do("GET", "/v3/nothing-here", ""), 404)
	fault(t, admin.do("DELETE", "/v3/auth/catalog", ""), 405)
}

var (
	fuzzOnce    sync.Once
	fuzzHandler http.Handler
	fuzzDir     string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fuzzDir != "" {
		_ = os.RemoveAll(fuzzDir)
	}
	os.Exit(code)
}

// FuzzDecodeAuth feeds arbitrary bodies to POST /v3/auth/tokens: the answer
// must be a 201 or a 4xx with a Keystone fault body, never a 500.
func FuzzDecodeAuth(f *testing.F) {
	for _, s := range []string{
		`{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "domain": {"id": "default"}, "password": "adminpw"}}}}}`,
		`{"auth": {"identity": {"methods": ["token"], "token": {"id": "x"}}, "scope": "unscoped"}}`,
		`{"auth": {"identity": {"methods": ["application_credential"], "application_credential": {"id": "x", "secret": "y"}}}}`,
		`{"auth": {"identity": {"methods": ["password"]}, "scope": {"system": {"all": true}}}}`,
		`{"auth": {"scope": {"project": {"name": "p", "domain": {"name": "Default"}}}}}`,
		`[]`, `null`, `{"auth": null}`, `{"auth": {"identity": {"methods": [1]}}}`,
	} {
		f.Add([]byte(s))
	}
	fuzzOnce.Do(func() {
		// The handler outlives f.TempDir within a fuzz worker: TestMain removes it.
		var err error
		if fuzzDir, err = os.MkdirTemp("", "nimbo-fuzz-"); err != nil {
			f.Fatal(err)
		}
		fuzzHandler, _ = newHandler(f, fuzzDir)
	})
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/v3/auth/tokens", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		fuzzHandler.ServeHTTP(rec, req)
		if rec.Code == 201 {
			return
		}
		if rec.Code < 400 || rec.Code >= 500 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		var fb struct {
			Error struct {
				Code    int
				Message string
			}
		}
		raw, _ := io.ReadAll(rec.Body)
		if err := json.Unmarshal(raw, &fb); err != nil || fb.Error.Code != rec.Code || fb.Error.Message == "" {
			t.Fatalf("bad fault body for %q: %s", body, raw)
		}
	})
}
