/*
 * mm/kmapper.h - the kernel mapper and its per-CPU recursive lock.
 *
 * Every change to the kernel page table goes through a struct kmapper
 * obtained with kmapper_lock().  The lock records the owning CPU and a
 * nesting depth:
 *   - locking spins until the lock is free or already owned by this CPU;
 *   - the outermost holder gets a writable mapper;
 *   - a nested lock on the same CPU (a function called by code that
 *     already holds it; or, while this is the only CPU running, an
 *     interrupt handler that arrived during an edit: see Interrupts below)
 *     gets a READ-ONLY mapper whose mutating calls fail with -MM_EPERM
 *     instead of corrupting the outer holder's walk;
 *   - kmapper_unlock() drops one level and frees the lock at depth 0 with a
 *     single store, which an interrupt cannot split (the reference design
 *     (DragonOS) needs interrupts off here: it keeps owner and count apart).
 *     Unlocking a lock this CPU does not hold panics.
 * Only the owner changes the depth, so nested re-entry needs no atomic
 * read-modify-write; the outermost acquisition is one compare-and-swap.
 * A CPU that spins for very long prints the owner and depth (once).
 *
 * Lock order: kernel mapper lock, then MMIO pool lock, then buddy lock
 * (the mapper takes table frames from the buddy while this lock is held).
 * Never take the kernel mapper lock while holding either of the others.
 *
 * Interrupts: once other CPUs run, call kmapper_lock() only with
 * interrupts enabled, and never from an interrupt handler.  The holder's
 * TLB shootdown waits for every other CPU to acknowledge an IPI, and a CPU
 * spinning here with interrupts off never would: deadlock.  The recursion
 * covers code that runs while its own CPU already holds the lock; it gets
 * a read-only mapper instead of corrupting the holder's walk.
 */
#ifndef MM_KMAPPER_H
#define MM_KMAPPER_H

#include <mm/paging.h>
#include <mm/spinlock.h>     /* MM_NO_CPU */

struct kmapper {
    struct pt_mapper mapper;   /* mapper.readonly set when nested */
    unsigned depth;            /* nesting depth of this acquisition, 1 = outermost */
};

/* Install the kernel table (called once by mm init, before any lock).
 * Its kernel half is not fixed yet. */
void kmapper_setup(phys_addr_t top_pa, struct frame_allocator *fa);
/*
 * Fix the kernel half: from now on the kernel mapper refuses to create a
 * top-level entry in slots 256..511 and never removes one (struct
 * pt_mapper's kernel_top_fixed).  mm_init and mm_kernel_half_prepare call
 * it once every slot the layout gives the kernel has its table, alone on
 * the boot CPU or holding the kernel mapper lock.
 */
void kmapper_fix_kernel_half(void);
bool kmapper_kernel_half_fixed(void);

/* Acquire; fills *km.  Returns true if km is writable (outermost). */
bool kmapper_lock(struct kmapper *km);
/* Release one level.  Panics if this CPU does not hold the lock. */
void kmapper_unlock(struct kmapper *km);

/* The kernel table as a read-only mapper, without locking (for dumps). */
struct pt_mapper kmapper_peek(void);

/* Who holds it: owner CPU or MM_NO_CPU, and depth (diagnostics, tests). */
unsigned kmapper_owner(void);
unsigned kmapper_depth(void);

/* Spin iterations before the "lock held too long" diagnostic. */
#define KMAPPER_SPIN_WARN (UINT64_C(1) << 28)

#endif
