/*
 * bench_util.h - what the host benchmarks share: a monotonic nanosecond
 * clock, the median of a sample array (sorted in place), a buddy over
 * simulated memory with the kernel table set up on it, and (in files built
 * with _GNU_SOURCE) pinning a thread to a host CPU.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <stdio.h>
#include <mm/buddy.h>
#include "harness.h"

#ifdef _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

/* Run the calling thread on host CPU cpu % (online CPUs), so that two
 * threads of a scaling row never share one CPU while another idles;
 * nothing on a one-CPU host. */
static inline void bench_pin_to(unsigned cpu)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 2)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % (unsigned)n, &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}
#endif

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline double median(double *v, unsigned n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* A buddy *b over [1 MiB, sim_bytes) of fresh simulated memory and the
 * kernel table (tables at 0x10000) built with its frames; its frame
 * allocator.  Exits with a line naming `who` if buddy_init fails. */
static inline struct frame_allocator *bench_buddy_kernel(struct buddy *b, uint64_t sim_bytes,
                                                         const char *who)
{
    sim_mem_init(sim_bytes);
    struct mm_area_list l = { .count = 1 };
    l.area[0].start = PA(1 * MiB);
    l.area[0].end = PA(sim_bytes);
    int err = buddy_init(b, &l);
    if (err) {
        fprintf(stderr, "%s: buddy_init failed: %d\n", who, err);
        exit(1);
    }
    struct frame_allocator *fa = buddy_frame_allocator(b);
    (void)harness_kernel_table(fa, PA(0x10000));
    return fa;
}

#endif
