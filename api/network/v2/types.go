// Package v2 holds the Neutron v2.0 (network) wire types nimbo speaks:
// request bodies (decoded strictly: Neutron rejects unknown attributes) and
// resources exactly as OpenStack clients expect them. No logic.
package v2

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

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

// GatewayInfo is a router's external_gateway_info in a request. Decoding
// is strict: unknown keys are rejected, as Neutron's dict validator does.
type GatewayInfo struct {
	NetworkID        string    `json:"network_id"`
	EnableSNAT       *bool     `json:"enable_snat"`
	ExternalFixedIPs []FixedIP `json:"external_fixed_ips"`
}

// NullGateway is external_gateway_info in a request: null or {} clears the
// gateway (Valid false); any other object must name network_id.
type NullGateway struct {
	Value GatewayInfo
	Valid bool
}

// UnmarshalJSON implements json.Unmarshaler.
func (n *NullGateway) UnmarshalJSON(b []byte) error {
	*n = NullGateway{}
	if string(b) == "null" {
		return nil
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return &FieldError{Field: "external_gateway_info", Reason: "it must be an object or null"}
	}
	if len(keys) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&n.Value); err != nil {
		reason := err.Error()
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			reason = fmt.Sprintf("'%s' has the wrong type (%s)", te.Field, te.Value)
		case strings.HasPrefix(reason, "json: unknown field "):
			reason = "unexpected keys supplied: " + strings.Trim(strings.TrimPrefix(reason, "json: unknown field "), `"`)
		}
		return &FieldError{Field: "external_gateway_info", Reason: reason}
	}
	if n.Value.NetworkID == "" {
		return &FieldError{Field: "external_gateway_info", Reason: "'network_id' is required"}
	}
	n.Valid = true
	return nil
}

// NullRoutes is a router's routes in a request; null means no routes, as
// Neutron's convert_none_to_empty_list.
type NullRoutes struct {
	Value []HostRoute
	Valid bool // false: null
}

// UnmarshalJSON implements json.Unmarshaler.
func (n *NullRoutes) UnmarshalJSON(b []byte) error {
	*n = NullRoutes{}
	if string(b) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&n.Value); err != nil {
		return &FieldError{Field: "routes", Reason: "it must be a list of {destination, nexthop} objects"}
	}
	n.Valid = true
	return nil
}

// RouterRequest is the "router" object of a create or update.
type RouterRequest struct {
	Name                *string      `json:"name"`
	Description         *string      `json:"description"`
	ProjectID           *string      `json:"project_id"`
	TenantID            *string      `json:"tenant_id"`
	AdminStateUp        *bool        `json:"admin_state_up"`
	ExternalGatewayInfo *NullGateway `json:"external_gateway_info"`
	Routes              *NullRoutes  `json:"routes"`
	Distributed         *bool        `json:"distributed"`
	HA                  *bool        `json:"ha"`
}

// ExternalFixedIP is one address of a router's gateway.
type ExternalFixedIP struct {
	SubnetID  string `json:"subnet_id"`
	IPAddress string `json:"ip_address"`
}

// ExternalGateway is a router's external_gateway_info in responses.
type ExternalGateway struct {
	NetworkID        string            `json:"network_id"`
	EnableSNAT       bool              `json:"enable_snat"`
	ExternalFixedIPs []ExternalFixedIP `json:"external_fixed_ips"`
}

// Router is a router resource.
type Router struct {
	ID                  string           `json:"id"`
	Name                string           `json:"name"`
	Description         string           `json:"description"`
	ProjectID           string           `json:"project_id"`
	TenantID            string           `json:"tenant_id"`
	AdminStateUp        bool             `json:"admin_state_up"`
	Status              string           `json:"status"`
	ExternalGatewayInfo *ExternalGateway `json:"external_gateway_info"`
	Routes              []HostRoute      `json:"routes"`
	Tags                []string         `json:"tags"`
	CreatedAt           string           `json:"created_at"`
	UpdatedAt           string           `json:"updated_at"`
	RevisionNumber      int64            `json:"revision_number"`
}

// RouterInterfaceRequest is the body of add/remove_router_interface.
type RouterInterfaceRequest struct {
	SubnetID string `json:"subnet_id,omitempty"`
	PortID   string `json:"port_id,omitempty"`
}

// RouterInterface is the answer of add/remove_router_interface.
type RouterInterface struct {
	ID        string   `json:"id"` // the router
	TenantID  string   `json:"tenant_id"`
	ProjectID string   `json:"project_id"`
	PortID    string   `json:"port_id"`
	SubnetID  string   `json:"subnet_id"`
	SubnetIDs []string `json:"subnet_ids"`
	NetworkID string   `json:"network_id"`
}

// ExtraRoutesRequest is the body of add_extraroutes/remove_extraroutes
// (extraroute-atomic): {"router": {"routes": [...]}}.
type ExtraRoutesRequest struct {
	Routes *[]HostRoute `json:"routes"`
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

// PortDetails is a floating IP's port_details (fip-port-details): a summary
// of the port it is associated with.
type PortDetails struct {
	Name         string `json:"name"`
	NetworkID    string `json:"network_id"`
	MACAddress   string `json:"mac_address"`
	AdminStateUp bool   `json:"admin_state_up"`
	Status       string `json:"status"`
	DeviceID     string `json:"device_id"`
	DeviceOwner  string `json:"device_owner"`
}

// FloatingIPForwarding is one entry of a floating IP's port_forwardings
// (expose-port-forwarding-in-fip); single ports only carry the port numbers.
type FloatingIPForwarding struct {
	ID                string `json:"id"`
	InternalIPAddress string `json:"internal_ip_address"`
	Protocol          string `json:"protocol"`
	InternalPort      *int   `json:"internal_port,omitempty"`
	ExternalPort      *int   `json:"external_port,omitempty"`
	InternalPortID    string `json:"internal_port_id"`
}

// FloatingIP is a floating IP resource.
type FloatingIP struct {
	ID                string                 `json:"id"`
	Description       string                 `json:"description"`
	ProjectID         string                 `json:"project_id"`
	TenantID          string                 `json:"tenant_id"`
	FloatingNetworkID string                 `json:"floating_network_id"`
	FloatingIPAddress string                 `json:"floating_ip_address"`
	PortID            *string                `json:"port_id"`
	FixedIPAddress    *string                `json:"fixed_ip_address"`
	RouterID          *string                `json:"router_id"`
	Status            string                 `json:"status"`
	PortDetails       *PortDetails           `json:"port_details"`
	PortForwardings   []FloatingIPForwarding `json:"port_forwardings"`
	Tags              []string               `json:"tags"`
	CreatedAt         string                 `json:"created_at"`
	UpdatedAt         string                 `json:"updated_at"`
	RevisionNumber    int64                  `json:"revision_number"`
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

// PortForwarding is a floating IP port forwarding: the ranges are always
// "N:M"; the single-port attributes are set when a range is one port.
type PortForwarding struct {
	ID                string `json:"id"`
	Protocol          string `json:"protocol"`
	InternalPortID    string `json:"internal_port_id"`
	InternalIPAddress string `json:"internal_ip_address"`
	InternalPort      *int   `json:"internal_port"`
	ExternalPort      *int   `json:"external_port"`
	InternalPortRange string `json:"internal_port_range"`
	ExternalPortRange string `json:"external_port_range"`
	Description       string `json:"description"`
}
