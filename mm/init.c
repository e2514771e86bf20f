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
 * Which physical bytes the direct map covers (RAM and ACPI below
 * MM_DIRECT_MAP_MAX_PA, widened to 2 MiB where the firmware describes the
 * bytes), how the image's alias in it is laid out, and which ioremap
 * requests would alias it, is decided in mm/directmap.c; this file maps
 * what it decides.  Invariant after mm_init: every usable area lies inside
 * ram_ranges, and the new table direct-maps exactly ram_ranges plus the
 * kernel image (which the firmware map lists as RAM anyway).
 *
 * Locking: mm_init runs alone on the boot CPU.  Afterwards the instances
 * here are protected by their own locks (buddy, MMIO pool, kernel mapper).
 */
#include <mm/arch.h>
#include <mm/bump.h>
#include <mm/directmap.h>
#include <mm/init.h>
#include <mm/log.h>
#include <mm/ptdump.h>

/* See mm/frame.h.  mm_init sets it; host tests point it at simulated RAM. */
uint64_t mm_direct_map_offset = MM_DIRECT_MAP_BASE;

static struct mb2_info boot_info;
static struct mm_area_list usable_areas;
static bool boot_info_ready;
static struct buddy kernel_buddy;
static bool allocators_ready;
static bool low_identity_mapped;

/* Static to keep them off the (small) boot stack.  ram_ranges is what the
 * direct map covers, written once by mm_init and read-only afterwards
 * (mm_ioremap, mm_direct_map_contains); the other two are scratch. */
static struct directmap_ranges ram_ranges;
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

/* directmap_image_alias callback: map one piece of the image's alias. */
static void map_image_piece(void *ctx, uint64_t start, uint64_t end, uint64_t flags)
{
    map_direct(ctx, start, end, flags, PAGE_SIZE);
}

void mm_init(const struct mm_boot_params *params, struct mm_init_report *report)
{
    uint64_t t0 = arch_read_tsc();
    uint64_t t_parse, t_table, t_buddy, t_mmio;
    char err[MB2_ERR_LEN];
    int rc;

    mm_direct_map_offset = MM_DIRECT_MAP_BASE;
    if (params->nsections > MM_MAX_SECTIONS || params->nreserved > MM_MAX_RESERVED)
        mm_panic("mm_init: %u sections (max %u), %u reserved ranges (max %u)",
                 params->nsections, MM_MAX_SECTIONS, params->nreserved, MM_MAX_RESERVED);
    for (unsigned i = 0; i < params->nsections; i++) {
        const struct mm_image_section *s = &params->sections[i];
        uint64_t pa = s->va.raw - params->image_va_offset;
        if (!is_aligned_u64(s->va.raw | s->size, PAGE_SIZE) || pa < params->image_pa_start.raw ||
            pa > params->image_pa_end.raw || s->size > params->image_pa_end.raw - pa)
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

    /* 2. What the direct map will cover, and the usable RAM inside it. */
    rc = directmap_collect(&boot_info, arch_phys_addr_bits(), &ram_ranges);
    if (rc != 0)
        mm_panic("mm_init: directmap_collect: more than %u disjoint RAM/ACPI ranges in "
                 "the %u-entry firmware map", DIRECTMAP_MAX_RANGES, boot_info.map_count);
    struct mb2_reserved reserved[1 + MM_MAX_RESERVED];
    unsigned nreserved = 0;
    reserved[nreserved++] = (struct mb2_reserved){ params->image_pa_start,
                                                   params->image_pa_end, "kernel image" };
    for (unsigned i = 0; i < params->nreserved; i++)
        reserved[nreserved++] = params->reserved[i];
    struct mb2_usable_stats stats;
    if (directmap_usable_areas(&boot_info, reserved, nreserved, &usable_areas, &stats) != 0)
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
    directmap_image_alias(params, map_image_piece, &kpt);
    uint64_t direct_tables = bump_used_frames(&boot_bump) - frames_before_direct;
    for (unsigned i = 0; i < params->nsections; i++) {
        const struct mm_image_section *s = &params->sections[i];
        phys_addr_t pa = PA(s->va.raw - params->image_va_offset);
        if (s->size == 0)
            continue;            /* legal, e.g. an empty .rodata: nothing to map */
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
    rc = buddy_init(&kernel_buddy, &bump_left);
    if (rc != 0)
        mm_panic("mm_init: buddy_init failed: %s", mm_strerror(rc));
    struct frame_allocator *frames = buddy_frame_allocator(&kernel_buddy);

    /* 6. Kernel mapper, and the temporary low identity map. */
    kmapper_setup(kpt.top_pa, frames);
    allocators_ready = true;
    if (params->low_identity_map) {
        struct kmapper km;
        kmapper_lock(&km);
        rc = pt_map_range(&km.mapper, VA(MM_LOW_IDENTITY_START), PA(MM_LOW_IDENTITY_START),
                          MM_LOW_IDENTITY_END - MM_LOW_IDENTITY_START, PTE_PRESENT, PAGE_SIZE, &tok);
        if (rc == 0) {
            pt_flush_local(&tok);    /* only this CPU runs yet */
            low_identity_mapped = true;
        }
        kmapper_unlock(&km);
        map_or_panic(rc, "low identity map", MM_LOW_IDENTITY_START,
                     MM_LOW_IDENTITY_END - MM_LOW_IDENTITY_START);
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
    int rc = pt_unmap_range(&km.mapper, VA(MM_LOW_IDENTITY_START),
                            MM_LOW_IDENTITY_END - MM_LOW_IDENTITY_START, true, &tok);
    if (rc == 0) {
        pt_flush(&tok);
        low_identity_mapped = false;
    }
    kmapper_unlock(&km);
    if (rc == 0)
        mm_printf("mm: low identity map [%#lx, %#lx) removed\n",
                  (unsigned long)MM_LOW_IDENTITY_START, (unsigned long)MM_LOW_IDENTITY_END);
    return rc;
}

bool mm_direct_map_contains(phys_addr_t pa, uint64_t size)
{
    return boot_info_ready && directmap_contains(&ram_ranges, pa, size);
}

void *mm_ioremap(phys_addr_t pa, uint64_t size)
{
    struct kmapper km;
    void *va = NULL;
    /*
     * The direct map already maps its ranges write-back.  An uncached
     * second mapping of the same bytes is a memory-type alias the SDM
     * forbids (vol. 3, 11.12.4), so any page of the request that the
     * direct map holds is refused; only the legacy device window below
     * 1 MiB, which the fixed-range MTRRs keep uncached, is exempt.
     */
    struct mm_area hit;
    if (boot_info_ready &&
        directmap_ioremap_conflict(&ram_ranges, &boot_info, pa, size, &hit)) {
        mm_printf("mm_ioremap: pa %#lx (+%#lx) overlaps the direct map's [%#lx, %#lx), "
                  "mapped write-back; use pa_to_ptr\n", (unsigned long)pa.raw,
                  (unsigned long)size, (unsigned long)hit.start.raw, (unsigned long)hit.end.raw);
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
