/*
 * mm/memmap.h - lists of physical address ranges ("areas"), and what the
 * firmware memory map says about physical memory.
 *
 * The usable-RAM areas are computed here from the parsed firmware map
 * (mm/multiboot2.h); the bump allocator consumes them from the bottom; what
 * it leaves over is handed to the buddy allocator as another area list.
 * An area list is kept sorted by start, with disjoint, non-adjacent,
 * page-aligned, non-empty areas (mm_area_list_check is the one definition).
 *
 * The same operations also work on arrays of byte ranges (not
 * page-aligned), which is how the firmware map's entries are combined
 * before they are rounded to pages.
 */
#ifndef MM_MEMMAP_H
#define MM_MEMMAP_H

#include <mm/types.h>

struct mb2_info;

#define MM_MAX_AREAS 128

struct mm_area {
    phys_addr_t start;   /* page-aligned in an area list */
    phys_addr_t end;     /* exclusive, > start */
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

/*
 * Add the page-aligned range [start, end) to the valid list *l, merging it
 * with every area it overlaps or touches.  Returns 0, -MM_EINVAL (logged:
 * unaligned, empty or above MM_AREA_MAX_PA range, or *l not valid) or
 * -MM_ENOMEM (not logged: the list is full and nothing merges); *l is
 * unchanged on failure.  O(count).
 */
int mm_area_list_add(struct mm_area_list *l, phys_addr_t start, phys_addr_t end);

/*
 * Remove the page-aligned range [start, end) (end >= start; it may cover
 * no area at all) from the valid list *l, splitting an area it lies
 * inside.  Returns 0, -MM_EINVAL (logged: unaligned or reversed range, or
 * *l not valid) or -MM_ENOMEM (not logged: a split needs a slot and the
 * list is full); *l is unchanged on failure.  O(count).
 */
int mm_area_list_subtract(struct mm_area_list *l, phys_addr_t start, phys_addr_t end);

/*
 * Sort a[0..n) by start (then end), in place: heapsort, O(n log n)
 * comparisons, no extra memory.  Any byte ranges.
 */
void mm_areas_sort(struct mm_area *a, unsigned n);

/*
 * a[0..n) sorted by start: merge ranges that overlap or touch and drop
 * empty ones, in place, O(n).  Returns the new count; the result is sorted,
 * disjoint and non-adjacent.
 */
unsigned mm_areas_merge(struct mm_area *a, unsigned n);

/*
 * a[0..n) sorted, disjoint: does one range hold all of [start, end)?
 * Binary search, O(log n).  An empty [start, end) (end <= start) is held.
 */
bool mm_areas_cover(const struct mm_area *a, unsigned n, uint64_t start, uint64_t end);

/*
 * Steps (comparisons, element moves, entries read) taken by the functions
 * of this file since start-up: a cost meter for tests that bound the work
 * of an algorithm without timing it.  Not locked; only meaningful while one
 * CPU uses these functions (boot, host tests).
 */
uint64_t mm_memmap_steps(void);

/* ------------------------------------------------ the firmware map's view */

/* Which firmware map entries a query looks at (MB2_MEM_* types). */
enum memmap_class {
    MEMMAP_ANY,             /* every entry, whatever its type */
    MEMMAP_RAM,             /* type 1, available */
    MEMMAP_RAM_OR_ACPI,     /* types 1, 3, 4: what the direct map must cover */
    MEMMAP_NOT_RAM,         /* every type but 1 (unknown types too) */
};

/* Does map type `type` belong to class c? */
bool memmap_type_in(uint32_t type, enum memmap_class c);

/*
 * The union of the bytes of the class-c entries of the chosen map, as a
 * sorted list of disjoint, non-adjacent byte ranges written to buf.
 * Precondition: buf holds at least as many ranges as there are class-c
 * entries (MB2_MAX_MAP_ENTRIES always suffices; panics otherwise).
 * Returns the number of ranges.  O(n log n) for n entries.
 */
unsigned memmap_fw_union(const struct mb2_info *info, enum memmap_class c,
                         struct mm_area *buf, unsigned cap);

/* Does some class-c entry cover a byte of [start, end)?  O(n). */
bool memmap_fw_overlaps(const struct mb2_info *info, enum memmap_class c,
                        uint64_t start, uint64_t end);

/* ------------------------------------------------------- usable RAM areas */

/* A physical byte range [start, end) that must not become usable RAM. */
struct mb2_reserved {
    phys_addr_t start;
    phys_addr_t end;            /* exclusive; end >= start */
    const char *what;           /* for log lines, may be NULL */
};

struct mb2_usable_stats {
    uint64_t ram_bytes;         /* firmware type-1 RAM not covered by other types */
    uint64_t usable_bytes;      /* sum of the output areas */
    uint64_t reserved_bytes;    /* ram_bytes - usable_bytes - dropped_bytes */
    unsigned dropped_areas;     /* areas lost to the MM_MAX_AREAS limit */
    uint64_t dropped_bytes;
};

/*
 * Compute the usable RAM areas below `limit` (page-aligned, at most
 * MM_AREA_MAX_PA): bytes that the firmware map lists as type 1 (available)
 * and no entry of another type covers, minus the low 1 MiB, the information
 * structure, every module (any number) and the caller's `reserved` ranges
 * (typically the kernel image), page-aligned inwards.  The result is a
 * valid area list (mm_area_list_check).  If more than MM_MAX_AREAS areas
 * result, the largest are kept and each dropped one is logged.
 * `stats` may be NULL; nreserved may be 0 (reserved may then be NULL).
 * Returns 0, or -MM_EINVAL (one log line) if a reserved range has
 * end < start or limit is malformed; *out is then left unchanged.
 * O(n log n + (modules + nreserved) * MM_MAX_AREAS) for n map entries.
 * Uses one static scratch buffer: not reentrant (boot CPU only).
 */
int memmap_usable_areas(const struct mb2_info *info, uint64_t limit,
                        const struct mb2_reserved *reserved, unsigned nreserved,
                        struct mm_area_list *out, struct mb2_usable_stats *stats);

/* memmap_usable_areas() with limit MM_AREA_MAX_PA: for kernels that build
 * their own page tables (Path B of docs/INTEGRATION.md). */
int mb2_usable_areas(const struct mb2_info *info,
                     const struct mb2_reserved *reserved, unsigned nreserved,
                     struct mm_area_list *out, struct mb2_usable_stats *stats);

/* One log line: usable MiB, number of areas, reserved and dropped amounts
 * (stats may be NULL). */
void mb2_print_summary(const struct mm_area_list *areas,
                       const struct mb2_usable_stats *stats);

#endif
