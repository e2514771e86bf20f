/*
 * mm/buddy_top.c - the buddy allocator's top tier: whole 1 GiB blocks
 * without the lock.
 *
 * Algorithm.  A 1 GiB block is a whole chunk of the span (mm/buddy.c), and
 * it has no buddy to merge with, so it needs no list: two bits per chunk
 * say everything (b->top_state, BUDDY_TOP_* in mm/buddy_impl.h), 32 chunks
 * to a 64-bit word.
 *
 *     NONE  --(merge or seed, locked)-->  FREE  --(buddy_alloc 1 GiB)-->  ALLOC
 *     NONE  <--(split, locked)----------  FREE  <--(buddy_free 1 GiB)---  ALLOC
 *
 * Every transition is one compare-and-swap of the chunk's word, so a
 * 1 GiB buddy_alloc or buddy_free takes no lock, and two CPUs can never
 * both take one chunk, or both free it: buddy_free accepts a chunk only
 * in state ALLOC, and the swap that moves it to FREE is what checks that
 * (unlike the single-frame path, two racing frees of one 1 GiB block can
 * not both pass).  An allocation takes the lowest free chunk of the high
 * zone, then of the low one, as buddy_alloc does for smaller blocks.
 *
 * The locked paths use the same operations: a smaller allocation that
 * finds no listed block in its zone takes a FREE chunk (FREE -> NONE,
 * take_top_locked in mm/buddy.c) and splits it; a free whose merging reaches 1 GiB,
 * and the seeding at init, make a NONE chunk FREE.  A chunk that is NONE
 * is owned by the lists (b->lock): the lock-free paths never touch it.
 *
 * Cost.  Allocation reads the state words of the high zone, then of the
 * low one, from the first on until one has a free chunk: at most one read
 * per word plus one (the word where the zones meet is read for both), so
 * at most two for a span of up to 32 GiB and 513 for the largest (16 TiB),
 * whatever the number of free blocks; an allocation that finds nothing
 * drains the CPU's cache and reads them all once more.  A free reads one
 * word.  A smaller request whose zone has no listed block reads that
 * zone's words under b->lock the same way.  The usage and the per-order
 * counts count the FREE chunks over all words (buddy_top_count).
 *
 * Memory order.  The swaps are acquire-release: everything the previous
 * owner of a block wrote happens before the next owner gets it, whether
 * either side took the lock or not.
 *
 * Files.  The two primitives, buddy_top_take and buddy_top_move, and
 * top_alloc_chunk are inline in mm/buddy_impl.h: buddy_alloc and
 * buddy_free (mm/buddy.c) run the 1 GiB paths without a call, and the
 * locked paths (mm/buddy.c, mm/buddy_dma.c) use the same two.  Here: the
 * counts and the retry of a failed allocation.
 *
 * Locking.  None, except buddy_top_alloc_retry, which drains the calling
 * CPU's cache under b->lock (a cached frame may complete a chunk).  The
 * counts read the words one by one: while other CPUs take or free 1 GiB
 * blocks they are of a moment, not a snapshot.
 */
#include "buddy_impl.h"

uint64_t buddy_top_count(const struct buddy *b, uint64_t first, uint64_t end, unsigned state)
{
    uint64_t n = 0;
    if (first >= end)
        return 0;
    for (uint64_t w = first / BUDDY_TOP_PER_WORD; w * BUDDY_TOP_PER_WORD < end; w++) {
        uint64_t v = __atomic_load_n(&b->top_state[w], __ATOMIC_RELAXED);
        /* Pairs equal to `state`: complement the bits `state` has clear,
         * then a pair is wanted iff both its bits are set. */
        uint64_t x = v ^ ~(BUDDY_TOP_FREE_BITS * state);
        for (uint64_t m = x & (x >> 1) & top_free_mask(w, first, end); m; m &= m - 1)
            n++;                                /* no libgcc popcount */
    }
    return n;
}

int buddy_top_alloc_retry(struct buddy *b, phys_addr_t *pa_out)
{
    /* Our cached frames may complete a free chunk: drain them, then look
     * once more. */
    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    uint64_t drained = buddy_pcp_drain_locked(b, mm_platform_cpu_id());
    mm_spin_unlock_irqrestore(&b->lock, flags);
    uint64_t c = drained ? top_alloc_chunk(b) : UINT64_MAX;
    if (c == UINT64_MAX)
        return -MM_ENOMEM;
    *pa_out = rel_to_pa(b, c << BUDDY_CHUNK_SHIFT);
    return 0;
}
