package v3

// DomainRequest is the "domain" object of a domain create (POST) or update
// (PATCH); absent fields are nil.
type DomainRequest struct {
	Name        *string        `json:"name"`
	Description *string        `json:"description"`
	Enabled     *bool          `json:"enabled"`
	Tags        *[]string      `json:"tags"`
	Options     map[string]any `json:"options"`
}

// ProjectRequest is the "project" object of a project create or update.
type ProjectRequest struct {
	Name        *string        `json:"name"`
	DomainID    *string        `json:"domain_id"`
	Description *string        `json:"description"`
	Enabled     *bool          `json:"enabled"`
	Tags        *[]string      `json:"tags"`
	ParentID    *string        `json:"parent_id"`
	IsDomain    *bool          `json:"is_domain"`
	Options     map[string]any `json:"options"`
}

// UserRequest is the "user" object of a user create or update.
type UserRequest struct {
	Name             *string        `json:"name"`
	DomainID         *string        `json:"domain_id"`
	Password         *string        `json:"password"`
	Enabled          *bool          `json:"enabled"`
	DefaultProjectID *string        `json:"default_project_id"`
	Description      *string        `json:"description"`
	Email            *string        `json:"email"`
	Options          map[string]any `json:"options"`
}

// PasswordChange is the "user" object of POST /v3/users/{id}/password.
type PasswordChange struct {
	OriginalPassword *string `json:"original_password"`
	Password         *string `json:"password"`
}

// RoleRequest is the "role" object of a role create or update.
type RoleRequest struct {
	Name        *string        `json:"name"`
	Description *string        `json:"description"`
	DomainID    *string        `json:"domain_id"`
	Options     map[string]any `json:"options"`
}

// AppCredRequest is the "application_credential" object of a create.
type AppCredRequest struct {
	Name         *string       `json:"name"`
	Description  *string       `json:"description"`
	Secret       *string       `json:"secret"`
	ExpiresAt    *string       `json:"expires_at"`
	Roles        []AppCredRole `json:"roles"`
	Unrestricted *bool         `json:"unrestricted"`
	AccessRules  []any         `json:"access_rules"`
}
