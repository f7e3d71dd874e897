package kvm

// Definitions from the Linux KVM user API for x86-64: include/uapi/linux/kvm.h
// (ioctls, struct kvm_run, struct kvm_userspace_memory_region) and
// arch/x86/include/uapi/asm/kvm.h (struct kvm_regs, kvm_sregs, kvm_segment,
// kvm_dtable, kvm_cpuid2, kvm_cpuid_entry2). Sizes and offsets are checked
// against the C headers' values in uapi_test.go.

// Encoding of ioctl request numbers, include/uapi/asm-generic/ioctl.h:
// bits 0-7 number, 8-15 type, 16-29 argument size, 30-31 direction.
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2

	iocNRShift   = 0
	iocTypeShift = 8
	iocSizeShift = 16
	iocDirShift  = 30
)

// ioc is the _IOC(dir, type, nr, size) macro.
func ioc(dir, typ, nr, size uintptr) uintptr {
	return dir<<iocDirShift | typ<<iocTypeShift | nr<<iocNRShift | size<<iocSizeShift
}

// iocIO, iocIOW, iocIOR and iocIOWR are the _IO, _IOW, _IOR and _IOWR macros.
func iocIO(typ, nr uintptr) uintptr         { return ioc(iocNone, typ, nr, 0) }
func iocIOW(typ, nr, size uintptr) uintptr  { return ioc(iocWrite, typ, nr, size) }
func iocIOR(typ, nr, size uintptr) uintptr  { return ioc(iocRead, typ, nr, size) }
func iocIOWR(typ, nr, size uintptr) uintptr { return ioc(iocRead|iocWrite, typ, nr, size) }

// kvmio is KVMIO, the ioctl type of every KVM ioctl.
const kvmio = 0xAE

// expectedAPIVersion is KVM_API_VERSION; KVM_GET_API_VERSION must return it.
const expectedAPIVersion = 12

// KVM ioctl request numbers (include/uapi/linux/kvm.h).
var (
	// System ioctls, on the /dev/kvm fd.
	ioctlGetAPIVersion     = iocIO(kvmio, 0x00)                       // KVM_GET_API_VERSION
	ioctlCreateVM          = iocIO(kvmio, 0x01)                       // KVM_CREATE_VM
	ioctlCheckExtension    = iocIO(kvmio, 0x03)                       // KVM_CHECK_EXTENSION
	ioctlGetVCPUMmapSize   = iocIO(kvmio, 0x04)                       // KVM_GET_VCPU_MMAP_SIZE
	ioctlGetSupportedCPUID = iocIOWR(kvmio, 0x05, sizeofKVMCPUID2Hdr) // KVM_GET_SUPPORTED_CPUID, struct kvm_cpuid2

	// VM ioctls, on the fd from KVM_CREATE_VM.
	ioctlCreateVCPU          = iocIO(kvmio, 0x41)                               // KVM_CREATE_VCPU
	ioctlSetUserMemoryRegion = iocIOW(kvmio, 0x46, sizeofUserspaceMemoryRegion) // KVM_SET_USER_MEMORY_REGION
	ioctlSetTSSAddr          = iocIO(kvmio, 0x47)                               // KVM_SET_TSS_ADDR
	ioctlSetIdentityMapAddr  = iocIOW(kvmio, 0x48, 8)                           // KVM_SET_IDENTITY_MAP_ADDR, __u64

	// vCPU ioctls, on the fd from KVM_CREATE_VCPU.
	ioctlRun       = iocIO(kvmio, 0x80)                      // KVM_RUN
	ioctlGetRegs   = iocIOR(kvmio, 0x81, sizeofKVMRegs)      // KVM_GET_REGS
	ioctlSetRegs   = iocIOW(kvmio, 0x82, sizeofKVMRegs)      // KVM_SET_REGS
	ioctlGetSregs  = iocIOR(kvmio, 0x83, sizeofKVMSregs)     // KVM_GET_SREGS
	ioctlSetSregs  = iocIOW(kvmio, 0x84, sizeofKVMSregs)     // KVM_SET_SREGS
	ioctlSetCPUID2 = iocIOW(kvmio, 0x90, sizeofKVMCPUID2Hdr) // KVM_SET_CPUID2
)

// KVM_CHECK_EXTENSION capabilities (include/uapi/linux/kvm.h).
const (
	capUserMemory        = 3  // KVM_CAP_USER_MEMORY
	capSetTSSAddr        = 4  // KVM_CAP_SET_TSS_ADDR
	capSetIdentityMapAdr = 37 // KVM_CAP_SET_IDENTITY_MAP_ADDR
)

// Guest-physical addresses QEMU uses for the Intel real-mode helpers
// (KVM_SET_TSS_ADDR needs three free pages, KVM_SET_IDENTITY_MAP_ADDR one);
// both are far above the probe's memslot.
const (
	tssAddr         = 0xfffbd000
	identityMapAddr = 0xfeffc000
)

// kvm_run exit reasons, KVM_EXIT_* (include/uapi/linux/kvm.h).
const (
	exitUnknown       = 0
	exitException     = 1
	exitIO            = 2
	exitHypercall     = 3
	exitDebug         = 4
	exitHLT           = 5
	exitMMIO          = 6
	exitIRQWindowOpen = 7
	exitShutdown      = 8
	exitFailEntry     = 9
	exitIntr          = 10
	exitInternalError = 17
	exitSystemEvent   = 24
)

// KVM_EXIT_IO directions and KVM_EXIT_INTERNAL_ERROR suberrors.
const (
	exitIOIn  = 0 // KVM_EXIT_IO_IN
	exitIOOut = 1 // KVM_EXIT_IO_OUT

	internalErrorEmulation         = 1 // KVM_INTERNAL_ERROR_EMULATION
	internalErrorSimulEx           = 2 // KVM_INTERNAL_ERROR_SIMUL_EX
	internalErrorDeliveryEv        = 3 // KVM_INTERNAL_ERROR_DELIVERY_EV
	internalErrorUnexpectedExitRsn = 4 // KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON
)

// Offsets into struct kvm_run, the vCPU's shared page (mmap of the vCPU fd).
const (
	runImmediateExit = 0x01 // __u8 immediate_exit
	runExitReason    = 0x08 // __u32 exit_reason
	runUnion         = 0x20 // start of the exit-reason union

	// union member io (KVM_EXIT_IO)
	runIODirection  = runUnion + 0x0 // __u8 direction
	runIOSize       = runUnion + 0x1 // __u8 size
	runIOPort       = runUnion + 0x2 // __u16 port
	runIOCount      = runUnion + 0x4 // __u32 count
	runIODataOffset = runUnion + 0x8 // __u64 data_offset, from the start of kvm_run

	// union member internal (KVM_EXIT_INTERNAL_ERROR)
	runInternalSuberror = runUnion + 0x0 // __u32 suberror
	runInternalNData    = runUnion + 0x4 // __u32 ndata
	runInternalData     = runUnion + 0x8 // __u64 data[16]

	// union member fail_entry (KVM_EXIT_FAIL_ENTRY)
	runFailEntryReason = runUnion + 0x0 // __u64 hardware_entry_failure_reason

	// union member hw (KVM_EXIT_UNKNOWN)
	runHWExitReason = runUnion + 0x0 // __u64 hardware_exit_reason

	// union member mmio (KVM_EXIT_MMIO)
	runMMIOPhysAddr = runUnion + 0x0 // __u64 phys_addr

	runMinSize = runInternalData + 16*8 // bytes the probe may read
)

// kvmUserspaceMemoryRegion is struct kvm_userspace_memory_region.
type kvmUserspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

const sizeofUserspaceMemoryRegion = 32

// kvmRegs is struct kvm_regs (x86).
type kvmRegs struct {
	RAX, RBX, RCX, RDX uint64
	RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11   uint64
	R12, R13, R14, R15 uint64
	RIP, RFLAGS        uint64
}

const sizeofKVMRegs = 144

// kvmSegment is struct kvm_segment (x86).
type kvmSegment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8
	Present  uint8
	DPL      uint8
	DB       uint8
	S        uint8
	L        uint8
	G        uint8
	AVL      uint8
	Unusable uint8
	Padding  uint8
}

const sizeofKVMSegment = 24

// kvmDtable is struct kvm_dtable (x86).
type kvmDtable struct {
	Base    uint64
	Limit   uint16
	Padding [3]uint16
}

const sizeofKVMDtable = 16

// kvmSregs is struct kvm_sregs (x86); interrupt_bitmap has
// (KVM_NR_INTERRUPTS + 63) / 64 = 4 words.
type kvmSregs struct {
	CS, DS, ES, FS, GS, SS  kvmSegment
	TR, LDT                 kvmSegment
	GDT, IDT                kvmDtable
	CR0, CR2, CR3, CR4, CR8 uint64
	EFER                    uint64
	APICBase                uint64
	InterruptBitmap         [4]uint64
}

const sizeofKVMSregs = 312

// kvmCPUIDEntry2 is struct kvm_cpuid_entry2 (x86).
type kvmCPUIDEntry2 struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	Padding  [3]uint32
}

const sizeofKVMCPUIDEntry2 = 40

// maxCPUIDEntries is the room the probe gives KVM_GET_SUPPORTED_CPUID.
const maxCPUIDEntries = 256

// kvmCPUID2 is struct kvm_cpuid2 (x86) with room for maxCPUIDEntries
// entries in its flexible array.
type kvmCPUID2 struct {
	Nent    uint32
	Padding uint32
	Entries [maxCPUIDEntries]kvmCPUIDEntry2
}

// sizeofKVMCPUID2Hdr is sizeof(struct kvm_cpuid2), the header without the
// flexible array; it is what the ioctl numbers encode.
const sizeofKVMCPUID2Hdr = 8

// exitName names a KVM_EXIT_* reason.
func exitName(reason uint32) string {
	switch reason {
	case exitUnknown:
		return "KVM_EXIT_UNKNOWN"
	case exitException:
		return "KVM_EXIT_EXCEPTION"
	case exitIO:
		return "KVM_EXIT_IO"
	case exitHypercall:
		return "KVM_EXIT_HYPERCALL"
	case exitDebug:
		return "KVM_EXIT_DEBUG"
	case exitHLT:
		return "KVM_EXIT_HLT"
	case exitMMIO:
		return "KVM_EXIT_MMIO"
	case exitIRQWindowOpen:
		return "KVM_EXIT_IRQ_WINDOW_OPEN"
	case exitShutdown:
		return "KVM_EXIT_SHUTDOWN"
	case exitFailEntry:
		return "KVM_EXIT_FAIL_ENTRY"
	case exitIntr:
		return "KVM_EXIT_INTR"
	case exitInternalError:
		return "KVM_EXIT_INTERNAL_ERROR"
	case exitSystemEvent:
		return "KVM_EXIT_SYSTEM_EVENT"
	}
	return "KVM_EXIT_?"
}

// internalErrorName names a KVM_INTERNAL_ERROR_* suberror.
func internalErrorName(sub uint32) string {
	switch sub {
	case internalErrorEmulation:
		return "emulation failure"
	case internalErrorSimulEx:
		return "simultaneous exceptions"
	case internalErrorDeliveryEv:
		return "event delivery failed"
	case internalErrorUnexpectedExitRsn:
		return "unexpected exit reason"
	}
	return "unknown"
}
