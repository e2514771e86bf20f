/*
 * smp.h - application-processor start-up, cross-CPU calls and the TLB
 * shootdown (kernel/smp.c).  CPUs are named by their dense id, the index
 * of their struct percpu (percpu.h, included here for that reason).
 */
#ifndef KERNEL_SMP_H
#define KERNEL_SMP_H

#include <stdint.h>
#include "percpu.h"

/* Start every CPU the ACPI MADT lists, then remove the low identity map. */
void smp_init(void);
unsigned smp_online_cpus(void);

/*
 * Cross-CPU calls.  smp_post starts fn(arg) on another online CPU and
 * returns at once; smp_wait(cpu) returns when it has finished.  One call
 * per target CPU at a time.  smp_call is smp_post then smp_wait (or a
 * plain call when cpu is this CPU); smp_call_all runs fn on every online
 * CPU at once, this one included, and waits for all.
 */
void smp_post(unsigned cpu, void (*fn)(void *), void *arg);
void smp_wait(unsigned cpu);
void smp_call(unsigned cpu, void (*fn)(void *), void *arg);
void smp_call_all(void (*fn)(void *), void *arg);

/*
 * Invalidate [va, va + npages pages) (npages == 0: everything, global
 * entries included) on every online CPU in targets (bit n: CPU n) but
 * this one, and return when all have.  No IPI at all when that leaves no
 * CPU; the APIC's all-but-self shorthand when it leaves every other one,
 * else one IPI per target.
 */
void smp_tlb_shootdown(uint64_t targets, uint64_t va, uint64_t npages);
uint64_t smp_shootdowns(void);           /* shootdowns sent so far (with a target) */
/* Shootdown requests CPU cpu has carried out so far (in its IPI handler or
 * while it spun waiting itself); 0 for a CPU that is not online. */
uint64_t smp_shootdowns_received(unsigned cpu);

/* The local APIC's registers as this kernel maps them (NULL in x2APIC
 * mode), and their physical address (IA32_APIC_BASE). */
volatile uint32_t *smp_lapic(void);
uint64_t smp_lapic_pa(void);

#endif
