package agent

import (
	"github.com/nimbo-cloud/nimbo/internal/network"
)

// portView is the agent's copy of every port, kept current from the network
// service's change feed, so that a pass costs what changed rather than the
// number of ports in the cloud: with 10,000 ports on a network, adding one
// port adds one DHCP host entry instead of rebuilding a table of 10,000.
// Values are the service's shared read-only copies.
type portView struct {
	host    string
	changes *network.PortChanges

	ports map[string]network.Port        // by ID
	byNet map[string]map[string]struct{} // network ID -> port IDs
	local map[string]map[string]struct{} // network ID -> IDs of probe ports bound to this host
	dhcp  map[string]string              // network ID -> ID of this host's DHCP port
	dirty map[string]map[string]struct{} // network ID -> ports changed since its DHCP hosts were updated
	// byDevice indexes the ports of routers (interfaces and gateways) by
	// router ID.
	byDevice map[string]map[string]struct{}
}

func newPortView(svc *network.Service, host string) *portView {
	return &portView{host: host, changes: svc.TrackPorts()}
}

// sync brings the view up to date; full says it was rebuilt from scratch
// (the first time, or after the store cache re-listed), so every network's
// DHCP host table must be rebuilt too.
func (v *portView) sync(svc *network.Service) (full bool) {
	ids, reset := v.changes.Changed()
	if reset || v.ports == nil {
		v.ports = map[string]network.Port{}
		v.byNet = map[string]map[string]struct{}{}
		v.local = map[string]map[string]struct{}{}
		v.dhcp = map[string]string{}
		v.dirty = map[string]map[string]struct{}{}
		v.byDevice = map[string]map[string]struct{}{}
		for _, p := range svc.AllPorts() {
			v.add(p)
		}
		return true
	}
	for _, id := range ids {
		if old, ok := v.ports[id]; ok {
			v.remove(old)
		}
		if p, ok := svc.Port(id); ok {
			v.add(p)
		}
	}
	return false
}

func (v *portView) add(p network.Port) {
	v.ports[p.ID] = p
	addTo(v.byNet, p.NetworkID, p.ID)
	addTo(v.dirty, p.NetworkID, p.ID)
	if p.HostID == v.host && p.DeviceOwner == network.OwnerProbe {
		addTo(v.local, p.NetworkID, p.ID)
	}
	if p.DeviceOwner == network.OwnerDHCP && p.DeviceID == network.DHCPDeviceID(v.host) {
		v.dhcp[p.NetworkID] = p.ID
	}
	if routerOwned(p) {
		addTo(v.byDevice, p.DeviceID, p.ID)
	}
}

func routerOwned(p network.Port) bool {
	return p.DeviceOwner == network.OwnerRouterInterface || p.DeviceOwner == network.OwnerRouterGateway
}

func (v *portView) remove(p network.Port) {
	delete(v.ports, p.ID)
	removeFrom(v.byNet, p.NetworkID, p.ID)
	removeFrom(v.local, p.NetworkID, p.ID)
	addTo(v.dirty, p.NetworkID, p.ID) // its DHCP entry must go
	if v.dhcp[p.NetworkID] == p.ID {
		delete(v.dhcp, p.NetworkID)
	}
	if routerOwned(p) {
		removeFrom(v.byDevice, p.DeviceID, p.ID)
	}
}

// localPorts returns the probe ports bound to this host on a network.
func (v *portView) localPorts(networkID string) []network.Port {
	var out []network.Port
	for id := range v.local[networkID] {
		out = append(out, v.ports[id])
	}
	return out
}

// dhcpPort returns this host's DHCP port of a network, if it exists.
func (v *portView) dhcpPort(networkID string) (network.Port, bool) {
	id, ok := v.dhcp[networkID]
	if !ok {
		return network.Port{}, false
	}
	p, ok := v.ports[id]
	return p, ok
}

// takeDirty returns and forgets the ports of a network changed since the
// last call for it.
func (v *portView) takeDirty(networkID string) map[string]struct{} {
	d := v.dirty[networkID]
	delete(v.dirty, networkID)
	return d
}

func addTo(m map[string]map[string]struct{}, k, id string) {
	s, ok := m[k]
	if !ok {
		s = map[string]struct{}{}
		m[k] = s
	}
	s[id] = struct{}{}
}

func removeFrom(m map[string]map[string]struct{}, k, id string) {
	if s, ok := m[k]; ok {
		delete(s, id)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}
