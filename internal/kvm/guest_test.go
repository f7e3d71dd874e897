package kvm

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// goldenGuest is testdata/guest.S assembled by GNU as 2.40
// (as --64; objcopy -O binary -j .text).
const goldenGuest = "fabae000b016ee0f011620400f20c00c010f22c066ea1c800000080066b81000" +
	"8ed88ec08ed00f20c0ef0f20e083c8200f22e0b8001000000f22d8b9800000c0" +
	"0f320d000100000f300f20c00d000000800f22c0ea5b8000001800b810000000" +
	"8ed88ec08ed0bc0070000031c031c90fa289d866bae000ef48b8efcdab896745" +
	"23014889042500500000488b0c2500500000ef48c1e92089c8ef6a1868a38000" +
	"0048cb0f20c0eff4ebfd"

func TestGuestCodeGolden(t *testing.T) {
	want, err := hex.DecodeString(goldenGuest)
	if err != nil {
		t.Fatal(err)
	}
	got := guestCode(guestPort)
	if !bytes.Equal(got, want) {
		t.Fatalf("guest code differs from the assembler's:\n got %x\nwant %x", got, want)
	}
}

// TestGuestCodeMatchesAssembler re-assembles testdata/guest.S when GNU as
// and objcopy are installed, so the golden bytes cannot drift from the
// source.
func TestGuestCodeMatchesAssembler(t *testing.T) {
	as, err1 := exec.LookPath("as")
	objcopy, err2 := exec.LookPath("objcopy")
	if err1 != nil || err2 != nil {
		t.Skip("GNU as/objcopy not installed")
	}
	dir := t.TempDir()
	obj := filepath.Join(dir, "guest.o")
	bin := filepath.Join(dir, "guest.bin")
	if out, err := exec.Command(as, "--64", "-o", obj, "testdata/guest.S").CombinedOutput(); err != nil {
		t.Fatalf("as: %v\n%s", err, out)
	}
	if out, err := exec.Command(objcopy, "-O", "binary", "-j", ".text", obj, bin).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, out)
	}
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if got := guestCode(guestPort); !bytes.Equal(got, want) {
		t.Fatalf("guest code differs from testdata/guest.S:\n got %x\nwant %x", got, want)
	}
}

func TestGuestCodePort(t *testing.T) {
	a, b := guestCode(0x00e0), guestCode(0x1234)
	if len(a) != len(b) {
		t.Fatal("port changes the code length")
	}
	if n := bytes.Count(b, []byte{0x34, 0x12}); n != 2 {
		t.Fatalf("port 0x1234 appears %d times, want 2 (real mode and long mode)", n)
	}
	if a[len(a)-guestHLTOffset] != 0xf4 {
		t.Fatalf("byte at guestHLTOffset is %#x, want HLT", a[len(a)-guestHLTOffset])
	}
}

func TestGuestImage(t *testing.T) {
	img := buildGuestImage(guestPort)
	le := binary.LittleEndian
	if len(img) != imageSize || imageSize > guestMemSize {
		t.Fatalf("image is %d bytes", len(img))
	}
	if codeAddr+len(guestCode(guestPort)) > imageSize {
		t.Fatal("code does not fit the image")
	}
	checks := []struct {
		name      string
		got, want uint64
	}{
		{"PML4[0]", le.Uint64(img[pml4Addr:]), pdptAddr | 3},
		{"PDPT[0]", le.Uint64(img[pdptAddr:]), pdAddr | 3},
		{"PD[0] (2 MiB page at 0)", le.Uint64(img[pdAddr:]), 0x83},
		{"GDT null", le.Uint64(img[gdtAddr:]), 0},
		{"GDT code32", le.Uint64(img[gdtAddr+8:]), 0x00cf9a000000ffff},
		{"GDT data", le.Uint64(img[gdtAddr+16:]), 0x00cf92000000ffff},
		{"GDT code64", le.Uint64(img[gdtAddr+24:]), 0x00af9a000000ffff},
		{"GDTR limit", uint64(le.Uint16(img[gdtrAddr:])), 31},
		{"GDTR base", uint64(le.Uint32(img[gdtrAddr+2:])), gdtAddr},
		{"first code byte (cli)", uint64(img[codeAddr]), 0xfa},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	// The stack and scratch areas must not overlap anything prepared.
	for _, a := range []int{scratchAddr, stackTop - 16} {
		if !bytes.Equal(img[a:a+16], make([]byte, 16)) {
			t.Errorf("area at %#x is not free", a)
		}
	}
}

// goodReports is what a correct run reports.
func goodReports(vendor uint32) []ioExit {
	return []ioExit{
		{guestPort, 1, true, markerReal},
		{guestPort, 4, true, 0x60000011},
		{guestPort, 4, true, vendor},
		{guestPort, 4, true, 0x89abcdef},
		{guestPort, 4, true, 0x01234567},
		{guestPort, 4, true, 0xe0000011},
	}
}

func TestGuestCheckerAcceptsGoodRun(t *testing.T) {
	const genu = 0x756e6547 // "Genu"
	c := newGuestChecker(guestPort, genu)
	for i, e := range goodReports(genu) {
		if err := c.onIO(e); err != nil {
			t.Fatalf("report %d: %v", i+1, err)
		}
	}
	if !c.done() {
		t.Fatal("not done")
	}
	if err := c.onHLT(); err != nil {
		t.Fatal(err)
	}
	if err := c.onIO(ioExit{guestPort, 1, true, 0}); err == nil {
		t.Fatal("an extra report was accepted")
	}
}

func TestGuestCheckerRejects(t *testing.T) {
	const genu = 0x756e6547
	cases := []struct {
		name   string
		mutate func([]ioExit) []ioExit
		want   string
	}{
		{"wrong vendor", func(r []ioExit) []ioExit { r[2].Value = 0x68747541; return r }, "CPUID"},
		{"paging on in protected mode", func(r []ioExit) []ioExit { r[1].Value |= cr0PG; return r }, "PG clear"},
		{"no paging in long mode", func(r []ioExit) []ioExit { r[5].Value &^= cr0PG; return r }, "PG set"},
		{"32-bit register only", func(r []ioExit) []ioExit { r[4].Value = 0; return r }, "paging"},
		{"wrong port", func(r []ioExit) []ioExit { r[0].Port = 0x80; return r }, "unexpected port access"},
		{"in instead of out", func(r []ioExit) []ioExit { r[3].Out = false; return r }, "unexpected port access"},
		{"wrong size", func(r []ioExit) []ioExit { r[1].Size = 2; return r }, "size"},
		{"early halt", func(r []ioExit) []ioExit { return r[:3] }, "halted after 3 of 6"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newGuestChecker(guestPort, genu)
			var err error
			for _, e := range tc.mutate(goodReports(genu)) {
				if err = c.onIO(e); err != nil {
					break
				}
			}
			if err == nil {
				err = c.onHLT()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestGuestCheckerAnyVendor(t *testing.T) {
	c := newGuestChecker(guestPort, 0)
	r := goodReports(0x68747541)
	for _, e := range r {
		if err := c.onIO(e); err != nil {
			t.Fatal(err)
		}
	}
	c = newGuestChecker(guestPort, 0)
	r = goodReports(0)
	var err error
	for _, e := range r {
		if err = c.onIO(e); err != nil {
			break
		}
	}
	if err == nil {
		t.Fatal("CPUID.0:EBX of 0 was accepted")
	}
}

func TestCheckFinalState(t *testing.T) {
	code := guestCode(guestPort)
	mem := make([]byte, guestMemSize)
	binary.LittleEndian.PutUint64(mem[scratchAddr:], magic64)
	good := func() (*kvmSregs, *kvmRegs) {
		s := &kvmSregs{CR0: 0xe0000011, CR3: pml4Addr, CR4: cr4PAE, EFER: eferLME | eferLMA}
		s.CS = kvmSegment{Selector: selCode64, L: 1}
		r := &kvmRegs{RIP: uint64(codeAddr + len(code) - 2), RAX: 0xe0000011}
		return s, r
	}
	s, r := good()
	if err := checkFinalState(s, r, mem, code); err != nil {
		t.Fatalf("good state rejected: %v", err)
	}
	bad := []struct {
		name string
		f    func(s *kvmSregs, r *kvmRegs)
	}{
		{"no LMA", func(s *kvmSregs, r *kvmRegs) { s.EFER = eferLME }},
		{"no paging", func(s *kvmSregs, r *kvmRegs) { s.CR0 = 0x11 }},
		{"no PAE", func(s *kvmSregs, r *kvmRegs) { s.CR4 = 0 }},
		{"wrong CR3", func(s *kvmSregs, r *kvmRegs) { s.CR3 = 0x2000 }},
		{"compat mode CS", func(s *kvmSregs, r *kvmRegs) { s.CS.L = 0 }},
		{"wrong RIP", func(s *kvmSregs, r *kvmRegs) { r.RIP = codeAddr }},
	}
	for _, b := range bad {
		s, r := good()
		b.f(s, r)
		if err := checkFinalState(s, r, mem, code); err == nil {
			t.Errorf("%s: accepted", b.name)
		}
	}
	s, r = good()
	if err := checkFinalState(s, r, make([]byte, guestMemSize), code); err == nil {
		t.Error("missing scratch value accepted")
	}
}
