/*
 * cpu.c - per-CPU descriptor tables and protection bits.
 *
 * GDT, in the order syscall/sysret would need (user data right below user
 * code): 0x08 kernel code, 0x10 kernel data, 0x18 user data (DPL 3),
 * 0x20 user code (DPL 3, 64-bit), 0x28 the TSS (two slots).  The TSS has
 * two IST stacks (IST1 for double faults, IST2 for NMIs), so a kernel
 * stack overflow still produces a readable report; its RSP0, the stack of
 * entries from ring 3, is set by kernel/user.c each time it enters ring 3.
 *
 * GS base points at the CPU's struct percpu (see percpu.h) whenever the
 * CPU runs in ring 0; ring 3 runs with the user's GS base (0) swapped in
 * by swapgs (kernel/isr.asm).
 *
 * SMEP and SMAP (CR4) are switched on here, on every CPU, where CPUID
 * says the CPU has them: from then on ring 0 faults when it executes or
 * touches a user page.  The library's copy helpers reach user memory
 * through the direct map, so the kernel never opens a user-access window
 * (stac/clac) and RFLAGS.AC stays clear in ring 0.
 */
#include "kernel.h"
#include "io.h"
#include "percpu.h"

#define IST_STACK_SIZE 8192
#define CPUID7_EBX_SMEP (1u << 7)
#define CPUID7_EBX_SMAP (1u << 20)

struct percpu percpu_area[MM_MAX_CPUS];
/* Per CPU: IST1 for double faults, IST2 for NMIs (an NMI during a #DF
 * handler must not reuse its stack). */
static uint8_t ist_stacks[MM_MAX_CPUS][2][IST_STACK_SIZE] __attribute__((aligned(16)));

/* CPUID.(EAX=7,ECX=0):EBX, or 0 when the CPU lacks leaf 7. */
static uint32_t cpuid7_ebx(void)
{
    uint32_t r[4];
    cpuid(0, 0, r);
    if (r[0] < 7)
        return 0;
    cpuid(7, 0, r);
    return r[1];
}

bool cpu_has_smep(void)
{
    return (cpuid7_ebx() & CPUID7_EBX_SMEP) != 0;
}

bool cpu_has_smap(void)
{
    return (cpuid7_ebx() & CPUID7_EBX_SMAP) != 0;
}

/* Turn on SMEP and SMAP on this CPU where it has them. */
static void cpu_protect_from_user(void)
{
    uint64_t cr4 = read_cr4();
    if (cpu_has_smep())
        cr4 |= CR4_SMEP;
    if (cpu_has_smap())
        cr4 |= CR4_SMAP;
    write_cr4(cr4);
}

/*
 * Fill percpu_area[cpu_id], load its GDT and TSS, point GS base at it and
 * switch on SMEP/SMAP.  Runs once on every CPU (kmain, ap_main).
 */
void percpu_setup(unsigned cpu_id, uint32_t apic_id)
{
    struct percpu *pc = &percpu_area[cpu_id];
    pc->cpu_id = cpu_id;
    pc->apic_id = apic_id;
    pc->self = pc;
    pc->ist_stack_top = ist_stacks[cpu_id][0] + IST_STACK_SIZE;

    /* TSS: IST1 at byte offset 36, IST2 at 44; I/O map base beyond the limit. */
    uint8_t *tss = (uint8_t *)pc->tss;
    memset(tss, 0, sizeof(pc->tss));
    uint64_t ist1 = (uint64_t)pc->ist_stack_top;
    uint64_t ist2 = (uint64_t)(ist_stacks[cpu_id][1] + IST_STACK_SIZE);
    memcpy(tss + 36, &ist1, 8);
    memcpy(tss + 44, &ist2, 8);
    uint16_t iomap = sizeof(pc->tss);
    memcpy(tss + 102, &iomap, 2);

    uint64_t base = (uint64_t)tss, limit = sizeof(pc->tss) - 1;
    pc->gdt[0] = 0;
    pc->gdt[1] = 0x00af9a000000ffffull;   /* 0x08 kernel code, L=1 */
    pc->gdt[2] = 0x00cf92000000ffffull;   /* 0x10 kernel data */
    pc->gdt[3] = 0x00cff2000000ffffull;   /* 0x18 user data, DPL 3 */
    pc->gdt[4] = 0x00affa000000ffffull;   /* 0x20 user code, DPL 3, L=1 */
    pc->gdt[5] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
                 (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    pc->gdt[6] = base >> 32;              /* 0x28 TSS, upper half */

    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } gdtr = {
        sizeof(pc->gdt) - 1, (uint64_t)pc->gdt };
    __asm__ volatile(
        "lgdt %0\n\t"
        "pushq $0x08\n\t"
        "leaq 1f(%%rip), %%rax\n\t"
        "pushq %%rax\n\t"
        "lretq\n"
        "1:\n\t"
        "movw $0x10, %%ax\n\t"
        "movw %%ax, %%ds\n\t"
        "movw %%ax, %%es\n\t"
        "movw %%ax, %%ss\n\t"
        "xorw %%ax, %%ax\n\t"
        "movw %%ax, %%fs\n\t"
        "movw %%ax, %%gs\n\t"
        : : "m"(gdtr) : "rax", "memory");
    __asm__ volatile("ltr %w0" : : "r"(GDT_TSS));
    wrmsr(MSR_GS_BASE, (uint64_t)pc);
    wrmsr(MSR_KERNEL_GS_BASE, 0);         /* ring 3's GS base */
    cpu_protect_from_user();
}
