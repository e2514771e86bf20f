/*
 * percpu.h - per-CPU data of the test kernel.
 *
 * Each CPU owns one struct percpu in percpu_area[], indexed by its dense
 * CPU id (0 = the boot CPU, then the APs in the order they started).  The
 * CPU's GS base points at its own entry, so the fields at fixed offsets
 * are one load away: cpu_id at %gs:0 (smp_cpu_id), self at %gs:8
 * (this_cpu).  percpu_setup() (cpu.c) fills the entry, loads its GDT and
 * TSS, sets GS base and switches on SMEP/SMAP; it runs once on each CPU,
 * on that CPU.
 *
 * Only the owning CPU writes its entry after setup, except apic_id, which
 * the boot CPU writes before it starts the AP.  No lock is needed.
 */
#ifndef KERNEL_PERCPU_H
#define KERNEL_PERCPU_H

#include <stddef.h>
#include <stdint.h>
#include <mm/platform.h>

struct fault_info;
struct user_process;

struct percpu {
    uint32_t cpu_id;          /* must stay first: read as %gs:0 */
    uint32_t apic_id;
    struct percpu *self;      /* must stay at offset 8: read as %gs:8 */
    void *fault_ctx;          /* armed fault_catch context, or NULL */
    struct fault_info *fault_out;
    uint64_t tss[13];         /* 104-byte 64-bit TSS */
    uint64_t gdt[7];          /* null, code, data, TSS (2 slots), spare */
    uint8_t *ist_stack_top;
    struct user_process *user;  /* the process this CPU runs (user.c), or NULL */
};

/* Byte offset of RSP0 (the stack for entries from ring 3) in the TSS. */
#define TSS_RSP0_OFFSET 4

_Static_assert(offsetof(struct percpu, cpu_id) == 0, "smp_cpu_id reads %gs:0");
_Static_assert(offsetof(struct percpu, self) == 8, "this_cpu reads %gs:8");

extern struct percpu percpu_area[MM_MAX_CPUS];

/* The calling CPU's dense id, 0 .. MM_MAX_CPUS-1. */
static inline unsigned smp_cpu_id(void)
{
    unsigned id;
    __asm__ volatile("movl %%gs:0, %0" : "=r"(id));
    return id;
}

/* The calling CPU's own entry of percpu_area. */
static inline struct percpu *this_cpu(void)
{
    struct percpu *p;
    __asm__ volatile("movq %%gs:8, %0" : "=r"(p));
    return p;
}

/* Fill percpu_area[cpu_id], load its GDT and TSS, point GS base at it,
 * switch on SMEP/SMAP where the CPU has them. */
void percpu_setup(unsigned cpu_id, uint32_t apic_id);

#endif
