/*
 * mm/buddy.c - buddy allocator for physical frames.
 *
 * Algorithm.  Free memory is a set of blocks; a block of order k is 2^k
 * frames aligned to 2^k frames (order 0 = 4 KiB .. 18 = 1 GiB); its buddy
 * is the block at relative frame number rel ^ 2^k.  buddy_alloc pops a
 * block from the smallest non-empty order >= the request and pushes the
 * unused upper halves onto the lower orders.  buddy_free merges the block
 * with its buddy while the buddy is free, then pushes the result.  Both are
 * O(orders), independent of fragmentation: every free block has a
 * back-index to its list slot (kept in metadata, never inside the free
 * block), so a buddy leaves the middle of its list in O(1) ("Free lists"
 * below).  The exception is a zone whose lists are empty: its top tier is
 * read for a free GiB to split, one state word per 32 GiB of the zone.
 * Single frames pass through per-CPU caches first (mm/buddy_pcp.c); to
 * this file a cached frame is an allocated one.
 *
 * Zones.  Each order has two free lists: blocks at or above 4 GiB (high)
 * and below (low).  buddy_alloc takes the smallest high block that fits
 * and only then a low one, so memory below 4 GiB stays free for devices
 * (buddy_alloc_below in mm/buddy_dma.c).
 *
 * The top tier.  1 GiB blocks (order 18) are not listed: each 1 GiB chunk
 * of the span has a two-bit state (NONE, FREE, ALLOC) changed by atomic
 * compare-and-swap, so buddy_alloc and buddy_free of 1 GiB take no lock
 * (mm/buddy_top.c).  Here, a merge that reaches 1 GiB makes its chunk
 * FREE, and a smaller request that finds no listed block takes a FREE
 * chunk (to NONE) and splits it; "order 18" below means that tier.
 *
 * Invariants (buddy_check in mm/buddy_check.c verifies them).
 *  - free_bits[k] (one bit per block of order k <= 17 over the span) is
 *    set iff that block is in a free list of order k; a free 1 GiB block
 *    is a FREE chunk of the top tier.  It is authoritative: a back-index
 *    is read only when the bit says the block is free, and is cross-checked
 *    (a mismatch is a broken invariant and panics).
 *  - alloc_bits[k] (1 <= k <= 17) is set iff that exact block was
 *    returned by buddy_alloc and not yet freed; for single frames
 *    frame_state says BUDDY_FS_ALLOC, for 1 GiB the chunk is ALLOC.
 *    buddy_free refuses any other block (double free, partial free, wrong
 *    size, never handed out, sitting in a per-CPU cache) before touching
 *    anything.
 *  - No free block has a free buddy: fully coalesced, from init on.
 *  - A FREE or ALLOC chunk holds no listed, allocated or cached block.
 *  - A listed block is in the list of its zone; nonempty_mask[z] has the
 *    bit of every non-empty list of zone z (stale bits allowed, see
 *    first_nonempty in mm/buddy_impl.h).
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
 * Files.  This one: init, alloc and free.  mm/buddy_pcp.c: the per-CPU
 * caches of single frames and the frame-allocator adapter.
 * mm/buddy_top.c: the top tier of 1 GiB blocks.
 * mm/buddy_dma.c: blocks below a physical limit and DMA buffers.
 * mm/buddy_check.c: the usage, the invariant checker, the per-order counts
 * and the dump.  mm/buddy_impl.h: the metadata layout and the inline
 * helpers they share.
 *
 * Cost meter.  With MM_STEP_COUNT (host tests only) BUDDY_STEP counts the
 * work into b->steps (buddy_steps in mm/buddy.h); otherwise it is nothing.
 *
 * Locking.  b->lock (interrupt-safe spinlock) protects every field of
 * struct buddy after the lock, the bitmaps, the list blocks and the
 * back-indexes.  Every public function takes it, except the single-frame
 * paths (see mm/buddy_pcp.c for the per-CPU caches and the frame states)
 * and the 1 GiB ones (the top tier's words change only atomically, see
 * mm/buddy_top.c); *_locked functions assert it.  The geometry is set by
 * buddy_init before publication, then read-only.
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
 * initialises.  Orders 13..17 (chunks share words) and the top tier are
 * zeroed at init.  A chunk seeded as one 1 GiB block stays untouched until
 * something smaller is carved from it.  Both bitmaps cost about span / 8
 * KiB bytes.  The frame-state bytes follow the same rule (zeroed with the chunk; the ready
 * bit is stored with release order, as the per-CPU paths read it without
 * the lock).
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
            if (k > 0)
                b->alloc_bits[k][i] = 0;
        }
    }
    uint64_t first = chunk << BUDDY_CHUNK_SHIFT, n = UINT64_C(1) << BUDDY_CHUNK_SHIFT;
    if (n > b->span_npages - first)
        n = b->span_npages - first;
    __builtin_memset(b->frame_state + first, BUDDY_FS_NONE, n);
    uint64_t *w = &b->chunk_ready_bits[chunk >> 6];
    __atomic_store_n(w, *w | UINT64_C(1) << (chunk & 63), __ATOMIC_RELEASE);
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
 * alloc bit, the allocating paths and the seeding loop through
 * chunk_prepare in split_down or directly). */
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
 * b->lock but run only inside alloc_core_locked, the buddy_*_locked calls
 * and init_seed_locked, which assert it: they are not *_locked functions, so
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
 * Free lists.  Each order has two lists, one per zone (BUDDY_HIGH for
 * blocks at or above 4 GiB, BUDDY_LOW below; see mm/buddy.h): a block's
 * zone follows from its address, and a block, its buddy and its halves
 * share it, as 4 GiB is 1 GiB aligned.  Each list is a stack of list
 * blocks: 2 KiB half-pages of the reserve holding a 16-byte header and
 * up to 508 block numbers (32-bit frame numbers relative to the span
 * base).  Only the top
 * list block is partly filled; an emptied top block that is the list's
 * last stays (empty) on the list, so a list that keeps reaching zero does
 * not take and return a block each time.
 *
 * Removing a block from the middle (its buddy is being freed): the top
 * list block's last entry moves into its slot.  The slot is found in one
 * of two ways.  A list of more than BUDDY_SCAN_MAX blocks is indexed: every
 * listed block has a back-index, the position of its slot, in b->slot_of
 * (one 32-bit entry per frame pair, see slot_ptr), and the moved block's
 * back-index follows it.  A shorter list is one list block, and the slot
 * is found by scanning it (at most BUDDY_SCAN_MAX entries, a few cache
 * lines that every operation on that order touches anyway); its
 * back-indexes are not kept, so short lists cost no scattered writes.  A
 * list becomes indexed when it grows past BUDDY_SCAN_MAX (its entries'
 * back-indexes are written then, once) and stops being indexed when it
 * shrinks to half of that, so the indexing pass is paid at most once per
 * BUDDY_SCAN_MAX / 2 operations on the order.  Either way removal is
 * O(1), and neither way touches the memory of the free blocks themselves.
 */

static inline bool list_indexed(const struct buddy *b, unsigned z, unsigned order)
{
    return (b->indexed_mask[z] >> order) & 1;
}

/* Position (see slot_ptr) of entry i of the list block at top_pa. */
static inline uint32_t slot_pos(const struct buddy *b, uint64_t top_pa, uint32_t i)
{
    return (uint32_t)((top_pa - b->list_pool_base.raw + BUDDY_LIST_HDR) / sizeof(uint32_t) + i);
}

/* The list (z, order) (one list block) grew past BUDDY_SCAN_MAX: write
 * the back-indexes of its entries and mark it indexed. */
__attribute__((noinline))
static void list_index(struct buddy *b, unsigned z, unsigned order)
{
    uint64_t top_pa = b->list[z][order].top.raw;
    struct buddy_list_block *top = list_block(top_pa);
    MM_BUG_ON(top->next_pa != BUDDY_NO_BLOCK);
    for (uint32_t i = 0; i < top->count; i++)
        b->slot_of[top->entry[i] >> 1] = slot_pos(b, top_pa, i);
    BUDDY_STEP(b, top->count / 16 + 1);     /* cache lines of entries */
    b->indexed_mask[z] |= 1u << order;
}

/* The list (z, order) needs a new top list block (it is full or has none). */
__attribute__((noinline))
static struct buddy_list_block *list_grow(struct buddy *b, unsigned z, unsigned order)
{
    struct buddy_list_head *h = &b->list[z][order];
    uint64_t new_pa = pool_take(b, order);
    struct buddy_list_block *blk = list_block(new_pa);
    blk->next_pa = h->top.raw;
    blk->count = 0;
    blk->magic = BUDDY_LIST_MAGIC;
    blk->order = (uint8_t)order;
    blk->zone = (uint8_t)z;
    h->top = PA(new_pa);
    return blk;
}

/* Make block (rel, order) free: list it in its zone's list, set its bit,
 * index it if its list is. */
__attribute__((always_inline))
static inline void list_push(struct buddy *b, unsigned order, uint64_t rel)
{
    unsigned z = zone_of(b, rel);
    struct buddy_list_head *h = &b->list[z][order];
    uint64_t top_pa = h->top.raw;
    struct buddy_list_block *top = top_pa != BUDDY_NO_BLOCK ? list_block(top_pa) : NULL;
    if (__builtin_expect(!top || top->count == BUDDY_LIST_CAP, 0)) {
        top = list_grow(b, z, order);
        top_pa = h->top.raw;
    }

    uint32_t slot = top->count++;
    BUDDY_STEP(b, 1);                       /* the top list block */
    top->entry[slot] = (uint32_t)rel;
    ready_bit_set(b->free_bits, order, rel);
    uint64_t n = h->nfree++;
    if (n == 0 && !((b->nonempty_mask[z] >> order) & 1))
        b->nonempty_mask[z] |= 1u << order;     /* see first_nonempty */
    if (list_indexed(b, z, order))
        b->slot_of[rel >> 1] = slot_pos(b, top_pa, slot);
    else if (__builtin_expect(n + 1 > BUDDY_SCAN_MAX, 0))
        list_index(b, z, order);
}

/* Bookkeeping common to pop and remove, after the entry left its slot. */
__attribute__((always_inline))
static inline void list_account_removal(struct buddy *b, unsigned z, unsigned order,
                                        uint64_t rel, struct buddy_list_block *top,
                                        uint64_t top_pa)
{
    struct buddy_list_head *h = &b->list[z][order];
    if (top->count == 0 && top->next_pa != BUDDY_NO_BLOCK) {
        h->top = PA(top->next_pa);
        pool_put(b, top_pa);
    }
    /* The stale back-index stays: the clear bit says it is meaningless. */
    ready_bit_clear(b->free_bits, order, rel);
    h->nfree--;                             /* an emptied list keeps its mask bit */
    if (list_indexed(b, z, order) && h->nfree <= BUDDY_SCAN_MAX / 2)
        b->indexed_mask[z] &= ~(1u << order);
}

/* Take the most recently pushed block off the list (z, order). */
__attribute__((always_inline))
static inline uint64_t list_pop(struct buddy *b, unsigned z, unsigned order)
{
    uint64_t top_pa = b->list[z][order].top.raw;   /* non-empty: first_nonempty said so */
    struct buddy_list_block *top = list_block(top_pa);
    BUDDY_STEP(b, 1);                       /* the top list block */
    uint64_t rel = top->entry[--top->count];
    if (!ready_bit(b->free_bits, order, rel))
        mm_panic("buddy_alloc: listed block pa %#lx order %u zone %u not marked free",
                 (unsigned long)rel_to_pa(b, rel).raw, order, z);
    if (list_indexed(b, z, order))
        check_back_index(b, order, rel, "buddy_alloc");
    list_account_removal(b, z, order, rel, top, top_pa);
    return rel;
}

/* The slot of free block (order, rel) in its unindexed list, by a scan of
 * its one list block; panics if it is not there. */
static uint32_t *list_scan(struct buddy *b, struct buddy_list_block *top, unsigned order,
                           uint64_t rel)
{
    BUDDY_STEP(b, top->count / 16 + 1);     /* cache lines of entries */
    for (uint32_t i = 0; i < top->count; i++)
        if (top->entry[i] == (uint32_t)rel)
            return &top->entry[i];
    mm_panic("buddy: free block pa %#lx order %u missing from its list (%u entries)",
             (unsigned long)rel_to_pa(b, rel).raw, order, top->count);
}

/* Remove free block (rel, order) from the middle of its list in O(1). */
static inline void list_remove(struct buddy *b, unsigned order, uint64_t rel)
{
    unsigned z = zone_of(b, rel);
    uint64_t top_pa = b->list[z][order].top.raw;
    struct buddy_list_block *top = list_block(top_pa);
    uint32_t *last = &top->entry[top->count - 1];
    BUDDY_STEP(b, 1);                       /* the top list block */
    if (list_indexed(b, z, order)) {
        check_back_index(b, order, rel, "buddy_free");
        uint32_t pos = b->slot_of[rel >> 1];
        uint32_t *slot = slot_ptr(b, pos);
        BUDDY_STEP(b, 1);                   /* the slot's list block */
        if (slot != last) {
            uint32_t moved = *last;
            *slot = moved;
            b->slot_of[moved >> 1] = pos;
        }
    } else {
        uint32_t *slot = list_scan(b, top, order, rel);
        *slot = *last;
    }
    top->count--;
    list_account_removal(b, z, order, rel, top, top_pa);
}

/* ------------------------------------------------------- core of alloc/free */

/* Split free block (k, rel), already off its list, down to `order`: its
 * upper halves go to the lists of orders k-1 .. order. */
__attribute__((always_inline))
static inline void split_down(struct buddy *b, unsigned k, unsigned order, uint64_t rel)
{
    if (k >= BUDDY_LAZY_ORDERS)        /* a listed lazy-order block has a ready chunk */
        chunk_prepare(b, order, rel);
    while (k > order) {
        k--;
        BUDDY_STEP(b, 1);
        list_push(b, k, rel + (UINT64_C(1) << k));
    }
}

/* Take a free chunk of zone z from the top tier (FREE -> NONE: the lists
 * own it now) and split it down to `order`; -MM_ENOMEM if z has none. */
static int take_top_locked(struct buddy *b, unsigned z, unsigned order, uint64_t *rel_out)
{
    uint64_t c = top_take_zone(b, z, BUDDY_TOP_NONE);
    if (c == UINT64_MAX)
        return -MM_ENOMEM;
    split_down(b, BUDDY_MAX_ORDER, order, c << BUDDY_CHUNK_SHIFT);
    *rel_out = c << BUDDY_CHUNK_SHIFT;
    return 0;
}

/* A block of exactly `order` from zone z: its lists (smallest order that
 * has one), else its top tier; split down.  Inline in buddy_alloc (below)
 * and in buddy_alloc_zone_locked, the copy for mm/buddy_pcp.c and
 * mm/buddy_dma.c. */
__attribute__((always_inline))
static inline int alloc_zone_core(struct buddy *b, unsigned z, unsigned order, uint64_t *rel_out)
{
    MM_ASSERT_LOCKED(&b->lock);
    unsigned k = order < BUDDY_MAX_ORDER ? first_nonempty(b, z, order) : BUDDY_NR_ORDERS;
    BUDDY_STEP(b, 1);                       /* the order search: one mask */
    if (k == BUDDY_NR_ORDERS)
        return take_top_locked(b, z, order, rel_out);
    uint64_t rel = list_pop(b, z, k);
    split_down(b, k, order, rel);
    *rel_out = rel;
    return 0;
}

int buddy_alloc_zone_locked(struct buddy *b, unsigned z, unsigned order, uint64_t *rel_out)
{
    return alloc_zone_core(b, z, order, rel_out);
}

/* A block of exactly `order` (below 1 GiB), splitting a larger one if
 * needed: from the high zone (lists, then top tier) while it has one of at
 * least `order`, else from the low one.  The caller marks it. */
__attribute__((always_inline))
static inline int alloc_core_locked(struct buddy *b, unsigned order, uint64_t *rel_out)
{
    return alloc_zone_core(b, BUDDY_HIGH, order, rel_out) == 0 ? 0 :
           alloc_zone_core(b, BUDDY_LOW, order, rel_out);
}

void buddy_mark_alloc_locked(struct buddy *b, unsigned order, uint64_t rel)
{
    MM_ASSERT_LOCKED(&b->lock);
    if (order == 0)
        fs_set(b, rel, BUDDY_FS_ALLOC);
    else if (order < BUDDY_MAX_ORDER)
        ready_bit_set(b->alloc_bits, order, rel);
    else if (!buddy_top_move(b, rel >> BUDDY_CHUNK_SHIFT, BUDDY_TOP_NONE, BUDDY_TOP_ALLOC))
        mm_panic("buddy_mark_alloc_locked: chunk %lu taken by the lists is in state %u",
                 (unsigned long)(rel >> BUDDY_CHUNK_SHIFT), top_get(b, rel >> BUDDY_CHUNK_SHIFT));
}

/* Give block (rel, order) back to the free lists, merging with free buddies.
 * Its chunk must be ready (see ready_bit).  Inline in buddy_free and the
 * seeding; buddy_free_merge_locked is the copy for mm/buddy_pcp.c. */
__attribute__((always_inline))
static inline void free_core_locked(struct buddy *b, unsigned order, uint64_t rel)
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
    if (order < BUDDY_MAX_ORDER)
        list_push(b, order, rel);
    else if (!buddy_top_move(b, rel >> BUDDY_CHUNK_SHIFT, BUDDY_TOP_NONE, BUDDY_TOP_FREE))
        mm_panic("buddy: merged chunk %lu is in state %u, not NONE",
                 (unsigned long)(rel >> BUDDY_CHUNK_SHIFT), top_get(b, rel >> BUDDY_CHUNK_SHIFT));
}

void buddy_free_merge_locked(struct buddy *b, unsigned order, uint64_t rel)
{
    free_core_locked(b, order, rel);
}

void buddy_take_locked(struct buddy *b, unsigned k, uint64_t rel, unsigned order)
{
    MM_ASSERT_LOCKED(&b->lock);
    if (k < BUDDY_MAX_ORDER) {
        if (!block_bit(b, b->free_bits, k, rel))
            mm_panic("buddy_take_locked: block rel %#lx order %u is not free",
                     (unsigned long)rel, k);
        list_remove(b, k, rel);
    }
    split_down(b, k, order, rel);
}

/* ------------------------------------------------------------ public API */

static bool order_of_npages(uint64_t npages, unsigned *order_out)
{
    if (!is_pow2_u64(npages) || npages > BUDDY_MAX_NPAGES)
        return false;
    *order_out = (unsigned)__builtin_ctzll(npages);
    return true;
}

/* buddy_alloc of a block of order 1..17 under the lock.  Out of line (as
 * is free_block), so that buddy_alloc itself needs no stack frame of its
 * own on the single-frame and 1 GiB paths. */
__attribute__((noinline))
static int alloc_block(struct buddy *b, unsigned order, phys_addr_t *pa_out)
{
    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    uint64_t rel;
    int err;
    for (bool drained = false;; drained = true) {
        err = alloc_core_locked(b, order, &rel);
        /* On failure our cached frames may complete a block: once more. */
        if (!err || drained || buddy_pcp_drain_locked(b, mm_platform_cpu_id()) == 0)
            break;
    }
    if (!err)
        ready_bit_set(b->alloc_bits, order, rel);
    mm_spin_unlock_irqrestore(&b->lock, flags);

    if (err)
        return err;
    *pa_out = rel_to_pa(b, rel);
    return 0;
}

int buddy_alloc(struct buddy *b, uint64_t npages, phys_addr_t *pa_out)
{
    unsigned order;
    if (!order_of_npages(npages, &order)) {
        mm_printf("buddy_alloc: bad count %lu (want a power of two 1..%lu)\n",
                  (unsigned long)npages, (unsigned long)BUDDY_MAX_NPAGES);
        return -MM_EINVAL;
    }
    MM_BUG_ON(!b->ready);
    if (order == 0)
        return buddy_pcp_alloc(b, pa_out);
    if (order == BUDDY_MAX_ORDER) {
        uint64_t c = top_alloc_chunk(b);
        if (__builtin_expect(c == UINT64_MAX, 0))
            return buddy_top_alloc_retry(b, pa_out);
        *pa_out = rel_to_pa(b, c << BUDDY_CHUNK_SHIFT);
        return 0;
    }
    return alloc_block(b, order, pa_out);
}

/* buddy_free of block (order 1..17, rel), checked but for its alloc bit. */
__attribute__((noinline))
static int free_block(struct buddy *b, phys_addr_t pa, unsigned order, uint64_t rel)
{
    /* The large bitmaps of the low orders: start the two words the free
     * reads first on their way while the lock is taken (the bitmap
     * pointers are read-only after init; a prefetch reads nothing). */
    if (order < BUDDY_LAZY_ORDERS) {
        __builtin_prefetch(&b->alloc_bits[order][(rel >> order) >> 6], 1);
        __builtin_prefetch(&b->free_bits[order][((rel >> order) ^ 1) >> 6], 1);
    }
    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    if (__builtin_expect(!block_bit(b, b->alloc_bits, order, rel), 0)) {
        mm_spin_unlock_irqrestore(&b->lock, flags);
        return buddy_free_refusal(b, pa, UINT64_C(1) << order, rel);
    }
    ready_bit_clear(b->alloc_bits, order, rel);     /* set, so its chunk is ready */
    free_core_locked(b, order, rel);
    mm_spin_unlock_irqrestore(&b->lock, flags);
    return 0;
}

int buddy_free(struct buddy *b, phys_addr_t pa, uint64_t npages)
{
    unsigned order;
    if (!order_of_npages(npages, &order))
        return buddy_free_refused(pa, npages, "bad count (want a power of two)", -MM_EINVAL);
    if (!is_aligned_u64(pa.raw, npages * PAGE_SIZE))
        return buddy_free_refused(pa, npages, "pa not aligned to npages frames", -MM_EINVAL);
    uint64_t pfn = pa_to_pfn(pa);
    if (pfn < b->base_pfn || pfn - b->base_pfn >= b->span_npages)
        return buddy_free_refused(pa, npages, "outside the managed span", -MM_EFAULT);
    uint64_t rel = pfn - b->base_pfn;
    MM_BUG_ON(!b->ready);
    if (order == 0)
        return buddy_pcp_free(b, pa, rel);

    if (order == BUDDY_MAX_ORDER)           /* the top tier: ALLOC -> FREE, no lock */
        return buddy_top_move(b, rel >> BUDDY_CHUNK_SHIFT, BUDDY_TOP_ALLOC, BUDDY_TOP_FREE) ? 0 :
               buddy_free_refusal(b, pa, npages, rel);
    return free_block(b, pa, order, rel);
}

/* ----------------------------------------------------------------- init */

/*
 * List blocks needed beyond floor(X / C), X = managed/2 + areas, C = 508
 * entries per list block.  With n free blocks in it, a list (one per
 * order and zone) uses ceil(n / C) list blocks, or one kept empty when
 * n == 0 ("Free lists"): at most n / C + 1.  With n_k free blocks of order
 * k (both zones), order k's two lists use at most n_k / C + 2.  Of every aligned pair of frames at
 * most one starts a free order-0 block (two free buddies would merge), and
 * pairs inside larger free blocks start none, so n_0 <= (managed - F)/2 +
 * areas with F = sum_{k>=1} n_k 2^k.  Hence sum_k n_k / C <= X/C + sum_{k>=1}
 * n_k (1 - 2^(k-1)) / C <= X/C, and the lists use at most X/C + one block
 * per list that can be used: floor(X/C) + BUDDY_NR_LIST_ORDERS per zone the
 * span reaches (the count is an integer), in all about managed / 2032
 * bytes plus 36 KiB, or 72 KiB for a span on both sides of 4 GiB.
 */
static uint64_t list_reserve_extra(uint64_t base_pfn, uint64_t span_npages)
{
    uint64_t low_pfn = BUDDY_LOW_LIMIT / PAGE_SIZE;
    bool both = base_pfn < low_pfn && base_pfn + span_npages > low_pfn;
    return (both ? BUDDY_NR_ZONES : 1) * BUDDY_NR_LIST_ORDERS;    /* lists that can be used */
}

/* Bytes of the metadata after the bitmaps: the per-CPU caches (cache-line
 * aligned), the back-indexes (one per frame pair), the frame states. */
static uint64_t tail_meta_bytes(uint64_t span_npages)
{
    return BUDDY_CACHE_LINE + MM_MAX_CPUS * sizeof(struct buddy_pcp) +
           (span_npages + 1) / 2 * sizeof(uint32_t) + span_npages;
}

/*
 * Metadata placement.  The list block reserve, then the chunk bitmap, the
 * top tier's words and both bitmaps right after the last list block (no
 * half frame wasted),
 * then the per-CPU caches, the back-indexes and the frame states,
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
    uint64_t bitmap_nwords = chunk_bitmap_words(plan->span_npages) + BUDDY_CACHE_LINE / 8 +
                             top_nwords(plan->span_npages);     /* the tier on its own line */
    for (unsigned k = 0; k < BUDDY_NR_LIST_ORDERS; k++)     /* no alloc bits at order 0 */
        bitmap_nwords += (k > 0 ? 2 : 1) * span_bitmap_words(plan->span_npages, k);
    plan->managed_npages = 0;
    for (unsigned i = 0; i < l->count; i++)
        plan->managed_npages += mm_area_size(&l->area[i]) / PAGE_SIZE;
    uint64_t max_free_blocks = plan->managed_npages / 2 + l->count;
    plan->list_nblocks = max_free_blocks / BUDDY_LIST_CAP +
                         list_reserve_extra(plan->base_pfn, plan->span_npages);
    uint64_t meta_bytes = plan->list_nblocks * BUDDY_LIST_UNIT_SIZE + bitmap_nwords * 8 +
                          tail_meta_bytes(plan->span_npages);
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
    uint64_t low_pfn = BUDDY_LOW_LIMIT / PAGE_SIZE;
    b->high_rel = low_pfn <= plan->base_pfn ? 0 :
                  low_pfn - plan->base_pfn < plan->span_npages ? low_pfn - plan->base_pfn :
                  plan->span_npages;
    for (unsigned z = 0; z < BUDDY_NR_ZONES; z++)
        for (unsigned k = 0; k < BUDDY_NR_LIST_ORDERS; k++)
            b->list[z][k].top = PA(BUDDY_NO_BLOCK);

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

/* Step 5: lay the carve out: list blocks, the chunk bitmap, the top tier
 * (all NONE), the bitmaps of each order below 1 GiB (zero only the eager
 * ones, see "Lazy bitmaps"), the per-CPU
 * caches (zeroed: empty), the back-indexes and the frame states (lazy). */
static void init_metadata(struct buddy *b, const struct buddy_plan *plan)
{
    b->list_pool_base = b->meta_start;
    b->list_pool_nblocks = plan->list_nblocks;
    uint64_t *words = pa_to_ptr(PA(pool_end_pa(b)));
    uint64_t chunk_nwords_total = chunk_bitmap_words(b->span_npages);
    b->chunk_ready_bits = words;
    __builtin_memset(words, 0, chunk_nwords_total * sizeof *words);
    words += chunk_nwords_total;
    words = (uint64_t *)(uintptr_t)align_up_u64((uint64_t)(uintptr_t)words, BUDDY_CACHE_LINE);
    b->top_state = words;                       /* every chunk NONE */
    __builtin_memset(words, 0, top_nwords(b->span_npages) * sizeof *words);
    words += top_nwords(b->span_npages);
    for (unsigned k = 0; k < BUDDY_NR_LIST_ORDERS; k++) {
        uint64_t nwords = span_bitmap_words(b->span_npages, k);
        uint64_t nbitmaps = k > 0 ? 2 : 1;
        b->free_bits[k] = words;
        b->alloc_bits[k] = k > 0 ? words + nwords : NULL;
        if (k >= BUDDY_LAZY_ORDERS)
            __builtin_memset(words, 0, nbitmaps * nwords * sizeof *words);
        words += nbitmaps * nwords;
    }
    uint64_t at = align_up_u64((uint64_t)(uintptr_t)words, BUDDY_CACHE_LINE);
    b->pcp = (struct buddy_pcp *)(uintptr_t)at;
    __builtin_memset(b->pcp, 0, MM_MAX_CPUS * sizeof(struct buddy_pcp));
    b->slot_of = (uint32_t *)(b->pcp + MM_MAX_CPUS);
    b->frame_state = (uint8_t *)(b->slot_of + (b->span_npages + 1) / 2);
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
            free_core_locked(b, order, rel);
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
