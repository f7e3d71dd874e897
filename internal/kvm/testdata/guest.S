# Reference source for the KVM probe's test guest (internal/kvm/guest.go).
# The Go code emits these bytes by hand; TestGuestCodeMatchesAssembler
# assembles this file with GNU as (when installed) and compares.
#
#   as --64 guest.S -o guest.o && objcopy -O binary -j .text guest.o guest.bin
#
# Loaded at guest-physical 0x8000 and entered in real mode with CS=0, IP=0x8000.
# Host-prepared memory: PML4 0x1000, PDPT 0x2000, PD 0x3000 (one 2 MiB page
# identity-mapping 0..2 MiB), GDT 0x4000 (null, 0x08 code32, 0x10 data,
# 0x18 code64), GDTR pseudo-descriptor 0x4020, scratch qword 0x5000.
PORT = 0x00e0
BASE = 0x8000
.code16
start:
  cli
  mov $PORT, %dx
  mov $0x16, %al
  out %al, (%dx)                 # report 1: real mode reached
  lgdt 0x4020
  mov %cr0, %eax
  or $1, %al                     # CR0.PE
  mov %eax, %cr0
  ljmpl $0x08, $(BASE + pm32 - start)
.code32
pm32:
  mov $0x10, %ax
  mov %ax, %ds
  mov %ax, %es
  mov %ax, %ss
  mov %cr0, %eax
  out %eax, (%dx)                # report 2: CR0 in protected mode
  mov %cr4, %eax
  or $0x20, %eax                 # CR4.PAE
  mov %eax, %cr4
  mov $0x1000, %eax
  mov %eax, %cr3                 # PML4
  mov $0xC0000080, %ecx          # IA32_EFER
  rdmsr
  or $0x100, %eax                # EFER.LME
  wrmsr
  mov %cr0, %eax
  or $0x80000000, %eax           # CR0.PG
  mov %eax, %cr0
  ljmp $0x18, $(BASE + lm64 - start)
.code64
lm64:
  mov $0x10, %eax
  mov %eax, %ds
  mov %eax, %es
  mov %eax, %ss
  mov $0x7000, %esp
  xor %eax, %eax
  xor %ecx, %ecx
  cpuid
  mov %ebx, %eax
  mov $PORT, %dx
  out %eax, (%dx)                # report 3: CPUID.0:EBX (vendor)
  movabs $0x0123456789abcdef, %rax
  mov %rax, 0x5000
  mov 0x5000, %rcx
  out %eax, (%dx)                # report 4: low half of a 64-bit register
  shr $32, %rcx
  mov %ecx, %eax
  out %eax, (%dx)                # report 5: high half, read back through paging
  pushq $0x18
  pushq $(BASE + lm64b - start)
  lretq                          # reload CS like a kernel does
lm64b:
  mov %cr0, %rax
  out %eax, (%dx)                # report 6: CR0 in long mode
1:
  hlt
  jmp 1b
