/*
 * mm/mmio.c - the MMIO pool: a buddy allocator of kernel virtual addresses
 * for device mappings, plus ioremap/iounmap on top of it.
 *
 * Algorithm.  Every 1 GiB of the pool is the root of a binary "split tree".
 * A leaf is a block: free or allocated.  An inner node is a block that was
 * split into its two halves, child[0] (lower) and child[1] (upper), which
 * are buddies.  So the buddy of a block is its sibling, stored right next
 * to it (see Memory below), and no list is ever searched:
 *   create:  take the head of the smallest non-empty free list of order
 *            >= the wanted one (a bitmap of non-empty orders + ctz), then
 *            split it down, pushing each upper half on its free list;
 *   release: mark the leaf free; while its sibling is a free leaf, unlink
 *            the sibling, drop the pair and continue with the parent;
 *            push the final block on its free list;
 *   lookup of an allocated block by address (release, map): a hash table
 *            keyed by address, chained through the allocated leaves.
 * Splits and merges cost at most MMIO_MAX_ORDER steps; nothing depends on
 * the number of blocks.
 *
 * The hash table uses linear hashing (Litwin 1980) so it grows and shrinks
 * one bucket at a time, never rehashing everything at once: buckets
 * [0, hash_low + hash_split) are in use; a key goes to bucket
 * h mod hash_low, or h mod 2*hash_low when that is below hash_split.  When
 * the table holds more than 1 block per bucket, bucket hash_split is
 * split in two; below 1/4 per bucket the last buckets are merged back, up
 * to HASH_SHRINK_STEPS per removal.  A removal lowers that 1/4 bound by
 * 4 buckets, so merging up to 4 keeps the table within it whatever the
 * order of creates and releases, and the table never holds more than 4
 * buckets per block (or one segment).  The
 * buckets live in 4 KiB "segments" of 512 heads, taken from the frame
 * allocator as the table grows; a failed segment allocation just means the
 * table does not grow this time.  With no block allocated the table is
 * dropped entirely.
 *
 * Invariants (checked by mmio_pool_check): the leaves under a root tile its
 * 1 GiB exactly; a node of order k is aligned to 4 KiB << k; no inner node
 * has two free leaves as children (release merges at once, all the way
 * up), so with nothing allocated the pool is exactly MMIO_NR_ROOTS free
 * 1 GiB blocks; free leaves are exactly the members of free_head[order];
 * allocated leaves are exactly the members of the hash table.
 *
 * Memory.  The 1024 roots live in struct mmio_pool.  Every other node
 * lives in a 4 KiB "node frame" taken from the pool's frame allocator,
 * side by side with its buddy (struct mmio_pair): a frame is a 64-byte
 * header (its free pairs, how many are in use, links in the list of
 * frames with free pairs) and 63 pairs.  A frame goes back to the frame
 * allocator the moment its last pair is dropped, so an idle pool holds no
 * frame.  A create needs one new pair per split (and the first hash
 * segment when the table is empty); it reserves them all before touching
 * any block, so a frame allocator that runs dry gives -MM_ENOMEM with
 * nothing changed.  Release never needs memory.
 *
 * Cache footprint.  A step's work is a few pointer hops (hash bucket,
 * leaf, buddy, free-list neighbours), so its time is set by how many of
 * them miss the cache, and that is what makes the slow steps slow.  Hence
 * a node is 32 bytes (address as a page index, mapping record packed in
 * one word): a pair is exactly one cache line, so a release reads the
 * leaf and its buddy with one miss, and the ~2 * 10^4 nodes of 10^4 live
 * blocks take about 600 KiB instead of 900 KiB.
 *
 * Mapping.  An allocated leaf records how many bytes mmio_map_phys mapped
 * and in which top table, so release knows what to unmap.  Release unmaps,
 * flushes all CPUs (one token for the whole range: one shootdown), and
 * only then gives the addresses back, so a reused block never meets a
 * stale TLB entry of its previous device.
 *
 * Locking.  p->lock (irqsave) protects everything in struct mmio_pool and
 * all nodes.  Inside it only the frame allocator is called (for node
 * frames), so its lock nests inside ours.  The page-table mapper is never
 * called with p->lock held: map and release mark the leaf `busy`, drop the
 * lock, edit the tables, and retake the lock to record the result; a busy
 * leaf cannot be mapped or released concurrently (-MM_EBUSY) and, being
 * allocated, can neither be merged nor handed out.  Lock order is thus
 * "caller's mapper lock -> pool lock -> frame allocator lock".
 */
#include <mm/mmio.h>
#include <mm/log.h>

enum mmio_node_kind {
    MMIO_NODE_UNUSED = 0,   /* a free slot in a node frame */
    MMIO_NODE_INNER,        /* split: see u.child */
    MMIO_NODE_FREE,         /* free leaf, on free_head[order] */
    MMIO_NODE_ALLOCATED,    /* leaf handed out by mmio_create */
};

/*
 * Nodes are born and die in pairs: a split makes both halves, a merge
 * drops both.  So the two halves of a block live side by side in one
 * struct mmio_pair, and a node finds its buddy without going through the
 * parent: the lower half is half[0], the upper half is half[1].
 */
struct mmio_pair {
    struct mmio_node half[2];
};

/* Header at the start of every node frame; the pairs follow it. */
struct mmio_node_frame {
    struct mmio_node_frame *prev, *next;   /* in p->partial while it has free pairs */
    struct mmio_pair *free_pair;           /* chain through half[0].u.link.next */
    uint32_t used;                         /* pairs in the trees */
    uint32_t nfree;                        /* pairs on free_pair */
    uint64_t reserved;
};

#define MMIO_FRAME_HEADER   UINT64_C(64)   /* header, padded to a cache line */
#define MMIO_PAIRS_PER_FRAME                                                  \
    ((uint32_t)((PAGE_SIZE - MMIO_FRAME_HEADER) / sizeof(struct mmio_pair)))

_Static_assert(sizeof(struct mmio_node) == 32, "a node is half a cache line");
_Static_assert(sizeof(struct mmio_pair) == 64, "a pair is one cache line");
_Static_assert(sizeof(struct mmio_node_frame) <= MMIO_FRAME_HEADER,
               "node frame header must fit before the first pair");
_Static_assert(MMIO_PAIRS_PER_FRAME == 63, "63 pairs of 64 bytes after the header");
_Static_assert((MMIO_POOL_SIZE >> PAGE_SHIFT) - 1 <= UINT32_MAX,
               "a page index within the pool fits in mmio_node.page");

static struct mmio_pool mmio_global_pool;

struct mmio_pool *mmio_pool_global(void)
{
    return &mmio_global_pool;
}

static inline uint64_t order_size(unsigned order)
{
    return PAGE_SIZE << order;
}

/* Smallest order whose block holds size bytes (1 <= size <= MMIO_MAX_SIZE). */
static unsigned size_to_order(uint64_t size)
{
    if (size <= PAGE_SIZE)
        return 0;
    return (unsigned)(64 - __builtin_clzll(size - 1)) - PAGE_SHIFT;
}

static inline bool va_in_pool(uint64_t va)
{
    return va >= MMIO_POOL_BASE && va < MMIO_POOL_END;
}

/* A node keeps its start address as a page index within the pool. */
static inline uint64_t node_va(const struct mmio_node *n)
{
    return MMIO_POOL_BASE + ((uint64_t)n->page << PAGE_SHIFT);
}

static inline void node_set_va(struct mmio_node *n, uint64_t va)
{
    n->page = (uint32_t)((va - MMIO_POOL_BASE) >> PAGE_SHIFT);
}

/*
 * The mapping record of an allocated leaf, packed in one word so the node
 * stays 32 bytes: bits 0..23 hold the number of 4 KiB pages mmio_map_phys
 * mapped (at most 2^18, one 1 GiB block), bits 24..63 the page frame
 * number of the top table they were mapped in (physical addresses have at
 * most PTE_PHYS_BITS = 52 bits, so a frame number has at most 40).  A
 * mapping covers at least one page, so 0 means "nothing mapped".
 */
#define MAPPING_PAGE_BITS 24u

_Static_assert((MMIO_MAX_SIZE >> PAGE_SHIFT) < (UINT64_C(1) << MAPPING_PAGE_BITS),
               "the page count of a whole block fits in the mapping word");
_Static_assert(MAPPING_PAGE_BITS + (PTE_PHYS_BITS - PAGE_SHIFT) <= 64,
               "a top table frame number fits above the page count");

static inline uint64_t mapping_pack(uint64_t size, uint64_t top_pa)
{
    MM_BUG_ON(size == 0 || !is_aligned_u64(size, PAGE_SIZE) || size > MMIO_MAX_SIZE);
    MM_BUG_ON(!is_aligned_u64(top_pa, PAGE_SIZE) || (top_pa >> PTE_PHYS_BITS) != 0);
    return (top_pa >> PAGE_SHIFT) << MAPPING_PAGE_BITS | size >> PAGE_SHIFT;
}

static inline uint64_t mapping_size(uint64_t m)
{
    return (m & ((UINT64_C(1) << MAPPING_PAGE_BITS) - 1)) << PAGE_SHIFT;
}

static inline uint64_t mapping_top_pa(uint64_t m)
{
    return (m >> MAPPING_PAGE_BITS) << PAGE_SHIFT;
}

/* ------------------------------------------------------------- free lists */

static void free_push(struct mmio_pool *p, struct mmio_node *n)
{
    struct mmio_node *head = p->free_head[n->order];
    n->kind = MMIO_NODE_FREE;
    n->u.link.prev = NULL;
    n->u.link.next = head;
    if (head)
        head->u.link.prev = n;
    p->free_head[n->order] = n;
    p->free_count[n->order]++;
    p->nonempty |= 1u << n->order;
}

static void free_unlink(struct mmio_pool *p, struct mmio_node *n)
{
    MM_BUG_ON(n->kind != MMIO_NODE_FREE);
    MM_BUG_ON(p->free_count[n->order] == 0);
    if (n->u.link.prev)
        n->u.link.prev->u.link.next = n->u.link.next;
    else
        p->free_head[n->order] = n->u.link.next;
    if (n->u.link.next)
        n->u.link.next->u.link.prev = n->u.link.prev;
    if (--p->free_count[n->order] == 0)
        p->nonempty &= ~(1u << n->order);
}

/* ------------------------------------------------------------ node frames */

static inline struct mmio_node_frame *frame_of(struct mmio_pair *pair)
{
    return (struct mmio_node_frame *)((uintptr_t)pair & ~(uintptr_t)(PAGE_SIZE - 1));
}

/* The pair a non-root node is half of, and that node's buddy. */
static inline unsigned half_index(const struct mmio_node *n)
{
    return (n->page >> n->order) & 1u;
}

static inline struct mmio_pair *pair_of(struct mmio_node *n)
{
    return (struct mmio_pair *)(void *)(n - half_index(n));
}

static void partial_add(struct mmio_pool *p, struct mmio_node_frame *f)
{
    struct mmio_node_frame *head = p->partial;
    f->prev = NULL;
    f->next = head;
    if (head)
        head->prev = f;
    p->partial = f;
}

static void partial_remove(struct mmio_pool *p, struct mmio_node_frame *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        p->partial = f->next;
    if (f->next)
        f->next->prev = f->prev;
    f->prev = f->next = NULL;
}

/* Turn a fresh frame into a header and a chain of free pairs. */
static struct mmio_node_frame *frame_setup(phys_addr_t pa)
{
    struct mmio_node_frame *f = pa_to_ptr(pa);
    struct mmio_pair *pairs = (struct mmio_pair *)(void *)((char *)f + MMIO_FRAME_HEADER);
    MM_BUG_ON(((uintptr_t)f & (PAGE_SIZE - 1)) != 0);

    f->free_pair = NULL;
    for (uint32_t i = MMIO_PAIRS_PER_FRAME; i-- > 0;) {
        pairs[i].half[0].kind = pairs[i].half[1].kind = MMIO_NODE_UNUSED;
        pairs[i].half[0].u.link.next = (struct mmio_node *)(void *)f->free_pair;
        f->free_pair = &pairs[i];
    }
    f->used = 0;
    f->nfree = MMIO_PAIRS_PER_FRAME;
    f->prev = f->next = NULL;
    return f;
}

static void frame_release(struct mmio_pool *p, struct mmio_node_frame *f)
{
    MM_BUG_ON(f->used != 0 || f->nfree != MMIO_PAIRS_PER_FRAME);
    partial_remove(p, f);
    p->free_slots -= 2u * f->nfree;
    p->node_frames--;
    p->fa->free(p->fa, direct_ptr_to_pa(f));
}

/*
 * Make sure at least `npairs` free pairs exist, taking frames from the
 * frame allocator.  On failure the frames taken by this call are given
 * back and -MM_ENOMEM is returned: the pool is as before.
 */
static int pairs_reserve_locked(struct mmio_pool *p, uint64_t npairs)
{
    uint64_t added = 0;
    MM_BUG_ON(!mm_spin_held(&p->lock));

    while (p->free_slots < 2u * npairs) {
        phys_addr_t pa;
        if (frame_alloc(p->fa, &pa) != 0) {
            /* The new frames sit at the head of the partial list, unused. */
            while (added-- > 0)
                frame_release(p, p->partial);
            return -MM_ENOMEM;
        }
        partial_add(p, frame_setup(pa));
        p->free_slots += 2u * MMIO_PAIRS_PER_FRAME;
        p->node_frames++;
        added++;
    }
    return 0;
}

/* Take a reserved pair; the caller fills both halves. */
static struct mmio_pair *pair_get(struct mmio_pool *p)
{
    struct mmio_node_frame *f = p->partial;
    MM_BUG_ON(f == NULL || f->nfree == 0 || f->free_pair == NULL);

    struct mmio_pair *pair = f->free_pair;
    MM_BUG_ON(pair->half[0].kind != MMIO_NODE_UNUSED || pair->half[1].kind != MMIO_NODE_UNUSED);
    f->free_pair = (struct mmio_pair *)(void *)pair->half[0].u.link.next;
    f->nfree--;
    f->used++;
    p->free_slots -= 2;
    p->nodes_in_use += 2;
    if (f->nfree == 0)
        partial_remove(p, f);
    return pair;
}

/* Drop both halves of a merged block; the frame goes back once empty. */
static void pair_put(struct mmio_pool *p, struct mmio_pair *pair)
{
    struct mmio_node_frame *f = frame_of(pair);
    MM_BUG_ON(f->used == 0);

    for (unsigned i = 0; i < 2; i++) {
        pair->half[i].kind = MMIO_NODE_UNUSED;
        pair->half[i].parent = NULL;
    }
    pair->half[0].u.link.next = (struct mmio_node *)(void *)f->free_pair;
    f->free_pair = pair;
    if (f->nfree++ == 0)
        partial_add(p, f);
    f->used--;
    p->free_slots += 2;
    p->nodes_in_use -= 2;
    if (f->used == 0)
        frame_release(p, f);
}

/* ------------------------------------------------------ address hash */

#define HASH_SEG_BUCKETS MMIO_HASH_SEG_BUCKETS
#define HASH_MIN_BUCKETS HASH_SEG_BUCKETS
#define HASH_MAX_BUCKETS ((uint64_t)MMIO_HASH_SEGS * HASH_SEG_BUCKETS)
#define HASH_SHRINK_STEPS 4u    /* see "linear hashing" at the top */

static inline uint32_t va_hash(uint64_t va)
{
    return (uint32_t)(((va >> PAGE_SHIFT) * UINT64_C(0x9e3779b97f4a7c15)) >> 32);
}

static inline uint64_t hash_nbuckets(const struct mmio_pool *p)
{
    return p->hash_low + p->hash_split;
}

static inline struct mmio_node **hash_bucket(struct mmio_pool *p, uint64_t b)
{
    return &p->hash_seg[b / HASH_SEG_BUCKETS][b % HASH_SEG_BUCKETS];
}

static uint64_t hash_index(const struct mmio_pool *p, uint32_t h)
{
    uint64_t b = h & (p->hash_low - 1);
    if (b < p->hash_split)
        b = h & (2 * p->hash_low - 1);
    return b;
}

/* Give segment i a fresh frame of empty buckets.  0 or -MM_ENOMEM. */
static int hash_seg_alloc(struct mmio_pool *p, uint64_t i)
{
    phys_addr_t pa;
    MM_BUG_ON(p->hash_seg[i] != NULL);
    if (frame_alloc(p->fa, &pa) != 0)
        return -MM_ENOMEM;
    struct mmio_node **seg = pa_to_ptr(pa);
    for (uint64_t b = 0; b < HASH_SEG_BUCKETS; b++)
        seg[b] = NULL;
    p->hash_seg[i] = seg;
    p->hash_frames++;
    return 0;
}

static void hash_seg_free(struct mmio_pool *p, uint64_t i)
{
    MM_BUG_ON(p->hash_seg[i] == NULL);
    p->fa->free(p->fa, direct_ptr_to_pa(p->hash_seg[i]));
    p->hash_seg[i] = NULL;
    p->hash_frames--;
}

/* The table exists (it has at least one segment).  0 or -MM_ENOMEM. */
static int hash_reserve_locked(struct mmio_pool *p)
{
    if (p->hash_low != 0)
        return 0;
    int err = hash_seg_alloc(p, 0);
    if (err)
        return err;
    p->hash_low = HASH_MIN_BUCKETS;
    p->hash_split = 0;
    return 0;
}

/* Drop the whole table (it holds no block). */
static void hash_drop_locked(struct mmio_pool *p)
{
    for (uint64_t i = 0; i * HASH_SEG_BUCKETS < hash_nbuckets(p); i++) {
        for (uint64_t b = 0; b < HASH_SEG_BUCKETS; b++)
            MM_BUG_ON(p->hash_seg[i][b] != NULL);
        hash_seg_free(p, i);
    }
    p->hash_low = p->hash_split = 0;
}

/* Split bucket hash_split into itself and bucket hash_low + hash_split. */
static void hash_grow_one(struct mmio_pool *p)
{
    uint64_t to = p->hash_low + p->hash_split;
    if (to % HASH_SEG_BUCKETS == 0 && hash_seg_alloc(p, to / HASH_SEG_BUCKETS) != 0)
        return;     /* no frame: stay at this size, chains just get longer */

    struct mmio_node *chain = *hash_bucket(p, p->hash_split);
    *hash_bucket(p, p->hash_split) = NULL;
    uint64_t mask = 2 * p->hash_low - 1;
    while (chain) {
        struct mmio_node *n = chain;
        chain = n->u.use.hnext;
        struct mmio_node **head = hash_bucket(p, va_hash(node_va(n)) & mask);
        n->u.use.hnext = *head;
        *head = n;
    }
    if (++p->hash_split == p->hash_low) {
        p->hash_low *= 2;
        p->hash_split = 0;
    }
}

/* Merge the last bucket back into its partner. */
static void hash_shrink_one(struct mmio_pool *p)
{
    if (p->hash_split == 0) {
        p->hash_low /= 2;
        p->hash_split = p->hash_low;
    }
    p->hash_split--;
    uint64_t from = p->hash_low + p->hash_split;
    struct mmio_node *chain = *hash_bucket(p, from);
    struct mmio_node **head = hash_bucket(p, p->hash_split);
    while (chain) {
        struct mmio_node *n = chain;
        chain = n->u.use.hnext;
        n->u.use.hnext = *head;
        *head = n;
    }
    *hash_bucket(p, from) = NULL;
    if (from % HASH_SEG_BUCKETS == 0)
        hash_seg_free(p, from / HASH_SEG_BUCKETS);
}

/* Enter allocated leaf n (alloc_count already counts it). */
static void hash_insert_locked(struct mmio_pool *p, struct mmio_node *n)
{
    MM_BUG_ON(!p->lock.locked);      /* cheap: no CPU-id lookup */
    struct mmio_node **head = hash_bucket(p, hash_index(p, va_hash(node_va(n))));
    n->u.use.hnext = *head;
    *head = n;
    uint64_t nb = hash_nbuckets(p);
    if (p->alloc_count > nb && nb < HASH_MAX_BUCKETS)
        hash_grow_one(p);
}

/* Remove allocated leaf n (alloc_count already discounts it). */
static void hash_remove_locked(struct mmio_pool *p, struct mmio_node *n)
{
    MM_BUG_ON(!p->lock.locked);      /* cheap: no CPU-id lookup */
    struct mmio_node **pp = hash_bucket(p, hash_index(p, va_hash(node_va(n))));
    while (*pp != n) {
        if (*pp == NULL)
            mm_panic("hash_remove_locked: block %#lx order %u not in its bucket",
                     (unsigned long)node_va(n), n->order);
        pp = &(*pp)->u.use.hnext;
    }
    *pp = n->u.use.hnext;
    n->u.use.hnext = NULL;
    if (p->alloc_count == 0) {
        hash_drop_locked(p);
        return;
    }
    for (unsigned k = 0; k < HASH_SHRINK_STEPS && 4 * p->alloc_count < hash_nbuckets(p) &&
                         hash_nbuckets(p) > HASH_MIN_BUCKETS; k++)
        hash_shrink_one(p);
}

/* The allocated block that starts at va, or NULL. */
static struct mmio_node *hash_find_locked(struct mmio_pool *p, uint64_t va)
{
    MM_BUG_ON(!p->lock.locked);      /* cheap: no CPU-id lookup */
    if (p->hash_low == 0)
        return NULL;
    struct mmio_node *n = *hash_bucket(p, hash_index(p, va_hash(va)));
    while (n && node_va(n) != va)
        n = n->u.use.hnext;
    return n;
}

/* --------------------------------------------------------------- the tree */

/* Split free block n (already off its list): n becomes inner, its upper
 * half goes on the free list, its lower half is returned (not on a list). */
static struct mmio_node *split_locked(struct mmio_pool *p, struct mmio_node *n)
{
    MM_BUG_ON(!p->lock.locked);      /* cheap: no CPU-id lookup */
    MM_BUG_ON(n->order == 0);
    unsigned half = n->order - 1u;
    struct mmio_pair *pair = pair_get(p);
    struct mmio_node *lo = &pair->half[0], *hi = &pair->half[1];

    lo->parent = hi->parent = n;
    lo->order = hi->order = (uint8_t)half;
    lo->busy = hi->busy = 0;
    lo->page = n->page;
    hi->page = n->page + (UINT32_C(1) << half);
    n->kind = MMIO_NODE_INNER;
    n->u.child[0] = lo;
    n->u.child[1] = hi;
    free_push(p, hi);
    return lo;
}

/* The leaf whose block contains va (va inside the pool). */
static struct mmio_node *leaf_containing(struct mmio_pool *p, uint64_t va)
{
    struct mmio_node *n = &p->root[(va - MMIO_POOL_BASE) / MMIO_MAX_SIZE];
    while (n->kind == MMIO_NODE_INNER) {
        unsigned upper = (unsigned)(va >> (PAGE_SHIFT + n->order - 1u)) & 1u;
        n = n->u.child[upper];
    }
    MM_BUG_ON(n->kind != MMIO_NODE_FREE && n->kind != MMIO_NODE_ALLOCATED);
    return n;
}

/* Give allocated leaf n back and merge it with free buddies upwards. */
static void block_free_locked(struct mmio_pool *p, struct mmio_node *n)
{
    MM_BUG_ON(!p->lock.locked);      /* cheap: no CPU-id lookup */
    MM_BUG_ON(n->kind != MMIO_NODE_ALLOCATED || n->busy);
    MM_BUG_ON(p->alloc_count == 0);
    p->alloc_count--;
    p->alloc_bytes -= order_size(n->order);
    hash_remove_locked(p, n);

    /* The buddy sits next to n: the parent is read only to merge. */
    while (n->parent) {
        struct mmio_pair *pair = pair_of(n);
        struct mmio_node *buddy = &pair->half[half_index(n) ^ 1u];
        if (buddy->kind != MMIO_NODE_FREE)
            break;
        struct mmio_node *parent = n->parent;
        MM_BUG_ON(parent->u.child[0] != &pair->half[0] || buddy->parent != parent);
        free_unlink(p, buddy);
        pair_put(p, pair);
        n = parent;
    }
    free_push(p, n);
}

/* Why find_block_locked refused, for report_find_error (printed after
 * the pool lock is dropped: a console line can take milliseconds). */
struct find_diag {
    uint64_t in_va, in_size;    /* -MM_ENOENT: the block that contains va */
    bool in_free;
    uint64_t block_size;        /* -MM_EINVAL for a wrong size: the real one */
};

/*
 * Find the allocated block that starts at va and has `size` bytes (size 0:
 * any size), not busy.  0 and *out, or the error, with *d describing it.
 * Prints nothing.
 */
static int find_block_locked(struct mmio_pool *p, uint64_t va, uint64_t size,
                             struct mmio_node **out, struct find_diag *d)
{
    MM_BUG_ON(!p->lock.locked);      /* cheap: no CPU-id lookup */
    d->block_size = 0;
    if (!va_in_pool(va))
        return -MM_EFAULT;
    if (!is_aligned_u64(va, PAGE_SIZE))
        return -MM_EINVAL;
    struct mmio_node *n = hash_find_locked(p, va);
    if (!n) {
        const struct mmio_node *in = leaf_containing(p, va);
        d->in_va = node_va(in);
        d->in_size = order_size(in->order);
        d->in_free = in->kind == MMIO_NODE_FREE;
        return -MM_ENOENT;
    }
    MM_BUG_ON(n->kind != MMIO_NODE_ALLOCATED);
    if (size != 0 && size != order_size(n->order)) {
        d->block_size = order_size(n->order);
        return -MM_EINVAL;
    }
    if (n->busy)
        return -MM_EBUSY;
    *out = n;
    return 0;
}

/* The one log line for a find_block_locked error; `fn` names the caller. */
static void report_find_error(const char *fn, int err, uint64_t va, uint64_t size,
                              const struct find_diag *d)
{
    switch (err) {
    case -MM_EFAULT:
        mm_printf("%s: va %#lx outside the MMIO pool [%#lx, %#lx)\n", fn, (unsigned long)va,
                  (unsigned long)MMIO_POOL_BASE, (unsigned long)MMIO_POOL_END);
        break;
    case -MM_EINVAL:
        if (d->block_size == 0)
            mm_printf("%s: va %#lx not page aligned\n", fn, (unsigned long)va);
        else
            mm_printf("%s: va %#lx has %#lx bytes, caller says %#lx\n", fn, (unsigned long)va,
                      (unsigned long)d->block_size, (unsigned long)size);
        break;
    case -MM_ENOENT:
        mm_printf("%s: va %#lx is not an allocated block (inside %s block %#lx of %#lx bytes)\n",
                  fn, (unsigned long)va, d->in_free ? "free" : "allocated",
                  (unsigned long)d->in_va, (unsigned long)d->in_size);
        break;
    default:
        mm_printf("%s: va %#lx is being mapped or released by another CPU\n", fn,
                  (unsigned long)va);
        break;
    }
}

/* ------------------------------------------------------------- public API */

int mmio_pool_init(struct mmio_pool *p, struct frame_allocator *fa)
{
    if (!p || !fa || !fa->alloc || !fa->free) {
        mm_printf("mmio_pool_init: pool %p, frame allocator %p: need both, and an allocator "
                  "that can free\n", (void *)p, (void *)fa);
        return -MM_EINVAL;
    }
    p->lock = (mm_spinlock_t)MM_SPINLOCK_INIT;
    p->fa = fa;
    p->free_tables = true;
    p->nonempty = 0;
    for (unsigned k = 0; k < MMIO_NR_ORDERS; k++) {
        p->free_head[k] = NULL;
        p->free_count[k] = 0;
    }
    p->alloc_count = p->alloc_bytes = 0;
    p->partial = NULL;
    p->free_slots = p->node_frames = p->nodes_in_use = 0;
    for (unsigned i = 0; i < MMIO_HASH_SEGS; i++)
        p->hash_seg[i] = NULL;
    p->hash_low = p->hash_split = p->hash_frames = 0;
    /* Push from the top so the list head is the lowest address. */
    for (uint64_t i = MMIO_NR_ROOTS; i-- > 0;) {
        struct mmio_node *r = &p->root[i];
        r->parent = NULL;
        node_set_va(r, MMIO_POOL_BASE + i * MMIO_MAX_SIZE);
        r->order = MMIO_MAX_ORDER;
        r->busy = 0;
        free_push(p, r);
    }
    return 0;
}

int mmio_create(struct mmio_pool *p, uint64_t size, struct mmio_space *out)
{
    if (size == 0 || size > MMIO_MAX_SIZE) {
        mm_printf("mmio_create: size %#lx not in 1..%#lx\n", (unsigned long)size,
                  (unsigned long)MMIO_MAX_SIZE);
        return -MM_EINVAL;
    }
    unsigned order = size_to_order(size);

    unsigned long flags = mm_spin_lock_irqsave(&p->lock);
    uint32_t fit = p->nonempty >> order;
    if (fit == 0) {
        mm_spin_unlock_irqrestore(&p->lock, flags);
        mm_printf("mmio_create: no free block of %#lx bytes left\n",
                  (unsigned long)order_size(order));
        return -MM_ENOMEM;
    }
    unsigned from = order + (unsigned)__builtin_ctz(fit);
    bool new_table = p->hash_low == 0;
    if (hash_reserve_locked(p) != 0 || pairs_reserve_locked(p, from - order) != 0) {
        if (new_table && p->hash_low != 0)
            hash_drop_locked(p);
        mm_spin_unlock_irqrestore(&p->lock, flags);
        mm_printf("mmio_create: no frame for the bookkeeping to split a %#lx-byte block\n",
                  (unsigned long)order_size(from));
        return -MM_ENOMEM;
    }
    struct mmio_node *n = p->free_head[from];
    free_unlink(p, n);
    while (n->order > order)
        n = split_locked(p, n);
    n->kind = MMIO_NODE_ALLOCATED;
    n->busy = 0;
    n->u.use.mapping = 0;
    p->alloc_count++;
    p->alloc_bytes += order_size(order);
    hash_insert_locked(p, n);
    out->va = VA(node_va(n));
    out->size = order_size(order);
    mm_spin_unlock_irqrestore(&p->lock, flags);
    return 0;
}

int mmio_map_phys(struct mmio_pool *p, const struct mmio_space *space,
                  struct pt_mapper *mapper, phys_addr_t pa, uint64_t length)
{
    if (!mapper) {
        mm_printf("mmio_map_phys: no mapper for va %#lx\n", (unsigned long)space->va.raw);
        return -MM_EINVAL;
    }
    if (!is_aligned_u64(pa.raw, PAGE_SIZE) || length == 0 || length > space->size) {
        mm_printf("mmio_map_phys: pa %#lx length %#lx do not fit space va %#lx size %#lx\n",
                  (unsigned long)pa.raw, (unsigned long)length,
                  (unsigned long)space->va.raw, (unsigned long)space->size);
        return -MM_EINVAL;
    }
    uint64_t map_size = align_up_u64(length, PAGE_SIZE);   /* <= space->size */

    unsigned long flags = mm_spin_lock_irqsave(&p->lock);
    struct mmio_node *n;
    struct find_diag d;
    int err = find_block_locked(p, space->va.raw, space->size, &n, &d);
    uint64_t mapped = err ? 0 : mapping_size(n->u.use.mapping);
    if (err || mapped != 0) {
        mm_spin_unlock_irqrestore(&p->lock, flags);
        if (err) {
            report_find_error("mmio_map_phys", err, space->va.raw, space->size, &d);
            return err;
        }
        mm_printf("mmio_map_phys: va %#lx already maps %#lx bytes\n",
                  (unsigned long)space->va.raw, (unsigned long)mapped);
        return -MM_EEXIST;
    }
    n->busy = 1;
    mm_spin_unlock_irqrestore(&p->lock, flags);

    /* Nothing to flush: a block leaves the pool with no TLB entry on any
     * CPU (release flushes before giving it back, and the range starts out
     * unmapped), and x86 never caches not-present entries. */
    struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
    err = pt_map_range(mapper, space->va, pa, map_size, MMIO_PTE_FLAGS, PAGE_1G_SIZE, &tok);
    pt_flush_ignore(&tok);

    flags = mm_spin_lock_irqsave(&p->lock);
    MM_BUG_ON(n->kind != MMIO_NODE_ALLOCATED || !n->busy);
    n->busy = 0;
    if (!err)
        n->u.use.mapping = mapping_pack(map_size, mapper->top_pa.raw);
    mm_spin_unlock_irqrestore(&p->lock, flags);
    if (err)
        mm_printf("mmio_map_phys: mapping va %#lx -> pa %#lx (%#lx bytes) failed: %d\n",
                  (unsigned long)space->va.raw, (unsigned long)pa.raw,
                  (unsigned long)map_size, err);
    return err;
}

/*
 * Release the block at va (size bytes, or any size if 0) for mmio_release
 * and mmio_iounmap: look-up and release under one hold of the lock, so the
 * block cannot change hands in between.  `fn` names the caller in logs.
 */
static int release_block(struct mmio_pool *p, const char *fn, uint64_t va, uint64_t size,
                         struct pt_mapper *mapper)
{
    unsigned long flags = mm_spin_lock_irqsave(&p->lock);
    struct mmio_node *n;
    struct find_diag d;
    int err = find_block_locked(p, va, size, &n, &d);
    if (err) {
        mm_spin_unlock_irqrestore(&p->lock, flags);
        report_find_error(fn, err, va, size, &d);
        return err;
    }
    uint64_t mapped_size = mapping_size(n->u.use.mapping);
    if (mapped_size != 0) {
        uint64_t top_pa = mapping_top_pa(n->u.use.mapping);
        if (!mapper || mapper->top_pa.raw != top_pa || mapper->readonly) {
            mm_spin_unlock_irqrestore(&p->lock, flags);
            if (mapper && mapper->top_pa.raw == top_pa) {
                mm_printf("%s: read-only mapper cannot unmap va %#lx\n", fn, (unsigned long)va);
                return -MM_EPERM;
            }
            mm_printf("%s: va %#lx was mapped in table %#lx, not in %#lx\n", fn,
                      (unsigned long)va, (unsigned long)top_pa,
                      mapper ? (unsigned long)mapper->top_pa.raw : 0ul);
            return -MM_EINVAL;
        }
        bool free_tables = p->free_tables;
        n->busy = 1;
        mm_spin_unlock_irqrestore(&p->lock, flags);

        struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
        err = pt_unmap_range(mapper, VA(va), mapped_size, free_tables, &tok);
        if (!err)
            pt_flush(&tok);     /* one token for the whole range: one shootdown */

        flags = mm_spin_lock_irqsave(&p->lock);
        MM_BUG_ON(n->kind != MMIO_NODE_ALLOCATED || !n->busy);
        n->busy = 0;
        if (err) {
            /* Someone changed our entries behind our back: keep the block. */
            mm_spin_unlock_irqrestore(&p->lock, flags);
            mm_printf("%s: unmapping va %#lx (%#lx bytes) failed: %d\n", fn,
                      (unsigned long)va, (unsigned long)mapped_size, err);
            return err;
        }
        n->u.use.mapping = 0;
    }
    block_free_locked(p, n);
    mm_spin_unlock_irqrestore(&p->lock, flags);
    return 0;
}

int mmio_release(struct mmio_pool *p, const struct mmio_space *space,
                 struct pt_mapper *mapper)
{
    return release_block(p, "mmio_release", space->va.raw, space->size, mapper);
}

void *mmio_ioremap(struct mmio_pool *p, struct pt_mapper *mapper, phys_addr_t pa,
                   uint64_t size)
{
    uint64_t offset = pa.raw & (PAGE_SIZE - 1);
    if (size == 0 || size > MMIO_MAX_SIZE - offset) {
        mm_printf("mmio_ioremap: pa %#lx size %#lx: size not in 1..%#lx\n",
                  (unsigned long)pa.raw, (unsigned long)size,
                  (unsigned long)(MMIO_MAX_SIZE - offset));
        return NULL;
    }
    uint64_t length = align_up_u64(offset + size, PAGE_SIZE);
    struct mmio_space space;
    if (mmio_create(p, length, &space) != 0)
        return NULL;
    if (mmio_map_phys(p, &space, mapper, PA(pa.raw - offset), length) != 0) {
        /* Only a caller misusing a stale handle to this block (another
         * CPU mapping or releasing it right now) can make this fail. */
        int err = mmio_release(p, &space, mapper);
        if (err)
            mm_printf("mmio_ioremap: giving back va %#lx failed (%d): block lost\n",
                      (unsigned long)space.va.raw, err);
        return NULL;
    }
    return (void *)(uintptr_t)(space.va.raw + offset);
}

int mmio_iounmap(struct mmio_pool *p, struct pt_mapper *mapper, void *va)
{
    uint64_t start = align_down_u64((uint64_t)(uintptr_t)va, PAGE_SIZE);
    if (!va_in_pool(start)) {
        mm_printf("mmio_iounmap: %p is not an MMIO address\n", va);
        return -MM_EFAULT;
    }
    return release_block(p, "mmio_iounmap", start, 0, mapper);   /* the block knows its size */
}

/* ----------------------------------------------------- queries and checks */

void mmio_pool_free_counts(struct mmio_pool *p, uint64_t out[MMIO_NR_ORDERS])
{
    unsigned long flags = mm_spin_lock_irqsave(&p->lock);
    for (unsigned k = 0; k < MMIO_NR_ORDERS; k++)
        out[k] = p->free_count[k];
    mm_spin_unlock_irqrestore(&p->lock, flags);
}

void mmio_pool_stats(struct mmio_pool *p, struct mmio_stats *out)
{
    unsigned long flags = mm_spin_lock_irqsave(&p->lock);
    out->free_bytes = 0;
    for (unsigned k = 0; k < MMIO_NR_ORDERS; k++) {
        out->free_blocks[k] = p->free_count[k];
        out->free_bytes += p->free_count[k] * order_size(k);
    }
    out->alloc_blocks = p->alloc_count;
    out->alloc_bytes = p->alloc_bytes;
    out->node_frames = p->node_frames;
    out->hash_frames = p->hash_frames;
    out->nodes_in_use = p->nodes_in_use;
    out->node_slots_free = p->free_slots;
    mm_spin_unlock_irqrestore(&p->lock, flags);
}

void mmio_pool_dump(struct mmio_pool *p)
{
    struct mmio_stats s;
    mmio_pool_stats(p, &s);
    mm_printf("mmio pool [%#lx, %#lx): %lu MiB free, %lu blocks / %lu KiB allocated\n",
              (unsigned long)MMIO_POOL_BASE, (unsigned long)MMIO_POOL_END,
              (unsigned long)(s.free_bytes / MiB), (unsigned long)s.alloc_blocks,
              (unsigned long)(s.alloc_bytes / KiB));
    for (unsigned k = 0; k < MMIO_NR_ORDERS; k++) {
        if (s.free_blocks[k] == 0)
            continue;
        uint64_t size = order_size(k);
        if (size >= GiB)
            mm_printf("  order %2u %6lu GiB blocks: %lu free\n", k,
                      (unsigned long)(size / GiB), (unsigned long)s.free_blocks[k]);
        else if (size >= MiB)
            mm_printf("  order %2u %6lu MiB blocks: %lu free\n", k,
                      (unsigned long)(size / MiB), (unsigned long)s.free_blocks[k]);
        else
            mm_printf("  order %2u %6lu KiB blocks: %lu free\n", k,
                      (unsigned long)(size / KiB), (unsigned long)s.free_blocks[k]);
    }
    mm_printf("  bookkeeping: %lu node frames (%lu nodes, %lu free slots), %lu hash frames\n",
              (unsigned long)s.node_frames, (unsigned long)s.nodes_in_use,
              (unsigned long)s.node_slots_free, (unsigned long)s.hash_frames);
}

struct mmio_census {
    uint64_t free_leaves[MMIO_NR_ORDERS];
    uint64_t alloc_leaves;
    uint64_t alloc_bytes;
    uint64_t dynamic_nodes;
};

/* Check the subtree under n (recursion depth <= MMIO_MAX_ORDER + 1). */
static void check_subtree(struct mmio_pool *p, const struct mmio_node *n,
                          struct mmio_census *c)
{
    uint64_t va = node_va(n);
    if (n->order > MMIO_MAX_ORDER || !is_aligned_u64(va, order_size(n->order)) ||
        !va_in_pool(va))
        mm_panic("mmio_pool_check: node %p has va %#lx order %u", (const void *)n,
                 (unsigned long)va, n->order);
    if (n->parent)
        c->dynamic_nodes++;
    switch (n->kind) {
    case MMIO_NODE_INNER:
        for (unsigned i = 0; i < 2; i++) {
            const struct mmio_node *ch = n->u.child[i];
            if (!ch || ch->parent != n || ch->order + 1u != n->order ||
                node_va(ch) != va + i * order_size(ch->order) || ch != n->u.child[0] + i)
                mm_panic("mmio_pool_check: bad child %u of block %#lx order %u", i,
                         (unsigned long)va, n->order);
            check_subtree(p, ch, c);
        }
        if (n->u.child[0]->kind == MMIO_NODE_FREE && n->u.child[1]->kind == MMIO_NODE_FREE)
            mm_panic("mmio_pool_check: free buddies at %#lx order %u were not merged",
                     (unsigned long)va, n->order - 1u);
        break;
    case MMIO_NODE_FREE:
        c->free_leaves[n->order]++;
        break;
    case MMIO_NODE_ALLOCATED:
        c->alloc_leaves++;
        c->alloc_bytes += order_size(n->order);
        if (mapping_size(n->u.use.mapping) > order_size(n->order))
            mm_panic("mmio_pool_check: block %#lx maps %#lx bytes, more than its size",
                     (unsigned long)va, (unsigned long)mapping_size(n->u.use.mapping));
        if (hash_find_locked(p, va) != n)
            mm_panic("mmio_pool_check: allocated block %#lx order %u missing from the hash",
                     (unsigned long)va, n->order);
        break;
    default:
        mm_panic("mmio_pool_check: node %p at %#lx has kind %u", (const void *)n,
                 (unsigned long)va, n->kind);
    }
}

/* Shape of the hash table and the place of every entry. */
static void check_hash_locked(struct mmio_pool *p)
{
    uint64_t nb = hash_nbuckets(p), entries = 0, segs = 0;
    if (p->hash_low == 0 ? (p->hash_split != 0 || p->alloc_count != 0)
                         : (!is_pow2_u64(p->hash_low) || p->hash_low < HASH_MIN_BUCKETS ||
                            p->hash_split >= p->hash_low || nb > HASH_MAX_BUCKETS))
        mm_panic("mmio_pool_check: hash low %lu split %lu with %lu blocks",
                 (unsigned long)p->hash_low, (unsigned long)p->hash_split,
                 (unsigned long)p->alloc_count);
    for (uint64_t i = 0; i < MMIO_HASH_SEGS; i++) {
        bool used = i * HASH_SEG_BUCKETS < nb;
        if ((p->hash_seg[i] != NULL) != used)
            mm_panic("mmio_pool_check: hash segment %lu %s with %lu buckets", (unsigned long)i,
                     used ? "missing" : "left over", (unsigned long)nb);
        segs += used;
    }
    for (uint64_t b = 0; b < nb; b++) {
        for (const struct mmio_node *n = *hash_bucket(p, b); n; n = n->u.use.hnext) {
            if (n->kind != MMIO_NODE_ALLOCATED || hash_index(p, va_hash(node_va(n))) != b ||
                ++entries > p->alloc_count)
                mm_panic("mmio_pool_check: hash bucket %lu holds block %#lx kind %u",
                         (unsigned long)b, (unsigned long)node_va(n), n->kind);
        }
    }
    if (entries != p->alloc_count || segs != p->hash_frames)
        mm_panic("mmio_pool_check: hash has %lu entries in %lu frames, expected %lu in %lu",
                 (unsigned long)entries, (unsigned long)segs, (unsigned long)p->alloc_count,
                 (unsigned long)p->hash_frames);
}

int mmio_pool_check(struct mmio_pool *p)
{
    struct mmio_census c = { { 0 }, 0, 0, 0 };
    unsigned long flags = mm_spin_lock_irqsave(&p->lock);

    for (uint64_t i = 0; i < MMIO_NR_ROOTS; i++) {
        const struct mmio_node *r = &p->root[i];
        if (r->parent || r->order != MMIO_MAX_ORDER ||
            node_va(r) != MMIO_POOL_BASE + i * MMIO_MAX_SIZE)
            mm_panic("mmio_pool_check: root %lu has va %#lx order %u", (unsigned long)i,
                     (unsigned long)node_va(r), r->order);
        check_subtree(p, r, &c);
    }
    for (unsigned k = 0; k < MMIO_NR_ORDERS; k++) {
        uint64_t len = 0;
        const struct mmio_node *prev = NULL;
        for (const struct mmio_node *n = p->free_head[k]; n; n = n->u.link.next) {
            if (n->kind != MMIO_NODE_FREE || n->order != k || n->u.link.prev != prev ||
                len > c.free_leaves[k])
                mm_panic("mmio_pool_check: free list %u broken at %#lx (entry %lu)", k,
                         (unsigned long)node_va(n), (unsigned long)len);
            prev = n;
            len++;
        }
        if (len != c.free_leaves[k] || len != p->free_count[k] ||
            ((p->nonempty >> k) & 1u) != (len != 0))
            mm_panic("mmio_pool_check: order %u: %lu on list, %lu free leaves, count %lu",
                     k, (unsigned long)len, (unsigned long)c.free_leaves[k],
                     (unsigned long)p->free_count[k]);
    }
    check_hash_locked(p);
    if (c.alloc_leaves != p->alloc_count || c.alloc_bytes != p->alloc_bytes ||
        c.dynamic_nodes != p->nodes_in_use ||
        p->nodes_in_use + p->free_slots != p->node_frames * 2u * MMIO_PAIRS_PER_FRAME)
        mm_panic("mmio_pool_check: %lu allocated (count %lu), %lu nodes (count %lu), "
                 "%lu free slots, %lu frames",
                 (unsigned long)c.alloc_leaves, (unsigned long)p->alloc_count,
                 (unsigned long)c.dynamic_nodes, (unsigned long)p->nodes_in_use,
                 (unsigned long)p->free_slots, (unsigned long)p->node_frames);
    mm_spin_unlock_irqrestore(&p->lock, flags);
    return 0;
}
