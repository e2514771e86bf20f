/*
 * mm/platform.h - what the memory subsystem needs from the kernel it runs in.
 *
 * mm/ never calls into the host kernel directly; everything it needs from
 * the outside world goes through these hooks.  The test kernel (kernel/),
 * the host test harness (tests/host/) and any embedding kernel each provide
 * one implementation.  All hooks must be callable with interrupts disabled.
 */
#ifndef MM_PLATFORM_H
#define MM_PLATFORM_H

#include <mm/types.h>

/* Write a NUL-terminated string to the console.  Must not allocate. */
void mm_platform_puts(const char *s);

/* Print msg and stop this CPU (and ideally the machine).  Never returns. */
_Noreturn void mm_platform_panic(const char *msg);

/* Small dense id of the calling CPU: 0 .. MM_MAX_CPUS-1.  Must be cheap. */
unsigned mm_platform_cpu_id(void);

/* Disable interrupts on this CPU, returning the previous state. */
unsigned long mm_platform_irq_save(void);
/* Restore the state returned by mm_platform_irq_save(). */
void mm_platform_irq_restore(unsigned long flags);

/*
 * Invalidate kernel TLB entries on every other online CPU and return once
 * they have done so (the calling CPU has flushed itself already).
 * npages == 0: flush everything, global entries included.  Otherwise
 * 1 <= npages <= PT_FLUSH_MAX_INVLPG (64, mm/tlbflush.h): only the
 * translations of the npages 4 KiB pages from va (4 KiB aligned) may be
 * stale, and one invlpg of each (va + i * 4096) is enough.  The library
 * never asks for more: any larger change, including every 2 MiB or 1 GiB
 * page (512 or 262144 small pages), is sent as npages == 0.  A
 * uniprocessor kernel may implement this as an empty function.
 */
void mm_platform_tlb_shootdown(virt_addr_t va, uint64_t npages);

#define MM_MAX_CPUS 64

#endif
