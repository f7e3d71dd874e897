package main

import (
	"fmt"
	"strings"
	"time"
)

// Targets from the issue for the network service (nimbo; there is no Neutron
// to compare with here).
const (
	targetPortCreate     = 5 * time.Millisecond // p50
	targetPortCreateRate = 1000.0               // creates/s
	targetProbeDHCP      = 50 * time.Millisecond
)

// fmtInt formats n with thousands separators: 10,000.
func fmtInt(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + fmtInt(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// pcts formats "p50 X, p99 Y" of s, or why there is none.
func pcts(s stats, ok bool) string {
	if !ok || s.N == 0 {
		return "not measured"
	}
	return fmt.Sprintf("p50 %s, p99 %s", fmtDur(s.P50), fmtDur(s.P99))
}

// rate returns the operations per second of s (its own for a load run).
func rate(s stats) float64 {
	if v, ok := s.RPS(); ok {
		return v
	}
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.N) / s.Elapsed.Seconds()
}

// networkMarkdown renders the network part of nimbo's run.
func (rep *report) networkMarkdown(p func(string, ...any)) {
	defer rep.routersMarkdown(p) // "Network II" follows, whatever happened here
	cfg := rep.cfg
	nimbo := rep.results[0]
	nr := nimbo.net
	p("## Network (Neutron v2.0 and the agent): nimbo against the issue's targets\n\n")
	p("There is no Neutron to compare with on this machine (it would need a whole OpenStack: neutron-server with ML2, its agents, a database and a message queue), ")
	p("so these are nimbo's numbers alone, against the issue's targets. They come from the same `nimbo up` as the identity numbers, after them: ")
	p("one network with a %s subnet (DHCP on, so the agent runs a DHCP server that knows every port of the network), the admin project's port quota lifted, admin token, keep-alive. ", cfg.subnetCIDR)
	p("At each checkpoint the network is first filled with bulk creates (`{\"ports\": [...]}`, %d per request, %d clients), then, once nimbo's CPU is quiet: ", cfg.fillBatch, cfg.fillClients)
	p("up to %d probes one after the other (a port with `binding:host_id` = this host and `device_owner` `network:probe`; `GET /v2.0/ports/{id}?fields=status` polled every %v until ACTIVE, then a DHCP exchange from the probe's namespace, as `nimbo probe create` does; then deleted), ", cfg.probeN, cfg.probePoll)
	p("%d runs of `nimbo probe create` itself, `GET /v2.0/ports?limit=100`, and port creates (`POST /v2.0/ports`, one port each, on the same network): up to %d one after the other, then %d from %d clients. ", cfg.probeCLIN, cfg.portN, cfg.portLoadN, cfg.portClients)
	p("The ports those creates make stay, so the port count grows during a checkpoint: the column headers give it at the start.\n\n")
	switch {
	case !measured(nimbo):
		p("Not measured: nimbo could not be measured (see above).\n\n")
		return
	case nr == nil:
		p("Not measured (-network=false).\n\n")
		return
	case nr.skipped != "":
		p("Not measured: %s\n\n", oneLine(nr.skipped))
		return
	case len(nr.checkpoints) == 0:
		p("Not measured: %s\n\n", oneLine(nr.fatal))
		return
	}
	cps := nr.checkpoints
	for _, cp := range cps {
		if cp.others > 0.10 {
			p("**Warning:** other processes (or the hypervisor's steal time) took %.0f%% of the machine's CPU during the network measurements at %s ports: those numbers are pessimistic. Run again on a quiet machine.\n\n", 100*cp.others, fmtInt(cp.ports))
		}
	}
	header := func(first string) {
		p("| %s |", first)
		for _, cp := range cps {
			p(" %s ports |", fmtInt(cp.ports))
		}
		p("\n|---|")
		for range cps {
			p("---|")
		}
		p("\n")
	}
	row := func(title string, cell func(cp *netCheckpoint) string) {
		p("| %s |", title)
		for _, cp := range cps {
			p(" %s |", cell(cp))
		}
		p("\n")
	}
	op := func(cp *netCheckpoint, key string) (stats, bool) {
		s, ok := cp.ops[key]
		return s, ok && s.N > 0
	}

	header("target")
	row(fmt.Sprintf("port create p50 ≤ %d ms (1 client)", targetPortCreate/time.Millisecond), func(cp *netCheckpoint) string {
		s, ok := op(cp, opPortCreate)
		if !ok {
			return "not measured ❌"
		}
		return pcts(s, ok) + " " + verdict(s.P50 <= targetPortCreate)
	})
	row(fmt.Sprintf("≥ %s port creates/s", fmtInt(int(targetPortCreateRate))), func(cp *netCheckpoint) string {
		seq, okSeq := op(cp, opPortCreate)
		load, okLoad := op(cp, opPortLoad)
		if !okSeq && !okLoad {
			return "not measured ❌"
		}
		var parts []string
		best := 0.0
		if okLoad {
			parts = append(parts, fmt.Sprintf("%.0f/s from %d clients", rate(load), load.Clients))
			best = max(best, rate(load))
		}
		if okSeq {
			parts = append(parts, fmt.Sprintf("%.0f/s from 1", rate(seq)))
			best = max(best, rate(seq))
		}
		return strings.Join(parts, ", ") + " " + verdict(best >= targetPortCreateRate)
	})
	row(fmt.Sprintf("port create → probe wired and DHCP answered ≤ %d ms (p50)", targetProbeDHCP/time.Millisecond), func(cp *netCheckpoint) string {
		s, ok := op(cp, opProbeDHCP)
		if !ok {
			return "not measured ❌"
		}
		return pcts(s, ok) + " " + verdict(s.P50 <= targetProbeDHCP)
	})
	p("\n")

	header("")
	row("filled up to here with bulk creates", func(cp *netCheckpoint) string {
		f := cp.fill
		if f.ports == 0 {
			return "–"
		}
		return fmt.Sprintf("%s ports in %s (%.0f ports/s, %d requests; nimbo CPU %s)", fmtInt(f.ports), fmtDur(f.elapsed),
			float64(f.ports)/f.elapsed.Seconds(), f.requests, fmtDur(f.cpu))
	})
	row("nimbo idle again after the fill (checked each second, at least 2 s)", func(cp *netCheckpoint) string { return fmtDur(cp.quiet) })
	row("probe: POST → status ACTIVE", func(cp *netCheckpoint) string { s, ok := op(cp, opProbeActive); return pcts(s, ok) })
	row("probe: POST → DHCP answered", func(cp *netCheckpoint) string { s, ok := op(cp, opProbeDHCP); return pcts(s, ok) })
	row("probe: the DHCP exchange alone", func(cp *netCheckpoint) string { s, ok := op(cp, opProbeExchange); return pcts(s, ok) })
	row("`nimbo probe create`, whole command", func(cp *netCheckpoint) string { s, ok := op(cp, opProbeCLI); return pcts(s, ok) })
	row("probe: DELETE → namespace removed", func(cp *netCheckpoint) string { s, ok := op(cp, opProbeDelete); return pcts(s, ok) })
	row("`GET /v2.0/ports?limit=100`", func(cp *netCheckpoint) string { s, ok := op(cp, opPortList); return pcts(s, ok) })
	row("port create, 1 client", func(cp *netCheckpoint) string {
		s, ok := op(cp, opPortCreate)
		if !ok {
			return "not measured"
		}
		return fmt.Sprintf("%s (%.0f/s)", pcts(s, ok), rate(s))
	})
	row(fmt.Sprintf("port create, %d clients", cfg.portClients), func(cp *netCheckpoint) string {
		s, ok := op(cp, opPortLoad)
		if !ok {
			return "not measured"
		}
		return fmt.Sprintf("%s (%.0f/s)", pcts(s, ok), rate(s))
	})
	row("nimbo CPU per port created (API and agent, until quiet)", func(cp *netCheckpoint) string {
		if cp.creates == 0 {
			return "–"
		}
		return fmt.Sprintf("%s (%s ports, %s → %s)", fmtDur(cp.createCPU), fmtInt(cp.creates), fmtInt(cp.ports), fmtInt(cp.portsAfter))
	})
	row("other processes' share of the CPU meanwhile", func(cp *netCheckpoint) string { return fmt.Sprintf("%.0f%%", 100*cp.others) })
	row("nimbo RSS / PSS (idle, after the probes and lists)", func(cp *netCheckpoint) string {
		if cp.mem.Procs == 0 {
			return "–"
		}
		return fmt.Sprintf("%s / %s", mib(cp.mem.RSS), mib(cp.mem.PSS))
	})
	p("\n")
	last := cps[len(cps)-1]
	if nr.memAfter.Procs > 0 {
		p("**nimbo's RSS after the network load: %s** (PSS %s), with %s ports in the cloud, once idle; %s after the identity load, before the network part. ",
			mib(nr.memAfter.RSS), mib(nr.memAfter.PSS), fmtInt(last.portsAfter), mib(nr.memBefore.RSS))
	}
	p("The network part took %v; the network's DHCP port was ACTIVE %s after its subnet was created; ", nr.elapsed.Round(time.Second), fmtDur(nr.dhcpReady))
	polls := 0
	probes := 0
	for _, cp := range cps {
		polls += cp.polls
		probes += cp.ops[opProbeActive].N
	}
	p("%d probes needed %d status polls in all. nimbo and the driver ran in namespace `%s`; the agent's namespaces were `%s-*`.\n\n", probes, polls, nr.netns, cfg.netnsPrefix)

	if len(nr.log) > 0 {
		p("nimbo's log during the network part (warnings and errors, by message; the first line of each):\n\n")
		for _, g := range nr.log {
			p("- %d × `%s`\n\n  ```\n  %s\n  ```\n", g.count, strings.ReplaceAll(g.key, "`", "'"), g.first)
		}
		p("\n")
	} else {
		p("nimbo logged no warning or error during the network part.\n\n")
	}

	p("### Network: details\n\n")
	p("| operation | ports | n | min | p50 | p90 | p99 | max | mean | ops/s |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, o := range netOpTitles {
		for _, cp := range cps {
			s, ok := cp.ops[o.key]
			if !ok {
				continue
			}
			title := o.title
			if s.Clients > 1 {
				title = fmt.Sprintf("%s (%d)", o.title, s.Clients)
			}
			ports := fmtInt(cp.ports)
			if o.key == opPortCreate || o.key == opPortLoad {
				ports += " +"
			}
			if s.N == 0 {
				p("| %s | %s | 0 | | | | | | | |\n", title, ports)
				continue
			}
			p("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %.1f |\n", title, ports, s.N,
				fmtDur(s.Min), fmtDur(s.P50), fmtDur(s.P90), fmtDur(s.P99), fmtDur(s.Max), fmtDur(s.Mean), rate(s))
		}
	}
	p("\n")
}

// networkProblems lists the network part's failures and notes.
func (nr *netResult) problems() []string {
	if nr == nil {
		return nil
	}
	var out []string
	if nr.skipped != "" {
		out = append(out, "**nimbo network**: not measured: "+nr.skipped)
	}
	if nr.fatal != "" {
		out = append(out, "**nimbo network**: measurements stopped: "+nr.fatal)
	}
	for _, cp := range nr.checkpoints {
		for _, o := range netOpTitles {
			if s, ok := cp.ops[o.key]; ok && s.FirstError != "" {
				out = append(out, fmt.Sprintf("**nimbo network**, %s at %s ports: %d failed (%d succeeded); the first:\n%s",
					o.title, fmtInt(cp.ports), s.Errors, s.N, s.FirstError))
			}
		}
	}
	for _, n := range nr.notes {
		out = append(out, "**nimbo network**: "+n)
	}
	for _, g := range nr.log {
		if g.err {
			out = append(out, fmt.Sprintf("**nimbo network**: nimbo logged %d error(s) `%s`; the first:\n%s", g.count, strings.ReplaceAll(g.key, "`", "'"), g.first))
		}
	}
	return out
}
