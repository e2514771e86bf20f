/*
 * bench_kmalloc.c - the kernel heap (kmalloc/kfree over the project's
 * buddy on simulated memory) side by side with glibc malloc, jemalloc and
 * mimalloc, all four in this one process, one column each.
 *
 * How four allocators share a process.  glibc's malloc stays the process
 * allocator.  libjemalloc and libmimalloc both export malloc/free too, so
 * the link line names libc FIRST (-Wl,--no-as-needed -lc -ljemalloc
 * -lmimalloc): symbol lookup walks the libraries in that order, so the
 * program's (and libc's own) malloc stays glibc's.  jemalloc cannot simply
 * be dlopen()ed with RTLD_LOCAL instead: its thread-local data uses the
 * initial-exec model, which a library loaded after start-up cannot have
 * ("cannot allocate memory in static TLS block").  mimalloc is called
 * through its prefixed API (mi_malloc/mi_free); jemalloc through its own
 * malloc/free (the entry points programs use), looked up with dlsym on its
 * handle.  verify_columns() proves that each column is a different
 * allocator before anything is timed (and exits if not):
 * the global malloc resolves into libc; a glibc pointer carries glibc's
 * chunk header and is not in mimalloc's heap; jemalloc's sallocx knows its
 * pointer; mimalloc's mi_is_in_heap_region knows its own and nobody
 * else's; kmalloc's pointer lies in the simulated RAM.  The library file of
 * each is printed.
 *
 * Rows (single-thread cells: the median over many samples, ns per op,
 * with the 99th percentile of the samples in the row below where it says
 * p99; two-thread cells: the median and the best of many runs):
 *   pair 16/64/256/1024 B   alloc+free pairs on one thread, samples of
 *                           PAIR_BATCH pairs, sizes and allocators
 *                           interleaved so that noise hits all alike;
 *   batch 1000 x 64 B       allocate 1000, free them in a fixed random
 *                           order (one permutation for all), ns per pair;
 *   producer/consumer 64 B  one thread allocates, the other frees; the
 *                           pointers pass through a single-producer
 *                           single-consumer ring; objects per second;
 *   1 thread / 2 threads    64 B pairs per second, one thread alone, then
 *                           two at once (each its own simulated CPU for
 *                           kmalloc: harness_cpu_id), and the ratio of
 *                           the best runs (see table_threads); a last
 *                           line gives the same for a thread-private LIFO
 *                           list, the ceiling this host allows;
 *   memory 10^6 x 64 B      what the allocator took from its backing store
 *                           for 10^6 live 64-byte objects (each written),
 *                           against 64 MB: kmalloc = buddy frames used
 *                           (buddy_usage before/after), glibc = mallinfo2
 *                           arena + hblkhd, jemalloc = mallctl
 *                           "stats.resident" after "epoch", mimalloc = the
 *                           process's RSS growth (its own commit count,
 *                           mi_process_info, reads below the payload); a
 *                           second row gives every allocator's RSS growth.
 * The memory rows run first, before anything else has touched the heaps.
 * The threads of the two-thread rows are pinned to distinct host CPUs.
 * The host's load average is printed at the start and the end: other
 * processes skew every row, the two-thread rows most.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "bench_util.h"

#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <malloc.h>
#include <mimalloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>
#include <mm/buddy.h>
#include <mm/directmap.h>
#include <mm/kmalloc.h>
#include <mm/slab.h>

enum { KM, GLIBC, JE, MI, NALLOC };
static const char *const alloc_name[NALLOC] = { "kmalloc", "glibc", "jemalloc", "mimalloc" };

#define SIM_BYTES     (UINT64_C(1) << 30)
#define PAIR_SAMPLES  4001
#define PAIR_BATCH    200
#define BATCH_N       1000
#define BATCH_SAMPLES 1001
#define PC_OBJECTS    50000
#define PC_RUNS       21
#define PC_RING       1024               /* power of two */
#define MT_PAIRS      500000
#define MT_RUNS       31
#define MEM_OBJECTS   1000000
#define MEM_SIZE      64

static void die(const char *what)
{
    fprintf(stderr, "bench_kmalloc: %s\n", what);
    exit(1);
}

static struct buddy heap_buddy;
static void *(*je_malloc)(size_t);
static void (*je_free)(void *);
static size_t (*je_sallocx)(const void *, int);
static int (*je_mallctl)(const char *, void *, size_t *, void *, size_t);

/* The four allocators behind one signature.  The workloads below are
 * always_inline and get these as constants, so every call is as direct
 * as the library allows (kmalloc: a plain call; glibc, mimalloc: through
 * the PLT; jemalloc: through the dlsym'd pointer, the same one indirect
 * jump as a PLT entry).
 * The harness's platform hooks are inline (tests/host/mm_platform_inline.h),
 * as a kernel's would be with MM_PLATFORM_INLINE.  km_alloc and km_free
 * stay real calls (noinline), so kmalloc is still called like a library
 * function and never inlined into the loops, which the others cannot be
 * either. */
#define KM_CALL __attribute__((noinline))
static KM_CALL void *km_alloc(size_t n) { return kmalloc(n, 0); }
static KM_CALL void km_free(void *p) { kfree(p); }
static void *je_alloc(size_t n) { return je_malloc(n); }
static void je_release(void *p) { je_free(p); }

/* The ceiling for the thread-scaling row: a thread-private LIFO list of
 * 64-byte objects, the least an allocator can do (no sharing at all). */
static __thread void *lifo_head;
static void *lifo_alloc(size_t n)
{
    (void)n;
    void *p = lifo_head;
    lifo_head = *(void **)p;
    return p;
}
static void lifo_free(void *p)
{
    *(void **)p = lifo_head;
    lifo_head = p;
}

typedef void *(*alloc_fn)(size_t);
typedef void (*free_fn)(void *);
static const alloc_fn alloc_of[NALLOC] = { km_alloc, malloc, je_alloc, mi_malloc };
static const free_fn free_of[NALLOC] = { km_free, free, je_release, mi_free };

#define INLINE static inline __attribute__((always_inline))

/* Keep the compiler from pairing a malloc with its free and dropping both. */
INLINE void escape(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

INLINE void *checked(void *p)
{
    if (__builtin_expect(p == NULL, 0))
        die("allocation failed");
    return p;
}

/* ------------------------------------------------------------ workloads */

INLINE double run_pairs(alloc_fn a, free_fn f, size_t size)
{
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < PAIR_BATCH; i++) {
        void *p = checked(a(size));
        escape(p);
        f(p);
    }
    return (double)(now_ns() - t0) / PAIR_BATCH;
}

INLINE double run_batch(alloc_fn a, free_fn f, void **v, const uint32_t *perm)
{
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < BATCH_N; i++)
        v[i] = checked(a(64));
    for (unsigned i = 0; i < BATCH_N; i++)
        f(v[perm[i]]);
    return (double)(now_ns() - t0) / BATCH_N;
}

INLINE void run_pairs_n(alloc_fn a, free_fn f, unsigned long n)
{
    for (unsigned long i = 0; i < n; i++) {
        void *p = checked(a(64));
        escape(p);
        f(p);
    }
}

#define WORKLOADS(tag, A, F)                                                   \
    __attribute__((unused)) static double tag##_pairs(size_t s)                \
    {                                                                          \
        return run_pairs(A, F, s);                                             \
    }                                                                          \
    __attribute__((unused)) static double tag##_batch(void **v,                \
                                                      const uint32_t *perm)    \
    {                                                                          \
        return run_batch(A, F, v, perm);                                       \
    }                                                                          \
    static void tag##_pairs_n(unsigned long n) { run_pairs_n(A, F, n); }
WORKLOADS(km, km_alloc, km_free)
WORKLOADS(glibc, malloc, free)
WORKLOADS(je, je_malloc, je_free)
WORKLOADS(mi, mi_malloc, mi_free)
WORKLOADS(lifo, lifo_alloc, lifo_free)

static double (*const pairs_of[NALLOC])(size_t) = { km_pairs, glibc_pairs, je_pairs, mi_pairs };
static double (*const batch_of[NALLOC])(void **, const uint32_t *) = {
    km_batch, glibc_batch, je_batch, mi_batch
};
#define CEILING NALLOC                  /* index of the LIFO list in pairs_n_of */
static void (*const pairs_n_of[NALLOC + 1])(unsigned long) = {
    km_pairs_n, glibc_pairs_n, je_pairs_n, mi_pairs_n, lifo_pairs_n
};

/* ------------------------------------------------------------ helpers */

static double percentile(double *v, unsigned n, double q)
{
    qsort(v, n, sizeof *v, cmp_double);
    unsigned i = (unsigned)(q * (n - 1) + 0.5);
    return v[i];
}

static unsigned host_cpus;

static uint64_t rss_bytes(void)
{
    unsigned long size, resident;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%lu %lu", &size, &resident) != 2)
        die("cannot read /proc/self/statm");
    fclose(f);
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static const char *lib_of(const void *fn)
{
    Dl_info di;
    if (!dladdr(fn, &di) || !di.dli_fname)
        return "?";
    return di.dli_fname;
}

/* The host's load average: other processes on the CPUs skew every row,
 * the two-thread rows most. */
static void print_load(const char *when)
{
    char buf[64] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%63s", buf) != 1)
            strcpy(buf, "?");
        fclose(f);
    }
    printf("load average %s: %s\n", when, buf);
}

static void print_machine(void)
{
    FILE *p = popen("sh tools/machine-info.sh 2>/dev/null", "r");
    char line[512];
    if (p && fgets(line, sizeof line, p) && strncmp(line, "machine:", 8) == 0) {
        fputs(line, stdout);
        pclose(p);
        return;
    }
    if (p)
        pclose(p);
    printf("machine: %u CPUs (run from the repository root for the full line)\n", host_cpus);
}

/* ------------------------------------------------------------ start-up */

static void heap_start(void)
{
    sim_mem_init(SIM_BYTES);
    struct mm_area_list l = { .count = 1 };
    l.area[0].start = PA(1 << 20);
    l.area[0].end = PA(SIM_BYTES);
    if (buddy_init(&heap_buddy, &l))
        die("buddy_init failed");
    if (mm_heap_init(&heap_buddy))
        die("mm_heap_init failed");
}

static void jemalloc_bind(void)
{
    void *h = dlopen("libjemalloc.so.2", RTLD_NOW | RTLD_NOLOAD);
    if (!h)
        die("libjemalloc.so.2 is not loaded (link with -ljemalloc)");
    *(void **)&je_malloc = dlsym(h, "malloc");
    *(void **)&je_free = dlsym(h, "free");
    *(void **)&je_sallocx = dlsym(h, "sallocx");
    *(void **)&je_mallctl = dlsym(h, "mallctl");
    if (!je_malloc || !je_free || !je_sallocx || !je_mallctl)
        die("jemalloc symbols missing");
}

static bool in_sim_mem(const void *p)
{
    const char *lo = pa_to_ptr(PA(0));
    return (const char *)p >= lo && (const char *)p < lo + SIM_BYTES;
}

/* Exit unless every column is the allocator its name says. */
static void verify_columns(void)
{
    if (!strstr(lib_of(dlsym(RTLD_DEFAULT, "malloc")), "libc.so") ||
        !strstr(lib_of(dlsym(RTLD_DEFAULT, "malloc_usable_size")), "libc.so"))
        die("the process malloc is not glibc's (link order)");
    if (!strstr(lib_of((void *)je_malloc), "jemalloc") ||
        !strstr(lib_of((void *)mi_malloc), "mimalloc"))
        die("jemalloc/mimalloc entry points are not in their libraries");

    void *g = malloc(64), *j = je_malloc(64), *m = mi_malloc(64), *k = kmalloc(64, 0);
    if (!g || !j || !m || !k)
        die("verification allocation failed");
    size_t gu = malloc_usable_size(g);
    /* glibc's chunk header: the size word just before the object */
    size_t chunk = *(const size_t *)((uintptr_t)g - sizeof(size_t)) & ~(size_t)7;
    bool ok_g = gu >= 64 && chunk == gu + sizeof(size_t) && !mi_is_in_heap_region(g);
    bool ok_j = je_sallocx(j, 0) >= 64 && !mi_is_in_heap_region(j);
    bool ok_m = mi_is_in_heap_region(m) && mi_usable_size(m) >= 64;
    bool ok_k = kmalloc_usable_size(k) >= 64 && !mi_is_in_heap_region(k) && in_sim_mem(k);
    if (!ok_g || !ok_j || !ok_m || !ok_k) {
        fprintf(stderr, "bench_kmalloc: glibc %d jemalloc %d mimalloc %d kmalloc %d\n",
                ok_g, ok_j, ok_m, ok_k);
        die("a column is not the allocator it claims to be");
    }
    kfree(k);
    mi_free(m);
    je_free(j);
    free(g);
}

static void print_columns(void)
{
    const char *ver = "?";
    size_t sz = sizeof ver;
    (void)je_mallctl("version", &ver, &sz, NULL, 0);
    int mv = mi_version();
    printf("columns (each checked to be a distinct allocator):\n");
    printf("  kmalloc   mm/kmalloc.c + mm/slab.c in %s, over a buddy on %lu MiB of simulated RAM\n",
           lib_of((void *)km_alloc), (unsigned long)(SIM_BYTES >> 20));
    printf("            platform hooks inlined (MM_PLATFORM_INLINE, tests/host/mm_platform_inline.h)\n");
    printf("  glibc     malloc/free from %s (glibc %s)\n",
           lib_of(dlsym(RTLD_DEFAULT, "malloc")), gnu_get_libc_version());
    printf("  jemalloc  malloc/free from %s (jemalloc %s)\n", lib_of((void *)je_malloc), ver);
    printf("  mimalloc  mi_malloc/mi_free from %s (mimalloc %d.%d.%d)\n",
           lib_of((void *)mi_malloc), mv / 100, mv / 10 % 10, mv % 10);
}

/* ------------------------------------------------------- producer/consumer */

/* A single-producer single-consumer ring of object pointers.  Each side
 * keeps a private copy of the other's index and rereads it only when the
 * ring looks full (empty), so the shared lines move once per burst. */
struct pc_ring {
    _Atomic unsigned long head __attribute__((aligned(64)));   /* next slot to fill */
    _Atomic unsigned long tail __attribute__((aligned(64)));   /* next slot to drain */
    _Atomic unsigned ready __attribute__((aligned(64)));
    uint64_t t_start, t_end;
    void *slot[PC_RING] __attribute__((aligned(64)));
};

INLINE void pc_wait_both(struct pc_ring *r)
{
    atomic_fetch_add(&r->ready, 1);
    while (atomic_load(&r->ready) < 2)
        __builtin_ia32_pause();
}

/* Spin a little, then let the other side run: on a loaded host a side
 * that spins through its time slice only delays the one it waits for. */
INLINE void pc_spin(unsigned *spins)
{
    if (++*spins % 1024 == 0)
        sched_yield();
    else
        __builtin_ia32_pause();
}

INLINE void pc_produce(alloc_fn a, struct pc_ring *r)
{
    unsigned long head = 0, tail_seen = 0;
    unsigned spins = 0;
    pc_wait_both(r);
    r->t_start = now_ns();
    for (unsigned long i = 0; i < PC_OBJECTS; i++) {
        void *p = checked(a(64));
        while (head - tail_seen == PC_RING) {
            pc_spin(&spins);
            tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
        }
        r->slot[head % PC_RING] = p;
        atomic_store_explicit(&r->head, ++head, memory_order_release);
    }
}

INLINE void pc_consume(free_fn f, struct pc_ring *r)
{
    unsigned long tail = 0, head_seen = 0;
    unsigned spins = 0;
    pc_wait_both(r);
    while (tail < PC_OBJECTS) {
        while (tail == head_seen) {
            head_seen = atomic_load_explicit(&r->head, memory_order_acquire);
            if (tail == head_seen)
                pc_spin(&spins);
        }
        while (tail < head_seen) {
            f(r->slot[tail % PC_RING]);
            atomic_store_explicit(&r->tail, ++tail, memory_order_release);
        }
    }
    r->t_end = now_ns();
}

#define PC_THREADS(tag, A, F)                                                  \
    static void *tag##_producer(void *arg)                                     \
    {                                                                          \
        harness_cpu_id = 0;                                                    \
        bench_pin_to(0);                                                             \
        pc_produce(A, arg);                                                    \
        return NULL;                                                           \
    }                                                                          \
    static void *tag##_consumer(void *arg)                                     \
    {                                                                          \
        harness_cpu_id = 1;                                                    \
        bench_pin_to(1);                                                             \
        pc_consume(F, arg);                                                    \
        return NULL;                                                           \
    }
PC_THREADS(km, km_alloc, km_free)
PC_THREADS(glibc, malloc, free)
PC_THREADS(je, je_malloc, je_free)
PC_THREADS(mi, mi_malloc, mi_free)

static void *(*const producer_of[NALLOC])(void *) = {
    km_producer, glibc_producer, je_producer, mi_producer
};
static void *(*const consumer_of[NALLOC])(void *) = {
    km_consumer, glibc_consumer, je_consumer, mi_consumer
};

/* ns per object handed from one thread to the other (wall time). */
static double pc_run(int a)
{
    static struct pc_ring r;
    memset(&r, 0, sizeof r);
    pthread_t p, c;
    if (pthread_create(&c, NULL, consumer_of[a], &r) ||
        pthread_create(&p, NULL, producer_of[a], &r))
        die("pthread_create");
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    return (double)(r.t_end - r.t_start) / PC_OBJECTS;
}

/* ------------------------------------------------------- 1 vs 2 threads */

struct mt_arg {
    int alloc;
    unsigned cpu;
    _Atomic unsigned *ready;
    unsigned nthreads;
    uint64_t t0, t1;
};

static void *mt_thread(void *arg)
{
    struct mt_arg *m = arg;
    _Alignas(64) char lifo_objs[4][64];
    harness_cpu_id = m->cpu;
    bench_pin_to(m->cpu);
    for (unsigned i = 0; i < 4; i++)
        lifo_free(lifo_objs[i]);
    atomic_fetch_add(m->ready, 1);
    while (atomic_load(m->ready) < m->nthreads)
        __builtin_ia32_pause();
    m->t0 = now_ns();
    pairs_n_of[m->alloc](MT_PAIRS);
    m->t1 = now_ns();
    return NULL;
}

/* Million 64-byte pairs per second of nthreads threads together. */
static double mt_run(int a, unsigned nthreads)
{
    _Atomic unsigned ready = 0;
    struct mt_arg m[2];
    pthread_t t[2];
    for (unsigned i = 0; i < nthreads; i++) {
        m[i] = (struct mt_arg){ .alloc = a, .cpu = i, .ready = &ready, .nthreads = nthreads };
        if (pthread_create(&t[i], NULL, mt_thread, &m[i]))
            die("pthread_create");
    }
    uint64_t t0 = UINT64_MAX, t1 = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_join(t[i], NULL);
        t0 = m[i].t0 < t0 ? m[i].t0 : t0;
        t1 = m[i].t1 > t1 ? m[i].t1 : t1;
    }
    return (double)MT_PAIRS * nthreads / (double)(t1 - t0) * 1000.0;
}

/* ------------------------------------------------------------ memory */

/* Bytes the allocator has taken from its backing store. */
static uint64_t backing_bytes(int a)
{
    switch (a) {
    case KM: {
        struct buddy_usage u;
        buddy_usage(&heap_buddy, &u);
        return u.used_npages * PAGE_SIZE;
    }
    case GLIBC: {
        struct mallinfo2 mi = mallinfo2();
        return mi.arena + mi.hblkhd;
    }
    case JE: {
        uint64_t epoch = 1;
        size_t resident, sz = sizeof epoch;
        if (je_mallctl("epoch", &epoch, &sz, &epoch, sz))
            die("mallctl epoch");
        sz = sizeof resident;
        if (je_mallctl("stats.resident", &resident, &sz, NULL, 0))
            die("mallctl stats.resident");
        return resident;
    }
    default:            /* mimalloc's own commit count undercounts: RSS */
        return rss_bytes();
    }
}

/* 10^6 live 64-byte objects, each written: bytes taken and RSS growth. */
static void mem_run(int a, void **v, double *taken, double *rss)
{
    uint64_t b0 = backing_bytes(a), r0 = rss_bytes();
    for (unsigned i = 0; i < MEM_OBJECTS; i++) {
        v[i] = checked(alloc_of[a](MEM_SIZE));
        memset(v[i], (int)i, MEM_SIZE);
    }
    uint64_t b1 = backing_bytes(a), r1 = rss_bytes();
    for (unsigned i = 0; i < MEM_OBJECTS; i++)
        free_of[a](v[i]);
    *taken = (double)(b1 - b0);
    *rss = (double)((int64_t)r1 - (int64_t)r0);
}

/* ------------------------------------------------------------ tables */

static void print_row(const char *name, const double *cell, const char *fmt)
{
    printf("  %-38s", name);
    for (int a = 0; a < NALLOC; a++)
        printf(fmt, cell[a]);
    printf("\n");
}

static void print_header(const char *title)
{
    printf("\n%s\n  %-38s", title, "");
    for (int a = 0; a < NALLOC; a++)
        printf("%11s", alloc_name[a]);
    printf("\n");
}

static const size_t pair_sizes[] = { 16, 64, 256, 1024 };
#define NSIZES (sizeof pair_sizes / sizeof pair_sizes[0])

static double result_pair64[NALLOC], result_ratio[NALLOC], result_overhead[NALLOC];
static double result_ratio_median[NALLOC];

static void table_memory(void)
{
    size_t vbytes = MEM_OBJECTS * sizeof(void *);
    void **v = mmap(NULL, vbytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (v == MAP_FAILED)
        die("mmap");
    memset(v, 0, vbytes);
    double taken[NALLOC], rss[NALLOC], mb[NALLOC], rss_mb[NALLOC];
    static const int order[NALLOC] = { GLIBC, KM, JE, MI };   /* glibc before any other use */
    for (int i = 0; i < NALLOC; i++) {
        int a = order[i];
        mem_run(a, v, &taken[a], &rss[a]);
        mb[a] = taken[a] / 1e6;
        rss_mb[a] = rss[a] / 1e6;
        result_overhead[a] = (taken[a] / ((double)MEM_OBJECTS * MEM_SIZE) - 1.0) * 100.0;
    }
    munmap(v, vbytes);
    print_header("memory for 10^6 live 64-byte objects (64 MB of payload)");
    print_row("kmalloc memory 10^6 x 64 B, MB taken", mb, "%11.1f");
    print_row("kmalloc memory overhead vs 64 MB, %", result_overhead, "%11.1f");
    print_row("kmalloc memory RSS growth, MB", rss_mb, "%11.1f");
    printf("  (taken: kmalloc buddy frames used; glibc mallinfo2 arena+hblkhd; jemalloc\n"
           "   stats.resident; mimalloc RSS growth.  RSS growth: the whole process.)\n");
}

static void table_pairs(void)
{
    static double s[NALLOC][NSIZES][PAIR_SAMPLES];
    for (unsigned w = 0; w < 200; w++)                      /* warm up */
        for (unsigned k = 0; k < NSIZES; k++)
            for (int a = 0; a < NALLOC; a++)
                (void)pairs_of[a](pair_sizes[k]);
    for (unsigned i = 0; i < PAIR_SAMPLES; i++)
        for (unsigned k = 0; k < NSIZES; k++)
            for (int a = 0; a < NALLOC; a++)
                s[a][k][i] = pairs_of[a](pair_sizes[k]);

    print_header("alloc+free pairs on one thread (ns per pair)");
    for (unsigned k = 0; k < NSIZES; k++) {
        double med[NALLOC], p99[NALLOC];
        for (int a = 0; a < NALLOC; a++) {
            p99[a] = percentile(s[a][k], PAIR_SAMPLES, 0.99);
            med[a] = median(s[a][k], PAIR_SAMPLES);
            if (pair_sizes[k] == 64)
                result_pair64[a] = med[a];
        }
        char name[64];
        snprintf(name, sizeof name, "kmalloc pair %zu B, median", pair_sizes[k]);
        print_row(name, med, "%11.1f");
        snprintf(name, sizeof name, "kmalloc pair %zu B, p99", pair_sizes[k]);
        print_row(name, p99, "%11.1f");
    }
}

static void table_batch(void)
{
    static uint32_t perm[BATCH_N];
    static void *v[NALLOC][BATCH_N];
    static double s[NALLOC][BATCH_SAMPLES];
    uint64_t seed = 0x9e3779b97f4a7c15u;
    for (uint32_t i = 0; i < BATCH_N; i++)
        perm[i] = i;
    for (uint32_t i = BATCH_N - 1; i > 0; i--) {           /* Fisher-Yates */
        uint32_t j = (uint32_t)(rng_next(&seed) % (i + 1));
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (unsigned w = 0; w < 20; w++)
        for (int a = 0; a < NALLOC; a++)
            (void)batch_of[a](v[a], perm);
    for (unsigned i = 0; i < BATCH_SAMPLES; i++)
        for (int a = 0; a < NALLOC; a++)
            s[a][i] = batch_of[a](v[a], perm);

    double med[NALLOC], p99[NALLOC];
    for (int a = 0; a < NALLOC; a++) {
        p99[a] = percentile(s[a], BATCH_SAMPLES, 0.99);
        med[a] = median(s[a], BATCH_SAMPLES);
    }
    print_header("allocate 1000 x 64 B, free them in random order (ns per pair)");
    print_row("kmalloc batch 1000 x 64 B, median", med, "%11.1f");
    print_row("kmalloc batch 1000 x 64 B, p99", p99, "%11.1f");
}

static double max_of(const double *v, unsigned n)
{
    double m = v[0];
    for (unsigned i = 1; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

/*
 * Rates are per run; each row gives the median run and the best one.
 * Another process on either host CPU slows a run, never speeds it up, so
 * the best of many short runs is the allocator's own figure on a loaded
 * host, and the ratio target is judged on best / best; the median of the
 * runs' own ratios (a one-thread run and the two-thread run right after
 * it) is printed too: far below the best, it means the host was busy, or
 * the allocator scales only some of the time.
 */
static void table_threads(void)
{
    double pc[NALLOC][PC_RUNS], one[NALLOC + 1][MT_RUNS], two[NALLOC + 1][MT_RUNS];
    for (unsigned r = 0; r < PC_RUNS; r++)
        for (int a = 0; a < NALLOC; a++)
            pc[a][r] = 1000.0 / pc_run(a);
    for (unsigned r = 0; r < MT_RUNS; r++)
        for (int a = 0; a <= CEILING; a++) {
            one[a][r] = mt_run(a, 1);
            two[a][r] = mt_run(a, 2);
        }

    double row[6][NALLOC], ratio[MT_RUNS];
    for (int a = 0; a < NALLOC; a++) {
        for (unsigned r = 0; r < MT_RUNS; r++)
            ratio[r] = two[a][r] / one[a][r];
        result_ratio_median[a] = median(ratio, MT_RUNS);
        row[0][a] = median(pc[a], PC_RUNS);
        row[1][a] = max_of(pc[a], PC_RUNS);
        row[2][a] = median(one[a], MT_RUNS);
        row[3][a] = max_of(one[a], MT_RUNS);
        row[4][a] = median(two[a], MT_RUNS);
        row[5][a] = max_of(two[a], MT_RUNS);
        result_ratio[a] = row[5][a] / row[3][a];
    }
    print_header("two threads (M objects or pairs per second: median run, best run)");
    print_row("kmalloc producer/consumer 64 B, median", row[0], "%11.1f");
    print_row("kmalloc producer/consumer 64 B, best", row[1], "%11.1f");
    print_row("kmalloc 1 thread 64 B pairs, median", row[2], "%11.1f");
    print_row("kmalloc 1 thread 64 B pairs, best", row[3], "%11.1f");
    print_row("kmalloc 2 threads 64 B pairs, median", row[4], "%11.1f");
    print_row("kmalloc 2 threads 64 B pairs, best", row[5], "%11.1f");
    print_row("kmalloc 2 threads / 1 thread, median", result_ratio_median, "%11.2f");
    print_row("kmalloc 2 threads / 1 thread, best", result_ratio, "%11.2f");
    double c1 = max_of(one[CEILING], MT_RUNS), c2 = max_of(two[CEILING], MT_RUNS);
    printf("  machine ceiling, a thread-private LIFO list in the same loop: %.2fx"
           " (%.0f -> %.0f M/s, best runs)\n", c2 / c1, c1, c2);
    if (host_cpus < 2)
        printf("  (one host CPU: the two threads take turns, so the ratio means little)\n");
}

static void print_targets(void)
{
    printf("\ntargets (issue 15):\n");
    double r = result_pair64[KM] / result_pair64[MI];
    printf("  64 B pair no slower than mimalloc: %.1f ns vs %.1f ns (%.2fx) -> %s\n",
           result_pair64[KM], result_pair64[MI], r, r <= 1.0 ? "met" : "MISSED");
    printf("  2 threads >= 1.8x one thread: %.2fx best runs (%.2fx median run) -> %s\n",
           result_ratio[KM], result_ratio_median[KM], result_ratio[KM] >= 1.8 ? "met" : "MISSED");
    printf("  memory overhead <= 5%% for 64 B objects: %.1f%% -> %s\n", result_overhead[KM],
           result_overhead[KM] <= 5.0 ? "met" : "MISSED");
}

int main(void)
{
    host_cpus = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    harness_cpu_id = 0;
    print_machine();
    print_load("at start");
    heap_start();
    jemalloc_bind();
    verify_columns();
    print_columns();
    table_memory();
    table_pairs();
    table_batch();
    table_threads();
    print_targets();
    print_load("at the end");
    return 0;
}
