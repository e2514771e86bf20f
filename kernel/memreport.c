/*
 * memreport.c - the boot-log lines tools/memory-svg.py needs to draw the
 * picture of memory (docs/memory.svg) that the log does not already hold.
 *
 * The firmware memory map, the "mm:" summary lines and the kernel page
 * table dump come from the library.  What is added here, through public
 * library calls only, are the physical ranges mm_init kept out of the
 * usable RAM or took for itself, and the buddy's free blocks per order.
 * Every line starts with "mm-picture: " and has this stable format
 * (addresses in hex with 0x, end exclusive, counts in decimal):
 *
 *   mm-picture: phys kind=KIND start=0x... end=0x...
 *       KIND: usable (mm_usable_areas: usable RAM before bump took frames),
 *             image (the kernel image), bootinfo (the multiboot2
 *             information), module (a boot module), kept (a range of
 *             mm_boot_params.reserved), bump (frames bump handed out)
 *   mm-picture: buddy when=WHEN total=N free=N cached=N used=N meta=N
 *       struct buddy_usage, in 4 KiB pages; WHEN is boot (after mm_init)
 *       or end (after the self-tests)
 *   mm-picture: buddy-free when=WHEN counts=C0,C1,...,C18
 *       buddy_free_blocks: free blocks of order 0..BUDDY_MAX_ORDER in the
 *       free lists (per-CPU caches excluded)
 *   mm-picture: page table at the end of boot follows
 *       announces a second "mm: kernel page table" dump (end of boot)
 *
 * Where the bump frames are is derived, not read: bump hands out single
 * frames (the mapper never asks it for more) from the usable areas below
 * MM_BOOT_MAP_END in increasing address order (mm/bump.h), so they are the
 * first report->bump_frames frames of those areas.
 *
 * Runs on the boot CPU only; reads nothing that needs a lock except
 * through buddy_usage / buddy_free_blocks, which take the buddy's own.
 */
#include "kernel.h"
#include <mm/boot_params.h>
#include <mm/buddy.h>
#include <mm/init.h>
#include <mm/log.h>
#include <mm/multiboot2.h>

static void print_range(const char *kind, uint64_t start, uint64_t end)
{
    printk("mm-picture: phys kind=%s start=%#lx end=%#lx\n", kind, (unsigned long)start,
           (unsigned long)end);
}

/* The first nframes frames of the usable areas below MM_BOOT_MAP_END, one
 * line per area they touch. */
static void print_bump_frames(const struct mm_area_list *usable, uint64_t nframes)
{
    for (unsigned i = 0; i < usable->count && nframes > 0; i++) {
        uint64_t start = usable->area[i].start.raw;
        uint64_t end = usable->area[i].end.raw;
        if (start >= MM_BOOT_MAP_END)
            break;
        if (end > MM_BOOT_MAP_END)
            end = MM_BOOT_MAP_END;
        uint64_t take = (end - start) / PAGE_SIZE;
        if (take > nframes)
            take = nframes;
        print_range("bump", start, start + take * PAGE_SIZE);
        nframes -= take;
    }
}

void memreport_print_phys(const struct mm_boot_params *p, const struct mm_init_report *r)
{
    const struct mm_area_list *usable = mm_usable_areas();
    const struct mb2_info *info = mm_boot_info();
    if (!usable || !info) {
        printk("memreport_print_phys: called before mm_init\n");
        return;
    }
    for (unsigned i = 0; i < usable->count; i++)
        print_range("usable", usable->area[i].start.raw, usable->area[i].end.raw);
    print_range("image", p->image_pa_start.raw, p->image_pa_end.raw);
    print_range("bootinfo", info->pa.raw, info->pa.raw + info->total_size);
    uint32_t cursor = 0;
    struct mb2_module mod;
    while (mb2_module_next(info, &cursor, &mod))
        print_range("module", mod.start.raw, mod.end.raw);
    for (unsigned i = 0; i < p->nreserved; i++)
        print_range("kept", p->reserved[i].start.raw, p->reserved[i].end.raw);
    print_bump_frames(usable, r->bump_frames);
}

void memreport_print_buddy(const char *when)
{
    struct buddy *b = mm_buddy();
    if (!b) {
        printk("memreport_print_buddy: no buddy yet (when=%s)\n", when);
        return;
    }
    struct buddy_usage u;
    uint64_t counts[BUDDY_NR_ORDERS];
    buddy_usage(b, &u);
    buddy_free_blocks(b, counts);
    printk("mm-picture: buddy when=%s total=%lu free=%lu cached=%lu used=%lu meta=%lu\n", when,
           (unsigned long)u.total_npages, (unsigned long)u.free_npages,
           (unsigned long)u.cached_npages, (unsigned long)u.used_npages,
           (unsigned long)u.meta_npages);
    /* 19 counts of at most 20 digits and a comma each fit in 400 bytes. */
    char line[400];
    size_t n = 0;
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++)
        n += (size_t)mm_snprintf(line + n, sizeof line - n, k ? ",%lu" : "%lu",
                                 (unsigned long)counts[k]);
    printk("mm-picture: buddy-free when=%s counts=%s\n", when, line);
}
