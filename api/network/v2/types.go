// Package v2 holds the Neutron v2.0 (network) wire types nimbo speaks:
// request bodies (decoded strictly: Neutron rejects unknown attributes) and
// resources exactly as OpenStack clients expect them. No logic.
package v2

import "encoding/json"

// TimeFormat is Neutron's timestamp layout.
const TimeFormat = "2006-01-02T15:04:05Z"

// Network is a network resource.
type Network struct {
	ID                    string   `json:"id"`
	Name                  string   `json:"name"`
	Description           string   `json:"description"`
	ProjectID             string   `json:"project_id"`
	TenantID              string   `json:"tenant_id"`
	AdminStateUp          bool     `json:"admin_state_up"`
	Status                string   `json:"status"`
	Shared                bool     `json:"shared"`
	External              bool     `json:"router:external"`
	MTU                   int      `json:"mtu"`
	Subnets               []string `json:"subnets"`
	PortSecurityEnabled   bool     `json:"port_security_enabled"`
	NetworkType           string   `json:"provider:network_type,omitempty"`
	PhysicalNetwork       *string  `json:"provider:physical_network,omitempty"`
	SegmentationID        *int     `json:"provider:segmentation_id,omitempty"`
	AvailabilityZones     []string `json:"availability_zones"`
	AvailabilityZoneHints []string `json:"availability_zone_hints"`
	IPv4AddressScope      *string  `json:"ipv4_address_scope"`
	IPv6AddressScope      *string  `json:"ipv6_address_scope"`
	IsDefault             bool     `json:"is_default"`
	Tags                  []string `json:"tags"`
	CreatedAt             string   `json:"created_at"`
	UpdatedAt             string   `json:"updated_at"`
	RevisionNumber        int64    `json:"revision_number"`
}

// NetworkRequest is the "network" object of a create (POST) or update (PUT).
type NetworkRequest struct {
	Name                  *string   `json:"name"`
	Description           *string   `json:"description"`
	ProjectID             *string   `json:"project_id"`
	TenantID              *string   `json:"tenant_id"`
	AdminStateUp          *bool     `json:"admin_state_up"`
	Shared                *bool     `json:"shared"`
	External              *bool     `json:"router:external"`
	MTU                   *Int      `json:"mtu"`
	PortSecurityEnabled   *bool     `json:"port_security_enabled"`
	NetworkType           *string   `json:"provider:network_type"`
	PhysicalNetwork       *string   `json:"provider:physical_network"`
	SegmentationID        *Int      `json:"provider:segmentation_id"`
	AvailabilityZoneHints *[]string `json:"availability_zone_hints"`
	IsDefault             *bool     `json:"is_default"`
}

// AllocationPool is an inclusive range of addresses to allocate from.
type AllocationPool struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// HostRoute is a static route handed to instances by DHCP.
type HostRoute struct {
	Destination string `json:"destination"`
	NextHop     string `json:"nexthop"`
}

// Subnet is a subnet resource.
type Subnet struct {
	ID              string           `json:"id"`
	Name            string           `json:"name"`
	Description     string           `json:"description"`
	ProjectID       string           `json:"project_id"`
	TenantID        string           `json:"tenant_id"`
	NetworkID       string           `json:"network_id"`
	IPVersion       int              `json:"ip_version"`
	CIDR            string           `json:"cidr"`
	GatewayIP       *string          `json:"gateway_ip"`
	AllocationPools []AllocationPool `json:"allocation_pools"`
	DNSNameservers  []string         `json:"dns_nameservers"`
	HostRoutes      []HostRoute      `json:"host_routes"`
	EnableDHCP      bool             `json:"enable_dhcp"`
	IPv6RAMode      *string          `json:"ipv6_ra_mode"`
	IPv6AddressMode *string          `json:"ipv6_address_mode"`
	SubnetPoolID    *string          `json:"subnetpool_id"`
	SegmentID       *string          `json:"segment_id"`
	ServiceTypes    []string         `json:"service_types"`
	Tags            []string         `json:"tags"`
	CreatedAt       string           `json:"created_at"`
	UpdatedAt       string           `json:"updated_at"`
	RevisionNumber  int64            `json:"revision_number"`
}

// SubnetRequest is the "subnet" object of a create or update.
type SubnetRequest struct {
	Name            *string           `json:"name"`
	Description     *string           `json:"description"`
	ProjectID       *string           `json:"project_id"`
	TenantID        *string           `json:"tenant_id"`
	NetworkID       *string           `json:"network_id"`
	IPVersion       *Int              `json:"ip_version"`
	CIDR            *string           `json:"cidr"`
	GatewayIP       *NullString       `json:"gateway_ip"`
	AllocationPools *[]AllocationPool `json:"allocation_pools"`
	DNSNameservers  *[]string         `json:"dns_nameservers"`
	HostRoutes      *[]HostRoute      `json:"host_routes"`
	EnableDHCP      *bool             `json:"enable_dhcp"`
	IPv6RAMode      *string           `json:"ipv6_ra_mode"`
	IPv6AddressMode *string           `json:"ipv6_address_mode"`
	SubnetPoolID    *string           `json:"subnetpool_id"`
	PrefixLen       *Int              `json:"prefixlen"`
	SegmentID       *string           `json:"segment_id"`
	ServiceTypes    *[]string         `json:"service_types"`
}

// FixedIP is one address of a port.
type FixedIP struct {
	SubnetID  string `json:"subnet_id,omitempty"`
	IPAddress string `json:"ip_address,omitempty"`
}

// AddressPair is an allowed address pair of a port.
type AddressPair struct {
	IPAddress  string `json:"ip_address"`
	MACAddress string `json:"mac_address,omitempty"`
}

// Port is a port resource.
type Port struct {
	ID                  string         `json:"id"`
	Name                string         `json:"name"`
	Description         string         `json:"description"`
	ProjectID           string         `json:"project_id"`
	TenantID            string         `json:"tenant_id"`
	NetworkID           string         `json:"network_id"`
	AdminStateUp        bool           `json:"admin_state_up"`
	Status              string         `json:"status"`
	MACAddress          string         `json:"mac_address"`
	FixedIPs            []FixedIP      `json:"fixed_ips"`
	DeviceID            string         `json:"device_id"`
	DeviceOwner         string         `json:"device_owner"`
	SecurityGroups      []string       `json:"security_groups"`
	AllowedAddressPairs []AddressPair  `json:"allowed_address_pairs"`
	PortSecurityEnabled bool           `json:"port_security_enabled"`
	HostID              string         `json:"binding:host_id"`
	VIFType             string         `json:"binding:vif_type"`
	VIFDetails          map[string]any `json:"binding:vif_details"`
	VNICType            string         `json:"binding:vnic_type"`
	Profile             map[string]any `json:"binding:profile"`
	ExtraDHCPOpts       []any          `json:"extra_dhcp_opts"`
	IPAllocation        string         `json:"ip_allocation"`
	Tags                []string       `json:"tags"`
	CreatedAt           string         `json:"created_at"`
	UpdatedAt           string         `json:"updated_at"`
	RevisionNumber      int64          `json:"revision_number"`
}

// PortRequest is the "port" object of a create or update.
type PortRequest struct {
	Name                *string         `json:"name"`
	Description         *string         `json:"description"`
	ProjectID           *string         `json:"project_id"`
	TenantID            *string         `json:"tenant_id"`
	NetworkID           *string         `json:"network_id"`
	AdminStateUp        *bool           `json:"admin_state_up"`
	MACAddress          *string         `json:"mac_address"`
	FixedIPs            *[]FixedIP      `json:"fixed_ips"`
	DeviceID            *string         `json:"device_id"`
	DeviceOwner         *string         `json:"device_owner"`
	SecurityGroups      *[]string       `json:"security_groups"`
	AllowedAddressPairs *[]AddressPair  `json:"allowed_address_pairs"`
	PortSecurityEnabled *bool           `json:"port_security_enabled"`
	HostID              *string         `json:"binding:host_id"`
	VNICType            *string         `json:"binding:vnic_type"`
	Profile             *map[string]any `json:"binding:profile"`
	ExtraDHCPOpts       *[]any          `json:"extra_dhcp_opts"`
}

// SecurityGroup is a security group resource.
type SecurityGroup struct {
	ID             string              `json:"id"`
	Name           string              `json:"name"`
	Description    string              `json:"description"`
	ProjectID      string              `json:"project_id"`
	TenantID       string              `json:"tenant_id"`
	Rules          []SecurityGroupRule `json:"security_group_rules"`
	Stateful       bool                `json:"stateful"`
	Shared         bool                `json:"shared"`
	Tags           []string            `json:"tags"`
	CreatedAt      string              `json:"created_at"`
	UpdatedAt      string              `json:"updated_at"`
	RevisionNumber int64               `json:"revision_number"`
}

// SecurityGroupRequest is the "security_group" object of a create or update.
type SecurityGroupRequest struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
	ProjectID   *string `json:"project_id"`
	TenantID    *string `json:"tenant_id"`
	Stateful    *bool   `json:"stateful"`
}

// SecurityGroupRule is a security group rule resource.
type SecurityGroupRule struct {
	ID                    string  `json:"id"`
	SecurityGroupID       string  `json:"security_group_id"`
	Direction             string  `json:"direction"`
	EtherType             string  `json:"ethertype"`
	Protocol              *string `json:"protocol"`
	PortRangeMin          *int    `json:"port_range_min"`
	PortRangeMax          *int    `json:"port_range_max"`
	RemoteIPPrefix        *string `json:"remote_ip_prefix"`
	RemoteGroupID         *string `json:"remote_group_id"`
	RemoteAddressGroupID  *string `json:"remote_address_group_id"`
	NormalizedCIDR        *string `json:"normalized_cidr"`
	Description           string  `json:"description"`
	ProjectID             string  `json:"project_id"`
	TenantID              string  `json:"tenant_id"`
	BelongsToDefaultGroup bool    `json:"belongs_to_default_sg"`
	CreatedAt             string  `json:"created_at"`
	UpdatedAt             string  `json:"updated_at"`
	RevisionNumber        int64   `json:"revision_number"`
}

// SecurityGroupRuleRequest is the "security_group_rule" object of a create.
type SecurityGroupRuleRequest struct {
	SecurityGroupID      *string          `json:"security_group_id"`
	Direction            *string          `json:"direction"`
	EtherType            *string          `json:"ethertype"`
	Protocol             *NullStringOrInt `json:"protocol"`
	PortRangeMin         *NullInt         `json:"port_range_min"`
	PortRangeMax         *NullInt         `json:"port_range_max"`
	RemoteIPPrefix       *NullString      `json:"remote_ip_prefix"`
	RemoteGroupID        *NullString      `json:"remote_group_id"`
	RemoteAddressGroupID *NullString      `json:"remote_address_group_id"`
	Description          *string          `json:"description"`
	ProjectID            *string          `json:"project_id"`
	TenantID             *string          `json:"tenant_id"`
}

// Extension describes one API extension.
type Extension struct {
	Name        string `json:"name"`
	Alias       string `json:"alias"`
	Description string `json:"description"`
	Updated     string `json:"updated"`
	Links       []any  `json:"links"`
}

// GatewayInfo is a router's external_gateway_info in requests and responses.
type GatewayInfo struct {
	NetworkID        string    `json:"network_id,omitempty"`
	EnableSNAT       *bool     `json:"enable_snat,omitempty"`
	ExternalFixedIPs []FixedIP `json:"external_fixed_ips,omitempty"`
}

// RouterRequest is the "router" object of a create or update. A null or
// empty external_gateway_info clears the gateway.
type RouterRequest struct {
	Name                  *string      `json:"name"`
	Description           *string      `json:"description"`
	ProjectID             *string      `json:"project_id"`
	TenantID              *string      `json:"tenant_id"`
	AdminStateUp          *bool        `json:"admin_state_up"`
	ExternalGatewayInfo   *NullGateway `json:"external_gateway_info"`
	Routes                *[]HostRoute `json:"routes"`
	Distributed           *bool        `json:"distributed"`
	HA                    *bool        `json:"ha"`
	AvailabilityZoneHints *[]string    `json:"availability_zone_hints"`
}

// NullGateway is external_gateway_info that may be null.
type NullGateway struct {
	Value GatewayInfo
	Valid bool // false: null or {} (clear the gateway)
}

// UnmarshalJSON implements json.Unmarshaler.
func (n *NullGateway) UnmarshalJSON(b []byte) error {
	*n = NullGateway{}
	if string(b) == "null" {
		return nil
	}
	if err := json.Unmarshal(b, &n.Value); err != nil {
		return err
	}
	n.Valid = n.Value.NetworkID != ""
	return nil
}

// RouterInterfaceRequest is the body of add/remove_router_interface.
type RouterInterfaceRequest struct {
	SubnetID string `json:"subnet_id,omitempty"`
	PortID   string `json:"port_id,omitempty"`
}

// FloatingIPRequest is the "floatingip" object of a create or update.
type FloatingIPRequest struct {
	FloatingNetworkID *string     `json:"floating_network_id"`
	FloatingIPAddress *string     `json:"floating_ip_address"`
	SubnetID          *string     `json:"subnet_id"`
	PortID            *NullString `json:"port_id"`
	FixedIPAddress    *NullString `json:"fixed_ip_address"`
	Description       *string     `json:"description"`
	ProjectID         *string     `json:"project_id"`
	TenantID          *string     `json:"tenant_id"`
}

// PortForwardingRequest is the "port_forwarding" object of a create or update.
type PortForwardingRequest struct {
	Protocol          *string `json:"protocol"`
	InternalPortID    *string `json:"internal_port_id"`
	InternalIPAddress *string `json:"internal_ip_address"`
	InternalPort      *Int    `json:"internal_port"`
	ExternalPort      *Int    `json:"external_port"`
	InternalPortRange *string `json:"internal_port_range"`
	ExternalPortRange *string `json:"external_port_range"`
	Description       *string `json:"description"`
}
