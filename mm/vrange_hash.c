/*
 * mm/vrange_hash.c - the address hash of a vrange: allocated blocks by
 * start address, chained through the allocated leaves (u.use.hnext).
 *
 * Algorithm: linear hashing (Litwin 1980), so the table grows and shrinks
 * one bucket at a time and never rehashes everything at once.  Buckets
 * [0, hash_low + hash_split) are in use; a key goes to bucket h mod
 * hash_low, or h mod 2*hash_low when that is below hash_split.  With more
 * than 1 block per bucket, bucket hash_split is split in two; below 1/4
 * per bucket the last buckets are merged back, up to HASH_SHRINK_STEPS per
 * removal.  A removal lowers that 1/4 bound by 4 buckets, so merging up to
 * 4 keeps the table within it whatever the order of allocs and frees: it
 * never holds more than 4 buckets per block (or one segment).  Buckets
 * live in 4 KiB segments of 512 heads taken from the frame allocator as
 * the table grows; a failed segment allocation only means the table does
 * not grow this time.  With no block allocated the table is dropped.
 *
 * Invariants (vrange_hash_check_locked): hash_low is 0 (no table) or a
 * power of two >= one segment, hash_split < hash_low; exactly the
 * segments covering the buckets in use exist; every allocated or claimed
 * leaf is in the bucket its address hashes to, and nothing else is.
 *
 * Locking: everything here runs with vr->lock held.  Insert, remove and
 * find are static inline in mm/vrange_impl.h.
 */
#include "vrange_impl.h"

#define HASH_SHRINK_STEPS 4u    /* see the overview */

/* Give segment i a fresh frame of empty buckets.  0 or -MM_ENOMEM. */
static int hash_seg_alloc(struct vrange *vr, uint64_t i)
{
    phys_addr_t pa;
    MM_BUG_ON(vr->hash_seg[i] != NULL);
    if (frame_alloc(vr->fa, &pa) != 0)
        return -MM_ENOMEM;
    struct vrange_node **seg = pa_to_ptr(pa);
    for (uint64_t b = 0; b < VRANGE_HASH_SEG_BUCKETS; b++)
        seg[b] = NULL;
    vr->hash_seg[i] = seg;
    vr->hash_frames++;
    return 0;
}

static void hash_seg_free(struct vrange *vr, uint64_t i)
{
    MM_BUG_ON(vr->hash_seg[i] == NULL);
    vr->fa->free(vr->fa, direct_ptr_to_pa(vr->hash_seg[i]));
    vr->hash_seg[i] = NULL;
    vr->hash_frames--;
}

/* The table exists (it has at least one segment).  0 or -MM_ENOMEM. */
int vrange_hash_reserve_locked(struct vrange *vr)
{
    MM_ASSERT_LOCKED(&vr->lock);
    if (vr->hash_low != 0)
        return 0;
    int err = hash_seg_alloc(vr, 0);
    if (err)
        return err;
    vr->hash_low = VRANGE_HASH_MIN_BUCKETS;
    vr->hash_split = 0;
    return 0;
}

/* Drop the whole table (it holds no block). */
void vrange_hash_drop_locked(struct vrange *vr)
{
    MM_ASSERT_LOCKED(&vr->lock);
    for (uint64_t i = 0; i * VRANGE_HASH_SEG_BUCKETS < vrange_hash_nbuckets(vr); i++) {
        for (uint64_t b = 0; b < VRANGE_HASH_SEG_BUCKETS; b++)
            MM_BUG_ON(vr->hash_seg[i][b] != NULL);
        hash_seg_free(vr, i);
    }
    vr->hash_low = vr->hash_split = 0;
}

/* Split bucket hash_split into itself and bucket hash_low + hash_split. */
void vrange_hash_grow_one_locked(struct vrange *vr)
{
    MM_ASSERT_LOCKED(&vr->lock);
    uint64_t to = vr->hash_low + vr->hash_split;
    if (to % VRANGE_HASH_SEG_BUCKETS == 0 &&
        hash_seg_alloc(vr, to / VRANGE_HASH_SEG_BUCKETS) != 0)
        return;     /* no frame: stay at this size, chains just get longer */

    struct vrange_node *chain = *vrange_hash_bucket(vr, vr->hash_split);
    *vrange_hash_bucket(vr, vr->hash_split) = NULL;
    uint64_t mask = 2 * vr->hash_low - 1;
    while (chain) {
        struct vrange_node *n = chain;
        chain = n->u.use.hnext;
        struct vrange_node **head =
            vrange_hash_bucket(vr, vrange_va_hash(vrange_node_va(vr, n)) & mask);
        n->u.use.hnext = *head;
        *head = n;
        vr->steps++;
    }
    if (++vr->hash_split == vr->hash_low) {
        vr->hash_low *= 2;
        vr->hash_split = 0;
    }
}

/* Merge the last bucket back into its partner. */
static void hash_shrink_one(struct vrange *vr)
{
    if (vr->hash_split == 0) {
        vr->hash_low /= 2;
        vr->hash_split = vr->hash_low;
    }
    vr->hash_split--;
    uint64_t from = vr->hash_low + vr->hash_split;
    struct vrange_node *chain = *vrange_hash_bucket(vr, from);
    struct vrange_node **head = vrange_hash_bucket(vr, vr->hash_split);
    while (chain) {
        struct vrange_node *n = chain;
        chain = n->u.use.hnext;
        n->u.use.hnext = *head;
        *head = n;
        vr->steps++;
    }
    *vrange_hash_bucket(vr, from) = NULL;
    if (from % VRANGE_HASH_SEG_BUCKETS == 0)
        hash_seg_free(vr, from / VRANGE_HASH_SEG_BUCKETS);
}

/* After a removal: merge buckets while below 1/4 block per bucket. */
void vrange_hash_shrink_locked(struct vrange *vr)
{
    MM_ASSERT_LOCKED(&vr->lock);
    for (unsigned k = 0; k < HASH_SHRINK_STEPS && 4 * vr->alloc_count < vrange_hash_nbuckets(vr) &&
                         vrange_hash_nbuckets(vr) > VRANGE_HASH_MIN_BUCKETS; k++)
        hash_shrink_one(vr);
}

/* Shape of the table and the place of every entry (for vrange_check). */
void vrange_hash_check_locked(struct vrange *vr)
{
    MM_ASSERT_LOCKED(&vr->lock);
    uint64_t nb = vrange_hash_nbuckets(vr), entries = 0, segs = 0;
    if (vr->hash_low == 0 ? (vr->hash_split != 0 || vr->alloc_count != 0)
                          : (!is_pow2_u64(vr->hash_low) ||
                             vr->hash_low < VRANGE_HASH_MIN_BUCKETS ||
                             vr->hash_split >= vr->hash_low || nb > VRANGE_HASH_MAX_BUCKETS))
        mm_panic("vrange_check: %s: hash low %lu split %lu with %lu blocks", vr->name,
                 (unsigned long)vr->hash_low, (unsigned long)vr->hash_split,
                 (unsigned long)vr->alloc_count);
    for (uint64_t i = 0; i < VRANGE_HASH_SEGS; i++) {
        bool used = i * VRANGE_HASH_SEG_BUCKETS < nb;
        if ((vr->hash_seg[i] != NULL) != used)
            mm_panic("vrange_check: %s: hash segment %lu %s with %lu buckets", vr->name,
                     (unsigned long)i, used ? "missing" : "left over", (unsigned long)nb);
        segs += used;
    }
    for (uint64_t b = 0; b < nb; b++) {
        for (const struct vrange_node *n = *vrange_hash_bucket(vr, b); n; n = n->u.use.hnext) {
            uint64_t va = vrange_node_va(vr, n);
            if (!vrange_node_allocated(n) || vrange_hash_index(vr, vrange_va_hash(va)) != b ||
                ++entries > vr->alloc_count)
                mm_panic("vrange_check: %s: hash bucket %lu holds block %#lx kind %u",
                         vr->name, (unsigned long)b, (unsigned long)va, n->kind);
        }
    }
    if (entries != vr->alloc_count || segs != vr->hash_frames)
        mm_panic("vrange_check: %s: hash has %lu entries in %lu frames, expected %lu in %lu",
                 vr->name, (unsigned long)entries, (unsigned long)segs,
                 (unsigned long)vr->alloc_count, (unsigned long)vr->hash_frames);
}
