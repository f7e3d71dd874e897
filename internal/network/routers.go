package network

import (
	"context"
	"net/netip"
	"slices"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// MaxRoutes is Neutron's default limit of extra routes per router.
const MaxRoutes = 30

// GetRouter returns a router the caller can see.
func (s *Service) GetRouter(c policy.Creds, id string) (Router, error) {
	r, _, ok := store.GetJSON[Router](s.cache, routerKey(id))
	if !ok || !canSee(c, "network:get_router", r.ProjectID, false) {
		return Router{}, notFound("RouterNotFound", "Router", id)
	}
	return r, nil
}

// ListRouters lists the routers the caller can see.
func (s *Service) ListRouters(c policy.Creds) []Router {
	var out []Router
	for _, r := range store.ListJSON[Router](s.cache, pRouters) {
		if canSee(c, "network:get_router", r.ProjectID, false) {
			out = append(out, r)
		}
	}
	return out
}

// AllRouters lists every router (for the agent).
func (s *Service) AllRouters() []Router { return store.ListJSON[Router](s.cache, pRouters) }

// RouterInterfaces lists a router's interface ports.
func (s *Service) RouterInterfaces(routerID string) []Port {
	var out []Port
	for _, p := range s.ports.List(pPorts) {
		if p.DeviceOwner == OwnerRouterInterface && p.DeviceID == routerID {
			out = append(out, p)
		}
	}
	return out
}

// routerFor reads a router the caller can see and may act on with action.
func (s *Service) routerFor(c policy.Creds, id, action string) (Router, int64, error) {
	rt, rev, ok := store.GetJSON[Router](s.cache, routerKey(id))
	if !ok || !canSee(c, "network:get_router", rt.ProjectID, false) {
		return Router{}, 0, notFound("RouterNotFound", "Router", id)
	}
	return rt, rev, policy.Check(action, c, target(rt.ProjectID, false))
}

// gatewayPolicy checks the admin-only parts of external_gateway_info.
func gatewayPolicy(c policy.Creds, g *v2.NullGateway, verb string) error {
	if g == nil || !g.Valid {
		return nil
	}
	if g.Value.EnableSNAT != nil {
		if err := policy.Check("network:"+verb+"_router:external_gateway_info:enable_snat", c, policy.Target{}); err != nil {
			return err
		}
	}
	if len(g.Value.ExternalFixedIPs) > 0 {
		if err := policy.Check("network:"+verb+"_router:external_gateway_info:external_fixed_ips", c, policy.Target{}); err != nil {
			return err
		}
	}
	return nil
}

// gatewayOps makes a router's gateway port on an external network.
func (s *Service) gatewayOps(routerID string, g v2.GatewayInfo, b *portBuild) (*RouterGateway, error) {
	n, _, ok := store.GetJSON[Network](s.cache, networkKey(g.NetworkID))
	if !ok {
		return nil, notFound("NetworkNotFound", "Network", g.NetworkID)
	}
	if !n.External {
		return nil, errdefs.Typed("BadRequest", errdefs.Invalidf("Bad router request: Network %s is not a valid external network.", n.ID))
	}
	gw := &RouterGateway{NetworkID: n.ID, EnableSNAT: true}
	if g.EnableSNAT != nil {
		gw.EnableSNAT = *g.EnableSNAT
	}
	p := Port{Meta: Meta{ID: NewID()}, NetworkID: n.ID, AdminStateUp: true, Status: StatusDown,
		DeviceOwner: OwnerRouterGateway, DeviceID: routerID, VNICType: "normal"}
	s.stamp(&p.Meta, true)
	var req *[]v2.FixedIP
	if len(g.ExternalFixedIPs) > 0 {
		req = &g.ExternalFixedIPs
	}
	if err := s.buildPort(n, &p, req, false, b); err != nil {
		return nil, err
	}
	if len(p.FixedIPs) == 0 {
		return nil, errdefs.Typed("BadRequest", errdefs.Invalidf("Bad router request: external network %s has no subnet to take an address from.", n.ID))
	}
	b.ops = append(b.ops, store.PutJSON(portKey(p.ID), p))
	gw.PortID, gw.FixedIPs = p.ID, p.FixedIPs
	return gw, nil
}

// CreateRouter creates a router, with its gateway port when asked.
func (s *Service) CreateRouter(ctx context.Context, c policy.Creds, r v2.RouterRequest) (Router, error) {
	if err := checkName("name", r.Name); err != nil {
		return Router{}, err
	}
	if err := checkDescription(r.Description); err != nil {
		return Router{}, err
	}
	if (r.Distributed != nil && *r.Distributed) || (r.HA != nil && *r.HA) {
		return Router{}, errdefs.Invalidf("Invalid input: distributed and HA routers are not supported.")
	}
	if err := gatewayPolicy(c, r.ExternalGatewayInfo, "create"); err != nil {
		return Router{}, err
	}
	project, err := owner(c, r.ProjectID, r.TenantID)
	if err != nil {
		return Router{}, err
	}
	if r.Routes != nil && len(*r.Routes) > 0 {
		return Router{}, errdefs.Invalidf("Invalid input for routes. Reason: a new router has no interfaces for the routes' next hops.")
	}
	if err := s.checkQuota(project, "router", 1); err != nil {
		return Router{}, err
	}
	rt := Router{Meta: Meta{ID: NewID(), ProjectID: project}, AdminStateUp: true}
	s.stamp(&rt.Meta, true)
	if r.Name != nil {
		rt.Name = *r.Name
	}
	if r.Description != nil {
		rt.Description = *r.Description
	}
	if r.AdminStateUp != nil {
		rt.AdminStateUp = *r.AdminStateUp
	}
	var out Router
	err = s.cache.Update(ctx, func() (store.Txn, error) {
		q := rt
		b := portBuild{}
		if r.ExternalGatewayInfo != nil && r.ExternalGatewayInfo.Valid {
			gw, err := s.gatewayOps(q.ID, r.ExternalGatewayInfo.Value, &b)
			if err != nil {
				return store.Txn{}, err
			}
			q.Gateway = gw
		}
		b.conds = append(b.conds, absent(routerKey(q.ID)))
		b.ops = append(b.ops, store.PutJSON(routerKey(q.ID), q), ownOp(project, "router", q.ID))
		out = q
		return store.Txn{Conds: b.conds, Ops: b.ops}, nil
	})
	return out, err
}

// attachedSubnets are the subnets a router has interfaces on.
func (s *Service) attachedSubnets(routerID string) []Subnet {
	var out []Subnet
	for _, p := range s.RouterInterfaces(routerID) {
		for _, f := range p.FixedIPs {
			if sn, _, ok := store.GetJSON[Subnet](s.cache, subnetKey(f.SubnetID)); ok {
				out = append(out, sn)
			}
		}
	}
	return out
}

// checkRoutes validates extra routes: each next hop must be on a subnet the
// router is attached to (an interface or its gateway).
func (s *Service) checkRoutes(rt Router, routes []v2.HostRoute) ([]Route, error) {
	if len(routes) > MaxRoutes {
		return nil, errdefs.Invalidf("Invalid input for routes. Reason: more than %d routes.", MaxRoutes)
	}
	subnets := s.attachedSubnets(rt.ID)
	if rt.Gateway != nil {
		for _, f := range rt.Gateway.FixedIPs {
			if sn, _, ok := store.GetJSON[Subnet](s.cache, subnetKey(f.SubnetID)); ok {
				subnets = append(subnets, sn)
			}
		}
	}
	var out []Route
	for _, hr := range routes {
		dst, err := netip.ParsePrefix(hr.Destination)
		if err != nil || !dst.Addr().Is4() || dst != dst.Masked() {
			return nil, errdefs.Invalidf("Invalid input for routes. Reason: '%s' is not a valid IPv4 network destination.", hr.Destination)
		}
		hop, err := parseAddr("routes", hr.NextHop)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(subnets, func(sn Subnet) bool { return sn.CIDR.Contains(hop) }) {
			return nil, errdefs.Typed("InvalidRoutes", errdefs.Invalidf("Invalid format for routes: %s, the nexthop is not connected with router", hr.NextHop))
		}
		rt := Route{Destination: dst, NextHop: hop}
		if !slices.Contains(out, rt) {
			out = append(out, rt)
		}
	}
	return out, nil
}

// UpdateRouter changes a router: name, state, routes and its gateway (set,
// changed or cleared).
func (s *Service) UpdateRouter(ctx context.Context, c policy.Creds, id string, r v2.RouterRequest) (Router, error) {
	if err := checkName("name", r.Name); err != nil {
		return Router{}, err
	}
	if err := checkDescription(r.Description); err != nil {
		return Router{}, err
	}
	if r.ProjectID != nil || r.TenantID != nil {
		return Router{}, errdefs.Invalidf("Cannot update read-only attribute project_id.")
	}
	if (r.Distributed != nil && *r.Distributed) || (r.HA != nil && *r.HA) {
		return Router{}, errdefs.Invalidf("Invalid input: distributed and HA routers are not supported.")
	}
	if err := gatewayPolicy(c, r.ExternalGatewayInfo, "update"); err != nil {
		return Router{}, err
	}
	var out Router
	err := s.cache.Update(ctx, func() (store.Txn, error) {
		rt, rev, err := s.routerFor(c, id, "network:update_router")
		if err != nil {
			return store.Txn{}, err
		}
		b := portBuild{conds: []store.Cond{atRev(routerKey(id), rev)}}
		if r.Name != nil {
			rt.Name = *r.Name
		}
		if r.Description != nil {
			rt.Description = *r.Description
		}
		if r.AdminStateUp != nil {
			rt.AdminStateUp = *r.AdminStateUp
		}
		if g := r.ExternalGatewayInfo; g != nil {
			same := g.Valid && rt.Gateway != nil && g.Value.NetworkID == rt.Gateway.NetworkID && len(g.Value.ExternalFixedIPs) == 0
			switch {
			case same:
				if g.Value.EnableSNAT != nil {
					rt.Gateway.EnableSNAT = *g.Value.EnableSNAT
				}
			default:
				if rt.Gateway != nil {
					if s.routerHasFloatingIPs(id) {
						return store.Txn{}, errdefs.Typed("RouterExternalGatewayInUseByFloatingIp", errdefs.Conflictf("Gateway cannot be updated for router %s, since a gateway to external network %s is required by one or more floating IPs.", id, rt.Gateway.NetworkID))
					}
					old, prev, ok := store.GetJSON[Port](s.cache, portKey(rt.Gateway.PortID))
					if ok {
						b.conds = append(b.conds, atRev(portKey(old.ID), prev))
						b.ops = append(b.ops, portDeleteOps(old)...)
					}
					rt.Gateway = nil
				}
				if g.Valid {
					gw, err := s.gatewayOps(id, g.Value, &b)
					if err != nil {
						return store.Txn{}, err
					}
					rt.Gateway = gw
				}
			}
		}
		if r.Routes != nil {
			routes, err := s.checkRoutes(rt, *r.Routes)
			if err != nil {
				return store.Txn{}, err
			}
			rt.Routes = routes
		}
		s.stamp(&rt.Meta, false)
		out = rt
		b.ops = append(b.ops, store.PutJSON(routerKey(id), rt))
		return store.Txn{Conds: b.conds, Ops: b.ops}, nil
	})
	return out, err
}

// routerHasFloatingIPs reports whether floating IPs are associated through
// a router.
func (s *Service) routerHasFloatingIPs(routerID string) bool {
	return len(s.cache.List(pFIPRouter+routerID+"/")) > 0
}

// DeleteRouter deletes a router without interfaces, with its gateway port.
func (s *Service) DeleteRouter(ctx context.Context, c policy.Creds, id string) error {
	return s.cache.Update(ctx, func() (store.Txn, error) {
		rt, rev, err := s.routerFor(c, id, "network:delete_router")
		if err != nil {
			return store.Txn{}, err
		}
		if len(s.RouterInterfaces(id)) > 0 {
			return store.Txn{}, errdefs.Typed("RouterInUse", errdefs.Conflictf("Router %s still has ports", id))
		}
		if s.routerHasFloatingIPs(id) {
			return store.Txn{}, errdefs.Typed("RouterInUse", errdefs.Conflictf("Router %s still has floating IPs associated through it", id))
		}
		t := store.Txn{Conds: []store.Cond{atRev(routerKey(id), rev)}, Ops: []store.Op{del(routerKey(id)), unownOp(rt.ProjectID, "router", id)}}
		if rt.Gateway != nil {
			if p, prev, ok := store.GetJSON[Port](s.cache, portKey(rt.Gateway.PortID)); ok {
				t.Conds = append(t.Conds, atRev(portKey(p.ID), prev))
				t.Ops = append(t.Ops, portDeleteOps(p)...)
			}
		}
		return t, nil
	})
}

// InterfaceInfo is what add/remove_router_interface answer.
type InterfaceInfo struct {
	RouterID, SubnetID, PortID, NetworkID, ProjectID string
}

// AddInterface attaches a router to a subnet: by subnet (a new port takes
// the subnet's gateway address) or by an unused port with one address.
func (s *Service) AddInterface(ctx context.Context, c policy.Creds, routerID string, r v2.RouterInterfaceRequest) (InterfaceInfo, error) {
	if (r.SubnetID == "") == (r.PortID == "") {
		return InterfaceInfo{}, errdefs.Typed("BadRequest", errdefs.Invalidf("Bad router request: Either subnet_id or port_id must be specified."))
	}
	var info InterfaceInfo
	err := s.cache.Update(ctx, func() (store.Txn, error) {
		rt, rev, err := s.routerFor(c, routerID, "network:add_router_interface")
		if err != nil {
			return store.Txn{}, err
		}
		b := portBuild{conds: []store.Cond{atRev(routerKey(routerID), rev)}}
		var p Port
		var sn Subnet
		if r.SubnetID != "" {
			var err error
			if sn, err = s.GetSubnet(c, r.SubnetID); err != nil {
				return store.Txn{}, err
			}
			if !sn.Gateway.IsValid() {
				return store.Txn{}, errdefs.Typed("BadRequest", errdefs.Invalidf("Bad router request: Subnet for router interface must have a gateway IP."))
			}
			if err := s.checkAttach(routerID, sn); err != nil {
				return store.Txn{}, err
			}
			n, _, _ := store.GetJSON[Network](s.cache, networkKey(sn.NetworkID))
			p = Port{Meta: Meta{ID: NewID(), ProjectID: rt.ProjectID}, NetworkID: sn.NetworkID, AdminStateUp: true, Status: StatusDown,
				DeviceOwner: OwnerRouterInterface, DeviceID: routerID, VNICType: "normal"}
			s.stamp(&p.Meta, true)
			if err := s.buildPort(n, &p, &[]v2.FixedIP{{SubnetID: sn.ID, IPAddress: sn.Gateway.String()}}, false, &b); err != nil {
				return store.Txn{}, err
			}
			b.ops = append(b.ops, ownOp(rt.ProjectID, "port", p.ID))
		} else {
			var prev int64
			var ok bool
			p, prev, ok = store.GetJSON[Port](s.cache, portKey(r.PortID))
			if !ok || !s.canSeePort(c, p) {
				return store.Txn{}, notFound("PortNotFound", "Port", r.PortID)
			}
			if p.DeviceID != "" || p.DeviceOwner != "" {
				return store.Txn{}, errdefs.Typed("PortInUse", errdefs.Conflictf("Unable to complete operation on port %s for network %s. Port already has an attached device %s.", p.ID, p.NetworkID, p.DeviceID))
			}
			if len(p.FixedIPs) != 1 {
				return store.Txn{}, errdefs.Typed("BadRequest", errdefs.Invalidf("Bad router request: Router port must have exactly one fixed IP."))
			}
			sn, _, _ = store.GetJSON[Subnet](s.cache, subnetKey(p.FixedIPs[0].SubnetID))
			if err := s.checkAttach(routerID, sn); err != nil {
				return store.Txn{}, err
			}
			p.DeviceOwner, p.DeviceID, p.SecurityGroups, p.PortSecurityEnabled = OwnerRouterInterface, routerID, nil, false
			s.stamp(&p.Meta, false)
			b.conds = append(b.conds, atRev(portKey(p.ID), prev))
		}
		b.conds = append(b.conds, absent(routedKey(sn.ID)))
		b.ops = append(b.ops, store.PutJSON(portKey(p.ID), p), store.Op{Kind: store.OpPut, Key: routedKey(sn.ID), Value: []byte(routerID)})
		info = InterfaceInfo{RouterID: routerID, SubnetID: sn.ID, PortID: p.ID, NetworkID: p.NetworkID, ProjectID: rt.ProjectID}
		return store.Txn{Conds: b.conds, Ops: b.ops}, nil
	})
	return info, err
}

// checkAttach: a subnet joins a router once, never overlapping its other
// subnets, and is routed by one router only.
func (s *Service) checkAttach(routerID string, sn Subnet) error {
	for _, other := range s.attachedSubnets(routerID) {
		if other.ID == sn.ID {
			return errdefs.Typed("BadRequest", errdefs.Invalidf("Bad router request: Router already has a port on subnet %s.", sn.ID))
		}
		if other.CIDR.Overlaps(sn.CIDR) {
			return errdefs.Typed("BadRequest", errdefs.Invalidf("Bad router request: Cidr %s of subnet %s overlaps with cidr %s of subnet %s.", sn.CIDR, sn.ID, other.CIDR, other.ID))
		}
	}
	if kv, ok := s.cache.Get(routedKey(sn.ID)); ok && string(kv.Value) != routerID {
		return errdefs.Typed("RouterInterfaceInUse", errdefs.Conflictf("Subnet %s is already routed by router %s.", sn.ID, kv.Value))
	}
	return nil
}

// RemoveInterface detaches a router from a subnet (by subnet or by port) and
// deletes the interface port, as Neutron does.
func (s *Service) RemoveInterface(ctx context.Context, c policy.Creds, routerID string, r v2.RouterInterfaceRequest) (InterfaceInfo, error) {
	if r.SubnetID == "" && r.PortID == "" {
		return InterfaceInfo{}, errdefs.Typed("BadRequest", errdefs.Invalidf("Bad router request: Either subnet_id or port_id must be specified."))
	}
	var info InterfaceInfo
	err := s.cache.Update(ctx, func() (store.Txn, error) {
		rt, rev, err := s.routerFor(c, routerID, "network:remove_router_interface")
		if err != nil {
			return store.Txn{}, err
		}
		for _, p := range s.RouterInterfaces(routerID) {
			if (r.PortID != "" && p.ID != r.PortID) || len(p.FixedIPs) == 0 {
				continue
			}
			subnetID := p.FixedIPs[0].SubnetID
			if r.SubnetID != "" && subnetID != r.SubnetID {
				continue
			}
			if s.subnetHasFloatingIPs(routerID, subnetID) {
				return store.Txn{}, errdefs.Typed("RouterInterfaceInUseByFloatingIP", errdefs.Conflictf("Router interface for subnet %s on router %s cannot be deleted, as it is required by one or more floating IPs.", subnetID, routerID))
			}
			_, prev, _ := store.GetJSON[Port](s.cache, portKey(p.ID))
			info = InterfaceInfo{RouterID: routerID, SubnetID: subnetID, PortID: p.ID, NetworkID: p.NetworkID, ProjectID: rt.ProjectID}
			return store.Txn{Conds: []store.Cond{atRev(routerKey(routerID), rev), atRev(portKey(p.ID), prev)},
				Ops: append(portDeleteOps(p), del(routedKey(subnetID)))}, nil
		}
		if r.PortID != "" {
			return store.Txn{}, errdefs.Typed("RouterInterfaceNotFound", errdefs.NotFoundf("Router %s does not have an interface with id %s", routerID, r.PortID))
		}
		return store.Txn{}, errdefs.Typed("RouterInterfaceNotFoundForSubnet", errdefs.NotFoundf("Router %s has no interface on subnet %s", routerID, r.SubnetID))
	})
	return info, err
}

// subnetHasFloatingIPs reports whether floating IPs reach ports of a subnet
// through a router.
func (s *Service) subnetHasFloatingIPs(routerID, subnetID string) bool {
	return len(s.cache.List(pFIPRouter+routerID+"/"+subnetID+"/")) > 0
}
