package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/testenv"
)

const (
	// listenAddr is where nimbo listens, inside each test's own namespace.
	listenAddr = "127.0.0.1:5000"
	// authURL is the identity endpoint openrc must name.
	authURL = "http://" + listenAddr + "/v3"
	// readyTimeout bounds `nimbo up` from start to GET /v3 answering 200.
	readyTimeout = 60 * time.Second
	// stopGrace is how long nimbo gets to exit after SIGTERM before SIGKILL.
	stopGrace = 20 * time.Second
	// cliTimeout bounds one openstack CLI call.
	cliTimeout = 60 * time.Second
	// cliPath is Debian's openstackclient; run with Debian's python on PATH.
	cliPath = "/usr/bin/openstack"
	// cliPATH keeps the machine's pyenv python from shadowing Debian's.
	cliPATH = "/usr/sbin:/usr/bin:/sbin:/bin"
	// logTail is how much of a server's output a failing test shows.
	logTail = 48 << 10
)

// cloud is one nimbo cloud under test: a namespace of its own, a data dir
// and an admin password. Servers (`nimbo up` processes) come and go on it.
type cloud struct {
	t        *testing.T
	ns       *testenv.Netns
	dataDir  string
	logDir   string
	home     string
	password string
	starts   int
	// resume makes start leave out --admin-password, as a person resuming
	// a cloud would (`nimbo up --data-dir DIR`).
	resume bool
	// extraArgs are appended to every `nimbo up` (e.g. --etcd-endpoints).
	extraArgs []string
	// netnsPrefix names the namespaces this cloud's agent makes; the
	// cloud's cleanup removes them after its servers have stopped.
	netnsPrefix string
	// probeNetnsCached remembers probes' namespaces by name.
	probeNetnsCached map[string]string
}

// newCloud creates a namespace, a data dir and a random admin password; it
// starts nothing. Needs root.
func newCloud(t *testing.T) *cloud {
	t.Helper()
	testenv.RequireRoot(t)
	if nimboBin == "" {
		t.Fatal("nimbo binary was not built (TestMain)")
	}
	// Cleanups run last-registered first: servers stop, then the temp dirs
	// go, then the namespace is deleted.
	ns := testenv.NewNetns(t)
	c := &cloud{
		t:        t,
		ns:       ns,
		logDir:   t.TempDir(),
		home:     t.TempDir(),
		dataDir:  t.TempDir(),
		password: randomHex(t, 12),
	}
	c.netnsPrefix = "nimbo-e2e" + randomHex(t, 4)
	t.Cleanup(func() { // registered before any server: runs after they stop
		names, _ := hostnet.ListNetns(c.netnsPrefix + "-")
		for _, n := range names {
			if err := hostnet.DeleteNetns(context.Background(), n); err != nil {
				t.Errorf("removing namespace %s: %v", n, err)
			}
		}
	})
	if d := os.Getenv("NIMBO_E2E_LOGDIR"); d != "" {
		c.logDir = d
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// server is one running `nimbo up` process.
type server struct {
	c       *cloud
	cmd     *exec.Cmd
	log     *outputLog
	exited  chan struct{}
	waitErr error
}

// start runs `nimbo up` for the cloud inside its namespace, streaming its
// output to a log, and registers a cleanup that stops it (SIGTERM, then
// SIGKILL after stopGrace) and shows the log's tail if the test failed.
// It does not wait for readiness: see waitReady, or startReady.
func (c *cloud) start() *server {
	t := c.t
	t.Helper()
	c.starts++
	logPath := filepath.Join(c.logDir, fmt.Sprintf("%s-nimbo-%d.log", strings.ReplaceAll(t.Name(), "/", "_"), c.starts))
	log, err := newOutputLog(t, logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"up", "--data-dir", c.dataDir, "--listen", listenAddr}
	if !c.resume {
		args = append(args, "--admin-password", c.password)
	}
	args = append(args, "--netns-prefix", c.netnsPrefix)
	args = append(args, c.extraArgs...)
	cmd := c.ns.Command(context.Background(), nimboBin, args...)
	cmd.Env = serverEnv()
	cmd.Stdout = log
	cmd.Stderr = log
	// Wait returns even if something inherited the output pipe.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nimbo up: %v", err)
	}
	t.Logf("nimbo up #%d: PID %d in namespace %s, data dir %s, log %s", c.starts, cmd.Process.Pid, c.ns.Name(), c.dataDir, logPath)
	s := &server{c: c, cmd: cmd, log: log, exited: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			s.stop()
		}
		if t.Failed() {
			t.Logf("last %d KiB of nimbo up #%d's output (%s):\n%s", logTail>>10, c.starts, logPath, log.tail(logTail))
		}
		_ = log.close()
	})
	return s
}

// startReady starts a server and waits until it answers.
func (c *cloud) startReady() *server {
	c.t.Helper()
	s := c.start()
	s.waitReady()
	return s
}

// serverEnv is the test's environment without OS_* variables and proxies.
func serverEnv() []string {
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

// waitReady polls GET /v3 until it answers 200, failing the test if nimbo
// exits first or readyTimeout passes.
func (s *server) waitReady() {
	t := s.c.t
	t.Helper()
	start := time.Now()
	client := s.c.ns.HTTPClient()
	var last string
	for {
		select {
		case <-s.exited:
			t.Fatalf("nimbo up exited before it was ready: %s", s.exitStatus())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				t.Logf("nimbo up ready after %v", time.Since(start).Round(time.Millisecond))
				return
			}
			last = fmt.Sprintf("GET %s: %s: %s", authURL, resp.Status, body)
		} else {
			last = err.Error()
		}
		cancel()
		if time.Since(start) > readyTimeout {
			t.Fatalf("nimbo up not ready within %v; last attempt: %s", readyTimeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends SIGTERM, waits up to stopGrace, then SIGKILLs (and fails the
// test). It returns the exit code (-1 when killed by a signal).
func (s *server) stop() int {
	t := s.c.t
	t.Helper()
	select {
	case <-s.exited:
		return s.cmd.ProcessState.ExitCode()
	default:
	}
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Logf("SIGTERM to PID %d: %v", s.cmd.Process.Pid, err)
	}
	select {
	case <-s.exited:
		t.Logf("nimbo up exited %v after SIGTERM: %s", time.Since(start).Round(time.Millisecond), s.exitStatus())
	case <-time.After(stopGrace):
		t.Errorf("nimbo up (PID %d) still running %v after SIGTERM; sending SIGKILL", s.cmd.Process.Pid, stopGrace)
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	// Keep-alive connections to the old process are dead now.
	s.c.ns.HTTPClient().CloseIdleConnections()
	return s.cmd.ProcessState.ExitCode()
}

// exitStatus describes how the process ended; call only after exited closed.
func (s *server) exitStatus() string {
	if s.waitErr == nil {
		return "exit status 0"
	}
	return s.waitErr.Error()
}

// output returns what the server printed so far (its first MiB).
func (s *server) output() string { return s.log.String() }

// outputLog receives a server's stdout and stderr: it writes all of it to a
// file, keeps the first MiB in memory, and in verbose mode logs each line.
type outputLog struct {
	t       *testing.T
	verbose bool

	mu      sync.Mutex
	f       *os.File
	mem     bytes.Buffer
	partial []byte
	closed  bool
}

const outputMemLimit = 1 << 20

func newOutputLog(t *testing.T, path string) (*outputLog, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &outputLog{t: t, f: f, verbose: os.Getenv("NIMBO_E2E_VERBOSE") != ""}, nil
}

// Write records p (always whole: it never fails).
func (l *outputLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return len(p), nil
	}
	_, _ = l.f.Write(p)
	if room := outputMemLimit - l.mem.Len(); room > 0 {
		l.mem.Write(p[:min(room, len(p))])
	}
	if l.verbose {
		l.partial = append(l.partial, p...)
		for {
			i := bytes.IndexByte(l.partial, '\n')
			if i < 0 {
				break
			}
			l.t.Logf("nimbo| %s", l.partial[:i])
			l.partial = l.partial[i+1:]
		}
	}
	return len(p), nil
}

// String returns the first MiB of the output.
func (l *outputLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mem.String()
}

// tail returns the last n bytes written, from the file.
func (l *outputLog) tail(n int64) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	st, err := l.f.Stat()
	if err != nil {
		return err.Error()
	}
	off := max(st.Size()-n, 0)
	b := make([]byte, st.Size()-off)
	if _, err := l.f.ReadAt(b, off); err != nil && err != io.EOF {
		return err.Error()
	}
	return string(b)
}

func (l *outputLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return l.f.Close()
}

// openrc reads and parses <data-dir>/openrc.
func (c *cloud) openrc() map[string]string {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dataDir, "openrc"))
	if err != nil {
		c.t.Fatalf("reading openrc: %v", err)
	}
	env, err := parseOpenrc(string(b))
	if err != nil {
		c.t.Fatalf("parsing openrc: %v\n%s", err, b)
	}
	return env
}

// parseOpenrc parses a shell file of `export NAME=VALUE` lines (VALUE may be
// quoted with single or double quotes, or use backslash escapes). Blank
// lines and comments are skipped; anything else is an error.
func parseOpenrc(s string) (map[string]string, error) {
	env := map[string]string{}
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rest, ok := strings.CutPrefix(line, "export ")
		if !ok {
			return nil, fmt.Errorf("line %d: %q is not an export", i+1, line)
		}
		name, raw, ok := strings.Cut(strings.TrimSpace(rest), "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("line %d: %q has no NAME=VALUE", i+1, line)
		}
		val, err := shellWord(raw)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", i+1, err)
		}
		env[name] = val
	}
	return env, nil
}

// shellWord unquotes one POSIX shell word with no expansions in it.
func shellWord(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; ch {
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return "", fmt.Errorf("unterminated ' in %q", s)
			}
			b.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '$' || s[i] == '`' {
					return "", fmt.Errorf("expansion in %q", s)
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				b.WriteByte(s[i])
			}
			if i >= len(s) {
				return "", fmt.Errorf("unterminated \" in %q", s)
			}
		case '\\':
			if i+1 >= len(s) {
				return "", fmt.Errorf("trailing \\ in %q", s)
			}
			i++
			b.WriteByte(s[i])
		case ' ', '\t', ';', '&', '|', '<', '>', '(', ')', '$', '`':
			return "", fmt.Errorf("unquoted %q in %q", ch, s)
		default:
			b.WriteByte(ch)
		}
	}
	return b.String(), nil
}

// withEnv returns a copy of env with the given NAME=VALUE overrides.
func withEnv(env map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(env)+len(kv)/2)
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// cliResult is one openstack CLI run.
type cliResult struct {
	args           []string
	stdout, stderr string
	code           int
}

// String describes the run for failure messages.
func (r cliResult) String() string {
	return fmt.Sprintf("openstack %s: exit %d\nstdout: %s\nstderr: %s",
		strings.Join(r.args, " "), r.code, strings.TrimSpace(r.stdout), strings.TrimSpace(r.stderr))
}

// openstack runs Debian's openstack CLI inside the cloud's namespace with
// only the given OS_* environment (plus PATH, HOME, LANG).
func (c *cloud) openstack(env map[string]string, args ...string) cliResult {
	t := c.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := c.ns.Command(ctx, cliPath, args...)
	cmd.Env = []string{"PATH=" + cliPATH, "HOME=" + c.home, "LANG=C.UTF-8"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	slices.Sort(cmd.Env)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := cliResult{args: args, stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
	if err != nil && r.code <= 0 {
		t.Fatalf("openstack %s: %v (stderr: %s)", strings.Join(args, " "), err, r.stderr)
	}
	t.Logf("openstack %s (as %s/%s): exit %d in %v", strings.Join(args, " "),
		env["OS_USERNAME"], env["OS_PROJECT_NAME"], r.code, time.Since(start).Round(time.Millisecond))
	return r
}

// osOK runs the CLI and fails the test unless it exits 0; it returns stdout.
func (c *cloud) osOK(env map[string]string, args ...string) string {
	c.t.Helper()
	r := c.openstack(env, args...)
	if r.code != 0 {
		c.t.Fatalf("want success, got %s", r)
	}
	return r.stdout
}

// osJSON runs the CLI with `-f json` and decodes its output into v.
func (c *cloud) osJSON(env map[string]string, v any, args ...string) {
	c.t.Helper()
	out := c.osOK(env, append(args, "-f", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("openstack %s -f json: decoding %q: %v", strings.Join(args, " "), out, err)
	}
}

// osFail runs the CLI, fails the test if it succeeds, and checks that its
// stderr contains every one of wants; it returns the result.
func (c *cloud) osFail(env map[string]string, wants []string, args ...string) cliResult {
	c.t.Helper()
	r := c.openstack(env, args...)
	if r.code == 0 {
		c.t.Errorf("want failure, got %s", r)
		return r
	}
	c.t.Logf("  failed as expected: %s", strings.TrimSpace(r.stderr))
	for _, w := range wants {
		if !strings.Contains(r.stderr, w) {
			c.t.Errorf("stderr lacks %q: %s", w, r)
		}
	}
	return r
}

// adminAuthOptions are gophercloud's options for openrc's credentials.
func adminAuthOptions(env map[string]string) gophercloud.AuthOptions {
	return gophercloud.AuthOptions{
		IdentityEndpoint: env["OS_AUTH_URL"],
		Username:         env["OS_USERNAME"],
		Password:         env["OS_PASSWORD"],
		DomainName:       env["OS_USER_DOMAIN_NAME"],
		Scope: &gophercloud.AuthScope{
			ProjectName: env["OS_PROJECT_NAME"],
			DomainName:  env["OS_PROJECT_DOMAIN_NAME"],
		},
	}
}

// provider returns a gophercloud provider client authenticated with opts,
// whose HTTP connections are opened inside the cloud's namespace.
func (c *cloud) provider(ctx context.Context, opts gophercloud.AuthOptions) (*gophercloud.ProviderClient, error) {
	p, err := openstack.NewClient(opts.IdentityEndpoint)
	if err != nil {
		return nil, err
	}
	p.HTTPClient = *c.ns.HTTPClient()
	if err := openstack.Authenticate(ctx, p, opts); err != nil {
		return nil, err
	}
	return p, nil
}

// identity returns an authenticated identity v3 client for opts, with its
// endpoint taken from the token's catalog (public interface, RegionOne).
func (c *cloud) identity(ctx context.Context, opts gophercloud.AuthOptions) *gophercloud.ServiceClient {
	c.t.Helper()
	p, err := c.provider(ctx, opts)
	if err != nil {
		c.t.Fatalf("authenticating %s: %v", opts.Username, err)
	}
	sc, err := openstack.NewIdentityV3(p, gophercloud.EndpointOpts{Region: "RegionOne", Availability: gophercloud.AvailabilityPublic})
	if err != nil {
		c.t.Fatalf("identity v3 client from the catalog: %v", err)
	}
	return sc
}
