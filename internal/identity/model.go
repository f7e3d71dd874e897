package identity

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// Domain is a stored domain.
type Domain struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Enabled     bool      `json:"enabled"`
	Tags        []string  `json:"tags,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// Project is a stored project.
type Project struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	DomainID    string    `json:"domain_id"`
	Description string    `json:"description,omitempty"`
	Enabled     bool      `json:"enabled"`
	Tags        []string  `json:"tags,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// User is a stored user. PasswordHash is a PHC string (argon2id) or empty (no
// password: the user cannot authenticate by password).
type User struct {
	ID               string    `json:"id"`
	Name             string    `json:"name"`
	DomainID         string    `json:"domain_id"`
	Enabled          bool      `json:"enabled"`
	PasswordHash     string    `json:"password_hash,omitempty"`
	DefaultProjectID string    `json:"default_project_id,omitempty"`
	Description      string    `json:"description,omitempty"`
	Email            string    `json:"email,omitempty"`
	CreatedAt        time.Time `json:"created_at"`
	// RevokedBefore invalidates every token of this user issued before it
	// (set on password change and on disable).
	RevokedBefore time.Time `json:"revoked_before"`
}

// Role is a stored role.
type Role struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// ScopeType names what an assignment or token is scoped to.
type ScopeType string

// Scope types.
const (
	ScopeProject ScopeType = "project"
	ScopeDomain  ScopeType = "domain"
	ScopeSystem  ScopeType = "system"
)

// SystemAll is the only system scope ("all").
const SystemAll = "all"

// Assignment is a role granted to a user on a project, a domain or the system.
type Assignment struct {
	ScopeType ScopeType `json:"scope_type"`
	ScopeID   string    `json:"scope_id"`
	UserID    string    `json:"user_id"`
	RoleID    string    `json:"role_id"`
}

// AppCred is a stored application credential.
type AppCred struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	Description  string     `json:"description,omitempty"`
	UserID       string     `json:"user_id"`
	ProjectID    string     `json:"project_id"`
	RoleIDs      []string   `json:"role_ids"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
	Unrestricted bool       `json:"unrestricted"`
	// SecretHash is "sha256$<salt>$<digest>" for secrets nimbo generated
	// (256 random bits: a fast hash is sound) or an argon2id PHC string for
	// secrets the user chose.
	SecretHash string    `json:"secret_hash"`
	CreatedAt  time.Time `json:"created_at"`
}

// CatalogService is a service of the catalog (identity, compute, ...).
type CatalogService struct {
	ID          string `json:"id"`
	Type        string `json:"type"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Enabled     bool   `json:"enabled"`
}

// Endpoint is a catalog endpoint.
type Endpoint struct {
	ID        string `json:"id"`
	ServiceID string `json:"service_id"`
	Interface string `json:"interface"`
	RegionID  string `json:"region_id"`
	URL       string `json:"url"`
	Enabled   bool   `json:"enabled"`
}

// Region is a region.
type Region struct {
	ID          string `json:"id"`
	Description string `json:"description,omitempty"`
}

// NewID returns a fresh Keystone-style ID: 32 lowercase hex digits.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
