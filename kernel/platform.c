/*
 * platform.c - the test kernel's implementation of the six hooks that the
 * memory subsystem needs (include/mm/platform.h).  This is the only file
 * that defines mm_platform_*; each hook is a thin call into the part of
 * the kernel that owns the work:
 *
 *   mm_platform_puts          console.c (serial), as a KTAP diagnostic
 *                             while the self-tests run
 *   mm_platform_panic         printk.c panic()
 *   mm_platform_cpu_id        percpu.h smp_cpu_id() (%gs:0)
 *   mm_platform_irq_save      io.h cpu_irq_save() (pushfq; cli)
 *   mm_platform_irq_restore   io.h cpu_irq_restore() (sti if IF was set)
 *   mm_platform_tlb_shootdown smp.c smp_tlb_shootdown() (IPIs to the target
 *                             CPUs, wait for their acks)
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

unsigned mm_platform_cpu_id(void)
{
    return smp_cpu_id();
}

unsigned long mm_platform_irq_save(void)
{
    return cpu_irq_save();
}

void mm_platform_irq_restore(unsigned long flags)
{
    cpu_irq_restore(flags);
}

void mm_platform_tlb_shootdown(mm_cpumask_t targets, virt_addr_t va, uint64_t npages)
{
    smp_tlb_shootdown(targets, va.raw, npages);
}
