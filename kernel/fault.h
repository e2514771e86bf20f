/*
 * fault.h - catching an expected CPU exception in a self-test.
 *
 * fault_catch(fn, arg, &info) calls fn(arg).  If fn triggers an exception
 * (page fault, general protection, ...), the trap handler abandons fn,
 * fills info and fault_catch returns true; otherwise it returns false.
 * Nesting is not supported; one armed catch per CPU.
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

/* Convenience probes built on fault_catch. */
bool probe_read(const volatile void *addr, struct fault_info *info);
bool probe_write(volatile void *addr, uint8_t value, struct fault_info *info);
bool probe_exec(const void *addr, struct fault_info *info);

#define X86_PF 14
#define X86_GP 13
/* Page-fault error code bits. */
#define PF_PRESENT (1u << 0)
#define PF_WRITE   (1u << 1)
#define PF_FETCH   (1u << 4)

#endif
