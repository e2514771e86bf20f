; trampoline.asm - the application-processor start-up code.
;
; The boot CPU copies this blob to physical TRAMPOLINE_PA (a page below
; 1 MiB), fills in its data fields and sends INIT-SIPI-SIPI with vector
; TRAMPOLINE_PA >> 12.  The AP starts here in real mode with CS =
; TRAMPOLINE_PA >> 4, IP = 0.  It loads a small GDT, turns on PAE,
; EFER.LME + EFER.NXE and then PE + PG + WP in one step with the kernel page
; table in CR3, far-jumps to 64-bit code, and jumps on its own stack to
; the kernel's ap_entry64 (kernel/entry.asm), which clears the frame
; pointer and calls the C entry the boot CPU wrote in tr_entry (ap_main)
; with the cpu index.  Because paging is on while it still runs at
; TRAMPOLINE_PA, the kernel table must identity-map this page (the
; temporary low identity map of mm init).  The blob never writes to
; itself, so that mapping can be read+execute only.

extern ap_entry64

TRAMPOLINE_PA equ 0x8000        ; the same value as TRAMPOLINE_PA in kernel/smp.c

section .ap_trampoline progbits alloc noexec nowrite align=16
bits 16
global ap_trampoline_start
ap_trampoline_start:
    cli
    cld
    mov ax, cs
    mov ds, ax
    lgdt [tr_gdtr - ap_trampoline_start]
    mov eax, cr4
    or eax, 1 << 5                       ; PAE
    mov cr4, eax
    mov eax, [tr_cr3 - ap_trampoline_start]
    mov cr3, eax
    mov ecx, 0xc0000080                  ; EFER
    rdmsr
    or eax, (1 << 8) | (1 << 11)         ; LME | NXE
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16) | 1    ; PG | WP | PE
    mov cr0, eax
    jmp dword 0x08:(TRAMPOLINE_PA + tr_long - ap_trampoline_start)

bits 64
tr_long:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov rsp, [TRAMPOLINE_PA + tr_stack - ap_trampoline_start]
    mov rdi, [TRAMPOLINE_PA + tr_cpu - ap_trampoline_start]
    mov rdx, [TRAMPOLINE_PA + tr_entry - ap_trampoline_start]
    mov rax, ap_entry64                  ; kernel/entry.asm: rbp = 0, call rdx
    jmp rax

align 8
; The accessed bits are preset: this page is mapped read-only, so the CPU
; must never need to write them when it loads the segments.
tr_gdt:
    dq 0
    dq 0x00af9b000000ffff                ; 0x08 64-bit code
    dq 0x00cf93000000ffff                ; 0x10 data
tr_gdtr:
    dw 23
    dd TRAMPOLINE_PA + tr_gdt - ap_trampoline_start
align 8
global ap_tramp_cr3, ap_tramp_stack, ap_tramp_entry, ap_tramp_cpu
ap_tramp_cr3:
tr_cr3:     dq 0
ap_tramp_stack:
tr_stack:   dq 0
ap_tramp_entry:
tr_entry:   dq 0
ap_tramp_cpu:
tr_cpu:     dq 0
global ap_trampoline_end
ap_trampoline_end:
