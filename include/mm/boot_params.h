/*
 * mm/boot_params.h - what the kernel tells mm_init about itself: where the
 * multiboot2 information and the kernel image are, how the image's
 * sections are to be mapped, and which other physical ranges to keep.
 *
 * Kept apart from mm/init.h so that the pure planning code (mm/directmap.c)
 * can see the parameters without seeing the kernel-wide instances.
 */
#ifndef MM_BOOT_PARAMS_H
#define MM_BOOT_PARAMS_H

#include <mm/multiboot2.h>
#include <mm/types.h>

/* Most image sections, and most extra reserved ranges, mm_init accepts. */
#define MM_MAX_SECTIONS 8
#define MM_MAX_RESERVED 4

/* One part of the kernel image and the leaf flags it gets (PTE_KERNEL_*). */
struct mm_image_section {
    const char *name;
    virt_addr_t va;          /* 4 KiB aligned */
    uint64_t size;           /* multiple of 4 KiB; 0 (an empty section) is skipped */
    uint64_t flags;
};

struct mm_boot_params {
    phys_addr_t mbi_pa;                  /* multiboot2 information */
    phys_addr_t image_pa_start;          /* whole kernel image, reserved */
    phys_addr_t image_pa_end;
    uint64_t image_va_offset;            /* va = pa + offset for the sections */
    unsigned nsections;
    struct mm_image_section sections[MM_MAX_SECTIONS];
    unsigned nreserved;                  /* more ranges to keep out of RAM */
    struct mb2_reserved reserved[MM_MAX_RESERVED];
    bool low_identity_map;               /* see mm/init.h, step 5 */
    bool quiet;                          /* skip the map table and ptdump */
};

#endif
