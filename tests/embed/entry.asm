; tests/embed/entry.asm - multiboot2 header and entry of the embedding example.
;
; This is the smallest boot stub that meets the preconditions of mm_init()
; (include/mm/init.h).  GRUB jumps to _start in 32-bit protected mode, paging
; off, EAX = multiboot2 magic, EBX = physical address of the boot information.
; The stub then
;   1. checks the magic and that the CPU has long mode and NX (else it writes
;      0x31 to the QEMU exit port: status 99, "boot stub refused to start");
;   2. builds early page tables in .boot.bss, all with 2 MiB pages:
;        PML4[0]   -> 0..4 GiB identity    (only while this code runs low)
;        PML4[256] -> 0..4 GiB at 0xffff800000000000   (the direct map)
;        PML4[511] -> PDPT[510] -> 0..1 GiB at 0xffffffff80000000 (the image)
;   3. sets CR4.PAE + CR4.PGE, CR3, EFER.LME + EFER.NXE, CR0.PG + CR0.WP +
;      CR0.PE (NXE, WP and PGE are what mm_conformance's cpu_state checks);
;   4. far-jumps into 64-bit code, jumps to the higher half, loads a GDT that
;      lives in the higher half (the low copy is unmapped once mm_init
;      switches page tables), zeroes .bss, takes its stack from .bss and calls
;        embed_main(uint32_t magic, uint64_t mbi_pa)        (main.c)
;
; It also holds the 32 exception stubs: each pushes the vector (and a zero
; for vectors without an error code) and calls embed_exception() in main.c,
; which prints the fault and exits QEMU.  Interrupts stay disabled, except
; while main.c runs the conformance suite (the 8259s masked).

; NASM cannot include <mm/multiboot2.h>: MB2_LOADER_MAGIC repeats its
; MB2_BOOTLOADER_MAGIC (main.c checks the value again in C with it).
MB2_HEADER_MAGIC equ 0xe85250d6
MB2_LOADER_MAGIC equ 0x36d76289
KERNEL_VMA       equ 0xffffffff80000000
EXIT_PORT        equ 0xf4
EXIT_BOOT_FAIL   equ 0x31
PTE_P_W          equ 0x03                ; present + writable
PTE_P_W_PS       equ 0x83                ; present + writable + 2 MiB page

; ------------------------------------------------------- multiboot2 header
section .multiboot2 progbits alloc noexec nowrite align=8
align 8
mb2_header:
    dd MB2_HEADER_MAGIC
    dd 0                                 ; architecture: i386 protected mode
    dd mb2_header_end - mb2_header
    dd -(MB2_HEADER_MAGIC + 0 + (mb2_header_end - mb2_header))
    align 8
.request:                                ; information request: memory map (6)
    dw 1, 0
    dd .request_end - .request
    dd 6
.request_end:
    align 8
    dw 0, 0                              ; end tag
    dd 8
mb2_header_end:

; -------------------------------------------------- early tables (low, 24 KiB)
section .boot.bss nobits alloc noexec write align=4096
align 4096
early_pml4:       resb 4096
early_pdpt_low:   resb 4096              ; shared by the identity and direct map
early_pdpt_image: resb 4096
early_pd:         resb 4096 * 4          ; 4 GiB in 2 MiB pages
early_tables_end:

; ------------------------------------------------------- 32-bit entry (low)
section .boot.text progbits alloc exec nowrite align=16
bits 32
global _start
_start:
    cli
    cld
    cmp eax, MB2_LOADER_MAGIC
    jne .fail
    mov edi, eax                         ; magic, then rdi = 1st C argument
    mov esi, ebx                         ; mbi_pa, then rsi = 2nd C argument

    mov eax, 0x80000000                  ; long mode and NX present?
    cpuid
    cmp eax, 0x80000001
    jb .fail
    mov eax, 0x80000001
    cpuid
    test edx, 1 << 29                    ; LM
    jz .fail
    test edx, 1 << 20                    ; NX
    jz .fail

    mov ebx, edi                         ; rep stosd below clobbers edi
    mov edi, early_pml4
    mov ecx, (early_tables_end - early_pml4) / 4
    xor eax, eax
    rep stosd
    mov edi, ebx

    xor ecx, ecx                         ; early_pd[i] = i * 2 MiB, i < 2048
.fill_pd:
    mov eax, ecx
    shl eax, 21
    or eax, PTE_P_W_PS
    mov [early_pd + ecx * 8], eax
    mov eax, ecx
    shr eax, 11                          ; bits 32.. of i * 2 MiB
    mov [early_pd + ecx * 8 + 4], eax
    inc ecx
    cmp ecx, 2048
    jb .fill_pd

    xor ecx, ecx                         ; early_pdpt_low[k] -> k-th PD, k < 4
.fill_pdpt:
    mov eax, ecx
    shl eax, 12
    add eax, early_pd + PTE_P_W
    mov [early_pdpt_low + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jb .fill_pdpt
    mov dword [early_pdpt_image + 510 * 8], early_pd + PTE_P_W
    mov dword [early_pml4 + 0 * 8], early_pdpt_low + PTE_P_W
    mov dword [early_pml4 + 256 * 8], early_pdpt_low + PTE_P_W
    mov dword [early_pml4 + 511 * 8], early_pdpt_image + PTE_P_W

    mov eax, cr4
    or eax, (1 << 5) | (1 << 7)          ; PAE | PGE
    mov cr4, eax
    mov eax, early_pml4
    mov cr3, eax
    mov ecx, 0xc0000080                  ; EFER
    rdmsr
    or eax, (1 << 8) | (1 << 11)         ; LME | NXE
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16) | 1    ; PG | WP | PE
    mov cr0, eax
    lgdt [gdt_ptr_low]
    jmp 0x08:.long_mode_low

.fail:                                   ; say why on COM1, then exit QEMU (99)
    mov esi, fail_msg
.fail_next:
    mov dx, 0x3f8 + 5                    ; line status register
.fail_wait:
    in al, dx
    test al, 0x20                        ; transmitter empty?
    jz .fail_wait
    lodsb
    test al, al
    jz .fail_exit
    mov dx, 0x3f8
    out dx, al
    jmp .fail_next
.fail_exit:
    mov al, EXIT_BOOT_FAIL
    out EXIT_PORT, al
.halt:
    hlt
    jmp .halt

bits 64
.long_mode_low:
    mov edi, edi                         ; zero-extend magic and mbi_pa
    mov esi, esi
    mov rax, entry64
    jmp rax

section .boot.rodata progbits alloc noexec nowrite align=8
fail_msg:
    db "embed: boot stub: not started by a multiboot2 loader, or the CPU lacks long mode or NX", 13, 10, 0
align 8
gdt_low:                                 ; the same three descriptors as gdt_high
    dq 0
    dq 0x00af9a000000ffff                ; 0x08: 64-bit code, ring 0
    dq 0x00cf92000000ffff                ; 0x10: data
gdt_ptr_low:
    dw 3 * 8 - 1
    dd gdt_low

; ------------------------------------------------- 64-bit entry (higher half)
section .text
extern embed_main
extern embed_exception
extern __bss_start
extern __bss_end
entry64:
    lgdt [rel gdt_ptr_high]
    mov eax, 0x10
    mov ds, eax
    mov es, eax
    mov ss, eax
    xor eax, eax
    mov fs, eax
    mov gs, eax
    mov r12, rdi
    mov r13, rsi
    mov rdi, __bss_start                 ; .bss holds the stack: zero it first
    mov rcx, __bss_end
    sub rcx, rdi
    xor eax, eax
    rep stosb
    mov rsp, stack_top
    xor ebp, ebp
    mov rdi, r12
    mov rsi, r13
    call embed_main                      ; never returns
hang:
    cli
    hlt
    jmp hang

; Exception stubs: the frame handed to embed_exception() is
;   vector, error code, rip, cs, rflags, rsp, ss   (struct exception_frame)
; The CPU pushes an error code for vectors 8, 10-14, 17, 21, 29 and 30; the
; other stubs push a zero in its place.
%assign v 0
%rep 32
exc_ %+ v:
%if !(v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30)
    push 0
%endif
    push v
    jmp exc_common
%assign v v + 1
%endrep

exc_common:
    mov rdi, rsp
    and rsp, -16                         ; ABI stack alignment for the C call
    call embed_exception                 ; never returns
    jmp hang

section .rodata
align 8
global exception_stubs                   ; used by main.c to fill the IDT
exception_stubs:
%assign v 0
%rep 32
    dq exc_ %+ v
%assign v v + 1
%endrep

align 8
gdt_high:
    dq 0
    dq 0x00af9a000000ffff                ; 0x08: 64-bit code, ring 0
    dq 0x00cf92000000ffff                ; 0x10: data
gdt_ptr_high:
    dw 3 * 8 - 1
    dq gdt_high

section .bss
align 16
stack_bottom:
    resb 32768
stack_top:
