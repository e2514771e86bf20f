/*
 * bench_mmio.c - cost of one mmio_release + mmio_create pair in a pool
 * holding a steady number of live blocks (pool only, no page mapping).
 *
 * What one sample is.  Each step releases a random live block and creates
 * one of a random log-uniform size (order uniform in 0..max_order, then a
 * byte count uniform within that order) in its place.  The sample is the
 * TSC time of exactly those two calls, back to back:
 *     victim = live[i]                        (before t0)
 *     t0 = lfence; rdtsc
 *     mmio_release(pool, &victim, NULL)
 *     mmio_create(pool, size, &fresh)         (always succeeds, see below)
 *     t1 = rdtscp; lfence
 *     live[i] = fresh                         (after t1)
 * and nothing else: drawing the victim and the size (RNG, divisions) and
 * the model's bookkeeping (the live[] array, a caller-side structure) are
 * outside the interval, so the sample is the pool's own work with the
 * caller's arguments in hand.  Every step gives one sample; no sample is
 * dropped and none covers more than one pair.  TSC ticks are converted to
 * ns against CLOCK_MONOTONIC.  The timer itself costs a few tens of ns
 * (its median on an empty interval is printed as "timer"); it is included
 * in every sample, not subtracted.  (An earlier version also timed the
 * RNG, the swap-removal in live[] and the retries; that inflated the
 * median and put the retry steps in the tail.)
 *
 * A full pool.  The full 4 KiB..1 GiB mix at 10^4 live blocks needs about
 * as much address space as the pool has, so sometimes no free block is
 * large enough for the size drawn.  Before t0 the step then releases other
 * random blocks (untimed; counted in the "room" column, per step) until
 * one is (checked with mmio_pool_free_counts): the timed create always
 * succeeds, so a sample is never a failed create nor a series of
 * retries.  After t1 the live count is topped up to the target (untimed)
 * as far as the pool allows.
 *
 * Output: one row per configuration: median and p99 of the per-step time
 * over RUNS runs (the median of the runs' medians and of their p99s);
 * "frames" is the pool's bookkeeping (node + hash frames) at the end of a
 * run, and "mem ref" the p99/median of a memory-only reference loop over
 * a buffer of that size (see memory_reference): the part of the tail that
 * comes from the machine's caches rather than from the allocator.  The
 * first row is the target workload: 10^4 live blocks of 4 KiB .. 1 GiB.
 *
 * Cache simulation.  Built with -DBENCH_CACHESIM (make bench-cachesim),
 * the program runs only the target row, once, with fewer steps, and turns
 * callgrind's event collection on for exactly the timed pair of calls.
 * tools/bench-cachesim.sh runs it under callgrind's cache simulator with
 * several last-level sizes and prints the cache misses per step: counts
 * that do not depend on the machine or its load, unlike the times above.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <sys/mman.h>
#include <mm/mmio.h>
#include "bench_util.h"

#ifdef BENCH_CACHESIM
#include <valgrind/callgrind.h>
#define STEPS   200000
#define WARMUP  50000
#define RUNS    1
#define COLLECT_TOGGLE() CALLGRIND_TOGGLE_COLLECT
#else
#define STEPS   1000000
#define WARMUP  100000
#define RUNS    5
#define COLLECT_TOGGLE() ((void)0)
#endif

/* --------------------------------------------------- frame allocator */

#define SIM_BYTES (UINT64_C(1) << 30)

static uint64_t fa_next = PAGE_SIZE, *fa_stack, fa_nstack, fa_out;

static int bfa_alloc(struct frame_allocator *self, phys_addr_t *pa_out)
{
    (void)self;
    if (fa_nstack) {
        *pa_out = PA(fa_stack[--fa_nstack]);
    } else {
        if (fa_next >= SIM_BYTES)
            return -MM_ENOMEM;
        *pa_out = PA(fa_next);
        fa_next += PAGE_SIZE;
    }
    fa_out++;
    return 0;
}

static void bfa_free(struct frame_allocator *self, phys_addr_t pa)
{
    (void)self;
    fa_stack[fa_nstack++] = pa.raw;
    fa_out--;
}

static struct frame_allocator bfa = { bfa_alloc, bfa_free };

/* ------------------------------------------------------------- timing */

static inline uint64_t tsc_begin(void)
{
    uint32_t lo, hi;
    __asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) :: "memory");
    return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t tsc_end(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtscp; lfence" : "=a"(lo), "=d"(hi) :: "rcx", "memory");
    return ((uint64_t)hi << 32) | lo;
}

static double ns_per_tick;

static void calibrate(void)
{
    uint64_t t0 = now_ns(), c0 = tsc_begin();
    while (now_ns() - t0 < 200000000u)
        ;
    uint64_t t1 = now_ns(), c1 = tsc_end();
    ns_per_tick = (double)(t1 - t0) / (double)(c1 - c0);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* ----------------------------------------------------------- workload */

static struct mmio_pool pool;
static struct mmio_space *live;
static uint32_t *ticks;

static uint64_t random_size(uint64_t *rng, unsigned max_order)
{
    unsigned k = (unsigned)(rng_next(rng) % (max_order + 1));
    uint64_t hi = PAGE_SIZE << k, lo = k == 0 ? 0 : hi / 2;
    return lo + 1 + rng_next(rng) % (hi - lo);
}

static void must(int err, const char *what)
{
    if (err) {
        fprintf(stderr, "bench_mmio: %s failed: %d\n", what, err);
        exit(1);
    }
}

struct result {
    double median_ns, p99_ns, max_ns;
    double mem_ratio;        /* p99/median of the memory-only reference */
    uint64_t room;           /* untimed releases to make room for a create */
    uint64_t node_frames;    /* at the end of the run */
    uint64_t live_avg;       /* live blocks, averaged over the timed steps */
};

/* Median ticks of an empty timed interval: the timer's own cost. */
static uint32_t timer_ticks(void)
{
    for (int s = 0; s < STEPS; s++) {
        uint64_t t0 = tsc_begin();
        uint64_t t1 = tsc_end();
        ticks[s] = (uint32_t)(t1 - t0);
    }
    qsort(ticks, STEPS, sizeof(ticks[0]), cmp_u32);
    return ticks[STEPS / 2];
}

/*
 * Reference: the same number of steps, each doing 6 random read-modify-
 * writes in a buffer as large as the pool's bookkeeping.  Its p99/median
 * is what the memory system alone gives (cache and TLB misses), with no
 * allocator work at all.
 */
static double memory_reference(uint64_t bytes)
{
    uint64_t words = bytes / 8, rng = 12345;
    uint64_t *buf = calloc(words, 8);
    for (int s = 0; s < STEPS; s++) {
        uint64_t t0 = tsc_begin();
        for (int k = 0; k < 6; k++)
            buf[rng_next(&rng) % words]++;
        uint64_t t1 = tsc_end();
        ticks[s] = (uint32_t)(t1 - t0 > UINT32_MAX ? UINT32_MAX : t1 - t0);
    }
    free(buf);
    qsort(ticks, STEPS, sizeof(ticks[0]), cmp_u32);
    return (double)ticks[STEPS / 100 * 99] / ticks[STEPS / 2];
}

/* Is there a free block that a create of `size` bytes can take? */
static bool fits(uint64_t size)
{
    uint64_t free_blocks[MMIO_NR_ORDERS];
    mmio_pool_free_counts(&pool, free_blocks);
    for (unsigned k = MMIO_NR_ORDERS; k-- > 0 && (PAGE_SIZE << k) >= size;)
        if (free_blocks[k] != 0)
            return true;
    return false;
}

/* Release random blocks until a create of `size` bytes will succeed. */
static uint64_t make_room(size_t *n, uint64_t *rng, uint64_t size)
{
    uint64_t released = 0;
    while (!fits(size)) {
        size_t i = rng_next(rng) % *n;
        must(mmio_release(&pool, &live[i], NULL), "release");
        live[i] = live[--*n];
        released++;
    }
    return released;
}

/* Create random blocks until there are nlive, or the pool is full. */
static void top_up(size_t *n, size_t nlive, uint64_t *rng, unsigned max_order)
{
    while (*n < nlive && mmio_create(&pool, random_size(rng, max_order), &live[*n]) == 0)
        ++*n;
}

/*
 * One step: release a random block and create one of a random size in its
 * place.  Returns the ticks of exactly that pair; *room counts the blocks
 * released beforehand (untimed) to make room.
 */
static uint64_t step(size_t *n, size_t nlive, uint64_t *rng, unsigned max_order,
                     uint64_t *room, bool timed)
{
    uint64_t size = random_size(rng, max_order);
    *room += make_room(n, rng, size);
    size_t i = rng_next(rng) % *n;
    struct mmio_space victim = live[i], fresh;

    uint64_t t0 = tsc_begin();
    if (timed)
        COLLECT_TOGGLE();
    int err_release = mmio_release(&pool, &victim, NULL);
    int err_create = mmio_create(&pool, size, &fresh);
    if (timed)
        COLLECT_TOGGLE();
    uint64_t t1 = tsc_end();

    must(err_release, "release");
    must(err_create, "create");
    live[i] = fresh;
    top_up(n, nlive, rng, max_order);
    return t1 - t0;
}

static struct result run(size_t nlive, unsigned max_order, uint64_t seed)
{
    struct result r = { 0, 0, 0, 0, 0, 0, 0 };
    uint64_t live_sum = 0;
    uint64_t rng = seed;
    size_t n = 0;
    must(mmio_pool_init(&pool, &bfa), "init");
    harness_quiet = 1;      /* "pool full" lines */
    uint64_t warm_room = 0;
    top_up(&n, nlive, &rng, max_order);
    for (int s = 0; s < WARMUP; s++)
        step(&n, nlive, &rng, max_order, &warm_room, false);
    for (int s = 0; s < STEPS; s++) {
        uint64_t t = step(&n, nlive, &rng, max_order, &r.room, true);
        ticks[s] = (uint32_t)(t > UINT32_MAX ? UINT32_MAX : t);
        live_sum += n;
    }
    r.live_avg = live_sum / STEPS;
    harness_quiet = 0;
    struct mmio_stats st;
    mmio_pool_stats(&pool, &st);
    r.node_frames = st.node_frames + st.hash_frames;
    mmio_pool_check(&pool);
    while (n > 0)
        must(mmio_release(&pool, &live[--n], NULL), "release");
    mmio_pool_stats(&pool, &st);
    if (st.free_blocks[MMIO_MAX_ORDER] != MMIO_NR_ROOTS || fa_out != 0) {
        fprintf(stderr, "bench_mmio: pool not back to its initial state\n");
        exit(1);
    }
    qsort(ticks, STEPS, sizeof(ticks[0]), cmp_u32);
    r.median_ns = ticks[STEPS / 2] * ns_per_tick;
    r.p99_ns = ticks[STEPS / 100 * 99] * ns_per_tick;
    r.max_ns = ticks[STEPS - 1] * ns_per_tick;
    r.mem_ratio = memory_reference(r.node_frames * PAGE_SIZE + nlive * sizeof(live[0]));
    return r;
}

int main(void)
{
    static const struct { size_t nlive; unsigned max_order; } cfg[] = {
        { 10000, MMIO_MAX_ORDER },   /* the target workload: 4 KiB .. 1 GiB */
        { 10000, 14 },               /* 4 KiB .. 64 MiB: the pool never fills */
        { 1000, MMIO_MAX_ORDER },
        { 100, MMIO_MAX_ORDER },
    };
    /* The kernel reaches node frames through its 1 GiB / 2 MiB direct map;
     * back the simulated RAM with huge pages too, so TLB misses of 4 KiB
     * host pages do not dominate (falls back silently without THP). */
    void *sim = sim_mem_init(SIM_BYTES);
    int thp = madvise(sim, SIM_BYTES, MADV_HUGEPAGE);
    fa_stack = calloc(SIM_BYTES / PAGE_SIZE, sizeof(uint64_t));
    live = calloc(20000, sizeof(*live));
    ticks = calloc(STEPS, sizeof(*ticks));
    calibrate();

    printf("mmio pool: release+create pair, %d steps x %d runs per row, "
           "median of runs (TSC %.3f ns/tick, timer %.0f ns, %s)\n", STEPS, RUNS,
           ns_per_tick, timer_ticks() * ns_per_tick,
           thp == 0 ? "huge-page backed" : "4 KiB pages");
    printf("%7s %7s %-12s %10s %10s %8s %10s %10s %7s %8s\n", "target", "live", "sizes",
           "median ns", "p99 ns", "p99/med", "worst max", "room/step", "frames",
           "mem ref");
#ifdef BENCH_CACHESIM
    const size_t ncfg = 1;      /* the target row only; see the header */
    printf("cachesim: collected steps %d\n", STEPS);
#else
    const size_t ncfg = sizeof(cfg) / sizeof(cfg[0]);
#endif
    for (size_t c = 0; c < ncfg; c++) {
        double med[RUNS], p99[RUNS], ratio[RUNS], mem[RUNS], worst = 0, room = 0;
        uint64_t frames = 0, live_avg = 0;
        for (int i = 0; i < RUNS; i++) {
            struct result r = run(cfg[c].nlive, cfg[c].max_order, 0x9e3779b97f4a7c15ull + (uint64_t)i);
            med[i] = r.median_ns;
            p99[i] = r.p99_ns;
            ratio[i] = r.p99_ns / r.median_ns;
            mem[i] = r.mem_ratio;
            if (r.max_ns > worst)
                worst = r.max_ns;
            room += (double)r.room / STEPS / RUNS;
            frames = r.node_frames;
            live_avg = r.live_avg;
        }
        char sizes[32];
        snprintf(sizes, sizeof sizes, "4K..%luM",
                 (unsigned long)((PAGE_SIZE << cfg[c].max_order) >> 20));
        printf("%7zu %7lu %-12s %10.0f %10.0f %8.2f %10.0f %10.3f %7lu %8.2f\n",
               cfg[c].nlive, (unsigned long)live_avg, sizes,
               median(med, RUNS), median(p99, RUNS), median(ratio, RUNS), worst,
               room, (unsigned long)frames, median(mem, RUNS));
    }
    return 0;
}
