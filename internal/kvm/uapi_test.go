package kvm

import (
	"testing"
	"unsafe"
)

// The expected values below were printed by a C program including
// <linux/kvm.h> (sizeof, offsetof and the ioctl macros) on x86-64.

func TestStructSizes(t *testing.T) {
	cases := []struct {
		name      string
		got, want uintptr
	}{
		{"kvm_userspace_memory_region", unsafe.Sizeof(kvmUserspaceMemoryRegion{}), 32},
		{"kvm_regs", unsafe.Sizeof(kvmRegs{}), 144},
		{"kvm_segment", unsafe.Sizeof(kvmSegment{}), 24},
		{"kvm_dtable", unsafe.Sizeof(kvmDtable{}), 16},
		{"kvm_sregs", unsafe.Sizeof(kvmSregs{}), 312},
		{"kvm_cpuid_entry2", unsafe.Sizeof(kvmCPUIDEntry2{}), 40},
		{"kvm_cpuid2 header", unsafe.Offsetof(kvmCPUID2{}.Entries), 8},
		{"kvm_cpuid2 with entries", unsafe.Sizeof(kvmCPUID2{}), 8 + 40*maxCPUIDEntries},
		// The constants the ioctl numbers are computed from.
		{"sizeofUserspaceMemoryRegion", sizeofUserspaceMemoryRegion, unsafe.Sizeof(kvmUserspaceMemoryRegion{})},
		{"sizeofKVMRegs", sizeofKVMRegs, unsafe.Sizeof(kvmRegs{})},
		{"sizeofKVMSregs", sizeofKVMSregs, unsafe.Sizeof(kvmSregs{})},
		{"sizeofKVMSegment", sizeofKVMSegment, unsafe.Sizeof(kvmSegment{})},
		{"sizeofKVMDtable", sizeofKVMDtable, unsafe.Sizeof(kvmDtable{})},
		{"sizeofKVMCPUIDEntry2", sizeofKVMCPUIDEntry2, unsafe.Sizeof(kvmCPUIDEntry2{})},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: size %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestStructOffsets(t *testing.T) {
	var s kvmSregs
	var seg kvmSegment
	var r kvmRegs
	var m kvmUserspaceMemoryRegion
	cases := []struct {
		name      string
		got, want uintptr
	}{
		{"kvm_sregs.ds", unsafe.Offsetof(s.DS), 24},
		{"kvm_sregs.tr", unsafe.Offsetof(s.TR), 144},
		{"kvm_sregs.gdt", unsafe.Offsetof(s.GDT), 0xc0},
		{"kvm_sregs.idt", unsafe.Offsetof(s.IDT), 0xd0},
		{"kvm_sregs.cr0", unsafe.Offsetof(s.CR0), 0xe0},
		{"kvm_sregs.cr3", unsafe.Offsetof(s.CR3), 0xf0},
		{"kvm_sregs.efer", unsafe.Offsetof(s.EFER), 0x108},
		{"kvm_sregs.apic_base", unsafe.Offsetof(s.APICBase), 0x110},
		{"kvm_sregs.interrupt_bitmap", unsafe.Offsetof(s.InterruptBitmap), 0x118},
		{"kvm_segment.selector", unsafe.Offsetof(seg.Selector), 0xc},
		{"kvm_segment.type", unsafe.Offsetof(seg.Type), 0xe},
		{"kvm_segment.l", unsafe.Offsetof(seg.L), 0x13},
		{"kvm_segment.unusable", unsafe.Offsetof(seg.Unusable), 0x16},
		{"kvm_regs.rip", unsafe.Offsetof(r.RIP), 0x80},
		{"kvm_regs.rflags", unsafe.Offsetof(r.RFLAGS), 0x88},
		{"kvm_userspace_memory_region.guest_phys_addr", unsafe.Offsetof(m.GuestPhysAddr), 8},
		{"kvm_userspace_memory_region.userspace_addr", unsafe.Offsetof(m.UserspaceAddr), 24},
		// struct kvm_run
		{"kvm_run.immediate_exit", runImmediateExit, 0x1},
		{"kvm_run.exit_reason", runExitReason, 0x8},
		{"kvm_run.io.direction", runIODirection, 0x20},
		{"kvm_run.io.size", runIOSize, 0x21},
		{"kvm_run.io.port", runIOPort, 0x22},
		{"kvm_run.io.count", runIOCount, 0x24},
		{"kvm_run.io.data_offset", runIODataOffset, 0x28},
		{"kvm_run.internal.suberror", runInternalSuberror, 0x20},
		{"kvm_run.internal.ndata", runInternalNData, 0x24},
		{"kvm_run.internal.data", runInternalData, 0x28},
		{"kvm_run.fail_entry.hardware_entry_failure_reason", runFailEntryReason, 0x20},
		{"kvm_run.mmio.phys_addr", runMMIOPhysAddr, 0x20},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: offset %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

func TestIoctlNumbers(t *testing.T) {
	cases := []struct {
		name      string
		got, want uintptr
	}{
		{"KVM_GET_API_VERSION", ioctlGetAPIVersion, 0xae00},
		{"KVM_CREATE_VM", ioctlCreateVM, 0xae01},
		{"KVM_CHECK_EXTENSION", ioctlCheckExtension, 0xae03},
		{"KVM_GET_VCPU_MMAP_SIZE", ioctlGetVCPUMmapSize, 0xae04},
		{"KVM_GET_SUPPORTED_CPUID", ioctlGetSupportedCPUID, 0xc008ae05},
		{"KVM_CREATE_VCPU", ioctlCreateVCPU, 0xae41},
		{"KVM_SET_USER_MEMORY_REGION", ioctlSetUserMemoryRegion, 0x4020ae46},
		{"KVM_SET_TSS_ADDR", ioctlSetTSSAddr, 0xae47},
		{"KVM_SET_IDENTITY_MAP_ADDR", ioctlSetIdentityMapAddr, 0x4008ae48},
		{"KVM_RUN", ioctlRun, 0xae80},
		{"KVM_GET_REGS", ioctlGetRegs, 0x8090ae81},
		{"KVM_SET_REGS", ioctlSetRegs, 0x4090ae82},
		{"KVM_GET_SREGS", ioctlGetSregs, 0x8138ae83},
		{"KVM_SET_SREGS", ioctlSetSregs, 0x4138ae84},
		{"KVM_SET_CPUID2", ioctlSetCPUID2, 0x4008ae90},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

func TestConstants(t *testing.T) {
	cases := []struct {
		name      string
		got, want int
	}{
		{"KVM_API_VERSION", expectedAPIVersion, 12},
		{"KVM_CAP_USER_MEMORY", capUserMemory, 3},
		{"KVM_CAP_SET_TSS_ADDR", capSetTSSAddr, 4},
		{"KVM_CAP_SET_IDENTITY_MAP_ADDR", capSetIdentityMapAdr, 0x25},
		{"KVM_EXIT_IO", exitIO, 2},
		{"KVM_EXIT_HLT", exitHLT, 5},
		{"KVM_EXIT_MMIO", exitMMIO, 6},
		{"KVM_EXIT_SHUTDOWN", exitShutdown, 8},
		{"KVM_EXIT_FAIL_ENTRY", exitFailEntry, 9},
		{"KVM_EXIT_INTR", exitIntr, 10},
		{"KVM_EXIT_INTERNAL_ERROR", exitInternalError, 17},
		{"KVM_EXIT_SYSTEM_EVENT", exitSystemEvent, 24},
		{"KVM_EXIT_IO_OUT", exitIOOut, 1},
		{"KVM_INTERNAL_ERROR_EMULATION", internalErrorEmulation, 1},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if exitName(exitInternalError) != "KVM_EXIT_INTERNAL_ERROR" || internalErrorName(1) != "emulation failure" {
		t.Error("exit names are wrong")
	}
}
