package network

import (
	"net/netip"

	"github.com/nimbo-cloud/nimbo/internal/store"
)

// Key layout. Index keys make uniqueness (IPs, MACs, VNIs, one default
// security group per project) a transaction precondition.
const (
	prefix     = "/nimbo/network/"
	pNetworks  = prefix + "networks/"
	pSubnets   = prefix + "subnets/"
	pPorts     = prefix + "ports/"
	pGroups    = prefix + "secgroups/"
	pRules     = prefix + "sgrules/"
	pIPs       = prefix + "ips/"        // <subnetID>/<ip> -> portID
	pMACs      = prefix + "macs/"       // <networkID>/<mac> -> portID
	pVNIs      = prefix + "vnis/"       // <vni> -> networkID
	pDefaultSG = prefix + "defaultsg/"  // <projectID> -> groupID
	pQuotas    = prefix + "quotas/"     // <projectID>
	pOwned     = prefix + "byproject/"  // <projectID>/<kind>/<id>: quota usage
	pNetSubnet = prefix + "netsubnets/" // <networkID>/<subnetID>
	pNetPort   = prefix + "netports/"   // <networkID>/<portID>
	pGroupRule = prefix + "grouprules/" // <groupID>/<ruleID>
	pRouters   = prefix + "routers/"
	pRouted    = prefix + "routedsubnets/" // <subnetID> -> routerID: one router per subnet
	pFIPRouter = prefix + "fiprouters/"    // <routerID>/<subnetID>/<fipID>: floating IPs through a router
	pFIPs      = prefix + "floatingips/"
	pFIPFixed  = prefix + "fipfixed/" // <portID>/<ip> -> fipID: one floating IP per fixed address
	pPortFwd   = prefix + "portfwds/" // <fipID>/<id>: port forwardings of a floating IP
)

func fipKey(id string) string { return pFIPs + id }
func fipFixedKey(portID string, ip netip.Addr) string {
	return pFIPFixed + portID + "/" + ip.String()
}
func fipRouterKey(routerID, subnetID, fipID string) string {
	return pFIPRouter + routerID + "/" + subnetID + "/" + fipID
}

func routerKey(id string) string       { return pRouters + id }
func routedKey(subnetID string) string { return pRouted + subnetID }

func netSubnetKey(netID, subnetID string) string { return pNetSubnet + netID + "/" + subnetID }
func netPortKey(netID, portID string) string     { return pNetPort + netID + "/" + portID }
func groupRuleKey(groupID, ruleID string) string { return pGroupRule + groupID + "/" + ruleID }

// idx is an index entry (the value is unused).
func idx(key string) store.Op { return store.Op{Kind: store.OpPut, Key: key, Value: []byte("1")} }

// suffixes returns the last path element of every key under p.
func suffixes(c *store.Cache, p string) []string {
	kvs := c.List(p)
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Key[len(p):]
	}
	return out
}

func networkKey(id string) string { return pNetworks + id }
func subnetKey(id string) string  { return pSubnets + id }
func portKey(id string) string    { return pPorts + id }
func groupKey(id string) string   { return pGroups + id }
func ruleKey(id string) string    { return pRules + id }
func ipKey(subnetID, ip string) string {
	return pIPs + subnetID + "/" + ip
}
func macKey(networkID, mac string) string { return pMACs + networkID + "/" + mac }
func ownedKey(project, kind, id string) string {
	return pOwned + project + "/" + kind + "/" + id
}
