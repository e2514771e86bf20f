/*
 * tests/embed/setup_own_tables.c - memory set-up that keeps the host
 * kernel's own page tables and starts only the allocators
 * (docs/INTEGRATION.md, "Path B").  Linked into embed-own.elf instead of
 * setup_mm_init.c.
 *
 * The page table stays the one entry.asm built: 0..4 GiB in 2 MiB pages at
 * 0xffff800000000000 (the direct map the library expects), the image at
 * 0xffffffff80000000.  Those 2 MiB pages are writable AND executable, so
 * step 0 gives the image's own 2 MiB a page table of 4 KiB pages with each
 * section's flags (W^X), as a Path B kernel should; mm_conformance checks
 * the result.  The steps are the middle of mm_init without its table
 * building:
 *   0. the image's 2 MiB get 4 KiB pages with the flags of own_params;
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
 *      with the buddy as source of new table frames, and
 *      mm_kernel_half_prepare gives each top-level slot of the library's
 *      kernel ranges (MMIO pool, vmalloc, kernel stacks, image) a table
 *      and fixes the kernel half, as mm_init does;
 *   6. mmio_pool_init readies the pool behind mm_ioremap.
 * mm_buddy() and mm_mmio_pool() stay NULL on this path (they report what
 * mm_init made), so the instances are handed back through *out.
 */
#include <mm/arch.h>
#include <mm/init.h>
#include <mm/log.h>
#include <mm/multiboot2.h>
#include "embed.h"

#define DIRECT_MAP_LIMIT (4 * GiB)   /* what entry.asm maps at the direct map */

/* The data+bss flags: W^X, unless this is the deliberately broken variant
 * embed-own-broken-wx.iso, whose mm_conformance run must report
 * "not ok ... image_sections_wx". */
#if defined(EMBED_BROKEN_WX)
#define DATA_FLAGS (PTE_PRESENT | PTE_WRITE | PTE_GLOBAL)      /* W+X */
#else
#define DATA_FLAGS PTE_KERNEL_RW
#endif

static struct mb2_info boot_info;   /* points into the boot information */
static struct mm_boot_params own_params;   /* the image as step 0 maps it */
static pt_entry_t image_pd[512] __attribute__((aligned(PAGE_SIZE)));
static pt_entry_t image_pt[512] __attribute__((aligned(PAGE_SIZE)));
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

/* Flags of the image page at va: its section's, else read/write, no-execute. */
static uint64_t image_page_flags(uint64_t va)
{
    for (unsigned i = 0; i < own_params.nsections; i++) {
        const struct mm_image_section *s = &own_params.sections[i];
        if (va >= s->va.raw && va - s->va.raw < s->size)
            return s->flags;
    }
    return PTE_PRESENT | PTE_WRITE | PTE_NX;
}

/*
 * Step 0: replace the 2 MiB page that holds the image by a table of 4 KiB
 * pages with the section flags.  The new PD copies entry.asm's image PD
 * (the same 1 GiB at the image's slot) except for that one entry; one store
 * into the image PDPT switches to it, and the same physical pages stay
 * mapped throughout, so the code and stack running here never notice.
 * Runs before anything else, with the direct map of entry.asm.
 */
static void protect_image(void)
{
    uint64_t image_va = (uint64_t)__image_pa_start + KERNEL_VMA;
    uint64_t base_va = align_down_u64(image_va, PAGE_2M_SIZE);
    if ((uint64_t)__image_pa_end + KERNEL_VMA > base_va + PAGE_2M_SIZE)
        mm_panic("embed: image [%#lx, %#lx) crosses a 2 MiB boundary",
                 (unsigned long)(uint64_t)__image_pa_start, (unsigned long)(uint64_t)__image_pa_end);

    embed_image_params(&own_params, DATA_FLAGS);
    for (unsigned i = 0; i < 512; i++) {
        uint64_t va = base_va + (uint64_t)i * PAGE_SIZE;
        image_pt[i] = pte_make(PA(va - KERNEL_VMA), image_page_flags(va));
    }
    pt_entry_t *pml4 = pa_to_ptr(arch_read_cr3());
    pt_entry_t *pdpt = pa_to_ptr(pte_pa(pml4[pt_index(VA(image_va), PT_LEVEL_PML4)]));
    pt_entry_t *pdpte = &pdpt[pt_index(VA(image_va), PT_LEVEL_PDPT)];
    const pt_entry_t *old_pd = pa_to_ptr(pte_pa(*pdpte));
    for (unsigned i = 0; i < 512; i++)
        image_pd[i] = old_pd[i];
    image_pd[pt_index(VA(image_va), PT_LEVEL_PD)] =
        pte_make(PA((uint64_t)image_pt - KERNEL_VMA), PTE_TABLE);
    *pdpte = pte_make(PA((uint64_t)image_pd - KERNEL_VMA), PTE_TABLE);
    arch_flush_tlb_all();
}

void embed_mm_setup(uint64_t mbi_pa, struct embed_mm *out)
{
    char err[MB2_ERR_LEN];
    int rc;

    /* 0., 1. */
    mm_direct_map_offset = MM_DIRECT_MAP_BASE;
    protect_image();

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
    rc = mm_kernel_half_prepare();
    if (rc != 0)
        mm_panic("embed: mm_kernel_half_prepare: %s", mm_strerror(rc));

    /* 6. */
    rc = mmio_pool_init(mmio_pool_global(), frames);
    if (rc != 0)
        mm_panic("embed: mmio_pool_init: %s", mm_strerror(rc));

    buddy_dump(&buddy);
    out->how = "own page tables + allocators";
    out->buddy = &buddy;
    out->mmio = mmio_pool_global();
    out->params = &own_params;
}
