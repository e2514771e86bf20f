/*
 * mm/memmap.h - lists of physical address ranges ("areas").
 *
 * The multiboot2 parser produces the usable-RAM areas; the bump allocator
 * consumes them from the bottom; what it leaves over is handed to the buddy
 * allocator as another area list.  An area list is kept sorted by start,
 * with disjoint, non-adjacent, page-aligned, non-empty areas.
 */
#ifndef MM_MEMMAP_H
#define MM_MEMMAP_H

#include <mm/types.h>

#define MM_MAX_AREAS 128

struct mm_area {
    phys_addr_t start;   /* page-aligned */
    phys_addr_t end;     /* exclusive, page-aligned, > start */
};

struct mm_area_list {
    unsigned count;
    struct mm_area area[MM_MAX_AREAS];
};

static inline uint64_t mm_area_size(const struct mm_area *a)
{
    return a->end.raw - a->start.raw;
}

#endif
