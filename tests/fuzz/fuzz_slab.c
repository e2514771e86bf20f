/*
 * fuzz_slab.c - libFuzzer target for the kernel heap (mm/slab*.c,
 * mm/kmalloc.c) over a fresh buddy in simulated memory (two RAM ranges
 * with a hole) for every input.
 *
 * The input is an operation sequence: create a cache (size, alignment,
 * constructor, debug mode), alloc from a cache, kmalloc of a small or big
 * size, free of the i-th live object, a bad free (double free of a
 * recently freed pointer, interior pointer, wrong cache, kfree of a cache
 * object, a RAM address that no object starts at), shrink of a cache or
 * of the heap, a switch to another simulated CPU, draining a CPU, and
 * destroy (refused while the model has objects of that cache).
 * A model of the live objects checks that objects never overlap, are
 * aligned, keep their contents (a per-object pattern) and that each bad
 * free is refused with one log line and no change in the heap's or the
 * buddy's counters.  At the end everything is freed, the caches destroyed
 * and the heap shrunk: every frame must be back in the buddy.
 */
#define FUZZ_NAME "fuzz_slab"
#include "fuzz_util.h"

#include <mm/buddy.h>
#include <mm/kmalloc.h>
#include <mm/log.h>
#include <mm/slab.h>

#define SIM_SIZE  (256 * MiB)
#define NCPUS     4
#define MAX_CACHES 4
#define MAX_LIVE  512
#define HISTORY   16

static struct buddy B;

struct cache_model {
    struct mm_cache *c;
    size_t size, align;
    unsigned live;
};
static struct cache_model caches[MAX_CACHES];
static unsigned ncaches;

/* A live object: cache index, or MAX_CACHES for kmalloc. */
struct obj { uint8_t *p; size_t size; unsigned cache; uint8_t seed; };
static struct obj live[MAX_LIVE];
static unsigned nlive;
static struct obj freed[HISTORY];          /* recently freed, for double frees */
static unsigned nfreed;

static uint8_t pat(const struct obj *o, size_t i)
{
    return (uint8_t)(o->seed + i * 7);
}

static void check_contents(const struct obj *o)
{
    for (size_t i = 0; i < o->size; i++)
        if (o->p[i] != pat(o, i))
            fail("object contents changed", (uintptr_t)o->p, i);
}

static bool is_live_start(const uint8_t *p)
{
    for (unsigned i = 0; i < nlive; i++)
        if (live[i].p == p)
            return true;
    return false;
}

/* A new object: aligned, overlapping nothing live, then stamped. */
static void add_live(uint8_t *p, size_t size, unsigned cache, size_t align, uint8_t seed)
{
    if ((uintptr_t)p % align != 0)
        fail("object misaligned", (uintptr_t)p, align);
    for (unsigned i = 0; i < nlive; i++)
        if (p < live[i].p + live[i].size && live[i].p < p + size)
            fail("object handed out overlaps a live one", (uintptr_t)p, (uintptr_t)live[i].p);
    struct obj o = { p, size, cache, seed };
    for (size_t i = 0; i < size; i++)
        p[i] = pat(&o, i);
    live[nlive++] = o;
    if (cache < MAX_CACHES)
        caches[cache].live++;
}

/* The counters a refused call must leave alone. */
struct snap {
    struct buddy_usage u;
    struct mm_heap_usage h;
    struct mm_cache_stats st[MAX_CACHES];
};

static void take(struct snap *s)
{
    memset(s, 0, sizeof *s);
    buddy_usage(&B, &s->u);
    mm_heap_usage(&s->h);
    for (unsigned k = 0; k < ncaches; k++)
        mm_cache_stats(caches[k].c, &s->st[k]);
}

static void free_of(const struct obj *o, int *rc)
{
    if (o->cache < MAX_CACHES) {
        *rc = mm_cache_free(caches[o->cache].c, o->p);
    } else {
        kfree(o->p);
        *rc = 0;
    }
}

/* Run a free that must be refused: kmalloc's kfree has no return value,
 * so only the log line and the counters tell. */
static void expect_refused(struct mm_cache *c, const void *p)
{
    struct snap before, after;
    take(&before);
    unsigned long lines = harness_log_lines;
    int rc = 0;
    if (c != NULL)
        rc = mm_cache_free(c, (void *)(uintptr_t)p);
    else
        kfree(p);
    if (c != NULL && rc >= 0)
        fail("bad free accepted", (uintptr_t)p, (uintptr_t)c);
    if (harness_log_lines - lines != 1)
        fail("bad free did not log exactly one line", (uintptr_t)p, harness_log_lines - lines);
    take(&after);
    if (memcmp(&before, &after, sizeof before) != 0)
        fail("bad free changed the heap", (uintptr_t)p, (uintptr_t)c);
}

static void op_create(struct reader *r)
{
    unsigned a = next_byte(r), b = next_byte(r), k = next_byte(r);
    if (ncaches == MAX_CACHES)
        return;
    size_t size = 1 + ((a << 8 | b) % (k & 1 ? MM_CACHE_MAX_SIZE : 600));
    size_t align = (k >> 1) % 8 == 0 ? 0 : (size_t)1 << ((k >> 1) % 13);
    unsigned flags = k & 0x80 ? MM_CACHE_DEBUG : 0;
    struct mm_cache *c = mm_cache_create_flags("fuzz", size, align, NULL, flags);
    if (c == NULL)
        return;                            /* out of memory */
    caches[ncaches++] = (struct cache_model){ c, size, align < 8 ? 8 : align, 0 };
}

static void op_alloc(struct reader *r)
{
    unsigned k = next_byte(r), seed = next_byte(r);
    if (ncaches == 0 || nlive == MAX_LIVE)
        return;
    struct cache_model *m = &caches[k % ncaches];
    uint8_t *p = mm_cache_alloc(m->c);
    if (p != NULL)
        add_live(p, m->size, k % ncaches, m->align, (uint8_t)seed);
}

static void op_kmalloc(struct reader *r)
{
    unsigned a = next_byte(r), b = next_byte(r);
    if (nlive == MAX_LIVE)
        return;
    size_t size = a < 0xf0 ? 1 + ((a << 8 | b) % KMALLOC_MAX_CLASS)
                           : KMALLOC_MAX_CLASS + 1 + (size_t)(a & 0xf) * 9000 + b;
    uint8_t *p = kmalloc(size, 0);
    if (p == NULL)
        return;                            /* out of memory */
    size_t align = size > KMALLOC_MAX_CLASS ? PAGE_SIZE : size <= 8 ? 8 : 16;
    if (kmalloc_usable_size(p) < size)
        fail("usable size too small", (uintptr_t)p, size);
    add_live(p, size, MAX_CACHES, align, (uint8_t)b);
}

static void op_free(struct reader *r)
{
    unsigned i = next_byte(r);
    if (nlive == 0)
        return;
    struct obj o = live[i % nlive];
    check_contents(&o);
    int rc;
    free_of(&o, &rc);
    if (rc != 0)
        fail("free of a live object failed", (uintptr_t)o.p, (uint64_t)-rc);
    nlive--;
    live[i % (nlive + 1)] = live[nlive];
    if (o.cache < MAX_CACHES)
        caches[o.cache].live--;
    freed[nfreed++ % HISTORY] = o;
}

static void op_bad_free(struct reader *r)
{
    unsigned kind = next_byte(r) % 5, sel = next_byte(r);
    if (kind == 0) {                       /* double free */
        unsigned n = nfreed < HISTORY ? nfreed : HISTORY;
        if (n == 0)
            return;
        struct obj *o = &freed[sel % n];
        if (o->p == NULL || is_live_start(o->p))
            return;                        /* handed out again since */
        expect_refused(o->cache < MAX_CACHES ? caches[o->cache].c : NULL, o->p);
        return;
    }
    if (kind == 4) {                       /* somewhere in RAM, no object start */
        uint8_t *p = pa_to_ptr(PA((uint64_t)(sel << 8 | next_byte(r)) * 1000 + 8));
        if (!is_live_start(p))
            expect_refused(ncaches && (sel & 1) ? caches[sel % ncaches].c : NULL, p);
        return;
    }
    if (nlive == 0)
        return;
    struct obj *o = &live[sel % nlive];
    struct mm_cache *c = o->cache < MAX_CACHES ? caches[o->cache].c : NULL;
    if (kind == 1 && o->size > 1)          /* interior */
        expect_refused(c, o->p + 1 + next_byte(r) % (o->size - 1));
    else if (kind == 2 && c != NULL)       /* a cache object to kfree */
        expect_refused(NULL, o->p);
    else if (kind == 3 && ncaches > 0 && caches[sel % ncaches].c != c)   /* wrong cache */
        expect_refused(caches[sel % ncaches].c, o->p);
}

static void op_destroy(struct reader *r)
{
    unsigned k = next_byte(r);
    if (ncaches == 0)
        return;
    k %= ncaches;
    unsigned long lines = harness_log_lines;
    int rc = mm_cache_destroy(caches[k].c);
    if (caches[k].live != 0) {
        if (rc != -MM_EBUSY || harness_log_lines - lines != 1)
            fail("destroy of a busy cache not refused", caches[k].live, (uint64_t)-rc);
        return;
    }
    if (rc != 0)
        fail("destroy of an empty cache failed", k, (uint64_t)-rc);
    /* Forget the cache: renumber the model's objects and history. */
    for (unsigned i = 0; i < HISTORY; i++)
        if (freed[i].cache == k)
            freed[i].p = NULL;
    caches[k] = caches[--ncaches];
    for (unsigned i = 0; i < nlive; i++)
        if (live[i].cache == ncaches)
            live[i].cache = k;
    for (unsigned i = 0; i < HISTORY; i++)
        if (freed[i].cache == ncaches)
            freed[i].cache = k;
}

static void run_op(struct reader *r)
{
    unsigned op = next_byte(r) % 16;
    if (op == 0)
        op_create(r);
    else if (op < 4)
        op_alloc(r);
    else if (op < 7)
        op_kmalloc(r);
    else if (op < 11)
        op_free(r);
    else if (op == 11)
        op_bad_free(r);
    else if (op == 12)
        harness_cpu_id = next_byte(r) % NCPUS;
    else if (op == 13) {
        unsigned k = next_byte(r);
        if (k & 1)
            mm_heap_shrink();
        else if (ncaches)
            mm_cache_shrink(caches[(k >> 1) % ncaches].c);
        for (unsigned i = 0; i < nlive; i++)
            check_contents(&live[i]);
    } else if (op == 14)
        mm_heap_drain_cpu(next_byte(r) % NCPUS);   /* single thread: every CPU is quiet */
    else
        op_destroy(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_sim_once(SIM_SIZE);
    harness_quiet = 1;
    harness_cpu_id = 0;
    struct mm_area_list l = { .count = 2 };
    l.area[0].start = PA(1 * MiB);
    l.area[0].end = PA(24 * MiB);
    l.area[1].start = PA(32 * MiB);
    l.area[1].end = PA(48 * MiB);
    mm_heap_reset();
    if (buddy_init(&B, &l) != 0 || mm_heap_init(&B) != 0)
        fail("set-up failed", 0, 0);
    struct buddy_usage u0;
    buddy_usage(&B, &u0);
    ncaches = nlive = nfreed = 0;
    memset(freed, 0, sizeof freed);

    struct reader r = { data, size };
    while (r.n)
        run_op(&r);

    while (nlive > 0) {
        struct obj o = live[--nlive];
        check_contents(&o);
        int rc;
        free_of(&o, &rc);
        if (rc != 0)
            fail("final free failed", (uintptr_t)o.p, (uint64_t)-rc);
        if (o.cache < MAX_CACHES)
            caches[o.cache].live--;
    }
    for (unsigned cpu = 0; cpu < NCPUS; cpu++)
        mm_heap_drain_cpu(cpu);
    for (unsigned k = 0; k < ncaches; k++)
        if (mm_cache_destroy(caches[k].c) != 0)
            fail("final destroy failed", k, 0);
    mm_heap_shrink();
    struct buddy_usage u1;
    buddy_usage(&B, &u1);
    if (u1.used_npages != u0.used_npages)
        fail("frames not back in the buddy", u0.used_npages, u1.used_npages);
    return 0;
}
