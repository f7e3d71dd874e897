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

// Routers and floating IPs have tags like the other standard-attribute
// resources.
func init() {
	taggable["routers"] = struct{ prefix, getAction, updateAction, typ, kind string }{
		pRouters, "network:get_router", "network:update_router", "RouterNotFound", "Router"}
	taggable["floatingips"] = struct{ prefix, getAction, updateAction, typ, kind string }{
		pFIPs, "network:get_floatingip", "network:update_floatingip", "FloatingIPNotFound", "Floating IP"}
}

// RouterStatus is the status the API reports for a router: DOWN when it is
// administratively down, else what the agent last reported (Status), DOWN
// until it has.
func RouterStatus(r Router) string {
	if !r.AdminStateUp || r.Status == "" {
		return StatusDown
	}
	return r.Status
}

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
func (s *Service) AllRouters() []Router { return s.routers.List(pRouters) }

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

// gatewayPolicy checks the admin-only parts of external_gateway_info
// (Neutron's defaults: enable_snat and external_fixed_ips are admin-only).
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

func badRouter(format string, args ...any) error {
	return errdefs.Typed("BadRequest", errdefs.Invalidf("Bad router request: "+format, args...))
}

// gatewayOps makes a router's gateway port on an external network. Its
// subnets must not overlap the router's interfaces, and a requested address
// may not be a subnet's gateway.
func (s *Service) gatewayOps(routerID string, g v2.GatewayInfo, b *portBuild) (*RouterGateway, error) {
	n, _, ok := store.GetJSON[Network](s.cache, networkKey(g.NetworkID))
	if !ok {
		return nil, notFound("NetworkNotFound", "Network", g.NetworkID)
	}
	if !n.External {
		return nil, badRouter("Network %s is not a valid external network.", n.ID)
	}
	extSubnets := s.NetworkSubnets(n.ID)
	for _, f := range g.ExternalFixedIPs {
		for _, sn := range extSubnets {
			if sn.Gateway.IsValid() && f.IPAddress == sn.Gateway.String() {
				return nil, badRouter("External IP %s is the same as the gateway IP.", f.IPAddress)
			}
		}
	}
	for _, own := range s.attachedSubnets(routerID) {
		for _, sn := range extSubnets {
			if own.ID == sn.ID {
				return nil, badRouter("Router already has a port on subnet %s.", sn.ID)
			}
			if own.CIDR.Overlaps(sn.CIDR) {
				return nil, badRouter("Cidr %s of subnet %s overlaps with cidr %s of subnet %s.", sn.CIDR, sn.ID, own.CIDR, own.ID)
			}
		}
	}
	gw := &RouterGateway{NetworkID: n.ID, EnableSNAT: true}
	if g.EnableSNAT != nil {
		gw.EnableSNAT = *g.EnableSNAT
	}
	// The gateway port has no project, as in Neutron: it is hidden from
	// the router's owner.
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
		return nil, badRouter("external network %s has no subnet to take an address from.", n.ID)
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
	if r.Routes != nil && len(r.Routes.Value) > 0 {
		return Router{}, errdefs.Typed("InvalidRoutes", errdefs.Invalidf("Invalid format for routes: a new router has no interfaces for the routes' next hops."))
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

// routerAddrs are the subnets a router is connected to (its interfaces and
// gateway gw) and its own addresses there.
func (s *Service) routerAddrs(routerID string, gw *RouterGateway) ([]Subnet, []netip.Addr) {
	var subnets []Subnet
	var ips []netip.Addr
	add := func(fixed []FixedIP) {
		for _, f := range fixed {
			if sn, _, ok := store.GetJSON[Subnet](s.cache, subnetKey(f.SubnetID)); ok {
				subnets = append(subnets, sn)
			}
			ips = append(ips, f.IP)
		}
	}
	for _, p := range s.RouterInterfaces(routerID) {
		add(p.FixedIPs)
	}
	if gw != nil {
		add(gw.FixedIPs)
	}
	return subnets, ips
}

// parseRoutes validates the syntax of extra routes: IPv4 CIDR destinations,
// IPv4 next hops, no duplicates, at most MaxRoutes.
func parseRoutes(routerID string, routes []v2.HostRoute) ([]Route, error) {
	if len(routes) > MaxRoutes {
		return nil, errdefs.Typed("RoutesExhausted", errdefs.Invalidf("Unable to complete operation for %s. The number of routes exceeds the maximum %d.", routerID, MaxRoutes))
	}
	out := make([]Route, 0, len(routes))
	for _, hr := range routes {
		dst, err := netip.ParsePrefix(hr.Destination)
		if err != nil || !dst.Addr().Is4() || dst != dst.Masked() {
			return nil, errdefs.Invalidf("Invalid input for routes. Reason: '%s' is not a valid IPv4 network destination.", hr.Destination)
		}
		hop, err := parseAddr("routes", hr.NextHop)
		if err != nil {
			return nil, err
		}
		rt := Route{Destination: dst, NextHop: hop}
		if slices.Contains(out, rt) {
			return nil, errdefs.Invalidf("Invalid input for routes. Reason: Duplicate hostroute '%s via %s'.", dst, hop)
		}
		out = append(out, rt)
	}
	return out, nil
}

// checkRoutes validates extra routes against a router's connections: each
// next hop must be on a subnet the router is attached to (an interface or
// gw), and not one of the router's own addresses.
func (s *Service) checkRoutes(routerID string, gw *RouterGateway, routes []Route) error {
	subnets, ips := s.routerAddrs(routerID, gw)
	for _, rt := range routes {
		if !slices.ContainsFunc(subnets, func(sn Subnet) bool { return sn.CIDR.Contains(rt.NextHop) }) {
			return errdefs.Typed("InvalidRoutes", errdefs.Invalidf("Invalid format for routes: %s via %s, the nexthop is not connected with router.", rt.Destination, rt.NextHop))
		}
		if slices.Contains(ips, rt.NextHop) {
			return errdefs.Typed("InvalidRoutes", errdefs.Invalidf("Invalid format for routes: %s via %s, the nexthop is used by router.", rt.Destination, rt.NextHop))
		}
	}
	return nil
}

// sameGateway reports whether a requested gateway is the router's current
// one (same network, and the same addresses when some are asked for).
func sameGateway(cur *RouterGateway, g v2.GatewayInfo) bool {
	if cur == nil || cur.NetworkID != g.NetworkID {
		return false
	}
	if len(g.ExternalFixedIPs) == 0 {
		return true
	}
	if len(g.ExternalFixedIPs) != len(cur.FixedIPs) {
		return false
	}
	for _, want := range g.ExternalFixedIPs {
		if !slices.ContainsFunc(cur.FixedIPs, func(f FixedIP) bool {
			return (want.SubnetID == "" || want.SubnetID == f.SubnetID) && (want.IPAddress == "" || want.IPAddress == f.IP.String())
		}) {
			return false
		}
	}
	return true
}

// UpdateRouter changes a router: name, state, routes and its gateway (set,
// changed or cleared). The routes are checked against the router as it will
// be, so a gateway change that strands a route is refused.
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
	var newRoutes []Route
	if r.Routes != nil {
		var err error
		if newRoutes, err = parseRoutes(id, r.Routes.Value); err != nil {
			return Router{}, err
		}
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
			if g.Valid && sameGateway(rt.Gateway, g.Value) {
				if g.Value.EnableSNAT != nil {
					gw := *rt.Gateway
					gw.EnableSNAT = *g.Value.EnableSNAT
					rt.Gateway = &gw
				}
			} else {
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
			rt.Routes = newRoutes
		}
		if err := s.checkRoutes(id, rt.Gateway, rt.Routes); err != nil {
			return store.Txn{}, err
		}
		s.stamp(&rt.Meta, false)
		out = rt
		b.ops = append(b.ops, store.PutJSON(routerKey(id), rt))
		return store.Txn{Conds: b.conds, Ops: b.ops}, nil
	})
	return out, err
}

// AddExtraRoutes adds routes to a router's routes in one step (Neutron's
// extraroute-atomic add_extraroutes): routes already there are kept once.
func (s *Service) AddExtraRoutes(ctx context.Context, c policy.Creds, id string, routes []v2.HostRoute) (Router, error) {
	return s.editRoutes(ctx, c, id, routes, "network:add_extraroutes", func(cur, req []Route) []Route {
		out := slices.Clone(cur)
		for _, r := range req {
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
		return out
	})
}

// RemoveExtraRoutes removes routes from a router's routes in one step
// (remove_extraroutes); routes that are not there are ignored, as Neutron
// does.
func (s *Service) RemoveExtraRoutes(ctx context.Context, c policy.Creds, id string, routes []v2.HostRoute) (Router, error) {
	return s.editRoutes(ctx, c, id, routes, "network:remove_extraroutes", func(cur, req []Route) []Route {
		return slices.DeleteFunc(slices.Clone(cur), func(r Route) bool { return slices.Contains(req, r) })
	})
}

func (s *Service) editRoutes(ctx context.Context, c policy.Creds, id string, routes []v2.HostRoute, action string, f func(cur, req []Route) []Route) (Router, error) {
	// Duplicates in one request are harmless here: merge them first.
	var req []Route
	for _, hr := range routes {
		one, err := parseRoutes(id, []v2.HostRoute{hr})
		if err != nil {
			return Router{}, err
		}
		if !slices.Contains(req, one[0]) {
			req = append(req, one[0])
		}
	}
	var out Router
	err := s.cache.Update(ctx, func() (store.Txn, error) {
		rt, rev, err := s.routerFor(c, id, action)
		if err != nil {
			return store.Txn{}, err
		}
		rt.Routes = f(rt.Routes, req)
		if len(rt.Routes) > MaxRoutes {
			return store.Txn{}, errdefs.Typed("RoutesExhausted", errdefs.Invalidf("Unable to complete operation for %s. The number of routes exceeds the maximum %d.", id, MaxRoutes))
		}
		if err := s.checkRoutes(id, rt.Gateway, rt.Routes); err != nil {
			return store.Txn{}, err
		}
		if len(rt.Routes) == 0 {
			rt.Routes = nil
		}
		s.stamp(&rt.Meta, false)
		out = rt
		return store.Txn{Conds: []store.Cond{atRev(routerKey(id), rev)}, Ops: []store.Op{store.PutJSON(routerKey(id), rt)}}, nil
	})
	return out, err
}

// routerHasFloatingIPs reports whether floating IPs (associations or port
// forwardings) reach ports through a router.
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
		if ifs := s.RouterInterfaces(id); len(ifs) > 0 {
			return store.Txn{}, errdefs.Typed("RouterInUse", errdefs.Conflictf("Router %s still has ports: %s.", id, ifs[0].ID))
		}
		if s.routerHasFloatingIPs(id) {
			return store.Txn{}, errdefs.Typed("RouterInUse", errdefs.Conflictf("Router %s still has floating IPs associated through it.", id))
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
	switch {
	case r.SubnetID == "" && r.PortID == "":
		return InterfaceInfo{}, badRouter("Either subnet_id or port_id must be specified.")
	case r.SubnetID != "" && r.PortID != "":
		return InterfaceInfo{}, badRouter("Cannot specify both subnet-id and port-id.")
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
				return store.Txn{}, badRouter("Subnet for router interface must have a gateway IP.")
			}
			if err := s.checkAttach(rt, sn); err != nil {
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
				return store.Txn{}, badRouter("Router port must have exactly one fixed IP.")
			}
			if len(s.cache.List(pFIPFixed+p.ID+"/")) > 0 {
				return store.Txn{}, errdefs.Typed("PortInUse", errdefs.Conflictf("Unable to complete operation on port %s for network %s. Port has a floating IP associated with it.", p.ID, p.NetworkID))
			}
			sn, _, _ = store.GetJSON[Subnet](s.cache, subnetKey(p.FixedIPs[0].SubnetID))
			if err := s.checkAttach(rt, sn); err != nil {
				return store.Txn{}, err
			}
			p.DeviceOwner, p.DeviceID, p.SecurityGroups, p.PortSecurityEnabled = OwnerRouterInterface, routerID, nil, false
			s.stamp(&p.Meta, false)
			b.conds = append(b.conds, atRev(portKey(p.ID), prev))
		}
		b.conds = append(b.conds, absent(routedKey(sn.ID)))
		b.ops = append(b.ops, store.PutJSON(portKey(p.ID), p), store.Op{Kind: store.OpPut, Key: routedKey(sn.ID), Value: []byte(routerID)})
		info = InterfaceInfo{RouterID: routerID, SubnetID: sn.ID, PortID: p.ID, NetworkID: p.NetworkID, ProjectID: p.ProjectID}
		return store.Txn{Conds: b.conds, Ops: b.ops}, nil
	})
	return info, err
}

// checkAttach: a subnet joins a router once, never overlapping its other
// subnets (interfaces and the gateway's network), and is routed by one
// router only (the router that floating IPs of its ports go through).
func (s *Service) checkAttach(rt Router, sn Subnet) error {
	others := s.attachedSubnets(rt.ID)
	if rt.Gateway != nil {
		others = append(others, s.NetworkSubnets(rt.Gateway.NetworkID)...)
	}
	for _, other := range others {
		if other.ID == sn.ID {
			return badRouter("Router already has a port on subnet %s.", sn.ID)
		}
		if other.CIDR.Overlaps(sn.CIDR) {
			return badRouter("Cidr %s of subnet %s overlaps with cidr %s of subnet %s.", sn.CIDR, sn.ID, other.CIDR, other.ID)
		}
	}
	if kv, ok := s.cache.Get(routedKey(sn.ID)); ok && string(kv.Value) != rt.ID {
		return errdefs.Typed("RouterInterfaceInUse", errdefs.Conflictf("Subnet %s is already routed by router %s: a subnet is attached to one router only.", sn.ID, kv.Value))
	}
	return nil
}

// RemoveInterface detaches a router from a subnet (by subnet or by port) and
// deletes the interface port, as Neutron does. An interface that floating
// IPs, port forwardings or extra routes need is in use.
func (s *Service) RemoveInterface(ctx context.Context, c policy.Creds, routerID string, r v2.RouterInterfaceRequest) (InterfaceInfo, error) {
	if r.SubnetID == "" && r.PortID == "" {
		return InterfaceInfo{}, badRouter("Either subnet_id or port_id must be specified.")
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
				if r.PortID != "" {
					return store.Txn{}, errdefs.Typed("SubnetMismatchForPort", errdefs.Invalidf("Subnet %s does not match the subnet of port %s.", r.SubnetID, p.ID))
				}
				continue
			}
			if s.subnetHasFloatingIPs(routerID, subnetID) {
				return store.Txn{}, errdefs.Typed("RouterInterfaceInUseByFloatingIP", errdefs.Conflictf("Router interface for subnet %s on router %s cannot be deleted, as it is required by one or more floating IPs.", subnetID, routerID))
			}
			if sn, _, ok := store.GetJSON[Subnet](s.cache, subnetKey(subnetID)); ok {
				for _, route := range rt.Routes {
					if sn.CIDR.Contains(route.NextHop) {
						return store.Txn{}, errdefs.Typed("RouterInterfaceInUseByRoute", errdefs.Conflictf("Router interface for subnet %s on router %s cannot be deleted, as it is required by one or more routes.", subnetID, routerID))
					}
				}
			}
			_, prev, _ := store.GetJSON[Port](s.cache, portKey(p.ID))
			info = InterfaceInfo{RouterID: routerID, SubnetID: subnetID, PortID: p.ID, NetworkID: p.NetworkID, ProjectID: p.ProjectID}
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

// subnetHasFloatingIPs reports whether floating IPs (associations or port
// forwardings) reach ports of a subnet through a router.
func (s *Service) subnetHasFloatingIPs(routerID, subnetID string) bool {
	return len(s.cache.List(pFIPRouter+routerID+"/"+subnetID+"/")) > 0
}
