/*
 * fuzz_multiboot2.c - libFuzzer target for the multiboot2 parser and the
 * usable-area computation.
 *
 * The input bytes are the information structure (copied to an 8-aligned
 * buffer so the parser's alignment rule does not reject everything).  If it
 * parses, the usable areas are computed with two caller ranges and checked:
 * sorted, disjoint, non-adjacent, page-aligned; covered by type-1 entries;
 * touching no other-type entry and no carved-out range; and (to catch areas
 * that go missing) every page that lies wholly inside one type-1 entry and
 * outside everything reserved (and below MM_AREA_MAX_PA, the limit of
 * mb2_usable_areas) is in some area unless areas were dropped.
 * Violations abort, which libFuzzer reports with the input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define FUZZ_NAME "fuzz_multiboot2"
#include "fuzz_util.h"
#include <mm/multiboot2.h>

#define FUZZ_INFO_PA 0x80000u      /* below 1 MiB, like GRUB under UEFI */

/* Every reserved range mm must carve out, as [start, end). */
struct carve { uint64_t start, end; };

static unsigned collect_carved(const struct mb2_info *info, const struct mb2_reserved *res,
                               unsigned nres, struct carve *out)
{
    unsigned n = 0;
    out[n++] = (struct carve){ 0, MiB };
    out[n++] = (struct carve){ info->pa.raw, info->pa.raw + info->total_size };
    struct mb2_module m;
    unsigned nmod = 0;
    for (uint32_t cursor = 0; mb2_module_next(info, &cursor, &m); nmod++)
        out[n++] = (struct carve){ m.start.raw, m.end.raw };
    if (nmod != info->nmodules)
        fail("module walk disagrees with nmodules", nmod, info->nmodules);
    for (unsigned i = 0; i < nres; i++)
        out[n++] = (struct carve){ res[i].start.raw, res[i].end.raw };
    return n;
}

static bool overlaps(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1)
{
    return a0 < b1 && b0 < a1;
}

/* Is [s, e) free of other-type entries and carved ranges? */
static bool range_clean(const struct mb2_info *info, const struct carve *c, unsigned nc,
                        uint64_t s, uint64_t e)
{
    for (unsigned i = 0; i < info->map_count; i++) {
        struct mb2_mmap_entry m;
        if (mb2_map_entry(info, i, &m))
            fail("mb2_map_entry failed in range", i, info->map_count);
        if (m.length && m.type != MB2_MEM_AVAILABLE && overlaps(s, e, m.base, m.base + m.length))
            return false;
    }
    for (unsigned i = 0; i < nc; i++)
        if (c[i].start < c[i].end && overlaps(s, e, c[i].start, c[i].end))
            return false;
    return true;
}

/* Is [s, e) covered by the union of type-1 entries? */
static bool range_is_ram(const struct mb2_info *info, uint64_t s, uint64_t e)
{
    uint64_t x = s;
    while (x < e) {
        uint64_t reach = x;
        for (unsigned i = 0; i < info->map_count; i++) {
            struct mb2_mmap_entry m;
            mb2_map_entry(info, i, &m);
            if (m.type == MB2_MEM_AVAILABLE && m.base <= x && x < m.base + m.length &&
                m.base + m.length > reach)
                reach = m.base + m.length;
        }
        if (reach == x)
            return false;
        x = reach;
    }
    return true;
}

static bool page_in_areas(const struct mm_area_list *l, uint64_t pa)
{
    for (unsigned i = 0; i < l->count; i++)
        if (l->area[i].start.raw <= pa && pa < l->area[i].end.raw)
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static _Alignas(8) uint8_t buf[1 << 16];
    static struct mm_area_list areas;
    /* A module tag takes at least 24 bytes of the input. */
    static struct carve carved[sizeof buf / 24 + 8];
    struct mb2_info info;
    struct mb2_usable_stats st;
    char err[MB2_ERR_LEN];

    harness_quiet = 1;
    if (size > sizeof buf)
        size = sizeof buf;
    memcpy(buf, data, size);

    int rc = mb2_parse(&info, buf, PA(FUZZ_INFO_PA), size, err, sizeof err);
    if (rc) {
        if (rc != -MM_EINVAL || strncmp(err, "multiboot2: ", 12) != 0)
            fail("bad error return", (uint64_t)-rc, 0);
        return 0;
    }
    if (info.total_size > size || info.map_source == MB2_MAP_NONE)
        fail("accepted impossible info", info.total_size, size);

    /* Two caller ranges derived from the input so they move around. */
    uint64_t k0 = 0x100000 + (uint64_t)(size * 4093 % 0x4000000);
    const struct mb2_reserved res[] = {
        { PA(k0), PA(k0 + 0x180123), "kernel" },
        { PA(0x7fffe000), PA(0x80001000), "extra" },
    };
    if (mb2_usable_areas(&info, res, 2, &areas, &st))
        fail("mb2_usable_areas failed", 0, 0);
    unsigned nc = collect_carved(&info, res, 2, carved);

    if (mm_area_list_check(&areas, FUZZ_NAME) != 0)
        fail("usable areas fail mm_area_list_check", areas.count, 0);
    uint64_t sum = 0;
    for (unsigned i = 0; i < areas.count; i++) {
        uint64_t s = areas.area[i].start.raw, e = areas.area[i].end.raw;
        if (!is_aligned_u64(s, PAGE_SIZE) || !is_aligned_u64(e, PAGE_SIZE) || e <= s)
            fail("area unaligned or empty", s, e);
        if (i && s <= areas.area[i - 1].end.raw)
            fail("areas unsorted, overlapping or adjacent", areas.area[i - 1].end.raw, s);
        if (s < MiB)
            fail("area below 1 MiB", s, e);
        if (!range_clean(&info, carved, nc, s, e))
            fail("area touches a reserved entry or carved range", s, e);
        if (!range_is_ram(&info, s, e))
            fail("area not covered by type-1 entries", s, e);
        sum += e - s;
    }
    if (sum != st.usable_bytes || st.ram_bytes < sum ||
        st.reserved_bytes != st.ram_bytes - sum - st.dropped_bytes)
        fail("stats inconsistent", sum, st.usable_bytes);

    /* Completeness, sampled: clean whole pages of each type-1 entry. */
    if (st.dropped_areas == 0) {
        for (unsigned i = 0; i < info.map_count; i++) {
            struct mb2_mmap_entry m;
            mb2_map_entry(&info, i, &m);
            if (m.type != MB2_MEM_AVAILABLE || m.length < PAGE_SIZE ||
                m.base >= MM_AREA_MAX_PA)
                continue;
            uint64_t first = align_up_u64(m.base, PAGE_SIZE);
            uint64_t end = m.base + m.length < MM_AREA_MAX_PA ? m.base + m.length : MM_AREA_MAX_PA;
            uint64_t last = align_down_u64(end, PAGE_SIZE);
            if (first >= last)
                continue;
            uint64_t samples[3] = { first, last - PAGE_SIZE,
                                    align_down_u64(first + (last - first) / 2, PAGE_SIZE) };
            for (int j = 0; j < 3; j++) {
                uint64_t p = samples[j];
                if (range_clean(&info, carved, nc, p, p + PAGE_SIZE) && !page_in_areas(&areas, p))
                    fail("usable page missing from the areas", p, i);
            }
        }
    }
    return 0;
}
