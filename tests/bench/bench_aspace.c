/*
 * bench_aspace.c - cost of the address-space layer's basic operations on
 * one CPU, with frames from the buddy allocator (as in a kernel).
 *
 * Each figure is the time of BATCH operations divided by BATCH, repeated
 * ROUNDS times; the table shows the median round (ns per operation, from
 * clock_gettime(CLOCK_MONOTONIC)).  Host build, -O2, no sanitizers; the
 * host's invlpg and CR3 hooks only count, so a flush costs its
 * bookkeeping here, not the instruction.
 *   create+destroy (empty)    mm_as_create + mm_as_destroy: one top
 *                             table (256 kernel-half entries copied)
 *                             taken and given back
 *   map+unmap 4K (active on one CPU)
 *                             mm_as_map_zeroed + mm_as_unmap of one page
 *                             in an otherwise empty user half, loaded on
 *                             this CPU only: three tables and the data
 *                             frame taken, zeroed, freed again after the
 *                             flush (local invlpg, no shootdown)
 *   map+unmap 4K (tables present)
 *                             the same next to a mapped page, so the
 *                             tables stay: the data frame only
 */
#define _GNU_SOURCE
#include "harness.h"
#include "bench_util.h"

#include <mm/aspace.h>
#include <mm/init.h>
#include <mm/buddy.h>
#include <mm/kmapper.h>

#define BATCH  20000
#define ROUNDS 31
#define SIM_BYTES (256 * MiB)

extern unsigned long harness_shootdowns;

static struct buddy buddy;
static struct frame_allocator *fa;

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_aspace: %s failed: %d\n", what, err);
    exit(1);
}

/* The buddy over simulated memory and a kernel table with three slots. */
static void setup(void)
{
    fa = bench_buddy_kernel(&buddy, SIM_BYTES, "bench_aspace");
}

static double run_create_destroy(void)
{
    struct mm_as as;
    uint64_t t0 = now_ns();
    for (int i = 0; i < BATCH; i++) {
        int err = mm_as_create(&as, fa);
        if (err == 0)
            err = mm_as_destroy(&as);
        if (err)
            die("create+destroy", err);
    }
    return (double)(now_ns() - t0) / BATCH;
}

static double run_map_unmap(struct mm_as *as)
{
    const virt_addr_t va = VA(0x400000);
    uint64_t t0 = now_ns();
    for (int i = 0; i < BATCH; i++) {
        int err = mm_as_map_zeroed(as, va, MM_PROT_READ | MM_PROT_WRITE | MM_PROT_USER);
        if (err == 0)
            err = mm_as_unmap(as, va);
        if (err)
            die("map+unmap", err);
    }
    return (double)(now_ns() - t0) / BATCH;
}

int main(void)
{
    harness_quiet = 1;
    setup();
    struct buddy_usage u0, u1;
    buddy_usage(&buddy, &u0);
    struct mm_as as;
    int err = mm_as_create(&as, fa);
    if (err)
        die("mm_as_create", err);
    mm_as_switch(&as);

    double cd[ROUNDS], mu[ROUNDS], mt[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        cd[r] = run_create_destroy();
        mu[r] = run_map_unmap(&as);
    }
    if ((err = mm_as_map_zeroed(&as, VA(0x401000), MM_PROT_READ | MM_PROT_USER)) != 0)
        die("neighbour map", err);
    for (int r = 0; r < ROUNDS; r++)
        mt[r] = run_map_unmap(&as);
    unsigned long shootdowns = harness_shootdowns;

    if ((err = mm_as_unmap(&as, VA(0x401000))) != 0)
        die("neighbour unmap", err);
    mm_as_switch(NULL);
    if ((err = mm_as_destroy(&as)) != 0)
        die("mm_as_destroy", err);
    buddy_usage(&buddy, &u1);
    if (memcmp(&u0, &u1, sizeof u0) != 0)
        die("frames back in the buddy", -1);

    printf("address spaces, one CPU (median of %d rounds of %d operations)\n", ROUNDS, BATCH);
    printf("  %-40s %8.1f ns\n", "aspace create+destroy (empty)", median(cd, ROUNDS));
    printf("  %-40s %8.1f ns\n", "aspace map+unmap 4K (active on one CPU)", median(mu, ROUNDS));
    printf("  %-40s %8.1f ns\n", "aspace map+unmap 4K (tables present)", median(mt, ROUNDS));
    printf("  shootdowns sent: %lu\n", shootdowns);
    return 0;
}
