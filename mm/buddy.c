/*
 * mm/buddy.c - buddy allocator for physical frames.
 *
 * Algorithm.  Free memory is a set of blocks; a block of order k is 2^k
 * frames aligned to 2^k frames (order 0 = 4 KiB .. 18 = 1 GiB); its buddy
 * is the block at relative frame number rel ^ 2^k.  buddy_alloc pops a
 * block from the smallest non-empty order >= the request and pushes the
 * unused upper halves onto the lower orders.  buddy_free merges the block
 * with its buddy while the buddy is free, then pushes the result.  Both are
 * O(orders), independent of fragmentation: every free block carries a
 * back-index to its list slot, so a buddy leaves the middle of its list in
 * O(1) ("Free lists" below).
 *
 * Invariants (buddy_check in mm/buddy_check.c verifies them).
 *  - free_bits[k] (one bit per block of order k over the span) is set iff
 *    that block is in the free list of order k.  It is authoritative: a
 *    back-index is read only when the bit says the block is free, and is
 *    cross-checked (a mismatch is a broken invariant and panics).
 *  - alloc_bits[k] is set iff that exact block was returned by buddy_alloc
 *    and not yet freed; buddy_free refuses any other block (double free,
 *    partial free, wrong size, never handed out) before touching anything.
 *  - No free block has a free buddy: fully coalesced, from init on.
 *  - List blocks come only from a reserve carved at init for the worst
 *    case: a push never allocates, a free cannot fail, and after everything
 *    is freed the block layout is exactly the initial one.
 *  - The bits of orders below BUDDY_LAZY_ORDERS in a 1 GiB chunk are read
 *    only once that chunk is ready ("Lazy bitmaps" below).
 *
 * Who hands memory to whom.  mm init gives the bump allocator's leftovers
 * to buddy_init, which keeps a few frames for its metadata and hands out
 * the rest: blocks to the kernel, single frames to the page-table mapper
 * through the struct frame_allocator adapter.
 *
 * Files.  This one: init, alloc, free, usage and the frame-allocator
 * adapter.  mm/buddy_check.c: the invariant checker, the per-order counts
 * and the dump.  mm/buddy_impl.h: the metadata layout and the inline
 * helpers both share.
 *
 * Cost meter.  With MM_STEP_COUNT (host tests only) BUDDY_STEP counts the
 * work into b->steps (buddy_steps in mm/buddy.h); otherwise it is nothing.
 *
 * Locking.  b->lock (interrupt-safe spinlock) protects every field of
 * struct buddy, the bitmaps, the list blocks and the back-indexes in free
 * blocks.  Every public function takes it; *_locked functions assert it.
 * The geometry is set by buddy_init before publication, then read-only.
 */
#include "buddy_impl.h"

static inline unsigned floor_log2_u64(uint64_t x) { return 63u - (unsigned)__builtin_clzll(x); }

/* ------------------------------------------------------------ bitmaps */

/*
 * Lazy bitmaps.  The span is cut into 1 GiB chunks (one max-order block
 * each).  Orders 0..12 have whole words per chunk; a chunk's words of those
 * orders (both bitmaps) are zeroed only when a bit of that chunk is first
 * set or cleared, and chunk_ready_bits records which chunks are done.
 * Until then every low-order bit of the chunk reads as 0 and its words are
 * never read, so whatever the RAM held is harmless; reading never
 * initialises.  Orders 13..18 (chunks share words) are zeroed at init.  A
 * chunk seeded as one 1 GiB block stays untouched until something smaller
 * is carved from it.  Both bitmaps cost about span / 8 KiB bytes.
 */

/* Words of chunk_ready_bits: one bit per chunk (at most 2 KiB). */
static uint64_t chunk_bitmap_words(uint64_t span_npages)
{
    return (nchunks(span_npages) + 63) / 64;
}

/* Zero the lazy-order words of `chunk` in both bitmaps; mark it ready.
 * Runs once per chunk: kept out of line, off the alloc/free fast path. */
__attribute__((cold, noinline))
static void chunk_init_locked(struct buddy *b, uint64_t chunk)
{
    MM_ASSERT_LOCKED(&b->lock);
    for (unsigned k = 0; k < BUDDY_LAZY_ORDERS; k++) {
        uint64_t first = chunk * chunk_nwords(k), end = first + chunk_nwords(k);
        uint64_t nwords = span_bitmap_words(b->span_npages, k);
        if (end > nwords)
            end = nwords;                   /* the last chunk may be partial */
        for (uint64_t i = first; i < end; i++) {
            b->free_bits[k][i] = 0;
            b->alloc_bits[k][i] = 0;
        }
    }
    bit_set(b->chunk_ready_bits, chunk);
}

/* Make the bits of `order` around rel valid, before one is set. */
static inline void chunk_prepare(struct buddy *b, unsigned order, uint64_t rel)
{
    if (__builtin_expect(!chunk_ready(b, order, rel), 0))
        chunk_init_locked(b, rel >> BUDDY_CHUNK_SHIFT);
}

/* block_bit without the chunk check, for the fast paths: a chunk never
 * becomes unready, a block below 1 GiB and its buddies share a chunk, and
 * each operation settles its chunk at its start (buddy_free through the
 * alloc bit, alloc_locked and the seeding loop through chunk_prepare). */
static inline bool ready_bit(uint64_t *const *bits, unsigned order, uint64_t rel)
{
    return bit_get(bits[order], rel >> order);
}

static inline void ready_bit_set(uint64_t *const *bits, unsigned order, uint64_t rel)
{
    bit_set(bits[order], rel >> order);
}

static inline void ready_bit_clear(uint64_t *const *bits, unsigned order, uint64_t rel)
{
    bit_clear(bits[order], rel >> order);
}

/* -------------------------------------------------- list block reserve */

/* List blocks are reserved once, at init, from the metadata carve (never
 * taken from the buddy itself); emptied ones go to a private stack, reused
 * by any order.  list_reserve_extra gives the worst-case size.
 * The reserve and free-list helpers (pool_*, list_*, chunk_prepare) need
 * b->lock but run only inside alloc_locked, free_merge_locked and
 * init_seed_locked, which assert it: they are not *_locked functions, so
 * the split and merge loops do not repeat the check once per order. */

static uint64_t pool_take(struct buddy *b, unsigned order)
{
    uint64_t pa = b->list_pool_free.raw;
    if (pa != BUDDY_NO_BLOCK) {
        b->list_pool_free = PA(list_block(pa)->next_pa);
    } else {
        if (b->list_pool_next >= b->list_pool_nblocks)
            mm_panic("buddy: list block reserve exhausted (order %u, %lu in use of %lu)",
                     order, (unsigned long)b->list_blocks_in_use,
                     (unsigned long)b->list_pool_nblocks);
        pa = b->list_pool_base.raw + b->list_pool_next * BUDDY_LIST_UNIT_SIZE;
        b->list_pool_next++;
    }
    BUDDY_STEP(b, 1);
    b->list_blocks_in_use++;
    return pa;
}

static void pool_put(struct buddy *b, uint64_t pa)
{
    list_block(pa)->magic = 0;
    list_block(pa)->next_pa = b->list_pool_free.raw;
    b->list_pool_free = PA(pa);
    BUDDY_STEP(b, 1);
    b->list_blocks_in_use--;
}

/* ---------------------------------------------------------- free lists */

/*
 * Free lists.  The list of each order is a stack of list blocks: 2 KiB
 * half-pages of the reserve holding a 16-byte header and up to 508 block
 * numbers (32-bit frame numbers relative to the span base).  Only the top
 * list block is partly filled.  To remove a block from the middle (its
 * buddy is being freed), every free block carries in its first 16 bytes a
 * back-index {magic, order, pa of its slot}; the top list block's last
 * entry moves into that slot and the moved block's back-index follows.
 */

/* Make block (rel, order) free: list it, write its back-index, set its bit. */
static void list_push(struct buddy *b, unsigned order, uint64_t rel)
{
    uint64_t top_pa = b->list_top[order].raw;
    struct buddy_list_block *top = top_pa != BUDDY_NO_BLOCK ? list_block(top_pa) : NULL;
    if (!top || top->count == BUDDY_LIST_CAP) {
        uint64_t new_pa = pool_take(b, order);
        struct buddy_list_block *blk = list_block(new_pa);
        blk->next_pa = top_pa;
        blk->count = 0;
        blk->magic = BUDDY_LIST_MAGIC;
        blk->order = (uint16_t)order;
        b->list_top[order] = PA(new_pa);
        top_pa = new_pa;
        top = blk;
    }

    uint32_t slot = top->count++;
    BUDDY_STEP(b, 1);                       /* the top list block */
    top->entry[slot] = (uint32_t)rel;
    ready_bit_set(b->free_bits, order, rel);
    b->nfree_blocks[order]++;
    b->nonempty_mask |= 1u << order;
    b->free_npages += UINT64_C(1) << order;

    struct buddy_free_hdr *h = block_hdr(b, rel);
    h->magic = BUDDY_FREE_MAGIC;
    h->order = order;
    h->slot_pa = top_pa + BUDDY_LIST_HDR + slot * sizeof(uint32_t);
}

/* Bookkeeping common to pop and remove, after the entry left its slot. */
static void list_account_removal(struct buddy *b, unsigned order, uint64_t rel,
                                 struct buddy_list_block *top, uint64_t top_pa)
{
    if (top->count == 0) {
        b->list_top[order] = PA(top->next_pa);
        pool_put(b, top_pa);
    }
    /* The stale back-index stays: the clear bit says it is meaningless. */
    ready_bit_clear(b->free_bits, order, rel);
    if (--b->nfree_blocks[order] == 0)
        b->nonempty_mask &= ~(1u << order);
    b->free_npages -= UINT64_C(1) << order;
}

/* Take the most recently pushed block of `order` off its list. */
static uint64_t list_pop(struct buddy *b, unsigned order)
{
    uint64_t top_pa = b->list_top[order].raw;
    struct buddy_list_block *top = list_block(top_pa);
    MM_BUG_ON(top_pa == BUDDY_NO_BLOCK || top->count == 0);
    BUDDY_STEP(b, 1);                       /* the top list block */
    uint64_t rel = top->entry[--top->count];
    if (!ready_bit(b->free_bits, order, rel))
        mm_panic("buddy_alloc: listed block pa %#lx order %u not marked free",
                 (unsigned long)rel_to_pa(b, rel).raw, order);
    check_back_index(b, order, rel, block_hdr(b, rel), "buddy_alloc");
    list_account_removal(b, order, rel, top, top_pa);
    return rel;
}

/* Remove free block (rel, order) from the middle of its list in O(1). */
static void list_remove(struct buddy *b, unsigned order, uint64_t rel)
{
    struct buddy_free_hdr *h = block_hdr(b, rel);
    check_back_index(b, order, rel, h, "buddy_free");
    uint64_t top_pa = b->list_top[order].raw;
    struct buddy_list_block *top = list_block(top_pa);
    uint32_t *slot = pa_to_ptr(PA(h->slot_pa));
    uint32_t *last = &top->entry[top->count - 1];
    BUDDY_STEP(b, 2);                       /* the slot's list block and the top one */
    if (slot != last) {
        uint64_t moved = *last;
        *slot = (uint32_t)moved;
        block_hdr(b, moved)->slot_pa = h->slot_pa;
    }
    top->count--;
    list_account_removal(b, order, rel, top, top_pa);
}

/* ------------------------------------------------------- core of alloc/free */

/* Pop a block of exactly `order`, splitting a larger one if needed. */
static int alloc_locked(struct buddy *b, unsigned order, uint64_t *rel_out)
{
    MM_ASSERT_LOCKED(&b->lock);
    uint32_t avail = b->nonempty_mask >> order;
    BUDDY_STEP(b, 1);                       /* the order search: one mask */
    if (!avail)
        return -MM_ENOMEM;

    unsigned k = order + (unsigned)__builtin_ctz(avail);
    uint64_t rel = list_pop(b, k);
    if (k >= BUDDY_LAZY_ORDERS)        /* a listed lazy-order block has a ready chunk */
        chunk_prepare(b, order, rel);
    while (k > order) {
        k--;
        BUDDY_STEP(b, 1);
        list_push(b, k, rel + (UINT64_C(1) << k));
    }
    ready_bit_set(b->alloc_bits, order, rel);
    *rel_out = rel;
    return 0;
}

/* Give block (rel, order) back to the free lists, merging with free buddies.
 * Its chunk must be ready (see ready_bit). */
static void free_merge_locked(struct buddy *b, unsigned order, uint64_t rel)
{
    MM_ASSERT_LOCKED(&b->lock);
    while (order < BUDDY_MAX_ORDER) {
        uint64_t buddy_rel = rel ^ (UINT64_C(1) << order);
        BUDDY_STEP(b, 1);                   /* one bitmap word */
        if (!ready_bit(b->free_bits, order, buddy_rel))
            break;
        list_remove(b, order, buddy_rel);
        rel &= ~(UINT64_C(1) << order);
        order++;
    }
    list_push(b, order, rel);
}

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

/* ------------------------------------------------------------ public API */

static bool order_of_npages(uint64_t npages, unsigned *order_out)
{
    if (!is_pow2_u64(npages) || npages > BUDDY_MAX_NPAGES)
        return false;
    *order_out = (unsigned)__builtin_ctzll(npages);
    return true;
}

int buddy_alloc(struct buddy *b, uint64_t npages, phys_addr_t *pa_out)
{
    unsigned order;
    if (!order_of_npages(npages, &order)) {
        mm_printf("buddy_alloc: bad count %lu (want a power of two 1..%lu)\n",
                  (unsigned long)npages, (unsigned long)BUDDY_MAX_NPAGES);
        return -MM_EINVAL;
    }

    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    MM_BUG_ON(!b->ready);
    uint64_t rel;
    int err = alloc_locked(b, order, &rel);
    mm_spin_unlock_irqrestore(&b->lock, flags);

    if (err)
        return err;
    *pa_out = rel_to_pa(b, rel);
    return 0;
}

/* The one log line of a refused buddy_free; returns err. */
static int free_refused(phys_addr_t pa, uint64_t npages, const char *why, int err)
{
    mm_printf("buddy_free: pa %#lx npages %lu: %s\n", (unsigned long)pa.raw,
              (unsigned long)npages, why);
    return err;
}

int buddy_free(struct buddy *b, phys_addr_t pa, uint64_t npages)
{
    unsigned order;
    if (!order_of_npages(npages, &order))
        return free_refused(pa, npages, "bad count (want a power of two)", -MM_EINVAL);
    if (!is_aligned_u64(pa.raw, npages * PAGE_SIZE))
        return free_refused(pa, npages, "pa not aligned to npages frames", -MM_EINVAL);
    uint64_t pfn = pa_to_pfn(pa);
    if (pfn < b->base_pfn || pfn - b->base_pfn >= b->span_npages)
        return free_refused(pa, npages, "outside the managed span", -MM_EFAULT);
    uint64_t rel = pfn - b->base_pfn;

    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    MM_BUG_ON(!b->ready);
    if (__builtin_expect(!block_bit(b, b->alloc_bits, order, rel), 0)) {
        bool managed = in_managed_ranges(b, pa.raw, npages);
        mm_spin_unlock_irqrestore(&b->lock, flags);
        if (!managed)
            return free_refused(pa, npages, "outside the managed ranges", -MM_EFAULT);
        return free_refused(pa, npages, "not an allocated block (double free or wrong size)",
                            -MM_ENOENT);
    }
    ready_bit_clear(b->alloc_bits, order, rel);     /* set, so its chunk is ready */
    free_merge_locked(b, order, rel);
    mm_spin_unlock_irqrestore(&b->lock, flags);
    return 0;
}

void buddy_usage(struct buddy *b, struct buddy_usage *u)
{
    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    u->total_npages = b->total_npages;
    u->free_npages = b->free_npages;
    u->used_npages = b->total_npages - b->free_npages;
    u->meta_npages = (b->meta_end.raw - b->meta_start.raw) / PAGE_SIZE;
    mm_spin_unlock_irqrestore(&b->lock, flags);
}

/* ----------------------------------------------------------------- init */

static int buddy_fa_alloc(struct frame_allocator *fa, phys_addr_t *pa_out)
{
    struct buddy *b = (struct buddy *)((char *)fa - offsetof(struct buddy, fa));
    return buddy_alloc(b, 1, pa_out);
}

static void buddy_fa_free(struct frame_allocator *fa, phys_addr_t pa)
{
    struct buddy *b = (struct buddy *)((char *)fa - offsetof(struct buddy, fa));
    (void)buddy_free(b, pa, 1);      /* a bad free is logged by buddy_free */
}

struct frame_allocator *buddy_frame_allocator(struct buddy *b)
{
    return &b->fa;
}

#ifdef MM_STEP_COUNT
uint64_t buddy_steps(struct buddy *b)
{
    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    uint64_t steps = b->steps;
    mm_spin_unlock_irqrestore(&b->lock, flags);
    return steps;
}
#endif

/*
 * List blocks needed beyond floor(X / C), X = managed/2 + areas, C = 508
 * entries per list block.  With n_k free blocks of order k the lists use
 * sum_k ceil(n_k / C) list blocks.  Of every aligned pair of frames at
 * most one starts a free order-0 block (two free buddies would merge), and
 * pairs inside larger free blocks start none, so n_0 <= (managed - F)/2 +
 * areas with F = sum_{k>=1} n_k 2^k (even).  Hence list blocks <= X/C + 1
 * + sum_{k>=1, n_k>0} (1 + n_k (1 - 2^(k-1)) / C); a term is positive only
 * while 2^(k-1) <= C (orders 1..9): larger orders pay for their list block
 * with the order-0 blocks they exclude.  So 10 list blocks (20 KiB) on top
 * of floor(X/C) always suffice (the count is an integer): in all about
 * managed / 2032 bytes plus 20 KiB.
 */
static uint64_t list_reserve_extra(void)
{
    uint64_t extra = 1;
    for (unsigned k = 1; k < BUDDY_NR_ORDERS; k++)
        if ((UINT64_C(1) << (k - 1)) <= BUDDY_LIST_CAP)
            extra++;
    return extra;
}

/*
 * Metadata placement.  The list block reserve, then the chunk bitmap and
 * both bitmaps right after the last list block (no half frame wasted),
 * rounded up to whole frames and carved from the end of the smallest area
 * that holds it (least damage to large blocks); those frames are neither
 * free nor counted in "total".  Everything is planned in a struct
 * buddy_plan before *b is written, so a refused list leaves *b untouched.
 * Cost: O(areas * orders + span / 1 GiB) plus zeroing the lazy words of
 * the chunks that receive a block below 1 GiB (area edges, the carve):
 * init time does not grow with the number of whole GiB.
 */
struct buddy_plan {
    uint64_t base_pfn;          /* 1 GiB-aligned frame at or below the first area */
    uint64_t span_npages;       /* base_pfn .. end of the last area */
    uint64_t managed_npages;    /* frames in the list, metadata included */
    uint64_t list_nblocks;      /* list blocks to reserve */
    uint64_t meta_npages;       /* frames carved for all metadata */
    unsigned carve;             /* index of the area the metadata comes from */
};

/* Step 1: one well-formed, non-empty list (mm_area_list_check). */
static int plan_check_list(const struct mm_area_list *l)
{
    int err = mm_area_list_check(l, "buddy_init");
    if (err)
        return err;                             /* logged */
    if (l->count == 0) {
        mm_printf("buddy_init: empty area list: nothing to manage\n");
        return -MM_EINVAL;
    }
    return 0;
}

/* Step 2: the span from the GiB at or below the first area to the end of
 * the last; block numbers are 32-bit, so at most 2^32 frames (16 TiB). */
static int plan_span(const struct mm_area_list *l, struct buddy_plan *plan)
{
    uint64_t base_pa = align_down_u64(l->area[0].start.raw, PAGE_1G_SIZE);
    uint64_t end_pa = l->area[l->count - 1].end.raw;
    plan->base_pfn = base_pa / PAGE_SIZE;
    plan->span_npages = (end_pa - base_pa) / PAGE_SIZE;
    if (plan->span_npages > (UINT64_C(1) << 32)) {
        mm_printf("buddy_init: span %#lx..%#lx exceeds 16 TiB\n",
                  (unsigned long)base_pa, (unsigned long)end_pa);
        return -MM_EINVAL;
    }
    return 0;
}

/* Step 3: size the metadata (worst-case list blocks, the chunk bitmap and
 * both bitmaps) and pick the smallest area that holds it. */
static int plan_metadata(const struct mm_area_list *l, struct buddy_plan *plan)
{
    uint64_t bitmap_nwords = chunk_bitmap_words(plan->span_npages);
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++)
        bitmap_nwords += 2 * span_bitmap_words(plan->span_npages, k);
    plan->managed_npages = 0;
    for (unsigned i = 0; i < l->count; i++)
        plan->managed_npages += mm_area_size(&l->area[i]) / PAGE_SIZE;
    uint64_t max_free_blocks = plan->managed_npages / 2 + l->count;
    plan->list_nblocks = max_free_blocks / BUDDY_LIST_CAP + list_reserve_extra();
    uint64_t meta_bytes = plan->list_nblocks * BUDDY_LIST_UNIT_SIZE + bitmap_nwords * 8;
    plan->meta_npages = (meta_bytes + PAGE_SIZE - 1) / PAGE_SIZE;

    uint64_t best_size = UINT64_MAX;
    plan->carve = MM_MAX_AREAS;
    for (unsigned i = 0; i < l->count; i++) {
        uint64_t size = mm_area_size(&l->area[i]);
        if (size >= plan->meta_npages * PAGE_SIZE && size < best_size) {
            best_size = size;
            plan->carve = i;
        }
    }
    if (plan->carve == MM_MAX_AREAS) {
        mm_printf("buddy_init: no area can hold %lu metadata pages\n",
                  (unsigned long)plan->meta_npages);
        return -MM_ENOMEM;
    }
    return 0;
}

/* Step 4: the empty allocator with its geometry and the managed areas,
 * minus the metadata carved from the end of plan->carve. */
static void init_geometry(struct buddy *b, const struct mm_area_list *l,
                          const struct buddy_plan *plan)
{
    *b = (struct buddy){ .lock = MM_SPINLOCK_INIT };
    b->base_pfn = plan->base_pfn;
    b->span_npages = plan->span_npages;
    b->fa.alloc = buddy_fa_alloc;
    b->fa.free = buddy_fa_free;
    b->list_pool_free = PA(BUDDY_NO_BLOCK);
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++)
        b->list_top[k] = PA(BUDDY_NO_BLOCK);

    b->ranges = *l;
    struct mm_area *carved = &b->ranges.area[plan->carve];
    b->meta_end = carved->end;
    b->meta_start = PA(carved->end.raw - plan->meta_npages * PAGE_SIZE);
    carved->end = b->meta_start;
    if (carved->end.raw == carved->start.raw) {
        for (unsigned i = plan->carve; i + 1 < b->ranges.count; i++)
            b->ranges.area[i] = b->ranges.area[i + 1];
        b->ranges.count--;
    }
    b->total_npages = plan->managed_npages - plan->meta_npages;
}

/* Step 5: lay the carve out: list blocks, then the chunk bitmap and the
 * bitmaps of each order; zero only the eager ones (see "Lazy bitmaps"). */
static void init_metadata(struct buddy *b, const struct buddy_plan *plan)
{
    b->list_pool_base = b->meta_start;
    b->list_pool_nblocks = plan->list_nblocks;
    uint64_t *words = pa_to_ptr(PA(pool_end_pa(b)));
    uint64_t chunk_nwords_total = chunk_bitmap_words(b->span_npages);
    b->chunk_ready_bits = words;
    __builtin_memset(words, 0, chunk_nwords_total * sizeof *words);
    words += chunk_nwords_total;
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++) {
        uint64_t nwords = span_bitmap_words(b->span_npages, k);
        b->free_bits[k] = words;
        b->alloc_bits[k] = words + nwords;
        if (k >= BUDDY_LAZY_ORDERS)
            __builtin_memset(words, 0, 2 * nwords * sizeof *words);
        words += 2 * nwords;
    }
}

/* Step 6: seed each area as the largest aligned blocks, through the
 * merging free path, so the initial state is already fully coalesced. */
static void init_seed_locked(struct buddy *b)
{
    MM_ASSERT_LOCKED(&b->lock);
    for (unsigned i = 0; i < b->ranges.count; i++) {
        uint64_t rel = pa_to_pfn(b->ranges.area[i].start) - b->base_pfn;
        uint64_t end_rel = pa_to_pfn(b->ranges.area[i].end) - b->base_pfn;
        while (rel < end_rel) {
            unsigned order = floor_log2_u64(end_rel - rel);
            if (rel != 0 && (unsigned)__builtin_ctzll(rel) < order)
                order = (unsigned)__builtin_ctzll(rel);
            if (order > BUDDY_MAX_ORDER)
                order = BUDDY_MAX_ORDER;
            chunk_prepare(b, order, rel);    /* only below 1 GiB */
            free_merge_locked(b, order, rel);
            rel += UINT64_C(1) << order;
        }
    }
}

int buddy_init(struct buddy *b, const struct mm_area_list *free_ranges)
{
    struct buddy_plan plan;
    int err = plan_check_list(free_ranges);
    if (err == 0)
        err = plan_span(free_ranges, &plan);
    if (err == 0)
        err = plan_metadata(free_ranges, &plan);
    if (err)
        return err;                     /* logged; *b untouched */

    init_geometry(b, free_ranges, &plan);
    init_metadata(b, &plan);
    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    init_seed_locked(b);
    b->ready = true;
    mm_spin_unlock_irqrestore(&b->lock, flags);
    return 0;
}
