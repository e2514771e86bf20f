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
    embed_image_params(&p, PTE_KERNEL_RW);   /* text R+X, rodata R, data R+W */
    p.nreserved = 0;
    p.low_identity_map = false;              /* no APs to start */
    p.quiet = false;                         /* print the map and the table */

    struct mm_init_report report;
    mm_init(&p, &report);                    /* panics (never returns) on failure */

    out->how = "mm_init";
    out->buddy = mm_buddy();
    out->mmio = mm_mmio_pool();
    out->params = &p;
}
