package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/agent"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/probe"
)

// The network part of the benchmark (nimbo only: a Neutron to compare with
// would need a whole OpenStack). After the identity measurements, on the same
// nimbo, it makes one network with a /16 subnet (DHCP on), lifts the admin
// project's port quota, and then at each checkpoint (1,000 and 10,000 ports
// by default) fills the network up to that many ports with bulk creates from
// several clients, waits for nimbo to go quiet, and measures:
//
//   - probes: a port bound to this host with device_owner network:probe,
//     created over the API; the time until GET shows it ACTIVE (polled every
//     -probe-poll) and until a DHCP exchange from the probe's namespace
//     (nclient4 on eth0, as `nimbo probe create` does) is answered with the
//     port's address; then the probes are deleted (timed until the agent has
//     removed their namespaces). Also `nimbo probe create` itself, run as a
//     user would with the OS_* variables of nimbo's openrc;
//   - GET /v2.0/ports?limit=100;
//   - port create (POST /v2.0/ports, one port, admin token, keep-alive),
//     sequential and from several clients, with the CPU nimbo spent per
//     port (API and agent, counted until nimbo is quiet again).
//
// The ports these measurements create count towards the next checkpoint.

// Keys of netCheckpoint.ops, in report order.
const (
	opProbePost     = "probe_post"
	opProbeActive   = "probe_active"
	opProbeDHCP     = "probe_dhcp"
	opProbeExchange = "probe_exchange"
	opProbeCLI      = "probe_cli"
	opProbeDelete   = "probe_delete"
	opPortList      = "port_list"
	opPortCreate    = "port_create"
	opPortLoad      = "port_create_load"
)

// netOpTitles names the network operations in the report.
var netOpTitles = []struct{ key, title string }{
	{opPortCreate, "port create, 1 client"},
	{opPortLoad, "port create, concurrent clients"},
	{opPortList, "port list, `?limit=100`"},
	{opProbePost, "probe: POST answered"},
	{opProbeActive, "probe: POST → status ACTIVE (GET polled)"},
	{opProbeDHCP, "probe: POST → DHCP answered (wired and DHCP answered)"},
	{opProbeExchange, "probe: the DHCP exchange alone"},
	{opProbeCLI, "probe: `nimbo probe create` (whole command)"},
	{opProbeDelete, "probe: DELETE → namespace removed"},
}

// fillResult is how the ports up to a checkpoint were created.
type fillResult struct {
	ports    int // created
	requests int // bulk requests
	elapsed  time.Duration
	cpu      time.Duration // nimbo's CPU time during the fill
}

// netCheckpoint is what was measured with about that many ports.
type netCheckpoint struct {
	target     int           // the checkpoint asked for
	ports      int           // ports in the cloud when the measurements started
	portsAfter int           // and when they ended
	fill       fillResult    // the fill up to ports
	quiet      time.Duration // how long nimbo's CPU took to go quiet after the fill
	ops        map[string]stats
	polls      int           // GETs polled until the probes were ACTIVE
	createCPU  time.Duration // nimbo's CPU time per created port (API + agent, until quiet)
	creates    int
	mem        memSample // after the probes and the list, idle
	// others is the share of the machine's CPU other processes used from
	// the probes to the end of the port creates.
	others float64
}

// netResult is the network part of nimbo's run.
type netResult struct {
	skipped     string // why it did not run
	netns       string // the named namespace nimbo and the driver run in
	fatal       string // why it stopped early
	networkID   string
	subnetCIDR  string
	dhcpReady   time.Duration // subnet create → the network's DHCP port ACTIVE
	checkpoints []*netCheckpoint
	memBefore   memSample // after the identity load
	memAfter    memSample // after the network load, once quiet
	afterWait   time.Duration
	elapsed     time.Duration
	notes       []string
	// log sums up the warnings and errors nimbo logged during the network
	// part, most frequent first.
	log []logGroup
}

// clockTick is the unit of /proc/PID/stat's CPU times (USER_HZ).
const clockTick = 10 * time.Millisecond

// probeBody is the port a probe is, as `nimbo probe create` makes it.
func probeBody(networkID, host, name string) map[string]any {
	return map[string]any{"network_id": networkID, "name": name, "device_owner": "network:probe",
		"device_id": "probe-" + host, "binding:host_id": host}
}

// ownNetns returns the name of the named network namespace (/run/netns/NAME,
// as `ip netns add` makes them) this process runs in. The network part runs
// only in one: nimbo's agent builds bridges and firewall tables in the
// namespace nimbo runs in, which must never be the host's own.
func ownNetns() (string, error) {
	self, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(hostnet.NetnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	for _, e := range entries {
		if fi, err := os.Stat(hostnet.NetnsPath(e.Name())); err == nil && os.SameFile(self, fi) {
			return e.Name(), nil
		}
	}
	return "", fmt.Errorf("this process's network namespace is not one of %s/*: run the driver through scripts/bench, or with `nsenter --net=/run/netns/NS`", hostnet.NetnsDir)
}

// runNetwork measures nimbo's network service. c is the identity client
// (for the openrc's sake only), admin a project-scoped admin token, pid
// nimbo's process.
func runNetwork(ctx context.Context, cfg config, admin tokenInfo, pid int, logf func(string, ...any)) *netResult {
	nr := &netResult{subnetCIDR: cfg.subnetCIDR}
	var err error
	start := time.Now()
	logPath := cfg.nimboLog()
	var logFrom int64
	if fi, err := os.Stat(logPath); err == nil {
		logFrom = fi.Size()
	}
	defer func() {
		nr.elapsed = time.Since(start)
		var err error
		if nr.log, err = scanLog(logPath, logFrom); err != nil {
			nr.notes = append(nr.notes, "reading nimbo's log: "+err.Error())
		}
	}()
	if nr.netns, err = ownNetns(); err != nil {
		nr.skipped = err.Error()
		logf("network: not measured: %s", nr.skipped)
		return nr
	}
	fail := func(format string, a ...any) *netResult {
		nr.fatal = fmt.Sprintf(format, a...)
		logf("network: %s", nr.fatal)
		return nr
	}
	nc := netClient{newClient("http://"+cfg.nimboListen+"/networking/v2.0", max(cfg.fillClients, cfg.portClients)+4)}
	defer nc.close()
	tok := admin.ID
	if nr.memBefore, err = measureMem(pid); err != nil {
		return fail("memory before the network load: %v", err)
	}

	// The network, its subnet, and no port quota for the admin project
	// (Neutron's default is 500 ports).
	if nr.networkID, err = nc.createNetwork(ctx, tok, "bench-net"); err != nil {
		return fail("creating the network failed:\n%v", err)
	}
	t0 := time.Now()
	if _, err = nc.createSubnet(ctx, tok, nr.networkID, "bench-subnet", cfg.subnetCIDR); err != nil {
		return fail("creating the subnet failed:\n%v", err)
	}
	if err := nc.setQuota(ctx, tok, admin.ProjectID, "port", -1); err != nil {
		return fail("lifting the admin project's port quota failed:\n%v", err)
	}
	// The agent makes the network's DHCP port and marks it ACTIVE once its
	// server runs: wait for that, so the probes find DHCP up.
	dhcpQuery := url.Values{"network_id": {nr.networkID}, "device_owner": {"network:dhcp"}}
	for {
		ps, err := nc.listPorts(ctx, tok, dhcpQuery)
		if err != nil {
			return fail("listing the network's DHCP port failed:\n%v", err)
		}
		if len(ps) == 1 && ps[0].Status == "ACTIVE" {
			break
		}
		if time.Since(t0) > 30*time.Second {
			return fail("the agent did not make the network's DHCP port ACTIVE within 30 s (GET %s/ports?%s: %d port(s))", nc.base, dhcpQuery.Encode(), len(ps))
		}
		time.Sleep(time.Millisecond)
	}
	nr.dhcpReady = time.Since(t0)
	logf("network: network %s, subnet %s, DHCP port ACTIVE %v after the subnet create", nr.networkID, cfg.subnetCIDR, nr.dhcpReady.Round(time.Millisecond))

	openrcEnv, err := readOpenrc(cfg.nimboOpenrc())
	if err != nil {
		nr.notes = append(nr.notes, "`nimbo probe create` not measured: reading nimbo's openrc: "+err.Error())
	}

	ports := 1 // the DHCP port
	named := 0 // ports named bench-N so far
	runID := time.Now().Unix()
	newAttrs := func() map[string]any {
		named++
		return map[string]any{"network_id": nr.networkID, "name": fmt.Sprintf("bench-%d", named)}
	}
	for _, target := range cfg.checkpoints {
		cp := &netCheckpoint{target: target, ops: map[string]stats{}}
		nr.checkpoints = append(nr.checkpoints, cp)
		if need := target - ports; need > 0 {
			logf("network: filling the network with %d ports (bulk requests of %d from %d clients)", need, cfg.fillBatch, cfg.fillClients)
			cpu0 := cpuTicks(pid)
			f, err := fill(ctx, nc, tok, need, cfg.fillBatch, cfg.fillClients, newAttrs)
			f.cpu = time.Duration(cpuTicks(pid)-cpu0) * clockTick
			cp.fill = f
			ports += f.ports
			if err != nil {
				return fail("filling the network up to %d ports failed after %d:\n%v", target, ports, err)
			}
			logf("network: %d ports in %v (%.0f ports/s)", f.ports, f.elapsed.Round(time.Millisecond), float64(f.ports)/f.elapsed.Seconds())
		}
		cp.quiet = settle(ctx, pid, 60*time.Second)
		cp.ports = ports
		if ctx.Err() != nil {
			return fail("interrupted")
		}

		cpuStart := snapshotCPU(pid)
		// Probes, with the agent idle and exactly cp.ports ports.
		logf("network: %d probes at %d ports", cfg.probeN, ports)
		if err := measureProbes(ctx, cfg, nc, tok, nr.networkID, cp); err != nil {
			return fail("%v", err)
		}
		if openrcEnv != nil && cfg.probeCLIN > 0 {
			logf("network: %d × `nimbo probe create` at %d ports", cfg.probeCLIN, ports)
			if err := measureProbeCLI(ctx, cfg, nc, tok, nr.networkID, openrcEnv, fmt.Sprintf("bench-cli-%d-%d", runID, target), cp); err != nil {
				return fail("%v", err)
			}
		}

		logf("network: GET /ports?limit=100 at %d ports", ports)
		cp.ops[opPortList] = sequential(ctx, budget{N: cfg.listN, Time: cfg.opTime}, func(ctx context.Context, _ int) error {
			got, err := nc.listPorts(ctx, tok, url.Values{"limit": {"100"}})
			if err == nil && len(got) != min(100, ports) {
				err = fmt.Errorf("GET %s/ports?limit=100 with %d ports: %d ports in the answer", nc.base, ports, len(got))
			}
			return err
		})
		if cp.mem, err = measureMem(pid); err != nil {
			return fail("memory at %d ports: %v", ports, err)
		}

		// Port creates: sequential, then concurrent; nimbo's CPU per port
		// is counted until it is quiet again (the agent reconciles after
		// the API has answered).
		logf("network: port create at %d ports (up to %d samples or %v, then %d from %d clients)", ports, cfg.portN, cfg.opTime, cfg.portLoadN, cfg.portClients)
		cpu0 := cpuTicks(pid)
		var created atomic.Int64
		s := sequential(ctx, budget{N: cfg.portN, Time: cfg.opTime}, func(ctx context.Context, _ int) error {
			_, err := nc.createPort(ctx, tok, newAttrs())
			if err == nil {
				created.Add(1)
			}
			return err
		})
		cp.ops[opPortCreate] = s
		if s.FirstError == "" {
			var mu sync.Mutex
			cp.ops[opPortLoad] = concurrentN(ctx, cfg.portClients, cfg.portLoadN, cfg.opTime, func(ctx context.Context, _, _ int) error {
				mu.Lock()
				attrs := newAttrs()
				mu.Unlock()
				_, err := nc.createPort(ctx, tok, attrs)
				if err == nil {
					created.Add(1)
				}
				return err
			})
		}
		cp.others = othersShare(cpuStart, snapshotCPU(pid))
		settle(ctx, pid, 60*time.Second)
		cp.creates = int(created.Load())
		ports += cp.creates
		cp.portsAfter = ports
		if cp.creates > 0 {
			cp.createCPU = time.Duration(cpuTicks(pid)-cpu0) * clockTick / time.Duration(cp.creates)
		}
		for _, k := range []string{opPortCreate, opPortLoad} {
			if cp.ops[k].FirstError != "" {
				return fail("port create at %d ports failed; see below", cp.ports)
			}
		}
	}
	nr.afterWait = settle(ctx, pid, 30*time.Second)
	if nr.memAfter, err = measureMem(pid); err != nil {
		nr.notes = append(nr.notes, "memory after the network load: "+err.Error())
	}
	logf("network: done, %d ports; RSS %s", ports, mib(nr.memAfter.RSS))
	return nr
}

// fill creates n ports in bulk requests of batch ports from clients
// concurrent clients.
func fill(ctx context.Context, nc netClient, token string, n, batch, clients int, attrs func() map[string]any) (fillResult, error) {
	var (
		mu       sync.Mutex
		next     int
		res      fillResult
		firstErr error
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				mu.Lock()
				k := min(batch, n-next)
				next += k
				body := make([]map[string]any, k)
				for i := range body {
					body[i] = attrs()
				}
				mu.Unlock()
				if k <= 0 {
					return
				}
				err := nc.createPorts(ctx, token, body)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					cancel()
				} else {
					res.ports += k
					res.requests++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if firstErr == nil && ctx.Err() != nil && res.ports < n {
		firstErr = ctx.Err()
	}
	return res, firstErr
}

// measureProbes creates cfg.probeN probes one after the other and times,
// from the POST: its answer, status ACTIVE, and a DHCP exchange from the
// probe's namespace answered with the port's address. Then it deletes them,
// timing each until the agent has removed its namespace. A failure stops
// the probes and is recorded (request and response) in cp.ops.
func measureProbes(ctx context.Context, cfg config, nc netClient, token, networkID string, cp *netCheckpoint) error {
	var post, active, answered, exchange []time.Duration
	var made []string
	var firstErr error
	start := time.Now()
	for i := 0; i < cfg.probeN && ctx.Err() == nil; i++ {
		if i >= minSamples && time.Since(start) > cfg.opTime {
			break
		}
		t0 := time.Now()
		p, err := nc.createPort(ctx, token, probeBody(networkID, cfg.host, fmt.Sprintf("bench-probe-%d-%d", cp.target, i)))
		if err != nil {
			firstErr = err
			break
		}
		made = append(made, p.ID)
		tPost := time.Since(t0)
		status := p.Status
		for status != "ACTIVE" && err == nil {
			if time.Since(t0) > cfg.probeTimeout {
				err = fmt.Errorf("probe port %s (GET %s/ports/%s) not ACTIVE %v after its create: status %q (host %s)", p.ID, nc.base, p.ID, cfg.probeTimeout, status, cfg.host)
				break
			}
			time.Sleep(cfg.probePoll)
			cp.polls++
			status, err = nc.portStatus(ctx, token, p.ID)
		}
		if err != nil {
			firstErr = err
			break
		}
		tActive := time.Since(t0)
		ns := agent.ProbeNetns(cfg.netnsPrefix, p.ID)
		lease, err := probe.DHCPLease(ctx, ns)
		if err != nil {
			firstErr = fmt.Errorf("probe port %s (%s, MAC %s) is ACTIVE but the DHCP exchange from namespace %s, interface %s, failed after %v: %w",
				p.ID, p.ip(), p.MAC, ns, agent.ProbeIface, (time.Since(t0) - tActive).Round(time.Millisecond), err)
			break
		}
		tDHCP := time.Since(t0)
		if lease.String() != p.ip() {
			firstErr = fmt.Errorf("probe port %s: DHCP answered %s, but the port's address is %s", p.ID, lease, p.ip())
			break
		}
		post, active, answered, exchange = append(post, tPost), append(active, tActive), append(answered, tDHCP), append(exchange, tDHCP-tActive)
	}
	elapsed := time.Since(start)
	for k, d := range map[string][]time.Duration{opProbePost: post, opProbeActive: active, opProbeDHCP: answered, opProbeExchange: exchange} {
		s := summarize(d)
		s.Elapsed, s.Clients = elapsed, 1
		cp.ops[k] = s
	}
	if firstErr != nil {
		cp.ops[opProbeDHCP] = cp.ops[opProbeDHCP].failed(firstErr)
	}
	del := deleteProbes(ctx, cfg, nc, token, made)
	cp.ops[opProbeDelete] = del
	if firstErr != nil {
		return fmt.Errorf("probes at %d ports failed; see below", cp.ports)
	}
	if del.FirstError != "" {
		return fmt.Errorf("deleting the probes at %d ports failed; see below", cp.ports)
	}
	return nil
}

// deleteProbes deletes probe ports one after the other, each timed until
// its namespace is gone. It goes on after a failure (to delete the rest)
// and records the first.
func deleteProbes(ctx context.Context, cfg config, nc netClient, token string, ids []string) stats {
	var lat []time.Duration
	var errs int
	var firstErr error
	start := time.Now()
	for _, id := range ids {
		t0 := time.Now()
		// Not ctx: probes are deleted even when the run is interrupted.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err := nc.deletePort(dctx, token, id)
		cancel()
		ns := hostnet.NetnsPath(agent.ProbeNetns(cfg.netnsPrefix, id))
		for err == nil {
			if _, serr := os.Stat(ns); errors.Is(serr, os.ErrNotExist) {
				break
			}
			if time.Since(t0) > cfg.probeTimeout {
				err = fmt.Errorf("probe port %s deleted (DELETE %s/ports/%s answered 204) but namespace %s still exists %v later", id, nc.base, id, ns, cfg.probeTimeout)
				break
			}
			time.Sleep(cfg.probePoll)
		}
		if err != nil {
			errs++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		lat = append(lat, time.Since(t0))
	}
	s := summarize(lat)
	s.Elapsed, s.Clients, s.Errors = time.Since(start), 1, errs
	if firstErr != nil {
		s.FirstError = firstErr.Error()
	}
	return s
}

// measureProbeCLI times `nimbo probe create` run as a user would (OS_*
// variables of nimbo's openrc): it authenticates (password), finds the
// network, creates the port, polls it until ACTIVE and does a DHCP exchange.
// The probes are deleted afterwards (not timed here).
func measureProbeCLI(ctx context.Context, cfg config, nc netClient, token, networkID string, env []string, namePrefix string, cp *netCheckpoint) error {
	var lat []time.Duration
	var ids []string
	var firstErr error
	start := time.Now()
	for i := 0; i < cfg.probeCLIN && ctx.Err() == nil; i++ {
		name := fmt.Sprintf("%s-%d", namePrefix, i)
		argv := []string{cfg.nimboBin, "probe", "create", "--host", cfg.host, "--netns-prefix", cfg.netnsPrefix, "--name", name, networkID}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		t0 := time.Now()
		err := cmd.Run()
		d := time.Since(t0)
		cancel()
		// Whatever happened, find the probe to delete it.
		if ps, lerr := nc.listPorts(context.WithoutCancel(ctx), token, url.Values{"name": {name}}); lerr == nil {
			for _, p := range ps {
				ids = append(ids, p.ID)
			}
		}
		if err == nil && !strings.Contains(out.String(), "DHCP answered with") {
			err = errors.New("no \"DHCP answered with\" line")
		}
		if err != nil {
			firstErr = fmt.Errorf("%s (with the OS_* variables of nimbo's openrc): %v after %v; output:\n%s",
				strings.Join(argv, " "), err, d.Round(time.Millisecond), strings.TrimSpace(out.String()))
			break
		}
		lat = append(lat, d)
	}
	s := summarize(lat)
	s.Elapsed, s.Clients = time.Since(start), 1
	if firstErr != nil {
		s = s.failed(firstErr)
	}
	cp.ops[opProbeCLI] = s
	del := deleteProbes(ctx, cfg, nc, token, ids)
	if firstErr != nil {
		return fmt.Errorf("`nimbo probe create` at %d ports failed; see below", cp.ports)
	}
	if del.FirstError != "" {
		s := cp.ops[opProbeDelete]
		s.Errors, s.FirstError = s.Errors+del.Errors, del.FirstError
		cp.ops[opProbeDelete] = s
		return fmt.Errorf("deleting the probes of `nimbo probe create` at %d ports failed; see below", cp.ports)
	}
	return nil
}

// readOpenrc returns this process's environment without OS_* and proxy
// variables, plus the `export K=V` lines of an openrc nimbo wrote.
func readOpenrc(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := cleanEnv()
	sc := bufio.NewScanner(f)
	found := false
	for sc.Scan() {
		kv, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "export ")
		if !ok {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
			v = strings.ReplaceAll(v[1:len(v)-1], `'\''`, "'")
		}
		env = append(env, k+"="+v)
		found = found || k == "OS_PASSWORD"
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%s has no OS_PASSWORD", path)
	}
	return env, nil
}

// logGroup is a kind of warning or error in nimbo's log: its level, message
// and error, how often it came, and the first such line.
type logGroup struct {
	key   string
	count int
	first string
	err   bool // level=ERROR
}

// logField reads key=value or key="quoted value" from a log/slog text line.
func logField(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		for j := 1; j < len(v); j++ {
			switch v[j] {
			case '\\':
				j++
			case '"':
				if u, err := strconv.Unquote(v[:j+1]); err == nil {
					return u
				}
				return v[1:j]
			}
		}
		return v[1:]
	}
	v, _, _ = strings.Cut(v, " ")
	return v
}

// scanLog groups the WARN and ERROR lines of nimbo's log from offset on by
// level, message and error.
func scanLog(path string, offset int64) ([]logGroup, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return nil, err
	}
	var groups []logGroup
	index := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		level := logField(line, "level")
		if level != "WARN" && level != "ERROR" {
			continue
		}
		key := level + " " + logField(line, "msg")
		if e := logField(line, "err"); e != "" {
			key += ": " + e
		}
		i, ok := index[key]
		if !ok {
			i = len(groups)
			index[key] = i
			first := line
			if len(first) > 600 {
				first = first[:600] + "…"
			}
			groups = append(groups, logGroup{key: key, first: first, err: level == "ERROR"})
		}
		groups[i].count++
	}
	slices.SortStableFunc(groups, func(a, b logGroup) int { return b.count - a.count })
	return groups, sc.Err()
}

// removeNetns deletes the named namespaces nimbo's agent left behind
// (stopping nimbo leaves its data plane in place): every /run/netns/PREFIX-*.
func removeNetns(prefix string) ([]string, error) {
	names, err := hostnet.ListNetns(prefix + "-")
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, n := range names {
		if err := hostnet.DeleteNetns(context.Background(), n); err != nil {
			errs = append(errs, err)
		}
	}
	return names, errors.Join(errs...)
}
