/*
 * mm/cow_table.c - level-1 tables shared between address spaces after a
 * clone ("on-demand fork"): unsharing one before it is written, and
 * letting go of one when an address space is destroyed.  mm/cow.c shares
 * them (mm_as_clone); include/mm/cow.h has the picture and the contracts.
 *
 * State.  A level-1 table is shared when a level-2 entry that points at
 * it has no PTE_WRITE and carries PTE_AS_COW (mm_cow_table_entry_shared).
 * Its frame's reference count (include/mm/frameref.h, the tree that
 * counts data frames) is the number of level-2 entries, over all address
 * spaces, that point at it; a frame's count is the number of leaves, over
 * all level-1 tables, that map it, so a leaf in a table shared n ways
 * counts once.
 *
 * Unsharing (mm_cow_table_unshare_locked, as->lock held), for the table
 * under va:
 *   - count 1: the others have left; the level-2 entry gets PTE_WRITE
 *     back, and one invlpg on as's CPUs drops the read-only copies of it
 *     that their paging-structure caches may hold; the leaves stay as
 *     they are (the ones an earlier sharer's unsharing made COW resolve
 *     at their own faults);
 *   - count above 1: copy the table into a new frame, take one more count
 *     for every owned frame it maps (mm_frameref_get_entries: all or
 *     nothing), write-protect and mark COW the private writable leaves in
 *     the copy AND in the old table (the other sharers keep using it and
 *     see COW leaves from now on, which is what a per-page clone would
 *     have given them), point as's level-2 entry at the copy with
 *     PTE_WRITE, flush, and only then drop the old table's count; the one
 *     that drops it to 0 (the others left meanwhile) puts the old table's
 *     frame counts and frees it.
 * Failure (no frame for the copy or the count tree, a count at its
 * limit) gives the copy back before anything visible changed.
 *
 * Why the old table may be written while others use it.  Every sharer's
 * level-2 entry is read-only, so no CPU of any sharer can hold a writable
 * translation of a page under it (the clone flushed the parent's before
 * the child could run, and a sharer gets PTE_WRITE back only when the
 * count says it is alone), and
 * no MMU can set a dirty bit in it (it sets D only for a write it
 * allows).  So software changes only bits that no cached translation
 * depends on: clearing PTE_WRITE in a leaf leaves every sharer's
 * effective permission read-only as before, and needs no flush for them.
 * The only concurrent writers are MMUs setting accessed bits and other
 * sharers unsharing at the same time, who store the very same value
 * (write-protected, COW, accessed and dirty set); the store is one atomic
 * word that already holds every bit an MMU could add, so nothing is lost
 * whatever the order.  The set of entries that get counts (present and
 * owned) never changes while the table is shared, so a copy made at any
 * moment counts the same frames.  A sharer drops its count only after its
 * flush and after its stores, so the one that sees count 1 (or frees the
 * table at 0) sees them all and no CPU walks the old table any more.
 * The flush after repointing is one page: invlpg drops the
 * paging-structure cache entries used to translate that address (SDM
 * vol. 3, 4.10.4.1: Intel drops them all, AMD at least those), among them
 * the level-2 entry of its 2 MiB region, so no CPU of as walks the old
 * table afterwards; its TLB may keep leaves of the old table, which map
 * the same frames with no more permission than the copy gives.
 *
 * Locking: as->lock only; see above for the shared table.  Order as in
 * mm/aspace.c: as->lock, then the count lock, then the frame allocator.
 */
#include <mm/cow.h>
#include <mm/frameref.h>
#include <mm/log.h>

/* Leaves that get a count, and the private writable ones that become COW
 * (all of WP_SEL, none of WP_NOT). */
#define COUNTED (PTE_PRESENT | PTE_AS_OWNED)
#define WP_SEL  (PTE_PRESENT | PTE_AS_OWNED | PTE_WRITE)
#define WP_NOT  PTE_AS_SHARED

/* The level-2 entry word for user page va of as; NULL when there is no
 * level-2 table (or a huge leaf above it). */
static uint64_t *pde_word(struct mm_as *as, virt_addr_t va)
{
    struct pt_mapper m = mm_as_mapper(as);
    phys_addr_t pd;
    if (pt_get_table(&m, va, PT_LEVEL_PD, &pd) != 0)
        return NULL;
    return mm_as_entry_word(pd, pt_index(va, PT_LEVEL_PD));
}

/* Write-protect and mark COW every private writable leaf of the level-1
 * table at pt (see the overview for why a live shared table may be). */
static void write_protect_leaves(phys_addr_t pt)
{
    uint64_t *w = pa_to_ptr(pt);
    for (unsigned i = 0; i < PT_ENTRIES; i++) {
        uint64_t e = __atomic_load_n(&w[i], __ATOMIC_RELAXED);
        if ((e & (WP_SEL | WP_NOT)) == WP_SEL)
            __atomic_store_n(&w[i], (e & ~PTE_WRITE) | PTE_AS_COW | PTE_ACCESSED | PTE_DIRTY,
                             __ATOMIC_RELAXED);
    }
}

/* Owned leaves of the level-1 table at pt. */
static uint64_t owned_leaves(phys_addr_t pt)
{
    const uint64_t *w = pa_to_ptr(pt);
    uint64_t n = 0;
    for (unsigned i = 0; i < PT_ENTRIES; i++)
        n += (__atomic_load_n(&w[i], __ATOMIC_RELAXED) & COUNTED) == COUNTED;
    return n;
}

/* Nothing reaches the level-1 table at pt any more: put a count of each
 * owned frame it maps (freeing those that reach 0), free it, and return
 * how many owned leaves it had. */
static uint64_t free_table(struct frame_allocator *fa, phys_addr_t pt)
{
    const uint64_t *w = pa_to_ptr(pt);
    uint64_t n = 0;
    for (unsigned i = 0; i < PT_ENTRIES; i++) {
        if ((w[i] & COUNTED) != COUNTED)
            continue;
        phys_addr_t f = PA(w[i] & PTE_ADDR_MASK);
        if (mm_frameref_put(f) == 0)
            fa->free(fa, f);
        n++;
    }
    fa->free(fa, pt);
    return n;
}

void mm_cow_entry_make_writable_locked(struct mm_as *as, virt_addr_t va, uint64_t *w,
                                       uint64_t e, bool everywhere)
{
    MM_ASSERT_LOCKED(&as->lock);
    /* A loop: an MMU may set the accessed bit meanwhile. */
    while (!__atomic_compare_exchange_n(w, &e, (e & ~PTE_AS_COW) | PTE_WRITE, false,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
    pt_flush_set(&tok, &as->cpus, PT_FLUSH_ONE_PAGE, va, 1);
    if (everywhere)
        pt_flush(&tok);
    else
        pt_flush_local(&tok);
}

/* Count above 1: give as a copy of the shared table under its level-2
 * entry *w (value e), as the overview says.  0 or -MM_ENOMEM. */
static int unshare_copy_locked(struct mm_as *as, virt_addr_t va, uint64_t *w, uint64_t e)
{
    MM_ASSERT_LOCKED(&as->lock);
    phys_addr_t old = PA(e & PTE_ADDR_MASK), fresh;
    if (frame_alloc(as->fa, &fresh) != 0)
        return -MM_ENOMEM;
    const uint64_t *ow = pa_to_ptr(old);
    uint64_t *nw = pa_to_ptr(fresh);
    for (unsigned i = 0; i < PT_ENTRIES; i++)
        nw[i] = __atomic_load_n(&ow[i], __ATOMIC_RELAXED);
    if (mm_frameref_get_entries(nw, PT_ENTRIES, COUNTED, as->fa) < 0) {
        as->fa->free(as->fa, fresh);    /* never linked */
        return -MM_ENOMEM;
    }
    write_protect_leaves(fresh);
    write_protect_leaves(old);
    /* (An accessed bit an MMU set in this level-2 entry meanwhile may be
     * lost: nothing reads it in an entry that points at a table.) */
    /* Release: the copy and its write-protection are visible before the
     * entry that makes them reachable with write access. */
    __atomic_store_n(w, fresh.raw | (e & ~PTE_ADDR_MASK & ~PTE_AS_COW) | PTE_WRITE,
                     __ATOMIC_RELEASE);
    struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
    pt_flush_set(&tok, &as->cpus, PT_FLUSH_ONE_PAGE, va, 1);
    pt_flush(&tok);
    if (mm_frameref_put(old) == 0)
        (void)free_table(as->fa, old);  /* the other sharers left meanwhile */
    return 0;
}

int mm_cow_table_unshare_locked(struct mm_as *as, virt_addr_t va)
{
    MM_ASSERT_LOCKED(&as->lock);
    uint64_t *w = pde_word(as, va);
    uint64_t e = w ? __atomic_load_n(w, __ATOMIC_RELAXED) : 0;
    if (!mm_cow_table_entry_shared(e))
        return 0;
    if (mm_frameref_count(PA(e & PTE_ADDR_MASK)) > 1)
        return unshare_copy_locked(as, va, w, e);
    /* Count 1: as's alone (only a clone of as, which needs as->lock, could
     * raise it).  More permission only, but a CPU's paging-structure cache
     * may keep the read-only level-2 entry; rather than count on the
     * spurious fault to drop it, one invlpg on as's CPUs drops it for
     * certain (once per table, when its sharing ends). */
    mm_cow_entry_make_writable_locked(as, va, w, e, true);
    return 0;
}

uint64_t mm_cow_table_release(struct mm_as *as, uint64_t pde)
{
    phys_addr_t pt = PA(pde & PTE_ADDR_MASK);
    if (!mm_cow_table_entry_shared(pde))
        return free_table(as->fa, pt);
    /* Count before the put: once this count is gone, another sharer may
     * take the table over (count 1: write access back, then unmap) or
     * free it, while this CPU would still be reading it. */
    uint64_t owned = owned_leaves(pt);
    if (mm_frameref_put(pt) != 0)
        return owned;                   /* still used by the others */
    return free_table(as->fa, pt);
}
