/*
 * mm/bump.h - the boot-time bump frame allocator.
 *
 * Hands out 4 KiB frames from an area list in increasing address order and
 * never takes any back.  It feeds the page-table mapper while the kernel
 * page table is built; afterwards bump_remainder() lists every frame it did
 * not hand out, to seed the buddy allocator.
 *
 * Frames are NOT zeroed: whoever needs zeroed memory (the mapper, for its
 * tables) clears it itself.
 */
#ifndef MM_BUMP_H
#define MM_BUMP_H

#include <mm/frame.h>
#include <mm/memmap.h>

struct bump_allocator {
    /* Must stay first: &bump->fa is what the mapper receives. */
    struct frame_allocator fa;
    struct mm_area_list areas;
    /* Frames [areas[i].start, used_end[i]) of area i were handed out. */
    uint64_t used_end[MM_MAX_AREAS];
    unsigned cur;           /* no frame is handed out from areas before cur */
    uint64_t used_frames;
    bool retired;           /* bump_remainder() was called */
};

/*
 * Set up `bump` over a copy of `areas`, which must be a valid area list
 * (mm_area_list_check: sorted, disjoint, non-adjacent, page-aligned,
 * non-empty areas).  Returns 0, or -MM_EINVAL (one log line) if the list
 * is malformed; *bump is then unchanged.
 */
int bump_init(struct bump_allocator *bump, const struct mm_area_list *areas);

/* The frame_allocator view (alloc = one frame, free = NULL). */
static inline struct frame_allocator *bump_frame_allocator(struct bump_allocator *bump)
{
    return &bump->fa;
}

/*
 * One frame, the lowest never handed out past the current position.
 * Returns 0 and *pa_out, or -MM_ENOMEM when exhausted or retired.
 */
int bump_alloc(struct bump_allocator *bump, phys_addr_t *pa_out);

/*
 * npages (>= 1) physically contiguous frames, starting at the current
 * position or, if the current area's rest is too short, at the start of the
 * first later area that can hold them.  Frames skipped that way are not
 * handed out later but do appear in bump_remainder().  Returns 0 and the
 * first frame in *pa_out, or -MM_ENOMEM (state unchanged) if no area can
 * hold npages, or -MM_EINVAL if npages == 0.
 */
int bump_alloc_contig(struct bump_allocator *bump, uint64_t npages, phys_addr_t *pa_out);

/* Number of frames handed out so far. */
uint64_t bump_used_frames(const struct bump_allocator *bump);

/*
 * Fill *out with exactly the frames never handed out, as a valid area list
 * (mm_area_list_check).  Retires the allocator: the caller now
 * owns those frames, so later allocations fail with -MM_ENOMEM.  May be
 * called again; it returns the same list.
 */
void bump_remainder(struct bump_allocator *bump, struct mm_area_list *out);

#endif
