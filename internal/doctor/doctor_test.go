package doctor

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/kvm"
)

func TestStatusString(t *testing.T) {
	for s, want := range map[Status]string{OK: "OK", Warn: "WARN", Fail: "FAIL", Status(7): "Status(7)"} {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", int(s), s.String(), want)
		}
	}
}

func TestFormat(t *testing.T) {
	fs := []Finding{
		{Check: "netns", Status: OK, Message: "network namespaces work", Fix: "ignored when OK"},
		{Check: "root", Status: Fail, Message: "nimbo must run as root", Fix: "run it with sudo"},
		{Check: "kvm", Status: Warn, Message: "guests will use TCG"},
	}
	var b bytes.Buffer
	if err := Format(&b, fs); err != nil {
		t.Fatal(err)
	}
	want := "[ OK ] netns: network namespaces work\n" +
		"[FAIL] root: nimbo must run as root — fix: run it with sudo\n" +
		"[WARN] kvm: guests will use TCG\n"
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestFailed(t *testing.T) {
	if Failed(nil) || Failed([]Finding{{Status: OK}, {Status: Warn}}) {
		t.Error("Failed without a FAIL")
	}
	if !Failed([]Finding{{Status: OK}, {Status: Fail}}) {
		t.Error("not Failed with a FAIL")
	}
}

// fakeRoot is a fake /proc, /sys, /dev and /lib/modules tree.
type fakeRoot struct {
	t   *testing.T
	dir string
}

func newFakeRoot(t *testing.T) *fakeRoot {
	f := &fakeRoot{t: t, dir: t.TempDir()}
	return f.file("proc/sys/kernel/osrelease", "6.1.0-test\n")
}

func (f *fakeRoot) file(p, content string) *fakeRoot {
	f.t.Helper()
	full := filepath.Join(f.dir, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return f
}

func (f *fakeRoot) configGz(content string) *fakeRoot {
	f.t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(content))
	zw.Close()
	return f.file("proc/config.gz", b.String())
}

// allHooks returns options with every live probe replaced.
func allHooks(root string, euid int, np netProbeResult) Options {
	return Options{
		Root:     root,
		euid:     func() int { return euid },
		lookPath: func(name string) (string, error) { return "/usr/bin/" + name, nil },
		kvmProbe: func(context.Context) kvm.Result {
			return kvm.Result{Accel: kvm.AccelTCG, Reason: "/dev/kvm is absent", Hint: "use hardware"}
		},
		netProbe: func(context.Context) netProbeResult { return np },
	}
}

func okProbe() netProbeResult {
	return netProbeResult{ran: true, results: map[string]error{
		"bridge": nil, "veth": nil, "vxlan": nil, "tun": nil, "nftables": nil,
	}}
}

func byCheck(fs []Finding) map[string]Finding {
	m := map[string]Finding{}
	for _, f := range fs {
		m[f.Check] = f
	}
	return m
}

func TestRunOrderAndStatuses(t *testing.T) {
	root := newFakeRoot(t).file("proc/self/ns/net", "").configGz("CONFIG_BRIDGE=y\nCONFIG_VETH=m\n")
	opts := allHooks(root.dir, 0, okProbe())
	opts.DataDir = t.TempDir()
	opts.Listen = "127.0.0.1:0"
	fs := Run(context.Background(), opts)
	var names []string
	for _, f := range fs {
		names = append(names, f.Check)
	}
	want := "root kvm netns bridge veth vxlan tun nftables datadir listen ip qemu-system-x86_64 qemu-img"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("checks %q, want %q", got, want)
	}
	for _, f := range fs {
		wantStatus := OK
		if f.Check == "kvm" {
			wantStatus = Warn
		}
		if f.Status != wantStatus {
			t.Errorf("%s", f)
		}
	}
	m := byCheck(fs)
	if !strings.Contains(m["kvm"].Message, "-accel tcg") || m["kvm"].Fix != "use hardware" {
		t.Errorf("kvm finding %+v", m["kvm"])
	}
	if !strings.Contains(m["veth"].Message, "CONFIG_VETH=m") {
		t.Errorf("veth finding %+v", m["veth"])
	}
	if Failed(fs) {
		t.Error("Failed with only a WARN")
	}
}

func TestRunSkipsEmptyOptions(t *testing.T) {
	fs := Run(context.Background(), allHooks(newFakeRoot(t).dir, 0, okProbe()))
	m := byCheck(fs)
	if _, ok := m["datadir"]; ok {
		t.Error("datadir checked without DataDir")
	}
	if _, ok := m["listen"]; ok {
		t.Error("listen checked without Listen")
	}
}

func TestNotRoot(t *testing.T) {
	root := newFakeRoot(t).file("proc/self/ns/net", "").
		file("proc/modules", "vxlan 90112 0 - Live 0x0\n").
		file("lib/modules/6.1.0-test/modules.builtin", "kernel/net/bridge/bridge.ko\n").
		file("lib/modules/6.1.0-test/modules.dep", "kernel/drivers/net/veth.ko.xz:\nkernel/drivers/net/tun.ko.zst:\nkernel/drivers/net/vxlan/vxlan.ko:\n").
		file("dev/net/tun", "")
	opts := allHooks(root.dir, 1000, netProbeResult{})
	opts.netProbe = func(context.Context) netProbeResult {
		t.Error("network probe run without root")
		return netProbeResult{}
	}
	m := byCheck(Run(context.Background(), opts))
	if f := m["root"]; f.Status != Fail || f.Fix != "run it with sudo" || !strings.Contains(f.Message, "uid 1000") {
		t.Errorf("root finding %+v", f)
	}
	checks := []struct {
		name   string
		status Status
		msg    string
	}{
		{"netns", OK, "not probed: needs root"},
		{"bridge", OK, "built in (modules.builtin)"},
		{"veth", OK, "module veth available (modules.dep)"},
		{"vxlan", OK, "module vxlan loaded"},
		// a regular file is not the tun device node
		{"tun", Fail, "/dev/net/tun is missing"},
		{"nftables", Fail, "module nf_tables is neither loaded nor installed"},
	}
	for _, c := range checks {
		f := m[c.name]
		if f.Status != c.status || !strings.Contains(f.Message, c.msg) {
			t.Errorf("%s: got %s, want %v containing %q", c.name, f, c.status, c.msg)
		}
		if f.Status != OK && f.Fix == "" {
			t.Errorf("%s: no fix", c.name)
		}
	}
}

func TestProbeFailures(t *testing.T) {
	np := okProbe()
	np.results["vxlan"] = errors.New("creating a vxlan device: operation not supported")
	root := newFakeRoot(t).configGz("CONFIG_VXLAN=m\n# CONFIG_BRIDGE is not set\n")
	m := byCheck(Run(context.Background(), allHooks(root.dir, 0, np)))
	if f := m["vxlan"]; f.Status != Fail || !strings.Contains(f.Message, "operation not supported") || f.Fix != "modprobe vxlan and check dmesg for errors" {
		t.Errorf("vxlan finding %s", f)
	}
	if f := m["bridge"]; f.Status != OK {
		t.Errorf("bridge finding %s (the live probe outranks the config)", f)
	}

	// No namespace at all: EPERM says why and falls back to the files.
	np = netProbeResult{netnsErr: &os.SyscallError{Syscall: "unshare", Err: syscall.EPERM}}
	m = byCheck(Run(context.Background(), allHooks(root.dir, 0, np)))
	if f := m["netns"]; f.Status != Fail || !strings.Contains(f.Fix, "CAP_SYS_ADMIN") {
		t.Errorf("netns finding %s", f)
	}
	if f := m["bridge"]; f.Status != Fail || !strings.Contains(f.Message, "CONFIG_BRIDGE is not set in /proc/config.gz") || !strings.Contains(f.Fix, "CONFIG_BRIDGE=y or =m") {
		t.Errorf("bridge finding %s", f)
	}
	if f := m["veth"]; f.Status != Warn || !strings.Contains(f.Message, "cannot tell") {
		t.Errorf("veth finding %s", f)
	}
}

func TestKernelFeature(t *testing.T) {
	root := newFakeRoot(t).
		file("sys/module/bridge/initstate", "live\n").
		file("sys/module/vxlan/parameters/x", "").
		file("boot/config-6.1.0-test", "CONFIG_TUN=m\nCONFIG_VETH=m\nCONFIG_NET_NS=y\n").
		file("lib/modules/6.1.0-test/modules.dep", "kernel/drivers/net/tun.ko:\n")
	k := readKernelFacts(root.dir)
	cases := []struct {
		module, config string
		want           support
		detail         string
	}{
		{"bridge", "CONFIG_BRIDGE", supportLoaded, "module bridge loaded"},
		{"vxlan", "CONFIG_VXLAN", supportBuiltin, "built in"},
		{"tun", "CONFIG_TUN", supportLoadable, "CONFIG_TUN=m"},
		{"veth", "CONFIG_VETH", supportAbsent, "veth.ko is not installed"},
		{"", "CONFIG_NET_NS", supportBuiltin, "CONFIG_NET_NS=y"},
		{"nf_tables", "CONFIG_NF_TABLES", supportAbsent, "neither loaded nor installed"},
	}
	for _, c := range cases {
		ev := k.feature(c.module, c.config)
		if ev.support != c.want || !strings.Contains(ev.detail, c.detail) {
			t.Errorf("%s: got %+v, want %v with %q", c.config, ev, c.want, c.detail)
		}
	}
	if moduleName("kernel/net/ipv4/ip-tunnel.ko.zst") != "ip_tunnel" || moduleName("README") != "" {
		t.Error("moduleName")
	}
	if ev := readKernelFacts(t.TempDir()).feature("bridge", "CONFIG_BRIDGE"); ev.support != supportUnknown {
		t.Errorf("empty root: %+v", ev)
	}
}

func TestCheckDataDir(t *testing.T) {
	dir := t.TempDir()
	if f := checkDataDir(dir); f.Status == Fail || !strings.Contains(f.Message, "writable") {
		t.Errorf("existing dir: %s", f)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the check left %d files behind", len(ents))
	}
	if f := checkDataDir(filepath.Join(dir, "a", "b")); f.Status != OK || !strings.Contains(f.Message, "can be created in "+dir) {
		t.Errorf("missing dir: %s", f)
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); err == nil {
		t.Error("the check created the data dir")
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if f := checkDataDir(file); f.Status != Fail || !strings.Contains(f.Message, "not a directory") {
		t.Errorf("file: %s", f)
	}
	if f := checkDataDir(filepath.Join(file, "sub")); f.Status != Fail || f.Fix == "" {
		t.Errorf("under a file: %s", f)
	}
}

func TestCheckListen(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().String()
	if f := checkListen(context.Background(), busy); f.Status != Fail || !strings.Contains(f.Message, "already in use") || !strings.Contains(f.Fix, "ss -ltnp") {
		t.Errorf("busy port: %s", f)
	}
	if f := checkListen(context.Background(), "127.0.0.1:0"); f.Status != OK {
		t.Errorf("free port: %s", f)
	}
	if f := checkListen(context.Background(), "nonsense"); f.Status != Fail || !strings.Contains(f.Message, "invalid") {
		t.Errorf("invalid address: %s", f)
	}
	// Binding is local; nothing is sent to the documentation address.
	if f := checkListen(context.Background(), "203.0.113.77:0"); f.Status != Fail || !strings.Contains(f.Message, "not an address of this host") {
		t.Errorf("foreign address: %s", f)
	}
}

func TestCheckTools(t *testing.T) {
	opts := Options{lookPath: func(name string) (string, error) {
		if name == "ip" {
			return "/sbin/ip", nil
		}
		return "", exec.ErrNotFound
	}}
	m := byCheck(checkTools(opts))
	if f := m["ip"]; f.Status != OK || f.Message != "found /sbin/ip" {
		t.Errorf("ip: %s", f)
	}
	if f := m["qemu-system-x86_64"]; f.Status != Warn || f.Fix != "apt-get install qemu-system-x86" {
		t.Errorf("qemu: %s", f)
	}
	opts.lookPath = func(string) (string, error) { return "", exec.ErrNotFound }
	if f := byCheck(checkTools(opts))["ip"]; f.Status != Fail || f.Fix != "apt-get install iproute2" {
		t.Errorf("missing ip: %s", f)
	}
}
