package identity

import (
	"context"
	"slices"
	"time"

	v3 "github.com/nimbo-cloud/nimbo/api/identity/v3"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// CreateAppCred makes an application credential for the caller's user on the
// caller's project, with a subset of the caller's roles there (all of them by
// default). It returns the credential and its secret, which is never shown
// again.
func (s *Service) CreateAppCred(ctx context.Context, caller *Token, userID string, r v3.AppCredRequest) (AppCred, string, error) {
	if caller.User.ID != userID {
		return AppCred{}, "", errdefs.Forbiddenf("Application credentials can only be created for yourself.")
	}
	if caller.Project == nil {
		return AppCred{}, "", errdefs.Forbiddenf("Application credentials need a project-scoped token.")
	}
	if caller.AppCred != nil {
		return AppCred{}, "", errdefs.Forbiddenf("An application credential cannot create another one.")
	}
	if err := checkName("name", r.Name, 255, true); err != nil {
		return AppCred{}, "", err
	}
	if len(r.AccessRules) > 0 {
		return AppCred{}, "", errdefs.Invalidf("Invalid input for field 'access_rules': access rules are not supported.")
	}
	ac := AppCred{ID: NewID(), Name: *r.Name, UserID: userID, ProjectID: caller.Project.ID, CreatedAt: s.now().UTC()}
	if r.Description != nil {
		ac.Description = *r.Description
	}
	if r.Unrestricted != nil {
		ac.Unrestricted = *r.Unrestricted
	}
	if r.ExpiresAt != nil && *r.ExpiresAt != "" {
		t, err := parseTime(*r.ExpiresAt)
		if err != nil {
			return AppCred{}, "", errdefs.Invalidf("Invalid input for field 'expires_at': %q is not an ISO 8601 time.", *r.ExpiresAt)
		}
		if !t.After(s.now()) {
			return AppCred{}, "", errdefs.Invalidf("Invalid input for field 'expires_at': it is in the past.")
		}
		ac.ExpiresAt = &t
	}
	held := caller.Roles
	if len(r.Roles) == 0 {
		for _, h := range held {
			ac.RoleIDs = append(ac.RoleIDs, h.ID)
		}
	}
	for _, want := range r.Roles {
		i := slices.IndexFunc(held, func(h Role) bool { return (want.ID != "" && h.ID == want.ID) || (want.ID == "" && h.Name == want.Name) })
		if i < 0 {
			return AppCred{}, "", errdefs.Forbiddenf("Invalid input for field 'roles': you do not hold role %s%s on this project.", want.ID, want.Name)
		}
		if !slices.Contains(ac.RoleIDs, held[i].ID) {
			ac.RoleIDs = append(ac.RoleIDs, held[i].ID)
		}
	}
	secret := newSecret()
	if r.Secret != nil && *r.Secret != "" {
		secret = *r.Secret
		h, err := s.hashPassword(ctx, secret) // a chosen secret gets the slow KDF
		if err != nil {
			return AppCred{}, "", err
		}
		ac.SecretHash = h
	} else {
		ac.SecretHash = hashSecret(secret)
	}
	nk := nameKey("appcred", userID, ac.Name)
	err := s.commit(ctx, store.Txn{Conds: []store.Cond{absent(nk), present(userKey(userID)), present(projectKey(ac.ProjectID))},
		Ops: []store.Op{put(appCredKey(ac.ID), ac), {Kind: store.OpPut, Key: nk, Value: []byte(ac.ID)}}})
	if errdefs.IsConflict(err) {
		return AppCred{}, "", errdefs.Conflictf("Conflict occurred attempting to store application_credential - Duplicate entry found with name %s.", ac.Name)
	}
	return ac, secret, err
}

// GetAppCred returns a user's application credential.
func (s *Service) GetAppCred(userID, id string) (AppCred, error) {
	ac, _, ok := get[AppCred](s, appCredKey(id))
	_, live := s.cache.Get(projectKey(ac.ProjectID))
	if !ok || ac.UserID != userID || !live {
		return AppCred{}, errdefs.NotFoundf("Could not find Application Credential: %s.", id)
	}
	return ac, nil
}

// ListAppCreds lists a user's application credentials, optionally by name.
func (s *Service) ListAppCreds(userID, name string) []AppCred {
	return slices.DeleteFunc(list[AppCred](s, pAppCreds), func(ac AppCred) bool {
		_, live := s.cache.Get(projectKey(ac.ProjectID))
		return ac.UserID != userID || (name != "" && ac.Name != name) || !live
	})
}

// DeleteAppCred deletes an application credential; tokens made from it stop
// working at once.
func (s *Service) DeleteAppCred(ctx context.Context, userID, id string) error {
	ac, err := s.GetAppCred(userID, id)
	if err != nil {
		return err
	}
	return s.commit(ctx, store.Txn{Ops: []store.Op{del(appCredKey(id)), del(nameKey("appcred", userID, ac.Name))}})
}

// parseTime accepts the ISO 8601 forms clients send.
func parseTime(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999", "2006-01-02T15:04:05", "2006-01-02T15:04:05.999999Z07:00"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errdefs.Invalidf("bad time %q", v)
}
