/*
 * ref_buddy.h - a C port of the reference design's (DragonOS) buddy frame
 * allocator, for benchmarks only: the baseline that bench_frames.c runs
 * side by side with this project's buddy.  See ref_buddy.c for the
 * algorithm and where the port departs from the original.
 */
#ifndef REF_BUDDY_H
#define REF_BUDDY_H

#include <mm/frame.h>
#include <mm/memmap.h>
#include <mm/spinlock.h>
#include <mm/types.h>

#define REF_MIN_SHIFT  12                         /* 4 KiB */
#define REF_MAX_SHIFT  31                         /* orders [12, 31): up to 1 GiB */
#define REF_NR_ORDERS  (REF_MAX_SHIFT - REF_MIN_SHIFT)

struct ref_buddy {
    mm_spinlock_t lock;
    uint64_t free_area[REF_NR_ORDERS];   /* pa of the first list page per order */
    uint64_t total_npages;
};

/* Seed r with the areas (physical address 0 must not be in them: it is
 * the null of the list links).  Takes one list page per order from the
 * start of the first area.  Returns 0, or -1 if that area is too small. */
int ref_buddy_init(struct ref_buddy *r, const struct mm_area_list *areas);

/* npages: a power of two, 1 .. 2^18.  0 and *pa_out set, or -1. */
int ref_buddy_alloc(struct ref_buddy *r, uint64_t npages, uint64_t *pa_out);
void ref_buddy_free(struct ref_buddy *r, uint64_t pa, uint64_t npages);

/* Frames in the free lists (walks every list page). */
uint64_t ref_buddy_free_npages(struct ref_buddy *r);

#endif
