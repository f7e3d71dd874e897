package network

import (
	"context"
	"math/rand/v2"
	"strconv"
	"unicode/utf8"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// MTUs by network type (VXLAN costs 50 bytes of the 1500-byte underlay).
const (
	MTUFlat  = 1500
	MTUVXLAN = 1450
)

func checkName(field string, v *string) error {
	if v != nil && utf8.RuneCountInString(*v) > 255 {
		return errdefs.Invalidf("Invalid input for %s. Reason: '%s' exceeds maximum length of 255.", field, *v)
	}
	return nil
}

func checkDescription(v *string) error {
	if v != nil && utf8.RuneCountInString(*v) > 255 {
		return errdefs.Invalidf("Invalid input for description. Reason: it exceeds maximum length of 255.")
	}
	return nil
}

// GetNetwork returns a network the caller can see.
func (s *Service) GetNetwork(c policy.Creds, id string) (Network, error) {
	n, _, ok := store.GetJSON[Network](s.cache, networkKey(id))
	if !ok || !canSee(c, "network:get_network", n.ProjectID, n.Shared || n.External) {
		return Network{}, notFound("NetworkNotFound", "Network", id)
	}
	return n, nil
}

// ListNetworks lists the networks the caller can see.
func (s *Service) ListNetworks(c policy.Creds) []Network {
	var out []Network
	for _, n := range store.ListJSON[Network](s.cache, pNetworks) {
		if canSee(c, "network:get_network", n.ProjectID, n.Shared || n.External) {
			out = append(out, n)
		}
	}
	return out
}

// SubnetIDs lists a network's subnets.
func (s *Service) SubnetIDs(networkID string) []string {
	return suffixes(s.cache, pNetSubnet+networkID+"/")
}

// CreateNetwork creates a network. Admin-only attributes (shared, external,
// provider:*) are checked by the caller's policy layer before this.
func (s *Service) CreateNetwork(ctx context.Context, c policy.Creds, r v2.NetworkRequest) (Network, error) {
	if err := checkName("name", r.Name); err != nil {
		return Network{}, err
	}
	if err := checkDescription(r.Description); err != nil {
		return Network{}, err
	}
	project, err := owner(c, r.ProjectID, r.TenantID)
	if err != nil {
		return Network{}, err
	}
	n := Network{Meta: Meta{ID: NewID(), ProjectID: project}, AdminStateUp: true, PortSecurityEnabled: true, Type: TypeVXLAN}
	s.stamp(&n.Meta, true)
	applyNetwork(&n, r)
	if r.NetworkType != nil && *r.NetworkType != "" {
		n.Type = *r.NetworkType
	}
	switch n.Type {
	case TypeVXLAN, TypeLocal:
		if r.PhysicalNetwork != nil && *r.PhysicalNetwork != "" {
			return Network{}, errdefs.Invalidf("Invalid input for operation: provider:physical_network specified for %s network.", n.Type)
		}
	case TypeFlat:
		if r.PhysicalNetwork == nil || *r.PhysicalNetwork == "" {
			return Network{}, errdefs.Invalidf("Invalid input for operation: provider:physical_network required for flat provider network.")
		}
		n.PhysicalNetwork = *r.PhysicalNetwork
		if r.SegmentationID != nil {
			return Network{}, errdefs.Invalidf("Invalid input for operation: provider:segmentation_id specified for flat provider network.")
		}
	default:
		return Network{}, errdefs.Invalidf("Invalid input for operation: network_type value '%s' not supported (vxlan, flat, local).", n.Type)
	}
	mtu := MTUFlat
	if n.Type == TypeVXLAN {
		mtu = MTUVXLAN
	}
	if r.MTU != nil {
		if int(*r.MTU) < 68 || int(*r.MTU) > mtu {
			return Network{}, errdefs.Invalidf("Invalid input for mtu. Reason: %d is not in the range 68..%d for a %s network.", *r.MTU, mtu, n.Type)
		}
		mtu = int(*r.MTU)
	}
	n.MTU = mtu
	if err := s.checkQuota(project, "network", 1); err != nil {
		return Network{}, err
	}
	for range 16 {
		t := store.Txn{Ops: []store.Op{store.PutJSON(networkKey(n.ID), n), ownOp(project, "network", n.ID)}}
		var vniKey string
		if n.Type == TypeVXLAN {
			if n.SegmentationID, err = s.pickVNI(r.SegmentationID); err != nil {
				return Network{}, err
			}
			vniKey = pVNIs + strconv.Itoa(n.SegmentationID)
			t.Ops[0] = store.PutJSON(networkKey(n.ID), n)
			t.Conds = append(t.Conds, absent(vniKey))
			t.Ops = append(t.Ops, store.Op{Kind: store.OpPut, Key: vniKey, Value: []byte(n.ID)})
		}
		err = s.cache.Commit(ctx, t)
		if !errdefs.IsConflict(err) || (r.SegmentationID != nil) {
			break
		}
	}
	if errdefs.IsConflict(err) {
		return Network{}, errdefs.Typed("SegmentationIdInUse", errdefs.Conflictf("Unable to create the network. The VXLAN %d is in use.", n.SegmentationID))
	}
	return n, err
}

// pickVNI returns the requested VNI if free, or a random free one.
func (s *Service) pickVNI(want *v2.Int) (int, error) {
	if want != nil {
		if *want < 1 || *want > 1<<24-1 {
			return 0, errdefs.Invalidf("Invalid input for operation: segmentation_id %d out of range (1 through 16777215).", *want)
		}
		if _, ok := s.cache.Get(pVNIs + strconv.Itoa(int(*want))); ok {
			return 0, errdefs.Typed("SegmentationIdInUse", errdefs.Conflictf("Unable to create the network. The VXLAN %d is in use.", *want))
		}
		return int(*want), nil
	}
	span := s.vniMax - s.vniMin + 1
	start := rand.IntN(span)
	for i := range span {
		v := s.vniMin + (start+i)%span
		if _, ok := s.cache.Get(pVNIs + strconv.Itoa(v)); !ok {
			return v, nil
		}
	}
	return 0, errdefs.Conflictf("Unable to create the network. No tenant network is available for allocation.")
}

func applyNetwork(n *Network, r v2.NetworkRequest) {
	if r.Name != nil {
		n.Name = *r.Name
	}
	if r.Description != nil {
		n.Description = *r.Description
	}
	if r.AdminStateUp != nil {
		n.AdminStateUp = *r.AdminStateUp
	}
	if r.Shared != nil {
		n.Shared = *r.Shared
	}
	if r.External != nil {
		n.External = *r.External
	}
	if r.PortSecurityEnabled != nil {
		n.PortSecurityEnabled = *r.PortSecurityEnabled
	}
	if r.AvailabilityZoneHints != nil {
		n.AZHints = *r.AvailabilityZoneHints
	}
	if r.IsDefault != nil {
		n.IsDefault = *r.IsDefault
	}
}

// UpdateNetwork changes a network's mutable attributes.
func (s *Service) UpdateNetwork(ctx context.Context, c policy.Creds, id string, r v2.NetworkRequest) (Network, error) {
	if err := checkName("name", r.Name); err != nil {
		return Network{}, err
	}
	if err := checkDescription(r.Description); err != nil {
		return Network{}, err
	}
	if r.NetworkType != nil || r.PhysicalNetwork != nil || r.SegmentationID != nil {
		return Network{}, errdefs.Invalidf("Invalid input for operation: plugin does not support updating provider attributes.")
	}
	if r.ProjectID != nil || r.TenantID != nil {
		return Network{}, errdefs.Invalidf("Cannot update read-only attribute project_id.")
	}
	var out Network
	err := s.cache.Update(ctx, func() (store.Txn, error) {
		n, rev, ok := store.GetJSON[Network](s.cache, networkKey(id))
		if !ok || !canSee(c, "network:get_network", n.ProjectID, n.Shared || n.External) {
			return store.Txn{}, notFound("NetworkNotFound", "Network", id)
		}
		if r.Shared != nil && !*r.Shared && n.Shared {
			for _, pid := range suffixes(s.cache, pNetPort+id+"/") {
				if p, _, ok := store.GetJSON[Port](s.cache, portKey(pid)); ok && p.ProjectID != n.ProjectID && p.DeviceOwner != OwnerDHCP {
					return store.Txn{}, errdefs.Typed("InvalidSharedSetting", errdefs.Conflictf("Unable to reconfigure sharing settings for network %s. Multiple tenants are using it.", id))
				}
			}
		}
		max := MTUFlat
		if n.Type == TypeVXLAN {
			max = MTUVXLAN
		}
		if r.MTU != nil {
			if int(*r.MTU) < 68 || int(*r.MTU) > max {
				return store.Txn{}, errdefs.Invalidf("Invalid input for mtu. Reason: %d is not in the range 68..%d for a %s network.", *r.MTU, max, n.Type)
			}
			n.MTU = int(*r.MTU)
		}
		applyNetwork(&n, r)
		s.stamp(&n.Meta, false)
		out = n
		return store.Txn{Conds: []store.Cond{atRev(networkKey(id), rev)}, Ops: []store.Op{store.PutJSON(networkKey(id), n)}}, nil
	})
	return out, err
}

// DeleteNetwork deletes a network with its subnets and DHCP ports; other
// ports make it a 409 NetworkInUse, as in Neutron.
func (s *Service) DeleteNetwork(ctx context.Context, c policy.Creds, id string) error {
	return s.cache.Update(ctx, func() (store.Txn, error) {
		n, rev, ok := store.GetJSON[Network](s.cache, networkKey(id))
		if !ok || !canSee(c, "network:get_network", n.ProjectID, n.Shared || n.External) {
			return store.Txn{}, notFound("NetworkNotFound", "Network", id)
		}
		t := store.Txn{Conds: []store.Cond{atRev(networkKey(id), rev)},
			Ops: []store.Op{del(networkKey(id)), unownOp(n.ProjectID, "network", id)}}
		if n.Type == TypeVXLAN {
			t.Ops = append(t.Ops, del(pVNIs+strconv.Itoa(n.SegmentationID)))
		}
		for _, pid := range suffixes(s.cache, pNetPort+id+"/") {
			p, prev, ok := store.GetJSON[Port](s.cache, portKey(pid))
			if !ok {
				continue
			}
			if p.DeviceOwner != OwnerDHCP {
				return store.Txn{}, errdefs.Typed("NetworkInUse", errdefs.Conflictf("Unable to complete operation on network %s. There are one or more ports still in use on the network.", id))
			}
			t.Conds = append(t.Conds, atRev(portKey(pid), prev))
			t.Ops = append(t.Ops, portDeleteOps(p)...)
		}
		for _, sid := range s.SubnetIDs(id) {
			if sn, _, ok := store.GetJSON[Subnet](s.cache, subnetKey(sid)); ok {
				t.Ops = append(t.Ops, subnetDeleteOps(sn)...)
			}
		}
		if len(t.Ops) > 100 {
			return store.Txn{}, errdefs.Conflictf("Network %s has too many subnets to delete at once; delete some subnets first.", id)
		}
		return t, nil
	})
}
