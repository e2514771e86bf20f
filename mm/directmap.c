/*
 * directmap.c - which physical bytes the direct map covers (see
 * mm/directmap.h for the contracts).
 *
 * The direct map maps physical address pa at MM_DIRECT_MAP_BASE + pa.  It
 * must cover every byte of RAM and of ACPI tables, and it may hold nothing
 * at or above MM_DIRECT_MAP_MAX_PA: beyond that the addresses would run
 * into the MMIO pool (pa >= 33 TiB) or out of the kernel half (pa >= 128
 * TiB wraps to virtual address 0), and the buddy allocator spans at most
 * 16 TiB anyway.
 *
 * Algorithm.  directmap_collect adds each RAM/ACPI entry, clipped to the
 * limit and rounded out to pages, into a sorted list of disjoint ranges,
 * merging what touches (insertion, O(n) per entry).  Each range is then
 * widened to 2 MiB boundaries where firmware_run_end() shows that the extra
 * bytes are described by the map (a chain of entries with no hole), and the
 * list is sorted and merged once more.  Because the limit is 2 MiB aligned,
 * widening never crosses it.  The bytes ignored above the limit are
 * measured by walking the runs of RAM/ACPI coverage upwards from it, so
 * overlapping entries are counted once.  Each chain step scans the n map
 * entries; a widening check takes one or two steps on real maps, so the
 * whole is O(n^2) there (O(n^3) for a contrived map of n tiny adjacent
 * entries, n <= 4096), with no allocator and no stack arrays (the boot
 * stack is small).
 *
 * Invariants of a struct directmap_ranges: see mm/directmap.h.
 *
 * No locking, no state: the functions read their arguments and write only
 * their outputs.  mm_init calls them on the boot CPU; afterwards its range
 * list is read-only.
 */
#include <mm/directmap.h>
#include <mm/log.h>
#include <mm/mmio.h>
#include <mm/paging.h>

#define LEGACY_END (1 * MiB)     /* end of the real-mode address space */
/* The legacy VGA window: the fixed-range MTRRs make it uncached on PCs. */
#define VGA_START  UINT64_C(0xa0000)
#define VGA_END    UINT64_C(0xc0000)

_Static_assert(MM_DIRECT_MAP_BASE + MM_DIRECT_MAP_MAX_PA <= MMIO_POOL_BASE,
               "the direct map must end below the MMIO pool");
_Static_assert(MM_DIRECT_MAP_MAX_PA % PAGE_2M_SIZE == 0,
               "the direct-map limit must be 2 MiB aligned: widening may not cross it");

static bool is_ram_or_acpi(uint32_t type)
{
    return type == MB2_MEM_AVAILABLE || type == MB2_MEM_ACPI_RECLAIM ||
           type == MB2_MEM_ACPI_NVS;
}

/*
 * The end of the run of bytes from pos upwards that firmware entries cover
 * without a gap (only RAM/ACPI entries if ram_only), stopping once it
 * reaches `stop`.  Returns pos if no entry covers byte pos.
 */
static uint64_t firmware_run_end(const struct mb2_info *info, uint64_t pos, uint64_t stop,
                                 bool ram_only)
{
    while (pos < stop) {
        uint64_t next = pos;
        for (unsigned i = 0; i < info->map_count; i++) {
            struct mb2_mmap_entry e;
            if (mb2_map_entry(info, i, &e) != 0 || (ram_only && !is_ram_or_acpi(e.type)))
                continue;
            if (e.base <= pos && e.base + e.length > next)
                next = e.base + e.length;
        }
        if (next == pos)
            break;
        pos = next;
    }
    return pos;
}

/* True if every byte of [start, end) is described by some firmware map
 * entry (of any type) or lies in the legacy first MiB. */
static bool firmware_covers(const struct mb2_info *info, uint64_t start, uint64_t end)
{
    uint64_t pos = start < LEGACY_END ? LEGACY_END : start;
    return pos >= end || firmware_run_end(info, pos, end, false) >= end;
}

/* Size of the union of the RAM/ACPI entries' bytes at or above `from`. */
static uint64_t ram_bytes_from(const struct mb2_info *info, uint64_t from)
{
    uint64_t total = 0, pos = from;
    for (;;) {
        uint64_t run_end = firmware_run_end(info, pos, UINT64_MAX, true);
        total += run_end - pos;
        pos = run_end;
        /* The next RAM/ACPI entry starting above pos, if any. */
        bool found = false;
        uint64_t next = 0;
        for (unsigned i = 0; i < info->map_count; i++) {
            struct mb2_mmap_entry e;
            if (mb2_map_entry(info, i, &e) == 0 && is_ram_or_acpi(e.type) && e.length != 0 &&
                e.base > pos && (!found || e.base < next)) {
                next = e.base;
                found = true;
            }
        }
        if (!found)
            return total;
        pos = next;
    }
}

/* Add [start, end) to the sorted list of disjoint ranges, merging every
 * range it overlaps or touches.  Returns false if the list is full. */
static bool range_add(struct directmap_ranges *l, uint64_t start, uint64_t end)
{
    unsigned i = 0;
    while (i < l->count && l->area[i].end.raw < start)
        i++;
    unsigned j = i;
    while (j < l->count && l->area[j].start.raw <= end) {
        if (l->area[j].start.raw < start)
            start = l->area[j].start.raw;
        if (l->area[j].end.raw > end)
            end = l->area[j].end.raw;
        j++;
    }
    unsigned merged = j - i;
    if (merged == 0) {
        if (l->count == DIRECTMAP_MAX_RANGES)
            return false;
        for (unsigned k = l->count; k > i; k--)
            l->area[k] = l->area[k - 1];
        l->count++;
    } else {
        for (unsigned k = i + 1; k + merged - 1 < l->count; k++)
            l->area[k] = l->area[k + merged - 1];
        l->count -= merged - 1;
    }
    l->area[i].start = PA(start);
    l->area[i].end = PA(end);
    return true;
}

/* Restore the list invariants after ranges grew in place: sort by start
 * (insertion sort, linear on the almost sorted input) and merge ranges
 * that overlap or touch. */
static void sort_and_merge(struct directmap_ranges *l)
{
    for (unsigned i = 1; i < l->count; i++) {
        struct mm_area a = l->area[i];
        unsigned k = i;
        for (; k > 0 && l->area[k - 1].start.raw > a.start.raw; k--)
            l->area[k] = l->area[k - 1];
        l->area[k] = a;
    }
    unsigned n = 0;
    for (unsigned i = 0; i < l->count; i++) {
        if (n > 0 && l->area[i].start.raw <= l->area[n - 1].end.raw) {
            if (l->area[i].end.raw > l->area[n - 1].end.raw)
                l->area[n - 1].end = l->area[i].end;
        } else {
            l->area[n++] = l->area[i];
        }
    }
    l->count = n;
}

int directmap_collect(const struct mb2_info *info, unsigned phys_bits, struct directmap_ranges *out)
{
    (void)phys_bits;        /* TODO(issue 11, defect 6): ignore RAM at or above 2^phys_bits */
    out->count = 0;
    out->ignored_bytes = 0;
    for (unsigned i = 0; i < info->map_count; i++) {
        struct mb2_mmap_entry e;
        if (mb2_map_entry(info, i, &e) != 0 || e.length == 0 || !is_ram_or_acpi(e.type) ||
            e.base >= MM_DIRECT_MAP_MAX_PA)
            continue;
        uint64_t end = e.base + e.length;     /* does not wrap (mb2_map_entry) */
        if (end > MM_DIRECT_MAP_MAX_PA)
            end = MM_DIRECT_MAP_MAX_PA;
        if (!range_add(out, align_down_u64(e.base, PAGE_SIZE), align_up_u64(end, PAGE_SIZE))) {
            mm_printf("directmap_collect: more than %u disjoint RAM/ACPI ranges in the "
                      "firmware map (%u entries): entry %u [%#llx, %#llx) does not fit\n",
                      DIRECTMAP_MAX_RANGES, info->map_count, i, (unsigned long long)e.base,
                      (unsigned long long)(e.base + e.length));
            return -MM_ENOMEM;
        }
    }

    /* Widen each range on its own, from its own bounds; then re-merge. */
    for (unsigned i = 0; i < out->count; i++) {
        uint64_t start = out->area[i].start.raw, end = out->area[i].end.raw;
        uint64_t wide_start = align_down_u64(start, PAGE_2M_SIZE);
        uint64_t wide_end = align_up_u64(end, PAGE_2M_SIZE);
        if (wide_start < start && firmware_covers(info, wide_start, start))
            out->area[i].start = PA(wide_start);
        if (wide_end > end && firmware_covers(info, end, wide_end))
            out->area[i].end = PA(wide_end);
    }
    sort_and_merge(out);

    out->ignored_bytes = ram_bytes_from(info, MM_DIRECT_MAP_MAX_PA);
    if (out->ignored_bytes)
        mm_printf("mm: ignoring %llu MiB of RAM/ACPI at or above %#llx: the direct map "
                  "and the buddy allocator end at MM_DIRECT_MAP_MAX_PA (16 TiB)\n",
                  (unsigned long long)((out->ignored_bytes + MiB - 1) / MiB),
                  (unsigned long long)MM_DIRECT_MAP_MAX_PA);
    return 0;
}

bool directmap_contains(const struct directmap_ranges *r, phys_addr_t pa, uint64_t size)
{
    if (size > UINT64_MAX - pa.raw)
        return false;
    for (unsigned i = 0; i < r->count; i++)
        if (pa.raw >= r->area[i].start.raw && pa.raw + size <= r->area[i].end.raw)
            return true;
    return false;
}

/* Does some RAM/ACPI entry of `info` cover a byte of [start, end)? */
static bool ram_or_acpi_overlaps(const struct mb2_info *info, uint64_t start, uint64_t end)
{
    for (unsigned i = 0; i < info->map_count; i++) {
        struct mb2_mmap_entry e;
        if (mb2_map_entry(info, i, &e) == 0 && is_ram_or_acpi(e.type) && e.length != 0 &&
            e.base < end && start < e.base + e.length)
            return true;
    }
    return false;
}

bool directmap_ioremap_conflict(const struct directmap_ranges *r, const struct mb2_info *info,
                                phys_addr_t pa, uint64_t size, struct mm_area *hit)
{
    if (size == 0)
        return false;
    /* [start, end): the request rounded out to pages, end saturating at
     * 2^64 - 1 (no range reaches that high, so nothing is missed). */
    uint64_t start = align_down_u64(pa.raw, PAGE_SIZE);
    uint64_t end = size > UINT64_MAX - pa.raw ? UINT64_MAX : pa.raw + size;
    end = end > UINT64_MAX - (PAGE_SIZE - 1) ? UINT64_MAX : align_up_u64(end, PAGE_SIZE);

    for (unsigned i = 0; i < r->count; i++) {
        uint64_t lo = start > r->area[i].start.raw ? start : r->area[i].start.raw;
        uint64_t hi = end < r->area[i].end.raw ? end : r->area[i].end.raw;
        if (lo >= hi)
            continue;
        /* Only device bytes of the VGA window may be mapped twice. */
        if (lo < VGA_START || hi > VGA_END || ram_or_acpi_overlaps(info, lo, hi)) {
            if (hit)
                *hit = r->area[i];
            return true;
        }
    }
    return false;
}

int directmap_usable_areas(const struct mb2_info *info, const struct mb2_reserved *reserved,
                           unsigned nreserved, struct mm_area_list *out,
                           struct mb2_usable_stats *stats)
{
    if (nreserved > DIRECTMAP_MAX_RESERVED) {
        mm_printf("directmap_usable_areas: %u reserved ranges, at most %u\n", nreserved,
                  DIRECTMAP_MAX_RESERVED);
        return -MM_EINVAL;
    }
    struct mb2_reserved all[DIRECTMAP_MAX_RESERVED + 1];
    for (unsigned i = 0; i < nreserved; i++)
        all[i] = reserved[i];
    all[nreserved] = (struct mb2_reserved){ PA(MM_DIRECT_MAP_MAX_PA), PA(UINT64_MAX),
                                            "above the direct-map limit" };
    return mb2_usable_areas(info, all, nreserved + 1, out, stats);
}

/* Physical start of section s. */
static uint64_t section_pa(const struct mm_boot_params *params, const struct mm_image_section *s)
{
    return s->va.raw - params->image_va_offset;
}

/* Is section a before section b in (physical start, index) order? */
static bool section_before(const struct mm_boot_params *params, unsigned a, unsigned b)
{
    uint64_t pa_a = section_pa(params, &params->sections[a]);
    uint64_t pa_b = section_pa(params, &params->sections[b]);
    return pa_a < pa_b || (pa_a == pa_b && a < b);
}

void directmap_image_alias(const struct mm_boot_params *params, directmap_piece_fn *piece,
                           void *ctx)
{
    uint64_t pos = params->image_pa_start.raw;
    unsigned prev = 0;
    bool have_prev = false;
    /* One step per section, in (physical start, index) order: it always
     * terminates, whatever the sizes. */
    for (unsigned step = 0; step < params->nsections; step++) {
        unsigned next = 0;
        bool found = false;
        for (unsigned i = 0; i < params->nsections; i++)
            if ((!have_prev || section_before(params, prev, i)) &&
                (!found || section_before(params, i, next))) {
                next = i;
                found = true;
            }
        prev = next;
        have_prev = true;

        const struct mm_image_section *s = &params->sections[next];
        uint64_t start = section_pa(params, s), end = start + s->size;
        if (s->size == 0 || end <= pos)
            continue;            /* empty, or already laid out by an overlap */
        if (start > pos)
            piece(ctx, pos, start, PTE_KERNEL_RW);
        else
            start = pos;
        piece(ctx, start, end, (s->flags & PTE_WRITE) ? PTE_KERNEL_RW : PTE_KERNEL_RO);
        pos = end;
    }
    if (params->image_pa_end.raw > pos)
        piece(ctx, pos, params->image_pa_end.raw, PTE_KERNEL_RW);
}
