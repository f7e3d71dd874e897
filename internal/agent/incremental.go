package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/network"
)

// ResyncEvery is how often the agent checks everything against the kernel
// even when nothing changed in the store (someone may have deleted a veth by
// hand). Between those full passes, networks and routers whose desired state
// did not change are not looked at again, so a pass after one port change
// costs the same with 1 or 1,000 routers.
var ResyncEvery = 5 * time.Minute

// unencodable numbers the fingerprints of parts JSON cannot encode.
var unencodable atomic.Uint64

// fingerprint is a digest of everything a piece of kernel state is built
// from: of the values, not of where they live (JSON follows pointers, which
// fmt's %v would print as addresses, so equal states decoded apart would
// differ). Parts must be JSON-encodable.
func fingerprint(parts ...any) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, p := range parts {
		if err := enc.Encode(p); err != nil {
			// Not encodable: a digest no other call gives, so the
			// state is built every time rather than skipped wrongly.
			fmt.Fprintf(h, "unencodable %d: %v", unencodable.Add(1), err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (a *Agent) networkFingerprint(n network.Network, subnets []network.Subnet, local []network.Port) string {
	dp, _ := a.view.dhcpPort(n.ID)
	return fingerprint(n, subnets, dp, local)
}

func routerFingerprint(st *routerState) string {
	return fingerprint(st.router, st.interfaces, st.gateway, st.gwSubnet, st.rules, st.fips)
}

// skipNetwork records what an unchanged network has on this host (for the
// firewall and garbage collection) and brings its DHCP host table up to
// date, without checking its bridge, namespaces and veths against the
// kernel. It returns false when the network must be built after all (its
// DHCP server is gone, or the table could not be updated).
func (a *Agent) skipNetwork(_ context.Context, n network.Network, serveDHCP bool, local []network.Port, d *desired, errs *[]error) bool {
	if serveDHCP {
		dp, ok := a.view.dhcpPort(n.ID)
		a.mu.Lock()
		r := a.servers[n.ID]
		alive := r != nil
		if alive {
			select {
			case <-r.srv.Done():
				alive = false
			default:
			}
		}
		var err error
		if ok && alive {
			err = a.updateHosts(r, n.ID, dp.ID)
		}
		a.mu.Unlock()
		if !ok || !alive {
			return false
		}
		if err != nil {
			*errs = append(*errs, fmt.Errorf("network %s: dhcp: %w", n.ID, err))
			return false
		}
		d.dhcp[n.ID] = true
		d.netns[a.DHCPNetns(n.ID)] = true
		host := hostnet.IfName(dhcpPrefix, n.ID)
		d.links[host] = true
		d.fwPorts = append(d.fwPorts, firewallPort(dp, host))
	}
	for _, p := range local {
		host := hostnet.IfName(probePrefix, p.ID)
		d.netns[ProbeNetns(a.cfg.NetnsPrefix, p.ID)], d.links[host] = true, true
		d.fwPorts = append(d.fwPorts, firewallPort(p, host))
	}
	return true
}

// skipRouter records what an unchanged router has on this host; false when
// it must be built after all (nothing runs for it).
func (a *Agent) skipRouter(st *routerState, d *desired) bool {
	a.mu.Lock()
	_, running := a.routers[st.router.ID]
	a.mu.Unlock()
	if !running {
		return false
	}
	d.netns[RouterNetns(a.cfg.NetnsPrefix, st.router.ID)] = true
	for _, p := range st.interfaces {
		d.links[hostnet.IfName(routerIntPrefix, p.ID)] = true
	}
	if st.gateway != nil && st.rules.GatewayIface != "" {
		d.links[hostnet.IfName(routerGwPrefix, st.gateway.ID)] = true
	}
	return true
}

// gone reports whether a name in before is missing from now.
func gone(before, now map[string]bool) bool {
	for k := range before {
		if !now[k] {
			return true
		}
	}
	return false
}

// phases times the steps of a pass, for the debug log.
type phases struct {
	start, last time.Time
	steps       []slog.Attr
}

// mark ends the step called name.
func (p *phases) mark(name string) {
	now := time.Now()
	from := p.last
	if from.IsZero() {
		from = p.start
	}
	p.steps = append(p.steps, slog.Duration(name, now.Sub(from)))
	p.last = now
}

// attrs is the steps as a log group value.
func (p *phases) attrs() slog.Value { return slog.GroupValue(p.steps...) }
