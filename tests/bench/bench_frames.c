/*
 * bench_frames.c - frame allocators side by side in one process: this
 * project's buddy (single frames through its per-CPU caches), a C port of
 * the reference design's (DragonOS) buddy with one lock (ref_buddy.c), and
 * an xv6-style LIFO free list of 4 KiB frames with one spinlock (the
 * simplest frame allocator; no junk fill on free).  Every row's name
 * begins with "frames"; figures are medians.
 *
 * Rows:
 *  frames order-0 pair        alloc+free of one frame, one thread, ns/pair
 *  frames 2 threads / 1       pairs per second of two threads (simulated
 *                             CPUs 0 and 1, pinned to host CPUs 0 and 1)
 *                             over one thread's, on one allocator (a
 *                             ratio; 2.0 is perfect scaling; the median
 *                             of five runs)
 *  frames mixed 0-10, 1e4 live  10^4 live blocks of random orders 0..10;
 *                             each step frees a random one and allocates
 *                             a new random order in its place, ns/step
 *  frames 1 GiB pair          alloc+free of a 1 GiB block, ns/pair
 * The xv6 list has one size only: it has no mixed or 1 GiB figure.  The
 * allocators live in disjoint parts of one simulated memory; samples of
 * the three are interleaved so that noise hits all alike.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "bench_util.h"
#include "ref_buddy.c"

#include <pthread.h>
#include <mm/buddy.h>
#include <mm/log.h>

#define SAMPLES   201
#define BATCH     1024
#define NLIVE     10000
#define MIX_STEPS 1000

/* A benchmark that cannot run its workload stops the process. */
static _Noreturn void die(const char *what)
{
    fprintf(stderr, "bench_frames: %s\n", what);
    exit(1);
}

/* ------------------------------------------------------- the xv6 list */

struct xv6_run { struct xv6_run *next; };
struct xv6_kmem {
    mm_spinlock_t lock;
    struct xv6_run *freelist;
};

static void xv6_free(struct xv6_kmem *k, uint64_t pa)
{
    struct xv6_run *r = pa_to_ptr(PA(pa));
    unsigned long flags = mm_spin_lock_irqsave(&k->lock);
    r->next = k->freelist;
    k->freelist = r;
    mm_spin_unlock_irqrestore(&k->lock, flags);
}

static int xv6_alloc(struct xv6_kmem *k, uint64_t *pa_out)
{
    unsigned long flags = mm_spin_lock_irqsave(&k->lock);
    struct xv6_run *r = k->freelist;
    if (r)
        k->freelist = r->next;
    mm_spin_unlock_irqrestore(&k->lock, flags);
    if (!r)
        return -1;
    *pa_out = (uint64_t)((uintptr_t)r - mm_direct_map_offset);
    return 0;
}

static void xv6_init(struct xv6_kmem *k, uint64_t start, uint64_t end)
{
    *k = (struct xv6_kmem){ .lock = MM_SPINLOCK_INIT };
    for (uint64_t pa = start; pa < end; pa += PAGE_SIZE)
        xv6_free(k, pa);
}

/* ------------------------------------------------- one allocator view */

enum { OURS, REF, XV6, NALLOC };
static const char *const alloc_name[NALLOC] = { "this buddy", "reference (DragonOS)", "xv6 list" };

struct allocator {
    int kind;
    struct buddy *b;
    struct ref_buddy *r;
    struct xv6_kmem *x;
};

static inline int a_alloc(const struct allocator *a, uint64_t npages, uint64_t *pa)
{
    switch (a->kind) {
    case OURS: {
        phys_addr_t p;
        int err = buddy_alloc(a->b, npages, &p);
        *pa = p.raw;
        return err;
    }
    case REF:
        return ref_buddy_alloc(a->r, npages, pa);
    default:
        return xv6_alloc(a->x, pa);
    }
}

static inline void a_free(const struct allocator *a, uint64_t pa, uint64_t npages)
{
    switch (a->kind) {
    case OURS:
        if (buddy_free(a->b, PA(pa), npages))
            die("buddy_free refused");
        break;
    case REF:
        ref_buddy_free(a->r, pa, npages);
        break;
    default:
        xv6_free(a->x, pa);
    }
}

/* One sample: ns per alloc+free pair of npages, over n pairs. */
static double sample_pairs(const struct allocator *a, uint64_t npages, unsigned n)
{
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < n; i++) {
        uint64_t pa;
        if (a_alloc(a, npages, &pa))
            die(a->kind == OURS ? "pair alloc failed (this buddy)" :
                a->kind == REF ? "pair alloc failed (reference)" : "pair alloc failed (xv6)");
        a_free(a, pa, npages);
    }
    return (double)(now_ns() - t0) / n;
}

/* ------------------------------------------------------------ threads */

struct thread_arg {
    const struct allocator *a;
    unsigned cpu;
    unsigned long pairs;
};

static void *pair_thread(void *p)
{
    struct thread_arg *t = p;
    harness_cpu_id = t->cpu;
    bench_pin_to(t->cpu);
    (void)sample_pairs(t->a, 1, (unsigned)t->pairs);
    return NULL;
}

/* Pairs per second of nthreads threads, each doing `pairs` pairs. */
static double pairs_per_s(const struct allocator *a, unsigned nthreads, unsigned long pairs)
{
    pthread_t th[2];
    struct thread_arg arg[2];
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < nthreads; i++) {
        arg[i] = (struct thread_arg){ a, i, pairs };
        if (pthread_create(&th[i], NULL, pair_thread, &arg[i]))
            die("pthread_create");
    }
    for (unsigned i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    return (double)(nthreads * pairs) / ((double)(now_ns() - t0) / 1e9);
}

/* -------------------------------------------------------------- mixed */

struct mixed {
    uint64_t pa[NLIVE];
    unsigned order[NLIVE];
    uint64_t rng;
};

static void mixed_fill(const struct allocator *a, struct mixed *m)
{
    m->rng = 0x6d69786564;                  /* the same sequence for each */
    for (unsigned i = 0; i < NLIVE; i++) {
        m->order[i] = (unsigned)(rng_next(&m->rng) % 11);
        if (a_alloc(a, UINT64_C(1) << m->order[i], &m->pa[i]))
            die("mixed fill");
    }
}

static double sample_mixed(const struct allocator *a, struct mixed *m)
{
    uint64_t t0 = now_ns();
    for (unsigned s = 0; s < MIX_STEPS; s++) {
        uint64_t x = rng_next(&m->rng);
        unsigned i = (unsigned)(x % NLIVE);
        a_free(a, m->pa[i], UINT64_C(1) << m->order[i]);
        m->order[i] = (unsigned)((x >> 32) % 11);
        if (a_alloc(a, UINT64_C(1) << m->order[i], &m->pa[i]))
            die("mixed alloc");
    }
    return (double)(now_ns() - t0) / MIX_STEPS;
}

/* --------------------------------------------------------------- main */

static struct buddy ours_small, ours_mixed;
static struct ref_buddy ref_small, ref_mixed;
static struct xv6_kmem xv6;
static struct mixed mix[2];
static double s_pair[NALLOC][SAMPLES], s_mixed[2][SAMPLES], s_gib[2][SAMPLES];

static void init_ours(struct buddy *b, uint64_t start, uint64_t end)
{
    struct mm_area_list l = { .count = 1 };
    l.area[0] = (struct mm_area){ PA(start), PA(end) };
    if (buddy_init(b, &l))
        die("buddy_init");
}

static void init_ref(struct ref_buddy *r, uint64_t start, uint64_t end)
{
    struct mm_area_list l = { .count = 1 };
    l.area[0] = (struct mm_area){ PA(start), PA(end) };
    if (ref_buddy_init(r, &l))
        die("ref_buddy_init");
}

static void print_row(const char *name, const double v[NALLOC], const char *unit,
                      const char *target)
{
    printf("%-30s", name);
    for (unsigned k = 0; k < NALLOC; k++) {
        if (v[k] < 0)
            printf("  %20s", "-");
        else
            printf("  %17.2f %-2s", v[k], unit);
    }
    printf("  %s\n", target);
}

/* Interleaved samples of the single-thread rows. */
static void run_samples(const struct allocator small[NALLOC], const struct allocator mixed[2])
{
    mixed_fill(&mixed[0], &mix[0]);
    mixed_fill(&mixed[1], &mix[1]);
    for (unsigned k = 0; k < NALLOC; k++)                     /* warm up */
        (void)sample_pairs(&small[k], 1, 100 * BATCH);
    for (unsigned s = 0; s < SAMPLES; s++) {
        for (unsigned k = 0; k < NALLOC; k++)
            s_pair[k][s] = sample_pairs(&small[k], 1, BATCH);
        for (unsigned k = 0; k < 2; k++) {
            s_mixed[k][s] = sample_mixed(&mixed[k], &mix[k]);
            s_gib[k][s] = sample_pairs(&small[k], BUDDY_MAX_NPAGES, BATCH);
        }
    }
}

/* Median over a few runs of (pairs/s of two threads) / (pairs/s of one). */
static double thread_ratio(const struct allocator *a)
{
    enum { THREAD_RUNS = 5 };
    const unsigned long tpairs = 2000000;
    double r[THREAD_RUNS];
    for (unsigned i = 0; i < THREAD_RUNS; i++)
        r[i] = pairs_per_s(a, 2, tpairs) / pairs_per_s(a, 1, tpairs);
    return median(r, THREAD_RUNS);
}

static void print_table(const double ratio[NALLOC])
{
    double pair[NALLOC], mixv[NALLOC] = { 0, 0, -1 }, gib[NALLOC] = { 0, 0, -1 };
    for (unsigned k = 0; k < NALLOC; k++)
        pair[k] = median(s_pair[k], SAMPLES);
    for (unsigned k = 0; k < 2; k++) {
        mixv[k] = median(s_mixed[k], SAMPLES);
        gib[k] = median(s_gib[k], SAMPLES);
    }
    printf("frame allocators side by side (medians; ns per alloc+free pair or step)\n");
    printf("%-30s", "row");
    for (unsigned k = 0; k < NALLOC; k++)
        printf("  %20s", alloc_name[k]);
    printf("  target\n");
    print_row("frames order-0 pair", pair, "ns", "faster than ref; within 2x of xv6");
    print_row("frames 2 threads / 1 thread", ratio, "x", ">= 1.8x");
    print_row("frames mixed 0-10, 1e4 live", mixv, "ns", "faster than ref");
    print_row("frames 1 GiB pair", gib, "ns", "faster than ref");
    printf("frames this buddy / reference: order-0 %.2fx, mixed %.2fx, 1 GiB %.2fx; "
           "order-0 / xv6 %.2fx\n", pair[OURS] / pair[REF], mixv[OURS] / mixv[REF],
           gib[OURS] / gib[REF], pair[OURS] / pair[XV6]);
}

int main(void)
{
    harness_quiet = 1;
    sim_mem_init(40 * GiB);
    init_ours(&ours_small, 1 * MiB, 3 * GiB);       /* [1, 2) GiB whole: carve at the end */
    init_ref(&ref_small, 3 * GiB + 1 * MiB, 5 * GiB);        /* [4, 5) GiB free whole */
    xv6_init(&xv6, 5 * GiB, 5 * GiB + 64 * MiB);
    init_ours(&ours_mixed, 8 * GiB + 1 * MiB, 24 * GiB);
    init_ref(&ref_mixed, 24 * GiB + 1 * MiB, 40 * GiB);
    const struct allocator small[NALLOC] = {
        { OURS, &ours_small, NULL, NULL }, { REF, NULL, &ref_small, NULL },
        { XV6, NULL, NULL, &xv6 },
    };
    const struct allocator mixed[2] = {
        { OURS, &ours_mixed, NULL, NULL }, { REF, NULL, &ref_mixed, NULL },
    };
    run_samples(small, mixed);
    double ratio[NALLOC];
    for (unsigned k = 0; k < NALLOC; k++)
        ratio[k] = thread_ratio(&small[k]);
    print_table(ratio);

    struct buddy_usage u;
    buddy_usage(&ours_small, &u);
    if (u.used_npages != 0 || u.free_npages + u.used_npages != u.total_npages)
        die("accounting off at the end");
    buddy_check(&ours_small);
    buddy_check(&ours_mixed);
    sim_mem_fini();
    return 0;
}
