/*
 * mm/arch.h - the few privileged x86_64 operations the mapper needs.
 *
 * In the kernel these are implemented by mm/arch_x86.c with inline
 * assembly.  The host tests link tests/host/arch_host.c instead, which
 * emulates CR3 and counts TLB flushes, so the mapper runs unchanged in a
 * normal process.
 */
#ifndef MM_ARCH_H
#define MM_ARCH_H

#include <mm/types.h>

phys_addr_t arch_read_cr3(void);          /* physical address of the top table */
void arch_write_cr3(phys_addr_t pml4_pa);  /* switch tables, flushes non-global TLB */
void arch_invlpg(virt_addr_t va);          /* flush one page on this CPU */
void arch_flush_tlb_all(void);             /* flush everything incl. global pages */
bool arch_has_1g_pages(void);              /* CPUID.80000001H:EDX.Page1GB[26] */
bool arch_has_nx(void);                    /* CPUID.80000001H:EDX.NX[20] */
uint64_t arch_read_tsc(void);              /* cycle counter for timing logs */

/* Physical-address width in bits: CPUID.80000008H:EAX[7:0], or 36 when the
 * CPU lacks that leaf (SDM vol. 3, 4.1.4).  Addresses at or above
 * 2^width do not exist on this CPU. */
unsigned arch_phys_addr_bits(void);

/* MTRRs (SDM vol. 3, 11.11): CPUID.01H:EDX.MTRR[12], and a read of one
 * model-specific register.  arch_rdmsr is only called for MTRR MSRs when
 * arch_has_mtrr() is true, and for ARCH_MSR_EFER (present on every CPU in
 * long mode). */
bool arch_has_mtrr(void);
uint64_t arch_rdmsr(uint32_t msr);

/* The page attribute table (SDM vol. 3, 11.12; mm/pat.c): CPUID.01H:
 * EDX.PAT[16], and the one MSR write the library does (MM_MSR_PAT). */
bool arch_has_pat(void);
void arch_wrmsr(uint32_t msr, uint64_t value);

/* CPU state the conformance suite (mm/conformance.c) checks; reads only.
 * arch_irqs_enabled is RFLAGS.IF of the calling CPU. */
#define ARCH_MSR_EFER   UINT32_C(0xc0000080)
#define ARCH_EFER_NXE   (UINT64_C(1) << 11)   /* PTE_NX honoured */
#define ARCH_CR0_WP     (UINT64_C(1) << 16)   /* ring 0 obeys read-only pages */
#define ARCH_CR4_PGE    (UINT64_C(1) << 7)    /* PTE_GLOBAL honoured */
uint64_t arch_read_cr0(void);
uint64_t arch_read_cr4(void);
bool arch_irqs_enabled(void);

#endif
