package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsPrefix starts the name of every namespace NewNetns creates, so that a
// leftover one is easy to recognise (`ip netns list | grep nimbo-test-`).
const NetnsPrefix = "nimbo-test-"

// netnsDir is where iproute2 (and vishvananda/netns) keep named namespaces.
const netnsDir = "/run/netns"

// cleanupTimeout bounds how long the fixture's cleanup waits for processes
// in the namespace to die.
const cleanupTimeout = 10 * time.Second

// Netns is a named network namespace created for one test. Its only interface
// is lo, which is up, so programs started in it (Command) can listen on
// 127.0.0.1 and the test process reaches them with DialContext or HTTPClient.
// Nothing in it is connected to the root namespace.
type Netns struct {
	ip     string // path of iproute2's ip
	name   string
	handle netns.NsHandle
	ino    uint64

	mu   sync.Mutex
	cmds []*exec.Cmd

	transportOnce sync.Once
	transport     *http.Transport
}

// NewNetns creates a uniquely named network namespace (NetnsPrefix, the test
// process's PID, a dash and random hex) with `ip netns add`, brings its lo up, and registers a
// t.Cleanup that kills every process still in the namespace (by PID) and
// deletes it, also when the test fails. It skips the test when not root (see
// RequireRoot).
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	RequireRoot(t)
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		t.Fatalf("testenv: iproute2's ip not found: %v", err)
	}
	sweepOnce.Do(func() {
		if err := SweepStale(); err != nil {
			t.Logf("testenv: sweeping stale namespaces: %v", err)
		}
	})
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("testenv: random name: %v", err)
	}
	// The creator's PID in the name lets SweepStale tell leftovers of dead
	// test processes from namespaces of tests still running.
	name := fmt.Sprintf("%s%d-%s", NetnsPrefix, os.Getpid(), hex.EncodeToString(b[:]))
	// `ip netns add` makes /run/netns a shared mount, so that deleting this
	// namespace also unmounts it in the private mount namespaces of
	// `ip netns exec` children started by other tests.
	if out, err := exec.Command(ipPath, "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("testenv: ip netns add %s: %v: %s", name, err, out)
	}
	n := &Netns{ip: ipPath, name: name, handle: netns.None()}
	t.Cleanup(func() {
		if err := n.cleanup(); err != nil {
			t.Errorf("testenv: cleaning up namespace %s: %v", name, err)
		}
	})
	if err := n.init(); err != nil {
		t.Fatalf("testenv: setting up namespace %s: %v", name, err)
	}
	return n
}

func (n *Netns) init() error {
	h, err := netns.GetFromName(n.name)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	n.handle = h
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	n.ino = st.Ino
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	defer nl.Close()
	lo, err := nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// Name returns the namespace's name, as `ip netns` knows it.
func (n *Netns) Name() string { return n.name }

// Path returns the namespace's bind-mount path (/run/netns/NAME).
func (n *Netns) Path() string { return filepath.Join(netnsDir, n.name) }

// Command returns a command that runs program name with args inside the
// namespace, through nsenter, which execs the program, so once started
// cmd.Process.Pid is the program's own PID. cmd.Env, if set, is the
// program's environment (its PATH is used to find name). The fixture's
// cleanup kills the process if it is still running at the end of the test.
//
// It enters only the network namespace (nsenter --net), unlike `ip netns
// exec`, which also gives the command a private mount namespace: namespaces
// the command itself creates under /run/netns must stay visible to other
// processes, as they are for a nimbo on a real host.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + n.Path(), "--", name}, args...)...)
	n.mu.Lock()
	n.cmds = append(n.cmds, cmd)
	n.mu.Unlock()
	return cmd
}

// Do runs fn on an OS thread that has entered the namespace; sockets that fn
// opens belong to the namespace for their whole life. fn must not start
// goroutines that open sockets (they would run on other threads, in the root
// namespace). If the thread cannot be returned to its original namespace it
// is discarded rather than reused.
func (n *Netns) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is unlocked (and so reused) only once it is back in its
		// original namespace; otherwise it exits with this goroutine.
		origin, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("testenv: current namespace: %w", err)
			return
		}
		defer origin.Close()
		if err := netns.Set(n.handle); err != nil {
			errc <- fmt.Errorf("testenv: enter namespace %s: %w", n.name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(origin); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("testenv: leave namespace %s: %w", n.name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// DialContext opens a connection from the test process to addr inside the
// namespace (for example "127.0.0.1:5000"). The host part must be an IP
// literal or "localhost" (taken as 127.0.0.1): names are not resolved, so no
// lookup ever leaves the namespace.
func (n *Netns) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	if net.ParseIP(host) == nil {
		return nil, fmt.Errorf("testenv: dial %s in namespace %s: host must be an IP address or localhost", addr, n.name)
	}
	var conn net.Conn
	err = n.Do(func() error {
		// A single literal address: the socket is created on this goroutine
		// (and so on this thread), with no parallel fallback racer.
		d := net.Dialer{FallbackDelay: -1}
		var err error
		conn, err = d.DialContext(ctx, network, net.JoinHostPort(host, port))
		return err
	})
	return conn, err
}

// Listen opens a listener inside the namespace, like net.Listen; for example
// Listen("tcp", "127.0.0.1:0") for a fake server that programs started with
// Command can reach. The caller closes it.
func (n *Netns) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// HTTPClient returns an HTTP client whose connections are opened inside the
// namespace (with DialContext) and that ignores proxy settings from the
// environment, so net/http and gophercloud reach servers listening in it.
// All clients of one Netns share a transport whose idle connections are
// closed by the fixture's cleanup.
func (n *Netns) HTTPClient() *http.Client {
	n.transportOnce.Do(func() {
		n.transport = &http.Transport{
			Proxy:               nil,
			DialContext:         n.DialContext,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     30 * time.Second,
		}
	})
	return &http.Client{Transport: n.transport, Timeout: 60 * time.Second}
}

// PIDs returns the PIDs of the processes whose network namespace is this one
// (the test process itself excluded).
func (n *Netns) PIDs() ([]int, error) { return pidsIn(n.ino) }

// pidsIn returns the PIDs of the processes in the network namespace with
// inode ino, except this process.
func pidsIn(ino uint64) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	want := "net:[" + strconv.FormatUint(ino, 10) + "]"
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		// Fails for zombies and for processes that are gone: both are fine.
		link, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net"))
		if err == nil && link == want {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// cleanup kills the commands started with Command, then any other process
// left in the namespace, by PID, and deletes the namespace.
func (n *Netns) cleanup() error {
	n.mu.Lock()
	cmds := n.cmds
	n.mu.Unlock()
	for _, c := range cmds {
		// Set by Start in the test's goroutine, which has returned by now.
		// Kill uses a pidfd: safe even if the caller already waited.
		if c.Process != nil {
			_ = c.Process.Kill()
		}
	}
	var errs []error
	if n.ino != 0 {
		errs = append(errs, killAllIn(n.ino))
	}
	if n.transport != nil {
		// Open sockets would keep the namespace alive after deletion.
		n.transport.CloseIdleConnections()
	}
	if n.handle.IsOpen() {
		_ = n.handle.Close()
	}
	errs = append(errs, deleteNamed(n.ip, n.name))
	return errors.Join(errs...)
}

// killAllIn SIGKILLs the processes in the namespace with inode ino, by PID,
// until none is left or cleanupTimeout passes.
func killAllIn(ino uint64) error {
	deadline := time.Now().Add(cleanupTimeout)
	for {
		pids, err := pidsIn(ino)
		if err != nil {
			return fmt.Errorf("list processes: %w", err)
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still in the namespace after %v", pids, cleanupTimeout)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deleteNamed deletes a named namespace with `ip netns delete`, falling back
// to removing the bind mount directly.
func deleteNamed(ip, name string) error {
	out, err := exec.Command(ip, "netns", "delete", name).CombinedOutput()
	if err == nil {
		return nil
	}
	errs := []error{fmt.Errorf("ip netns delete %s: %v: %s", name, err, strings.TrimSpace(string(out)))}
	if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

var sweepOnce sync.Once

// SweepStale deletes the namespaces that NewNetns fixtures of test processes
// no longer running left behind (a test binary killed by go test's -timeout
// runs no cleanups), after killing the processes still in them by PID.
// Namespaces of running test processes, and any not named by NewNetns, are
// left alone. NewNetns calls it once per process.
func SweepStale() error {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), NetnsPrefix)
		if !ok {
			continue
		}
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue // its creator is alive (or not ours to judge)
		}
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(netnsDir, e.Name()), &st); err == nil {
			errs = append(errs, killAllIn(st.Ino))
		}
		errs = append(errs, deleteNamed(ip, e.Name()))
	}
	return errors.Join(errs...)
}
