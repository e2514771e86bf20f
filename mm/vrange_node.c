/*
 * mm/vrange_node.c - storage for the split-tree nodes of a vrange.
 *
 * Algorithm.  Nodes below the roots live in 4 KiB "node frames" taken one
 * at a time from the instance's frame allocator.  A frame is a 64-byte
 * header and 63 pairs; a pair is a block's two halves, side by side in one
 * cache line (struct vrange_pair), because a split makes both and a merge
 * drops both.  Frames with free pairs are on vr->partial; pairs are taken
 * from its head (vrange_pair_get) and given back to their own frame
 * (vrange_pair_put, in mm/vrange_impl.h).
 *
 * Invariants: vr->free_slots counts the free node slots of every frame
 * held (two per free pair), vr->node_frames the frames held; a frame is
 * on vr->partial iff it has a free pair; a frame with no pair in use goes
 * back to the frame allocator at once, so an idle instance holds none.
 *
 * Locking: everything here runs with vr->lock held; the frame allocator's
 * lock nests inside it.
 */
#include "vrange_impl.h"

/* Turn a fresh frame into a header and a chain of free pairs. */
static struct vrange_node_frame *frame_setup(phys_addr_t pa)
{
    struct vrange_node_frame *f = pa_to_ptr(pa);
    struct vrange_pair *pairs =
        (struct vrange_pair *)(void *)((char *)f + VRANGE_FRAME_HEADER);
    MM_BUG_ON(((uintptr_t)f & (PAGE_SIZE - 1)) != 0);

    f->free_pair = NULL;
    for (uint32_t i = VRANGE_PAIRS_PER_FRAME; i-- > 0;) {
        pairs[i].half[0].kind = pairs[i].half[1].kind = VRANGE_NODE_UNUSED;
        pairs[i].half[0].u.link.next = (struct vrange_node *)(void *)f->free_pair;
        f->free_pair = &pairs[i];
    }
    f->used = 0;
    f->nfree = VRANGE_PAIRS_PER_FRAME;
    f->prev = f->next = NULL;
    return f;
}

/* Give an empty node frame back to the frame allocator. */
void vrange_frame_release_locked(struct vrange *vr, struct vrange_node_frame *f)
{
    MM_ASSERT_LOCKED(&vr->lock);
    if (f->used != 0 || f->nfree != VRANGE_PAIRS_PER_FRAME)
        mm_panic("vrange_frame_release_locked: %s: frame %p has %u pairs used, %u free",
                 vr->name, (void *)f, f->used, f->nfree);
    vrange_partial_remove(vr, f);
    vr->free_slots -= 2u * f->nfree;
    vr->node_frames--;
    vr->fa->free(vr->fa, direct_ptr_to_pa(f));
}

/*
 * Make sure at least `npairs` free pairs exist, taking frames from the
 * frame allocator.  On failure the frames taken by this call are given
 * back and -MM_ENOMEM is returned: the instance is as before.
 */
int vrange_pairs_reserve_locked(struct vrange *vr, uint64_t npairs)
{
    uint64_t added = 0;
    MM_ASSERT_LOCKED(&vr->lock);

    while (vr->free_slots < 2u * npairs) {
        phys_addr_t pa;
        if (frame_alloc(vr->fa, &pa) != 0) {
            /* The new frames sit at the head of the partial list, unused. */
            while (added-- > 0)
                vrange_frame_release_locked(vr, vr->partial);
            return -MM_ENOMEM;
        }
        vrange_partial_add(vr, frame_setup(pa));
        vr->free_slots += 2u * VRANGE_PAIRS_PER_FRAME;
        vr->node_frames++;
        added++;
    }
    return 0;
}
