/*
 * mm/buddy.c - page-list buddy allocator for physical frames (the "pages"
 * of the lists are 2 KiB list blocks, two per 4 KiB frame).
 *
 * Algorithm.  Free memory is a set of blocks; a block of order k is 2^k
 * frames aligned to 2^k frames (order 0 = 4 KiB .. 18 = 1 GiB).  The buddy
 * of the block at relative frame number rel is the block at rel ^ 2^k.
 * buddy_alloc pops a block from the smallest non-empty order >= the request
 * and pushes the unused upper halves onto the lower orders.  buddy_free
 * merges the block with its buddy while the buddy is free, then pushes the
 * result.  Both are O(orders), independent of fragmentation.
 *
 * Free lists.  The free list of each order is a stack of list blocks: 2 KiB
 * half-pages (BUDDY_LIST_UNIT_SIZE; two per 4 KiB frame of the reserve)
 * holding a 16-byte header and an array of up to 508 block numbers (32-bit
 * frame numbers relative to the span base).  Only the top list block is
 * partly filled; every one below it is full.  Push and pop work on the top
 * list block.  To remove a block from the middle (its buddy is being
 * freed), every free block carries in its first 16 bytes a back-index
 * {magic, order, physical address of its slot}; the block is removed by
 * moving the top list block's last entry into that slot and re-pointing
 * the moved block's back-index.
 *
 * Bitmaps.  Per order, free_bits has one bit per block of that order over
 * the span: set iff that block is in a free list.  It is authoritative; a
 * back-index is only read when the bit says the block is free, and it is
 * cross-checked (a mismatch is a broken invariant and panics).  Per order,
 * alloc_bits has one bit per block: set iff that exact block was returned
 * by buddy_alloc and not yet freed.  buddy_free refuses, before touching
 * anything, a block whose alloc bit is clear: a double free, a partial
 * free, a free with the wrong size, or memory it never handed out.  Both
 * bitmaps together cost about span / 8 KiB bytes.
 *
 * Lazy bitmaps.  The span is cut into 1 GiB chunks (one max-order block
 * each).  Orders 0..12 have at least 64 bits, i.e. whole words, per chunk;
 * their words of a chunk are zeroed only when a bit of that chunk is first
 * set or cleared (both bitmaps, all those orders at once, about 128 KiB),
 * and chunk_ready_bits records which chunks are done.  Until then every
 * low-order bit of the chunk reads as 0 and its words are never read, so
 * whatever the RAM held is harmless.  Reading never initialises.  Orders
 * 13..18 (bits of several chunks share a word) are zeroed at init.  All
 * bit access takes (order, rel): block_bit checks the chunk and works for
 * any block (bad-input checks, buddy_check); the ready_bit* fast-path
 * accessors skip the check, because each operation settles its chunk once
 * at its start and a block below 1 GiB and all its buddies share a chunk.
 * A chunk seeded as one 1 GiB block stays untouched until something
 * smaller is carved from it.
 *
 * Where list blocks come from.  All list blocks are reserved once, at
 * init, from the metadata carve; they are never taken from or given back
 * to the buddy itself.  Emptied list blocks go to a private stack and are
 * reused by any order.  So a push never allocates, a pop never frees,
 * nothing recurses, a free cannot fail for lack of list space, and after
 * everything is freed the block layout is exactly the initial one.  The
 * reserve is sized for the worst case: of the two frames 2i and 2i+1 at
 * most one can start a free block (if both are free they are buddies and
 * merged), so there are at most managed/2 + areas free blocks, and the
 * list blocks in use are at most floor(that / 508) + 10 (see
 * list_reserve_extra for the bound): about managed / 2032 bytes plus a
 * fixed 20 KiB.  With the bitmaps this is under 0.1% of RAM from 64 MiB
 * up (60 KiB, 0.098%, for the 61 MiB a 64 MiB guest manages; 0.06%,
 * 2.6 MiB, for 4 GiB).
 *
 * Metadata placement.  buddy_init computes the size of the reserve, the
 * chunk bitmap (one bit per GiB) and both bitmaps, which follow the last
 * list block directly (so an odd number of list blocks wastes no half
 * frame), rounds the sum up to whole frames and carves it from the end of
 * the smallest range that can hold it (least damage to large blocks);
 * those frames are neither free nor counted in "total".  The rest is
 * seeded as the largest aligned blocks, each pushed through the merging
 * free path so the initial state is already fully coalesced.  Cost:
 * O(areas * orders + span / 1 GiB) plus about 128 KiB of zeroing per
 * chunk that receives a block below 1 GiB (the chunks at area edges and
 * the one holding the carve); the list blocks and the low-order bitmap
 * words of whole-GiB chunks are not touched, so a guest with hundreds of
 * GiB initialises about as fast as one with 1 GiB.
 *
 * Who hands memory to whom.  mm init gives the bump allocator's leftovers
 * to buddy_init; from then on the buddy owns them and hands blocks to the
 * kernel, and single frames to the page-table mapper through the
 * struct frame_allocator adapter.
 *
 * Locking.  b->lock (interrupt-safe spinlock) protects every field of
 * struct buddy, the bitmaps, the list blocks and the back-indexes in free
 * blocks.  Every public function takes it; *_locked functions expect it.
 */
#include <mm/buddy.h>
#include <mm/log.h>

#define BUDDY_FREE_MAGIC  0xf4eeb10cu
/* "No list block": physical address 0 may itself be a list block. */
#define BUDDY_NO_BLOCK    UINT64_MAX
#define BUDDY_LIST_MAGIC  0x1157u

/* A list block: header plus as many 32-bit block numbers as fit. */
struct buddy_list_block {
    uint64_t next_pa;        /* next (full) list block of the stack, or BUDDY_NO_BLOCK */
    uint32_t count;          /* entries used, 1..BUDDY_LIST_CAP while listed */
    uint16_t magic;
    uint16_t order;
    uint32_t entry[];
};

/* The list unit: a half page.  Everything else about list blocks derives from it. */
#define BUDDY_LIST_UNIT_SIZE   2048u
#define BUDDY_LIST_HDR         16u
#define BUDDY_LIST_CAP  ((uint32_t)((BUDDY_LIST_UNIT_SIZE - BUDDY_LIST_HDR) / sizeof(uint32_t)))

/* The back-index kept in the first bytes of every free block. */
struct buddy_free_hdr {
    uint32_t magic;
    uint32_t order;
    uint64_t slot_pa;        /* physical address of the list slot naming us */
};

/* Orders below this have >= 64 bits per 1 GiB chunk and are zeroed lazily. */
#define BUDDY_LAZY_ORDERS  (BUDDY_MAX_ORDER - 6 + 1)
#define BUDDY_CHUNK_SHIFT  BUDDY_MAX_ORDER          /* frames per chunk, log2 */

_Static_assert(sizeof(struct buddy_list_block) == BUDDY_LIST_HDR, "list header");
_Static_assert((BUDDY_LIST_UNIT_SIZE & (BUDDY_LIST_UNIT_SIZE - 1)) == 0 &&
               PAGE_SIZE % BUDDY_LIST_UNIT_SIZE == 0 && BUDDY_LIST_UNIT_SIZE > BUDDY_LIST_HDR,
               "list units tile a page");
_Static_assert(BUDDY_MAX_ORDER == PAGE_1G_SHIFT - PAGE_SHIFT, "max order is 1 GiB");

/* ------------------------------------------------------------ helpers */

static inline bool bit_get(const uint64_t *bits, uint64_t idx)
{
    return (bits[idx >> 6] >> (idx & 63)) & 1;
}

static inline void bit_set(uint64_t *bits, uint64_t idx)
{
    bits[idx >> 6] |= UINT64_C(1) << (idx & 63);
}

static inline void bit_clear(uint64_t *bits, uint64_t idx)
{
    bits[idx >> 6] &= ~(UINT64_C(1) << (idx & 63));
}

static inline unsigned floor_log2_u64(uint64_t x)
{
    return 63u - (unsigned)__builtin_clzll(x);
}

/* Relative frame number -> physical address, and back. */
static inline phys_addr_t rel_to_pa(const struct buddy *b, uint64_t rel)
{
    return pfn_to_pa(b->base_pfn + rel);
}

static inline struct buddy_free_hdr *block_hdr(const struct buddy *b, uint64_t rel)
{
    return pa_to_ptr(rel_to_pa(b, rel));
}

static inline struct buddy_list_block *list_block(uint64_t pa)
{
    return pa_to_ptr(PA(pa));
}

/* End of the reserved list blocks; the bitmaps start here. */
static inline uint64_t pool_end_pa(const struct buddy *b)
{
    return b->list_pool_base.raw + b->list_pool_nblocks * BUDDY_LIST_UNIT_SIZE;
}

/* ------------------------------------------------------------ bitmaps */

static uint64_t span_nchunks(const struct buddy *b)
{
    return (b->span_npages + (UINT64_C(1) << BUDDY_CHUNK_SHIFT) - 1) >> BUDDY_CHUNK_SHIFT;
}

/* Words of one bitmap of a lazy order per chunk: 2^18 >> order bits. */
static inline uint64_t chunk_nwords(unsigned order)
{
    return UINT64_C(1) << (BUDDY_CHUNK_SHIFT - 6 - order);
}

static uint64_t bitmap_words(const struct buddy *b, unsigned order)
{
    /* Two spare bits: the last (partial) block and its buddy are addressable. */
    uint64_t nwords = ((b->span_npages >> order) + 2 + 63) / 64;
    /* Lazy orders: that buddy is in the same chunk, so whole chunks suffice. */
    if (order < BUDDY_LAZY_ORDERS && nwords > span_nchunks(b) * chunk_nwords(order))
        nwords = span_nchunks(b) * chunk_nwords(order);
    return nwords;
}

/* Are the bits of `order` valid around frame rel (not a lazy, untouched chunk)? */
static inline bool chunk_ready(const struct buddy *b, unsigned order, uint64_t rel)
{
    return order >= BUDDY_LAZY_ORDERS ||
           bit_get(b->chunk_ready_bits, rel >> BUDDY_CHUNK_SHIFT);
}

/* Zero the lazy-order words of `chunk` in both bitmaps; mark it ready.
 * Runs once per chunk: kept out of line, off the alloc/free fast path. */
__attribute__((cold, noinline))
static void chunk_init_locked(struct buddy *b, uint64_t chunk)
{
    for (unsigned k = 0; k < BUDDY_LAZY_ORDERS; k++) {
        uint64_t first = chunk * chunk_nwords(k);
        uint64_t end = first + chunk_nwords(k);
        if (end > bitmap_words(b, k))
            end = bitmap_words(b, k);       /* the last chunk may be partial */
        for (uint64_t i = first; i < end; i++) {
            b->free_bits[k][i] = 0;
            b->alloc_bits[k][i] = 0;
        }
    }
    bit_set(b->chunk_ready_bits, chunk);
}

/* Make the bits of `order` around rel valid, before one is set. */
static inline void chunk_prepare_locked(struct buddy *b, unsigned order, uint64_t rel)
{
    if (__builtin_expect(!chunk_ready(b, order, rel), 0))
        chunk_init_locked(b, rel >> BUDDY_CHUNK_SHIFT);
}

/*
 * The bit of block (order, rel) in bits (b->free_bits or b->alloc_bits),
 * for any block: in an untouched chunk it is 0 and no word is read.
 */
static inline bool block_bit(const struct buddy *b, uint64_t *const *bits,
                             unsigned order, uint64_t rel)
{
    return chunk_ready(b, order, rel) && bit_get(bits[order], rel >> order);
}

/*
 * The same without the check, for the fast paths, where the chunk of rel
 * is known ready (or the order is eager).  That holds in every call below:
 * a chunk never becomes unready, a block below order 18 and its buddy
 * share a chunk, and each operation settles its chunk once at its start
 * (buddy_free through block_bit on the alloc bit, alloc_locked because
 * the block was listed or through chunk_prepare_locked, the seeding loop
 * through chunk_prepare_locked).
 */
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

static uint64_t pool_take_locked(struct buddy *b, unsigned order)
{
    uint64_t pa = b->list_pool_free.raw;

    if (pa != BUDDY_NO_BLOCK) {
        b->list_pool_free = PA(list_block(pa)->next_pa);
    } else {
        if (b->list_pool_next >= b->list_pool_nblocks)
            mm_panic("buddy: list block reserve exhausted (order %u, %llu in use of %llu)",
                     order, (unsigned long long)b->list_blocks_in_use,
                     (unsigned long long)b->list_pool_nblocks);
        pa = b->list_pool_base.raw + b->list_pool_next * BUDDY_LIST_UNIT_SIZE;
        b->list_pool_next++;
    }
    b->list_blocks_in_use++;
    return pa;
}

static void pool_put_locked(struct buddy *b, uint64_t pa)
{
    list_block(pa)->magic = 0;
    list_block(pa)->next_pa = b->list_pool_free.raw;
    b->list_pool_free = PA(pa);
    b->list_blocks_in_use--;
}

/* ---------------------------------------------------------- free lists */

/* Make block (rel, order) free: list it, write its back-index, set its bit. */
static void list_push_locked(struct buddy *b, unsigned order, uint64_t rel)
{
    uint64_t top_pa = b->list_top[order].raw;
    struct buddy_list_block *top = top_pa != BUDDY_NO_BLOCK ? list_block(top_pa) : NULL;

    if (!top || top->count == BUDDY_LIST_CAP) {
        uint64_t new_pa = pool_take_locked(b, order);
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
static void list_account_removal_locked(struct buddy *b, unsigned order, uint64_t rel,
                                        struct buddy_list_block *top, uint64_t top_pa)
{
    if (top->count == 0) {
        b->list_top[order] = PA(top->next_pa);
        pool_put_locked(b, top_pa);
    }
    /* The stale back-index stays: the clear bit says it is meaningless. */
    ready_bit_clear(b->free_bits, order, rel);
    if (--b->nfree_blocks[order] == 0)
        b->nonempty_mask &= ~(1u << order);
    b->free_npages -= UINT64_C(1) << order;
}

/* Panic unless the back-index of free block rel is consistent. */
static void check_back_index(const struct buddy *b, unsigned order, uint64_t rel,
                             const struct buddy_free_hdr *h, const char *fn)
{
    uint64_t slot = h->slot_pa;
    bool slot_ok = slot >= b->list_pool_base.raw && slot < pool_end_pa(b) &&
                   (slot & (BUDDY_LIST_UNIT_SIZE - 1)) >= BUDDY_LIST_HDR && (slot & 3) == 0;

    if (h->magic != BUDDY_FREE_MAGIC || h->order != order || !slot_ok ||
        *(const uint32_t *)pa_to_ptr(PA(slot)) != (uint32_t)rel)
        mm_panic("%s: corrupt free block pa 0x%llx order %u: magic 0x%x order %u slot 0x%llx",
                 fn, (unsigned long long)rel_to_pa(b, rel).raw, order, h->magic, h->order,
                 (unsigned long long)slot);
}

/* Take the most recently pushed block of `order` off its list. */
static uint64_t list_pop_locked(struct buddy *b, unsigned order)
{
    uint64_t top_pa = b->list_top[order].raw;
    struct buddy_list_block *top = list_block(top_pa);

    MM_BUG_ON(top_pa == BUDDY_NO_BLOCK || top->count == 0);
    uint64_t rel = top->entry[--top->count];
    if (!ready_bit(b->free_bits, order, rel))
        mm_panic("buddy_alloc: listed block pa 0x%llx order %u not marked free",
                 (unsigned long long)rel_to_pa(b, rel).raw, order);
    check_back_index(b, order, rel, block_hdr(b, rel), "buddy_alloc");
    list_account_removal_locked(b, order, rel, top, top_pa);
    return rel;
}

/* Remove free block (rel, order) from the middle of its list in O(1). */
static void list_remove_locked(struct buddy *b, unsigned order, uint64_t rel)
{
    struct buddy_free_hdr *h = block_hdr(b, rel);
    check_back_index(b, order, rel, h, "buddy_free");

    uint64_t top_pa = b->list_top[order].raw;
    struct buddy_list_block *top = list_block(top_pa);
    uint32_t *slot = pa_to_ptr(PA(h->slot_pa));
    uint32_t *last = &top->entry[top->count - 1];

    if (slot != last) {
        uint64_t moved = *last;
        *slot = (uint32_t)moved;
        block_hdr(b, moved)->slot_pa = h->slot_pa;
    }
    top->count--;
    list_account_removal_locked(b, order, rel, top, top_pa);
}

/* ------------------------------------------------------- core of alloc/free */

/* Pop a block of exactly `order`, splitting a larger one if needed. */
static int alloc_locked(struct buddy *b, unsigned order, uint64_t *rel_out)
{
    MM_BUG_ON(!b->lock.locked);       /* cheap check: no CPU-id lookup */
    uint32_t avail = b->nonempty_mask >> order;
    if (!avail)
        return -MM_ENOMEM;

    unsigned k = order + (unsigned)__builtin_ctz(avail);
    uint64_t rel = list_pop_locked(b, k);
    if (k >= BUDDY_LAZY_ORDERS)        /* a listed lazy-order block has a ready chunk */
        chunk_prepare_locked(b, order, rel);
    while (k > order) {
        k--;
        list_push_locked(b, k, rel + (UINT64_C(1) << k));
    }
    ready_bit_set(b->alloc_bits, order, rel);
    *rel_out = rel;
    return 0;
}

/* Give block (rel, order) back to the free lists, merging with free buddies.
 * Its chunk must be ready (see ready_bit). */
static void free_merge_locked(struct buddy *b, unsigned order, uint64_t rel)
{
    MM_BUG_ON(!b->lock.locked);
    while (order < BUDDY_MAX_ORDER) {
        uint64_t buddy_rel = rel ^ (UINT64_C(1) << order);
        if (!ready_bit(b->free_bits, order, buddy_rel))
            break;
        list_remove_locked(b, order, buddy_rel);
        rel &= ~(UINT64_C(1) << order);
        order++;
    }
    list_push_locked(b, order, rel);
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
        mm_printf("buddy_alloc: bad count %llu (want a power of two 1..%llu)\n",
                  (unsigned long long)npages, (unsigned long long)BUDDY_MAX_NPAGES);
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

int buddy_free(struct buddy *b, phys_addr_t pa, uint64_t npages)
{
    unsigned order;
    if (!order_of_npages(npages, &order)) {
        mm_printf("buddy_free: pa 0x%llx: bad count %llu\n",
                  (unsigned long long)pa.raw, (unsigned long long)npages);
        return -MM_EINVAL;
    }
    if (!is_aligned_u64(pa.raw, npages * PAGE_SIZE)) {
        mm_printf("buddy_free: pa 0x%llx not aligned to %llu pages\n",
                  (unsigned long long)pa.raw, (unsigned long long)npages);
        return -MM_EINVAL;
    }
    uint64_t pfn = pa_to_pfn(pa);
    if (pfn < b->base_pfn || pfn - b->base_pfn >= b->span_npages) {
        mm_printf("buddy_free: pa 0x%llx npages %llu outside the managed span\n",
                  (unsigned long long)pa.raw, (unsigned long long)npages);
        return -MM_EFAULT;
    }
    uint64_t rel = pfn - b->base_pfn;

    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    MM_BUG_ON(!b->ready);
    if (__builtin_expect(!block_bit(b, b->alloc_bits, order, rel), 0)) {
        bool managed = in_managed_ranges(b, pa.raw, npages);
        mm_spin_unlock_irqrestore(&b->lock, flags);
        if (!managed) {
            mm_printf("buddy_free: pa 0x%llx npages %llu outside the managed ranges\n",
                      (unsigned long long)pa.raw, (unsigned long long)npages);
            return -MM_EFAULT;
        }
        mm_printf("buddy_free: pa 0x%llx npages %llu is not an allocated block "
                  "(double free or wrong size)\n",
                  (unsigned long long)pa.raw, (unsigned long long)npages);
        return -MM_ENOENT;
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

void buddy_free_blocks(struct buddy *b, uint64_t counts[BUDDY_NR_ORDERS])
{
    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++)
        counts[k] = b->nfree_blocks[k];
    mm_spin_unlock_irqrestore(&b->lock, flags);
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
        len += mm_snprintf(line + len, sizeof line - (size_t)len, " %llu",
                           (unsigned long long)counts[k]);
    mm_printf("%s; free %llu / %llu pages, meta %llu\n", line,
              (unsigned long long)u.free_npages, (unsigned long long)u.total_npages,
              (unsigned long long)u.meta_npages);
}

/* ---------------------------------------------------------------- check */

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
    uint64_t nwords = bitmap_words(b, order);
    if (order >= BUDDY_LAZY_ORDERS)
        return popcount_bits(bits, nwords);

    uint64_t n = 0;
    for (uint64_t c = 0; c < span_nchunks(b); c++) {
        if (!bit_get(b->chunk_ready_bits, c))
            continue;
        uint64_t first = c * chunk_nwords(order);
        uint64_t end = first + chunk_nwords(order) < nwords ? first + chunk_nwords(order) : nwords;
        n += popcount_bits(bits + first, end - first);
    }
    return n;
}

void buddy_check(struct buddy *b)
{
    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    uint64_t free_npages = 0, blocks_in_lists = 0;

    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++) {
        uint64_t n = 0;
        bool first = true;
        for (uint64_t pa = b->list_top[k].raw; pa != BUDDY_NO_BLOCK; pa = list_block(pa)->next_pa) {
            struct buddy_list_block *p = list_block(pa);
            if (pa < b->list_pool_base.raw || pa >= pool_end_pa(b) ||
                p->magic != BUDDY_LIST_MAGIC || p->order != k || p->count == 0 ||
                p->count > BUDDY_LIST_CAP || (!first && p->count != BUDDY_LIST_CAP))
                mm_panic("buddy_check: bad list block 0x%llx order %u: "
                         "magic 0x%x order %u count %u",
                         (unsigned long long)pa, k, p->magic, p->order, p->count);
            for (uint32_t i = 0; i < p->count; i++) {
                uint64_t rel = p->entry[i];
                if (rel >= b->span_npages || (rel & ((UINT64_C(1) << k) - 1)) ||
                    !block_bit(b, b->free_bits, k, rel))
                    mm_panic("buddy_check: order %u entry %u = rel 0x%llx bad or not marked",
                             k, i, (unsigned long long)rel);
                check_back_index(b, k, rel, block_hdr(b, rel), "buddy_check");
                if (k < BUDDY_MAX_ORDER &&
                    block_bit(b, b->free_bits, k, rel ^ (UINT64_C(1) << k)))
                    mm_panic("buddy_check: order %u block rel 0x%llx and its buddy both free",
                             k, (unsigned long long)rel);
                if (block_bit(b, b->alloc_bits, k, rel))
                    mm_panic("buddy_check: order %u block rel 0x%llx free and allocated",
                             k, (unsigned long long)rel);
                for (unsigned j = k + 1; j < BUDDY_NR_ORDERS; j++)
                    if (block_bit(b, b->free_bits, j, rel))
                        mm_panic("buddy_check: order %u block rel 0x%llx inside free order %u",
                                 k, (unsigned long long)rel, j);
            }
            n += p->count;
            blocks_in_lists++;
            first = false;
        }
        uint64_t marked = count_marked(b, b->free_bits[k], k);
        if (n != b->nfree_blocks[k] || marked != n ||
            ((b->nonempty_mask >> k) & 1) != (n != 0))
            mm_panic("buddy_check: order %u: %llu listed, %llu counted, %llu marked, mask 0x%x",
                     k, (unsigned long long)n, (unsigned long long)b->nfree_blocks[k],
                     (unsigned long long)marked, b->nonempty_mask);
        free_npages += n << k;
    }

    uint64_t stacked = 0;
    for (uint64_t pa = b->list_pool_free.raw; pa != BUDDY_NO_BLOCK; pa = list_block(pa)->next_pa)
        stacked++;
    if (free_npages != b->free_npages || free_npages > b->total_npages ||
        blocks_in_lists != b->list_blocks_in_use ||
        blocks_in_lists + stacked != b->list_pool_next ||
        b->list_pool_next > b->list_pool_nblocks)
        mm_panic("buddy_check: free %llu vs %llu (total %llu), list blocks %llu vs %llu, "
                 "stacked %llu, used once %llu of %llu",
                 (unsigned long long)free_npages, (unsigned long long)b->free_npages,
                 (unsigned long long)b->total_npages, (unsigned long long)blocks_in_lists,
                 (unsigned long long)b->list_blocks_in_use, (unsigned long long)stacked,
                 (unsigned long long)b->list_pool_next, (unsigned long long)b->list_pool_nblocks);
    mm_spin_unlock_irqrestore(&b->lock, flags);
}

/* ----------------------------------------------------------------- init */

static bool area_list_valid(const struct mm_area_list *l)
{
    if (l->count == 0 || l->count > MM_MAX_AREAS)
        return false;
    for (unsigned i = 0; i < l->count; i++) {
        const struct mm_area *a = &l->area[i];
        if (!is_aligned_u64(a->start.raw, PAGE_SIZE) || !is_aligned_u64(a->end.raw, PAGE_SIZE) ||
            a->end.raw <= a->start.raw || a->end.raw > (UINT64_C(1) << 52))
            return false;
        if (i > 0 && a->start.raw < l->area[i - 1].end.raw)
            return false;
    }
    return true;
}

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

/*
 * List blocks needed beyond floor(X / C), where X = managed/2 + areas
 * (managed/2 rounded down) and C = BUDDY_LIST_CAP = 508 entries per 2 KiB
 * list block.  With n_k free blocks of order k, the lists use
 * sum_k ceil(n_k / C) list blocks (empty ones go back to the reserve).  Of
 * every aligned pair of frames at most one starts a free order-0 block,
 * and pairs inside free blocks of higher orders start none, so
 * n_0 <= (managed - F)/2 + areas, where F = sum_{k>=1} n_k 2^k (F is even
 * and n_0 an integer, so managed/2 may be rounded down).  Hence
 *   list blocks <= X/C + 1 + sum_{k>=1, n_k>0} (1 + n_k (1 - 2^(k-1)) / C).
 * A term of that last sum is positive only while 2^(k-1) <= C, i.e. for
 * the small orders 1..9; larger orders pay for their list block with the
 * order-0 blocks they exclude.  So 1 + (number of such orders) = 10 list
 * blocks (20 KiB) on top of X/C always suffice, and as the count is an
 * integer, on top of floor(X/C) too.
 */
static uint64_t list_reserve_extra(void)
{
    uint64_t extra = 1;
    for (unsigned k = 1; k < BUDDY_NR_ORDERS; k++)
        if ((UINT64_C(1) << (k - 1)) <= BUDDY_LIST_CAP)
            extra++;
    return extra;
}

int buddy_init(struct buddy *b, const struct mm_area_list *free_ranges)
{
    if (!area_list_valid(free_ranges)) {
        mm_printf("buddy_init: malformed area list (%u areas)\n", free_ranges->count);
        return -MM_EINVAL;
    }
    const struct mm_area *first = &free_ranges->area[0];
    const struct mm_area *last = &free_ranges->area[free_ranges->count - 1];
    uint64_t base_pa = align_down_u64(first->start.raw, PAGE_1G_SIZE);
    uint64_t span_npages = (last->end.raw - base_pa) / PAGE_SIZE;
    if (span_npages > (UINT64_C(1) << 32)) {
        mm_printf("buddy_init: span 0x%llx..0x%llx exceeds 16 TiB\n",
                  (unsigned long long)base_pa, (unsigned long long)last->end.raw);
        return -MM_EINVAL;
    }

    *b = (struct buddy){ .lock = MM_SPINLOCK_INIT };
    b->base_pfn = base_pa / PAGE_SIZE;
    b->span_npages = span_npages;
    b->fa.alloc = buddy_fa_alloc;
    b->fa.free = buddy_fa_free;
    b->list_pool_free = PA(BUDDY_NO_BLOCK);
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++)
        b->list_top[k] = PA(BUDDY_NO_BLOCK);

    /* Size the metadata: the worst-case list blocks, then (right after the
     * last one, 8-byte aligned) the chunk bitmap (one bit per GiB, at most
     * 2 KiB) and both bitmaps; the carve is that rounded up to whole frames. */
    uint64_t managed_npages = 0, chunk_nbitwords = (span_nchunks(b) + 63) / 64;
    uint64_t bitmap_nwords = chunk_nbitwords;
    for (unsigned i = 0; i < free_ranges->count; i++)
        managed_npages += mm_area_size(&free_ranges->area[i]) / PAGE_SIZE;
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++)
        bitmap_nwords += 2 * bitmap_words(b, k);
    uint64_t max_free_blocks = managed_npages / 2 + free_ranges->count;
    uint64_t list_nblocks = max_free_blocks / BUDDY_LIST_CAP + list_reserve_extra();
    uint64_t meta_bytes = list_nblocks * BUDDY_LIST_UNIT_SIZE + bitmap_nwords * 8;
    uint64_t meta_npages = (meta_bytes + PAGE_SIZE - 1) / PAGE_SIZE;

    /* Best fit: the smallest range that holds it all, carved from its end. */
    unsigned best = MM_MAX_AREAS;
    for (unsigned i = 0; i < free_ranges->count; i++) {
        uint64_t npages = mm_area_size(&free_ranges->area[i]) / PAGE_SIZE;
        if (npages >= meta_npages &&
            (best == MM_MAX_AREAS || npages < mm_area_size(&free_ranges->area[best]) / PAGE_SIZE))
            best = i;
    }
    if (best == MM_MAX_AREAS) {
        mm_printf("buddy_init: no range can hold %llu metadata pages\n",
                  (unsigned long long)meta_npages);
        b->span_npages = 0;
        return -MM_ENOMEM;
    }

    b->ranges = *free_ranges;
    struct mm_area *carved = &b->ranges.area[best];
    b->meta_end = carved->end;
    b->meta_start = PA(carved->end.raw - meta_npages * PAGE_SIZE);
    carved->end = b->meta_start;
    if (carved->end.raw == carved->start.raw) {
        for (unsigned i = best; i + 1 < b->ranges.count; i++)
            b->ranges.area[i] = b->ranges.area[i + 1];
        b->ranges.count--;
    }

    b->list_pool_base = b->meta_start;
    b->list_pool_nblocks = list_nblocks;
    /* Lay out the bitmaps; zero only the small ones (see "Lazy bitmaps"). */
    uint64_t *words = pa_to_ptr(PA(pool_end_pa(b)));
    b->chunk_ready_bits = words;
    for (uint64_t i = 0; i < chunk_nbitwords; i++)
        words[i] = 0;
    words += chunk_nbitwords;
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++) {
        uint64_t nwords = bitmap_words(b, k);
        b->free_bits[k] = words;
        b->alloc_bits[k] = words + nwords;
        if (k >= BUDDY_LAZY_ORDERS)
            for (uint64_t i = 0; i < 2 * nwords; i++)
                words[i] = 0;
        words += 2 * nwords;
    }
    b->total_npages = managed_npages - meta_npages;

    /* Seed: the largest aligned blocks, through the merging path. */
    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    for (unsigned i = 0; i < b->ranges.count; i++) {
        uint64_t rel = pa_to_pfn(b->ranges.area[i].start) - b->base_pfn;
        uint64_t end_rel = pa_to_pfn(b->ranges.area[i].end) - b->base_pfn;
        while (rel < end_rel) {
            unsigned order = floor_log2_u64(end_rel - rel);
            if (rel != 0 && (unsigned)__builtin_ctzll(rel) < order)
                order = (unsigned)__builtin_ctzll(rel);
            if (order > BUDDY_MAX_ORDER)
                order = BUDDY_MAX_ORDER;
            chunk_prepare_locked(b, order, rel);    /* only below 1 GiB */
            free_merge_locked(b, order, rel);
            rel += UINT64_C(1) << order;
        }
    }
    b->ready = true;
    mm_spin_unlock_irqrestore(&b->lock, flags);
    return 0;
}
