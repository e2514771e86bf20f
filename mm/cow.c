/*
 * mm/cow.c - fork with copy-on-write: mm_as_clone and the COW fault
 * resolver (include/mm/cow.h has the contracts and the locking).
 *
 * Clone: the child gets its own upper tables (top, level 3, level 2) and
 * shares every level-1 table of the parent (mm/cow_table.c unshares them
 * later, at the first write).  In four passes over the parent's upper
 * levels, under its lock:
 *   1. plan: walk the upper levels; a huge leaf (2 MiB, 1 GiB) refuses the
 *      clone before anything changes, so no huge leaf is walked as a
 *      table; count the parent's level-3 and level-2 tables;
 *   2. reserve: take the child's top table (mm_as_create) and one frame
 *      for each of those upper tables;
 *   3. count: one more count for every level-1 table, one batch per
 *      level-2 table (mm_frameref_get_entries); a refusal (no frame for
 *      the count tree, or a count at its limit) puts back the batches
 *      done so far and gives every reserved frame back;
 *   4. share: build the child's upper tables from the reserve (this pass
 *      cannot fail): each level-2 entry of the parent loses PTE_WRITE and
 *      gets PTE_AS_COW (a compare-and-swap: an MMU may set its accessed
 *      bit meanwhile), and the child's copy of it points at the same
 *      level-1 table; then flush the parent once: one range token from
 *      the first to the last 2 MiB region whose entry lost PTE_WRITE, on
 *      the parent's CPU set (a full flush when the range is large).
 * No leaf and no data frame is touched: the cost is one step per upper
 * entry.  Until the flush other CPUs may still write through old
 * writable translations; the child cannot run before the clone returns,
 * so it starts from the memory as the flush left it.
 *
 * Resolver.  Under as->lock: a write to a present, logically writable
 * leaf first unshares its level-1 table (mm_cow_table_unshare_locked).
 * Then a COW leaf whose frame has count 1 flips to writable in place (the
 * faulting CPU flushes its own entry; other CPUs' read-only entries can
 * only fault and find the page writable).  With a higher count: copy the
 * frame into a new one, point the leaf at it, writable, flush on as's
 * CPUs, and only then drop the old frame's count (freeing it on the last
 * drop).
 *
 * Invariants.  No leaf is both PTE_WRITE and PTE_AS_COW.  A COW leaf is
 * owned and not shared.  A leaf that is writable in a table that some
 * level-2 entry makes read-only is never written through by any CPU.  The
 * child's table_frames and owned_frames equal the parent's at the clone.
 */
#include <mm/cow.h>
#include <mm/frameref.h>
#include <mm/log.h>

#define USER_SLOTS (PT_ENTRIES / 2)     /* top-level slots of the user half */

/* ------------------------------------------------------------- walking */

struct clone_ctx {
    struct frame_allocator *fa;
    uint64_t huge_va;           /* pass 1: the huge leaf found */
    uint64_t uppers;            /* pass 1: the parent's level-3 and -2 tables */
    uint64_t pds_counted;       /* pass 3: level-2 tables counted */
    uint64_t lo, hi;            /* pass 4: first and last region write-protected */
    uint64_t reserve;           /* pass 4: reserved frames, chained by word 0 */
};

/* Called for each level-2 table (pd) of the user half, whose first page
 * is va; a non-zero result stops the walk. */
typedef int (*pd_fn)(struct clone_ctx *c, phys_addr_t pd, uint64_t va);

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

static int plan_pd(struct clone_ctx *c, phys_addr_t pd, uint64_t va);

/* Every level-2 table under the table at `level` (4 or 3; 4: the user
 * half only), in address order; returns the first non-zero result of fn,
 * or -MM_EINVAL at a 1 GiB leaf (c->huge_va), which is never walked. */
static int walk_pds(struct clone_ctx *c, phys_addr_t table, unsigned level, uint64_t va,
                    pd_fn fn)
{
    for (unsigned i = 0; i < user_entries(level); i++) {
        uint64_t e, eva;
        if (!entry_at(table, level, i, va, &e, &eva))
            continue;
        int r;
        if (pte_is_leaf((pt_entry_t){ e }, level)) {
            c->huge_va = eva;
            r = -MM_EINVAL;
        } else if (level == PT_LEVEL_PDPT) {
            r = fn(c, PA(e & PTE_ADDR_MASK), eva);
        } else {
            c->uppers += fn == plan_pd;     /* a level-3 table */
            r = walk_pds(c, PA(e & PTE_ADDR_MASK), level - 1, eva, fn);
        }
        if (r)
            return r;
    }
    return 0;
}

/* Pass 1: count the table; a 2 MiB leaf in it stops the walk. */
static int plan_pd(struct clone_ctx *c, phys_addr_t pd, uint64_t va)
{
    c->uppers++;
    for (unsigned i = 0; i < PT_ENTRIES; i++) {
        uint64_t e, eva;
        if (!entry_at(pd, PT_LEVEL_PD, i, va, &e, &eva))
            continue;
        /* A huge leaf, or a read-only level-2 entry that is not a shared
         * table's: mm_as makes neither, and sharing the table under the
         * latter would let the parent edit it in place. */
        if ((e & PTE_HUGE) || !(e & (PTE_WRITE | PTE_AS_COW))) {
            c->huge_va = eva;
            return -MM_EINVAL;
        }
    }
    return 0;
}

/* Pass 3: one more count for every level-1 table under pd. */
static int count_pd(struct clone_ctx *c, phys_addr_t pd, uint64_t va)
{
    (void)va;
    int64_t got = mm_frameref_get_entries(pa_to_ptr(pd), PT_ENTRIES, PTE_PRESENT, c->fa);
    if (got < 0)
        return (int)got;
    c->pds_counted++;
    return 0;
}

/* Roll-back of pass 3: put back the counts of the first c->pds_counted
 * level-2 tables again. */
static int uncount_pd(struct clone_ctx *c, phys_addr_t pd, uint64_t va)
{
    if (c->pds_counted == 0)
        return 1;
    c->pds_counted--;
    if (mm_frameref_put_entries(pa_to_ptr(pd), PT_ENTRIES, PTE_PRESENT) != 0)
        mm_panic("uncount_pd: a level-1 table under va %#lx lost its last count "
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

/* A zeroed frame from the reserve (pass 1 sized it exactly). */
static phys_addr_t reserve_take(struct clone_ctx *c)
{
    if (c->reserve == 0)
        mm_panic("reserve_take: clone reserve empty: the plan pass is wrong");
    phys_addr_t pa = PA(c->reserve);
    c->reserve = *mm_as_entry_word(pa, 0);
    __builtin_memset(pa_to_ptr(pa), 0, PAGE_SIZE);
    return pa;
}

/* --------------------------------------------------------------- share */

/*
 * Share every level-1 table under the parent's level-2 table ppd (first
 * page va) with the child's table cpd: the parent's entry becomes
 * read-only and COW (an entry shared already stays as it is) and the
 * child's is a copy of it.
 */
static void share_pd(struct clone_ctx *c, phys_addr_t ppd, phys_addr_t cpd, uint64_t va)
{
    uint64_t *pw = pa_to_ptr(ppd), *cw = pa_to_ptr(cpd);
    for (unsigned i = 0; i < PT_ENTRIES; i++) {
        uint64_t e = __atomic_load_n(&pw[i], __ATOMIC_RELAXED);
        if (!(e & PTE_PRESENT))
            continue;
        if (e & PTE_WRITE) {        /* else already shared (plan_pd refused the rest) */
            while (!__atomic_compare_exchange_n(&pw[i], &e, (e & ~PTE_WRITE) | PTE_AS_COW,
                                                false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
                ;
            uint64_t rva = va + (uint64_t)i * PAGE_2M_SIZE;
            c->lo = rva < c->lo ? rva : c->lo;
            c->hi = rva > c->hi ? rva : c->hi;
        }
        cw[i] = (e & ~PTE_WRITE) | PTE_AS_COW;
    }
}

/* Copy the parent's table at `level` (4 or 3) into the (zeroed) child's. */
static void copy_upper(struct clone_ctx *c, phys_addr_t ptab, phys_addr_t ctab,
                       unsigned level, uint64_t va)
{
    for (unsigned i = 0; i < user_entries(level); i++) {
        uint64_t e, eva;
        if (!entry_at(ptab, level, i, va, &e, &eva))
            continue;
        phys_addr_t sub = reserve_take(c);
        *mm_as_entry_word(ctab, i) = sub.raw | (e & ~PTE_ADDR_MASK);
        if (level == PT_LEVEL_PDPT)
            share_pd(c, PA(e & PTE_ADDR_MASK), sub, eva);
        else
            copy_upper(c, PA(e & PTE_ADDR_MASK), sub, level - 1, eva);
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

/* Passes 2 and 3: the reserve, the child's top table, the tables' counts;
 * 0, or the error with nothing kept. */
static int clone_prepare_locked(struct mm_as *child, struct mm_as *parent, struct clone_ctx *c)
{
    MM_ASSERT_LOCKED(&parent->lock);
    if (reserve_fill(c, c->uppers) != 0)
        return -MM_ENOMEM;
    int err = mm_as_create(child, c->fa);
    if (err == 0 && (err = walk_pds(c, parent->top_pa, PT_LEVEL_PML4, 0, count_pd))) {
        walk_pds(c, parent->top_pa, PT_LEVEL_PML4, 0, uncount_pd);
        if (mm_as_destroy(child) != 0)
            mm_panic("mm_as_clone: cannot destroy the unused child %lx",
                     (unsigned long)child->top_pa.raw);
    }
    if (err)
        reserve_release(c);
    return err;
}

static int clone_locked(struct mm_as *child, struct mm_as *parent, struct frame_allocator *fa)
{
    MM_ASSERT_LOCKED(&parent->lock);
    struct clone_ctx c = { .fa = fa, .lo = UINT64_MAX };
    if (walk_pds(&c, parent->top_pa, PT_LEVEL_PML4, 0, plan_pd)) {
        mm_printf("mm_as_clone: huge user leaf at va %#lx in address space %#lx: refused\n",
                  (unsigned long)c.huge_va, (unsigned long)parent->top_pa.raw);
        return -MM_EINVAL;
    }
    int err = clone_prepare_locked(child, parent, &c);
    if (err)
        return err;
    copy_upper(&c, parent->top_pa, child->top_pa, PT_LEVEL_PML4, 0);
    MM_BUG_ON(c.reserve != 0);
    child->table_frames = parent->table_frames;
    child->owned_frames = parent->owned_frames;
    if (c.lo <= c.hi) {
        struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
        pt_flush_set(&tok, &parent->cpus, PT_FLUSH_RANGE, VA(c.lo),
                     (c.hi - c.lo + PAGE_2M_SIZE) / PAGE_SIZE);
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

/* Count 1: make the COW leaf *w (value e) writable in place.  Only this
 * CPU is flushed: elsewhere a read-only entry faults and finds the page
 * writable (MM_COW_REUSED), which drops that entry. */
static int reuse_locked(struct mm_as *as, virt_addr_t va, uint64_t *w, uint64_t e)
{
    MM_ASSERT_LOCKED(&as->lock);
    mm_cow_entry_make_writable_locked(as, va, w, e, false);
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

/* The leaf word for user page va of as and its value (*e); NULL when no
 * level-1 table maps va (nothing mapped, or a huge leaf). */
static uint64_t *leaf_word(struct mm_as *as, virt_addr_t va, uint64_t *e)
{
    struct pt_mapper m = mm_as_mapper(as);
    phys_addr_t pt;
    if (pt_get_table(&m, va, PT_LEVEL_PT, &pt) != 0)
        return NULL;
    uint64_t *w = mm_as_entry_word(pt, pt_index(va, PT_LEVEL_PT));
    *e = __atomic_load_n(w, __ATOMIC_RELAXED);
    return w;
}

int mm_cow_fault_locked(struct mm_as *as, virt_addr_t va)
{
    MM_ASSERT_LOCKED(&as->lock);
    uint64_t e;
    uint64_t *w = leaf_word(as, va, &e);
    if (w == NULL || (e & (PTE_PRESENT | PTE_USER)) != (PTE_PRESENT | PTE_USER) ||
        !(e & (PTE_WRITE | PTE_AS_COW)))
        return MM_COW_NOT_COW;          /* not mapped, huge, or read-only */
    int err = mm_cow_table_unshare_locked(as, va);
    if (err)
        return err;
    w = leaf_word(as, va, &e);          /* the table may be a new copy */
    if (e & PTE_WRITE)
        return MM_COW_REUSED;           /* resolved already: retry the access */
    MM_BUG_ON(!(e & PTE_AS_COW));       /* unsharing keeps it logically writable */
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
