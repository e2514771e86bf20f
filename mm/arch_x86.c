/*
 * arch_x86.c - privileged x86_64 operations for the mapper, and the CPU-state
 * reads of the conformance suite (see mm/arch.h).
 * Only built for the kernel; the host tests use an emulation instead.
 */
#include <mm/arch.h>
#include <mm/paging.h>     /* PTE_ADDR_MASK */

phys_addr_t arch_read_cr3(void)
{
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    return PA(cr3 & PTE_ADDR_MASK);    /* drop the PCID / PWT / PCD bits */
}

void arch_write_cr3(phys_addr_t pml4_pa)
{
    __asm__ volatile("mov %0, %%cr3" : : "r"(pml4_pa.raw) : "memory");
}

void arch_invlpg(virt_addr_t va)
{
    __asm__ volatile("invlpg (%0)" : : "r"(va.raw) : "memory");
}

void arch_flush_tlb_all(void)
{
    /* Toggling CR4.PGE flushes global entries too (SDM vol. 3, 4.10.4.1). */
    uint64_t cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    if (cr4 & ARCH_CR4_PGE) {
        __asm__ volatile("mov %0, %%cr4" : : "r"(cr4 & ~ARCH_CR4_PGE) : "memory");
        __asm__ volatile("mov %0, %%cr4" : : "r"(cr4) : "memory");
    } else {
        arch_write_cr3(arch_read_cr3());
    }
}

static uint32_t cpuid_edx(uint32_t leaf)
{
    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(leaf), "c"(0));
    return d;
}

static uint32_t cpuid_eax(uint32_t leaf)
{
    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(leaf), "c"(0));
    return a;
}

static uint32_t cpuid_max_ext(void)
{
    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000000u), "c"(0));
    return a;
}

bool arch_has_1g_pages(void)
{
    return cpuid_max_ext() >= 0x80000001u && (cpuid_edx(0x80000001u) & (1u << 26));
}

bool arch_has_nx(void)
{
    return cpuid_max_ext() >= 0x80000001u && (cpuid_edx(0x80000001u) & (1u << 20));
}

uint64_t arch_read_tsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

unsigned arch_phys_addr_bits(void)
{
    if (cpuid_max_ext() < 0x80000008u)
        return 36;
    return cpuid_eax(0x80000008u) & 0xffu;
}

bool arch_has_mtrr(void)
{
    return (cpuid_edx(1) & (1u << 12)) != 0;
}

bool arch_has_pat(void)
{
    return (cpuid_edx(1) & (1u << 16)) != 0;
}

void arch_wrmsr(uint32_t msr, uint64_t value)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32))
                     : "memory");
}

uint64_t arch_rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

uint64_t arch_read_cr0(void)
{
    uint64_t cr0;
    __asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
    return cr0;
}

uint64_t arch_read_cr4(void)
{
    uint64_t cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    return cr4;
}

bool arch_irqs_enabled(void)
{
    uint64_t rflags;
    __asm__ volatile("pushfq; pop %0" : "=r"(rflags) : : "memory");
    return (rflags & (UINT64_C(1) << 9)) != 0;     /* RFLAGS.IF */
}
