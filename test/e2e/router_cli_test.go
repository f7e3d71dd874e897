package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestRouterCLI drives Neutron's L3 API with Debian's openstack CLI: an
// admin's external network, then as a member a router with a gateway, an
// interface and extra routes, a floating IP associated and dissociated, and
// port forwardings; the errors Neutron gives; and a clean teardown. Only
// the API is checked: the data plane has tests of its own.
func TestRouterCLI(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	c.startReady()
	admin := c.openrc()

	// The admin's external network (not the cloud's own public network,
	// which this test does not rely on).
	var ext struct {
		ID       string
		External bool `json:"router:external"`
	}
	c.osJSON(admin, &ext, "network", "create", "--external", "--provider-network-type", "flat",
		"--provider-physical-network", "e2e", "ext-e2e")
	if ext.ID == "" || !ext.External {
		t.Fatalf("external network: %+v", ext)
	}
	var extSub struct{ ID string }
	c.osJSON(admin, &extSub, "subnet", "create", "--network", "ext-e2e", "--subnet-range", "198.51.100.0/24",
		"--no-dhcp", "ext-e2e-subnet")

	// A member and their network.
	c.osOK(admin, "project", "create", "demo")
	c.osOK(admin, "user", "create", "--password", "s3cret", "--project", "demo", "alice")
	c.osOK(admin, "role", "add", "--project", "demo", "--user", "alice", "member")
	alice := withEnv(admin, "OS_USERNAME", "alice", "OS_PASSWORD", "s3cret", "OS_PROJECT_NAME", "demo")
	c.osOK(alice, "network", "create", "priv")
	c.osOK(alice, "subnet", "create", "--network", "priv", "--subnet-range", "10.10.0.0/24", "priv-subnet")

	// Router and gateway.
	type router struct {
		ID           string
		Status       string
		AdminStateUp bool `json:"admin_state_up"`
		Gateway      *struct {
			NetworkID  string `json:"network_id"`
			EnableSNAT bool   `json:"enable_snat"`
			FixedIPs   []struct {
				SubnetID  string `json:"subnet_id"`
				IPAddress string `json:"ip_address"`
			} `json:"external_fixed_ips"`
		} `json:"external_gateway_info"`
		Routes []struct {
			Destination string
			NextHop     string `json:"nexthop"`
		}
		Interfaces []struct {
			PortID    string `json:"port_id"`
			IPAddress string `json:"ip_address"`
			SubnetID  string `json:"subnet_id"`
		} `json:"interfaces_info"`
	}
	show := func() router {
		t.Helper()
		var r router
		c.osJSON(alice, &r, "router", "show", "r")
		return r
	}
	var r router
	c.osJSON(alice, &r, "router", "create", "r")
	if r.ID == "" || !r.AdminStateUp || r.Gateway != nil {
		t.Fatalf("router create: %+v", r)
	}
	c.osOK(alice, "router", "set", "r", "--external-gateway", "ext-e2e")
	if r = show(); r.Gateway == nil || r.Gateway.NetworkID != ext.ID || !r.Gateway.EnableSNAT || len(r.Gateway.FixedIPs) != 1 ||
		!strings.HasPrefix(r.Gateway.FixedIPs[0].IPAddress, "198.51.100.") {
		t.Fatalf("router gateway: %+v", r.Gateway)
	}
	// Picking the gateway's address or SNAT is for admins (Neutron's policy).
	c.osFail(alice, []string{"403"}, "router", "set", "r", "--external-gateway", "ext-e2e",
		"--fixed-ip", "ip-address=198.51.100.50")
	c.osFail(alice, []string{"403"}, "router", "set", "r", "--external-gateway", "ext-e2e", "--disable-snat")
	c.osOK(admin, "router", "set", r.ID, "--external-gateway", "ext-e2e", "--fixed-ip", "subnet=ext-e2e-subnet,ip-address=198.51.100.50")
	if r = show(); r.Gateway == nil || len(r.Gateway.FixedIPs) != 1 || r.Gateway.FixedIPs[0].IPAddress != "198.51.100.50" ||
		r.Gateway.FixedIPs[0].SubnetID != extSub.ID {
		t.Fatalf("router gateway with a fixed IP: %+v", r.Gateway)
	}
	c.osFail(alice, []string{"400", "not a valid external network"}, "router", "set", "r", "--external-gateway", "priv")

	// Interface.
	c.osOK(alice, "router", "add", "subnet", "r", "priv-subnet")
	if r = show(); len(r.Interfaces) != 1 || r.Interfaces[0].IPAddress != "10.10.0.1" {
		t.Fatalf("router interfaces: %+v", r.Interfaces)
	}
	c.osFail(alice, []string{"400", "already has a port on subnet"}, "router", "add", "subnet", "r", "priv-subnet")
	c.osOK(alice, "router", "create", "r2")
	c.osFail(alice, []string{"409"}, "router", "add", "subnet", "r2", "priv-subnet")
	c.osOK(alice, "router", "delete", "r2")
	if out := c.osOK(alice, "port", "list", "--router", "r", "-f", "value", "-c", "ID"); strings.TrimSpace(out) != r.Interfaces[0].PortID {
		t.Errorf("port list --router: %q, want the interface %s", out, r.Interfaces[0].PortID)
	}
	if out := c.osOK(alice, "port", "show", r.Interfaces[0].PortID, "-f", "value", "-c", "device_owner"); strings.TrimSpace(out) != "network:router_interface" {
		t.Errorf("interface device_owner: %q", out)
	}
	c.osFail(alice, []string{"409"}, "port", "delete", r.Interfaces[0].PortID)
	c.osFail(alice, []string{"409"}, "router", "delete", "r")

	// Floating IP.
	var vm struct {
		ID       string
		FixedIPs []struct {
			IPAddress string `json:"ip_address"`
		} `json:"fixed_ips"`
	}
	c.osJSON(alice, &vm, "port", "create", "--network", "priv", "vm")
	vmIP := vm.FixedIPs[0].IPAddress
	type fip struct {
		ID          string
		Address     string  `json:"floating_ip_address"`
		PortID      *string `json:"port_id"`
		FixedIP     *string `json:"fixed_ip_address"`
		RouterID    *string `json:"router_id"`
		Status      string
		PortDetails any `json:"port_details"` // the CLI prints it as a string

	}
	var f fip
	c.osJSON(alice, &f, "floating", "ip", "create", "ext-e2e")
	if f.ID == "" || !strings.HasPrefix(f.Address, "198.51.100.") || f.PortID != nil || f.Status != "DOWN" {
		t.Fatalf("floating ip create: %+v", f)
	}
	c.osFail(alice, []string{"403"}, "floating", "ip", "create", "--floating-ip-address", "198.51.100.77", "ext-e2e")
	c.osFail(alice, []string{"400"}, "floating", "ip", "create", "priv")
	c.osOK(alice, "floating", "ip", "set", "--port", "vm", f.ID)
	c.osJSON(alice, &f, "floating", "ip", "show", f.ID)
	if f.PortID == nil || *f.PortID != vm.ID || f.FixedIP == nil || *f.FixedIP != vmIP || f.RouterID == nil || *f.RouterID != r.ID ||
		!strings.Contains(fmt.Sprint(f.PortDetails), "name='vm'") {
		t.Fatalf("floating ip set --port: %+v", f)
	}
	if out := c.osOK(alice, "floating", "ip", "list", "--port", "vm", "-f", "value", "-c", "ID"); strings.TrimSpace(out) != f.ID {
		t.Errorf("floating ip list --port: %q", out)
	}
	c.osFail(alice, []string{"409", "floating IP"}, "router", "remove", "subnet", "r", "priv-subnet")
	c.osOK(alice, "floating", "ip", "unset", "--port", f.ID)
	c.osJSON(alice, &f, "floating", "ip", "show", f.Address)
	if f.PortID != nil || f.FixedIP != nil || f.RouterID != nil {
		t.Fatalf("floating ip unset --port: %+v", f)
	}

	// Port forwarding.
	var pf map[string]any
	c.osJSON(alice, &pf, "floating", "ip", "port", "forwarding", "create", "--internal-ip-address", vmIP, "--port", "vm",
		"--internal-protocol-port", "22", "--external-protocol-port", "2222", "--protocol", "tcp", "--description", "ssh", f.ID)
	pfID, _ := pf["id"].(string)
	if pfID == "" || pf["internal_port"] != float64(22) || pf["external_port"] != float64(2222) || pf["protocol"] != "tcp" ||
		pf["internal_ip_address"] != vmIP || pf["description"] != "ssh" {
		t.Fatalf("port forwarding create: %v", pf)
	}
	c.osFail(alice, []string{"400", "collision"}, "floating", "ip", "port", "forwarding", "create", "--internal-ip-address", vmIP,
		"--port", "vm", "--internal-protocol-port", "23", "--external-protocol-port", "2222", "--protocol", "tcp", f.ID)
	c.osOK(alice, "floating", "ip", "port", "forwarding", "create", "--internal-ip-address", vmIP, "--port", "vm",
		"--internal-protocol-port", "53", "--external-protocol-port", "5353", "--protocol", "udp", f.Address)
	c.osFail(alice, []string{"409"}, "floating", "ip", "set", "--port", "vm", f.ID)
	var pfs []map[string]any
	c.osJSON(alice, &pfs, "floating", "ip", "port", "forwarding", "list", f.ID)
	if len(pfs) != 2 {
		t.Fatalf("port forwarding list: %v", pfs)
	}
	c.osJSON(alice, &pfs, "floating", "ip", "port", "forwarding", "list", "--protocol", "udp", f.ID)
	if len(pfs) != 1 {
		t.Fatalf("port forwarding list --protocol udp: %v", pfs)
	}
	c.osOK(alice, "floating", "ip", "port", "forwarding", "set", "--external-protocol-port", "2022", f.ID, pfID)
	c.osJSON(alice, &pf, "floating", "ip", "port", "forwarding", "show", f.ID, pfID)
	if pf["external_port"] != float64(2022) || pf["internal_port"] != float64(22) {
		t.Fatalf("port forwarding show after set: %v", pf)
	}
	c.osJSON(alice, &f, "floating", "ip", "show", f.ID)
	if f.RouterID == nil || *f.RouterID != r.ID {
		t.Errorf("a floating IP with port forwardings goes through the router: %+v", f)
	}
	c.osFail(alice, []string{"409"}, "router", "remove", "subnet", "r", "priv-subnet")
	for _, p := range pfsOf(t, c, alice, f.ID) {
		c.osOK(alice, "floating", "ip", "port", "forwarding", "delete", f.ID, p)
	}
	if got := pfsOf(t, c, alice, f.ID); len(got) != 0 {
		t.Fatalf("port forwardings left: %v", got)
	}

	// Extra routes: router set --route appends, extraroute-atomic adds and
	// removes, unset --route removes.
	c.osOK(alice, "router", "set", "r", "--route", "destination=192.168.50.0/24,gateway=10.10.0.5")
	c.osOK(alice, "router", "set", "r", "--route", "destination=192.168.60.0/24,gateway=198.51.100.1")
	if r = show(); len(r.Routes) != 2 {
		t.Fatalf("routes after set: %+v", r.Routes)
	}
	c.osFail(alice, []string{"400", "not connected"}, "router", "set", "r", "--route", "destination=192.168.70.0/24,gateway=10.99.0.1")
	c.osOK(alice, "router", "add", "route", "r", "--route", "destination=192.168.51.0/24,gateway=10.10.0.6")
	if r = show(); len(r.Routes) != 3 {
		t.Fatalf("routes after add route: %+v", r.Routes)
	}
	c.osFail(alice, []string{"409"}, "router", "remove", "subnet", "r", "priv-subnet")
	c.osOK(alice, "router", "remove", "route", "r", "--route", "destination=192.168.51.0/24,gateway=10.10.0.6")
	c.osOK(alice, "router", "unset", "r", "--route", "destination=192.168.50.0/24,gateway=10.10.0.5",
		"--route", "destination=192.168.60.0/24,gateway=198.51.100.1")
	if r = show(); len(r.Routes) != 0 {
		t.Fatalf("routes after unset: %+v", r.Routes)
	}

	// Teardown in Neutron's order.
	c.osOK(alice, "floating", "ip", "delete", f.ID)
	c.osOK(alice, "router", "remove", "subnet", "r", "priv-subnet")
	if out := c.osOK(alice, "port", "list", "--router", "r", "-f", "value", "-c", "ID"); strings.TrimSpace(out) != "" {
		t.Errorf("interface port left: %q", out)
	}
	c.osOK(alice, "router", "unset", "--external-gateway", "r")
	if r = show(); r.Gateway != nil {
		t.Fatalf("router unset --external-gateway: %+v", r.Gateway)
	}
	c.osOK(alice, "router", "delete", "r")
	if out := c.osOK(alice, "router", "list", "-f", "value"); strings.TrimSpace(out) != "" {
		t.Errorf("routers left: %q", out)
	}
	c.osOK(alice, "port", "delete", "vm")
	c.osOK(alice, "network", "delete", "priv")
	// An unassociated floating IP does not keep the external network.
	c.osOK(admin, "floating", "ip", "create", "ext-e2e")
	c.osOK(admin, "network", "delete", "ext-e2e")
	if out := c.osOK(admin, "floating", "ip", "list", "-f", "value"); strings.TrimSpace(out) != "" {
		t.Errorf("floating IPs left: %q", out)
	}
}

// pfsOf lists the IDs of a floating IP's port forwardings.
func pfsOf(t *testing.T, c *cloud, env map[string]string, fip string) []string {
	t.Helper()
	var rows []map[string]any
	out := c.osOK(env, "floating", "ip", "port", "forwarding", "list", fip, "-f", "json")
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("port forwarding list: %q: %v", out, err)
	}
	var ids []string
	for _, r := range rows {
		if id, ok := r["ID"].(string); ok {
			ids = append(ids, id)
		}
	}
	return ids
}
