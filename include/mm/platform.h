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

#define MM_MAX_CPUS 64

/*
 * The three hooks on every allocator's fast path:
 *   mm_platform_cpu_id()        small dense id of the calling CPU,
 *                               0 .. MM_MAX_CPUS-1; must be cheap;
 *   mm_platform_irq_save()      disable interrupts on this CPU, returning
 *                               the previous state;
 *   mm_platform_irq_restore(f)  restore the state irq_save returned.
 * By default they are ordinary functions the kernel links in, like the
 * others here.  A kernel may instead supply them as static inline
 * functions, which saves three calls per kmalloc, kfree or single-frame
 * operation: compile every mm/ source (and anything else that includes
 * this header) with -DMM_PLATFORM_INLINE and an include path that holds
 * its own <mm_platform_inline.h>, defining all three with exactly these
 * signatures.  The library then references no out-of-line copy of them.
 * The test kernel's header is kernel/mm-inline/mm_platform_inline.h, the
 * host harness's tests/host/mm_platform_inline.h (docs/INTEGRATION.md,
 * section 4).
 */
#ifdef MM_PLATFORM_INLINE
#include <mm_platform_inline.h>
/* Declared again here, so a header whose three differ from the contract
 * (another signature, or not static) fails to compile. */
static inline unsigned mm_platform_cpu_id(void);
static inline unsigned long mm_platform_irq_save(void);
static inline void mm_platform_irq_restore(unsigned long flags);
#else
unsigned mm_platform_cpu_id(void);
unsigned long mm_platform_irq_save(void);
void mm_platform_irq_restore(unsigned long flags);
#endif

/* A set of CPUs: bit n is the CPU whose mm_platform_cpu_id() is n. */
typedef uint64_t mm_cpumask_t;
#define MM_CPUMASK_ALL (~(mm_cpumask_t)0)

/*
 * Invalidate TLB entries on every online CPU in `targets` and return once
 * they have done so.  The calling CPU has flushed itself already: the
 * library never names it in targets, except inside MM_CPUMASK_ALL, which
 * means "every other online CPU" (a change to the kernel half).  Any other
 * set comes from an address space (mm/aspace.h): the CPUs on which it is
 * loaded when the flush began, never empty; one that has switched away
 * since then may still be named (flushing it is harmless).  Skip the
 * caller and CPUs that are not online.
 * npages == 0: flush everything, global entries included.  Otherwise
 * 1 <= npages <= PT_FLUSH_MAX_INVLPG (64, mm/tlbflush.h): only the
 * translations of the npages 4 KiB pages from va (4 KiB aligned) may be
 * stale, and one invlpg of each (va + i * 4096) is enough.  The library
 * never asks for more: any larger change, including every 2 MiB or 1 GiB
 * page (512 or 262144 small pages), is sent as npages == 0.  A
 * uniprocessor kernel may implement this as an empty function.
 */
void mm_platform_tlb_shootdown(mm_cpumask_t targets, virt_addr_t va, uint64_t npages);

#endif
