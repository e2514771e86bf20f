; entry.asm - first 64-bit code in the higher half.
; Arrives from boot/boot.asm with rdi = multiboot2 magic, rsi = boot
; information physical address.  Zeroes .bss, switches to the kernel stack
; and calls kmain(magic, mbi_pa).  kmain never returns.

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

section .bss
align 4096
global kernel_stack_bottom
kernel_stack_bottom:
    resb 32768
global kernel_stack_top
kernel_stack_top:
