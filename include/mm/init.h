/*
 * mm/init.h - one call that brings up the whole memory subsystem, and the
 * kernel-wide instances it creates.
 *
 * mm_init() runs on the boot CPU, interrupts off, before any other CPU is
 * started.  Its preconditions, which the boot stub (boot/boot.asm) meets:
 *   - paging is on with NX enabled (EFER.NXE) and CR0.WP set;
 *   - the early page table maps all physical memory below 4 GiB at
 *     MM_DIRECT_MAP_BASE (0xffff800000000000) and the kernel image at its
 *     link address;
 *   - the multiboot2 information and the image are below 4 GiB.
 * Steps (each a function in mm/init.c):
 *   1. check parameters: sections page-aligned inside the image, counts
 *      within MM_MAX_*, the CPU has NX, and mm_init not called before
 *      (a second call panics: the table it would rebuild is live);
 *   2. parse boot information: the multiboot2 structure, and print the
 *      firmware memory map;
 *   3. plan the direct map: its ranges (mm_direct_map_describe): RAM and
 *      ACPI (types 1, 3, 4) below MM_DIRECT_MAP_MAX_PA (16 TiB) and below
 *      the CPU's physical-address width (bytes above are ignored, with one
 *      log line), see mm/directmap.h; the
 *      boot information must lie inside them; usable RAM = type-1 RAM in
 *      them minus the low 1 MiB, the kernel image, the boot information,
 *      modules and params->reserved; and the MTRRs' memory types;
 *   4. build the kernel table: a bump allocator over the usable RAM below
 *      MM_BOOT_MAP_END (the only RAM the boot tables map) gives the frames
 *      for the direct map of those ranges (1 GiB pages if the CPU has them,
 *      else 2 MiB, 4 KiB at unaligned edges; split where the MTRRs change
 *      the memory type, so no large page holds two types) and the kernel
 *      image with W^X; every other top-level slot of the kernel's ranges
 *      (MMIO pool 322..323, vmalloc 324, kernel stacks 325, image 511:
 *      mm/layout.h) gets an empty table, so the kernel half is complete
 *      (mm/aspace.h); then CR3 is switched to it;
 *   5. start the buddy: it takes every usable frame bump did not use; the
 *      kernel mapper (and its lock) is set up on the new table, with the
 *      kernel half fixed (no top-level entry added or removed); if asked,
 *      a temporary read+execute identity map of [4 KiB, 1 MiB) is added
 *      for AP start-up, removed later with mm_remove_low_identity();
 *   6. MMIO pool: initialised;
 *   7. vmalloc, kernel stacks and the heap: their ranges (mm/vmalloc.h,
 *      mm/kstack.h) set up empty, with frames from the buddy, and the
 *      kernel heap (mm/slab.h, mm/kmalloc.h) over the buddy;
 *   8. report: the page table is dumped with its W+X count (not when
 *      quiet), summary lines are printed, W+X pages are a panic.
 * Malformed boot information is a panic that names the problem and the
 * offset: without a memory map the kernel cannot go on.  So is a map with
 * more than DIRECTMAP_MAX_RANGES (1024) disjoint RAM/ACPI ranges, boot
 * information outside the direct map, and a table that needs more frames
 * than the usable RAM below MM_BOOT_MAP_END holds.
 */
#ifndef MM_INIT_H
#define MM_INIT_H

#include <mm/boot_params.h>
#include <mm/buddy.h>
#include <mm/kmapper.h>
#include <mm/mmio.h>
#include <mm/multiboot2.h>

/* The boot tables map physical memory below this (a precondition above);
 * mm_init takes the frames of the new table only from there. */
#define MM_BOOT_MAP_END (4 * GiB)

struct mm_init_report {
    uint64_t usable_bytes;
    unsigned nareas;
    uint64_t table_pages;                /* page-table frames of the kernel table */
    uint64_t direct_table_pages;         /* of which the direct map needed */
    unsigned kernel_top_slots;           /* kernel-half top-level entries present */
    unsigned kernel_half_frames;         /* empty tables added to fix the kernel half */
    uint64_t direct_pages[4];            /* direct-map leaves by level (1..3) */
    unsigned type_splits;                /* direct-map ranges split at MTRR type changes */
    uint64_t bump_frames;                /* frames bump handed out */
    uint64_t wx_pages;                   /* W+X 4 KiB units: must be 0 */
    uint64_t cycles;                     /* TSC cycles spent in mm_init */
    bool used_1g;
};

/* Bring everything up (see above).  Panics on malformed boot information
 * or parameters (without them the kernel cannot continue), and when called
 * a second time.  report may be NULL. */
void mm_init(const struct mm_boot_params *params, struct mm_init_report *report);

/*
 * Path B (a kernel that builds its own table and calls kmapper_setup):
 * give the kernel table what mm_init gives its own, an empty level-3
 * table in every top-level slot of the MMIO pool, vmalloc, kernel stacks
 * and image that has none, then fix the kernel half (kmapper.h).  Your
 * direct map's slots must be in place already.  Call it after
 * kmapper_setup and before creating any address space; calling it again
 * adds nothing.  0, -MM_ENOMEM (nothing added, not fixed), -MM_EINVAL (no
 * kernel table yet), -MM_EPERM (this CPU holds the kernel mapper lock);
 * the last two are logged.
 */
int mm_kernel_half_prepare(void);

/* Remove the temporary low identity map (no-op if there is none). */
int mm_remove_low_identity(void);
bool mm_has_low_identity(void);

/*
 * The boot's parsed information and usable areas, as computed once by mm
 * init (the areas as they were before the bump allocator took frames from
 * them).  They return NULL
 * before mm init has parsed the information.  The mb2_info's pointers stay
 * valid because the structure is never part of the usable areas.
 */
const struct mb2_info *mm_boot_info(void);
const struct mm_area_list *mm_usable_areas(void);

/* The kernel-wide instances (NULL / not ready before mm_init). */
struct buddy *mm_buddy(void);
struct frame_allocator *mm_buddy_frames(void);
struct mmio_pool *mm_mmio_pool(void);

/*
 * What the direct map covers (mm/ioremap.c).  mm_init describes it; a
 * kernel that keeps its own page tables (Path B) calls
 * mm_direct_map_describe() with its parsed boot information, so that the
 * alias check of mm_ioremap and mm_direct_map_contains work without
 * mm_init.  It computes the direct-map ranges (directmap_collect, with the
 * CPU's physical-address width), keeps only their parts below max_pa (the
 * end of what your direct map maps: 4 GiB for the example's boot table;
 * mm_init passes MM_DIRECT_MAP_MAX_PA), and keeps a copy of *info, whose
 * pointers (into the information structure) must stay valid.  Your table
 * must map every RAM/ACPI byte below max_pa at pa_to_ptr.  It may be
 * called again to replace the description until mm_init has built the
 * table.  Returns 0, -MM_EINVAL (max_pa 0 or not page-aligned, or a bad
 * physical-address width), -MM_ENOMEM (more than DIRECTMAP_MAX_RANGES
 * ranges) or -MM_EBUSY (after mm_init), with the old description kept;
 * each failure prints a line naming it (a failure inside directmap_collect
 * also prints that function's own line).
 */
int mm_direct_map_describe(const struct mb2_info *info, uint64_t max_pa);
/* The described ranges (mm/directmap.h), or NULL before any description. */
struct directmap_ranges;
const struct directmap_ranges *mm_direct_map_ranges(void);
/* True if all of [pa, pa + size) is in the direct map (pa_to_ptr works);
 * false before any description. */
bool mm_direct_map_contains(phys_addr_t pa, uint64_t size);

/*
 * ioremap/iounmap on the kernel table: take the kernel mapper lock, then
 * use the MMIO pool.  Returns NULL / a negative MM_E* code on failure
 * (-MM_EPERM when called while this CPU already holds the mapper lock).
 * mm_ioremap maps whole pages, so it looks at [pa, pa + size) rounded out
 * to pages and returns NULL (one log line naming pa, size and the range)
 * if that overlaps the direct map: those bytes are mapped write-back there,
 * and an uncached alias of write-back memory is not allowed on x86.  Use
 * pa_to_ptr for them.  Exempt are the bytes of the VGA window
 * [0xA0000, 0xC0000) that no RAM/ACPI (type 1, 3, 4) entry covers: the
 * fixed-range MTRRs keep them uncached anyway.  The check does
 * not overflow near 2^64; malformed requests that pass it (size 0, over
 * 1 GiB, pa beyond the physical address width, wrapping past 2^64) are
 * refused by mmio_ioremap (logged).
 */
void *mm_ioremap(phys_addr_t pa, uint64_t size);
int mm_iounmap(void *va);

/*
 * mm_ioremap with write-combining (PAT entry 1, include/mm/pat.h), for
 * framebuffers: the same checks and refusals, plus NULL (logged) before
 * mm_pat_init_cpu has run.  Give it back with mm_iounmap.
 */
void *mm_ioremap_wc(phys_addr_t pa, uint64_t size);

/*
 * A readable pointer to [pa, pa + size), for firmware tables (ACPI) that
 * may lie in, out of, or across the edge of the direct map: the direct-map
 * pointer when the whole range is inside it, else a write-back read-only
 * mapping through the MMIO pool (the same memory type as the direct map,
 * so no conflicting alias).  Returns NULL with one log line for size 0, a
 * range wrapping past 2^64, or a failed mapping (as mm_ioremap).
 * Give it back with mm_memunmap(p), p exactly as returned: 0 for a
 * direct-map pointer (nothing to do); a pool pointer is unmapped (errors
 * as mm_iounmap); -MM_EINVAL (logged) for a pointer that is in neither.
 */
void *mm_memremap(phys_addr_t pa, uint64_t size);
int mm_memunmap(void *p);

/* Print the kernel page table (coalesced) and the W+X line. */
void mm_dump_kernel_table(void);

#endif
