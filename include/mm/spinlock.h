/*
 * mm/spinlock.h - a test-and-test-and-set spinlock with interrupt saving.
 *
 * mm_spin_lock_irqsave() disables interrupts on this CPU before spinning so
 * an interrupt handler on the same CPU can never deadlock against the
 * holder.  Locks are not recursive.  The owner field lets *_locked()
 * functions assert that their caller holds the lock.
 */
#ifndef MM_SPINLOCK_H
#define MM_SPINLOCK_H

#include <mm/platform.h>

#define MM_NO_CPU 0xffffffffu

typedef struct mm_spinlock {
    volatile uint32_t locked;
    volatile uint32_t owner_cpu;
} mm_spinlock_t;

#define MM_SPINLOCK_INIT { 0, MM_NO_CPU }

static inline void mm_cpu_relax(void)
{
#if defined(__x86_64__)
    __asm__ volatile("pause");
#endif
}

static inline void mm_spin_lock(mm_spinlock_t *lock)
{
    for (;;) {
        if (!__atomic_exchange_n(&lock->locked, 1, __ATOMIC_ACQUIRE))
            break;
        while (__atomic_load_n(&lock->locked, __ATOMIC_RELAXED))
            mm_cpu_relax();
    }
    lock->owner_cpu = mm_platform_cpu_id();
}

static inline void mm_spin_unlock(mm_spinlock_t *lock)
{
    lock->owner_cpu = MM_NO_CPU;
    __atomic_store_n(&lock->locked, 0, __ATOMIC_RELEASE);
}

static inline unsigned long mm_spin_lock_irqsave(mm_spinlock_t *lock)
{
    unsigned long flags = mm_platform_irq_save();
    mm_spin_lock(lock);
    return flags;
}

static inline void mm_spin_unlock_irqrestore(mm_spinlock_t *lock, unsigned long flags)
{
    mm_spin_unlock(lock);
    mm_platform_irq_restore(flags);
}

/* True when the calling CPU holds the lock (for assertions). */
static inline bool mm_spin_held(const mm_spinlock_t *lock)
{
    return lock->locked && lock->owner_cpu == mm_platform_cpu_id();
}

/*
 * Assertion for the first line of every *_locked() function: the lock is
 * taken.  It checks only the lock word, not the owner, to stay cheap on
 * hot paths (no CPU-id hook call); use MM_BUG_ON(!mm_spin_held(l)) where
 * the owner matters.  Needs <mm/log.h>.
 */
#define MM_ASSERT_LOCKED(lock) MM_BUG_ON(!(lock)->locked)

#endif
