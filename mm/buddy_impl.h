/*
 * mm/buddy_impl.h - private to mm/buddy*.c: the layout of the buddy
 * allocator's metadata (list blocks, free-block back-indexes, the lazy
 * bitmap geometry) and the small helpers that both the allocator
 * (mm/buddy.c) and its invariant checker (mm/buddy_check.c) read it with.
 *
 * The helpers are static, so that alloc and free compile into the same
 * code as when everything lived in mm/buddy.c: the small ones are inline
 * (no calls on the split and merge loops); check_back_index is not (see
 * there).  The algorithm and the invariants are described in mm/buddy.c.
 *
 * Locking: everything here reads or writes state protected by b->lock;
 * the caller holds it (the public functions take it).
 */
#ifndef MM_BUDDY_IMPL_H
#define MM_BUDDY_IMPL_H

#include <mm/buddy.h>
#include <mm/log.h>

#define BUDDY_FREE_MAGIC  0xf4eeb10cu
/* "No list block": physical address 0 may itself be a list block. */
#define BUDDY_NO_BLOCK    UINT64_MAX
#define BUDDY_LIST_MAGIC  0x1157u

/* A list block: header plus as many 32-bit block numbers as fit
 * ("Free lists" in mm/buddy.c). */
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

/* Orders below this have >= 64 bits per 1 GiB chunk and are zeroed lazily
 * ("Lazy bitmaps" in mm/buddy.c). */
#define BUDDY_LAZY_ORDERS  (BUDDY_MAX_ORDER - 6 + 1)
#define BUDDY_CHUNK_SHIFT  BUDDY_MAX_ORDER          /* frames per chunk, log2 */

_Static_assert(sizeof(struct buddy_list_block) == BUDDY_LIST_HDR, "list header");
_Static_assert((BUDDY_LIST_UNIT_SIZE & (BUDDY_LIST_UNIT_SIZE - 1)) == 0 &&
               PAGE_SIZE % BUDDY_LIST_UNIT_SIZE == 0 && BUDDY_LIST_UNIT_SIZE > BUDDY_LIST_HDR,
               "list units tile a page");
_Static_assert(BUDDY_MAX_ORDER == PAGE_1G_SHIFT - PAGE_SHIFT, "max order is 1 GiB");

/* Count n steps of work on b (see buddy_steps in mm/buddy.h); nothing
 * unless the build defines MM_STEP_COUNT. */
#ifdef MM_STEP_COUNT
#define BUDDY_STEP(b, n)  ((b)->steps += (n))
#else
#define BUDDY_STEP(b, n)  ((void)(b))
#endif

/* --------------------------------------------------- bits and addresses */

static inline bool bit_get(const uint64_t *w, uint64_t i) { return (w[i >> 6] >> (i & 63)) & 1; }
static inline void bit_set(uint64_t *w, uint64_t i) { w[i >> 6] |= UINT64_C(1) << (i & 63); }
static inline void bit_clear(uint64_t *w, uint64_t i) { w[i >> 6] &= ~(UINT64_C(1) << (i & 63)); }

/* Relative frame number -> physical address, and back. */
static inline phys_addr_t rel_to_pa(const struct buddy *b, uint64_t rel)
{
    return pfn_to_pa(b->base_pfn + rel);
}

static inline struct buddy_free_hdr *block_hdr(const struct buddy *b, uint64_t rel)
{
    return pa_to_ptr(rel_to_pa(b, rel));
}

static inline struct buddy_list_block *list_block(uint64_t pa) { return pa_to_ptr(PA(pa)); }

/* End of the reserved list blocks; the bitmaps start here. */
static inline uint64_t pool_end_pa(const struct buddy *b)
{
    return b->list_pool_base.raw + b->list_pool_nblocks * BUDDY_LIST_UNIT_SIZE;
}

/* ------------------------------------------------------ bitmap geometry */

/* 1 GiB chunks in a span of span_npages frames. */
static inline uint64_t nchunks(uint64_t span_npages)
{
    return (span_npages + (UINT64_C(1) << BUDDY_CHUNK_SHIFT) - 1) >> BUDDY_CHUNK_SHIFT;
}

/* Words of one bitmap of a lazy order per chunk: 2^18 >> order bits. */
static inline uint64_t chunk_nwords(unsigned order)
{
    return UINT64_C(1) << (BUDDY_CHUNK_SHIFT - 6 - order);
}

/* Words of one bitmap of `order` over a span of span_npages frames. */
static inline uint64_t span_bitmap_words(uint64_t span_npages, unsigned order)
{
    /* Two spare bits: the last (partial) block and its buddy are addressable. */
    uint64_t nwords = ((span_npages >> order) + 2 + 63) / 64;
    /* Lazy orders: that buddy is in the same chunk, so whole chunks suffice. */
    if (order < BUDDY_LAZY_ORDERS && nwords > nchunks(span_npages) * chunk_nwords(order))
        nwords = nchunks(span_npages) * chunk_nwords(order);
    return nwords;
}

/* Are the bits of `order` valid around frame rel (not a lazy, untouched chunk)? */
static inline bool chunk_ready(const struct buddy *b, unsigned order, uint64_t rel)
{
    return order >= BUDDY_LAZY_ORDERS ||
           bit_get(b->chunk_ready_bits, rel >> BUDDY_CHUNK_SHIFT);
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

/* ----------------------------------------------------------- back-index */

/*
 * Panic, naming fn, unless the back-index h of free block rel is consistent:
 * right magic and order, a slot inside the list block reserve (past a
 * header, 4-byte aligned) that holds rel.  Deliberately not `inline`: the
 * compiler then keeps it one out-of-line copy per file, as before the split,
 * instead of pulling it (and its panic call) into alloc and free.  Both
 * including files call it, so it is never unused.
 */
static void check_back_index(const struct buddy *b, unsigned order, uint64_t rel,
                             const struct buddy_free_hdr *h, const char *fn)
{
    uint64_t slot = h->slot_pa;
    bool slot_ok = slot >= b->list_pool_base.raw && slot < pool_end_pa(b) &&
                   (slot & (BUDDY_LIST_UNIT_SIZE - 1)) >= BUDDY_LIST_HDR && (slot & 3) == 0;
    if (h->magic != BUDDY_FREE_MAGIC || h->order != order || !slot_ok ||
        *(const uint32_t *)pa_to_ptr(PA(slot)) != (uint32_t)rel)
        mm_panic("%s: corrupt free block pa %#lx order %u: magic 0x%x order %u slot %#lx",
                 fn, (unsigned long)rel_to_pa(b, rel).raw, order, h->magic, h->order,
                 (unsigned long)slot);
}

#endif
