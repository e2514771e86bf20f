/*
 * slab_suite.c - the kernel heap (include/mm/slab.h, include/mm/kmalloc.h)
 * in the test kernel, on every CPU.
 *
 * What the cases prove:
 *   - kmalloc serves every size of every class and big sizes in whole
 *     pages, with the documented alignment and usable size, and every
 *     byte written keeps its value until the free (a pattern per object,
 *     checked after all objects of a round are allocated);
 *   - an object cache runs its constructor, refuses to be destroyed
 *     while objects are live, and is destroyed once they are freed;
 *   - bad input (double free, wrong cache, interior pointer, a pointer no
 *     slab holds, kfree of garbage) is refused with an error and leaves
 *     the heap as it was;
 *   - objects allocated on one CPU and freed on another (every CPU at
 *     once) come back exactly: after the shrink and a drain of every
 *     CPU's arrays, the buddy holds exactly the frames it held before;
 *   - mm_cache_shrink gives back every idle slab of a cache.
 * The runner's accounting check after the suite adds that no frame
 * leaked in any case.
 */
#include "kernel.h"
#include "ktest.h"
#include "percpu.h"
#include "smp.h"
#include <mm/buddy.h>
#include <mm/init.h>
#include <mm/kmalloc.h>
#include <mm/log.h>
#include <mm/slab.h>

static const size_t class_sizes[] = { 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512,
                                      768, 1024, 1536, 2048 };
#define NCLASSES (sizeof class_sizes / sizeof class_sizes[0])

/* The byte written at offset i of the object at p (depends on both). */
static uint8_t pattern(const void *p, size_t i)
{
    uintptr_t a = (uintptr_t)p;
    return (uint8_t)((a >> 3) ^ (a >> 11) ^ (i * 31u) ^ 0x5a);
}

static void fill(void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ((uint8_t *)p)[i] = pattern(p, i);
}

static bool intact(const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (((const uint8_t *)p)[i] != pattern(p, i))
            return false;
    return true;
}

/* The class kmalloc uses for n bytes (n <= KMALLOC_MAX_CLASS). */
static size_t class_of(size_t n)
{
    for (unsigned i = 0; i < NCLASSES; i++)
        if (n <= class_sizes[i])
            return class_sizes[i];
    return 0;
}

/* The alignment kmalloc.h promises for class s: its largest power-of-two
 * divisor. */
static size_t promised_align(size_t s)
{
    return s & (~s + 1);
}

/* Give back everything the heap caches: shrink here, drain every CPU's
 * arrays on that CPU, shrink again (what the drains emptied). */
static uint64_t drained[MM_MAX_CPUS];     /* frames each CPU's last drain gave back */

static void drain_cpu(void *arg)
{
    (void)arg;
    drained[smp_cpu_id()] = mm_heap_drain_cpu(smp_cpu_id());
}

/* Drain every CPU; the frames that went back to the buddy on the way. */
static uint64_t drain_all(void)
{
    for (unsigned c = 0; c < MM_MAX_CPUS; c++)
        drained[c] = 0;
    smp_call_all(drain_cpu, NULL);
    uint64_t sum = 0;
    for (unsigned c = 0; c < MM_MAX_CPUS; c++)
        sum += drained[c];
    return sum;
}

static void heap_settle(void)
{
    (void)drain_all();
    (void)mm_heap_shrink();
}

static void case_heap_ready(struct ktest *t)
{
    struct mm_heap_usage u;
    mm_heap_usage(&u);
    KEXPECT(t, u.caches >= NCLASSES);
    ktest_log(t, "caches %lu, slab frames %lu, big frames %lu", (unsigned long)u.caches,
              (unsigned long)u.slab_npages, (unsigned long)u.big_npages);
    mm_slabinfo_dump();
    KEXPECT(t, kmalloc(0, 0) == NULL);
    kfree(NULL);                        /* documented no-op */
}

/* The next size to try after n: every size up to 256, then for each
 * class c above that c - 13, c - 1 and c (the boundaries). */
static size_t next_size(size_t n)
{
    if (n < 256)
        return n + 1;
    size_t c = class_of(n + 1);
    if (c == 0)
        return 0;
    if (n < c - 13)
        return c - 13;
    return n < c - 1 ? c - 1 : c;
}

/* Those sizes, 8 objects each, then big sizes. */
#define PER_SIZE 8
static void case_kmalloc_every_size(struct ktest *t)
{
    static void *objs[PER_SIZE];
    unsigned bad_align = 0, bad_usable = 0, bad_data = 0, null = 0, sizes = 0;
    for (size_t n = 1; n != 0; n = next_size(n)) {
        size_t cls = class_of(n);
        sizes++;
        for (unsigned i = 0; i < PER_SIZE; i++) {
            objs[i] = kmalloc(n, 0);
            if (objs[i] == NULL) {
                null++;
                continue;
            }
            bad_align += ((uintptr_t)objs[i] & (promised_align(cls) - 1)) != 0;
            bad_usable += kmalloc_usable_size(objs[i]) != cls;
            fill(objs[i], n);
        }
        for (unsigned i = 0; i < PER_SIZE; i++) {
            if (objs[i] == NULL)
                continue;
            bad_data += !intact(objs[i], n);
            kfree(objs[i]);
        }
    }
    ktest_log(t, "%u sizes from 1 to %u bytes", sizes, KMALLOC_MAX_CLASS);
    KEXPECT_EQ(t, null, 0);
    KEXPECT_EQ(t, bad_align, 0);
    KEXPECT_EQ(t, bad_usable, 0);
    KEXPECT_EQ(t, bad_data, 0);

    static const size_t big[] = { 2049, 4096, 4097, 3 * 4096, 64 * 1024, 300 * 1024 };
    for (unsigned i = 0; i < sizeof big / sizeof big[0]; i++) {
        uint8_t *p = kzalloc(big[i], 0);
        KASSERT(t, p != NULL);
        size_t usable = kmalloc_usable_size(p);
        KEXPECT(t, usable >= big[i] && (usable & (usable - 1)) == 0 && usable >= PAGE_SIZE);
        KEXPECT_EQ(t, (uintptr_t)p & (usable - 1), 0);      /* aligned to its size */
        bool zero = true;
        for (size_t j = 0; j < big[i]; j++)
            zero &= p[j] == 0;
        KEXPECT(t, zero);
        fill(p, big[i]);
        KEXPECT(t, intact(p, big[i]));
        kfree(p);
    }
    heap_settle();
}

struct thing {
    uint64_t magic;
    uint64_t payload[7];
};
#define THING_MAGIC UINT64_C(0x7468696e67212121)

static void thing_ctor(void *obj)
{
    struct thing *th = obj;
    th->magic = THING_MAGIC;
}

/* A cache with a constructor: objects arrive constructed and aligned;
 * destroy is refused while one is live and succeeds after. */
static void case_cache_ctor_destroy(struct ktest *t)
{
    struct mm_cache *c = mm_cache_create("slab-suite-thing", sizeof(struct thing), 64,
                                         thing_ctor);
    KASSERT(t, c != NULL);
    enum { N = 300 };
    static struct thing *th[N];
    unsigned unconstructed = 0, misaligned = 0;
    for (unsigned i = 0; i < N; i++) {
        th[i] = mm_cache_alloc(c);
        KASSERT(t, th[i] != NULL);
        unconstructed += th[i]->magic != THING_MAGIC;
        misaligned += ((uintptr_t)th[i] & 63) != 0;
    }
    KEXPECT_EQ(t, unconstructed, 0);
    KEXPECT_EQ(t, misaligned, 0);
    struct mm_cache_stats st;
    KASSERT(t, mm_cache_stats(c, &st) == 0);
    KEXPECT_EQ(t, st.live, N);
    KEXPECT(t, st.slabs * st.objs_per_slab >= N);

    KEXPECT_EQ(t, mm_cache_destroy(c), -MM_EBUSY);       /* N live: refused, logged */
    for (unsigned i = 0; i < N; i++)
        KEXPECT_EQ(t, mm_cache_free(c, th[i]), 0);
    KASSERT(t, mm_cache_stats(c, &st) == 0);
    KEXPECT_EQ(t, st.live, 0);
    (void)drain_all();
    KEXPECT_EQ(t, mm_cache_destroy(c), 0);
    heap_settle();
}

/* Bad input is refused and changes nothing. */
static void case_bad_input(struct ktest *t)
{
    struct mm_cache *a = mm_cache_create("slab-suite-a", 40, 8, NULL);
    struct mm_cache *b = mm_cache_create("slab-suite-b", 40, 8, NULL);
    KASSERT(t, a != NULL && b != NULL);
    uint8_t *x = mm_cache_alloc(a), *y = mm_cache_alloc(a);
    KASSERT(t, x != NULL && y != NULL);
    fill(y, 40);

    KEXPECT_EQ(t, mm_cache_free(b, x), -MM_EINVAL);     /* the wrong cache */
    KEXPECT_EQ(t, mm_cache_free(a, x + 8), -MM_EINVAL); /* interior pointer */
    uint64_t on_stack = 0;
    KEXPECT_EQ(t, mm_cache_free(a, &on_stack), -MM_EFAULT);  /* no slab holds it */
    KEXPECT_EQ(t, mm_cache_free(a, x), 0);
    KEXPECT_EQ(t, mm_cache_free(a, x), -MM_ENOENT);     /* double free, x cached here */
    enum { MANY = 600 };            /* more than a per-CPU array holds */
    static uint8_t *many[MANY];
    unsigned got = 0;
    while (got < MANY && (many[got] = mm_cache_alloc(a)) != NULL)
        got++;
    KEXPECT_EQ(t, got, MANY);       /* x is handed out again (many[0]) ... */
    for (unsigned i = 0; i < got; i++)
        KEXPECT_EQ(t, mm_cache_free(a, many[i]), 0);
    KEXPECT_EQ(t, mm_cache_free(a, x), -MM_ENOENT);     /* ... and now waits in the depot */
    struct mm_cache_stats st;
    KASSERT(t, mm_cache_stats(a, &st) == 0);
    KEXPECT_EQ(t, st.live, 1);                          /* y only */
    KEXPECT(t, intact(y, 40));

    uint8_t *k = kmalloc(100, 0);
    KASSERT(t, k != NULL);
    fill(k, 100);
    struct mm_heap_usage u0, u1;
    mm_heap_usage(&u0);
    kfree(k + 16);                      /* interior: one line, nothing changes */
    kfree(&on_stack);                   /* foreign */
    mm_heap_usage(&u1);
    KEXPECT_EQ(t, u1.live_objects, u0.live_objects);
    KEXPECT(t, intact(k, 100));
    KEXPECT_EQ(t, kmalloc_usable_size(k), 128);
    kfree(k);
    kfree(k);                           /* double free: one line */
    mm_heap_usage(&u1);
    KEXPECT_EQ(t, u1.live_objects, u0.live_objects - 1);
    KEXPECT(t, kmalloc(100, 0x80) == NULL);             /* unknown flag: logged */

    KEXPECT_EQ(t, mm_cache_free(a, y), 0);
    (void)drain_all();
    KEXPECT_EQ(t, mm_cache_destroy(a), 0);
    KEXPECT_EQ(t, mm_cache_destroy(b), 0);
    heap_settle();
}

/*
 * All CPUs at once: each allocates a batch of mixed sizes into its own
 * row, then frees the row of the next CPU (objects allocated elsewhere).
 * Patterns are checked before each free.
 */
#define STRESS_ROUNDS 20
#define STRESS_OBJS   256
static void *rows[MM_MAX_CPUS][STRESS_OBJS];
static size_t row_sizes[MM_MAX_CPUS][STRESS_OBJS];
static unsigned stress_bad[MM_MAX_CPUS];
static volatile unsigned stress_phase[MM_MAX_CPUS];

static void stress_wait_all(unsigned ncpus, unsigned phase)
{
    for (unsigned c = 0; c < ncpus; c++)
        while (__atomic_load_n(&stress_phase[c], __ATOMIC_ACQUIRE) < phase)
            __asm__ volatile("pause");
}

static void stress_cpu(void *arg)
{
    unsigned ncpus = (unsigned)(uintptr_t)arg, me = smp_cpu_id();
    uint64_t seed = 0x9e3779b97f4a7c15ull * (me + 1);
    for (unsigned r = 0; r < STRESS_ROUNDS; r++) {
        for (unsigned i = 0; i < STRESS_OBJS; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            size_t n = 1 + (size_t)((seed >> 33) % (i % 17 == 0 ? 8192 : 700));
            rows[me][i] = kmalloc(n, 0);
            row_sizes[me][i] = n;
            if (rows[me][i] == NULL)
                stress_bad[me]++;
            else
                fill(rows[me][i], n);
        }
        __atomic_store_n(&stress_phase[me], 2 * r + 1, __ATOMIC_RELEASE);
        stress_wait_all(ncpus, 2 * r + 1);
        unsigned other = (me + 1) % ncpus;
        for (unsigned i = 0; i < STRESS_OBJS; i++) {
            if (rows[other][i] == NULL)
                continue;
            if (!intact(rows[other][i], row_sizes[other][i]))
                stress_bad[me]++;
            kfree(rows[other][i]);
        }
        __atomic_store_n(&stress_phase[me], 2 * r + 2, __ATOMIC_RELEASE);
        stress_wait_all(ncpus, 2 * r + 2);
    }
    (void)mm_heap_drain_cpu(me);
}

static void case_all_cpu_stress(struct ktest *t)
{
    unsigned ncpus = smp_online_cpus();
    heap_settle();
    struct buddy_usage before, after;
    buddy_usage(mm_buddy(), &before);
    for (unsigned c = 0; c < MM_MAX_CPUS; c++) {
        stress_bad[c] = 0;
        stress_phase[c] = 0;
    }
    smp_call_all(stress_cpu, (void *)(uintptr_t)ncpus);
    unsigned bad = 0;
    for (unsigned c = 0; c < ncpus; c++)
        bad += stress_bad[c];
    KEXPECT_EQ(t, bad, 0);
    struct mm_heap_usage u;
    mm_heap_usage(&u);
    KEXPECT_EQ(t, u.big_allocs, 0);
    heap_settle();
    buddy_usage(mm_buddy(), &after);
    KEXPECT_EQ(t, after.used_npages, before.used_npages);
    ktest_log(t, "%u CPUs, %u rounds of %u objects each, freed on the next CPU", ncpus,
              STRESS_ROUNDS, STRESS_OBJS);
}

/* After its objects are freed (the frees, the drains and the shrink each
 * give back part of the slabs), a shrink leaves the cache no slab, and
 * the buddy holds exactly the frames it held before the cache existed. */
static void case_shrink_returns_idle(struct ktest *t)
{
    heap_settle();
    struct buddy_usage before, after;
    buddy_usage(mm_buddy(), &before);
    struct mm_cache *c = mm_cache_create("slab-suite-shrink", 500, 8, NULL);
    KASSERT(t, c != NULL);
    enum { N = 400 };
    static void *o[N];
    for (unsigned i = 0; i < N; i++) {
        o[i] = mm_cache_alloc(c);
        KASSERT(t, o[i] != NULL);
    }
    struct mm_cache_stats st;
    KASSERT(t, mm_cache_stats(c, &st) == 0);
    uint64_t slabs = st.slabs, frames = st.bytes_used / PAGE_SIZE;
    KEXPECT(t, slabs >= 4);
    for (unsigned i = 0; i < N; i++)
        KEXPECT_EQ(t, mm_cache_free(c, o[i]), 0);
    uint64_t by_drains = drain_all();
    KASSERT(t, mm_cache_stats(c, &st) == 0);
    KEXPECT_EQ(t, st.live, 0);
    uint64_t by_shrink = mm_cache_shrink(c);
    KASSERT(t, mm_cache_stats(c, &st) == 0);
    KEXPECT_EQ(t, st.slabs, 0);
    KEXPECT_EQ(t, st.bytes_used, 0);
    ktest_log(t, "%lu slabs (%lu frames) at the peak; the drains gave back %lu frames, "
              "the shrink %lu", (unsigned long)slabs, (unsigned long)frames,
              (unsigned long)by_drains, (unsigned long)by_shrink);
    KEXPECT_EQ(t, mm_cache_destroy(c), 0);
    heap_settle();
    buddy_usage(mm_buddy(), &after);
    KEXPECT_EQ(t, after.used_npages, before.used_npages);
}

KTEST_SUITE(slab_suite, "slab",
            KTEST_CASE(case_heap_ready),
            KTEST_CASE(case_kmalloc_every_size),
            KTEST_CASE(case_cache_ctor_destroy),
            KTEST_CASE(case_bad_input),
            KTEST_CASE(case_all_cpu_stress),
            KTEST_CASE(case_shrink_returns_idle));
