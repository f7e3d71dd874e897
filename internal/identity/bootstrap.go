package identity

import (
	"context"
	"fmt"

	v3 "github.com/nimbo-cloud/nimbo/api/identity/v3"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// BootstrapConfig says how to set up a new cloud's identity.
type BootstrapConfig struct {
	// AdminPassword sets the admin user's password; empty keeps the existing
	// one (and is an error on a new cloud).
	AdminPassword string
	// PublicURL is the base URL of the API ("http://host:port").
	PublicURL string
	// Region is the region name (RegionOne by default).
	Region string
}

// BootstrapResult tells what Bootstrap did.
type BootstrapResult struct {
	// New is true when this call created the cloud's identity.
	New bool
	// PasswordChanged is true when the admin password was set or changed.
	PasswordChanged bool
}

// Bootstrap makes sure the cloud's base identity exists, like
// keystone-manage bootstrap: the Default domain; the admin, member, reader
// and service roles (admin implies member implies reader); the admin project
// and user, with admin on that project and on the system; the region; and the
// identity service in the catalog. It is idempotent: a later call repairs
// what is missing and keeps the rest.
func (s *Service) Bootstrap(ctx context.Context, c BootstrapConfig) (BootstrapResult, error) {
	var res BootstrapResult
	if c.Region == "" {
		c.Region = "RegionOne"
	}
	res.New = !s.Bootstrapped()
	if _, ok := s.cache.Get(domainKey(DefaultDomainID)); !ok {
		d := Domain{ID: DefaultDomainID, Name: "Default", Description: "The default domain", Enabled: true, CreatedAt: s.now().UTC()}
		if err := s.createDomain(ctx, d); err != nil && !errdefs.IsConflict(err) {
			return res, fmt.Errorf("bootstrap: default domain: %w", err)
		}
	}
	roleIDs := map[string]string{}
	for _, name := range builtinRoles {
		if id, ok := s.nameIndex("role", "-", name); ok {
			roleIDs[name] = id
			continue
		}
		r := Role{ID: NewID(), Name: name}
		if err := s.createRole(ctx, r); err != nil {
			return res, fmt.Errorf("bootstrap: role %s: %w", name, err)
		}
		roleIDs[name] = r.ID
	}
	for _, pair := range [][2]string{{"admin", "member"}, {"member", "reader"}} {
		if err := s.AddImplication(ctx, roleIDs[pair[0]], roleIDs[pair[1]]); err != nil && !errdefs.IsConflict(err) {
			return res, fmt.Errorf("bootstrap: implied role: %w", err)
		}
	}
	projectID, ok := s.nameIndex("project", DefaultDomainID, "admin")
	if !ok {
		p := Project{ID: NewID(), Name: "admin", DomainID: DefaultDomainID, Description: "Bootstrap project for the cloud administrator", Enabled: true, CreatedAt: s.now().UTC()}
		if err := s.createProject(ctx, p); err != nil {
			return res, fmt.Errorf("bootstrap: admin project: %w", err)
		}
		projectID = p.ID
	}
	userID, ok := s.nameIndex("user", DefaultDomainID, "admin")
	if !ok {
		if c.AdminPassword == "" {
			return res, fmt.Errorf("bootstrap: a new cloud needs an admin password")
		}
		u, err := s.CreateUser(ctx, v3.UserRequest{Name: ptr("admin"), Password: &c.AdminPassword, DefaultProjectID: &projectID})
		if err != nil {
			return res, fmt.Errorf("bootstrap: admin user: %w", err)
		}
		userID, res.PasswordChanged = u.ID, true
	} else if c.AdminPassword != "" {
		u, err := s.GetUser(userID)
		if err != nil {
			return res, err
		}
		same, err := s.verifyHash(ctx, u.PasswordHash, c.AdminPassword)
		if err != nil {
			return res, err
		}
		if !same || !u.Enabled {
			if _, err := s.UpdateUser(ctx, userID, v3.UserRequest{Password: &c.AdminPassword, Enabled: ptr(true)}); err != nil {
				return res, fmt.Errorf("bootstrap: admin password: %w", err)
			}
			res.PasswordChanged = true
		}
	}
	for _, a := range []Assignment{
		{ScopeType: ScopeProject, ScopeID: projectID, UserID: userID, RoleID: roleIDs["admin"]},
		{ScopeType: ScopeSystem, ScopeID: SystemAll, UserID: userID, RoleID: roleIDs["admin"]},
	} {
		if !s.HasGrant(a) {
			if err := s.Grant(ctx, a); err != nil {
				return res, fmt.Errorf("bootstrap: admin grant: %w", err)
			}
		}
	}
	if err := s.RegisterService(ctx, "identity", "keystone", "nimbo identity (Keystone v3)", c.Region, c.PublicURL+"/v3"); err != nil {
		return res, fmt.Errorf("bootstrap: catalog: %w", err)
	}
	if err := s.collectGarbage(ctx); err != nil {
		return res, fmt.Errorf("bootstrap: garbage collection: %w", err)
	}
	if res.New {
		if err := s.commit(ctx, store.Txn{Ops: []store.Op{{Kind: store.OpPut, Key: kBootstrapped, Value: []byte("1")}}}); err != nil {
			return res, err
		}
	}
	return res, nil
}

// Bootstrapped reports whether Bootstrap has completed on this cloud before.
func (s *Service) Bootstrapped() bool {
	_, ok := s.cache.Get(kBootstrapped)
	return ok
}

func ptr[T any](v T) *T { return &v }
