/*
 * smp.h - per-CPU data.  Each CPU's GS base points at its struct percpu,
 * whose first field is the CPU's dense id, so smp_cpu_id() is one load.
 */
#ifndef KERNEL_SMP_H
#define KERNEL_SMP_H

#include <stdint.h>
#include <mm/platform.h>

struct percpu {
    uint32_t cpu_id;          /* must stay first: read as %gs:0 */
    uint32_t apic_id;
    struct percpu *self;
    void *fault_ctx;          /* armed fault_catch context, or NULL */
    struct fault_info *fault_out;
    uint64_t tss[13];         /* 104-byte 64-bit TSS */
    uint64_t gdt[7];          /* null, code, data, TSS (2 slots), spare */
    uint8_t *ist_stack_top;
};

extern struct percpu percpu_area[MM_MAX_CPUS];

static inline unsigned smp_cpu_id(void)
{
    unsigned id;
    __asm__ volatile("movl %%gs:0, %0" : "=r"(id));
    return id;
}

static inline struct percpu *this_cpu(void)
{
    struct percpu *p;
    __asm__ volatile("movq %%gs:8, %0" : "=r"(p));
    return p;
}

void percpu_setup(unsigned cpu_id, uint32_t apic_id);   /* GDT, TSS, GS base */

/* smp.c */
void smp_init(void);
unsigned smp_online_cpus(void);
void smp_call(unsigned cpu, void (*fn)(void *), void *arg);
void smp_post(unsigned cpu, void (*fn)(void *), void *arg);
void smp_wait(unsigned cpu);
void smp_call_all(void (*fn)(void *), void *arg);
uint64_t smp_shootdowns(void);
volatile uint32_t *smp_lapic(void);
void udelay(uint64_t us);

#endif
