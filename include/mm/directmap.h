/*
 * mm/directmap.h - which physical bytes the direct map covers, and what
 * follows from that: the usable areas stop where it stops, the kernel
 * image's alias in it is laid out section by section, and ioremap must not
 * create an uncached alias of anything in it.
 *
 * These are functions of the parsed boot information alone (no page
 * tables, no allocator; they only print log lines), so the host tests run
 * them on synthetic memory maps.  mm_init (mm/init.c) calls them and does
 * the mapping.  No locking: directmap_collect and directmap_usable_areas
 * sort in static scratch buffers, so they are for the boot CPU only (not
 * reentrant); the others touch only their arguments.
 *
 * The direct map holds physical addresses below its limit: the smaller of
 * MM_DIRECT_MAP_MAX_PA (16 TiB, see mm/layout.h) and 2^phys_bits, the CPU's
 * physical-address width (CPUID 0x80000008).  RAM and ACPI bytes at or
 * above it are ignored: left out of the direct-map ranges and of the usable
 * areas.
 */
#ifndef MM_DIRECTMAP_H
#define MM_DIRECTMAP_H

#include <mm/frame.h>
#include <mm/boot_params.h>
#include <mm/memmap.h>
#include <mm/multiboot2.h>

/*
 * Capacity of a direct-map range list.  Far above MM_MAX_AREAS because it
 * is not a choice of what to keep: every RAM/ACPI range must be mapped, or
 * the kernel could not reach that memory.  Real maps have a few dozen.
 */
#define DIRECTMAP_MAX_RANGES 1024

/* The narrowest physical-address width accepted (a PAE-era CPU has 36). */
#define DIRECTMAP_MIN_PHYS_BITS 32

/*
 * The physical ranges the direct map covers: sorted by start, disjoint,
 * non-adjacent, page-aligned, non-empty, all below MM_DIRECT_MAP_MAX_PA.
 * About 16 KiB: keep it in static storage, not on a boot stack.
 */
struct directmap_ranges {
    unsigned count;
    uint64_t ignored_bytes;     /* RAM/ACPI bytes at or above the limit */
    struct mm_area area[DIRECTMAP_MAX_RANGES];
};

/*
 * Compute the direct-map ranges of `info`: every byte of RAM and ACPI
 * tables (map types 1, 3, 4) below the limit (the smaller of
 * MM_DIRECT_MAP_MAX_PA and 2^phys_bits), rounded outwards
 * to pages, merged; then each range widened to 2 MiB boundaries where the
 * extra bytes are described by some firmware entry (any type) or lie in the
 * legacy first MiB, never across a hole in the map.  The widening saves
 * 4 KiB page tables at range edges.  Widened bytes (reserved, NVS, the
 * first MiB) are mapped write-back like the RAM next to them, as Linux does
 * for the first MiB; the fixed-range MTRRs keep the VGA window
 * [0xA0000, 0xC0000) uncached.
 * out->ignored_bytes is the size of the union of the RAM/ACPI entries
 * above the limit; if it is not 0, one log line says how much was ignored,
 * from where, and why (the CPU's width or the 16 TiB limit).
 * O(n log n) for n map entries; uses a static scratch buffer (boot CPU
 * only).  Returns 0, -MM_EINVAL (logged, *out unchanged) if phys_bits is
 * outside [DIRECTMAP_MIN_PHYS_BITS, 52], or -MM_ENOMEM (one log line
 * naming the range) if the map has more than DIRECTMAP_MAX_RANGES disjoint
 * RAM/ACPI ranges; *out is then not a valid list.
 */
int directmap_collect(const struct mb2_info *info, unsigned phys_bits, struct directmap_ranges *out);

/* True if all of [pa, pa + size) lies in one range of `r` (false if it
 * wraps past 2^64). */
bool directmap_contains(const struct directmap_ranges *r, phys_addr_t pa, uint64_t size);

/*
 * Would mapping [pa, pa + size) uncached alias bytes that `r` maps
 * write-back?  The request is rounded out to whole pages (the MMIO pool
 * maps whole pages).  It conflicts if it overlaps a range of `r`, except
 * for bytes of the VGA window [0xA0000, 0xC0000) that no RAM/ACPI entry
 * (type 1, 3, 4) of `info` covers: the fixed-range MTRRs keep that window
 * uncached whatever the page tables say.  (Not the option-ROM and BIOS
 * area above it: firmware such as SeaBIOS makes that write-protect, which
 * caches reads.)
 * Returns true and sets *hit (if not NULL) to the range it overlaps, or
 * false.  size == 0 is false; a request reaching past 2^64 is checked up to
 * 2^64 - 1 without overflowing (mmio_ioremap rejects it afterwards).
 */
bool directmap_ioremap_conflict(const struct directmap_ranges *r, const struct mb2_info *info,
                                phys_addr_t pa, uint64_t size, struct mm_area *hit);

/*
 * memmap_usable_areas() below the same limit as directmap_collect (the
 * smaller of MM_DIRECT_MAP_MAX_PA and 2^phys_bits), so that every usable
 * area is reachable through the direct map (and fits the buddy allocator's
 * 16 TiB span).  RAM above the limit is excluded before the MM_MAX_AREAS
 * largest areas are chosen, and counts in stats->reserved_bytes; it is not
 * logged here (directmap_collect logs it once).
 * Returns 0, or -MM_EINVAL (one log line) for a phys_bits outside
 * [DIRECTMAP_MIN_PHYS_BITS, 52] or a malformed reserved range; *out is then
 * left unchanged.
 */
int directmap_usable_areas(const struct mb2_info *info, unsigned phys_bits,
                         const struct mb2_reserved *reserved, unsigned nreserved,
                         struct mm_area_list *out, struct mb2_usable_stats *stats);

/*
 * The direct-map alias of the kernel image, page by page, so that W^X holds
 * for physical memory too: each section's bytes get PTE_KERNEL_RW if the
 * section is writable, else PTE_KERNEL_RO; the bytes of the image between
 * and around sections (boot stub, padding) get PTE_KERNEL_RW.  All NX.
 * Calls piece(ctx, start, end, flags) for each non-empty piece, in
 * increasing address order; the pieces tile [image_pa_start, image_pa_end).
 * Preconditions (mm_init checks them): every section is page-aligned and
 * lies inside the image.  Sections of size 0 are skipped; sections are
 * taken in order of physical start, and where two overlap, the bytes
 * already laid out keep the earlier one's flags.  Visits each section once.
 */
typedef void directmap_piece_fn(void *ctx, uint64_t start, uint64_t end, uint64_t flags);
void directmap_image_alias(const struct mm_boot_params *params, directmap_piece_fn *piece,
                           void *ctx);

#endif
