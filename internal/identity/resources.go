package identity

import (
	"context"
	"strings"
	"unicode/utf8"

	v3 "github.com/nimbo-cloud/nimbo/api/identity/v3"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// Filter selects objects in a listing; empty fields match everything.
type Filter struct {
	Name     string
	DomainID string
	Enabled  *bool
}

func (f Filter) match(name, domainID string, enabled bool) bool {
	return (f.Name == "" || f.Name == name) && (f.DomainID == "" || f.DomainID == domainID) &&
		(f.Enabled == nil || *f.Enabled == enabled)
}

// checkName validates a required or optional name field.
func checkName(field string, v *string, maxLen int, required bool) error {
	if v == nil {
		if required {
			return errdefs.Invalidf("Invalid input for field '%s': it is a required property.", field)
		}
		return nil
	}
	if strings.TrimSpace(*v) == "" {
		return errdefs.Invalidf("Invalid input for field '%s': it must not be empty.", field)
	}
	if utf8.RuneCountInString(*v) > maxLen {
		return errdefs.Invalidf("Invalid input for field '%s': it is longer than %d characters.", field, maxLen)
	}
	if strings.Contains(*v, "/") && field != "description" {
		return errdefs.Invalidf("Invalid input for field '%s': it must not contain '/'.", field)
	}
	return nil
}

func checkTags(tags *[]string) error {
	if tags == nil {
		return nil
	}
	if len(*tags) > 80 {
		return errdefs.Invalidf("Invalid input for field 'tags': at most 80 tags.")
	}
	for _, t := range *tags {
		if t == "" || utf8.RuneCountInString(t) > 255 || strings.ContainsAny(t, ",/") {
			return errdefs.Invalidf("Invalid input for field 'tags': %q is not a valid tag (1 to 255 characters, no ',' or '/').", t)
		}
	}
	return nil
}

func dupName(kind, name, where string) error {
	return errdefs.Conflictf("Conflict occurred attempting to store %s - Duplicate entry found with name %s%s.", kind, name, where)
}

// ---- domains ----

// GetDomain returns a domain.
func (s *Service) GetDomain(id string) (Domain, error) {
	d, _, ok := get[Domain](s, domainKey(id))
	if !ok {
		return d, errdefs.NotFoundf("Could not find domain: %s.", id)
	}
	return d, nil
}

// FindDomain returns a domain by ID, or else by name.
func (s *Service) FindDomain(idOrName string) (Domain, error) {
	if d, err := s.GetDomain(idOrName); err == nil {
		return d, nil
	}
	if id, ok := s.nameIndex("domain", "-", idOrName); ok {
		return s.GetDomain(id)
	}
	return Domain{}, errdefs.NotFoundf("Could not find domain: %s.", idOrName)
}

// ListDomains lists domains.
func (s *Service) ListDomains(f Filter) []Domain {
	var out []Domain
	for _, d := range list[Domain](s, pDomains) {
		if f.match(d.Name, "", d.Enabled) {
			out = append(out, d)
		}
	}
	return out
}

// CreateDomain creates a domain.
func (s *Service) CreateDomain(ctx context.Context, r v3.DomainRequest) (Domain, error) {
	if err := checkName("name", r.Name, 64, true); err != nil {
		return Domain{}, err
	}
	if err := checkTags(r.Tags); err != nil {
		return Domain{}, err
	}
	d := Domain{ID: NewID(), Name: *r.Name, Enabled: true, CreatedAt: s.now().UTC()}
	applyDomain(&d, r)
	return d, s.createDomain(ctx, d)
}

func (s *Service) createDomain(ctx context.Context, d Domain) error {
	nk := nameKey("domain", "-", d.Name)
	err := s.commit(ctx, store.Txn{Conds: []store.Cond{absent(domainKey(d.ID)), absent(nk)},
		Ops: []store.Op{put(domainKey(d.ID), d), {Kind: store.OpPut, Key: nk, Value: []byte(d.ID)}}})
	if errdefs.IsConflict(err) {
		return dupName("domain", d.Name, "")
	}
	return err
}

func applyDomain(d *Domain, r v3.DomainRequest) {
	if r.Name != nil {
		d.Name = *r.Name
	}
	if r.Description != nil {
		d.Description = *r.Description
	}
	if r.Enabled != nil {
		d.Enabled = *r.Enabled
	}
	if r.Tags != nil {
		d.Tags = *r.Tags
	}
}

// UpdateDomain changes a domain.
func (s *Service) UpdateDomain(ctx context.Context, id string, r v3.DomainRequest) (Domain, error) {
	if err := checkName("name", r.Name, 64, false); err != nil {
		return Domain{}, err
	}
	if err := checkTags(r.Tags); err != nil {
		return Domain{}, err
	}
	if id == DefaultDomainID && r.Enabled != nil && !*r.Enabled {
		return Domain{}, errdefs.Forbiddenf("The default domain cannot be disabled.")
	}
	var out Domain
	err := s.retry(ctx, func() (store.Txn, error) {
		d, rev, ok := get[Domain](s, domainKey(id))
		if !ok {
			return store.Txn{}, errdefs.NotFoundf("Could not find domain: %s.", id)
		}
		old := d.Name
		applyDomain(&d, r)
		out = d
		t := store.Txn{Conds: []store.Cond{atRev(domainKey(id), rev)}, Ops: []store.Op{put(domainKey(id), d)}}
		renameOps(&t, nameKey("domain", "-", old), nameKey("domain", "-", d.Name), id)
		return t, nil
	})
	if errdefs.IsConflict(err) {
		return Domain{}, dupName("domain", out.Name, "")
	}
	return out, err
}

// renameOps adds the index changes of a rename to t.
func renameOps(t *store.Txn, oldKey, newKey, id string) {
	if oldKey == newKey {
		return
	}
	t.Conds = append(t.Conds, absent(newKey))
	t.Ops = append(t.Ops, del(oldKey), store.Op{Kind: store.OpPut, Key: newKey, Value: []byte(id)})
}

// DeleteDomain deletes a disabled domain with its projects, users and their
// role assignments and application credentials. Each project and user goes
// in a transaction of its own, then the domain.
func (s *Service) DeleteDomain(ctx context.Context, id string) error {
	if id == DefaultDomainID {
		return errdefs.Forbiddenf("The default domain cannot be deleted.")
	}
	d, err := s.GetDomain(id)
	if err != nil {
		return err
	}
	if d.Enabled {
		return errdefs.Forbiddenf("Cannot delete a domain that is enabled, please disable it first.")
	}
	children := func() error {
		for _, p := range s.ListProjects(Filter{DomainID: id}) {
			if err := s.DeleteProject(ctx, p.ID); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
		}
		for _, u := range s.ListUsers(Filter{DomainID: id}) {
			if err := s.DeleteUser(ctx, u.ID); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
		}
		return nil
	}
	if err := children(); err != nil {
		return err
	}
	err = s.retry(ctx, func() (store.Txn, error) {
		d, rev, ok := get[Domain](s, domainKey(id))
		if !ok {
			return store.Txn{}, errdefs.NotFoundf("Could not find domain: %s.", id)
		}
		if d.Enabled {
			return store.Txn{}, errdefs.Forbiddenf("Cannot delete a domain that is enabled, please disable it first.")
		}
		return store.Txn{Conds: []store.Cond{atRev(domainKey(id), rev)},
			Ops: []store.Op{del(domainKey(id)), del(nameKey("domain", "-", d.Name)),
				{Kind: store.OpDeletePrefix, Key: pAssign + string(ScopeDomain) + "/" + id + "/"}}}, nil
	})
	if err != nil {
		return err
	}
	return children() // anything created in the domain while it was being deleted
}

// ---- projects ----

// GetProject returns a project.
func (s *Service) GetProject(id string) (Project, error) {
	p, _, ok := get[Project](s, projectKey(id))
	if !ok {
		return p, errdefs.NotFoundf("Could not find project: %s.", id)
	}
	return p, nil
}

// ListProjects lists projects.
func (s *Service) ListProjects(f Filter) []Project {
	var out []Project
	for _, p := range list[Project](s, pProjects) {
		if f.match(p.Name, p.DomainID, p.Enabled) {
			out = append(out, p)
		}
	}
	return out
}

func applyProject(p *Project, r v3.ProjectRequest) {
	if r.Name != nil {
		p.Name = *r.Name
	}
	if r.Description != nil {
		p.Description = *r.Description
	}
	if r.Enabled != nil {
		p.Enabled = *r.Enabled
	}
	if r.Tags != nil {
		p.Tags = *r.Tags
	}
}

func checkProject(r v3.ProjectRequest, create bool) error {
	if err := checkName("name", r.Name, 64, create); err != nil {
		return err
	}
	if r.IsDomain != nil && *r.IsDomain {
		return errdefs.Invalidf("Invalid input for field 'is_domain': projects acting as domains are not supported; create a domain instead.")
	}
	return checkTags(r.Tags)
}

// CreateProject creates a project in a domain (the default domain if none is given).
func (s *Service) CreateProject(ctx context.Context, r v3.ProjectRequest) (Project, error) {
	if err := checkProject(r, true); err != nil {
		return Project{}, err
	}
	domainID := DefaultDomainID
	if r.DomainID != nil && *r.DomainID != "" {
		domainID = *r.DomainID
	}
	if r.ParentID != nil && *r.ParentID != "" && *r.ParentID != domainID {
		if r.DomainID == nil {
			if _, ok := s.cache.Get(domainKey(*r.ParentID)); ok {
				domainID = *r.ParentID
			}
		}
		if *r.ParentID != domainID {
			return Project{}, errdefs.Invalidf("Invalid input for field 'parent_id': nested projects are not supported; the parent must be the project's domain.")
		}
	}
	if _, ok := s.cache.Get(domainKey(domainID)); !ok {
		return Project{}, errdefs.Invalidf("Invalid input for field 'domain_id': could not find domain %s.", domainID)
	}
	p := Project{ID: NewID(), Name: *r.Name, DomainID: domainID, Enabled: true, CreatedAt: s.now().UTC()}
	applyProject(&p, r)
	return p, s.createProject(ctx, p)
}

func (s *Service) createProject(ctx context.Context, p Project) error {
	nk := nameKey("project", p.DomainID, p.Name)
	err := s.commit(ctx, store.Txn{
		Conds: []store.Cond{absent(projectKey(p.ID)), absent(nk), present(domainKey(p.DomainID))},
		Ops:   []store.Op{put(projectKey(p.ID), p), {Kind: store.OpPut, Key: nk, Value: []byte(p.ID)}}})
	if errdefs.IsConflict(err) {
		return dupName("project", p.Name, " at domain ID "+p.DomainID)
	}
	return err
}

// UpdateProject changes a project.
func (s *Service) UpdateProject(ctx context.Context, id string, r v3.ProjectRequest) (Project, error) {
	if err := checkProject(r, false); err != nil {
		return Project{}, err
	}
	var out Project
	err := s.retry(ctx, func() (store.Txn, error) {
		p, rev, ok := get[Project](s, projectKey(id))
		if !ok {
			return store.Txn{}, errdefs.NotFoundf("Could not find project: %s.", id)
		}
		if r.DomainID != nil && *r.DomainID != p.DomainID {
			return store.Txn{}, errdefs.Invalidf("Invalid input for field 'domain_id': a project cannot move to another domain.")
		}
		old := p.Name
		applyProject(&p, r)
		out = p
		t := store.Txn{Conds: []store.Cond{atRev(projectKey(id), rev)}, Ops: []store.Op{put(projectKey(id), p)}}
		renameOps(&t, nameKey("project", p.DomainID, old), nameKey("project", p.DomainID, p.Name), id)
		return t, nil
	})
	if errdefs.IsConflict(err) {
		return Project{}, dupName("project", out.Name, " at domain ID "+out.DomainID)
	}
	return out, err
}

// DeleteProject deletes a project with its role assignments and the
// application credentials made for it.
func (s *Service) DeleteProject(ctx context.Context, id string) error {
	err := s.retry(ctx, func() (store.Txn, error) {
		p, rev, ok := get[Project](s, projectKey(id))
		if !ok {
			return store.Txn{}, errdefs.NotFoundf("Could not find project: %s.", id)
		}
		return store.Txn{Conds: []store.Cond{atRev(projectKey(id), rev)}, Ops: []store.Op{del(projectKey(p.ID)),
			del(nameKey("project", p.DomainID, p.Name)), {Kind: store.OpDeletePrefix, Key: pAssign + string(ScopeProject) + "/" + p.ID + "/"}}}, nil
	})
	if err != nil {
		return err
	}
	var ops []store.Op
	for _, ac := range list[AppCred](s, pAppCreds) {
		if ac.ProjectID == id {
			ops = append(ops, del(appCredKey(ac.ID)), del(nameKey("appcred", ac.UserID, ac.Name)))
		}
	}
	return s.sweep(ctx, ops)
}
