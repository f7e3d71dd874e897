package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
)

// config is the command line.
type config struct {
	nimboBin    string
	nimboListen string
	// nimboLogLevel is nimbo's --log-level (debug shows each agent pass's
	// phases in the kept logs; it slows nimbo down).
	nimboLogLevel string

	keystoneUWSGI    string // uwsgi binary with the python3 plugin built in
	keystoneIni      string // the uwsgi ini this run uses
	keystoneStockIni string // Debian's, to report the differences
	keystoneListen   string
	keystoneVersion  string
	keystoneKDF      string
	keystoneMissing  string

	password string
	workDir  string
	out      string
	inproc   bool

	passwordN, validateN, rescopeN, appCredN, provisionN int
	opTime, loadTime, warmup, readyTimeout               time.Duration
	clients                                              int

	// The network part (nimbo only; see netbench.go).
	network                       bool
	host, netnsPrefix             string // nimbo up --host, --netns-prefix
	subnetCIDR                    string
	checkpoints                   []int // ports in the cloud at which to measure
	fillBatch, fillClients        int
	portN, portLoadN, portClients int
	listN, probeN, probeCLIN      int
	probePoll, probeTimeout       time.Duration

	// The router part (nimbo only; see routerbench.go), with its result.
	routers *routerOptions
}

// nimboData is nimbo's data dir; nimboOpenrc the admin credentials it writes.
func (cfg config) nimboData() string   { return filepath.Join(cfg.workDir, "nimbo-data") }
func (cfg config) nimboOpenrc() string { return filepath.Join(cfg.nimboData(), "openrc") }

// nimboLog is where nimbo's output goes (see runTarget).
func (cfg config) nimboLog() string { return filepath.Join(cfg.workDir, "nimbo.log") }

func main() {
	// testing.Benchmark (the in-process benchmarks) needs the testing flags
	// registered; this program's own flags live in their own set.
	testing.Init()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, measures, and writes the report to stdout and cfg.out.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, rc := parseFlags(args, stderr)
	if rc >= 0 {
		return rc
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rep := &report{cfg: cfg, started: time.Now(), host: hostInfo()}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", a...) }

	if cfg.inproc {
		logf("in-process benchmarks of internal/identity (about 1 s each)")
		dir := filepath.Join(cfg.workDir, "inproc")
		res, err := runInproc(ctx, dir)
		if err != nil {
			rep.inprocErr = err.Error()
			logf("in-process benchmarks: %v", err)
		}
		rep.inproc = res
		_ = os.RemoveAll(dir)
	}

	nimbo := target{name: "nimbo", base: "http://" + cfg.nimboListen + "/v3"}
	nimbo.desc, nimbo.argv = describeNimbo(cfg)
	nimbo.env = cleanEnv()
	nimbo.network = cfg.network
	rep.results = append(rep.results, runTarget(ctx, cfg, nimbo, logf))
	// Stopping nimbo leaves its data plane in place: remove the namespaces
	// its agent made (scripts/bench removes them too, and the bridges and
	// firewall tables go with its namespace).
	if names, err := removeNetns(cfg.netnsPrefix); err != nil {
		rep.results[0].notes = append(rep.results[0].notes, "removing the agent's namespaces: "+err.Error())
	} else if len(names) > 0 {
		logf("nimbo: removed the %d namespace(s) its agent left: %s", len(names), strings.Join(names, " "))
	}

	if cfg.routers.enabled && ctx.Err() == nil && rep.results[0].fatal == "" {
		cfg.routers.result = runRouters(ctx, cfg, logf)
	}

	ks := target{name: "Keystone", base: "http://" + cfg.keystoneListen + "/v3", missing: cfg.keystoneMissing}
	if ks.missing == "" {
		ks.desc, ks.argv, ks.missing = describeKeystone(cfg)
		ks.env = cleanEnv()
	}
	rep.results = append(rep.results, runTarget(ctx, cfg, ks, logf))
	rep.finished = time.Now()

	text := rep.markdown()
	fmt.Fprint(stdout, text)
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(text), 0o644); err != nil {
			fmt.Fprintf(stderr, "bench: writing the report: %v\n", err)
			return 1
		}
		logf("report written to %s", cfg.out)
	}
	if ctx.Err() != nil {
		return 130
	}
	if rep.results[0].fatal != "" {
		return 1 // nimbo itself could not be measured
	}
	if nr := rep.results[0].net; nr != nil && nr.fatal != "" {
		return 1 // nimbo's network service failed (scripts/bench then keeps the logs)
	}
	if rr := cfg.routers.result; rr != nil && rr.fatal != "" {
		return 1
	}
	return 0
}

// parseFlags parses the command line; rc >= 0 means exit with it.
func parseFlags(args []string, stderr io.Writer) (config, int) {
	var cfg config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: bench -nimbo PATH [flags]\n\n"+
			"Measures nimbo and Keystone side by side, then nimbo's network service, and writes a\n"+
			"markdown report. Run it inside a named network namespace of its own\n"+
			"(nsenter --net=/run/netns/NS bench ...): it starts both servers on 127.0.0.1 there, and\n"+
			"nimbo's agent builds its bridges and firewall there. scripts/bench does all of that.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.nimboBin, "nimbo", "", "nimbo binary (required)")
	fs.StringVar(&cfg.nimboListen, "nimbo-listen", "127.0.0.1:5000", "address nimbo listens on")
	fs.StringVar(&cfg.nimboLogLevel, "nimbo-log-level", "info", "nimbo's --log-level (debug logs each agent pass's phases, and slows nimbo down; keep the logs with BENCH_KEEP=1)")
	fs.StringVar(&cfg.keystoneUWSGI, "keystone-uwsgi", "/usr/bin/uwsgi_python3", "uwsgi binary that runs Keystone (as Debian's init script picks it)")
	fs.StringVar(&cfg.keystoneIni, "keystone-ini", "", "uwsgi ini for Keystone (made from Debian's by scripts/bench)")
	fs.StringVar(&cfg.keystoneStockIni, "keystone-stock-ini", "/etc/keystone/keystone-uwsgi.ini", "Debian's uwsgi ini, to list how -keystone-ini differs")
	fs.StringVar(&cfg.keystoneListen, "keystone-listen", "127.0.0.1:5001", "address Keystone listens on (--http-socket)")
	fs.StringVar(&cfg.keystoneVersion, "keystone-version", "", "Keystone's Debian package version, for the report")
	fs.StringVar(&cfg.keystoneKDF, "keystone-kdf", "", "Keystone's password hashing as configured, for the report")
	fs.StringVar(&cfg.keystoneMissing, "keystone-missing", "", "why Keystone cannot be measured (it is then skipped and the report says so)")
	fs.StringVar(&cfg.password, "password", "", "admin password of both clouds (random if empty; Keystone must have been bootstrapped with it)")
	fs.StringVar(&cfg.workDir, "work", "", "directory for data and logs (required)")
	fs.StringVar(&cfg.out, "out", "", "also write the report to this file")
	fs.BoolVar(&cfg.inproc, "inproc", true, "run the in-process benchmarks of internal/identity")
	fs.IntVar(&cfg.passwordN, "password-n", 40, "max samples of token issue by password")
	fs.IntVar(&cfg.validateN, "validate-n", 1000, "max samples of sequential token validation")
	fs.IntVar(&cfg.rescopeN, "rescope-n", 300, "max samples of token re-scope")
	fs.IntVar(&cfg.appCredN, "appcred-n", 100, "max samples of token issue by application credential")
	fs.IntVar(&cfg.provisionN, "provision-n", 20, "max samples of project + user + role assignment")
	fs.DurationVar(&cfg.opTime, "op-time", 20*time.Second, "time budget of each sequential measurement (at least 5 samples are taken)")
	fs.DurationVar(&cfg.loadTime, "load-time", 10*time.Second, "duration of the concurrent validation load")
	fs.IntVar(&cfg.clients, "clients", 4, "concurrent clients of the validation load")
	fs.DurationVar(&cfg.warmup, "warmup", 3*time.Second, "duration of the concurrent validation warm-up before the idle memory sample")
	fs.DurationVar(&cfg.readyTimeout, "ready-timeout", 3*time.Minute, "how long a server may take to answer GET /v3")
	fs.BoolVar(&cfg.network, "network", true, "measure nimbo's network service too (ports, probes, DHCP)")
	fs.StringVar(&cfg.host, "host", "", "host ID nimbo's agent runs as (nimbo up --host; default bench-RANDOM)")
	fs.StringVar(&cfg.netnsPrefix, "netns-prefix", "", "prefix of the namespaces nimbo's agent makes (nimbo up --netns-prefix; default nbench-RANDOM); every /run/netns/PREFIX-* is deleted at the end")
	fs.StringVar(&cfg.subnetCIDR, "subnet", "10.128.0.0/16", "CIDR of the benchmark network's subnet")
	checkpoints := fs.String("ports", "1000,10000", "comma-separated numbers of ports in the cloud at which the network measurements run")
	fs.IntVar(&cfg.fillBatch, "fill-batch", 100, "ports per bulk create request when filling the network")
	fs.IntVar(&cfg.fillClients, "fill-clients", 8, "concurrent clients filling the network")
	fs.IntVar(&cfg.portN, "port-n", 300, "max samples of sequential port create at each checkpoint")
	fs.IntVar(&cfg.portLoadN, "port-load-n", 1000, "port creates from -port-clients concurrent clients at each checkpoint")
	fs.IntVar(&cfg.portClients, "port-clients", 4, "concurrent clients creating ports")
	fs.IntVar(&cfg.listN, "list-n", 50, "max samples of GET /v2.0/ports?limit=100 at each checkpoint")
	fs.IntVar(&cfg.probeN, "probe-n", 20, "probes created (API, timed until ACTIVE and DHCP answered) at each checkpoint")
	fs.IntVar(&cfg.probeCLIN, "probe-cli-n", 5, "runs of `nimbo probe create` at each checkpoint")
	fs.DurationVar(&cfg.probePoll, "probe-poll", time.Millisecond, "how often a new probe's status (and a deleted one's namespace) is polled")
	fs.DurationVar(&cfg.probeTimeout, "probe-timeout", 30*time.Second, "how long a probe may take to become ACTIVE, or its namespace to go once deleted")
	ro := &routerOptions{}
	cfg.routers = ro
	fs.BoolVar(&ro.enabled, "routers", true, "measure nimbo's routers, floating IPs and port forwarding too (a second `nimbo up` with a fresh data dir, after the network part)")
	fs.IntVar(&ro.n, "router-n", 20, "routers created one after the other, each timed until its SNAT passes a packet (at most 250)")
	fs.IntVar(&ro.fipN, "router-fip-n", 20, "floating IP creates, each timed until a packet gets through, at each -router-forwards checkpoint")
	fs.IntVar(&ro.pfN, "router-pf-n", 20, "port forwarding creates, each timed until a packet gets through, at each -router-forwards checkpoint (at most 999)")
	forwards := fs.String("router-forwards", "10,1000", "comma-separated numbers of port forwardings on the router at which floating IP and forward creates are measured (at most 35000; e.g. 10,1000,10000)")
	fs.StringVar(&ro.iperf3, "iperf3", "iperf3", "iperf3 binary (Debian's package) for the NAT throughput")
	fs.DurationVar(&ro.iperfTime, "router-iperf-time", 2*time.Second, "duration of each iperf3 run (whole seconds)")
	fs.IntVar(&ro.iperfRuns, "router-iperf-runs", 3, "iperf3 runs per path, the paths interleaved (0: no throughput measurement)")
	fs.IntVar(&ro.restartN, "router-restart-n", 1000, "routers (each with a gateway and one interface) nimbo is restarted with (0: no restart measurement)")
	fs.IntVar(&ro.clients, "router-clients", 8, "concurrent clients creating and deleting the routers of -router-restart-n")
	fs.DurationVar(&ro.timeout, "router-timeout", 10*time.Second, "how long a first packet may take to get through, or a router's namespace to go")
	switch err := fs.Parse(args); {
	case err == flag.ErrHelp:
		return cfg, 0
	case err != nil:
		return cfg, 2
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "bench: unexpected argument %q\n", fs.Arg(0))
		return cfg, 2
	case cfg.nimboBin == "" || cfg.workDir == "":
		fmt.Fprintln(stderr, "bench: -nimbo and -work are required")
		return cfg, 2
	case cfg.keystoneMissing == "" && cfg.keystoneIni == "":
		fmt.Fprintln(stderr, "bench: give -keystone-ini, or -keystone-missing with the reason")
		return cfg, 2
	}
	if cfg.password == "" {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		cfg.password = hex.EncodeToString(b)
	}
	if cfg.host == "" || cfg.netnsPrefix == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		if cfg.host == "" {
			cfg.host = "bench-" + hex.EncodeToString(b)
		}
		if cfg.netnsPrefix == "" {
			cfg.netnsPrefix = "nbench-" + hex.EncodeToString(b)
		}
	}
	// nimbo's agent removes the namespaces of its prefix it does not want,
	// and so does this program at the end: never share a prefix.
	switch names, err := hostnet.ListNetns(cfg.netnsPrefix + "-"); {
	case err != nil:
		fmt.Fprintf(stderr, "bench: -netns-prefix %s: %v\n", cfg.netnsPrefix, err)
		return cfg, 2
	case len(names) > 0:
		fmt.Fprintf(stderr, "bench: -netns-prefix %s: namespaces with that prefix exist already (%s): choose a prefix of its own\n",
			cfg.netnsPrefix, strings.Join(names, " "))
		return cfg, 2
	}
	var err error
	if cfg.checkpoints, err = parseCheckpoints(*checkpoints); err != nil {
		fmt.Fprintf(stderr, "bench: -ports: %v\n", err)
		return cfg, 2
	}
	if ro.forwards, err = parseCheckpoints(*forwards); err != nil {
		fmt.Fprintf(stderr, "bench: -router-forwards: %v\n", err)
		return cfg, 2
	}
	if ro.forwards[len(ro.forwards)-1] > 35000 || len(ro.forwards) > 25 || ro.pfN > 999 || ro.n > 250 || ro.clients < 1 || ro.timeout <= 0 {
		fmt.Fprintln(stderr, "bench: -router-forwards: at most 25 checkpoints up to 35000; -router-pf-n at most 999, -router-n at most 250; -router-clients and -router-timeout positive")
		return cfg, 2
	}
	if cfg.fillBatch < 1 || cfg.fillClients < 1 || cfg.portClients < 1 || cfg.probePoll <= 0 {
		fmt.Fprintln(stderr, "bench: -fill-batch, -fill-clients, -port-clients and -probe-poll must be positive")
		return cfg, 2
	}
	return cfg, -1
}

// parseCheckpoints parses "1000,10000": increasing positive numbers.
func parseCheckpoints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		if len(out) > 0 && n <= out[len(out)-1] {
			return nil, fmt.Errorf("%d after %d: give increasing numbers", n, out[len(out)-1])
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("no number given")
	}
	return out, nil
}

// cleanEnv is this process's environment without OpenStack credentials and
// proxy settings, for the servers.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "OS_") || strings.HasSuffix(strings.ToLower(k), "_proxy") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// describeNimbo returns the report's description of nimbo and its command.
func describeNimbo(cfg config) ([]string, []string) {
	version := "?"
	if out, err := exec.Command(cfg.nimboBin, "version").Output(); err == nil {
		version = strings.TrimSpace(string(out))
	}
	argv := []string{cfg.nimboBin, "up", "--data-dir", cfg.nimboData(), "--listen", cfg.nimboListen,
		"--public-url", "http://" + cfg.nimboListen, "--admin-password", cfg.password,
		"--host", cfg.host, "--netns-prefix", cfg.netnsPrefix, "--log-level", cfg.nimboLogLevel}
	desc := []string{
		fmt.Sprintf("`%s` (built from this checkout), one process: Keystone v3 and Neutron v2.0 APIs, the agent (bridges, DHCP, probes, nftables) and embedded etcd (fresh data dir)", version),
		"`nimbo up --data-dir DIR --listen " + cfg.nimboListen + " --public-url http://" + cfg.nimboListen + " --admin-password … --host " + cfg.host + " --netns-prefix " + cfg.netnsPrefix + " --log-level " + cfg.nimboLogLevel + "`",
		"password KDF: " + kdfNimbo + "; application credential secrets (generated, 512 bits): salted SHA-256",
		"tokens: AES-256-GCM sealed payload, validated against the in-memory, watch-fed copy of etcd",
	}
	return desc, argv
}

// describeKeystone returns the report's description of Keystone and its
// command, or why it cannot run.
func describeKeystone(cfg config) (desc, argv []string, missing string) {
	if _, err := os.Stat(cfg.keystoneUWSGI); err != nil {
		return nil, nil, fmt.Sprintf("uwsgi binary %s: %v", cfg.keystoneUWSGI, err)
	}
	ini, err := readIni(cfg.keystoneIni)
	if err != nil {
		return nil, nil, fmt.Sprintf("reading the uwsgi ini: %v", err)
	}
	argv = []string{cfg.keystoneUWSGI, "--http-socket", cfg.keystoneListen, "--ini", cfg.keystoneIni}
	version := cfg.keystoneVersion
	if version == "" {
		version = "?"
	}
	desc = append(desc,
		fmt.Sprintf("Debian package `keystone` %s, `keystone-wsgi-public` under uwsgi as Debian's init script runs it: `%s --http-socket %s --ini keystone-uwsgi.ini`",
			version, filepath.Base(cfg.keystoneUWSGI), cfg.keystoneListen),
		fmt.Sprintf("uwsgi: processes = %s, threads = %s, master = %s, lazy-apps = %s, listen = %s (from Debian's %s)",
			ini.get("processes"), ini.get("threads"), ini.get("master"), ini.get("lazy-apps"), ini.get("listen"), cfg.keystoneStockIni),
	)
	if stock, err := readIni(cfg.keystoneStockIni); err == nil {
		if d := stock.diff(ini); len(d) > 0 {
			desc = append(desc, "this run's ini differs from Debian's only in: "+strings.Join(d, "; "))
		}
	}
	desc = append(desc,
		"keystone.conf: Debian's settings (logs, policy dirs, catalog template), fernet tokens (`[token] provider = fernet`, token and receipt keys in the temp dir), "+
			"no memcache (`[cache]` off, as Debian ships it), and sqlite: `[database] connection = sqlite:////…/keystone.db?check_same_thread=false`, database in WAL mode",
		"why those two sqlite settings: with Debian's defaults Keystone cannot write under its own uwsgi setup. SQLAlchemy's clean-up of a connection from another of uwsgi's threads fails "+
			"(\"SQLite objects created in a thread can only be used in that same thread\") and Keystone leaves read transactions open (seen after token re-scopes); "+
			"the shared lock they keep makes every later write fail after sqlite's 5 s busy timeout with `database is locked` (HTTP 500). check_same_thread=false lets the clean-up run; "+
			"WAL mode stops readers from blocking writers",
	)
	if cfg.keystoneKDF != "" {
		desc = append(desc, "password KDF: "+cfg.keystoneKDF+"; application credential secrets use the same KDF")
	}
	return desc, argv, ""
}
