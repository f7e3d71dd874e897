package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"

	v3 "github.com/nimbo-cloud/nimbo/api/identity/v3"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/jsondec"
)

var errAuth = errdefs.Unauthorizedf("The request you have made requires authentication.")

// Authenticate checks the identity of an auth request (password, token or
// application credential), resolves the requested scope and issues a token.
func (s *Service) Authenticate(ctx context.Context, req *v3.AuthRequest) (*Token, error) {
	id := req.Auth.Identity
	if len(id.Methods) == 0 {
		return nil, errdefs.Invalidf("Invalid input for field 'identity': 'methods' is a required property.")
	}
	var (
		user    *User
		methods []string
		base    *payload // the token a "token" method re-scopes
		ac      *AppCred
	)
	for _, m := range id.Methods {
		if slices.Contains(methods, m) {
			continue
		}
		var u *User
		var err error
		switch m {
		case "password":
			if id.Password == nil {
				return nil, errdefs.Invalidf("Invalid input for field 'identity': 'password' is a required property.")
			}
			u, err = s.authPassword(ctx, id.Password)
		case "token":
			if id.Token == nil || id.Token.ID == "" {
				return nil, errdefs.Invalidf("Invalid input for field 'identity': 'token' with an 'id' is required.")
			}
			var p *payload
			u, p, err = s.authToken(ctx, id.Token.ID)
			base = p
		case "application_credential":
			if id.ApplicationCredential == nil {
				return nil, errdefs.Invalidf("Invalid input for field 'identity': 'application_credential' is a required property.")
			}
			u, ac, err = s.authAppCred(ctx, id.ApplicationCredential)
		default:
			return nil, errdefs.Unauthorizedf("Attempted to authenticate with an unsupported method.")
		}
		if err != nil {
			return nil, err
		}
		if user != nil && user.ID != u.ID {
			return nil, errAuth // all methods must identify the same user
		}
		user = u
		methods = append(methods, m)
	}
	now := s.now()
	p := payload{User: user.ID, Methods: methods, AuditIDs: []string{newAuditID()},
		Issued: now.UnixNano(), Expires: now.Add(s.ttl).UnixNano()}
	if base != nil {
		if base.AppCred != "" {
			return nil, errdefs.Forbiddenf("Rescoping a token issued from an application credential is not allowed.")
		}
		// A re-scoped token keeps the original's expiry and audit chain.
		p.Expires = base.Expires
		p.AuditIDs = append(p.AuditIDs, base.AuditIDs[len(base.AuditIDs)-1])
		p.Methods = mergeMethods(base.Methods, methods)
	}
	if ac != nil {
		if len(req.Auth.Scope) > 0 && !bytes.Equal(bytes.TrimSpace(req.Auth.Scope), []byte("null")) {
			return nil, errdefs.Unauthorizedf("Application credentials cannot request a scope.")
		}
		p.Project, p.AppCred = ac.ProjectID, ac.ID
		if ac.ExpiresAt != nil && ac.ExpiresAt.UnixNano() < p.Expires {
			p.Expires = ac.ExpiresAt.UnixNano()
		}
		return s.issue(p)
	}
	if err := s.scope(req.Auth.Scope, user, &p); err != nil {
		return nil, err
	}
	return s.issue(p)
}

func mergeMethods(a, b []string) []string {
	out := slices.Clone(a)
	for _, m := range b {
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// findUser resolves a user reference (by id, or by name within a domain).
func (s *Service) findUser(ref v3.NameID, field string) (*User, error) {
	if ref.ID != "" {
		u, _, ok := get[User](s, userKey(ref.ID))
		if !ok {
			return nil, nil
		}
		return &u, nil
	}
	if ref.Name == "" {
		return nil, errdefs.Invalidf("Invalid input for field '%s': a user 'id' or 'name' is required.", field)
	}
	if ref.Domain == nil {
		return nil, errdefs.Invalidf("Invalid input for field '%s': a user given by name needs a 'domain'.", field)
	}
	d, err := s.findDomainRef(*ref.Domain, field+".domain")
	if err != nil || d == nil {
		return nil, err
	}
	id, ok := s.nameIndex("user", d.ID, ref.Name)
	if !ok {
		return nil, nil
	}
	u, _, ok := get[User](s, userKey(id))
	if !ok {
		return nil, nil
	}
	return &u, nil
}

func (s *Service) findDomainRef(ref v3.NameID, field string) (*Domain, error) {
	var id string
	switch {
	case ref.ID != "":
		id = ref.ID
	case ref.Name != "":
		var ok bool
		if id, ok = s.nameIndex("domain", "-", ref.Name); !ok {
			return nil, nil
		}
	default:
		return nil, errdefs.Invalidf("Invalid input for field '%s': a domain 'id' or 'name' is required.", field)
	}
	d, _, ok := get[Domain](s, domainKey(id))
	if !ok {
		return nil, nil
	}
	return &d, nil
}

// nameIndex looks a name up in a uniqueness index.
func (s *Service) nameIndex(kind, container, name string) (string, bool) {
	kv, ok := s.cache.Get(nameKey(kind, container, name))
	if !ok {
		return "", false
	}
	return string(kv.Value), true
}

// usable reports whether a user may authenticate at all.
func (s *Service) usable(u *User) bool {
	if u == nil || !u.Enabled {
		return false
	}
	d, _, ok := get[Domain](s, domainKey(u.DomainID))
	return ok && d.Enabled
}

func (s *Service) authPassword(ctx context.Context, m *v3.PasswordMethod) (*User, error) {
	if m.User.Password == nil {
		return nil, errdefs.Invalidf("Invalid input for field 'identity.password.user': 'password' is a required property.")
	}
	u, err := s.findUser(m.User.NameID, "identity.password.user")
	if err != nil {
		return nil, err
	}
	hash := dummyHash
	if u != nil && u.PasswordHash != "" {
		hash = u.PasswordHash
	}
	ok, err := s.verifyHash(ctx, hash, *m.User.Password)
	if err != nil {
		return nil, err
	}
	if !ok || u == nil || u.PasswordHash == "" || !s.usable(u) {
		return nil, errAuth
	}
	return u, nil
}

func (s *Service) authToken(_ context.Context, id string) (*User, *payload, error) {
	plain, ok := s.sealer.open(id)
	if !ok {
		return nil, nil, errAuth
	}
	var p payload
	if err := json.Unmarshal(plain, &p); err != nil || len(p.AuditIDs) == 0 {
		return nil, nil, errAuth
	}
	t, err := s.Validate(context.Background(), id)
	if err != nil {
		return nil, nil, errAuth
	}
	return &t.User, &p, nil
}

func (s *Service) authAppCred(ctx context.Context, m *v3.AppCredMethod) (*User, *AppCred, error) {
	var ac *AppCred
	switch {
	case m.ID != "":
		if c, _, ok := get[AppCred](s, appCredKey(m.ID)); ok {
			ac = &c
		}
	case m.Name != "" && m.User != nil:
		u, err := s.findUser(*m.User, "identity.application_credential.user")
		if err != nil {
			return nil, nil, err
		}
		if u != nil {
			if id, ok := s.nameIndex("appcred", u.ID, m.Name); ok {
				if c, _, ok := get[AppCred](s, appCredKey(id)); ok {
					ac = &c
				}
			}
		}
	default:
		return nil, nil, errdefs.Invalidf("Invalid input for field 'identity.application_credential': an 'id', or a 'name' and a 'user', is required.")
	}
	hash := dummyHash
	if ac != nil {
		hash = ac.SecretHash
	}
	ok, err := s.verifyHash(ctx, hash, m.Secret)
	if err != nil {
		return nil, nil, err
	}
	if !ok || ac == nil || (ac.ExpiresAt != nil && !s.now().Before(*ac.ExpiresAt)) {
		return nil, nil, errAuth
	}
	u, _, found := get[User](s, userKey(ac.UserID))
	if !found || !s.usable(&u) {
		return nil, nil, errAuth
	}
	return &u, ac, nil
}

// scope fills the payload's scope from the request's scope (or the user's
// default project when none is asked for, as Keystone does).
func (s *Service) scope(raw json.RawMessage, u *User, p *payload) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		if p.Project != "" || p.Domain != "" || p.System {
			return nil
		}
		if u.DefaultProjectID != "" {
			if pr, _, ok := get[Project](s, projectKey(u.DefaultProjectID)); ok && pr.Enabled &&
				len(s.effectiveRoles(ScopeProject, pr.ID, u.ID)) > 0 {
				p.Project = pr.ID
			}
		}
		return nil
	}
	if bytes.Equal(raw, []byte(`"unscoped"`)) {
		return nil
	}
	var sc v3.Scope
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sc); err != nil {
		return errdefs.Invalidf("Invalid input for field 'scope': %s.", jsondec.Problem(err))
	}
	n := 0
	for _, set := range []bool{sc.Project != nil, sc.Domain != nil, sc.System != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errdefs.Invalidf("Invalid input for field 'scope': exactly one of 'project', 'domain' or 'system' is required.")
	}
	switch {
	case sc.Project != nil:
		pr, err := s.findProjectRef(*sc.Project, "scope.project")
		if err != nil {
			return err
		}
		if pr == nil {
			return errdefs.Unauthorizedf("Could not find project to scope to.")
		}
		if len(s.effectiveRoles(ScopeProject, pr.ID, u.ID)) == 0 {
			return errdefs.Unauthorizedf("User %s has no access to project %s.", u.ID, pr.ID)
		}
		p.Project, p.Domain, p.System = pr.ID, "", false
	case sc.Domain != nil:
		d, err := s.findDomainRef(*sc.Domain, "scope.domain")
		if err != nil {
			return err
		}
		if d == nil {
			return errdefs.Unauthorizedf("Could not find domain to scope to.")
		}
		if len(s.effectiveRoles(ScopeDomain, d.ID, u.ID)) == 0 {
			return errdefs.Unauthorizedf("User %s has no access to domain %s.", u.ID, d.ID)
		}
		p.Project, p.Domain, p.System = "", d.ID, false
	default:
		if !sc.System[SystemAll] {
			return errdefs.Invalidf("Invalid input for field 'scope.system': only {\"all\": true} is supported.")
		}
		if len(s.effectiveRoles(ScopeSystem, SystemAll, u.ID)) == 0 {
			return errdefs.Unauthorizedf("User %s has no access to the system.", u.ID)
		}
		p.Project, p.Domain, p.System = "", "", true
	}
	return nil
}

func (s *Service) findProjectRef(ref v3.NameID, field string) (*Project, error) {
	var id string
	switch {
	case ref.ID != "":
		id = ref.ID
	case ref.Name != "":
		if ref.Domain == nil {
			return nil, errdefs.Invalidf("Invalid input for field '%s': a project given by name needs a 'domain'.", field)
		}
		d, err := s.findDomainRef(*ref.Domain, field+".domain")
		if err != nil || d == nil {
			return nil, err
		}
		var ok bool
		if id, ok = s.nameIndex("project", d.ID, ref.Name); !ok {
			return nil, nil
		}
	default:
		return nil, errdefs.Invalidf("Invalid input for field '%s': a project 'id' or 'name' is required.", field)
	}
	pr, _, ok := get[Project](s, projectKey(id))
	if !ok {
		return nil, nil
	}
	return &pr, nil
}
