/*
 * test_buddy_pcp.c - host tests of the buddy allocator's per-CPU caches of
 * single frames (mm/buddy_pcp.c): exact accounting (free + used == total,
 * cached counted in free) after random operations on several simulated
 * CPUs in threads, with frames freed on other CPUs than the ones that got
 * them; double frees of a cached frame refused on the same CPU and on
 * another one; foreign frees; drains; the refill and spill batch sizes; a
 * larger request that succeeds once the caller's own cache is drained;
 * buddy_check catching a damaged cache; and the cache-line layout of
 * struct buddy.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "buddy_test_util.h"

#include <pthread.h>
#include <stddef.h>
#include <mm/buddy.h>
#include <mm/log.h>
#include "../../mm/buddy_impl.h"       /* white-box: per-CPU caches, frame states */

#define SIM_SIZE (2 * GiB)
#define NCPUS    4


/* What a refused call must leave as it was (harness.h, REFUSED). */
struct snap {
    struct buddy_usage u;
    uint64_t counts[BUDDY_NR_ORDERS];
    uint32_t cached[MM_MAX_CPUS];
};

static void take_snap(struct snap *s)
{
    memset(s, 0, sizeof *s);
    buddy_usage(&B, &s->u);
    buddy_free_blocks(&B, s->counts);
    for (unsigned c = 0; c < MM_MAX_CPUS; c++)
        s->cached[c] = B.pcp[c].count;
}

static bool snap_same(const struct snap *old)
{
    struct snap now;
    take_snap(&now);
    return memcmp(&now, old, sizeof now) == 0;
}

static uint64_t cached_on(unsigned cpu) { return B.pcp[cpu].count; }

static void check_accounting(uint64_t want_used)
{
    struct buddy_usage u;
    buddy_usage(&B, &u);
    CHECK_EQ(u.free_npages + u.used_npages, u.total_npages);
    CHECK_EQ(u.used_npages, want_used);
    uint64_t cached = 0;
    for (unsigned c = 0; c < MM_MAX_CPUS; c++)
        cached += cached_on(c);
    CHECK_EQ(u.cached_npages, cached);
    CHECK(u.cached_npages <= u.free_npages);
}

/* ------------------------------------------------------------- layout */

static void test_struct_buddy_layout(void)
{
    CHECK_EQ(_Alignof(struct buddy), BUDDY_CACHE_LINE);
    CHECK_EQ(sizeof(struct buddy) % BUDDY_CACHE_LINE, 0);
    CHECK_EQ(offsetof(struct buddy, lock) % BUDDY_CACHE_LINE, 0);
    /* the fields the lock-free paths read are not on the lock's line */
    CHECK(offsetof(struct buddy, ready) < offsetof(struct buddy, lock));
    CHECK(offsetof(struct buddy, pcp) < offsetof(struct buddy, lock));
    CHECK(offsetof(struct buddy, frame_state) < offsetof(struct buddy, lock));
    static struct buddy two[2];
    CHECK_EQ((uintptr_t)&two[1] % BUDDY_CACHE_LINE, 0);
    CHECK_EQ(sizeof(struct buddy_pcp) % BUDDY_CACHE_LINE, 0);
}

/* ------------------------------------------------- batches and drains */

static void test_refill_and_spill_batches(void)
{
    init_area(1 * MiB, 64 * MiB);
    struct buddy_usage u0, u;
    buddy_usage(&B, &u0);
    CHECK_EQ(u0.cached_npages, 0);

    phys_addr_t f[BUDDY_PCP_CAP + 1];
    REQUIRE(buddy_alloc(&B, 1, &f[0]) == 0);
    CHECK_EQ(cached_on(0), BUDDY_PCP_CAP - 1);   /* one refill fills the cache */
    for (unsigned i = 1; i <= BUDDY_PCP_CAP; i++)
        REQUIRE(buddy_alloc(&B, 1, &f[i]) == 0);
    CHECK_EQ(cached_on(0), BUDDY_PCP_CAP - 1);   /* emptied, refilled once more */
    check_accounting(BUDDY_PCP_CAP + 1);

    for (unsigned i = 0; i <= BUDDY_PCP_CAP; i++)
        REQUIRE(buddy_free(&B, f[i], 1) == 0);
    /* 63 + 65 frees: full at 64, a spill of 32, and so on */
    CHECK(cached_on(0) <= BUDDY_PCP_CAP && cached_on(0) > BUDDY_PCP_CAP - BUDDY_PCP_BATCH);
    check_accounting(0);
    buddy_check(&B);

    int64_t was_cached = (int64_t)cached_on(0);
    CHECK_EQ(buddy_drain_cpu(&B, 0), was_cached);
    buddy_usage(&B, &u);
    CHECK_EQ(u.cached_npages, 0);
    CHECK_EQ(u.free_npages, u0.free_npages);
    uint64_t c0[BUDDY_NR_ORDERS], c1[BUDDY_NR_ORDERS];
    buddy_drain_all(&B);
    buddy_free_blocks(&B, c1);
    init_area(1 * MiB, 64 * MiB);
    buddy_free_blocks(&B, c0);
    CHECK(memcmp(c0, c1, sizeof c0) == 0);      /* fully merged again */
}

static void test_drain_cpu_and_all(void)
{
    init_area(1 * MiB, 64 * MiB);
    phys_addr_t pa;
    for (unsigned c = 0; c < 3; c++) {
        harness_cpu_id = c;
        REQUIRE(buddy_alloc(&B, 1, &pa) == 0);
        REQUIRE(buddy_free(&B, pa, 1) == 0);
        CHECK_EQ(cached_on(c), BUDDY_PCP_CAP);
    }
    harness_cpu_id = 0;
    check_accounting(0);
    CHECK_EQ(buddy_drain_cpu(&B, 1), BUDDY_PCP_CAP);
    CHECK_EQ(cached_on(1), 0);
    CHECK_EQ(cached_on(0), BUDDY_PCP_CAP);
    REFUSED(buddy_drain_cpu(&B, MM_MAX_CPUS), -MM_EINVAL);
    CHECK_EQ(buddy_drain_all(&B), 2 * BUDDY_PCP_CAP);
    struct buddy_usage u;
    buddy_usage(&B, &u);
    CHECK_EQ(u.cached_npages, 0);
    CHECK_EQ(u.free_npages, u.total_npages);
    buddy_check(&B);
}

/* A larger block that exists only once the caller's cached frames merge. */
static void test_larger_alloc_drains_own_cache(void)
{
    init_area(1 * MiB, 9 * MiB);
    struct buddy_usage u;
    buddy_usage(&B, &u);
    phys_addr_t *all = calloc(u.total_npages, sizeof *all);
    REQUIRE(all);
    uint64_t n = 0;
    while (buddy_alloc(&B, 1, &all[n]) == 0)
        n++;
    CHECK_EQ(n, u.total_npages);
    /* free one aligned 64-frame run: it all stays in CPU 0's cache */
    uint64_t base = UINT64_MAX;
    for (uint64_t i = 0; i < n && base == UINT64_MAX; i++)
        if ((all[i].raw & (64 * PAGE_SIZE - 1)) == 0)
            base = all[i].raw;
    REQUIRE(base != UINT64_MAX);
    for (uint64_t i = 0; i < n; i++)
        if (all[i].raw >= base && all[i].raw < base + 64 * PAGE_SIZE)
            REQUIRE(buddy_free(&B, all[i], 1) == 0);
    CHECK_EQ(cached_on(0), 64);
    phys_addr_t big;
    CHECK_EQ(buddy_alloc(&B, 64, &big), 0);
    CHECK_EQ(big.raw, base);
    CHECK_EQ(cached_on(0), 0);
    CHECK_EQ(buddy_free(&B, big, 64), 0);
    for (uint64_t i = 0; i < n; i++)
        if (all[i].raw < base || all[i].raw >= base + 64 * PAGE_SIZE)
            REQUIRE(buddy_free(&B, all[i], 1) == 0);
    buddy_drain_all(&B);
    check_accounting(0);
    buddy_check(&B);
    free(all);
}

/* ------------------------------------------------------ refused frees */

static void test_double_free_cached_same_cpu(void)
{
    init_area(1 * MiB, 64 * MiB);
    phys_addr_t pa;
    REQUIRE(buddy_alloc(&B, 1, &pa) == 0);
    REQUIRE(buddy_free(&B, pa, 1) == 0);                 /* cached on CPU 0 */
    REFUSED(buddy_free(&B, pa, 1), -MM_ENOENT);
    check_accounting(0);
    buddy_check(&B);
}

static void test_double_free_cached_other_cpu(void)
{
    init_area(1 * MiB, 64 * MiB);
    phys_addr_t pa, other;
    harness_cpu_id = 0;
    REQUIRE(buddy_alloc(&B, 1, &pa) == 0);
    REQUIRE(buddy_alloc(&B, 1, &other) == 0);
    REQUIRE(buddy_free(&B, pa, 1) == 0);                 /* cached on CPU 0 */
    harness_cpu_id = 2;
    REFUSED(buddy_free(&B, pa, 1), -MM_ENOENT);         /* freed again on CPU 2 */
    CHECK_EQ(cached_on(2), 0);
    /* a frame allocated on CPU 0 may be freed on CPU 2, once */
    CHECK_EQ(buddy_free(&B, other, 1), 0);
    CHECK_EQ(cached_on(2), 1);
    harness_cpu_id = 0;
    REFUSED(buddy_free(&B, other, 1), -MM_ENOENT);      /* and not again on CPU 0 */
    /* drained to the lists, the frame is still refused */
    buddy_drain_all(&B);
    harness_cpu_id = 3;
    REFUSED(buddy_free(&B, pa, 1), -MM_ENOENT);
    harness_cpu_id = 0;
    check_accounting(0);
    buddy_check(&B);
}

static void test_foreign_and_partial_frees(void)
{
    init_area(16 * MiB, 64 * MiB);
    /* a second range after a hole, for a pa in the span but not managed */
    struct mm_area_list l = { .count = 2 };
    l.area[0] = (struct mm_area){ PA(16 * MiB), PA(64 * MiB) };
    l.area[1] = (struct mm_area){ PA(128 * MiB), PA(192 * MiB) };
    REQUIRE(buddy_init(&B, &l) == 0);
    phys_addr_t blk;
    REQUIRE(buddy_alloc(&B, 4, &blk) == 0);
    REFUSED(buddy_free(&B, PA(4 * GiB), 1), -MM_EFAULT);          /* beyond the span */
    REFUSED(buddy_free(&B, PA(80 * MiB), 1), -MM_EFAULT);         /* the hole */
    REFUSED(buddy_free(&B, PA(blk.raw + PAGE_SIZE), 1), -MM_ENOENT);  /* inside a block */
    REFUSED(buddy_free(&B, blk, 1), -MM_ENOENT);                  /* wrong size */
    REFUSED(buddy_free(&B, PA(190 * MiB), 1), -MM_ENOENT);        /* never handed out */
    REFUSED(buddy_free(&B, PA(blk.raw + 1), 1), -MM_EINVAL);      /* unaligned */
    CHECK_EQ(buddy_free(&B, blk, 4), 0);
    buddy_check(&B);
}

/* buddy_check catches a cached frame whose state byte was damaged, a frame
 * twice in one cache, and a frame that left a cache still marked cached. */
static void test_check_catches_damaged_cache(void)
{
    phys_addr_t pa;
    for (unsigned damage = 0; damage < 3; damage++) {
        init_area(1 * MiB, 64 * MiB);
        REQUIRE(buddy_alloc(&B, 1, &pa) == 0);
        buddy_check(&B);
        struct buddy_pcp *p = &B.pcp[0];
        if (damage == 0) {
            B.frame_state[p->entry[0]] = BUDDY_FS_ALLOC;
            expect_check_panic("buddy_check: CPU 0 cache entry");
        } else if (damage == 1) {
            p->entry[1] = p->entry[0];
            expect_check_panic("both rel");
        } else {
            p->count--;
            expect_check_panic("frame states say cached");
        }
    }
}

/* ------------------------------------------------------------ threads */

#define HOLD 256

struct worker {
    unsigned cpu;
    uint64_t seed;
    phys_addr_t held[HOLD];
    unsigned order[HOLD];
    unsigned n;
    unsigned long errors;
};

static struct worker workers[NCPUS];

/* Random allocs and frees (mostly single frames) on simulated CPU w->cpu,
 * every frame written with its owner and checked before it is freed. */
static void *churn(void *arg)
{
    struct worker *w = arg;
    harness_cpu_id = w->cpu;
    for (int i = 0; i < 100000; i++) {
        uint64_t x = rng_next(&w->seed);
        if (w->n < HOLD && (w->n == 0 || (x & 3) != 0)) {
            unsigned k = (x >> 8) % 8 == 0 ? (unsigned)(x >> 16) % 4 : 0;
            phys_addr_t pa;
            if (buddy_alloc(&B, UINT64_C(1) << k, &pa) != 0)
                continue;
            *(volatile uint64_t *)pa_to_ptr(pa) = (uint64_t)(uintptr_t)w;
            w->held[w->n] = pa;
            w->order[w->n++] = k;
        } else {
            unsigned j = (unsigned)((x >> 8) % w->n);
            phys_addr_t pa = w->held[j];
            if (*(volatile uint64_t *)pa_to_ptr(pa) != (uint64_t)(uintptr_t)w)
                w->errors++;                    /* another CPU got our frame */
            if (buddy_free(&B, pa, UINT64_C(1) << w->order[j]) != 0)
                w->errors++;
            w->held[j] = w->held[--w->n];
            w->order[j] = w->order[w->n];
        }
    }
    return NULL;
}

/* Free everything the worker of the next CPU holds (cross-CPU frees). */
static void *free_neighbours(void *arg)
{
    struct worker *w = arg;
    harness_cpu_id = w->cpu;
    struct worker *v = &workers[(w->cpu + 1) % NCPUS];
    while (v->n > 0) {
        v->n--;
        if (buddy_free(&B, v->held[v->n], UINT64_C(1) << v->order[v->n]) != 0)
            w->errors++;
    }
    return NULL;
}

static void run_workers(void *(*fn)(void *))
{
    pthread_t t[NCPUS];
    for (unsigned c = 0; c < NCPUS; c++)
        REQUIRE(pthread_create(&t[c], NULL, fn, &workers[c]) == 0);
    for (unsigned c = 0; c < NCPUS; c++)
        pthread_join(t[c], NULL);
}

static void test_threads_accounting_exact(void)
{
    init_area(1 * MiB, 256 * MiB);
    uint64_t init_counts[BUDDY_NR_ORDERS];
    buddy_free_blocks(&B, init_counts);
    for (unsigned c = 0; c < NCPUS; c++)
        workers[c] = (struct worker){ .cpu = c, .seed = 0x9e3779b97f4a7c15u + c };

    run_workers(churn);
    uint64_t held = 0;
    for (unsigned c = 0; c < NCPUS; c++) {
        CHECK_EQ(workers[c].errors, 0);
        for (unsigned i = 0; i < workers[c].n; i++)
            held += UINT64_C(1) << workers[c].order[i];
    }
    check_accounting(held);                    /* caches full of frames, exact */
    struct buddy_usage u;
    buddy_usage(&B, &u);
    CHECK(u.cached_npages > 0);
    buddy_check(&B);

    run_workers(free_neighbours);
    for (unsigned c = 0; c < NCPUS; c++)
        CHECK_EQ(workers[c].errors, 0);
    check_accounting(0);
    buddy_check(&B);
    buddy_drain_all(&B);
    buddy_usage(&B, &u);
    CHECK_EQ(u.cached_npages, 0);
    CHECK_EQ(u.free_npages, u.total_npages);
    uint64_t counts[BUDDY_NR_ORDERS];
    buddy_free_blocks(&B, counts);
    CHECK(memcmp(counts, init_counts, sizeof counts) == 0);
    buddy_check(&B);
}

int main(void)
{
    sim_mem_init(SIM_SIZE);
    RUN(test_struct_buddy_layout);
    RUN(test_refill_and_spill_batches);
    RUN(test_drain_cpu_and_all);
    RUN(test_larger_alloc_drains_own_cache);
    RUN(test_double_free_cached_same_cpu);
    RUN(test_double_free_cached_other_cpu);
    RUN(test_foreign_and_partial_frees);
    RUN(test_check_catches_damaged_cache);
    RUN(test_threads_accounting_exact);
    sim_mem_fini();
    return harness_finish();
}
