package network

import (
	"net/netip"
	"time"
)

// Network types.
const (
	TypeVXLAN = "vxlan"
	TypeFlat  = "flat"
	TypeLocal = "local"
)

// Statuses.
const (
	StatusActive = "ACTIVE"
	StatusDown   = "DOWN"
	StatusBuild  = "BUILD"
	StatusError  = "ERROR"
)

// Device owners nimbo itself uses.
const (
	OwnerDHCP  = "network:dhcp"
	OwnerProbe = "network:probe"
)

// Meta is what every resource has (Neutron's standard attributes).
type Meta struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	ProjectID   string    `json:"project_id"`
	Tags        []string  `json:"tags,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	Revision    int64     `json:"revision"`
}

// Network is a stored network.
type Network struct {
	Meta
	AdminStateUp        bool     `json:"admin_state_up"`
	Shared              bool     `json:"shared"`
	External            bool     `json:"external"`
	MTU                 int      `json:"mtu"`
	PortSecurityEnabled bool     `json:"port_security_enabled"`
	Type                string   `json:"type"`
	PhysicalNetwork     string   `json:"physical_network,omitempty"`
	SegmentationID      int      `json:"segmentation_id,omitempty"`
	AZHints             []string `json:"az_hints,omitempty"`
	IsDefault           bool     `json:"is_default,omitempty"`
}

// Pool is an inclusive range of allocatable addresses.
type Pool struct {
	Start netip.Addr `json:"start"`
	End   netip.Addr `json:"end"`
}

// Contains reports whether a is in the pool.
func (p Pool) Contains(a netip.Addr) bool { return p.Start.Compare(a) <= 0 && a.Compare(p.End) <= 0 }

// Route is a host route.
type Route struct {
	Destination netip.Prefix `json:"destination"`
	NextHop     netip.Addr   `json:"nexthop"`
}

// Subnet is a stored subnet.
type Subnet struct {
	Meta
	NetworkID  string       `json:"network_id"`
	CIDR       netip.Prefix `json:"cidr"`
	Gateway    netip.Addr   `json:"gateway,omitzero"` // zero: no gateway
	Pools      []Pool       `json:"pools"`
	DNS        []netip.Addr `json:"dns,omitempty"`
	HostRoutes []Route      `json:"host_routes,omitempty"`
	EnableDHCP bool         `json:"enable_dhcp"`
}

// FixedIP is an address of a port.
type FixedIP struct {
	SubnetID string     `json:"subnet_id"`
	IP       netip.Addr `json:"ip"`
}

// AddressPair is an allowed address pair (IP or CIDR, optional MAC).
type AddressPair struct {
	IP  netip.Prefix `json:"ip"`
	MAC string       `json:"mac,omitempty"`
}

// Port is a stored port.
type Port struct {
	Meta
	NetworkID           string         `json:"network_id"`
	AdminStateUp        bool           `json:"admin_state_up"`
	Status              string         `json:"status"`
	MAC                 string         `json:"mac"`
	FixedIPs            []FixedIP      `json:"fixed_ips,omitempty"`
	DeviceID            string         `json:"device_id,omitempty"`
	DeviceOwner         string         `json:"device_owner,omitempty"`
	SecurityGroups      []string       `json:"security_groups,omitempty"`
	AddressPairs        []AddressPair  `json:"address_pairs,omitempty"`
	PortSecurityEnabled bool           `json:"port_security_enabled"`
	HostID              string         `json:"host_id,omitempty"`
	VNICType            string         `json:"vnic_type,omitempty"`
	Profile             map[string]any `json:"profile,omitempty"`
	// VIFType and VIFDetails are set by the agent that wired the port.
	VIFType    string         `json:"vif_type,omitempty"`
	VIFDetails map[string]any `json:"vif_details,omitempty"`
}

// SecurityGroup is a stored security group (its rules are stored apart).
type SecurityGroup struct {
	Meta
	Stateful bool `json:"stateful"`
	Default  bool `json:"default,omitempty"`
}

// Rule is a stored security group rule.
type Rule struct {
	Meta
	GroupID        string       `json:"group_id"`
	Direction      string       `json:"direction"` // ingress | egress
	EtherType      string       `json:"ethertype"` // IPv4 | IPv6
	Protocol       string       `json:"protocol,omitempty"`
	PortMin        *int         `json:"port_min,omitempty"` // nil: any (0 is a valid ICMP type/code)
	PortMax        *int         `json:"port_max,omitempty"`
	RemoteIPPrefix netip.Prefix `json:"remote_ip_prefix,omitzero"`
	RemoteGroupID  string       `json:"remote_group_id,omitempty"`
}

// Quota holds per-project limits (-1 is unlimited).
type Quota map[string]int

// More device owners (Neutron's).
const (
	OwnerRouterInterface = "network:router_interface"
	OwnerRouterGateway   = "network:router_gateway"
	OwnerFloatingIP      = "network:floatingip"
)

// Router is a stored router.
type Router struct {
	Meta
	AdminStateUp bool           `json:"admin_state_up"`
	Gateway      *RouterGateway `json:"gateway,omitempty"`
	Routes       []Route        `json:"routes,omitempty"` // extraroute
	// Status is what the agent last reported (StatusActive once its
	// namespace, legs and NAT are in place, StatusError when it failed);
	// empty until then.
	Status string `json:"status,omitempty"`
}

// RouterGateway is a router's leg on an external network.
type RouterGateway struct {
	NetworkID  string    `json:"network_id"`
	EnableSNAT bool      `json:"enable_snat"`
	PortID     string    `json:"port_id"`
	FixedIPs   []FixedIP `json:"fixed_ips"`
}

// FloatingIP is a stored floating IP: an address on an external network,
// optionally mapped 1:1 to a port's fixed address through a router.
type FloatingIP struct {
	Meta
	NetworkID string     `json:"network_id"` // the external network
	PortID    string     `json:"port_id"`    // its own port there
	SubnetID  string     `json:"subnet_id"`
	IP        netip.Addr `json:"ip"`
	// The association, when set.
	FixedPortID string     `json:"fixed_port_id,omitempty"`
	FixedIP     netip.Addr `json:"fixed_ip,omitzero"`
	RouterID    string     `json:"router_id,omitempty"`
	FixedSubnet string     `json:"fixed_subnet,omitempty"`
	// Status is what the agent last reported: StatusActive while the
	// address is NATed to its fixed IP or carries port forwardings,
	// StatusDown otherwise; empty until then.
	Status string `json:"status,omitempty"`
}

// PortForwarding maps an external port range of a floating IP to a range of
// an internal address (DNAT), as the floating-ip-port-forwarding extension.
type PortForwarding struct {
	ID             string     `json:"id"`
	FloatingIPID   string     `json:"floatingip_id"`
	ProjectID      string     `json:"project_id"`
	Description    string     `json:"description,omitempty"`
	Protocol       string     `json:"protocol"` // tcp | udp
	InternalPortID string     `json:"internal_port_id"`
	InternalIP     netip.Addr `json:"internal_ip"`
	InternalMin    int        `json:"internal_min"`
	InternalMax    int        `json:"internal_max"`
	ExternalMin    int        `json:"external_min"`
	ExternalMax    int        `json:"external_max"`
}
