/*
 * test_buddy_top.c - host tests of the buddy allocator's top tier, the
 * lock-free 1 GiB blocks (mm/buddy_top.c): the states after init and the
 * zone order of 1 GiB allocations; double, foreign, partial and split
 * frees refused with nothing changed; a chunk split by smaller requests
 * (lists first) and merged back; 1 GiB below a limit; the step bound of a
 * 1 GiB allocation; buddy_check catching a damaged state; and, on several
 * simulated CPUs in threads, 1 GiB blocks never handed out twice while
 * other CPUs split and merge chunks, and of two racing frees of one block
 * exactly one passing.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "buddy_test_util.h"

#include <pthread.h>
#include <mm/buddy.h>
#include <mm/log.h>
#include "../../mm/buddy_impl.h"       /* white-box: the top tier's states */

#define SIM_SIZE (41 * GiB)
#define NCPUS    4


/* [1 GiB, 9 GiB) whole, and a small area far enough above it for the
 * metadata carve, so chunks 1..8 are all free 1 GiB blocks. */
static void init_eight_chunks(void)
{
    struct mm_area_list l = { .count = 2 };
    l.area[0] = (struct mm_area){ PA(1 * GiB), PA(9 * GiB) };
    l.area[1] = (struct mm_area){ PA(9 * GiB + 2 * MiB), PA(9 * GiB + 66 * MiB) };
    if (buddy_init(&B, &l) != 0) {
        fprintf(stderr, "init_eight_chunks: buddy_init failed\n");
        exit(2);
    }
}

/* What a refused call must leave as it was (harness.h, REFUSED). */
struct snap {
    struct buddy_usage u;
    uint64_t counts[BUDDY_NR_ZONES][BUDDY_NR_ORDERS];
    uint64_t top[4];
};

static void take_snap(struct snap *s)
{
    memset(s, 0, sizeof *s);
    buddy_usage(&B, &s->u);
    for (unsigned z = 0; z < BUDDY_NR_ZONES; z++)
        buddy_free_blocks_zone(&B, z, s->counts[z]);
    for (uint64_t w = 0; w < top_nwords(B.span_npages) && w < 4; w++)
        s->top[w] = B.top_state[w];
}

static bool snap_same(const struct snap *old)
{
    struct snap now;
    take_snap(&now);
    return memcmp(&now, old, sizeof now) == 0;
}

static phys_addr_t gib(uint64_t n) { return PA(n * GiB); }
static unsigned state_of(uint64_t n) { return top_get(&B, n - B.base_pfn / BUDDY_MAX_NPAGES); }

/* ------------------------------------------------ states and zone order */

/* [1 MiB, 9 GiB): chunk 0 is partial (split into the lists), chunks 1..7
 * are free 1 GiB blocks, chunk 8 holds the metadata carve (split).  A
 * 1 GiB allocation takes the lowest high chunk first (4..7), then the
 * lowest low one (1..3), then fails without touching anything. */
static void test_states_and_zone_order(void)
{
    init_area(1 * MiB, 9 * GiB);
    CHECK_EQ(state_of(0), BUDDY_TOP_NONE);
    for (uint64_t c = 1; c <= 7; c++)
        CHECK_EQ(state_of(c), BUDDY_TOP_FREE);
    CHECK_EQ(state_of(8), BUDDY_TOP_NONE);
    uint64_t high[BUDDY_NR_ORDERS], low[BUDDY_NR_ORDERS], all[BUDDY_NR_ORDERS];
    buddy_free_blocks_zone(&B, BUDDY_HIGH, high);
    buddy_free_blocks_zone(&B, BUDDY_LOW, low);
    buddy_free_blocks(&B, all);
    CHECK_EQ(high[BUDDY_MAX_ORDER], 4);
    CHECK_EQ(low[BUDDY_MAX_ORDER], 3);
    CHECK_EQ(all[BUDDY_MAX_ORDER], 7);
    uint64_t bogus[BUDDY_NR_ORDERS] = { 99 };
    buddy_free_blocks_zone(&B, BUDDY_NR_ZONES, bogus);
    CHECK_EQ(bogus[0], 0);

    static const uint64_t want[] = { 4, 5, 6, 7, 1, 2, 3 };
    phys_addr_t pa;
    for (unsigned i = 0; i < 7; i++) {
        REQUIRE(buddy_alloc(&B, BUDDY_MAX_NPAGES, &pa) == 0);
        CHECK_EQ(pa.raw, gib(want[i]).raw);
        CHECK_EQ(state_of(want[i]), BUDDY_TOP_ALLOC);
    }
    struct buddy_usage u;
    buddy_usage(&B, &u);
    CHECK_EQ(u.used_npages, 7 * BUDDY_MAX_NPAGES);
    struct snap before;
    take_snap(&before);
    CHECK_EQ(buddy_alloc(&B, BUDDY_MAX_NPAGES, &pa), -MM_ENOMEM);
    CHECK(snap_same(&before));
    buddy_check(&B);
    for (uint64_t c = 1; c <= 7; c++)
        CHECK_EQ(buddy_free(&B, gib(c), BUDDY_MAX_NPAGES), 0);
    buddy_usage(&B, &u);
    CHECK_EQ(u.used_npages, 0);
    buddy_check(&B);
}

/* A span that starts at 4 GiB (base 4 GiB, everything high) and one that
 * ends below it (everything low): the zone split still holds. */
static void one_side(uint64_t start, uint64_t end, uint64_t first_gib, unsigned empty_zone)
{
    init_area(start, end);
    phys_addr_t pa;
    REQUIRE(buddy_alloc(&B, BUDDY_MAX_NPAGES, &pa) == 0);
    CHECK_EQ(pa.raw, gib(first_gib).raw);
    uint64_t counts[BUDDY_NR_ORDERS];
    buddy_free_blocks_zone(&B, empty_zone, counts);
    CHECK_EQ(counts[BUDDY_MAX_ORDER], 0);
    CHECK_EQ(buddy_free(&B, pa, BUDDY_MAX_NPAGES), 0);
    buddy_check(&B);
}

static void test_spans_on_one_side(void)
{
    one_side(4 * GiB, 7 * GiB + 4 * MiB, 4, BUDDY_LOW);
    one_side(1 * GiB, 3 * GiB + 4 * MiB, 1, BUDDY_HIGH);
}

/* ------------------------------------------------------- refused frees */

static void test_bad_frees_refused(void)
{
    init_area(1 * MiB, 9 * GiB);
    phys_addr_t pa, small;
    REQUIRE(buddy_alloc(&B, BUDDY_MAX_NPAGES, &pa) == 0);
    CHECK_EQ(buddy_free(&B, pa, BUDDY_MAX_NPAGES), 0);
    REFUSED(buddy_free(&B, pa, BUDDY_MAX_NPAGES), -MM_ENOENT);        /* double free */
    REFUSED(buddy_free(&B, gib(2), BUDDY_MAX_NPAGES), -MM_ENOENT);    /* free, never taken */
    REFUSED(buddy_free(&B, gib(0), BUDDY_MAX_NPAGES), -MM_EFAULT);    /* not all managed */
    REFUSED(buddy_free(&B, gib(8), BUDDY_MAX_NPAGES), -MM_EFAULT);    /* holds the carve */
    REFUSED(buddy_free(&B, PA(2 * GiB + 2 * MiB), BUDDY_MAX_NPAGES), -MM_EINVAL);
    REFUSED(buddy_free(&B, gib(9), BUDDY_MAX_NPAGES), -MM_EFAULT);    /* past the span */

    /* A 1 GiB block freed as smaller blocks, and a smaller block freed as
     * 1 GiB: both refused. */
    REQUIRE(buddy_alloc(&B, BUDDY_MAX_NPAGES, &pa) == 0);
    REFUSED(buddy_free(&B, pa, BUDDY_MAX_NPAGES / 2), -MM_ENOENT);
    REFUSED(buddy_free(&B, pa, 1), -MM_ENOENT);
    CHECK_EQ(buddy_free(&B, pa, BUDDY_MAX_NPAGES), 0);
    /* Two frames come from the listed part of chunk 8 (high), no chunk
     * is split for them. */
    REQUIRE(buddy_alloc(&B, 2, &small) == 0);
    CHECK(small.raw >= 8 * GiB);
    for (uint64_t c = 1; c <= 7; c++)
        CHECK_EQ(state_of(c), BUDDY_TOP_FREE);
    CHECK_EQ(buddy_free(&B, small, 2), 0);
    buddy_check(&B);
}

/* --------------------------------------------------- split and merge */

/* Smaller requests use listed blocks before they split a chunk; once the
 * lists are empty a chunk is split (FREE -> NONE), the rest of it listed;
 * freeing everything merges it back into a FREE chunk, counts exact. */
static void test_split_and_merge(void)
{
    init_area(1 * GiB, 3 * GiB);            /* chunk 1 whole, chunk 2 holds the carve */
    uint64_t init_counts[BUDDY_NR_ORDERS];
    buddy_free_blocks(&B, init_counts);
    CHECK_EQ(init_counts[BUDDY_MAX_ORDER], 1);
    CHECK_EQ(state_of(1), BUDDY_TOP_FREE);

    /* Take every listed frame (chunk 2 minus the carve), in 2 MiB blocks
     * while they last: chunk 1 stays whole. */
    static phys_addr_t held[1 << 16];
    static uint64_t held_n[1 << 16];
    unsigned n = 0;
    uint64_t counts[BUDDY_NR_ORDERS];
    for (;;) {
        buddy_free_blocks(&B, counts);
        uint64_t listed = 0;
        for (unsigned k = 0; k < BUDDY_MAX_ORDER; k++)
            listed += counts[k];
        if (listed == 0)
            break;
        unsigned k = 0;
        while (k + 1 < BUDDY_MAX_ORDER && counts[k] == 0)
            k++;
        REQUIRE(n < (1 << 16));
        /* Below a limit past the span: straight from the lists (a single
         * frame does not go through a cache refill, which would go on into
         * the top tier once the lists ran dry). */
        REQUIRE(buddy_alloc_below(&B, UINT64_C(1) << k, PA(4 * GiB), &held[n]) == 0);
        held_n[n++] = UINT64_C(1) << k;
        CHECK_EQ(state_of(1), BUDDY_TOP_FREE);
    }
    buddy_free_blocks(&B, counts);
    CHECK_EQ(counts[BUDDY_MAX_ORDER], 1);

    /* Now four frames split chunk 1; it is no 1 GiB block any more. */
    phys_addr_t one;
    REQUIRE(buddy_alloc(&B, 4, &one) == 0);
    CHECK_EQ(one.raw, gib(1).raw);
    CHECK_EQ(state_of(1), BUDDY_TOP_NONE);
    buddy_free_blocks(&B, counts);
    CHECK_EQ(counts[BUDDY_MAX_ORDER], 0);
    CHECK_EQ(counts[BUDDY_MAX_ORDER - 1], 1);
    buddy_check(&B);
    phys_addr_t pa;
    CHECK_EQ(buddy_alloc(&B, BUDDY_MAX_NPAGES, &pa), -MM_ENOMEM);
    REFUSED(buddy_free(&B, gib(1), BUDDY_MAX_NPAGES), -MM_ENOENT);    /* split, not ALLOC */

    CHECK_EQ(buddy_free(&B, one, 4), 0);
    CHECK_EQ(state_of(1), BUDDY_TOP_FREE);
    for (unsigned i = 0; i < n; i++)
        CHECK_EQ(buddy_free(&B, held[i], held_n[i]), 0);
    buddy_drain_all(&B);
    buddy_free_blocks(&B, counts);
    CHECK(memcmp(counts, init_counts, sizeof counts) == 0);
    buddy_check(&B);
}

/* A 1 GiB allocation that finds no free chunk drains the caller's cache,
 * whose frames may complete one, and tries again. */
static void test_alloc_drains_own_cache(void)
{
    init_area(1 * GiB, 2 * GiB + 64 * MiB);  /* chunk 1 whole: the only one */
    phys_addr_t pa, one;
    REQUIRE(buddy_alloc(&B, BUDDY_MAX_NPAGES, &pa) == 0);
    CHECK_EQ(buddy_free(&B, pa, BUDDY_MAX_NPAGES), 0);
    /* Empty the lists of chunk 2, then take a frame: it splits chunk 1 and
     * its neighbours sit in CPU 0's cache. */
    for (;;) {
        uint64_t counts[BUDDY_NR_ORDERS], listed = 0;
        buddy_free_blocks(&B, counts);
        for (unsigned k = 0; k < BUDDY_MAX_ORDER; k++)
            listed += counts[k];
        if (listed == 0)
            break;
        REQUIRE(buddy_alloc_below(&B, 1, PA(4 * GiB), &pa) == 0);
        REQUIRE(pa.raw >= 2 * GiB);
    }
    REQUIRE(buddy_alloc(&B, 1, &one) == 0);
    CHECK_EQ(state_of(1), BUDDY_TOP_NONE);
    CHECK_EQ(buddy_free(&B, one, 1), 0);      /* back to the cache, not the lists */
    CHECK_EQ(state_of(1), BUDDY_TOP_NONE);
    REQUIRE(buddy_alloc(&B, BUDDY_MAX_NPAGES, &pa) == 0);
    CHECK_EQ(pa.raw, gib(1).raw);
    struct buddy_usage u;
    buddy_usage(&B, &u);
    CHECK_EQ(u.cached_npages, 0);
    CHECK_EQ(buddy_free(&B, pa, BUDDY_MAX_NPAGES), 0);
}

/* 1 GiB below a limit comes from the top tier of the low zone. */
static void test_below_limit(void)
{
    init_area(1 * MiB, 9 * GiB);
    phys_addr_t pa;
    REQUIRE(buddy_alloc_below(&B, BUDDY_MAX_NPAGES, PA(4 * GiB), &pa) == 0);
    CHECK_EQ(pa.raw, gib(1).raw);
    CHECK_EQ(state_of(1), BUDDY_TOP_ALLOC);
    phys_addr_t pa2, pa3;
    REQUIRE(buddy_alloc_below(&B, BUDDY_MAX_NPAGES, PA(8 * GiB), &pa2) == 0);
    CHECK_EQ(pa2.raw, gib(4).raw);                    /* high first, below the limit */
    /* Below 2 GiB only chunk 1 is whole, and it is taken: chunk 0 (not all
     * managed) never counts. */
    CHECK_EQ(buddy_alloc_below(&B, BUDDY_MAX_NPAGES, PA(2 * GiB), &pa3), -MM_ENOMEM);
    /* Half a GiB below 4 GiB splits a low chunk only when the lists of
     * chunk 0 have none: they have one (512 MiB at 512 MiB). */
    REQUIRE(buddy_alloc_below(&B, BUDDY_MAX_NPAGES / 2, PA(4 * GiB), &pa3) == 0);
    CHECK_EQ(pa3.raw, 512 * MiB);
    CHECK_EQ(state_of(2), BUDDY_TOP_FREE);
    phys_addr_t pa4;
    REQUIRE(buddy_alloc_below(&B, BUDDY_MAX_NPAGES / 2, PA(4 * GiB), &pa4) == 0);
    CHECK_EQ(pa4.raw, gib(2).raw);                    /* the lowest free low chunk, split */
    CHECK_EQ(state_of(2), BUDDY_TOP_NONE);
    buddy_check(&B);
    CHECK_EQ(buddy_free(&B, gib(1), BUDDY_MAX_NPAGES), 0);
    CHECK_EQ(buddy_free(&B, pa2, BUDDY_MAX_NPAGES), 0);
    CHECK_EQ(buddy_free(&B, pa3, BUDDY_MAX_NPAGES / 2), 0);
    CHECK_EQ(buddy_free(&B, pa4, BUDDY_MAX_NPAGES / 2), 0);
    CHECK_EQ(state_of(2), BUDDY_TOP_FREE);
    buddy_check(&B);
}

/* ------------------------------------------------------------- bounds */

/* A 1 GiB allocation reads each state word of the span at most once per
 * zone (the word where the zones meet twice), wherever the free chunk is:
 * here 40 GiB, only the last low chunk left, three reads of two words; a
 * free reads one. */
static void test_alloc_step_bound(void)
{
    init_area(1 * GiB, 41 * GiB);
    phys_addr_t held[64], pa;
    unsigned n = 0;
    uint64_t counts[BUDDY_NR_ORDERS];
    buddy_free_blocks(&B, counts);
    while (counts[BUDDY_MAX_ORDER]-- > 1)
        REQUIRE(buddy_alloc(&B, BUDDY_MAX_NPAGES, &held[n++]) == 0);
    uint64_t s0 = buddy_steps(&B);
    REQUIRE(buddy_alloc(&B, BUDDY_MAX_NPAGES, &pa) == 0);
    uint64_t steps = buddy_steps(&B) - s0;
    CHECK_EQ(pa.raw, gib(3).raw);
    CHECK(steps <= top_nwords(B.span_npages) + 1);
    s0 = buddy_steps(&B);
    CHECK_EQ(buddy_free(&B, pa, BUDDY_MAX_NPAGES), 0);
    CHECK_EQ(buddy_steps(&B) - s0, 1);
    while (n > 0)
        CHECK_EQ(buddy_free(&B, held[--n], BUDDY_MAX_NPAGES), 0);
    buddy_check(&B);
}

/* ------------------------------------------------------------ checker */

/* buddy_check catches the unused state 3, a FREE state over a chunk that
 * has listed blocks, and an ALLOC state on a chunk that is not all managed. */
static void test_check_catches_damaged_state(void)
{
    for (unsigned damage = 0; damage < 3; damage++) {
        init_area(1 * MiB, 9 * GiB);
        buddy_check(&B);
        if (damage == 0) {
            B.top_state[0] |= UINT64_C(3) << 2;            /* chunk 1 */
            expect_check_panic("not a managed 1 GiB block");
        } else if (damage == 1) {
            B.top_state[0] |= UINT64_C(1) << 0;            /* chunk 0: split */
            expect_check_panic("listed inside chunk 0");
        } else {
            B.top_state[0] |= UINT64_C(2) << 16;           /* chunk 8: the carve */
            expect_check_panic("chunk 8");
        }
    }
}

/* ------------------------------------------------------------ threads */

struct worker {
    unsigned cpu;
    uint64_t seed;
    unsigned long gib_allocs, errors;
};

static struct worker workers[NCPUS];
static volatile int stop_splitters;

/* CPUs 0 and 1: take 1 GiB blocks, stamp their first and last word with
 * the worker, check the stamp is still there, free them. */
static void *gib_churn(void *arg)
{
    struct worker *w = arg;
    harness_cpu_id = w->cpu;
    phys_addr_t held[4];
    unsigned n = 0;
    for (int i = 0; i < 20000; i++) {
        uint64_t x = rng_next(&w->seed);
        if (n < 4 && (n == 0 || (x & 1))) {
            if (buddy_alloc(&B, BUDDY_MAX_NPAGES, &held[n]) != 0)
                continue;
            uint64_t *p = pa_to_ptr(held[n]);
            p[0] = p[GiB / 8 - 1] = (uint64_t)(uintptr_t)w;
            n++;
            w->gib_allocs++;
        } else {
            unsigned j = (unsigned)(x >> 8) % n;
            uint64_t *p = pa_to_ptr(held[j]);
            if (p[0] != (uint64_t)(uintptr_t)w || p[GiB / 8 - 1] != (uint64_t)(uintptr_t)w)
                w->errors++;                    /* someone else got our block */
            p[0] = p[GiB / 8 - 1] = 0;
            if (buddy_free(&B, held[j], BUDDY_MAX_NPAGES) != 0)
                w->errors++;
            held[j] = held[--n];
        }
    }
    while (n > 0)
        if (buddy_free(&B, held[--n], BUDDY_MAX_NPAGES) != 0)
            w->errors++;
    return NULL;
}

/* CPUs 2 and 3: blocks of 128 MiB to 512 MiB, which split chunks (the
 * lists are empty) and merge them back when freed. */
static void *splitter(void *arg)
{
    struct worker *w = arg;
    harness_cpu_id = w->cpu;
    phys_addr_t held[8];
    unsigned order[8], n = 0;
    while (!stop_splitters) {
        uint64_t x = rng_next(&w->seed);
        if (n < 8 && (n == 0 || (x & 1))) {
            unsigned k = 15 + (unsigned)(x >> 8) % 3;
            if (buddy_alloc(&B, UINT64_C(1) << k, &held[n]) != 0)
                continue;
            *(volatile uint64_t *)pa_to_ptr(held[n]) = (uint64_t)(uintptr_t)w;
            order[n++] = k;
        } else {
            unsigned j = (unsigned)(x >> 8) % n;
            if (*(volatile uint64_t *)pa_to_ptr(held[j]) != (uint64_t)(uintptr_t)w)
                w->errors++;
            if (buddy_free(&B, held[j], UINT64_C(1) << order[j]) != 0)
                w->errors++;
            held[j] = held[n - 1];
            order[j] = order[--n];
        }
    }
    while (n > 0) {
        n--;
        if (buddy_free(&B, held[n], UINT64_C(1) << order[n]) != 0)
            w->errors++;
    }
    return NULL;
}

/* Two CPUs allocate and free 1 GiB blocks without the lock while two
 * others split and merge chunks under it: no block is ever held twice,
 * and everything comes back exactly. */
static void test_threads_never_twice(void)
{
    init_eight_chunks();
    uint64_t init_counts[BUDDY_NR_ORDERS];
    buddy_free_blocks(&B, init_counts);
    CHECK_EQ(init_counts[BUDDY_MAX_ORDER], 8);
    stop_splitters = 0;
    pthread_t t[NCPUS];
    for (unsigned c = 0; c < NCPUS; c++) {
        workers[c] = (struct worker){ .cpu = c, .seed = 0x70b7u + 977 * c };
        REQUIRE(pthread_create(&t[c], NULL, c < 2 ? gib_churn : splitter, &workers[c]) == 0);
    }
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    stop_splitters = 1;
    pthread_join(t[2], NULL);
    pthread_join(t[3], NULL);
    for (unsigned c = 0; c < NCPUS; c++)
        CHECK_EQ(workers[c].errors, 0);
    CHECK(workers[0].gib_allocs + workers[1].gib_allocs > 1000);
    buddy_drain_all(&B);
    struct buddy_usage u;
    buddy_usage(&B, &u);
    CHECK_EQ(u.used_npages, 0);
    uint64_t counts[BUDDY_NR_ORDERS];
    buddy_free_blocks(&B, counts);
    CHECK(memcmp(counts, init_counts, sizeof counts) == 0);
    buddy_check(&B);
}

/* Two CPUs free the same 1 GiB block at the same moment, many times:
 * exactly one free passes each time. */
static phys_addr_t race_pa;
static volatile int race_go, race_ready;
static int race_result[2];

static void *racer(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    harness_cpu_id = me;
    __atomic_fetch_add(&race_ready, 1, __ATOMIC_ACQ_REL);
    while (!__atomic_load_n(&race_go, __ATOMIC_ACQUIRE))
        ;
    race_result[me] = buddy_free(&B, race_pa, BUDDY_MAX_NPAGES);
    return NULL;
}

static void test_racing_double_free(void)
{
    init_area(1 * MiB, 5 * GiB);
    harness_quiet = 1;
    unsigned both = 0, neither = 0;
    for (int round = 0; round < 300; round++) {
        REQUIRE(buddy_alloc(&B, BUDDY_MAX_NPAGES, &race_pa) == 0);
        race_go = 0;
        race_ready = 0;
        pthread_t t[2];
        for (uintptr_t i = 0; i < 2; i++)
            REQUIRE(pthread_create(&t[i], NULL, racer, (void *)i) == 0);
        while (__atomic_load_n(&race_ready, __ATOMIC_ACQUIRE) < 2)
            ;
        __atomic_store_n(&race_go, 1, __ATOMIC_RELEASE);
        pthread_join(t[0], NULL);
        pthread_join(t[1], NULL);
        both += race_result[0] == 0 && race_result[1] == 0;
        neither += race_result[0] != 0 && race_result[1] != 0;
        if (race_result[0] != 0 && race_result[1] != 0)
            break;
    }
    harness_quiet = 0;
    CHECK_EQ(both, 0);
    CHECK_EQ(neither, 0);
    struct buddy_usage u;
    buddy_usage(&B, &u);
    CHECK_EQ(u.used_npages, 0);
    buddy_check(&B);
}

int main(void)
{
    sim_mem_init(SIM_SIZE);
    RUN(test_states_and_zone_order);
    RUN(test_spans_on_one_side);
    RUN(test_bad_frees_refused);
    RUN(test_split_and_merge);
    RUN(test_alloc_drains_own_cache);
    RUN(test_below_limit);
    RUN(test_alloc_step_bound);
    RUN(test_check_catches_damaged_state);
    RUN(test_threads_never_twice);
    RUN(test_racing_double_free);
    sim_mem_fini();
    return harness_finish();
}
