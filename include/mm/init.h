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
 * Steps (each logged):
 *   1. parse the multiboot2 information, print the firmware memory map;
 *   2. the direct-map ranges: RAM and ACPI (types 1, 3, 4) below
 *      MM_DIRECT_MAP_MAX_PA (16 TiB; bytes above it are ignored, with one
 *      log line), see mm/directmap.h; usable RAM = type-1 RAM below that
 *      limit minus the low 1 MiB, the kernel image, the boot information,
 *      modules and params->reserved;
 *   3. a bump allocator over that RAM builds a new kernel page table:
 *      the direct map of those ranges (1 GiB pages if the CPU has them,
 *      else 2 MiB, 4 KiB at unaligned edges) and the kernel image with W^X;
 *   4. CR3 is switched to the new table;
 *   5. the buddy allocator takes every frame bump did not use;
 *   6. the kernel mapper (and its lock) is set up on the new table; if
 *      asked, a temporary read+execute identity map of [4 KiB, 1 MiB) is
 *      added for AP start-up, removed later with mm_remove_low_identity();
 *   7. the MMIO pool is initialised; the page table is dumped with its
 *      W+X count and a summary line is printed.
 * Malformed boot information is a panic that names the problem and the
 * offset: without a memory map the kernel cannot go on.  So is a map with
 * more than DIRECTMAP_MAX_RANGES (1024) disjoint RAM/ACPI ranges.
 */
#ifndef MM_INIT_H
#define MM_INIT_H

#include <mm/boot_params.h>
#include <mm/buddy.h>
#include <mm/kmapper.h>
#include <mm/mmio.h>
#include <mm/multiboot2.h>

struct mm_init_report {
    uint64_t usable_bytes;
    unsigned nareas;
    uint64_t table_pages;                /* page-table frames of the kernel table */
    uint64_t direct_table_pages;         /* of which the direct map needed */
    uint64_t direct_pages[4];            /* direct-map leaves by level (1..3) */
    uint64_t bump_frames;                /* frames bump handed out */
    uint64_t wx_pages;                   /* W+X 4 KiB units: must be 0 */
    uint64_t cycles;                     /* TSC cycles spent in mm_init */
    bool used_1g;
};

/* Bring everything up (see above).  Panics on malformed boot information
 * or parameters: without them the kernel cannot continue. */
void mm_init(const struct mm_boot_params *params, struct mm_init_report *report);

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
/* True if all of [pa, pa + size) is in the direct map (pa_to_ptr works). */
bool mm_direct_map_contains(phys_addr_t pa, uint64_t size);
int mm_iounmap(void *va);

/* Print the kernel page table (coalesced) and the W+X line. */
void mm_dump_kernel_table(void);

#endif
