package kvm

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fakeRoot builds a fake /sys, /proc and /dev tree for readHostInfo.
type fakeRoot struct {
	t   *testing.T
	dir string
}

func newFakeRoot(t *testing.T) *fakeRoot {
	return &fakeRoot{t: t, dir: t.TempDir()}
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

func (f *fakeRoot) modules(names ...string) *fakeRoot {
	f.t.Helper()
	for _, n := range names {
		if err := os.MkdirAll(filepath.Join(f.dir, "sys/module", n, "parameters"), 0o755); err != nil {
			f.t.Fatal(err)
		}
	}
	return f
}

func (f *fakeRoot) cpuFlags(flags string) *fakeRoot {
	return f.file("proc/cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: "+flags+"\n\nprocessor\t: 1\nflags\t\t: "+flags+"\n")
}

// This machine: kvm and kvm_pvm built in, no /dev/kvm, no vmx/svm.
func TestHostInfoLikeThisMachine(t *testing.T) {
	f := newFakeRoot(t).modules("kvm", "kvm_pvm", "bridge").cpuFlags("fpu vme hypervisor lm")
	h := readHostInfo(f.dir)
	if h.devExists || !h.modulesKnown || !h.kvmCore || !h.pvmOnly() || !h.cpuinfoKnown || h.virtFlag != "" {
		t.Fatalf("unexpected host info %+v", h)
	}
	r := ProbeWith(context.Background(), Options{Root: f.dir})
	if r.Usable || r.Accel != AccelTCG {
		t.Fatalf("usable without /dev/kvm: %+v", r)
	}
	for _, want := range []string{"/dev/kvm is absent", "kvm_pvm", "no vmx or svm flag"} {
		if !strings.Contains(r.Reason, want) {
			t.Errorf("reason %q lacks %q", r.Reason, want)
		}
	}
	if r.Hint == "" || r.Guest != "" || r.GuestRan {
		t.Errorf("unexpected result %+v", r)
	}
}

func TestHostInfoProcModules(t *testing.T) {
	f := newFakeRoot(t).
		file("proc/modules", "kvm_intel 409600 0 - Live 0x0\nkvm 1327104 1 kvm_intel, Live 0x0\n").
		cpuFlags("fpu vmx lm")
	h := readHostInfo(f.dir)
	if !h.kvmCore || !h.hasVendor(moduleIntel) || h.pvmOnly() || h.virtFlag != "vmx" {
		t.Fatalf("unexpected host info %+v", h)
	}
}

func TestHostInfoMiscRegistered(t *testing.T) {
	f := newFakeRoot(t).modules("kvm", "kvm_amd").cpuFlags("svm lm").file("sys/class/misc/kvm/dev", "10:232\n")
	r := ProbeWith(context.Background(), Options{Root: f.dir})
	if r.Usable || !strings.Contains(r.Reason, "10:232") || !strings.Contains(r.Hint, "mknod") {
		t.Fatalf("unexpected result %+v", r)
	}
	if r.CPUFlag != "svm" || len(r.VendorModules) != 1 || r.VendorModules[0] != moduleAMD {
		t.Fatalf("unexpected result %+v", r)
	}
}

func TestPVMDeviceIsNotUsable(t *testing.T) {
	// /dev/kvm present (a plain file here, so nothing is opened), only the
	// PVM backend.
	f := newFakeRoot(t).modules("kvm", "kvm_pvm").cpuFlags("fpu hypervisor lm").file("dev/kvm", "")
	r := ProbeWith(context.Background(), Options{Root: f.dir})
	if r.Usable || r.Accel != AccelTCG {
		t.Fatalf("PVM claimed usable: %+v", r)
	}
	if !strings.Contains(r.Reason, "PVM software flavour (module kvm_pvm, no vmx/svm flag)") {
		t.Errorf("reason %q", r.Reason)
	}
}

func TestNotACharDevice(t *testing.T) {
	f := newFakeRoot(t).modules("kvm", "kvm_intel").cpuFlags("vmx").file("dev/kvm", "")
	r := ProbeWith(context.Background(), Options{Root: f.dir})
	if r.Usable || !strings.Contains(r.Reason, "not a character device") {
		t.Fatalf("unexpected result %+v", r)
	}
}

func TestNoCPUFlag(t *testing.T) {
	f := newFakeRoot(t).modules("kvm", "kvm_intel").cpuFlags("fpu hypervisor").file("dev/kvm", "")
	r := ProbeWith(context.Background(), Options{Root: f.dir})
	if r.Usable || !strings.Contains(r.Reason, "no vmx or svm flag") {
		t.Fatalf("unexpected result %+v", r)
	}
}

func TestReadVirtFlag(t *testing.T) {
	f := newFakeRoot(t).file("a", "flags : fpu svm\n").file("b", "processor : 0\n").file("c", "flags\t: vmxx avx\n")
	for _, c := range []struct {
		file  string
		known bool
		flag  string
	}{{"a", true, "svm"}, {"b", false, ""}, {"c", true, ""}, {"missing", false, ""}} {
		known, flag := readVirtFlag(filepath.Join(f.dir, c.file))
		if known != c.known || flag != c.flag {
			t.Errorf("%s: got %v %q, want %v %q", c.file, known, flag, c.known, c.flag)
		}
	}
}

// intelHost is a healthy hardware-KVM host as readHostInfo would see it.
func intelHost() hostInfo {
	return hostInfo{
		devPath: "/dev/kvm", devExists: true, devIsChar: true, miscDev: "10:232",
		modulesKnown: true, kvmCore: true, vendors: []string{moduleIntel},
		cpuinfoKnown: true, virtFlag: "vmx",
	}
}

func TestDecide(t *testing.T) {
	okGuest := deviceOutcome{opened: true, apiVersion: 12, guestStarted: true, guestSummary: "all correct"}
	cases := []struct {
		name   string
		h      func(*hostInfo)
		d      deviceOutcome
		usable bool
		reason string
		hint   string
	}{
		{"healthy", nil, okGuest, true, "KVM API version 12 via kvm_intel (CPU flag vmx); test guest ran: all correct", ""},
		{"modules unknown", func(h *hostInfo) { h.modulesKnown, h.vendors, h.kvmCore = false, nil, false }, okGuest, true, "unknown backend", ""},
		{"absent", func(h *hostInfo) { h.devExists, h.miscDev = false, "" }, deviceOutcome{}, false, "/dev/kvm is absent", "hardware virtualization"},
		{"absent, no modules", func(h *hostInfo) { h.devExists, h.miscDev, h.kvmCore, h.vendors = false, "", false, nil }, deviceOutcome{}, false, "no kvm module is loaded", "modprobe kvm_intel"},
		{"vanished before open", nil, deviceOutcome{openErr: &fs.PathError{Op: "open", Path: "/dev/kvm", Err: syscall.ENOENT}}, false, "/dev/kvm is absent", "mknod"},
		{"permission", nil, deviceOutcome{openErr: &fs.PathError{Op: "open", Path: "/dev/kvm", Err: syscall.EACCES}}, false, "permission denied opening /dev/kvm", "root"},
		{"no driver", nil, deviceOutcome{openErr: &fs.PathError{Op: "open", Path: "/dev/kvm", Err: syscall.ENXIO}}, false, "no KVM driver answers", "hardware"},
		{"not kvm", nil, deviceOutcome{opened: true, apiErr: syscall.ENOTTY}, false, "does not answer KVM_GET_API_VERSION", "hardware"},
		{"api version", nil, deviceOutcome{opened: true, apiVersion: 11}, false, "KVM API version 11, want 12", "standard KVM API"},
		{"guest fails", nil, deviceOutcome{opened: true, apiVersion: 12, guestStarted: true,
			guestErr: errors.New("KVM internal error, suberror 1 (emulation failure)")}, false,
			"KVM API version 12 but the test guest failed: KVM internal error, suberror 1 (emulation failure)", "cannot run a normal"},
		{"pvm only, guest ran", func(h *hostInfo) { h.vendors, h.virtFlag = []string{modulePVM}, "" }, okGuest, false,
			"/dev/kvm is the PVM software flavour (module kvm_pvm, no vmx/svm flag): stock guest kernels crash under it; the test guest ran anyway", "hardware virtualization"},
		{"pvm only, flag shown", func(h *hostInfo) { h.vendors = []string{modulePVM} }, okGuest, false,
			"(module kvm_pvm, no kvm_intel/kvm_amd)", "hardware virtualization"},
		{"pvm and intel, no flag", func(h *hostInfo) { h.vendors, h.virtFlag = []string{moduleIntel, modulePVM}, "" }, okGuest, false,
			"no vmx or svm flag", "hardware"},
		{"pvm and intel with flag, guest ok", func(h *hostInfo) { h.vendors = []string{moduleIntel, modulePVM} }, okGuest, true,
			"via kvm_intel+kvm_pvm", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := intelHost()
			if c.h != nil {
				c.h(&h)
			}
			r := decide(h, c.d)
			if r.Usable != c.usable {
				t.Fatalf("usable=%v, want %v (%+v)", r.Usable, c.usable, r)
			}
			if wantAccel := map[bool]string{true: AccelKVM, false: AccelTCG}[c.usable]; r.Accel != wantAccel {
				t.Errorf("accel %q, want %q", r.Accel, wantAccel)
			}
			if !strings.Contains(r.Reason, c.reason) {
				t.Errorf("reason %q lacks %q", r.Reason, c.reason)
			}
			if c.hint == "" && r.Hint != "" || !strings.Contains(r.Hint, c.hint) {
				t.Errorf("hint %q, want one containing %q", r.Hint, c.hint)
			}
		})
	}
}
