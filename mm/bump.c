/*
 * bump.c - boot-time frame allocator: a cursor moving up through the usable
 * areas.
 *
 * State: for each area i, frames [start_i, used_end[i]) have been handed out
 * and [used_end[i], end_i) have not.  `cur` is the area allocation continues
 * in; areas before it are finished (fully used, or their tail was skipped by
 * a contiguous allocation that did not fit), areas after it are untouched.
 * Invariants: start_i <= used_end[i] <= end_i, used_end[i] == start_i for
 * i > cur, and used_frames == sum of (used_end[i] - start_i) / PAGE_SIZE.
 * Because addresses only grow, no frame is handed out twice, and the
 * remainder is simply every [used_end[i], end_i) that is non-empty.
 *
 * Who hands memory to whom: mm init computes the areas from the boot
 * information, bump gives frames to the mapper for the new kernel page
 * table, and bump_remainder() passes everything else to the buddy allocator.
 * Frames are not zeroed here.
 *
 * No locking: bump lives only during single-threaded early boot.
 */
#include <mm/bump.h>
#include <mm/log.h>

static int bump_fa_alloc(struct frame_allocator *fa, phys_addr_t *pa_out)
{
    return bump_alloc((struct bump_allocator *)fa, pa_out);
}

int bump_init(struct bump_allocator *bump, const struct mm_area_list *areas)
{
    if (mm_area_list_check(areas, "bump_init") != 0)
        return -MM_EINVAL;
    bump->fa.alloc = bump_fa_alloc;
    bump->fa.free = NULL;
    bump->areas = *areas;
    for (unsigned i = 0; i < areas->count; i++)
        bump->used_end[i] = areas->area[i].start.raw;
    bump->cur = 0;
    bump->used_frames = 0;
    bump->retired = false;
    return 0;
}

/* Frames left in area i. */
static uint64_t bump_free_in(const struct bump_allocator *bump, unsigned i)
{
    MM_BUG_ON(bump->used_end[i] < bump->areas.area[i].start.raw ||
              bump->used_end[i] > bump->areas.area[i].end.raw);
    return (bump->areas.area[i].end.raw - bump->used_end[i]) >> PAGE_SHIFT;
}

int bump_alloc_contig(struct bump_allocator *bump, uint64_t npages, phys_addr_t *pa_out)
{
    if (npages == 0) {
        mm_printf("bump_alloc_contig: npages == 0\n");
        return -MM_EINVAL;
    }
    if (bump->retired) {
        mm_printf("bump_alloc_contig: allocator retired by bump_remainder()\n");
        return -MM_ENOMEM;
    }
    for (unsigned i = bump->cur; i < bump->areas.count; i++) {
        if (bump_free_in(bump, i) < npages)
            continue;
        /* Areas cur..i-1 keep their unused tails; they go to the remainder. */
        bump->cur = i;
        *pa_out = PA(bump->used_end[i]);
        bump->used_end[i] += npages << PAGE_SHIFT;
        bump->used_frames += npages;
        return 0;
    }
    return -MM_ENOMEM;
}

int bump_alloc(struct bump_allocator *bump, phys_addr_t *pa_out)
{
    return bump_alloc_contig(bump, 1, pa_out);
}

uint64_t bump_used_frames(const struct bump_allocator *bump)
{
    return bump->used_frames;
}

void bump_remainder(struct bump_allocator *bump, struct mm_area_list *out)
{
    out->count = 0;
    for (unsigned i = 0; i < bump->areas.count; i++) {
        if (bump_free_in(bump, i) == 0)
            continue;
        out->area[out->count].start = PA(bump->used_end[i]);
        out->area[out->count].end = bump->areas.area[i].end;
        out->count++;
    }
    bump->retired = true;
}
