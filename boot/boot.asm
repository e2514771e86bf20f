; boot.asm - multiboot2 header and the 32-bit entry point.
;
; GRUB (BIOS or UEFI) jumps to _start in 32-bit protected mode with paging
; off, EAX = multiboot2 magic and EBX = physical address of the boot
; information.  This stub checks the magic and the CPU (long mode, NX),
; builds early page tables, enables PAE, EFER.LME/NXE, paging and CR0.WP,
; enters 64-bit mode and jumps to the higher-half kernel:
;     kernel_entry64(magic, mbi_pa)   (in kernel/entry.asm)
;
; Early page tables (2 MiB pages, built here in .boot.bss):
;   PML4[0]   -> identity map of 0..4 GiB     (needed while running low)
;   PML4[256] -> the same 0..4 GiB at 0xffff800000000000 (early direct map)
;   PML4[511] -> PDPT[510] -> 0..1 GiB at 0xffffffff80000000 (kernel image)
; mm init replaces all of this with its own table.
;
; On failure the stub prints a message on COM1, writes a failure code to
; the QEMU isa-debug-exit port and halts; it never triple-faults silently.

; NASM cannot include the C headers, so two of their constants are
; repeated here and must stay equal: MB2_LOADER_MAGIC is MB2_BOOTLOADER_MAGIC
; (include/mm/multiboot2.h), KERNEL_VMA is MM_KERNEL_IMAGE_BASE
; (include/mm/layout.h; linker.ld links the image there).
MB2_MAGIC       equ 0xe85250d6
MB2_ARCH_I386   equ 0
MB2_LOADER_MAGIC equ 0x36d76289
KERNEL_VMA      equ 0xffffffff80000000
COM1            equ 0x3f8
BOOT_FAIL_CODE  equ 0x31            ; QEMU exit status (0x31 << 1) | 1 = 99

section .multiboot2
align 8
mb2_header:
    dd MB2_MAGIC
    dd MB2_ARCH_I386
    dd mb2_header_end - mb2_header
    dd -(MB2_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header))
    ; information request: memory map (6), EFI memory map (17), ACPI (14, 15)
    align 8
.info_req:
    dw 1, 0
    dd .info_req_end - .info_req
    dd 6, 17, 14, 15
.info_req_end:
    align 8
    ; end tag
    dw 0, 0
    dd 8
mb2_header_end:

section .boot.bss nobits
align 4096
global boot_pml4
boot_pml4:      resb 4096
boot_pdpt_low:  resb 4096
boot_pdpt_high: resb 4096
boot_pd:        resb 4096 * 4          ; 4 GiB in 2 MiB pages
boot_tables_end:
boot_stack:     resb 16384
boot_stack_top:

section .boot.rodata
align 8
gdt64:
    dq 0                                ; null
    dq 0x00af9a000000ffff               ; 0x08: 64-bit code, ring 0
    dq 0x00cf92000000ffff               ; 0x10: data
gdt64_end:
gdt64_ptr:
    dw gdt64_end - gdt64 - 1
    dd gdt64

msg_magic:  db "boot: error: not started by a multiboot2 loader (EAX is not 0x36d76289); halting", 13, 10, 0
msg_cpuid:  db "boot: error: CPU has no CPUID instruction; halting", 13, 10, 0
msg_lm:     db "boot: error: CPU does not support 64-bit long mode; halting", 13, 10, 0
msg_nx:     db "boot: error: CPU does not support the NX (execute-disable) bit; halting", 13, 10, 0

section .boot.text
bits 32
global _start
_start:
    cli
    cld
    mov esp, boot_stack_top
    mov edi, eax                        ; keep magic
    mov esi, ebx                        ; keep mbi physical address
    call serial_init32

    cmp edi, MB2_LOADER_MAGIC
    jne .bad_magic

    ; CPUID present? (EFLAGS.ID can be toggled)
    pushfd
    pop eax
    mov ecx, eax
    xor eax, 1 << 21
    push eax
    popfd
    pushfd
    pop eax
    push ecx
    popfd
    cmp eax, ecx
    je .no_cpuid

    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb .no_lm
    mov eax, 0x80000001
    cpuid
    test edx, 1 << 29                   ; LM
    jz .no_lm
    test edx, 1 << 20                   ; NX
    jz .no_nx

    ; zero the early tables
    mov edi, boot_pml4
    mov ecx, (boot_tables_end - boot_pml4) / 4
    xor eax, eax
    rep stosd
    mov edi, MB2_LOADER_MAGIC           ; restore the magic (edi was clobbered)

    ; PD entries: 2048 x 2 MiB pages covering 0..4 GiB, present+write+PS
    mov ebx, boot_pd
    xor ecx, ecx
.fill_pd:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov [ebx + ecx * 8], eax
    mov eax, ecx
    shr eax, 11                         ; high dword: bits 32+ of (ecx << 21)
    mov [ebx + ecx * 8 + 4], eax
    inc ecx
    cmp ecx, 2048
    jb .fill_pd

    ; PDPT_low[0..3] -> the four PDs
    mov eax, boot_pd
    or eax, 0x3
    mov [boot_pdpt_low + 0], eax
    add eax, 4096
    mov [boot_pdpt_low + 8], eax
    add eax, 4096
    mov [boot_pdpt_low + 16], eax
    add eax, 4096
    mov [boot_pdpt_low + 24], eax
    ; PDPT_high[510] -> first PD (0..1 GiB at -2 GiB)
    mov eax, boot_pd
    or eax, 0x3
    mov [boot_pdpt_high + 510 * 8], eax

    mov eax, boot_pdpt_low
    or eax, 0x3
    mov [boot_pml4 + 0], eax
    mov [boot_pml4 + 256 * 8], eax
    mov eax, boot_pdpt_high
    or eax, 0x3
    mov [boot_pml4 + 511 * 8], eax

    ; CR4.PAE
    mov eax, cr4
    or eax, 1 << 5
    mov cr4, eax
    mov eax, boot_pml4
    mov cr3, eax
    ; EFER.LME | EFER.NXE
    mov ecx, 0xc0000080
    rdmsr
    or eax, (1 << 8) | (1 << 11)
    wrmsr
    ; CR0.PG | CR0.WP | CR0.PE
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16) | 1
    mov cr0, eax

    lgdt [gdt64_ptr]
    jmp 0x08:long_mode_low

.bad_magic:
    mov ebx, msg_magic
    jmp boot_fail
.no_cpuid:
    mov ebx, msg_cpuid
    jmp boot_fail
.no_lm:
    mov ebx, msg_lm
    jmp boot_fail
.no_nx:
    mov ebx, msg_nx
    jmp boot_fail

; Print the string at EBX, signal failure to QEMU, halt forever.
boot_fail:
    call serial_puts32
    mov al, BOOT_FAIL_CODE
    out 0xf4, al
.halt:
    cli
    hlt
    jmp .halt

; 16550 at COM1: 115200 baud, 8N1, FIFO on.  Clobbers eax, edx.
serial_init32:
    mov dx, COM1 + 1
    xor al, al
    out dx, al                          ; no interrupts
    mov dx, COM1 + 3
    mov al, 0x80
    out dx, al                          ; DLAB on
    mov dx, COM1 + 0
    mov al, 1
    out dx, al                          ; divisor 1 = 115200
    mov dx, COM1 + 1
    xor al, al
    out dx, al
    mov dx, COM1 + 3
    mov al, 0x03
    out dx, al                          ; 8N1, DLAB off
    mov dx, COM1 + 2
    mov al, 0xc7
    out dx, al                          ; FIFO on, cleared
    mov dx, COM1 + 4
    mov al, 0x03
    out dx, al                          ; DTR + RTS
    ret

; Write the NUL-terminated string at EBX.  Clobbers eax, ebx, edx.
serial_puts32:
.next:
    mov al, [ebx]
    test al, al
    jz .done
    mov ah, al
    mov dx, COM1 + 5
.wait:
    in al, dx
    test al, 0x20
    jz .wait
    mov dx, COM1
    mov al, ah
    out dx, al
    inc ebx
    jmp .next
.done:
    ret

bits 64
long_mode_low:
    xor eax, eax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    ; rdi = magic, rsi = mbi physical address (zero-extended)
    mov edi, edi
    mov esi, esi
    mov rax, kernel_entry64
    jmp rax

extern kernel_entry64
