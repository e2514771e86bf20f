/*
 * mm/pat.c - programs the page attribute table (include/mm/pat.h has the
 * layout, the per-CPU rule and the contracts).
 *
 * Algorithm.  One MSR write per CPU, then a flush of that CPU's TLB
 * (global entries included) so no translation cached before the write
 * keeps the old meaning of entry 1.  Nothing maps with entry 1 before the
 * first mm_pat_init_cpu (mm_ioremap_wc refuses until then), so no cache
 * line can hold data of a mapping whose type changes, and the write needs
 * none of the cache-disable steps that changing a type in use would.
 *
 * Locking: none (see the header).
 */
#include <mm/arch.h>
#include <mm/log.h>
#include <mm/paging.h>
#include <mm/pat.h>

static bool pat_programmed;

int mm_pat_init_cpu(void)
{
    if (!arch_has_pat()) {
        mm_printf("mm_pat_init_cpu: cpu %u has no PAT (CPUID.01H:EDX[16]): "
                  "write-combining stays unavailable\n", mm_platform_cpu_id());
        return -MM_ENODEV;
    }
    arch_wrmsr(MM_MSR_PAT, MM_PAT_VALUE);
    arch_flush_tlb_all();
    __atomic_store_n(&pat_programmed, true, __ATOMIC_RELEASE);
    return 0;
}

bool mm_pat_programmed(void)
{
    return __atomic_load_n(&pat_programmed, __ATOMIC_ACQUIRE);
}

const char *mm_pat_type_name(unsigned type)
{
    switch (type) {
    case MM_PAT_UC: return "UC";
    case MM_PAT_WC: return "WC";
    case MM_PAT_WT: return "WT";
    case MM_PAT_WP: return "WP";
    case MM_PAT_WB: return "WB";
    case MM_PAT_UC_MINUS: return "UC-";
    default: return "??";
    }
}

unsigned mm_pat_type_of_flags(uint64_t flags)
{
    unsigned index = ((flags & PTE_PAT) ? 4u : 0u) | ((flags & PTE_PCD) ? 2u : 0u) |
                     ((flags & PTE_PWT) ? 1u : 0u);
    return mm_pat_entry(MM_PAT_VALUE, index);
}
