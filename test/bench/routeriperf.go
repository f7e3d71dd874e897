package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
)

// TCP throughput through SNAT, floating IPs and port forwards (iperf3), for
// the router part of the benchmark (routerbench.go).

// iperfCommand is iperf3 with args, in probe p's namespace (nsenter --net,
// which execs iperf3: the PID is iperf3's) or here when p is nil.
func iperfCommand(ctx context.Context, bin string, p *probeNode, args ...string) *exec.Cmd {
	argv := append([]string{bin}, args...)
	if p != nil {
		argv = append([]string{"nsenter", "--net=" + hostnet.NetnsPath(p.name), bin}, args...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// iperfReport is the part of iperf3 -J's output the benchmark reads.
type iperfReport struct {
	Error string `json:"error"`
	End   struct {
		SumSent struct {
			Retransmits int `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// parseIperf reads iperf3 -J's output: the receiver's bits/s and the
// sender's retransmits.
func parseIperf(b []byte) (float64, int, error) {
	var r iperfReport
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, 0, fmt.Errorf("iperf3 -J output: %v: %.300s", err, b)
	}
	if r.Error != "" {
		return 0, 0, errors.New("iperf3: " + r.Error)
	}
	if r.End.SumReceived.BitsPerSecond <= 0 {
		return 0, 0, fmt.Errorf("iperf3 -J output without end.sum_received.bits_per_second: %.300s", b)
	}
	return r.End.SumReceived.BitsPerSecond, r.End.SumSent.Retransmits, nil
}

// iperfSpec is one iperf3 run: a server in srv (nil: here) bound to bind,
// a client in cli (nil: here) connecting to dst; reverse makes the server
// send.
type iperfSpec struct {
	srv     *probeNode
	bind    netip.AddrPort
	cli     *probeNode
	dst     netip.AddrPort
	reverse bool
}

// iperfOnce runs one measurement and returns the receiver's bits/s and the
// sender's retransmits. It stops the server (by its PID) if it is still
// there afterwards.
func (r *routerRun) iperfOnce(ctx context.Context, bin string, sp iperfSpec) (float64, int, error) {
	secs := max(1, int(math.Round(r.opts.iperfTime.Seconds())))
	sctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+60*time.Second)
	defer cancel()
	srv := iperfCommand(sctx, bin, sp.srv, "-s", "-1", "-B", sp.bind.Addr().String(), "-p", strconv.Itoa(int(sp.bind.Port())), "--forceflush")
	out, err := srv.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	var srvErr strings.Builder
	srv.Stderr = &srvErr
	if err := srv.Start(); err != nil {
		return 0, 0, fmt.Errorf("%s: %v", strings.Join(srv.Args, " "), err)
	}
	exited := make(chan error, 1)
	listening := make(chan struct{})
	var srvOut strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			srvOut.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "Server listening") {
				once.Do(func() { close(listening) })
			}
		}
		exited <- srv.Wait()
	}()
	stopServer := func() {
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = srv.Process.Kill() // the PID this run started
			<-exited
		}
	}
	select {
	case <-listening:
	case err := <-exited:
		return 0, 0, fmt.Errorf("%s exited before listening: %v %s %s", strings.Join(srv.Args, " "), err, srvOut.String(), srvErr.String())
	case <-time.After(10 * time.Second):
		_ = srv.Process.Kill()
		<-exited
		return 0, 0, fmt.Errorf("%s: not listening after 10 s", strings.Join(srv.Args, " "))
	}
	args := []string{"-c", sp.dst.Addr().String(), "-p", strconv.Itoa(int(sp.dst.Port())), "-t", strconv.Itoa(secs), "-J", "--connect-timeout", "5000"}
	if sp.reverse {
		args = append(args, "-R")
	}
	cli := iperfCommand(sctx, bin, sp.cli, args...)
	b, err := cli.Output()
	stopServer()
	bps, retrans, perr := parseIperf(b)
	if perr != nil {
		return 0, 0, fmt.Errorf("%s: %v (exit: %v)", strings.Join(cli.Args, " "), perr, err)
	}
	return bps, retrans, nil
}

// iperfBench measures TCP throughput through SNAT, a floating IP and a port
// forward, and the same paths routed without NAT, on s's router; pa gets a
// floating IP, pb a TCP forward on holder.
func (r *routerRun) iperfBench(ctx context.Context, s *l3Sample, pa, pb *probeNode, fipC *udpCatcher, holder fipInfo, holderIP netip.Addr) *iperfResult {
	ir := &iperfResult{}
	opts, tok := r.opts, r.tok
	if opts.iperfRuns <= 0 {
		ir.skipped = "-router-iperf-runs 0"
		return ir
	}
	bin, err := exec.LookPath(opts.iperf3)
	if err != nil {
		ir.skipped = fmt.Sprintf("no iperf3 (%v): scripts/bench installs Debian's package", err)
		return ir
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		ir.skipped = fmt.Sprintf("no nsenter (%v)", err)
		return ir
	}
	dctx := context.WithoutCancel(ctx)
	fail := func(format string, a ...any) *iperfResult {
		ir.skipped = fmt.Sprintf(format, a...)
		return ir
	}
	// Probe A's floating IP, checked with a datagram.
	fip, err := r.nc.createFIP(ctx, tok, r.publicID, pa.port.ID)
	if err != nil {
		return fail("creating probe A's floating IP failed:\n%v", err)
	}
	defer func() { _ = r.nc.del(dctx, tok, "/floatingips/"+fip.ID) }()
	fipAddr, err := netip.ParseAddr(fip.IP)
	if err != nil {
		return fail("%v", err)
	}
	payload := fmt.Sprintf("nimbo-bench iperf-fip %d", r.runID)
	if _, err := firstPacket(udpSender{dst: netip.AddrPortFrom(fipAddr, portFIP), payload: []byte(payload), arp: r.arpKick(fipAddr)},
		fipC, nil, opts.timeout, nil, nil); err != nil {
		return fail("probe A's floating IP %s passes no datagram: %v", fip.IP, err)
	}
	// Probe B's TCP forward.
	pfID, err := r.nc.createPF(ctx, tok, holder.ID, "tcp", pb.port, portIperf, portIperfPF)
	if err != nil {
		return fail("creating the TCP forward to probe B failed:\n%v", err)
	}
	defer func() { _ = r.nc.del(dctx, tok, "/floatingips/"+holder.ID+"/port_forwardings/"+pfID) }()
	// The tenant subnet routed here through the router's gateway, for the
	// paths without NAT.
	route := hostnet.Route{Dst: s.cidr, Gw: s.router.gatewayIP(), Dev: r.bridge}
	if err := r.self.EnsureRoute(ctx, route); err != nil {
		return fail("adding the route %s here: %v", route, err)
	}
	defer func() {
		if err := r.self.DeleteRoute(dctx, route); err != nil {
			r.res.notes = append(r.res.notes, fmt.Sprintf("removing the route %s here: %v", route, err))
		}
	}()
	settle(ctx, r.pid, 10*time.Second)

	pc := s.probe
	here := r.res.publicGW
	ap := func(a netip.Addr, port int) netip.AddrPort { return netip.AddrPortFrom(a, uint16(port)) }
	type path struct {
		p  *iperfPath
		sp iperfSpec
	}
	paths := []path{
		{&iperfPath{key: "route_in", title: "routed, no NAT: here → probe's fixed IP"},
			iperfSpec{srv: pa, bind: ap(pa.addr(), portIperf), dst: ap(pa.addr(), portIperf)}},
		{&iperfPath{key: "fip", title: "floating IP (1:1 DNAT): here → floating IP → probe", baseline: "route_in"},
			iperfSpec{srv: pa, bind: ap(pa.addr(), portIperf), dst: ap(fipAddr, portIperf)}},
		{&iperfPath{key: "pf", title: "port forward (DNAT by port): here → floating IP:port → probe", baseline: "route_in"},
			iperfSpec{srv: pb, bind: ap(pb.addr(), portIperf), dst: ap(holderIP, portIperfPF)}},
		{&iperfPath{key: "route_out", title: "routed, no NAT: probe → here (iperf3 -R, connection opened from here)"},
			iperfSpec{srv: pc, bind: ap(pc.addr(), portIperf), dst: ap(pc.addr(), portIperf), reverse: true}},
		{&iperfPath{key: "snat", title: "SNAT: probe → here (" + here.String() + "), source translated to the router's gateway IP", baseline: "route_out"},
			iperfSpec{bind: ap(here, portIperfNS), cli: pc, dst: ap(here, portIperfNS)}},
	}
	for _, p := range paths {
		ir.paths = append(ir.paths, p.p)
	}
	r.logf("routers: iperf3, %d paths × %d runs of %v", len(paths), opts.iperfRuns, opts.iperfTime)
	for range opts.iperfRuns {
		for _, p := range paths {
			if ctx.Err() != nil {
				return ir
			}
			if p.p.err != "" {
				continue
			}
			bps, retrans, err := r.iperfOnce(ctx, bin, p.sp)
			if err != nil {
				p.p.err = err.Error()
				continue
			}
			p.p.runs = append(p.p.runs, bps)
			p.p.retrans = append(p.p.retrans, retrans)
		}
	}
	return ir
}

// median of xs (0 if empty); the mean of the middle two for an even count.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
