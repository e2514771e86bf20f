/*
 * mm/vrange_impl.h - private to mm/vrange*.c: the node kinds, the node
 * frame layout, and the hot helpers of the node storage and the address
 * hash, kept static inline here so that the allocator's fast paths
 * compile into one translation unit (mm/vrange.c) without calls.
 *
 * Every function here expects vr->lock held.
 */
#ifndef MM_VRANGE_IMPL_H
#define MM_VRANGE_IMPL_H

#include <mm/log.h>
#include <mm/vrange.h>

enum vrange_node_kind {
    VRANGE_NODE_UNUSED = 0,   /* a free slot in a node frame */
    VRANGE_NODE_INNER,        /* split: see u.child */
    VRANGE_NODE_FREE,         /* free leaf, on free_head[order] */
    VRANGE_NODE_ALLOCATED,    /* leaf handed out, in the hash */
    VRANGE_NODE_CLAIMED,      /* allocated and claimed by one caller */
};

/*
 * Nodes are born and die in pairs: a split makes both halves, a merge
 * drops both.  So the two halves of a block live side by side, and a node
 * finds its buddy without going through the parent: the lower half is
 * half[0], the upper half is half[1].
 */
struct vrange_pair {
    struct vrange_node half[2];
};

/* Header at the start of every node frame; the pairs follow it. */
struct vrange_node_frame {
    struct vrange_node_frame *prev, *next;  /* in vr->partial while it has free pairs */
    struct vrange_pair *free_pair;          /* chain through half[0].u.link.next */
    uint32_t used;                          /* pairs in the trees */
    uint32_t nfree;                         /* pairs on free_pair */
    uint64_t reserved;
};

#define VRANGE_FRAME_HEADER   UINT64_C(64)  /* header, padded to a cache line */
#define VRANGE_PAIRS_PER_FRAME                                                  \
    ((uint32_t)((PAGE_SIZE - VRANGE_FRAME_HEADER) / sizeof(struct vrange_pair)))

_Static_assert(sizeof(struct vrange_node) == 32, "a node is half a cache line");
_Static_assert(sizeof(struct vrange_pair) == 64, "a pair is one cache line");
_Static_assert(sizeof(struct vrange_node_frame) <= VRANGE_FRAME_HEADER,
               "node frame header must fit before the first pair");
_Static_assert(VRANGE_PAIRS_PER_FRAME == 63, "63 pairs of 64 bytes after the header");

static inline uint64_t vrange_order_size(unsigned order)
{
    return PAGE_SIZE << order;
}

/* A node keeps its start address as a page index within the range. */
static inline uint64_t vrange_node_va(const struct vrange *vr, const struct vrange_node *n)
{
    return vr->base + ((uint64_t)n->page << PAGE_SHIFT);
}

static inline bool vrange_node_allocated(const struct vrange_node *n)
{
    return n->kind == VRANGE_NODE_ALLOCATED || n->kind == VRANGE_NODE_CLAIMED;
}

/* ------------------------------------------------ node storage (vrange_node.c) */

int vrange_pairs_reserve_locked(struct vrange *vr, uint64_t npairs);
void vrange_frame_release_locked(struct vrange *vr, struct vrange_node_frame *f);

static inline struct vrange_node_frame *vrange_frame_of(struct vrange_pair *pair)
{
    return (struct vrange_node_frame *)((uintptr_t)pair & ~(uintptr_t)(PAGE_SIZE - 1));
}

/* Which half of its pair a non-root node is, and the pair itself. */
static inline unsigned vrange_half_index(const struct vrange_node *n)
{
    return (n->page >> n->order) & 1u;
}

static inline struct vrange_pair *vrange_pair_of(struct vrange_node *n)
{
    return (struct vrange_pair *)(void *)(n - vrange_half_index(n));
}

static inline void vrange_partial_add(struct vrange *vr, struct vrange_node_frame *f)
{
    struct vrange_node_frame *head = vr->partial;
    f->prev = NULL;
    f->next = head;
    if (head)
        head->prev = f;
    vr->partial = f;
}

static inline void vrange_partial_remove(struct vrange *vr, struct vrange_node_frame *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        vr->partial = f->next;
    if (f->next)
        f->next->prev = f->prev;
    f->prev = f->next = NULL;
}

/* Take a reserved pair (vrange_pairs_reserve_locked); the caller fills
 * both halves. */
static inline struct vrange_pair *vrange_pair_get(struct vrange *vr)
{
    struct vrange_node_frame *f = vr->partial;
    MM_BUG_ON(f == NULL || f->nfree == 0 || f->free_pair == NULL);

    struct vrange_pair *pair = f->free_pair;
    MM_BUG_ON(pair->half[0].kind != VRANGE_NODE_UNUSED ||
              pair->half[1].kind != VRANGE_NODE_UNUSED);
    f->free_pair = (struct vrange_pair *)(void *)pair->half[0].u.link.next;
    f->nfree--;
    f->used++;
    vr->free_slots -= 2;
    vr->nodes_in_use += 2;
    if (f->nfree == 0)
        vrange_partial_remove(vr, f);
    return pair;
}

/* Drop both halves of a merged block; the frame goes back once empty. */
static inline void vrange_pair_put(struct vrange *vr, struct vrange_pair *pair)
{
    struct vrange_node_frame *f = vrange_frame_of(pair);
    MM_BUG_ON(f->used == 0);

    for (unsigned i = 0; i < 2; i++) {
        pair->half[i].kind = VRANGE_NODE_UNUSED;
        pair->half[i].parent = NULL;
    }
    pair->half[0].u.link.next = (struct vrange_node *)(void *)f->free_pair;
    f->free_pair = pair;
    if (f->nfree++ == 0)
        vrange_partial_add(vr, f);
    f->used--;
    vr->free_slots += 2;
    vr->nodes_in_use -= 2;
    if (f->used == 0)
        vrange_frame_release_locked(vr, f);
}

/* ------------------------------------------------- address hash (vrange_hash.c) */

#define VRANGE_HASH_MIN_BUCKETS VRANGE_HASH_SEG_BUCKETS
#define VRANGE_HASH_MAX_BUCKETS ((uint64_t)VRANGE_HASH_SEGS * VRANGE_HASH_SEG_BUCKETS)

int vrange_hash_reserve_locked(struct vrange *vr);
void vrange_hash_drop_locked(struct vrange *vr);
void vrange_hash_grow_one_locked(struct vrange *vr);
void vrange_hash_shrink_locked(struct vrange *vr);
void vrange_hash_check_locked(struct vrange *vr);

static inline uint32_t vrange_va_hash(uint64_t va)
{
    return (uint32_t)(((va >> PAGE_SHIFT) * UINT64_C(0x9e3779b97f4a7c15)) >> 32);
}

static inline uint64_t vrange_hash_nbuckets(const struct vrange *vr)
{
    return vr->hash_low + vr->hash_split;
}

static inline struct vrange_node **vrange_hash_bucket(struct vrange *vr, uint64_t b)
{
    return &vr->hash_seg[b / VRANGE_HASH_SEG_BUCKETS][b % VRANGE_HASH_SEG_BUCKETS];
}

/* Linear hashing: bucket h mod hash_low, or h mod 2*hash_low when that
 * one has already been split. */
static inline uint64_t vrange_hash_index(const struct vrange *vr, uint32_t h)
{
    uint64_t b = h & (vr->hash_low - 1);
    if (b < vr->hash_split)
        b = h & (2 * vr->hash_low - 1);
    return b;
}

/* Enter allocated leaf n (alloc_count already counts it). */
static inline void vrange_hash_insert_locked(struct vrange *vr, struct vrange_node *n)
{
    MM_ASSERT_LOCKED(&vr->lock);
    struct vrange_node **head =
        vrange_hash_bucket(vr, vrange_hash_index(vr, vrange_va_hash(vrange_node_va(vr, n))));
    n->u.use.hnext = *head;
    *head = n;
    uint64_t nb = vrange_hash_nbuckets(vr);
    if (vr->alloc_count > nb && nb < VRANGE_HASH_MAX_BUCKETS)
        vrange_hash_grow_one_locked(vr);
}

/* Remove allocated leaf n (alloc_count already discounts it). */
static inline void vrange_hash_remove_locked(struct vrange *vr, struct vrange_node *n)
{
    MM_ASSERT_LOCKED(&vr->lock);
    uint64_t va = vrange_node_va(vr, n);
    struct vrange_node **pp = vrange_hash_bucket(vr, vrange_hash_index(vr, vrange_va_hash(va)));
    while (*pp != n) {
        if (*pp == NULL)
            mm_panic("vrange_hash_remove_locked: %s: block %#lx order %u not in its bucket",
                     vr->name, (unsigned long)va, n->order);
        pp = &(*pp)->u.use.hnext;
        vr->steps++;
    }
    *pp = n->u.use.hnext;
    n->u.use.hnext = NULL;
    if (vr->alloc_count == 0)
        vrange_hash_drop_locked(vr);
    else if (4 * vr->alloc_count < vrange_hash_nbuckets(vr))
        vrange_hash_shrink_locked(vr);
}

/* The allocated (or claimed) block that starts at va, or NULL. */
static inline struct vrange_node *vrange_hash_find_locked(struct vrange *vr, uint64_t va)
{
    MM_ASSERT_LOCKED(&vr->lock);
    if (vr->hash_low == 0)
        return NULL;
    struct vrange_node *n = *vrange_hash_bucket(vr, vrange_hash_index(vr, vrange_va_hash(va)));
    while (n && vrange_node_va(vr, n) != va) {
        n = n->u.use.hnext;
        vr->steps++;
    }
    return n;
}

#endif
