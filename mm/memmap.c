/*
 * memmap.c - lists of physical address ranges ("areas") and the usable RAM
 * derived from the firmware memory map (see mm/memmap.h).
 *
 * Invariant of an area list (mm_area_list_check): sorted by start,
 * disjoint, non-adjacent, page-aligned, non-empty, below MM_AREA_MAX_PA.
 * Lists of byte ranges (the firmware map's entries before rounding) keep
 * the same order and disjointness, without the alignment.
 *
 * Algorithms.  The firmware map's entries of one class are copied into a
 * buffer, heapsorted (O(n log n), no extra memory) and merged in one pass:
 * that union is the basis of every query, so no query rescans the map per
 * byte range.  Usable RAM is then one merge-like walk over two unions, the
 * type-1 entries minus the entries of every other type (reserved wins over
 * available), clipped to [1 MiB, limit), shrunk inwards to pages and
 * appended in address order (the largest MM_MAX_AREAS runs are kept).  The
 * information structure, the modules and the caller's ranges are then
 * subtracted from that short list one by one, rounded outwards to pages;
 * modules are read from their tags, so their number is not limited.
 *
 * Locking: none.  The list operations touch only their arguments; the
 * usable-area computation uses one static scratch buffer (the firmware
 * map's unions), so it runs on one CPU at a time: at boot, or in tests.
 */
#include <mm/log.h>
#include <mm/memmap.h>
#include <mm/multiboot2.h>

#define LOW_RESERVED MiB     /* BIOS data, real-mode IVT, AP trampolines */

static uint64_t step_count;

uint64_t mm_memmap_steps(void)
{
    return step_count;
}

int mm_area_list_check(const struct mm_area_list *l, const char *who)
{
    if (l->count > MM_MAX_AREAS) {
        mm_printf("%s: %u areas, more than %u\n", who, l->count, MM_MAX_AREAS);
        return -MM_EINVAL;
    }
    for (unsigned i = 0; i < l->count; i++) {
        const struct mm_area *a = &l->area[i];
        const char *why = NULL;
        if (!is_aligned_u64(a->start.raw | a->end.raw, PAGE_SIZE))
            why = "is not page-aligned";
        else if (a->end.raw <= a->start.raw)
            why = "is empty";
        else if (a->end.raw > MM_AREA_MAX_PA)
            why = "reaches above 2^52";
        else if (i > 0 && a->start.raw <= l->area[i - 1].end.raw)
            why = "overlaps, touches or is below the previous area";
        if (why) {
            mm_printf("%s: area %u [%#lx, %#lx) %s\n", who, i, (unsigned long)a->start.raw,
                      (unsigned long)a->end.raw, why);
            return -MM_EINVAL;
        }
    }
    return 0;
}

/* Log a malformed page range passed to `who`; returns -MM_EINVAL. */
static int bad_range(const char *who, phys_addr_t start, phys_addr_t end, const char *why)
{
    mm_printf("%s: range [%#lx, %#lx) %s\n", who, (unsigned long)start.raw,
              (unsigned long)end.raw, why);
    return -MM_EINVAL;
}

/* Move l->area[from..count) to start at index `to` (either direction). */
static void list_move_tail(struct mm_area_list *l, unsigned from, unsigned to)
{
    unsigned n = l->count - from;
    step_count += n;
    __builtin_memmove(&l->area[to], &l->area[from], n * sizeof l->area[0]);
    l->count = to + n;
}

int mm_area_list_add(struct mm_area_list *l, phys_addr_t start, phys_addr_t end)
{
    static const char who[] = "mm_area_list_add";
    if (!is_aligned_u64(start.raw | end.raw, PAGE_SIZE))
        return bad_range(who, start, end, "is not page-aligned");
    if (end.raw <= start.raw || end.raw > MM_AREA_MAX_PA)
        return bad_range(who, start, end, "is empty or reaches above 2^52");
    if (mm_area_list_check(l, who) != 0)
        return -MM_EINVAL;

    uint64_t s = start.raw, e = end.raw;
    unsigned i = 0;
    while (i < l->count && l->area[i].end.raw < s)
        i++;
    unsigned j = i;             /* areas i..j-1 overlap or touch [s, e) */
    for (; j < l->count && l->area[j].start.raw <= e; j++) {
        s = s < l->area[j].start.raw ? s : l->area[j].start.raw;
        e = e > l->area[j].end.raw ? e : l->area[j].end.raw;
    }
    step_count += j;
    if (j == i) {
        if (l->count == MM_MAX_AREAS)
            return -MM_ENOMEM;
        list_move_tail(l, i, i + 1);
    } else {
        list_move_tail(l, j, i + 1);
    }
    l->area[i] = (struct mm_area){ PA(s), PA(e) };
    return 0;
}

int mm_area_list_subtract(struct mm_area_list *l, phys_addr_t start, phys_addr_t end)
{
    static const char who[] = "mm_area_list_subtract";
    if (!is_aligned_u64(start.raw | end.raw, PAGE_SIZE))
        return bad_range(who, start, end, "is not page-aligned");
    if (end.raw < start.raw)
        return bad_range(who, start, end, "ends before it starts");
    if (mm_area_list_check(l, who) != 0)
        return -MM_EINVAL;

    uint64_t s = start.raw, e = end.raw;
    unsigned i = 0;
    while (i < l->count && l->area[i].end.raw <= s)
        i++;
    step_count += i;
    if (i == l->count || l->area[i].start.raw >= e)
        return 0;                               /* nothing to remove */
    struct mm_area a = l->area[i];
    if (a.start.raw < s && a.end.raw > e) {     /* strictly inside: split */
        if (l->count == MM_MAX_AREAS)
            return -MM_ENOMEM;
        list_move_tail(l, i + 1, i + 2);
        l->area[i].end = PA(s);
        l->area[i + 1] = (struct mm_area){ PA(e), a.end };
        return 0;
    }
    /* Otherwise each touched area keeps at most one side. */
    unsigned w = i, k = i;
    for (; k < l->count && l->area[k].start.raw < e; k++) {
        a = l->area[k];
        if (a.start.raw < s)
            l->area[w++] = (struct mm_area){ a.start, PA(s) };
        else if (a.end.raw > e)
            l->area[w++] = (struct mm_area){ PA(e), a.end };
    }
    list_move_tail(l, k, w);
    return 0;
}

/* Order by start, then end. */
static bool area_less(const struct mm_area *x, const struct mm_area *y)
{
    step_count++;
    return x->start.raw < y->start.raw ||
           (x->start.raw == y->start.raw && x->end.raw < y->end.raw);
}

/* Let a[root] sink in the max-heap a[0..n). */
static void sift_down(struct mm_area *a, unsigned root, unsigned n)
{
    for (;;) {
        unsigned child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && area_less(&a[child], &a[child + 1]))
            child++;
        if (!area_less(&a[root], &a[child]))
            return;
        struct mm_area t = a[root];
        a[root] = a[child];
        a[child] = t;
        root = child;
    }
}

void mm_areas_sort(struct mm_area *a, unsigned n)
{
    if (n < 2)
        return;
    for (unsigned i = n / 2; i-- > 0;)
        sift_down(a, i, n);
    for (unsigned last = n - 1; last > 0; last--) {
        struct mm_area t = a[0];
        a[0] = a[last];
        a[last] = t;
        sift_down(a, 0, last);
    }
}

unsigned mm_areas_merge(struct mm_area *a, unsigned n)
{
    unsigned out = 0;
    step_count += n;
    for (unsigned i = 0; i < n; i++) {
        if (a[i].end.raw <= a[i].start.raw)
            continue;
        if (out > 0 && a[i].start.raw <= a[out - 1].end.raw) {
            if (a[i].end.raw > a[out - 1].end.raw)
                a[out - 1].end = a[i].end;
        } else {
            a[out++] = a[i];
        }
    }
    return out;
}

bool mm_areas_cover(const struct mm_area *a, unsigned n, uint64_t start, uint64_t end)
{
    if (end <= start)
        return true;
    unsigned lo = 0, hi = n;     /* find the first range starting above start */
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        step_count++;
        if (a[mid].start.raw <= start)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && a[lo - 1].end.raw >= end;
}

/* ------------------------------------------------ the firmware map's view */

bool memmap_type_in(uint32_t type, enum memmap_class c)
{
    switch (c) {
    case MEMMAP_ANY:
        return true;
    case MEMMAP_RAM:
        return type == MB2_MEM_AVAILABLE;
    case MEMMAP_RAM_OR_ACPI:
        return type == MB2_MEM_AVAILABLE || type == MB2_MEM_ACPI_RECLAIM ||
               type == MB2_MEM_ACPI_NVS;
    case MEMMAP_NOT_RAM:
        return type != MB2_MEM_AVAILABLE;
    }
    return false;
}

unsigned memmap_fw_union(const struct mb2_info *info, enum memmap_class c,
                         struct mm_area *buf, unsigned cap)
{
    unsigned n = 0;
    for (unsigned i = 0; i < info->map_count; i++) {
        struct mb2_mmap_entry e;
        MM_BUG_ON(mb2_map_entry(info, i, &e) != 0);
        step_count++;
        if (e.length == 0 || !memmap_type_in(e.type, c))
            continue;
        if (n == cap)
            mm_panic("memmap_fw_union: buffer of %u ranges too small for the %u-entry map",
                     cap, info->map_count);
        buf[n++] = (struct mm_area){ PA(e.base), PA(e.base + e.length) };
    }
    mm_areas_sort(buf, n);
    return mm_areas_merge(buf, n);
}

bool memmap_fw_overlaps(const struct mb2_info *info, enum memmap_class c,
                        uint64_t start, uint64_t end)
{
    for (unsigned i = 0; i < info->map_count; i++) {
        struct mb2_mmap_entry e;
        if (mb2_map_entry(info, i, &e) == 0 && memmap_type_in(e.type, c) && e.length != 0 &&
            e.base < end && start < e.base + e.length)
            return true;
    }
    return false;
}

/* ------------------------------------------------------- usable RAM areas */

/* The unions of the type-1 entries and of all other entries, side by side. */
static struct mm_area fw_scratch[MB2_MAX_MAP_ENTRIES];

/* A walk over the byte ranges of a[0..na) minus b[0..nb) (both sorted,
 * disjoint), in address order; pos is where the walk has got to. */
struct diff_walk {
    const struct mm_area *a, *b;
    unsigned na, nb, i, j;
    uint64_t pos;
};

/* The next piece [*start, *end) of a - b; false when there is none. */
static bool diff_next(struct diff_walk *d, uint64_t *start, uint64_t *end)
{
    while (d->i < d->na) {
        const struct mm_area *x = &d->a[d->i];
        uint64_t lo = d->pos > x->start.raw ? d->pos : x->start.raw, hi = x->end.raw;
        step_count++;
        if (lo >= hi) {
            d->i++;
            continue;
        }
        while (d->j < d->nb && d->b[d->j].end.raw <= lo) {
            d->j++;
            step_count++;
        }
        if (d->j < d->nb && d->b[d->j].start.raw <= lo) {
            d->pos = d->b[d->j].end.raw;        /* lo is covered by b: skip past */
            continue;
        }
        uint64_t stop = d->j < d->nb && d->b[d->j].start.raw < hi ? d->b[d->j].start.raw : hi;
        *start = lo;
        *end = stop;
        d->pos = stop;
        return true;
    }
    return false;
}

/* Index of the smallest area of a non-empty list (the first of equals). */
static unsigned smallest_area(const struct mm_area_list *l)
{
    unsigned smallest = 0;
    for (unsigned i = 1; i < l->count; i++)
        if (mm_area_size(&l->area[i]) < mm_area_size(&l->area[smallest]))
            smallest = i;
    return smallest;
}

static void note_dropped(struct mb2_usable_stats *st, uint64_t start, uint64_t end)
{
    char size[24];
    mm_format_size(size, sizeof size, end - start, false);
    mm_printf("memmap_usable_areas: more than %u areas, dropping [%#lx, %#lx) (%s)\n",
              MM_MAX_AREAS, (unsigned long)start, (unsigned long)end, size);
    st->dropped_areas++;
    st->dropped_bytes += end - start;
}

/* Remove area i of l. */
static void drop_area(struct mm_area_list *l, struct mb2_usable_stats *st, unsigned i)
{
    note_dropped(st, l->area[i].start.raw, l->area[i].end.raw);
    list_move_tail(l, i + 1, i);
}

/* Append [start, end) (page-aligned, above every area of out) in address
 * order; if the list is full, the smallest of it and the areas goes. */
static void areas_append(struct mm_area_list *out, struct mb2_usable_stats *st,
                         uint64_t start, uint64_t end)
{
    if (out->count == MM_MAX_AREAS) {
        unsigned smallest = smallest_area(out);
        if (mm_area_size(&out->area[smallest]) >= end - start) {
            note_dropped(st, start, end);
            return;
        }
        drop_area(out, st, smallest);
    }
    out->area[out->count++] = (struct mm_area){ PA(start), PA(end) };
}

/* Take the byte range [start, end), rounded outwards to pages, out of out;
 * a split in a full list drops the smallest area first. */
static void carve(struct mm_area_list *out, struct mb2_usable_stats *st,
                  uint64_t start, uint64_t end)
{
    if (start >= end || start >= MM_AREA_MAX_PA)
        return;
    uint64_t s = align_down_u64(start, PAGE_SIZE);
    uint64_t e = end >= MM_AREA_MAX_PA ? MM_AREA_MAX_PA : align_up_u64(end, PAGE_SIZE);
    while (mm_area_list_subtract(out, PA(s), PA(e)) == -MM_ENOMEM)
        drop_area(out, st, smallest_area(out));
}

/* Check the caller's input of memmap_usable_areas; one log line if bad. */
static int usable_args_check(uint64_t limit, const struct mb2_reserved *reserved,
                             unsigned nreserved)
{
    if (limit == 0 || !is_aligned_u64(limit, PAGE_SIZE) || limit > MM_AREA_MAX_PA) {
        mm_printf("memmap_usable_areas: limit %#lx is 0, unaligned or above 2^52\n",
                  (unsigned long)limit);
        return -MM_EINVAL;
    }
    for (unsigned i = 0; i < nreserved; i++) {
        if (reserved[i].end.raw < reserved[i].start.raw) {
            mm_printf("memmap_usable_areas: reserved range %u (%s) [%#lx, %#lx) ends before it starts\n",
                      i, reserved[i].what ? reserved[i].what : "?",
                      (unsigned long)reserved[i].start.raw, (unsigned long)reserved[i].end.raw);
            return -MM_EINVAL;
        }
    }
    return 0;
}

int memmap_usable_areas(const struct mb2_info *info, uint64_t limit,
                        const struct mb2_reserved *reserved, unsigned nreserved,
                        struct mm_area_list *out, struct mb2_usable_stats *stats)
{
    if (usable_args_check(limit, reserved, nreserved) != 0)
        return -MM_EINVAL;

    unsigned nram = memmap_fw_union(info, MEMMAP_RAM, fw_scratch, MB2_MAX_MAP_ENTRIES);
    unsigned nother = memmap_fw_union(info, MEMMAP_NOT_RAM, fw_scratch + nram,
                                      MB2_MAX_MAP_ENTRIES - nram);
    struct diff_walk d = { fw_scratch, fw_scratch + nram, nram, nother, 0, 0, 0 };
    struct mb2_usable_stats st = { 0 };
    uint64_t start, end;

    out->count = 0;
    while (diff_next(&d, &start, &end)) {
        st.ram_bytes += end - start;
        start = start > LOW_RESERVED ? start : LOW_RESERVED;
        end = end < limit ? end : limit;
        if (start >= end)
            continue;
        start = align_up_u64(start, PAGE_SIZE);      /* start < 2^52: no wrap */
        end = align_down_u64(end, PAGE_SIZE);
        if (start < end)
            areas_append(out, &st, start, end);
    }

    carve(out, &st, info->pa.raw, info->pa.raw + info->total_size);
    struct mb2_module m;
    for (uint32_t cursor = 0; mb2_module_next(info, &cursor, &m);)
        carve(out, &st, m.start.raw, m.end.raw);
    for (unsigned i = 0; i < nreserved; i++)
        carve(out, &st, reserved[i].start.raw, reserved[i].end.raw);

    for (unsigned i = 0; i < out->count; i++)
        st.usable_bytes += mm_area_size(&out->area[i]);
    st.reserved_bytes = st.ram_bytes - st.usable_bytes - st.dropped_bytes;
    if (stats)
        *stats = st;
    return 0;
}

int mb2_usable_areas(const struct mb2_info *info,
                     const struct mb2_reserved *reserved, unsigned nreserved,
                     struct mm_area_list *out, struct mb2_usable_stats *stats)
{
    return memmap_usable_areas(info, MM_AREA_MAX_PA, reserved, nreserved, out, stats);
}

void mb2_print_summary(const struct mm_area_list *areas,
                       const struct mb2_usable_stats *stats)
{
    uint64_t usable = 0;
    for (unsigned i = 0; i < areas->count; i++)
        usable += mm_area_size(&areas->area[i]);
    if (!stats) {
        mm_printf("mm: usable RAM %lu MiB in %u areas\n", (unsigned long)(usable / MiB),
                  areas->count);
        return;
    }
    char dropped[64] = "";
    if (stats->dropped_areas)
        mm_snprintf(dropped, sizeof dropped, "; dropped %u areas (%lu KiB)",
                    stats->dropped_areas, (unsigned long)(stats->dropped_bytes / KiB));
    mm_printf("mm: usable RAM %lu MiB in %u areas; reserved %lu KiB of %lu MiB firmware RAM%s\n",
              (unsigned long)(usable / MiB), areas->count,
              (unsigned long)(stats->reserved_bytes / KiB),
              (unsigned long)(stats->ram_bytes / MiB), dropped);
}
