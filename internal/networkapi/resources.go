package networkapi

import (
	"encoding/json"
	"net/http"
	"time"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/listquery"
	"github.com/nimbo-cloud/nimbo/internal/network"
	"github.com/nimbo-cloud/nimbo/internal/policy"
)

// resource is one Neutron collection with its handlers.
type resource struct {
	key, collection string
	// jsonKey is the collection's key in bodies when it differs from the
	// URL segment (security_groups vs /security-groups).
	jsonKey string
	spec    listquery.Spec
	list    func(r *http.Request) ([]map[string]any, error)
	show    func(r *http.Request, id string) (map[string]any, error)
	create  func(r *http.Request, raw json.RawMessage) (map[string]any, string, error)
	update  func(r *http.Request, id string, raw json.RawMessage) (map[string]any, error) // nil: immutable
	remove  func(r *http.Request, id string) error
}

func ts(t time.Time) string { return t.UTC().Format(v2.TimeFormat) }

func tagsOf(t []string) []string {
	if t == nil {
		return []string{}
	}
	return t
}

// Attribute kinds shared by every resource (Neutron's standard attributes).
func stdAttrs(extra map[string]listquery.Attr) map[string]listquery.Attr {
	m := map[string]listquery.Attr{
		"id": {Kind: listquery.String, Sort: true}, "name": {Kind: listquery.String, Sort: true},
		"description": {Kind: listquery.String, Sort: true}, "project_id": {Kind: listquery.String, Sort: true},
		"tenant_id": {Kind: listquery.String, Sort: true}, "tags": {Kind: listquery.Tags},
		"created_at": {Kind: listquery.String, Sort: true}, "updated_at": {Kind: listquery.String, Sort: true},
		"revision_number": {Kind: listquery.Int, Sort: true},
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func markerNotFound(typ, kind string) func(string) error {
	return func(id string) error {
		return errdefs.Typed(typ, errdefs.NotFoundf("%s %s could not be found.", kind, id))
	}
}

// ignoreMarker: Neutron ignores an unknown marker for resources stored as
// versioned objects (subnets, security groups and their rules).
func ignoreMarker(string) error { return nil }

// ---- rendering ----

func (a *API) network(c policy.Creds, n network.Network) map[string]any {
	out := v2.Network{ID: n.ID, Name: n.Name, Description: n.Description, ProjectID: n.ProjectID, TenantID: n.ProjectID,
		AdminStateUp: n.AdminStateUp, Status: network.StatusActive, Shared: n.Shared, External: n.External, MTU: n.MTU,
		Subnets: a.svc.SubnetIDs(n.ID), PortSecurityEnabled: n.PortSecurityEnabled, AvailabilityZones: []string{"nova"},
		AvailabilityZoneHints: n.AZHints, IsDefault: n.IsDefault, Tags: tagsOf(n.Tags), CreatedAt: ts(n.CreatedAt),
		UpdatedAt: ts(n.UpdatedAt), RevisionNumber: n.Revision}
	if out.AvailabilityZoneHints == nil {
		out.AvailabilityZoneHints = []string{}
	}
	if !n.AdminStateUp {
		out.Status = network.StatusDown
	}
	m := render(out)
	if policy.Allowed("network:get_network:provider", c, policy.Target{ProjectID: n.ProjectID}) {
		m["provider:network_type"] = n.Type
		m["provider:physical_network"] = nil
		if n.PhysicalNetwork != "" {
			m["provider:physical_network"] = n.PhysicalNetwork
		}
		m["provider:segmentation_id"] = nil
		if n.SegmentationID != 0 {
			m["provider:segmentation_id"] = float64(n.SegmentationID)
		}
	}
	return m
}

func subnetWire(sn network.Subnet) v2.Subnet {
	out := v2.Subnet{ID: sn.ID, Name: sn.Name, Description: sn.Description, ProjectID: sn.ProjectID, TenantID: sn.ProjectID,
		NetworkID: sn.NetworkID, IPVersion: 4, CIDR: sn.CIDR.String(), EnableDHCP: sn.EnableDHCP,
		AllocationPools: []v2.AllocationPool{}, DNSNameservers: []string{}, HostRoutes: []v2.HostRoute{}, ServiceTypes: []string{},
		Tags: tagsOf(sn.Tags), CreatedAt: ts(sn.CreatedAt), UpdatedAt: ts(sn.UpdatedAt), RevisionNumber: sn.Revision}
	if sn.Gateway.IsValid() {
		g := sn.Gateway.String()
		out.GatewayIP = &g
	}
	for _, p := range sn.Pools {
		out.AllocationPools = append(out.AllocationPools, v2.AllocationPool{Start: p.Start.String(), End: p.End.String()})
	}
	for _, d := range sn.DNS {
		out.DNSNameservers = append(out.DNSNameservers, d.String())
	}
	for _, hr := range sn.HostRoutes {
		out.HostRoutes = append(out.HostRoutes, v2.HostRoute{Destination: hr.Destination.String(), NextHop: hr.NextHop.String()})
	}
	return out
}

func (a *API) port(c policy.Creds, p network.Port) map[string]any {
	return renderPort(p, bindingVisible(c, p))
}

// bindingVisible says whether c sees p's binding:* attributes.
func bindingVisible(c policy.Creds, p network.Port) bool {
	return policy.Allowed("network:get_port:binding", c, policy.Target{ProjectID: p.ProjectID})
}

// renderPort is p on the wire, with or without its binding:* attributes.
func renderPort(p network.Port, binding bool) map[string]any {
	out := v2.Port{ID: p.ID, Name: p.Name, Description: p.Description, ProjectID: p.ProjectID, TenantID: p.ProjectID,
		NetworkID: p.NetworkID, AdminStateUp: p.AdminStateUp, Status: p.Status, MACAddress: p.MAC, FixedIPs: []v2.FixedIP{},
		DeviceID: p.DeviceID, DeviceOwner: p.DeviceOwner, SecurityGroups: p.SecurityGroups, AllowedAddressPairs: []v2.AddressPair{},
		PortSecurityEnabled: p.PortSecurityEnabled, ExtraDHCPOpts: []any{}, IPAllocation: "immediate", Tags: tagsOf(p.Tags),
		CreatedAt: ts(p.CreatedAt), UpdatedAt: ts(p.UpdatedAt), RevisionNumber: p.Revision}
	if out.SecurityGroups == nil {
		out.SecurityGroups = []string{}
	}
	for _, f := range p.FixedIPs {
		out.FixedIPs = append(out.FixedIPs, v2.FixedIP{SubnetID: f.SubnetID, IPAddress: f.IP.String()})
	}
	for _, ap := range p.AddressPairs {
		ip := ap.IP.String()
		if ap.IP.IsSingleIP() {
			ip = ap.IP.Addr().String()
		}
		mac := ap.MAC
		if mac == "" {
			mac = p.MAC
		}
		out.AllowedAddressPairs = append(out.AllowedAddressPairs, v2.AddressPair{IPAddress: ip, MACAddress: mac})
	}
	m := render(out)
	if binding {
		vif := p.VIFType
		if vif == "" {
			vif = "unbound"
		}
		m["binding:host_id"] = p.HostID
		m["binding:vif_type"] = vif
		m["binding:vif_details"] = orEmpty(p.VIFDetails)
		m["binding:vnic_type"] = p.VNICType
		m["binding:profile"] = orEmpty(p.Profile)
	} else {
		for _, k := range []string{"binding:host_id", "binding:vif_type", "binding:vif_details", "binding:vnic_type", "binding:profile"} {
			delete(m, k)
		}
	}
	return m
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func (a *API) rule(r network.Rule) v2.SecurityGroupRule {
	out := v2.SecurityGroupRule{ID: r.ID, SecurityGroupID: r.GroupID, Direction: r.Direction, EtherType: r.EtherType,
		Description: r.Description, ProjectID: r.ProjectID, TenantID: r.ProjectID, CreatedAt: ts(r.CreatedAt),
		UpdatedAt: ts(r.UpdatedAt), RevisionNumber: r.Revision}
	if g, err := a.svc.GetGroup(policy.Creds{Roles: []string{"admin"}}, r.GroupID); err == nil {
		out.BelongsToDefaultGroup = g.Default
	}
	if r.Protocol != "" {
		p := r.Protocol
		out.Protocol = &p
	}
	out.PortRangeMin, out.PortRangeMax = r.PortMin, r.PortMax
	if r.RemoteIPPrefix.IsValid() {
		p := r.RemoteIPPrefix.String()
		out.RemoteIPPrefix, out.NormalizedCIDR = &p, &p
	}
	if r.RemoteGroupID != "" {
		g := r.RemoteGroupID
		out.RemoteGroupID = &g
	}
	return out
}

func (a *API) group(g network.SecurityGroup) map[string]any {
	out := v2.SecurityGroup{ID: g.ID, Name: g.Name, Description: g.Description, ProjectID: g.ProjectID, TenantID: g.ProjectID,
		Rules: []v2.SecurityGroupRule{}, Stateful: g.Stateful, Tags: tagsOf(g.Tags), CreatedAt: ts(g.CreatedAt),
		UpdatedAt: ts(g.UpdatedAt), RevisionNumber: g.Revision}
	for _, r := range a.svc.GroupRules(g.ID) {
		out.Rules = append(out.Rules, a.rule(r))
	}
	return render(out)
}

// plural is the collection's key in JSON bodies.
func (res resource) plural() string {
	if res.jsonKey != "" {
		return res.jsonKey
	}
	return res.collection
}

// ---- the table ----

func (a *API) resourcesTable() []resource {
	return append(a.coreResources(), a.l3Resources()...)
}

func (a *API) coreResources() []resource {
	return []resource{
		{
			key: "network", collection: "networks",
			spec: listquery.Spec{MarkerNotFound: markerNotFound("NetworkNotFound", "Network"), Attributes: stdAttrs(map[string]listquery.Attr{
				"admin_state_up": {Kind: listquery.Bool, Sort: true}, "status": {Kind: listquery.String, Sort: true},
				"shared": {Kind: listquery.Bool, Sort: true}, "router:external": {Kind: listquery.Bool, Sort: true},
				"mtu": {Kind: listquery.Int, Sort: true}, "port_security_enabled": {Kind: listquery.Bool},
				"provider:network_type": {Kind: listquery.String, Sort: true}, "provider:physical_network": {Kind: listquery.String, Sort: true},
				"provider:segmentation_id": {Kind: listquery.Int, Sort: true}, "is_default": {Kind: listquery.Bool},
				"subnets": {Kind: listquery.List}, "availability_zone_hints": {Kind: listquery.List},
			})},
			list: func(r *http.Request) ([]map[string]any, error) {
				c := creds(r)
				var out []map[string]any
				for _, n := range a.svc.ListNetworks(c) {
					out = append(out, a.network(c, n))
				}
				return out, nil
			},
			show: func(r *http.Request, id string) (map[string]any, error) {
				c := creds(r)
				n, err := a.svc.GetNetwork(c, id)
				return a.network(c, n), err
			},
			create: func(r *http.Request, raw json.RawMessage) (map[string]any, string, error) {
				var req v2.NetworkRequest
				if err := decodeInto(raw, &req); err != nil {
					return nil, "", err
				}
				c := creds(r)
				if err := networkFieldPolicy(c, req, "create"); err != nil {
					return nil, "", err
				}
				n, err := a.svc.CreateNetwork(r.Context(), c, req)
				return a.network(c, n), n.ID, err
			},
			update: func(r *http.Request, id string, raw json.RawMessage) (map[string]any, error) {
				var req v2.NetworkRequest
				if err := decodeInto(raw, &req); err != nil {
					return nil, err
				}
				c := creds(r)
				cur, err := a.svc.GetNetwork(c, id)
				if err != nil {
					return nil, err
				}
				if err := policy.Check("network:update_network", c, policy.Target{ProjectID: cur.ProjectID}); err != nil {
					return nil, err
				}
				if err := networkFieldPolicy(c, req, "update"); err != nil {
					return nil, err
				}
				n, err := a.svc.UpdateNetwork(r.Context(), c, id, req)
				return a.network(c, n), err
			},
			remove: func(r *http.Request, id string) error {
				c := creds(r)
				cur, err := a.svc.GetNetwork(c, id)
				if err != nil {
					return err
				}
				if err := policy.Check("network:delete_network", c, policy.Target{ProjectID: cur.ProjectID}); err != nil {
					return err
				}
				// Unassociated floating IPs do not keep an external network
				// in use: Neutron deletes them with it.
				if err := a.svc.ReleaseNetworkFloatingIPs(r.Context(), id); err != nil {
					return err
				}
				return a.svc.DeleteNetwork(r.Context(), c, id)
			},
		},
		{
			key: "subnet", collection: "subnets",
			spec: listquery.Spec{MarkerNotFound: ignoreMarker, Attributes: stdAttrs(map[string]listquery.Attr{
				"network_id": {Kind: listquery.String, Sort: true}, "ip_version": {Kind: listquery.Int, Sort: true},
				"cidr": {Kind: listquery.String, Sort: true}, "gateway_ip": {Kind: listquery.String, Sort: true},
				"enable_dhcp": {Kind: listquery.Bool, Sort: true}, "ipv6_ra_mode": {Kind: listquery.String},
				"ipv6_address_mode": {Kind: listquery.String}, "subnetpool_id": {Kind: listquery.String},
				"segment_id": {Kind: listquery.String}, "dns_nameservers": {Kind: listquery.List},
			})},
			list: func(r *http.Request) ([]map[string]any, error) {
				c := creds(r)
				var out []map[string]any
				for _, sn := range a.svc.ListSubnets(c) {
					if a.subnetVisible(c, sn) {
						out = append(out, render(subnetWire(sn)))
					}
				}
				return out, nil
			},
			show: func(r *http.Request, id string) (map[string]any, error) {
				c := creds(r)
				sn, err := a.svc.GetSubnet(c, id)
				if err == nil && !a.subnetVisible(c, sn) {
					err = errdefs.Typed("SubnetNotFound", errdefs.NotFoundf("Subnet %s could not be found.", id))
				}
				return render(subnetWire(sn)), err
			},
			create: func(r *http.Request, raw json.RawMessage) (map[string]any, string, error) {
				var req v2.SubnetRequest
				if err := decodeInto(raw, &req); err != nil {
					return nil, "", err
				}
				sn, err := a.svc.CreateSubnet(r.Context(), creds(r), req)
				return render(subnetWire(sn)), sn.ID, err
			},
			update: func(r *http.Request, id string, raw json.RawMessage) (map[string]any, error) {
				var req v2.SubnetRequest
				if err := decodeInto(raw, &req); err != nil {
					return nil, err
				}
				sn, err := a.svc.UpdateSubnet(r.Context(), creds(r), id, req)
				return render(subnetWire(sn)), err
			},
			remove: func(r *http.Request, id string) error { return a.svc.DeleteSubnet(r.Context(), creds(r), id) },
		},
		{
			key: "port", collection: "ports",
			spec: listquery.Spec{MarkerNotFound: markerNotFound("PortNotFound", "Port"), Attributes: stdAttrs(map[string]listquery.Attr{
				"network_id": {Kind: listquery.String, Sort: true}, "admin_state_up": {Kind: listquery.Bool, Sort: true},
				"status": {Kind: listquery.String, Sort: true}, "mac_address": {Kind: listquery.String, Sort: true},
				"device_id": {Kind: listquery.String, Sort: true}, "device_owner": {Kind: listquery.String, Sort: true},
				"fixed_ips": {Kind: listquery.Opaque, Filter: listquery.FixedIPs}, "security_groups": {Kind: listquery.List},
				"port_security_enabled": {Kind: listquery.Bool}, "binding:host_id": {Kind: listquery.String, Sort: true},
				"binding:vif_type": {Kind: listquery.String}, "binding:vnic_type": {Kind: listquery.String},
				"ip_allocation": {Kind: listquery.String},
			})},
			list: func(r *http.Request) ([]map[string]any, error) {
				c := creds(r)
				return a.ports.list(a.svc, c, a.svc.ListPortsVersioned(c)), nil
			},
			show: func(r *http.Request, id string) (map[string]any, error) {
				c := creds(r)
				p, err := a.svc.GetPort(c, id)
				return a.port(c, p), err
			},
			create: func(r *http.Request, raw json.RawMessage) (map[string]any, string, error) {
				var req v2.PortRequest
				if err := decodeInto(raw, &req); err != nil {
					return nil, "", err
				}
				c := creds(r)
				p, err := a.svc.CreatePort(r.Context(), c, req)
				return a.port(c, p), p.ID, err
			},
			update: func(r *http.Request, id string, raw json.RawMessage) (map[string]any, error) {
				var req v2.PortRequest
				if err := decodeInto(raw, &req); err != nil {
					return nil, err
				}
				c := creds(r)
				p, err := a.svc.UpdatePort(r.Context(), c, id, req)
				return a.port(c, p), err
			},
			remove: func(r *http.Request, id string) error { return a.svc.DeletePort(r.Context(), creds(r), id) },
		},
		{
			key: "security_group", collection: "security-groups", jsonKey: "security_groups",
			spec: listquery.Spec{MarkerNotFound: ignoreMarker, Attributes: stdAttrs(map[string]listquery.Attr{
				"stateful": {Kind: listquery.Bool}, "shared": {Kind: listquery.Bool},
			})},
			list: func(r *http.Request) ([]map[string]any, error) {
				gs, err := a.svc.ListGroups(r.Context(), creds(r))
				var out []map[string]any
				for _, g := range gs {
					out = append(out, a.group(g))
				}
				return out, err
			},
			show: func(r *http.Request, id string) (map[string]any, error) {
				g, err := a.svc.GetGroup(creds(r), id)
				return a.group(g), err
			},
			create: func(r *http.Request, raw json.RawMessage) (map[string]any, string, error) {
				var req v2.SecurityGroupRequest
				if err := decodeInto(raw, &req); err != nil {
					return nil, "", err
				}
				c := creds(r)
				if err := policy.Check("network:create_security_group", c, policy.Target{}); err != nil {
					return nil, "", err
				}
				g, err := a.svc.CreateGroup(r.Context(), c, req)
				return a.group(g), g.ID, err
			},
			update: func(r *http.Request, id string, raw json.RawMessage) (map[string]any, error) {
				var req v2.SecurityGroupRequest
				if err := decodeInto(raw, &req); err != nil {
					return nil, err
				}
				g, err := a.svc.UpdateGroup(r.Context(), creds(r), id, req)
				return a.group(g), err
			},
			remove: func(r *http.Request, id string) error { return a.svc.DeleteGroup(r.Context(), creds(r), id) },
		},
		{
			key: "security_group_rule", collection: "security-group-rules", jsonKey: "security_group_rules",
			spec: listquery.Spec{MarkerNotFound: ignoreMarker, Attributes: stdAttrs(map[string]listquery.Attr{
				"security_group_id": {Kind: listquery.String, Sort: true}, "direction": {Kind: listquery.String, Sort: true},
				"ethertype": {Kind: listquery.String, Sort: true}, "protocol": {Kind: listquery.String, Sort: true},
				"port_range_min": {Kind: listquery.Int, Sort: true}, "port_range_max": {Kind: listquery.Int, Sort: true},
				"remote_ip_prefix": {Kind: listquery.String, Sort: true}, "remote_group_id": {Kind: listquery.String, Sort: true},
			})},
			list: func(r *http.Request) ([]map[string]any, error) {
				var out []map[string]any
				for _, rl := range a.svc.ListRules(creds(r)) {
					out = append(out, render(a.rule(rl)))
				}
				return out, nil
			},
			show: func(r *http.Request, id string) (map[string]any, error) {
				rl, err := a.svc.GetRule(creds(r), id)
				return render(a.rule(rl)), err
			},
			create: func(r *http.Request, raw json.RawMessage) (map[string]any, string, error) {
				var req v2.SecurityGroupRuleRequest
				if err := decodeInto(raw, &req); err != nil {
					return nil, "", err
				}
				rl, err := a.svc.CreateRule(r.Context(), creds(r), req)
				return render(a.rule(rl)), rl.ID, err
			},
			remove: func(r *http.Request, id string) error { return a.svc.DeleteRule(r.Context(), creds(r), id) },
		},
	}
}

// subnetVisible applies Neutron's get_subnet rule (the subnet's project, or
// a shared network): the subnets of an external network that is not shared
// are not shown to other projects, although the network itself is.
func (a *API) subnetVisible(c policy.Creds, sn network.Subnet) bool {
	n, err := a.svc.GetNetwork(c, sn.NetworkID)
	return err == nil && policy.Allowed("network:get_subnet", c, policy.Target{ProjectID: sn.ProjectID, Shared: n.Shared})
}

// networkFieldPolicy checks the admin-only attributes of a network request.
func networkFieldPolicy(c policy.Creds, r v2.NetworkRequest, verb string) error {
	for _, ch := range []struct {
		set  bool
		attr string
	}{
		{r.Shared != nil, "shared"}, {r.External != nil, "router:external"},
		{r.NetworkType != nil || r.PhysicalNetwork != nil || r.SegmentationID != nil, "provider"},
		{r.IsDefault != nil && verb == "create", "is_default"},
	} {
		if ch.set {
			action := "network:" + verb + "_network:" + ch.attr
			if err := policy.Check(action, c, policy.Target{ProjectID: c.ProjectID}); err != nil {
				return errdefs.Forbiddenf("(rule:%s_network:%s) is disallowed by policy", verb, ch.attr)
			}
		}
	}
	return nil
}
