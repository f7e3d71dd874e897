// Package hostnet configures Linux networking inside one network namespace
// through netlink: named namespaces, bridges, veth pairs, taps, addresses,
// routes and sysctls. It is the data-plane library the per-host agent calls
// to turn desired state into real interfaces.
//
// Every operation is idempotent ("ensure" semantics): it compares what exists
// with what is asked for, changes only the difference, and adopts objects that
// a previous run (or a previous process) created. Calling it twice changes
// nothing the second time.
//
// Threads and namespaces: a network namespace is a per-thread property. This
// package never switches the namespace of a goroutine that the caller owns.
// Netlink work goes through a handle opened inside the target namespace
// (netlink.NewHandleAt), and the few operations that need a thread inside it
// (creating a namespace or a tap, /proc/sys) run on a throwaway goroutine that
// locks its OS thread, switches, and switches back before unlocking; if it
// cannot switch back, the thread is discarded. An NS holds a file descriptor
// and a netlink socket: Close it, because an open descriptor keeps a deleted
// namespace (and its interfaces) alive.
package hostnet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// NetnsDir is where named network namespaces are bind-mounted, as iproute2's
// `ip netns` does.
const NetnsDir = "/run/netns"

// NS is an open network namespace: a file descriptor for it and a netlink
// route socket inside it. Its methods are safe for concurrent use. Close it
// when done.
type NS struct {
	path   string
	handle netns.NsHandle
	nl     *netlink.Handle
}

// Open opens the network namespace at path: a named namespace
// (/run/netns/NAME, see NetnsPath) or any nsfs file such as /proc/PID/ns/net.
func Open(path string) (*NS, error) {
	h, err := netns.GetFromPath(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("hostnet: open namespace %s: %w", path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("hostnet: open namespace %s: %w", path, err)
	}
	// Only NETLINK_ROUTE: NewHandleAt opens one socket per family given
	// (three by default), each pinning the namespace.
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		_ = h.Close()
		return nil, fmt.Errorf("hostnet: netlink handle in %s: %w", path, err)
	}
	return &NS{path: path, handle: h, nl: nl}, nil
}

// OpenSelf opens the namespace the process runs in (that of its main
// thread), which is where nimbo's own bridges live unless it is told
// otherwise.
func OpenSelf() (*NS, error) { return Open("/proc/self/ns/net") }

// OpenNetns opens the named namespace name (see EnsureNetns).
func OpenNetns(name string) (*NS, error) {
	if err := validNetnsName(name); err != nil {
		return nil, err
	}
	return Open(NetnsPath(name))
}

// Close releases the namespace's descriptor and netlink socket.
func (n *NS) Close() error {
	if n == nil {
		return nil
	}
	n.nl.Close()
	return n.handle.Close()
}

// Path returns the path the namespace was opened from.
func (n *NS) Path() string { return n.path }

// Fd returns a file descriptor referring to the namespace (for example for
// nftables.WithNetNSFd). It stays valid until Close.
func (n *NS) Fd() int { return int(n.handle) }

// Do runs fn on an OS thread that has entered the namespace, and returns its
// error. Sockets fn opens belong to the namespace for their whole life and
// /proc/sys/net reads as the namespace's. fn must not start goroutines that
// expect to be in the namespace (they run on other threads). If the thread
// cannot be switched back afterwards it is discarded, never reused.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Until UnlockOSThread, this goroutine owns the thread; if it
		// returns while still locked, the runtime terminates the thread,
		// which is what must happen to a thread left in the wrong namespace.
		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("hostnet: current thread's namespace: %w", err)
			return
		}
		defer origin.Close()
		if err := netns.Set(n.handle); err != nil {
			errc <- fmt.Errorf("hostnet: enter namespace %s: %w", n.path, err)
			return
		}
		ferr := fn()
		if err := netns.Set(origin); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("hostnet: leave namespace %s: %w", n.path, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// NetnsPath returns the bind-mount path of the named namespace name.
func NetnsPath(name string) string { return filepath.Join(NetnsDir, name) }

func validNetnsName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > 255 {
		return errdefs.Invalidf("hostnet: invalid namespace name %q", name)
	}
	return nil
}

// EnsureNetns makes sure the named network namespace name exists (like `ip
// netns add`, but not failing when it already exists), with its loopback up.
// A leftover file at its path that is not a mounted namespace (from a crash
// half-way through creating one) is replaced.
func EnsureNetns(ctx context.Context, name string) error {
	if err := validNetnsName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	path := NetnsPath(name)
	ok, err := isNetnsMount(path)
	if err != nil {
		return fmt.Errorf("hostnet: namespace %s: %w", name, err)
	}
	if !ok {
		if err := createNetns(name); err != nil {
			return fmt.Errorf("hostnet: create namespace %s: %w", name, err)
		}
	}
	n, err := Open(path)
	if err != nil {
		return err
	}
	defer n.Close()
	lo, err := n.nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("hostnet: namespace %s: find lo: %w", name, err)
	}
	if lo.Attrs().RawFlags&unix.IFF_UP == 0 {
		if err := n.nl.LinkSetUp(lo); err != nil {
			return fmt.Errorf("hostnet: namespace %s: set lo up: %w", name, err)
		}
	}
	return nil
}

// isNetnsMount reports whether path exists and is a mounted namespace file;
// a plain file there (not mounted) is removed.
func isNetnsMount(path string) (bool, error) {
	var st unix.Statfs_t
	err := unix.Statfs(path, &st)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if st.Type == unix.NSFS_MAGIC {
		return true, nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("remove stale %s: %w", path, err)
	}
	return false, nil
}

// createNetns creates the namespace on a locked throwaway thread, which it
// switches back (or discards).
func createNetns(name string) error {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return err
	}
	if err := makeNetnsDirShared(); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer origin.Close()
		// NewNamed unshares this thread into the new namespace and
		// bind-mounts it at /run/netns/NAME.
		h, nerr := netns.NewNamed(name)
		if nerr == nil {
			_ = h.Close()
		} else {
			// A file created before a failed mount would look stale.
			_ = os.Remove(NetnsPath(name))
		}
		if err := netns.Set(origin); err != nil {
			errc <- errors.Join(nerr, fmt.Errorf("return to the original namespace: %w", err))
			return // the thread dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- nerr
	}()
	return <-errc
}

// makeNetnsDirShared makes /run/netns a shared mount, as iproute2 does, so
// that unmounting a namespace there also unmounts it in the mount namespaces
// of processes started with `ip netns exec` (which would otherwise keep it
// alive).
func makeNetnsDirShared() error {
	err := unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s shared: %w", NetnsDir, err)
	}
	// Not a mount point yet: bind it onto itself first.
	if err := unix.Mount(NetnsDir, NetnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", NetnsDir, err)
	}
	if err := unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", NetnsDir, err)
	}
	return nil
}

// DeleteNetns removes the named namespace name (unmounts and removes its
// file). It is not an error if it does not exist. The namespace itself (and
// its interfaces) disappears once no process and no open descriptor refers
// to it any more.
func DeleteNetns(ctx context.Context, name string) error {
	if err := validNetnsName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	path := NetnsPath(name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("hostnet: unmount namespace %s: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("hostnet: remove namespace %s: %w", name, err)
	}
	return nil
}

// ListNetns returns the names of the named namespaces that start with
// prefix, sorted, for garbage-collecting those no longer desired.
func ListNetns(prefix string) ([]string, error) {
	entries, err := os.ReadDir(NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hostnet: list namespaces: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}
