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

/* Highest physical address an area may reach: 2^52, the architectural
 * limit of x86_64 physical addresses. */
#define MM_AREA_MAX_PA (UINT64_C(1) << 52)

/*
 * The one definition of a well-formed area list, checked by every
 * allocator that takes one: count <= MM_MAX_AREAS; each area page-aligned,
 * non-empty and ending at or below MM_AREA_MAX_PA; areas sorted by start,
 * disjoint and non-adjacent (area i ends strictly below area i+1's start:
 * adjacent areas must be merged into one).  An empty list is well formed.
 * Returns 0, or -MM_EINVAL after one log line that starts with `who` and
 * names the first offending area.
 */
int mm_area_list_check(const struct mm_area_list *l, const char *who);

static inline uint64_t mm_area_size(const struct mm_area *a)
{
    return a->end.raw - a->start.raw;
}

#endif
