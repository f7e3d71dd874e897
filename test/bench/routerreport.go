package main

import (
	"fmt"
	"strings"
	"time"
)

// routerOpTitles names the router part's latencies in the report.
var routerOpTitles = []struct{ key, title string }{
	{rOpRouterPost, "router: POST /routers (with external_gateway_info) answered"},
	{rOpRouterAPI, "router: POST /routers + PUT add_router_interface answered (the API calls)"},
	{rOpRouterSNAT, "router: POST /routers → first datagram SNATed to its gateway IP"},
	{rOpRouterDelete, "router: PUT remove_router_interface + DELETE → namespace removed"},
}

// routerCpTitles names the latencies measured at each forwards checkpoint.
var routerCpTitles = []struct{ key, title string }{
	{rOpFill, "port forwarding create, filling (tcp, one floating IP, one after the other)"},
	{rOpFIPPost, "floating IP: POST /floatingips (with port_id) answered"},
	{rOpFIPFirst, "floating IP: POST → first datagram through to the probe"},
	{rOpFIPDelete, "floating IP: DELETE → address gone from the router"},
	{rOpPFPost, "port forwarding: POST …/port_forwardings answered"},
	{rOpPFFirst, "port forwarding: POST → first datagram through to the probe"},
}

// fmtBps formats bits/s as Gbit/s or Mbit/s.
func fmtBps(bps float64) string {
	if bps >= 1e9 {
		return fmt.Sprintf("%.2f Gbit/s", bps/1e9)
	}
	return fmt.Sprintf("%.0f Mbit/s", bps/1e6)
}

// routersMarkdown renders the router part ("Network II").
func (rep *report) routersMarkdown(p func(string, ...any)) {
	opts := rep.cfg.routers
	p("## Network II (routers, floating IPs, port forwarding)\n\n")
	if opts == nil || !opts.enabled {
		p("Not measured (-routers=false).\n\n")
		return
	}
	rr := opts.result
	if rr == nil {
		p("Not measured: nimbo could not be measured (see above).\n\n")
		return
	}
	if rr.skipped != "" {
		p("Not measured: %s\n\n", oneLine(rr.skipped))
		return
	}
	p("nimbo alone against the issue's targets (no Neutron on this machine), measured after the network part on a second `nimbo up` with a fresh data dir ")
	p("(same `--host` and `--netns-prefix`; start-up %s) in the same namespace `%s`. ", fmtDur(rr.startup), rr.netns)
	p("The `nat` underlay's public network (%s, gateway %s on a bridge of that namespace) is host-internal, and the benchmark namespace has no default route, ", rr.publicCIDR, rr.publicGW)
	if rr.underlay != "" {
		p("so the underlay reports no uplink (`nimbo up` said: `%s`): ", strings.ReplaceAll(rr.underlay, "`", "'"))
	} else {
		p("so the underlay reports no uplink: ")
	}
	p("every packet measured here goes between probe namespaces and that namespace (%s), never further. ", rr.publicGW)
	p("Probes are ports bound to this host with `device_owner` `network:probe` (port security off: this is about routing and NAT), wired by the agent as a namespace with `eth0` on their network's bridge. ")
	p("*First packet through*: the sender sends a UDP datagram every %v, each from a new socket (a new source port, so one sent before the rule existed cannot pin an untranslated conntrack entry), with an ARP request for its next hop (the kernel retries an unresolved neighbour every 10 ms at best, 1 s by default; any reply completes it at once); the time is taken when the datagram arrives on the other side, from the start of the first API call. ", packetEvery)
	p("(1) %d routers one after the other, each on a fresh tenant network (10.64.N.0/24, DHCP off) whose probe was wired beforehand: `POST /v2.0/routers` with `external_gateway_info` `{network_id: public}`, then `PUT add_router_interface {subnet_id}`; the probe sends to %s from the start, and the datagram must arrive with the router's gateway IP as its source (namespace, legs, routes and SNAT in place). ", opts.n, rr.publicGW)
	p("(2) On the first router, at each checkpoint of port forwardings already on it (added by the API one after the other onto one floating IP): `POST /v2.0/floatingips` `{floating_network_id, port_id}` for probe A, datagrams from the benchmark namespace to the new address until one reaches probe A (then it is deleted and the router must drop its address before the next one); and `POST /v2.0/floatingips/{id}/port_forwardings` (udp, a new external port each time, onto the floating IP holding the forwards), datagrams to that port until one reaches probe B (then it is deleted). ")
	p("(3) TCP throughput, iperf3 (Debian's package), %d × %v per path, paths interleaved, median: through SNAT, a floating IP and a port forward, each against the same path routed without NAT (for that the benchmark namespace gets a route to the tenant subnet via the router's gateway IP). ", opts.iperfRuns, opts.iperfTime)
	p("(4) %s routers on a second external network, each with its gateway and one interface on a tenant network of its own, created from %d clients; once they are ACTIVE and nimbo is idle, nimbo is stopped (SIGTERM) and started on the same data dir; the agent's first pass is the `agent:` step `nimbo up` prints with its duration (the API listens only after it). Then all routers are deleted, timed until their namespaces are gone.\n\n", fmtInt(opts.restartN), opts.clients)

	type row struct{ target, measured, verdict string }
	var rows []row
	judge := func(s stats, ok bool, limit time.Duration) (string, string) {
		if !ok || s.N == 0 {
			return "not measured", "❌"
		}
		return pcts(s, true), verdict(s.P50 <= limit)
	}
	{
		s, ok := rr.ops[rOpRouterSNAT]
		m, v := judge(s, ok, targetRouterSNAT)
		if a, ok := rr.ops[rOpRouterAPI]; ok && a.N > 0 {
			m += fmt.Sprintf(" (the two API calls alone: p50 %s, p99 %s)", fmtDur(a.P50), fmtDur(a.P99))
		}
		rows = append(rows, row{fmt.Sprintf("router create → namespace ready and SNAT working ≤ %d ms (p50)", targetRouterSNAT/time.Millisecond), m, v})
	}
	for _, what := range []struct{ key, post, title string }{
		{rOpFIPFirst, rOpFIPPost, "floating IP create → first packet through"},
		{rOpPFFirst, rOpPFPost, "port forwarding create → first packet through"},
	} {
		for _, cp := range rr.checkpoints {
			s, ok := cp.ops[what.key]
			m, v := judge(s, ok, targetFirstPacket)
			if a, ok := cp.ops[what.post]; ok && a.N > 0 && s.N > 0 {
				m += fmt.Sprintf(" (API call alone: p50 %s)", fmtDur(a.P50))
			}
			rows = append(rows, row{fmt.Sprintf("%s ≤ %d ms (p50), %s forwards on the router", what.title, targetFirstPacket/time.Millisecond, fmtInt(cp.forwards)), m, v})
		}
	}
	if ir := rr.iperf; ir != nil {
		for _, key := range []string{"snat", "fip", "pf"} {
			title := map[string]string{"snat": "SNAT", "fip": "a floating IP", "pf": "a port forward"}[key]
			t := fmt.Sprintf("TCP throughput through %s ≥ %.0f%% of the same path without NAT", title, 100*targetNATRatio)
			if ir.skipped != "" {
				rows = append(rows, row{t, "not measured: " + oneLine(ir.skipped), "❌"})
				continue
			}
			pth := ir.path(key)
			base := ir.path(pth.baseline)
			if len(pth.runs) == 0 || base == nil || len(base.runs) == 0 {
				rows = append(rows, row{t, "not measured (see below)", "❌"})
				continue
			}
			ratio := median(pth.runs) / median(base.runs)
			rows = append(rows, row{t, fmt.Sprintf("%s vs. %s (%.0f%%)", fmtBps(median(pth.runs)), fmtBps(median(base.runs)), 100*ratio), verdict(ratio >= targetNATRatio)})
		}
	}
	if rs := rr.restart; rs != nil {
		t := fmt.Sprintf("restart with %s routers: the agent's first pass ≤ %.0f s", fmtInt(rs.n), targetRestart.Seconds())
		switch {
		case rs.upSeen == 0:
			rows = append(rows, row{t, "not measured (see below)", "❌"})
		case rs.agentPass < 0:
			rows = append(rows, row{t, fmt.Sprintf("no `agent:` step in `nimbo up`'s output; \"nimbo is up\" after %s", fmtDur(rs.upSeen)), "❌"})
		default:
			m := fmt.Sprintf("%s (`nimbo up`: \"nimbo is up\" after %s, API answering %s after the exec; %s routers)", fmtDur(rs.agentPass), fmtDur(rs.upLine), fmtDur(rs.apiReady), fmtInt(rs.created))
			ok := rs.agentPass <= targetRestart && rs.incomplete == "" && rs.sameNetns && rs.activeAfter >= rs.created
			rows = append(rows, row{t, m, verdict(ok)})
		}
	}
	p("| target | measured | |\n|---|---|---|\n")
	for _, r := range rows {
		p("| %s | %s | %s |\n", r.target, r.measured, r.verdict)
	}
	p("\n")

	if rs := rr.restart; rs != nil && rs.created > 0 {
		p("Restart with %s routers (external subnet %s, tenant subnets 10.225.0.0/24 on networks of their own, DHCP off): ", fmtInt(rs.created), rs.extCIDR)
		if rs.create.N > 0 {
			p("created in %s (network + subnet + router with gateway + interface: p50 %s, p99 %s per router from %d clients), all ACTIVE %s after the first create; ",
				fmtDur(rs.create.Elapsed), fmtDur(rs.create.P50), fmtDur(rs.create.P99), rs.create.Clients, fmtDur(rs.allActive))
		}
		if rs.memWith.Procs > 0 {
			p("nimbo's RSS with them, idle: %s (PSS %s); ", mib(rs.memWith.RSS), mib(rs.memWith.PSS))
		}
		if rs.upSeen > 0 {
			p("SIGTERM → exited %s; after the restart %s of %s routers were ACTIVE, %d router namespaces before and %d after, and router %s's namespace was %s. ",
				fmtDur(rs.stop), fmtInt(rs.activeAfter), fmtInt(rs.created), rs.nsBefore, rs.nsAfter, rs.witness,
				map[bool]string{true: "the same one (inode), adopted", false: "**not the same one** (made again)"}[rs.sameNetns])
			if rs.incomplete != "" {
				p("**nimbo said the first pass was incomplete**: `%s`. ", strings.ReplaceAll(rs.incomplete, "`", "'"))
			}
		}
		if rs.deleteAll > 0 {
			p("Deleting them all (PUT remove_router_interface + DELETE, %d clients) took %s of API calls (p50 %s per router) and %s until every router namespace was gone.",
				rs.deleteAPI.Clients, fmtDur(rs.deleteAPI.Elapsed), fmtDur(rs.deleteAPI.P50), fmtDur(rs.deleteAll))
		}
		p("\n\n")
	}
	if rr.leaks > 0 {
		p("**%d datagram(s) of the SNAT probes arrived with their tenant source address**: they left a router before its SNAT covered their subnet (forwarding worked before the NAT rules were complete).\n\n", rr.leaks)
	} else if rr.ops[rOpRouterSNAT].N > 0 {
		p("No datagram of the SNAT probes arrived untranslated (with its tenant source address). ")
	}
	if rr.memL3.Procs > 0 {
		p("nimbo's RSS after the floating IP and forward measurements, idle: %s. ", mib(rr.memL3.RSS))
	}
	p("The router part took %v.\n\n", rr.elapsed.Round(time.Second))

	p("### Network II: details\n\n")
	p("| operation | forwards on the router | n | min | p50 | p90 | p99 | max | mean | ops/s |\n|---|---|---|---|---|---|---|---|---|---|\n")
	line := func(title, where string, s stats) {
		if s.Clients > 1 {
			title = fmt.Sprintf("%s (%d clients)", title, s.Clients)
		}
		if s.N == 0 {
			p("| %s | %s | 0 | | | | | | | |\n", title, where)
			return
		}
		p("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %.1f |\n", title, where, s.N,
			fmtDur(s.Min), fmtDur(s.P50), fmtDur(s.P90), fmtDur(s.P99), fmtDur(s.Max), fmtDur(s.Mean), rate(s))
	}
	for _, o := range routerOpTitles {
		if s, ok := rr.ops[o.key]; ok {
			line(o.title, "–", s)
		}
	}
	for _, o := range routerCpTitles {
		for _, cp := range rr.checkpoints {
			if s, ok := cp.ops[o.key]; ok {
				where := fmtInt(cp.forwards)
				if o.key == rOpFill {
					where = fmt.Sprintf("→ %s", fmtInt(cp.forwards))
				}
				line(o.title, where, s)
			}
		}
	}
	if rs := rr.restart; rs != nil {
		if rs.create.N > 0 {
			line(fmt.Sprintf("restart set-up: network + subnet + router + interface, %s routers", fmtInt(rs.n)), "–", rs.create)
		}
		if rs.deleteAPI.N > 0 {
			line("restart clean-up: remove_router_interface + DELETE router", "–", rs.deleteAPI)
		}
	}
	p("\n")
	if ir := rr.iperf; ir != nil && ir.skipped == "" && len(ir.paths) > 0 {
		p("| iperf3 path (TCP, receiver's rate) | runs | median | vs. without NAT | retransmits |\n|---|---|---|---|---|\n")
		for _, pth := range ir.paths {
			var runs []string
			for _, v := range pth.runs {
				runs = append(runs, fmtBps(v))
			}
			if pth.err != "" {
				runs = append(runs, "failed: "+oneLine(pth.err))
			}
			ratio := "(baseline)"
			if b := ir.path(pth.baseline); b != nil {
				ratio = "–"
				if len(b.runs) > 0 && len(pth.runs) > 0 {
					ratio = fmt.Sprintf("%.0f%%", 100*median(pth.runs)/median(b.runs))
				}
			}
			med := "–"
			if len(pth.runs) > 0 {
				med = fmtBps(median(pth.runs))
			}
			p("| %s | %s | %s | %s | %v |\n", pth.title, strings.Join(runs, ", "), med, ratio, pth.retrans)
		}
		p("\n")
	}

	var problems []string
	if rr.fatal != "" {
		problems = append(problems, "measurements stopped: "+rr.fatal)
	}
	for _, o := range routerOpTitles {
		if s, ok := rr.ops[o.key]; ok && s.FirstError != "" {
			problems = append(problems, fmt.Sprintf("%s: %d failed (%d succeeded); the first:\n%s", o.title, s.Errors, s.N, s.FirstError))
		}
	}
	for _, cp := range rr.checkpoints {
		for _, o := range routerCpTitles {
			if s, ok := cp.ops[o.key]; ok && s.FirstError != "" {
				problems = append(problems, fmt.Sprintf("%s at %s forwards: %d failed (%d succeeded); the first:\n%s", o.title, fmtInt(cp.forwards), s.Errors, s.N, s.FirstError))
			}
		}
	}
	if ir := rr.iperf; ir != nil {
		if ir.skipped != "" {
			problems = append(problems, "throughput not measured: "+ir.skipped)
		}
		for _, pth := range ir.paths {
			if pth.err != "" {
				problems = append(problems, fmt.Sprintf("iperf3, %s:\n%s", pth.title, pth.err))
			}
		}
	}
	if rs := rr.restart; rs != nil && rs.err != "" {
		problems = append(problems, "restart: "+rs.err)
	}
	problems = append(problems, rr.notes...)
	for _, g := range rr.log {
		problems = append(problems, fmt.Sprintf("nimbo logged %d × `%s`; the first:\n%s", g.count, strings.ReplaceAll(g.key, "`", "'"), g.first))
	}
	if len(problems) == 0 {
		p("nimbo logged no warning or error during the router part.\n\n")
		return
	}
	p("Errors, notes and nimbo's warnings and errors during the router part (by message; the first line of each):\n\n")
	for _, pr := range problems {
		first, rest, _ := strings.Cut(strings.TrimRight(pr, "\n "), "\n")
		p("- %s\n", first)
		if rest != "" {
			p("\n  ```\n")
			for _, l := range strings.Split(rest, "\n") {
				p("  %s\n", l)
			}
			p("  ```\n")
		}
	}
	p("\n")
}
