package network

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

func portFwdKey(fipID, id string) string { return pPortFwd + fipID + "/" + id }

// pfIndexKey is a forwarding's entry in the floating-IPs-through-a-router
// index, next to the associations' entries: the router's interface and
// gateway are in use while it exists. The floating IP's ID in the key lets
// all of its forwardings' entries go with one prefix delete per subnet.
func pfIndexKey(routerID, subnetID, fipID, pfID string) string {
	return fipRouterKey(routerID, subnetID, "pf-"+fipID+"-"+pfID)
}

// pfIndexDeleteOps drop the index entry of forwarding pfID of floating IP
// fipID, or, with pfID "", those of all its forwardings (one prefix delete
// per subnet they reach, so that a floating IP with thousands of
// forwardings still goes in one transaction).
func (s *Service) pfIndexDeleteOps(routerID, fipID, pfID string) []store.Op {
	if routerID == "" {
		return nil
	}
	var ops []store.Op
	seen := map[string]bool{}
	mark := "/pf-" + fipID + "-"
	for _, kv := range s.cache.List(pFIPRouter + routerID + "/") {
		i := strings.LastIndex(kv.Key, mark)
		switch {
		case i < 0:
		case pfID != "":
			if kv.Key[i+len(mark):] == pfID {
				ops = append(ops, del(kv.Key))
			}
		case !seen[kv.Key[:i]]:
			seen[kv.Key[:i]] = true
			ops = append(ops, store.Op{Kind: store.OpDeletePrefix, Key: kv.Key[:i+len(mark)]})
		}
	}
	return ops
}

// PortForwardings lists a floating IP's forwardings.
func (s *Service) PortForwardings(c policy.Creds, fipID string) ([]PortForwarding, error) {
	if _, err := s.pfTarget(c, fipID, "network:get_floatingip_port_forwarding"); err != nil {
		return nil, err
	}
	return store.ListJSON[PortForwarding](s.cache, pPortFwd+fipID+"/"), nil
}

// AllPortForwardings lists every forwarding (for the agent).
func (s *Service) AllPortForwardings() []PortForwarding {
	return s.pfs.List(pPortFwd)
}

// FloatingIPForwardings lists a floating IP's forwardings (no policy: for
// rendering a floating IP the caller can see).
func (s *Service) FloatingIPForwardings(fipID string) []PortForwarding {
	return store.ListJSON[PortForwarding](s.cache, pPortFwd+fipID+"/")
}

// GetPortForwarding returns one forwarding of a floating IP.
func (s *Service) GetPortForwarding(c policy.Creds, fipID, id string) (PortForwarding, error) {
	if _, err := s.pfTarget(c, fipID, "network:get_floatingip_port_forwarding"); err != nil {
		return PortForwarding{}, err
	}
	pf, _, ok := store.GetJSON[PortForwarding](s.cache, portFwdKey(fipID, id))
	if !ok {
		return PortForwarding{}, pfNotFound(id)
	}
	return pf, nil
}

func pfNotFound(id string) error {
	return errdefs.Typed("PortForwardingNotFound", errdefs.NotFoundf("Port Forwarding %s could not be found.", id))
}

// pfTarget reads the floating IP a forwarding request is about and checks
// the caller may act on it.
func (s *Service) pfTarget(c policy.Creds, fipID, action string) (FloatingIP, error) {
	f, _, ok := store.GetJSON[FloatingIP](s.cache, fipKey(fipID))
	if !ok || !canSee(c, "network:get_floatingip", f.ProjectID, false) {
		return FloatingIP{}, notFound("FloatingIPNotFound", "Floating IP", fipID)
	}
	return f, policy.Check(action, c, target(f.ProjectID, false))
}

// portRange parses "N" or "N:M" (1..65535, N <= M).
func portRange(field, v string) (int, int, error) {
	lo, hi, isRange := strings.Cut(v, ":")
	a, err1 := strconv.Atoi(strings.TrimSpace(lo))
	b := a
	var err2 error
	if isRange {
		b, err2 = strconv.Atoi(strings.TrimSpace(hi))
	}
	if err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b {
		return 0, 0, errdefs.Invalidf("Invalid input for %s. Reason: '%s' is not a valid port or port range (1-65535, 'N' or 'N:M' with N <= M).", field, v)
	}
	return a, b, nil
}

func badPF(format string, args ...any) error {
	return errdefs.Typed("BadRequest", errdefs.Invalidf("Bad port_forwarding request: "+format, args...))
}

// pfPlace is where a forwarding lands: the router that connects its
// internal address to the floating IP's network, and the address's subnet.
type pfPlace struct {
	router   Router
	routerRv int64
	subnetID string
	portCond store.Cond
}

// pfParams fills a forwarding from a request (create: all; update: the
// attributes given) and checks Neutron's rules: tcp or udp; a port or a
// range on each side, never both; N:N or N:1 ranges; an internal address
// of the internal port, reachable from the floating IP's network through
// the router the floating IP already uses; no port of the internal port
// associated with a floating IP; no overlap with the floating IP's other
// forwardings (external side) or with the internal port's other
// forwardings (internal side).
func (s *Service) pfParams(c policy.Creds, f FloatingIP, pf *PortForwarding, r v2.PortForwardingRequest, create bool) (pfPlace, error) {
	if r.Protocol != nil {
		proto := strings.ToLower(*r.Protocol)
		if proto != "tcp" && proto != "udp" {
			return pfPlace{}, errdefs.Invalidf("Invalid input for protocol. Reason: '%s' is not in ['tcp', 'udp'].", *r.Protocol)
		}
		pf.Protocol = proto
	} else if create {
		return pfPlace{}, errdefs.Invalidf("Failed to parse request. Required attribute 'protocol' not specified.")
	}
	if r.Description != nil {
		if err := checkDescription(r.Description); err != nil {
			return pfPlace{}, err
		}
		pf.Description = *r.Description
	}
	if r.InternalPort != nil && r.InternalPortRange != nil {
		return pfPlace{}, errdefs.Invalidf("Invalid input: give internal_port or internal_port_range, not both.")
	}
	if r.ExternalPort != nil && r.ExternalPortRange != nil {
		return pfPlace{}, errdefs.Invalidf("Invalid input: give external_port or external_port_range, not both.")
	}
	set := func(field string, single *v2.Int, rng *string, lo, hi *int) error {
		switch {
		case single != nil:
			if *single < 1 || *single > 65535 {
				return errdefs.Invalidf("Invalid input for %s. Reason: %d is not a valid port (1-65535).", field, *single)
			}
			*lo, *hi = int(*single), int(*single)
		case rng != nil:
			a, b, err := portRange(field+"_range", *rng)
			if err != nil {
				return err
			}
			*lo, *hi = a, b
		case create:
			return errdefs.Invalidf("Failed to parse request. Required attribute '%s' or '%s_range' not specified.", field, field)
		}
		return nil
	}
	if err := set("internal_port", r.InternalPort, r.InternalPortRange, &pf.InternalMin, &pf.InternalMax); err != nil {
		return pfPlace{}, err
	}
	if err := set("external_port", r.ExternalPort, r.ExternalPortRange, &pf.ExternalMin, &pf.ExternalMax); err != nil {
		return pfPlace{}, err
	}
	if in, ex := pf.InternalMax-pf.InternalMin, pf.ExternalMax-pf.ExternalMin; in != 0 && in != ex {
		return pfPlace{}, badPF("Invalid ranges of internal and/or external ports. The relation between internal and external ports must be N-N or 1-N.")
	}
	if r.InternalPortID != nil {
		pf.InternalPortID = *r.InternalPortID
	} else if create {
		return pfPlace{}, errdefs.Invalidf("Failed to parse request. Required attribute 'internal_port_id' not specified.")
	}
	p, prev, ok := store.GetJSON[Port](s.cache, portKey(pf.InternalPortID))
	if !ok || !s.canSeePort(c, p) || (p.ProjectID != f.ProjectID && !c.IsAdmin()) {
		return pfPlace{}, notFound("PortNotFound", "Port", pf.InternalPortID)
	}
	if r.InternalIPAddress != nil {
		a, err := parseAddr("internal_ip_address", *r.InternalIPAddress)
		if err != nil {
			return pfPlace{}, err
		}
		pf.InternalIP = a
	} else if create || r.InternalPortID != nil {
		if len(p.FixedIPs) == 0 {
			return pfPlace{}, badPF("Requested internal port %s must allocate an IPv4 address at least.", p.ID)
		}
		pf.InternalIP = p.FixedIPs[0].IP
	}
	subnetID := ""
	for _, fi := range p.FixedIPs {
		if fi.IP == pf.InternalIP {
			subnetID = fi.SubnetID
		}
	}
	if subnetID == "" {
		return pfPlace{}, badPF("Requested internal IP address %s is not suitable for internal neutron port %s: it is not one of its fixed IPs.", pf.InternalIP, p.ID)
	}
	rt, rrev, ok := s.routerForSubnet(subnetID, f.NetworkID)
	if !ok {
		return pfPlace{}, badPF("External network %s is not reachable from subnet %s. Cannot set Port forwarding for port %s with Floating IP %s.", f.NetworkID, subnetID, p.ID, f.ID)
	}
	if f.RouterID != "" && f.RouterID != rt.ID && !(len(s.FloatingIPForwardings(f.ID)) == 1 && !create) {
		return pfPlace{}, badPF("The Floating IP %s had been set on router %s, the internal Neutron port %s can not reach it.", f.ID, f.RouterID, p.ID)
	}
	if kvs := s.cache.List(pFIPFixed + p.ID + "/"); len(kvs) > 0 {
		return pfPlace{}, errdefs.Typed("PortHasBindingFloatingIP", errdefs.Conflictf("Cannot create port forwarding to floating IP %s (%s) with port %s using fixed IP %s, as that port already has a binding floating IP.", f.IP, f.ID, p.ID, pf.InternalIP))
	}
	rng := func(lo, hi int) string { return fmt.Sprintf("%d:%d", lo, hi) }
	for _, o := range s.AllPortForwardings() {
		if o.ID == pf.ID || o.Protocol != pf.Protocol {
			continue
		}
		if o.FloatingIPID == f.ID && o.ExternalMin <= pf.ExternalMax && pf.ExternalMin <= o.ExternalMax {
			return pfPlace{}, badPF("There is a port collision with the external_port_range. The following ranges collide: %s and %s.", rng(o.ExternalMin, o.ExternalMax), rng(pf.ExternalMin, pf.ExternalMax))
		}
		if o.InternalPortID == pf.InternalPortID && o.InternalIP == pf.InternalIP && o.InternalMin <= pf.InternalMax && pf.InternalMin <= o.InternalMax {
			return pfPlace{}, badPF("There is a port collision with the internal_port_range. The following ranges collide: %s and %s.", rng(o.InternalMin, o.InternalMax), rng(pf.InternalMin, pf.InternalMax))
		}
	}
	return pfPlace{router: rt, routerRv: rrev, subnetID: subnetID, portCond: atRev(portKey(p.ID), prev)}, nil
}

// pfTxn writes a forwarding with its index entry, binds the floating IP to
// the forwarding's router, and rewrites the router (unchanged) so that the
// removal of its interface or gateway cannot race with the new entry.
func (s *Service) pfTxn(f FloatingIP, frev int64, pf PortForwarding, at pfPlace, extraConds []store.Cond, extraOps []store.Op) store.Txn {
	t := store.Txn{Conds: append([]store.Cond{atRev(fipKey(f.ID), frev), at.portCond, atRev(routerKey(at.router.ID), at.routerRv)}, extraConds...),
		Ops: append(extraOps, store.PutJSON(portFwdKey(f.ID, pf.ID), pf), idx(pfIndexKey(at.router.ID, at.subnetID, f.ID, pf.ID)),
			store.PutJSON(routerKey(at.router.ID), at.router))}
	if f.RouterID != at.router.ID {
		f.RouterID = at.router.ID
		s.stamp(&f.Meta, false)
	}
	// The floating IP is always rewritten: concurrent forwardings of one
	// floating IP are serialised on it, so their overlap checks hold.
	t.Ops = dedupOps(append(t.Ops, store.PutJSON(fipKey(f.ID), f)))
	return t
}

// CreatePortForwarding adds a forwarding to a floating IP that is not
// associated with a port.
func (s *Service) CreatePortForwarding(ctx context.Context, c policy.Creds, fipID string, r v2.PortForwardingRequest) (PortForwarding, error) {
	var out PortForwarding
	err := s.cache.Update(ctx, func() (store.Txn, error) {
		if _, err := s.pfTarget(c, fipID, "network:create_floatingip_port_forwarding"); err != nil {
			return store.Txn{}, err
		}
		f, rev, _ := store.GetJSON[FloatingIP](s.cache, fipKey(fipID))
		if f.FixedPortID != "" {
			return store.Txn{}, errdefs.Typed("FloatingIPPortAlreadyAssociated", errdefs.Conflictf("Cannot add port forwardings to floating IP %s (%s): it is associated with port %s.", f.IP, f.ID, f.FixedPortID))
		}
		pf := PortForwarding{ID: NewID(), FloatingIPID: f.ID, ProjectID: f.ProjectID}
		at, err := s.pfParams(c, f, &pf, r, true)
		if err != nil {
			return store.Txn{}, err
		}
		out = pf
		return s.pfTxn(f, rev, pf, at, nil, nil), nil
	})
	return out, err
}

// UpdatePortForwarding changes a forwarding.
func (s *Service) UpdatePortForwarding(ctx context.Context, c policy.Creds, fipID, id string, r v2.PortForwardingRequest) (PortForwarding, error) {
	var out PortForwarding
	err := s.cache.Update(ctx, func() (store.Txn, error) {
		if _, err := s.pfTarget(c, fipID, "network:update_floatingip_port_forwarding"); err != nil {
			return store.Txn{}, err
		}
		f, frev, _ := store.GetJSON[FloatingIP](s.cache, fipKey(fipID))
		pf, rev, ok := store.GetJSON[PortForwarding](s.cache, portFwdKey(fipID, id))
		if !ok {
			return store.Txn{}, pfNotFound(id)
		}
		at, err := s.pfParams(c, f, &pf, r, false)
		if err != nil {
			return store.Txn{}, err
		}
		out = pf
		return s.pfTxn(f, frev, pf, at, []store.Cond{atRev(portFwdKey(fipID, id), rev)}, s.pfIndexDeleteOps(f.RouterID, fipID, id)), nil
	})
	return out, err
}

// DeletePortForwarding removes a forwarding; the floating IP's last one
// unbinds it from its router.
func (s *Service) DeletePortForwarding(ctx context.Context, c policy.Creds, fipID, id string) error {
	return s.cache.Update(ctx, func() (store.Txn, error) {
		if _, err := s.pfTarget(c, fipID, "network:delete_floatingip_port_forwarding"); err != nil {
			return store.Txn{}, err
		}
		f, frev, _ := store.GetJSON[FloatingIP](s.cache, fipKey(fipID))
		_, rev, ok := store.GetJSON[PortForwarding](s.cache, portFwdKey(fipID, id))
		if !ok {
			return store.Txn{}, pfNotFound(id)
		}
		t := store.Txn{Conds: []store.Cond{atRev(portFwdKey(fipID, id), rev), atRev(fipKey(fipID), frev)},
			Ops: append([]store.Op{del(portFwdKey(fipID, id))}, s.pfIndexDeleteOps(f.RouterID, fipID, id)...)}
		if len(s.cache.List(pPortFwd+fipID+"/")) == 1 && f.FixedPortID == "" {
			f.RouterID, f.Status = "", StatusDown
			s.stamp(&f.Meta, false)
		}
		t.Ops = append(t.Ops, store.PutJSON(fipKey(fipID), f))
		return t, nil
	})
}
