/*
 * mm/pat.h - memory types through the page attribute table (SDM vol. 3,
 * 11.12), and the one PAT layout this library programs.
 *
 * A 4 KiB leaf picks one of the eight PAT entries with three of its bits:
 * index = 4 * PAT (bit 7) + 2 * PCD (bit 4) + PWT (bit 3).  A 2 MiB or
 * 1 GiB leaf has PS in bit 7, so its PAT bit moves to bit 12.  Callers of
 * the mapper always pass PTE_PAT (bit 7) and the mapper puts it where the
 * level wants it (pt_map_* in include/mm/paging.h).
 *
 * The layout (MM_PAT_VALUE).  The power-on value is WB, WT, UC-, UC in
 * entries 0-3, repeated in 4-7.  mm_pat_init_cpu changes only entry 1
 * from WT to WC, so no bit pattern any existing mapping uses changes
 * meaning, and WT stays available in entry 5:
 *
 *   index  PAT PCD PWT  type   used by
 *   0      0   0   0    WB     RAM: direct map, image, vmalloc, user pages
 *   1      0   0   1    WC     mm_ioremap_wc (framebuffers)
 *   2      0   1   0    UC-    (unused)
 *   3      0   1   1    UC     mm_ioremap (device registers)
 *   4      1   0   0    WB     (unused)
 *   5      1   0   1    WT     (available: PTE_PAT | PTE_PWT)
 *   6      1   1   0    UC-    (unused)
 *   7      1   1   1    UC     (unused)
 *
 * Every CPU must run mm_pat_init_cpu once (the boot CPU before anything
 * maps write-combining, each other CPU before it runs kernel code that
 * touches such a mapping): the PAT is a per-CPU register, and two CPUs
 * that read entry 1 differently would see one mapping with two memory
 * types.  Before the boot CPU has run it, WC requests are refused.
 *
 * Locking: none needed.  mm_pat_init_cpu touches only the calling CPU's
 * register and its TLB; the "programmed" flag it sets is only ever set.
 */
#ifndef MM_PAT_H
#define MM_PAT_H

#include <mm/types.h>

#define MM_MSR_PAT       UINT32_C(0x277)

/* PAT memory-type encodings (SDM vol. 3, table 11-10). */
#define MM_PAT_UC        0u
#define MM_PAT_WC        1u
#define MM_PAT_WT        4u
#define MM_PAT_WP        5u
#define MM_PAT_WB        6u
#define MM_PAT_UC_MINUS  7u

/* The PAT MSR value of the power-on reset, and the one programmed here. */
#define MM_PAT_RESET     UINT64_C(0x0007040600070406)
#define MM_PAT_VALUE     UINT64_C(0x0007040600070106)

/* Type of entry `index` (0..7) in a PAT MSR value. */
static inline unsigned mm_pat_entry(uint64_t pat, unsigned index)
{
    return (unsigned)(pat >> (8 * (index & 7u))) & 7u;
}

/*
 * Program this CPU's PAT with MM_PAT_VALUE and flush its TLB.  Returns
 * 0, or -MM_ENODEV when the CPU has no PAT (CPUID.01H:EDX.PAT[16]; every
 * x86_64 CPU has one), logged, nothing written.  Interrupts may be on or
 * off; call once per CPU, on that CPU.
 */
int mm_pat_init_cpu(void);

/* Has some CPU run mm_pat_init_cpu (so WC mappings are allowed)? */
bool mm_pat_programmed(void);

/* Name of a PAT memory type ("WB", "WC", ...; "??" for a reserved one). */
const char *mm_pat_type_name(unsigned type);

/* The memory type a leaf's flags select under MM_PAT_VALUE.  flags as the
 * mapper reports them (pt_translate: PTE_PAT in bit 7 at every level). */
unsigned mm_pat_type_of_flags(uint64_t flags);

#endif
