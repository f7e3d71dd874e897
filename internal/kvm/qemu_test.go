package kvm

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// qemuBIOS wraps the guest image in a 64 KiB firmware image for QEMU's
// -bios: the reset vector jumps to a stub that copies the image from ROM
// (F000:0000) to RAM at 0 and jumps to 0000:8000, which leaves the CPU in
// the state the KVM probe sets up (real mode, CS=DS=ES=0, IP=0x8000).
func qemuBIOS(port uint16) []byte {
	rom := make([]byte, 0x10000)
	copy(rom, buildGuestImage(port))
	stub := []byte{
		0xfa,       // cli
		0x31, 0xc0, // xor ax, ax
		0x8e, 0xc0, // mov es, ax
		0xb8, 0x00, 0xf0, // mov ax, 0xf000
		0x8e, 0xd8, // mov ds, ax
		0x31, 0xf6, // xor si, si
		0x31, 0xff, // xor di, di
		0xb9, byte(imageSize & 0xff), byte(imageSize >> 8), // mov cx, imageSize
		0xfc,       // cld
		0xf3, 0xa4, // rep movsb
		0x31, 0xc0, // xor ax, ax
		0x8e, 0xd8, // mov ds, ax
		0xea, byte(codeAddr & 0xff), byte(codeAddr >> 8), 0x00, 0x00, // jmp 0000:codeAddr
	}
	copy(rom[0xf000:], stub)
	copy(rom[0xfff0:], []byte{0xea, 0x00, 0xf0, 0x00, 0xf0}) // jmp f000:f000
	return rom
}

var traceWrite = regexp.MustCompile(`memory_region_ops_write .* value 0x([0-9a-f]+) size (\d+) name 'pc-testdev-ioport'`)

// TestGuestUnderQEMU runs the test guest under QEMU's TCG emulator, which
// checks that the hand-assembled mode switches really work without needing
// /dev/kvm. The pc-testdev device accepts the guest's port writes on 0xe0 and
// QEMU's memory_region_ops_write trace shows their values.
func TestGuestUnderQEMU(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	if guestPort != 0xe0 {
		t.Skip("pc-testdev listens on port 0xe0 only")
	}
	dir := t.TempDir()
	bios := filepath.Join(dir, "probe.rom")
	if err := os.WriteFile(bios, qemuBIOS(guestPort), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-nodefaults", "-display", "none", "-accel", "tcg", "-m", "16",
		"-no-reboot", "-bios", bios, "-device", "pc-testdev",
		"-trace", "memory_region_ops_write")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cancel()

	chk := newGuestChecker(guestPort, 0) // TCG's vendor depends on the CPU model
	sc := bufio.NewScanner(stderr)
	for !chk.done() && sc.Scan() {
		m := traceWrite.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, _ := strconv.ParseUint(m[1], 16, 32)
		size, _ := strconv.Atoi(m[2])
		e := ioExit{Port: guestPort, Size: uint8(size), Out: true, Value: uint32(v)}
		t.Logf("guest reported %#x (%d bytes)", e.Value, e.Size)
		if err := chk.onIO(e); err != nil {
			t.Fatal(err)
		}
	}
	if !chk.done() {
		t.Fatalf("the guest stopped early under QEMU: %s", chk.progress())
	}
}
