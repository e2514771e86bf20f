/*
 * platform.c - the test kernel's implementation of the hooks that the
 * memory subsystem needs (include/mm/platform.h).  Each hook is a thin call
 * into the part of the kernel that owns the work:
 *
 *   mm_platform_puts          console.c (serial), as a KTAP diagnostic
 *                             while the self-tests run
 *   mm_platform_panic         printk.c panic()
 *   mm_platform_tlb_shootdown smp.c smp_tlb_shootdown() (IPIs to the target
 *                             CPUs, wait for their acks)
 *
 * The three fast-path hooks (cpu_id, irq_save, irq_restore) are not here:
 * the kernel's copy of the library is built with them inline, from
 * kernel/mm-inline/mm_platform_inline.h (smp_cpu_id, cpu_irq_save and
 * cpu_irq_restore), so nothing calls an out-of-line version.
 *
 * All of them work with interrupts disabled and none allocates, as the
 * interface requires.  console_write takes the console spinlock with
 * interrupts saved, so the library may log from any context except from
 * inside console_write itself.
 */
#include "kernel.h"
#include "io.h"
#include "percpu.h"
#include "smp.h"
#include <mm/log.h>
#include <mm/platform.h>

/* Set by the KTAP runner (ktest.c) while suites run. */
bool platform_log_as_ktap;

void mm_platform_puts(const char *s)
{
    if (platform_log_as_ktap) {
        /* Library lines become "    # ..." diagnostics of the current
         * subtest; mm_printf lines are at most 256 bytes, so they fit. */
        char line[320];
        mm_snprintf(line, sizeof(line), "    # %s", s);
        console_write(line);
        return;
    }
    console_write(s);
}

_Noreturn void mm_platform_panic(const char *msg)
{
    panic("%s", msg);
}

void mm_platform_tlb_shootdown(mm_cpumask_t targets, virt_addr_t va, uint64_t npages)
{
    smp_tlb_shootdown(targets, va.raw, npages);
}
