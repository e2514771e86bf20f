/*
 * init.c - bring-up of the memory subsystem (the steps are listed in
 * mm/init.h) and the kernel-wide allocator instances.
 *
 * Who hands memory to whom: the multiboot2 map gives usable RAM to the
 * bump allocator; bump gives frames to the new kernel page table; what bump
 * did not hand out goes to the buddy allocator, which from then on feeds
 * the kernel mapper and the MMIO pool's bookkeeping.  Frames taken by bump
 * are never returned: they hold the kernel page table for good.
 *
 * Locking: mm_init runs alone on the boot CPU.  Afterwards the instances
 * here are protected by their own locks (buddy, MMIO pool, kernel mapper).
 */
#include <mm/arch.h>
#include <mm/bump.h>
#include <mm/init.h>
#include <mm/log.h>
#include <mm/ptdump.h>

/* Temporary identity map for the AP trampoline: [4 KiB, 1 MiB), R+X. */
#define LOW_IDENTITY_START  PAGE_SIZE
#define LOW_IDENTITY_END    (1 * MiB)

/* See mm/frame.h.  mm_init sets it; host tests point it at simulated RAM. */
uint64_t mm_direct_map_offset = MM_DIRECT_MAP_BASE;

static struct mb2_info boot_info;
static struct mm_area_list usable_areas;
static bool boot_info_ready;
static struct buddy kernel_buddy;
static bool allocators_ready;
static bool low_identity_mapped;

/* Scratch lists: static to keep them off the (small) boot stack. */
static struct mm_area_list ram_ranges;
static struct mm_area_list bump_left;
static struct bump_allocator boot_bump;

const struct mb2_info *mm_boot_info(void)
{
    return boot_info_ready ? &boot_info : NULL;
}

const struct mm_area_list *mm_usable_areas(void)
{
    return boot_info_ready ? &usable_areas : NULL;
}

struct buddy *mm_buddy(void)
{
    return allocators_ready ? &kernel_buddy : NULL;
}

struct frame_allocator *mm_buddy_frames(void)
{
    return allocators_ready ? buddy_frame_allocator(&kernel_buddy) : NULL;
}

struct mmio_pool *mm_mmio_pool(void)
{
    return allocators_ready ? mmio_pool_global() : NULL;
}

/* Add [start, end) to a sorted list of disjoint ranges, merging overlaps. */
static void range_add(struct mm_area_list *l, uint64_t start, uint64_t end)
{
    unsigned i = 0;
    while (i < l->count && l->area[i].end.raw < start)
        i++;
    /* Merge every range that touches [start, end). */
    unsigned j = i;
    while (j < l->count && l->area[j].start.raw <= end) {
        if (l->area[j].start.raw < start)
            start = l->area[j].start.raw;
        if (l->area[j].end.raw > end)
            end = l->area[j].end.raw;
        j++;
    }
    unsigned removed = j - i;
    if (removed == 0) {
        if (l->count == MM_MAX_AREAS)
            mm_panic("range_add: more than %u RAM ranges in the firmware map", MM_MAX_AREAS);
        for (unsigned k = l->count; k > i; k--)
            l->area[k] = l->area[k - 1];
        l->count++;
    } else {
        for (unsigned k = i + 1; k + removed - 1 < l->count; k++)
            l->area[k] = l->area[k + removed - 1];
        l->count -= removed - 1;
    }
    l->area[i].start = PA(start);
    l->area[i].end = PA(end);
}

/* True if every byte of [start, end) is described by some firmware map
 * entry (of any type) or lies in the legacy first MiB. */
static bool firmware_covers(uint64_t start, uint64_t end)
{
    uint64_t pos = start < 1 * MiB ? 1 * MiB : start;
    while (pos < end) {
        uint64_t next = pos;
        for (unsigned i = 0; i < boot_info.map_count; i++) {
            struct mb2_mmap_entry e;
            if (mb2_map_entry(&boot_info, i, &e) == 0 && e.base <= pos &&
                e.base + e.length > next)
                next = e.base + e.length;
        }
        if (next == pos)
            return false;          /* a hole: possibly device memory */
        pos = next;
    }
    return true;
}

/*
 * Every byte of memory the direct map must cover: RAM and ACPI tables
 * (types 1, 3, 4), pages rounded outwards, merged.  Each range is then
 * widened to 2 MiB boundaries where the extra bytes are firmware-described
 * memory (reserved, NVS, ...) or the legacy first MiB, never a hole in the
 * map, so small firmware reservations next to RAM do not force 4 KiB page
 * tables at every edge.  (Like Linux's direct map of the first MiB, this
 * maps some reserved bytes write-back; the MTRRs keep legacy device ranges
 * uncached.)
 */
static void collect_ram_ranges(struct mm_area_list *out)
{
    out->count = 0;
    for (unsigned i = 0; i < boot_info.map_count; i++) {
        struct mb2_mmap_entry e;
        if (mb2_map_entry(&boot_info, i, &e) != 0 || e.length == 0)
            continue;
        if (e.type != MB2_MEM_AVAILABLE && e.type != MB2_MEM_ACPI_RECLAIM &&
            e.type != MB2_MEM_ACPI_NVS)
            continue;
        uint64_t start = align_down_u64(e.base, PAGE_SIZE);
        uint64_t end = align_up_u64(e.base + e.length, PAGE_SIZE);
        if (end > start)
            range_add(out, start, end);
    }
    struct mm_area_list widened;
    widened.count = 0;
    for (unsigned i = 0; i < out->count; i++) {
        uint64_t start = out->area[i].start.raw, end = out->area[i].end.raw;
        uint64_t wide_start = align_down_u64(start, PAGE_2M_SIZE);
        uint64_t wide_end = align_up_u64(end, PAGE_2M_SIZE);
        if (wide_start < start && firmware_covers(wide_start, start))
            start = wide_start;
        if (wide_end > end && firmware_covers(end, wide_end))
            end = wide_end;
        range_add(&widened, start, end);
    }
    *out = widened;
}

struct leaf_count {
    uint64_t per_level[4];
};

static void count_direct_leaf(void *ctx, const struct ptdump_leaf *leaf)
{
    struct leaf_count *c = ctx;
    if (leaf->va.raw >= MM_DIRECT_MAP_BASE && leaf->va.raw < MMIO_POOL_BASE)
        c->per_level[leaf->level]++;
}

static void map_or_panic(int err, const char *what, uint64_t va, uint64_t size)
{
    if (err)
        mm_panic("mm_init: cannot map %s at %#lx (+%#lx): %s", what,
                 (unsigned long)va, (unsigned long)size, mm_strerror(err));
}

/* Direct-map [start, end) with `flags` into the table being built. */
static void map_direct(struct pt_mapper *kpt, uint64_t start, uint64_t end, uint64_t flags,
                       uint64_t max_page)
{
    if (end <= start)
        return;
    struct pt_flush tok = PT_FLUSH_INIT;
    virt_addr_t va = pa_to_direct_va(PA(start));
    map_or_panic(pt_map_range(kpt, va, PA(start), end - start, flags, max_page, &tok),
                 "direct map", va.raw, end - start);
    pt_flush_ignore(&tok);     /* the table is not loaded yet */
}

/*
 * The direct-map alias of the kernel image, page by page, so W^X holds for
 * physical memory too: text and rodata are read-only there, data and bss
 * (and the boot stub's pages) read-write; all of it no-execute.
 */
static void map_image_alias(struct pt_mapper *kpt, const struct mm_boot_params *params)
{
    uint64_t pos = params->image_pa_start.raw;
    for (;;) {
        /* The section with the lowest physical start at or after pos. */
        const struct mm_image_section *next = NULL;
        for (unsigned i = 0; i < params->nsections; i++) {
            const struct mm_image_section *s = &params->sections[i];
            uint64_t pa = s->va.raw - params->image_va_offset;
            if (pa >= pos && (!next || pa < next->va.raw - params->image_va_offset))
                next = s;
        }
        uint64_t gap_end = next ? next->va.raw - params->image_va_offset
                                : params->image_pa_end.raw;
        map_direct(kpt, pos, gap_end, PTE_KERNEL_RW, PAGE_SIZE);
        if (!next)
            return;
        uint64_t flags = (next->flags & PTE_WRITE) ? PTE_KERNEL_RW : PTE_KERNEL_RO;
        map_direct(kpt, gap_end, gap_end + next->size, flags, PAGE_SIZE);
        pos = gap_end + next->size;
    }
}

void mm_init(const struct mm_boot_params *params, struct mm_init_report *report)
{
    uint64_t t0 = arch_read_tsc();
    uint64_t t_parse, t_table, t_buddy, t_mmio;
    char err[MB2_ERR_LEN];

    mm_direct_map_offset = MM_DIRECT_MAP_BASE;
    if (params->nsections > MM_MAX_SECTIONS || params->nreserved > 4)
        mm_panic("mm_init: %u sections (max %u), %u reserved ranges (max 4)",
                 params->nsections, MM_MAX_SECTIONS, params->nreserved);
    for (unsigned i = 0; i < params->nsections; i++) {
        const struct mm_image_section *s = &params->sections[i];
        uint64_t pa = s->va.raw - params->image_va_offset;
        if (!is_aligned_u64(s->va.raw | s->size, PAGE_SIZE) || pa < params->image_pa_start.raw ||
            pa + s->size > params->image_pa_end.raw)
            mm_panic("mm_init: section %s (va %#lx, %#lx bytes) is not page-aligned "
                     "inside the image [%#lx, %#lx)", s->name, (unsigned long)s->va.raw,
                     (unsigned long)s->size, (unsigned long)params->image_pa_start.raw,
                     (unsigned long)params->image_pa_end.raw);
    }
    if (!arch_has_nx())
        mm_panic("mm_init: the CPU has no NX bit; W^X cannot be enforced");

    /* 1. Boot information. */
    const void *mbi = pa_to_ptr(params->mbi_pa);
    if (mb2_parse(&boot_info, mbi, params->mbi_pa, MB2_MAX_INFO_SIZE, err, sizeof(err)) != 0)
        mm_panic("mm_init: malformed multiboot2 information at %#lx: %s",
                 (unsigned long)params->mbi_pa.raw, err);
    if (!params->quiet)
        mb2_print_map(&boot_info);

    /* 2. Usable RAM. */
    struct mb2_reserved reserved[1 + 4];
    unsigned nreserved = 0;
    reserved[nreserved++] = (struct mb2_reserved){ params->image_pa_start,
                                                   params->image_pa_end, "kernel image" };
    for (unsigned i = 0; i < params->nreserved; i++)
        reserved[nreserved++] = params->reserved[i];
    struct mb2_usable_stats stats;
    if (mb2_usable_areas(&boot_info, reserved, nreserved, &usable_areas, &stats) != 0)
        mm_panic("mm_init: bad reserved range list");
    if (usable_areas.count == 0)
        mm_panic("mm_init: no usable RAM above 1 MiB in the memory map");
    boot_info_ready = true;
    mb2_print_summary(&usable_areas, &stats);

    t_parse = arch_read_tsc();

    /* 3. The new kernel page table, built with bump frames. */
    if (bump_init(&boot_bump, &usable_areas) != 0)
        mm_panic("mm_init: bump_init refused the usable area list");
    struct frame_allocator *bump_fa = bump_frame_allocator(&boot_bump);
    struct pt_mapper kpt;
    if (pt_mapper_create(bump_fa, &kpt) != 0)
        mm_panic("mm_init: no frame for the top page table");

    bool big = arch_has_1g_pages();
    uint64_t max_page = big ? PAGE_1G_SIZE : PAGE_2M_SIZE;
    struct pt_flush tok = PT_FLUSH_INIT;
    collect_ram_ranges(&ram_ranges);
    uint64_t frames_before_direct = bump_used_frames(&boot_bump);
    uint64_t img_start = params->image_pa_start.raw, img_end = params->image_pa_end.raw;
    for (unsigned i = 0; i < ram_ranges.count; i++) {
        /* RAM around the kernel image; the image's own alias comes below. */
        uint64_t start = ram_ranges.area[i].start.raw, end = ram_ranges.area[i].end.raw;
        if (start < img_start)
            map_direct(&kpt, start, end < img_start ? end : img_start,
                       PTE_KERNEL_RW, max_page);
        if (end > img_end)
            map_direct(&kpt, start > img_end ? start : img_end, end, PTE_KERNEL_RW, max_page);
    }
    map_image_alias(&kpt, params);
    uint64_t direct_tables = bump_used_frames(&boot_bump) - frames_before_direct;
    for (unsigned i = 0; i < params->nsections; i++) {
        const struct mm_image_section *s = &params->sections[i];
        phys_addr_t pa = PA(s->va.raw - params->image_va_offset);
        map_or_panic(pt_map_range(&kpt, s->va, pa, s->size, s->flags, PAGE_SIZE, &tok),
                     s->name, s->va.raw, s->size);
        pt_flush_ignore(&tok);
    }

    /* 4. Switch.  Everything the kernel touches from now on is mapped. */
    pt_mapper_make_current(&kpt);
    arch_flush_tlb_all();

    t_table = arch_read_tsc();

    /* 5. The buddy allocator gets what bump left. */
    uint64_t bump_frames = bump_used_frames(&boot_bump);
    bump_remainder(&boot_bump, &bump_left);
    int rc = buddy_init(&kernel_buddy, &bump_left);
    if (rc != 0)
        mm_panic("mm_init: buddy_init failed: %s", mm_strerror(rc));
    struct frame_allocator *frames = buddy_frame_allocator(&kernel_buddy);

    /* 6. Kernel mapper, and the temporary low identity map. */
    kmapper_setup(kpt.top_pa, frames);
    allocators_ready = true;
    if (params->low_identity_map) {
        struct kmapper km;
        kmapper_lock(&km);
        rc = pt_map_range(&km.mapper, VA(LOW_IDENTITY_START), PA(LOW_IDENTITY_START),
                          LOW_IDENTITY_END - LOW_IDENTITY_START, PTE_PRESENT, PAGE_SIZE, &tok);
        if (rc == 0) {
            pt_flush_local(&tok);    /* only this CPU runs yet */
            low_identity_mapped = true;
        }
        kmapper_unlock(&km);
        map_or_panic(rc, "low identity map", LOW_IDENTITY_START,
                     LOW_IDENTITY_END - LOW_IDENTITY_START);
    }

    t_buddy = arch_read_tsc();

    /* 7. MMIO pool, report. */
    rc = mmio_pool_init(mmio_pool_global(), frames);
    if (rc != 0)
        mm_panic("mm_init: mmio_pool_init failed: %s", mm_strerror(rc));

    t_mmio = arch_read_tsc();

    struct pt_mapper live = kmapper_peek();
    struct leaf_count lc = { { 0 } };
    ptdump_walk(&live, count_direct_leaf, &lc);
    uint64_t tables = ptdump_count_tables(&live);
    uint64_t wx = ptdump_count_wx(&live);
    uint64_t cycles = arch_read_tsc() - t0;

    if (!params->quiet)
        mm_dump_kernel_table();
    struct buddy_usage u;
    buddy_usage(&kernel_buddy, &u);
    mm_printf("mm: RAM %lu MiB usable in %u areas; kernel page table %lu pages (%lu KiB); "
              "direct map %lu x 1G + %lu x 2M + %lu x 4K pages in %lu table pages (%s); bump used %lu frames; "
              "buddy %lu MiB free (metadata %lu KiB); mm init %lu cycles\n",
              (unsigned long)(stats.usable_bytes / MiB), usable_areas.count,
              (unsigned long)tables, (unsigned long)(tables * PAGE_SIZE / KiB),
              (unsigned long)lc.per_level[3], (unsigned long)lc.per_level[2],
              (unsigned long)lc.per_level[1], (unsigned long)direct_tables,
              big ? "CPU has 1 GiB pages" : "no 1 GiB pages",
              (unsigned long)bump_frames, (unsigned long)(u.free_npages * PAGE_SIZE / MiB),
              (unsigned long)(u.meta_npages * PAGE_SIZE / KiB), (unsigned long)cycles);
    mm_printf("mm: init cycles: boot info + areas %lu, page table %lu, buddy %lu, "
              "mapper + MMIO pool %lu, checks %lu\n", (unsigned long)(t_parse - t0),
              (unsigned long)(t_table - t_parse), (unsigned long)(t_buddy - t_table),
              (unsigned long)(t_mmio - t_buddy), (unsigned long)(t0 + cycles - t_mmio));
    if (wx != 0)
        mm_panic("mm_init: %lu writable+executable pages in the kernel table",
                 (unsigned long)wx);

    if (report) {
        report->usable_bytes = stats.usable_bytes;
        report->nareas = usable_areas.count;
        report->table_pages = tables;
        report->direct_table_pages = direct_tables;
        for (unsigned l = 0; l < 4; l++)
            report->direct_pages[l] = lc.per_level[l];
        report->bump_frames = bump_frames;
        report->wx_pages = wx;
        report->cycles = cycles;
        report->used_1g = big;
    }
}

void mm_dump_kernel_table(void)
{
    struct pt_mapper live = kmapper_peek();
    mm_printf("mm: kernel page table (top at %#lx):\n", (unsigned long)live.top_pa.raw);
    ptdump_print(&live);
    mm_printf("mm: W+X check: %lu writable+executable pages\n",
              (unsigned long)ptdump_count_wx(&live));
}

bool mm_has_low_identity(void)
{
    return low_identity_mapped;
}

int mm_remove_low_identity(void)
{
    if (!low_identity_mapped)
        return 0;
    struct kmapper km;
    struct pt_flush tok = PT_FLUSH_INIT;
    if (!kmapper_lock(&km)) {
        kmapper_unlock(&km);
        return -MM_EPERM;
    }
    int rc = pt_unmap_range(&km.mapper, VA(LOW_IDENTITY_START),
                            LOW_IDENTITY_END - LOW_IDENTITY_START, true, &tok);
    if (rc == 0) {
        pt_flush(&tok);
        low_identity_mapped = false;
    }
    kmapper_unlock(&km);
    if (rc == 0)
        mm_printf("mm: low identity map [%#lx, %#lx) removed\n",
                  (unsigned long)LOW_IDENTITY_START, (unsigned long)LOW_IDENTITY_END);
    return rc;
}

bool mm_direct_map_contains(phys_addr_t pa, uint64_t size)
{
    for (unsigned i = 0; boot_info_ready && i < ram_ranges.count; i++)
        if (pa.raw >= ram_ranges.area[i].start.raw &&
            pa.raw + size <= ram_ranges.area[i].end.raw && pa.raw + size >= pa.raw)
            return true;
    return false;
}

/* Does [pa, pa + size) overlap RAM the firmware calls available? */
static bool overlaps_available_ram(phys_addr_t pa, uint64_t size)
{
    for (unsigned i = 0; boot_info_ready && i < boot_info.map_count; i++) {
        struct mb2_mmap_entry e;
        if (mb2_map_entry(&boot_info, i, &e) == 0 && e.type == MB2_MEM_AVAILABLE &&
            pa.raw < e.base + e.length && e.base < pa.raw + size)
            return true;
    }
    return false;
}

void *mm_ioremap(phys_addr_t pa, uint64_t size)
{
    struct kmapper km;
    void *va = NULL;
    /*
     * RAM is already in the direct map, write-back.  An uncached second
     * mapping of the same bytes is a memory-type alias the SDM forbids
     * (vol. 3, 11.12.4), so RAM is refused here.
     */
    if (overlaps_available_ram(pa, size)) {
        mm_printf("mm_ioremap: pa %#lx (+%#lx) is RAM; use the direct map (pa_to_ptr)\n",
                  (unsigned long)pa.raw, (unsigned long)size);
        return NULL;
    }
    if (kmapper_lock(&km))
        va = mmio_ioremap(mmio_pool_global(), &km.mapper, pa, size);
    else
        mm_printf("mm_ioremap: pa %#lx: kernel mapper already held by this CPU\n",
                  (unsigned long)pa.raw);
    kmapper_unlock(&km);
    return va;
}

int mm_iounmap(void *va)
{
    struct kmapper km;
    int rc = -MM_EPERM;
    if (kmapper_lock(&km))
        rc = mmio_iounmap(mmio_pool_global(), &km.mapper, va);
    else
        mm_printf("mm_iounmap: va %p: kernel mapper already held by this CPU\n", va);
    kmapper_unlock(&km);
    return rc;
}
