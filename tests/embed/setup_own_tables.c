/*
 * tests/embed/setup_own_tables.c - memory set-up that keeps the host
 * kernel's own page tables and starts only the allocators
 * (docs/INTEGRATION.md, "Path B").  Linked into embed-own.elf instead of
 * setup_mm_init.c.
 *
 * The page table stays the one entry.asm built: 0..4 GiB in 2 MiB pages at
 * 0xffff800000000000 (the direct map the library expects), the image at
 * 0xffffffff80000000.  The steps are the middle of mm_init without its
 * table building:
 *   1. mm_direct_map_offset says where physical memory is mapped;
 *   2. mb2_parse validates the multiboot2 information, and
 *      mm_direct_map_describe tells the library which physical ranges
 *      the direct map covers write-back (RAM and ACPI, as mm_init would
 *      map them), so that mm_ioremap refuses to alias them and
 *      mm_direct_map_contains answers;
 *   3. mb2_usable_areas gives free RAM minus the low 1 MiB, the boot
 *      information, modules and our image; we keep only what our direct
 *      map covers (below 4 GiB), since the buddy writes into free frames;
 *   4. buddy_init takes those frames;
 *   5. kmapper_setup puts the kernel mapper lock around the CURRENT table,
 *      with the buddy as source of new table frames;
 *   6. mmio_pool_init readies the pool behind mm_ioremap.
 * mm_buddy() and mm_mmio_pool() stay NULL on this path (they report what
 * mm_init made), so the instances are handed back through *out.
 */
#include <mm/init.h>
#include <mm/log.h>
#include <mm/multiboot2.h>
#include "embed.h"

#define DIRECT_MAP_LIMIT (4 * GiB)   /* what entry.asm maps at the direct map */

static struct mb2_info boot_info;   /* points into the boot information */
static struct mm_area_list free_ram;
static struct buddy buddy;

/* Drop or trim the areas that lie above `limit` (the list stays valid). */
static void clip_areas(struct mm_area_list *l, uint64_t limit)
{
    unsigned n = 0;
    for (unsigned i = 0; i < l->count; i++) {
        if (l->area[i].start.raw >= limit)
            continue;
        l->area[n] = l->area[i];
        if (l->area[n].end.raw > limit)
            l->area[n].end = PA(limit);
        n++;
    }
    l->count = n;
}

void embed_mm_setup(uint64_t mbi_pa, struct embed_mm *out)
{
    char err[MB2_ERR_LEN];
    int rc;

    /* 1. */
    mm_direct_map_offset = MM_DIRECT_MAP_BASE;

    /* 2. */
    rc = mb2_parse(&boot_info, pa_to_ptr(PA(mbi_pa)), PA(mbi_pa), MB2_MAX_INFO_SIZE,
                   err, sizeof(err));
    if (rc != 0)
        mm_panic("embed: bad multiboot2 information: %s", err);
    mb2_print_map(&boot_info);
    rc = mm_direct_map_describe(&boot_info, DIRECT_MAP_LIMIT);
    if (rc != 0)
        mm_panic("embed: mm_direct_map_describe: %s", mm_strerror(rc));

    /* 3. */
    struct mb2_reserved image = { PA((uint64_t)__image_pa_start),
        PA(align_up_u64((uint64_t)__image_pa_end, PAGE_SIZE)), "embed image" };
    struct mb2_usable_stats stats;
    rc = mb2_usable_areas(&boot_info, &image, 1, &free_ram, &stats);
    if (rc != 0)
        mm_panic("embed: mb2_usable_areas: %s", mm_strerror(rc));
    mb2_print_summary(&free_ram, &stats);
    clip_areas(&free_ram, DIRECT_MAP_LIMIT);
    if (free_ram.count == 0)
        mm_panic("embed: no usable RAM below 4 GiB");

    /* 4. */
    rc = buddy_init(&buddy, &free_ram);
    if (rc != 0)
        mm_panic("embed: buddy_init: %s", mm_strerror(rc));
    struct frame_allocator *frames = buddy_frame_allocator(&buddy);

    /* 5. */
    struct pt_mapper current = pt_mapper_current(frames);
    kmapper_setup(current.top_pa, frames);

    /* 6. */
    rc = mmio_pool_init(mmio_pool_global(), frames);
    if (rc != 0)
        mm_panic("embed: mmio_pool_init: %s", mm_strerror(rc));

    buddy_dump(&buddy);
    out->how = "own page tables + allocators";
    out->buddy = &buddy;
    out->mmio = mmio_pool_global();
}
