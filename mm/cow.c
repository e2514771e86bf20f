/*
 * mm/cow.c - fork with copy-on-write: mm_as_clone and the COW fault
 * resolver (include/mm/cow.h has the contracts and the locking).
 *
 * Clone, in four passes over the parent's user half, under its lock:
 *   1. plan: look at every leaf; a huge one (2 MiB, 1 GiB) refuses the
 *      clone before anything changes, so no huge leaf is walked as a table;
 *   2. reserve: take the child's top table (mm_as_create) and one frame
 *      for each user-half table of the parent (parent->table_frames);
 *   3. count: one more count for every owned frame; a refusal (no frame
 *      for the count tree, or a count at its limit) drops the counts
 *      added so far, in the same order, and gives every reserved frame back;
 *   4. copy: build the child's tables from the reserve (this pass cannot
 *      fail) and write-protect the parent's private writable leaves,
 *      marking them COW in both, then flush the parent once: one range
 *      token over the lowest to the highest page write-protected, on the
 *      parent's CPU set (a full flush when the range is large).
 * Pass 4 edits the parent's live leaves with atomic read-modify-writes, so
 * accessed/dirty bits set by other CPUs at the same time stay; until the
 * flush those CPUs may still write through old writable translations,
 * which the child then sees too: the child is a copy of the parent at
 * some instant during the clone.
 *
 * Resolver.  Under as->lock: a write to a present COW leaf whose frame
 * has count 1 flips the leaf to writable in place (the faulting CPU
 * flushes its own entry; other CPUs' read-only entries can only fault and
 * find the page writable).  With a higher count: copy the frame into a
 * new one, point the leaf at it, writable, flush on as's CPUs, and only
 * then drop the old frame's count (freeing it on the last drop).
 *
 * Invariants.  No leaf is both PTE_WRITE and PTE_AS_COW.  A COW leaf is
 * owned and not shared.  The child's table_frames and owned_frames equal
 * the parent's at the clone.
 */
#include <mm/cow.h>
#include <mm/frameref.h>
#include <mm/log.h>

#define USER_SLOTS (PT_ENTRIES / 2)     /* top-level slots of the user half */

/* ------------------------------------------------------------- walking */

/* Called for each present leaf; a non-zero result stops the walk. */
typedef int (*leaf_fn)(void *ctx, uint64_t *entry, unsigned level, uint64_t va);

/* Entries of a table at `level` (4: the user half only). */
static unsigned user_entries(unsigned level)
{
    return level == PT_LEVEL_PML4 ? USER_SLOTS : PT_ENTRIES;
}

/* Entry i of the table at `level` whose first page is va: its word (*w),
 * value (*e) and first page (*eva); false when not present. */
static bool entry_at(phys_addr_t table, unsigned level, unsigned i, uint64_t va,
                     uint64_t **w, uint64_t *e, uint64_t *eva)
{
    *w = mm_as_entry_word(table, i);
    *e = __atomic_load_n(*w, __ATOMIC_RELAXED);
    *eva = va + ((uint64_t)i << pt_level_shift(level));
    return (*e & PTE_PRESENT) != 0;
}

/* Every present leaf under the table at `level` (4: the user half only),
 * in address order; returns the first non-zero result of fn. */
static int walk_leaves(phys_addr_t table, unsigned level, uint64_t va, leaf_fn fn, void *ctx)
{
    for (unsigned i = 0; i < user_entries(level); i++) {
        uint64_t *w, e, eva;
        if (!entry_at(table, level, i, va, &w, &e, &eva))
            continue;
        int r = pte_is_leaf((pt_entry_t){ e }, level)
                    ? fn(ctx, w, level, eva)
                    : walk_leaves(PA(e & PTE_ADDR_MASK), level - 1, eva, fn, ctx);
        if (r)
            return r;
    }
    return 0;
}

struct clone_ctx {
    struct frame_allocator *fa;
    uint64_t huge_va;           /* pass 1: the huge leaf found */
    uint64_t counted;           /* pass 3: counts added */
    int err;                    /* pass 3: why it stopped */
    uint64_t lo, hi;            /* pass 4: parent pages write-protected */
    uint64_t reserve;           /* pass 4: reserved frames, chained by word 0 */
};

/* Pass 1: stop at a leaf above level 1. */
static int plan_leaf(void *ctx, uint64_t *entry, unsigned level, uint64_t va)
{
    (void)entry;
    if (level == PT_LEVEL_PT)
        return 0;
    ((struct clone_ctx *)ctx)->huge_va = va;
    return 1;
}

/* Pass 3: one more count for an owned frame. */
static int count_leaf(void *ctx, uint64_t *entry, unsigned level, uint64_t va)
{
    struct clone_ctx *c = ctx;
    uint64_t e = *entry;
    (void)level, (void)va;
    if (!(e & PTE_AS_OWNED))
        return 0;
    c->err = mm_frameref_get(PA(e & PTE_ADDR_MASK), c->fa);
    if (c->err)
        return 1;
    c->counted++;
    return 0;
}

/* Roll-back of pass 3: drop the first c->counted counts again. */
static int uncount_leaf(void *ctx, uint64_t *entry, unsigned level, uint64_t va)
{
    struct clone_ctx *c = ctx;
    (void)level, (void)va;
    if (c->counted == 0)
        return 1;
    if (*entry & PTE_AS_OWNED) {
        c->counted--;
        if (mm_frameref_put(PA(*entry & PTE_ADDR_MASK)) == 0)
            mm_panic("uncount_leaf: frame %lx lost its last count in a roll-back",
                     (unsigned long)(*entry & PTE_ADDR_MASK));
    }
    return 0;
}

/* ------------------------------------------------------------ reserve */

/* Give every reserved frame back. */
static void reserve_release(struct clone_ctx *c)
{
    while (c->reserve) {
        phys_addr_t f = PA(c->reserve);
        c->reserve = *mm_as_entry_word(f, 0);
        c->fa->free(c->fa, f);
    }
}

/* Take n frames into c->reserve: 0, or -MM_ENOMEM with none kept. */
static int reserve_fill(struct clone_ctx *c, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        phys_addr_t pa;
        if (frame_alloc(c->fa, &pa) != 0) {
            reserve_release(c);
            return -MM_ENOMEM;
        }
        *mm_as_entry_word(pa, 0) = c->reserve;
        c->reserve = pa.raw;
    }
    return 0;
}

/* A zeroed frame from the reserve (pass 1 sized it exactly). */
static phys_addr_t reserve_take(struct clone_ctx *c)
{
    if (c->reserve == 0)
        mm_panic("reserve_take: clone reserve empty: table_frames is wrong");
    phys_addr_t pa = PA(c->reserve);
    c->reserve = *mm_as_entry_word(pa, 0);
    __builtin_memset(pa_to_ptr(pa), 0, PAGE_SIZE);
    return pa;
}

/* ---------------------------------------------------------------- copy */

/* The child's copy of the parent leaf at *w (value e, page va); a private
 * writable page is write-protected in the parent and COW in both. */
static uint64_t share_leaf(struct clone_ctx *c, uint64_t *w, uint64_t e, uint64_t va)
{
    if ((e & (PTE_AS_OWNED | PTE_AS_SHARED)) != PTE_AS_OWNED ||
        !(e & (PTE_WRITE | PTE_AS_COW)))
        return e;           /* foreign, shared or read-only: the same bits */
    if (e & PTE_WRITE) {
        uint64_t old = e;
        while (!__atomic_compare_exchange_n(w, &old, (old & ~PTE_WRITE) | PTE_AS_COW, false,
                                            __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            ;
        c->lo = va < c->lo ? va : c->lo;
        c->hi = va > c->hi ? va : c->hi;
    }
    return (e & ~PTE_WRITE) | PTE_AS_COW;
}

/* Copy the parent table at `level` into the (zeroed) child table. */
static void copy_table(struct clone_ctx *c, phys_addr_t ptab, phys_addr_t ctab,
                       unsigned level, uint64_t va)
{
    for (unsigned i = 0; i < user_entries(level); i++) {
        uint64_t *w, e, eva;
        if (!entry_at(ptab, level, i, va, &w, &e, &eva))
            continue;
        if (level == PT_LEVEL_PT) {
            *mm_as_entry_word(ctab, i) = share_leaf(c, w, e, eva);
            continue;
        }
        phys_addr_t sub = reserve_take(c);
        *mm_as_entry_word(ctab, i) = sub.raw | (e & ~PTE_ADDR_MASK);
        copy_table(c, PA(e & PTE_ADDR_MASK), sub, level - 1, eva);
    }
}

/* ---------------------------------------------------------------- clone */

static int check_clone_args(struct mm_as *child, struct mm_as *parent,
                            struct frame_allocator *fa)
{
    if (child == NULL || fa == NULL || fa->free == NULL || child == parent) {
        mm_printf("mm_as_clone: child %p, parent %p, fa %p (needs alloc and free): "
                  "refused\n", (void *)child, (void *)parent, (void *)fa);
        return -MM_EINVAL;
    }
    return mm_as_check_live(parent, "mm_as_clone");
}

static int clone_locked(struct mm_as *child, struct mm_as *parent, struct frame_allocator *fa)
{
    MM_ASSERT_LOCKED(&parent->lock);
    struct clone_ctx c = { .fa = fa, .lo = UINT64_MAX };
    if (walk_leaves(parent->top_pa, PT_LEVEL_PML4, 0, plan_leaf, &c)) {
        mm_printf("mm_as_clone: huge user leaf at va %#lx in address space %#lx: refused\n",
                  (unsigned long)c.huge_va, (unsigned long)parent->top_pa.raw);
        return -MM_EINVAL;
    }
    if (reserve_fill(&c, parent->table_frames) != 0)
        return -MM_ENOMEM;
    int err = mm_as_create(child, fa);
    if (err == 0 && walk_leaves(parent->top_pa, PT_LEVEL_PML4, 0, count_leaf, &c)) {
        err = c.err;
        walk_leaves(parent->top_pa, PT_LEVEL_PML4, 0, uncount_leaf, &c);
        if (mm_as_destroy(child) != 0)
            mm_panic("mm_as_clone: cannot destroy the unused child %lx",
                     (unsigned long)child->top_pa.raw);
    }
    if (err) {
        reserve_release(&c);
        return err;
    }
    if (c.counted != parent->owned_frames)
        mm_panic("mm_as_clone: %lu owned leaves in as %lx, owned_frames says %lu",
                 (unsigned long)c.counted, (unsigned long)parent->top_pa.raw,
                 (unsigned long)parent->owned_frames);
    copy_table(&c, parent->top_pa, child->top_pa, PT_LEVEL_PML4, 0);
    MM_BUG_ON(c.reserve != 0);
    child->table_frames = parent->table_frames;
    child->owned_frames = parent->owned_frames;
    if (c.lo <= c.hi) {
        struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
        pt_flush_set(&tok, &parent->cpus, PT_FLUSH_RANGE, VA(c.lo),
                     (c.hi - c.lo) / PAGE_SIZE + 1);
        pt_flush(&tok);
    }
    return 0;
}

int mm_as_clone(struct mm_as *child, struct mm_as *parent, struct frame_allocator *fa)
{
    int err = check_clone_args(child, parent, fa);
    if (err)
        return err;
    mm_spin_lock(&parent->lock);
    err = clone_locked(child, parent, fa);
    mm_spin_unlock(&parent->lock);
    return err;
}

/* ------------------------------------------------------------ resolver */

/* Count 1: make the COW leaf *w (value e) writable in place. */
static int reuse_locked(struct mm_as *as, virt_addr_t va, uint64_t *w, uint64_t e)
{
    MM_ASSERT_LOCKED(&as->lock);
    while (!__atomic_compare_exchange_n(w, &e, (e & ~PTE_AS_COW) | PTE_WRITE, false,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    /* Only this CPU: elsewhere a read-only entry faults and finds the page
     * writable (MM_COW_REUSED), which drops that entry. */
    struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
    pt_flush_set(&tok, &as->cpus, PT_FLUSH_ONE_PAGE, va, 1);
    pt_flush_local(&tok);
    return MM_COW_REUSED;
}

/* Count above 1: copy the frame of the COW leaf *w (value e) into a new
 * one and map that writable; the old frame loses its count after the flush. */
static int copy_locked(struct mm_as *as, virt_addr_t va, uint64_t *w, uint64_t e)
{
    MM_ASSERT_LOCKED(&as->lock);
    phys_addr_t old = PA(e & PTE_ADDR_MASK), fresh;
    if (frame_alloc(as->fa, &fresh) != 0)
        return -MM_ENOMEM;
    __builtin_memcpy(pa_to_ptr(fresh), pa_to_ptr(old), PAGE_SIZE);
    uint64_t flags = (e & ~PTE_ADDR_MASK & ~PTE_AS_COW & ~PTE_ACCESSED & ~PTE_DIRTY) | PTE_WRITE;
    __atomic_store_n(w, fresh.raw | flags, __ATOMIC_RELAXED);
    struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
    pt_flush_set(&tok, &as->cpus, PT_FLUSH_ONE_PAGE, va, 1);
    pt_flush(&tok);
    if (mm_frameref_put(old) == 0)
        as->fa->free(as->fa, old);      /* the other sharers left meanwhile */
    return MM_COW_COPIED;
}

int mm_cow_fault_locked(struct mm_as *as, virt_addr_t va)
{
    MM_ASSERT_LOCKED(&as->lock);
    struct pt_mapper m = mm_as_mapper(as);
    phys_addr_t pt;
    if (pt_get_table(&m, va, PT_LEVEL_PT, &pt) != 0)
        return MM_COW_NOT_COW;          /* nothing mapped, or a huge leaf */
    uint64_t *w = mm_as_entry_word(pt, pt_index(va, PT_LEVEL_PT));
    uint64_t e = __atomic_load_n(w, __ATOMIC_RELAXED);
    if ((e & (PTE_PRESENT | PTE_USER)) != (PTE_PRESENT | PTE_USER))
        return MM_COW_NOT_COW;
    if (e & PTE_WRITE)
        return MM_COW_REUSED;           /* resolved already: retry the access */
    if (!(e & PTE_AS_COW))
        return MM_COW_NOT_COW;
    if (mm_frameref_count(PA(e & PTE_ADDR_MASK)) == 1)
        return reuse_locked(as, va, w, e);
    return copy_locked(as, va, w, e);
}

int mm_cow_fault(struct mm_as *as, virt_addr_t va, uint64_t error_code)
{
    int err = mm_as_check_live(as, "mm_cow_fault");
    if (err)
        return err;
    if ((error_code & (MM_PF_PRESENT | MM_PF_WRITE)) != (MM_PF_PRESENT | MM_PF_WRITE) ||
        !pt_va_is_canonical(va) || va.raw < MM_USER_BASE || va.raw >= MM_USER_END)
        return MM_COW_NOT_COW;
    mm_spin_lock(&as->lock);
    int r = mm_cow_fault_locked(as, VA(align_down_u64(va.raw, PAGE_SIZE)));
    mm_spin_unlock(&as->lock);
    return r;
}
