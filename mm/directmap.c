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
 * The limit is also below 2^phys_bits, the CPU's physical-address width:
 * RAM the CPU cannot address is not mapped either.
 *
 * Algorithm.  directmap_collect takes the union of the RAM/ACPI entries
 * (mm/memmap.c: one heapsort and one merge pass), counts what lies above
 * the limit, and copies the rest, clipped and rounded out to pages, into
 * the range list (merging what rounding made touch).  Each range is then
 * widened to 2 MiB boundaries where the union of all entries (of any type)
 * shows that the extra bytes are described by the map without a hole: a
 * binary search per edge.  A last sort and merge restores the list
 * invariants.  Because the limit is 2 MiB aligned, widening never crosses
 * it.  O(n log n) for n map entries, no allocator, no stack arrays: the
 * sorted unions live in one static buffer of MB2_MAX_MAP_ENTRIES ranges.
 *
 * Invariants of a struct directmap_ranges: see mm/directmap.h.
 *
 * No locking: the functions read their arguments and write only their
 * outputs, except directmap_collect's static scratch buffer (boot CPU
 * only).  mm_init calls them on the boot CPU; afterwards its range list is
 * read-only.
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

/* The sorted unions of firmware entries directmap_collect works on. */
static struct mm_area fw_union[MB2_MAX_MAP_ENTRIES];

/* The direct map's limit for a CPU with phys_bits address bits: 0 (after
 * one log line naming `who`) if phys_bits is outside [32, 52]. */
static uint64_t direct_map_limit(unsigned phys_bits, const char *who)
{
    if (phys_bits < DIRECTMAP_MIN_PHYS_BITS || phys_bits > 52) {
        mm_printf("%s: physical-address width %u bits is outside [%u, 52]\n", who, phys_bits,
                  DIRECTMAP_MIN_PHYS_BITS);
        return 0;
    }
    uint64_t cpu_limit = UINT64_C(1) << phys_bits;
    return cpu_limit < MM_DIRECT_MAP_MAX_PA ? cpu_limit : MM_DIRECT_MAP_MAX_PA;
}

/* True if every byte of [start, end) is described by some firmware map
 * entry (any[0..nany) is their union) or lies in the legacy first MiB. */
static bool firmware_covers(const struct mm_area *any, unsigned nany, uint64_t start,
                            uint64_t end)
{
    return mm_areas_cover(any, nany, start < LEGACY_END ? LEGACY_END : start, end);
}

/* Copy ram[0..n) (sorted, disjoint bytes) below limit into out, rounded
 * out to pages; returns the bytes at or above limit, or UINT64_MAX (after
 * one log line) if out is full. */
static uint64_t copy_below(const struct mm_area *ram, unsigned n, uint64_t limit,
                           const struct mb2_info *info, struct directmap_ranges *out)
{
    uint64_t above = 0;
    out->count = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t start = ram[i].start.raw, end = ram[i].end.raw;
        if (end > limit)
            above += end - (start > limit ? start : limit);
        if (start >= limit)
            continue;
        start = align_down_u64(start, PAGE_SIZE);
        end = align_up_u64(end < limit ? end : limit, PAGE_SIZE);
        if (out->count > 0 && start <= out->area[out->count - 1].end.raw) {
            out->area[out->count - 1].end = PA(end);
            continue;
        }
        if (out->count == DIRECTMAP_MAX_RANGES) {
            mm_printf("directmap_collect: more than %u disjoint RAM/ACPI ranges in the "
                      "firmware map (%u entries): [%#lx, %#lx) does not fit\n",
                      DIRECTMAP_MAX_RANGES, info->map_count, (unsigned long)start,
                      (unsigned long)end);
            return UINT64_MAX;
        }
        out->area[out->count++] = (struct mm_area){ PA(start), PA(end) };
    }
    return above;
}

int directmap_collect(const struct mb2_info *info, unsigned phys_bits, struct directmap_ranges *out)
{
    uint64_t limit = direct_map_limit(phys_bits, "directmap_collect");
    if (limit == 0)
        return -MM_EINVAL;
    unsigned n = memmap_fw_union(info, MEMMAP_RAM_OR_ACPI, fw_union, MB2_MAX_MAP_ENTRIES);
    uint64_t above = copy_below(fw_union, n, limit, info, out);
    if (above == UINT64_MAX)
        return -MM_ENOMEM;
    out->ignored_bytes = above;

    /* Widen each range on its own, from its own bounds; then re-merge. */
    n = memmap_fw_union(info, MEMMAP_ANY, fw_union, MB2_MAX_MAP_ENTRIES);
    for (unsigned i = 0; i < out->count; i++) {
        uint64_t start = out->area[i].start.raw, end = out->area[i].end.raw;
        uint64_t wide_start = align_down_u64(start, PAGE_2M_SIZE);
        uint64_t wide_end = align_up_u64(end, PAGE_2M_SIZE);
        if (wide_start < start && firmware_covers(fw_union, n, wide_start, start))
            out->area[i].start = PA(wide_start);
        if (wide_end > end && firmware_covers(fw_union, n, end, wide_end))
            out->area[i].end = PA(wide_end);
    }
    mm_areas_sort(out->area, out->count);
    out->count = mm_areas_merge(out->area, out->count);

    if (out->ignored_bytes) {
        char size[24];
        mm_format_size(size, sizeof size, out->ignored_bytes, false);
        mm_printf("mm: ignoring %s of RAM/ACPI at or above %#lx: %s\n", size,
                  (unsigned long)limit,
                  limit < MM_DIRECT_MAP_MAX_PA
                      ? "the CPU's physical addresses are narrower"
                      : "the direct map and the buddy allocator end at MM_DIRECT_MAP_MAX_PA (16 TiB)");
    }
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
        if (lo < VGA_START || hi > VGA_END || memmap_fw_overlaps(info, MEMMAP_RAM_OR_ACPI, lo, hi)) {
            if (hit)
                *hit = r->area[i];
            return true;
        }
    }
    return false;
}

int directmap_usable_areas(const struct mb2_info *info, unsigned phys_bits,
                         const struct mb2_reserved *reserved, unsigned nreserved,
                         struct mm_area_list *out, struct mb2_usable_stats *stats)
{
    uint64_t limit = direct_map_limit(phys_bits, "directmap_usable_areas");
    if (limit == 0)
        return -MM_EINVAL;
    return memmap_usable_areas(info, limit, reserved, nreserved, out, stats);
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
