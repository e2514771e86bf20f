/*
 * test_vrange.c - host tests of the VA-range allocator (mm/vrange.c) on
 * its own, with two instances over different ranges alive at once: the
 * vmalloc range (512 GiB) and a 4 GiB range at the MMIO pool's base.
 *
 * A frame allocator over simulated physical memory supplies bookkeeping
 * frames; it counts what is outstanding, refuses double frees and can be
 * told to run dry after n more frames.  Random alloc/free sequences run
 * against a model of the live blocks of each instance, with vrange_check
 * along the way.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <mm/layout.h>
#include <mm/log.h>
#include <mm/vrange.h>

/* ------------------------------------------------- test frame allocator */

#define SIM_BYTES   (UINT64_C(256) << 20)
#define FA_FIRST_PA (UINT64_C(1) << 20)

static struct {
    struct frame_allocator fa;
    uint64_t next_pa, *stack, nstack, outstanding;
    uint8_t *out;           /* 1 per outstanding frame, by pfn */
    long fail_after;        /* frames left before -MM_ENOMEM; < 0: never */
} tfa;

static int tfa_alloc(struct frame_allocator *self, phys_addr_t *pa_out)
{
    (void)self;
    if (tfa.fail_after == 0)
        return -MM_ENOMEM;
    uint64_t pa;
    if (tfa.nstack)
        pa = tfa.stack[--tfa.nstack];
    else if (tfa.next_pa < SIM_BYTES)
        pa = (tfa.next_pa += PAGE_SIZE) - PAGE_SIZE;
    else
        return -MM_ENOMEM;
    if (tfa.fail_after > 0)
        tfa.fail_after--;
    if (tfa.out[pa >> PAGE_SHIFT]) {
        fprintf(stderr, "tfa_alloc: frame %" PRIx64 " handed out twice\n", pa);
        abort();
    }
    tfa.out[pa >> PAGE_SHIFT] = 1;
    tfa.outstanding++;
    memset(pa_to_ptr(PA(pa)), 0x5a, PAGE_SIZE);     /* no zeroed-memory luck */
    *pa_out = PA(pa);
    return 0;
}

static void tfa_free(struct frame_allocator *self, phys_addr_t pa)
{
    (void)self;
    if (pa.raw < FA_FIRST_PA || pa.raw >= SIM_BYTES || !tfa.out[pa.raw >> PAGE_SHIFT]) {
        fprintf(stderr, "tfa_free: frame %" PRIx64 " not outstanding\n", pa.raw);
        abort();
    }
    tfa.out[pa.raw >> PAGE_SHIFT] = 0;
    tfa.outstanding--;
    tfa.stack[tfa.nstack++] = pa.raw;
}

/* --------------------------------------------------------- two instances */

#define A_BASE  MM_VMALLOC_BASE
#define A_END   MM_VMALLOC_END
#define A_ROOTS VRANGE_NR_ROOTS(A_END - A_BASE)
#define B_BASE  MMIO_POOL_BASE
#define B_END   (MMIO_POOL_BASE + 4 * GiB)
#define B_ROOTS VRANGE_NR_ROOTS(B_END - B_BASE)

static struct vrange va_a, va_b;
static struct vrange_node roots_a[A_ROOTS], roots_b[B_ROOTS];

static void fresh(void)
{
    static bool sim_ready;
    if (!sim_ready) {
        sim_mem_init(SIM_BYTES);
        tfa.stack = calloc(SIM_BYTES / PAGE_SIZE, sizeof(uint64_t));
        tfa.out = calloc(SIM_BYTES / PAGE_SIZE, 1);
        sim_ready = true;
    }
    memset(tfa.out, 0, SIM_BYTES / PAGE_SIZE);
    tfa.fa = (struct frame_allocator){ tfa_alloc, tfa_free };
    tfa.next_pa = FA_FIRST_PA;
    tfa.nstack = tfa.outstanding = 0;
    tfa.fail_after = -1;
    REQUIRE(vrange_init(&va_a, "a", A_BASE, A_END, roots_a, A_ROOTS, &tfa.fa) == 0);
    REQUIRE(vrange_init(&va_b, "b", B_BASE, B_END, roots_b, B_ROOTS, &tfa.fa) == 0);
}

/* The instance is its roots, all free, holding no frame. */
static bool is_initial(struct vrange *vr)
{
    struct vrange_stats s;
    vrange_stats(vr, &s);
    for (unsigned k = 0; k < VRANGE_NR_ORDERS; k++)
        if (s.free_blocks[k] != (k == VRANGE_MAX_ORDER ? vr->nroots : 0))
            return false;
    return s.alloc_blocks == 0 && s.alloc_bytes == 0 && s.node_frames == 0 &&
           s.hash_frames == 0 && s.nodes_in_use == 0 &&
           s.free_bytes == vr->end - vr->base;
}

/* Snapshot of everything but the operation counters, to prove that a
 * refused call changed nothing. */
struct snap {
    struct vrange_stats a, b;
    uint64_t frames;
};

static void take_snap(struct snap *sn)
{
    vrange_stats(&va_a, &sn->a);
    vrange_stats(&va_b, &sn->b);
    sn->a.ops = sn->a.steps = sn->a.max_op_steps = 0;
    sn->b.ops = sn->b.steps = sn->b.max_op_steps = 0;
    sn->frames = tfa.outstanding;
}

static bool snap_same(const struct snap *a)
{
    struct snap b;
    take_snap(&b);
    return memcmp(a, &b, sizeof(b)) == 0;
}

static struct vrange_block blk(uint64_t va, uint64_t size)
{
    return (struct vrange_block){ VA(va), size };
}

/* ------------------------------------------------------------------ tests */

static void test_init_two_instances(void)
{
    fresh();
    CHECK(is_initial(&va_a));
    CHECK(is_initial(&va_b));
    CHECK_EQ(vrange_check(&va_a), 0);
    CHECK_EQ(vrange_check(&va_b), 0);
    CHECK_EQ(tfa.outstanding, 0);

    /* The lowest block comes first, in each instance's own range. */
    struct vrange_block x, y;
    REQUIRE(vrange_alloc(&va_a, 1, &x) == 0);
    REQUIRE(vrange_alloc(&va_b, GiB, &y) == 0);
    CHECK_EQ(x.va.raw, A_BASE);
    CHECK_EQ(x.size, PAGE_SIZE);
    CHECK_EQ(y.va.raw, B_BASE);
    CHECK_EQ(y.size, GiB);
    CHECK_EQ(vrange_free(&va_a, x), 0);
    CHECK_EQ(vrange_free(&va_b, y), 0);
    CHECK(is_initial(&va_a) && is_initial(&va_b));
}

static void test_bad_init(void)
{
    struct vrange vr;
    static struct vrange_node r[8];
    struct frame_allocator no_free = { tfa_alloc, NULL };
    fresh();
    REFUSED(vrange_init(&vr, "x", B_BASE + PAGE_SIZE, B_BASE + 2 * GiB, r, 2, &tfa.fa),
            -MM_EINVAL);
    REFUSED(vrange_init(&vr, "x", B_BASE, B_BASE + GiB + MiB, r, 1, &tfa.fa), -MM_EINVAL);
    REFUSED(vrange_init(&vr, "x", B_BASE, B_BASE, r, 0, &tfa.fa), -MM_EINVAL);
    REFUSED(vrange_init(&vr, "x", B_BASE, B_BASE + 4 * GiB, r, 3, &tfa.fa), -MM_EINVAL);
    REFUSED(vrange_init(&vr, "x", 0, VRANGE_MAX_RANGE + GiB, r, 8, &tfa.fa), -MM_EINVAL);
    REFUSED(vrange_init(&vr, "x", B_BASE, B_BASE + GiB, NULL, 1, &tfa.fa), -MM_EINVAL);
    REFUSED(vrange_init(&vr, "x", B_BASE, B_BASE + GiB, r, 1, &no_free), -MM_EINVAL);
    REFUSED(vrange_init(&vr, "x", B_BASE, B_BASE + GiB, r, 1, NULL), -MM_EINVAL);
    CHECK_EQ(vrange_init(&vr, "x", B_BASE, B_BASE + 8 * GiB, r, 8, &tfa.fa), 0);
    CHECK_EQ(vrange_check(&vr), 0);
}

struct model {
    struct vrange *vr;
    struct vrange_block live[1024];
    size_t n;
};

static bool overlaps(const struct model *m, struct vrange_block b)
{
    for (size_t i = 0; i < m->n; i++)
        if (b.va.raw < m->live[i].va.raw + m->live[i].size &&
            m->live[i].va.raw < b.va.raw + b.size)
            return true;
    return false;
}

/* One random alloc or free on m; checks the block it gets. */
static void random_op(struct model *m, uint64_t *rng, unsigned max_order)
{
    if (m->n == 0 || (m->n < 1024 && rng_next(rng) % 2)) {
        unsigned k = (unsigned)(rng_next(rng) % (max_order + 1));
        uint64_t hi = PAGE_SIZE << k, lo = k == 0 ? 0 : hi / 2;
        uint64_t size = lo + 1 + rng_next(rng) % (hi - lo);
        struct vrange_block b;
        harness_quiet = 1;
        int err = vrange_alloc(m->vr, size, &b);
        harness_quiet = 0;
        if (err) {
            CHECK_EQ(err, -MM_ENOMEM);      /* the small range fills up */
            return;
        }
        CHECK_EQ(b.size, hi);
        CHECK(is_aligned_u64(b.va.raw, b.size));
        CHECK(b.va.raw >= m->vr->base && b.va.raw + b.size <= m->vr->end);
        CHECK(!overlaps(m, b));
        m->live[m->n++] = b;
    } else {
        size_t i = rng_next(rng) % m->n;
        CHECK_EQ(vrange_free(m->vr, m->live[i]), 0);
        m->live[i] = m->live[--m->n];
    }
}

/* Both instances churn, interleaved; then everything goes back and they
 * are exactly their initial free blocks again.  Every operation stays
 * within O(log) steps. */
static void test_random_two_instances(void)
{
    fresh();
    static struct model ma, mb;
    ma = (struct model){ .vr = &va_a };
    mb = (struct model){ .vr = &va_b };
    uint64_t rng = 0x7a5e1234ULL;
    for (int op = 0; op < 40000; op++) {
        random_op(&ma, &rng, VRANGE_MAX_ORDER);
        random_op(&mb, &rng, 14);
        if (op % 5000 == 0) {
            CHECK_EQ(vrange_check(&va_a), 0);
            CHECK_EQ(vrange_check(&va_b), 0);
        }
    }
    CHECK_EQ(vrange_check(&va_a), 0);
    CHECK_EQ(vrange_check(&va_b), 0);
    struct vrange_stats sa, sb;
    vrange_stats(&va_a, &sa);
    vrange_stats(&va_b, &sb);
    CHECK_EQ(sa.alloc_blocks, ma.n);
    CHECK_EQ(sb.alloc_blocks, mb.n);
    while (ma.n > 0)
        CHECK_EQ(vrange_free(&va_a, ma.live[--ma.n]), 0);
    CHECK(is_initial(&va_a));
    CHECK(!is_initial(&va_b));          /* one instance does not touch the other */
    while (mb.n > 0)
        CHECK_EQ(vrange_free(&va_b, mb.live[--mb.n]), 0);
    CHECK(is_initial(&va_b));
    CHECK_EQ(tfa.outstanding, 0);

    /* A split or a merge per level, a few hash entries and buckets. */
    vrange_stats(&va_a, &sa);
    vrange_stats(&va_b, &sb);
    CHECK(sa.ops > 20000 && sb.ops > 20000);
    if (sa.max_op_steps > 2 * VRANGE_NR_ORDERS || sb.max_op_steps > 2 * VRANGE_NR_ORDERS)
        fprintf(stderr, "  max steps per op: %lu and %lu\n", (unsigned long)sa.max_op_steps,
                (unsigned long)sb.max_op_steps);
    CHECK(sa.max_op_steps <= 2 * VRANGE_NR_ORDERS);
    CHECK(sb.max_op_steps <= 2 * VRANGE_NR_ORDERS);
}

/* Every 4 KiB block of a 2 MiB block, freed in random order, merges back
 * into the initial 1 GiB blocks. */
static void test_coalesce_back(void)
{
    fresh();
    enum { N = 512 };
    static struct vrange_block b[N];
    for (int i = 0; i < N; i++) {
        REQUIRE(vrange_alloc(&va_b, PAGE_SIZE, &b[i]) == 0);
        CHECK_EQ(b[i].va.raw, B_BASE + (uint64_t)i * PAGE_SIZE);    /* they tile 2 MiB */
    }
    struct vrange_stats s;
    vrange_stats(&va_b, &s);
    for (unsigned k = 0; k < VRANGE_NR_ORDERS; k++)     /* 2 MiB .. 512 MiB buddies */
        CHECK_EQ(s.free_blocks[k], k < 9 ? 0 : k < VRANGE_MAX_ORDER ? 1 : B_ROOTS - 1);
    uint64_t rng = 99;
    for (int i = N - 1; i > 0; i--) {
        int j = (int)(rng_next(&rng) % (uint64_t)(i + 1));
        struct vrange_block t = b[i];
        b[i] = b[j];
        b[j] = t;
    }
    for (int i = 0; i < N; i++) {
        CHECK_EQ(vrange_free(&va_b, b[i]), 0);
        if (i % 64 == 0)
            CHECK_EQ(vrange_check(&va_b), 0);
    }
    CHECK(is_initial(&va_b));
    CHECK_EQ(tfa.outstanding, 0);
}

/* Out of addresses or of bookkeeping frames: -MM_ENOMEM, nothing changed. */
static void test_exhaustion(void)
{
    fresh();
    struct vrange_block g[B_ROOTS], s;
    for (unsigned i = 0; i < B_ROOTS; i++)
        REQUIRE(vrange_alloc(&va_b, GiB, &g[i]) == 0);
    REFUSED(vrange_alloc(&va_b, 1, &s), -MM_ENOMEM);
    REFUSED(vrange_alloc(&va_b, GiB, &s), -MM_ENOMEM);
    CHECK_EQ(vrange_alloc(&va_a, GiB, &s), 0);      /* the other instance has room */
    CHECK_EQ(vrange_free(&va_a, s), 0);
    for (unsigned i = 0; i < B_ROOTS; i++)
        CHECK_EQ(vrange_free(&va_b, g[i]), 0);

    /* No frame for the hash or for the split nodes. */
    tfa.fail_after = 0;
    REFUSED(vrange_alloc(&va_b, PAGE_SIZE, &s), -MM_ENOMEM);
    tfa.fail_after = 1;                             /* the hash, not the nodes */
    REFUSED(vrange_alloc(&va_b, PAGE_SIZE, &s), -MM_ENOMEM);
    tfa.fail_after = -1;
    CHECK(is_initial(&va_b));
    CHECK_EQ(tfa.outstanding, 0);
    /* Frees never need memory. */
    REQUIRE(vrange_alloc(&va_b, PAGE_SIZE, &s) == 0);
    tfa.fail_after = 0;
    CHECK_EQ(vrange_free(&va_b, s), 0);
    tfa.fail_after = -1;
    CHECK(is_initial(&va_b));
}

static void test_bad_releases(void)
{
    fresh();
    struct vrange_block a, b, x;
    REQUIRE(vrange_alloc(&va_b, 16 * KiB, &a) == 0);
    REQUIRE(vrange_alloc(&va_a, 8 * KiB, &b) == 0);
    uint64_t tag;

    REFUSED(vrange_free(&va_b, blk(B_BASE - PAGE_SIZE, PAGE_SIZE)), -MM_EFAULT);
    REFUSED(vrange_free(&va_b, blk(B_END, PAGE_SIZE)), -MM_EFAULT);
    REFUSED(vrange_free(&va_b, b), -MM_EFAULT);             /* the other instance's */
    REFUSED(vrange_free(&va_b, blk(a.va.raw + 8, a.size)), -MM_EINVAL);
    REFUSED(vrange_free(&va_b, blk(a.va.raw, 8 * KiB)), -MM_EINVAL);
    REFUSED(vrange_free(&va_b, blk(a.va.raw, 0)), -MM_EINVAL);
    REFUSED(vrange_release(&va_b, blk(a.va.raw, 0), &tag), -MM_EINVAL);
    REFUSED(vrange_claim(&va_b, blk(a.va.raw, 0), &tag), -MM_EINVAL);
    REFUSED(vrange_free(&va_b, blk(a.va.raw + PAGE_SIZE, PAGE_SIZE)), -MM_ENOENT);
    REFUSED(vrange_free(&va_b, blk(B_BASE + 2 * GiB, PAGE_SIZE)), -MM_ENOENT);
    REFUSED(vrange_find(&va_b, VA(a.va.raw + PAGE_SIZE), &x, &tag), -MM_ENOENT);

    /* A claimed block belongs to its claimer. */
    REQUIRE(vrange_claim(&va_b, a, &tag) == 0);
    CHECK_EQ(tag, 0);
    REFUSED(vrange_free(&va_b, a), -MM_EBUSY);
    REFUSED(vrange_claim(&va_b, a, &tag), -MM_EBUSY);
    REFUSED(vrange_release(&va_b, a, &tag), -MM_EBUSY);
    REFUSED(vrange_find(&va_b, a.va, &x, &tag), -MM_EBUSY);
    EXPECT_PANIC(vrange_unclaim(&va_b, b.va, 0));        /* not claimed */
    va_b.lock = (mm_spinlock_t)MM_SPINLOCK_INIT;          /* the panic left it held */
    vrange_unclaim(&va_b, a.va, 0);

    /* Double free. */
    CHECK_EQ(vrange_free(&va_b, a), 0);
    REFUSED(vrange_free(&va_b, a), -MM_ENOENT);
    CHECK_EQ(vrange_free(&va_a, b), 0);
    CHECK(is_initial(&va_a) && is_initial(&va_b));
    CHECK_EQ(tfa.outstanding, 0);
}

/* Tags: 0 when handed out, kept across claims; vrange_release frees an
 * untagged block at once and claims a tagged one. */
static void test_tags_and_claims(void)
{
    fresh();
    struct vrange_block a, b, f;
    uint64_t tag = 99;
    REQUIRE(vrange_alloc(&va_a, 3 * MiB, &a) == 0);
    CHECK_EQ(a.size, 4 * MiB);
    REQUIRE(vrange_alloc(&va_a, PAGE_SIZE, &b) == 0);
    CHECK_EQ(vrange_find(&va_a, a.va, &f, &tag), 0);
    CHECK(f.va.raw == a.va.raw && f.size == a.size && tag == 0);

    CHECK_EQ(vrange_claim(&va_a, a, &tag), 0);
    vrange_unclaim(&va_a, a.va, 0x1234);
    CHECK_EQ(vrange_find(&va_a, a.va, &f, &tag), 0);
    CHECK_EQ(tag, 0x1234);
    CHECK_EQ(vrange_check(&va_a), 0);

    tag = 0;
    CHECK_EQ(vrange_release(&va_a, a, &tag), VRANGE_CLAIMED);
    CHECK_EQ(tag, 0x1234);
    CHECK_EQ(vrange_check(&va_a), 0);
    vrange_unclaim(&va_a, a.va, tag);                 /* keep it after all */
    CHECK_EQ(vrange_release(&va_a, a, &tag), VRANGE_CLAIMED);
    vrange_free_claimed(&va_a, a.va);
    CHECK_EQ(vrange_release(&va_a, b, &tag), 0);      /* untagged: freed at once */
    CHECK(is_initial(&va_a));

    /* vrange_claim_at: find by address alone and claim in one step; while
     * claimed, every other call on the block is refused. */
    REQUIRE(vrange_alloc(&va_a, 2 * MiB, &a) == 0);
    CHECK_EQ(vrange_claim(&va_a, a, &tag), 0);
    vrange_unclaim(&va_a, a.va, 0x55);
    CHECK_EQ(vrange_claim_at(&va_a, a.va, &f, &tag), 0);
    CHECK(f.va.raw == a.va.raw && f.size == 2 * MiB && tag == 0x55);
    CHECK_EQ(vrange_claim_at(&va_a, a.va, &f, &tag), -MM_EBUSY);
    CHECK_EQ(vrange_free(&va_a, a), -MM_EBUSY);
    CHECK_EQ(vrange_find(&va_a, a.va, &f, &tag), -MM_EBUSY);
    CHECK_EQ(vrange_claim_at(&va_a, VA(a.va.raw + PAGE_SIZE), &f, &tag), -MM_ENOENT);
    vrange_free_claimed(&va_a, a.va);
    CHECK(is_initial(&va_a));

    /* vrange_free ignores the tag. */
    REQUIRE(vrange_alloc(&va_b, PAGE_SIZE, &a) == 0);
    CHECK_EQ(vrange_claim(&va_b, a, &tag), 0);
    vrange_unclaim(&va_b, a.va, 7);
    CHECK_EQ(vrange_free(&va_b, a), 0);
    CHECK(is_initial(&va_b));
    EXPECT_PANIC(vrange_free_claimed(&va_b, a.va));    /* not even allocated */
    va_b.lock = (mm_spinlock_t)MM_SPINLOCK_INIT;
    CHECK_EQ(tfa.outstanding, 0);
}

/* The invariant walk notices corruption (so the other tests can trust it). */
static void test_check_detects_corruption(void)
{
    fresh();
    struct vrange_block s;
    REQUIRE(vrange_alloc(&va_b, PAGE_SIZE, &s) == 0);
    va_b.free_count[3]++;
    EXPECT_PANIC(vrange_check(&va_b));
    CHECK(strstr(harness_panic_msg, "order 3") != NULL);
    va_b.lock = (mm_spinlock_t)MM_SPINLOCK_INIT;
    va_b.free_count[3]--;
    va_b.alloc_bytes += PAGE_SIZE;
    EXPECT_PANIC(vrange_check(&va_b));
    va_b.lock = (mm_spinlock_t)MM_SPINLOCK_INIT;
    va_b.alloc_bytes -= PAGE_SIZE;
    CHECK_EQ(vrange_check(&va_b), 0);
    CHECK_EQ(vrange_free(&va_b, s), 0);
    CHECK(is_initial(&va_b));
}

int main(void)
{
    RUN(test_init_two_instances);
    RUN(test_bad_init);
    RUN(test_random_two_instances);
    RUN(test_coalesce_back);
    RUN(test_exhaustion);
    RUN(test_bad_releases);
    RUN(test_tags_and_claims);
    RUN(test_check_detects_corruption);
    return harness_finish();
}
