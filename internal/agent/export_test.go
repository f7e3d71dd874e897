package agent

import "time"

// DHCPHosts returns what the running DHCP server of a network answers (MAC
// -> IP, as the agent recorded it) and how many hosts the server itself
// holds; ok is false when no server runs.
func DHCPHosts(a *Agent, networkID string) (hosts map[string]string, served int, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.servers[networkID]
	if !ok {
		return nil, 0, false
	}
	hosts = map[string]string{}
	for _, hs := range r.byPort {
		for _, h := range hs {
			hosts[h.MAC.String()] = h.IP.String()
		}
	}
	return hosts, r.srv.Hosts(), true
}

// SetLookUplinkEvery changes how often an underlay without egress is set
// again, until the test ends.
func SetLookUplinkEvery(t interface{ Cleanup(func()) }, d time.Duration) {
	old := lookUplinkEvery
	lookUplinkEvery = d
	t.Cleanup(func() { lookUplinkEvery = old })
}
