package policy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/policy"
)

func TestRules(t *testing.T) {
	admin := policy.Creds{UserID: "a", ProjectID: "p-admin", Roles: []string{"admin", "member", "reader"}}
	member := policy.Creds{UserID: "m", ProjectID: "p1", ProjectDomainID: "d1", Roles: []string{"member", "reader"}}
	sysReader := policy.Creds{UserID: "s", System: true, Roles: []string{"reader"}}
	domReader := policy.Creds{UserID: "r", DomainID: "d1", Roles: []string{"reader"}}
	cases := []struct {
		who    string
		c      policy.Creds
		action string
		t      policy.Target
		ok     bool
	}{
		{"admin", admin, "identity:list_users", policy.Target{}, true},
		{"admin", admin, "identity:create_project", policy.Target{}, true},
		{"member", member, "identity:list_users", policy.Target{}, false},
		{"member", member, "identity:create_project", policy.Target{}, false},
		{"member", member, "identity:get_user", policy.Target{UserID: "m"}, true},
		{"member", member, "identity:get_user", policy.Target{UserID: "other"}, false},
		{"member", member, "identity:get_project", policy.Target{ProjectID: "p1"}, true},
		{"member", member, "identity:get_project", policy.Target{ProjectID: "p2"}, false},
		{"member", member, "identity:get_domain", policy.Target{DomainID: "d1"}, true},
		{"member", member, "identity:change_password", policy.Target{UserID: "m"}, true},
		{"member", member, "identity:create_application_credential", policy.Target{UserID: "m"}, true},
		{"member", member, "identity:create_application_credential", policy.Target{UserID: "x"}, false},
		{"member", member, "identity:list_roles", policy.Target{}, false},
		{"member", member, "identity:list_regions", policy.Target{}, true},
		{"system reader", sysReader, "identity:list_users", policy.Target{}, true},
		{"system reader", sysReader, "identity:create_user", policy.Target{}, false},
		{"domain reader", domReader, "identity:list_users", policy.Target{DomainID: "d1"}, true},
		{"domain reader", domReader, "identity:list_users", policy.Target{DomainID: "d2"}, false},
		{"domain reader", domReader, "identity:list_users", policy.Target{}, false},
		{"admin", admin, "identity:no_such_action", policy.Target{}, false},
	}
	for _, c := range cases {
		err := policy.Check(c.action, c.c, c.t)
		if (err == nil) != c.ok {
			t.Errorf("%s %s %+v: allowed=%v, want %v", c.who, c.action, c.t, err == nil, c.ok)
		}
		if err != nil && (!errors.Is(err, errdefs.ErrForbidden) || !strings.Contains(err.Error(), c.action)) {
			t.Errorf("denial %v does not wrap ErrForbidden naming the action", err)
		}
	}
}

func TestMust(t *testing.T) {
	policy.Must(policy.Actions()...)
	defer func() {
		if recover() == nil {
			t.Fatal("Must accepted an unknown action")
		}
	}()
	policy.Must("identity:typo")
}

func TestL3Rules(t *testing.T) {
	admin := policy.Creds{UserID: "a", ProjectID: "p-admin", Roles: []string{"admin", "member", "reader"}}
	member := policy.Creds{UserID: "m", ProjectID: "p1", Roles: []string{"member", "reader"}}
	own, other := policy.Target{ProjectID: "p1"}, policy.Target{ProjectID: "p2"}
	for _, c := range []struct {
		c      policy.Creds
		action string
		t      policy.Target
		ok     bool
	}{
		{member, "network:create_router", policy.Target{}, true},
		{member, "network:create_router:external_gateway_info:enable_snat", policy.Target{}, false},
		{member, "network:update_router:external_gateway_info:external_fixed_ips", policy.Target{}, false},
		{admin, "network:update_router:external_gateway_info:external_fixed_ips", policy.Target{}, true},
		{member, "network:add_router_interface", own, true},
		{member, "network:add_router_interface", other, false},
		{member, "network:add_extraroutes", own, true},
		{member, "network:remove_extraroutes", other, false},
		{member, "network:create_floatingip:floating_ip_address", policy.Target{}, false},
		{member, "network:create_floatingip_port_forwarding", own, true},
		{member, "network:get_floatingip_port_forwarding", other, false},
		{admin, "network:delete_floatingip_port_forwarding", other, true},
	} {
		if err := policy.Check(c.action, c.c, c.t); (err == nil) != c.ok {
			t.Errorf("%s as %v on %+v: allowed=%v, want %v", c.action, c.c.Roles, c.t, err == nil, c.ok)
		}
	}
}
