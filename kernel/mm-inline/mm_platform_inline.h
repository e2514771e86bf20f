/*
 * kernel/mm-inline/mm_platform_inline.h - the test kernel's fast-path
 * hooks for the memory subsystem, inlined (include/mm/platform.h,
 * MM_PLATFORM_INLINE).  The Makefile compiles the kernel's own copy of the
 * mm/ objects with -DMM_PLATFORM_INLINE -Ikernel/mm-inline.  This
 * directory holds only this header, and the header includes nothing, so
 * the mm/ sources see no other part of kernel/ (no names of the kernel's
 * can clash with theirs).  Each hook is the instruction sequence of its
 * kernel counterpart:
 *
 *   mm_platform_cpu_id       smp_cpu_id() in percpu.h: the CPU's dense id
 *                            is the first field of its struct percpu, which
 *                            GS points at (percpu.h asserts the offset)
 *   mm_platform_irq_save     cpu_irq_save() in io.h: pushfq; pop; cli
 *   mm_platform_irq_restore  cpu_irq_restore() in io.h: sti if IF (bit 9
 *                            of RFLAGS) was set
 *
 * The generic build/libmm.a (installed, and linked by tests/embed) keeps
 * the out-of-line hooks.
 */
#ifndef KERNEL_MM_PLATFORM_INLINE_H
#define KERNEL_MM_PLATFORM_INLINE_H

static inline unsigned mm_platform_cpu_id(void)
{
    unsigned id;
    __asm__ volatile("movl %%gs:0, %0" : "=r"(id));
    return id;
}

static inline unsigned long mm_platform_irq_save(void)
{
    unsigned long flags;
    __asm__ volatile("pushfq; pop %0; cli" : "=r"(flags) : : "memory");
    return flags;
}

static inline void mm_platform_irq_restore(unsigned long flags)
{
    if (flags & (1ul << 9))
        __asm__ volatile("sti" : : : "memory");
}

#endif
