/*
 * mm/buddy_dma.c - blocks below a physical limit (buddy_alloc_below) and
 * DMA buffers over them (buddy_dma_alloc, and mm_dma_alloc over the
 * kernel's buddy).
 *
 * Algorithm.  A device that can address only [0, limit) needs a block
 * entirely below limit (a power of two: 16 MiB for ISA DMA, 4 GiB for
 * 32-bit devices, any other).  Ordinary requests leave such memory alone
 * while they can: the buddy keeps two free lists per order, and
 * buddy_alloc takes blocks at or above 4 GiB (the high zone) first
 * (mm/buddy.c).  buddy_alloc_below, for npages = 2^order frames:
 *  - limit at or above the end of the span: any block; buddy_alloc's path.
 *  - limit == 4 GiB: exactly the low zone; its lists give a block in
 *    O(orders), like buddy_alloc.
 *  - limit below 4 GiB: the free bitmaps (free_bits[j], one bit per block
 *    of order j, set iff that block is listed) are scanned over [0, limit)
 *    for orders j = order, order+1, .. 17 (smallest first, so small free
 *    blocks are used before large ones are split), word by word; orders
 *    whose low lists are empty are skipped; then the top tier's words
 *    (mm/buddy_top.c) for a free 1 GiB chunk.  The first set bit names a
 *    free block below limit; it leaves the middle of its list in O(1)
 *    (its back-index, or a scan of its short list) and is split down.
 *  - limit above 4 GiB (below the end of the span): the high part
 *    [4 GiB, limit) is scanned the same way, then the low lists serve.
 * A block of order j fits below limit iff it starts at or below
 * limit - 2^j frames: blocks are aligned to their size and limit is a
 * power of two, so the bit range [0, limit >> j) is exact.  A free block
 * larger than limit can only start at 0 (16 MiB below 16 MiB out of a
 * free 32 MiB block at 0): one bit per such order, split down keeping
 * its first part.
 *
 * Lazy chunks.  A 1 GiB chunk whose low-order bitmaps were never touched
 * (mm/buddy.c, "Lazy bitmaps") holds its free space as a FREE chunk of the
 * top tier or blocks of orders 13..17, whose bitmaps are always valid; the scan of
 * an order below 13 skips such chunks without reading their words.
 *
 * Cost bound.  Scanning a range of F frames reads at most
 * ceil(F / 2^j / 64) bitmap words for each order j >= order, in all
 * below F / 2^(order+5) + BUDDY_NR_ORDERS words, plus one chunk-ready bit
 * per GiB for the low orders; it never depends on how many blocks are
 * free.  Examples: 2 MiB below 4 GiB takes the low lists (no scan); 2 MiB
 * below 2 GiB reads at most 32 words; 4 KiB below 16 MiB at most 128;
 * 4 KiB below 2 GiB at most 16384 (128 KiB of bitmap, the worst case below
 * 4 GiB).  Then O(orders) for the removal and the split.  Everything runs
 * under b->lock (interrupts off), like buddy_alloc.
 *
 * Accounting and freeing.  A block from buddy_alloc_below is an ordinary
 * allocated block (alloc bit, or frame state for one frame): buddy_free
 * gives it back, with the same checks.
 *
 * Locking.  buddy_alloc_below takes b->lock; buddy_dma_* call the public
 * buddy functions and zero the block through the direct map outside it.
 */
#include "buddy_impl.h"

#include <mm/dma.h>
#include <mm/init.h>

/* First set bit of w in bit range [first, end), or UINT64_MAX; counts the
 * words read. */
static uint64_t scan_bits(struct buddy *b, const uint64_t *w, uint64_t first, uint64_t end)
{
    for (uint64_t i = first >> 6; i << 6 < end; i++) {
        uint64_t x = w[i];
        BUDDY_STEP(b, 1);
        if (i << 6 < first)
            x &= ~UINT64_C(0) << (first & 63);
        if (end - (i << 6) < 64)
            x &= (UINT64_C(1) << (end - (i << 6))) - 1;
        if (x)
            return (i << 6) + (uint64_t)__builtin_ctzll(x);
    }
    return UINT64_MAX;
}

/* A free block of `order` starting in relative frames [lo, hi) (lo a
 * multiple of 1 GiB), or UINT64_MAX.  Lazy orders: ready chunks only. */
static uint64_t scan_order(struct buddy *b, unsigned order, uint64_t lo, uint64_t hi)
{
    uint64_t first = lo >> order, end = hi >> order;
    if (order >= BUDDY_LAZY_ORDERS) {
        uint64_t i = scan_bits(b, b->free_bits[order], first, end);
        return i == UINT64_MAX ? i : i << order;
    }
    uint64_t per_chunk = UINT64_C(1) << (BUDDY_CHUNK_SHIFT - order);
    for (uint64_t c = lo >> BUDDY_CHUNK_SHIFT; c * per_chunk < end; c++) {
        BUDDY_STEP(b, 1);
        if (!chunk_ready(b, order, c << BUDDY_CHUNK_SHIFT))
            continue;
        uint64_t a = c * per_chunk, e = a + per_chunk < end ? a + per_chunk : end;
        uint64_t i = scan_bits(b, b->free_bits[order], a, e);
        if (i != UINT64_MAX)
            return i << order;
    }
    return UINT64_MAX;
}

/* Take the smallest free block of order >= `order` whose first 2^order
 * frames lie in [lo, hi) of zone z (a block larger than the range must
 * start at lo) and split it down to `order`, keeping its first frames;
 * -MM_ENOMEM if none. */
static int take_in_range(struct buddy *b, unsigned z, unsigned order, uint64_t lo, uint64_t hi,
                         uint64_t *rel_out)
{
    for (unsigned j = order; j < BUDDY_NR_LIST_ORDERS; j++) {
        if (!((b->nonempty_mask[z] >> j) & 1))
            continue;
        uint64_t rel = (hi - lo) >> j ? scan_order(b, j, lo, hi) :
                       block_bit(b, b->free_bits, j, lo) ? lo : UINT64_MAX;
        if (rel != UINT64_MAX) {
            buddy_take_locked(b, j, rel, order);
            *rel_out = rel;
            return 0;
        }
    }
    /* The top tier: a free chunk wholly in the range, taken (FREE -> NONE)
     * in the same step as it is found. */
    uint64_t c = lo >> BUDDY_CHUNK_SHIFT;
    if ((hi - lo) >> BUDDY_MAX_ORDER)
        c = buddy_top_take(b, c, hi >> BUDDY_CHUNK_SHIFT, BUDDY_TOP_NONE);
    else if (!buddy_top_move(b, c, BUDDY_TOP_FREE, BUDDY_TOP_NONE))
        c = UINT64_MAX;
    if (c == UINT64_MAX)
        return -MM_ENOMEM;
    buddy_take_locked(b, BUDDY_MAX_ORDER, c << BUDDY_CHUNK_SHIFT, order);
    *rel_out = c << BUDDY_CHUNK_SHIFT;
    return 0;
}

/* One attempt under the lock: a block of `order` below limit_rel
 * (relative frames, > 0), chosen as in the overview. */
static int below_locked(struct buddy *b, unsigned order, uint64_t limit_rel, uint64_t *rel_out)
{
    MM_ASSERT_LOCKED(&b->lock);
    if (limit_rel >= b->span_npages)
        return buddy_alloc_zone_locked(b, BUDDY_HIGH, order, rel_out) == 0 ? 0 :
               buddy_alloc_zone_locked(b, BUDDY_LOW, order, rel_out);
    if (limit_rel < b->high_rel)
        return take_in_range(b, BUDDY_LOW, order, 0, limit_rel, rel_out);
    if (limit_rel > b->high_rel &&
        take_in_range(b, BUDDY_HIGH, order, b->high_rel, limit_rel, rel_out) == 0)
        return 0;
    return buddy_alloc_zone_locked(b, BUDDY_LOW, order, rel_out);
}

/* Check the arguments of buddy_alloc_below; logs and returns -MM_EINVAL. */
static int below_args(uint64_t npages, phys_addr_t limit, unsigned *order_out)
{
    if (!is_pow2_u64(npages) || npages > BUDDY_MAX_NPAGES) {
        mm_printf("buddy_alloc_below: bad count %lu (want a power of two 1..%lu)\n",
                  (unsigned long)npages, (unsigned long)BUDDY_MAX_NPAGES);
        return -MM_EINVAL;
    }
    if (!is_pow2_u64(limit.raw) || limit.raw < npages * PAGE_SIZE) {
        mm_printf("buddy_alloc_below: limit %#lx is not a power of two of at least the "
                  "block size %#lx\n", (unsigned long)limit.raw,
                  (unsigned long)(npages * PAGE_SIZE));
        return -MM_EINVAL;
    }
    *order_out = (unsigned)__builtin_ctzll(npages);
    return 0;
}

int buddy_alloc_below(struct buddy *b, uint64_t npages, phys_addr_t limit, phys_addr_t *pa_out)
{
    unsigned order;
    int err = below_args(npages, limit, &order);
    if (err)
        return err;
    MM_BUG_ON(!b->ready);
    uint64_t limit_pfn = pa_to_pfn(limit);
    if (limit_pfn <= b->base_pfn)
        return -MM_ENOMEM;                      /* no managed frame below limit */
    uint64_t limit_rel = limit_pfn - b->base_pfn;

    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    uint64_t rel;
    for (bool drained = false;; drained = true) {
        err = below_locked(b, order, limit_rel, &rel);
        /* On failure our cached frames may complete a block: once more. */
        if (!err || drained || buddy_pcp_drain_locked(b, mm_platform_cpu_id()) == 0)
            break;
    }
    if (!err)
        buddy_mark_alloc_locked(b, order, rel);
    mm_spin_unlock_irqrestore(&b->lock, flags);
    if (err)
        return err;
    *pa_out = rel_to_pa(b, rel);
    return 0;
}

/* ------------------------------------------------------------- DMA */

/* Frames of a DMA buffer of `size` bytes: a power of two, or 0 if size is
 * 0 or over 1 GiB. */
static uint64_t dma_npages(uint64_t size)
{
    if (size == 0 || size > BUDDY_MAX_NPAGES * PAGE_SIZE)
        return 0;
    uint64_t n = (size + PAGE_SIZE - 1) / PAGE_SIZE;
    return n == 1 ? 1 : UINT64_C(1) << (64 - __builtin_clzll(n - 1));
}

int buddy_dma_alloc(struct buddy *b, uint64_t size, phys_addr_t max_pa, void **va_out,
                    phys_addr_t *pa_out)
{
    uint64_t npages = dma_npages(size);
    if (npages == 0 || va_out == NULL || pa_out == NULL) {
        mm_printf("buddy_dma_alloc: size %#lx (want 1 .. %#lx bytes), va_out %p, pa_out %p: "
                  "refused\n", (unsigned long)size,
                  (unsigned long)(BUDDY_MAX_NPAGES * PAGE_SIZE), (void *)va_out, (void *)pa_out);
        return -MM_EINVAL;
    }
    phys_addr_t pa;
    int err = buddy_alloc_below(b, npages, max_pa, &pa);
    if (err)
        return err;                             /* logged unless -MM_ENOMEM */
    void *va = pa_to_ptr(pa);
    __builtin_memset(va, 0, npages * PAGE_SIZE);
    *va_out = va;
    *pa_out = pa;
    return 0;
}

int buddy_dma_free(struct buddy *b, void *va, uint64_t size)
{
    uint64_t npages = dma_npages(size);
    uint64_t off = (uint64_t)(uintptr_t)va - mm_direct_map_offset;
    if (npages == 0 || (uint64_t)(uintptr_t)va < mm_direct_map_offset ||
        off >= MM_DIRECT_MAP_MAX_PA) {
        mm_printf("buddy_dma_free: va %#lx size %#lx: bad size or not a direct-map address\n",
                  (unsigned long)(uintptr_t)va, (unsigned long)size);
        return -MM_EINVAL;
    }
    return buddy_free(b, direct_ptr_to_pa(va), npages);     /* logs its refusals */
}

int mm_dma_alloc(uint64_t size, phys_addr_t max_pa, void **va_out, phys_addr_t *pa_out)
{
    struct buddy *b = mm_buddy();
    if (!b) {
        mm_printf("mm_dma_alloc: size %#lx: called before mm_init\n", (unsigned long)size);
        return -MM_EINVAL;
    }
    return buddy_dma_alloc(b, size, max_pa, va_out, pa_out);
}

int mm_dma_free(void *va, uint64_t size)
{
    struct buddy *b = mm_buddy();
    if (!b) {
        mm_printf("mm_dma_free: va %#lx: called before mm_init\n", (unsigned long)(uintptr_t)va);
        return -MM_EINVAL;
    }
    return buddy_dma_free(b, va, size);
}
