package testenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// helperEnv selects what TestHelperProcess does when the test binary is
// re-executed as a helper; unset, TestHelperProcess does nothing.
const helperEnv = "NIMBO_TESTENV_HELPER"

// TestHelperProcess is not a real test: the tests below re-execute the test
// binary with helperEnv set to run a program inside a namespace ("serve") or
// to run a test that fails while it owns a namespace ("fail").
func TestHelperProcess(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "":
		return
	case "serve":
		// Runs inside a namespace: serve HTTP on 127.0.0.1 and say where.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(2)
		}
		fmt.Println("listening on", l.Addr())
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			link, _ := os.Readlink("/proc/self/ns/net")
			fmt.Fprintf(w, "hello from %s", link)
		}))
		os.Exit(0)
	case "fail":
		n := NewNetns(t)
		tracked := n.Command(context.Background(), "sleep", "300")
		if err := tracked.Start(); err != nil {
			t.Fatal(err)
		}
		// A process the fixture did not start: cleanup must find it too.
		untracked := exec.Command("ip", "netns", "exec", n.Name(), "sleep", "301")
		if err := untracked.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			pids, _ := n.PIDs()
			return slices.Contains(pids, tracked.Process.Pid) && slices.Contains(pids, untracked.Process.Pid)
		})
		out := fmt.Sprintf("%s %d %d\n", n.Name(), tracked.Process.Pid, untracked.Process.Pid)
		if err := os.WriteFile(os.Getenv("NIMBO_TESTENV_OUT"), []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Fatal("failing on purpose, with a namespace and two processes in it")
	default:
		t.Fatalf("unknown %s=%q", helperEnv, os.Getenv(helperEnv))
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func netnsExists(t *testing.T, name string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(netnsDir, name))
	if err == nil {
		return true
	}
	if !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	return strings.Contains(string(out), name)
}

// processGone reports whether pid has exited (gone, or a zombie nobody reaped).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// Format: "pid (comm) S ...": the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && (s[i+2] == 'Z' || s[i+2] == 'X')
}

// TestNewNetns checks that a fixture is a fresh namespace of its own whose
// only link is lo, up, with 127.0.0.1.
func TestNewNetns(t *testing.T) {
	n := NewNetns(t)
	if !strings.HasPrefix(n.Name(), NetnsPrefix) || len(n.Name()) <= len(NetnsPrefix) {
		t.Errorf("name %q lacks the %q prefix and a random part", n.Name(), NetnsPrefix)
	}
	if !netnsExists(t, n.Name()) {
		t.Fatalf("namespace %s not listed by ip netns", n.Name())
	}
	var self unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		t.Fatal(err)
	}
	if self.Ino == n.ino {
		t.Fatal("the fixture's namespace is the test's own")
	}
	if other := NewNetns(t); other.Name() == n.Name() || other.ino == n.ino {
		t.Errorf("two fixtures share a namespace: %s (%d) and %s (%d)", n.Name(), n.ino, other.Name(), other.ino)
	}

	nl, err := netlink.NewHandleAt(n.handle, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	links, err := nl.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" {
		var names []string
		for _, l := range links {
			names = append(names, l.Attrs().Name)
		}
		t.Fatalf("links in the namespace = %v, want only lo", names)
	}
	if links[0].Attrs().Flags&net.FlagUp == 0 {
		t.Error("lo is not up")
	}
	addrs, err := nl.AddrList(links[0], netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) == 0 || !addrs[0].IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("lo addresses = %v, want 127.0.0.1", addrs)
	}
}

// TestCommandAndHTTPClient starts a server inside the namespace with Command
// and reaches it from the test process through HTTPClient.
func TestCommandAndHTTPClient(t *testing.T) {
	n := NewNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := n.Command(ctx, os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"=serve")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading helper's address: %v (%q)", err, line)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok {
		t.Fatalf("helper said %q", line)
	}

	// The PID is the program's own (ip execs it) and it is in the namespace.
	pids, err := n.PIDs()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pids, cmd.Process.Pid) {
		t.Errorf("PID %d not among the namespace's processes %v", cmd.Process.Pid, pids)
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid)); strings.TrimSpace(string(comm)) == "ip" {
		t.Errorf("PID %d is ip, not the program", cmd.Process.Pid)
	}

	resp, err := n.HTTPClient().Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET through the namespace: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := "hello from net:[" + strconv.FormatUint(n.ino, 10) + "]"
	if resp.StatusCode != 200 || string(body) != want {
		t.Errorf("GET = %d %q, want 200 %q", resp.StatusCode, body, want)
	}

	// localhost is taken as 127.0.0.1; other names are refused.
	_, port, _ := net.SplitHostPort(addr)
	c, err := n.DialContext(ctx, "tcp", "localhost:"+port)
	if err != nil {
		t.Errorf("dial localhost:%s: %v", port, err)
	} else {
		c.Close()
	}
	if _, err := n.DialContext(ctx, "tcp", "example.invalid:80"); err == nil {
		t.Error("dialing a host name succeeded; want an error without resolving it")
	}
}

// TestListenAndIsolation checks that Listen and DialContext work inside the
// namespace and that the namespace's loopback is not the root namespace's.
func TestListenAndIsolation(t *testing.T) {
	n := NewNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	inside, err := n.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	go func() {
		for {
			c, err := inside.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("inside\n"))
			c.Close()
		}
	}()
	c, err := n.DialContext(ctx, "tcp", inside.Addr().String())
	if err != nil {
		t.Fatalf("dial the namespace's listener: %v", err)
	}
	got, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if got != "inside\n" {
		t.Errorf("read %q from the namespace's listener", got)
	}

	// A listener in the root namespace's loopback is not reachable from the
	// namespace: nothing listens on that port there.
	outside, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer outside.Close()
	if c, err := n.DialContext(ctx, "tcp", outside.Addr().String()); err == nil {
		c.Close()
		t.Fatal("dial from the namespace reached a root-namespace listener")
	} else if !strings.Contains(err.Error(), "refused") {
		t.Errorf("dial from the namespace to a root-namespace port: %v, want connection refused", err)
	}
}

// TestCleanupAfterPass checks that a passing test's fixture kills its
// processes and deletes its namespace.
func TestCleanupAfterPass(t *testing.T) {
	var name string
	var cmd *exec.Cmd
	t.Run("inner", func(t *testing.T) {
		n := NewNetns(t)
		name = n.Name()
		cmd = n.Command(context.Background(), "sleep", "300")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	})
	if cmd == nil || cmd.Process == nil {
		t.Fatal("inner test did not start its process")
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("process ended with %v, want killed by SIGKILL", err)
	}
	if netnsExists(t, name) {
		t.Errorf("namespace %s still exists after the test", name)
	}
}

// TestCleanupAfterFailure runs a failing test in a child process and checks
// that its namespace and the processes in it are gone afterwards.
func TestCleanupAfterFailure(t *testing.T) {
	RequireRoot(t)
	outFile := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"=fail", "NIMBO_TESTENV_OUT="+outFile)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "failing on purpose") {
		t.Fatalf("helper test should have failed on purpose; err=%v, output:\n%s", err, out)
	}
	b, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatalf("helper wrote nothing: %v; output:\n%s", err, out)
	}
	var name string
	var pid1, pid2 int
	if _, err := fmt.Sscanf(string(b), "%s %d %d", &name, &pid1, &pid2); err != nil {
		t.Fatalf("parsing %q: %v", b, err)
	}
	if netnsExists(t, name) {
		t.Errorf("namespace %s still exists after its test failed", name)
	}
	for _, pid := range []int{pid1, pid2} {
		if !processGone(pid) {
			t.Errorf("process %d from the failed test is still running", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if strings.Contains(string(out), "cleaning up namespace") {
		t.Errorf("fixture cleanup reported errors:\n%s", out)
	}
}

// TestSweepStale checks that a namespace left by a dead test process is
// deleted, with the processes in it, and that live tests' ones are kept.
func TestSweepStale(t *testing.T) {
	live := NewNetns(t)

	// A PID that is certainly dead: a child we started and reaped.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("%s%d-%s", NetnsPrefix, dead.Process.Pid, "stale0")
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = deleteNamed("ip", name) })
	sleeper := exec.Command("ip", "netns", "exec", name, "sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until it is in the namespace (ip has exec'd sleep).
	waitFor(t, func() bool {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", sleeper.Process.Pid))
		return strings.TrimSpace(string(comm)) == "sleep"
	})

	if err := SweepStale(); err != nil {
		t.Errorf("SweepStale: %v", err)
	}
	if netnsExists(t, name) {
		t.Errorf("stale namespace %s not swept", name)
	}
	err := sleeper.Wait()
	if ws, ok := sleeper.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Errorf("process in the stale namespace ended with %v, want killed", err)
	}
	if !netnsExists(t, live.Name()) {
		t.Errorf("SweepStale deleted %s, whose test is running", live.Name())
	}
}
