/*
 * arch_host.c - emulation of mm/arch.h for host tests: CR3 is a variable,
 * TLB flushes are counted, CPU features are switches the tests can flip.
 * While the TLB model (tlb_model.h) is on, CR3 is the current simulated
 * CPU's and invlpg, CR3 writes and full flushes act on its caches.
 */
#include <mm/arch.h>
#include <mm/platform.h>
#include <stdlib.h>
#include "tlb_model.h"

phys_addr_t host_cr3;
unsigned long host_invlpg_count, host_flush_all_count, host_cr3_writes;
bool host_has_1g = true;
unsigned host_phys_addr_bits = 46;
/* Simulated MTRR MSRs: the tests fill host_msr[] (indexed by MSR number
 * for the MTRR range 0x0..0x2ff); host_has_mtrr off means no MTRRs. */
bool host_has_mtrr = false;
uint64_t host_msr[0x300];

phys_addr_t arch_read_cr3(void)
{
    return tlb_model_active() ? tlb_model_cr3(mm_platform_cpu_id()) : host_cr3;
}
/* Called by arch_write_cr3 with the new top table when set (tests that
 * model what the boot tables map until the switch). */
void (*host_cr3_hook)(phys_addr_t pml4_pa);

void arch_write_cr3(phys_addr_t pml4_pa)
{
    host_cr3 = pml4_pa;
    host_cr3_writes++;
    tlb_model_load_cr3(mm_platform_cpu_id(), pml4_pa);
    if (host_cr3_hook)
        host_cr3_hook(pml4_pa);
}
void arch_invlpg(virt_addr_t va)
{
    host_invlpg_count++;
    tlb_model_invlpg(mm_platform_cpu_id(), va);
}

/* The CR4.PGE toggle: global entries go too. */
void arch_flush_tlb_all(void)
{
    host_flush_all_count++;
    tlb_model_flush_all(mm_platform_cpu_id());
}
bool arch_has_1g_pages(void) { return host_has_1g; }
bool arch_has_nx(void) { return true; }
unsigned arch_phys_addr_bits(void) { return host_phys_addr_bits; }
bool arch_has_mtrr(void) { return host_has_mtrr; }
uint64_t arch_rdmsr(uint32_t msr) { return msr < 0x300 ? host_msr[msr] : 0; }
bool host_has_pat = true;
bool arch_has_pat(void) { return host_has_pat; }
void arch_wrmsr(uint32_t msr, uint64_t value)
{
    if (msr >= 0x300)
        abort();            /* the library writes no other MSR */
    host_msr[msr] = value;
}

uint64_t arch_read_tsc(void)
{
#if defined(__x86_64__)
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
#else
    return 0;
#endif
}

/* CPU state read by the conformance suite (mm/conformance.c): switches a
 * test can flip.  RFLAGS.IF is not tied to the harness's irq_save flag. */
uint64_t host_cr0 = ARCH_CR0_WP, host_cr4 = ARCH_CR4_PGE;
bool host_irqs_on;
uint64_t arch_read_cr0(void) { return host_cr0; }
uint64_t arch_read_cr4(void) { return host_cr4; }
bool arch_irqs_enabled(void) { return host_irqs_on; }
