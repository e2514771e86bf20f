/*
 * mm/paging.c - the page-table mapper: map, unmap, remap and look up
 * virtual addresses in an x86_64 4-level table tree.  Each edit reports
 * its TLB obligation in a flush token (mm/tlbflush.c discharges it).
 *
 * Walks.  A walk starts at the top table (level 4) and follows the entry
 * for va at each level through the direct map until it meets a leaf (a
 * level-1 entry or a huge entry at level 2/3), an empty entry, or the level
 * the caller asked for.  Level-4 entries are never leaves.
 *
 * Mapping is planned before anything is written.  A map request is cut
 * into pieces (largest page size allowed by alignment, remaining size and
 * the caller's limit).  Pass 1 checks every piece against the live tree
 * (occupied slot, huge leaf on the path -> -MM_EEXIST) and counts the
 * intermediate tables that do not exist yet, counting once a table that
 * several pieces share.  Pass 2 takes exactly that many zeroed frames from
 * the frame allocator into a private pool (a chain threaded through the
 * frames themselves); if one is missing, the pool goes back to the
 * allocator and the call returns -MM_ENOMEM with the tree untouched.
 * Pass 3 links the tables and writes the leaves; it cannot fail, and the
 * pool must be empty afterwards (checked).  So every map call is all or
 * nothing, and no failed call leaves an empty table behind.
 *
 * Unmapping clears the leaf; with free_tables it then walks back up,
 * unlinking each table that has no entries left, and stops at the first
 * table still in use.  The top table is never freed.  Unlinked frames are
 * parked in the token and freed when it is discharged, after the flush.
 *
 * Fixed kernel half (m->kernel_top_fixed, the kernel mapper after init):
 * the top-level entries of slots 256..511 neither appear nor disappear.
 * The plan refuses a piece whose kernel-half top-level entry is missing,
 * and unmapping keeps the level-3 tables those entries point at, empty or
 * not: every address space holds a copy of those entries.
 *
 * Ownership: table frames come from and return to m->fa.  Mapped frames
 * belong to the caller, except for pt_map/pt_unmap which take the frame
 * from m->fa and give it back.
 *
 * Entries are read and written with single 64-bit atomic accesses; a new
 * table is zeroed before the release store that links it, so a concurrent
 * hardware walker never sees a half-built table.  There is no lock: the
 * caller serialises writers (see include/mm/paging.h).
 *
 * Cost meter: with MM_STEP_COUNT (host tests only) PT_STEP counts each
 * table visited into a per-thread counter (pt_steps); otherwise nothing.
 */
#include <mm/arch.h>
#include <mm/log.h>
#include <mm/paging.h>

/* ------------------------------------------------------------- step count */

/* Tables visited on this thread (pt_steps in mm/paging.h); only in builds
 * that define MM_STEP_COUNT, the host tests. */
#ifdef MM_STEP_COUNT
static _Thread_local uint64_t step_count;

uint64_t pt_steps(void)
{
    return step_count;
}

#define PT_STEP()  ((void)step_count++)
#else
#define PT_STEP()  ((void)0)
#endif

/* ------------------------------------------------------------- raw access */

static inline uint64_t *table_words(phys_addr_t table_pa)
{
    return (uint64_t *)pa_to_ptr(table_pa);
}

static inline pt_entry_t entry_read(phys_addr_t table_pa, unsigned idx)
{
    return (pt_entry_t){ __atomic_load_n(&table_words(table_pa)[idx], __ATOMIC_RELAXED) };
}

static inline void entry_write(phys_addr_t table_pa, unsigned idx, pt_entry_t e)
{
    __atomic_store_n(&table_words(table_pa)[idx], e.raw, __ATOMIC_RELEASE);
}

static void zero_frame(phys_addr_t pa)
{
    __builtin_memset(pa_to_ptr(pa), 0, PAGE_SIZE);
}

static bool table_is_empty(phys_addr_t table_pa)
{
    PT_STEP();
    for (unsigned i = 0; i < PT_ENTRIES; i++)
        if (entry_read(table_pa, i).raw != 0)
            return false;
    return true;
}

/* Start of the page a leaf at `level` maps (huge leaves keep PAT in bit 12). */
static inline phys_addr_t leaf_pa(pt_entry_t e, unsigned level)
{
    return PA(e.raw & PTE_ADDR_MASK & ~(pt_level_size(level) - 1));
}

/* The leaf at `level` for pa with caller flags (PTE_PAT in bit 7): a huge
 * leaf gets PS in bit 7 and the PAT bit in bit 12. */
static inline pt_entry_t leaf_make(phys_addr_t pa, uint64_t flags, unsigned level)
{
    flags |= PTE_PRESENT;
    if (level == PT_LEVEL_PT)
        return pte_make(pa, flags);
    uint64_t pat = (flags & PTE_PAT) ? PTE_PAT_HUGE : 0;
    return (pt_entry_t){ pte_make(pa, (flags & ~PTE_PAT) | PTE_HUGE).raw | pat };
}

/*
 * Walk towards va, filling path[level] with the table at each level
 * visited.  Stops at stop_level, at an empty entry, or at a leaf, and
 * returns the level of the table whose entry ended the walk.
 */
static unsigned walk(const struct pt_mapper *m, virt_addr_t va, unsigned stop_level,
                     phys_addr_t path[PT_LEVELS + 1])
{
    phys_addr_t table_pa = m->top_pa;
    for (unsigned level = PT_LEVELS;; level--) {
        PT_STEP();
        path[level] = table_pa;
        if (level == stop_level)
            return level;
        pt_entry_t e = entry_read(table_pa, pt_index(va, level));
        if (!pte_present(e))
            return level;
        if (pte_is_leaf(e, level)) {
            if (level == PT_LEVEL_PML4)
                mm_panic("walk: PS bit in PML4 entry %lx for va %lx (table %lx)",
                         (unsigned long)e.raw, (unsigned long)va.raw,
                         (unsigned long)table_pa.raw);
            return level;
        }
        table_pa = pte_pa(e);
    }
}

/* ------------------------------------------------------------- validation */

static bool flags_ok(uint64_t flags)
{
    return (flags & ~PTE_FLAGS_ALLOWED) == 0;
}

/* [va, va+size) is 4 KiB aligned, non-empty, canonical and in one half. */
static bool va_range_ok(virt_addr_t va, uint64_t size)
{
    if (size == 0 || !is_aligned_u64(size, PAGE_SIZE) || !is_aligned_u64(va.raw, PAGE_SIZE))
        return false;
    uint64_t last = va.raw + (size - 1);
    if (last < va.raw)
        return false;
    if (!pt_va_is_canonical(va) || !pt_va_is_canonical(VA(last)))
        return false;
    return (va.raw >> (PT_VA_BITS - 1)) == (last >> (PT_VA_BITS - 1));
}

static bool pa_range_ok(phys_addr_t pa, uint64_t size)
{
    const uint64_t limit = UINT64_C(1) << PTE_PHYS_BITS;
    return is_aligned_u64(pa.raw, PAGE_SIZE) && pa.raw < limit && size <= limit - pa.raw;
}

static inline bool va_in_kernel_half(virt_addr_t va)
{
    return (va.raw >> (PT_VA_BITS - 1)) & 1;
}

/* Start of an unmap or remap: an empty token, a writable mapper. */
static int edit_begin(const struct pt_mapper *m, struct pt_flush *tok, const char *fn)
{
    int err = pt_flush_begin(tok, fn);
    if (err == 0 && m->readonly)
        err = -MM_EPERM;
    return err;
}

/* -------------------------------------------------------------- table pool */

/* Zeroed frames reserved for one map call, chained through their word 0. */
struct table_pool {
    phys_addr_t head;
    uint64_t count;
};

static void pool_drain(struct frame_allocator *fa, struct table_pool *pool)
{
    while (pool->count) {
        phys_addr_t pa = pool->head;
        pool->head = PA(table_words(pa)[0]);
        pool->count--;
        if (fa->free)
            fa->free(fa, pa);
    }
}

static int pool_fill(struct frame_allocator *fa, struct table_pool *pool, uint64_t n)
{
    pool->head = PA(0);
    pool->count = 0;
    while (pool->count < n) {
        phys_addr_t pa;
        if (frame_alloc(fa, &pa) != 0) {
            pool_drain(fa, pool);
            return -MM_ENOMEM;
        }
        if (!is_aligned_u64(pa.raw, PAGE_SIZE) || !pa_range_ok(pa, PAGE_SIZE))
            mm_panic("pool_fill: frame allocator returned bad frame %lx",
                     (unsigned long)pa.raw);
        zero_frame(pa);
        table_words(pa)[0] = pool->head.raw;
        pool->head = pa;
        pool->count++;
    }
    return 0;
}

static phys_addr_t pool_take(struct table_pool *pool)
{
    if (pool->count == 0)
        mm_panic("pool_take: table pool empty (plan counted too few tables)");
    phys_addr_t pa = pool->head;
    pool->head = PA(table_words(pa)[0]);
    table_words(pa)[0] = 0;
    pool->count--;
    return pa;
}

/* ------------------------------------------------------------------ mapping */

/* Level of the largest page that fits at va/pa within remaining bytes. */
static unsigned piece_level(uint64_t va, uint64_t pa, uint64_t remaining, unsigned max_level)
{
    for (unsigned level = max_level; level > PT_LEVEL_PT; level--) {
        uint64_t size = pt_level_size(level);
        if (is_aligned_u64(va | pa, size) && remaining >= size)
            return level;
    }
    return PT_LEVEL_PT;
}

/*
 * Can a leaf at leaf_level be put at va?  Adds to *ntables the tables on
 * its path that are missing and were not already counted for an earlier
 * piece (new_base[l] remembers the va base of the last level-l table
 * counted; pieces come in increasing va order so one slot per level is
 * enough).
 */
static int plan_piece(const struct pt_mapper *m, virt_addr_t va, unsigned leaf_level,
                      uint64_t new_base[PT_LEVELS + 1], uint64_t *ntables)
{
    phys_addr_t table_pa = m->top_pa;
    bool missing = false;

    for (unsigned level = PT_LEVELS; level > leaf_level; level--) {
        if (!missing) {
            PT_STEP();
            pt_entry_t e = entry_read(table_pa, pt_index(va, level));
            if (pte_present(e)) {
                if (pte_is_leaf(e, level))
                    return -MM_EEXIST;          /* inside a huge page */
                table_pa = pte_pa(e);
                continue;
            }
            if (level == PT_LEVELS && m->kernel_top_fixed && va_in_kernel_half(va)) {
                mm_printf("pt_map: va %#lx is in kernel-half slot %u, which has no top-level "
                          "table: the kernel half is fixed after init (include/mm/layout.h)\n",
                          (unsigned long)va.raw, pt_index(va, PT_LEVELS));
                return -MM_EINVAL;
            }
            missing = true;
        }
        /* The level-(level-1) table covering va must be created. */
        uint64_t base = align_down_u64(va.raw, pt_level_size(level));
        if (new_base[level - 1] != base) {
            new_base[level - 1] = base;
            (*ntables)++;
        }
    }
    /* The leaf's table is one more visit when it exists. */
    if (!missing && (PT_STEP(), pte_present(entry_read(table_pa, pt_index(va, leaf_level)))))
        return -MM_EEXIST;                      /* leaf or table already there */
    return 0;
}

/* Let user mode through the existing table entry: U/S is ANDed over the walk. */
static void entry_allow_user(phys_addr_t table_pa, unsigned idx)
{
    pt_entry_t e = entry_read(table_pa, idx);
    if (!(e.raw & PTE_USER))
        entry_write(table_pa, idx, (pt_entry_t){ e.raw | PTE_USER });
}

static void install_piece(struct pt_mapper *m, virt_addr_t va, phys_addr_t pa,
                          unsigned leaf_level, uint64_t flags, struct table_pool *pool)
{
    phys_addr_t table_pa = m->top_pa;

    for (unsigned level = PT_LEVELS; level > leaf_level; level--) {
        PT_STEP();
        unsigned idx = pt_index(va, level);
        pt_entry_t e = entry_read(table_pa, idx);
        if (!pte_present(e)) {
            phys_addr_t new_pa = pool_take(pool);
            entry_write(table_pa, idx, pte_make(new_pa, PTE_TABLE | (flags & PTE_USER)));
            table_pa = new_pa;
            continue;
        }
        if (pte_is_leaf(e, level))
            mm_panic("install_piece: huge leaf %lx at level %u over planned va %lx",
                     (unsigned long)e.raw, level, (unsigned long)va.raw);
        if (flags & PTE_USER)
            entry_allow_user(table_pa, idx);
        table_pa = pte_pa(e);
    }

    PT_STEP();
    unsigned idx = pt_index(va, leaf_level);
    pt_entry_t old = entry_read(table_pa, idx);
    if (pte_present(old))
        mm_panic("install_piece: slot for va %lx at level %u holds %lx after planning",
                 (unsigned long)va.raw, leaf_level, (unsigned long)old.raw);
    entry_write(table_pa, idx, leaf_make(pa, flags, leaf_level));
}

/* Checks shared by every map call before anything is allocated. */
static int map_precheck(const struct pt_mapper *m, virt_addr_t va, phys_addr_t pa,
                        uint64_t size, uint64_t flags)
{
    if (m->readonly)
        return -MM_EPERM;
    if (!flags_ok(flags) || !va_range_ok(va, size) || !pa_range_ok(pa, size))
        return -MM_EINVAL;
    return 0;
}

/* Plan, reserve and install [va, va+size) -> pa with pages up to max_level. */
static int map_pieces(struct pt_mapper *m, virt_addr_t va, phys_addr_t pa, uint64_t size,
                      uint64_t flags, unsigned max_level, struct pt_flush *flush_out)
{
    int err = map_precheck(m, va, pa, size, flags);
    if (err)
        return err;

    uint64_t new_base[PT_LEVELS + 1];
    for (unsigned l = 0; l <= PT_LEVELS; l++)
        new_base[l] = UINT64_MAX;       /* never a table base: not aligned */
    uint64_t ntables = 0, npieces = 0;
    for (uint64_t off = 0; off < size;) {
        unsigned level = piece_level(va.raw + off, pa.raw + off, size - off, max_level);
        err = plan_piece(m, VA(va.raw + off), level, new_base, &ntables);
        if (err)
            return err;
        off += pt_level_size(level);
        npieces++;
    }

    struct table_pool pool;
    err = pool_fill(m->fa, &pool, ntables);
    if (err)
        return err;

    for (uint64_t off = 0; off < size;) {
        unsigned level = piece_level(va.raw + off, pa.raw + off, size - off, max_level);
        install_piece(m, VA(va.raw + off), PA(pa.raw + off), level, flags, &pool);
        off += pt_level_size(level);
    }
    if (pool.count != 0)
        mm_panic("map_pieces: %lu planned tables unused for va %lx size %lx",
                 (unsigned long)pool.count, (unsigned long)va.raw, (unsigned long)size);

    pt_flush_set(flush_out, m->cpus, npieces == 1 ? PT_FLUSH_ONE_PAGE : PT_FLUSH_RANGE, va,
                 size >> PAGE_SHIFT);
    return 0;
}

int pt_map_phys(struct pt_mapper *m, virt_addr_t va, phys_addr_t pa, uint64_t flags,
                struct pt_flush *flush_out)
{
    int err = pt_flush_begin(flush_out, "pt_map_phys");
    if (err)
        return err;
    return map_pieces(m, va, pa, PAGE_SIZE, flags, PT_LEVEL_PT, flush_out);
}

int pt_map(struct pt_mapper *m, virt_addr_t va, uint64_t flags, phys_addr_t *pa_out,
           struct pt_flush *flush_out)
{
    int err = pt_flush_begin(flush_out, "pt_map");
    if (err)
        return err;
    err = map_precheck(m, va, PA(0), PAGE_SIZE, flags);
    if (err)
        return err;
    phys_addr_t pa;
    if (frame_alloc(m->fa, &pa) != 0)
        return -MM_ENOMEM;
    zero_frame(pa);
    err = pt_map_phys(m, va, pa, flags, flush_out);
    if (err) {
        if (m->fa->free)
            m->fa->free(m->fa, pa);
        return err;
    }
    if (pa_out)
        *pa_out = pa;
    return 0;
}

int pt_map_huge(struct pt_mapper *m, virt_addr_t va, phys_addr_t pa, uint64_t page_size,
                uint64_t flags, struct pt_flush *flush_out)
{
    int err = pt_flush_begin(flush_out, "pt_map_huge");
    if (err)
        return err;
    unsigned level = pt_level_of_size(page_size);
    if (level == 0 || (level == PT_LEVEL_PDPT && !arch_has_1g_pages()))
        return -MM_EINVAL;
    if (!is_aligned_u64(va.raw | pa.raw, page_size))
        return m->readonly ? -MM_EPERM : -MM_EINVAL;
    return map_pieces(m, va, pa, page_size, flags, level, flush_out);
}

int pt_map_range(struct pt_mapper *m, virt_addr_t va, phys_addr_t pa, uint64_t size,
                 uint64_t flags, uint64_t max_page_size, struct pt_flush *flush_out)
{
    int err = pt_flush_begin(flush_out, "pt_map_range");
    if (err)
        return err;
    unsigned max_level = pt_level_of_size(max_page_size);
    if (max_level == 0)
        return -MM_EINVAL;
    if (max_level == PT_LEVEL_PDPT && !arch_has_1g_pages())
        max_level = PT_LEVEL_PD;
    return map_pieces(m, va, pa, size, flags, max_level, flush_out);
}

/* ---------------------------------------------------------------- unmapping */

/*
 * After the leaf for va in path[level] was cleared: free the tables from
 * path[level] upwards while they are empty.  Never the top table.
 */
static void free_empty_tables(struct pt_mapper *m, virt_addr_t va, unsigned level,
                              const phys_addr_t path[PT_LEVELS + 1], struct pt_flush *tok)
{
    if (!m->fa->free)
        return;
    for (unsigned l = level; l < PT_LEVELS; l++) {
        if (l == PT_LEVEL_PDPT && m->kernel_top_fixed && va_in_kernel_half(va))
            return;                 /* fixed top-level entry: keep its table */
        if (!table_is_empty(path[l]))
            return;
        entry_write(path[l + 1], pt_index(va, l + 1), (pt_entry_t){ 0 });
        pt_flush_defer_table(tok, m->fa, path[l]);   /* freed after the flush */
    }
}

/* A leaf located by find_leaf: the tables on its walk, its level, its entry. */
struct leaf_ref {
    phys_addr_t path[PT_LEVELS + 1];
    unsigned level;
    pt_entry_t e;
};

/* Locate the leaf mapping va for unmap/remap: 0 with *lf filled, or
 * -MM_EINVAL (va non-canonical, or not aligned to the leaf's page size),
 * -MM_ENOENT (nothing mapped). */
static int find_leaf(const struct pt_mapper *m, virt_addr_t va, struct leaf_ref *lf)
{
    if (!pt_va_is_canonical(va) || !is_aligned_u64(va.raw, PAGE_SIZE))
        return -MM_EINVAL;
    lf->level = walk(m, va, PT_LEVEL_PT, lf->path);
    lf->e = entry_read(lf->path[lf->level], pt_index(va, lf->level));
    if (!pte_present(lf->e))
        return -MM_ENOENT;
    if (!is_aligned_u64(va.raw, pt_level_size(lf->level)))
        return -MM_EINVAL;
    return 0;
}

static inline void leaf_write(const struct leaf_ref *lf, virt_addr_t va, pt_entry_t e)
{
    entry_write(lf->path[lf->level], pt_index(va, lf->level), e);
}

int pt_unmap_phys(struct pt_mapper *m, virt_addr_t va, bool free_tables,
                  struct pt_mapping *old_out, struct pt_flush *flush_out)
{
    struct leaf_ref lf;
    int err = edit_begin(m, flush_out, "pt_unmap_phys");
    if (err == 0)
        err = find_leaf(m, va, &lf);
    if (err)
        return err;

    leaf_write(&lf, va, (pt_entry_t){ 0 });
    if (free_tables)
        free_empty_tables(m, va, lf.level, lf.path, flush_out);

    uint64_t size = pt_level_size(lf.level);
    if (old_out) {
        old_out->pa = leaf_pa(lf.e, lf.level);
        old_out->flags = pte_leaf_flags(lf.e, lf.level);
        old_out->level = lf.level;
        old_out->page_size = size;
    }
    pt_flush_set(flush_out, m->cpus, PT_FLUSH_ONE_PAGE, va, size >> PAGE_SHIFT);
    return 0;
}

int pt_unmap(struct pt_mapper *m, virt_addr_t va, bool free_tables, struct pt_flush *flush_out)
{
    int err = edit_begin(m, flush_out, "pt_unmap");
    if (err)
        return err;
    if (!m->fa->free)
        return -MM_EINVAL;
    struct pt_mapping t;
    err = pt_translate(m, va, &t);
    if (err)
        return err;
    if (t.level != PT_LEVEL_PT || !is_aligned_u64(va.raw, PAGE_SIZE))
        return -MM_EINVAL;
    struct pt_mapping old;
    err = pt_unmap_phys(m, va, free_tables, &old, flush_out);
    if (err)
        mm_panic("pt_unmap: unmap of va %lx failed (%d) after lookup",
                 (unsigned long)va.raw, err);
    /* Freed after the flush: other CPUs may still write into it. */
    pt_flush_defer_data(flush_out, m->fa, old.pa);
    return 0;
}

int pt_unmap_range(struct pt_mapper *m, virt_addr_t va, uint64_t size, bool free_tables,
                   struct pt_flush *flush_out)
{
    int err = edit_begin(m, flush_out, "pt_unmap_range");
    if (err)
        return err;
    if (!va_range_ok(va, size))
        return -MM_EINVAL;
    const uint64_t end = va.raw + size;     /* may wrap to 0 at the very top */
    struct leaf_ref lf;

    /* Pass 1: every page mapped, every leaf inside the range. */
    uint64_t nleaves = 0;
    for (uint64_t off = 0; off < size; nleaves++) {
        err = find_leaf(m, VA(va.raw + off), &lf);
        if (err)
            return err;
        if (pt_level_size(lf.level) > size - off)
            return -MM_EINVAL;
        off += pt_level_size(lf.level);
    }

    /* Pass 2: clear; look for empty tables when leaving a table or at the end. */
    for (uint64_t off = 0; off < size;) {
        virt_addr_t cur = VA(va.raw + off);
        if (find_leaf(m, cur, &lf) != 0)
            mm_panic("pt_unmap_range: leaf for va %lx vanished", (unsigned long)cur.raw);
        leaf_write(&lf, cur, (pt_entry_t){ 0 });
        off += pt_level_size(lf.level);
        uint64_t next = va.raw + off;
        if (free_tables && (next == end || is_aligned_u64(next, pt_level_size(lf.level + 1))))
            free_empty_tables(m, cur, lf.level, lf.path, flush_out);
    }

    pt_flush_set(flush_out, m->cpus, nleaves == 1 ? PT_FLUSH_ONE_PAGE : PT_FLUSH_RANGE, va,
                 size >> PAGE_SHIFT);
    return 0;
}

/* ------------------------------------------------------------------- remap */

int pt_remap(struct pt_mapper *m, virt_addr_t va, uint64_t flags, struct pt_flush *flush_out)
{
    struct leaf_ref lf;
    int err = edit_begin(m, flush_out, "pt_remap");
    if (err == 0)
        err = flags_ok(flags) ? find_leaf(m, va, &lf) : -MM_EINVAL;
    if (err)
        return err;
    /* As a map call does; invlpg of va also drops the cached upper entries. */
    if (flags & PTE_USER)
        for (unsigned l = PT_LEVELS; l > lf.level; l--)
            entry_allow_user(lf.path[l], pt_index(va, l));
    leaf_write(&lf, va, leaf_make(leaf_pa(lf.e, lf.level), flags, lf.level));
    pt_flush_set(flush_out, m->cpus, PT_FLUSH_ONE_PAGE, va,
                 pt_level_size(lf.level) >> PAGE_SHIFT);
    return 0;
}

/* ------------------------------------------------------ top-level slots */

/* Is the top-level slot of vas[i] missing and not named by an earlier va? */
static bool slot_missing_first(const struct pt_mapper *m, const virt_addr_t *vas, unsigned i)
{
    unsigned slot = pt_index(vas[i], PT_LEVELS);
    if (pte_present(entry_read(m->top_pa, slot)))
        return false;
    for (unsigned j = 0; j < i; j++)
        if (pt_index(vas[j], PT_LEVELS) == slot)
            return false;
    return true;
}

int pt_prepare_top_slots(struct pt_mapper *m, const virt_addr_t *vas, unsigned n,
                         unsigned *created)
{
    if (m->readonly)
        return -MM_EPERM;
    unsigned missing = 0;
    for (unsigned i = 0; i < n; i++) {
        if (!pt_va_is_canonical(vas[i])) {
            mm_printf("pt_prepare_top_slots: va %#lx (entry %u of %u) is not canonical\n",
                      (unsigned long)vas[i].raw, i, n);
            return -MM_EINVAL;
        }
        missing += slot_missing_first(m, vas, i);
    }
    struct table_pool pool;
    int err = pool_fill(m->fa, &pool, missing);
    if (err)
        return err;
    for (unsigned i = 0; i < n; i++) {
        unsigned slot = pt_index(vas[i], PT_LEVELS);
        if (pte_present(entry_read(m->top_pa, slot)))
            continue;
        entry_write(m->top_pa, slot, pte_make(pool_take(&pool), PTE_TABLE));
    }
    if (pool.count != 0)
        mm_panic("pt_prepare_top_slots: %lu planned tables unused (%u slots asked)",
                 (unsigned long)pool.count, n);
    if (created)
        *created = missing;
    return 0;
}

/* ------------------------------------------------------------------ lookup */

int pt_translate(const struct pt_mapper *m, virt_addr_t va, struct pt_mapping *out)
{
    if (!pt_va_is_canonical(va))
        return -MM_EINVAL;
    phys_addr_t path[PT_LEVELS + 1];
    unsigned level = walk(m, va, PT_LEVEL_PT, path);
    pt_entry_t e = entry_read(path[level], pt_index(va, level));
    if (!pte_present(e))
        return -MM_ENOENT;
    uint64_t size = pt_level_size(level);
    out->pa = PA(leaf_pa(e, level).raw + (va.raw & (size - 1)));
    out->flags = pte_leaf_flags(e, level);
    out->level = level;
    out->page_size = size;
    return 0;
}

int pt_get_table(const struct pt_mapper *m, virt_addr_t va, unsigned level,
                 phys_addr_t *table_pa_out)
{
    if (level < PT_LEVEL_PT || level > PT_LEVELS || !pt_va_is_canonical(va))
        return -MM_EINVAL;
    phys_addr_t path[PT_LEVELS + 1];
    if (walk(m, va, level, path) != level)
        return -MM_ENOENT;
    *table_pa_out = path[level];
    return 0;
}

int pt_get_entry(const struct pt_mapper *m, virt_addr_t va, unsigned level,
                 pt_entry_t *entry_out)
{
    phys_addr_t table_pa;
    int err = pt_get_table(m, va, level, &table_pa);
    if (err)
        return err;
    *entry_out = entry_read(table_pa, pt_index(va, level));
    return 0;
}

/* -------------------------------------------------------------- the mapper */

int pt_mapper_create(struct frame_allocator *fa, struct pt_mapper *m_out)
{
    phys_addr_t pa;
    if (frame_alloc(fa, &pa) != 0)
        return -MM_ENOMEM;
    zero_frame(pa);
    *m_out = (struct pt_mapper){ .top_pa = pa, .fa = fa };
    return 0;
}

static void free_subtree(struct frame_allocator *fa, phys_addr_t table_pa, unsigned level)
{
    PT_STEP();
    if (level > PT_LEVEL_PT) {
        for (unsigned i = 0; i < PT_ENTRIES; i++) {
            pt_entry_t e = entry_read(table_pa, i);
            if (pte_present(e) && !pte_is_leaf(e, level))
                free_subtree(fa, pte_pa(e), level - 1);
        }
    }
    fa->free(fa, table_pa);
}

int pt_mapper_destroy(struct pt_mapper *m)
{
    if (m->readonly)
        return -MM_EPERM;
    if (m->top_pa.raw == 0)
        return -MM_EINVAL;              /* destroyed already */
    if (pt_mapper_is_current(m))
        return -MM_EBUSY;
    if (!m->fa->free)
        return -MM_EINVAL;
    free_subtree(m->fa, m->top_pa, PT_LEVELS);
    m->top_pa = PA(0);
    return 0;
}

struct pt_mapper pt_mapper_current(struct frame_allocator *fa)
{
    struct pt_mapper m = { .top_pa = PA(arch_read_cr3().raw & PTE_ADDR_MASK), .fa = fa };
    return m;
}

void pt_mapper_make_current(const struct pt_mapper *m)
{
    arch_write_cr3(m->top_pa);
}

bool pt_mapper_is_current(const struct pt_mapper *m)
{
    return (arch_read_cr3().raw & PTE_ADDR_MASK) == m->top_pa.raw;
}
