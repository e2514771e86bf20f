/*
 * test_mmio.c - host tests of the MMIO pool (mm/mmio.c, over mm/vrange.c).
 *
 * A small frame allocator over simulated physical memory supplies node
 * frames and page tables; it counts what is outstanding, refuses double
 * frees and can be told to run dry after n more frames.  Random
 * create/release sequences run against a model of the live blocks, and
 * the pool's own invariant walk (mmio_pool_check) runs along the way.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "tlb_model.h"

#include <pthread.h>
#include <mm/log.h>
#include <mm/mmio.h>
#include <mm/paging.h>

extern unsigned long harness_shootdowns;
extern unsigned long host_invlpg_count, host_flush_all_count;
extern __thread unsigned harness_cpu_id;
extern unsigned host_phys_addr_bits;

/* ------------------------------------------------- test frame allocator */

#define SIM_BYTES   (UINT64_C(512) << 20)
#define FA_FIRST_PA (UINT64_C(16) << 20)    /* keep low "device" addresses out */

struct test_fa {
    struct frame_allocator fa;
    pthread_mutex_t mu;
    uint64_t next_pa;           /* bump pointer */
    uint64_t *stack;            /* freed frames */
    uint64_t nstack;
    uint8_t *out;               /* 1 per outstanding frame, by pfn */
    uint64_t outstanding;
    long fail_after;            /* frames left before -MM_ENOMEM; < 0: never */
};

static struct test_fa tfa;

static int tfa_alloc(struct frame_allocator *self, phys_addr_t *pa_out)
{
    struct test_fa *t = (struct test_fa *)self;
    int err = 0;
    pthread_mutex_lock(&t->mu);
    if (t->fail_after == 0) {
        err = -MM_ENOMEM;
    } else {
        uint64_t pa;
        if (t->nstack)
            pa = t->stack[--t->nstack];
        else if (t->next_pa < SIM_BYTES)
            pa = (t->next_pa += PAGE_SIZE) - PAGE_SIZE;
        else
            pa = 0;
        if (pa == 0) {
            err = -MM_ENOMEM;
        } else {
            if (t->fail_after > 0)
                t->fail_after--;
            if (t->out[pa >> PAGE_SHIFT]) {
                fprintf(stderr, "tfa_alloc: frame %" PRIx64 " handed out twice\n", pa);
                abort();
            }
            t->out[pa >> PAGE_SHIFT] = 1;
            tlb_model_frame_alloc(PA(pa));
            t->outstanding++;
            memset(pa_to_ptr(PA(pa)), 0xa5, PAGE_SIZE);   /* no zeroed-memory luck */
            *pa_out = PA(pa);
        }
    }
    pthread_mutex_unlock(&t->mu);
    return err;
}

static void tfa_free(struct frame_allocator *self, phys_addr_t pa)
{
    struct test_fa *t = (struct test_fa *)self;
    pthread_mutex_lock(&t->mu);
    if (pa.raw < FA_FIRST_PA || pa.raw >= SIM_BYTES || !t->out[pa.raw >> PAGE_SHIFT]) {
        fprintf(stderr, "tfa_free: frame %" PRIx64 " not outstanding\n", pa.raw);
        abort();
    }
    tlb_model_frame_free(pa);
    t->out[pa.raw >> PAGE_SHIFT] = 0;
    t->outstanding--;
    t->stack[t->nstack++] = pa.raw;
    pthread_mutex_unlock(&t->mu);
}

static void tfa_reset(void)
{
    static bool sim_ready;
    if (!sim_ready) {
        sim_mem_init(SIM_BYTES);
        tfa.stack = calloc(SIM_BYTES / PAGE_SIZE, sizeof(uint64_t));
        tfa.out = calloc(SIM_BYTES / PAGE_SIZE, 1);
        pthread_mutex_init(&tfa.mu, NULL);
        sim_ready = true;
    }
    memset(tfa.out, 0, SIM_BYTES / PAGE_SIZE);
    tfa.fa.alloc = tfa_alloc;
    tfa.fa.free = tfa_free;
    tfa.next_pa = FA_FIRST_PA;
    tfa.nstack = 0;
    tfa.outstanding = 0;
    tfa.fail_after = -1;
}

/* ---------------------------------------------------------------- helpers */

static struct mmio_pool pool;

static void fresh_pool(void)
{
    tfa_reset();
    REQUIRE(mmio_pool_init(&pool, &tfa.fa) == 0);
}

#define HASH_SEG ((int)VRANGE_HASH_SEG_BUCKETS)

static uint64_t order_bytes(unsigned k) { return PAGE_SIZE << k; }

/* Free counts per order equal `want` (NULL: the initial 1024 x 1 GiB). */
static bool counts_are(const uint64_t *want)
{
    uint64_t got[MMIO_NR_ORDERS];
    mmio_pool_free_counts(&pool, got);
    for (unsigned k = 0; k < MMIO_NR_ORDERS; k++) {
        uint64_t w = want ? want[k] : (k == MMIO_MAX_ORDER ? MMIO_NR_ROOTS : 0);
        if (got[k] != w) {
            fprintf(stderr, "  order %u: %" PRIu64 " free, expected %" PRIu64 "\n", k,
                    got[k], w);
            return false;
        }
    }
    return true;
}

static bool pool_is_initial(void)
{
    struct mmio_stats s;
    mmio_pool_stats(&pool, &s);
    return counts_are(NULL) && s.alloc_blocks == 0 && s.node_frames == 0 &&
           s.hash_frames == 0 && s.nodes_in_use == 0 && s.free_bytes == MMIO_POOL_SIZE;
}

/* Snapshot to prove that a refused call changed nothing. */
struct snap {
    uint64_t counts[MMIO_NR_ORDERS];
    struct mmio_stats s;
    uint64_t frames;
};

static void take_snap(struct snap *sn)
{
    mmio_pool_free_counts(&pool, sn->counts);
    mmio_pool_stats(&pool, &sn->s);
    sn->frames = tfa.outstanding;
}

static bool snap_same(const struct snap *a)
{
    struct snap b;
    take_snap(&b);
    return memcmp(a, &b, sizeof(b)) == 0;
}

/* Size that rounds up to exactly order k (any byte count in its range). */
static uint64_t size_for_order(unsigned k, uint64_t *rng)
{
    uint64_t hi = order_bytes(k), lo = k == 0 ? 0 : hi / 2;
    return lo + 1 + rng_next(rng) % (hi - lo);
}

/* ------------------------------------------------------------------ tests */

static void test_init_state(void)
{
    fresh_pool();
    CHECK(pool_is_initial());
    CHECK_EQ(mmio_pool_check(&pool), 0);
    CHECK_EQ(tfa.outstanding, 0);
    harness_quiet = 1;
    CHECK_EQ(mmio_pool_init(NULL, &tfa.fa), -MM_EINVAL);
    harness_quiet = 0;
}

static void test_create_split_and_merge(void)
{
    fresh_pool();
    struct mmio_space a, b, c;
    REQUIRE(mmio_create(&pool, 1, &a) == 0);
    CHECK_EQ(a.size, PAGE_SIZE);
    CHECK_EQ(a.va.raw, MMIO_POOL_BASE);          /* lowest block first */
    /* One 1 GiB block split down to 4 KiB: one free buddy per order. */
    uint64_t want[MMIO_NR_ORDERS];
    for (unsigned k = 0; k < MMIO_NR_ORDERS; k++)
        want[k] = k == MMIO_MAX_ORDER ? MMIO_NR_ROOTS - 1 : 1;
    CHECK(counts_are(want));

    REQUIRE(mmio_create(&pool, PAGE_SIZE + 1, &b) == 0);
    CHECK_EQ(b.size, 2 * PAGE_SIZE);
    CHECK_EQ(b.va.raw, MMIO_POOL_BASE + 2 * PAGE_SIZE);
    REQUIRE(mmio_create(&pool, PAGE_SIZE, &c) == 0);
    CHECK_EQ(c.va.raw, MMIO_POOL_BASE + PAGE_SIZE);   /* a's buddy */
    CHECK_EQ(mmio_pool_check(&pool), 0);

    struct mmio_space g;
    REQUIRE(mmio_create(&pool, GiB, &g) == 0);
    CHECK_EQ(g.size, GiB);
    CHECK(is_aligned_u64(g.va.raw, GiB));

    CHECK_EQ(mmio_release(&pool, &a, NULL), 0);
    CHECK_EQ(mmio_release(&pool, &g, NULL), 0);
    CHECK_EQ(mmio_release(&pool, &b, NULL), 0);
    CHECK_EQ(mmio_pool_check(&pool), 0);
    CHECK_EQ(mmio_release(&pool, &c, NULL), 0);   /* the last one merges everything */
    CHECK(pool_is_initial());
    CHECK_EQ(tfa.outstanding, 0);
    CHECK_EQ(mmio_pool_check(&pool), 0);
}

struct live {
    struct mmio_space sp;
    uint64_t asked;
};

static bool overlaps(const struct live *l, size_t n, const struct mmio_space *s)
{
    for (size_t i = 0; i < n; i++)
        if (s->va.raw < l[i].sp.va.raw + l[i].sp.size && l[i].sp.va.raw < s->va.raw + s->size)
            return true;
    return false;
}

static void test_random_against_model(void)
{
    fresh_pool();
    enum { OPS = 12000, CAP = 4096 };
    static struct live live[CAP];
    size_t n = 0;
    uint64_t rng = 0x5eed1234abcdULL, live_bytes = 0, max_live = 0, max_hash_frames = 0;

    for (int op = 0; op < OPS; op++) {
        /* Drift towards 1500 live blocks, then down to 300 (the address
         * hash grows past one segment, then shrinks). */
        size_t target = op < OPS / 2 ? 1500 : 300;
        bool create = n == 0 || (n < CAP && rng_next(&rng) % 100 < (n < target ? 60u : 40u));
        if (create) {
            unsigned k = (unsigned)(rng_next(&rng) % MMIO_NR_ORDERS);
            uint64_t size = size_for_order(k, &rng);
            struct mmio_space s;
            int err = mmio_create(&pool, size, &s);
            REQUIRE(err == 0);
            CHECK_EQ(s.size, order_bytes(k));
            CHECK(is_aligned_u64(s.va.raw, s.size));
            CHECK(s.va.raw >= MMIO_POOL_BASE && s.va.raw + s.size <= MMIO_POOL_END);
            REQUIRE(!overlaps(live, n, &s));
            live[n].sp = s;
            live[n].asked = size;
            n++;
            live_bytes += s.size;
        } else {
            size_t i = rng_next(&rng) % n;
            REQUIRE(mmio_release(&pool, &live[i].sp, NULL) == 0);
            live_bytes -= live[i].sp.size;
            live[i] = live[--n];
        }
        if (n > max_live)
            max_live = n;
        struct mmio_stats st;
        mmio_pool_stats(&pool, &st);
        CHECK_EQ(st.alloc_blocks, n);
        CHECK_EQ(st.alloc_bytes, live_bytes);
        CHECK_EQ(st.free_bytes + st.alloc_bytes, MMIO_POOL_SIZE);
        /* Every frame out is pool bookkeeping (no mapping in this test). */
        CHECK_EQ(st.node_frames + st.hash_frames, tfa.outstanding);
        if (st.hash_frames > max_hash_frames)
            max_hash_frames = st.hash_frames;
        if (op % 500 == 0)
            mmio_pool_check(&pool);
        if (harness_failed)
            return;
    }
    CHECK(max_live > 1200);
    CHECK(n < 600);
    CHECK(max_hash_frames >= 2);        /* the address hash grew ... */
    mmio_pool_check(&pool);
    while (n > 0) {
        size_t i = rng_next(&rng) % n;
        REQUIRE(mmio_release(&pool, &live[i].sp, NULL) == 0);
        live[i] = live[--n];
    }
    CHECK(pool_is_initial());
    CHECK_EQ(tfa.outstanding, 0);       /* ... and every frame went back */
    mmio_pool_check(&pool);
}

static void test_bad_input(void)
{
    fresh_pool();
    struct pt_mapper m;
    REQUIRE(pt_mapper_create(&tfa.fa, &m) == 0);
    struct mmio_space a, b;
    REQUIRE(mmio_create(&pool, 16 * KiB, &a) == 0);
    REQUIRE(mmio_create(&pool, 4 * KiB, &b) == 0);
    REQUIRE(mmio_map_phys(&pool, &b, &m, PA(0xfee00000), PAGE_SIZE) == 0);

    struct snap sn;
    take_snap(&sn);
    struct mmio_space s;
    struct {
        const char *what;
        int got, want;
    } cases[32];
    int nc = 0;
    unsigned long lines_before;
#define BAD(what_, call_, want_)                                                  \
    do {                                                                         \
        lines_before = harness_log_lines;                                        \
        cases[nc].what = (what_);                                                \
        cases[nc].got = (call_);                                                 \
        cases[nc].want = (want_);                                                \
        if (harness_log_lines != lines_before + 1)                               \
            fprintf(stderr, "  %s: %lu log lines, expected 1\n", (what_),        \
                    harness_log_lines - lines_before);                           \
        CHECK_EQ(harness_log_lines, lines_before + 1);                           \
        CHECK(snap_same(&sn));                                                   \
        nc++;                                                                    \
    } while (0)

    harness_quiet = 1;
    BAD("size 0", mmio_create(&pool, 0, &s), -MM_EINVAL);
    BAD("size 1 GiB + 1", mmio_create(&pool, GiB + 1, &s), -MM_EINVAL);
    BAD("size huge", mmio_create(&pool, UINT64_MAX, &s), -MM_EINVAL);

    struct mmio_space below = { VA(MMIO_POOL_BASE - PAGE_SIZE), PAGE_SIZE };
    struct mmio_space at_end = { VA(MMIO_POOL_END), PAGE_SIZE };
    struct mmio_space never = { VA(MMIO_POOL_BASE + 512 * GiB), PAGE_SIZE };
    struct mmio_space middle = { VA(a.va.raw + PAGE_SIZE), PAGE_SIZE };
    struct mmio_space wrong_size = { a.va, 8 * KiB };
    struct mmio_space unaligned = { VA(a.va.raw + 8), a.size };
    BAD("release below pool", mmio_release(&pool, &below, &m), -MM_EFAULT);
    BAD("release at pool end", mmio_release(&pool, &at_end, &m), -MM_EFAULT);
    BAD("release never allocated", mmio_release(&pool, &never, &m), -MM_ENOENT);
    BAD("release middle of block", mmio_release(&pool, &middle, &m), -MM_ENOENT);
    BAD("release wrong size", mmio_release(&pool, &wrong_size, &m), -MM_EINVAL);
    BAD("release misaligned", mmio_release(&pool, &unaligned, &m), -MM_EINVAL);

    BAD("map twice", mmio_map_phys(&pool, &b, &m, PA(0xfee00000), PAGE_SIZE), -MM_EEXIST);
    BAD("map beyond space", mmio_map_phys(&pool, &a, &m, PA(0xfec00000), a.size + 1),
        -MM_EINVAL);
    BAD("map length 0", mmio_map_phys(&pool, &a, &m, PA(0xfec00000), 0), -MM_EINVAL);
    BAD("map unaligned pa", mmio_map_phys(&pool, &a, &m, PA(0xfec00010), PAGE_SIZE),
        -MM_EINVAL);
    BAD("map free block", mmio_map_phys(&pool, &never, &m, PA(0xfec00000), PAGE_SIZE),
        -MM_ENOENT);
    BAD("map without mapper", mmio_map_phys(&pool, &a, NULL, PA(0xfec00000), PAGE_SIZE),
        -MM_EINVAL);
    BAD("release mapped without mapper", mmio_release(&pool, &b, NULL), -MM_EINVAL);

    struct pt_mapper ro = m;
    ro.readonly = true;
    BAD("release with read-only mapper", mmio_release(&pool, &b, &ro), -MM_EPERM);
    struct pt_mapper other;
    REQUIRE(pt_mapper_create(&tfa.fa, &other) == 0);
    take_snap(&sn);
    BAD("release with another mapper", mmio_release(&pool, &b, &other), -MM_EINVAL);
    REQUIRE(pt_mapper_destroy(&other) == 0);
    take_snap(&sn);

    BAD("ioremap size 0", mmio_ioremap(&pool, &m, PA(0xfee00000), 0) == NULL ? -1 : 0, -1);
    BAD("ioremap too big", mmio_ioremap(&pool, &m, PA(0xfee00010), GiB) == NULL ? -1 : 0, -1);
    BAD("iounmap outside", mmio_iounmap(&pool, &m, (void *)(uintptr_t)0x1000), -MM_EFAULT);
    BAD("iounmap free address",
        mmio_iounmap(&pool, &m, (void *)(uintptr_t)(MMIO_POOL_BASE + 7 * GiB)), -MM_ENOENT);

    /* Double release: the first one succeeds, the second changes nothing. */
    REQUIRE(mmio_release(&pool, &a, NULL) == 0);
    take_snap(&sn);
    BAD("double release", mmio_release(&pool, &a, NULL), -MM_ENOENT);
    harness_quiet = 0;
#undef BAD

    for (int i = 0; i < nc; i++) {
        if (cases[i].got != cases[i].want)
            fprintf(stderr, "  %s: got %d, expected %d\n", cases[i].what, cases[i].got,
                    cases[i].want);
        CHECK_EQ(cases[i].got, cases[i].want);
    }
    CHECK_EQ(mmio_release(&pool, &b, &m), 0);
    CHECK(pool_is_initial());
    CHECK_EQ(pt_mapper_destroy(&m), 0);
    CHECK_EQ(tfa.outstanding, 0);
    mmio_pool_check(&pool);
}

/* No frame for the split nodes: refused, nothing changed; releases (which
 * never need memory) keep working while the allocator is dry. */
static void test_node_frames_exhausted(void)
{
    fresh_pool();
    struct snap sn;
    take_snap(&sn);
    tfa.fail_after = 0;
    struct mmio_space s;
    harness_quiet = 1;
    CHECK_EQ(mmio_create(&pool, PAGE_SIZE, &s), -MM_ENOMEM);
    harness_quiet = 0;
    CHECK(snap_same(&sn));
    /* Once the address hash exists, a whole 1 GiB block needs no frame. */
    tfa.fail_after = -1;
    struct mmio_space small;
    REQUIRE(mmio_create(&pool, PAGE_SIZE, &small) == 0);
    tfa.fail_after = 0;
    CHECK_EQ(mmio_create(&pool, GiB, &s), 0);
    CHECK_EQ(mmio_release(&pool, &s, NULL), 0);
    CHECK_EQ(mmio_release(&pool, &small, NULL), 0);     /* releasing needs no frame */
    CHECK(pool_is_initial());

    /* Random churn with a dry allocator half of the time. */
    tfa.fail_after = -1;
    enum { CAP = 2000 };
    static struct mmio_space live[CAP];
    size_t n = 0;
    uint64_t rng = 77;
    int refused = 0, done = 0;
    harness_quiet = 1;
    for (int op = 0; op < 6000; op++) {
        tfa.fail_after = (op / 300) % 2 ? 0 : -1;
        if (n == 0 || (n < CAP && rng_next(&rng) % 2)) {
            take_snap(&sn);
            int err = mmio_create(&pool, order_bytes((unsigned)(rng_next(&rng) % 19)),
                                  &live[n]);
            if (err) {
                CHECK_EQ(err, -MM_ENOMEM);
                CHECK(snap_same(&sn));
                refused++;
            } else {
                n++;
                done++;
            }
        } else {
            size_t i = rng_next(&rng) % n;
            REQUIRE(mmio_release(&pool, &live[i], NULL) == 0);
            live[i] = live[--n];
        }
    }
    harness_quiet = 0;
    CHECK(refused > 100 && done > 1000);
    mmio_pool_check(&pool);
    while (n > 0)
        CHECK_EQ(mmio_release(&pool, &live[--n], NULL), 0);
    CHECK(pool_is_initial());
    CHECK_EQ(tfa.outstanding, 0);
}

/* The address hash cannot grow (no frame): it keeps working, chains get
 * longer, and it grows later once frames are back. */
static void test_hash_growth_without_frames(void)
{
    fresh_pool();
    enum { SMALL = HASH_SEG, BIG = 16 };
    static struct mmio_space small[SMALL], big[BIG + 1];
    struct mmio_stats st;
    for (int i = 0; i < SMALL; i++)     /* 1 block per bucket: the limit */
        REQUIRE(mmio_create(&pool, PAGE_SIZE, &small[i]) == 0);
    mmio_pool_stats(&pool, &st);
    CHECK_EQ(st.hash_frames, 1);
    tfa.fail_after = 0;
    for (int i = 0; i < BIG; i++)       /* whole roots: no node, growth fails */
        REQUIRE(mmio_create(&pool, GiB, &big[i]) == 0);
    mmio_pool_stats(&pool, &st);
    CHECK_EQ(st.hash_frames, 1);
    CHECK_EQ(st.alloc_blocks, SMALL + BIG);
    mmio_pool_check(&pool);

    tfa.fail_after = -1;
    REQUIRE(mmio_create(&pool, GiB, &big[BIG]) == 0);   /* grows the hash now */
    mmio_pool_stats(&pool, &st);
    CHECK_EQ(st.hash_frames, 2);
    mmio_pool_check(&pool);
    for (int i = 0; i <= BIG; i++)
        CHECK_EQ(mmio_release(&pool, &big[i], NULL), 0);
    for (int i = 0; i < SMALL; i++)
        CHECK_EQ(mmio_release(&pool, &small[i], NULL), 0);
    CHECK(pool_is_initial());
    CHECK_EQ(tfa.outstanding, 0);
}

static void test_address_space_exhausted(void)
{
    fresh_pool();
    static struct mmio_space g[MMIO_NR_ROOTS];
    for (uint64_t i = 0; i < MMIO_NR_ROOTS; i++)
        REQUIRE(mmio_create(&pool, GiB, &g[i]) == 0);
    struct snap sn;
    take_snap(&sn);
    struct mmio_space s;
    harness_quiet = 1;
    CHECK_EQ(mmio_create(&pool, GiB, &s), -MM_ENOMEM);
    CHECK_EQ(mmio_create(&pool, 1, &s), -MM_ENOMEM);
    harness_quiet = 0;
    CHECK(snap_same(&sn));
    /* Free one in the middle, fill it with 4 KiB blocks. */
    REQUIRE(mmio_release(&pool, &g[500], NULL) == 0);
    CHECK_EQ(mmio_create(&pool, PAGE_SIZE, &s), 0);
    CHECK_EQ(s.va.raw, g[500].va.raw);
    CHECK_EQ(mmio_release(&pool, &s, NULL), 0);
    for (uint64_t i = 0; i < MMIO_NR_ROOTS; i++)
        if (i != 500)
            REQUIRE(mmio_release(&pool, &g[i], NULL) == 0);
    CHECK(pool_is_initial());
}

static bool translate_ok(struct pt_mapper *m, uint64_t va, struct pt_mapping *out)
{
    return pt_translate(m, VA(va), out) == 0;
}

static void test_map_flags_and_release_unmaps(void)
{
    fresh_pool();
    struct pt_mapper m;
    REQUIRE(pt_mapper_create(&tfa.fa, &m) == 0);
    uint64_t frames_with_mapper = tfa.outstanding;

    /* 3 pages of a 16 KiB space, 4 KiB device pages. */
    struct mmio_space s;
    REQUIRE(mmio_create(&pool, 3 * PAGE_SIZE, &s) == 0);
    CHECK_EQ(s.size, 4 * PAGE_SIZE);
    REQUIRE(mmio_map_phys(&pool, &s, &m, PA(0xfebf0000), 3 * PAGE_SIZE - 100) == 0);
    struct pt_mapping t;
    for (uint64_t i = 0; i < 3; i++) {
        REQUIRE(translate_ok(&m, s.va.raw + i * PAGE_SIZE + 0x18, &t));
        CHECK_EQ(t.pa.raw, 0xfebf0000 + i * PAGE_SIZE + 0x18);
        CHECK_EQ(t.flags & MMIO_PTE_FLAGS, MMIO_PTE_FLAGS);
        CHECK((t.flags & PTE_PCD) && (t.flags & PTE_PWT) && (t.flags & PTE_NX) &&
              (t.flags & PTE_GLOBAL) && (t.flags & PTE_WRITE) && !(t.flags & PTE_USER));
        CHECK_EQ(t.level, 1);
    }
    CHECK(!translate_ok(&m, s.va.raw + 3 * PAGE_SIZE, &t));   /* only what was asked */

    /* A 2 MiB-aligned device window gets a 2 MiB page. */
    struct mmio_space big;
    REQUIRE(mmio_create(&pool, 4 * MiB, &big) == 0);
    REQUIRE(mmio_map_phys(&pool, &big, &m, PA(0xc0000000), 4 * MiB) == 0);
    REQUIRE(translate_ok(&m, big.va.raw + 3 * MiB + 5, &t));
    CHECK_EQ(t.pa.raw, 0xc0000000 + 3 * MiB + 5);
    CHECK_EQ(t.level, 2);
    CHECK_EQ(t.flags & MMIO_PTE_FLAGS, MMIO_PTE_FLAGS);

    /* Release: unmapped, flushed with exactly one shootdown, tables freed. */
    unsigned long sd = harness_shootdowns;
    unsigned long tlb = host_invlpg_count + host_flush_all_count;
    CHECK_EQ(mmio_release(&pool, &s, &m), 0);
    CHECK_EQ(harness_shootdowns, sd + 1);
    CHECK(host_invlpg_count + host_flush_all_count > tlb);
    for (uint64_t i = 0; i < 4; i++)
        CHECK(!translate_ok(&m, s.va.raw + i * PAGE_SIZE, &t));
    CHECK(translate_ok(&m, big.va.raw, &t));     /* the other one is untouched */

    sd = harness_shootdowns;
    CHECK_EQ(mmio_release(&pool, &big, &m), 0);
    CHECK_EQ(harness_shootdowns, sd + 1);
    CHECK(!translate_ok(&m, big.va.raw, &t));
    CHECK(!translate_ok(&m, big.va.raw + 3 * MiB, &t));

    /* Unmapped page tables went back with the node frames. */
    CHECK(pool_is_initial());
    CHECK_EQ(tfa.outstanding, frames_with_mapper);

    /* Releasing an unmapped space needs no flush at all. */
    REQUIRE(mmio_create(&pool, PAGE_SIZE, &s) == 0);
    sd = harness_shootdowns;
    CHECK_EQ(mmio_release(&pool, &s, &m), 0);
    CHECK_EQ(harness_shootdowns, sd);

    CHECK_EQ(pt_mapper_destroy(&m), 0);
    CHECK_EQ(tfa.outstanding, 0);
}

/* Page tables cannot be allocated: map fails, the block stays usable. */
static void test_map_out_of_frames(void)
{
    fresh_pool();
    struct pt_mapper m;
    REQUIRE(pt_mapper_create(&tfa.fa, &m) == 0);
    struct mmio_space s;
    REQUIRE(mmio_create(&pool, 8 * KiB, &s) == 0);
    struct snap sn;
    take_snap(&sn);
    tfa.fail_after = 1;         /* the walk needs 3 tables */
    harness_quiet = 1;
    CHECK_EQ(mmio_map_phys(&pool, &s, &m, PA(0xfed00000), 8 * KiB), -MM_ENOMEM);
    harness_quiet = 0;
    CHECK(snap_same(&sn));
    struct pt_mapping t;
    CHECK(!translate_ok(&m, s.va.raw, &t));
    tfa.fail_after = -1;
    CHECK_EQ(mmio_map_phys(&pool, &s, &m, PA(0xfed00000), 8 * KiB), 0);
    CHECK(translate_ok(&m, s.va.raw + PAGE_SIZE, &t));
    CHECK_EQ(mmio_release(&pool, &s, &m), 0);

    /* ioremap with no frames left returns NULL and leaves the pool as it was. */
    tfa.fail_after = 0;
    harness_quiet = 1;
    CHECK(mmio_ioremap(&pool, &m, PA(0xfed00000), 64) == NULL);
    harness_quiet = 0;
    tfa.fail_after = -1;
    CHECK(pool_is_initial());
    CHECK_EQ(pt_mapper_destroy(&m), 0);
    CHECK_EQ(tfa.outstanding, 0);
}

static void test_ioremap_keeps_offset(void)
{
    fresh_pool();
    struct pt_mapper m;
    REQUIRE(pt_mapper_create(&tfa.fa, &m) == 0);

    void *lapic = mmio_ioremap(&pool, &m, PA(0xfee00020), 4);
    REQUIRE(lapic != NULL);
    CHECK_EQ((uintptr_t)lapic & (PAGE_SIZE - 1), 0x20);
    struct pt_mapping t;
    REQUIRE(translate_ok(&m, (uint64_t)(uintptr_t)lapic, &t));
    CHECK_EQ(t.pa.raw, 0xfee00020);
    CHECK_EQ(t.flags & MMIO_PTE_FLAGS, MMIO_PTE_FLAGS);

    /* 0x20 bytes across a page boundary: two pages, an 8 KiB block. */
    void *edge = mmio_ioremap(&pool, &m, PA(0x800ff0), 0x20);
    REQUIRE(edge != NULL);
    uint64_t ev = (uint64_t)(uintptr_t)edge;
    CHECK_EQ(ev & (PAGE_SIZE - 1), 0xff0);
    REQUIRE(translate_ok(&m, ev + 0x1f, &t));
    CHECK_EQ(t.pa.raw, 0x800ff0 + 0x1f);
    struct mmio_stats st;
    mmio_pool_stats(&pool, &st);
    CHECK_EQ(st.alloc_bytes, PAGE_SIZE + 2 * PAGE_SIZE);

    /* Write through the simulated RAM behind the second page, read back. */
    REQUIRE(translate_ok(&m, ev + 0x10, &t));
    CHECK_EQ(t.pa.raw, 0x801000);
    volatile uint32_t *cell = pa_to_ptr(t.pa);
    *cell = 0x1234abcd;
    REQUIRE(translate_ok(&m, ev + 0x10, &t));
    CHECK_EQ(*(volatile uint32_t *)pa_to_ptr(t.pa), 0x1234abcd);

    CHECK_EQ(mmio_iounmap(&pool, &m, lapic), 0);
    CHECK(!translate_ok(&m, (uint64_t)(uintptr_t)lapic, &t));
    harness_quiet = 1;
    CHECK_EQ(mmio_iounmap(&pool, &m, lapic), -MM_ENOENT);     /* twice */
    harness_quiet = 0;
    CHECK_EQ(mmio_iounmap(&pool, &m, edge), 0);
    CHECK(!translate_ok(&m, ev, &t));

    /* A whole 1 GiB window (1 GiB pages on this emulated CPU). */
    void *win = mmio_ioremap(&pool, &m, PA(UINT64_C(0x40000000)), GiB);
    REQUIRE(win != NULL);
    REQUIRE(translate_ok(&m, (uint64_t)(uintptr_t)win + GiB - 1, &t));
    CHECK_EQ(t.level, 3);
    CHECK_EQ(t.pa.raw, 0x40000000 + GiB - 1);
    CHECK_EQ(mmio_iounmap(&pool, &m, win), 0);

    CHECK(pool_is_initial());
    CHECK_EQ(pt_mapper_destroy(&m), 0);
    CHECK_EQ(tfa.outstanding, 0);
}

/*
 * Layout: a node is 32 bytes and a pair of buddies fills exactly one
 * 64-byte cache line (a release reads leaf and buddy with one miss); the
 * mapping record, packed into one word to get there, still holds a whole
 * 1 GiB mapping and the table it was made in.
 */
static void test_pair_layout_and_mapping_record(void)
{
    fresh_pool();
    CHECK_EQ(sizeof(struct vrange_node), 32);
    struct mmio_space small;
    REQUIRE(mmio_create(&pool, PAGE_SIZE, &small) == 0);
    unsigned depth = 0;
    for (const struct vrange_node *n = &pool.root[0]; n->order > 0; n = n->u.child[0]) {
        const struct vrange_node *lo = n->u.child[0], *hi = n->u.child[1];
        CHECK_EQ((uintptr_t)lo % 64, 0);
        CHECK(hi == lo + 1);
        CHECK(lo->parent == n && hi->parent == n);
        depth++;
    }
    CHECK_EQ(depth, MMIO_MAX_ORDER);

    struct pt_mapper m, other;
    REQUIRE(pt_mapper_create(&tfa.fa, &m) == 0);
    REQUIRE(pt_mapper_create(&tfa.fa, &other) == 0);
    struct mmio_space whole;
    REQUIRE(mmio_create(&pool, GiB, &whole) == 0);
    REQUIRE(mmio_map_phys(&pool, &whole, &m, PA(0x40000000), GiB) == 0);
    harness_quiet = 1;
    CHECK_EQ(mmio_map_phys(&pool, &whole, &m, PA(0x40000000), PAGE_SIZE), -MM_EEXIST);
    CHECK_EQ(mmio_release(&pool, &whole, &other), -MM_EINVAL);
    harness_quiet = 0;
    struct pt_mapping t;
    REQUIRE(translate_ok(&m, whole.va.raw + GiB - 1, &t));
    CHECK_EQ(t.pa.raw, 0x40000000 + GiB - 1);
    CHECK_EQ(mmio_release(&pool, &whole, &m), 0);
    CHECK(!translate_ok(&m, whole.va.raw, &t));
    CHECK(!translate_ok(&m, whole.va.raw + GiB - 1, &t));

    CHECK_EQ(mmio_release(&pool, &small, NULL), 0);
    CHECK(pool_is_initial());
    CHECK_EQ(pt_mapper_destroy(&other), 0);
    CHECK_EQ(pt_mapper_destroy(&m), 0);
    CHECK_EQ(tfa.outstanding, 0);
}

static void test_dump(void)
{
    fresh_pool();
    struct mmio_space s;
    REQUIRE(mmio_create(&pool, 64 * KiB, &s) == 0);
    unsigned long before = harness_log_lines;
    harness_quiet = 1;
    mmio_pool_dump(&pool);
    harness_quiet = 0;
    /* Header, orders 4..18 (15 lines), bookkeeping. */
    CHECK_EQ(harness_log_lines - before, 1 + 15 + 1);
    CHECK_EQ(mmio_release(&pool, &s, NULL), 0);
}

/* The invariant walk notices corruption (so the other tests can trust it). */
static void test_check_detects_corruption(void)
{
    fresh_pool();
    struct mmio_space s;
    REQUIRE(mmio_create(&pool, PAGE_SIZE, &s) == 0);
    pool.vr.free_count[5]++;
    EXPECT_PANIC(mmio_pool_check(&pool));
    CHECK(strstr(harness_panic_msg, "order 5") != NULL);
    pool.vr.lock = (mm_spinlock_t)MM_SPINLOCK_INIT;     /* the panic left it held */
    pool.vr.free_count[5]--;
    mmio_pool_check(&pool);

    /* Two free buddies that were not merged. */
    struct mmio_space t;
    REQUIRE(mmio_create(&pool, PAGE_SIZE, &t) == 0);    /* s's buddy */
    struct vrange_node *volatile parent = pool.root[0].u.child[0];
    while (parent->order > 1)
        parent = parent->u.child[0];
    parent->u.child[0]->kind = parent->u.child[1]->kind = 2;   /* both "free" */
    EXPECT_PANIC(mmio_pool_check(&pool));
    pool.vr.lock = (mm_spinlock_t)MM_SPINLOCK_INIT;
    parent->u.child[0]->kind = parent->u.child[1]->kind = 3;   /* allocated again */
    CHECK_EQ(mmio_release(&pool, &s, NULL), 0);
    CHECK_EQ(mmio_release(&pool, &t, NULL), 0);
    CHECK(pool_is_initial());
}

/* Several "CPUs" churn the pool at once; the lock keeps it consistent. */
struct worker {
    unsigned cpu;
    uint64_t seed;
    int errors;
};

static void *churn(void *arg)
{
    struct worker *w = arg;
    enum { CAP = 200 };
    struct mmio_space live[CAP];
    size_t n = 0;
    harness_cpu_id = w->cpu;
    for (int op = 0; op < 20000; op++) {
        if (n == 0 || (n < CAP && rng_next(&w->seed) % 2)) {
            unsigned k = (unsigned)(rng_next(&w->seed) % 16);
            if (mmio_create(&pool, order_bytes(k), &live[n]) != 0) {
                w->errors++;
                continue;
            }
            n++;
        } else {
            size_t i = rng_next(&w->seed) % n;
            if (mmio_release(&pool, &live[i], NULL) != 0)
                w->errors++;
            live[i] = live[--n];
        }
    }
    while (n > 0)
        if (mmio_release(&pool, &live[--n], NULL) != 0)
            w->errors++;
    return NULL;
}

static void test_concurrent_churn(void)
{
    fresh_pool();
    enum { NT = 4 };
    pthread_t th[NT];
    struct worker w[NT];
    for (unsigned i = 0; i < NT; i++) {
        w[i] = (struct worker){ i + 1, 1000 + i, 0 };
        REQUIRE(pthread_create(&th[i], NULL, churn, &w[i]) == 0);
    }
    for (unsigned i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(w[i].errors, 0);
    }
    mmio_pool_check(&pool);
    CHECK(pool_is_initial());
    CHECK_EQ(tfa.outstanding, 0);
}

/*
 * The hash shrinks as fast as blocks go: after a mass release it is back
 * to one segment, so the release that empties the pool does not have to
 * walk (and free) hundreds of segments with the lock held.
 */
static void test_hash_shrinks_with_releases(void)
{
    fresh_pool();
    enum { N = 20000 };
    struct mmio_space *s = calloc(N, sizeof(*s));
    REQUIRE(s != NULL);
    for (int i = 0; i < N; i++)
        REQUIRE(mmio_create(&pool, PAGE_SIZE, &s[i]) == 0);
    struct mmio_stats st;
    mmio_pool_stats(&pool, &st);
    CHECK(st.hash_frames >= N / HASH_SEG);          /* about one bucket per block */
    int over = -1;      /* blocks left the first time the table was too big */
    for (int i = N - 1; i >= 1; i--) {
        REQUIRE(mmio_release(&pool, &s[i], NULL) == 0);
        mmio_pool_stats(&pool, &st);
        /* never more than 4 buckets per block, or the first segment */
        uint64_t bound = (4 * (uint64_t)i + HASH_SEG - 1) / HASH_SEG;
        if (st.hash_frames > (bound > 1 ? bound : 1) && over < 0) {
            over = i;
            fprintf(stderr, "  %d blocks left: %lu hash frames, bound %lu\n", i,
                    (unsigned long)st.hash_frames, (unsigned long)bound);
        }
    }
    CHECK_EQ(over, -1);
    mmio_pool_stats(&pool, &st);
    CHECK_EQ(st.alloc_blocks, 1);
    CHECK_EQ(st.hash_frames, 1);
    mmio_pool_check(&pool);
    CHECK_EQ(mmio_release(&pool, &s[0], NULL), 0);
    CHECK(pool_is_initial());
    CHECK_EQ(tfa.outstanding, 0);
    free(s);
}

/* The pool gives frames back as blocks merge: it needs an allocator that
 * can free. */
static void test_init_needs_a_freeing_allocator(void)
{
    tfa_reset();
    struct frame_allocator no_free = { tfa.fa.alloc, NULL };
    struct mmio_pool p2;
    unsigned long lines = harness_log_lines;
    CHECK_EQ(mmio_pool_init(&p2, &no_free), -MM_EINVAL);
    CHECK_EQ(harness_log_lines, lines + 1);
    CHECK_EQ(mmio_pool_init(NULL, &tfa.fa), -MM_EINVAL);
    CHECK_EQ(mmio_pool_init(&p2, &tfa.fa), 0);
}

/* Defect 4: size 0 is no wildcard for the public call; the block stays. */
static void test_release_size_zero_refused(void)
{
    fresh_pool();
    struct mmio_space a;
    REQUIRE(mmio_create(&pool, 64 * KiB, &a) == 0);
    struct mmio_space zero = { a.va, 0 };
    REFUSED(mmio_release(&pool, &zero, NULL), -MM_EINVAL);
    CHECK_EQ(mmio_pool_check(&pool), 0);
    CHECK_EQ(mmio_release(&pool, &a, NULL), 0);
    CHECK(pool_is_initial());
    CHECK_EQ(tfa.outstanding, 0);
}

/* Defect 6: nothing at or above 2^(physical-address width) is mapped; the
 * width is read once, at pool init. */
static void test_phys_width_refused(void)
{
    unsigned saved = host_phys_addr_bits;
    host_phys_addr_bits = 39;
    fresh_pool();
    host_phys_addr_bits = 46;           /* the pool keeps what it read */
    struct pt_mapper m;
    REQUIRE(pt_mapper_create(&tfa.fa, &m) == 0);
    const uint64_t top = UINT64_C(1) << 39;

    REFUSED(mmio_ioremap(&pool, &m, PA(UINT64_C(1) << 40), PAGE_SIZE) == NULL ? -1 : 0, -1);
    REFUSED(mmio_ioremap(&pool, &m, PA(top), 1) == NULL ? -1 : 0, -1);
    REFUSED(mmio_ioremap(&pool, &m, PA(top - 8), 16) == NULL ? -1 : 0, -1);
    REFUSED(mmio_ioremap_mode(&pool, &m, PA(top), 4, MM_CACHE_WB_RO) == NULL ? -1 : 0, -1);
    struct mmio_space s;
    REQUIRE(mmio_create(&pool, 2 * PAGE_SIZE, &s) == 0);
    REFUSED(mmio_map_phys(&pool, &s, &m, PA(top - PAGE_SIZE), 2 * PAGE_SIZE), -MM_EINVAL);
    REFUSED(mmio_map_phys(&pool, &s, &m, PA(UINT64_C(1) << 51), PAGE_SIZE), -MM_EINVAL);

    /* The last bytes below the limit are fine. */
    CHECK_EQ(mmio_map_phys(&pool, &s, &m, PA(top - 2 * PAGE_SIZE), 2 * PAGE_SIZE), 0);
    void *last = mmio_ioremap(&pool, &m, PA(top - 8), 8);
    CHECK(last != NULL);
    struct pt_mapping t;
    REQUIRE(translate_ok(&m, (uint64_t)(uintptr_t)last + 7, &t));
    CHECK_EQ(t.pa.raw, top - 1);
    CHECK_EQ(mmio_iounmap(&pool, &m, last), 0);
    CHECK_EQ(mmio_release(&pool, &s, &m), 0);
    CHECK(pool_is_initial());
    CHECK_EQ(pt_mapper_destroy(&m), 0);
    CHECK_EQ(tfa.outstanding, 0);
    host_phys_addr_bits = saved;
}

/* Defect 13: iounmap takes exactly the pointer ioremap returned. */
static void test_iounmap_exact_pointer(void)
{
    fresh_pool();
    struct pt_mapper m;
    REQUIRE(pt_mapper_create(&tfa.fa, &m) == 0);
    char *reg = mmio_ioremap(&pool, &m, PA(0xfee00020), 0x10);
    char *whole = mmio_ioremap(&pool, &m, PA(0xfec00000), PAGE_SIZE);
    REQUIRE(reg != NULL && whole != NULL);

    REFUSED(mmio_iounmap(&pool, &m, reg - 0x20), -MM_EINVAL);     /* page start */
    REFUSED(mmio_iounmap(&pool, &m, reg + 4), -MM_EINVAL);
    REFUSED(mmio_iounmap(&pool, &m, reg + 0xfdf), -MM_EINVAL);   /* last byte of the page */
    REFUSED(mmio_iounmap(&pool, &m, whole + 8), -MM_EINVAL);
    struct pt_mapping t;
    CHECK(translate_ok(&m, (uint64_t)(uintptr_t)reg, &t));       /* still mapped */

    CHECK_EQ(mmio_iounmap(&pool, &m, reg), 0);
    CHECK_EQ(mmio_iounmap(&pool, &m, whole), 0);
    CHECK(!translate_ok(&m, (uint64_t)(uintptr_t)reg, &t));
    CHECK(pool_is_initial());
    CHECK_EQ(pt_mapper_destroy(&m), 0);
    CHECK_EQ(tfa.outstanding, 0);
}

/* Cache modes: UC as mmio_ioremap, WB_RO write-back and read-only;
 * iounmap undoes either. */
static void test_ioremap_cache_modes(void)
{
    fresh_pool();
    struct pt_mapper m;
    REQUIRE(pt_mapper_create(&tfa.fa, &m) == 0);
    char *uc = mmio_ioremap_mode(&pool, &m, PA(0xfed00010), 0x100, MM_CACHE_UC);
    char *wb = mmio_ioremap_mode(&pool, &m, PA(0x7fe0ff0), 0x40, MM_CACHE_WB_RO);
    REQUIRE(uc != NULL && wb != NULL);
    struct pt_mapping t;
    REQUIRE(translate_ok(&m, (uint64_t)(uintptr_t)uc, &t));
    CHECK_EQ(t.pa.raw, 0xfed00010);
    CHECK_EQ(t.flags & MMIO_PTE_FLAGS, MMIO_PTE_FLAGS);

    CHECK_EQ((uintptr_t)wb & (PAGE_SIZE - 1), 0xff0);
    for (uint64_t off = 0; off < 0x40; off += 0x3f) {     /* both pages */
        REQUIRE(translate_ok(&m, (uint64_t)(uintptr_t)wb + off, &t));
        CHECK_EQ(t.pa.raw, 0x7fe0ff0 + off);
        CHECK_EQ(t.flags & MMIO_PTE_FLAGS_WB_RO, MMIO_PTE_FLAGS_WB_RO);
        CHECK(!(t.flags & (PTE_PCD | PTE_PWT | PTE_WRITE | PTE_USER)));
        CHECK((t.flags & PTE_NX) && (t.flags & PTE_GLOBAL));
    }
    REFUSED(mmio_ioremap_mode(&pool, &m, PA(0x1000), 4, (enum mm_cache_mode)7) == NULL ? -1 : 0,
            -1);

    unsigned long sd = harness_shootdowns;
    CHECK_EQ(mmio_iounmap(&pool, &m, wb), 0);
    CHECK_EQ(mmio_iounmap(&pool, &m, uc), 0);
    CHECK_EQ(harness_shootdowns, sd + 2);
    CHECK(!translate_ok(&m, (uint64_t)(uintptr_t)wb, &t));
    CHECK(pool_is_initial());
    CHECK_EQ(pt_mapper_destroy(&m), 0);
    CHECK_EQ(tfa.outstanding, 0);
}

int main(void)
{
    RUN(test_init_state);
    RUN(test_create_split_and_merge);
    RUN(test_random_against_model);
    RUN(test_bad_input);
    RUN(test_node_frames_exhausted);
    RUN(test_hash_growth_without_frames);
    RUN(test_address_space_exhausted);
    RUN(test_map_flags_and_release_unmaps);
    RUN(test_map_out_of_frames);
    RUN(test_ioremap_keeps_offset);
    RUN(test_pair_layout_and_mapping_record);
    RUN(test_dump);
    RUN(test_check_detects_corruption);
    RUN(test_concurrent_churn);
    RUN(test_hash_shrinks_with_releases);
    RUN(test_init_needs_a_freeing_allocator);
    RUN(test_release_size_zero_refused);
    RUN(test_phys_width_refused);
    RUN(test_iounmap_exact_pointer);
    RUN(test_ioremap_cache_modes);
    return harness_finish();
}
