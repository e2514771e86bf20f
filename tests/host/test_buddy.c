/*
 * test_buddy.c - host tests of the buddy frame allocator (mm/buddy.c) over
 * simulated physical memory: every order, alignment, exhaustion, every
 * kind of bad input, odd seeding ranges, 1 GiB blocks, the frame-allocator
 * adapter, two threads sharing one allocator, a long random operation
 * sequence checked against a reference model (one byte per frame), and
 * the lazy per-GiB bitmap initialisation (garbage in untouched chunks is
 * never read; init touches only a few pages of a 64 GiB span).
 */
#define _GNU_SOURCE
#include "harness.h"

#include <pthread.h>
#include <sys/mman.h>
#include <mm/buddy.h>
#include <mm/log.h>
#include "../../mm/buddy_impl.h"       /* white-box: list blocks, frame states */

#define SIM_SIZE (4 * GiB)

extern __thread unsigned harness_cpu_id;

static struct buddy B;

static struct mm_area_list areas(unsigned n, const uint64_t (*r)[2])
{
    struct mm_area_list l = { .count = n };
    for (unsigned i = 0; i < n; i++) {
        l.area[i].start = PA(r[i][0]);
        l.area[i].end = PA(r[i][1]);
    }
    return l;
}

static int init_ranges(unsigned n, const uint64_t (*r)[2])
{
    struct mm_area_list l = areas(n, r);
    return buddy_init(&B, &l);
}

struct snapshot {
    struct buddy_usage u;
    uint64_t counts[BUDDY_NR_ORDERS];
};

static struct snapshot snap(void)
{
    struct snapshot s;
    buddy_usage(&B, &s.u);
    buddy_free_blocks(&B, s.counts);
    return s;
}

/* The state once every per-CPU cache is back in the free lists: the free
 * block counts then depend only on which frames are free. */
static struct snapshot snap_drained(void)
{
    buddy_drain_all(&B);
    return snap();
}

static bool snap_equal(const struct snapshot *a, const struct snapshot *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

/* Run a call expected to fail: exactly one log line, state unchanged. */
#define EXPECT_REJECTED(call, err)                                            \
    do {                                                                      \
        struct snapshot _before = snap();                                     \
        unsigned long _lines = harness_log_lines;                             \
        harness_quiet = 1;                                                    \
        int _rc = (call);                                                     \
        harness_quiet = 0;                                                    \
        CHECK_EQ(_rc, (err));                                                 \
        CHECK_EQ(harness_log_lines - _lines, 1);                              \
        struct snapshot _after = snap();                                      \
        CHECK(snap_equal(&_before, &_after));                                 \
    } while (0)

static bool pa_in_ranges(uint64_t pa, uint64_t npages)
{
    for (unsigned i = 0; i < B.ranges.count; i++)
        if (pa >= B.ranges.area[i].start.raw &&
            pa + npages * PAGE_SIZE <= B.ranges.area[i].end.raw)
            return true;
    return false;
}

/* ------------------------------------------------------------------ tests */

static void test_init_rejects_bad_lists(void)
{
    static const uint64_t unaligned[][2] = { { 0x1000, 0x2800 } };
    static const uint64_t overlap[][2] = { { 0x100000, 0x300000 }, { 0x200000, 0x400000 } };
    static const uint64_t unsorted[][2] = { { 0x800000, 0x900000 }, { 0x100000, 0x200000 } };
    static const uint64_t empty_area[][2] = { { 0x100000, 0x100000 } };
    static const uint64_t tiny[][2] = { { 0x100000, 0x104000 } };
    static const uint64_t huge[][2] = { { 0x100000, 0x200000 },
                                        { UINT64_C(1) << 45, (UINT64_C(1) << 45) + 0x100000 } };
    struct mm_area_list none = { .count = 0 };

    harness_quiet = 1;
    CHECK_EQ(buddy_init(&B, &none), -MM_EINVAL);
    CHECK_EQ(init_ranges(1, unaligned), -MM_EINVAL);
    CHECK_EQ(init_ranges(2, overlap), -MM_EINVAL);
    CHECK_EQ(init_ranges(2, unsorted), -MM_EINVAL);
    CHECK_EQ(init_ranges(1, empty_area), -MM_EINVAL);
    CHECK_EQ(init_ranges(1, tiny), -MM_ENOMEM);       /* metadata does not fit */
    CHECK_EQ(init_ranges(2, huge), -MM_EINVAL);       /* span over 16 TiB */
    harness_quiet = 0;
}

/* A refused list: rc, exactly one log line, and *b untouched byte for byte. */
static void expect_init_refused(const struct mm_area_list *l, int err)
{
    struct buddy saved;
    memcpy(&saved, &B, sizeof B);
    unsigned long lines = harness_log_lines;
    harness_quiet = 1;
    CHECK_EQ(buddy_init(&B, l), err);
    harness_quiet = 0;
    CHECK_EQ(harness_log_lines - lines, 1);
    CHECK(memcmp(&saved, &B, sizeof B) == 0);
}

/*
 * buddy_init validates with mm_area_list_check, so adjacent areas are
 * refused (they must be merged into one first), and it refuses an empty
 * list too.  Every refusal, including "the metadata fits nowhere", leaves
 * a working allocator in *b as it was.
 */
static void test_init_refusal_keeps_state(void)
{
    static const uint64_t good[][2] = { { 16 * MiB, 64 * MiB } };
    static const uint64_t adjacent[][2] = { { 1 * MiB, 2 * MiB }, { 2 * MiB, 64 * MiB } };
    static const uint64_t tiny[][2] = { { 1 * MiB, 1 * MiB + 4 * PAGE_SIZE },
                                        { 2 * MiB, 2 * MiB + 4 * PAGE_SIZE } };
    static const uint64_t huge[][2] = { { 1 * MiB, 2 * MiB },
                                        { UINT64_C(1) << 45, (UINT64_C(1) << 45) + MiB } };
    REQUIRE(init_ranges(1, good) == 0);
    phys_addr_t held;
    REQUIRE(buddy_alloc(&B, 4, &held) == 0);

    struct mm_area_list none = { .count = 0 };
    struct mm_area_list l;
    expect_init_refused(&none, -MM_EINVAL);
    l = areas(2, adjacent);
    expect_init_refused(&l, -MM_EINVAL);
    l = areas(2, tiny);
    expect_init_refused(&l, -MM_ENOMEM);
    l = areas(2, huge);
    expect_init_refused(&l, -MM_EINVAL);

    /* the same areas merged into one are fine */
    static const uint64_t merged[][2] = { { 1 * MiB, 64 * MiB } };
    CHECK_EQ(buddy_free(&B, held, 4), 0);
    buddy_check(&B);
    REQUIRE(init_ranges(1, merged) == 0);
    buddy_check(&B);
}

static void test_metadata_is_small(void)
{
    static const uint64_t sizes[] = { 256 * MiB, 512 * MiB, 1 * GiB, 4 * GiB - 2 * MiB };
    for (unsigned i = 0; i < 4; i++) {
        uint64_t r[1][2] = { { 1 * MiB, 1 * MiB + sizes[i] } };
        REQUIRE(init_ranges(1, (const uint64_t(*)[2])r) == 0);
        struct buddy_usage u;
        buddy_usage(&B, &u);
        CHECK_EQ(u.total_npages + u.meta_npages, sizes[i] / PAGE_SIZE);
        CHECK_EQ(u.free_npages, u.total_npages);
        CHECK_EQ(u.used_npages, 0);
        /* under 0.25% of the managed RAM (list reserve 2 bytes, back-indexes
         * 2 bytes and frame states 1 byte per frame, bitmaps, caches) */
        CHECK(u.meta_npages * 400 < u.total_npages);
        printf("# %lu MiB: metadata %lu KiB (%.3f%%)\n",
               (unsigned long)(sizes[i] / MiB), (unsigned long)(u.meta_npages * 4),
               100.0 * (double)u.meta_npages / (double)(sizes[i] / PAGE_SIZE));
        buddy_check(&B);
    }

    /* A 64 MiB guest: about 61 MiB managed (below 1 MiB, the kernel image
     * and boot allocations are not handed over), and exactly 64 MiB.  The
     * fixed part of the list reserve is 10 list blocks of 2 KiB. */
    static const uint64_t small[][2] = { { 3 * MiB, 64 * MiB }, { 0, 64 * MiB } };
    for (unsigned i = 0; i < 2; i++) {
        REQUIRE(init_ranges(1, &small[i]) == 0);
        uint64_t managed = (small[i][1] - small[i][0]) / PAGE_SIZE;
        struct buddy_usage u;
        buddy_usage(&B, &u);
        CHECK_EQ(u.total_npages + u.meta_npages, managed);
        /* metadata bytes under 0.25% of the managed bytes */
        CHECK(u.meta_npages * 400 < managed);
        /* list blocks: bulk floor((managed/2 + 1 area) / 508) + one per
         * order (see list_reserve_extra), two per
         * frame, the bitmaps right after the last one, then the caches,
         * the back-indexes (4 bytes per frame pair) and the frame states
         * (one byte per frame of the 64 MiB span) */
        uint64_t nblocks = (managed / 2 + 1) / 508 + BUDDY_NR_LIST_ORDERS;
        uint64_t fixed = nblocks * 2048 + MM_MAX_CPUS * 320 + 3 * (64 * MiB / PAGE_SIZE);
        CHECK_EQ(B.list_pool_nblocks, nblocks);
        CHECK(u.meta_npages * PAGE_SIZE >= fixed + 4 * KiB);
        CHECK(u.meta_npages * PAGE_SIZE < fixed + 8 * KiB + 2 * PAGE_SIZE);
        printf("# %lu KiB managed: metadata %lu KiB (%.3f%%), %lu list blocks\n",
               (unsigned long)(managed * 4), (unsigned long)(u.meta_npages * 4),
               100.0 * (double)u.meta_npages / (double)managed,
               (unsigned long)B.list_pool_nblocks);
        buddy_check(&B);
    }
}

static void test_each_order_alloc_free(void)
{
    static const uint64_t r[][2] = { { 0, 3 * GiB } };
    REQUIRE(init_ranges(1, r) == 0);
    struct snapshot init = snap();
    phys_addr_t held[BUDDY_NR_ORDERS];

    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++) {
        phys_addr_t pa;
        uint64_t npages = UINT64_C(1) << k;
        REQUIRE(buddy_alloc(&B, npages, &pa) == 0);
        CHECK(is_aligned_u64(pa.raw, npages * PAGE_SIZE));
        CHECK(pa_in_ranges(pa.raw, npages));
        struct buddy_usage u;
        buddy_usage(&B, &u);
        CHECK_EQ(u.used_npages, npages);
        CHECK_EQ(u.used_npages + u.free_npages, u.total_npages);
        CHECK_EQ(buddy_free(&B, pa, npages), 0);
        struct snapshot now = snap_drained();
        CHECK(snap_equal(&now, &init));
    }

    /* One block of every order at once, freed in a scrambled order. */
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++)
        REQUIRE(buddy_alloc(&B, UINT64_C(1) << k, &held[k]) == 0);
    buddy_check(&B);
    for (unsigned i = 0; i < BUDDY_NR_ORDERS; i++) {
        unsigned k = (i * 7) % BUDDY_NR_ORDERS;
        CHECK_EQ(buddy_free(&B, held[k], UINT64_C(1) << k), 0);
    }
    buddy_check(&B);
    struct snapshot end = snap_drained();
    CHECK(snap_equal(&end, &init));
}

static void test_split_leaves_one_block_per_order(void)
{
    static const uint64_t r[][2] = { { 0, 2 * GiB } };
    REQUIRE(init_ranges(1, r) == 0);
    uint64_t before[BUDDY_NR_ORDERS], after[BUDDY_NR_ORDERS];
    buddy_free_blocks(&B, before);
    CHECK_EQ(before[BUDDY_MAX_ORDER], 1);     /* the second GiB holds the metadata */

    /* Order 1: a single frame would go through the per-CPU cache, which
     * takes a whole batch. */
    phys_addr_t pa;
    REQUIRE(buddy_alloc(&B, 2, &pa) == 0);
    buddy_free_blocks(&B, after);
    uint64_t split_from = UINT64_MAX;
    for (unsigned k = 1; k < BUDDY_NR_ORDERS; k++)
        if (before[k] && after[k] == before[k] - 1 && split_from == UINT64_MAX)
            split_from = k;
    REQUIRE(split_from != UINT64_MAX);
    CHECK_EQ(after[0], before[0]);
    for (unsigned k = 1; k < split_from; k++)
        CHECK_EQ(after[k], before[k] + 1);
    CHECK_EQ(buddy_free(&B, pa, 2), 0);
    buddy_free_blocks(&B, after);
    CHECK(memcmp(before, after, sizeof before) == 0);
}

static void test_1g_blocks(void)
{
    /* Three GiB of RAM in two areas; the metadata lands in the small one. */
    static const uint64_t r[][2] = { { 16 * MiB, 64 * MiB }, { 1 * GiB, 4 * GiB } };
    REQUIRE(init_ranges(2, r) == 0);
    CHECK(B.meta_start.raw >= 16 * MiB && B.meta_end.raw <= 64 * MiB);
    struct snapshot init = snap();
    CHECK_EQ(init.counts[BUDDY_MAX_ORDER], 3);

    phys_addr_t pa[3], extra;
    for (int i = 0; i < 3; i++) {
        REQUIRE(buddy_alloc(&B, BUDDY_MAX_NPAGES, &pa[i]) == 0);
        CHECK(is_aligned_u64(pa[i].raw, GiB));
        CHECK(pa[i].raw >= GiB && pa[i].raw < 4 * GiB);
    }
    CHECK(pa[0].raw != pa[1].raw && pa[1].raw != pa[2].raw && pa[0].raw != pa[2].raw);
    CHECK_EQ(buddy_alloc(&B, BUDDY_MAX_NPAGES, &extra), -MM_ENOMEM);
    /* Smaller blocks still come from the first area. */
    CHECK_EQ(buddy_alloc(&B, 2048, &extra), 0);
    CHECK(extra.raw >= 16 * MiB && extra.raw < 64 * MiB);
    CHECK_EQ(buddy_free(&B, extra, 2048), 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(buddy_free(&B, pa[i], BUDDY_MAX_NPAGES), 0);
    struct snapshot end = snap_drained();
    CHECK(snap_equal(&end, &init));
    buddy_check(&B);
}

static void test_exhaustion_and_fragmentation(void)
{
    static const uint64_t r[][2] = { { 0x5000, 0x3000000 } };   /* 48 MiB, odd start */
    REQUIRE(init_ranges(1, r) == 0);
    struct snapshot init = snap();
    uint64_t total = init.u.total_npages;
    phys_addr_t *pas = calloc(total, sizeof *pas);
    REQUIRE(pas);

    uint64_t n = 0;
    phys_addr_t pa;
    while (buddy_alloc(&B, 1, &pa) == 0) {
        REQUIRE(n < total);
        pas[n++] = pa;
    }
    CHECK_EQ(n, total);
    struct snapshot full = snap();
    CHECK_EQ(full.u.free_npages, 0);
    CHECK_EQ(full.u.used_npages, total);
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++) {
        CHECK_EQ(buddy_alloc(&B, UINT64_C(1) << k, &pa), -MM_ENOMEM);
        struct snapshot again = snap();
        CHECK(snap_equal(&again, &full));
    }

    /* Free every frame with an even frame number: nothing can merge. */
    uint64_t freed = 0;
    for (uint64_t i = 0; i < n; i++)
        if ((pa_to_pfn(pas[i]) & 1) == 0) {
            CHECK_EQ(buddy_free(&B, pas[i], 1), 0);
            pas[i] = PA(UINT64_MAX);
            freed++;
        }
    struct snapshot frag = snap_drained();
    CHECK_EQ(frag.counts[0], freed);
    for (unsigned k = 1; k < BUDDY_NR_ORDERS; k++)
        CHECK_EQ(frag.counts[k], 0);
    CHECK_EQ(buddy_alloc(&B, 2, &pa), -MM_ENOMEM);
    buddy_check(&B);

    for (uint64_t i = 0; i < n; i++)
        if (pas[i].raw != UINT64_MAX)
            CHECK_EQ(buddy_free(&B, pas[i], 1), 0);
    struct snapshot end = snap_drained();
    CHECK(snap_equal(&end, &init));
    buddy_check(&B);
    free(pas);
}

/*
 * The list-block reserve's worst case (see list_reserve_extra in buddy.c):
 * one free block at each of the orders 1..9 (those with 2^(k-1) <= 508
 * entries per 2 KiB list block), an emptied list block kept at each larger
 * order that had blocks, plus every other remaining frame free at order 0.
 * The lists must fit in the reserve (running out panics) and come within
 * one list block of it, counting one for each order never used (a 128 MiB
 * area has no blocks above order 15), and after freeing everything the
 * layout is the initial one.
 */
static void test_list_reserve_worst_case(void)
{
    static const uint64_t r[][2] = { { 0x100000, 0x8100000 } };   /* 128 MiB */
    REQUIRE(init_ranges(1, r) == 0);
    struct snapshot init = snap();
    uint64_t total = init.u.total_npages;
    phys_addr_t *pas = calloc(total, sizeof *pas);
    REQUIRE(pas);
    uint64_t n = 0;
    phys_addr_t pa;
    while (buddy_alloc(&B, 1, &pa) == 0)
        pas[n++] = pa;
    REQUIRE(n == total);

    for (uint64_t i = 0; i < n; i++) {
        uint64_t rel = pa_to_pfn(pas[i]);            /* windows aligned in absolute frames */
        unsigned k = (unsigned)(rel / 2048);         /* window k holds order k */
        bool in_window = k >= 1 && k <= 9;
        /* window k: its first 2^k frames (one order-k block), and
         * everywhere every even frame (order 0; they cannot merge) */
        bool free_it = (rel & 1) == 0 || (in_window && (rel % 2048) < (UINT64_C(1) << k));
        if (free_it) {
            CHECK_EQ(buddy_free(&B, pas[i], 1), 0);
            pas[i] = PA(UINT64_MAX);
        }
    }
    struct snapshot worst = snap_drained();
    uint64_t blocks = 0, never_used = 0;
    for (unsigned k = 0; k < BUDDY_NR_LIST_ORDERS; k++)
        for (unsigned z = 0; z < BUDDY_NR_ZONES; z++) {
            bool listed = B.list[z][k].top.raw != UINT64_MAX;
            uint64_t n = B.list[z][k].nfree;
            blocks += n ? (n + 507) / 508 : listed;
            never_used += !listed;
        }
    for (unsigned k = 1; k <= 9; k++)
        CHECK_EQ(worst.counts[k], 1);
    CHECK_EQ(B.list_blocks_in_use, blocks);
    CHECK(B.list_blocks_in_use <= B.list_pool_nblocks);
    CHECK(B.list_blocks_in_use + never_used + 1 >= B.list_pool_nblocks);   /* tight */
    printf("# worst case: %lu list blocks in use of %lu reserved\n",
           (unsigned long)B.list_blocks_in_use, (unsigned long)B.list_pool_nblocks);
    buddy_check(&B);

    for (uint64_t i = 0; i < n; i++)
        if (pas[i].raw != UINT64_MAX)
            CHECK_EQ(buddy_free(&B, pas[i], 1), 0);
    struct snapshot end = snap_drained();
    CHECK(snap_equal(&end, &init));
    free(pas);
}

static void test_bad_input_rejected(void)
{
    static const uint64_t r[][2] = { { 1 * MiB, 64 * MiB }, { 128 * MiB, 256 * MiB } };
    REQUIRE(init_ranges(2, r) == 0);
    /* The metadata sits at the end of the first area, so small blocks come
     * from just below it; 8 MiB is managed and certainly not handed out. */
    CHECK(B.meta_end.raw == 64 * MiB);
    phys_addr_t pa, small, big;
    REQUIRE(buddy_alloc(&B, 1, &small) == 0);
    REQUIRE(buddy_alloc(&B, 16, &big) == 0);

    /* bad counts */
    EXPECT_REJECTED(buddy_alloc(&B, 0, &pa), -MM_EINVAL);
    EXPECT_REJECTED(buddy_alloc(&B, 3, &pa), -MM_EINVAL);
    EXPECT_REJECTED(buddy_alloc(&B, BUDDY_MAX_NPAGES * 2, &pa), -MM_EINVAL);
    EXPECT_REJECTED(buddy_free(&B, big, 0), -MM_EINVAL);
    EXPECT_REJECTED(buddy_free(&B, big, 12), -MM_EINVAL);
    EXPECT_REJECTED(buddy_free(&B, big, BUDDY_MAX_NPAGES * 2), -MM_EINVAL);
    /* misaligned */
    EXPECT_REJECTED(buddy_free(&B, PA(small.raw + 8), 1), -MM_EINVAL);
    EXPECT_REJECTED(buddy_free(&B, PA(big.raw + 4 * PAGE_SIZE), 16), -MM_EINVAL);
    /* outside the span, in a hole, in the metadata */
    EXPECT_REJECTED(buddy_free(&B, PA(8 * GiB), 1), -MM_EFAULT);
    EXPECT_REJECTED(buddy_free(&B, PA(96 * MiB), 1), -MM_EFAULT);
    EXPECT_REJECTED(buddy_free(&B, PA(0), 1), -MM_EFAULT);
    EXPECT_REJECTED(buddy_free(&B, B.meta_start, 1), -MM_EFAULT);
    EXPECT_REJECTED(buddy_free(&B, PA(0), BUDDY_MAX_NPAGES), -MM_EFAULT);
    /* never allocated, partial, wrong size, double free */
    EXPECT_REJECTED(buddy_free(&B, PA(8 * MiB), 1), -MM_ENOENT);
    EXPECT_REJECTED(buddy_free(&B, PA(8 * MiB), 16), -MM_ENOENT);
    EXPECT_REJECTED(buddy_free(&B, PA(big.raw + 8 * PAGE_SIZE), 8), -MM_ENOENT);
    EXPECT_REJECTED(buddy_free(&B, big, 8), -MM_ENOENT);
    phys_addr_t parent = PA(align_down_u64(big.raw, 32 * PAGE_SIZE));
    EXPECT_REJECTED(buddy_free(&B, parent, 32),
                    pa_in_ranges(parent.raw, 32) ? -MM_ENOENT : -MM_EFAULT);
    CHECK_EQ(buddy_free(&B, small, 1), 0);
    EXPECT_REJECTED(buddy_free(&B, small, 1), -MM_ENOENT);
    CHECK_EQ(buddy_free(&B, big, 16), 0);
    EXPECT_REJECTED(buddy_free(&B, big, 16), -MM_ENOENT);
    /* a free block that was merged into a larger free block */
    EXPECT_REJECTED(buddy_free(&B, PA(big.raw + PAGE_SIZE), 1), -MM_ENOENT);
    buddy_check(&B);
    struct snapshot end = snap_drained();
    CHECK_EQ(end.u.used_npages, 0);
}

static void test_odd_ranges_cover_exactly(void)
{
    static const uint64_t r[][2] = {
        { 0x3000, 0x9000 },
        { 0x1235000, 0x3fff000 },
        { 0x40001000, 0x43ffb000 },
        { 0x7ffff000, 0x80000000 },
        { 0x80001000, 0x80003000 },
    };
    REQUIRE(init_ranges(5, r) == 0);
    struct snapshot init = snap();
    uint64_t total = init.u.total_npages;
    uint64_t expect_managed = 0;
    for (int i = 0; i < 5; i++)
        expect_managed += (r[i][1] - r[i][0]) / PAGE_SIZE;
    CHECK_EQ(total + init.u.meta_npages, expect_managed);

    /* Every managed frame comes out exactly once, nothing else does. */
    uint8_t *seen = calloc(0x80003000 / PAGE_SIZE, 1);
    phys_addr_t *pas = calloc(total, sizeof *pas);
    REQUIRE(seen && pas);
    uint64_t n = 0;
    phys_addr_t pa;
    while (buddy_alloc(&B, 1, &pa) == 0) {
        REQUIRE(n < total);
        REQUIRE(pa.raw < 0x80003000);
        CHECK(pa_in_ranges(pa.raw, 1));
        CHECK(pa.raw < B.meta_start.raw || pa.raw >= B.meta_end.raw);
        CHECK(!seen[pa_to_pfn(pa)]);
        seen[pa_to_pfn(pa)] = 1;
        pas[n++] = pa;
    }
    CHECK_EQ(n, total);
    for (uint64_t i = n; i-- > 0;)        /* reverse order */
        CHECK_EQ(buddy_free(&B, pas[i], 1), 0);
    struct snapshot end = snap_drained();
    CHECK(snap_equal(&end, &init));
    buddy_check(&B);
    free(seen);
    free(pas);
}

/* Found by the fuzzer: a list block at physical address 0 was taken for "none". */
static void test_list_page_at_pa_zero(void)
{
    /* Size the first range so the metadata fills it exactly: list blocks at 0. */
    uint64_t r[2][2] = { { 0, 0x35000 }, { 0x100000, 0x400000 } };
    for (int i = 0; i < 3; i++) {
        REQUIRE(init_ranges(2, (const uint64_t(*)[2])r) == 0);
        r[0][1] = B.meta_end.raw - B.meta_start.raw;
    }
    REQUIRE(init_ranges(2, (const uint64_t(*)[2])r) == 0);
    CHECK_EQ(B.meta_start.raw, 0);
    CHECK_EQ(B.ranges.count, 1);
    struct snapshot init = snap();
    phys_addr_t pas[1024];
    unsigned n = 0;
    while (n < 1024 && buddy_alloc(&B, 1, &pas[n]) == 0)
        n++;
    CHECK_EQ(n, init.u.total_npages);
    buddy_check(&B);
    while (n--)
        CHECK_EQ(buddy_free(&B, pas[n], 1), 0);
    buddy_check(&B);
    struct snapshot end = snap_drained();
    CHECK(snap_equal(&end, &init));
}

static void test_dump_is_one_line(void)
{
    static const uint64_t r[][2] = { { 1 * MiB, 32 * MiB } };
    REQUIRE(init_ranges(1, r) == 0);
    unsigned long lines = harness_log_lines;
    buddy_dump(&B);
    CHECK_EQ(harness_log_lines - lines, 1);
}

static void test_frame_allocator_adapter(void)
{
    static const uint64_t r[][2] = { { 1 * MiB, 32 * MiB } };
    REQUIRE(init_ranges(1, r) == 0);
    struct snapshot init = snap();
    struct frame_allocator *fa = buddy_frame_allocator(&B);
    phys_addr_t a, b;
    CHECK_EQ(frame_alloc(fa, &a), 0);
    CHECK_EQ(frame_alloc(fa, &b), 0);
    CHECK(a.raw != b.raw);
    CHECK(is_aligned_u64(a.raw, PAGE_SIZE));
    memset(pa_to_ptr(a), 0xab, PAGE_SIZE);   /* frames are really usable */
    REQUIRE(fa->free);
    fa->free(fa, a);
    fa->free(fa, b);
    struct snapshot end = snap_drained();
    CHECK(snap_equal(&end, &init));
}

/* Allocate order-1 blocks until one has a free buddy (from a split);
 * returns the block, *buddy_out its free buddy. */
static phys_addr_t order1_with_free_buddy(phys_addr_t *buddy_out)
{
    for (int i = 0; i < 64; i++) {
        phys_addr_t a;
        if (buddy_alloc(&B, 2, &a) != 0)
            break;
        phys_addr_t buddy = PA(a.raw ^ (2 * PAGE_SIZE));
        uint64_t idx = (pa_to_pfn(buddy) - B.base_pfn) >> 1;
        if ((B.free_bits[1][idx / 64] >> (idx % 64)) & 1) {
            *buddy_out = buddy;
            return a;
        }
    }
    return PA(UINT64_MAX);
}

/* Panics on corrupt free-list metadata, in a short (scanned) list and in a
 * long (indexed) one; a write into a free block is harmless. */
static void test_corrupt_free_block_panics(void)
{
    static const uint64_t r[][2] = { { 1 * MiB, 32 * MiB } };
    REQUIRE(init_ranges(1, r) == 0);
    phys_addr_t buddy, a = order1_with_free_buddy(&buddy);
    REQUIRE(a.raw != UINT64_MAX);
    /* A use after free scribbling over the free buddy is harmless: no
     * metadata lives in free blocks. */
    memset(pa_to_ptr(buddy), 0x5a, 2 * PAGE_SIZE);
    buddy_check(&B);
    /* The order-1 list is short: the buddy's entry in its one list block is
     * found by a scan; a damaged entry is caught there. */
    REQUIRE(!((B.indexed_mask[BUDDY_LOW] >> 1) & 1));
    struct buddy_list_block *top = pa_to_ptr(B.list[BUDDY_LOW][1].top);
    uint64_t rel = pa_to_pfn(buddy) - B.base_pfn;
    for (uint32_t i = 0; i < top->count; i++)
        if (top->entry[i] == rel)
            top->entry[i] ^= 0x40;
    harness_quiet = 1;
    EXPECT_PANIC(buddy_free(&B, a, 2));
    harness_quiet = 0;
    CHECK(strstr(harness_panic_msg, "buddy: free block") != NULL &&
          strstr(harness_panic_msg, "missing from its list") != NULL);

    /* The allocator is dead after a panic (its lock is held); start over,
     * with 100 free order-1 blocks (every other one of 200 freed): indexed. */
    REQUIRE(init_ranges(1, r) == 0);
    static phys_addr_t held[200];
    for (int i = 0; i < 200; i++)
        REQUIRE(buddy_alloc(&B, 2, &held[i]) == 0);
    for (int i = 0; i < 200; i++)
        if (((pa_to_pfn(held[i]) >> 1) & 1) == 0)
            REQUIRE(buddy_free(&B, held[i], 2) == 0);
    REQUIRE((B.indexed_mask[BUDDY_LOW] >> 1) & 1);
    buddy_check(&B);
    phys_addr_t victim = PA(UINT64_MAX);
    for (int i = 0; i < 200 && victim.raw == UINT64_MAX; i++)
        if ((pa_to_pfn(held[i]) >> 1) & 1)
            victim = held[i];                   /* its buddy is free */
    REQUIRE(victim.raw != UINT64_MAX);
    B.slot_of[(pa_to_pfn(victim) - B.base_pfn - 2) >> 1] ^= 0x40;
    harness_quiet = 1;
    EXPECT_PANIC(buddy_free(&B, victim, 2));
    harness_quiet = 0;
    CHECK(strstr(harness_panic_msg, "buddy_free: corrupt back-index") != NULL);
}

/* ---------------------------------------------------------- random model */

struct live { uint64_t pa; unsigned order; uint64_t tag; };

static void run_random(uint64_t seed, unsigned nops, unsigned max_order)
{
    static const uint64_t r[][2] = {
        { 0x7000, 0x9f000 },
        { 1 * MiB, 200 * MiB },
        { 300 * MiB + 0x3000, 520 * MiB },
        { 1 * GiB, 1 * GiB + 64 * MiB + 0x1000 },
    };
    const uint64_t span_pages = (2 * GiB) / PAGE_SIZE;
    REQUIRE(init_ranges(4, r) == 0);
    struct snapshot init = snap();

    uint8_t *state = calloc(span_pages, 1);        /* 1 = allocated frame */
    struct live *live = calloc(nops, sizeof *live);
    REQUIRE(state && live);
    unsigned nlive = 0;
    uint64_t used = 0, rng = seed, freed_pa = UINT64_MAX;
    unsigned freed_order = 0, enomem = 0, nalloc = 0, nfree = 0, ndouble = 0;
    uint64_t peak_used = 0;

    for (unsigned op = 0; op < nops; op++) {
        uint64_t x = rng_next(&rng);
        if (nlive == 0 || x % 100 < 55) {
            /* smaller orders are far more likely */
            unsigned order = (unsigned)__builtin_ctzll((x >> 8) | (UINT64_C(1) << max_order));
            if (((x >> 40) & 7) == 0)      /* sometimes uniform: big blocks too */
                order = (unsigned)((x >> 20) % (max_order + 1));
            phys_addr_t pa;
            int rc = buddy_alloc(&B, UINT64_C(1) << order, &pa);
            if (rc) {
                CHECK_EQ(rc, -MM_ENOMEM);
                enomem++;
                continue;
            }
            uint64_t npages = UINT64_C(1) << order;
            REQUIRE(is_aligned_u64(pa.raw, npages * PAGE_SIZE));
            REQUIRE(pa_in_ranges(pa.raw, npages));
            for (uint64_t f = 0; f < npages; f++) {
                REQUIRE(!state[pa_to_pfn(pa) + f]);       /* no overlap */
                state[pa_to_pfn(pa) + f] = 1;
            }
            uint64_t tag = rng_next(&rng);
            *(uint64_t *)pa_to_ptr(pa) = tag;
            *(uint64_t *)((char *)pa_to_ptr(pa) + npages * PAGE_SIZE - 8) = ~tag;
            live[nlive++] = (struct live){ pa.raw, order, tag };
            used += npages;
            nalloc++;
            if (used > peak_used)
                peak_used = used;
        } else if (x % 100 < 97) {
            unsigned i = (unsigned)(rng_next(&rng) % nlive);
            struct live l = live[i];
            uint64_t npages = UINT64_C(1) << l.order;
            /* the allocator must never have written into a live block */
            CHECK_EQ(*(uint64_t *)pa_to_ptr(PA(l.pa)), l.tag);
            CHECK_EQ(*(uint64_t *)((char *)pa_to_ptr(PA(l.pa)) + npages * PAGE_SIZE - 8), ~l.tag);
            REQUIRE(buddy_free(&B, PA(l.pa), npages) == 0);
            for (uint64_t f = 0; f < npages; f++)
                state[(l.pa / PAGE_SIZE) + f] = 0;
            live[i] = live[--nlive];
            used -= npages;
            freed_pa = l.pa;
            freed_order = l.order;
            nfree++;
        } else if (freed_pa != UINT64_MAX && !state[freed_pa / PAGE_SIZE]) {
            /* a double free of the last freed block (its first frame is still free) */
            EXPECT_REJECTED(buddy_free(&B, PA(freed_pa), UINT64_C(1) << freed_order), -MM_ENOENT);
            ndouble++;
        }
        struct buddy_usage u;
        buddy_usage(&B, &u);
        REQUIRE(u.used_npages == used);
        REQUIRE(u.used_npages + u.free_npages == u.total_npages);
        if (op % 20000 == 0)
            buddy_check(&B);
    }
    buddy_check(&B);
    while (nlive) {
        struct live l = live[--nlive];
        REQUIRE(buddy_free(&B, PA(l.pa), UINT64_C(1) << l.order) == 0);
    }
    buddy_check(&B);
    struct snapshot end = snap_drained();
    CHECK(snap_equal(&end, &init));
    printf("# %u ops: %u allocs, %u frees, %u double frees, %u ENOMEM, peak %.1f%% used\n",
           nops, nalloc, nfree, ndouble, enomem, 100.0 * (double)peak_used / (double)init.u.total_npages);
    CHECK(nalloc > nops / 3 && nfree > nops / 3 && ndouble > 0);
    free(state);
    free(live);
}

static void test_random_small_orders(void)
{
    run_random(0x1234567, 100000, 6);
}

static void test_random_all_orders(void)
{
    /* Large orders make memory run out often: exercises -ENOMEM paths. */
    run_random(0xfeedbeef, 60000, BUDDY_MAX_ORDER);
}

/* ------------------------------------------------------ lazy chunk bitmaps */

static bool chunk_is_ready(uint64_t chunk)
{
    return (B.chunk_ready_bits[chunk / 64] >> (chunk % 64)) & 1;
}

static unsigned chunks_ready(void)
{
    unsigned n = 0;
    for (uint64_t c = 0; c < (B.span_npages + BUDDY_MAX_NPAGES - 1) / BUDDY_MAX_NPAGES; c++)
        n += chunk_is_ready(c);
    return n;
}

/* Resident pages of simulated memory in [start, end) (page aligned). */
static uint64_t resident_pages(uint64_t start, uint64_t end)
{
    uint64_t npages = (end - start) / PAGE_SIZE, n = 0;
    unsigned char *vec = malloc(npages);
    if (!vec || mincore(pa_to_ptr(PA(start)), end - start, vec)) {
        free(vec);
        return UINT64_MAX;
    }
    for (uint64_t i = 0; i < npages; i++)
        n += vec[i] & 1;
    free(vec);
    return n;
}

/* The bitmaps follow the last reserved list block in the carve (from the
 * frame holding their first word: mincore wants page-aligned ranges). */
static uint64_t bitmaps_start_pa(void)
{
    return align_down_u64(B.list_pool_base.raw + B.list_pool_nblocks * 2048, PAGE_SIZE);
}

/*
 * 8 GiB span, metadata full of garbage (as real RAM would be): chunks 2..7
 * get only blocks of 64 MiB and up at init and stay uninitialised.  Bad frees there
 * are refused without touching anything; then a random model run splits
 * those chunks and must see consistent state throughout.
 */
static void test_lazy_chunks_with_garbage(void)
{
    static const uint64_t r[][2] = { { 1 * MiB, 2 * GiB }, { 2 * GiB + 64 * MiB, 8 * GiB } };
    const uint64_t span_pages = 8 * GiB / PAGE_SIZE;
    sim_mem_fini();
    sim_mem_init(8 * GiB);

    REQUIRE(init_ranges(2, r) == 0);
    phys_addr_t meta_start = B.meta_start, meta_end = B.meta_end;
    memset(pa_to_ptr(meta_start), 0xa5, meta_end.raw - meta_start.raw);
    REQUIRE(init_ranges(2, r) == 0);               /* same layout, over garbage */
    REQUIRE(B.meta_start.raw == meta_start.raw && B.meta_end.raw == meta_end.raw);
    CHECK(B.meta_end.raw == 2 * GiB);
    for (uint64_t c = 0; c < 8; c++)
        CHECK_EQ(chunk_is_ready(c), c <= 1);   /* 1 MiB edge and carve; 64 MiB edge needs none */
    struct snapshot init = snap();
    CHECK_EQ(init.counts[BUDDY_MAX_ORDER], 5);
    buddy_check(&B);

    /* Never-allocated blocks in an untouched chunk: refused, nothing changes. */
    EXPECT_REJECTED(buddy_free(&B, PA(5 * GiB + 7 * PAGE_SIZE), 1), -MM_ENOENT);
    EXPECT_REJECTED(buddy_free(&B, PA(5 * GiB + 64 * PAGE_SIZE), 16), -MM_ENOENT);
    EXPECT_REJECTED(buddy_free(&B, PA(7 * GiB + 16 * MiB), 4096), -MM_ENOENT);
    EXPECT_REJECTED(buddy_free(&B, PA(3 * GiB), 1), -MM_ENOENT);
    EXPECT_REJECTED(buddy_free(&B, PA(2 * GiB + 4 * PAGE_SIZE), 1), -MM_EFAULT);
    CHECK_EQ(chunks_ready(), 2);
    buddy_check(&B);
    CHECK_EQ(chunks_ready(), 2);

    /* Random alloc/free across chunks against a model (1 = allocated). */
    uint8_t *state = calloc(span_pages, 1);
    struct live *live = calloc(20000, sizeof *live);
    REQUIRE(state && live);
    unsigned nlive = 0, nbad = 0;
    uint64_t used = 0, rng = 0x1a2b3c;
    for (unsigned op = 0; op < 20000; op++) {
        uint64_t x = rng_next(&rng);
        if (nlive == 0 || x % 100 < 55) {
            unsigned order = (unsigned)__builtin_ctzll((x >> 8) | (UINT64_C(1) << 8));
            if (((x >> 40) & 3) == 0)
                order = (unsigned)((x >> 20) % BUDDY_NR_ORDERS);
            uint64_t npages = UINT64_C(1) << order;
            phys_addr_t pa;
            int rc = buddy_alloc(&B, npages, &pa);
            if (rc) {
                CHECK_EQ(rc, -MM_ENOMEM);
                continue;
            }
            REQUIRE(is_aligned_u64(pa.raw, npages * PAGE_SIZE) && pa_in_ranges(pa.raw, npages));
            for (uint64_t f = 0; f < npages; f++) {
                REQUIRE(!state[pa_to_pfn(pa) + f]);
                state[pa_to_pfn(pa) + f] = 1;
            }
            live[nlive++] = (struct live){ pa.raw, order, 0 };
            used += npages;
        } else if (x % 100 < 95) {
            unsigned i = (unsigned)(rng_next(&rng) % nlive);
            struct live l = live[i];
            uint64_t npages = UINT64_C(1) << l.order;
            REQUIRE(buddy_free(&B, PA(l.pa), npages) == 0);
            memset(state + l.pa / PAGE_SIZE, 0, npages);
            live[i] = live[--nlive];
            used -= npages;
        } else {
            /* A frame nobody holds, anywhere in the span: refused. */
            uint64_t pfn = rng_next(&rng) % span_pages;
            if (state[pfn])
                continue;
            EXPECT_REJECTED(buddy_free(&B, pfn_to_pa(pfn), 1),
                            pa_in_ranges(pfn * PAGE_SIZE, 1) ? -MM_ENOENT : -MM_EFAULT);
            nbad++;
        }
        struct buddy_usage u;
        buddy_usage(&B, &u);
        REQUIRE(u.used_npages == used);
        if (op % 2000 == 0)
            buddy_check(&B);
    }
    unsigned ready = chunks_ready();
    printf("# 20000 ops over 8 GiB: %u bad frees, %u of 8 chunks initialised\n", nbad, ready);
    CHECK(ready >= 6 && nbad > 50);
    buddy_check(&B);
    while (nlive) {
        struct live l = live[--nlive];
        REQUIRE(buddy_free(&B, PA(l.pa), UINT64_C(1) << l.order) == 0);
    }
    buddy_check(&B);
    struct snapshot end = snap_drained();
    CHECK(snap_equal(&end, &init));
    free(state);
    free(live);
    sim_mem_fini();
    sim_mem_init(SIM_SIZE);
}

/*
 * A 64 GiB span of 1 GiB-aligned areas: init writes the bitmap words of
 * the one chunk holding the carve and the tiny eager ones, not the 8 MiB
 * of bitmaps over the whole span; reading (buddy_check, a refused free)
 * touches no further page.
 */
static void test_init_touches_few_bitmap_pages(void)
{
    static const uint64_t r[][2] = { { 0, 20 * GiB }, { 21 * GiB, 64 * GiB } };
    sim_mem_fini();
    sim_mem_init(64 * GiB);
    REQUIRE(init_ranges(2, r) == 0);
    uint64_t start = bitmaps_start_pa(), end = B.meta_end.raw;
    uint64_t touched = resident_pages(start, end);
    printf("# 64 GiB: bitmaps %lu KiB, %lu pages of them touched by init; %u chunks ready\n",
           (unsigned long)((end - start) / KiB), (unsigned long)touched, chunks_ready());
    CHECK(end - start > 4 * MiB);                  /* the bitmaps do span 64 GiB */
    /* One chunk's low-order words are 32 KiB at order 0 and 2 x 16 KiB at
     * order 1 down to 2 x 8 B at order 12 (at most ~80 pages counting
     * straddles), its 256 KiB of frame states (64 pages), the caches (5
     * pages), one back-index per seeded GiB block (64); all: far more. */
    CHECK(touched < 96 + 64 + 8 + 64);
    CHECK_EQ(chunks_ready(), 1);

    buddy_check(&B);
    EXPECT_REJECTED(buddy_free(&B, PA(33 * GiB + 5 * PAGE_SIZE), 1), -MM_ENOENT);
    CHECK_EQ(resident_pages(start, end), touched);
    CHECK_EQ(chunks_ready(), 1);
    sim_mem_fini();
    sim_mem_init(SIM_SIZE);
}

/* ---------------------------------------------------------------- threads */

static void *thread_churn(void *arg)
{
    harness_cpu_id = (unsigned)(uintptr_t)arg;
    uint64_t rng = 99 + (uintptr_t)arg;
    phys_addr_t held[64];
    unsigned order[64];
    unsigned n = 0;
    for (int i = 0; i < 200000; i++) {
        uint64_t x = rng_next(&rng);
        if (n < 64 && (n == 0 || x & 1)) {
            unsigned k = (unsigned)(x >> 8) % 5;
            if (buddy_alloc(&B, UINT64_C(1) << k, &held[n]) == 0) {
                *(volatile uint64_t *)pa_to_ptr(held[n]) = (uintptr_t)arg;
                order[n++] = k;
            }
        } else {
            n--;
            if (*(volatile uint64_t *)pa_to_ptr(held[n]) != (uintptr_t)arg)
                return (void *)1;            /* another thread got our block */
            if (buddy_free(&B, held[n], UINT64_C(1) << order[n]))
                return (void *)1;
        }
    }
    while (n--)
        buddy_free(&B, held[n], UINT64_C(1) << order[n]);
    return NULL;
}

static void test_two_threads_share_one_allocator(void)
{
    static const uint64_t r[][2] = { { 1 * MiB, 64 * MiB } };
    REQUIRE(init_ranges(1, r) == 0);
    struct snapshot init = snap();
    pthread_t t[2];
    void *ret[2];
    for (uintptr_t i = 0; i < 2; i++)
        REQUIRE(pthread_create(&t[i], NULL, thread_churn, (void *)(i + 1)) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], &ret[i]);
    CHECK(ret[0] == NULL && ret[1] == NULL);
    buddy_check(&B);
    struct snapshot end = snap_drained();
    CHECK(snap_equal(&end, &init));
}

int main(void)
{
    sim_mem_init(SIM_SIZE);
    RUN(test_init_rejects_bad_lists);
    RUN(test_init_refusal_keeps_state);
    RUN(test_metadata_is_small);
    RUN(test_each_order_alloc_free);
    RUN(test_split_leaves_one_block_per_order);
    RUN(test_1g_blocks);
    RUN(test_exhaustion_and_fragmentation);
    RUN(test_list_reserve_worst_case);
    RUN(test_bad_input_rejected);
    RUN(test_odd_ranges_cover_exactly);
    RUN(test_list_page_at_pa_zero);
    RUN(test_dump_is_one_line);
    RUN(test_frame_allocator_adapter);
    RUN(test_corrupt_free_block_panics);
    RUN(test_random_small_orders);
    RUN(test_random_all_orders);
    RUN(test_two_threads_share_one_allocator);
    RUN(test_lazy_chunks_with_garbage);
    RUN(test_init_touches_few_bitmap_pages);
    sim_mem_fini();
    return harness_finish();
}
