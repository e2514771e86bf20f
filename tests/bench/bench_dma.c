/*
 * bench_dma.c - allocation below a physical limit (buddy_alloc_below,
 * mm/buddy_dma.c) with many free blocks above the limit.  Every row's name
 * begins with "dma"; figures are ns per alloc+free pair of a 2 MiB block,
 * median and 99th percentile over samples of DMA_BATCH pairs each.
 *
 * State: RAM [1 MiB, 3 GiB) and [4 GiB, 12 GiB); 10^5 free single frames
 * above 4 GiB (2 * 10^5 frames taken, the lower frame of each pair
 * freed), so every limit has 10^5 free blocks above it.  Rows:
 *  dma 2 MiB below 4 GiB     the low zone's lists (no scan)
 *  dma 2 MiB below 1 GiB     the bitmap scan of [0, 1 GiB)
 *  dma 2 MiB below 16 MiB    the bitmap scan of [0, 16 MiB)
 *  dma 2 MiB below 8 GiB     the scan of [4 GiB, 8 GiB), high zone first
 *  dma 2 MiB ordinary        buddy_alloc in the same state, for scale
 */
#define _GNU_SOURCE
#include "harness.h"
#include "bench_util.h"

#include <mm/buddy.h>
#include <mm/log.h>

#define NFREE      100000
#define DMA_BATCH  16
#define SAMPLES    4001
#define NPAGES     512                      /* 2 MiB */

static struct buddy B;
static double samples[SAMPLES];

static _Noreturn void die(const char *what)
{
    fprintf(stderr, "bench_dma: %s\n", what);
    exit(1);
}

/* 10^5 free single frames above 4 GiB, each with its buddy held. */
static void fragment_high(void)
{
    static phys_addr_t held[2 * NFREE];
    for (unsigned i = 0; i < 2 * NFREE; i++)
        if (buddy_alloc(&B, 1, &held[i]) || held[i].raw < (UINT64_C(4) << 30))
            die("fragment: alloc");
    buddy_drain_all(&B);
    unsigned nfreed = 0;
    for (unsigned i = 0; i + 1 < 2 * NFREE; i++)
        if ((held[i].raw >> PAGE_SHIFT) % 2 == 0 && held[i + 1].raw == held[i].raw + PAGE_SIZE) {
            if (buddy_free(&B, held[i], 1))
                die("fragment: free");
            nfreed++;
        }
    buddy_drain_all(&B);
    uint64_t counts[BUDDY_NR_ORDERS];
    buddy_free_blocks(&B, counts);
    if (counts[0] < NFREE - NFREE / 100 || nfreed < NFREE - NFREE / 100)
        die("fragment: too few free blocks");
}

/* One sample: ns per pair over DMA_BATCH pairs (limit 0: buddy_alloc). */
static double sample(uint64_t limit)
{
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < DMA_BATCH; i++) {
        phys_addr_t pa;
        int err = limit ? buddy_alloc_below(&B, NPAGES, PA(limit), &pa)
                        : buddy_alloc(&B, NPAGES, &pa);
        if (err || (limit && pa.raw + NPAGES * PAGE_SIZE > limit))
            die("alloc below the limit failed");
        if (buddy_free(&B, pa, NPAGES))
            die("free failed");
    }
    return (double)(now_ns() - t0) / DMA_BATCH;
}

static void row(const char *name, uint64_t limit)
{
    for (unsigned i = 0; i < 100; i++)
        (void)sample(limit);                /* warm up */
    for (unsigned s = 0; s < SAMPLES; s++)
        samples[s] = sample(limit);
    double med = median(samples, SAMPLES);  /* sorts */
    printf("%-32s  %10.1f ns  %10.1f ns\n", name, med, samples[SAMPLES * 99 / 100]);
}

int main(void)
{
    harness_quiet = 1;
    sim_mem_init(12 * GiB);
    struct mm_area_list l = { .count = 2 };
    l.area[0] = (struct mm_area){ PA(1 * MiB), PA(3 * GiB) };
    l.area[1] = (struct mm_area){ PA(4 * GiB), PA(12 * GiB) };
    if (buddy_init(&B, &l))
        die("buddy_init");
    fragment_high();
    printf("DMA-limited 2 MiB alloc+free with %d free blocks above the limit "
           "(ns per pair, samples of %d pairs)\n", NFREE, DMA_BATCH);
    printf("%-32s  %13s  %13s\n", "row", "median", "p99");
    row("dma 2 MiB below 4 GiB", UINT64_C(4) << 30);
    row("dma 2 MiB below 1 GiB", UINT64_C(1) << 30);
    row("dma 2 MiB below 16 MiB", UINT64_C(16) << 20);
    row("dma 2 MiB below 8 GiB", UINT64_C(8) << 30);
    row("dma 2 MiB ordinary", 0);
    buddy_check(&B);
    sim_mem_fini();
    return 0;
}
