/*
 * bench_buddy.c - timings of the buddy allocator over simulated memory.
 *
 * Table 1: alloc+free pair per order 0..18 (order 0 through the per-CPU
 * cache of single frames, so its two states are the same), in two states:
 *   "block ready": a free block of that order exists (pop + push, no split);
 *   "split 1 GiB": only 1 GiB blocks are free, so the pair splits down and
 *                  merges back up (18 - order levels each way).
 * Table 2: order-0 pair at fragmentation levels of about 1k, 64k and 1M
 *   free order-0 blocks (every other frame allocated, nothing can merge):
 *   "same block": alloc then free, repeatedly (hot cache, algorithmic cost);
 *   "batch of 64": 64 allocs then 64 frees (touches 64 distinct free blocks).
 *
 * Line 0: buddy_init time over one free area [1 MiB, size) for 1, 64 and
 *   256 GiB (median of a few runs, each over fresh untouched simulated
 *   memory, so host page faults on what init writes are counted too).
 *   "cold": as is; "warm heads": the first page of every GiB (where a
 *   seeded 1 GiB block keeps its back-index; mapped RAM in a kernel) is
 *   touched before timing, leaving the O(span / 1 GiB) work itself.
 *
 * Every figure in the tables is the median over many samples of a batch of
 * pairs, in ns per pair.  The 1M level touches about 4 GiB of simulated memory (every
 * free block holds its back-index); it is skipped if the host has less
 * than 8 GiB available.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "bench_util.h"

#include <sys/mman.h>
#include <time.h>
#include <mm/buddy.h>
#include <mm/log.h>

#define SAMPLES 1001
#define BATCH   128

static void die(const char *what)
{
    fprintf(stderr, "bench_buddy: %s\n", what);
    exit(1);
}

/* One sample: ns per alloc+free pair of npages, over BATCH pairs. */
static double sample_pair(struct buddy *b, uint64_t npages)
{
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < BATCH; i++) {
        phys_addr_t pa;
        if (buddy_alloc(b, npages, &pa) || buddy_free(b, pa, npages))
            die("pair failed");
    }
    return (double)(now_ns() - t0) / BATCH;
}

/* One sample: ns per pair of 64 order-0 allocs then 64 frees (reverse). */
static double sample_batch64(struct buddy *b)
{
    phys_addr_t pa[64];
    uint64_t t0 = now_ns();
    for (unsigned r = 0; r < BATCH / 64 * 2; r++) {
        for (unsigned i = 0; i < 64; i++)
            if (buddy_alloc(b, 1, &pa[i]))
                die("batch alloc failed");
        for (unsigned i = 64; i-- > 0;)
            if (buddy_free(b, pa[i], 1))
                die("batch free failed");
    }
    return (double)(now_ns() - t0) / (BATCH / 64 * 2 * 64);
}

static void init_one_area(struct buddy *b, uint64_t start, uint64_t end)
{
    struct mm_area_list l = { .count = 1 };
    l.area[0].start = PA(start);
    l.area[0].end = PA(end);
    if (buddy_init(b, &l))
        die("buddy_init failed");
}

/* Line 0: init cost must not grow with the number of 4 KiB frames. */
static void line_init(void)
{
    static const uint64_t sizes[] = { 1 * GiB, 64 * GiB, 256 * GiB };
    enum { RUNS = 5 };
    static struct buddy b;
    double us[2][3][RUNS];

    for (unsigned r = 0; r < RUNS; r++)
        for (unsigned warm = 0; warm < 2; warm++)
            for (unsigned i = 0; i < 3; i++) {
                sim_mem_init(sizes[i]);
                for (uint64_t pa = 0; warm && pa < sizes[i]; pa += GiB)
                    *(volatile uint64_t *)pa_to_ptr(PA(pa)) = 0;
                uint64_t t0 = now_ns();
                init_one_area(&b, 1 * MiB, sizes[i]);
                us[warm][i][r] = (double)(now_ns() - t0) / 1000.0;
                sim_mem_fini();
            }
    printf("buddy_init over [1 MiB, size) (median us)\n");
    for (unsigned warm = 0; warm < 2; warm++) {
        printf("  %-10s", warm ? "warm heads" : "cold");
        for (unsigned i = 0; i < 3; i++)
            printf("  %3lu GiB %8.1f", (unsigned long)(sizes[i] / GiB),
                   median(us[warm][i], RUNS));
        printf("\n");
    }
    printf("\n");
}

/*
 * Table 1.  Two allocators side by side: "ready" over [0, 4 GiB) holds one
 * frame of its first GiB, which leaves one free block of each order 0..17
 * there (and whole 1 GiB blocks elsewhere); "split" over [4, 8 GiB) holds
 * every block below 1 GiB, so each pair splits a 1 GiB block.  Samples of
 * all orders and both states are interleaved so noise hits all alike.
 */
static void table_orders(void)
{
    static struct buddy ready, split;
    static double rs[BUDDY_NR_ORDERS][SAMPLES], ss[BUDDY_NR_ORDERS][SAMPLES];
    phys_addr_t held;

    init_one_area(&ready, 0, 4 * GiB);
    if (buddy_alloc(&ready, 1, &held))
        die("alloc");
    init_one_area(&split, 4 * GiB, 8 * GiB);
    /* Take every block below 1 GiB; single frames go through the per-CPU
     * cache, whose refill may split a larger block, hence a second pass. */
    uint64_t counts[BUDDY_NR_ORDERS];
    for (unsigned pass = 0; pass < 2; pass++) {
        buddy_free_blocks(&split, counts);
        for (unsigned k = 0; k < BUDDY_MAX_ORDER; k++)
            for (uint64_t i = 0; i < counts[k] && (pass == 0 || k > 0); i++)
                if (buddy_alloc(&split, UINT64_C(1) << k, &held))
                    die("drain");
    }

    for (unsigned w = 0; w < 100; w++)               /* warm up */
        (void)sample_pair(&ready, 1);
    for (unsigned s = 0; s < SAMPLES; s++)
        for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++) {
            rs[k][s] = sample_pair(&ready, UINT64_C(1) << k);
            ss[k][s] = sample_pair(&split, UINT64_C(1) << k);
        }

    printf("alloc+free pair by order (median ns per pair)\n");
    printf("  order  size        block ready  split 1 GiB\n");
    double r0 = 0, r18 = 0;
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++) {
        uint64_t kib = (UINT64_C(4) << k);
        char size[16];
        if (kib >= 1024 * 1024)
            snprintf(size, sizeof size, "%lu GiB", (unsigned long)(kib >> 20));
        else if (kib >= 1024)
            snprintf(size, sizeof size, "%lu MiB", (unsigned long)(kib >> 10));
        else
            snprintf(size, sizeof size, "%lu KiB", (unsigned long)kib);
        double r = median(rs[k], SAMPLES), sp = median(ss[k], SAMPLES);
        printf("  %5u  %-10s  %11.1f  %11.1f\n", k, size, r, sp);
        if (k == 0)
            r0 = r;
        if (k == BUDDY_MAX_ORDER)
            r18 = r;
    }
    printf("  1 GiB pair / order-0 pair (block ready): %.2fx\n\n", r18 / r0);
}

static uint64_t mem_available_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    unsigned long kb = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lu kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

/*
 * An allocator over [base, base + 2 * nfree frames + 64 MiB) with nfree
 * free order-0 blocks: allocate every frame at order 0, then free those
 * with an even frame number in the first 2 * nfree frames (the tail holds
 * the metadata and stays allocated).  Allocated frames are given back to
 * the host (MADV_DONTNEED) so only the free blocks' pages stay resident.
 */
static void fragment(struct buddy *b, uint64_t base, uint64_t nfree)
{
    uint64_t region_end = base + 2 * nfree * PAGE_SIZE;
    init_one_area(b, base, region_end + 64 * MiB);
    phys_addr_t pa;
    uint64_t run_start = UINT64_MAX, run_end = 0;
    while (buddy_alloc(b, 1, &pa) == 0) {
        if (pa.raw >= region_end)
            continue;
        if (pa.raw == run_end && run_end - run_start < 64 * MiB) {
            run_end += PAGE_SIZE;
        } else {
            if (run_start != UINT64_MAX)
                madvise(pa_to_ptr(PA(run_start)), run_end - run_start, MADV_DONTNEED);
            run_start = pa.raw;
            run_end = pa.raw + PAGE_SIZE;
        }
    }
    if (run_start != UINT64_MAX)
        madvise(pa_to_ptr(PA(run_start)), run_end - run_start, MADV_DONTNEED);
    for (uint64_t pa2 = base; pa2 < region_end; pa2 += 2 * PAGE_SIZE)
        if (buddy_free(b, PA(pa2), 1))
            die("fragment free");
    uint64_t counts[BUDDY_NR_ORDERS];
    buddy_drain_all(b);                     /* the per-CPU cache too */
    buddy_free_blocks(b, counts);
    if (counts[0] != nfree)
        die("fragmentation not as planned");
}

/* Table 2: three fragmented allocators side by side, samples interleaved. */
static void table_fragmentation(void)
{
    static const uint64_t levels[] = { 1024, 65536, 1048576 };
    static const uint64_t bases[] = { 0, 1 * GiB, 2 * GiB };
    static struct buddy lb[3];
    static double same[3][SAMPLES], batch[3][SAMPLES];
    unsigned nlevels = 3;

    if (mem_available_bytes() < 8 * GiB) {
        printf("  (1M level skipped: less than 8 GiB available)\n");
        nlevels = 2;
    }
    for (unsigned i = 0; i < nlevels; i++)
        fragment(&lb[i], bases[i], levels[i]);
    for (unsigned w = 0; w < 100; w++)
        (void)sample_pair(&lb[0], 1);
    for (unsigned s = 0; s < SAMPLES; s++)
        for (unsigned i = 0; i < nlevels; i++) {
            same[i][s] = sample_pair(&lb[i], 1);
            batch[i][s] = sample_batch64(&lb[i]);
        }

    printf("order-0 pair vs fragmentation (median ns per pair)\n");
    printf("  free order-0 blocks  same block  batch of 64\n");
    double lo = 1e30, hi = 0;
    for (unsigned i = 0; i < nlevels; i++) {
        double m = median(same[i], SAMPLES), mb = median(batch[i], SAMPLES);
        printf("  %19lu  %10.1f  %11.1f\n", (unsigned long)levels[i], m, mb);
        lo = m < lo ? m : lo;
        hi = m > hi ? m : hi;
    }
    printf("  spread (same block, max/min): %.2fx\n", hi / lo);
}

int main(void)
{
    harness_quiet = 1;
    line_init();
    sim_mem_init(8 * GiB);
    table_orders();
    sim_mem_fini();
    sim_mem_init(2 * GiB + 8 * GiB + 64 * MiB);
    table_fragmentation();
    sim_mem_fini();
    return 0;
}
