package networkapi

import (
	"encoding/json"
	"fmt"
	"net/http"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/listquery"
	"github.com/nimbo-cloud/nimbo/internal/network"
	"github.com/nimbo-cloud/nimbo/internal/server"
)

// Neutron's L3 API: routers (with the ext-gw-mode and extraroute[-atomic]
// extensions), floating IPs (fip-port-details, expose-port-forwarding-in-fip)
// and floating IP port forwardings (with port ranges and descriptions).

// registerL3 adds the routes that are not plain collections.
func (a *API) registerL3(authed func(string, server.HandlerFunc), v func(method, path string) string) {
	authed(v("PUT", "/routers/{id}/add_router_interface"), a.routerInterface(true))
	authed(v("PUT", "/routers/{id}/remove_router_interface"), a.routerInterface(false))
	authed(v("PUT", "/routers/{id}/add_extraroutes"), a.extraRoutes(true))
	authed(v("PUT", "/routers/{id}/remove_extraroutes"), a.extraRoutes(false))
	pf := "/floatingips/{fip}/port_forwardings"
	authed(v("GET", pf), a.listPortForwardings)
	authed(v("POST", pf), a.createPortForwarding)
	authed(v("GET", pf+"/{id}"), a.showPortForwarding)
	authed(v("PUT", pf+"/{id}"), a.updatePortForwarding)
	authed(v("DELETE", pf+"/{id}"), a.deletePortForwarding)
}

// ---- rendering ----

func (a *API) router(rt network.Router) map[string]any {
	out := v2.Router{ID: rt.ID, Name: rt.Name, Description: rt.Description, ProjectID: rt.ProjectID, TenantID: rt.ProjectID,
		AdminStateUp: rt.AdminStateUp, Status: network.RouterStatus(rt), Routes: []v2.HostRoute{}, Tags: tagsOf(rt.Tags),
		CreatedAt: ts(rt.CreatedAt), UpdatedAt: ts(rt.UpdatedAt), RevisionNumber: rt.Revision}
	if g := rt.Gateway; g != nil {
		out.ExternalGatewayInfo = &v2.ExternalGateway{NetworkID: g.NetworkID, EnableSNAT: g.EnableSNAT, ExternalFixedIPs: []v2.ExternalFixedIP{}}
		for _, f := range g.FixedIPs {
			out.ExternalGatewayInfo.ExternalFixedIPs = append(out.ExternalGatewayInfo.ExternalFixedIPs,
				v2.ExternalFixedIP{SubnetID: f.SubnetID, IPAddress: f.IP.String()})
		}
	}
	for _, r := range rt.Routes {
		out.Routes = append(out.Routes, v2.HostRoute{Destination: r.Destination.String(), NextHop: r.NextHop.String()})
	}
	return render(out)
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (a *API) floatingIP(f network.FloatingIP) map[string]any {
	out := v2.FloatingIP{ID: f.ID, Description: f.Description, ProjectID: f.ProjectID, TenantID: f.ProjectID,
		FloatingNetworkID: f.NetworkID, FloatingIPAddress: f.IP.String(), PortID: optString(f.FixedPortID),
		RouterID: optString(f.RouterID), Status: network.FloatingIPStatus(f), PortForwardings: []v2.FloatingIPForwarding{},
		Tags: tagsOf(f.Tags), CreatedAt: ts(f.CreatedAt), UpdatedAt: ts(f.UpdatedAt), RevisionNumber: f.Revision}
	if f.FixedIP.IsValid() {
		out.FixedIPAddress = optString(f.FixedIP.String())
	}
	if p, ok := a.svc.FloatingIPPort(f); ok {
		out.PortDetails = &v2.PortDetails{Name: p.Name, NetworkID: p.NetworkID, MACAddress: p.MAC, AdminStateUp: p.AdminStateUp,
			Status: p.Status, DeviceID: p.DeviceID, DeviceOwner: p.DeviceOwner}
	}
	for _, pf := range a.svc.FloatingIPForwardings(f.ID) {
		e := v2.FloatingIPForwarding{ID: pf.ID, InternalIPAddress: pf.InternalIP.String(), Protocol: pf.Protocol, InternalPortID: pf.InternalPortID}
		if pf.InternalMin == pf.InternalMax {
			e.InternalPort = &pf.InternalMin
		}
		if pf.ExternalMin == pf.ExternalMax {
			e.ExternalPort = &pf.ExternalMin
		}
		out.PortForwardings = append(out.PortForwardings, e)
	}
	return render(out)
}

func portForwarding(pf network.PortForwarding) map[string]any {
	out := v2.PortForwarding{ID: pf.ID, Protocol: pf.Protocol, InternalPortID: pf.InternalPortID,
		InternalIPAddress: pf.InternalIP.String(), Description: pf.Description,
		InternalPortRange: fmt.Sprintf("%d:%d", pf.InternalMin, pf.InternalMax),
		ExternalPortRange: fmt.Sprintf("%d:%d", pf.ExternalMin, pf.ExternalMax)}
	if pf.InternalMin == pf.InternalMax {
		out.InternalPort = &pf.InternalMin
	}
	if pf.ExternalMin == pf.ExternalMax {
		out.ExternalPort = &pf.ExternalMin
	}
	return render(out)
}

// ---- collections ----

func (a *API) l3Resources() []resource {
	fipAttrs := stdAttrs(map[string]listquery.Attr{
		"floating_network_id": {Kind: listquery.String, Sort: true}, "floating_ip_address": {Kind: listquery.String, Sort: true},
		"fixed_ip_address": {Kind: listquery.String, Sort: true}, "port_id": {Kind: listquery.String, Sort: true},
		"router_id": {Kind: listquery.String, Sort: true}, "status": {Kind: listquery.String, Sort: true},
	})
	delete(fipAttrs, "name") // floating IPs have no name
	return []resource{
		{
			key: "router", collection: "routers",
			spec: listquery.Spec{MarkerNotFound: markerNotFound("RouterNotFound", "Router"), Attributes: stdAttrs(map[string]listquery.Attr{
				"admin_state_up": {Kind: listquery.Bool, Sort: true}, "status": {Kind: listquery.String, Sort: true},
			})},
			list: func(r *http.Request) ([]map[string]any, error) {
				var out []map[string]any
				for _, rt := range a.svc.ListRouters(creds(r)) {
					out = append(out, a.router(rt))
				}
				return out, nil
			},
			show: func(r *http.Request, id string) (map[string]any, error) {
				rt, err := a.svc.GetRouter(creds(r), id)
				return a.router(rt), err
			},
			create: func(r *http.Request, raw json.RawMessage) (map[string]any, string, error) {
				var req v2.RouterRequest
				if err := decodeInto(raw, &req); err != nil {
					return nil, "", err
				}
				rt, err := a.svc.CreateRouter(r.Context(), creds(r), req)
				return a.router(rt), rt.ID, err
			},
			update: func(r *http.Request, id string, raw json.RawMessage) (map[string]any, error) {
				var req v2.RouterRequest
				if err := decodeInto(raw, &req); err != nil {
					return nil, err
				}
				rt, err := a.svc.UpdateRouter(r.Context(), creds(r), id, req)
				return a.router(rt), err
			},
			remove: func(r *http.Request, id string) error { return a.svc.DeleteRouter(r.Context(), creds(r), id) },
		},
		{
			key: "floatingip", collection: "floatingips",
			spec: listquery.Spec{MarkerNotFound: markerNotFound("FloatingIPNotFound", "Floating IP"), Attributes: fipAttrs},
			list: func(r *http.Request) ([]map[string]any, error) {
				var out []map[string]any
				for _, f := range a.svc.ListFloatingIPs(creds(r)) {
					out = append(out, a.floatingIP(f))
				}
				return out, nil
			},
			show: func(r *http.Request, id string) (map[string]any, error) {
				f, err := a.svc.GetFloatingIP(creds(r), id)
				return a.floatingIP(f), err
			},
			create: func(r *http.Request, raw json.RawMessage) (map[string]any, string, error) {
				var req v2.FloatingIPRequest
				if err := decodeInto(raw, &req); err != nil {
					return nil, "", err
				}
				f, err := a.svc.CreateFloatingIP(r.Context(), creds(r), req)
				return a.floatingIP(f), f.ID, err
			},
			update: func(r *http.Request, id string, raw json.RawMessage) (map[string]any, error) {
				var req v2.FloatingIPRequest
				if err := decodeInto(raw, &req); err != nil {
					return nil, err
				}
				f, err := a.svc.UpdateFloatingIP(r.Context(), creds(r), id, req)
				return a.floatingIP(f), err
			},
			remove: func(r *http.Request, id string) error { return a.svc.DeleteFloatingIP(r.Context(), creds(r), id) },
		},
	}
}

// ---- router actions ----

// routerInterface serves add_router_interface and remove_router_interface:
// a bare {"subnet_id"} or {"port_id"} body, answered with the interface.
func (a *API) routerInterface(add bool) server.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req v2.RouterInterfaceRequest
		if err := decodeInto(mustRead(r), &req); err != nil {
			return err
		}
		var info network.InterfaceInfo
		var err error
		if add {
			info, err = a.svc.AddInterface(r.Context(), creds(r), r.PathValue("id"), req)
		} else {
			info, err = a.svc.RemoveInterface(r.Context(), creds(r), r.PathValue("id"), req)
		}
		if err != nil {
			return err
		}
		return server.JSON(w, http.StatusOK, v2.RouterInterface{ID: info.RouterID, TenantID: info.ProjectID, ProjectID: info.ProjectID,
			PortID: info.PortID, SubnetID: info.SubnetID, SubnetIDs: []string{info.SubnetID}, NetworkID: info.NetworkID})
	}
}

// extraRoutes serves add_extraroutes and remove_extraroutes
// (extraroute-atomic): {"router": {"routes": [...]}}, answered with the
// router.
func (a *API) extraRoutes(add bool) server.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		raw, _, err := decodeBody(r, "router", "")
		if err != nil {
			return err
		}
		var req v2.ExtraRoutesRequest
		if err := decodeInto(raw, &req); err != nil {
			return err
		}
		if req.Routes == nil {
			return errdefs.Invalidf("Failed to parse request. Required attribute 'routes' not specified.")
		}
		var rt network.Router
		if add {
			rt, err = a.svc.AddExtraRoutes(r.Context(), creds(r), r.PathValue("id"), *req.Routes)
		} else {
			rt, err = a.svc.RemoveExtraRoutes(r.Context(), creds(r), r.PathValue("id"), *req.Routes)
		}
		if err != nil {
			return err
		}
		return server.JSON(w, http.StatusOK, map[string]any{"router": a.router(rt)})
	}
}

// ---- port forwardings (a sub-collection of a floating IP) ----

var pfSpec = listquery.Spec{MarkerNotFound: func(id string) error {
	return errdefs.Typed("PortForwardingNotFound", errdefs.NotFoundf("Port Forwarding %s could not be found.", id))
}, Attributes: map[string]listquery.Attr{
	"id": {Kind: listquery.String, Sort: true}, "protocol": {Kind: listquery.String, Sort: true},
	"internal_port_id": {Kind: listquery.String, Sort: true}, "external_port": {Kind: listquery.Int, Sort: true},
	"external_port_range": {Kind: listquery.String, Sort: true}, "description": {Kind: listquery.String, Sort: true},
}}

func (a *API) listPortForwardings(w http.ResponseWriter, r *http.Request) error {
	q, err := listquery.Parse(r.URL.Query(), pfSpec)
	if err != nil {
		return err
	}
	pfs, err := a.svc.PortForwardings(creds(r), r.PathValue("fip"))
	if err != nil {
		return err
	}
	items := make([]map[string]any, 0, len(pfs))
	for _, pf := range pfs {
		items = append(items, portForwarding(pf))
	}
	page, links, err := listquery.Apply(items, q, a.pageURL(r))
	if err != nil {
		return err
	}
	if page == nil {
		page = []map[string]any{}
	}
	body := map[string]any{"port_forwardings": page}
	if len(links) > 0 {
		body["port_forwardings_links"] = links
	}
	return server.JSON(w, http.StatusOK, body)
}

func (a *API) showPortForwarding(w http.ResponseWriter, r *http.Request) error {
	pf, err := a.svc.GetPortForwarding(creds(r), r.PathValue("fip"), r.PathValue("id"))
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"port_forwarding": listquery.SelectFields(portForwarding(pf), r.URL.Query())})
}

func (a *API) decodePortForwarding(r *http.Request) (v2.PortForwardingRequest, error) {
	var req v2.PortForwardingRequest
	raw, _, err := decodeBody(r, "port_forwarding", "")
	if err != nil {
		return req, err
	}
	return req, decodeInto(raw, &req)
}

func (a *API) createPortForwarding(w http.ResponseWriter, r *http.Request) error {
	req, err := a.decodePortForwarding(r)
	if err != nil {
		return err
	}
	pf, err := a.svc.CreatePortForwarding(r.Context(), creds(r), r.PathValue("fip"), req)
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusCreated, map[string]any{"port_forwarding": portForwarding(pf)})
}

func (a *API) updatePortForwarding(w http.ResponseWriter, r *http.Request) error {
	req, err := a.decodePortForwarding(r)
	if err != nil {
		return err
	}
	pf, err := a.svc.UpdatePortForwarding(r.Context(), creds(r), r.PathValue("fip"), r.PathValue("id"), req)
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"port_forwarding": portForwarding(pf)})
}

func (a *API) deletePortForwarding(w http.ResponseWriter, r *http.Request) error {
	if err := a.svc.DeletePortForwarding(r.Context(), creds(r), r.PathValue("fip"), r.PathValue("id")); err != nil {
		return err
	}
	return server.NoContent(w)
}
