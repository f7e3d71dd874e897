package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/identity"
	"github.com/nimbo-cloud/nimbo/internal/server"
)

// validator accepts the token "good" only.
type validator struct{}

func (validator) Validate(_ context.Context, tok string) (*identity.Token, error) {
	if tok != "good" {
		return nil, errdefs.NotFoundf("Could not find token.")
	}
	return &identity.Token{User: identity.User{ID: "u1"}}, nil
}

func TestStatus(t *testing.T) {
	cases := []struct {
		err    error
		style  server.Style
		status int
	}{
		{errdefs.Invalidf("bad"), server.Keystone, 400},
		{errdefs.Unauthorizedf("who"), server.Keystone, 401},
		{errdefs.Forbiddenf("no"), server.Neutron, 403},
		{fmt.Errorf("wrapped: %w", errdefs.ErrNotFound), server.Nova, 404},
		{errdefs.Conflictf("dup"), server.Neutron, 409},
		{errdefs.ErrQuotaExceeded, server.Neutron, 409},
		{errdefs.ErrQuotaExceeded, server.Nova, 403},
		{errdefs.ErrMethodNotAllowed, server.Glance, 405},
		{errdefs.ErrNotImplemented, server.Keystone, 501},
		{errdefs.ErrUnavailable, server.Keystone, 503},
		{context.DeadlineExceeded, server.Keystone, 503},
		{errors.New("boom"), server.Keystone, 500},
	}
	for _, c := range cases {
		if got := server.Status(c.style, c.err); got != c.status {
			t.Errorf("Status(%v) = %d, want %d", c.err, got, c.status)
		}
	}
}

func serve(s *server.Server, method, path, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

func TestFaultBodiesAndMiddleware(t *testing.T) {
	s := server.New(validator{}, "http://x/v3", nil)
	s.Prefix("/networking", server.Neutron)
	s.Prefix("/compute", server.Nova)
	s.Authed(server.Neutron, "GET /networking/v2.0/networks/{id}", func(w http.ResponseWriter, r *http.Request) error {
		if server.TokenFrom(r.Context()).User.ID != "u1" {
			t.Error("no token in the context")
		}
		return errdefs.Typed("NetworkNotFound", errdefs.NotFoundf("Network %s could not be found.", r.PathValue("id")))
	})
	s.Public(server.Nova, "GET /compute/boom", func(http.ResponseWriter, *http.Request) error { panic("bug") })
	s.Public(server.Keystone, "GET /secret", func(http.ResponseWriter, *http.Request) error {
		return errors.New("internal detail that must not leak")
	})

	rec := serve(s, "GET", "/networking/v2.0/networks/n1", "good")
	var nb map[string]map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &nb); err != nil || rec.Code != 404 ||
		nb["NeutronError"]["type"] != "NetworkNotFound" || nb["NeutronError"]["message"] != "Network n1 could not be found." {
		t.Fatalf("neutron fault: %d %s", rec.Code, rec.Body)
	}
	if id := rec.Header().Get("X-Openstack-Request-Id"); !strings.HasPrefix(id, "req-") {
		t.Fatalf("request id %q", id)
	}
	rec = serve(s, "GET", "/networking/v2.0/networks/n1", "bad")
	if rec.Code != 401 || !strings.Contains(rec.Body.String(), `"type":"HTTPUnauthorized"`) || rec.Header().Get("WWW-Authenticate") == "" {
		t.Fatalf("bad token: %d %s %v", rec.Code, rec.Body, rec.Header())
	}
	rec = serve(s, "GET", "/networking/v2.0/networks/n1", "")
	if rec.Code != 401 {
		t.Fatalf("no token: %d", rec.Code)
	}
	rec = serve(s, "GET", "/compute/boom", "")
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), `"computeFault"`) {
		t.Fatalf("panic: %d %s", rec.Code, rec.Body)
	}
	rec = serve(s, "GET", "/secret", "")
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "internal detail") {
		t.Fatalf("500 leaks details: %s", rec.Body)
	}
	rec = serve(s, "GET", "/compute/nothing", "")
	if rec.Code != 404 || !strings.Contains(rec.Body.String(), `"itemNotFound"`) {
		t.Fatalf("unrouted nova path: %d %s", rec.Code, rec.Body)
	}
	rec = serve(s, "POST", "/networking/v2.0/networks/n1", "good")
	if rec.Code != 405 || !strings.Contains(rec.Body.String(), "HTTPMethodNotAllowed") || rec.Header().Get("Allow") == "" {
		t.Fatalf("405: %d %s %v", rec.Code, rec.Body, rec.Header())
	}
	rec = serve(s, "GET", "/elsewhere", "")
	if rec.Code != 404 || !strings.Contains(rec.Body.String(), `"title":"Not Found"`) {
		t.Fatalf("keystone 404: %d %s", rec.Code, rec.Body)
	}
}
