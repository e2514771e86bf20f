/*
 * mm/layout.h - the whole virtual address map, in one place.
 *
 * x86_64 with 4-level paging translates 48-bit canonical addresses: the
 * lower half [0, 2^47) and the upper half [2^64 - 2^47, 2^64).  Each of
 * the 512 top-level (PML4) slots covers 512 GiB.
 *
 *   range                                      slots     use
 *   0x0000000000000000 .. 0x0000000000000fff   0         page 0: never mapped, so a
 *                                                        null dereference faults
 *   0x0000000000001000 .. 0x00000000000fffff   0         temporary identity map of the
 *                                                        AP trampoline (while APs start)
 *   0x0000000000001000 .. 0x00007fffffffefff   0..255    user half, one per address space
 *                                                        (the top page stays unmapped)
 *   0xffff800000000000 .. 0xffff8fffffffffff   256..287  direct map: pa + 0xffff800000000000
 *                                                        for pa < MM_DIRECT_MAP_MAX_PA
 *   0xffffa10000000000 .. 0xffffa1ffffffffff   322..323  MMIO pool (ioremap), 1 TiB
 *   0xffffa20000000000 .. 0xffffa27fffffffff   324       vmalloc (reserved, later issue)
 *   0xffffa28000000000 .. 0xffffa2ffffffffff   325       kernel stacks with guard pages
 *                                                        (reserved, later issue)
 *   0xffffa30000000000 .. 0xffffa37fffffffff   326       self-test pages (mm_conformance,
 *                                                        the in-kernel suites)
 *   0xffffffff80000000 .. 0xffffffffffffffff   511       kernel image (-mcmodel=kernel)
 *
 * Everything from slot 256 up is the kernel half, shared by every address
 * space.  Every range starts and ends on a 1 GiB boundary (the image's
 * base on 2 GiB, as -mcmodel=kernel requires), so no large page and no
 * page table is ever shared by two ranges.  The gaps between ranges are
 * never mapped.
 *
 * The constants are plain integers (not virt_addr_t) so that they can be
 * used in static assertions and in #if.
 */
#ifndef MM_LAYOUT_H
#define MM_LAYOUT_H

#include <mm/types.h>

/* Bytes covered by one top-level (PML4) entry, and the slot of a va. */
#define MM_PML4_SLOT_SIZE    (UINT64_C(1) << 39)
#define MM_PML4_SLOT(va)     ((unsigned)(((uint64_t)(va) >> 39) & 511u))

/* Lower (user) half. */
#define MM_USER_BASE         UINT64_C(0x0000000000001000)    /* page 0 is never mapped */
#define MM_USER_END          UINT64_C(0x00007ffffffff000)    /* exclusive */
#define MM_LOWER_HALF_END    UINT64_C(0x0000800000000000)    /* first non-canonical va */

/* Temporary identity map for the AP trampoline: [4 KiB, 1 MiB), R+X. */
#define MM_LOW_IDENTITY_START UINT64_C(0x1000)
#define MM_LOW_IDENTITY_END   UINT64_C(0x100000)             /* exclusive */

/* Upper (kernel) half. */
#define MM_KERNEL_HALF_BASE  UINT64_C(0xffff800000000000)

/*
 * Direct map: physical address pa appears at MM_DIRECT_MAP_BASE + pa for
 * pa < MM_DIRECT_MAP_MAX_PA (16 TiB, the most the buddy allocator spans).
 * mm_init ignores RAM and ACPI bytes at or above the limit (one log line).
 */
#define MM_DIRECT_MAP_BASE   UINT64_C(0xffff800000000000)
#define MM_DIRECT_MAP_MAX_PA (UINT64_C(16) << 40)
#define MM_DIRECT_MAP_END    (MM_DIRECT_MAP_BASE + MM_DIRECT_MAP_MAX_PA)   /* exclusive */

/* MMIO pool: device mappings (ioremap), handed out by mm/mmio.c. */
#define MMIO_POOL_BASE       UINT64_C(0xffffa10000000000)
#define MMIO_POOL_END        UINT64_C(0xffffa20000000000)    /* exclusive */
#define MMIO_POOL_SIZE       (MMIO_POOL_END - MMIO_POOL_BASE)

/* Reserved now so that their top-level slots exist from mm_init on. */
#define MM_VMALLOC_BASE      UINT64_C(0xffffa20000000000)
#define MM_VMALLOC_END       UINT64_C(0xffffa28000000000)    /* exclusive */
#define MM_KSTACK_BASE       UINT64_C(0xffffa28000000000)
#define MM_KSTACK_END        UINT64_C(0xffffa30000000000)    /* exclusive */

/* Self-tests (mm_conformance, the in-kernel suites, the embedding example)
 * map and unmap pages here while they run; nothing else ever does. */
#define MM_SELFTEST_BASE     UINT64_C(0xffffa30000000000)
#define MM_SELFTEST_END      UINT64_C(0xffffa38000000000)    /* exclusive */

/* Kernel image: the top 2 GiB, as -mcmodel=kernel requires.  The library
 * takes the image's addresses from struct mm_boot_params; this is where
 * the test kernel links it (linker.ld, KERNEL_VMA). */
#define MM_KERNEL_IMAGE_BASE UINT64_C(0xffffffff80000000)

#define MM_LAYOUT_GIB        (UINT64_C(1) << 30)

_Static_assert(MM_USER_END <= MM_LOWER_HALF_END, "user half is canonical");
_Static_assert(MM_LOW_IDENTITY_END <= MM_PML4_SLOT_SIZE, "identity map in slot 0");
_Static_assert(MM_PML4_SLOT(MM_DIRECT_MAP_BASE) == 256, "direct map starts the kernel half");
_Static_assert(MM_DIRECT_MAP_END <= MMIO_POOL_BASE, "direct map below the MMIO pool");
_Static_assert(MMIO_POOL_END <= MM_VMALLOC_BASE, "MMIO pool below vmalloc");
_Static_assert(MM_VMALLOC_END <= MM_KSTACK_BASE, "vmalloc below kernel stacks");
_Static_assert(MM_KSTACK_END <= MM_SELFTEST_BASE, "kernel stacks below the self-tests");
_Static_assert(MM_SELFTEST_END <= MM_KERNEL_IMAGE_BASE, "self-tests below the image");
_Static_assert(MM_DIRECT_MAP_BASE % MM_LAYOUT_GIB == 0 && MMIO_POOL_BASE % MM_LAYOUT_GIB == 0 &&
               MMIO_POOL_END % MM_LAYOUT_GIB == 0 && MM_VMALLOC_BASE % MM_LAYOUT_GIB == 0 &&
               MM_VMALLOC_END % MM_LAYOUT_GIB == 0 && MM_SELFTEST_BASE % MM_LAYOUT_GIB == 0 &&
               MM_SELFTEST_END % MM_LAYOUT_GIB == 0 && MM_KSTACK_BASE % MM_LAYOUT_GIB == 0 &&
               MM_KSTACK_END % MM_LAYOUT_GIB == 0 &&
               MM_KERNEL_IMAGE_BASE % (2 * MM_LAYOUT_GIB) == 0,
               "every range is 1 GiB aligned");

#endif
