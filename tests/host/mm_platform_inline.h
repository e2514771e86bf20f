/*
 * tests/host/mm_platform_inline.h - the host harness's fast-path hooks,
 * inlined (include/mm/platform.h, MM_PLATFORM_INLINE; every host test,
 * fuzzer and benchmark is built with it).
 *
 * A host thread is a simulated CPU: its id is the thread-local
 * harness_cpu_id, which SMP-style tests set, and "interrupts enabled" is a
 * thread-local flag (1 = enabled) that nothing on the host ever delivers
 * against.  Both live in harness.c.
 */
#ifndef HOST_MM_PLATFORM_INLINE_H
#define HOST_MM_PLATFORM_INLINE_H

extern __thread unsigned harness_cpu_id;
extern __thread unsigned long harness_irq_enabled;

static inline unsigned mm_platform_cpu_id(void)
{
    return harness_cpu_id;
}

static inline unsigned long mm_platform_irq_save(void)
{
    unsigned long old = harness_irq_enabled;
    harness_irq_enabled = 0;
    return old;
}

static inline void mm_platform_irq_restore(unsigned long flags)
{
    harness_irq_enabled = flags;
}

#endif
