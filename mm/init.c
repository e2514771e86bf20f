/*
 * init.c - bring-up of the memory subsystem and the kernel-wide allocator
 * instances.  mm_init is the list of its steps (mm/init.h describes them),
 * each a function here: check parameters, parse boot information, plan the
 * direct map, build the kernel table, start the buddy, MMIO pool, vmalloc
 * and kernel stacks, report.
 *
 * Who hands memory to whom: the multiboot2 map gives usable RAM to the
 * bump allocator - only the part below MM_BOOT_MAP_END, because until CR3
 * switches to the new table the boot tables map nothing above it; bump
 * gives frames to the new kernel page table; what bump did not hand out,
 * and the usable RAM above MM_BOOT_MAP_END, goes to the buddy allocator,
 * which from then on feeds the kernel mapper, the MMIO pool's
 * bookkeeping, and vmalloc areas and kernel stacks.  Frames taken by bump
 * are never returned: they hold the kernel page table for good.
 *
 * Which physical bytes the direct map covers (RAM and ACPI below
 * MM_DIRECT_MAP_MAX_PA, widened to 2 MiB where the firmware describes the
 * bytes), how the image's alias in it is laid out, and which ioremap
 * requests would alias it, is decided in mm/directmap.c and published by
 * mm/ioremap.c; this file maps what they decide, cut where the MTRRs
 * change the memory type (mm/mtrr.c) so that no large page holds two.
 * Invariant after mm_init: every usable area lies inside the direct-map
 * ranges, and the new table direct-maps exactly those ranges plus the
 * kernel image (which the firmware map lists as RAM anyway).
 *
 * The kernel half is fixed at init: besides the direct map's and the
 * image's slots, the slots of the MMIO pool, vmalloc and kernel stacks
 * get an empty level-3 table each, and from then on the kernel mapper
 * neither adds nor removes a kernel-half top-level entry (mm/kmapper.h),
 * so an address space's copy of the kernel half never goes stale.
 *
 * Locking: mm_init runs once, alone on the boot CPU.  Afterwards the
 * instances here are protected by their own locks (buddy, MMIO pool,
 * kernel mapper).
 */
#include <mm/arch.h>
#include <mm/bump.h>
#include <mm/directmap.h>
#include <mm/init.h>
#include <mm/kstack.h>
#include <mm/layout.h>
#include <mm/log.h>
#include <mm/mtrr.h>
#include <mm/platform.h>
#include <mm/ptdump.h>
#include <mm/slab.h>
#include <mm/vmalloc.h>

/* See mm/frame.h.  The kernel keeps this value; host tests point it at
 * simulated RAM before they call mm_init. */
uint64_t mm_direct_map_offset = MM_DIRECT_MAP_BASE;

static bool init_started;
static struct mb2_info boot_info;
static struct mm_area_list usable_areas;
static bool boot_info_ready;
static struct buddy kernel_buddy;
static bool allocators_ready;
static bool low_identity_mapped;

/* Static to keep them off the (small) boot stack; scratch of mm_init. */
static struct mm_area_list bump_areas, buddy_areas;
static struct bump_allocator boot_bump;
static struct mtrr_state mtrrs;

/* What the steps of the one mm_init run hand on to each other. */
struct init_run {
    const struct mm_boot_params *params;
    uint64_t t_start, t_parse, t_table, t_buddy, t_mmio;   /* TSC after each step */
    struct mb2_usable_stats stats;
    struct pt_mapper kpt;            /* the new kernel table */
    struct frame_allocator *frames;  /* the buddy's, from step 5 on */
    uint64_t direct_tables;          /* bump frames the direct map took */
    unsigned half_tables;            /* empty level-3 tables of the fixed kernel half */
    uint64_t bump_frames;
    unsigned type_splits;            /* direct-map cuts at MTRR type changes */
    bool big;                        /* 1 GiB pages */
};

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

/* ------------------------------------------------ 1. check parameters */

static void check_params(const struct mm_boot_params *params)
{
    if (init_started)
        mm_panic("mm_init: called twice: the kernel table (top at %#lx) is live and the "
                 "buddy owns the RAM; call mm_init once", (unsigned long)kmapper_peek().top_pa.raw);
    init_started = true;
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
}

/* ------------------------------------------ 2. parse boot information */

static void parse_boot_info(const struct mm_boot_params *params)
{
    char err[MB2_ERR_LEN];
    const void *mbi = pa_to_ptr(params->mbi_pa);
    if (mb2_parse(&boot_info, mbi, params->mbi_pa, MB2_MAX_INFO_SIZE, err, sizeof(err)) != 0)
        mm_panic("mm_init: malformed multiboot2 information at %#lx: %s",
                 (unsigned long)params->mbi_pa.raw, err);
    if (!params->quiet)
        mb2_print_map(&boot_info);
}

/* ----------------------------------------------- 3. plan the direct map */

/* One line on the MTRRs the direct map will respect. */
static void print_mtrrs(void)
{
    if (!mtrrs.enabled) {
        mm_printf("mm: MTRRs absent or disabled: one memory type everywhere\n");
        return;
    }
    mm_printf("mm: MTRRs on: default type %s, variable ranges: %u, fixed ranges %s\n",
              mtrr_type_name(mtrrs.default_type), mtrrs.nvar,
              mtrrs.fixed_enabled ? "on" : "off");
}

static void plan_direct_map(struct init_run *run)
{
    const struct mm_boot_params *params = run->params;
    int rc = mm_direct_map_describe(&boot_info, MM_DIRECT_MAP_MAX_PA);
    if (rc != 0)
        mm_panic("mm_init: no direct map for the %u-entry firmware map (%s; more than %u "
                 "disjoint RAM/ACPI ranges?)", boot_info.map_count, mm_strerror(rc),
                 DIRECTMAP_MAX_RANGES);
    /* Later readers (mm_boot_info() users, ACPI) reach it through the
     * direct map, so all of it must be there. */
    if (!mm_direct_map_contains(params->mbi_pa, boot_info.total_size))
        mm_panic("mm_init: the multiboot2 information [%#lx, %#lx) is not all RAM/ACPI "
                 "in its own memory map, so the direct map would not hold it",
                 (unsigned long)params->mbi_pa.raw,
                 (unsigned long)(params->mbi_pa.raw + boot_info.total_size));

    struct mb2_reserved reserved[1 + MM_MAX_RESERVED];
    unsigned nreserved = 0;
    reserved[nreserved++] = (struct mb2_reserved){ params->image_pa_start,
                                                   params->image_pa_end, "kernel image" };
    for (unsigned i = 0; i < params->nreserved; i++)
        reserved[nreserved++] = params->reserved[i];
    if (directmap_usable_areas(&boot_info, arch_phys_addr_bits(), reserved, nreserved,
                               &usable_areas, &run->stats) != 0)
        mm_panic("mm_init: directmap_usable_areas refused the reserved ranges or the "
                 "physical-address width (%u bits)", arch_phys_addr_bits());
    if (usable_areas.count == 0)
        mm_panic("mm_init: no usable RAM above 1 MiB in the memory map");
    boot_info_ready = true;
    mb2_print_summary(&usable_areas, &run->stats);

    mtrr_read(&mtrrs);
    print_mtrrs();
}

/* --------------------------------------------- 4. build the kernel table */

/*
 * The top-level slots of the kernel's ranges besides the direct map (whose
 * slots exist wherever RAM is): MMIO pool, vmalloc, kernel stacks, the
 * self-test slot, image.  A slot named twice gets one table.
 * Fills vas with one va per slot; returns how many.
 */
#define KERNEL_HALF_MAX_SLOTS 8
static unsigned kernel_range_slots(virt_addr_t vas[KERNEL_HALF_MAX_SLOTS])
{
    static const uint64_t ranges[][2] = {
        { MMIO_POOL_BASE, MMIO_POOL_END },
        { MM_VMALLOC_BASE, MM_VMALLOC_END },
        { MM_SELFTEST_BASE, MM_SELFTEST_END },
        { MM_KSTACK_BASE, MM_KSTACK_END },
        { MM_KERNEL_IMAGE_BASE, 0 },             /* to the top of the address space */
    };
    unsigned n = 0;
    for (unsigned r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++)
        for (uint64_t va = ranges[r][0]; va - ranges[r][0] < ranges[r][1] - ranges[r][0];
             va = align_down_u64(va, MM_PML4_SLOT_SIZE) + MM_PML4_SLOT_SIZE) {
            MM_BUG_ON(n == KERNEL_HALF_MAX_SLOTS);
            vas[n++] = VA(va);
            if (MM_PML4_SLOT(va) == 511)
                break;                           /* the next slot would wrap */
        }
    return n;
}

/* Give every kernel range's slot its table: 0 with *created, or an error. */
static int prepare_kernel_half(struct pt_mapper *m, unsigned *created)
{
    virt_addr_t vas[KERNEL_HALF_MAX_SLOTS];
    unsigned n = kernel_range_slots(vas);
    return pt_prepare_top_slots(m, vas, n, created);
}

/* *out = the parts of `in` below `limit` (a valid list stays valid). */
static void clip_below(const struct mm_area_list *in, uint64_t limit, struct mm_area_list *out)
{
    out->count = 0;
    for (unsigned i = 0; i < in->count && in->area[i].start.raw < limit; i++) {
        out->area[out->count] = in->area[i];
        if (in->area[i].end.raw > limit)
            out->area[out->count].end = PA(limit);
        out->count++;
    }
}

static void map_or_panic(int err, const char *what, uint64_t va, uint64_t size)
{
    if (err)
        mm_panic("mm_init: cannot map %s at %#lx (+%#lx): %s", what,
                 (unsigned long)va, (unsigned long)size, mm_strerror(err));
}

/* A failed map while the table is built from bump frames: running out
 * means the RAM below MM_BOOT_MAP_END is too small for the table. */
static void build_or_panic(int err, const char *what, uint64_t va, uint64_t size)
{
    if (err == -MM_ENOMEM) {
        uint64_t kib = 0;
        for (unsigned i = 0; i < bump_areas.count; i++)
            kib += mm_area_size(&bump_areas.area[i]) / KiB;
        mm_panic("mm_init: out of page-table frames mapping %s at %#lx: they come from "
                 "usable RAM below %#lx (%lu KiB), the only RAM the boot tables map",
                 what, (unsigned long)va, (unsigned long)MM_BOOT_MAP_END, (unsigned long)kib);
    }
    map_or_panic(err, what, va, size);
}

/*
 * Direct-map [start, end) with `flags` into the table being built, one
 * piece per MTRR memory type: pt_map_range picks large pages only inside a
 * piece, so none spans a type boundary (SDM vol. 3, 11.11.9).
 */
static void map_direct(struct init_run *run, uint64_t start, uint64_t end, uint64_t flags,
                       uint64_t max_page)
{
    while (start < end) {
        uint64_t piece_end = mtrr_uniform_end(&mtrrs, start, end);
        struct pt_flush tok = PT_FLUSH_INIT;
        virt_addr_t va = pa_to_direct_va(PA(start));
        build_or_panic(pt_map_range(&run->kpt, va, PA(start), piece_end - start, flags,
                                    max_page, &tok), "direct map", va.raw, piece_end - start);
        pt_flush_ignore(&tok);     /* the table is not loaded yet */
        if (piece_end < end)
            run->type_splits++;
        start = piece_end;
    }
}

/* directmap_image_alias callback: map one piece of the image's alias. */
static void map_image_piece(void *ctx, uint64_t start, uint64_t end, uint64_t flags)
{
    map_direct(ctx, start, end, flags, PAGE_SIZE);
}

/* The direct map: every range, the image's own bytes page by page. */
static void map_direct_ranges(struct init_run *run)
{
    const struct directmap_ranges *ranges = mm_direct_map_ranges();
    uint64_t max_page = run->big ? PAGE_1G_SIZE : PAGE_2M_SIZE;
    uint64_t img_start = run->params->image_pa_start.raw;
    uint64_t img_end = run->params->image_pa_end.raw;
    for (unsigned i = 0; i < ranges->count; i++) {
        /* RAM around the kernel image; the image's own alias comes below. */
        uint64_t start = ranges->area[i].start.raw, end = ranges->area[i].end.raw;
        if (start < img_start)
            map_direct(run, start, end < img_start ? end : img_start, PTE_KERNEL_RW, max_page);
        if (end > img_end)
            map_direct(run, start > img_end ? start : img_end, end, PTE_KERNEL_RW, max_page);
    }
    directmap_image_alias(run->params, map_image_piece, run);
}

/* The kernel image at its link address, section by section. */
static void map_sections(struct init_run *run)
{
    const struct mm_boot_params *params = run->params;
    for (unsigned i = 0; i < params->nsections; i++) {
        const struct mm_image_section *s = &params->sections[i];
        phys_addr_t pa = PA(s->va.raw - params->image_va_offset);
        struct pt_flush tok = PT_FLUSH_INIT;
        if (s->size == 0)
            continue;            /* legal, e.g. an empty .rodata: nothing to map */
        build_or_panic(pt_map_range(&run->kpt, s->va, pa, s->size, s->flags, PAGE_SIZE, &tok),
                       s->name, s->va.raw, s->size);
        pt_flush_ignore(&tok);
    }
}

static void build_kernel_table(struct init_run *run)
{
    clip_below(&usable_areas, MM_BOOT_MAP_END, &bump_areas);
    if (bump_init(&boot_bump, &bump_areas) != 0)
        mm_panic("mm_init: bump_init refused the usable area list");
    struct frame_allocator *bump_fa = bump_frame_allocator(&boot_bump);
    build_or_panic(pt_mapper_create(bump_fa, &run->kpt), "the top table", 0, PAGE_SIZE);

    run->big = arch_has_1g_pages();
    uint64_t frames_before_direct = bump_used_frames(&boot_bump);
    map_direct_ranges(run);
    run->direct_tables = bump_used_frames(&boot_bump) - frames_before_direct;
    map_sections(run);
    build_or_panic(prepare_kernel_half(&run->kpt, &run->half_tables), "the kernel half",
                   MM_KERNEL_HALF_BASE, 0);
    run->bump_frames = bump_used_frames(&boot_bump);

    /* Everything the kernel touches from now on is mapped. */
    pt_mapper_make_current(&run->kpt);
    arch_flush_tlb_all();
}

/* ---------------------------------------------------- 5. start the buddy */

/*
 * *out = the frames bump never handed out plus the usable RAM at or above
 * MM_BOOT_MAP_END, which bump never saw.  An area cut at that line is
 * joined again when bump left the part below it untouched up to the line.
 */
static void buddy_ranges(struct mm_area_list *out)
{
    bump_remainder(&boot_bump, out);
    for (unsigned i = 0; i < usable_areas.count; i++) {
        struct mm_area a = usable_areas.area[i];
        if (a.end.raw <= MM_BOOT_MAP_END)
            continue;
        if (a.start.raw < MM_BOOT_MAP_END)
            a.start = PA(MM_BOOT_MAP_END);
        if (out->count > 0 && out->area[out->count - 1].end.raw == a.start.raw) {
            out->area[out->count - 1].end = a.end;
        } else {
            MM_BUG_ON(out->count == MM_MAX_AREAS);
            out->area[out->count++] = a;
        }
    }
}

static void map_low_identity(void)
{
    struct kmapper km;
    struct pt_flush tok = PT_FLUSH_INIT;
    kmapper_lock(&km);
    int rc = pt_map_range(&km.mapper, VA(MM_LOW_IDENTITY_START), PA(MM_LOW_IDENTITY_START),
                          MM_LOW_IDENTITY_END - MM_LOW_IDENTITY_START, PTE_PRESENT, PAGE_SIZE,
                          &tok);
    if (rc == 0) {
        pt_flush_local(&tok);    /* only this CPU runs yet */
        low_identity_mapped = true;
    }
    kmapper_unlock(&km);
    map_or_panic(rc, "low identity map", MM_LOW_IDENTITY_START,
                 MM_LOW_IDENTITY_END - MM_LOW_IDENTITY_START);
}

static void start_buddy(struct init_run *run)
{
    buddy_ranges(&buddy_areas);
    int rc = buddy_init(&kernel_buddy, &buddy_areas);
    if (rc != 0)
        mm_panic("mm_init: buddy_init failed: %s", mm_strerror(rc));
    run->frames = buddy_frame_allocator(&kernel_buddy);
    kmapper_setup(run->kpt.top_pa, run->frames);
    kmapper_fix_kernel_half();
    allocators_ready = true;
    if (run->params->low_identity_map)
        map_low_identity();
}

/* --------------------------------------------------------- 6. MMIO pool */

static void start_mmio_pool(struct init_run *run)
{
    int rc = mmio_pool_init(mmio_pool_global(), run->frames);
    if (rc != 0)
        mm_panic("mm_init: mmio_pool_init failed: %s", mm_strerror(rc));
}

/* ------------------------- 7. vmalloc, kernel stacks and the kernel heap */

/*
 * The vmalloc range and the kernel-stack range (mm/vmalloc.h,
 * mm/kstack.h), empty, fed by the buddy; their top-level slots got their
 * tables in step 4, and nothing is mapped yet.  The heap (mm/slab.h,
 * mm/kmalloc.h) over the buddy: its caches take no frame until the first
 * allocation.
 */
static void start_kernel_allocators(struct init_run *run)
{
    int rc = vmalloc_space_init(vmalloc_space_global(), "vmalloc", MM_VMALLOC_BASE,
                                MM_VMALLOC_END, run->frames);
    if (rc == 0)
        rc = mm_kstack_init(run->frames);
    if (rc == 0)
        rc = mm_heap_init(mm_buddy());
    if (rc != 0)
        mm_panic("mm_init: setting up vmalloc, kernel stacks or the heap failed: %s",
                 mm_strerror(rc));
}

/* ------------------------------------------------------------ 8. report */

struct leaf_count {
    uint64_t per_level[4];
};

static void count_direct_leaf(void *ctx, const struct ptdump_leaf *leaf)
{
    struct leaf_count *c = ctx;
    if (leaf->va.raw - mm_direct_map_offset < MM_DIRECT_MAP_MAX_PA)
        c->per_level[leaf->level]++;
}

/* Kernel-half slots (256..511) whose top-level entry exists. */
static unsigned kernel_top_slots(const struct pt_mapper *m)
{
    unsigned n = 0;
    for (unsigned slot = 256; slot < PT_ENTRIES; slot++) {
        pt_entry_t e;
        virt_addr_t va = pt_va_canonicalize((uint64_t)slot * MM_PML4_SLOT_SIZE);
        if (pt_get_entry(m, va, PT_LEVEL_PML4, &e) == 0 && pte_present(e))
            n++;
    }
    return n;
}

/* The summary, one line per topic: each fits the 256-byte log line. */
static void print_summary(const struct init_run *run, const struct leaf_count *lc,
                          uint64_t tables, uint64_t cycles, unsigned top_slots)
{
    struct buddy_usage u;
    buddy_usage(&kernel_buddy, &u);
    mm_printf("mm: RAM %lu MiB usable in %u areas; buddy %lu MiB free (metadata %lu KiB); "
              "bump used %lu frames\n", (unsigned long)(run->stats.usable_bytes / MiB),
              usable_areas.count, (unsigned long)(u.free_npages * PAGE_SIZE / MiB),
              (unsigned long)(u.meta_npages * PAGE_SIZE / KiB), (unsigned long)run->bump_frames);
    mm_printf("mm: direct map %lu x 1G + %lu x 2M + %lu x 4K pages in %lu table pages (%s); "
              "%u memory-type splits\n", (unsigned long)lc->per_level[3],
              (unsigned long)lc->per_level[2], (unsigned long)lc->per_level[1],
              (unsigned long)run->direct_tables,
              run->big ? "CPU has 1 GiB pages" : "no 1 GiB pages", run->type_splits);
    mm_printf("mm: kernel page table %lu pages (%lu KiB); kernel half: %u top-level slots "
              "fixed, %u empty tables preallocated (%u frames); mm init %lu cycles\n",
              (unsigned long)tables, (unsigned long)(tables * PAGE_SIZE / KiB), top_slots,
              run->half_tables, run->half_tables, (unsigned long)cycles);
    mm_printf("mm: init cycles: boot info + areas %lu, page table %lu, buddy %lu, "
              "mapper + MMIO pool + vmalloc %lu, checks %lu\n",
              (unsigned long)(run->t_parse - run->t_start),
              (unsigned long)(run->t_table - run->t_parse),
              (unsigned long)(run->t_buddy - run->t_table),
              (unsigned long)(run->t_mmio - run->t_buddy),
              (unsigned long)(run->t_start + cycles - run->t_mmio));
}

static void report_init(const struct init_run *run, struct mm_init_report *report)
{
    struct pt_mapper live = kmapper_peek();
    struct leaf_count lc = { { 0 } };
    ptdump_walk(&live, count_direct_leaf, &lc);
    uint64_t tables = ptdump_count_tables(&live);
    uint64_t wx = ptdump_count_wx(&live);
    unsigned top_slots = kernel_top_slots(&live);
    uint64_t cycles = arch_read_tsc() - run->t_start;

    if (!run->params->quiet)
        mm_dump_kernel_table();
    print_summary(run, &lc, tables, cycles, top_slots);
    if (wx != 0)
        mm_panic("mm_init: %lu writable+executable pages in the kernel table",
                 (unsigned long)wx);
    if (!report)
        return;
    report->usable_bytes = run->stats.usable_bytes;
    report->nareas = usable_areas.count;
    report->table_pages = tables;
    report->direct_table_pages = run->direct_tables;
    report->kernel_top_slots = top_slots;
    report->kernel_half_frames = run->half_tables;
    for (unsigned l = 0; l < 4; l++)
        report->direct_pages[l] = lc.per_level[l];
    report->type_splits = run->type_splits;
    report->bump_frames = run->bump_frames;
    report->wx_pages = wx;
    report->cycles = cycles;
    report->used_1g = run->big;
}

void mm_init(const struct mm_boot_params *params, struct mm_init_report *report)
{
    struct init_run run = { .params = params, .t_start = arch_read_tsc() };

    check_params(params);
    parse_boot_info(params);
    plan_direct_map(&run);
    run.t_parse = arch_read_tsc();
    build_kernel_table(&run);
    run.t_table = arch_read_tsc();
    start_buddy(&run);
    run.t_buddy = arch_read_tsc();
    start_mmio_pool(&run);
    start_kernel_allocators(&run);
    run.t_mmio = arch_read_tsc();
    report_init(&run, report);
}

void mm_dump_kernel_table(void)
{
    struct pt_mapper live = kmapper_peek();
    mm_printf("mm: kernel page table (top at %#lx):\n", (unsigned long)live.top_pa.raw);
    ptdump_print(&live);
    mm_printf("mm: W+X check: %lu writable+executable pages\n",
              (unsigned long)ptdump_count_wx(&live));
}

int mm_kernel_half_prepare(void)
{
    struct kmapper km;
    unsigned created = 0;
    if (kmapper_peek().top_pa.raw == 0) {
        mm_printf("mm_kernel_half_prepare: no kernel table: call kmapper_setup first\n");
        return -MM_EINVAL;
    }
    if (!kmapper_lock(&km)) {
        kmapper_unlock(&km);
        mm_printf("mm_kernel_half_prepare: cpu %u already holds the kernel mapper lock\n",
                  mm_platform_cpu_id());
        return -MM_EPERM;
    }
    int rc = prepare_kernel_half(&km.mapper, &created);
    if (rc == 0)
        kmapper_fix_kernel_half();
    kmapper_unlock(&km);
    if (rc == 0 && created != 0)
        mm_printf("mm: kernel half: %u empty top-level tables preallocated; the kernel half "
                  "is fixed\n", created);
    return rc;
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
