package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"time"
)

// requestTimeout bounds one HTTP request (Keystone's bcrypt under load is slow,
// but not that slow).
const requestTimeout = 60 * time.Second

// client speaks Keystone v3 to one server over HTTP, keeping connections
// alive when the server allows it. It counts the TCP connections it opens, so
// the report can tell whether the server kept them alive.
type client struct {
	base    string // "http://127.0.0.1:5000/v3"
	http    *http.Client
	dials   atomic.Int64
	reqs    atomic.Int64
	retries atomic.Int64 // requests sent again after a kept-alive connection failed
}

// newClient returns a client for the Keystone v3 API at base. It never uses a
// proxy and dials only the literal address in base.
func newClient(base string, conns int) *client {
	c := &client{base: strings.TrimSuffix(base, "/")}
	d := &net.Dialer{Timeout: 5 * time.Second, FallbackDelay: -1}
	c.http = &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c.dials.Add(1)
				return d.DialContext(ctx, network, addr)
			},
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
	}
	return c
}

// close drops the client's idle connections.
func (c *client) close() { c.http.CloseIdleConnections() }

// httpError is an unexpected answer (or no answer) to a request, with
// everything needed to reproduce it.
type httpError struct {
	Method, URL string      // the request
	Header      http.Header // its headers (the token ones are shown)
	ReqBody     string      // its body
	Status      string      // the response's status; empty when there was no response
	RespHeader  http.Header // the response's headers
	RespBody    string      // the response's body (its first 4 KiB)
	Err         error       // the transport error, when there was no response
	Want        int         // the status that was expected
}

// Error renders the request and the response.
func (e *httpError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", e.Method, e.URL)
	for _, k := range []string{"X-Auth-Token", "X-Subject-Token"} {
		if v := e.Header.Get(k); v != "" {
			fmt.Fprintf(&b, "\n  %s: %s", k, v)
		}
	}
	if e.ReqBody != "" {
		fmt.Fprintf(&b, "\n  request body: %s", e.ReqBody)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, "\n  -> error: %v", e.Err)
		return b.String()
	}
	fmt.Fprintf(&b, "\n  -> %s (wanted %d)", e.Status, e.Want)
	if ct := e.RespHeader.Get("Content-Type"); ct != "" {
		fmt.Fprintf(&b, "\n  Content-Type: %s", ct)
	}
	if e.RespBody != "" {
		fmt.Fprintf(&b, "\n  response body: %s", e.RespBody)
	}
	return b.String()
}

// do sends one request with an optional JSON body and token headers and
// checks the status. It returns the response headers and body.
func (c *client) do(ctx context.Context, method, path string, body any, token, subject string, want int) (http.Header, []byte, error) {
	var reqBody []byte
	if body != nil {
		var err error
		if reqBody, err = json.Marshal(body); err != nil {
			return nil, nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(reqBody))
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	if subject != "" {
		req.Header.Set("X-Subject-Token", subject)
	}
	c.reqs.Add(1)
	var reused bool
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	resp, err := c.http.Do(req.WithContext(httptrace.WithClientTrace(ctx, trace)))
	if err != nil && reused && ctx.Err() == nil {
		// The server closed a connection it had not said it would close
		// (Keystone's uwsgi after a 204), and Go's transport does not
		// replay a POST by itself. Do what Python clients do (they notice
		// the closed socket before reusing it): send again on a new one.
		c.retries.Add(1)
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
		resp, err = c.http.Do(req)
	}
	if err != nil {
		return nil, nil, &httpError{Method: method, URL: c.base + path, Header: req.Header, ReqBody: string(reqBody), Err: err, Want: want}
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, &httpError{Method: method, URL: c.base + path, Header: req.Header, ReqBody: string(reqBody),
			Err: fmt.Errorf("reading the %s response: %w", resp.Status, err), Want: want}
	}
	if resp.StatusCode != want {
		const max = 4096
		rb := string(respBody)
		if len(rb) > max {
			rb = rb[:max] + "…"
		}
		return nil, nil, &httpError{Method: method, URL: c.base + path, Header: req.Header, ReqBody: string(reqBody),
			Status: resp.Status, RespHeader: resp.Header, RespBody: rb, Want: want}
	}
	return resp.Header, respBody, nil
}

// ready reports whether GET /v3 answers 200.
func (c *client) ready(ctx context.Context) error {
	_, _, err := c.do(ctx, http.MethodGet, "", nil, "", "", http.StatusOK)
	return err
}

// authBody is the body of POST /v3/auth/tokens.
type authBody map[string]any

// passwordAuth authenticates user (in the Default domain) by password, with
// scope: a project name in the Default domain, or "" for an explicitly
// unscoped token.
func passwordAuth(user, password, project string) authBody {
	ident := map[string]any{
		"methods": []string{"password"},
		"password": map[string]any{"user": map[string]any{
			"name": user, "domain": map[string]string{"id": "default"}, "password": password}},
	}
	var scope any = "unscoped"
	if project != "" {
		scope = map[string]any{"project": map[string]any{"name": project, "domain": map[string]string{"id": "default"}}}
	}
	return authBody{"auth": map[string]any{"identity": ident, "scope": scope}}
}

// rescopeAuth re-scopes token to the project with ID projectID.
func rescopeAuth(token, projectID string) authBody {
	return authBody{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"token"}, "token": map[string]string{"id": token}},
		"scope":    map[string]any{"project": map[string]string{"id": projectID}},
	}}
}

// appCredAuth authenticates with an application credential's ID and secret.
func appCredAuth(id, secret string) authBody {
	return authBody{"auth": map[string]any{"identity": map[string]any{
		"methods":                []string{"application_credential"},
		"application_credential": map[string]string{"id": id, "secret": secret},
	}}}
}

// tokenInfo is what the benchmark needs from a token response.
type tokenInfo struct {
	ID        string
	UserID    string
	ProjectID string
}

// issue posts an auth request and returns the new token (201 expected).
func (c *client) issue(ctx context.Context, body authBody) (tokenInfo, error) {
	h, b, err := c.do(ctx, http.MethodPost, "/auth/tokens", body, "", "", http.StatusCreated)
	if err != nil {
		return tokenInfo{}, err
	}
	var r struct {
		Token struct {
			User    struct{ ID string }  `json:"user"`
			Project *struct{ ID string } `json:"project"`
		} `json:"token"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return tokenInfo{}, fmt.Errorf("POST %s/auth/tokens: decoding the token: %w: %.300s", c.base, err, b)
	}
	t := tokenInfo{ID: h.Get("X-Subject-Token"), UserID: r.Token.User.ID}
	if r.Token.Project != nil {
		t.ProjectID = r.Token.Project.ID
	}
	if t.ID == "" {
		return t, fmt.Errorf("POST %s/auth/tokens: 201 without an X-Subject-Token header", c.base)
	}
	return t, nil
}

// validate checks subject with token (GET /v3/auth/tokens, 200 expected).
func (c *client) validate(ctx context.Context, token, subject string) error {
	_, _, err := c.do(ctx, http.MethodGet, "/auth/tokens", nil, token, subject, http.StatusOK)
	return err
}

// createAppCred creates an application credential for the token's user on
// its project and returns its ID and secret.
func (c *client) createAppCred(ctx context.Context, tok tokenInfo, name string) (id, secret string, err error) {
	_, b, err := c.do(ctx, http.MethodPost, "/users/"+tok.UserID+"/application_credentials",
		map[string]any{"application_credential": map[string]any{"name": name}}, tok.ID, "", http.StatusCreated)
	if err != nil {
		return "", "", err
	}
	var r struct {
		AC struct{ ID, Secret string } `json:"application_credential"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.AC.ID == "" || r.AC.Secret == "" {
		return "", "", fmt.Errorf("POST %s/users/%s/application_credentials: no id and secret in %.300s", c.base, tok.UserID, b)
	}
	return r.AC.ID, r.AC.Secret, nil
}

// roleID finds a role's ID by name.
func (c *client) roleID(ctx context.Context, token, name string) (string, error) {
	_, b, err := c.do(ctx, http.MethodGet, "/roles?name="+name, nil, token, "", http.StatusOK)
	if err != nil {
		return "", err
	}
	var r struct {
		Roles []struct{ ID, Name string } `json:"roles"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return "", fmt.Errorf("GET %s/roles?name=%s: %w", c.base, name, err)
	}
	for _, role := range r.Roles {
		if role.Name == name {
			return role.ID, nil
		}
	}
	return "", fmt.Errorf("GET %s/roles?name=%s: no such role in %.300s", c.base, name, b)
}

// provision creates a project and a user (with a password, whose KDF runs)
// in the Default domain and gives the user roleID on the project: what an
// operator does for each new tenant.
func (c *client) provision(ctx context.Context, token, name, password, roleID string) error {
	_, b, err := c.do(ctx, http.MethodPost, "/projects",
		map[string]any{"project": map[string]any{"name": name, "domain_id": "default", "description": "nimbo bench"}},
		token, "", http.StatusCreated)
	if err != nil {
		return err
	}
	var p struct {
		Project struct{ ID string } `json:"project"`
	}
	if err := json.Unmarshal(b, &p); err != nil || p.Project.ID == "" {
		return fmt.Errorf("POST %s/projects: no project id in %.300s", c.base, b)
	}
	_, b, err = c.do(ctx, http.MethodPost, "/users",
		map[string]any{"user": map[string]any{"name": name, "domain_id": "default", "password": password,
			"default_project_id": p.Project.ID}}, token, "", http.StatusCreated)
	if err != nil {
		return err
	}
	var u struct {
		User struct{ ID string } `json:"user"`
	}
	if err := json.Unmarshal(b, &u); err != nil || u.User.ID == "" {
		return fmt.Errorf("POST %s/users: no user id in %.300s", c.base, b)
	}
	_, _, err = c.do(ctx, http.MethodPut, "/projects/"+p.Project.ID+"/users/"+u.User.ID+"/roles/"+roleID,
		nil, token, "", http.StatusNoContent)
	return err
}
