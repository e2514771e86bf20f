/*
 * tests/embed/setup_mm_init.c - memory set-up with the library's one entry
 * point, mm_init() (docs/INTEGRATION.md, "Path A").
 *
 * mm_init builds its own kernel page table (direct map of all RAM, this
 * image W^X from the section list below), switches CR3 to it, and starts
 * the buddy allocator, the kernel mapper and the MMIO pool.  After the
 * switch only what is listed here and RAM (through the direct map) is
 * mapped: the low boot stub is gone, which is why entry.asm moved the GDT
 * and the stack into the higher half before calling embed_main.
 */
#include <mm/init.h>
#include "embed.h"

void embed_mm_setup(uint64_t mbi_pa, struct embed_mm *out)
{
    static struct mm_boot_params p;          /* static: off the boot stack */

    p.mbi_pa = PA(mbi_pa);
    p.image_pa_start = PA((uint64_t)__image_pa_start);
    p.image_pa_end = PA(align_up_u64((uint64_t)__image_pa_end, PAGE_SIZE));
    p.image_va_offset = KERNEL_VMA;          /* va = pa + KERNEL_VMA */
    p.sections[0] = (struct mm_image_section){ "embed text", VA(__text_start),
        (uint64_t)(__text_end - __text_start), PTE_KERNEL_TEXT };
    p.sections[1] = (struct mm_image_section){ "embed rodata", VA(__rodata_start),
        (uint64_t)(__rodata_end - __rodata_start), PTE_KERNEL_RO };
    p.sections[2] = (struct mm_image_section){ "embed data+bss", VA(__data_start),
        (uint64_t)(__data_end - __data_start), PTE_KERNEL_RW };
    p.nsections = 3;
    p.nreserved = 0;
    p.low_identity_map = false;              /* no APs to start */
    p.quiet = false;                         /* print the map and the table */

    struct mm_init_report report;
    mm_init(&p, &report);                    /* panics (never returns) on failure */

    out->how = "mm_init";
    out->buddy = mm_buddy();
    out->mmio = mm_mmio_pool();
}
