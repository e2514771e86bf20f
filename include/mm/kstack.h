/*
 * mm/kstack.h - kernel stacks with unmapped guard pages below and above,
 * in [MM_KSTACK_BASE, MM_KSTACK_END) (mm/layout.h, slot 325), never in
 * the direct map (whose 1 GiB / 2 MiB pages therefore stay whole).
 *
 * Layout.  A stack of n pages is a vmalloc area (mm/vmalloc.h) placed
 * VMALLOC_PLACE_STACK in a power-of-two block of at least n + 2 pages:
 *
 *   block_va                 base                 top           block end
 *   | guard below (>= 4 KiB)  | the stack, mapped   | guard above (4 KiB) |
 *
 * The stack grows down from top, so an overflow runs into the guard below
 * (all the rest of the block, at least one page) and faults there; a pop
 * past the top (underflow) faults in the page above.  Pages are zeroed,
 * RW+NX.
 *
 * Registry.  Each live stack has a slot in a fixed table of
 * MM_KSTACK_MAX entries (name, owner CPU, its block), so that a fault in a
 * guard can be named: mm_kstack_lookup() answers "whose guard is this?"
 * without taking any lock, from a page-fault or double-fault handler.
 * Each slot is published under a sequence count (odd while it is being
 * written); a reader copies the slot, and uses the copy only if the count
 * was even and unchanged around the copy.
 *
 * Errors: bad input returns a negative MM_E* code with one log line and
 * changes nothing; running out (frames, addresses, registry slots)
 * returns -MM_ENOMEM with one log line.
 *
 * Locking.  mm_kstack_alloc/free take the registry lock (a spinlock,
 * interrupts off, held only to pick, fill or clear a slot) and otherwise
 * follow mm/vmalloc.h: call them with interrupts enabled, never from an
 * interrupt handler, not holding the kernel mapper lock.  (They take the
 * kernel mapper lock, whose holder may wait for this CPU to answer a
 * shootdown.  Early in boot, while no other CPU can take that lock, for
 * example for each CPU's own stack during bring-up, interrupts may be
 * off.)
 * mm_kstack_lookup takes no lock and may be called anywhere.
 */
#ifndef MM_KSTACK_H
#define MM_KSTACK_H

#include <mm/frame.h>
#include <mm/types.h>

#define MM_KSTACK_MAX       1024u            /* live stacks (registry slots) */
#define MM_KSTACK_NAME_LEN  20u              /* with the terminating NUL */
#define MM_KSTACK_MAX_SIZE  (UINT64_C(1) << 20)
/* owner_cpu of a stack that belongs to no CPU (a process's stack). */
#define MM_KSTACK_NO_CPU    0xffffffffu

/* A stack as the owner holds it; pass it back to mm_kstack_free. */
struct mm_kstack {
    virt_addr_t base;           /* lowest byte of the stack */
    virt_addr_t top;            /* one past the highest byte: the initial rsp */
    uint64_t size;              /* top - base */
    unsigned slot;              /* registry slot */
    uint32_t gen;               /* the slot's generation when allocated */
};

/* What the registry knows about the stack around an address. */
struct mm_kstack_info {
    virt_addr_t block_va;       /* guard below: [block_va, base) */
    virt_addr_t base, top;      /* the stack */
    virt_addr_t block_end;      /* guard above: [top, block_end) */
    unsigned cpu;               /* owner CPU or MM_KSTACK_NO_CPU */
    char name[MM_KSTACK_NAME_LEN];
};

enum mm_kstack_where {
    MM_KSTACK_NOWHERE,          /* in no live stack's block */
    MM_KSTACK_IN_STACK,         /* in the mapped stack */
    MM_KSTACK_GUARD_BELOW,      /* overflow */
    MM_KSTACK_GUARD_ABOVE,      /* underflow */
    MM_KSTACK_UNKNOWN,          /* a slot kept changing while read: could not look */
};

/*
 * Set up the kernel-stack range, empty, with frames from fa (called by
 * mm_init; host tests call it again to start afresh, with no stack
 * live).  0 or -MM_EINVAL (logged).
 */
int mm_kstack_init(struct frame_allocator *fa);

/*
 * A stack of `size` bytes (rounded up to pages, 1 .. MM_KSTACK_MAX_SIZE)
 * owned by owner_cpu (or MM_KSTACK_NO_CPU), named `name` (copied,
 * truncated to MM_KSTACK_NAME_LEN - 1 characters; NULL is refused).
 * 0 and *out; -MM_EINVAL (logged), -MM_ENOMEM (logged: frames, addresses
 * or registry slots), -MM_EPERM (this CPU holds the kernel mapper lock).
 */
int mm_kstack_alloc(uint64_t size, unsigned owner_cpu, const char *name, struct mm_kstack *out);

/*
 * Free a stack: *ks exactly as mm_kstack_alloc filled it, and nobody
 * running on it.  Unmaps it with one shootdown, then frees its frames and
 * its slot, and clears *ks.  0; -MM_EINVAL (logged: not a live stack, e.g.
 * freed twice), -MM_EPERM, -MM_EBUSY (being freed by another CPU).
 */
int mm_kstack_free(struct mm_kstack *ks);

/* The stack whose block holds va, without locking (see Registry above):
 * where va lies, with *out filled unless MM_KSTACK_NOWHERE/UNKNOWN. */
enum mm_kstack_where mm_kstack_lookup(virt_addr_t va, struct mm_kstack_info *out);

/* Live stacks. */
unsigned mm_kstack_count(void);

#endif
