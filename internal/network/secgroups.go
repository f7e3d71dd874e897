package network

import (
	"context"
	"net/netip"
	"strconv"
	"strings"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// Directions and ether types.
const (
	Ingress = "ingress"
	Egress  = "egress"
	IPv4    = "IPv4"
	IPv6    = "IPv6"
)

// protocols maps Neutron's protocol names to IP protocol numbers.
var protocols = map[string]int{"icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "egp": 8, "udp": 17, "ipv6-encap": 41,
	"rsvp": 46, "gre": 47, "esp": 50, "ah": 51, "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59, "ospf": 89,
	"pgm": 113, "vrrp": 112, "sctp": 132, "udplite": 136, "dccp": 33, "ipv6-route": 43, "ipv6-frag": 44, "ipv6-opts": 60}

// portProtocols take port ranges.
var portProtocols = map[int]bool{6: true, 17: true, 132: true, 33: true, 136: true}

// ProtocolNumber resolves a rule's protocol (name or number; "" is any).
func ProtocolNumber(p string) (int, bool) {
	if p == "" || p == "any" {
		return 0, true
	}
	if n, ok := protocols[strings.ToLower(p)]; ok {
		return n, true
	}
	n, err := strconv.Atoi(p)
	return n, err == nil && n >= 0 && n <= 255
}

// GetGroup returns a security group the caller can see.
func (s *Service) GetGroup(c policy.Creds, id string) (SecurityGroup, error) {
	g, _, ok := store.GetJSON[SecurityGroup](s.cache, groupKey(id))
	if !ok || !canSee(c, "network:get_security_group", g.ProjectID, false) {
		return SecurityGroup{}, notFound("SecurityGroupNotFound", "Security group", id)
	}
	return g, nil
}

// ListGroups lists the security groups the caller can see, first making the
// caller's project default group if it has none (as Neutron does).
func (s *Service) ListGroups(ctx context.Context, c policy.Creds) ([]SecurityGroup, error) {
	if c.ProjectID != "" {
		if err := s.EnsureDefaultGroup(ctx, c.ProjectID); err != nil {
			return nil, err
		}
	}
	var out []SecurityGroup
	for _, g := range store.ListJSON[SecurityGroup](s.cache, pGroups) {
		if canSee(c, "network:get_security_group", g.ProjectID, false) {
			out = append(out, g)
		}
	}
	return out, nil
}

// GroupRules lists a group's rules.
func (s *Service) GroupRules(groupID string) []Rule {
	var out []Rule
	for _, id := range suffixes(s.cache, pGroupRule+groupID+"/") {
		if r, _, ok := store.GetJSON[Rule](s.cache, ruleKey(id)); ok {
			out = append(out, r)
		}
	}
	return out
}

// EnsureDefaultGroup makes a project's "default" security group if missing.
func (s *Service) EnsureDefaultGroup(ctx context.Context, project string) error {
	if _, ok := s.cache.Get(pDefaultSG + project); ok {
		return nil
	}
	_, conds, ops := s.defaultGroupOps(project)
	err := s.cache.Commit(ctx, store.Txn{Conds: conds, Ops: ops})
	if errdefs.IsConflict(err) { // made by a concurrent request
		return nil
	}
	return err
}

// defaultGroupOps returns the ID of a project's default group and, when it
// does not exist yet, the operations that make it: Neutron's default rules
// (all egress; ingress from members of the same group).
func (s *Service) defaultGroupOps(project string) (string, []store.Cond, []store.Op) {
	if kv, ok := s.cache.Get(pDefaultSG + project); ok {
		return string(kv.Value), []store.Cond{{Key: pDefaultSG + project, Kind: store.CondPresent}}, nil
	}
	g := SecurityGroup{Meta: Meta{ID: NewID(), Name: "default", Description: "Default security group", ProjectID: project}, Stateful: true, Default: true}
	s.stamp(&g.Meta, true)
	ops := []store.Op{store.PutJSON(groupKey(g.ID), g), ownOp(project, "security_group", g.ID),
		{Kind: store.OpPut, Key: pDefaultSG + project, Value: []byte(g.ID)}}
	for _, et := range []string{IPv4, IPv6} {
		for _, dir := range []string{Egress, Ingress} {
			r := Rule{Meta: Meta{ID: NewID(), ProjectID: project}, GroupID: g.ID, Direction: dir, EtherType: et}
			if dir == Ingress {
				r.RemoteGroupID = g.ID
			}
			s.stamp(&r.Meta, true)
			ops = append(ops, s.ruleOps(r)...)
		}
	}
	return g.ID, []store.Cond{absent(pDefaultSG + project)}, ops
}

func (s *Service) ruleOps(r Rule) []store.Op {
	return []store.Op{store.PutJSON(ruleKey(r.ID), r), idx(groupRuleKey(r.GroupID, r.ID)), ownOp(r.ProjectID, "security_group_rule", r.ID)}
}

// CreateGroup creates a security group with Neutron's default egress rules.
func (s *Service) CreateGroup(ctx context.Context, c policy.Creds, r v2.SecurityGroupRequest) (SecurityGroup, error) {
	if err := checkName("name", r.Name); err != nil {
		return SecurityGroup{}, err
	}
	if err := checkDescription(r.Description); err != nil {
		return SecurityGroup{}, err
	}
	project, err := owner(c, r.ProjectID, r.TenantID)
	if err != nil {
		return SecurityGroup{}, err
	}
	if r.Name != nil && *r.Name == "default" {
		return SecurityGroup{}, errdefs.Typed("SecurityGroupDefaultAlreadyExists", errdefs.Conflictf("Default security group already exists."))
	}
	if err := s.EnsureDefaultGroup(ctx, project); err != nil {
		return SecurityGroup{}, err
	}
	g := SecurityGroup{Meta: Meta{ID: NewID(), ProjectID: project}, Stateful: true}
	if r.Name != nil {
		g.Name = *r.Name
	}
	if r.Description != nil {
		g.Description = *r.Description
	}
	if r.Stateful != nil {
		if !*r.Stateful {
			return SecurityGroup{}, errdefs.Invalidf("Invalid input for stateful. Reason: stateless security groups are not supported.")
		}
	}
	s.stamp(&g.Meta, true)
	if err := s.checkQuota(project, "security_group", 1); err != nil {
		return SecurityGroup{}, err
	}
	ops := []store.Op{store.PutJSON(groupKey(g.ID), g), ownOp(project, "security_group", g.ID)}
	for _, et := range []string{IPv4, IPv6} {
		rule := Rule{Meta: Meta{ID: NewID(), ProjectID: project}, GroupID: g.ID, Direction: Egress, EtherType: et}
		s.stamp(&rule.Meta, true)
		ops = append(ops, s.ruleOps(rule)...)
	}
	return g, s.cache.Commit(ctx, store.Txn{Conds: []store.Cond{absent(groupKey(g.ID))}, Ops: ops})
}

// UpdateGroup renames or re-describes a group (the default one keeps its name).
func (s *Service) UpdateGroup(ctx context.Context, c policy.Creds, id string, r v2.SecurityGroupRequest) (SecurityGroup, error) {
	if err := checkName("name", r.Name); err != nil {
		return SecurityGroup{}, err
	}
	if err := checkDescription(r.Description); err != nil {
		return SecurityGroup{}, err
	}
	if r.ProjectID != nil || r.TenantID != nil {
		return SecurityGroup{}, errdefs.Invalidf("Cannot update read-only attribute project_id.")
	}
	var out SecurityGroup
	err := s.cache.Update(ctx, func() (store.Txn, error) {
		g, rev, ok := store.GetJSON[SecurityGroup](s.cache, groupKey(id))
		if !ok || !canSee(c, "network:get_security_group", g.ProjectID, false) {
			return store.Txn{}, notFound("SecurityGroupNotFound", "Security group", id)
		}
		if err := policy.Check("network:update_security_group", c, target(g.ProjectID, false)); err != nil {
			return store.Txn{}, err
		}
		if r.Name != nil && *r.Name != g.Name && (g.Default || *r.Name == "default") {
			return store.Txn{}, errdefs.Typed("SecurityGroupCannotUpdateDefault", errdefs.Conflictf("Updating default security group not allowed."))
		}
		if r.Stateful != nil && !*r.Stateful {
			return store.Txn{}, errdefs.Invalidf("Invalid input for stateful. Reason: stateless security groups are not supported.")
		}
		if r.Name != nil {
			g.Name = *r.Name
		}
		if r.Description != nil {
			g.Description = *r.Description
		}
		s.stamp(&g.Meta, false)
		out = g
		return store.Txn{Conds: []store.Cond{atRev(groupKey(id), rev)}, Ops: []store.Op{store.PutJSON(groupKey(id), g)}}, nil
	})
	return out, err
}

// groupInUse reports whether a port uses a group (or a rule refers to it).
func (s *Service) groupInUse(id string) bool {
	for _, p := range s.ports.List(pPorts) {
		for _, g := range p.SecurityGroups {
			if g == id {
				return true
			}
		}
	}
	return false
}

// DeleteGroup deletes a group no port uses, with its rules.
func (s *Service) DeleteGroup(ctx context.Context, c policy.Creds, id string) error {
	return s.cache.Update(ctx, func() (store.Txn, error) {
		g, rev, ok := store.GetJSON[SecurityGroup](s.cache, groupKey(id))
		if !ok || !canSee(c, "network:get_security_group", g.ProjectID, false) {
			return store.Txn{}, notFound("SecurityGroupNotFound", "Security group", id)
		}
		if err := policy.Check("network:delete_security_group", c, target(g.ProjectID, false)); err != nil {
			return store.Txn{}, err
		}
		if g.Default && !c.IsAdmin() { // admins may (tempest's project clean-up does)
			return store.Txn{}, errdefs.Typed("SecurityGroupCannotRemoveDefault", errdefs.Conflictf("Removing default security group not allowed."))
		}
		if s.groupInUse(id) {
			return store.Txn{}, errdefs.Typed("SecurityGroupInUse", errdefs.Conflictf("Security Group %s in use.", id))
		}
		t := store.Txn{Conds: []store.Cond{atRev(groupKey(id), rev)},
			Ops: []store.Op{del(groupKey(id)), unownOp(g.ProjectID, "security_group", id), {Kind: store.OpDeletePrefix, Key: pGroupRule + id + "/"}}}
		if g.Default {
			t.Ops = append(t.Ops, del(pDefaultSG+g.ProjectID))
		}
		for _, r := range s.GroupRules(id) {
			t.Ops = append(t.Ops, del(ruleKey(r.ID)), unownOp(r.ProjectID, "security_group_rule", r.ID))
		}
		if len(t.Ops) > 100 {
			return store.Txn{}, errdefs.Conflictf("Security group %s has too many rules to delete at once; delete some rules first.", id)
		}
		return t, nil
	})
}

// GetRule returns a rule the caller can see.
func (s *Service) GetRule(c policy.Creds, id string) (Rule, error) {
	r, _, ok := store.GetJSON[Rule](s.cache, ruleKey(id))
	if !ok || !canSee(c, "network:get_security_group_rule", r.ProjectID, false) {
		return Rule{}, notFound("SecurityGroupRuleNotFound", "Security group rule", id)
	}
	return r, nil
}

// ListRules lists the rules the caller can see.
func (s *Service) ListRules(c policy.Creds) []Rule {
	var out []Rule
	for _, r := range store.ListJSON[Rule](s.cache, pRules) {
		if canSee(c, "network:get_security_group_rule", r.ProjectID, false) {
			out = append(out, r)
		}
	}
	return out
}

// CreateRule adds a rule to a group, with Neutron's validation.
func (s *Service) CreateRule(ctx context.Context, c policy.Creds, req v2.SecurityGroupRuleRequest) (Rule, error) {
	if req.SecurityGroupID == nil || *req.SecurityGroupID == "" {
		return Rule{}, errdefs.Invalidf("Failed to parse request. Required attribute 'security_group_id' not specified.")
	}
	g, err := s.GetGroup(c, *req.SecurityGroupID)
	if err != nil {
		return Rule{}, err
	}
	if err := policy.Check("network:create_security_group_rule", c, target(g.ProjectID, false)); err != nil {
		return Rule{}, err
	}
	r := Rule{Meta: Meta{ID: NewID(), ProjectID: g.ProjectID}, GroupID: g.ID, EtherType: IPv4}
	if req.Description != nil {
		if err := checkDescription(req.Description); err != nil {
			return Rule{}, err
		}
		r.Description = *req.Description
	}
	if req.Direction == nil || (*req.Direction != Ingress && *req.Direction != Egress) {
		return Rule{}, errdefs.Invalidf("Invalid input for direction. Reason: it must be 'ingress' or 'egress'.")
	}
	r.Direction = *req.Direction
	if req.EtherType != nil {
		switch strings.ToLower(*req.EtherType) {
		case "ipv4":
			r.EtherType = IPv4
		case "ipv6":
			r.EtherType = IPv6
		default:
			return Rule{}, errdefs.Invalidf("Invalid input for ethertype. Reason: '%s' is not in ['IPv4', 'IPv6'].", *req.EtherType)
		}
	}
	proto := 0
	if req.Protocol != nil && req.Protocol.Valid {
		n, ok := ProtocolNumber(req.Protocol.Value)
		if !ok {
			return Rule{}, errdefs.Typed("SecurityGroupRuleInvalidProtocol", errdefs.Invalidf("Security group rule protocol %s not supported. Only protocol values [None, ah, dccp, egp, esp, gre, icmp, icmpv6, igmp, ipip, ipv6-icmp, ospf, pgm, rsvp, sctp, tcp, udp, udplite, vrrp] and integer representations [0 to 255] are supported.", req.Protocol.Value))
		}
		proto = n
		if n != 0 {
			r.Protocol = strings.ToLower(req.Protocol.Value)
		}
	}
	if req.PortRangeMin != nil && req.PortRangeMin.Valid {
		v := req.PortRangeMin.Value
		r.PortMin = &v
	}
	if req.PortRangeMax != nil && req.PortRangeMax.Valid {
		v := req.PortRangeMax.Value
		r.PortMax = &v
	}
	if err := checkPorts(proto, &r); err != nil {
		return Rule{}, err
	}
	if req.RemoteIPPrefix != nil && req.RemoteIPPrefix.Valid && req.RemoteGroupID != nil && req.RemoteGroupID.Valid {
		return Rule{}, errdefs.Typed("SecurityGroupRemoteGroupAndRemoteIpPrefix", errdefs.Invalidf("Only remote_ip_prefix or remote_group_id may be provided."))
	}
	if req.RemoteAddressGroupID != nil && req.RemoteAddressGroupID.Valid {
		return Rule{}, errdefs.Invalidf("Invalid input for remote_address_group_id. Reason: address groups are not supported.")
	}
	if req.RemoteIPPrefix != nil && req.RemoteIPPrefix.Valid {
		p, err := netip.ParsePrefix(req.RemoteIPPrefix.Value)
		if err != nil {
			a, err2 := netip.ParseAddr(req.RemoteIPPrefix.Value)
			if err2 != nil {
				return Rule{}, errdefs.Invalidf("Invalid input for remote_ip_prefix. Reason: '%s' is not a valid IP prefix.", req.RemoteIPPrefix.Value)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if (p.Addr().Is4() && r.EtherType != IPv4) || (!p.Addr().Is4() && r.EtherType != IPv6) {
			return Rule{}, errdefs.Typed("SecurityGroupRuleParameterConflict", errdefs.Invalidf("Conflicting value ethertype %s for CIDR %s.", r.EtherType, req.RemoteIPPrefix.Value))
		}
		r.RemoteIPPrefix = p.Masked()
	}
	if req.RemoteGroupID != nil && req.RemoteGroupID.Valid {
		if _, err := s.GetGroup(c, req.RemoteGroupID.Value); err != nil {
			return Rule{}, err
		}
		r.RemoteGroupID = req.RemoteGroupID.Value
	}
	for _, o := range s.GroupRules(g.ID) {
		if o.Direction == r.Direction && o.EtherType == r.EtherType && sameProto(o.Protocol, r.Protocol) && eqInt(o.PortMin, r.PortMin) &&
			eqInt(o.PortMax, r.PortMax) && o.RemoteIPPrefix == r.RemoteIPPrefix && o.RemoteGroupID == r.RemoteGroupID {
			return Rule{}, errdefs.Typed("SecurityGroupRuleExists", errdefs.Conflictf("Security group rule already exists. Rule id is %s.", o.ID))
		}
	}
	if err := s.checkQuota(g.ProjectID, "security_group_rule", 1); err != nil {
		return Rule{}, err
	}
	s.stamp(&r.Meta, true)
	conds := []store.Cond{present(groupKey(g.ID))}
	if r.RemoteGroupID != "" {
		conds = append(conds, present(groupKey(r.RemoteGroupID)))
	}
	return r, s.cache.Commit(ctx, store.Txn{Conds: conds, Ops: s.ruleOps(r)})
}

func sameProto(a, b string) bool {
	x, _ := ProtocolNumber(a)
	y, _ := ProtocolNumber(b)
	return x == y
}

func eqInt(a, b *int) bool { return (a == nil && b == nil) || (a != nil && b != nil && *a == *b) }

// checkPorts validates a rule's port range for its protocol, as Neutron's
// _validate_port_range does (each bad value is named).
func checkPorts(proto int, r *Rule) error {
	if r.PortMin == nil && r.PortMax == nil {
		return nil
	}
	switch {
	case portProtocols[proto]:
		for _, v := range []*int{r.PortMin, r.PortMax} {
			if v != nil && (*v < 1 || *v > 65535) {
				return errdefs.Typed("SecurityGroupInvalidPortValue", errdefs.Invalidf("Invalid value for port %d.", *v))
			}
		}
		if r.PortMin == nil || r.PortMax == nil || *r.PortMin > *r.PortMax {
			return errdefs.Typed("SecurityGroupInvalidPortRange", errdefs.Invalidf("For TCP/UDP protocols, port_range_min must be <= port_range_max."))
		}
	case proto == 1 || proto == 58:
		for _, v := range []*int{r.PortMin, r.PortMax} {
			if v != nil && (*v < 0 || *v > 65535) {
				return errdefs.Typed("SecurityGroupInvalidPortValue", errdefs.Invalidf("Invalid value for port %d.", *v))
			}
		}
		if r.PortMin != nil && *r.PortMin > 255 {
			return errdefs.Typed("SecurityGroupInvalidIcmpValue", errdefs.Invalidf("Invalid value for ICMP type (port_range_min) %d. It must be 0 to 255.", *r.PortMin))
		}
		if r.PortMax != nil && *r.PortMax > 255 {
			return errdefs.Typed("SecurityGroupInvalidIcmpValue", errdefs.Invalidf("Invalid value for ICMP code (port_range_max) %d. It must be 0 to 255.", *r.PortMax))
		}
		if r.PortMin == nil && r.PortMax != nil {
			return errdefs.Typed("SecurityGroupMissingIcmpType", errdefs.Invalidf("ICMP code (port-range-max) %d is provided but ICMP type (port-range-min) is missing.", *r.PortMax))
		}
	case proto == 0:
		return errdefs.Typed("SecurityGroupProtocolRequiredWithPorts", errdefs.Invalidf("Must also specify protocol if port range is given."))
	default:
		return errdefs.Typed("SecurityGroupInvalidProtocolForPort", errdefs.Invalidf("Ports can only be given for TCP, UDP, SCTP, DCCP, UDP-Lite and ICMP rules."))
	}
	return nil
}

// DeleteRule deletes a rule.
func (s *Service) DeleteRule(ctx context.Context, c policy.Creds, id string) error {
	r, rev, ok := store.GetJSON[Rule](s.cache, ruleKey(id))
	if !ok || !canSee(c, "network:get_security_group_rule", r.ProjectID, false) {
		return notFound("SecurityGroupRuleNotFound", "Security group rule", id)
	}
	if err := policy.Check("network:delete_security_group_rule", c, target(r.ProjectID, false)); err != nil {
		return err
	}
	return s.cache.Commit(ctx, store.Txn{Conds: []store.Cond{atRev(ruleKey(id), rev)},
		Ops: []store.Op{del(ruleKey(id)), del(groupRuleKey(r.GroupID, id)), unownOp(r.ProjectID, "security_group_rule", id)}})
}
