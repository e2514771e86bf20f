; isr.asm - interrupt entry stubs and kernel setjmp/longjmp.
;
; Every vector has a stub that pushes a dummy error code when the CPU does
; not push one, then the vector number, then all general registers, and
; calls trap_dispatch(struct trap_frame *).  The frame layout matches
; struct trap_frame in kernel/trap.h.
;
; Entries from ring 3 (the saved CS has RPL 3) run swapgs on the way in and
; out, so ring 0 always has GS base = this CPU's struct percpu and ring 3
; never sees it.  (An NMI between the exit path's swapgs and its iretq
; would run with the user's GS base; this kernel sends no NMIs, a real one
; would need Linux's "paranoid" entry.)  The handler also runs with
; RFLAGS.AC clear: ring 3 can set AC, and AC set in ring 0 would switch
; SMAP off.

extern trap_dispatch

USER_DS equ 0x18 | 3                     ; kernel/kernel.h, GDT_USER_DS
USER_CS equ 0x20 | 3                     ; kernel/kernel.h, GDT_USER_CS

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
    test qword [rsp + 24], 3             ; CS of the interrupted code
    jz .from_kernel
    swapgs
.from_kernel:
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
    pushfq
    and qword [rsp], ~(1 << 18)          ; RFLAGS.AC
    popfq
    mov rdi, rsp
    mov rbx, rsp
    and rsp, -16
    call trap_dispatch
    cli                                  ; a system call may have enabled them
    mov rsp, rbx
trap_return:                             ; rsp: a struct trap_frame (user_resume)
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
    test qword [rsp + 8], 3              ; back to ring 3?
    jz .to_kernel
    swapgs
.to_kernel:
    iretq

; void user_enter(const struct user_entry *e), kernel/user.h: enter ring 3
; at e->rip with e->rsp, e->arg0/arg1 in rdi/rsi, every other register
; zero.  TSS.RSP0 becomes the current stack pointer, so entries from ring 3
; use the stack below this call.  Never returns: the process comes back to
; the kernel only through an interrupt or exception.
global user_enter
user_enter:
    cli
    mov rax, [rdi + 32]                  ; &TSS.RSP0
    mov [rax], rsp
    push USER_DS
    push qword [rdi + 8]                 ; rsp
    push 0x202                           ; RFLAGS: IF, reserved bit 1
    push USER_CS
    push qword [rdi + 0]                 ; rip
    mov rsi, [rdi + 24]
    mov rdi, [rdi + 16]
    xor eax, eax
    xor ebx, ebx
    xor ecx, ecx
    xor edx, edx
    xor ebp, ebp
    xor r8d, r8d
    xor r9d, r9d
    xor r10d, r10d
    xor r11d, r11d
    xor r12d, r12d
    xor r13d, r13d
    xor r14d, r14d
    xor r15d, r15d
    swapgs
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

; void call_on_stack(void (*fn)(void *), void *arg, uint64_t top), kernel/fault.c:
; call fn(arg) with rsp = top (16-byte aligned), then return on the old
; stack, which rbp keeps (fn preserves it).  A fault_catch that fires
; inside fn never comes back here: klongjmp restores the old rsp itself.
section .text
global call_on_stack
call_on_stack:
    push rbp
    mov rbp, rsp
    mov rsp, rdx
    mov rax, rdi
    mov rdi, rsi
    call rax
    mov rsp, rbp
    pop rbp
    ret

; void user_resume(const struct trap_frame *tf, void *tss_rsp0), kernel/user.h:
; return to ring 3 with every register of *tf (a forked child's first
; return from fork) through the exit path of isr_common.  TSS.RSP0 becomes
; the current stack pointer, as in user_enter; the frame itself may live
; anywhere in kernel memory.
section .text
global user_resume
user_resume:
    cli
    mov [rsi], rsp                       ; TSS.RSP0
    mov rsp, rdi
    jmp trap_return
