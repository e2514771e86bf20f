/*
 * mm/vrange.c - a buddy allocator of kernel virtual addresses over one
 * range [base, end) (see include/mm/vrange.h for the interface).
 *
 * Algorithm.  Every 1 GiB of the range is the root of a binary "split
 * tree".  A leaf is a block: free or allocated.  An inner node is a block
 * that was split into its two halves, child[0] (lower) and child[1]
 * (upper), which are buddies.  The buddy of a block is its sibling, stored
 * right next to it (mm/vrange_node.c), so no list is ever searched:
 *   alloc: take the head of the smallest non-empty free list of order >=
 *          the wanted one (a bitmap of non-empty orders + ctz), then split
 *          it down, pushing each upper half on its free list;
 *   free:  mark the leaf free; while its sibling is a free leaf, unlink
 *          the sibling, drop the pair and continue with the parent; push
 *          the final block on its free list;
 *   look-up of an allocated block by address (free, claim): a hash table
 *          keyed by address, chained through the allocated leaves
 *          (mm/vrange_hash.c).
 * Splits and merges cost at most VRANGE_MAX_ORDER steps each; nothing
 * depends on the number of blocks.  An alloc reserves every frame it needs
 * (one pair per split, the first hash segment) before touching any block,
 * so running dry gives -MM_ENOMEM with nothing changed; a free never needs
 * memory.
 *
 * Invariants (checked by vrange_check): the leaves under a root tile its
 * 1 GiB exactly; a node of order k is aligned to 4 KiB << k; no inner node
 * has two free leaves as children, so with nothing allocated the range is
 * exactly its roots, all free; free leaves are exactly the members of
 * free_head[order]; allocated and claimed leaves are exactly the members
 * of the hash table; a claimed leaf is never merged, freed or handed out
 * except by its claimer.
 *
 * Locking.  vr->lock (irqsave) protects the instance and all its nodes.
 * Inside it only the frame allocator is called, so its lock nests inside
 * ours.  Nothing is logged with the lock held: a failed look-up records
 * why in a struct find_diag and prints after unlocking.
 */
#include "vrange_impl.h"

/* Smallest order whose block holds size bytes (1 <= size <= VRANGE_MAX_SIZE). */
static unsigned size_to_order(uint64_t size)
{
    if (size <= PAGE_SIZE)
        return 0;
    return (unsigned)(64 - __builtin_clzll(size - 1)) - PAGE_SHIFT;
}

static inline bool va_in_range(const struct vrange *vr, uint64_t va)
{
    return va >= vr->base && va < vr->end;
}

/* Count one operation and its steps (for the O(log) bound in the stats). */
static inline void note_op(struct vrange *vr, uint64_t steps_before)
{
    uint64_t steps = vr->steps - steps_before;
    vr->ops++;
    if (steps > vr->max_op_steps)
        vr->max_op_steps = steps;
}

/* ------------------------------------------------------------- free lists */

static void free_push(struct vrange *vr, struct vrange_node *n)
{
    struct vrange_node *head = vr->free_head[n->order];
    n->kind = VRANGE_NODE_FREE;
    n->u.link.prev = NULL;
    n->u.link.next = head;
    if (head)
        head->u.link.prev = n;
    vr->free_head[n->order] = n;
    vr->free_count[n->order]++;
    vr->nonempty |= 1u << n->order;
}

static void free_unlink(struct vrange *vr, struct vrange_node *n)
{
    MM_BUG_ON(n->kind != VRANGE_NODE_FREE);
    MM_BUG_ON(vr->free_count[n->order] == 0);
    if (n->u.link.prev)
        n->u.link.prev->u.link.next = n->u.link.next;
    else
        vr->free_head[n->order] = n->u.link.next;
    if (n->u.link.next)
        n->u.link.next->u.link.prev = n->u.link.prev;
    if (--vr->free_count[n->order] == 0)
        vr->nonempty &= ~(1u << n->order);
}

/* --------------------------------------------------------------- the tree */

/* Split free block n (already off its list): n becomes inner, its upper
 * half goes on the free list, its lower half is returned (not on a list). */
static struct vrange_node *split_locked(struct vrange *vr, struct vrange_node *n)
{
    MM_ASSERT_LOCKED(&vr->lock);
    MM_BUG_ON(n->order == 0);
    unsigned half = n->order - 1u;
    struct vrange_pair *pair = vrange_pair_get(vr);
    struct vrange_node *lo = &pair->half[0], *hi = &pair->half[1];

    lo->parent = hi->parent = n;
    lo->order = hi->order = (uint8_t)half;
    lo->page = n->page;
    hi->page = n->page + (UINT32_C(1) << half);
    n->kind = VRANGE_NODE_INNER;
    n->u.child[0] = lo;
    n->u.child[1] = hi;
    free_push(vr, hi);
    vr->steps++;
    return lo;
}

/* The leaf whose block contains va (va inside the range). */
static struct vrange_node *leaf_containing(struct vrange *vr, uint64_t va)
{
    struct vrange_node *n = &vr->root[(va - vr->base) / VRANGE_MAX_SIZE];
    while (n->kind == VRANGE_NODE_INNER) {
        unsigned upper = (unsigned)(va >> (PAGE_SHIFT + n->order - 1u)) & 1u;
        n = n->u.child[upper];
    }
    MM_BUG_ON(n->kind != VRANGE_NODE_FREE && !vrange_node_allocated(n));
    return n;
}

/* Give allocated leaf n back and merge it with free buddies upwards. */
static void block_free_locked(struct vrange *vr, struct vrange_node *n)
{
    MM_ASSERT_LOCKED(&vr->lock);
    MM_BUG_ON(!vrange_node_allocated(n) || vr->alloc_count == 0);
    vr->alloc_count--;
    vr->alloc_bytes -= vrange_order_size(n->order);
    vrange_hash_remove_locked(vr, n);

    /* The buddy sits next to n: the parent is read only to merge. */
    uint64_t merges = 0;
    while (n->parent) {
        struct vrange_pair *pair = vrange_pair_of(n);
        struct vrange_node *buddy = &pair->half[vrange_half_index(n) ^ 1u];
        if (buddy->kind != VRANGE_NODE_FREE)
            break;
        struct vrange_node *parent = n->parent;
        MM_BUG_ON(parent->u.child[0] != &pair->half[0] || buddy->parent != parent);
        free_unlink(vr, buddy);
        vrange_pair_put(vr, pair);
        n = parent;
        merges++;
    }
    vr->steps += merges;
    free_push(vr, n);
}

/* Why find_block_locked refused, for report_find_error (printed after
 * the lock is dropped: a console line can take milliseconds). */
struct find_diag {
    uint64_t in_va, in_size;    /* -MM_ENOENT: the block that contains va */
    bool in_free;
    uint64_t block_size;        /* -MM_EINVAL for a wrong size: the real one */
};

/*
 * Find the allocated, unclaimed block that starts at va and has `size`
 * bytes (0: any size).  0 and *out, or the error with *d describing it.
 * Prints nothing.
 */
static int find_block_locked(struct vrange *vr, uint64_t va, uint64_t size,
                             struct vrange_node **out, struct find_diag *d)
{
    MM_ASSERT_LOCKED(&vr->lock);
    d->block_size = 0;
    if (!va_in_range(vr, va))
        return -MM_EFAULT;
    if (!is_aligned_u64(va, PAGE_SIZE))
        return -MM_EINVAL;
    struct vrange_node *n = vrange_hash_find_locked(vr, va);
    if (!n) {
        const struct vrange_node *in = leaf_containing(vr, va);
        d->in_va = vrange_node_va(vr, in);
        d->in_size = vrange_order_size(in->order);
        d->in_free = in->kind == VRANGE_NODE_FREE;
        return -MM_ENOENT;
    }
    if (size != 0 && size != vrange_order_size(n->order)) {
        d->block_size = vrange_order_size(n->order);
        return -MM_EINVAL;
    }
    if (n->kind == VRANGE_NODE_CLAIMED)
        return -MM_EBUSY;
    *out = n;
    return 0;
}

/* The one log line for a find_block_locked error; `fn` names the call. */
static void report_find_error(const struct vrange *vr, const char *fn, int err, uint64_t va,
                              uint64_t size, const struct find_diag *d)
{
    switch (err) {
    case -MM_EFAULT:
        mm_printf("%s(%s): va %#lx outside the range [%#lx, %#lx)\n", fn, vr->name,
                  (unsigned long)va, (unsigned long)vr->base, (unsigned long)vr->end);
        break;
    case -MM_EINVAL:
        if (d->block_size == 0)
            mm_printf("%s(%s): va %#lx not page aligned\n", fn, vr->name, (unsigned long)va);
        else
            mm_printf("%s(%s): va %#lx has %#lx bytes, caller says %#lx\n", fn, vr->name,
                      (unsigned long)va, (unsigned long)d->block_size, (unsigned long)size);
        break;
    case -MM_ENOENT:
        mm_printf("%s(%s): va %#lx is not an allocated block (inside %s block %#lx of %#lx "
                  "bytes)\n", fn, vr->name, (unsigned long)va, d->in_free ? "free" : "allocated",
                  (unsigned long)d->in_va, (unsigned long)d->in_size);
        break;
    default:
        mm_printf("%s(%s): va %#lx is claimed by another caller\n", fn, vr->name,
                  (unsigned long)va);
        break;
    }
}

/* The claimed block at va: a broken invariant if there is none. */
static struct vrange_node *claimed_block_locked(struct vrange *vr, const char *fn, uint64_t va)
{
    MM_ASSERT_LOCKED(&vr->lock);
    struct vrange_node *n = va_in_range(vr, va) ? vrange_hash_find_locked(vr, va) : NULL;
    if (!n || n->kind != VRANGE_NODE_CLAIMED)
        mm_panic("%s: %s: va %#lx is not a claimed block (kind %d)", fn, vr->name,
                 (unsigned long)va, n ? (int)n->kind : -1);
    return n;
}

/* ------------------------------------------------------------- public API */

int vrange_init(struct vrange *vr, const char *name, uint64_t base, uint64_t end,
                struct vrange_node *roots, uint64_t nroots, struct frame_allocator *fa)
{
    if (!vr || !roots || !fa || !fa->alloc || !fa->free || base >= end ||
        !is_aligned_u64(base, VRANGE_MAX_SIZE) || !is_aligned_u64(end, VRANGE_MAX_SIZE) ||
        end - base > VRANGE_MAX_RANGE || nroots != VRANGE_NR_ROOTS(end - base)) {
        mm_printf("vrange_init(%s): range [%#lx, %#lx), %lu roots at %p, frame allocator %p: "
                  "need 1 GiB aligned, at most 16 TiB, one root per GiB, an allocator that "
                  "can free\n", name ? name : "?", (unsigned long)base, (unsigned long)end,
                  (unsigned long)nroots, (void *)roots, (void *)fa);
        return -MM_EINVAL;
    }
    *vr = (struct vrange){ .lock = MM_SPINLOCK_INIT, .name = name ? name : "vrange",
                           .base = base, .end = end, .fa = fa, .nroots = nroots,
                           .root = roots };
    /* Push from the top so the list head is the lowest address. */
    for (uint64_t i = nroots; i-- > 0;) {
        struct vrange_node *r = &roots[i];
        *r = (struct vrange_node){ .parent = NULL, .order = VRANGE_MAX_ORDER };
        r->page = (uint32_t)((i * VRANGE_MAX_SIZE) >> PAGE_SHIFT);
        free_push(vr, r);
    }
    return 0;
}

/* Reserve what splitting a block of order `from` down to `order` needs.
 * 0, or -MM_ENOMEM with nothing changed. */
static inline int alloc_reserve_locked(struct vrange *vr, unsigned from, unsigned order)
{
    MM_ASSERT_LOCKED(&vr->lock);
    bool new_table = vr->hash_low == 0;
    if (new_table && vrange_hash_reserve_locked(vr) != 0)
        return -MM_ENOMEM;
    if (vr->free_slots < 2u * (from - order) &&
        vrange_pairs_reserve_locked(vr, from - order) != 0) {
        if (new_table)
            vrange_hash_drop_locked(vr);
        return -MM_ENOMEM;
    }
    return 0;
}

int vrange_alloc(struct vrange *vr, uint64_t size, struct vrange_block *out)
{
    if (size == 0 || size > VRANGE_MAX_SIZE) {
        mm_printf("vrange_alloc(%s): size %#lx not in 1..%#lx\n", vr->name,
                  (unsigned long)size, (unsigned long)VRANGE_MAX_SIZE);
        return -MM_EINVAL;
    }
    unsigned order = size_to_order(size);

    unsigned long flags = mm_spin_lock_irqsave(&vr->lock);
    uint32_t fit = vr->nonempty >> order;
    unsigned from = fit ? order + (unsigned)__builtin_ctz(fit) : 0;
    int err = fit ? alloc_reserve_locked(vr, from, order) : -MM_ENOMEM;
    if (err) {
        mm_spin_unlock_irqrestore(&vr->lock, flags);
        if (!fit)
            mm_printf("vrange_alloc(%s): no free block of %#lx bytes left\n", vr->name,
                      (unsigned long)vrange_order_size(order));
        else
            mm_printf("vrange_alloc(%s): no frame for the bookkeeping to split a %#lx-byte "
                      "block\n", vr->name, (unsigned long)vrange_order_size(from));
        return err;
    }
    uint64_t steps_before = vr->steps;
    struct vrange_node *n = vr->free_head[from];
    free_unlink(vr, n);
    while (n->order > order)
        n = split_locked(vr, n);
    n->kind = VRANGE_NODE_ALLOCATED;
    n->u.use.tag = 0;
    vr->alloc_count++;
    vr->alloc_bytes += vrange_order_size(order);
    vrange_hash_insert_locked(vr, n);
    note_op(vr, steps_before);
    out->va = VA(vrange_node_va(vr, n));
    out->size = vrange_order_size(order);
    mm_spin_unlock_irqrestore(&vr->lock, flags);
    return 0;
}

/*
 * The common body of vrange_free, vrange_release and vrange_claim: look
 * blk up and, if it is there and unclaimed, free it (free_any, or its tag
 * is 0: returns 0) or claim it (returns VRANGE_CLAIMED with *tag).
 */
static inline int take_block(struct vrange *vr, const char *fn, struct vrange_block blk,
                      bool free_any, bool free_untagged, uint64_t *tag)
{
    unsigned long flags = mm_spin_lock_irqsave(&vr->lock);
    uint64_t steps_before = vr->steps;
    struct vrange_node *n;
    struct find_diag d;
    int err = find_block_locked(vr, blk.va.raw, blk.size, &n, &d);
    if (err) {
        mm_spin_unlock_irqrestore(&vr->lock, flags);
        report_find_error(vr, fn, err, blk.va.raw, blk.size, &d);
        return err;
    }
    if (free_any || (free_untagged && n->u.use.tag == 0)) {
        block_free_locked(vr, n);
        note_op(vr, steps_before);
        mm_spin_unlock_irqrestore(&vr->lock, flags);
        return 0;
    }
    n->kind = VRANGE_NODE_CLAIMED;
    *tag = n->u.use.tag;
    mm_spin_unlock_irqrestore(&vr->lock, flags);
    return VRANGE_CLAIMED;
}

int vrange_free(struct vrange *vr, struct vrange_block blk)
{
    if (blk.size == 0) {
        mm_printf("vrange_free(%s): va %#lx with size 0\n", vr->name, (unsigned long)blk.va.raw);
        return -MM_EINVAL;
    }
    return take_block(vr, "vrange_free", blk, true, true, NULL);
}

int vrange_release(struct vrange *vr, struct vrange_block blk, uint64_t *tag)
{
    if (blk.size == 0) {
        mm_printf("vrange_release(%s): va %#lx with size 0\n", vr->name,
                  (unsigned long)blk.va.raw);
        return -MM_EINVAL;
    }
    return take_block(vr, "vrange_release", blk, false, true, tag);
}

int vrange_claim(struct vrange *vr, struct vrange_block blk, uint64_t *tag)
{
    if (blk.size == 0) {
        mm_printf("vrange_claim(%s): va %#lx with size 0\n", vr->name, (unsigned long)blk.va.raw);
        return -MM_EINVAL;
    }
    int err = take_block(vr, "vrange_claim", blk, false, false, tag);
    return err == VRANGE_CLAIMED ? 0 : err;
}

void vrange_unclaim(struct vrange *vr, virt_addr_t va, uint64_t tag)
{
    unsigned long flags = mm_spin_lock_irqsave(&vr->lock);
    struct vrange_node *n = claimed_block_locked(vr, "vrange_unclaim", va.raw);
    n->kind = VRANGE_NODE_ALLOCATED;
    n->u.use.tag = tag;
    mm_spin_unlock_irqrestore(&vr->lock, flags);
}

void vrange_free_claimed(struct vrange *vr, virt_addr_t va)
{
    unsigned long flags = mm_spin_lock_irqsave(&vr->lock);
    uint64_t steps_before = vr->steps;
    struct vrange_node *n = claimed_block_locked(vr, "vrange_free_claimed", va.raw);
    block_free_locked(vr, n);
    note_op(vr, steps_before);
    mm_spin_unlock_irqrestore(&vr->lock, flags);
}

/* The allocated block that starts at va and its tag, claiming it if asked,
 * in one hold of the lock (vrange_find and vrange_claim_at). */
static int lookup_block(struct vrange *vr, const char *fn, virt_addr_t va, bool claim,
                        struct vrange_block *out, uint64_t *tag)
{
    unsigned long flags = mm_spin_lock_irqsave(&vr->lock);
    struct vrange_node *n;
    struct find_diag d;
    int err = find_block_locked(vr, va.raw, 0, &n, &d);
    if (!err) {
        if (claim)
            n->kind = VRANGE_NODE_CLAIMED;
        out->va = va;
        out->size = vrange_order_size(n->order);
        *tag = n->u.use.tag;
    }
    mm_spin_unlock_irqrestore(&vr->lock, flags);
    if (err)
        report_find_error(vr, fn, err, va.raw, 0, &d);
    return err;
}

int vrange_claim_at(struct vrange *vr, virt_addr_t va, struct vrange_block *out, uint64_t *tag)
{
    return lookup_block(vr, "vrange_claim_at", va, true, out, tag);
}

int vrange_find(struct vrange *vr, virt_addr_t va, struct vrange_block *out, uint64_t *tag)
{
    return lookup_block(vr, "vrange_find", va, false, out, tag);
}

/* ----------------------------------------------------- queries and checks */

void vrange_stats(struct vrange *vr, struct vrange_stats *out)
{
    unsigned long flags = mm_spin_lock_irqsave(&vr->lock);
    out->free_bytes = 0;
    for (unsigned k = 0; k < VRANGE_NR_ORDERS; k++) {
        out->free_blocks[k] = vr->free_count[k];
        out->free_bytes += vr->free_count[k] * vrange_order_size(k);
    }
    out->alloc_blocks = vr->alloc_count;
    out->alloc_bytes = vr->alloc_bytes;
    out->node_frames = vr->node_frames;
    out->hash_frames = vr->hash_frames;
    out->nodes_in_use = vr->nodes_in_use;
    out->node_slots_free = vr->free_slots;
    out->ops = vr->ops;
    out->steps = vr->steps;
    out->max_op_steps = vr->max_op_steps;
    mm_spin_unlock_irqrestore(&vr->lock, flags);
}

struct census {
    uint64_t free_leaves[VRANGE_NR_ORDERS];
    uint64_t alloc_leaves, alloc_bytes, dynamic_nodes;
};

static void check_children(struct vrange *vr, const struct vrange_node *n, struct census *c);

/* Check the subtree under n (recursion depth <= VRANGE_MAX_ORDER + 1). */
static void check_subtree(struct vrange *vr, const struct vrange_node *n, struct census *c)
{
    uint64_t va = vrange_node_va(vr, n);
    if (n->order > VRANGE_MAX_ORDER || !is_aligned_u64(va, vrange_order_size(n->order)) ||
        !va_in_range(vr, va))
        mm_panic("vrange_check: %s: node %p has va %#lx order %u", vr->name, (const void *)n,
                 (unsigned long)va, n->order);
    if (n->parent)
        c->dynamic_nodes++;
    switch (n->kind) {
    case VRANGE_NODE_INNER:
        check_children(vr, n, c);
        break;
    case VRANGE_NODE_FREE:
        c->free_leaves[n->order]++;
        break;
    case VRANGE_NODE_ALLOCATED:
    case VRANGE_NODE_CLAIMED:
        c->alloc_leaves++;
        c->alloc_bytes += vrange_order_size(n->order);
        if (vrange_hash_find_locked(vr, va) != n)
            mm_panic("vrange_check: %s: allocated block %#lx order %u missing from the hash",
                     vr->name, (unsigned long)va, n->order);
        break;
    default:
        mm_panic("vrange_check: %s: node %p at %#lx has kind %u", vr->name, (const void *)n,
                 (unsigned long)va, n->kind);
    }
}

static void check_children(struct vrange *vr, const struct vrange_node *n, struct census *c)
{
    uint64_t va = vrange_node_va(vr, n);
    for (unsigned i = 0; i < 2; i++) {
        const struct vrange_node *ch = n->u.child[i];
        if (!ch || ch->parent != n || ch->order + 1u != n->order ||
            vrange_node_va(vr, ch) != va + i * vrange_order_size(ch->order) ||
            ch != n->u.child[0] + i)
            mm_panic("vrange_check: %s: bad child %u of block %#lx order %u", vr->name, i,
                     (unsigned long)va, n->order);
        check_subtree(vr, ch, c);
    }
    if (n->u.child[0]->kind == VRANGE_NODE_FREE && n->u.child[1]->kind == VRANGE_NODE_FREE)
        mm_panic("vrange_check: %s: free buddies at %#lx order %u were not merged", vr->name,
                 (unsigned long)va, n->order - 1u);
}

/* Each free list against the census of free leaves. */
static void check_free_lists(struct vrange *vr, const struct census *c)
{
    for (unsigned k = 0; k < VRANGE_NR_ORDERS; k++) {
        uint64_t len = 0;
        const struct vrange_node *prev = NULL;
        for (const struct vrange_node *n = vr->free_head[k]; n; n = n->u.link.next) {
            if (n->kind != VRANGE_NODE_FREE || n->order != k || n->u.link.prev != prev ||
                len > c->free_leaves[k])
                mm_panic("vrange_check: %s: free list %u broken at %#lx (entry %lu)",
                         vr->name, k, (unsigned long)vrange_node_va(vr, n),
                         (unsigned long)len);
            prev = n;
            len++;
        }
        if (len != c->free_leaves[k] || len != vr->free_count[k] ||
            ((vr->nonempty >> k) & 1u) != (len != 0))
            mm_panic("vrange_check: %s: order %u: %lu on list, %lu free leaves, count %lu",
                     vr->name, k, (unsigned long)len, (unsigned long)c->free_leaves[k],
                     (unsigned long)vr->free_count[k]);
    }
}

int vrange_check(struct vrange *vr)
{
    struct census c = { { 0 }, 0, 0, 0 };
    unsigned long flags = mm_spin_lock_irqsave(&vr->lock);

    for (uint64_t i = 0; i < vr->nroots; i++) {
        const struct vrange_node *r = &vr->root[i];
        if (r->parent || r->order != VRANGE_MAX_ORDER ||
            vrange_node_va(vr, r) != vr->base + i * VRANGE_MAX_SIZE)
            mm_panic("vrange_check: %s: root %lu has va %#lx order %u", vr->name,
                     (unsigned long)i, (unsigned long)vrange_node_va(vr, r), r->order);
        check_subtree(vr, r, &c);
    }
    check_free_lists(vr, &c);
    vrange_hash_check_locked(vr);
    if (c.alloc_leaves != vr->alloc_count || c.alloc_bytes != vr->alloc_bytes ||
        c.dynamic_nodes != vr->nodes_in_use ||
        vr->nodes_in_use + vr->free_slots != vr->node_frames * 2u * VRANGE_PAIRS_PER_FRAME)
        mm_panic("vrange_check: %s: %lu allocated (count %lu), %lu nodes (count %lu), "
                 "%lu free slots, %lu frames", vr->name,
                 (unsigned long)c.alloc_leaves, (unsigned long)vr->alloc_count,
                 (unsigned long)c.dynamic_nodes, (unsigned long)vr->nodes_in_use,
                 (unsigned long)vr->free_slots, (unsigned long)vr->node_frames);
    mm_spin_unlock_irqrestore(&vr->lock, flags);
    return 0;
}
