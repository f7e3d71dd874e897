// Package v3 holds the Keystone v3 (identity) wire types nimbo speaks: request
// and response bodies exactly as OpenStack clients send and expect them. It has
// no logic; validation lives in internal/identity.
package v3

import "encoding/json"

// TimeFormat is Keystone's timestamp layout ("%Y-%m-%dT%H:%M:%S.%fZ").
const TimeFormat = "2006-01-02T15:04:05.000000Z"

// Link is a links entry ({"self": URL, ...}).
type Link map[string]any

// Version describes one API version in GET / and GET /v3.
type Version struct {
	ID         string      `json:"id"`
	Status     string      `json:"status"`
	Updated    string      `json:"updated"`
	Links      []VerLink   `json:"links"`
	MediaTypes []MediaType `json:"media-types"`
}

// VerLink is a link in a version document.
type VerLink struct {
	Rel  string `json:"rel"`
	Href string `json:"href"`
}

// MediaType is a media type of a version document.
type MediaType struct {
	Base string `json:"base"`
	Type string `json:"type"`
}

// Versions is the body of GET / (HTTP 300).
type Versions struct {
	Versions struct {
		Values []Version `json:"values"`
	} `json:"versions"`
}

// VersionDoc is the body of GET /v3.
type VersionDoc struct {
	Version Version `json:"version"`
}

// NameID names a domain, project or user by id or by name.
type NameID struct {
	ID     string  `json:"id,omitempty"`
	Name   string  `json:"name,omitempty"`
	Domain *NameID `json:"domain,omitempty"`
}

// AuthRequest is the body of POST /v3/auth/tokens.
type AuthRequest struct {
	Auth struct {
		Identity Identity `json:"identity"`
		// Scope is an object or the string "unscoped".
		Scope json.RawMessage `json:"scope,omitempty"`
	} `json:"auth"`
}

// Identity is the identity part of an auth request.
type Identity struct {
	Methods               []string        `json:"methods"`
	Password              *PasswordMethod `json:"password,omitempty"`
	Token                 *TokenMethod    `json:"token,omitempty"`
	ApplicationCredential *AppCredMethod  `json:"application_credential,omitempty"`
}

// PasswordMethod is the password auth method.
type PasswordMethod struct {
	User struct {
		NameID
		Password *string `json:"password"`
	} `json:"user"`
}

// TokenMethod is the token auth method (re-scoping).
type TokenMethod struct {
	ID string `json:"id"`
}

// AppCredMethod is the application_credential auth method.
type AppCredMethod struct {
	ID     string  `json:"id,omitempty"`
	Name   string  `json:"name,omitempty"`
	Secret string  `json:"secret"`
	User   *NameID `json:"user,omitempty"`
}

// Scope is the scope object of an auth request.
type Scope struct {
	Project *NameID         `json:"project,omitempty"`
	Domain  *NameID         `json:"domain,omitempty"`
	System  map[string]bool `json:"system,omitempty"`
	// OS-TRUST:trust is not supported.
}

// DomainRef is a domain reference in tokens.
type DomainRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// TokenUser is the user of a token.
type TokenUser struct {
	ID                string    `json:"id"`
	Name              string    `json:"name"`
	Domain            DomainRef `json:"domain"`
	PasswordExpiresAt *string   `json:"password_expires_at"`
}

// TokenProject is the project a token is scoped to.
type TokenProject struct {
	ID     string    `json:"id"`
	Name   string    `json:"name"`
	Domain DomainRef `json:"domain"`
}

// RoleRef is a role in tokens and assignments.
type RoleRef struct {
	ID     string     `json:"id"`
	Name   string     `json:"name,omitempty"`
	Domain *DomainRef `json:"domain,omitempty"`
}

// TokenAppCred is the application credential a token was issued from.
type TokenAppCred struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Restricted bool   `json:"restricted"`
}

// Token is a token body.
type Token struct {
	Methods               []string        `json:"methods"`
	User                  TokenUser       `json:"user"`
	AuditIDs              []string        `json:"audit_ids"`
	ExpiresAt             string          `json:"expires_at"`
	IssuedAt              string          `json:"issued_at"`
	Project               *TokenProject   `json:"project,omitempty"`
	Domain                *DomainRef      `json:"domain,omitempty"`
	System                map[string]bool `json:"system,omitempty"`
	IsDomain              *bool           `json:"is_domain,omitempty"`
	Roles                 []RoleRef       `json:"roles,omitempty"`
	Catalog               *[]CatalogEntry `json:"catalog,omitempty"`
	ApplicationCredential *TokenAppCred   `json:"application_credential,omitempty"`
}

// TokenBody wraps a token.
type TokenBody struct {
	Token Token `json:"token"`
}

// CatalogEntry is one service of the catalog.
type CatalogEntry struct {
	ID        string            `json:"id"`
	Type      string            `json:"type"`
	Name      string            `json:"name"`
	Endpoints []CatalogEndpoint `json:"endpoints"`
}

// CatalogEndpoint is an endpoint of a catalog entry. The region key must be
// present: openstackclient reads it.
type CatalogEndpoint struct {
	ID        string `json:"id"`
	Interface string `json:"interface"`
	Region    string `json:"region"`
	RegionID  string `json:"region_id"`
	URL       string `json:"url"`
}

// CatalogBody is the body of GET /v3/auth/catalog.
type CatalogBody struct {
	Catalog []CatalogEntry `json:"catalog"`
	Links   Link           `json:"links"`
}

// Domain is a domain.
type Domain struct {
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Enabled     bool           `json:"enabled"`
	Tags        []string       `json:"tags"`
	Options     map[string]any `json:"options"`
	Links       Link           `json:"links"`
}

// Project is a project.
type Project struct {
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	DomainID    string         `json:"domain_id"`
	Description string         `json:"description"`
	Enabled     bool           `json:"enabled"`
	ParentID    string         `json:"parent_id"`
	IsDomain    bool           `json:"is_domain"`
	Tags        []string       `json:"tags"`
	Options     map[string]any `json:"options"`
	Links       Link           `json:"links"`
}

// User is a user. Extra attributes (such as email) are returned at the top level.
type User struct {
	ID                string         `json:"id"`
	Name              string         `json:"name"`
	DomainID          string         `json:"domain_id"`
	Enabled           bool           `json:"enabled"`
	DefaultProjectID  string         `json:"default_project_id,omitempty"`
	Description       string         `json:"description,omitempty"`
	Email             string         `json:"email,omitempty"`
	PasswordExpiresAt *string        `json:"password_expires_at"`
	Options           map[string]any `json:"options"`
	Links             Link           `json:"links"`
}

// Role is a role.
type Role struct {
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	DomainID    *string        `json:"domain_id"`
	Description string         `json:"description"`
	Options     map[string]any `json:"options"`
	Links       Link           `json:"links"`
}

// RoleAssignment is one entry of GET /v3/role_assignments.
type RoleAssignment struct {
	Role  RoleRef      `json:"role"`
	User  *AssignActor `json:"user,omitempty"`
	Scope AssignScope  `json:"scope"`
	Links Link         `json:"links"`
}

// AssignActor is the user of an assignment.
type AssignActor struct {
	ID     string     `json:"id"`
	Name   string     `json:"name,omitempty"`
	Domain *DomainRef `json:"domain,omitempty"`
}

// AssignScope is the target of an assignment.
type AssignScope struct {
	Project *AssignTarget   `json:"project,omitempty"`
	Domain  *AssignTarget   `json:"domain,omitempty"`
	System  map[string]bool `json:"system,omitempty"`
}

// AssignTarget is the project or domain of an assignment scope.
type AssignTarget struct {
	ID     string     `json:"id"`
	Name   string     `json:"name,omitempty"`
	Domain *DomainRef `json:"domain,omitempty"`
}

// Service is a catalog service.
type Service struct {
	ID          string `json:"id"`
	Type        string `json:"type"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Enabled     bool   `json:"enabled"`
	Links       Link   `json:"links"`
}

// Endpoint is a catalog endpoint.
type Endpoint struct {
	ID        string `json:"id"`
	Interface string `json:"interface"`
	Region    string `json:"region"`
	RegionID  string `json:"region_id"`
	ServiceID string `json:"service_id"`
	URL       string `json:"url"`
	Enabled   bool   `json:"enabled"`
	Links     Link   `json:"links"`
}

// Region is a region.
type Region struct {
	ID             string  `json:"id"`
	Description    string  `json:"description"`
	ParentRegionID *string `json:"parent_region_id"`
	Links          Link    `json:"links"`
}

// AppCredRole is a role of an application credential.
type AppCredRole struct {
	ID       string  `json:"id,omitempty"`
	Name     string  `json:"name,omitempty"`
	DomainID *string `json:"domain_id,omitempty"`
}

// ApplicationCredential is an application credential; Secret is only returned
// on create.
type ApplicationCredential struct {
	ID           string        `json:"id"`
	Name         string        `json:"name"`
	Description  string        `json:"description"`
	UserID       string        `json:"user_id"`
	ProjectID    string        `json:"project_id"`
	Roles        []AppCredRole `json:"roles"`
	ExpiresAt    *string       `json:"expires_at"`
	Unrestricted bool          `json:"unrestricted"`
	AccessRules  []any         `json:"access_rules"`
	Secret       string        `json:"secret,omitempty"`
	Links        Link          `json:"links"`
}

// RoleInference is one implied-role rule.
type RoleInference struct {
	PriorRole RoleRef   `json:"prior_role"`
	Implies   []RoleRef `json:"implies"`
}

// Fault is Keystone's error body.
type Fault struct {
	Error struct {
		Code    int    `json:"code"`
		Title   string `json:"title"`
		Message string `json:"message"`
	} `json:"error"`
}
