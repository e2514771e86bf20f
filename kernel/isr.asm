; isr.asm - interrupt entry stubs and kernel setjmp/longjmp.
;
; Every vector has a stub that pushes a dummy error code when the CPU does
; not push one, then the vector number, then all general registers, and
; calls trap_dispatch(struct trap_frame *).  The frame layout matches
; struct trap_frame in kernel/trap.h.

extern trap_dispatch

section .text
bits 64

%macro ISR_NOERR 1
isr%1:
    push 0
    push %1
    jmp isr_common
%endmacro
%macro ISR_ERR 1
isr%1:
    push %1
    jmp isr_common
%endmacro

; Vectors that push an error code: 8, 10-14, 17, 21, 29, 30.
%assign v 0
%rep 256
%if v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30
    ISR_ERR v
%else
    ISR_NOERR v
%endif
%assign v v + 1
%endrep

isr_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    cld
    mov rdi, rsp
    mov rbx, rsp
    and rsp, -16
    call trap_dispatch
    mov rsp, rbx
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16                          ; vector and error code
    iretq

section .rodata
align 8
global isr_table
isr_table:
%assign v 0
%rep 256
    dq isr %+ v
%assign v v + 1
%endrep

; int ksetjmp(struct kjmp_buf *b);  void klongjmp(struct kjmp_buf *b, int v);
; Buffer: rbx, rbp, r12, r13, r14, r15, rsp, rip, rflags.
section .text
global ksetjmp
ksetjmp:
    mov [rdi + 0], rbx
    mov [rdi + 8], rbp
    mov [rdi + 16], r12
    mov [rdi + 24], r13
    mov [rdi + 32], r14
    mov [rdi + 40], r15
    lea rax, [rsp + 8]
    mov [rdi + 48], rax
    mov rax, [rsp]
    mov [rdi + 56], rax
    pushfq
    pop rax
    mov [rdi + 64], rax
    xor eax, eax
    ret

global klongjmp
klongjmp:
    mov rbx, [rdi + 0]
    mov rbp, [rdi + 8]
    mov r12, [rdi + 16]
    mov r13, [rdi + 24]
    mov r14, [rdi + 32]
    mov r15, [rdi + 40]
    mov rsp, [rdi + 48]
    mov eax, esi
    test eax, eax
    jnz .nz
    inc eax
.nz:
    push qword [rdi + 64]
    popfq
    jmp [rdi + 56]
