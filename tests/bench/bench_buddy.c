/*
 * bench_buddy.c - timings of the buddy allocator over simulated memory.
 *
 * Table 1: alloc+free pair per order 0..18, in two states:
 *   "block ready": a free block of that order exists (pop + push, no split);
 *   "split 1 GiB": only 1 GiB blocks are free, so the pair splits down and
 *                  merges back up (18 - order levels each way).
 * Table 2: order-0 pair at fragmentation levels of about 1k, 64k and 1M
 *   free order-0 blocks (every other frame allocated, nothing can merge):
 *   "same block": alloc then free, repeatedly (hot cache, algorithmic cost);
 *   "batch of 64": 64 allocs then 64 frees (touches 64 distinct free blocks).
 *
 * Every figure is the median over many samples of a batch of pairs, in ns
 * per pair.  The 1M level touches about 4 GiB of simulated memory (every
 * free block holds its back-index); it is skipped if the host has less
 * than 8 GiB available.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <sys/mman.h>
#include <time.h>
#include <mm/buddy.h>
#include <mm/log.h>

#define SAMPLES 1001
#define BATCH   128

static struct buddy B;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return v[n / 2];
}

static void die(const char *what)
{
    fprintf(stderr, "bench_buddy: %s\n", what);
    exit(1);
}

/* Median ns of one alloc+free pair of `npages`. */
static double time_pair(uint64_t npages)
{
    static double samples[SAMPLES];
    for (unsigned s = 0; s < SAMPLES; s++) {
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < BATCH; i++) {
            phys_addr_t pa;
            if (buddy_alloc(&B, npages, &pa) || buddy_free(&B, pa, npages))
                die("pair failed");
        }
        samples[s] = (double)(now_ns() - t0) / BATCH;
    }
    return median(samples, SAMPLES);
}

/* Median ns per pair of 64 allocs followed by 64 frees (reverse order). */
static double time_batch64(void)
{
    static double samples[SAMPLES];
    phys_addr_t pa[64];
    for (unsigned s = 0; s < SAMPLES; s++) {
        uint64_t t0 = now_ns();
        for (unsigned r = 0; r < BATCH / 64 * 4; r++) {
            for (unsigned i = 0; i < 64; i++)
                if (buddy_alloc(&B, 1, &pa[i]))
                    die("batch alloc failed");
            for (unsigned i = 64; i-- > 0;)
                if (buddy_free(&B, pa[i], 1))
                    die("batch free failed");
        }
        samples[s] = (double)(now_ns() - t0) / (BATCH / 64 * 4 * 64);
    }
    return median(samples, SAMPLES);
}

static void init_one_area(uint64_t start, uint64_t end)
{
    struct mm_area_list l = { .count = 1 };
    l.area[0].start = PA(start);
    l.area[0].end = PA(end);
    if (buddy_init(&B, &l))
        die("buddy_init failed");
}

static void table_orders(void)
{
    double ready[BUDDY_NR_ORDERS], split[BUDDY_NR_ORDERS];

    /* 4 GiB; holding one frame of the first GiB leaves one free block of
     * each order 0..17 there, and whole 1 GiB blocks remain. */
    init_one_area(0, 4 * GiB);
    phys_addr_t held;
    if (buddy_alloc(&B, 1, &held))
        die("alloc");
    (void)time_pair(1);                         /* warm up caches and clocks */
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++)
        ready[k] = time_pair(UINT64_C(1) << k);

    /* Hold every block below 1 GiB: each pair must split a 1 GiB block. */
    init_one_area(0, 4 * GiB);
    uint64_t counts[BUDDY_NR_ORDERS];
    buddy_free_blocks(&B, counts);
    for (unsigned k = 0; k < BUDDY_MAX_ORDER; k++)
        for (uint64_t i = 0; i < counts[k]; i++)
            if (buddy_alloc(&B, UINT64_C(1) << k, &held))
                die("drain");
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++)
        split[k] = time_pair(UINT64_C(1) << k);

    printf("alloc+free pair by order (median ns per pair)\n");
    printf("  order  size        block ready  split 1 GiB\n");
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++) {
        uint64_t kib = (UINT64_C(4) << k);
        char size[16];
        if (kib >= 1024 * 1024)
            snprintf(size, sizeof size, "%llu GiB", (unsigned long long)(kib >> 20));
        else if (kib >= 1024)
            snprintf(size, sizeof size, "%llu MiB", (unsigned long long)(kib >> 10));
        else
            snprintf(size, sizeof size, "%llu KiB", (unsigned long long)kib);
        printf("  %5u  %-10s  %11.1f  %11.1f\n", k, size, ready[k], split[k]);
    }
    printf("  1 GiB pair / order-0 pair (block ready): %.2fx\n\n",
           ready[BUDDY_MAX_ORDER] / ready[0]);
}

static uint64_t mem_available_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    unsigned long long kb = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

/*
 * Make nfree free order-0 blocks: allocate every frame at order 0, then
 * free those with an even frame number below 2 * nfree.  Allocated frames
 * are given back to the host (MADV_DONTNEED) so only the free blocks'
 * pages stay resident.
 */
static void fragment(uint64_t nfree)
{
    uint64_t region = 2 * nfree * PAGE_SIZE;
    init_one_area(0, region + 64 * MiB);       /* the tail holds the metadata */
    char *sim = pa_to_ptr(PA(0));
    phys_addr_t pa;
    uint64_t run_start = UINT64_MAX, run_end = 0;
    while (buddy_alloc(&B, 1, &pa) == 0) {
        if (pa.raw >= region)
            continue;
        if (pa.raw == run_end && run_end - run_start < 64 * MiB) {
            run_end += PAGE_SIZE;
        } else {
            if (run_start != UINT64_MAX)
                madvise(sim + run_start, run_end - run_start, MADV_DONTNEED);
            run_start = pa.raw;
            run_end = pa.raw + PAGE_SIZE;
        }
    }
    if (run_start != UINT64_MAX)
        madvise(sim + run_start, run_end - run_start, MADV_DONTNEED);
    for (uint64_t f = 0; f < 2 * nfree; f += 2)
        if (buddy_free(&B, pfn_to_pa(f), 1))
            die("fragment free");
    uint64_t counts[BUDDY_NR_ORDERS];
    buddy_free_blocks(&B, counts);
    if (counts[0] != nfree)
        die("fragmentation not as planned");
}

static void table_fragmentation(void)
{
    static const uint64_t levels[] = { 1024, 65536, 1048576 };
    double same[3], batch[3];
    bool done[3] = { false, false, false };

    for (unsigned i = 0; i < 3; i++) {
        if (levels[i] >= 1048576 && mem_available_bytes() < 8 * GiB) {
            printf("  (1M level skipped: less than 8 GiB available)\n");
            continue;
        }
        fragment(levels[i]);
        same[i] = time_pair(1);
        batch[i] = time_batch64();
        done[i] = true;
    }
    printf("order-0 pair vs fragmentation (median ns per pair)\n");
    printf("  free order-0 blocks  same block  batch of 64\n");
    double lo = 1e30, hi = 0;
    for (unsigned i = 0; i < 3; i++) {
        if (!done[i])
            continue;
        printf("  %19llu  %10.1f  %11.1f\n", (unsigned long long)levels[i], same[i], batch[i]);
        lo = same[i] < lo ? same[i] : lo;
        hi = same[i] > hi ? same[i] : hi;
    }
    printf("  spread (same block, max/min): %.2fx\n", hi / lo);
}

int main(void)
{
    harness_quiet = 1;
    sim_mem_init(9 * GiB);
    table_orders();
    table_fragmentation();
    sim_mem_fini();
    return 0;
}
