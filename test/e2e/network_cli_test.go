package e2e

import (
	"strings"
	"testing"
)

// TestNetworkCLI drives the Neutron API with Debian's openstack CLI:
// network, subnet, port and security group create, list with filters, show,
// set and delete, and the errors Neutron gives.
func TestNetworkCLI(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	c.startReady()
	admin := c.openrc()

	var net struct {
		ID   string
		MTU  int
		Type string `json:"provider:network_type"`
	}
	c.osJSON(admin, &net, "network", "create", "net1")
	if net.ID == "" || net.MTU != 1450 || net.Type != "vxlan" {
		t.Fatalf("network create: %+v", net)
	}
	var sub struct {
		ID              string
		GatewayIP       string                        `json:"gateway_ip"`
		AllocationPools []struct{ Start, End string } `json:"allocation_pools"`
	}
	c.osJSON(admin, &sub, "subnet", "create", "--network", "net1", "--subnet-range", "10.0.0.0/24", "--dns-nameserver", "203.0.113.53", "sub1")
	if sub.GatewayIP != "10.0.0.1" || len(sub.AllocationPools) != 1 || sub.AllocationPools[0].Start != "10.0.0.2" {
		t.Fatalf("subnet create: %+v", sub)
	}
	var p1 struct {
		ID       string
		Status   string
		FixedIPs []struct {
			IPAddress string `json:"ip_address"`
		} `json:"fixed_ips"`
	}
	c.osJSON(admin, &p1, "port", "create", "--network", "net1", "p1")
	// Not bound to a host: DOWN. Its address comes from the pool (the DHCP
	// port the agent makes may have taken the first one, as in Neutron).
	if p1.Status != "DOWN" || len(p1.FixedIPs) != 1 || !strings.HasPrefix(p1.FixedIPs[0].IPAddress, "10.0.0.") || p1.FixedIPs[0].IPAddress == "10.0.0.1" {
		t.Fatalf("port create: %+v", p1)
	}
	c.osOK(admin, "port", "create", "--network", "net1", "--fixed-ip", "ip-address=10.0.0.50", "p2")
	c.osFail(admin, []string{"409", "10.0.0.50 already allocated"}, "port", "create", "--network", "net1", "--fixed-ip", "ip-address=10.0.0.50", "p3")
	c.osFail(admin, []string{"400", "overlaps with another subnet"}, "subnet", "create", "--network", "net1", "--subnet-range", "10.0.0.128/25", "bad")
	c.osFail(admin, []string{"400", "10.0.1.5/24"}, "subnet", "create", "--network", "net1", "--subnet-range", "10.0.1.5/24", "bad")

	// Lists with filters.
	if out := c.osOK(admin, "port", "list", "--fixed-ip", "ip-address=10.0.0.50", "-f", "value", "-c", "Name"); strings.TrimSpace(out) != "p2" {
		t.Errorf("port list --fixed-ip: %q", out)
	}
	if out := c.osOK(admin, "port", "list", "--network", "net1", "-f", "value", "-c", "Name"); len(strings.Fields(out)) != 2 {
		t.Errorf("port list --network: %q", out)
	}
	c.osOK(admin, "network", "set", "--mtu", "1400", "--tag", "blue", "net1")
	if out := c.osOK(admin, "network", "list", "--tags", "blue", "-f", "value", "-c", "Name"); strings.TrimSpace(out) != "net1" {
		t.Errorf("network list --tags: %q", out)
	}
	if out := c.osOK(admin, "network", "show", "net1", "-f", "value", "-c", "mtu"); strings.TrimSpace(out) != "1400" {
		t.Errorf("mtu after set: %q", out)
	}

	// Security groups.
	var sg struct{ ID string }
	c.osJSON(admin, &sg, "security", "group", "create", "web")
	c.osOK(admin, "security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22", "web")
	c.osFail(admin, []string{"409", "already exists"}, "security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22", "web")
	rules := c.osOK(admin, "security", "group", "rule", "list", "web", "-f", "value", "-c", "IP Protocol", "-c", "Port Range", "-c", "Direction")
	if !strings.Contains(rules, "tcp 22:22 ingress") {
		t.Errorf("rule list: %q", rules)
	}
	c.osOK(admin, "port", "set", "--security-group", "web", "p1")
	if out := c.osOK(admin, "port", "show", "p1", "-f", "value", "-c", "security_group_ids"); !strings.Contains(out, sg.ID) {
		t.Errorf("port security groups: %q", out)
	}
	c.osFail(admin, []string{"409", "in use"}, "security", "group", "delete", "web")
	if out := c.osOK(admin, "security", "group", "list", "-f", "value", "-c", "Name"); !strings.Contains(out, "default") {
		t.Errorf("no default security group: %q", out)
	}

	// In-use rules, then a clean delete.
	c.osFail(admin, []string{"409"}, "subnet", "delete", "sub1")
	c.osFail(admin, []string{"409"}, "network", "delete", "net1")
	c.osOK(admin, "port", "delete", "p1", "p2")
	c.osOK(admin, "security", "group", "delete", "web")
	c.osOK(admin, "network", "delete", "net1")
	// Only the cloud's own external network stays.
	if out := c.osOK(admin, "network", "list", "--internal", "-f", "value"); strings.TrimSpace(out) != "" {
		t.Errorf("networks left: %q", out)
	}
	if out := c.osOK(admin, "subnet", "list", "-f", "value", "-c", "Name"); strings.TrimSpace(out) != "public-subnet" {
		t.Errorf("subnets left: %q", out)
	}
}
