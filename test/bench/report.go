package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// Targets from the issue, for nimbo.
const (
	targetIdleRSS    = 100 << 20
	targetValidate   = time.Millisecond
	targetIssueToken = 5 * time.Millisecond
)

// report is one run's results.
type report struct {
	cfg       config
	host      string
	started   time.Time
	finished  time.Time
	inproc    []inprocResult
	inprocErr string
	results   []*result // nimbo, then Keystone
}

// hostInfo describes the machine.
func hostInfo() string {
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	kernel := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	osName := "?"
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				osName = strings.Trim(v, `"`)
			}
		}
	}
	mem := "?"
	if kb, err := procKB(os.Getpid(), "../meminfo", "MemTotal:"); err == nil {
		mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	return fmt.Sprintf("%s, kernel %s; %d × %s; %s RAM; client and in-process benchmarks built with %s",
		osName, kernel, runtime.NumCPU(), model, mem, runtime.Version())
}

// mib formats bytes in MiB.
func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// opTitles names the operations in the report.
var opTitles = []struct{ key, title string }{
	{opPassword, "token issue, password (project scope)"},
	{opValidate, "token validation, 1 client"},
	{opValidateLoad, "token validation, concurrent clients"},
	{opRescope, "token issue, re-scope (token: unscoped → project)"},
	{opAppCred, "token issue, application credential"},
	{opProvision, "project create + user create + role assignment"},
}

// markdown renders the report.
func (rep *report) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	nimbo, ks := rep.results[0], rep.results[1]

	p("# nimbo benchmark: identity (against Keystone) and network\n\n")
	p("Run %s, %v. Host: %s.\n\n", rep.started.UTC().Format("2006-01-02 15:04 UTC"),
		rep.finished.Sub(rep.started).Round(time.Second), rep.host)
	p("Both servers run in one throwaway network namespace, on 127.0.0.1, one after the other (each has the machine to itself); ")
	p("the client is Go's net/http in the same namespace (keep-alive whenever the server allows it), on the same 2 cores. ")
	p("Latencies are wall-clock per request as the client sees it; percentiles are nearest-rank, so with fewer than 100 samples p99 is the maximum. ")
	p("Memory is summed over the server's whole process tree: VmRSS (shared pages counted once per process, what `ps` shows) and PSS (shared pages divided among the processes that map them). ")
	p("The network service is measured on nimbo alone, after its identity measurements (see [Network](#network-neutron-v20-and-the-agent-nimbo-against-the-issues-targets)).\n\n")
	for _, r := range rep.results {
		p("**%s**", r.name)
		if r.missing != "" {
			p(": **not measured: %s**\n\n", oneLine(r.missing))
			continue
		}
		p("\n")
		for _, d := range r.desc {
			p("- %s\n", d)
		}
		p("\n")
	}

	for _, r := range rep.results {
		if measured(r) && r.others > 0.10 {
			p("**Warning:** other processes (or the hypervisor's steal time) took %.0f%% of the machine's CPU while %s was measured: its numbers are pessimistic. Run again on a quiet machine.\n\n", 100*r.others, r.name)
		}
	}
	p("## Summary\n\n")
	p("Ratio: how many times better nimbo is (Keystone ÷ nimbo for time and memory, nimbo ÷ Keystone for throughput); below 1× nimbo is worse.\n\n")
	p("| | nimbo | Keystone | ratio | nimbo target |\n|---|---|---|---|---|\n")
	memRow := func(title string, get func(*result) memSample, rss bool, target string) {
		cell := func(r *result) (string, float64) {
			if !measured(r) {
				return na(r), 0
			}
			m := get(r)
			if m.Procs == 0 {
				return "–", 0
			}
			v := m.PSS
			if rss {
				v = m.RSS
			}
			return fmt.Sprintf("%s (%d proc)", mib(v), m.Procs), float64(v)
		}
		a, av := cell(nimbo)
		k, kv := cell(ks)
		p("| %s | %s | %s | %s | %s |\n", title, a, k, fmtRatio(kv, av), target)
	}
	idleTarget := "≤ 100 MiB"
	if measured(nimbo) && nimbo.memIdle.Procs > 0 {
		idleTarget += " " + verdict(nimbo.memIdle.RSS <= targetIdleRSS)
	}
	memRow("idle RSS after warm-up", func(r *result) memSample { return r.memIdle }, true, idleTarget)
	memRow("idle PSS after warm-up", func(r *result) memSample { return r.memIdle }, false, "")
	memRow("RSS after the whole load", func(r *result) memSample { return r.memLoaded }, true, "")
	durRow := func(title string, get func(*result) (time.Duration, bool), target string) {
		cell := func(r *result) (string, float64) {
			if !measured(r) {
				return na(r), 0
			}
			d, ok := get(r)
			if !ok {
				return "–", 0
			}
			return fmtDur(d), float64(d)
		}
		a, av := cell(nimbo)
		k, kv := cell(ks)
		p("| %s | %s | %s | %s | %s |\n", title, a, k, fmtRatio(kv, av), target)
	}
	durRow("start-up until GET /v3 answers", func(r *result) (time.Duration, bool) { return r.startup, r.startup > 0 }, "")
	opRow := func(key, title string, pct func(stats) time.Duration, target time.Duration) {
		tgt := ""
		if target > 0 {
			tgt = fmt.Sprintf("≤ %d ms", target/time.Millisecond)
			if s, ok := nimbo.ops[key]; ok && s.N > 0 {
				tgt += " " + verdict(pct(s) <= target)
			}
		}
		durRow(title, func(r *result) (time.Duration, bool) {
			s, ok := r.ops[key]
			if !ok || s.N == 0 {
				return 0, false
			}
			return pct(s), true
		}, tgt)
	}
	p50 := func(s stats) time.Duration { return s.P50 }
	p99 := func(s stats) time.Duration { return s.P99 }
	opRow(opPassword, "token issue, password: p50", p50, 0)
	opRow(opPassword, "token issue, password: p99", p99, 0)
	opRow(opValidate, "token validation: p50", p50, targetValidate)
	opRow(opValidate, "token validation: p99", p99, 0)
	{
		cell := func(r *result) (string, float64) {
			if !measured(r) {
				return na(r), 0
			}
			s, ok := r.ops[opValidateLoad]
			rps, has := s.RPS()
			if !ok || !has || s.N == 0 {
				return "–", 0
			}
			return fmt.Sprintf("%.0f req/s (p50 %s, p99 %s)", rps, fmtDur(s.P50), fmtDur(s.P99)), rps
		}
		a, av := cell(nimbo)
		k, kv := cell(ks)
		p("| token validation: throughput, %d clients | %s | %s | %s | |\n", rep.cfg.clients, a, k, fmtRatio(av, kv))
	}
	opRow(opRescope, "token issue, re-scope: p50", p50, targetIssueToken)
	opRow(opRescope, "token issue, re-scope: p99", p99, targetIssueToken)
	opRow(opAppCred, "token issue, application credential: p50", p50, targetIssueToken)
	opRow(opAppCred, "token issue, application credential: p99", p99, targetIssueToken)
	opRow(opProvision, "project + user + role assignment: p50", p50, 0)
	p("\n")

	p("## nimbo against the issue's targets\n\n")
	p("| target | measured | |\n|---|---|---|\n")
	if !measured(nimbo) {
		p("| all | nimbo was not measured: %s | ❌ |\n", oneLine(nimbo.fatal))
	} else {
		p("| idle RSS ≤ 100 MiB, embedded etcd included | %s RSS (%s PSS) | %s |\n", mib(nimbo.memIdle.RSS), mib(nimbo.memIdle.PSS), verdict(nimbo.memIdle.Procs > 0 && nimbo.memIdle.RSS <= targetIdleRSS))
		tgt := func(title, key string, limit time.Duration, withP99 bool) {
			s, ok := nimbo.ops[key]
			if !ok || s.N == 0 {
				p("| %s | not measured | ❌ |\n", title)
				return
			}
			v := fmt.Sprintf("p50 %s, p99 %s", fmtDur(s.P50), fmtDur(s.P99))
			ok = s.P50 <= limit
			if withP99 {
				ok = ok && s.P99 <= limit
			}
			p("| %s | %s | %s |\n", title, v, verdict(ok))
		}
		tgt("token validation p50 ≤ 1 ms", opValidate, targetValidate, false)
		tgt("token issue by re-scope ≤ 5 ms (p50 and p99)", opRescope, targetIssueToken, true)
		tgt("token issue by application credential ≤ 5 ms (p50 and p99)", opAppCred, targetIssueToken, true)
	}
	p("\n")

	p("## Details\n\n")
	p("| operation | server | n | min | p50 | p90 | p99 | max | mean | req/s |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, op := range opTitles {
		for _, r := range rep.results {
			if !measured(r) {
				continue
			}
			s, ok := r.ops[op.key]
			if !ok {
				continue
			}
			title := op.title
			if s.Clients > 1 {
				title = fmt.Sprintf("%s (%d, %v)", op.title, s.Clients, s.Elapsed.Round(time.Second))
			}
			if s.Skipped != "" || s.N == 0 {
				p("| %s | %s | 0 | | | | | | | |\n", title, r.name)
				continue
			}
			rps := float64(s.N) / s.Elapsed.Seconds()
			if v, has := s.RPS(); has {
				rps = v
			}
			p("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %.1f |\n", title, r.name, s.N,
				fmtDur(s.Min), fmtDur(s.P50), fmtDur(s.P90), fmtDur(s.P99), fmtDur(s.Max), fmtDur(s.Mean), rps)
		}
	}
	p("\n")
	for _, r := range rep.results {
		if !measured(r) {
			continue
		}
		p("%s: memory at readiness %s RSS / %s PSS (%d processes); idle after warm-up (waited %v for the CPU to go quiet) %s RSS / %s PSS; after the load %s RSS / %s PSS. ",
			r.name, mib(r.memStart.RSS), mib(r.memStart.PSS), r.memStart.Procs, r.idleWait.Round(time.Second),
			mib(r.memIdle.RSS), mib(r.memIdle.PSS), mib(r.memLoaded.RSS), mib(r.memLoaded.PSS))
		p("Other processes on the machine (and the hypervisor's steal time) took %.0f%% of its CPU during %s's measurements. ", 100*r.others, r.name)
		p("%d requests over %d TCP connections", r.requests, r.dials)
		if r.dials > 0 && r.requests > 2*r.dials {
			p(" (keep-alive)")
		} else {
			p(" (the server closes the connection after each response, so each request pays a TCP connect)")
		}
		if r.retries > 0 {
			p("; %d request(s) were sent again on a new connection because the server had closed the kept-alive one without saying so", r.retries)
		}
		p(".\n\n")
	}

	rep.networkMarkdown(p)

	p("## In-process: nimbo's identity service (no HTTP)\n\n")
	switch {
	case !rep.cfg.inproc:
		p("Not run (-inproc=false).\n\n")
	case rep.inprocErr != "":
		p("Could not run: %s\n\n", oneLine(rep.inprocErr))
	default:
		p("`testing.Benchmark` on `internal/identity` over an embedded etcd in a temp dir; the same functions run with `go test -run '^$' -bench . -benchmem ./test/bench`.\n\n")
		p("| benchmark | what | time/op | B/op | allocs/op |\n|---|---|---|---|---|\n")
		for _, ir := range rep.inproc {
			if ir.err != "" {
				p("| %s | %s | failed: %s | | |\n", ir.bench.name, ir.bench.what, oneLine(ir.err))
				continue
			}
			p("| %s | %s | %s | %d | %d |\n", ir.bench.name, ir.bench.what,
				fmtDur(time.Duration(ir.res.NsPerOp())), ir.res.AllocedBytesPerOp(), ir.res.AllocsPerOp())
		}
		p("\n")
	}

	var problems []string
	for _, r := range rep.results {
		if r.missing != "" {
			problems = append(problems, fmt.Sprintf("**%s**: not measured: %s", r.name, r.missing))
		}
		if r.fatal != "" {
			problems = append(problems, fmt.Sprintf("**%s**: measurements stopped: %s", r.name, r.fatal))
		}
		for _, op := range opTitles {
			s, ok := r.ops[op.key]
			if !ok {
				continue
			}
			if s.Skipped != "" {
				problems = append(problems, fmt.Sprintf("**%s**, %s: not measured: %s", r.name, op.title, s.Skipped))
			}
			if s.FirstError != "" {
				problems = append(problems, fmt.Sprintf("**%s**, %s: %d request(s) failed (%d succeeded); the first:\n%s", r.name, op.title, s.Errors, s.N, s.FirstError))
			}
		}
		for _, n := range r.notes {
			problems = append(problems, fmt.Sprintf("**%s**: %s", r.name, n))
		}
		problems = append(problems, r.net.problems()...)
	}
	if len(problems) > 0 {
		p("## Errors and notes\n\n")
		for _, pr := range problems {
			first, rest, _ := strings.Cut(strings.TrimRight(pr, "\n "), "\n")
			p("- %s\n", first)
			if rest != "" {
				p("\n  ```\n")
				for _, line := range strings.Split(rest, "\n") {
					p("  %s\n", line)
				}
				p("  ```\n")
			}
		}
		p("\n")
	}
	return b.String()
}

// measured reports whether r has measurements (it ran and got past its
// start-up).
func measured(r *result) bool { return r.missing == "" && r.memIdle.Procs > 0 }

// na is the summary cell of a target without measurements.
func na(r *result) string {
	if r.missing != "" {
		return "not measured"
	}
	return "failed (see below)"
}

// verdict marks a target as met or missed.
func verdict(ok bool) string {
	if ok {
		return "✅ met"
	}
	return "❌ missed"
}

// oneLine keeps the first line of s.
func oneLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}
