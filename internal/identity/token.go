package identity

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"slices"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// payload is what a token carries (sealed); everything else is looked up at
// validation so that revocations take effect at once.
type payload struct {
	User     string   `json:"u"`
	Methods  []string `json:"m"`
	Project  string   `json:"p,omitempty"`
	Domain   string   `json:"d,omitempty"`
	System   bool     `json:"s,omitempty"`
	AuditIDs []string `json:"a"`
	Issued   int64    `json:"i"` // unix nanoseconds
	Expires  int64    `json:"e"` // unix nanoseconds
	AppCred  string   `json:"c,omitempty"`
}

// Token is a validated token with everything it refers to resolved.
type Token struct {
	ID            string
	User          User
	UserDomain    Domain
	Methods       []string
	Project       *Project
	ProjectDomain *Domain
	Domain        *Domain
	System        bool
	// Roles are the effective roles (implied roles included), by name.
	Roles     []Role
	AuditIDs  []string
	IssuedAt  time.Time
	ExpiresAt time.Time
	AppCred   *AppCred
}

// Scoped reports whether the token is scoped (project, domain or system).
func (t *Token) Scoped() bool { return t.Project != nil || t.Domain != nil || t.System }

// Creds is the token as policy sees it.
func (t *Token) Creds() policy.Creds {
	c := policy.Creds{UserID: t.User.ID, UserDomainID: t.User.DomainID, System: t.System}
	if t.Project != nil {
		c.ProjectID, c.ProjectDomainID = t.Project.ID, t.Project.DomainID
	}
	if t.Domain != nil {
		c.DomainID = t.Domain.ID
	}
	for _, r := range t.Roles {
		c.Roles = append(c.Roles, r.Name)
	}
	return c
}

func newAuditID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

var errTokenNotFound = errdefs.NotFoundf("Could not find token.")

// Validate opens a token and checks that it is current: not expired, not
// revoked, its user and scope still enabled and its roles still held.
// Failures wrap errdefs.ErrNotFound (as Keystone answers a validation), which
// the auth middleware turns into 401.
func (s *Service) Validate(_ context.Context, id string) (*Token, error) {
	plain, ok := s.sealer.open(id)
	if !ok {
		return nil, errTokenNotFound
	}
	var p payload
	if err := json.Unmarshal(plain, &p); err != nil || p.User == "" || len(p.AuditIDs) == 0 {
		return nil, errTokenNotFound
	}
	now := s.now()
	if now.UnixNano() >= p.Expires {
		return nil, errTokenNotFound
	}
	if _, ok := s.cache.Get(revokedKey(p.AuditIDs[0])); ok {
		return nil, errTokenNotFound
	}
	t, err := s.resolve(p)
	if err != nil {
		return nil, errTokenNotFound
	}
	t.ID = id
	return t, nil
}

// resolve looks up everything a payload refers to and checks it is current.
func (s *Service) resolve(p payload) (*Token, error) {
	u, _, ok := get[User](s, userKey(p.User))
	if !ok || !u.Enabled || p.Issued <= u.RevokedBefore.UnixNano() { // issued at or before a revocation: void
		return nil, errTokenNotFound
	}
	ud, _, ok := get[Domain](s, domainKey(u.DomainID))
	if !ok || !ud.Enabled {
		return nil, errTokenNotFound
	}
	t := &Token{User: u, UserDomain: ud, Methods: p.Methods, AuditIDs: p.AuditIDs,
		IssuedAt: time.Unix(0, p.Issued).UTC(), ExpiresAt: time.Unix(0, p.Expires).UTC(), System: p.System}
	switch {
	case p.Project != "":
		pr, _, ok := get[Project](s, projectKey(p.Project))
		if !ok || !pr.Enabled {
			return nil, errTokenNotFound
		}
		pd, _, ok := get[Domain](s, domainKey(pr.DomainID))
		if !ok || !pd.Enabled {
			return nil, errTokenNotFound
		}
		t.Project, t.ProjectDomain = &pr, &pd
		t.Roles = s.effectiveRoles(ScopeProject, pr.ID, u.ID)
	case p.Domain != "":
		d, _, ok := get[Domain](s, domainKey(p.Domain))
		if !ok || !d.Enabled {
			return nil, errTokenNotFound
		}
		t.Domain = &d
		t.Roles = s.effectiveRoles(ScopeDomain, d.ID, u.ID)
	case p.System:
		t.Roles = s.effectiveRoles(ScopeSystem, SystemAll, u.ID)
	}
	if p.AppCred != "" {
		ac, _, ok := get[AppCred](s, appCredKey(p.AppCred))
		if !ok || ac.UserID != u.ID || (ac.ExpiresAt != nil && !s.now().Before(*ac.ExpiresAt)) {
			return nil, errTokenNotFound
		}
		t.AppCred = &ac
		t.Roles = slices.DeleteFunc(t.Roles, func(r Role) bool { return !slices.Contains(s.expandRoles(ac.RoleIDs), r.ID) })
	}
	if t.Scoped() && len(t.Roles) == 0 {
		return nil, errTokenNotFound // a scoped token without roles is void
	}
	return t, nil
}

// issue seals a new token for the payload and resolves it.
func (s *Service) issue(p payload) (*Token, error) {
	t, err := s.resolve(p)
	if err != nil {
		return nil, errdefs.Unauthorizedf("The request you have made requires authentication.")
	}
	t.ID = s.sealer.seal(mustJSON(p))
	return t, nil
}

// Revoke revokes one token (by its audit ID) at once, everywhere.
func (s *Service) Revoke(ctx context.Context, t *Token) error {
	ttl := t.ExpiresAt.Sub(s.now()) + time.Minute
	return s.commit(ctx, store.Txn{Ops: []store.Op{{Kind: store.OpPut, Key: revokedKey(t.AuditIDs[0]),
		Value: mustJSON(map[string]string{"expires_at": t.ExpiresAt.Format(time.RFC3339Nano)}), TTL: ttl}}})
}
