package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
)

// The Neutron calls of the router part of the benchmark (routerbench.go).

// subnetInfo is what the benchmark needs from a subnet.
type subnetInfo struct {
	ID        string `json:"id"`
	CIDR      string `json:"cidr"`
	GatewayIP string `json:"gateway_ip"`
}

// routerInfo is what the benchmark needs from a router.
type routerInfo struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Gateway *struct {
		NetworkID        string `json:"network_id"`
		ExternalFixedIPs []struct {
			SubnetID string `json:"subnet_id"`
			IP       string `json:"ip_address"`
		} `json:"external_fixed_ips"`
	} `json:"external_gateway_info"`
}

// gatewayIP is the router's first external address (zero if none).
func (r routerInfo) gatewayIP() netip.Addr {
	if r.Gateway == nil {
		return netip.Addr{}
	}
	for _, f := range r.Gateway.ExternalFixedIPs {
		if a, err := netip.ParseAddr(f.IP); err == nil && a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}

// fipInfo is what the benchmark needs from a floating IP.
type fipInfo struct {
	ID string `json:"id"`
	IP string `json:"floating_ip_address"`
}

// create POSTs {key: attrs} to path (201) and decodes the key's object into v.
func (c netClient) create(ctx context.Context, token, path, key string, attrs map[string]any, v any) error {
	_, b, err := c.do(ctx, http.MethodPost, path, map[string]any{key: attrs}, token, "", http.StatusCreated)
	if err != nil {
		return err
	}
	var r map[string]json.RawMessage
	if err := decode("POST", c.base+path, b, &r); err != nil {
		return err
	}
	obj, ok := r[key]
	if !ok {
		return fmt.Errorf("POST %s%s: no %q in the answer: %.300s", c.base, path, key, b)
	}
	return decode("POST", c.base+path, obj, v)
}

// createNet creates a network (attrs added to its name) and returns its ID.
func (c netClient) createNet(ctx context.Context, token, name string, attrs map[string]any) (string, error) {
	body := map[string]any{"name": name}
	for k, v := range attrs {
		body[k] = v
	}
	var n struct{ ID string }
	err := c.create(ctx, token, "/networks", "network", body, &n)
	return n.ID, err
}

// createSubnetNoDHCP creates an IPv4 subnet with DHCP off (its gateway is
// the first address, Neutron's default).
func (c netClient) createSubnetNoDHCP(ctx context.Context, token, networkID, name string, cidr netip.Prefix) (subnetInfo, error) {
	var s subnetInfo
	err := c.create(ctx, token, "/subnets", "subnet", map[string]any{"network_id": networkID, "name": name,
		"ip_version": 4, "cidr": cidr.String(), "enable_dhcp": false}, &s)
	return s, err
}

// createRouter creates a router with a gateway on externalID.
func (c netClient) createRouter(ctx context.Context, token, name, externalID string) (routerInfo, error) {
	var r routerInfo
	err := c.create(ctx, token, "/routers", "router", map[string]any{"name": name,
		"external_gateway_info": map[string]any{"network_id": externalID}}, &r)
	if err == nil && r.ID == "" {
		err = fmt.Errorf("POST %s/routers: 201 without a router id", c.base)
	}
	return r, err
}

// routerInterface adds (or removes) a router's interface on a subnet.
func (c netClient) routerInterface(ctx context.Context, token, routerID, subnetID string, add bool) error {
	action := "add_router_interface"
	if !add {
		action = "remove_router_interface"
	}
	_, _, err := c.do(ctx, http.MethodPut, "/routers/"+routerID+"/"+action, map[string]any{"subnet_id": subnetID}, token, "", http.StatusOK)
	return err
}

// del sends DELETE path (204 expected).
func (c netClient) del(ctx context.Context, token, path string) error {
	_, _, err := c.do(ctx, http.MethodDelete, path, nil, token, "", http.StatusNoContent)
	return err
}

// get GETs path (200) into v.
func (c netClient) get(ctx context.Context, token, path string, v any) error {
	_, b, err := c.do(ctx, http.MethodGet, path, nil, token, "", http.StatusOK)
	if err != nil {
		return err
	}
	return decode("GET", c.base+path, b, v)
}

// routerStatus reads a router's status.
func (c netClient) routerStatus(ctx context.Context, token, id string) (string, error) {
	var r struct {
		Router struct{ Status string } `json:"router"`
	}
	err := c.get(ctx, token, "/routers/"+id+"?fields=status", &r)
	return r.Router.Status, err
}

// routerStatuses counts routers by status.
func (c netClient) routerStatuses(ctx context.Context, token string) (map[string]int, error) {
	var r struct {
		Routers []struct{ Status string } `json:"routers"`
	}
	if err := c.get(ctx, token, "/routers?fields=id&fields=status", &r); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, rt := range r.Routers {
		out[rt.Status]++
	}
	return out, nil
}

// createFIP allocates a floating IP on externalID, associated with portID
// unless it is "".
func (c netClient) createFIP(ctx context.Context, token, externalID, portID string) (fipInfo, error) {
	attrs := map[string]any{"floating_network_id": externalID}
	if portID != "" {
		attrs["port_id"] = portID
	}
	var f fipInfo
	err := c.create(ctx, token, "/floatingips", "floatingip", attrs, &f)
	if err == nil && (f.ID == "" || f.IP == "") {
		err = fmt.Errorf("POST %s/floatingips: 201 without an id and address", c.base)
	}
	return f, err
}

// createPF adds a single-port forwarding to a floating IP.
func (c netClient) createPF(ctx context.Context, token, fipID, proto string, target portInfo, internal, external int) (string, error) {
	var pf struct{ ID string }
	err := c.create(ctx, token, "/floatingips/"+fipID+"/port_forwardings", "port_forwarding", map[string]any{
		"protocol": proto, "internal_port_id": target.ID, "internal_ip_address": target.ip(),
		"internal_port": internal, "external_port": external}, &pf)
	return pf.ID, err
}
