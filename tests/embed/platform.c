/*
 * tests/embed/platform.c - the six hooks that libmm.a needs from the
 * kernel it runs in (include/mm/platform.h).  This is the one file an
 * integrator writes for the library (docs/INTEGRATION.md, section 4);
 * each hook is a thin call into the rest of the example.
 *
 * The example runs on one CPU with interrupts disabled (except while the
 * conformance suite runs, main.c), so:
 *   mm_platform_puts              the serial console (console.c);
 *   mm_platform_panic             prints the message and exits QEMU with
 *                                 EMBED_EXIT_PANIC (status 37);
 *   mm_platform_cpu_id            always 0;
 *   mm_platform_irq_save/restore  save RFLAGS and cli / sti if IF was set;
 *   mm_platform_tlb_shootdown     nothing to do: there is no other CPU.
 * None of them allocates or takes a lock, so all may be called with
 * interrupts off, as the interface requires.  An SMP kernel would return
 * its per-CPU id and send the shootdown to the online CPUs of the target
 * set other than itself (the test kernel's kernel/platform.c and
 * kernel/smp.c show one way).
 * A kernel that compiles the mm/ sources itself may supply cpu_id,
 * irq_save and irq_restore as static inline functions instead
 * (MM_PLATFORM_INLINE, docs/INTEGRATION.md section 4); this example links
 * the prebuilt libmm.a, so it keeps all six out of line.
 */
#include <mm/platform.h>
#include "embed.h"

#define RFLAGS_IF (1ul << 9)

void mm_platform_puts(const char *s)
{
    serial_puts(s);
}

_Noreturn void mm_platform_panic(const char *msg)
{
    __asm__ volatile("cli");
    serial_puts("\nembed: PANIC: ");
    serial_puts(msg);
    serial_puts("\n");
    qemu_exit(EMBED_EXIT_PANIC);
}

unsigned mm_platform_cpu_id(void)
{
    return 0;
}

unsigned long mm_platform_irq_save(void)
{
    unsigned long flags;
    __asm__ volatile("pushfq; pop %0; cli" : "=r"(flags) : : "memory");
    return flags;
}

void mm_platform_irq_restore(unsigned long flags)
{
#if defined(EMBED_BROKEN_IRQ_RESTORE)
    /* Deliberately broken (embed-broken-irq.iso): interrupts stay off.
     * mm_conformance's irq_save_restore_nest must say "not ok". */
    (void)flags;
#else
    if (flags & RFLAGS_IF)
        __asm__ volatile("sti" : : : "memory");
#endif
}

void mm_platform_tlb_shootdown(mm_cpumask_t targets, virt_addr_t va, uint64_t npages)
{
    (void)targets;                       /* uniprocessor: no other TLB */
    (void)va;
    (void)npages;
}
