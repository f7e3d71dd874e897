package identity

import (
	"context"
	"net/mail"

	v3 "github.com/nimbo-cloud/nimbo/api/identity/v3"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// GetUser returns a user.
func (s *Service) GetUser(id string) (User, error) {
	u, _, ok := get[User](s, userKey(id))
	if !ok {
		return u, errdefs.NotFoundf("Could not find user: %s.", id)
	}
	return u, nil
}

// ListUsers lists users.
func (s *Service) ListUsers(f Filter) []User {
	var out []User
	for _, u := range list[User](s, pUsers) {
		if f.match(u.Name, u.DomainID, u.Enabled) {
			out = append(out, u)
		}
	}
	return out
}

func (s *Service) checkUser(r v3.UserRequest, create bool) error {
	if err := checkName("name", r.Name, 255, create); err != nil {
		return err
	}
	if r.Email != nil && *r.Email != "" {
		if _, err := mail.ParseAddress(*r.Email); err != nil {
			return errdefs.Invalidf("Invalid input for field 'email': %q is not an e-mail address.", *r.Email)
		}
	}
	if r.DefaultProjectID != nil && *r.DefaultProjectID != "" {
		if _, ok := s.cache.Get(projectKey(*r.DefaultProjectID)); !ok {
			return errdefs.Invalidf("Invalid input for field 'default_project_id': could not find project %s.", *r.DefaultProjectID)
		}
	}
	return nil
}

// applyUser copies the request's fields except the password.
func applyUser(u *User, r v3.UserRequest) {
	if r.Name != nil {
		u.Name = *r.Name
	}
	if r.Enabled != nil {
		u.Enabled = *r.Enabled
	}
	if r.DefaultProjectID != nil {
		u.DefaultProjectID = *r.DefaultProjectID
	}
	if r.Description != nil {
		u.Description = *r.Description
	}
	if r.Email != nil {
		u.Email = *r.Email
	}
}

// CreateUser creates a user in a domain (the default domain if none is given).
func (s *Service) CreateUser(ctx context.Context, r v3.UserRequest) (User, error) {
	if err := s.checkUser(r, true); err != nil {
		return User{}, err
	}
	domainID := DefaultDomainID
	if r.DomainID != nil && *r.DomainID != "" {
		domainID = *r.DomainID
	}
	if _, ok := s.cache.Get(domainKey(domainID)); !ok {
		return User{}, errdefs.Invalidf("Invalid input for field 'domain_id': could not find domain %s.", domainID)
	}
	u := User{ID: NewID(), Name: *r.Name, DomainID: domainID, Enabled: true, CreatedAt: s.now().UTC()}
	applyUser(&u, r)
	if r.Password != nil {
		h, err := s.hashPassword(ctx, *r.Password)
		if err != nil {
			return User{}, err
		}
		u.PasswordHash = h
	}
	return u, s.createUser(ctx, u)
}

func (s *Service) createUser(ctx context.Context, u User) error {
	nk := nameKey("user", u.DomainID, u.Name)
	err := s.commit(ctx, store.Txn{
		Conds: []store.Cond{absent(userKey(u.ID)), absent(nk), present(domainKey(u.DomainID))},
		Ops:   []store.Op{put(userKey(u.ID), u), {Kind: store.OpPut, Key: nk, Value: []byte(u.ID)}}})
	if errdefs.IsConflict(err) {
		return dupName("user", u.Name, " at domain ID "+u.DomainID)
	}
	return err
}

// UpdateUser changes a user. A new password or disabling the user revokes
// every token the user holds, at once.
func (s *Service) UpdateUser(ctx context.Context, id string, r v3.UserRequest) (User, error) {
	if err := s.checkUser(r, false); err != nil {
		return User{}, err
	}
	var hash string
	if r.Password != nil {
		h, err := s.hashPassword(ctx, *r.Password)
		if err != nil {
			return User{}, err
		}
		hash = h
	}
	var out User
	err := s.retry(ctx, func() (store.Txn, error) {
		u, rev, ok := get[User](s, userKey(id))
		if !ok {
			return store.Txn{}, errdefs.NotFoundf("Could not find user: %s.", id)
		}
		if r.DomainID != nil && *r.DomainID != u.DomainID {
			return store.Txn{}, errdefs.Invalidf("Invalid input for field 'domain_id': a user cannot move to another domain.")
		}
		old, wasEnabled := u.Name, u.Enabled
		applyUser(&u, r)
		if hash != "" || (wasEnabled && !u.Enabled) {
			u.RevokedBefore = s.now().UTC()
		}
		if hash != "" {
			u.PasswordHash = hash
		}
		out = u
		t := store.Txn{Conds: []store.Cond{atRev(userKey(id), rev)}, Ops: []store.Op{put(userKey(id), u)}}
		renameOps(&t, nameKey("user", u.DomainID, old), nameKey("user", u.DomainID, u.Name), id)
		return t, nil
	})
	if errdefs.IsConflict(err) {
		return User{}, dupName("user", out.Name, " at domain ID "+out.DomainID)
	}
	return out, err
}

// ChangePassword is a user changing their own password (the original one must
// match); every token of the user is revoked.
func (s *Service) ChangePassword(ctx context.Context, id string, r v3.PasswordChange) error {
	if r.OriginalPassword == nil {
		return errdefs.Invalidf("Invalid input for field 'original_password': it is a required property.")
	}
	if r.Password == nil || *r.Password == "" {
		return errdefs.Invalidf("Invalid input for field 'password': it is a required property.")
	}
	u, err := s.GetUser(id)
	if err != nil {
		return err
	}
	ok, err := s.verifyHash(ctx, u.PasswordHash, *r.OriginalPassword)
	if err != nil {
		return err
	}
	if !ok || u.PasswordHash == "" {
		return errdefs.Unauthorizedf("The original password is wrong.")
	}
	_, err = s.UpdateUser(ctx, id, v3.UserRequest{Password: r.Password})
	return err
}

// userDependents are the deletions that follow a user's: their role
// assignments and application credentials.
func (s *Service) userDependents(userID string) []store.Op {
	var ops []store.Op
	for _, kv := range s.cache.List(pAssign) {
		if a, ok := parseAssignKey(kv.Key); ok && a.UserID == userID {
			ops = append(ops, del(kv.Key))
		}
	}
	for _, ac := range list[AppCred](s, pAppCreds) {
		if ac.UserID == userID {
			ops = append(ops, del(appCredKey(ac.ID)))
		}
	}
	return ops
}

// DeleteUser deletes a user with their role assignments and application
// credentials; their tokens stop working at once.
func (s *Service) DeleteUser(ctx context.Context, id string) error {
	err := s.retry(ctx, func() (store.Txn, error) {
		u, rev, ok := get[User](s, userKey(id))
		if !ok {
			return store.Txn{}, errdefs.NotFoundf("Could not find user: %s.", id)
		}
		return store.Txn{Conds: []store.Cond{atRev(userKey(id), rev)}, Ops: []store.Op{del(userKey(u.ID)),
			del(nameKey("user", u.DomainID, u.Name)), {Kind: store.OpDeletePrefix, Key: pNames + "appcred/" + u.ID + "/"}}}, nil
	})
	if err != nil {
		return err
	}
	return s.sweep(ctx, s.userDependents(id))
}

// UserProjects lists the enabled projects a user has a role on.
func (s *Service) UserProjects(userID string) []Project {
	var out []Project
	for _, p := range list[Project](s, pProjects) {
		if p.Enabled && len(s.effectiveRoles(ScopeProject, p.ID, userID)) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// UserDomains lists the enabled domains a user has a role on.
func (s *Service) UserDomains(userID string) []Domain {
	var out []Domain
	for _, d := range list[Domain](s, pDomains) {
		if d.Enabled && len(s.effectiveRoles(ScopeDomain, d.ID, userID)) > 0 {
			out = append(out, d)
		}
	}
	return out
}

// HasSystemRoles reports whether a user has a role on the system.
func (s *Service) HasSystemRoles(userID string) bool {
	return len(s.effectiveRoles(ScopeSystem, SystemAll, userID)) > 0
}
