/*
 * mm/cow.c - fork with copy-on-write: mm_as_clone and the COW fault
 * resolver (include/mm/cow.h has the contracts and the locking).
 *
 * Clone, in four passes over the parent's user half, under its lock.  The
 * walks go table by table: the upper levels are walked once per pass, and
 * the work per page is done in one loop over a whole level-1 table.
 *   1. plan: walk the upper levels; a huge leaf (2 MiB, 1 GiB) refuses the
 *      clone before anything changes, so no huge leaf is walked as a table;
 *   2. reserve: take the child's top table (mm_as_create) and one frame
 *      for each user-half table of the parent (parent->table_frames);
 *   3. count: one more count for every owned frame, one batch per
 *      level-1 table (mm_frameref_get_entries: one lock, one tree walk per
 *      8 MiB block); a refusal (no frame for the count tree, or a count at
 *      its limit) puts back the batches done so far, in the same order,
 *      and gives every reserved frame back;
 *   4. copy: build the child's tables from the reserve (this pass cannot
 *      fail): each level-1 table in one loop that copies every entry and
 *      write-protects the parent's private writable leaves, marking them
 *      COW in both, then flush the parent once: one range token from the
 *      first to the last level-1 table with a page write-protected, on the
 *      parent's CPU set (a full flush when the range is large).
 * Pass 4 edits the parent's live leaves while other CPUs running the
 * parent may have their MMUs set accessed/dirty bits in them (no software
 * writes them: that needs the lock).  A plain load and store could then
 * lose a dirty bit set in between, and a compare-and-swap is a locked
 * instruction for every page, dearer than all the rest of the copy of
 * that page.  So the write-protected entry
 * is stored with PTE_ACCESSED and PTE_DIRTY set: whatever an MMU set in
 * the meantime is a subset of that (the MMU only ever sets those two
 * bits, with a locked operation that cannot undo the store), and a dirty
 * bit on a writable private page only claims what may be true.  Until the
 * flush other CPUs may still write through old writable translations,
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

/* A parent leaf that becomes COW (all of CLONE_WP_SEL, none of CLONE_WP_NOT)
 * and the owned leaves that get a count (all of COUNTED). */
#define CLONE_WP_SEL  (PTE_PRESENT | PTE_AS_OWNED | PTE_WRITE)
#define CLONE_WP_NOT  PTE_AS_SHARED
#define COUNTED       (PTE_PRESENT | PTE_AS_OWNED)

struct clone_ctx {
    struct frame_allocator *fa;
    uint64_t huge_va;           /* pass 1: the huge leaf found */
    uint64_t counted;           /* pass 3: counts added */
    uint64_t tables_counted;    /* pass 3: level-1 tables counted */
    uint64_t lo, hi;            /* pass 4: parent pages write-protected */
    uint64_t reserve;           /* pass 4: reserved frames, chained by word 0 */
};

/* Called for each level-1 table (pt) of the user half, whose first page is
 * va; a non-zero result stops the walk. */
typedef int (*table_fn)(struct clone_ctx *c, phys_addr_t pt, uint64_t va);

/* Entries of a table at `level` (4: the user half only). */
static unsigned user_entries(unsigned level)
{
    return level == PT_LEVEL_PML4 ? USER_SLOTS : PT_ENTRIES;
}

/* Entry i of the table at `level` whose first page is va: its value (*e)
 * and first page (*eva); false when not present. */
static bool entry_at(phys_addr_t table, unsigned level, unsigned i, uint64_t va,
                     uint64_t *e, uint64_t *eva)
{
    *e = __atomic_load_n(mm_as_entry_word(table, i), __ATOMIC_RELAXED);
    *eva = va + ((uint64_t)i << pt_level_shift(level));
    return (*e & PTE_PRESENT) != 0;
}

/* Every level-1 table under the table at `level` (above 1; 4: the user
 * half only), in address order; returns the first non-zero result of fn,
 * or -MM_EINVAL at a huge leaf (c->huge_va), which is never walked. */
static int walk_tables(struct clone_ctx *c, phys_addr_t table, unsigned level, uint64_t va,
                       table_fn fn)
{
    for (unsigned i = 0; i < user_entries(level); i++) {
        uint64_t e, eva;
        if (!entry_at(table, level, i, va, &e, &eva))
            continue;
        int r;
        if (pte_is_leaf((pt_entry_t){ e }, level)) {
            c->huge_va = eva;
            r = -MM_EINVAL;
        } else if (level == PT_LEVEL_PD) {
            r = fn(c, PA(e & PTE_ADDR_MASK), eva);
        } else {
            r = walk_tables(c, PA(e & PTE_ADDR_MASK), level - 1, eva, fn);
        }
        if (r)
            return r;
    }
    return 0;
}

/* Pass 1: only the walk itself (it stops at a huge leaf). */
static int plan_table(struct clone_ctx *c, phys_addr_t pt, uint64_t va)
{
    (void)c, (void)pt, (void)va;
    return 0;
}

/* Pass 3: one more count for every owned frame of the table. */
static int count_table(struct clone_ctx *c, phys_addr_t pt, uint64_t va)
{
    (void)va;
    int64_t got = mm_frameref_get_entries(pa_to_ptr(pt), PT_ENTRIES, COUNTED, c->fa);
    if (got < 0)
        return (int)got;
    c->counted += (uint64_t)got;
    c->tables_counted++;
    return 0;
}

/* Roll-back of pass 3: put back the counts of the first c->tables_counted
 * tables again. */
static int uncount_table(struct clone_ctx *c, phys_addr_t pt, uint64_t va)
{
    if (c->tables_counted == 0)
        return 1;
    c->tables_counted--;
    if (mm_frameref_put_entries(pa_to_ptr(pt), PT_ENTRIES, COUNTED) != 0)
        mm_panic("uncount_table: a frame of the table at va %#lx lost its last count "
                 "in a roll-back", (unsigned long)va);
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

/* A frame from the reserve (pass 1 sized it exactly), zeroed if `zero`. */
static phys_addr_t reserve_take(struct clone_ctx *c, bool zero)
{
    if (c->reserve == 0)
        mm_panic("reserve_take: clone reserve empty: table_frames is wrong");
    phys_addr_t pa = PA(c->reserve);
    c->reserve = *mm_as_entry_word(pa, 0);
    if (zero)
        __builtin_memset(pa_to_ptr(pa), 0, PAGE_SIZE);
    return pa;
}

/* ---------------------------------------------------------------- copy */

/*
 * Copy the parent's level-1 table ppt (first page va) into the child's
 * table cpt, every entry written.  A private writable leaf is
 * write-protected in the parent and COW in both (stored with accessed and
 * dirty set: see the overview); a read-only, shared, already COW or
 * foreign leaf keeps the same bits; a non-present entry becomes 0.
 */
static void copy_leaf_table(struct clone_ctx *c, phys_addr_t ppt, phys_addr_t cpt, uint64_t va)
{
    uint64_t *pw = pa_to_ptr(ppt), *cw = pa_to_ptr(cpt);
    bool any = false;
    for (unsigned i = 0; i < PT_ENTRIES; i++) {
        uint64_t e = __atomic_load_n(&pw[i], __ATOMIC_RELAXED);
        bool wp = (e & (CLONE_WP_SEL | CLONE_WP_NOT)) == CLONE_WP_SEL;
        uint64_t ne = wp ? (e & ~PTE_WRITE) | PTE_AS_COW | PTE_ACCESSED | PTE_DIRTY : e;
        if (wp)
            __atomic_store_n(&pw[i], ne, __ATOMIC_RELAXED);
        any |= wp;
        cw[i] = ne & -(ne & PTE_PRESENT);   /* PTE_PRESENT is bit 0 */
    }
    if (any) {      /* the flush covers the whole table */
        c->lo = va < c->lo ? va : c->lo;
        c->hi = va + (PT_ENTRIES - 1) * PAGE_SIZE > c->hi ? va + (PT_ENTRIES - 1) * PAGE_SIZE
                                                         : c->hi;
    }
}

/* Copy the parent table at `level` (above 1) into the (zeroed) child table. */
static void copy_table(struct clone_ctx *c, phys_addr_t ptab, phys_addr_t ctab,
                       unsigned level, uint64_t va)
{
    for (unsigned i = 0; i < user_entries(level); i++) {
        uint64_t e, eva;
        if (!entry_at(ptab, level, i, va, &e, &eva))
            continue;
        phys_addr_t sub = reserve_take(c, level > PT_LEVEL_PD);
        *mm_as_entry_word(ctab, i) = sub.raw | (e & ~PTE_ADDR_MASK);
        if (level == PT_LEVEL_PD)
            copy_leaf_table(c, PA(e & PTE_ADDR_MASK), sub, eva);
        else
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
    if (walk_tables(&c, parent->top_pa, PT_LEVEL_PML4, 0, plan_table)) {
        mm_printf("mm_as_clone: huge user leaf at va %#lx in address space %#lx: refused\n",
                  (unsigned long)c.huge_va, (unsigned long)parent->top_pa.raw);
        return -MM_EINVAL;
    }
    if (reserve_fill(&c, parent->table_frames) != 0)
        return -MM_ENOMEM;
    int err = mm_as_create(child, fa);
    if (err == 0 && (err = walk_tables(&c, parent->top_pa, PT_LEVEL_PML4, 0, count_table))) {
        walk_tables(&c, parent->top_pa, PT_LEVEL_PML4, 0, uncount_table);
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
