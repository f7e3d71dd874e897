//go:build linux && amd64

package kvm

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestProbeHere runs the real probe on this machine.
func TestProbeHere(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	r := Probe(ctx)
	t.Logf("Probe took %v: %+v", time.Since(start), r)
	if (r.Accel == AccelKVM) != r.Usable || r.Reason == "" {
		t.Fatalf("inconsistent result %+v", r)
	}
	h := readHostInfo("")
	switch {
	case !h.devExists:
		if r.Usable || r.Accel != AccelTCG || !strings.Contains(r.Reason, "/dev/kvm is absent") {
			t.Fatalf("want tcg because /dev/kvm is absent, got %+v", r)
		}
	case h.pvmOnly():
		if r.Usable {
			t.Fatalf("claimed usable with only kvm_pvm loaded: %+v", r)
		}
	case r.Usable:
		if !r.GuestRan || r.APIVersion != expectedAPIVersion {
			t.Fatalf("usable without a good guest run: %+v", r)
		}
	}
}

// TestProbeNotAKVMDevice points the probe at /dev/null, which opens but
// answers no KVM ioctl.
func TestProbeNotAKVMDevice(t *testing.T) {
	if _, err := os.Stat("/dev/null"); err != nil {
		t.Skip("no /dev/null")
	}
	f := newFakeRoot(t).modules("kvm", "kvm_intel").cpuFlags("vmx lm")
	if err := os.MkdirAll(filepath.Join(f.dir, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/null", filepath.Join(f.dir, "dev/kvm")); err != nil {
		t.Fatal(err)
	}
	r := ProbeWith(context.Background(), Options{Root: f.dir})
	if r.Usable || !strings.Contains(r.Reason, "does not answer KVM_GET_API_VERSION") {
		t.Fatalf("unexpected result %+v", r)
	}
}

// TestKickInterruptsThread checks the timeout machinery: kick must make a
// syscall blocked on the locked thread return EINTR (pause(2) behaves like
// KVM_RUN here: it is not restarted after a signal handler ran).
func TestKickInterruptsThread(t *testing.T) {
	th := &vcpuThread{}
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		th.setTID(unix.Gettid())
		defer th.setTID(0)
		close(started)
		for !th.stopped() {
			_ = unix.Pause()
		}
		done <- nil
	}()
	<-started
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		th.kick()
		select {
		case <-done:
			return
		case <-tick.C:
		case <-deadline:
			t.Fatal("the blocked thread was not interrupted")
		}
	}
}

func TestDecodeIOExit(t *testing.T) {
	run := make([]byte, 4096)
	run[runIODirection] = exitIOOut
	run[runIOSize] = 4
	run[runIOPort] = 0xe0
	run[runIOCount] = 1
	run[runIODataOffset] = 0x80
	copy(run[0x80:], []byte{0xef, 0xcd, 0xab, 0x89})
	e, err := decodeIOExit(run)
	if err != nil || e != (ioExit{Port: 0xe0, Size: 4, Out: true, Value: 0x89abcdef}) {
		t.Fatalf("got %+v, %v", e, err)
	}
	run[runIODataOffset+1] = 0x10 // offset 0x1080, past the page
	if _, err := decodeIOExit(run); err == nil {
		t.Fatal("out-of-range data offset accepted")
	}
	run[runIODataOffset+1] = 0
	run[runIOCount] = 3
	if _, err := decodeIOExit(run); err == nil {
		t.Fatal("string I/O accepted")
	}
}

func TestDescribeExit(t *testing.T) {
	run := make([]byte, 4096)
	run[runInternalSuberror] = internalErrorEmulation
	if s := describeExit(run, exitInternalError); !strings.Contains(s, "suberror 1 (emulation failure)") {
		t.Errorf("got %q", s)
	}
	if s := describeExit(run, exitShutdown); !strings.Contains(s, "triple-faulted") {
		t.Errorf("got %q", s)
	}
	if s := describeExit(run, exitException); !strings.Contains(s, "KVM_EXIT_EXCEPTION") {
		t.Errorf("got %q", s)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestProbeClosesFDs checks that probing (the device path and the real
// host) leaves no descriptor open.
func TestProbeClosesFDs(t *testing.T) {
	f := newFakeRoot(t).modules("kvm", "kvm_intel").cpuFlags("vmx lm")
	os.MkdirAll(filepath.Join(f.dir, "dev"), 0o755)
	if err := os.Symlink("/dev/null", filepath.Join(f.dir, "dev/kvm")); err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	for i := 0; i < 20; i++ {
		ProbeWith(context.Background(), Options{Root: f.dir})
		Probe(context.Background())
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors open before, %d after", before, after)
	}
}
