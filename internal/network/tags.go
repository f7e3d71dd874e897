package network

import (
	"context"
	"slices"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// MaxTags is Neutron's limit of tags per resource.
const MaxTags = 50

// Taggable kinds, as in the URL (/v2.0/<kind>/<id>/tags).
var taggable = map[string]struct {
	prefix, getAction, updateAction, typ, kind string
}{
	"networks":        {pNetworks, "network:get_network", "network:update_network", "NetworkNotFound", "Network"},
	"subnets":         {pSubnets, "network:get_subnet", "network:update_subnet", "SubnetNotFound", "Subnet"},
	"ports":           {pPorts, "network:get_port", "network:update_port", "PortNotFound", "Port"},
	"security-groups": {pGroups, "network:get_security_group", "network:update_security_group", "SecurityGroupNotFound", "Security group"},
}

// Taggable reports whether kind (a collection name) has tags.
func Taggable(kind string) bool { _, ok := taggable[kind]; return ok }

// withMeta is what tag updates need of a stored resource.
type withMeta struct {
	Meta
	Shared   bool `json:"shared"`
	External bool `json:"external"`
}

// Tags returns a resource's tags.
func (s *Service) Tags(c policy.Creds, kind, id string) ([]string, error) {
	m, _, err := s.tagTarget(c, kind, id, false)
	if err != nil {
		return nil, err
	}
	return m.Tags, nil
}

func (s *Service) tagTarget(c policy.Creds, kind, id string, write bool) (withMeta, int64, error) {
	t, ok := taggable[kind]
	if !ok {
		return withMeta{}, 0, errdefs.NotFoundf("The resource could not be found.")
	}
	m, rev, ok := store.GetJSON[withMeta](s.cache, t.prefix+id)
	if !ok || !canSee(c, t.getAction, m.ProjectID, m.Shared || m.External) {
		return withMeta{}, 0, notFound(t.typ, t.kind, id)
	}
	if write {
		if err := policy.Check(t.updateAction, c, target(m.ProjectID, false)); err != nil {
			return withMeta{}, 0, err
		}
	}
	return m, rev, nil
}

// SetTags changes a resource's tags with f (replace all, add one, remove one)
// and bumps its revision; the rest of the stored object is kept as is.
func (s *Service) SetTags(ctx context.Context, c policy.Creds, kind, id string, f func([]string) ([]string, error)) ([]string, error) {
	var out []string
	err := s.cache.Update(ctx, func() (store.Txn, error) {
		m, rev, err := s.tagTarget(c, kind, id, true)
		if err != nil {
			return store.Txn{}, err
		}
		tags, err := f(slices.Clone(m.Tags))
		if err != nil {
			return store.Txn{}, err
		}
		if err := checkTags(tags); err != nil {
			return store.Txn{}, err
		}
		tags = slices.Compact(slices.Sorted(slices.Values(tags)))
		if len(tags) > MaxTags {
			return store.Txn{}, errdefs.Invalidf("Invalid input for tags. Reason: more than %d tags.", MaxTags)
		}
		out = tags
		key := taggable[kind].prefix + id
		kv, _ := s.cache.Get(key)
		obj, err := patchTags(kv.Value, tags, s)
		if err != nil {
			return store.Txn{}, err
		}
		return store.Txn{Conds: []store.Cond{atRev(key, rev)}, Ops: []store.Op{{Kind: store.OpPut, Key: key, Value: obj}}}, nil
	})
	return out, err
}
