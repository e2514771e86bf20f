/*
 * trap.h - the register frame that kernel/isr.asm builds for every vector
 * and hands to trap_dispatch (trap.c), the registration of interrupt
 * handlers for vectors 32-255, and the kernel's setjmp/longjmp (isr.asm),
 * which fault_catch, the KTAP runner and the user-process exit path use to
 * abandon code.
 */
#ifndef KERNEL_TRAP_H
#define KERNEL_TRAP_H

#include <stdint.h>

struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error_code;
    uint64_t rip, cs, rflags, rsp, ss;
};

struct kjmp_buf {
    uint64_t rbx, rbp, r12, r13, r14, r15, rsp, rip, rflags;
};

int ksetjmp(struct kjmp_buf *b) __attribute__((returns_twice));
_Noreturn void klongjmp(struct kjmp_buf *b, int value);

/* "page fault", "general protection", ... by vector. */
extern const char *const exception_names[32];

/* Handlers for non-exception vectors (IPIs); NULL = unexpected. */
typedef void (*irq_handler_t)(struct trap_frame *tf);
void irq_register(uint8_t vector, irq_handler_t handler);

#endif
