/*
 * mm/buddy_impl.h - private to mm/buddy*.c: the layout of the buddy
 * allocator's metadata (list blocks, free-block back-indexes, frame
 * states, per-CPU caches, the lazy bitmap geometry), the small helpers
 * that the allocator (mm/buddy.c), its per-CPU caches (mm/buddy_pcp.c)
 * and its invariant checker (mm/buddy_check.c) read it with, and the
 * calls between those files.
 *
 * The helpers are static, so that alloc and free compile into the same
 * code as when everything lived in mm/buddy.c: the small ones are inline
 * (no calls on the split and merge loops); check_back_index is not (see
 * there).  The algorithm and the invariants are described in mm/buddy.c.
 *
 * Locking: everything here reads or writes state protected by b->lock;
 * the caller holds it (the public functions take it), except the
 * frame-state and cache helpers, whose rules are in mm/buddy_pcp.c, and
 * the top tier's state words, which are only ever changed by atomic
 * operations (mm/buddy_top.c).
 */
#ifndef MM_BUDDY_IMPL_H
#define MM_BUDDY_IMPL_H

#include <mm/buddy.h>
#include <mm/log.h>

/* "No list block": physical address 0 may itself be a list block. */
#define BUDDY_NO_BLOCK    UINT64_MAX
#define BUDDY_LIST_MAGIC  0x1157u

/* A list block: header plus as many 32-bit block numbers as fit
 * ("Free lists" in mm/buddy.c). */
struct buddy_list_block {
    uint64_t next_pa;        /* next (full) list block of the stack, or BUDDY_NO_BLOCK */
    uint32_t count;          /* entries used, 1..BUDDY_LIST_CAP while listed (0: a list's
                              * last block, kept empty, see "Free lists" in mm/buddy.c) */
    uint16_t magic;
    uint8_t order;           /* the list it belongs to: order and zone (BUDDY_HIGH/LOW) */
    uint8_t zone;
    uint32_t entry[];
};

/* The list unit: a half page.  Everything else about list blocks derives from it. */
#define BUDDY_LIST_UNIT_SIZE   2048u
#define BUDDY_LIST_HDR         16u
#define BUDDY_LIST_CAP  ((uint32_t)((BUDDY_LIST_UNIT_SIZE - BUDDY_LIST_HDR) / sizeof(uint32_t)))

/*
 * Frame states (b->frame_state, one byte per frame of the span, valid in
 * ready chunks only).  A byte store never disturbs its neighbours, so the
 * per-CPU paths can check and set a frame's byte without the lock while
 * other CPUs write the bytes of other frames.
 */
#define BUDDY_FS_NONE     0x00u    /* not a single frame handed out: free, or in a larger block */
#define BUDDY_FS_ALLOC    0x01u    /* handed out by buddy_alloc(b, 1, ..) */
#define BUDDY_FS_CACHED   0x80u    /* | cpu: in that CPU's cache */
_Static_assert(MM_MAX_CPUS <= 0x80, "cpu fits the cached state byte");

/* One CPU's cache: a stack of relative frame numbers, entry[count - 1] on
 * top.  Own line(s), so CPUs never share one. */
struct buddy_pcp {
    _Alignas(BUDDY_CACHE_LINE) uint32_t count;
    uint32_t entry[BUDDY_PCP_CAP];
};
_Static_assert(BUDDY_PCP_BATCH <= BUDDY_PCP_CAP, "batch fits the cache");

/* A free list of at most this many blocks keeps no back-indexes; its one
 * list block is scanned instead ("Free lists" in mm/buddy.c). */
#define BUDDY_SCAN_MAX  64u
_Static_assert(BUDDY_SCAN_MAX < BUDDY_LIST_CAP, "a short list is one list block");

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
/* Atomic: the top tier counts its steps without the lock. */
#define BUDDY_STEP(b, n)  ((void)__atomic_fetch_add(&(b)->steps, (n), __ATOMIC_RELAXED))
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

/* --------------------------------------------------- frame states */

/* Chunk readiness as seen without the lock: chunk_init_locked publishes a
 * chunk's zeroed bytes with a release store of its ready word. */
static inline bool chunk_ready_acquire(const struct buddy *b, uint64_t rel)
{
    uint64_t chunk = rel >> BUDDY_CHUNK_SHIFT;
    uint64_t w = __atomic_load_n(&b->chunk_ready_bits[chunk >> 6], __ATOMIC_ACQUIRE);
    return (w >> (chunk & 63)) & 1;
}

static inline unsigned fs_get(const struct buddy *b, uint64_t rel)
{
    return __atomic_load_n(&b->frame_state[rel], __ATOMIC_RELAXED);
}

static inline void fs_set(struct buddy *b, uint64_t rel, unsigned state)
{
    __atomic_store_n(&b->frame_state[rel], (uint8_t)state, __ATOMIC_RELAXED);
}

/* The zone of the block starting at relative frame rel (BUDDY_LOW below
 * 4 GiB); a block and its buddies share it (see BUDDY_HIGH in mm/buddy.h). */
static inline unsigned zone_of(const struct buddy *b, uint64_t rel)
{
    return rel < b->high_rel ? BUDDY_LOW : BUDDY_HIGH;
}

/* ------------------------------------------------------------ top tier */

/*
 * The top tier (mm/buddy_top.c): 1 GiB chunk c of the span has the two
 * bits at 2 * (c % 32) of b->top_state[c / 32], read and written only
 * with atomic operations.  A chunk not wholly inside one managed range
 * stays BUDDY_TOP_NONE for ever.  The words start on a cache line of
 * their own: a 1 GiB alloc or free writes them, and the chunk-ready bits
 * before them are read by every single-frame free.
 */
#define BUDDY_TOP_NONE      0u   /* split into smaller blocks, or not all managed */
#define BUDDY_TOP_FREE      1u   /* one free 1 GiB block */
#define BUDDY_TOP_ALLOC     2u   /* handed out whole by buddy_alloc */
#define BUDDY_TOP_PER_WORD  32u
#define BUDDY_TOP_FREE_BITS UINT64_C(0x5555555555555555)   /* the low bit of each pair */

/* Words of the top tier for a span. */
static inline uint64_t top_nwords(uint64_t span_npages)
{
    return (nchunks(span_npages) + BUDDY_TOP_PER_WORD - 1) / BUDDY_TOP_PER_WORD;
}

/* First chunk of the high zone (nchunks if the span ends below 4 GiB). */
static inline uint64_t top_high_chunk(const struct buddy *b)
{
    return (b->high_rel + (UINT64_C(1) << BUDDY_CHUNK_SHIFT) - 1) >> BUDDY_CHUNK_SHIFT;
}

/* The state of chunk c, at some moment during the call. */
static inline unsigned top_get(const struct buddy *b, uint64_t c)
{
    uint64_t w = __atomic_load_n(&b->top_state[c / BUDDY_TOP_PER_WORD], __ATOMIC_ACQUIRE);
    return (unsigned)(w >> (2 * (c % BUDDY_TOP_PER_WORD))) & 3u;
}

/* The top-tier bits (the low bit of each pair) of word w that belong to
 * chunks [first, end); first < end, and w holds at least one of them. */
static inline uint64_t top_free_mask(uint64_t w, uint64_t first, uint64_t end)
{
    uint64_t lo = w * BUDDY_TOP_PER_WORD, mask = BUDDY_TOP_FREE_BITS;
    if (first > lo)
        mask &= ~UINT64_C(0) << (2 * (first - lo));
    if (end - lo < BUDDY_TOP_PER_WORD)
        mask &= (UINT64_C(1) << (2 * (end - lo))) - 1;
    return mask;
}

/* Move the lowest FREE chunk in chunks [first, end) to state `to`
 * (ALLOC, or NONE for the lists to split it) and return it; UINT64_MAX if
 * none is free.  One word per 32 chunks is read; a lost race on a word
 * (another CPU changed it) reads that word again.  Inline: the 1 GiB
 * alloc path runs it inside buddy_alloc. */
static inline uint64_t buddy_top_take(struct buddy *b, uint64_t first, uint64_t end, unsigned to)
{
    if (first >= end)
        return UINT64_MAX;                  /* an empty zone */
    for (uint64_t w = first / BUDDY_TOP_PER_WORD; w * BUDDY_TOP_PER_WORD < end; w++) {
        uint64_t *word = &b->top_state[w];
        uint64_t mask = top_free_mask(w, first, end);
        uint64_t v = __atomic_load_n(word, __ATOMIC_RELAXED);
        BUDDY_STEP(b, 1);
        /* FREE pairs: low bit set, high bit clear. */
        for (uint64_t f; (f = v & ~(v >> 1) & mask) != 0;) {
            unsigned shift = (unsigned)__builtin_ctzll(f);     /* even: a FREE chunk */
            uint64_t nv = (v & ~(UINT64_C(3) << shift)) | ((uint64_t)to << shift);
            if (__atomic_compare_exchange_n(word, &v, nv, false, __ATOMIC_ACQ_REL,
                                            __ATOMIC_RELAXED))
                return w * BUDDY_TOP_PER_WORD + shift / 2;
            /* v now holds the word another CPU wrote: look again. */
        }
    }
    return UINT64_MAX;
}

/* Move chunk c from state `from` to `to` and return true, or return false
 * (nothing changed) if it is not in `from`. */
static inline bool buddy_top_move(struct buddy *b, uint64_t c, unsigned from, unsigned to)
{
    uint64_t *word = &b->top_state[c / BUDDY_TOP_PER_WORD];
    unsigned shift = 2 * (unsigned)(c % BUDDY_TOP_PER_WORD);
    uint64_t v = __atomic_load_n(word, __ATOMIC_RELAXED);
    BUDDY_STEP(b, 1);
    do {
        if (((v >> shift) & 3u) != from)
            return false;
    } while (!__atomic_compare_exchange_n(word, &v, v ^ ((uint64_t)(from ^ to) << shift), false,
                                          __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
    return true;
}

/* The chunks [*first, *end) of zone z (empty if z has none). */
static inline void top_zone_range(const struct buddy *b, unsigned z, uint64_t *first,
                                  uint64_t *end)
{
    uint64_t high = top_high_chunk(b);
    *first = z == BUDDY_HIGH ? high : 0;
    *end = z == BUDDY_HIGH ? nchunks(b->span_npages) : high;
}

/* buddy_top_take over the chunks of zone z. */
static inline uint64_t top_take_zone(struct buddy *b, unsigned z, unsigned to)
{
    uint64_t first, end;
    top_zone_range(b, z, &first, &end);
    return buddy_top_take(b, first, end, to);
}

/* buddy_alloc of 1 GiB: the lowest free chunk of the high zone, else of
 * the low one, now ALLOC; UINT64_MAX if there is none. */
static inline uint64_t top_alloc_chunk(struct buddy *b)
{
    uint64_t c = top_take_zone(b, BUDDY_HIGH, BUDDY_TOP_ALLOC);
    return c != UINT64_MAX ? c : top_take_zone(b, BUDDY_LOW, BUDDY_TOP_ALLOC);
}

/* mm/buddy_top.c: chunks in [first, end) in `state`; and the second try
 * of a 1 GiB buddy_alloc that found no free chunk (drains the calling
 * CPU's cache under b->lock first): 0 and *pa_out, or -MM_ENOMEM. */
uint64_t buddy_top_count(const struct buddy *b, uint64_t first, uint64_t end, unsigned state);
int buddy_top_alloc_retry(struct buddy *b, phys_addr_t *pa_out);

/* Frames in the free lists, from the per-list counts: O(orders), so no
 * list push or pop keeps a page total.  b->lock held. */
static inline uint64_t listed_free_npages(const struct buddy *b)
{
    uint64_t n = 0;
    for (unsigned k = 0; k < BUDDY_NR_LIST_ORDERS; k++)
        n += (b->list[BUDDY_HIGH][k].nfree + b->list[BUDDY_LOW][k].nfree) << k;
    return n;
}

/* Frames free in the lists and the top tier (the per-CPU caches not
 * counted): O(orders + chunks / 32).  The top tier is read word by word
 * while 1 GiB calls may change it: exact while no CPU makes one. */
static inline uint64_t lists_free_npages(const struct buddy *b)
{
    return listed_free_npages(b) +
           (buddy_top_count(b, 0, nchunks(b->span_npages), BUDDY_TOP_FREE) << BUDDY_MAX_ORDER);
}

/*
 * The smallest order >= `order` whose list in zone z holds a block, or
 * BUDDY_NR_ORDERS if none (the lists end at order 17: a 1 GiB block is
 * looked for in the top tier, by the caller).  nonempty_mask[z] is kept
 * as a superset: a push sets a list's bit, but a list that empties keeps
 * it (one store less on every pop that empties a list, and on the push
 * that refills it, which a list that keeps reaching zero does on every
 * pair); a stale bit met here is cleared.  O(orders).  b->lock held.
 */
static inline unsigned first_nonempty(struct buddy *b, unsigned z, unsigned order)
{
    for (uint32_t avail = b->nonempty_mask[z] >> order; avail; avail &= avail - 1) {
        unsigned k = order + (unsigned)__builtin_ctz(avail);
        if (__builtin_expect(b->list[z][k].nfree != 0, 1))
            return k;
        b->nonempty_mask[z] &= ~(1u << k);
    }
    return BUDDY_NR_ORDERS;
}

/* ----------------------------------------------------------- back-index */

/*
 * The back-index of a free block: b->slot_of[rel >> 1] is the position of
 * its list slot, in 4-byte units from the list block reserve's base.  At
 * most one listed block starts in each aligned frame pair (two free
 * order-0 buddies would have merged; a larger block starts on an even
 * frame and covers both), so one entry per pair suffices.
 */
static inline uint32_t *slot_ptr(const struct buddy *b, uint64_t pos)
{
    return pa_to_ptr(PA(b->list_pool_base.raw + pos * sizeof(uint32_t)));
}

/*
 * Panic, naming fn, unless the back-index of free block (order, rel) is
 * consistent: a slot inside the list block reserve, past a list block
 * header, holding rel (buddy_check also matches it with the exact slot).
 * Kept out of line (one copy per including file that uses it), off the
 * alloc and free code.
 */
__attribute__((noinline, unused))
static void check_back_index(const struct buddy *b, unsigned order, uint64_t rel, const char *fn)
{
    uint64_t pos = b->slot_of[rel >> 1];
    uint64_t off = pos * sizeof(uint32_t);
    if (off >= b->list_pool_nblocks * BUDDY_LIST_UNIT_SIZE ||
        (off & (BUDDY_LIST_UNIT_SIZE - 1)) < BUDDY_LIST_HDR || *slot_ptr(b, pos) != (uint32_t)rel)
        mm_panic("%s: corrupt back-index of free block pa %#lx order %u: slot %#lx",
                 fn, (unsigned long)rel_to_pa(b, rel).raw, order, (unsigned long)pos);
}

/* ------------------------------------------- calls between the files */

/* mm/buddy.c, with b->lock held: give block (order, rel) back, merging. */
void buddy_free_merge_locked(struct buddy *b, unsigned order, uint64_t rel);

/* mm/buddy.c, with b->lock held: take free block (k, rel) (its free bit
 * set, or for k == BUDDY_MAX_ORDER a chunk the caller has moved from FREE
 * to NONE) out of the middle of its list and split it down to `order`,
 * keeping the lowest part; or take a block of exactly `order` from zone
 * z's lists or top tier only (splitting), or -MM_ENOMEM.  The caller
 * marks the block allocated (buddy_mark_alloc_locked). */
void buddy_take_locked(struct buddy *b, unsigned k, uint64_t rel, unsigned order);
int buddy_alloc_zone_locked(struct buddy *b, unsigned z, unsigned order, uint64_t *rel_out);
void buddy_mark_alloc_locked(struct buddy *b, unsigned order, uint64_t rel);

/* mm/buddy_check.c: the refusal of buddy_free(b, pa, npages) at relative
 * frame rel that failed its allocated-block check (takes b->lock to tell
 * why); and the one log line of any refused free.  Both return the error. */
int buddy_free_refusal(struct buddy *b, phys_addr_t pa, uint64_t npages, uint64_t rel);
int buddy_free_refused(phys_addr_t pa, uint64_t npages, const char *why, int err);

/* mm/buddy_pcp.c: the single-frame paths of buddy_alloc and buddy_free
 * (the count and the range already checked), and the drain of the calling
 * CPU's cache with b->lock held and interrupts off. */
int buddy_pcp_alloc(struct buddy *b, phys_addr_t *pa_out);
int buddy_pcp_free(struct buddy *b, phys_addr_t pa, uint64_t rel);
uint64_t buddy_pcp_drain_locked(struct buddy *b, unsigned cpu);
uint64_t buddy_pcp_cached(const struct buddy *b);

/* mm/buddy_pcp.c: the struct frame_allocator callbacks (buddy_init sets them). */
int buddy_fa_alloc(struct frame_allocator *fa, phys_addr_t *pa_out);
void buddy_fa_free(struct frame_allocator *fa, phys_addr_t pa);

#endif
