/*
 * mm/buddy_check.c - inspection of the buddy allocator: the usage, the
 * invariant checker (buddy_check), the per-order free block counts, the
 * one-line dump, the step meter (host tests), and the diagnosis of a
 * refused free (its log line).  The allocator itself is mm/buddy.c; the
 * metadata layout read here is in mm/buddy_impl.h.
 *
 * Algorithm.  buddy_check walks every free list from its top list block
 * and checks each listed block against the bitmaps, its frame state and,
 * for an indexed list, its back-index (which must name exactly the slot it
 * was found in; an unindexed list must be short) and against the top
 * tier (its chunk must be NONE), then checks the top tier (FREE and ALLOC
 * chunks are whole managed GiB) and compares what it found with the
 * counters: free blocks per order, the non-empty mask, free pages, and the
 * list block reserve (in the lists + on the empty stack == used once,
 * never past the reserve).  Then every per-CPU cache: each entry in state
 * CACHED | its CPU, inside no free block and no FREE or ALLOC chunk, and
 * not twice in its cache, and as many CACHED bytes in the frame states as
 * entries in the caches (no stale state).  Bitmap bits and states are
 * counted chunk by chunk, skipping untouched 1 GiB chunks.  O(free blocks
 * + bitmap size + frames of the touched chunks): for tests and debugging,
 * never on a hot path.
 *
 * Invariants checked: those listed at the top of mm/buddy.c.  The first
 * inconsistency panics with "buddy_check:" and the values.
 *
 * Locking.  buddy_check and buddy_free_blocks hold b->lock for their
 * whole walk, so the lists they see are one consistent state; the static
 * helpers run under it.  The per-CPU caches and the top tier have no lock
 * (1 GiB calls change the tier without it): buddy_check reads them as
 * they are, so it needs the other CPUs to leave b alone meanwhile, and the
 * 1 GiB count of buddy_free_blocks is of a moment during the call.
 * buddy_dump goes through the public calls, two lock holds, so its counts
 * and its usage may be a moment apart.  buddy_free_refusal takes b->lock
 * (called without it) to read the ranges and the frame state.
 */
#include "buddy_impl.h"

/* ------------------------------------------------ usage, counts and dump */

void buddy_usage(struct buddy *b, struct buddy_usage *u)
{
    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    uint64_t cached = buddy_pcp_cached(b), listed = lists_free_npages(b);
    if (cached > b->total_npages - listed)
        cached = b->total_npages - listed;          /* counts read moments apart */
    u->total_npages = b->total_npages;
    u->cached_npages = cached;
    u->free_npages = listed + cached;
    u->used_npages = b->total_npages - u->free_npages;
    u->meta_npages = (b->meta_end.raw - b->meta_start.raw) / PAGE_SIZE;
    mm_spin_unlock_irqrestore(&b->lock, flags);
}


void buddy_free_blocks_zone(struct buddy *b, unsigned z, uint64_t counts[BUDDY_NR_ORDERS])
{
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++)
        counts[k] = 0;
    if (z >= BUDDY_NR_ZONES)
        return;
    uint64_t first, end;
    top_zone_range(b, z, &first, &end);
    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    for (unsigned k = 0; k < BUDDY_NR_LIST_ORDERS; k++)
        counts[k] = b->list[z][k].nfree;
    counts[BUDDY_MAX_ORDER] = buddy_top_count(b, first, end, BUDDY_TOP_FREE);
    mm_spin_unlock_irqrestore(&b->lock, flags);
}

void buddy_free_blocks(struct buddy *b, uint64_t counts[BUDDY_NR_ORDERS])
{
    uint64_t low[BUDDY_NR_ORDERS];
    buddy_free_blocks_zone(b, BUDDY_HIGH, counts);
    buddy_free_blocks_zone(b, BUDDY_LOW, low);
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++)
        counts[k] += low[k];
}

void buddy_dump(struct buddy *b)
{
    uint64_t counts[BUDDY_NR_ORDERS];
    struct buddy_usage u;
    char line[256];
    int len = 0;
    buddy_free_blocks(b, counts);
    buddy_usage(b, &u);
    len += mm_snprintf(line, sizeof line, "buddy: free blocks by order:");
    for (unsigned k = 0; k < BUDDY_NR_ORDERS && len < (int)sizeof line; k++)
        len += mm_snprintf(line + len, sizeof line - (size_t)len, " %lu", (unsigned long)counts[k]);
    mm_printf("%s; free %lu / %lu pages (%lu in per-CPU caches), meta %lu\n", line,
              (unsigned long)u.free_npages, (unsigned long)u.total_npages,
              (unsigned long)u.cached_npages, (unsigned long)u.meta_npages);
}

#ifdef MM_STEP_COUNT
uint64_t buddy_steps(struct buddy *b)
{
    return __atomic_load_n(&b->steps, __ATOMIC_RELAXED);
}
#endif

/* ------------------------------------------------- refused frees */

/* Is [pa, pa + npages frames) inside one managed range?  O(log areas). */
static bool in_managed_ranges(const struct buddy *b, uint64_t pa, uint64_t npages)
{
    unsigned lo = 0, hi = b->ranges.count;
    while (lo < hi) {                       /* first area with end > pa */
        unsigned mid = (lo + hi) / 2;
        if (b->ranges.area[mid].end.raw <= pa)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == b->ranges.count)
        return false;
    const struct mm_area *a = &b->ranges.area[lo];
    return a->start.raw <= pa && pa + npages * PAGE_SIZE <= a->end.raw;
}

int buddy_free_refused(phys_addr_t pa, uint64_t npages, const char *why, int err)
{
    mm_printf("buddy_free: pa %#lx npages %lu: %s\n", (unsigned long)pa.raw,
              (unsigned long)npages, why);
    return err;
}

int buddy_free_refusal(struct buddy *b, phys_addr_t pa, uint64_t npages, uint64_t rel)
{
    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    bool managed = in_managed_ranges(b, pa.raw, npages);
    unsigned state = npages == 1 && chunk_ready(b, 0, rel) ? fs_get(b, rel) : BUDDY_FS_NONE;
    mm_spin_unlock_irqrestore(&b->lock, flags);
    if (!managed)
        return buddy_free_refused(pa, npages, "outside the managed ranges", -MM_EFAULT);
    if (state & BUDDY_FS_CACHED) {
        mm_printf("buddy_free: pa %#lx npages 1: double free (the frame is in CPU %u's cache)\n",
                  (unsigned long)pa.raw, state & ~BUDDY_FS_CACHED);
        return -MM_ENOENT;
    }
    return buddy_free_refused(pa, npages, "not an allocated block (double free or wrong size)",
                              -MM_ENOENT);
}

/* ------------------------------------------------------------ checker */

static uint64_t popcount_bits(const uint64_t *bits, uint64_t nwords)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < nwords; i++)
        for (uint64_t w = bits[i]; w; w &= w - 1)   /* no libgcc popcount */
            n++;
    return n;
}

/* Set bits in one bitmap of `order`; untouched chunks count as zero. */
static uint64_t count_marked(const struct buddy *b, const uint64_t *bits, unsigned order)
{
    uint64_t nwords = span_bitmap_words(b->span_npages, order);
    if (order >= BUDDY_LAZY_ORDERS)
        return popcount_bits(bits, nwords);

    uint64_t n = 0;
    for (uint64_t c = 0; c < nchunks(b->span_npages); c++) {
        if (!bit_get(b->chunk_ready_bits, c))
            continue;
        uint64_t first = c * chunk_nwords(order);
        uint64_t end = first + chunk_nwords(order) < nwords ? first + chunk_nwords(order) : nwords;
        n += popcount_bits(bits + first, end - first);
    }
    return n;
}

/* Is the block (order, rel) allocated (alloc bit, or frame state of a
 * single frame)?  Its chunk may be untouched. */
static bool block_allocated(const struct buddy *b, unsigned order, uint64_t rel)
{
    if (order > 0)
        return block_bit(b, b->alloc_bits, order, rel);
    return chunk_ready(b, 0, rel) && fs_get(b, rel) != BUDDY_FS_NONE;
}

/* Check one free block listed at order k of zone z in slot position pos:
 * aligned, in that zone, marked, back-index naming pos, buddy not free,
 * not allocated, not inside a larger free one. */
static void check_listed_block(const struct buddy *b, unsigned z, unsigned k, uint64_t pos,
                               uint64_t rel)
{
    uint32_t i = (uint32_t)pos;
    bool indexed = (b->indexed_mask[z] >> k) & 1;
    if (rel >= b->span_npages || (rel & ((UINT64_C(1) << k) - 1)) ||
        !block_bit(b, b->free_bits, k, rel) || zone_of(b, rel) != z)
        mm_panic("buddy_check: order %u zone %u entry %u = rel %#lx bad, not marked or "
                 "in the wrong zone", k, z, i, (unsigned long)rel);
    if (indexed)
        check_back_index(b, k, rel, "buddy_check");
    if (indexed && b->slot_of[rel >> 1] != pos)
        mm_panic("buddy_check: order %u block rel %#lx back-index %#lx, listed at %#lx",
                 k, (unsigned long)rel, (unsigned long)b->slot_of[rel >> 1], (unsigned long)pos);
    if (block_bit(b, b->free_bits, k, rel ^ (UINT64_C(1) << k)))
        mm_panic("buddy_check: order %u block rel %#lx and its buddy both free",
                 k, (unsigned long)rel);
    if (block_allocated(b, k, rel))
        mm_panic("buddy_check: order %u block rel %#lx free and allocated", k, (unsigned long)rel);
    for (unsigned j = k + 1; j < BUDDY_NR_LIST_ORDERS; j++)
        if (block_bit(b, b->free_bits, j, rel))
            mm_panic("buddy_check: order %u block rel %#lx inside free order %u",
                     k, (unsigned long)rel, j);
    unsigned top = top_get(b, rel >> BUDDY_CHUNK_SHIFT);
    if (top != BUDDY_TOP_NONE)
        mm_panic("buddy_check: order %u block rel %#lx listed inside chunk %lu of state %u",
                 k, (unsigned long)rel, (unsigned long)(rel >> BUDDY_CHUNK_SHIFT), top);
}

/* Check the free list of order k in zone z against its counters; returns
 * the blocks listed and adds the list blocks it uses to *nlist_blocks. */
static uint64_t check_list(const struct buddy *b, unsigned z, unsigned k,
                           uint64_t *nlist_blocks)
{
    const struct buddy_list_head *h = &b->list[z][k];
    uint64_t n = 0;
    bool first = true;
    for (uint64_t pa = h->top.raw; pa != BUDDY_NO_BLOCK; pa = list_block(pa)->next_pa) {
        struct buddy_list_block *p = list_block(pa);
        bool kept_empty = first && p->count == 0 && p->next_pa == BUDDY_NO_BLOCK;
        if (pa < b->list_pool_base.raw || pa >= pool_end_pa(b) ||
            p->magic != BUDDY_LIST_MAGIC || p->order != k || p->zone != z ||
            (p->count == 0 && !kept_empty) ||
            p->count > BUDDY_LIST_CAP || (!first && p->count != BUDDY_LIST_CAP))
            mm_panic("buddy_check: bad list block %#lx order %u zone %u: magic 0x%x order %u "
                     "zone %u count %u", (unsigned long)pa, k, z, p->magic, p->order, p->zone,
                     p->count);
        uint64_t pos0 = (pa - b->list_pool_base.raw + BUDDY_LIST_HDR) / sizeof(uint32_t);
        for (uint32_t i = 0; i < p->count; i++)
            check_listed_block(b, z, k, pos0 + i, p->entry[i]);
        n += p->count;
        (*nlist_blocks)++;
        first = false;
    }
    bool indexed = (b->indexed_mask[z] >> k) & 1;
    if (n != h->nfree || (n != 0 && !((b->nonempty_mask[z] >> k) & 1)) ||
        (!indexed && n > BUDDY_SCAN_MAX) || (indexed && n <= BUDDY_SCAN_MAX / 2))
        mm_panic("buddy_check: order %u zone %u: %lu listed, %lu counted, mask 0x%x, "
                 "indexed 0x%x", k, z, (unsigned long)n, (unsigned long)h->nfree,
                 b->nonempty_mask[z], b->indexed_mask[z]);
    return n;
}

/* Check both lists of order k against its bitmap; returns the blocks
 * listed and adds the list blocks they use to *nlist_blocks. */
static uint64_t check_order(const struct buddy *b, unsigned k, uint64_t *nlist_blocks)
{
    uint64_t n = check_list(b, BUDDY_HIGH, k, nlist_blocks) +
                 check_list(b, BUDDY_LOW, k, nlist_blocks);
    uint64_t marked = count_marked(b, b->free_bits[k], k);
    if (marked != n)
        mm_panic("buddy_check: order %u: %lu listed, %lu marked free", k, (unsigned long)n,
                 (unsigned long)marked);
    return n;
}

/* Frames in state CACHED (any CPU) over the ready chunks, eight state
 * bytes at a time (the cached states are the bytes with the top bit). */
static uint64_t count_cached_states(const struct buddy *b)
{
    const uint64_t top_bits = UINT64_C(0x8080808080808080);
    uint64_t n = 0;
    for (uint64_t c = 0; c < nchunks(b->span_npages); c++) {
        if (!bit_get(b->chunk_ready_bits, c))
            continue;
        uint64_t first = c << BUDDY_CHUNK_SHIFT, end = first + (UINT64_C(1) << BUDDY_CHUNK_SHIFT);
        if (end > b->span_npages)
            end = b->span_npages;
        uint64_t rel = first;
        for (; rel + 8 <= end; rel += 8) {
            uint64_t w;
            __builtin_memcpy(&w, b->frame_state + rel, sizeof w);
            for (w &= top_bits; w; w &= w - 1)
                n++;
        }
        for (; rel < end; rel++)
            n += (fs_get(b, rel) & BUDDY_FS_CACHED) != 0;
    }
    return n;
}

/* Check every per-CPU cache; returns the frames cached. */
static uint64_t check_caches(const struct buddy *b)
{
    uint64_t cached = 0;
    for (unsigned cpu = 0; cpu < MM_MAX_CPUS; cpu++) {
        const struct buddy_pcp *p = &b->pcp[cpu];
        uint32_t n = __atomic_load_n(&p->count, __ATOMIC_RELAXED);
        if (n > BUDDY_PCP_CAP)
            mm_panic("buddy_check: CPU %u cache count %u > %u", cpu, n, BUDDY_PCP_CAP);
        for (uint32_t i = 0; i < n; i++) {
            uint64_t rel = p->entry[i];
            bool ok = rel < b->span_npages && chunk_ready(b, 0, rel) &&
                      fs_get(b, rel) == (BUDDY_FS_CACHED | cpu);
            for (unsigned j = 0; ok && j < BUDDY_NR_LIST_ORDERS; j++)
                ok = !block_bit(b, b->free_bits, j, rel & ~((UINT64_C(1) << j) - 1));
            ok = ok && top_get(b, rel >> BUDDY_CHUNK_SHIFT) == BUDDY_TOP_NONE;
            if (!ok)
                mm_panic("buddy_check: CPU %u cache entry %u: rel %#lx not cached there "
                         "or inside a free block", cpu, i, (unsigned long)rel);
            for (uint32_t j = 0; j < i; j++)
                if (p->entry[j] == rel)
                    mm_panic("buddy_check: CPU %u cache entries %u and %u both rel %#lx",
                             cpu, j, i, (unsigned long)rel);
        }
        cached += n;
    }
    uint64_t states = count_cached_states(b);
    if (states != cached)
        mm_panic("buddy_check: %lu frames in caches, %lu frame states say cached",
                 (unsigned long)cached, (unsigned long)states);
    return cached;
}

/* Check the top tier: no chunk in the unused state 3, and a FREE or
 * ALLOC chunk wholly inside one managed range; returns the FREE chunks. */
static uint64_t check_top(const struct buddy *b)
{
    uint64_t nfree = 0;
    for (uint64_t c = 0; c < nchunks(b->span_npages); c++) {
        unsigned st = top_get(b, c);
        if (st == BUDDY_TOP_NONE)
            continue;
        uint64_t pa = rel_to_pa(b, c << BUDDY_CHUNK_SHIFT).raw;
        if (st > BUDDY_TOP_ALLOC || !in_managed_ranges(b, pa, BUDDY_MAX_NPAGES))
            mm_panic("buddy_check: chunk %lu (pa %#lx) in state %u is not a managed 1 GiB block",
                     (unsigned long)c, (unsigned long)pa, st);
        nfree += st == BUDDY_TOP_FREE;
    }
    if (nfree != buddy_top_count(b, 0, nchunks(b->span_npages), BUDDY_TOP_FREE))
        mm_panic("buddy_check: %lu free chunks, buddy_top_count says %lu", (unsigned long)nfree,
                 (unsigned long)buddy_top_count(b, 0, nchunks(b->span_npages), BUDDY_TOP_FREE));
    return nfree;
}

void buddy_check(struct buddy *b)
{
    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    uint64_t free_npages = 0, blocks_in_lists = 0;
    for (unsigned k = 0; k < BUDDY_NR_LIST_ORDERS; k++)
        free_npages += check_order(b, k, &blocks_in_lists) << k;
    uint64_t top_npages = check_top(b) << BUDDY_MAX_ORDER;

    uint64_t stacked = 0;
    for (uint64_t pa = b->list_pool_free.raw; pa != BUDDY_NO_BLOCK; pa = list_block(pa)->next_pa)
        stacked++;
    uint64_t cached = check_caches(b);
    if (free_npages != listed_free_npages(b) ||
        free_npages + top_npages + cached > b->total_npages ||
        blocks_in_lists != b->list_blocks_in_use ||
        blocks_in_lists + stacked != b->list_pool_next ||
        b->list_pool_next > b->list_pool_nblocks)
        mm_panic("buddy_check: free %lu vs %lu (total %lu), list blocks %lu vs %lu, "
                 "stacked %lu, used once %lu of %lu",
                 (unsigned long)free_npages, (unsigned long)listed_free_npages(b),
                 (unsigned long)b->total_npages, (unsigned long)blocks_in_lists,
                 (unsigned long)b->list_blocks_in_use, (unsigned long)stacked,
                 (unsigned long)b->list_pool_next, (unsigned long)b->list_pool_nblocks);
    mm_spin_unlock_irqrestore(&b->lock, flags);
}
