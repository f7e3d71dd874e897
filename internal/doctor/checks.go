package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/nimbo-cloud/nimbo/internal/kvm"
)

// netProbeResult is what the throwaway-namespace probe found.
type netProbeResult struct {
	// ran is true once a fresh namespace was created and verified.
	ran bool
	// netnsErr says why no namespace could be created or used.
	netnsErr error
	// results maps a feature name (bridge, veth, vxlan, tun, nftables) to
	// nil if it worked in the namespace, or the error.
	results map[string]error
}

// checkRoot: nimbo manages namespaces, bridges and nftables, so it needs
// root.
func checkRoot(opts Options) Finding {
	uid := geteuid(opts)
	if uid == 0 {
		return Finding{Check: "root", Status: OK, Message: "running as root"}
	}
	return Finding{Check: "root", Status: Fail,
		Message: fmt.Sprintf("nimbo must run as root (running as uid %d)", uid),
		Fix:     "run it with sudo"}
}

func geteuid(opts Options) int {
	if opts.euid != nil {
		return opts.euid()
	}
	return os.Geteuid()
}

// checkKVM reports which accelerator guests will use and why.
func checkKVM(ctx context.Context, opts Options) Finding {
	probe := opts.kvmProbe
	if probe == nil {
		probe = func(ctx context.Context) kvm.Result {
			return kvm.ProbeWith(ctx, kvm.Options{Root: opts.Root, Logger: opts.Logger})
		}
	}
	ctx, cancel := opts.withTimeout(ctx)
	defer cancel()
	r := probe(ctx)
	if r.Usable {
		return Finding{Check: "kvm", Status: OK,
			Message: "hardware KVM works, guests will use -accel kvm: " + r.Reason}
	}
	return Finding{Check: "kvm", Status: Warn,
		Message: "guests will use -accel " + r.Accel + " (software emulation, slow): " + r.Reason,
		Fix:     r.Hint}
}

// netFeature is a kernel networking feature nimbo needs.
type netFeature struct {
	name   string // finding name and netProbeResult key
	module string // kernel module providing it
	config string // kernel config option
	what   string // plural noun for messages
}

var netFeatures = []netFeature{
	{"bridge", "bridge", "CONFIG_BRIDGE", "Linux bridges"},
	{"veth", "veth", "CONFIG_VETH", "veth pairs"},
	{"vxlan", "vxlan", "CONFIG_VXLAN", "VXLAN devices"},
	{"tun", "tun", "CONFIG_TUN", "tap devices"},
	{"nftables", "nf_tables", "CONFIG_NF_TABLES", "nftables tables"},
}

// checkNetwork checks network namespaces and the network features, with a
// live probe in a throwaway namespace when possible.
func checkNetwork(ctx context.Context, opts Options) []Finding {
	k := readKernelFacts(opts.Root)
	var np netProbeResult
	notProbed := ""
	switch {
	case opts.SkipNetProbe:
		notProbed = "live probe skipped"
	case geteuid(opts) != 0:
		notProbed = "not probed: needs root"
	default:
		probe := opts.netProbe
		if probe == nil {
			probe = realNetProbe
		}
		pctx, cancel := opts.withTimeout(ctx)
		np = probe(pctx)
		cancel()
		if !np.ran {
			notProbed = "not probed: no throwaway namespace"
		}
	}

	var out []Finding
	out = append(out, netnsFinding(opts, k, np, notProbed))
	for _, f := range netFeatures {
		out = append(out, featureFinding(opts, k, f, np, notProbed))
	}
	return out
}

func netnsFinding(opts Options, k *kernelFacts, np netProbeResult, notProbed string) Finding {
	f := Finding{Check: "netns"}
	switch {
	case np.ran:
		f.Status, f.Message = OK, "network namespaces work (created and discarded a throwaway one)"
		return f
	case np.netnsErr != nil:
		f.Status = Fail
		f.Message = "cannot create a network namespace: " + np.netnsErr.Error()
		if errors.Is(np.netnsErr, syscall.EPERM) {
			f.Fix = "run nimbo as root on the host itself (it needs CAP_SYS_ADMIN; inside a container, use a privileged one)"
		} else {
			f.Fix = "use a kernel built with CONFIG_NET_NS=y"
		}
		return f
	}
	_, statErr := os.Stat(rootPath(opts.Root, "/proc/self/ns/net"))
	ev := k.feature("", "CONFIG_NET_NS")
	switch {
	case statErr == nil:
		f.Status, f.Message = OK, "network namespaces are supported (/proc/self/ns/net exists; "+notProbed+")"
	case ev.support == supportAbsent:
		f.Status, f.Message = Fail, "the kernel lacks network namespaces: "+ev.detail
		f.Fix = "use a kernel built with CONFIG_NET_NS=y"
	default:
		f.Status, f.Message = Fail, "network namespaces are unavailable (no /proc/self/ns/net)"
		f.Fix = "use a kernel built with CONFIG_NET_NS=y, with /proc mounted"
	}
	return f
}

func featureFinding(opts Options, k *kernelFacts, nf netFeature, np netProbeResult, notProbed string) Finding {
	f := Finding{Check: nf.name}
	ev := k.feature(nf.module, nf.config)
	fix := featureFix(nf, ev)
	if np.ran {
		err, tested := np.results[nf.name]
		if tested && err == nil {
			f.Status = OK
			f.Message = fmt.Sprintf("%s work (created one in a throwaway namespace; %s)", nf.what, ev.detail)
			return f
		}
		if tested {
			f.Status = Fail
			f.Message = fmt.Sprintf("%s do not work: %v (%s)", nf.what, err, ev.detail)
			f.Fix = fix
			return f
		}
	}
	if nf.name == "tun" {
		st, err := os.Stat(rootPath(opts.Root, "/dev/net/tun"))
		if err != nil || st.Mode()&os.ModeCharDevice == 0 {
			f.Status = Fail
			f.Message = "/dev/net/tun is missing, so tap devices cannot be created (" + ev.detail + ")"
			f.Fix = "modprobe tun; if it still is missing: mkdir -p /dev/net && mknod -m 666 /dev/net/tun c 10 200"
			return f
		}
	}
	switch {
	case ev.present():
		f.Status = OK
		f.Message = fmt.Sprintf("kernel supports %s: %s (%s)", nf.what, ev.detail, notProbed)
	case ev.support == supportAbsent:
		f.Status = Fail
		f.Message = fmt.Sprintf("the kernel lacks %s: %s", nf.what, ev.detail)
		f.Fix = fix
	default:
		f.Status = Warn
		f.Message = fmt.Sprintf("cannot tell whether the kernel supports %s: %s (%s)", nf.what, ev.detail, notProbed)
		f.Fix = fix
	}
	return f
}

func featureFix(nf netFeature, ev evidence) string {
	switch ev.support {
	case supportAbsent:
		return fmt.Sprintf("use a kernel with %s=y or =m (on Debian/Ubuntu install the modules package for the running kernel, e.g. linux-modules-extra-$(uname -r)), then modprobe %s", nf.config, nf.module)
	case supportLoadable, supportUnknown:
		return "modprobe " + nf.module + " and check dmesg for errors"
	default:
		return "check dmesg for errors; the kernel has " + nf.module + " but it failed"
	}
}

// minFreeBytes is the free space below which the data dir check warns.
const minFreeBytes = 2 << 30

// checkDataDir checks that dir exists and is writable, or can be created.
func checkDataDir(dir string) Finding {
	f := Finding{Check: "datadir"}
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	st, err := os.Stat(abs)
	switch {
	case err == nil && !st.IsDir():
		f.Status, f.Message = Fail, abs+" exists but is not a directory"
		f.Fix = "remove it or choose another data directory"
	case err == nil:
		if err := tryWrite(abs); err != nil {
			f.Status, f.Message = Fail, fmt.Sprintf("data dir %s is not writable: %v", abs, err)
			f.Fix = "run nimbo as root, or fix the directory's owner and mode (chown/chmod " + abs + ")"
			return f
		}
		f.Status, f.Message = OK, "data dir "+abs+" is writable"
		if free, ok := freeBytes(abs); ok {
			f.Message += fmt.Sprintf(" (%s free)", humanBytes(free))
			if free < minFreeBytes {
				f.Status = Warn
				f.Message = fmt.Sprintf("data dir %s has only %s free", abs, humanBytes(free))
				f.Fix = "free some space or put the data dir on a bigger disk"
			}
		}
	case errors.Is(err, os.ErrNotExist):
		parent := nearestExisting(abs)
		if err := tryMkdir(parent); err != nil {
			f.Status = Fail
			f.Message = fmt.Sprintf("data dir %s does not exist and cannot be created in %s: %v", abs, parent, err)
			f.Fix = "create it as root: mkdir -p " + abs
			return f
		}
		f.Status, f.Message = OK, fmt.Sprintf("data dir %s does not exist yet; it can be created in %s", abs, parent)
	default:
		f.Status, f.Message = Fail, fmt.Sprintf("cannot examine data dir %s: %v", abs, err)
		f.Fix = "run nimbo as root, or choose another data directory"
	}
	return f
}

// tryWrite creates, writes, syncs and removes a temporary file in dir.
func tryWrite(dir string) error {
	tmp, err := os.CreateTemp(dir, ".nimbo-doctor-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name)
	if _, err := tmp.WriteString("nimbo doctor\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Remove(name)
}

// tryMkdir creates and removes a temporary directory in dir.
func tryMkdir(dir string) error {
	tmp, err := os.MkdirTemp(dir, ".nimbo-doctor-*")
	if err != nil {
		return err
	}
	return os.Remove(tmp)
}

// nearestExisting returns the closest ancestor of p that exists.
func nearestExisting(p string) string {
	for {
		parent := filepath.Dir(p)
		if _, err := os.Stat(parent); err == nil || parent == p {
			return parent
		}
		p = parent
	}
}

func humanBytes(n uint64) string {
	const gib = 1 << 30
	if n >= gib {
		return fmt.Sprintf("%.1f GiB", float64(n)/gib)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// checkListen binds the API address and closes it at once.
func checkListen(ctx context.Context, addr string) Finding {
	f := Finding{Check: "listen"}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		f.Status, f.Message = Fail, fmt.Sprintf("invalid listen address %q: %v", addr, err)
		f.Fix = "give it as host:port, e.g. 0.0.0.0:8774"
		return f
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err == nil {
		l.Close()
		f.Status, f.Message = OK, addr+" is free"
		return f
	}
	f.Status = Fail
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		f.Message = addr + " is already in use (is nimbo already running?)"
		f.Fix = fmt.Sprintf("stop the process listening there (see: ss -ltnp 'sport = :%s') or choose another listen address", port)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		f.Message = addr + " is not an address of this host"
		f.Fix = "use one of this host's addresses, or 0.0.0.0"
	case errors.Is(err, syscall.EACCES):
		f.Message = "not allowed to listen on " + addr
		f.Fix = "run nimbo as root, or use a port above 1023"
	default:
		f.Message = fmt.Sprintf("cannot listen on %s: %v", addr, err)
		f.Fix = "check the listen address"
	}
	return f
}

// tool is an external program nimbo runs.
type tool struct {
	name    string
	pkg     string // Debian package providing it
	missing Status
	why     string
}

var tools = []tool{
	{"ip", "iproute2", Fail, "nimbo configures networking with it"},
	{"qemu-system-x86_64", "qemu-system-x86", Warn, "needed to run guests once compute is enabled"},
	{"qemu-img", "qemu-utils", Warn, "needed for guest disk images once compute is enabled"},
}

// sbinDirs are searched when a tool is not on PATH (sudo and cron often
// leave the sbin directories out).
var sbinDirs = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// checkTools checks that the external programs are installed.
func checkTools(opts Options) []Finding {
	look := opts.lookPath
	if look == nil {
		look = lookPath
	}
	var out []Finding
	for _, t := range tools {
		f := Finding{Check: t.name}
		if p, err := look(t.name); err == nil {
			f.Status, f.Message = OK, "found "+p
		} else {
			f.Status, f.Message = t.missing, t.name+" is not installed ("+t.why+")"
			f.Fix = "apt-get install " + t.pkg
		}
		out = append(out, f)
	}
	return out
}

// lookPath is exec.LookPath with a fallback to the usual system
// directories.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range sbinDirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}
