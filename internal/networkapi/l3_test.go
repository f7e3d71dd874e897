package networkapi_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// obj returns r.body[key] as an object.
func obj(t *testing.T, r resp, key string) map[string]any {
	t.Helper()
	m, ok := r.body[key].(map[string]any)
	if !ok {
		t.Fatalf("no %q object in %d %s", key, r.status, r.raw)
	}
	return m
}

func list(t *testing.T, r resp, key string) []any {
	t.Helper()
	l, ok := r.body[key].([]any)
	if r.status != 200 || !ok {
		t.Fatalf("no %q list in %d %s", key, r.status, r.raw)
	}
	return l
}

// want checks a status (and a fault type when typ is set) and returns the
// response.
func (e *env) want(r resp, status int, typ string) resp {
	e.t.Helper()
	if status >= 400 {
		got, _ := e.fault(r, status)
		if typ != "" && got != typ {
			e.t.Fatalf("fault type %q, want %q: %s", got, typ, r.raw)
		}
		return r
	}
	if r.status != status {
		e.t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	return r
}

// l3Env is a cloud with an external network (admin's) and a tenant network
// of alice's with a subnet and a port.
type l3Env struct {
	*env
	ext, extSubnet, net, subnet, vm, vmIP string
}

func newL3Env(t *testing.T) *l3Env {
	e := &l3Env{env: newEnv(t)}
	e.ext = id(e.want(e.do(e.admin, "POST", "/networks", `{"network": {"name": "public", "router:external": true,
		"provider:network_type": "flat", "provider:physical_network": "public"}}`), 201, ""), "network")
	e.extSubnet = id(e.want(e.do(e.admin, "POST", "/subnets", `{"subnet": {"network_id": "`+e.ext+`", "cidr": "198.51.100.0/24",
		"ip_version": 4, "enable_dhcp": false}}`), 201, ""), "subnet")
	e.net = id(e.want(e.do(e.alice, "POST", "/networks", `{"network": {"name": "private"}}`), 201, ""), "network")
	e.subnet = id(e.want(e.do(e.alice, "POST", "/subnets", `{"subnet": {"network_id": "`+e.net+`", "cidr": "10.0.0.0/24", "ip_version": 4}}`), 201, ""), "subnet")
	p := obj(t, e.want(e.do(e.alice, "POST", "/ports", `{"port": {"network_id": "`+e.net+`", "name": "vm"}}`), 201, ""), "port")
	e.vm = p["id"].(string)
	e.vmIP = p["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
	return e
}

func TestRouterAPI(t *testing.T) {
	e := newL3Env(t)

	// Bad bodies: 400s naming what is wrong.
	_, msg := e.fault(e.do(e.alice, "POST", "/routers", `{"router": {"name": "r", "bogus": 1}}`), 400)
	if !strings.Contains(msg, "Unrecognized attribute(s) 'bogus'") {
		t.Errorf("unknown attribute: %q", msg)
	}
	if _, msg = e.fault(e.do(e.alice, "POST", "/routers", `{"router": {"admin_state_up": "x"}}`), 400); !strings.Contains(msg, "admin_state_up") {
		t.Errorf("wrong type: %q", msg)
	}
	for _, gw := range []string{`{"network_id": "` + e.ext + `", "qos_policy_id": "x"}`, `{"enable_snat": false}`, `"public"`,
		`{"network_id": "` + e.ext + `", "enable_snat": "maybe"}`} {
		if _, msg = e.fault(e.do(e.alice, "POST", "/routers", `{"router": {"external_gateway_info": `+gw+`}}`), 400); !strings.Contains(msg, "external_gateway_info") {
			t.Errorf("gateway %s: %q", gw, msg)
		}
	}
	e.want(e.do(e.alice, "POST", "/routers", `{"router": {"availability_zone_hints": ["nova"]}}`), 400, "")
	e.want(e.do(e.alice, "POST", "/routers", `{"router": {"external_gateway_info": {"network_id": "`+e.net+`"}}}`), 400, "BadRequest")
	e.want(e.do(e.alice, "POST", "/routers", `{"router": {"external_gateway_info": {"network_id": "no-such-net"}}}`), 404, "NetworkNotFound")
	// Admin-only parts of the gateway (Neutron's defaults).
	e.want(e.do(e.alice, "POST", "/routers", `{"router": {"external_gateway_info": {"network_id": "`+e.ext+`", "enable_snat": false}}}`), 403, "")
	e.want(e.do(e.alice, "POST", "/routers", `{"router": {"external_gateway_info": {"network_id": "`+e.ext+`",
		"external_fixed_ips": [{"ip_address": "198.51.100.10"}]}}}`), 403, "")

	rt := obj(t, e.want(e.do(e.alice, "POST", "/routers", `{"router": {"name": "r1", "external_gateway_info": {"network_id": "`+e.ext+`"}}}`), 201, ""), "router")
	rid := rt["id"].(string)
	gw := rt["external_gateway_info"].(map[string]any)
	if gw["network_id"] != e.ext || gw["enable_snat"] != true || len(gw["external_fixed_ips"].([]any)) != 1 {
		t.Fatalf("gateway: %v", gw)
	}
	if rt["status"] != "DOWN" || rt["admin_state_up"] != true || len(rt["routes"].([]any)) != 0 || rt["project_id"] == "" {
		t.Fatalf("router: %v", rt)
	}
	gwIP := gw["external_fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
	if !strings.HasPrefix(gwIP, "198.51.100.") {
		t.Fatalf("gateway address %s", gwIP)
	}
	// Admins may pick the gateway address and SNAT; a used address is a 409.
	art := obj(t, e.want(e.do(e.admin, "POST", "/routers", `{"router": {"external_gateway_info": {"network_id": "`+e.ext+`",
		"enable_snat": false, "external_fixed_ips": [{"subnet_id": "`+e.extSubnet+`", "ip_address": "198.51.100.200"}]}}}`), 201, ""), "router")
	if g := art["external_gateway_info"].(map[string]any); g["enable_snat"] != false ||
		g["external_fixed_ips"].([]any)[0].(map[string]any)["ip_address"] != "198.51.100.200" {
		t.Fatalf("admin gateway: %v", g)
	}
	e.want(e.do(e.admin, "POST", "/routers", `{"router": {"external_gateway_info": {"network_id": "`+e.ext+`",
		"external_fixed_ips": [{"ip_address": "198.51.100.200"}]}}}`), 409, "IpAddressAlreadyAllocated")
	e.want(e.do(e.admin, "POST", "/routers", `{"router": {"external_gateway_info": {"network_id": "`+e.ext+`",
		"external_fixed_ips": [{"ip_address": "198.51.100.1"}]}}}`), 400, "BadRequest") // the subnet's gateway
	e.want(e.do(e.admin, "DELETE", "/routers/"+art["id"].(string), ""), 204, "")

	// Other projects see nothing.
	e.want(e.do(e.bob, "GET", "/routers/"+rid, ""), 404, "RouterNotFound")
	e.want(e.do(e.bob, "PUT", "/routers/"+rid, `{"router": {"name": "x"}}`), 404, "RouterNotFound")
	e.want(e.do(e.bob, "DELETE", "/routers/"+rid, ""), 404, "RouterNotFound")
	e.want(e.do(e.bob, "PUT", "/routers/"+rid+"/add_router_interface", `{"subnet_id": "`+e.subnet+`"}`), 404, "RouterNotFound")
	if l := list(t, e.do(e.bob, "GET", "/routers", ""), "routers"); len(l) != 0 {
		t.Fatalf("bob lists alice's routers: %v", l)
	}

	// Interfaces.
	path := "/routers/" + rid + "/add_router_interface"
	e.want(e.do(e.alice, "PUT", path, `{}`), 400, "BadRequest")
	e.want(e.do(e.alice, "PUT", path, `{"subnet_id": "`+e.subnet+`", "port_id": "`+e.vm+`"}`), 400, "BadRequest")
	e.want(e.do(e.alice, "PUT", path, `{"subnet": "`+e.subnet+`"}`), 400, "")
	e.want(e.do(e.alice, "PUT", path, `{"subnet_id": 5}`), 400, "")
	bobNet := id(e.want(e.do(e.bob, "POST", "/networks", `{"network": {}}`), 201, ""), "network")
	bobSubnet := id(e.want(e.do(e.bob, "POST", "/subnets", `{"subnet": {"network_id": "`+bobNet+`", "cidr": "10.9.0.0/24", "ip_version": 4}}`), 201, ""), "subnet")
	e.want(e.do(e.alice, "PUT", path, `{"subnet_id": "`+bobSubnet+`"}`), 404, "SubnetNotFound")
	e.want(e.do(e.admin, "PUT", path, `{"subnet_id": "`+e.extSubnet+`"}`), 400, "BadRequest") // the gateway's subnet
	info := e.want(e.do(e.alice, "PUT", path, `{"subnet_id": "`+e.subnet+`"}`), 200, "").body
	for _, k := range []string{"id", "tenant_id", "project_id", "port_id", "subnet_id", "subnet_ids", "network_id"} {
		if _, ok := info[k]; !ok {
			t.Errorf("interface answer lacks %s: %v", k, info)
		}
	}
	if info["id"] != rid || info["subnet_id"] != e.subnet || info["network_id"] != e.net {
		t.Fatalf("interface: %v", info)
	}
	ifPort := info["port_id"].(string)
	ports := list(t, e.do(e.alice, "GET", "/ports?device_id="+rid, ""), "ports")
	if len(ports) != 1 || ports[0].(map[string]any)["device_owner"] != "network:router_interface" ||
		ports[0].(map[string]any)["fixed_ips"].([]any)[0].(map[string]any)["ip_address"] != "10.0.0.1" {
		t.Fatalf("interface ports: %v", ports)
	}
	if ports := list(t, e.do(e.admin, "GET", "/ports?device_id="+rid+"&device_owner=network:router_gateway", ""), "ports"); len(ports) != 1 {
		t.Fatalf("gateway port: %v", ports)
	}
	e.want(e.do(e.alice, "PUT", path, `{"subnet_id": "`+e.subnet+`"}`), 400, "BadRequest") // already there
	r2 := id(e.want(e.do(e.alice, "POST", "/routers", `{"router": {"name": "r2"}}`), 201, ""), "router")
	e.want(e.do(e.alice, "PUT", "/routers/"+r2+"/add_router_interface", `{"subnet_id": "`+e.subnet+`"}`), 409, "RouterInterfaceInUse")
	e.want(e.do(e.alice, "DELETE", "/routers/"+rid, ""), 409, "RouterInUse")
	e.want(e.do(e.alice, "DELETE", "/ports/"+ifPort, ""), 409, "L3PortInUse")
	e.want(e.do(e.alice, "DELETE", "/subnets/"+e.subnet, ""), 409, "SubnetInUse")
	e.want(e.do(e.alice, "PUT", "/routers/"+rid+"/remove_router_interface", `{"subnet_id": "`+e.extSubnet+`"}`), 404, "RouterInterfaceNotFoundForSubnet")
	e.want(e.do(e.alice, "PUT", "/routers/"+rid+"/remove_router_interface", `{"port_id": "`+e.vm+`"}`), 404, "RouterInterfaceNotFound")

	// Extra routes.
	upd := func(body string) resp { return e.do(e.alice, "PUT", "/routers/"+rid, body) }
	e.want(upd(`{"router": {"routes": [{"destination": "192.168.9.0/24", "nexthop": "10.9.9.9"}]}}`), 400, "InvalidRoutes")
	e.want(upd(`{"router": {"routes": [{"destination": "192.168.9.0/24", "nexthop": "10.0.0.1"}]}}`), 400, "InvalidRoutes")
	e.want(upd(`{"router": {"routes": [{"destination": "192.168.9.1/24", "nexthop": "10.0.0.5"}]}}`), 400, "")
	e.want(upd(`{"router": {"routes": [{"destination": "192.168.9.0/24", "gateway": "10.0.0.5"}]}}`), 400, "")
	e.want(upd(`{"router": {"routes": [{"destination": "192.168.9.0/24", "nexthop": "10.0.0.5"}, {"destination": "192.168.9.0/24", "nexthop": "10.0.0.5"}]}}`), 400, "")
	rt = obj(t, e.want(upd(`{"router": {"routes": [{"destination": "192.168.9.0/24", "nexthop": "10.0.0.5"}]}}`), 200, ""), "router")
	if len(rt["routes"].([]any)) != 1 {
		t.Fatalf("routes: %v", rt)
	}
	rt = obj(t, e.want(e.do(e.alice, "PUT", "/routers/"+rid+"/add_extraroutes", `{"router": {"routes": [
		{"destination": "192.168.9.0/24", "nexthop": "10.0.0.5"}, {"destination": "192.168.10.0/24", "nexthop": "198.51.100.99"}]}}`), 200, ""), "router")
	if len(rt["routes"].([]any)) != 2 {
		t.Fatalf("add_extraroutes: %v", rt["routes"])
	}
	e.want(e.do(e.alice, "PUT", "/routers/"+rid+"/add_extraroutes", `{"router": {}}`), 400, "")
	e.want(e.do(e.alice, "PUT", "/routers/"+rid+"/add_extraroutes", `{"router": {"routes": [{"destination": "10.1.0.0/16", "nexthop": "172.16.0.1"}]}}`), 400, "InvalidRoutes")
	e.want(e.do(e.bob, "PUT", "/routers/"+rid+"/add_extraroutes", `{"router": {"routes": []}}`), 404, "RouterNotFound")
	e.want(e.do(e.alice, "PUT", "/routers/"+rid+"/remove_router_interface", `{"subnet_id": "`+e.subnet+`"}`), 409, "RouterInterfaceInUseByRoute")
	// A gateway change that strands a route is refused.
	e.want(upd(`{"router": {"external_gateway_info": {}}}`), 400, "InvalidRoutes")
	rt = obj(t, e.want(e.do(e.alice, "PUT", "/routers/"+rid+"/remove_extraroutes", `{"router": {"routes": [
		{"destination": "192.168.10.0/24", "nexthop": "198.51.100.99"}, {"destination": "10.99.0.0/16", "nexthop": "10.0.0.7"}]}}`), 200, ""), "router")
	if len(rt["routes"].([]any)) != 1 {
		t.Fatalf("remove_extraroutes: %v", rt["routes"])
	}
	rt = obj(t, e.want(upd(`{"router": {"routes": null, "admin_state_up": false, "description": "d"}}`), 200, ""), "router")
	if len(rt["routes"].([]any)) != 0 || rt["admin_state_up"] != false || rt["status"] != "DOWN" || rt["description"] != "d" {
		t.Fatalf("routes null: %v", rt)
	}
	// Re-setting the same gateway keeps its address; members cannot turn SNAT off.
	rt = obj(t, e.want(upd(`{"router": {"external_gateway_info": {"network_id": "`+e.ext+`"}}}`), 200, ""), "router")
	if rt["external_gateway_info"].(map[string]any)["external_fixed_ips"].([]any)[0].(map[string]any)["ip_address"] != gwIP {
		t.Fatalf("same gateway moved: %v", rt)
	}
	e.want(upd(`{"router": {"external_gateway_info": {"network_id": "`+e.ext+`", "enable_snat": false}}}`), 403, "")
	e.want(upd(`{"router": {"project_id": "x"}}`), 400, "")

	// Lists: filters, fields, sorting, pagination, tags.
	e.want(e.do(e.alice, "PUT", "/routers/"+rid+"/tags/blue", ""), 201, "")
	if l := list(t, e.do(e.alice, "GET", "/routers?tags=blue&fields=id&fields=name", ""), "routers"); len(l) != 1 || len(l[0].(map[string]any)) != 2 {
		t.Fatalf("tag filter with fields: %v", l)
	}
	if l := list(t, e.do(e.alice, "GET", "/routers?name=r2", ""), "routers"); len(l) != 1 || l[0].(map[string]any)["id"] != r2 {
		t.Fatalf("name filter: %v", l)
	}
	if r := e.do(e.alice, "GET", "/routers?limit=1&sort_key=name&sort_dir=desc", ""); len(list(t, r, "routers")) != 1 || r.body["routers_links"] == nil {
		t.Fatalf("pagination: %s", r.raw)
	}
	e.want(e.do(e.alice, "GET", "/routers?bogus=1", ""), 400, "")
	e.want(e.do(e.bob, "PUT", "/routers/"+rid+"/tags/red", ""), 404, "")

	// Clean removal.
	e.want(e.do(e.alice, "PUT", "/routers/"+rid+"/remove_router_interface", `{"subnet_id": "`+e.subnet+`"}`), 200, "")
	e.want(e.do(e.alice, "GET", "/ports/"+ifPort, ""), 404, "PortNotFound")
	rt = obj(t, e.want(upd(`{"router": {"external_gateway_info": {}}}`), 200, ""), "router")
	if rt["external_gateway_info"] != nil {
		t.Fatalf("gateway not cleared: %v", rt)
	}
	if ports := list(t, e.do(e.admin, "GET", "/ports?device_id="+rid, ""), "ports"); len(ports) != 0 {
		t.Fatalf("ports left: %v", ports)
	}
	e.want(e.do(e.alice, "DELETE", "/routers/"+rid, ""), 204, "")
	e.want(e.do(e.alice, "DELETE", "/routers/"+r2, ""), 204, "")

	// Quotas count routers.
	e.want(e.do(e.admin, "PUT", "/quotas/"+projectOf(e.env, e.alice), `{"quota": {"router": 1}}`), 200, "")
	e.want(e.do(e.alice, "POST", "/routers", `{"router": {}}`), 201, "")
	e.want(e.do(e.alice, "POST", "/routers", `{"router": {}}`), 409, "OverQuota")
}

func TestFloatingIPAPI(t *testing.T) {
	e := newL3Env(t)
	rid := id(e.want(e.do(e.alice, "POST", "/routers", `{"router": {"external_gateway_info": {"network_id": "`+e.ext+`"}}}`), 201, ""), "router")
	e.want(e.do(e.alice, "PUT", "/routers/"+rid+"/add_router_interface", `{"subnet_id": "`+e.subnet+`"}`), 200, "")

	e.want(e.do(e.alice, "POST", "/floatingips", `{"floatingip": {}}`), 400, "")
	e.want(e.do(e.alice, "POST", "/floatingips", `{"floatingip": {"floating_network_id": "`+e.ext+`", "bogus": 1}}`), 400, "")
	e.want(e.do(e.alice, "POST", "/floatingips", `{"floatingip": {"floating_network_id": "`+e.ext+`", "port_id": 7}}`), 400, "")
	e.want(e.do(e.alice, "POST", "/floatingips", `{"floatingip": {"floating_network_id": "`+e.net+`"}}`), 400, "BadRequest")
	e.want(e.do(e.alice, "POST", "/floatingips", `{"floatingip": {"floating_network_id": "`+e.ext+`", "floating_ip_address": "198.51.100.50"}}`), 403, "")
	e.want(e.do(e.alice, "POST", "/floatingips", `{"floatingip": {"floating_network_id": "`+e.ext+`", "fixed_ip_address": "`+e.vmIP+`"}}`), 400, "BadRequest")
	e.want(e.do(e.bob, "POST", "/floatingips", `{"floatingip": {"floating_network_id": "`+e.ext+`", "port_id": "`+e.vm+`"}}`), 404, "PortNotFound")

	f := obj(t, e.want(e.do(e.alice, "POST", "/floatingips", `{"floatingip": {"floating_network_id": "`+e.ext+`", "port_id": "`+e.vm+`", "description": "web"}}`), 201, ""), "floatingip")
	fid := f["id"].(string)
	if f["router_id"] != rid || f["fixed_ip_address"] != e.vmIP || f["port_id"] != e.vm || f["status"] != "DOWN" ||
		f["floating_network_id"] != e.ext || f["description"] != "web" || !strings.HasPrefix(f["floating_ip_address"].(string), "198.51.100.") {
		t.Fatalf("floating IP: %v", f)
	}
	if pd, ok := f["port_details"].(map[string]any); !ok || pd["network_id"] != e.net || pd["name"] != "vm" || pd["mac_address"] == "" {
		t.Fatalf("port_details: %v", f["port_details"])
	}
	if _, ok := f["name"]; ok {
		t.Errorf("a floating IP has no name: %v", f)
	}
	e.want(e.do(e.bob, "GET", "/floatingips/"+fid, ""), 404, "FloatingIPNotFound")
	e.want(e.do(e.bob, "PUT", "/floatingips/"+fid, `{"floatingip": {"port_id": null}}`), 404, "FloatingIPNotFound")
	e.want(e.do(e.alice, "GET", "/floatingips/198.51.100.7", ""), 404, "FloatingIPNotFound")
	if l := list(t, e.do(e.alice, "GET", "/floatingips?port_id="+e.vm+"&floating_network_id="+e.ext, ""), "floatingips"); len(l) != 1 {
		t.Fatalf("filter: %v", l)
	}
	e.want(e.do(e.alice, "GET", "/floatingips?name=x", ""), 400, "")
	e.want(e.do(e.alice, "POST", "/floatingips", `{"floatingip": {"floating_network_id": "`+e.ext+`", "port_id": "`+e.vm+`"}}`), 409, "FloatingIPPortAlreadyAssociated")
	e.want(e.do(e.alice, "PUT", "/routers/"+rid+"/remove_router_interface", `{"subnet_id": "`+e.subnet+`"}`), 409, "RouterInterfaceInUseByFloatingIP")
	e.want(e.do(e.alice, "PUT", "/routers/"+rid, `{"router": {"external_gateway_info": null}}`), 409, "RouterExternalGatewayInUseByFloatingIp")
	e.want(e.do(e.alice, "PUT", "/floatingips/"+fid, `{"floatingip": {"floating_ip_address": "198.51.100.9"}}`), 400, "")

	// Port forwardings need a floating IP without a port.
	pfPath := "/floatingips/" + fid + "/port_forwardings"
	ssh := `{"port_forwarding": {"protocol": "tcp", "internal_port_id": "` + e.vm + `", "internal_ip_address": "` + e.vmIP + `", "internal_port": 22, "external_port": 2222}}`
	e.want(e.do(e.alice, "POST", pfPath, ssh), 409, "FloatingIPPortAlreadyAssociated")
	f = obj(t, e.want(e.do(e.alice, "PUT", "/floatingips/"+fid, `{"floatingip": {"port_id": null}}`), 200, ""), "floatingip")
	if f["port_id"] != nil || f["fixed_ip_address"] != nil || f["router_id"] != nil || f["port_details"] != nil {
		t.Fatalf("dissociated: %v", f)
	}

	e.want(e.do(e.alice, "POST", pfPath, `{"port_forwarding": {"protocol": "icmp", "internal_port_id": "`+e.vm+`", "internal_port": 22, "external_port": 2222}}`), 400, "")
	e.want(e.do(e.alice, "POST", pfPath, `{"port_forwarding": {"protocol": "tcp", "internal_port_id": "`+e.vm+`", "internal_port": 22, "external_port": 70000}}`), 400, "")
	e.want(e.do(e.alice, "POST", pfPath, `{"port_forwarding": {"protocol": "tcp", "internal_port_id": "`+e.vm+`", "internal_port": 22, "internal_port_range": "22:23", "external_port": 2222}}`), 400, "")
	e.want(e.do(e.alice, "POST", pfPath, `{"port_forwarding": {"protocol": "tcp", "internal_port_id": "`+e.vm+`", "internal_port_range": "80:90", "external_port_range": "8080:8085"}}`), 400, "BadRequest")
	e.want(e.do(e.alice, "POST", pfPath, `{"port_forwarding": {"protocol": "tcp", "internal_port_id": "`+e.vm+`", "internal_ip_address": "10.0.0.99", "internal_port": 22, "external_port": 2222}}`), 400, "BadRequest")
	e.want(e.do(e.alice, "POST", pfPath, `{"port_forwarding": {"protocol": "tcp", "internal_port": 22, "external_port": 2222}}`), 400, "")
	e.want(e.do(e.alice, "POST", pfPath, `{"port_forwarding": {"protocol": "tcp", "internal_port_id": "`+e.vm+`", "internal_port": 22, "external_port": 2222, "bogus": 1}}`), 400, "")
	e.want(e.do(e.bob, "POST", pfPath, ssh), 404, "FloatingIPNotFound")

	pf := obj(t, e.want(e.do(e.alice, "POST", pfPath, ssh), 201, ""), "port_forwarding")
	pfID := pf["id"].(string)
	if pf["internal_port"] != float64(22) || pf["external_port"] != float64(2222) || pf["internal_port_range"] != "22:22" ||
		pf["external_port_range"] != "2222:2222" || pf["protocol"] != "tcp" || pf["internal_ip_address"] != e.vmIP || pf["description"] != "" {
		t.Fatalf("port forwarding: %v", pf)
	}
	e.want(e.do(e.alice, "POST", pfPath, strings.Replace(ssh, `"internal_port": 22`, `"internal_port": 23`, 1)), 400, "BadRequest")     // external 2222/tcp taken
	e.want(e.do(e.alice, "POST", pfPath, strings.Replace(ssh, `"external_port": 2222`, `"external_port": 2223`, 1)), 400, "BadRequest") // internal 22/tcp taken
	e.want(e.do(e.alice, "POST", pfPath, strings.Replace(ssh, "tcp", "udp", 1)), 201, "")
	rng := obj(t, e.want(e.do(e.alice, "POST", pfPath, `{"port_forwarding": {"protocol": "tcp", "internal_port_id": "`+e.vm+`",
		"internal_port_range": "8000:8010", "external_port_range": "9000:9010", "description": "web"}}`), 201, ""), "port_forwarding")
	if rng["internal_port"] != nil || rng["external_port"] != nil || rng["internal_port_range"] != "8000:8010" || rng["description"] != "web" {
		t.Fatalf("range: %v", rng)
	}
	e.want(e.do(e.alice, "POST", pfPath, `{"port_forwarding": {"protocol": "tcp", "internal_port_id": "`+e.vm+`",
		"internal_port": 80, "external_port_range": "9005:9020"}}`), 400, "BadRequest")

	if l := list(t, e.do(e.alice, "GET", pfPath+"?protocol=udp", ""), "port_forwardings"); len(l) != 1 {
		t.Fatalf("protocol filter: %v", l)
	}
	if l := list(t, e.do(e.alice, "GET", pfPath+"?external_port=2222&protocol=tcp", ""), "port_forwardings"); len(l) != 1 || l[0].(map[string]any)["id"] != pfID {
		t.Fatalf("external_port filter: %v", l)
	}
	e.want(e.do(e.alice, "GET", pfPath+"?internal_ip_address="+e.vmIP, ""), 400, "")
	e.want(e.do(e.bob, "GET", pfPath, ""), 404, "FloatingIPNotFound")
	e.want(e.do(e.alice, "GET", pfPath+"/nope", ""), 404, "PortForwardingNotFound")
	pf = obj(t, e.want(e.do(e.alice, "PUT", pfPath+"/"+pfID, `{"port_forwarding": {"external_port": 2022, "description": "ssh"}}`), 200, ""), "port_forwarding")
	if pf["external_port"] != float64(2022) || pf["internal_port"] != float64(22) || pf["description"] != "ssh" {
		t.Fatalf("update: %v", pf)
	}
	if pf := obj(t, e.want(e.do(e.alice, "GET", pfPath+"/"+pfID+"?fields=external_port", ""), 200, ""), "port_forwarding"); len(pf) != 1 {
		t.Fatalf("fields: %v", pf)
	}

	// The floating IP now goes through the router and shows its forwardings.
	f = obj(t, e.want(e.do(e.alice, "GET", "/floatingips/"+fid, ""), 200, ""), "floatingip")
	if f["router_id"] != rid || f["port_id"] != nil || len(f["port_forwardings"].([]any)) != 3 {
		t.Fatalf("floating IP with forwardings: %v", f)
	}
	e.want(e.do(e.alice, "PUT", "/floatingips/"+fid, `{"floatingip": {"port_id": "`+e.vm+`"}}`), 409, "FipInUseByPortForwarding")
	e.want(e.do(e.alice, "PUT", "/routers/"+rid+"/remove_router_interface", `{"subnet_id": "`+e.subnet+`"}`), 409, "RouterInterfaceInUseByFloatingIP")
	e.want(e.do(e.alice, "DELETE", "/routers/"+rid, ""), 409, "RouterInUse")

	// A port with a floating IP of its own takes no forwardings.
	vm2 := obj(t, e.want(e.do(e.alice, "POST", "/ports", `{"port": {"network_id": "`+e.net+`"}}`), 201, ""), "port")
	f2 := id(e.want(e.do(e.alice, "POST", "/floatingips", `{"floatingip": {"floating_network_id": "`+e.ext+`", "port_id": "`+vm2["id"].(string)+`"}}`), 201, ""), "floatingip")
	e.want(e.do(e.alice, "POST", pfPath, `{"port_forwarding": {"protocol": "tcp", "internal_port_id": "`+vm2["id"].(string)+`", "internal_port": 80, "external_port": 80}}`), 409, "PortHasBindingFloatingIP")

	// Deleting forwardings: the last one unbinds the floating IP.
	for _, p := range list(t, e.do(e.alice, "GET", pfPath, ""), "port_forwardings") {
		e.want(e.do(e.alice, "DELETE", pfPath+"/"+p.(map[string]any)["id"].(string), ""), 204, "")
	}
	e.want(e.do(e.alice, "DELETE", pfPath+"/"+pfID, ""), 404, "PortForwardingNotFound")
	if f := obj(t, e.do(e.alice, "GET", "/floatingips/"+fid, ""), "floatingip"); f["router_id"] != nil || len(f["port_forwardings"].([]any)) != 0 {
		t.Fatalf("floating IP after its forwardings: %v", f)
	}

	// Associate, move to another fixed IP of the same port, and tags.
	f = obj(t, e.want(e.do(e.alice, "PUT", "/floatingips/"+fid, `{"floatingip": {"port_id": "`+e.vm+`", "fixed_ip_address": "`+e.vmIP+`"}}`), 200, ""), "floatingip")
	if f["fixed_ip_address"] != e.vmIP {
		t.Fatalf("associate: %v", f)
	}
	f = obj(t, e.want(e.do(e.alice, "PUT", "/floatingips/"+fid, `{"floatingip": {"port_id": "`+e.vm+`"}}`), 200, ""), "floatingip")
	if f["fixed_ip_address"] != e.vmIP || f["router_id"] != rid {
		t.Fatalf("re-associate with the same port: %v", f)
	}
	e.want(e.do(e.alice, "PUT", "/floatingips/"+fid+"/tags", `{"tags": ["a", "b"]}`), 200, "")
	if l := list(t, e.do(e.alice, "GET", "/floatingips?tags-any=b", ""), "floatingips"); len(l) != 1 {
		t.Fatalf("tags: %v", l)
	}
	// Deleting the port dissociates.
	e.want(e.do(e.alice, "DELETE", "/ports/"+e.vm, ""), 204, "")
	if f := obj(t, e.do(e.alice, "GET", "/floatingips/"+fid, ""), "floatingip"); f["port_id"] != nil || f["router_id"] != nil {
		t.Fatalf("after port delete: %v", f)
	}
	// Admins see every project's floating IPs.
	if l := list(t, e.do(e.admin, "GET", "/floatingips", ""), "floatingips"); len(l) != 2 {
		t.Fatalf("admin list: %v", l)
	}
	if l := list(t, e.do(e.bob, "GET", "/floatingips", ""), "floatingips"); len(l) != 0 {
		t.Fatalf("bob's list: %v", l)
	}
	e.want(e.do(e.alice, "DELETE", "/floatingips/"+f2, ""), 204, "")
	ifPort := list(t, e.do(e.alice, "GET", "/ports?device_id="+rid, ""), "ports")[0].(map[string]any)["id"].(string)
	e.want(e.do(e.alice, "PUT", "/routers/"+rid+"/remove_router_interface", `{"port_id": "`+ifPort+`", "subnet_id": "`+e.extSubnet+`"}`), 400, "SubnetMismatchForPort")
	info := e.want(e.do(e.alice, "PUT", "/routers/"+rid+"/remove_router_interface", `{"port_id": "`+ifPort+`"}`), 200, "").body
	if info["subnet_id"] != e.subnet || info["port_id"] != ifPort {
		t.Fatalf("remove by port: %v", info)
	}
}

// TestExternalNetworkWithFloatingIPs: an external network's unassociated
// floating IPs go with it; a router gateway keeps it.
func TestExternalNetworkWithFloatingIPs(t *testing.T) {
	e := newL3Env(t)
	// The subnets of a non-shared external network are the admin's own.
	if l := list(t, e.do(e.alice, "GET", "/subnets?network_id="+e.ext, ""), "subnets"); len(l) != 0 {
		t.Fatalf("alice sees the external network's subnets: %v", l)
	}
	e.want(e.do(e.alice, "GET", "/subnets/"+e.extSubnet, ""), 404, "SubnetNotFound")
	e.want(e.do(e.alice, "GET", "/networks/"+e.ext, ""), 200, "")
	fid := id(e.want(e.do(e.admin, "POST", "/floatingips", `{"floatingip": {"floating_network_id": "`+e.ext+`", "floating_ip_address": "198.51.100.77"}}`), 201, ""), "floatingip")
	rid := id(e.want(e.do(e.alice, "POST", "/routers", `{"router": {"external_gateway_info": {"network_id": "`+e.ext+`"}}}`), 201, ""), "router")
	e.want(e.do(e.admin, "DELETE", "/networks/"+e.ext, ""), 409, "NetworkInUse")
	e.want(e.do(e.admin, "GET", "/floatingips/"+fid, ""), 200, "")
	e.want(e.do(e.alice, "DELETE", "/routers/"+rid, ""), 204, "")
	e.want(e.do(e.admin, "DELETE", "/networks/"+e.ext, ""), 204, "")
	e.want(e.do(e.admin, "GET", "/floatingips/"+fid, ""), 404, "FloatingIPNotFound")
}

func TestL3Discovery(t *testing.T) {
	e := newEnv(t)
	var aliases []string
	for _, x := range list(t, e.do(e.alice, "GET", "/extensions", ""), "extensions") {
		aliases = append(aliases, x.(map[string]any)["alias"].(string))
	}
	for _, a := range []string{"router", "ext-gw-mode", "extraroute", "extraroute-atomic", "fip-port-details", "floating-ip-port-forwarding",
		"floating-ip-port-forwarding-port-ranges", "floating-ip-port-forwarding-description", "expose-port-forwarding-in-fip", "external-net"} {
		if !slices.Contains(aliases, a) {
			t.Errorf("extension %s not advertised", a)
		}
	}
	for _, a := range []string{"dvr", "l3-ha", "l3-flavors", "router_availability_zone", "qos-fip", "dns-integration"} {
		if slices.Contains(aliases, a) {
			t.Errorf("extension %s advertised", a)
		}
	}
	r := e.do(e.alice, "GET", "/", "")
	for _, c := range []string{"routers", "floatingips"} {
		if !strings.Contains(r.raw, fmt.Sprintf(`"collection":%q`, c)) {
			t.Errorf("GET /v2.0/ lacks %s: %s", c, r.raw)
		}
	}
}

// Port updates keep the L3 state whole, as in Neutron: a port with a
// floating IP keeps that address (400), forwardings to an address the port
// drops go with it, router and floating IP ports are changed through their
// own APIs only, and nobody marks a port as another project's router's.
func TestPortUpdateKeepsL3State(t *testing.T) {
	e := newL3Env(t)
	rid := id(e.want(e.do(e.alice, "POST", "/routers", `{"router": {"external_gateway_info": {"network_id": "`+e.ext+`"}}}`), 201, ""), "router")
	ifPort := e.want(e.do(e.alice, "PUT", "/routers/"+rid+"/add_router_interface", `{"subnet_id": "`+e.subnet+`"}`), 200, "").body["port_id"].(string)
	f := obj(t, e.want(e.do(e.alice, "POST", "/floatingips", `{"floatingip": {"floating_network_id": "`+e.ext+`", "port_id": "`+e.vm+`"}}`), 201, ""), "floatingip")
	fid := f["id"].(string)

	// The associated address cannot go; another one may come and go.
	_, msg := e.fault(e.do(e.alice, "PUT", "/ports/"+e.vm, `{"port": {"fixed_ips": [{"subnet_id": "`+e.subnet+`", "ip_address": "10.0.0.77"}]}}`), 400)
	if !strings.Contains(msg, "floating ip") || !strings.Contains(msg, e.vm) {
		t.Errorf("dropping the floating IP's address: %q", msg)
	}
	e.want(e.do(e.alice, "PUT", "/ports/"+e.vm, `{"port": {"fixed_ips": [{"ip_address": "`+e.vmIP+`"}, {"ip_address": "10.0.0.88"}]}}`), 200, "")
	e.want(e.do(e.alice, "PUT", "/ports/"+e.vm, `{"port": {"fixed_ips": [{"ip_address": "`+e.vmIP+`"}]}}`), 200, "")
	if got := obj(t, e.do(e.alice, "GET", "/floatingips/"+fid, ""), "floatingip"); got["fixed_ip_address"] != e.vmIP {
		t.Fatalf("floating IP after a refused change: %v", got)
	}

	// Forwardings to an address a port drops go with it, the others stay.
	// (A port with a floating IP takes no forwardings: another port.)
	vm2 := id(e.want(e.do(e.alice, "POST", "/ports", `{"port": {"network_id": "`+e.net+`", "fixed_ips": [{"ip_address": "10.0.0.78"}, {"ip_address": "10.0.0.79"}]}}`), 201, ""), "port")
	pfFIP := id(e.want(e.do(e.alice, "POST", "/floatingips", `{"floatingip": {"floating_network_id": "`+e.ext+`"}}`), 201, ""), "floatingip")
	pfPath := "/floatingips/" + pfFIP + "/port_forwardings"
	fwd := func(ip string, ext int) string {
		return id(e.want(e.do(e.alice, "POST", pfPath, fmt.Sprintf(`{"port_forwarding": {"protocol": "tcp", "internal_port_id": "%s", "internal_ip_address": "%s", "internal_port": 22, "external_port": %d}}`, vm2, ip, ext)), 201, ""), "port_forwarding")
	}
	keep, drop := fwd("10.0.0.79", 2201), fwd("10.0.0.78", 2202)
	e.want(e.do(e.alice, "PUT", "/ports/"+vm2, `{"port": {"fixed_ips": [{"ip_address": "10.0.0.79"}, {"ip_address": "10.0.0.80"}]}}`), 200, "")
	e.want(e.do(e.alice, "GET", pfPath+"/"+keep, ""), 200, "")
	e.want(e.do(e.alice, "GET", pfPath+"/"+drop, ""), 404, "")
	if got := obj(t, e.do(e.alice, "GET", "/floatingips/"+pfFIP, ""), "floatingip"); got["router_id"] != rid {
		t.Fatalf("the floating IP with a forwarding left lost its router: %v", got)
	}
	// The last one: the floating IP (no port) leaves the router.
	e.want(e.do(e.alice, "PUT", "/ports/"+vm2, `{"port": {"fixed_ips": [{"ip_address": "10.0.0.80"}]}}`), 200, "")
	if got := obj(t, e.do(e.alice, "GET", "/floatingips/"+pfFIP, ""), "floatingip"); got["router_id"] != nil || len(list(t, e.do(e.alice, "GET", pfPath, ""), "port_forwardings")) != 0 {
		t.Fatalf("the floating IP whose forwardings all went: %v", got)
	}

	// Router and floating IP ports: members cannot re-own them; the
	// interface keeps one address on its subnet.
	var gwPort, fipPort string
	for _, p := range list(t, e.do(e.admin, "GET", "/ports?device_owner=network:router_gateway&device_id="+rid, ""), "ports") {
		gwPort = p.(map[string]any)["id"].(string)
	}
	for _, p := range list(t, e.do(e.admin, "GET", "/ports?device_owner=network:floatingip&device_id="+fid, ""), "ports") {
		fipPort = p.(map[string]any)["id"].(string)
	}
	if ifPort == "" || gwPort == "" || fipPort == "" {
		t.Fatalf("router interface %q, gateway %q, floating IP port %q", ifPort, gwPort, fipPort)
	}
	for _, body := range []string{`{"port": {"device_owner": "compute:nova"}}`, `{"port": {"device_id": "x"}}`, `{"port": {"device_owner": ""}}`} {
		e.want(e.do(e.alice, "PUT", "/ports/"+ifPort, body), 409, "L3PortInUse")
	}
	e.want(e.do(e.alice, "PUT", "/ports/"+ifPort, `{"port": {"name": "still mine to name"}}`), 200, "")
	_, msg = e.fault(e.do(e.alice, "PUT", "/ports/"+ifPort, `{"port": {"fixed_ips": []}}`), 400)
	if !strings.Contains(msg, "fixed_ips") {
		t.Errorf("router interface without an address: %q", msg)
	}
	e.want(e.do(e.alice, "PUT", "/ports/"+ifPort, `{"port": {"fixed_ips": [{"subnet_id": "`+e.subnet+`", "ip_address": "10.0.0.1"}, {"subnet_id": "`+e.subnet+`"}]}}`), 400, "")
	e.want(e.do(e.alice, "PUT", "/ports/"+ifPort, `{"port": {"fixed_ips": [{"subnet_id": "`+e.subnet+`", "ip_address": "10.0.0.1"}]}}`), 200, "")
	for _, pid := range []string{gwPort, fipPort} {
		e.want(e.do(e.admin, "GET", "/ports/"+pid, ""), 200, "")
	}

	// Marking a port as someone else's router's: 409, and nothing made.
	bobNet := id(e.want(e.do(e.bob, "POST", "/networks", `{"network": {"name": "b"}}`), 201, ""), "network")
	e.want(e.do(e.bob, "POST", "/subnets", `{"subnet": {"network_id": "`+bobNet+`", "cidr": "10.9.0.0/24", "ip_version": 4}}`), 201, "")
	before := len(list(t, e.do(e.admin, "GET", "/ports?network_id="+bobNet, ""), "ports"))
	for _, owner := range []string{"network:router_interface", "network:router_gateway"} {
		_, msg = e.fault(e.do(e.bob, "POST", "/ports", `{"port": {"network_id": "`+bobNet+`", "device_owner": "`+owner+`", "device_id": "`+rid+`"}}`), 409)
		if !strings.Contains(msg, rid) {
			t.Errorf("%s of alice's router: %q", owner, msg)
		}
	}
	if after := len(list(t, e.do(e.admin, "GET", "/ports?network_id="+bobNet, ""), "ports")); after != before {
		t.Fatalf("refused creates left %d ports", after-before)
	}
	bp := id(e.want(e.do(e.bob, "POST", "/ports", `{"port": {"network_id": "`+bobNet+`"}}`), 201, ""), "port")
	e.want(e.do(e.bob, "PUT", "/ports/"+bp, `{"port": {"device_owner": "network:router_interface", "device_id": "`+rid+`"}}`), 409, "DeviceIDNotOwnedByTenant")
	e.want(e.do(e.bob, "PUT", "/ports/"+bp, `{"port": {"device_owner": "network:router_interface", "device_id": "no-such-router"}}`), 409, "DeviceIDNotOwnedByTenant")
	// An admin may (Neutron's rule); the agent still wires only the
	// interfaces add_router_interface recorded.
	e.want(e.do(e.admin, "PUT", "/ports/"+bp, `{"port": {"device_owner": "network:router_interface", "device_id": "`+rid+`"}}`), 200, "")
}
