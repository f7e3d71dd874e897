package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/agent"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
)

// Floating IP and port forwarding creates timed to the first packet, for the
// router part of the benchmark (routerbench.go).

// gatewayIface returns the name of a router's gateway leg inside its
// namespace (qg- and the gateway port's ID).
func (r *routerRun) gatewayIface(ctx context.Context, routerID string) (string, error) {
	var ps struct {
		Ports []portInfo `json:"ports"`
	}
	q := url.Values{"device_id": {routerID}, "device_owner": {"network:router_gateway"}}
	if err := r.nc.get(ctx, r.tok, "/ports?"+q.Encode(), &ps); err != nil {
		return "", err
	}
	if len(ps.Ports) != 1 {
		return "", fmt.Errorf("GET %s/ports?%s: %d ports, want the router's gateway port", r.nc.base, q.Encode(), len(ps.Ports))
	}
	return hostnet.IfName(agent.RouterGwIfacePrefix, ps.Ports[0].ID), nil
}

// natBench measures floating IP and port forwarding creates at each
// checkpoint, then the throughput (measurements 2 and 3), on s's router.
func (r *routerRun) natBench(ctx context.Context, s *l3Sample) error {
	opts, res, tok := r.opts, r.res, r.tok
	rt := s.router
	qg, err := r.gatewayIface(ctx, rt.ID)
	if err != nil {
		return err
	}
	rns, err := hostnet.OpenNetns(agent.RouterNetns(r.cfg.netnsPrefix, rt.ID))
	if err != nil {
		return err
	}
	defer rns.Close()
	pa, err := r.newProbe(ctx, s.networkID, "bench-probe-fip", s.probe.gw)
	if err != nil {
		return fmt.Errorf("probe A (floating IPs): %v", err)
	}
	pb, err := r.newProbe(ctx, s.networkID, "bench-probe-pf", s.probe.gw)
	if err != nil {
		pa.close()
		return fmt.Errorf("probe B (port forwardings): %v", err)
	}
	var made []string // probe ports, deleted at the end
	made = append(made, pa.port.ID, pb.port.ID)
	dctx := context.WithoutCancel(ctx)
	defer func() {
		pa.close()
		pb.close()
		if del := deleteProbes(dctx, r.cfg, r.nc, tok, made); del.FirstError != "" {
			res.notes = append(res.notes, "deleting probes A and B: "+del.FirstError)
		}
	}()
	// The forwards' target: a plain port (not wired; forwards only need its
	// address on a subnet of the router).
	target, err := r.nc.createPort(ctx, tok, map[string]any{"network_id": s.networkID, "name": "bench-pf-fill"})
	if err != nil {
		return err
	}
	// The floating IP that holds the forwards.
	holder, err := r.nc.createFIP(ctx, tok, r.publicID, "")
	if err != nil {
		return err
	}
	defer func() {
		// Its forwards go with it; then the fill target.
		if err := r.deleteFIP(dctx, holder.ID); err != nil {
			res.notes = append(res.notes, "deleting the floating IP of the forwards: "+err.Error())
		}
		if err := r.nc.deletePort(dctx, tok, target.ID); err != nil {
			res.notes = append(res.notes, "deleting the forwards' target port: "+err.Error())
		}
	}()
	holderIP, err := netip.ParseAddr(holder.IP)
	if err != nil {
		return err
	}
	fipC, err := listenUDP(pa.ns, portFIP)
	if err != nil {
		return fmt.Errorf("UDP socket on :%d in %s: %v", portFIP, pa.name, err)
	}
	defer fipC.close()
	pfC, err := listenUDP(pb.ns, portPF)
	if err != nil {
		return fmt.Errorf("UDP socket on :%d in %s: %v", portPF, pb.name, err)
	}
	defer pfC.close()

	forwards := 0
	for ci, want := range opts.forwards {
		cp := &routerCheckpoint{target: want, ops: map[string]stats{}}
		res.checkpoints = append(res.checkpoints, cp)
		if need := want - forwards; need > 0 {
			// One after the other: nimbo serialises the forwards of a
			// router on the router (from several clients, some creates
			// fail with 409 "too much contention").
			r.logf("routers: adding %d port forwardings (tcp, one after the other) onto floating IP %s", need, holder.IP)
			base := forwards
			f := concurrentN(ctx, 1, need, 30*time.Minute, func(ctx context.Context, _, i int) error {
				port := portFillMin + base + i
				_, err := r.nc.createPF(ctx, tok, holder.ID, "tcp", target, port, port)
				return err
			})
			forwards += f.N
			cp.ops[rOpFill] = f
			cp.forwards = forwards
			if f.FirstError != "" || f.N < need {
				return fmt.Errorf("adding port forwardings up to %d failed after %d; see below", want, forwards)
			}
		}
		cp.forwards = forwards
		cp.quiet = settle(ctx, r.pid, 60*time.Second)
		if ctx.Err() != nil {
			return ctx.Err()
		}

		r.logf("routers: %d floating IP creates with %d forwards on the router", opts.fipN, forwards)
		var fPost, fFirst, fDel []time.Duration
		var firstErr error
		since := time.Now()
		for j := 0; j < opts.fipN && firstErr == nil; j++ {
			payload := fmt.Sprintf("nimbo-bench fip %d %d %d", r.runID, ci, j)
			t0 := time.Now()
			f, err := r.nc.createFIP(ctx, tok, r.publicID, pa.port.ID)
			if err != nil {
				firstErr = err
				break
			}
			tPost := time.Since(t0)
			addr, err := netip.ParseAddr(f.IP)
			if err != nil {
				firstErr = err
				break
			}
			send := udpSender{dst: netip.AddrPortFrom(addr, portFIP), payload: []byte(payload), arp: r.arpKick(addr)}
			at, err := firstPacket(send, fipC, nil, opts.timeout, nil, nil)
			if err != nil {
				firstErr = fmt.Errorf("floating IP %s (%s) of probe %s (%s): %v", f.ID, f.IP, pa.port.ID, pa.port.ip(), err)
			} else {
				fPost, fFirst = append(fPost, tPost), append(fFirst, at.Sub(t0))
			}
			// Deleted, and gone from the router before the next one (which
			// may get the same address).
			t1 := time.Now()
			if err := r.nc.del(ctx, tok, "/floatingips/"+f.ID); err != nil {
				firstErr = errors.Join(firstErr, err)
				break
			}
			for {
				addrs, err := rns.Addrs(ctx, qg)
				if err != nil {
					firstErr = errors.Join(firstErr, err)
					break
				}
				if !slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.Addr() == addr }) {
					fDel = append(fDel, time.Since(t1))
					break
				}
				if time.Since(t1) > opts.timeout {
					firstErr = errors.Join(firstErr, fmt.Errorf("floating IP %s deleted, but the router's %s still carries %s %v later", f.ID, qg, f.IP, opts.timeout))
					break
				}
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
		}
		cp.ops[rOpFIPPost] = timed(summarize(fPost), since)
		cp.ops[rOpFIPFirst] = timed(summarize(fFirst), since)
		cp.ops[rOpFIPDelete] = timed(summarize(fDel), since)
		if firstErr != nil {
			cp.ops[rOpFIPFirst] = cp.ops[rOpFIPFirst].failed(firstErr)
			return fmt.Errorf("floating IPs at %d forwards failed; see below", forwards)
		}

		r.logf("routers: %d port forwarding creates with %d forwards on the router", opts.pfN, forwards)
		var pPost, pFirst []time.Duration
		since = time.Now()
		for j := 0; j < opts.pfN && firstErr == nil; j++ {
			ext := portPFMin + 1000*ci + j
			payload := fmt.Sprintf("nimbo-bench pf %d %d %d", r.runID, ci, j)
			send := udpSender{dst: netip.AddrPortFrom(holderIP, uint16(ext)), payload: []byte(payload), arp: r.arpKick(holderIP)}
			var t0 time.Time
			var tPost time.Duration
			var id string
			at, err := firstPacket(send, pfC, nil, opts.timeout, nil, func() error {
				t0 = time.Now()
				var err error
				id, err = r.nc.createPF(ctx, tok, holder.ID, "udp", pb.port, portPF, ext)
				tPost = time.Since(t0)
				return err
			})
			if err != nil {
				firstErr = fmt.Errorf("port forwarding udp %s:%d -> %s:%d (probe %s): %v", holder.IP, ext, pb.port.ip(), portPF, pb.port.ID, err)
			} else {
				pPost, pFirst = append(pPost, tPost), append(pFirst, at.Sub(t0))
			}
			if id != "" {
				if err := r.nc.del(ctx, tok, "/floatingips/"+holder.ID+"/port_forwardings/"+id); err != nil {
					firstErr = errors.Join(firstErr, err)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		cp.ops[rOpPFPost] = timed(summarize(pPost), since)
		cp.ops[rOpPFFirst] = timed(summarize(pFirst), since)
		if firstErr != nil {
			cp.ops[rOpPFFirst] = cp.ops[rOpPFFirst].failed(firstErr)
			return fmt.Errorf("port forwardings at %d forwards failed; see below", forwards)
		}
	}
	settle(ctx, r.pid, 30*time.Second)
	if m, err := measureMem(r.pid); err == nil {
		res.memL3 = m
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	res.iperf = r.iperfBench(ctx, s, pa, pb, fipC, holder, holderIP)
	return nil
}

// deleteFIP deletes a floating IP with its forwards. If nimbo refuses to
// delete it (when it holds many forwards), the refusal is noted and its
// forwards are deleted one by one first.
func (r *routerRun) deleteFIP(ctx context.Context, id string) error {
	err := r.nc.del(ctx, r.tok, "/floatingips/"+id)
	if err == nil {
		return nil
	}
	var pfs struct {
		PortForwardings []struct{ ID string } `json:"port_forwardings"`
	}
	if lerr := r.nc.get(ctx, r.tok, "/floatingips/"+id+"/port_forwardings", &pfs); lerr != nil {
		return errors.Join(err, lerr)
	}
	r.res.notes = append(r.res.notes, fmt.Sprintf("DELETE of the floating IP holding %d port forwardings failed (its forwards were then deleted one by one):\n%v", len(pfs.PortForwardings), err))
	for _, pf := range pfs.PortForwardings {
		if derr := r.nc.del(ctx, r.tok, "/floatingips/"+id+"/port_forwardings/"+pf.ID); derr != nil {
			return derr
		}
	}
	return r.nc.del(ctx, r.tok, "/floatingips/"+id)
}
