// Package policy decides, in one place, whether a caller may perform an API
// action. Rules follow the upstream OpenStack defaults (Keystone's first): an
// "admin" role is the cloud administrator, "reader" with system scope reads
// everything, domain readers read their domain, and owners act on their own
// objects. Roles imply one another (admin ⊃ member ⊃ reader): callers pass the
// expanded role names.
package policy

import (
	"fmt"
	"slices"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// Creds is what policy knows about a caller: who, scoped to what, with which
// (effective, implied-expanded) role names.
type Creds struct {
	UserID          string
	UserDomainID    string
	ProjectID       string // set for project-scoped tokens
	ProjectDomainID string
	DomainID        string // set for domain-scoped tokens
	System          bool   // system-scoped token
	Roles           []string
}

// HasRole reports whether the caller holds role (by name).
func (c Creds) HasRole(role string) bool { return slices.Contains(c.Roles, role) }

// IsAdmin reports whether the caller is a cloud administrator (Keystone's
// "admin_required": the admin role, whatever the scope).
func (c Creds) IsAdmin() bool { return c.HasRole("admin") }

// Target describes the object an action touches; empty fields are unknown.
type Target struct {
	UserID    string // the user the object belongs to (or is)
	ProjectID string // the project the object belongs to (or is)
	DomainID  string // the domain the object belongs to (or is)
	// Shared is set for objects shared with every project (Neutron's
	// shared networks and security groups).
	Shared bool
}

// Rule decides one action.
type Rule func(c Creds, t Target) bool

// Building blocks, named after Keystone's default rule strings.
var (
	// Admin is "role:admin".
	Admin Rule = func(c Creds, _ Target) bool { return c.IsAdmin() }
	// SystemReader is "role:reader and system_scope:all".
	SystemReader Rule = func(c Creds, _ Target) bool { return c.System && c.HasRole("reader") }
	// DomainReader is "role:reader and domain_id:%(target.domain_id)s".
	DomainReader Rule = func(c Creds, t Target) bool {
		return c.DomainID != "" && c.HasRole("reader") && c.DomainID == t.DomainID
	}
	// Owner is "user_id:%(target.user_id)s".
	Owner Rule = func(c Creds, t Target) bool { return c.UserID != "" && c.UserID == t.UserID }
	// ProjectMatch is "project_id:%(target.project_id)s" (any role on the project).
	ProjectMatch Rule = func(c Creds, t Target) bool { return c.ProjectID != "" && c.ProjectID == t.ProjectID }
	// DomainMatch is a token scoped to the target domain, or to a project in it.
	DomainMatch Rule = func(c Creds, t Target) bool {
		return t.DomainID != "" && (c.DomainID == t.DomainID || c.ProjectDomainID == t.DomainID)
	}
	// Service is "role:service" (other services validating tokens).
	Service Rule = func(c Creds, _ Target) bool { return c.HasRole("service") }
	// Shared is "field:networks:shared=True": the object is shared.
	Shared Rule = func(_ Creds, t Target) bool { return t.Shared }
	// Anyone is any authenticated caller ("").
	Anyone Rule = func(Creds, Target) bool { return true }
)

// Any holds when one of rules holds.
func Any(rules ...Rule) Rule {
	return func(c Creds, t Target) bool {
		for _, r := range rules {
			if r(c, t) {
				return true
			}
		}
		return false
	}
}

var (
	adminOrReader       = Any(Admin, SystemReader)
	adminOrDomainReader = Any(Admin, SystemReader, DomainReader)
	// adminOrOwner is Neutron's ADMIN_OR_PROJECT_MEMBER for writes.
	adminOrOwner = Any(Admin, ProjectMatch)
	// adminOwnerOrShared reads what the project owns or what is shared.
	adminOwnerOrShared = Any(Admin, ProjectMatch, Shared)
)

// rules is the whole policy, action -> rule. Unknown actions are denied.
var rules = map[string]Rule{
	// Keystone: domains.
	"identity:get_domain":    Any(Admin, SystemReader, DomainMatch),
	"identity:list_domains":  adminOrReader,
	"identity:create_domain": Admin,
	"identity:update_domain": Admin,
	"identity:delete_domain": Admin,
	// Keystone: projects.
	"identity:get_project":        Any(Admin, SystemReader, DomainReader, ProjectMatch),
	"identity:list_projects":      adminOrDomainReader,
	"identity:list_user_projects": Any(Admin, SystemReader, DomainReader, Owner),
	"identity:create_project":     Admin,
	"identity:update_project":     Admin,
	"identity:delete_project":     Admin,
	// Keystone: users.
	"identity:get_user":        Any(Admin, SystemReader, DomainReader, Owner),
	"identity:list_users":      adminOrDomainReader,
	"identity:create_user":     Admin,
	"identity:update_user":     Admin,
	"identity:delete_user":     Admin,
	"identity:change_password": Owner,
	// Keystone: roles, inferences, grants and assignments.
	"identity:get_role":                     adminOrDomainReader,
	"identity:list_roles":                   adminOrDomainReader,
	"identity:create_role":                  Admin,
	"identity:update_role":                  Admin,
	"identity:delete_role":                  Admin,
	"identity:list_role_inference_rules":    adminOrReader,
	"identity:list_implied_roles":           adminOrReader,
	"identity:check_grant":                  adminOrDomainReader,
	"identity:list_grants":                  adminOrDomainReader,
	"identity:create_grant":                 Admin,
	"identity:revoke_grant":                 Admin,
	"identity:list_role_assignments":        adminOrDomainReader,
	"identity:list_system_grants_for_user":  adminOrReader,
	"identity:check_system_grant_for_user":  adminOrReader,
	"identity:create_system_grant_for_user": Admin,
	"identity:revoke_system_grant_for_user": Admin,
	// Keystone: catalog.
	"identity:get_service":    adminOrReader,
	"identity:list_services":  adminOrReader,
	"identity:get_endpoint":   adminOrReader,
	"identity:list_endpoints": adminOrReader,
	"identity:get_region":     Anyone,
	"identity:list_regions":   Anyone,
	// Keystone: tokens (the target user is the token's subject).
	"identity:validate_token": Any(Admin, SystemReader, Service, Owner),
	"identity:check_token":    Any(Admin, SystemReader, Service, Owner),
	"identity:revoke_token":   Any(Admin, Service, Owner),
	// Keystone: application credentials.
	"identity:get_application_credential":    Any(Admin, SystemReader, Owner),
	"identity:list_application_credentials":  Any(Admin, SystemReader, Owner),
	"identity:create_application_credential": Owner,
	"identity:delete_application_credential": Any(Admin, Owner),
}

// Neutron's defaults (neutron/conf/policies), for the network service.
func init() {
	for action, r := range map[string]Rule{
		"network:create_network":                                         Anyone,
		"network:create_network:shared":                                  Admin,
		"network:create_network:router:external":                         Admin,
		"network:create_network:provider":                                Admin,
		"network:create_network:is_default":                              Admin,
		"network:get_network":                                            adminOwnerOrShared,
		"network:get_network:provider":                                   Admin,
		"network:update_network":                                         adminOrOwner,
		"network:update_network:shared":                                  Admin,
		"network:update_network:router:external":                         Admin,
		"network:update_network:provider":                                Admin,
		"network:delete_network":                                         adminOrOwner,
		"network:create_subnet":                                          adminOrOwner, // target: the network's owner
		"network:get_subnet":                                             adminOwnerOrShared,
		"network:update_subnet":                                          adminOrOwner,
		"network:delete_subnet":                                          adminOrOwner,
		"network:create_port":                                            adminOwnerOrShared, // target: the network
		"network:create_port:device_owner":                               adminOrOwner,       // network:* owners need the network's owner
		"network:create_port:mac_address":                                adminOrOwner,       // target: the network's owner
		"network:create_port:fixed_ips:ip_address":                       adminOrOwner,
		"network:create_port:port_security_enabled":                      adminOrOwner,
		"network:create_port:binding":                                    Admin,
		"network:create_port:allowed_address_pairs":                      adminOrOwner,
		"network:get_port":                                               adminOrOwner,
		"network:get_port:binding":                                       Admin,
		"network:update_port":                                            adminOrOwner,
		"network:update_port:binding":                                    Admin,
		"network:update_port:mac_address":                                Admin,
		"network:delete_port":                                            adminOrOwner,
		"network:create_security_group":                                  Anyone,
		"network:get_security_group":                                     adminOwnerOrShared,
		"network:update_security_group":                                  adminOrOwner,
		"network:delete_security_group":                                  adminOrOwner,
		"network:create_security_group_rule":                             adminOrOwner, // target: the group's owner
		"network:get_security_group_rule":                                adminOwnerOrShared,
		"network:delete_security_group_rule":                             adminOrOwner,
		"network:get_quota":                                              adminOrOwner,
		"network:update_quota":                                           Admin,
		"network:delete_quota":                                           Admin,
		"network:create_for_other_project":                               Admin,
		"network:create_router":                                          Anyone,
		"network:create_router:external_gateway_info:enable_snat":        Admin,
		"network:create_router:external_gateway_info:external_fixed_ips": Admin,
		"network:update_router:external_gateway_info:enable_snat":        Admin,
		"network:update_router:external_gateway_info:external_fixed_ips": Admin,
		"network:get_router":                                             adminOrOwner,
		"network:update_router":                                          adminOrOwner,
		"network:delete_router":                                          adminOrOwner,
		"network:add_router_interface":                                   adminOrOwner,
		"network:remove_router_interface":                                adminOrOwner,
		"network:add_extraroutes":                                        adminOrOwner,
		"network:remove_extraroutes":                                     adminOrOwner,
		"network:create_floatingip":                                      Anyone,
		"network:create_floatingip:floating_ip_address":                  Admin,
		"network:get_floatingip":                                         adminOrOwner,
		"network:update_floatingip":                                      adminOrOwner,
		"network:delete_floatingip":                                      adminOrOwner,
		"network:create_floatingip_port_forwarding":                      adminOrOwner, // target: the floating IP's owner
		"network:get_floatingip_port_forwarding":                         adminOrOwner,
		"network:update_floatingip_port_forwarding":                      adminOrOwner,
		"network:delete_floatingip_port_forwarding":                      adminOrOwner,
	} {
		rules[action] = r
	}
}

// Check returns nil when c may perform action on t, else an error wrapping
// errdefs.ErrForbidden whose message names the action, as Keystone's does.
func Check(action string, c Creds, t Target) error {
	r, ok := rules[action]
	if ok && r(c, t) {
		return nil
	}
	return errdefs.Forbiddenf("You are not authorized to perform the requested action: %s.", action)
}

// Allowed is Check as a boolean, for filtering lists.
func Allowed(action string, c Creds, t Target) bool { return Check(action, c, t) == nil }

// Actions lists every action with a rule (for tests and docs).
func Actions() []string {
	out := make([]string, 0, len(rules))
	for a := range rules {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// Must panics if action has no rule; call it at init for the actions a service
// uses so a typo fails at start-up rather than denying at run time.
func Must(actions ...string) {
	for _, a := range actions {
		if _, ok := rules[a]; !ok {
			panic(fmt.Sprintf("policy: no rule for %q", a))
		}
	}
}
