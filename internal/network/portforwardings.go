package network

import (
	"context"
	"strconv"
	"strings"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

func portFwdKey(fipID, id string) string { return pPortFwd + fipID + "/" + id }

// PortForwardings lists a floating IP's forwardings.
func (s *Service) PortForwardings(c policy.Creds, fipID string) ([]PortForwarding, error) {
	if _, err := s.GetFloatingIP(c, fipID); err != nil {
		return nil, err
	}
	return store.ListJSON[PortForwarding](s.cache, pPortFwd+fipID+"/"), nil
}

// AllPortForwardings lists every forwarding (for the agent).
func (s *Service) AllPortForwardings() []PortForwarding {
	return store.ListJSON[PortForwarding](s.cache, pPortFwd)
}

// GetPortForwarding returns one forwarding of a floating IP.
func (s *Service) GetPortForwarding(c policy.Creds, fipID, id string) (PortForwarding, error) {
	if _, err := s.GetFloatingIP(c, fipID); err != nil {
		return PortForwarding{}, err
	}
	pf, _, ok := store.GetJSON[PortForwarding](s.cache, portFwdKey(fipID, id))
	if !ok {
		return PortForwarding{}, errdefs.Typed("PortForwardingNotFound", errdefs.NotFoundf("Port Forwarding %s could not be found.", id))
	}
	return pf, nil
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
		return 0, 0, errdefs.Invalidf("Invalid input for %s. Reason: '%s' is not a valid port or port range (1-65535, 'N' or 'N:M').", field, v)
	}
	return a, b, nil
}

// pfParams fills a forwarding from a request (create: all; update: the
// attributes given).
func (s *Service) pfParams(c policy.Creds, f FloatingIP, pf *PortForwarding, r v2.PortForwardingRequest, create bool) (store.Cond, error) {
	if r.Protocol != nil {
		if *r.Protocol != "tcp" && *r.Protocol != "udp" {
			return store.Cond{}, errdefs.Invalidf("Invalid input for protocol. Reason: '%s' is not in ['tcp', 'udp'].", *r.Protocol)
		}
		pf.Protocol = *r.Protocol
	} else if create {
		return store.Cond{}, errdefs.Invalidf("Failed to parse request. Required attribute 'protocol' not specified.")
	}
	if r.Description != nil {
		if err := checkDescription(r.Description); err != nil {
			return store.Cond{}, err
		}
		pf.Description = *r.Description
	}
	if (r.InternalPort != nil && r.InternalPortRange != nil) || (r.ExternalPort != nil && r.ExternalPortRange != nil) {
		return store.Cond{}, errdefs.Invalidf("Invalid input: give a port or a port range, not both.")
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
			return errdefs.Invalidf("Failed to parse request. Required attribute '%s' not specified.", field)
		}
		return nil
	}
	if err := set("internal_port", r.InternalPort, r.InternalPortRange, &pf.InternalMin, &pf.InternalMax); err != nil {
		return store.Cond{}, err
	}
	if err := set("external_port", r.ExternalPort, r.ExternalPortRange, &pf.ExternalMin, &pf.ExternalMax); err != nil {
		return store.Cond{}, err
	}
	if in, ex := pf.InternalMax-pf.InternalMin, pf.ExternalMax-pf.ExternalMin; in != 0 && in != ex {
		return store.Cond{}, errdefs.Invalidf("Invalid input: the internal port range must be one port or as long as the external one.")
	}
	if r.InternalPortID != nil {
		pf.InternalPortID = *r.InternalPortID
	} else if create {
		return store.Cond{}, errdefs.Invalidf("Failed to parse request. Required attribute 'internal_port_id' not specified.")
	}
	p, prev, ok := store.GetJSON[Port](s.cache, portKey(pf.InternalPortID))
	if !ok || !s.canSeePort(c, p) || (p.ProjectID != f.ProjectID && !c.IsAdmin()) {
		return store.Cond{}, notFound("PortNotFound", "Port", pf.InternalPortID)
	}
	if r.InternalIPAddress != nil {
		a, err := parseAddr("internal_ip_address", *r.InternalIPAddress)
		if err != nil {
			return store.Cond{}, err
		}
		pf.InternalIP = a
	} else if create || r.InternalPortID != nil {
		if len(p.FixedIPs) != 1 {
			return store.Cond{}, errdefs.Invalidf("Failed to parse request. Required attribute 'internal_ip_address' not specified.")
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
		return store.Cond{}, errdefs.Typed("BadRequest", errdefs.Invalidf("Bad port forwarding request: internal_ip_address %s is not an address of port %s.", pf.InternalIP, p.ID))
	}
	kv, routed := s.cache.Get(routedKey(subnetID))
	rt, _, ok := store.GetJSON[Router](s.cache, routerKey(string(kv.Value)))
	if !routed || !ok || rt.Gateway == nil || rt.Gateway.NetworkID != f.NetworkID {
		return store.Cond{}, errdefs.Typed("ExternalGatewayForFloatingIPNotFound", errdefs.NotFoundf("External network %s is not reachable from subnet %s. Therefore, cannot associate Port %s with a Floating IP.", f.NetworkID, subnetID, p.ID))
	}
	for _, o := range store.ListJSON[PortForwarding](s.cache, pPortFwd+f.ID+"/") {
		if o.ID == pf.ID || o.Protocol != pf.Protocol {
			continue
		}
		if o.ExternalMin <= pf.ExternalMax && pf.ExternalMin <= o.ExternalMax {
			return store.Cond{}, errdefs.Typed("BadRequest", errdefs.Invalidf("Bad port forwarding request: external port(s) %d:%d/%s of floating IP %s overlap port forwarding %s.", pf.ExternalMin, pf.ExternalMax, pf.Protocol, f.ID, o.ID))
		}
		if o.InternalIP == pf.InternalIP && o.InternalMin <= pf.InternalMax && pf.InternalMin <= o.InternalMax {
			return store.Cond{}, errdefs.Typed("BadRequest", errdefs.Invalidf("Bad port forwarding request: internal %s:%d:%d/%s is already forwarded by %s.", pf.InternalIP, pf.InternalMin, pf.InternalMax, pf.Protocol, o.ID))
		}
	}
	return atRev(portKey(p.ID), prev), nil
}

// CreatePortForwarding adds a forwarding to a floating IP that is not
// associated with a port.
func (s *Service) CreatePortForwarding(ctx context.Context, c policy.Creds, fipID string, r v2.PortForwardingRequest) (PortForwarding, error) {
	var out PortForwarding
	err := s.cache.Update(ctx, func() (store.Txn, error) {
		f, rev, ok := store.GetJSON[FloatingIP](s.cache, fipKey(fipID))
		if !ok || !canSee(c, "network:get_floatingip", f.ProjectID, false) {
			return store.Txn{}, notFound("FloatingIPNotFound", "Floating IP", fipID)
		}
		if err := policy.Check("network:update_floatingip", c, target(f.ProjectID, false)); err != nil {
			return store.Txn{}, err
		}
		if f.FixedPortID != "" {
			return store.Txn{}, errdefs.Typed("FipInUseByPortForwarding", errdefs.Conflictf("Floating IP %s is associated with port %s: it cannot have port forwardings too.", f.ID, f.FixedPortID))
		}
		pf := PortForwarding{ID: NewID(), FloatingIPID: f.ID, ProjectID: f.ProjectID}
		cond, err := s.pfParams(c, f, &pf, r, true)
		if err != nil {
			return store.Txn{}, err
		}
		out = pf
		return store.Txn{Conds: []store.Cond{atRev(fipKey(f.ID), rev), cond},
			Ops: []store.Op{store.PutJSON(portFwdKey(f.ID, pf.ID), pf), store.PutJSON(fipKey(f.ID), f)}}, nil
	})
	return out, err
}

// UpdatePortForwarding changes a forwarding.
func (s *Service) UpdatePortForwarding(ctx context.Context, c policy.Creds, fipID, id string, r v2.PortForwardingRequest) (PortForwarding, error) {
	var out PortForwarding
	err := s.cache.Update(ctx, func() (store.Txn, error) {
		f, frev, ok := store.GetJSON[FloatingIP](s.cache, fipKey(fipID))
		if !ok || !canSee(c, "network:get_floatingip", f.ProjectID, false) {
			return store.Txn{}, notFound("FloatingIPNotFound", "Floating IP", fipID)
		}
		if err := policy.Check("network:update_floatingip", c, target(f.ProjectID, false)); err != nil {
			return store.Txn{}, err
		}
		pf, rev, ok := store.GetJSON[PortForwarding](s.cache, portFwdKey(fipID, id))
		if !ok {
			return store.Txn{}, errdefs.Typed("PortForwardingNotFound", errdefs.NotFoundf("Port Forwarding %s could not be found.", id))
		}
		cond, err := s.pfParams(c, f, &pf, r, false)
		if err != nil {
			return store.Txn{}, err
		}
		out = pf
		return store.Txn{Conds: []store.Cond{atRev(portFwdKey(fipID, id), rev), atRev(fipKey(fipID), frev), cond},
			Ops: []store.Op{store.PutJSON(portFwdKey(fipID, id), pf), store.PutJSON(fipKey(f.ID), f)}}, nil
	})
	return out, err
}

// DeletePortForwarding removes a forwarding.
func (s *Service) DeletePortForwarding(ctx context.Context, c policy.Creds, fipID, id string) error {
	f, err := s.GetFloatingIP(c, fipID)
	if err != nil {
		return err
	}
	if err := policy.Check("network:update_floatingip", c, target(f.ProjectID, false)); err != nil {
		return err
	}
	_, rev, ok := store.GetJSON[PortForwarding](s.cache, portFwdKey(fipID, id))
	if !ok {
		return errdefs.Typed("PortForwardingNotFound", errdefs.NotFoundf("Port Forwarding %s could not be found.", id))
	}
	return s.cache.Commit(ctx, store.Txn{Conds: []store.Cond{atRev(portFwdKey(fipID, id), rev)}, Ops: []store.Op{del(portFwdKey(fipID, id))}})
}
