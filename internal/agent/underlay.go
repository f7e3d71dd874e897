package agent

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/underlay"
)

// lookUplinkEvery is how often an underlay that reported no egress is set
// again with the same configuration, to find an uplink that appeared.
var lookUplinkEvery = 10 * time.Second

// setUnderlay hands the external networks wired here (their bridges exist
// by now) and the addresses routers use on them to the underlay, and
// records what it reports. An unchanged configuration is not set again until
// the next full pass (or, while there is no egress, lookUplinkEvery later).
func (a *Agent) setUnderlay(ctx context.Context, d desired, routers map[string]*routerState, full bool) error {
	if a.cfg.Underlay == nil {
		return nil
	}
	svc := a.cfg.Network
	cfg := underlay.Config{BridgePrefix: bridgePrefix}
	published := map[underlay.Publish]bool{} // by protocol and host port (Target zero)
	for br, n := range d.bridges {
		if !n.External {
			continue
		}
		ext := underlay.External{NetworkID: n.ID, Bridge: br, PhysicalNetwork: n.PhysicalNetwork}
		for _, sn := range svc.NetworkSubnets(n.ID) {
			if sn.CIDR.Addr().Is4() {
				ext.CIDR, ext.Gateway = sn.CIDR, sn.Gateway
				break
			}
		}
		if !ext.CIDR.IsValid() {
			continue // no subnet yet: nothing to connect
		}
		for _, st := range routers {
			if st.gateway == nil || st.gateway.NetworkID != n.ID {
				continue
			}
			for _, p := range st.rules.GatewayAddrs(32) {
				if ext.CIDR.Contains(p.Addr()) {
					ext.Addresses = append(ext.Addresses, p.Addr())
				}
			}
			if a.cfg.PublishAddr.IsValid() {
				for _, f := range st.rules.Forwards {
					proto := underlay.TCP
					if f.Protocol == 17 {
						proto = underlay.UDP
					}
					for port := int(f.ExternalPortMin); port <= int(max(f.ExternalPortMax, f.ExternalPortMin)); port++ {
						key := underlay.Publish{Protocol: proto, Host: netip.AddrPortFrom(a.cfg.PublishAddr, uint16(port))}
						if published[key] {
							continue // the same port of two floating IPs: the host publishes the first
						}
						published[key] = true
						cfg.Published = append(cfg.Published, underlay.Publish{Protocol: proto, Host: key.Host,
							Target: netip.AddrPortFrom(f.External, uint16(port))})
					}
				}
			}
		}
		cfg.Externals = append(cfg.Externals, ext)
	}
	slices.SortFunc(cfg.Externals, func(x, y underlay.External) int { return strings.Compare(x.Bridge, y.Bridge) })
	for i := range cfg.Externals {
		slices.SortFunc(cfg.Externals[i].Addresses, netip.Addr.Compare)
	}
	slices.SortFunc(cfg.Published, func(x, y underlay.Publish) int {
		return cmp.Or(strings.Compare(string(x.Protocol), string(y.Protocol)), x.Host.Compare(y.Host))
	})
	fp := fingerprint(cfg)
	if !full && fp == a.uFP && (a.uLookAt.IsZero() || time.Now().Before(a.uLookAt)) {
		return nil
	}
	a.uFP, a.uLookAt = "", time.Time{}
	st, err := a.cfg.Underlay.Set(ctx, cfg)
	if err == nil {
		a.uFP = fp
		if !st.Egress {
			// Without egress, look for an uplink again (a default
			// route that appeared) every lookUplinkEvery; Run wakes
			// up for it.
			a.uLookAt = time.Now().Add(lookUplinkEvery)
		}
	}
	a.mu.Lock()
	changed := st.Message != a.uStatus.Message
	a.uStatus = st
	a.mu.Unlock()
	if changed && st.Message != "" {
		a.log.Info("underlay: "+st.Message, "mode", a.cfg.Underlay.Name(), "uplink", st.Uplink, "egress", st.Egress)
	}
	return err
}

// UnderlayStatus is what the underlay reported at the last pass.
func (a *Agent) UnderlayStatus() underlay.Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.uStatus
}
