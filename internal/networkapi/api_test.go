package networkapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	v3 "github.com/nimbo-cloud/nimbo/api/identity/v3"
	"github.com/nimbo-cloud/nimbo/internal/identity"
	"github.com/nimbo-cloud/nimbo/internal/network"
	"github.com/nimbo-cloud/nimbo/internal/networkapi"
	"github.com/nimbo-cloud/nimbo/internal/server"
	"github.com/nimbo-cloud/nimbo/internal/store/etcdstore"
)

const base = "http://nimbo.test:5000"

type env struct {
	t            *testing.T
	h            http.Handler
	admin, alice string // tokens
	bob          string
}

func ptr[T any](v T) *T { return &v }

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	st, err := etcdstore.Open(ctx, etcdstore.Config{Embedded: &etcdstore.Embedded{Dir: t.TempDir(), UnsafeNoFsync: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	id, err := identity.New(ctx, st, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(id.Close)
	if _, err := id.Bootstrap(ctx, identity.BootstrapConfig{AdminPassword: "pw", PublicURL: base}); err != nil {
		t.Fatal(err)
	}
	net, err := network.New(ctx, st, network.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(net.Close)
	srv := server.New(id, base+"/v3", nil)
	networkapi.Register(srv, net, base)
	e := &env{t: t, h: srv}
	member, _ := id.FindRole("member")
	login := func(user, project string) string {
		if user != "admin" {
			p, err := id.CreateProject(ctx, v3.ProjectRequest{Name: &project})
			if err != nil {
				t.Fatal(err)
			}
			u, err := id.CreateUser(ctx, v3.UserRequest{Name: &user, Password: ptr("pw")})
			if err != nil {
				t.Fatal(err)
			}
			if err := id.Grant(ctx, identity.Assignment{ScopeType: identity.ScopeProject, ScopeID: p.ID, UserID: u.ID, RoleID: member.ID}); err != nil {
				t.Fatal(err)
			}
		}
		var r v3.AuthRequest
		r.Auth.Identity.Methods = []string{"password"}
		r.Auth.Identity.Password = &v3.PasswordMethod{}
		r.Auth.Identity.Password.User.Name = user
		r.Auth.Identity.Password.User.Domain = &v3.NameID{ID: "default"}
		r.Auth.Identity.Password.User.Password = ptr("pw")
		r.Auth.Scope = json.RawMessage(`{"project": {"name": "` + project + `", "domain": {"id": "default"}}}`)
		tok, err := id.Authenticate(ctx, &r)
		if err != nil {
			t.Fatal(err)
		}
		return tok.ID
	}
	e.admin, e.alice, e.bob = login("admin", "admin"), login("alice", "pa"), login("bob", "pb")
	return e
}

type resp struct {
	status int
	body   map[string]any
	raw    string
}

func (e *env) do(token, method, path, body string) resp {
	e.t.Helper()
	req := httptest.NewRequest(method, "/networking/v2.0"+path, strings.NewReader(body))
	req.Header.Set("X-Auth-Token", token)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	r := resp{status: rec.Code, raw: rec.Body.String()}
	if rec.Body.Len() > 0 {
		if err := json.Unmarshal(rec.Body.Bytes(), &r.body); err != nil {
			e.t.Fatalf("%s %s: not JSON: %s", method, path, rec.Body)
		}
	}
	return r
}

// fault checks a Neutron fault body and returns its type and message.
func (e *env) fault(r resp, status int) (string, string) {
	e.t.Helper()
	ne, ok := r.body["NeutronError"].(map[string]any)
	if r.status != status || !ok {
		e.t.Fatalf("status %d, want %d with a NeutronError body: %s", r.status, status, r.raw)
	}
	return ne["type"].(string), ne["message"].(string)
}

func id(r resp, key string) string { return r.body[key].(map[string]any)["id"].(string) }

func TestNeutronAPI(t *testing.T) {
	e := newEnv(t)
	// Bad input: a clear 400, never a 500.
	_, msg := e.fault(e.do(e.alice, "POST", "/networks", `{"network": {"name": "n", "bogus": 1}}`), 400)
	if !strings.Contains(msg, "Unrecognized attribute(s) 'bogus'") {
		t.Fatalf("unknown attribute message %q", msg)
	}
	_, msg = e.fault(e.do(e.alice, "POST", "/networks", `{"network": {"admin_state_up": "maybe"}}`), 400)
	if !strings.Contains(msg, "admin_state_up") {
		t.Fatalf("wrong type message %q", msg)
	}
	e.fault(e.do(e.alice, "POST", "/networks", `{"net": {}}`), 400)
	e.fault(e.do(e.alice, "POST", "/networks", `not json`), 400)
	// Admin-only attributes.
	_, msg = e.fault(e.do(e.alice, "POST", "/networks", `{"network": {"shared": true}}`), 403)
	if !strings.Contains(msg, "shared") {
		t.Fatalf("403 message %q", msg)
	}
	e.fault(e.do(e.alice, "POST", "/networks", `{"network": {"provider:network_type": "flat", "provider:physical_network": "x"}}`), 403)

	r := e.do(e.alice, "POST", "/networks", `{"network": {"name": "a-net", "mtu": "1400"}}`)
	if r.status != 201 {
		t.Fatalf("create: %s", r.raw)
	}
	nid := id(r, "network")
	if _, ok := r.body["network"].(map[string]any)["provider:network_type"]; ok {
		t.Fatal("a member sees provider attributes")
	}
	// Another project cannot see it.
	typ, _ := e.fault(e.do(e.bob, "GET", "/networks/"+nid, ""), 404)
	if typ != "NetworkNotFound" {
		t.Fatalf("type %q", typ)
	}
	if r := e.do(e.admin, "GET", "/networks/"+nid, ""); r.body["network"].(map[string]any)["provider:network_type"] != "vxlan" {
		t.Fatalf("admin does not see provider attributes: %s", r.raw)
	}
	if r := e.do(e.bob, "GET", "/networks", ""); len(r.body["networks"].([]any)) != 0 {
		t.Fatalf("bob lists alice's network: %s", r.raw)
	}

	// Bulk create is all or nothing.
	r = e.do(e.alice, "POST", "/subnets", `{"subnets": [{"network_id": "`+nid+`", "cidr": "10.0.0.0/24", "ip_version": 4}, {"network_id": "`+nid+`", "cidr": "10.0.0.0/25", "ip_version": 4}]}`)
	e.fault(r, 400)
	if r := e.do(e.alice, "GET", "/subnets", ""); len(r.body["subnets"].([]any)) != 0 {
		t.Fatalf("a failed bulk create left subnets behind: %s", r.raw)
	}
	r = e.do(e.alice, "POST", "/subnets", `{"subnets": [{"network_id": "`+nid+`", "cidr": "10.0.0.0/24", "ip_version": 4}, {"network_id": "`+nid+`", "cidr": "10.0.1.0/24", "ip_version": 4}]}`)
	if r.status != 201 || len(r.body["subnets"].([]any)) != 2 {
		t.Fatalf("bulk create: %s", r.raw)
	}

	// Ports, filters, fields, pagination.
	for range 5 {
		if r := e.do(e.alice, "POST", "/ports", `{"port": {"network_id": "`+nid+`"}}`); r.status != 201 {
			t.Fatalf("port create: %s", r.raw)
		}
	}
	r = e.do(e.alice, "GET", "/ports?network_id="+nid+"&limit=2&fields=id&fields=mac_address", "")
	ports := r.body["ports"].([]any)
	if len(ports) != 2 || len(ports[0].(map[string]any)) != 2 || r.body["ports_links"] == nil {
		t.Fatalf("paginated list: %s", r.raw)
	}
	if _, ok := ports[0].(map[string]any)["binding:host_id"]; ok {
		t.Fatal("a member sees binding attributes")
	}
	e.fault(e.do(e.alice, "GET", "/ports?sort_key=bogus", ""), 400)
	e.fault(e.do(e.alice, "POST", "/ports", `{"port": {"network_id": "`+nid+`", "binding:host_id": "h"}}`), 403)
	typ, _ = e.fault(e.do(e.alice, "DELETE", "/networks/"+nid, ""), 409)
	if typ != "NetworkInUse" {
		t.Fatalf("type %q", typ)
	}

	// Security groups use the underscore key in bodies.
	r = e.do(e.alice, "GET", "/security-groups", "")
	if gs, ok := r.body["security_groups"].([]any); !ok || len(gs) != 1 {
		t.Fatalf("security groups: %s", r.raw)
	}
	// Tags.
	if r := e.do(e.alice, "PUT", "/networks/"+nid+"/tags/blue", ""); r.status != 201 {
		t.Fatalf("add tag: %d %s", r.status, r.raw)
	}
	if r := e.do(e.alice, "GET", "/networks?tags=blue", ""); len(r.body["networks"].([]any)) != 1 {
		t.Fatalf("tag filter: %s", r.raw)
	}
	e.fault(e.do(e.bob, "PUT", "/networks/"+nid+"/tags/red", ""), 404)
	// Quotas.
	e.fault(e.do(e.alice, "PUT", "/quotas/pa", `{"quota": {"network": 1}}`), 403)
	if r := e.do(e.admin, "PUT", "/quotas/"+projectOf(e, e.alice), `{"quota": {"network": 1}}`); r.status != 200 {
		t.Fatalf("set quota: %s", r.raw)
	}
	typ, _ = e.fault(e.do(e.alice, "POST", "/networks", `{"network": {}}`), 409)
	if typ != "OverQuota" {
		t.Fatalf("type %q", typ)
	}
	// Extensions list exactly what exists.
	r = e.do(e.alice, "GET", "/extensions/security-group", "")
	if r.status != 200 {
		t.Fatalf("extension: %s", r.raw)
	}
	e.fault(e.do(e.alice, "GET", "/extensions/dvr", ""), 404)
}

func projectOf(e *env, token string) string {
	r := e.do(token, "GET", "/security-groups", "")
	return r.body["security_groups"].([]any)[0].(map[string]any)["project_id"].(string)
}

func TestJSONSuffix(t *testing.T) {
	e := newEnv(t)
	r := e.do(e.admin, "GET", "/quotas/"+projectOf(e, e.alice)+"/details.json", "")
	if r.status != 200 || r.body["quota"] == nil {
		t.Fatalf("details.json: %d %s", r.status, r.raw)
	}
}
