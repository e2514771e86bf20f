; entry.asm - the kernel's outermost frames: the first 64-bit code in the
; higher half, the application processors' entry and the stack switch.
;
; kernel_entry64 arrives from boot/boot.asm with rdi = multiboot2 magic,
; rsi = boot information physical address.  It zeroes .bss, switches to
; the kernel stack and calls kmain(magic, mbi_pa), which never returns.
;
; ap_entry64 arrives from boot/trampoline.asm on the AP's own stack with
; rdi = cpu index and rdx = the C function to run (ap_main); it calls it.
;
; stack_switch_call(top, fn) moves onto a new stack (rsp = top, which must
; be 16-byte aligned) and calls fn(), which never returns; nothing of the
; old stack is used again.
;
; Backtraces.  Each of the three clears rbp before its call and has a
; DWARF frame description (.debug_frame, at the end of this file) that
; says "the return address is undefined": a debugger unwinding the C
; frames above stops here, with no garbage frames below.

extern kmain
extern __bss_start
extern __bss_end

section .text.entry
bits 64
global kernel_entry64
kernel_entry64:
    mov r12, rdi
    mov r13, rsi
    mov rdi, __bss_start
    mov rcx, __bss_end
    sub rcx, rdi
    shr rcx, 3
    xor eax, eax
    rep stosq
    mov rsp, kernel_stack_top
    xor ebp, ebp
    mov rdi, r12
    mov rsi, r13
    call kmain
.hang:
    cli
    hlt
    jmp .hang
kernel_entry64_end:

section .text
global ap_entry64
ap_entry64:
    xor ebp, ebp
    call rdx
    ud2
ap_entry64_end:

global stack_switch_call
stack_switch_call:
    mov rsp, rdi
    xor ebp, ebp
    call rsi
    ud2
stack_switch_call_end:

section .bss
align 4096
global kernel_stack_bottom
kernel_stack_bottom:
    resb 32768
global kernel_stack_top
kernel_stack_top:

; ------------------------------------------------------------ frame info
; One CIE (version 1: code alignment 1, data alignment -8, return address
; in column 16 = rip; at entry CFA = rsp + 8 and rip is at CFA - 8) and
; one FDE per routine above whose only rule is DW_CFA_undefined rip, the
; DWARF way to mark an outermost frame.  Each entry is padded with
; DW_CFA_nop (0) to 8 bytes.  "dd cie" is relocated to the CIE's offset
; in the linked .debug_frame.

%define DW_CFA_def_cfa     0x0c
%define DW_CFA_offset_rip  (0x80 | 16)
%define DW_CFA_undefined   0x07
%define DW_REG_RSP         7
%define DW_REG_RIP         16

%macro OUTERMOST_FDE 2                  ; start label, end label
    dd %%end - %%start
%%start:
    dd cie
    dq %1
    dq %2 - %1
    db DW_CFA_undefined, DW_REG_RIP
    align 8, db 0
%%end:
%endmacro

section .debug_frame noalloc noexec nowrite align=8
cie:
    dd cie_end - cie_start
cie_start:
    dd 0xffffffff                       ; CIE id
    db 1                                ; version
    db 0                                ; augmentation ""
    db 1                                ; code alignment factor
    db 0x78                             ; data alignment factor: -8 (SLEB128)
    db DW_REG_RIP                       ; return address column
    db DW_CFA_def_cfa, DW_REG_RSP, 8
    db DW_CFA_offset_rip, 1             ; rip at CFA + 1 * -8
    align 8, db 0
cie_end:
    OUTERMOST_FDE kernel_entry64, kernel_entry64_end
    OUTERMOST_FDE ap_entry64, ap_entry64_end
    OUTERMOST_FDE stack_switch_call, stack_switch_call_end
