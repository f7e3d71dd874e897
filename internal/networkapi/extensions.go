package networkapi

import (
	"net/http"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/server"
)

// extensions lists exactly the Neutron extensions nimbo implements.
var extensions = []v2.Extension{
	{Name: "Neutron external network", Alias: "external-net", Description: "Adds external network attribute to network resource.", Updated: "2013-01-14T10:00:00-00:00"},
	{Name: "Provider Network", Alias: "provider", Description: "Expose mapping of virtual networks to physical networks", Updated: "2012-09-07T10:00:00-00:00"},
	{Name: "Port Security", Alias: "port-security", Description: "Provides port security", Updated: "2012-07-23T10:00:00-00:00"},
	{Name: "Port Binding", Alias: "binding", Description: "Expose port bindings of a virtual port to external application", Updated: "2014-02-03T10:00:00-00:00"},
	{Name: "security-group", Alias: "security-group", Description: "The security groups extension.", Updated: "2012-10-05T10:00:00-00:00"},
	{Name: "Allowed Address Pairs", Alias: "allowed-address-pairs", Description: "Provides allowed address pairs", Updated: "2013-07-23T10:00:00-00:00"},
	{Name: "Quota management support", Alias: "quotas", Description: "Expose functions for quotas management per tenant", Updated: "2012-07-29T10:00:00-00:00"},
	{Name: "Quota details management support", Alias: "quota_details", Description: "Expose functions for quotas usage statistics per project", Updated: "2017-02-10T10:00:00-00:00"},
	{Name: "Network MTU", Alias: "net-mtu", Description: "Provides MTU attribute for a network resource.", Updated: "2015-03-25T10:00:00-00:00"},
	{Name: "Network MTU (writable)", Alias: "net-mtu-writable", Description: "Provides a writable MTU attribute for a network resource.", Updated: "2017-07-12T00:00:00-00:00"},
	{Name: "Pagination support", Alias: "pagination", Description: "Extension that indicates that pagination is enabled.", Updated: "2016-06-12T00:00:00-00:00"},
	{Name: "Sorting support", Alias: "sorting", Description: "Extension that indicates that sorting is enabled.", Updated: "2016-06-12T00:00:00-00:00"},
	{Name: "Filter parameters validation", Alias: "filter-validation", Description: "Provides validation on filter parameters.", Updated: "2018-03-21T10:00:00-00:00"},
	{Name: "Empty String Filtering Extension", Alias: "empty-string-filtering", Description: "Allow filtering by attributes with empty string value", Updated: "2018-05-01T10:00:00-00:00"},
	{Name: "project_id field enabled", Alias: "project-id", Description: "Extension that indicates that project_id field is enabled.", Updated: "2016-09-09T09:09:09-09:09"},
	{Name: "Resource revision numbers", Alias: "standard-attr-revisions", Description: "This extension will display the revision number of neutron resources.", Updated: "2016-04-11T10:00:00-00:00"},
	{Name: "Resource timestamps", Alias: "standard-attr-timestamp", Description: "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes.", Updated: "2016-09-12T10:00:00-00:00"},
	{Name: "standard-attr-description", Alias: "standard-attr-description", Description: "Extension to add descriptions to standard attributes", Updated: "2016-02-10T10:00:00-00:00"},
	{Name: "Tag support for resources with standard attribute: port, subnet, network, security_group, router, floatingip", Alias: "standard-attr-tag", Description: "Enables to set tag on resources with standard attribute.", Updated: "2017-01-01T00:00:00-00:00"},
	{Name: "Tag support", Alias: "tag", Description: "Enables to set tag on resources.", Updated: "2016-01-01T00:00:00-00:00"},
	{Name: "IP address substring filtering", Alias: "ip-substring-filtering", Description: "Provides IP address substring filtering when listing ports", Updated: "2017-11-28T09:00:00-00:00"},
	{Name: "Availability Zone", Alias: "availability_zone", Description: "The availability zone extension.", Updated: "2015-01-01T10:00:00-00:00"},
	{Name: "Network Availability Zone", Alias: "network_availability_zone", Description: "Availability zone support for network.", Updated: "2015-01-01T10:00:00-00:00"},
	// L3: routers, floating IPs, port forwardings.
	{Name: "Neutron L3 Router", Alias: "router", Description: "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway.", Updated: "2012-07-20T10:00:00-00:00"},
	{Name: "Neutron L3 Configurable external gateway mode", Alias: "ext-gw-mode", Description: "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway", Updated: "2013-03-28T10:00:00-00:00"},
	{Name: "Neutron Extra Route", Alias: "extraroute", Description: "Extra routes configuration for L3 router", Updated: "2013-02-01T10:00:00-00:00"},
	{Name: "Atomically add/remove extra routes", Alias: "extraroute-atomic", Description: "Edit extra routes of a router on server side by atomically adding/removing extra routes", Updated: "2019-07-10T10:00:00-00:00"},
	{Name: "Floating IP Port Details Extension", Alias: "fip-port-details", Description: "Add port_details attribute to Floating IP resource", Updated: "2018-04-09T10:00:00-00:00"},
	{Name: "Floating IP Port Forwarding", Alias: "floating-ip-port-forwarding", Description: "Provide a way to configure port forwarding on Floating IP", Updated: "2018-04-09T10:00:00-00:00"},
	{Name: "Floating IP Port Forwarding support port ranges", Alias: "floating-ip-port-forwarding-port-ranges", Description: "Add suport to port ranges in Floating IP port forwarding", Updated: "2022-01-14T10:00:00-00:00"},
	{Name: "Floating IP Port Forwarding new attribute description", Alias: "floating-ip-port-forwarding-description", Description: "Add a description field to Port Forwarding rules", Updated: "2019-11-01T10:00:00-00:00"},
	{Name: "Expose port forwardings in a floating IP", Alias: "expose-port-forwarding-in-fip", Description: "Expose port forwardings in a floating IP", Updated: "2019-04-29T10:00:00-00:00"},
}

func init() {
	for i := range extensions {
		extensions[i].Links = []any{}
	}
}

func (a *API) listExtensions(w http.ResponseWriter, _ *http.Request) error {
	return server.JSON(w, http.StatusOK, map[string]any{"extensions": extensions})
}

func (a *API) getExtension(w http.ResponseWriter, r *http.Request) error {
	for _, e := range extensions {
		if e.Alias == r.PathValue("alias") {
			return server.JSON(w, http.StatusOK, map[string]any{"extension": e})
		}
	}
	return errdefs.NotFoundf("Extension with alias %s does not exist", r.PathValue("alias"))
}
