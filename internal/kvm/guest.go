package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The test guest.
//
// A PVM-flavoured /dev/kvm happily runs real-mode firmware and only breaks
// once a stock kernel is well under way, so the guest does what an early
// kernel or firmware does: it starts in real mode, loads a GDT, enters
// protected mode with a far jump, enables PAE, loads CR3, sets EFER.LME with
// WRMSR, turns on paging, far-jumps into a 64-bit code segment, runs CPUID,
// uses 64-bit registers and memory through its page tables, reloads CS with
// LRETQ (as startup_64 does) and reads CR0. It reports progress with OUT
// instructions (KVM_EXIT_IO) and finishes with HLT (KVM_EXIT_HLT).
//
// testdata/guest.S is the same program in GNU as syntax.

// Guest-physical memory layout. Everything lives in the first 2 MiB, which
// a single 2 MiB page identity-maps once paging is on.
const (
	guestMemSize = 0x200000 // one memslot at guest-physical 0
	pml4Addr     = 0x1000   // page-map level 4
	pdptAddr     = 0x2000   // page-directory-pointer table
	pdAddr       = 0x3000   // page directory (entry 0: 2 MiB page at 0)
	gdtAddr      = 0x4000   // global descriptor table, 4 entries
	gdtrAddr     = 0x4020   // LGDT pseudo-descriptor: limit u16, base u32
	scratchAddr  = 0x5000   // the guest stores magic64 here
	stackTop     = 0x7000   // RSP in long mode (LRETQ pops from it)
	codeAddr     = 0x8000   // entry point, real mode CS=0 IP=0x8000
	imageSize    = 0x9000   // bytes of memory the host prepares
	guestPort    = 0x00e0   // I/O port the guest reports on
)

// GDT selectors.
const (
	selCode32 = 0x08
	selData   = 0x10
	selCode64 = 0x18
)

// Values the guest reports and the bits the host checks.
const (
	markerReal = 0x16               // first report, from real mode
	magic64    = 0x0123456789abcdef // built in RAX, stored and reloaded
	cr0PE      = 1 << 0
	cr0PG      = 1 << 31
	cr4PAE     = 1 << 5
	eferLME    = 1 << 8
	eferLMA    = 1 << 10
	msrEFER    = 0xc0000080
)

// GDT descriptors (flat 4 GiB segments).
const (
	gdtCode32 = 0x00cf9a000000ffff // present, ring 0, code r/x, D=1, G=1
	gdtData   = 0x00cf92000000ffff // present, ring 0, data r/w, D=1, G=1
	gdtCode64 = 0x00af9a000000ffff // present, ring 0, code r/x, L=1, G=1
)

// Page-table entry bits.
const (
	ptePresent  = 1 << 0
	pteWritable = 1 << 1
	pteHuge     = 1 << 7 // PS: 2 MiB page in a page directory
)

// guestCode returns the machine code of the test guest, to be loaded at
// codeAddr, reporting on the given I/O port.
func guestCode(port uint16) []byte {
	var c []byte
	emit := func(b ...byte) { c = append(c, b...) }
	le16 := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	here := func() uint32 { return uint32(codeAddr + len(c)) }
	patch32 := func(at int, v uint32) { binary.LittleEndian.PutUint32(c[at:], v) }

	// 16-bit real mode.
	emit(0xfa)                                                   // cli
	emit(append([]byte{0xba}, le16(port)...)...)                 // mov dx, port
	emit(0xb0, markerReal)                                       // mov al, markerReal
	emit(0xee)                                                   // out dx, al            (report 1)
	emit(append([]byte{0x0f, 0x01, 0x16}, le16(gdtrAddr)...)...) // lgdt [gdtrAddr]
	emit(0x0f, 0x20, 0xc0)                                       // mov eax, cr0
	emit(0x0c, cr0PE)                                            // or al, CR0.PE
	emit(0x0f, 0x22, 0xc0)                                       // mov cr0, eax
	emit(0x66, 0xea)                                             // jmp dword selCode32:pm32
	pm32Fix := len(c)
	emit(0, 0, 0, 0)
	emit(le16(selCode32)...)

	// 32-bit protected mode.
	patch32(pm32Fix, here())
	emit(append([]byte{0x66, 0xb8}, le16(selData)...)...) // mov ax, selData
	emit(0x8e, 0xd8)                                      // mov ds, ax
	emit(0x8e, 0xc0)                                      // mov es, ax
	emit(0x8e, 0xd0)                                      // mov ss, ax
	emit(0x0f, 0x20, 0xc0)                                // mov eax, cr0
	emit(0xef)                                            // out dx, eax           (report 2)
	emit(0x0f, 0x20, 0xe0)                                // mov eax, cr4
	emit(0x83, 0xc8, cr4PAE)                              // or eax, CR4.PAE
	emit(0x0f, 0x22, 0xe0)                                // mov cr4, eax
	emit(append([]byte{0xb8}, le32(pml4Addr)...)...)      // mov eax, pml4Addr
	emit(0x0f, 0x22, 0xd8)                                // mov cr3, eax
	emit(append([]byte{0xb9}, le32(msrEFER)...)...)       // mov ecx, IA32_EFER
	emit(0x0f, 0x32)                                      // rdmsr
	emit(append([]byte{0x0d}, le32(eferLME)...)...)       // or eax, EFER.LME
	emit(0x0f, 0x30)                                      // wrmsr
	emit(0x0f, 0x20, 0xc0)                                // mov eax, cr0
	emit(append([]byte{0x0d}, le32(cr0PG)...)...)         // or eax, CR0.PG
	emit(0x0f, 0x22, 0xc0)                                // mov cr0, eax
	emit(0xea)                                            // jmp selCode64:lm64
	lm64Fix := len(c)
	emit(0, 0, 0, 0)
	emit(le16(selCode64)...)

	// 64-bit long mode.
	patch32(lm64Fix, here())
	emit(append([]byte{0xb8}, le32(selData)...)...)    // mov eax, selData
	emit(0x8e, 0xd8)                                   // mov ds, eax
	emit(0x8e, 0xc0)                                   // mov es, eax
	emit(0x8e, 0xd0)                                   // mov ss, eax
	emit(append([]byte{0xbc}, le32(stackTop)...)...)   // mov esp, stackTop
	emit(0x31, 0xc0)                                   // xor eax, eax
	emit(0x31, 0xc9)                                   // xor ecx, ecx
	emit(0x0f, 0xa2)                                   // cpuid
	emit(0x89, 0xd8)                                   // mov eax, ebx
	emit(append([]byte{0x66, 0xba}, le16(port)...)...) // mov dx, port
	emit(0xef)                                         // out dx, eax           (report 3)
	emit(0x48, 0xb8)                                   // mov rax, magic64
	emit(binary.LittleEndian.AppendUint64(nil, magic64)...)
	emit(append([]byte{0x48, 0x89, 0x04, 0x25}, le32(scratchAddr)...)...) // mov [scratchAddr], rax
	emit(append([]byte{0x48, 0x8b, 0x0c, 0x25}, le32(scratchAddr)...)...) // mov rcx, [scratchAddr]
	emit(0xef)                                                            // out dx, eax           (report 4)
	emit(0x48, 0xc1, 0xe9, 0x20)                                          // shr rcx, 32
	emit(0x89, 0xc8)                                                      // mov eax, ecx
	emit(0xef)                                                            // out dx, eax           (report 5)
	emit(0x6a, selCode64)                                                 // push selCode64
	emit(0x68)                                                            // push qword lm64b
	lm64bFix := len(c)
	emit(0, 0, 0, 0)
	emit(0x48, 0xcb) // retfq (lretq)
	patch32(lm64bFix, here())
	emit(0x0f, 0x20, 0xc0) // mov rax, cr0
	emit(0xef)             // out dx, eax           (report 6)
	emit(0xf4)             // hlt
	emit(0xeb, 0xfd)       // jmp hlt (should KVM ever resume it)
	return c
}

// guestHLTOffset is the offset of the HLT instruction from the end of the
// code (HLT, then a two-byte jump back to it).
const guestHLTOffset = 3

// buildGuestImage returns the first imageSize bytes of guest memory: page
// tables, GDT, GDTR pseudo-descriptor and code. The rest of memory is zero.
func buildGuestImage(port uint16) []byte {
	img := make([]byte, imageSize)
	le := binary.LittleEndian
	le.PutUint64(img[pml4Addr:], pdptAddr|ptePresent|pteWritable)
	le.PutUint64(img[pdptAddr:], pdAddr|ptePresent|pteWritable)
	le.PutUint64(img[pdAddr:], 0|ptePresent|pteWritable|pteHuge)
	le.PutUint64(img[gdtAddr+selCode32:], gdtCode32)
	le.PutUint64(img[gdtAddr+selData:], gdtData)
	le.PutUint64(img[gdtAddr+selCode64:], gdtCode64)
	le.PutUint16(img[gdtrAddr:], 4*8-1) // limit
	le.PutUint32(img[gdtrAddr+2:], gdtAddr)
	copy(img[codeAddr:], guestCode(port))
	return img
}

// ioExit is one port write the guest made (a KVM_EXIT_IO with direction out).
type ioExit struct {
	Port  uint16
	Size  uint8 // 1, 2 or 4 bytes
	Out   bool
	Value uint32
}

// guestStep is one expected report from the guest.
type guestStep struct {
	what  string // what the report proves, for messages
	size  uint8
	check func(v uint32) error
}

// guestChecker checks the guest's reports as they arrive, in order.
type guestChecker struct {
	port  uint16
	steps []guestStep
	next  int
}

// newGuestChecker returns a checker for the reports of guestCode. vendorEBX
// is CPUID leaf 0 EBX as configured with KVM_SET_CPUID2; 0 accepts any
// non-zero value.
func newGuestChecker(port uint16, vendorEBX uint32) *guestChecker {
	exact := func(want uint32) func(uint32) error {
		return func(v uint32) error {
			if v != want {
				return fmt.Errorf("got %#x, want %#x", v, want)
			}
			return nil
		}
	}
	return &guestChecker{port: port, steps: []guestStep{
		{"real mode code ran", 1, exact(markerReal)},
		{"protected mode entered (far jump, segment loads)", 4, func(v uint32) error {
			if v&(cr0PE|cr0PG) != cr0PE {
				return fmt.Errorf("CR0=%#x, want PE set and PG clear", v)
			}
			return nil
		}},
		{"64-bit mode entered and CPUID answered", 4, func(v uint32) error {
			if vendorEBX == 0 {
				if v == 0 {
					return errors.New("CPUID.0:EBX is 0")
				}
				return nil
			}
			return exact(vendorEBX)(v)
		}},
		{"64-bit register low half", 4, exact(uint32(magic64 & 0xffffffff))},
		{"64-bit value read back through paging", 4, exact(uint32(magic64 >> 32))},
		{"far return reloaded CS; CR0 read in long mode", 4, func(v uint32) error {
			if v&(cr0PE|cr0PG) != cr0PE|cr0PG {
				return fmt.Errorf("CR0=%#x, want PE and PG set", v)
			}
			return nil
		}},
	}}
}

// onIO checks one port access by the guest.
func (g *guestChecker) onIO(e ioExit) error {
	if g.next >= len(g.steps) {
		return fmt.Errorf("unexpected extra port access %+v after the last report", e)
	}
	s := g.steps[g.next]
	if !e.Out || e.Port != g.port || e.Size != s.size {
		return fmt.Errorf("report %d (%s): unexpected port access: out=%v port %#x size %d, want out to %#x size %d",
			g.next+1, s.what, e.Out, e.Port, e.Size, g.port, s.size)
	}
	if err := s.check(e.Value); err != nil {
		return fmt.Errorf("report %d (%s): %w", g.next+1, s.what, err)
	}
	g.next++
	return nil
}

// onHLT checks that the guest halted after all its reports.
func (g *guestChecker) onHLT() error {
	if g.next != len(g.steps) {
		return fmt.Errorf("guest halted after %d of %d reports", g.next, len(g.steps))
	}
	return nil
}

// done reports whether every expected report arrived.
func (g *guestChecker) done() bool { return g.next == len(g.steps) }

// progress describes how far the guest got, for error messages.
func (g *guestChecker) progress() string {
	if g.next == 0 {
		return "no report arrived"
	}
	return fmt.Sprintf("last good report %d/%d: %s", g.next, len(g.steps), g.steps[g.next-1].what)
}

// checkFinalState checks the vCPU and memory after the guest halted.
func checkFinalState(s *kvmSregs, r *kvmRegs, mem []byte, code []byte) error {
	if s.EFER&(eferLME|eferLMA) != eferLME|eferLMA {
		return fmt.Errorf("EFER=%#x after HLT, want LME and LMA set", s.EFER)
	}
	if s.CR0&(cr0PE|cr0PG) != cr0PE|cr0PG {
		return fmt.Errorf("CR0=%#x after HLT, want PE and PG set", s.CR0)
	}
	if s.CR4&cr4PAE == 0 {
		return fmt.Errorf("CR4=%#x after HLT, want PAE set", s.CR4)
	}
	if s.CR3 != pml4Addr {
		return fmt.Errorf("CR3=%#x after HLT, want %#x", s.CR3, pml4Addr)
	}
	if s.CS.Selector != selCode64 || s.CS.L != 1 {
		return fmt.Errorf("CS selector %#x L=%d after HLT, want %#x with L=1", s.CS.Selector, s.CS.L, selCode64)
	}
	wantRIP := uint64(codeAddr + len(code) - guestHLTOffset + 1)
	if r.RIP != wantRIP {
		return fmt.Errorf("RIP=%#x after HLT, want %#x", r.RIP, wantRIP)
	}
	if r.RAX&(cr0PE|cr0PG) != cr0PE|cr0PG {
		return fmt.Errorf("RAX=%#x after HLT, want the CR0 value", r.RAX)
	}
	if len(mem) < scratchAddr+8 {
		return errors.New("guest memory too small")
	}
	if got := binary.LittleEndian.Uint64(mem[scratchAddr:]); got != magic64 {
		return fmt.Errorf("scratch memory holds %#x, want %#x", got, uint64(magic64))
	}
	return nil
}
