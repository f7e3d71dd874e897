// Package kvm decides whether hardware KVM is usable on this host, so that
// QEMU guests run with -accel kvm when it really works and with TCG
// otherwise.
//
// The decision comes from a real probe, never from /dev/kvm merely
// existing: Probe opens the device, checks the API version, creates a VM
// with a small memory slot and one vCPU, and runs a tiny guest that goes
// from real mode through protected mode into 64-bit long mode with paging,
// executes CPUID, far jumps and control-register writes, reports its
// progress by port I/O and halts. Every report is verified. A host whose
// only KVM backend is the kvm_pvm software flavour (no vmx/svm CPU flag) is
// treated as not usable even if the little guest happens to run, because
// stock guest kernels crash under it after a minute.
//
// The probe uses raw ioctls through golang.org/x/sys/unix (no cgo) and
// bounds everything with timeouts.
package kvm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"syscall"
	"time"
)

// Accelerator names, as QEMU's -accel option spells them.
const (
	// AccelKVM is hardware virtualization through /dev/kvm.
	AccelKVM = "kvm"
	// AccelTCG is QEMU's software emulation (Tiny Code Generator).
	AccelTCG = "tcg"
)

// DefaultTimeout bounds the test guest's run when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Result is the outcome of Probe.
type Result struct {
	// Usable is true only if hardware KVM passed every check.
	Usable bool
	// Accel is AccelKVM when Usable, else AccelTCG.
	Accel string
	// Reason says in plain words why KVM is or is not usable.
	Reason string
	// Hint says what to do to get working KVM; empty when Usable.
	Hint string

	// Device is the device path probed, normally /dev/kvm.
	Device string
	// VendorModules lists the KVM backend modules found (kvm_intel,
	// kvm_amd, kvm_pvm).
	VendorModules []string
	// CPUFlag is "vmx" or "svm" when /proc/cpuinfo shows one, else "".
	CPUFlag string
	// APIVersion is what KVM_GET_API_VERSION returned, 0 if not reached.
	APIVersion int
	// GuestRan is true if the test guest ran and every check passed.
	GuestRan bool
	// Guest says what happened to the test guest; empty if it was not
	// started.
	Guest string
}

// Options tune ProbeWith.
type Options struct {
	// Root is prepended to /dev, /sys and /proc paths; "" means "/". Tests
	// point it at a fake tree.
	Root string
	// Timeout bounds the test guest's run; zero means DefaultTimeout.
	Timeout time.Duration
	// Logger receives debug details; nil means slog.Default().
	Logger *slog.Logger
}

// Probe decides whether hardware KVM is usable on this host.
func Probe(ctx context.Context) Result {
	return ProbeWith(ctx, Options{})
}

// ProbeWith is Probe with options.
func ProbeWith(ctx context.Context, opts Options) Result {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	start := time.Now()
	h := readHostInfo(opts.Root)
	var d deviceOutcome
	if h.devExists && h.devIsChar {
		d = probeDevice(ctx, h.devPath, timeout, log)
	}
	r := decide(h, d)
	log.Debug("kvm probe", "usable", r.Usable, "accel", r.Accel, "reason", r.Reason,
		"modules", r.VendorModules, "cpu_flag", r.CPUFlag, "guest", r.Guest,
		"took", time.Since(start))
	return r
}

// deviceOutcome is what probing the device found.
type deviceOutcome struct {
	opened     bool
	openErr    error
	apiVersion int
	apiErr     error

	guestStarted bool   // the VM was being set up or run
	guestErr     error  // nil when every check passed
	guestSummary string // what the guest did, for reports
}

// Hints, shared by several outcomes.
const (
	hintHardware = "for fast guests run nimbo on a host with hardware virtualization: bare metal, or a cloud VM with nested virtualization (e.g. EC2 C8i/M8i/R8i) where kvm_intel or kvm_amd is loaded; until then guests use TCG (slow but working)"
)

// decide turns host facts and the device probe's outcome into a Result.
func decide(h hostInfo, d deviceOutcome) Result {
	r := Result{
		Accel:         AccelTCG,
		Device:        h.devPath,
		VendorModules: append([]string(nil), h.vendors...),
		CPUFlag:       h.virtFlag,
		APIVersion:    d.apiVersion,
	}
	if d.guestStarted {
		r.Guest = d.guestSummary
		r.GuestRan = d.guestErr == nil
	}
	noFlag := h.cpuinfoKnown && h.virtFlag == ""
	pvmReason := func() string {
		why := "module kvm_pvm"
		if noFlag {
			why += ", no vmx/svm flag"
		} else {
			why += ", no kvm_intel/kvm_amd"
		}
		return fmt.Sprintf("%s is the PVM software flavour (%s): stock guest kernels crash under it", h.devPath, why)
	}
	withGuest := func(s string) string {
		if !d.guestStarted {
			return s
		}
		if d.guestErr == nil {
			return s + "; the test guest ran anyway: " + d.guestSummary
		}
		return s + "; the test guest failed too: " + d.guestErr.Error()
	}

	switch {
	case !h.devExists || errors.Is(d.openErr, fs.ErrNotExist):
		var extra []string
		if h.miscDev != "" {
			extra = append(extra, fmt.Sprintf("the kernel registered the kvm misc device (%s) but the node is missing", h.miscDev))
		}
		switch {
		case h.pvmOnly():
			extra = append(extra, "the only KVM backend loaded is kvm_pvm, the PVM software flavour, which could not run stock guest kernels anyway")
		case h.modulesKnown && !h.kvmCore:
			extra = append(extra, "no kvm module is loaded")
		case h.modulesKnown && !h.hardwareVendor():
			extra = append(extra, "neither kvm_intel nor kvm_amd is loaded")
		}
		if noFlag {
			extra = append(extra, "/proc/cpuinfo shows no vmx or svm flag")
		}
		r.Reason = h.devPath + " is absent"
		if len(extra) > 0 {
			r.Reason += " (" + strings.Join(extra, "; ") + ")"
		}
		switch {
		case h.pvmOnly():
			r.Hint = hintHardware
		case h.miscDev != "" && !noFlag:
			r.Hint = "create the device node: mknod -m 660 /dev/kvm c 10 232 (or run udevadm trigger)"
		case h.virtFlag != "" && h.modulesKnown && !h.hardwareVendor():
			r.Hint = "load the KVM module: modprobe kvm_intel (Intel) or modprobe kvm_amd (AMD)"
		default:
			r.Hint = hintHardware
		}
	case h.pvmOnly():
		r.Reason = withGuest(pvmReason())
		r.Hint = hintHardware
	case noFlag:
		r.Reason = "/proc/cpuinfo shows no vmx or svm flag: this CPU offers no hardware virtualization to the machine"
		if h.hasVendor(modulePVM) {
			r.Reason += " (kvm_pvm, the PVM software flavour, is loaded)"
		}
		r.Reason = withGuest(r.Reason)
		r.Hint = hintHardware
	case h.devStatErr != nil:
		r.Reason = fmt.Sprintf("cannot examine %s: %v", h.devPath, h.devStatErr)
		r.Hint = "run nimbo as root"
	case !h.devIsChar:
		r.Reason = h.devPath + " is not a character device"
		r.Hint = "remove it and create the real node: mknod -m 660 /dev/kvm c 10 232"
	case d.openErr != nil:
		switch {
		case errors.Is(d.openErr, fs.ErrPermission):
			r.Reason = "permission denied opening " + h.devPath
			r.Hint = "run nimbo as root, or add its user to the group that owns /dev/kvm (usually kvm)"
		case errors.Is(d.openErr, syscall.ENXIO) || errors.Is(d.openErr, syscall.ENODEV):
			r.Reason = fmt.Sprintf("%s exists but no KVM driver answers it (%v)", h.devPath, d.openErr)
			r.Hint = hintHardware
		default:
			r.Reason = fmt.Sprintf("cannot open %s: %v", h.devPath, d.openErr)
			r.Hint = hintHardware
		}
	case d.apiErr != nil:
		r.Reason = fmt.Sprintf("%s does not answer KVM_GET_API_VERSION: %v", h.devPath, d.apiErr)
		r.Hint = hintHardware
	case d.apiVersion != expectedAPIVersion:
		r.Reason = fmt.Sprintf("KVM API version %d, want %d", d.apiVersion, expectedAPIVersion)
		r.Hint = "use a Linux kernel with the standard KVM API"
	case !d.guestStarted:
		r.Reason = fmt.Sprintf("KVM API version %d but the test guest was not run", d.apiVersion)
		r.Hint = hintHardware
	case d.guestErr != nil:
		r.Reason = fmt.Sprintf("KVM API version %d but the test guest failed: %v", d.apiVersion, d.guestErr)
		r.Hint = "KVM on this host cannot run a normal x86-64 guest; " + hintHardware
	default:
		r.Usable = true
		r.Accel = AccelKVM
		via := "an unknown backend module"
		if len(h.vendors) > 0 {
			via = strings.Join(h.vendors, "+")
		}
		flag := h.virtFlag
		if flag == "" {
			flag = "unknown"
		}
		r.Reason = fmt.Sprintf("KVM API version %d via %s (CPU flag %s); test guest ran: %s",
			d.apiVersion, via, flag, d.guestSummary)
	}
	return r
}
