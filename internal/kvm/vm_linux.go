//go:build linux && amd64

package kvm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxExits bounds the number of KVM_RUN round trips; the guest needs 7.
const maxExits = 64

// kickGrace is how long probeDevice waits, kicking the vCPU thread, for a
// timed-out KVM_RUN to return before giving up on it.
const kickGrace = 2 * time.Second

// probeDevice opens the KVM device at path and runs the test guest.
func probeDevice(ctx context.Context, path string, timeout time.Duration, log *slog.Logger) deviceOutcome {
	var d deviceOutcome
	fd, err := openRetry(path)
	if err != nil {
		d.openErr = &fs.PathError{Op: "open", Path: path, Err: err}
		return d
	}
	d.opened = true
	v, err := ioctl(fd, ioctlGetAPIVersion, 0)
	if err != nil {
		unix.Close(fd)
		d.apiErr = err
		return d
	}
	d.apiVersion = v
	if v != expectedAPIVersion {
		unix.Close(fd)
		return d
	}
	d.guestStarted = true
	// From here the vCPU goroutine owns fd and closes it, even if it
	// outlives this call.
	d.guestSummary, d.guestErr = runGuestBounded(ctx, fd, timeout, log)
	if d.guestErr != nil {
		d.guestSummary = d.guestErr.Error()
	}
	return d
}

// openRetry opens the device read-write, retrying if a signal interrupts
// the open.
func openRetry(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		return fd, err
	}
}

// vcpuThread lets the waiting goroutine interrupt a running KVM_RUN: it
// sets kvm_run.immediate_exit and signals the vCPU's OS thread, which
// makes KVM_RUN return EINTR.
type vcpuThread struct {
	mu       sync.Mutex
	tid      int    // OS thread of the vCPU goroutine, 0 when not locked
	run      []byte // kvm_run mapping, nil when not mapped
	stopping bool
}

// kick asks the vCPU goroutine to stop and interrupts KVM_RUN.
func (t *vcpuThread) kick() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopping = true
	if t.run != nil {
		t.run[runImmediateExit] = 1
	}
	if t.tid != 0 {
		// SIGURG is the Go runtime's own preemption signal: harmless to
		// the process, and it interrupts the ioctl.
		_ = unix.Tgkill(unix.Getpid(), t.tid, unix.SIGURG)
	}
}

// stopped reports whether kick was called.
func (t *vcpuThread) stopped() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopping
}

func (t *vcpuThread) setRun(run []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.run = run
	if run != nil && t.stopping {
		run[runImmediateExit] = 1
	}
}

func (t *vcpuThread) setTID(tid int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tid = tid
}

type guestResult struct {
	summary string
	err     error
}

// runGuestBounded runs the test guest on a goroutine locked to its OS
// thread, and stops it when the timeout or ctx expires. It takes ownership
// of kvmFD.
func runGuestBounded(ctx context.Context, kvmFD int, timeout time.Duration, log *slog.Logger) (string, error) {
	t := &vcpuThread{}
	ch := make(chan guestResult, 1)
	go func() {
		defer unix.Close(kvmFD)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		t.setTID(unix.Gettid())
		defer t.setTID(0)
		s, err := runGuest(kvmFD, t)
		ch <- guestResult{s, err}
	}()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var why string
	select {
	case r := <-ch:
		return r.summary, r.err
	case <-timer.C:
		why = fmt.Sprintf("timed out after %v", timeout)
	case <-ctx.Done():
		why = "cancelled: " + ctx.Err().Error()
	}
	log.Debug("kvm probe: stopping the test guest", "why", why)
	t.kick()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	grace := time.NewTimer(kickGrace)
	defer grace.Stop()
	for {
		select {
		case r := <-ch:
			if r.err == nil {
				return r.summary, nil
			}
			return "", fmt.Errorf("%s: %w", why, r.err)
		case <-tick.C:
			t.kick()
		case <-grace.C:
			// The goroutine still owns every fd and mapping and releases
			// them if KVM_RUN ever returns.
			return "", fmt.Errorf("%s, and KVM_RUN did not return when interrupted: the vCPU is stuck in the kernel", why)
		}
	}
}

// errStopped is returned by runGuest when it was kicked.
var errStopped = errors.New("the test guest was stopped before it finished")

// runGuest creates a VM and vCPU, runs the test guest to HLT and checks
// every report and the final state. It must run on a locked OS thread.
func runGuest(kvmFD int, t *vcpuThread) (summary string, err error) {
	start := time.Now()
	if n, err := ioctl(kvmFD, ioctlCheckExtension, capUserMemory); err != nil || n <= 0 {
		return "", fmt.Errorf("KVM_CAP_USER_MEMORY is not supported (%d, %v)", n, err)
	}

	// Guest memory first, so it is unmapped only after the VM is closed.
	mem, err := unix.Mmap(-1, 0, guestMemSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return "", fmt.Errorf("mmap guest memory: %w", err)
	}
	defer unix.Munmap(mem)
	code := guestCode(guestPort)
	copy(mem, buildGuestImage(guestPort))

	vmFD, err := ioctlRetry(kvmFD, ioctlCreateVM, 0)
	if err != nil {
		return "", fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	defer unix.Close(vmFD)

	// Intel needs these for real mode when it lacks "unrestricted guest";
	// QEMU always sets them, at the same addresses.
	if n, _ := ioctl(vmFD, ioctlCheckExtension, capSetIdentityMapAdr); n > 0 {
		addr := uint64(identityMapAddr)
		if err := ioctlPtr(vmFD, ioctlSetIdentityMapAddr, unsafe.Pointer(&addr)); err != nil {
			return "", fmt.Errorf("KVM_SET_IDENTITY_MAP_ADDR: %w", err)
		}
	}
	if n, _ := ioctl(vmFD, ioctlCheckExtension, capSetTSSAddr); n > 0 {
		if _, err := ioctl(vmFD, ioctlSetTSSAddr, tssAddr); err != nil {
			return "", fmt.Errorf("KVM_SET_TSS_ADDR: %w", err)
		}
	}

	region := &kvmUserspaceMemoryRegion{
		Slot:          0,
		GuestPhysAddr: 0,
		MemorySize:    guestMemSize,
		UserspaceAddr: uint64(uintptr(unsafe.Pointer(&mem[0]))),
	}
	if err := ioctlPtr(vmFD, ioctlSetUserMemoryRegion, unsafe.Pointer(region)); err != nil {
		return "", fmt.Errorf("KVM_SET_USER_MEMORY_REGION: %w", err)
	}

	vcpuFD, err := ioctlRetry(vmFD, ioctlCreateVCPU, 0)
	if err != nil {
		return "", fmt.Errorf("KVM_CREATE_VCPU: %w", err)
	}
	defer unix.Close(vcpuFD)

	runSize, err := ioctl(kvmFD, ioctlGetVCPUMmapSize, 0)
	if err != nil {
		return "", fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	if runSize < runMinSize {
		return "", fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE returned %d, want at least %d", runSize, runMinSize)
	}
	run, err := unix.Mmap(vcpuFD, 0, runSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return "", fmt.Errorf("mmap kvm_run: %w", err)
	}
	t.setRun(run)
	defer func() {
		t.setRun(nil)
		unix.Munmap(run)
	}()

	// CPUID: without KVM_SET_CPUID2 the guest has no long-mode bit and
	// WRMSR to EFER.LME faults.
	cpuid := &kvmCPUID2{Nent: maxCPUIDEntries}
	if err := ioctlPtr(kvmFD, ioctlGetSupportedCPUID, unsafe.Pointer(cpuid)); err != nil {
		return "", fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
	}
	vendorEBX, ok := cpuidLeaf0EBX(cpuid)
	if !ok {
		return "", errors.New("KVM_GET_SUPPORTED_CPUID returned no leaf 0")
	}
	if err := ioctlPtr(vcpuFD, ioctlSetCPUID2, unsafe.Pointer(cpuid)); err != nil {
		return "", fmt.Errorf("KVM_SET_CPUID2: %w", err)
	}

	// Real mode at 0000:8000, like a boot sector with CS=0.
	sregs := &kvmSregs{}
	if err := ioctlPtr(vcpuFD, ioctlGetSregs, unsafe.Pointer(sregs)); err != nil {
		return "", fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	sregs.CS.Base = 0
	sregs.CS.Selector = 0
	if err := ioctlPtr(vcpuFD, ioctlSetSregs, unsafe.Pointer(sregs)); err != nil {
		return "", fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	regs := &kvmRegs{RIP: codeAddr, RFLAGS: 0x2} // bit 1 of RFLAGS is always set
	if err := ioctlPtr(vcpuFD, ioctlSetRegs, unsafe.Pointer(regs)); err != nil {
		return "", fmt.Errorf("KVM_SET_REGS: %w", err)
	}

	chk := newGuestChecker(guestPort, vendorEBX)
	exits := 0
	for {
		if t.stopped() {
			return "", fmt.Errorf("%w (%s)", errStopped, chk.progress())
		}
		if exits >= maxExits {
			return "", fmt.Errorf("guest did not halt after %d exits (%s)", exits, chk.progress())
		}
		_, err := ioctl(vcpuFD, ioctlRun, 0)
		if err == unix.EINTR || (err == nil && exitReason(run) == exitIntr) {
			// A signal: ours (then stopped() is true) or a Go runtime
			// preemption signal, after which KVM_RUN simply resumes.
			continue
		}
		if err != nil {
			return "", fmt.Errorf("KVM_RUN: %w (%s)", err, chk.progress())
		}
		exits++
		switch reason := exitReason(run); reason {
		case exitIO:
			e, err := decodeIOExit(run)
			if err != nil {
				return "", err
			}
			if err := chk.onIO(e); err != nil {
				return "", err
			}
		case exitHLT:
			if err := chk.onHLT(); err != nil {
				return "", err
			}
			if err := ioctlPtr(vcpuFD, ioctlGetSregs, unsafe.Pointer(sregs)); err != nil {
				return "", fmt.Errorf("KVM_GET_SREGS after HLT: %w", err)
			}
			if err := ioctlPtr(vcpuFD, ioctlGetRegs, unsafe.Pointer(regs)); err != nil {
				return "", fmt.Errorf("KVM_GET_REGS after HLT: %w", err)
			}
			if err := checkFinalState(sregs, regs, mem, code); err != nil {
				return "", err
			}
			return fmt.Sprintf("real mode → protected mode → 64-bit long mode with paging; CPUID, WRMSR, control-register writes, far jumps, port I/O and HLT all correct (%d exits in %v)",
				exits, time.Since(start).Round(time.Microsecond)), nil
		default:
			return "", fmt.Errorf("%s (%s)", describeExit(run, reason), chk.progress())
		}
	}
}

// cpuidLeaf0EBX finds CPUID leaf 0's EBX (first four vendor characters).
func cpuidLeaf0EBX(c *kvmCPUID2) (uint32, bool) {
	n := int(c.Nent)
	if n > len(c.Entries) {
		n = len(c.Entries)
	}
	for _, e := range c.Entries[:n] {
		if e.Function == 0 && e.Index == 0 {
			return e.EBX, true
		}
	}
	return 0, false
}

// exitReason reads kvm_run.exit_reason.
func exitReason(run []byte) uint32 {
	return binary.LittleEndian.Uint32(run[runExitReason:])
}

// decodeIOExit reads kvm_run.io and the data it points at.
func decodeIOExit(run []byte) (ioExit, error) {
	e := ioExit{
		Out:  run[runIODirection] == exitIOOut,
		Size: run[runIOSize],
		Port: binary.LittleEndian.Uint16(run[runIOPort:]),
	}
	count := binary.LittleEndian.Uint32(run[runIOCount:])
	off := binary.LittleEndian.Uint64(run[runIODataOffset:])
	if count != 1 {
		return e, fmt.Errorf("unexpected string I/O: port %#x count %d", e.Port, count)
	}
	if e.Size != 1 && e.Size != 2 && e.Size != 4 {
		return e, fmt.Errorf("unexpected I/O size %d on port %#x", e.Size, e.Port)
	}
	if off > uint64(len(run)) || uint64(len(run))-off < uint64(e.Size) {
		return e, fmt.Errorf("I/O data offset %#x out of range", off)
	}
	var buf [4]byte
	copy(buf[:], run[off:off+uint64(e.Size)])
	e.Value = binary.LittleEndian.Uint32(buf[:])
	return e, nil
}

// describeExit explains an exit the guest should not have caused.
func describeExit(run []byte, reason uint32) string {
	le := binary.LittleEndian
	switch reason {
	case exitShutdown:
		return "the guest triple-faulted (KVM_EXIT_SHUTDOWN)"
	case exitInternalError:
		sub := le.Uint32(run[runInternalSuberror:])
		return fmt.Sprintf("KVM internal error, suberror %d (%s)", sub, internalErrorName(sub))
	case exitFailEntry:
		return fmt.Sprintf("VM entry failed (KVM_EXIT_FAIL_ENTRY), hardware reason %#x", le.Uint64(run[runFailEntryReason:]))
	case exitUnknown:
		return fmt.Sprintf("unknown exit (KVM_EXIT_UNKNOWN), hardware reason %#x", le.Uint64(run[runHWExitReason:]))
	case exitMMIO:
		return fmt.Sprintf("unexpected memory-mapped I/O at %#x (KVM_EXIT_MMIO)", le.Uint64(run[runMMIOPhysAddr:]))
	default:
		return fmt.Sprintf("unexpected exit reason %d (%s)", reason, exitName(reason))
	}
}

// ioctl issues an ioctl with an integer argument.
func ioctl(fd int, req, arg uintptr) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if e != 0 {
		return int(r), e
	}
	return int(r), nil
}

// ioctlRetry is ioctl, retried while interrupted by a signal.
func ioctlRetry(fd int, req, arg uintptr) (int, error) {
	for {
		r, err := ioctl(fd, req, arg)
		if err == unix.EINTR {
			continue
		}
		return r, err
	}
}

// ioctlPtr issues an ioctl whose argument points at a struct.
func ioctlPtr(fd int, req uintptr, arg unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if e != 0 {
		return e
	}
	return nil
}
