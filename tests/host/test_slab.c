/*
 * test_slab.c - host tests of the object caches (mm/slab.c,
 * mm/slab_refill.c, mm/slab_debug.c) over a buddy in simulated memory:
 * layout and alignment, constructors, destroy refused while objects
 * live, shrink and the empty-slab hysteresis, every kind of bad free
 * (one log line, nothing changed), the debug red zone and poison
 * reports, statistics and the dump, a random model per cache, a
 * multi-threaded stress on simulated CPUs that frees on another CPU than
 * it allocated on, ending with exact frame accounting; double frees
 * refused wherever the object waits (array, depot, other CPU, slab) and
 * the documented hole of the free tag; fast paths that write no slab
 * header; the index test at every byte of a slab.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <pthread.h>
#include <sys/mman.h>
#include <mm/buddy.h>
#include <mm/log.h>
#include <mm/slab.h>

#define SIM_SIZE (1 * GiB)

static struct buddy B;
static uint64_t base_used;          /* buddy frames used right after init */

/* Two RAM ranges with a hole between them, a fresh buddy and heap. */
static void heap_up(void)
{
    static const uint64_t r[][2] = { { 1 * MiB, 200 * MiB }, { 256 * MiB, 768 * MiB } };
    sim_mem_init(SIM_SIZE);
    struct mm_area_list l = { .count = 2 };
    for (unsigned i = 0; i < 2; i++) {
        l.area[i].start = PA(r[i][0]);
        l.area[i].end = PA(r[i][1]);
    }
    if (buddy_init(&B, &l) != 0 || mm_heap_init(&B) != 0) {
        fprintf(stderr, "heap_up failed\n");
        exit(2);
    }
    struct buddy_usage u;
    buddy_usage(&B, &u);
    base_used = u.used_npages;
    harness_cpu_id = 0;
}

static uint64_t frames_out(void)
{
    struct buddy_usage u;
    buddy_usage(&B, &u);
    return u.used_npages - base_used;
}

static void heap_down(void)
{
    mm_heap_reset();
    sim_mem_fini();
}

static struct mm_cache_stats stats(struct mm_cache *c)
{
    struct mm_cache_stats st;
    memset(&st, 0, sizeof st);
    mm_cache_stats(c, &st);
    return st;
}

/* What a refused call must leave alone: the buddy and two caches. */
static struct mm_cache *snap_a, *snap_b;
struct snap { struct buddy_usage u; struct mm_cache_stats a, b; struct mm_heap_usage h; };

static void take_snap(struct snap *s)
{
    memset(s, 0, sizeof *s);
    buddy_usage(&B, &s->u);
    if (snap_a)
        s->a = stats(snap_a);
    if (snap_b)
        s->b = stats(snap_b);
    mm_heap_usage(&s->h);
}

static bool snap_same(const struct snap *s)
{
    struct snap now;
    take_snap(&now);
    return memcmp(s, &now, sizeof now) == 0;
}

/* ------------------------------------------------------------ basics */

static void test_alloc_free_distinct_and_frames_back(void)
{
    heap_up();
    struct mm_cache *c = mm_cache_create("thing", 100, 0, NULL);
    REQUIRE(c != NULL);
    enum { N = 1000 };
    static uint8_t *p[N];
    for (unsigned i = 0; i < N; i++) {
        p[i] = mm_cache_alloc(c);
        REQUIRE(p[i] != NULL);
        CHECK_EQ((uintptr_t)p[i] % 8, 0);
        memset(p[i], (int)i, 100);
    }
    for (unsigned i = 0; i < N; i++)
        for (unsigned k = 0; k < 100; k++)
            if (p[i][k] != (uint8_t)i) {
                CHECK(!"object contents changed");
                break;
            }
    struct mm_cache_stats st = stats(c);
    CHECK_EQ(st.live, N);
    CHECK(st.objs_per_slab >= 8);
    CHECK(st.slabs * st.objs_per_slab >= N);
    for (unsigned i = 0; i < N; i++)
        CHECK_EQ(mm_cache_free(c, p[i]), 0);
    CHECK_EQ(stats(c).live, 0);
    CHECK_EQ(mm_cache_destroy(c), 0);
    mm_heap_shrink();
    CHECK_EQ(frames_out(), 0);
    heap_down();
}

static void test_alignment_and_layout(void)
{
    heap_up();
    static const size_t sizes[] = { 1, 7, 24, 100, 500, 3000, 5000, 32768 };
    static const size_t aligns[] = { 0, 8, 16, 64, 256, 4096 };
    for (unsigned si = 0; si < 8; si++)
        for (unsigned ai = 0; ai < 6; ai++) {
            size_t align = aligns[ai] ? aligns[ai] : 8;
            struct mm_cache *c = mm_cache_create("aligned", sizes[si], aligns[ai], NULL);
            REQUIRE(c != NULL);
            struct mm_cache_stats st = stats(c);
            CHECK(st.stride >= sizes[si] && st.stride % align == 0);
            CHECK(st.objs_per_slab >= 7);
            /* waste within a slab: at most an eighth once 8 objects fit */
            void *p[20];
            for (unsigned i = 0; i < 20; i++) {
                p[i] = mm_cache_alloc(c);
                REQUIRE(p[i] != NULL);
                CHECK_EQ((uintptr_t)p[i] % align, 0);
                memset(p[i], 0x77, sizes[si]);
            }
            for (unsigned i = 0; i < 20; i++)
                CHECK_EQ(mm_cache_free(c, p[i]), 0);
            CHECK_EQ(mm_cache_destroy(c), 0);
        }
    mm_heap_shrink();
    CHECK_EQ(frames_out(), 0);
    heap_down();
}

static unsigned ctor_calls;
static void ctor_fill(void *obj)
{
    ctor_calls++;
    memset(obj, 0xc7, 40);
}

static void test_ctor_runs_once_per_object(void)
{
    heap_up();
    ctor_calls = 0;
    struct mm_cache *c = mm_cache_create("ctor", 40, 0, ctor_fill);
    REQUIRE(c != NULL);
    uint8_t *p = mm_cache_alloc(c);
    REQUIRE(p != NULL);
    struct mm_cache_stats st = stats(c);
    CHECK_EQ(ctor_calls, st.objs_per_slab);          /* the whole slab, once */
    for (unsigned k = 0; k < 40; k++)
        CHECK_EQ(p[k], 0xc7);
    CHECK_EQ(mm_cache_free(c, p), 0);
    mm_cache_shrink(c);                              /* through the free list too */
    uint8_t *q = mm_cache_alloc(c);
    REQUIRE(q != NULL);
    for (unsigned k = 0; k < 40; k++)
        CHECK_EQ(q[k], 0xc7);                        /* the link word sits outside */
    CHECK_EQ(mm_cache_free(c, q), 0);
    CHECK_EQ(mm_cache_destroy(c), 0);
    heap_down();
}

static void test_destroy_refused_while_live(void)
{
    heap_up();
    struct mm_cache *c = mm_cache_create("busy", 64, 0, NULL);
    REQUIRE(c != NULL);
    void *p[3];
    for (unsigned i = 0; i < 3; i++)
        p[i] = mm_cache_alloc(c);
    snap_a = c;
    REFUSED(mm_cache_destroy(c), -MM_EBUSY);
    CHECK_EQ(mm_cache_free(c, p[0]), 0);
    CHECK_EQ(mm_cache_free(c, p[1]), 0);
    REFUSED(mm_cache_destroy(c), -MM_EBUSY);
    CHECK_EQ(mm_cache_free(c, p[2]), 0);
    snap_a = NULL;
    CHECK_EQ(mm_cache_destroy(c), 0);
    mm_heap_shrink();
    CHECK_EQ(frames_out(), 0);
    heap_down();
}

static void test_shrink_returns_every_idle_slab(void)
{
    heap_up();
    struct mm_cache *c = mm_cache_create("shrinkme", 200, 0, NULL);
    REQUIRE(c != NULL);
    enum { N = 3000 };
    static void *p[N];
    for (unsigned i = 0; i < N; i++)
        REQUIRE((p[i] = mm_cache_alloc(c)) != NULL);
    struct mm_cache_stats full = stats(c);
    CHECK(full.slabs >= N / full.objs_per_slab);
    for (unsigned i = 0; i < N; i++)
        CHECK_EQ(mm_cache_free(c, p[i]), 0);
    /* Hysteresis: once free, at most two empty slabs stay, plus those
     * pinned by this CPU's array and the depot. */
    struct mm_cache_stats idle = stats(c);
    CHECK(idle.empty_slabs <= 2);
    uint64_t pinned = (idle.cached + idle.objs_per_slab - 1) / idle.objs_per_slab;
    CHECK(idle.slabs <= 2 + pinned + 1);
    uint64_t frames = mm_cache_shrink(c);
    CHECK_EQ(frames, idle.slabs * idle.slab_bytes / PAGE_SIZE);
    struct mm_cache_stats after = stats(c);
    CHECK_EQ(after.slabs, 0);
    CHECK_EQ(after.cached, 0);
    CHECK_EQ(mm_cache_shrink(c), 0);                 /* nothing left */
    CHECK_EQ(mm_cache_destroy(c), 0);
    mm_heap_shrink();
    CHECK_EQ(frames_out(), 0);
    heap_down();
}

/* --------------------------------------------------------- bad input */

static void test_bad_frees_refused(void)
{
    heap_up();
    struct mm_cache *a = mm_cache_create("cache-a", 48, 0, NULL);
    struct mm_cache *b = mm_cache_create("cache-b", 48, 0, NULL);
    REQUIRE(a != NULL && b != NULL);
    snap_a = a;
    snap_b = b;
    uint8_t *x = mm_cache_alloc(a), *y = mm_cache_alloc(a), *z = mm_cache_alloc(b);
    REQUIRE(x != NULL && y != NULL && z != NULL);

    CHECK_EQ(mm_cache_free(a, x), 0);               /* x now in this CPU's array */
    REFUSED(mm_cache_free(a, x), -MM_ENOENT);
    mm_cache_shrink(a);                              /* x back in its slab's free list */
    REFUSED(mm_cache_free(a, x), -MM_ENOENT);
    harness_cpu_id = 3;                              /* and from another CPU */
    REFUSED(mm_cache_free(a, x), -MM_ENOENT);
    harness_cpu_id = 0;

    REFUSED(mm_cache_free(b, y), -MM_EINVAL);       /* wrong cache */
    REFUSED(mm_cache_free(a, z), -MM_EINVAL);
    REFUSED(mm_cache_free(a, y + 8), -MM_EINVAL);   /* interior */
    REFUSED(mm_cache_free(a, y + 47), -MM_EINVAL);
    REFUSED(mm_cache_free(a, (void *)((uintptr_t)y & ~(uintptr_t)(PAGE_SIZE - 1))), -MM_EINVAL);
    int on_stack;
    REFUSED(mm_cache_free(a, &on_stack), -MM_EFAULT);    /* not in RAM */
    REFUSED(mm_cache_free(a, pa_to_ptr(PA(210 * MiB))), -MM_EFAULT);   /* the hole */
    REFUSED(mm_cache_free(a, pa_to_ptr(PA(900 * MiB))), -MM_EFAULT);   /* past RAM */
    phys_addr_t pa;
    REQUIRE(buddy_alloc(&B, 8, &pa) == 0);           /* RAM, but no slab */
    memset(pa_to_ptr(pa), 0x5a, 8 * PAGE_SIZE);
    REFUSED(mm_cache_free(a, (uint8_t *)pa_to_ptr(pa) + 4096 + 64), -MM_EFAULT);
    CHECK_EQ(buddy_free(&B, pa, 8), 0);
    REFUSED(mm_cache_free(a, NULL), -MM_EINVAL);
    REFUSED(mm_cache_free(NULL, y), -MM_EINVAL);
    _Alignas(64) static uint8_t fake[4096];
    REFUSED(mm_cache_free((struct mm_cache *)(void *)fake, y), -MM_EINVAL);   /* not a cache */

    CHECK_EQ(mm_cache_free(a, y), 0);
    CHECK_EQ(mm_cache_free(b, z), 0);
    snap_a = snap_b = NULL;
    CHECK_EQ(mm_cache_destroy(a), 0);
    CHECK_EQ(mm_cache_destroy(b), 0);
    mm_heap_shrink();
    CHECK_EQ(frames_out(), 0);
    heap_down();
}

static void test_bad_create_and_calls(void)
{
    heap_up();
    struct snap s;
    take_snap(&s);
    static const struct { const char *name; size_t size, align; unsigned flags; } bad[] = {
        { NULL, 16, 0, 0 }, { "", 16, 0, 0 }, { "zero", 0, 0, 0 },
        { "huge", MM_CACHE_MAX_SIZE + 1, 0, 0 }, { "odd", 16, 24, 0 },
        { "wide", 16, 8192, 0 }, { "flags", 16, 0, 0x80 },
    };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned long lines = harness_log_lines;
        harness_quiet = 1;
        CHECK(mm_cache_create_flags(bad[i].name, bad[i].size, bad[i].align, NULL,
                                    bad[i].flags) == NULL);
        harness_quiet = 0;
        CHECK_EQ(harness_log_lines, lines + 1);
    }
    CHECK(snap_same(&s));
    REFUSED(mm_cache_destroy(NULL), -MM_EINVAL);
    unsigned long lines = harness_log_lines;
    harness_quiet = 1;
    CHECK_EQ(mm_heap_init(&B), -MM_EINVAL);          /* twice */
    CHECK(mm_cache_alloc(NULL) == NULL);
    CHECK_EQ(mm_cache_shrink(NULL), 0);
    CHECK_EQ(mm_heap_drain_cpu(MM_MAX_CPUS), 0);
    harness_quiet = 0;
    CHECK_EQ(harness_log_lines, lines + 4);
    heap_down();
    lines = harness_log_lines;
    harness_quiet = 1;                               /* no heap at all */
    CHECK(mm_cache_create("early", 16, 0, NULL) == NULL);
    harness_quiet = 0;
    CHECK_EQ(harness_log_lines, lines + 1);
}

/* ------------------------------------------------------------ debug */

static void test_debug_red_zone_and_poison(void)
{
    heap_up();
    struct mm_cache *c = mm_cache_create_flags("dbg", 40, 0, NULL, MM_CACHE_DEBUG);
    REQUIRE(c != NULL);
    snap_a = c;
    struct mm_slab_report r;
    CHECK(!mm_slab_last_report(&r));
    uint8_t *p = mm_cache_alloc(c);
    REQUIRE(p != NULL);
    memset(p, 1, 40);                               /* all of it is fine */
    p[40] = 0x41;                                   /* one byte past the end */
    REFUSED(mm_cache_free(c, p), -MM_EFAULT);
    REQUIRE(mm_slab_last_report(&r));
    CHECK(strcmp(r.cache, "dbg") == 0);
    CHECK_EQ(r.object, (uintptr_t)p);
    CHECK_EQ(r.addr, (uintptr_t)p + 40);
    CHECK_EQ(r.offset, 40);
    CHECK_EQ(r.expected, 0xbb);
    CHECK_EQ(r.found, 0x41);
    CHECK_EQ(r.count, 1);
    p[40] = 0xbb;                                   /* repaired: the free goes through */
    CHECK_EQ(mm_cache_free(c, p), 0);
    for (unsigned k = 0; k < 40; k++)
        CHECK_EQ(p[k], 0x6b);                        /* poisoned */

    /* A write after free is reported when the object is handed out again. */
    p[17] = 0x99;
    unsigned long lines = harness_log_lines;
    harness_quiet = 1;
    uint8_t *q = mm_cache_alloc(c);
    harness_quiet = 0;
    CHECK(q == p);                                   /* LIFO array */
    CHECK_EQ(harness_log_lines, lines + 1);
    REQUIRE(mm_slab_last_report(&r));
    CHECK_EQ(r.addr, (uintptr_t)p + 17);
    CHECK_EQ(r.expected, 0x6b);
    CHECK_EQ(r.found, 0x99);
    CHECK_EQ(r.count, 2);
    CHECK_EQ(mm_cache_free(c, q), 0);
    snap_a = NULL;
    CHECK_EQ(mm_cache_destroy(c), 0);
    mm_heap_shrink();
    CHECK_EQ(frames_out(), 0);
    heap_down();
}

/* --------------------------------------------------- stats and dump */

static void test_stats_usage_and_dump(void)
{
    heap_up();
    struct mm_cache *c = mm_cache_create("counted", 256, 0, NULL);
    REQUIRE(c != NULL);
    void *p[100];
    for (unsigned i = 0; i < 100; i++)
        p[i] = mm_cache_alloc(c);
    struct mm_cache_stats st = stats(c);
    CHECK(strcmp(st.name, "counted") == 0);
    CHECK_EQ(st.object_size, 256);
    CHECK_EQ(st.live, 100);
    CHECK_EQ(st.bytes_used, st.slabs * st.slab_bytes);
    CHECK_EQ(st.waste, st.bytes_used - 100 * 256);
    struct mm_heap_usage u;
    mm_heap_usage(&u);
    CHECK_EQ(u.live_objects, 100);
    CHECK_EQ(u.caches, 16);                          /* 15 kmalloc classes + ours */
    CHECK_EQ(u.slab_npages, frames_out());
    unsigned long lines = harness_log_lines;
    harness_quiet = 1;
    harness_longest_line = 0;
    mm_slabinfo_dump();
    harness_quiet = 0;
    CHECK_EQ(harness_log_lines, lines + u.caches + 2);     /* + the internal caches */
    CHECK(harness_longest_line < 120);
    for (unsigned i = 0; i < 100; i++)
        CHECK_EQ(mm_cache_free(c, p[i]), 0);
    CHECK_EQ(mm_cache_destroy(c), 0);
    heap_down();
}

/* ------------------------------------------------------ random model */

struct live { uint8_t *p; unsigned cache; uint64_t seed; };

static void fill_pattern(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed >> ((i & 7) * 8)) ^ (uint8_t)i;
}

static bool pattern_ok(const uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ((uint8_t)(seed >> ((i & 7) * 8)) ^ (uint8_t)i))
            return false;
    return true;
}

static int cmp_ptr(const void *a, const void *b)
{
    const struct live *x = a, *y = b;
    return x->p < y->p ? -1 : x->p > y->p;
}

static void test_random_model_per_cache(void)
{
    heap_up();
    static const size_t size[3] = { 24, 320, 4000 };
    struct mm_cache *c[3];
    for (unsigned i = 0; i < 3; i++)
        REQUIRE((c[i] = mm_cache_create("model", size[i], i == 1 ? 64 : 0, NULL)) != NULL);
    enum { MAX = 4000 };
    static struct live live[MAX];
    unsigned n = 0;
    uint64_t rng = 12345;
    for (unsigned step = 0; step < 200000; step++) {
        uint64_t r = rng_next(&rng);
        harness_cpu_id = (unsigned)(r >> 60) % 4;    /* objects wander between CPUs */
        if (n < MAX && (r % 100 < 52 || n == 0)) {
            unsigned k = (unsigned)(r >> 8) % 3;
            uint8_t *p = mm_cache_alloc(c[k]);
            REQUIRE(p != NULL);
            live[n] = (struct live){ p, k, r };
            fill_pattern(p, size[k], r);
            n++;
        } else {
            unsigned i = (unsigned)(r >> 16) % n;
            REQUIRE(pattern_ok(live[i].p, size[live[i].cache], live[i].seed));
            CHECK_EQ(mm_cache_free(c[live[i].cache], live[i].p), 0);
            n--;
            live[i] = live[n];
        }
        if (step % 20000 == 0 || step == 199999) {
            qsort(live, n, sizeof live[0], cmp_ptr);
            for (unsigned i = 0; i + 1 < n; i++)
                CHECK((uintptr_t)live[i].p + size[live[i].cache] <= (uintptr_t)live[i + 1].p);
            for (unsigned i = 0; i < n; i++)
                CHECK(pattern_ok(live[i].p, size[live[i].cache], live[i].seed));
            uint64_t want[3] = { 0, 0, 0 };
            for (unsigned i = 0; i < n; i++)
                want[live[i].cache]++;
            for (unsigned k = 0; k < 3; k++)
                CHECK_EQ(stats(c[k]).live, want[k]);
        }
    }
    for (unsigned i = 0; i < n; i++)
        CHECK_EQ(mm_cache_free(c[live[i].cache], live[i].p), 0);
    for (unsigned cpu = 0; cpu < 4; cpu++)
        mm_heap_drain_cpu(cpu);
    for (unsigned k = 0; k < 3; k++)
        CHECK_EQ(mm_cache_destroy(c[k]), 0);
    harness_cpu_id = 0;
    mm_heap_shrink();
    CHECK_EQ(frames_out(), 0);
    heap_down();
}

/* ---------------------------------------------------- threads (SMP) */

#define NTHREADS 4
#define RING 256

/* Thread t allocates and puts objects in ring[t]; thread t+1 frees them. */
static struct ring {
    pthread_mutex_t mu;
    void *slot[RING];
    unsigned head, tail;
} rings[NTHREADS];
static struct mm_cache *stress_cache;
static unsigned long stress_bad;

static bool ring_put(struct ring *r, void *p)
{
    pthread_mutex_lock(&r->mu);
    bool ok = r->head - r->tail < RING;
    if (ok)
        r->slot[r->head++ % RING] = p;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static void *ring_get(struct ring *r)
{
    pthread_mutex_lock(&r->mu);
    void *p = r->head != r->tail ? r->slot[r->tail++ % RING] : NULL;
    pthread_mutex_unlock(&r->mu);
    return p;
}

static void *stress_thread(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    harness_cpu_id = t + 1;
    struct ring *mine = &rings[t], *prev = &rings[(t + NTHREADS - 1) % NTHREADS];
    uint64_t rng = t + 99;
    for (unsigned i = 0; i < 60000; i++) {
        uint64_t *p = mm_cache_alloc(stress_cache);
        if (p == NULL) {
            __atomic_fetch_add(&stress_bad, 1, __ATOMIC_RELAXED);
            break;
        }
        p[0] = (uintptr_t)p ^ t;                     /* who made it */
        p[1] = ~(uintptr_t)p;
        if (rng_next(&rng) % 4 == 0 || !ring_put(mine, p)) {
            if (mm_cache_free(stress_cache, p) != 0)     /* freed right here */
                __atomic_fetch_add(&stress_bad, 1, __ATOMIC_RELAXED);
        }
        uint64_t *q = ring_get(prev);                /* made on another CPU */
        if (q != NULL) {
            unsigned maker = (t + NTHREADS - 1) % NTHREADS;
            if (q[0] != ((uintptr_t)q ^ maker) || q[1] != ~(uintptr_t)q ||
                mm_cache_free(stress_cache, q) != 0)
                __atomic_fetch_add(&stress_bad, 1, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

static void test_threads_free_on_other_cpu(void)
{
    heap_up();
    REQUIRE((stress_cache = mm_cache_create("stress", 64, 0, NULL)) != NULL);
    pthread_t th[NTHREADS];
    for (unsigned t = 0; t < NTHREADS; t++) {
        pthread_mutex_init(&rings[t].mu, NULL);
        rings[t].head = rings[t].tail = 0;
    }
    for (unsigned t = 0; t < NTHREADS; t++)
        pthread_create(&th[t], NULL, stress_thread, (void *)(uintptr_t)t);
    for (unsigned t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    CHECK_EQ(stress_bad, 0);
    void *p;
    for (unsigned t = 0; t < NTHREADS; t++)
        while ((p = ring_get(&rings[t])) != NULL)
            CHECK_EQ(mm_cache_free(stress_cache, p), 0);
    CHECK_EQ(stats(stress_cache).live, 0);
    CHECK(stats(stress_cache).cached > 0);           /* arrays of CPUs 1..4 */
    for (unsigned cpu = 1; cpu <= NTHREADS; cpu++)   /* those threads have ended */
        mm_heap_drain_cpu(cpu);
    mm_cache_shrink(stress_cache);                   /* and the depot */
    CHECK_EQ(stats(stress_cache).cached, 0);
    CHECK_EQ(stats(stress_cache).slabs, 0);
    CHECK_EQ(mm_cache_destroy(stress_cache), 0);
    mm_heap_shrink();
    CHECK_EQ(frames_out(), 0);
    heap_down();
}


/* ------------------------------------------------ double frees, fast path */

/* Free x a second time wherever it waits: this CPU's array, the depot
 * (after a full array's batch went there), another CPU, its slab. */
static void double_free_everywhere(struct mm_cache *c)
{
    snap_a = c;
    enum { N = 600 };                       /* more than an array holds */
    static uint8_t *v[N];
    for (unsigned i = 0; i < N; i++)
        REQUIRE((v[i] = mm_cache_alloc(c)) != NULL);
    uintptr_t slab_mask = ~(uintptr_t)(stats(c).slab_bytes - 1);
    unsigned keep = 1;                      /* keeps v[0]'s slab alive over the shrink */
    while (keep < N && ((uintptr_t)v[keep] & slab_mask) != ((uintptr_t)v[0] & slab_mask))
        keep++;
    REQUIRE(keep < N);
    CHECK_EQ(mm_cache_free(c, v[0]), 0);
    REFUSED(mm_cache_free(c, v[0]), -MM_ENOENT);        /* in this CPU's array */
    for (unsigned i = 1; i < N; i++)                    /* v[0] moves to the depot */
        if (i != keep)
            CHECK_EQ(mm_cache_free(c, v[i]), 0);
    REFUSED(mm_cache_free(c, v[0]), -MM_ENOENT);
    REFUSED(mm_cache_free(c, v[N - 1]), -MM_ENOENT);    /* still in the array */
    harness_cpu_id = 5;
    REFUSED(mm_cache_free(c, v[0]), -MM_ENOENT);        /* from another CPU */
    harness_cpu_id = 0;
    mm_cache_shrink(c);                                 /* back on its slab */
    REFUSED(mm_cache_free(c, v[0]), -MM_ENOENT);
    CHECK_EQ(mm_cache_free(c, v[keep]), 0);
    CHECK_EQ(stats(c).live, 0);
    snap_a = NULL;
}

static void test_double_free_refused_in_every_stack(void)
{
    heap_up();
    struct mm_cache *plain = mm_cache_create("plain-48", 48, 0, NULL);
    struct mm_cache *ctor = mm_cache_create("ctor-40", 40, 0, ctor_fill);
    struct mm_cache *dbg = mm_cache_create_flags("debug-64", 64, 0, NULL, MM_CACHE_DEBUG);
    REQUIRE(plain != NULL && ctor != NULL && dbg != NULL);
    double_free_everywhere(plain);
    double_free_everywhere(ctor);
    double_free_everywhere(dbg);

    /* With a constructor the tag lies past the object: a write into the
     * freed object does not hide the second free. */
    uint8_t *x = mm_cache_alloc(ctor);
    REQUIRE(x != NULL);
    CHECK_EQ(mm_cache_free(ctor, x), 0);
    memset(x, 0x77, 40);                                /* use after free */
    snap_a = ctor;
    REFUSED(mm_cache_free(ctor, x), -MM_ENOENT);
    snap_a = NULL;
    memset(x, 0xc7, 40);                                /* constructed state again */

    /* A new object's link word is clear, so its first free passes even if
     * the caller never writes it. */
    uint64_t *y = mm_cache_alloc(plain);
    REQUIRE(y != NULL);
    CHECK_EQ(y[0], 0);
    CHECK_EQ(mm_cache_free(plain, y), 0);
    CHECK_EQ(mm_cache_destroy(plain), 0);
    CHECK_EQ(mm_cache_destroy(ctor), 0);
    CHECK_EQ(mm_cache_destroy(dbg), 0);
    mm_heap_shrink();
    CHECK_EQ(frames_out(), 0);
    heap_down();
}

/* The documented hole: a write into a freed object's first word, then a
 * second free, pushes it twice.  Back on its slab the copy is dropped
 * with one line and the counts come out exact. */
static void test_tag_overwritten_then_freed_twice_dropped_on_slab(void)
{
    heap_up();
    struct mm_cache *c = mm_cache_create("plain-64", 64, 0, NULL);
    REQUIRE(c != NULL);
    uint64_t *x = mm_cache_alloc(c), *y = mm_cache_alloc(c);
    REQUIRE(x != NULL && y != NULL);
    CHECK_EQ(mm_cache_free(c, x), 0);
    x[0] = 0x1234;                                      /* use after free */
    CHECK_EQ(mm_cache_free(c, x), 0);                   /* not caught: pushed twice */
    CHECK_EQ(stats(c).live, 0);                         /* one too few */
    unsigned long lines = harness_log_lines;
    harness_quiet = 1;
    mm_cache_shrink(c);
    harness_quiet = 0;
    CHECK_EQ(harness_log_lines, lines + 1);             /* the copy dropped */
    CHECK_EQ(stats(c).live, 1);                         /* y: exact again */
    CHECK_EQ(mm_cache_free(c, y), 0);
    CHECK_EQ(mm_cache_destroy(c), 0);
    mm_heap_shrink();
    CHECK_EQ(frames_out(), 0);
    heap_down();
}

/* The fast paths write no slab header (no line shared between CPUs
 * using neighbouring objects of one slab): with warm arrays on two CPUs,
 * alloc/free pairs, also freeing on the other CPU, run with the header's
 * page read-only (objects of 4 KiB, so the header has its page alone).
 * A write there faults. */
static void test_fast_paths_leave_the_header_alone(void)
{
    heap_up();
    struct mm_cache *c = mm_cache_create("page-objects", 4096, 4096, NULL);
    REQUIRE(c != NULL);
    void *w0 = mm_cache_alloc(c), *w1 = mm_cache_alloc(c);   /* CPU 0's array: a batch */
    REQUIRE(w0 != NULL && w1 != NULL);
    harness_cpu_id = 1;
    CHECK_EQ(mm_cache_free(c, w1), 0);                  /* CPU 1's array exists */
    void *w2 = mm_cache_alloc(c);
    REQUIRE(w2 == w1);
    CHECK_EQ(mm_cache_free(c, w2), 0);
    harness_cpu_id = 0;
    uint8_t *hdr = (uint8_t *)((uintptr_t)w0 & ~(uintptr_t)(stats(c).slab_bytes - 1));
    REQUIRE(mprotect(hdr, PAGE_SIZE, PROT_READ) == 0);
    for (unsigned i = 0; i < 3; i++) {
        void *a = mm_cache_alloc(c), *b = mm_cache_alloc(c);
        REQUIRE(a != NULL && b != NULL);
        harness_cpu_id = 1;
        CHECK_EQ(mm_cache_free(c, b), 0);               /* freed on another CPU */
        harness_quiet = 1;
        CHECK_EQ(mm_cache_free(c, b), -MM_ENOENT);      /* refused without a write */
        harness_quiet = 0;
        harness_cpu_id = 0;
        CHECK_EQ(mm_cache_free(c, a), 0);
    }
    REQUIRE(mprotect(hdr, PAGE_SIZE, PROT_READ | PROT_WRITE) == 0);
    CHECK_EQ(mm_cache_free(c, w0), 0);
    mm_heap_drain_cpu(1);
    CHECK_EQ(mm_cache_destroy(c), 0);
    mm_heap_shrink();
    CHECK_EQ(frames_out(), 0);
    heap_down();
}

/* Every byte address of a full slab that is not an object's start is
 * refused as interior (-MM_EINVAL); every start is accepted: the
 * one-multiply index test against strides with odd parts 1, 3, 5, 7, 25
 * and a large one. */
static void test_every_offset_of_a_slab(void)
{
    static const size_t sizes[] = { 8, 24, 40, 56, 200, 1536, 9000 };
    heap_up();
    for (unsigned k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        struct mm_cache *c = mm_cache_create("offsets", sizes[k], 0, NULL);
        REQUIRE(c != NULL);
        struct mm_cache_stats st = stats(c);
        uint64_t n = st.objs_per_slab;
        uint8_t **v = calloc(2 * n, sizeof *v);
        REQUIRE(v != NULL);
        for (uint64_t i = 0; i < 2 * n; i++)            /* one slab full, at least */
            REQUIRE((v[i] = mm_cache_alloc(c)) != NULL);
        uint8_t *base = (uint8_t *)((uintptr_t)v[0] & ~(uintptr_t)(st.slab_bytes - 1));
        uint8_t *start = NULL;
        uint64_t in_slab = 0;
        for (uint64_t i = 0; i < 2 * n; i++)
            if (v[i] >= base && v[i] < base + st.slab_bytes) {
                in_slab++;
                if (start == NULL || v[i] < start)
                    start = v[i];
            }
        CHECK_EQ(in_slab, n);
        uint64_t wrong = 0;
        harness_quiet = 1;
        for (uint64_t off = 0; off < st.slab_bytes; off++) {
            uint8_t *p = base + off;
            bool is_start = p >= start && (uint64_t)(p - start) % st.stride == 0 &&
                            (uint64_t)(p - start) / st.stride < n;
            if (!is_start && mm_cache_free(c, p) != -MM_EINVAL)
                wrong++;
        }
        harness_quiet = 0;
        CHECK_EQ(wrong, 0);
        for (uint64_t i = 0; i < 2 * n; i++)
            CHECK_EQ(mm_cache_free(c, v[i]), 0);
        free(v);
        CHECK_EQ(mm_cache_destroy(c), 0);
    }
    mm_heap_shrink();
    CHECK_EQ(frames_out(), 0);
    heap_down();
}

int main(void)
{
    RUN(test_alloc_free_distinct_and_frames_back);
    RUN(test_alignment_and_layout);
    RUN(test_ctor_runs_once_per_object);
    RUN(test_destroy_refused_while_live);
    RUN(test_shrink_returns_every_idle_slab);
    RUN(test_bad_frees_refused);
    RUN(test_bad_create_and_calls);
    RUN(test_debug_red_zone_and_poison);
    RUN(test_stats_usage_and_dump);
    RUN(test_random_model_per_cache);
    RUN(test_threads_free_on_other_cpu);
    RUN(test_double_free_refused_in_every_stack);
    RUN(test_tag_overwritten_then_freed_twice_dropped_on_slab);
    RUN(test_fast_paths_leave_the_header_alone);
    RUN(test_every_offset_of_a_slab);
    return harness_finish();
}
