/*
 * bench_kmapper.c - cost of the kernel-mapper lock on one CPU, against a
 * bare compare-and-swap (the floor for any lock taken with an atomic).
 *
 * Each figure is the time of BATCH operations divided by BATCH, repeated
 * ROUNDS times; the table shows the median round (ns per operation, from
 * clock_gettime(CLOCK_MONOTONIC)).  Host build, -O2, no sanitizers.
 *   cas+store      lock cmpxchg on a word, then a release store (a
 *                  minimal spinlock acquire + release)
 *   lock+unlock    kmapper_lock + kmapper_unlock, uncontended
 *   nested         kmapper_lock + kmapper_unlock while already holding it
 *                  (no atomic read-modify-write on this path)
 */
#define _GNU_SOURCE
#include "harness.h"
#include "bench_util.h"

#include <time.h>
#include <mm/kmapper.h>

#define BATCH  100000
#define ROUNDS 31

static uint64_t word;

static double run_cas(void)
{
    uint64_t t0 = now_ns();
    for (int i = 0; i < BATCH; i++) {
        uint64_t expected = 0;
        __atomic_compare_exchange_n(&word, &expected, 1, false, __ATOMIC_ACQUIRE,
                                    __ATOMIC_RELAXED);
        __atomic_store_n(&word, 0, __ATOMIC_RELEASE);
    }
    return (double)(now_ns() - t0) / BATCH;
}

static double run_lock(void)
{
    struct kmapper km;
    uint64_t t0 = now_ns();
    for (int i = 0; i < BATCH; i++) {
        kmapper_lock(&km);
        kmapper_unlock(&km);
    }
    return (double)(now_ns() - t0) / BATCH;
}

static double run_nested(void)
{
    struct kmapper outer, km;
    kmapper_lock(&outer);
    uint64_t t0 = now_ns();
    for (int i = 0; i < BATCH; i++) {
        kmapper_lock(&km);
        kmapper_unlock(&km);
    }
    double r = (double)(now_ns() - t0) / BATCH;
    kmapper_unlock(&outer);
    return r;
}

int main(void)
{
    static struct frame_allocator none;
    kmapper_setup(PA(0x1000), &none);
    double cas[ROUNDS], lk[ROUNDS], nest[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        cas[r] = run_cas();
        lk[r] = run_lock();
        nest[r] = run_nested();
    }
    double c = median(cas, ROUNDS), l = median(lk, ROUNDS), n = median(nest, ROUNDS);
    printf("kernel-mapper lock (median of %d rounds of %d operations)\n", ROUNDS, BATCH);
    printf("  %-28s %8.2f ns\n", "bare CAS + release store", c);
    printf("  %-28s %8.2f ns  (%.2fx CAS)\n", "lock+unlock, uncontended", l, l / c);
    printf("  %-28s %8.2f ns  (%.2fx CAS)\n", "nested lock+unlock", n, n / c);
    return 0;
}
