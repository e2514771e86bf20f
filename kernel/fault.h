/*
 * fault.h - catching an expected CPU exception in a self-test.
 *
 * fault_catch(fn, arg, &info) calls fn(arg).  If fn triggers an exception
 * (page fault, general protection, ...), the trap handler abandons fn,
 * fills info and fault_catch returns true; otherwise it returns false.
 * Nesting is not supported; one armed catch per CPU.
 *
 * fault_catch_on_stack(fn, arg, top, &info) is the same with fn running
 * on another stack (rsp = top, 16-byte aligned), and it also catches a
 * double fault: the way a kernel stack overflow ends, when the page fault
 * in the stack's guard cannot push its frame.  The double-fault handler
 * runs on its own IST stack and jumps back to the caller's stack, so the
 * overflowed stack is simply abandoned (info->cr2: the guard address).
 * Only for a stack made for the purpose, whose code holds no lock.
 */
#ifndef KERNEL_FAULT_H
#define KERNEL_FAULT_H

#include <stdbool.h>
#include <stdint.h>

struct fault_info {
    uint64_t vector;
    uint64_t error_code;
    uint64_t rip;
    uint64_t cr2;
};

bool fault_catch(void (*fn)(void *arg), void *arg, struct fault_info *info);
bool fault_catch_on_stack(void (*fn)(void *arg), void *arg, uint64_t stack_top,
                          struct fault_info *info);
/* For trap.c: may the armed catch of this CPU take a double fault? */
bool fault_catch_takes_double_fault(void);

/* Convenience probes built on fault_catch. */
bool probe_read(const volatile void *addr, struct fault_info *info);
bool probe_write(volatile void *addr, uint8_t value, struct fault_info *info);
bool probe_exec(const void *addr, struct fault_info *info);

#define X86_DF 8
#define X86_PF 14
#define X86_GP 13
/* Page-fault error code bits. */
#define PF_PRESENT (1u << 0)
#define PF_WRITE   (1u << 1)
#define PF_FETCH   (1u << 4)

#endif
