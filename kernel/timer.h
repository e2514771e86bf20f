/*
 * timer.h - busy-wait delays for the test kernel (kernel/timer.c).
 */
#ifndef KERNEL_TIMER_H
#define KERNEL_TIMER_H

#include <stdint.h>

/* Spin for at least `us` microseconds.  Interrupts may be on or off;
 * uses PIT channel 2, so only one CPU may call it at a time. */
void udelay(uint64_t us);

#endif
