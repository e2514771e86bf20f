/*
 * cpu.c - per-CPU descriptor tables: a GDT with a 64-bit code segment, a
 * data segment and a TSS with two IST stacks (IST1 for double faults,
 * IST2 for NMIs), so a kernel stack overflow still produces a readable
 * report.
 * GS base points at the CPU's struct percpu (see percpu.h).
 */
#include "kernel.h"
#include "io.h"
#include "percpu.h"

#define MSR_GS_BASE 0xc0000101u
#define IST_STACK_SIZE 8192

struct percpu percpu_area[MM_MAX_CPUS];
/* Per CPU: IST1 for double faults, IST2 for NMIs (an NMI during a #DF
 * handler must not reuse its stack). */
static uint8_t ist_stacks[MM_MAX_CPUS][2][IST_STACK_SIZE] __attribute__((aligned(16)));

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
    pc->gdt[3] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
                 (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    pc->gdt[4] = base >> 32;              /* 0x18 TSS, upper half */
    pc->gdt[5] = 0;
    pc->gdt[6] = 0;

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
    __asm__ volatile("ltr %w0" : : "r"(0x18));
    wrmsr(MSR_GS_BASE, (uint64_t)pc);
}
