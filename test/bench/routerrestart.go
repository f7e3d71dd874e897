package main

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/agent"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
)

// Restart with many routers, for the router part of the benchmark
// (routerbench.go).

// extCIDRFor is the external subnet for n routers: 10.224.0.0 with room
// for n gateway addresses and a few more (a /24 at least, a /16 at most).
func extCIDRFor(n int) netip.Prefix {
	bits := 32 - int(math.Ceil(math.Log2(float64(n+16))))
	bits = min(24, max(16, bits))
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 224, 0, 0}), bits)
}

// upInfo is what `nimbo up` printed about its start.
type upInfo struct {
	agent, up         time.Duration
	agentSeen, upSeen bool
	underlay          string
	incomplete        string // the error of "agent: first pass incomplete"
}

var (
	reAgentStep = regexp.MustCompile(`(?m)^\s+agent:\s.*\(([^()\s]+)\)\s*$`)
	reUp        = regexp.MustCompile(`(?m)^nimbo is up \(([^()\s]+)\)\.`)
	reUnderlay  = regexp.MustCompile(`(?m)^\s+underlay:\s+(.*?)\s*$`)
)

// parseUp reads `nimbo up`'s output (with its log lines mixed in).
func parseUp(log string) upInfo {
	var u upInfo
	if m := reAgentStep.FindStringSubmatch(log); m != nil {
		if d, err := time.ParseDuration(m[1]); err == nil {
			u.agent, u.agentSeen = d, true
		}
	}
	if m := reUp.FindStringSubmatch(log); m != nil {
		if d, err := time.ParseDuration(m[1]); err == nil {
			u.up, u.upSeen = d, true
		}
	}
	if m := reUnderlay.FindStringSubmatch(log); m != nil {
		u.underlay = m[1]
	}
	for _, line := range strings.Split(log, "\n") {
		if logField(line, "msg") == "agent: first pass incomplete" {
			u.incomplete = logField(line, "err")
			break
		}
	}
	return u
}

// netnsInode identifies a namespace (its nsfs inode).
func netnsInode(name string) (uint64, error) {
	fi, err := os.Stat(hostnet.NetnsPath(name))
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("%s: no inode", name)
	}
	return st.Ino, nil
}

// restartBench creates opts.restartN routers, restarts nimbo and deletes
// them (measurement 4).
func (r *routerRun) restartBench(ctx context.Context, logPath string) *restartResult {
	opts := r.opts
	rr := &restartResult{n: opts.restartN, extCIDR: extCIDRFor(opts.restartN)}
	fail := func(format string, a ...any) *restartResult {
		rr.err = fmt.Sprintf(format, a...)
		r.logf("routers: restart: %s", rr.err)
		return rr
	}
	tok := r.tok
	extID, err := r.nc.createNet(ctx, tok, "bench-ext", map[string]any{"router:external": true})
	if err != nil {
		return fail("creating the external network failed:\n%v", err)
	}
	if _, err := r.nc.createSubnetNoDHCP(ctx, tok, extID, "bench-ext-subnet", rr.extCIDR); err != nil {
		return fail("creating the external subnet failed:\n%v", err)
	}
	type mass struct{ network, subnet, router string }
	var mu sync.Mutex
	var made []*mass
	tenant := netip.MustParsePrefix("10.225.0.0/24")
	r.logf("routers: creating %d routers (network, subnet, router with gateway, interface) from %d clients", rr.n, opts.clients)
	t0 := time.Now()
	rr.create = concurrentN(ctx, opts.clients, rr.n, 30*time.Minute, func(ctx context.Context, _, i int) error {
		m := &mass{}
		mu.Lock()
		made = append(made, m)
		mu.Unlock()
		var err error
		if m.network, err = r.nc.createNet(ctx, tok, fmt.Sprintf("bench-mnet-%d", i), nil); err != nil {
			return err
		}
		sn, err := r.nc.createSubnetNoDHCP(ctx, tok, m.network, fmt.Sprintf("bench-msubnet-%d", i), tenant)
		if err != nil {
			return err
		}
		m.subnet = sn.ID
		rt, err := r.nc.createRouter(ctx, tok, fmt.Sprintf("bench-mrouter-%d", i), extID)
		if err != nil {
			return err
		}
		m.router = rt.ID
		return r.nc.routerInterface(ctx, tok, rt.ID, sn.ID, true)
	})
	rr.created = rr.create.N
	var routers []*mass
	for _, m := range made {
		if m.router != "" {
			routers = append(routers, m)
		}
	}
	if rr.create.FirstError != "" {
		rr.err = fmt.Sprintf("%d of %d router creates failed; the first:\n%s", rr.create.Errors, rr.n, rr.create.FirstError)
	}
	if len(routers) == 0 {
		return rr
	}
	r.logf("routers: %d routers created in %v; waiting for the agent", rr.created, time.Since(t0).Round(time.Millisecond))
	for {
		st, err := r.nc.routerStatuses(ctx, tok)
		if err != nil {
			return fail("listing the routers failed:\n%v", err)
		}
		if st["ACTIVE"] >= len(routers) {
			break
		}
		if time.Since(t0) > 5*time.Minute || ctx.Err() != nil {
			return fail("only %d of %d routers ACTIVE %v after the first create (%v)", st["ACTIVE"], len(routers), time.Since(t0).Round(time.Second), st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rr.allActive = time.Since(t0)
	settle(ctx, r.pid, 60*time.Second)
	rr.memWith, _ = measureMem(r.pid)
	rr.witness = routers[0].router
	witnessNS := agent.RouterNetns(r.cfg.netnsPrefix, rr.witness)
	ino, err := netnsInode(witnessNS)
	if err != nil {
		return fail("router %s's namespace: %v", rr.witness, err)
	}
	names, _ := hostnet.ListNetns(r.cfg.netnsPrefix + "-router-")
	rr.nsBefore = len(names)

	r.logf("routers: %d routers ACTIVE after %v; restarting nimbo", len(routers), rr.allActive.Round(time.Millisecond))
	t1 := time.Now()
	err = r.srv.stop()
	rr.stop = time.Since(t1)
	r.srv = nil
	if err != nil {
		r.res.notes = append(r.res.notes, "stopping nimbo for the restart: "+err.Error())
	}
	t2 := time.Now()
	s, err := startServer("nimbo", logPath, cleanEnv(), r.argv...)
	if err != nil {
		return fail("%v", err)
	}
	r.srv, r.pid = s, s.cmd.Process.Pid
	var up upInfo
	for {
		select {
		case <-s.exited:
			return fail("nimbo exited during its restart: %v; last lines of its log:\n%s", s.err, s.tail(2048))
		default:
		}
		if b, err := os.ReadFile(logPath); err == nil {
			if up = parseUp(string(b)); up.upSeen {
				rr.upSeen = time.Since(t2)
				break
			}
		}
		if time.Since(t2) > r.cfg.readyTimeout || ctx.Err() != nil {
			return fail("nimbo did not print \"nimbo is up\" within %v of its restart; last lines of its log:\n%s", r.cfg.readyTimeout, s.tail(2048))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if rr.apiReady, err = s.waitReady(ctx, r.ic, t2, r.cfg.readyTimeout); err != nil {
		return fail("%v", err)
	}
	rr.agentPass, rr.upLine, rr.incomplete = up.agent, up.up, up.incomplete
	if !up.agentSeen {
		rr.agentPass = -1
	}
	admin, err := r.ic.issue(ctx, passwordAuth("admin", r.cfg.password, "admin"))
	if err != nil {
		return fail("issuing a token after the restart failed:\n%v", err)
	}
	r.tok, tok = admin.ID, admin.ID
	st, err := r.nc.routerStatuses(ctx, tok)
	if err != nil {
		return fail("listing the routers after the restart failed:\n%v", err)
	}
	rr.activeAfter = st["ACTIVE"]
	names, _ = hostnet.ListNetns(r.cfg.netnsPrefix + "-router-")
	rr.nsAfter = len(names)
	if ino2, err := netnsInode(witnessNS); err == nil {
		rr.sameNetns = ino2 == ino
	}
	r.logf("routers: restarted: agent's first pass %v, \"nimbo is up\" after %v; %d routers ACTIVE", rr.agentPass, rr.upSeen.Round(time.Millisecond), rr.activeAfter)
	settle(ctx, r.pid, 30*time.Second)

	r.logf("routers: deleting the %d routers", len(routers))
	t3 := time.Now()
	rr.deleteAPI = concurrentN(ctx, opts.clients, len(routers), 30*time.Minute, func(ctx context.Context, _, i int) error {
		m := routers[i]
		if err := r.nc.routerInterface(ctx, tok, m.router, m.subnet, false); err != nil {
			return err
		}
		return r.nc.del(ctx, tok, "/routers/"+m.router)
	})
	mine := map[string]bool{}
	for _, m := range routers {
		mine[agent.RouterNetns(r.cfg.netnsPrefix, m.router)] = true
	}
	for {
		names, err := hostnet.ListNetns(r.cfg.netnsPrefix + "-router-")
		if err != nil {
			return fail("%v", err)
		}
		left := 0
		for _, n := range names {
			if mine[n] {
				left++
			}
		}
		if left == 0 {
			rr.deleteAll = time.Since(t3)
			break
		}
		if time.Since(t3) > 5*time.Minute || ctx.Err() != nil {
			return fail("%d of the routers' namespaces still there %v after the deletes began", left, time.Since(t3).Round(time.Second))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if rr.deleteAPI.FirstError != "" && rr.err == "" {
		rr.err = fmt.Sprintf("%d router deletes failed; the first:\n%s", rr.deleteAPI.Errors, rr.deleteAPI.FirstError)
	}
	r.logf("routers: deleted in %v (namespaces gone)", rr.deleteAll.Round(time.Millisecond))
	// The networks (not timed).
	concurrentN(ctx, opts.clients, len(made), 30*time.Minute, func(ctx context.Context, _, i int) error {
		if made[i].network == "" {
			return nil
		}
		return r.nc.del(ctx, tok, "/networks/"+made[i].network)
	})
	_ = r.nc.del(ctx, tok, "/networks/"+extID)
	return rr
}
