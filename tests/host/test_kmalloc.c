/*
 * test_kmalloc.c - host tests of kmalloc (mm/kmalloc.c) over a buddy in
 * simulated memory: every size up to 4 KiB lands in the right class with
 * the documented alignment, zero size and kfree(NULL), kzalloc, big
 * allocations in whole pages, every kind of bad kfree (one log line,
 * nothing changed), kmalloc_usable_size of bad pointers, the debug red
 * zone through kfree, a random model over all sizes, and threads that
 * free what other simulated CPUs allocated, with exact frame accounting.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <pthread.h>
#include <mm/buddy.h>
#include <mm/kmalloc.h>
#include <mm/log.h>
#include <mm/slab.h>

static struct buddy B;
static uint64_t used_at_start;

static const unsigned classes[] = { 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512,
                                    768, 1024, 1536, 2048 };

/* The counters a refused call must leave alone. */
struct snap { struct buddy_usage u; struct mm_heap_usage h; };

static struct snap snap_now(void)
{
    struct snap s;
    memset(&s, 0, sizeof s);
    buddy_usage(&B, &s.u);
    mm_heap_usage(&s.h);
    return s;
}

static void take_snap(struct snap *s) { *s = snap_now(); }

static bool snap_same(const struct snap *s)
{
    struct snap now = snap_now();
    return memcmp(s, &now, sizeof now) == 0;
}

/* 1.5 GiB of RAM from 4 MiB in a 2 GiB simulated memory, a fresh heap. */
static void start(unsigned heap_flags)
{
    sim_mem_init(2 * GiB);
    struct mm_area_list l = { .count = 1, .area = { { PA(4 * MiB), PA(1536 * MiB) } } };
    if (buddy_init(&B, &l) != 0 || mm_heap_init_flags(&B, heap_flags) != 0)
        abort();
    used_at_start = snap_now().u.used_npages;
    harness_cpu_id = 0;
}

/* Every frame back after everything was freed and the heap shrunk. */
static bool all_frames_back(void)
{
    for (unsigned cpu = 0; cpu < 8; cpu++)
        mm_heap_drain_cpu(cpu);
    mm_heap_shrink();
    struct buddy_usage u;
    buddy_usage(&B, &u);
    struct mm_heap_usage h;
    mm_heap_usage(&h);
    return u.used_npages == used_at_start && h.slab_npages == 0 && h.big_npages == 0 &&
           h.meta_npages == 0;
}

static void stop(void)
{
    mm_heap_reset();
    sim_mem_fini();
}

/* kfree returns nothing: wrap it so REFUSED can count its one line. */
static int kfree_rc(const void *p)
{
    kfree(p);
    return 0;
}

static unsigned class_for(size_t size)
{
    for (unsigned i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if (size <= classes[i])
            return classes[i];
    return 0;
}

/* -------------------------------------------------------------- classes */

static void test_every_size_class_and_alignment(void)
{
    start(0);
    for (size_t size = 1; size <= 4096; size += size < 300 ? 1 : 7) {
        uint8_t *p = kmalloc(size, 0);
        REQUIRE(p != NULL);
        size_t usable = kmalloc_usable_size(p);
        unsigned cls = class_for(size);
        if (cls != 0) {
            CHECK_EQ(usable, cls);
            CHECK_EQ((uintptr_t)p % (cls & -cls), 0);   /* largest power-of-two divisor */
        } else {
            CHECK_EQ(usable, PAGE_SIZE);
            CHECK_EQ((uintptr_t)p % PAGE_SIZE, 0);
        }
        memset(p, 0xee, usable);
        kfree(p);
        CHECK_EQ(kmalloc_usable_size(p), 0);         /* freed */
    }
    CHECK(all_frames_back());
    stop();
}

static void test_zero_size_null_and_kzalloc(void)
{
    start(0);
    unsigned long lines = harness_log_lines;
    CHECK(kmalloc(0, 0) == NULL);                    /* documented: NULL, no line */
    CHECK(kzalloc(0, 0) == NULL);
    kfree(NULL);
    CHECK_EQ(kmalloc_usable_size(NULL), 0);
    CHECK_EQ(harness_log_lines, lines);
    /* Dirty objects, free them, then kzalloc must zero the recycled ones. */
    void *p[64];
    for (unsigned i = 0; i < 64; i++) {
        p[i] = kmalloc(100, 0);
        memset(p[i], 0xff, 128);
    }
    for (unsigned i = 0; i < 64; i++)
        kfree(p[i]);
    for (unsigned i = 0; i < 64; i++) {
        uint8_t *q = kzalloc(100, 0);
        REQUIRE(q != NULL);
        for (unsigned k = 0; k < 128; k++)
            CHECK_EQ(q[k], 0);
        p[i] = q;
    }
    uint8_t *big = kmalloc(3 * PAGE_SIZE, 0);
    memset(big, 0xff, 4 * PAGE_SIZE);
    kfree(big);
    big = kzalloc(3 * PAGE_SIZE, 0);
    REQUIRE(big != NULL);
    for (unsigned k = 0; k < 4 * PAGE_SIZE; k++)
        if (big[k] != 0) {
            CHECK(!"big kzalloc not zeroed");
            break;
        }
    kfree(big);
    for (unsigned i = 0; i < 64; i++)
        kfree(p[i]);
    lines = harness_log_lines;
    harness_quiet = 1;
    CHECK(kmalloc(16, 0x80) == NULL);                /* unknown flag */
    CHECK(kmalloc((size_t)2 * GiB, 0) == NULL);      /* over the largest block */
    harness_quiet = 0;
    CHECK_EQ(harness_log_lines, lines + 2);
    CHECK(all_frames_back());
    stop();
}

static void test_big_allocations_in_pages(void)
{
    start(0);
    static const size_t sizes[] = { 2049, 4096, 4097, 5000, 12288, 65536, 65537,
                                    MiB, 3 * MiB + 1 };
    enum { N = sizeof sizes / sizeof sizes[0] };
    uint8_t *p[N];
    for (unsigned i = 0; i < N; i++) {
        p[i] = kmalloc(sizes[i], 0);
        REQUIRE(p[i] != NULL);
        uint64_t pages = 1;
        while (pages * PAGE_SIZE < sizes[i])
            pages *= 2;
        CHECK_EQ(kmalloc_usable_size(p[i]), pages * PAGE_SIZE);
        CHECK_EQ((uintptr_t)direct_ptr_to_pa(p[i]).raw % (pages * PAGE_SIZE), 0);
        memset(p[i], (int)i, sizes[i]);
    }
    struct mm_heap_usage h;
    mm_heap_usage(&h);
    CHECK_EQ(h.big_allocs, N);
    for (unsigned i = 0; i < N; i++) {
        CHECK_EQ(p[i][sizes[i] - 1], (uint8_t)i);
        kfree(p[i]);
    }
    /* Many at once: the table grows past one page and shrinks away. */
    enum { M = 700 };
    static void *q[M];
    for (unsigned i = 0; i < M; i++)
        REQUIRE((q[i] = kmalloc(PAGE_SIZE + i, 0)) != NULL);
    for (unsigned i = 0; i < M; i += 2)
        kfree(q[i]);
    for (unsigned i = 1; i < M; i += 2)
        CHECK_EQ(kmalloc_usable_size(q[i]), 2 * PAGE_SIZE);
    for (unsigned i = 1; i < M; i += 2)
        kfree(q[i]);
    CHECK(all_frames_back());
    stop();
}

/* A one-page big allocation whose 32 KiB block starts with the header of
 * a one-page slab of another cache: kfree must not take it for a kmalloc
 * slab (that header's slab size differs), but find it in the table. */
static void test_big_page_next_to_small_slab(void)
{
    start(0);
    struct mm_cache *small = mm_cache_create("small", 100, 0, NULL);
    REQUIRE(small != NULL);
    REQUIRE(mm_cache_stats(small, &(struct mm_cache_stats){ 0 }) == 0);
    enum { N = 64, PER = 40 };
    static void *o[N][PER], *p[N];
    for (unsigned i = 0; i < N; i++) {
        for (unsigned k = 0; k < PER; k++)
            REQUIRE((o[i][k] = mm_cache_alloc(small)) != NULL);
        REQUIRE((p[i] = kmalloc(PAGE_SIZE, 0)) != NULL);
    }
    unsigned long lines = harness_log_lines;
    for (unsigned i = 0; i < N; i++) {
        CHECK_EQ(kmalloc_usable_size(p[i]), PAGE_SIZE);
        kfree(p[i]);
    }
    CHECK_EQ(harness_log_lines, lines);
    struct mm_heap_usage h;
    mm_heap_usage(&h);
    CHECK_EQ(h.big_allocs, 0);
    for (unsigned i = 0; i < N; i++)
        for (unsigned k = 0; k < PER; k++)
            CHECK_EQ(mm_cache_free(small, o[i][k]), 0);
    CHECK_EQ(mm_cache_destroy(small), 0);
    CHECK(all_frames_back());
    stop();
}

/* -------------------------------------------------------------- bad input */

static void test_bad_kfree_leaves_heap_unchanged(void)
{
    start(0);
    uint8_t *a = kmalloc(64, 0), *b = kmalloc(64, 0), *big = kmalloc(5 * PAGE_SIZE, 0);
    struct mm_cache *own = mm_cache_create("own", 64, 0, NULL);
    REQUIRE(a && b && big && own);
    void *o = mm_cache_alloc(own);
    kfree(a);
    REFUSED(kfree_rc(a), 0);                         /* double free, in this CPU's array */
    harness_cpu_id = 5;
    REFUSED(kfree_rc(a), 0);                         /* from another CPU */
    harness_cpu_id = 0;
    REFUSED(kfree_rc(b + 8), 0);                     /* interior */
    REFUSED(kfree_rc(big + PAGE_SIZE), 0);           /* inside a big allocation */
    REFUSED(kfree_rc(big + 100), 0);
    int on_stack;
    REFUSED(kfree_rc(&on_stack), 0);                 /* not in RAM */
    REFUSED(kfree_rc(o), 0);                         /* a cache object, not kmalloc's */
    REFUSED(kfree_rc(pa_to_ptr(PA(1800 * MiB))), 0); /* beyond the buddy's RAM */
    kfree(big);
    REFUSED(kfree_rc(big), 0);                       /* big double free */
    CHECK_EQ(kmalloc_usable_size(a), 0);
    CHECK_EQ(kmalloc_usable_size(b + 8), 0);
    CHECK_EQ(kmalloc_usable_size(&on_stack), 0);
    CHECK_EQ(kmalloc_usable_size(o), 0);
    CHECK_EQ(kmalloc_usable_size(big), 0);
    CHECK_EQ(kmalloc_usable_size(b), 64);
    kfree(b);
    CHECK_EQ(mm_cache_free(own, o), 0);
    CHECK_EQ(mm_cache_destroy(own), 0);
    CHECK(all_frames_back());
    stop();
}

static void test_debug_overflow_reported_by_kfree(void)
{
    start(MM_CACHE_DEBUG);
    uint8_t *p = kmalloc(40, 0);                     /* class 48 */
    REQUIRE(p != NULL);
    CHECK_EQ((uintptr_t)p % 16, 0);                  /* debug keeps the alignment */
    memset(p, 0, 48);
    p[48] = 0;                                       /* one past the usable size */
    REFUSED(kfree_rc(p), 0);
    struct mm_slab_report r;
    REQUIRE(mm_slab_last_report(&r));
    CHECK(strcmp(r.cache, "kmalloc-48") == 0);
    CHECK_EQ(r.object, (uintptr_t)p);
    CHECK_EQ(r.offset, 48);
    CHECK_EQ(r.found, 0);
    CHECK_EQ(kmalloc_usable_size(p), 48);            /* still allocated */
    p[48] = 0xbb;
    kfree(p);
    CHECK_EQ(kmalloc_usable_size(p), 0);
    CHECK(all_frames_back());
    stop();
}

/* ------------------------------------------------------------ random model */

struct obj { uint8_t *p; size_t size; uint32_t seed; };

static void stamp(struct obj *o)
{
    for (size_t i = 0; i < o->size; i++)
        o->p[i] = (uint8_t)(o->seed + i * 131);
}

static bool stamp_ok(const struct obj *o)
{
    for (size_t i = 0; i < o->size; i++)
        if (o->p[i] != (uint8_t)(o->seed + i * 131))
            return false;
    return true;
}

static int by_addr(const void *x, const void *y)
{
    uintptr_t a = (uintptr_t)((const struct obj *)x)->p, b = (uintptr_t)((const struct obj *)y)->p;
    return a < b ? -1 : a > b;
}

static void test_random_model(void)
{
    start(0);
    enum { MAX = 3000, STEPS = 150000 };
    static struct obj live[MAX];
    unsigned n = 0;
    uint64_t rng = 777;
    for (unsigned step = 0; step < STEPS; step++) {
        uint64_t r = rng_next(&rng);
        harness_cpu_id = (unsigned)(r >> 61);        /* 8 simulated CPUs */
        if (n < MAX && (n == 0 || r % 2 == 0)) {
            size_t size = r % 64 == 0 ? 2049 + (r >> 20) % 40000 : 1 + (r >> 20) % 2048;
            struct obj o = { kmalloc(size, 0), size, (uint32_t)(r >> 32) };
            REQUIRE(o.p != NULL);
            CHECK(kmalloc_usable_size(o.p) >= size);
            stamp(&o);
            live[n++] = o;
        } else {
            unsigned i = (unsigned)(r >> 12) % n;
            CHECK(stamp_ok(&live[i]));
            kfree(live[i].p);
            n--;
            live[i] = live[n];
        }
        if (step % 15000 == 0) {
            qsort(live, n, sizeof live[0], by_addr);
            for (unsigned i = 0; i + 1 < n; i++)
                CHECK(live[i].p + live[i].size <= live[i + 1].p);
        }
    }
    for (unsigned i = 0; i < n; i++) {
        CHECK(stamp_ok(&live[i]));
        kfree(live[i].p);
    }
    harness_cpu_id = 0;
    CHECK(all_frames_back());
    stop();
}

/* ---------------------------------------------------------------- threads */

#define PAIRS 2
#define QLEN 1024

/* Pair k: thread 2k (CPU 2k+1) allocates, thread 2k+1 (CPU 2k+2) frees. */
static struct handoff {
    pthread_mutex_t mu;
    void *q[QLEN];
    unsigned head, tail;
    bool done;
} hand[PAIRS];
static unsigned long thread_errors;

static void *producer(void *arg)
{
    struct handoff *h = &hand[(uintptr_t)arg];
    harness_cpu_id = 1 + 2 * (unsigned)(uintptr_t)arg;
    uint64_t rng = (uintptr_t)arg + 5;
    for (unsigned i = 0; i < 100000;) {
        size_t size = 1 + rng_next(&rng) % 1024;
        uint8_t *p = kmalloc(size, 0);
        if (p == NULL) {
            __atomic_fetch_add(&thread_errors, 1, __ATOMIC_RELAXED);
            break;
        }
        p[0] = (uint8_t)size;
        p[size - 1] = (uint8_t)(size >> 2);
        for (;;) {
            pthread_mutex_lock(&h->mu);
            bool ok = h->head - h->tail < QLEN;
            if (ok)
                h->q[h->head++ % QLEN] = p;
            pthread_mutex_unlock(&h->mu);
            if (ok)
                break;
        }
        i++;
    }
    pthread_mutex_lock(&h->mu);
    h->done = true;
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

static void *consumer(void *arg)
{
    struct handoff *h = &hand[(uintptr_t)arg];
    harness_cpu_id = 2 + 2 * (unsigned)(uintptr_t)arg;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        uint8_t *p = h->head != h->tail ? h->q[h->tail++ % QLEN] : NULL;
        bool done = h->done && p == NULL;
        pthread_mutex_unlock(&h->mu);
        if (done)
            return NULL;
        if (p == NULL)
            continue;
        size_t usable = kmalloc_usable_size(p);
        if (usable < p[0] || usable == 0)
            __atomic_fetch_add(&thread_errors, 1, __ATOMIC_RELAXED);
        kfree(p);
    }
}

static void test_threads_alloc_here_free_there(void)
{
    start(0);
    pthread_t th[2 * PAIRS];
    for (unsigned k = 0; k < PAIRS; k++) {
        pthread_mutex_init(&hand[k].mu, NULL);
        hand[k].head = hand[k].tail = 0;
        hand[k].done = false;
    }
    for (unsigned k = 0; k < PAIRS; k++) {
        pthread_create(&th[2 * k], NULL, producer, (void *)(uintptr_t)k);
        pthread_create(&th[2 * k + 1], NULL, consumer, (void *)(uintptr_t)k);
    }
    for (unsigned i = 0; i < 2 * PAIRS; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(thread_errors, 0);
    struct mm_heap_usage h;
    mm_heap_usage(&h);
    CHECK_EQ(h.live_objects, 0);
    CHECK(all_frames_back());                        /* drains CPUs 0..7, then shrinks */
    stop();
}

int main(void)
{
    RUN(test_every_size_class_and_alignment);
    RUN(test_zero_size_null_and_kzalloc);
    RUN(test_big_allocations_in_pages);
    RUN(test_big_page_next_to_small_slab);
    RUN(test_bad_kfree_leaves_heap_unchanged);
    RUN(test_debug_overflow_reported_by_kfree);
    RUN(test_random_model);
    RUN(test_threads_alloc_here_free_there);
    return harness_finish();
}
