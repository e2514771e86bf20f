/*
 * test_dma.c - host tests of the buddy's two zones and of allocation below
 * a physical limit (mm/buddy.c, mm/buddy_dma.c) over simulated memory
 * with RAM on both sides of 4 GiB:
 *  - ordinary allocations (every order, single frames through the per-CPU
 *    cache included) take no frame below 4 GiB while a large enough high
 *    block is free, and after every high frame is taken a 16 MiB block
 *    below 4 GiB is still there;
 *  - buddy_alloc_below for limits 16 MiB, 1 GiB, 4 GiB, 8 GiB and above
 *    the RAM: every block lies below the limit, aligned, in RAM, no two
 *    overlap, and it keeps serving until every frame below the limit is
 *    taken; everything freed gives the initial state back;
 *  - bad counts and limits are refused with one log line and no change;
 *  - buddy_dma_alloc / buddy_dma_free: zeroed, aligned, below max_pa,
 *    the direct-map address, its refusals.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <mm/buddy.h>
#include <mm/dma.h>
#include <mm/log.h>
#include "../../mm/buddy_impl.h"       /* white-box: the zone lists */

#define SIM_SIZE  (8 * GiB)
#define FOUR_GIB  (4 * GiB)

static struct buddy B;

/* Low RAM from 1 MiB, a hole, high RAM from 4 GiB. */
static const uint64_t two_sides[][2] = {
    { 1 * MiB, 512 * MiB }, { 1 * GiB, 1 * GiB + 256 * MiB }, { 4 * GiB, 4 * GiB + 512 * MiB },
};

/* Start over on the ranges r[0..n). */
static int init_ranges(unsigned n, const uint64_t (*r)[2])
{
    struct mm_area_list l = { .count = n };
    for (unsigned i = 0; i < n; i++)
        l.area[i] = (struct mm_area){ PA(r[i][0]), PA(r[i][1]) };
    return buddy_init(&B, &l);
}

/* What a refused call must not change (harness.h, REFUSED): the usage and
 * the length of every list of both zones. */
struct snap {
    struct buddy_usage u;
    uint64_t nfree[BUDDY_NR_ZONES][BUDDY_NR_ORDERS];
};

static void take_snap(struct snap *s)
{
    memset(s, 0, sizeof *s);
    buddy_usage(&B, &s->u);
    for (unsigned z = 0; z < BUDDY_NR_ZONES; z++)
        buddy_free_blocks_zone(&B, z, s->nfree[z]);
}

static bool snap_same(const struct snap *s)
{
    struct snap now;
    take_snap(&now);
    return memcmp(s, &now, sizeof now) == 0;
}

/* The state once this CPU's cache went back to the lists. */
static struct snap drained(void)
{
    struct snap s;
    buddy_drain_all(&B);
    take_snap(&s);
    return s;
}

/* Frames of the managed ranges (metadata carved out) below limit. */
static uint64_t managed_below(uint64_t limit)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < B.ranges.count; i++) {
        uint64_t s = B.ranges.area[i].start.raw, e = B.ranges.area[i].end.raw;
        if (e > limit)
            e = limit;
        if (s < e)
            n += (e - s) / PAGE_SIZE;
    }
    return n;
}

/* Does [pa, pa + npages frames) lie in one managed range? */
static bool in_ranges(uint64_t pa, uint64_t npages)
{
    const struct mm_area *a = B.ranges.area, *end = a + B.ranges.count;
    while (a < end && a->end.raw <= pa)
        a++;
    return a < end && a->start.raw <= pa && pa + npages * PAGE_SIZE <= a->end.raw;
}

/* Blocks held by a test, with a byte per frame of the simulated memory to
 * catch overlaps. */
#define MAX_HELD (1u << 20)
static struct held { uint64_t pa, npages; } held[MAX_HELD];
static unsigned nheld;
static uint8_t *owner;                          /* one byte per frame */

static void hold(uint64_t pa, uint64_t npages)
{
    REQUIRE(nheld < MAX_HELD);
    for (uint64_t i = 0; i < npages; i++) {
        CHECK(owner[pa / PAGE_SIZE + i] == 0);  /* handed out twice */
        owner[pa / PAGE_SIZE + i] = 1;
    }
    held[nheld++] = (struct held){ pa, npages };
}

static void release_all(void)
{
    while (nheld > 0) {
        struct held h = held[--nheld];
        CHECK_EQ(buddy_free(&B, PA(h.pa), h.npages), 0);
        for (uint64_t i = 0; i < h.npages; i++)
            owner[h.pa / PAGE_SIZE + i] = 0;
    }
}

/* Free frames of zone z in the free lists and the top tier (the caches
 * not counted). */
static uint64_t zone_free_frames(unsigned z, unsigned min_order)
{
    uint64_t counts[BUDDY_NR_ORDERS], n = 0;
    buddy_free_blocks_zone(&B, z, counts);
    for (unsigned k = min_order; k < BUDDY_NR_ORDERS; k++)
        n += counts[k] << k;
    return n;
}

/* ------------------------------------------------------------------ tests */

/*
 * Orders cycling 0..10: every block comes from above 4 GiB until the first
 * one from below; at that moment no high block of that order or more is
 * free (and for single frames, none at all, as the cache never mixes
 * zones).  Then high memory runs out entirely, and 16 MiB below 4 GiB is
 * still there.
 */
static void test_ordinary_requests_prefer_high(void)
{
    REQUIRE(init_ranges(3, two_sides) == 0);
    struct snap init = drained();
    uint64_t high_total = zone_free_frames(BUDDY_HIGH, 0);
    CHECK(high_total > 0 && zone_free_frames(BUDDY_LOW, 0) > 0);
    uint64_t high_taken = 0;
    bool saw_low = false;
    for (unsigned i = 0; !saw_low; i++) {
        unsigned k = i % 11;
        phys_addr_t pa;
        REQUIRE(buddy_alloc(&B, UINT64_C(1) << k, &pa) == 0);
        if (pa.raw < FOUR_GIB) {
            saw_low = true;
            CHECK_EQ(zone_free_frames(BUDDY_HIGH, k), 0);
            uint64_t cached_high = 0;
            for (uint32_t c = 0; c < B.pcp[0].count; c++)
                cached_high += B.pcp[0].entry[c] >= (B.high_rel);
            CHECK_EQ(high_taken + zone_free_frames(BUDDY_HIGH, 0) + cached_high, high_total);
            CHECK(buddy_free(&B, pa, UINT64_C(1) << k) == 0);
        } else {
            hold(pa.raw, UINT64_C(1) << k);
            high_taken += UINT64_C(1) << k;
        }
    }
    /* Take what is left above 4 GiB, single frames last. */
    for (unsigned k = 10; k-- > 0;) {
        phys_addr_t pa;
        while (zone_free_frames(BUDDY_HIGH, k) > 0) {
            REQUIRE(buddy_alloc(&B, UINT64_C(1) << k, &pa) == 0);
            CHECK(pa.raw >= FOUR_GIB);
            hold(pa.raw, UINT64_C(1) << k);
            high_taken += UINT64_C(1) << k;
        }
    }
    buddy_drain_cpu(&B, 0);
    while (high_taken < high_total) {             /* frames our cache held */
        phys_addr_t pa;
        REQUIRE(buddy_alloc(&B, 1, &pa) == 0);
        CHECK(pa.raw >= FOUR_GIB);
        hold(pa.raw, 1);
        high_taken++;
    }
    CHECK_EQ(zone_free_frames(BUDDY_HIGH, 0), 0);
    /* Every high frame taken: an ordinary request now gets low memory, and
     * a 16 MiB block below 4 GiB is still free. */
    phys_addr_t pa;
    CHECK_EQ(buddy_alloc_below(&B, 4096, PA(FOUR_GIB), &pa), 0);
    CHECK(pa.raw + 16 * MiB <= FOUR_GIB && is_aligned_u64(pa.raw, 16 * MiB));
    hold(pa.raw, 4096);
    buddy_check(&B);
    release_all();
    buddy_check(&B);
    buddy_drain_all(&B);
    CHECK(snap_same(&init));
}

/* Single frames only: a refill of the cache never mixes zones, so not one
 * low frame is handed out while a high frame is free anywhere. */
static void test_single_frames_prefer_high(void)
{
    static const uint64_t r[][2] = { { 1 * MiB, 64 * MiB }, { 4 * GiB, 4 * GiB + 8 * MiB } };
    REQUIRE(init_ranges(2, r) == 0);
    uint64_t high_total = zone_free_frames(BUDDY_HIGH, 0);
    for (uint64_t i = 0; i < high_total; i++) {
        phys_addr_t pa;
        REQUIRE(buddy_alloc(&B, 1, &pa) == 0);
        CHECK(pa.raw >= FOUR_GIB);
        hold(pa.raw, 1);
    }
    phys_addr_t pa;
    REQUIRE(buddy_alloc(&B, 1, &pa) == 0);
    CHECK(pa.raw < FOUR_GIB);
    hold(pa.raw, 1);
    release_all();
    buddy_check(&B);
}

/* A low frame given back (a 4 KiB DMA buffer, say) goes to the low lists,
 * not to this CPU's frame cache, from which the next ordinary request
 * would take it while high memory is free. */
static void test_freed_low_frame_not_reused_while_high_free(void)
{
    static const uint64_t r[][2] = { { 1 * MiB, 64 * MiB }, { 4 * GiB, 4 * GiB + 64 * MiB } };
    REQUIRE(init_ranges(2, r) == 0);
    phys_addr_t low, pa;
    REQUIRE(buddy_alloc_below(&B, 1, PA(16 * MiB), &low) == 0);
    CHECK(low.raw < 16 * MiB);
    REQUIRE(buddy_free(&B, low, 1) == 0);
    for (unsigned i = 0; i < 200; i++) {        /* more than a cache's worth */
        REQUIRE(buddy_alloc(&B, 1, &pa) == 0);
        CHECK(pa.raw >= FOUR_GIB);
        hold(pa.raw, 1);
    }
    release_all();
    buddy_check(&B);
}

/* Take blocks of 2^k frames below limit until none is left, then single
 * frames: every block below limit, aligned, in RAM, no overlap; at the
 * end every managed frame below limit is held. */
static void exhaust_below(uint64_t limit, unsigned k)
{
    phys_addr_t pa;
    int err;
    uint64_t frames = 0;
    for (unsigned order = k;; order = 0) {
        while ((err = buddy_alloc_below(&B, UINT64_C(1) << order, PA(limit), &pa)) == 0) {
            uint64_t n = UINT64_C(1) << order;
            CHECK(pa.raw + n * PAGE_SIZE <= limit);
            CHECK(is_aligned_u64(pa.raw, n * PAGE_SIZE));
            CHECK(in_ranges(pa.raw, n));
            hold(pa.raw, n);
            frames += n;
        }
        CHECK_EQ(err, -MM_ENOMEM);
        if (order == 0)
            break;
    }
    CHECK_EQ(frames, managed_below(limit));
    printf("# below %#lx, order %u first: %lu frames\n", (unsigned long)limit, k,
           (unsigned long)frames);
}

static void test_below_limits(void)
{
    static const uint64_t limits[] = { 16 * MiB, 1 * GiB, 4 * GiB, 8 * GiB, UINT64_C(1) << 40 };
    static const unsigned orders[] = { 0, 3, 9, 12 };
    REQUIRE(init_ranges(3, two_sides) == 0);
    struct snap init = drained();
    for (unsigned i = 0; i < sizeof limits / sizeof limits[0]; i++)
        for (unsigned j = 0; j < sizeof orders / sizeof orders[0]; j++) {
            if (limits[i] <= 16 * MiB && orders[j] == 12)
                continue;
            exhaust_below(limits[i], orders[j]);
            buddy_check(&B);
            release_all();
            buddy_drain_all(&B);
            CHECK(snap_same(&init));
        }
    /* A 16 MiB block below 16 MiB needs RAM from 0. */
    static const uint64_t from_zero[][2] = { { 0, 64 * MiB }, { 4 * GiB, 4 * GiB + 64 * MiB } };
    REQUIRE(init_ranges(2, from_zero) == 0);
    phys_addr_t pa;
    CHECK_EQ(buddy_alloc_below(&B, 4096, PA(16 * MiB), &pa), 0);
    CHECK_EQ(pa.raw, 0);
    CHECK_EQ(buddy_free(&B, pa, 4096), 0);
    buddy_check(&B);
}

/* The scan finds a block in the middle of a long (indexed) list and in a
 * short one, and the lists stay consistent. */
static void test_below_takes_from_list_middle(void)
{
    REQUIRE(init_ranges(3, two_sides) == 0);
    /* Fragment the first 64 MiB into free single frames (every other). */
    for (uint64_t i = 0; i < 4096; i++) {
        phys_addr_t pa;
        REQUIRE(buddy_alloc_below(&B, 1, PA(64 * MiB), &pa) == 0);
        hold(pa.raw, 1);
    }
    unsigned kept = 0;
    for (unsigned i = 0; i < nheld; i++) {
        if ((held[i].pa / PAGE_SIZE) & 1) {
            held[kept++] = held[i];
        } else {
            CHECK_EQ(buddy_free(&B, PA(held[i].pa), 1), 0);
            owner[held[i].pa / PAGE_SIZE] = 0;
        }
    }
    nheld = kept;
    buddy_drain_all(&B);
    CHECK(B.indexed_mask[BUDDY_LOW] & 1);
    for (unsigned i = 0; i < 100; i++) {
        phys_addr_t pa;
        REQUIRE(buddy_alloc_below(&B, 1, PA(16 * MiB), &pa) == 0);
        CHECK(pa.raw < 16 * MiB);
        hold(pa.raw, 1);
        if (i % 10 == 0)
            buddy_check(&B);
    }
    release_all();
    buddy_check(&B);
}

static void test_below_refusals(void)
{
    REQUIRE(init_ranges(3, two_sides) == 0);
    phys_addr_t pa = PA(0x1234);
    REFUSED(buddy_alloc_below(&B, 0, PA(FOUR_GIB), &pa), -MM_EINVAL);
    REFUSED(buddy_alloc_below(&B, 3, PA(FOUR_GIB), &pa), -MM_EINVAL);
    REFUSED(buddy_alloc_below(&B, BUDDY_MAX_NPAGES * 2, PA(FOUR_GIB), &pa), -MM_EINVAL);
    REFUSED(buddy_alloc_below(&B, 1, PA(0), &pa), -MM_EINVAL);
    REFUSED(buddy_alloc_below(&B, 1, PA(3 * MiB), &pa), -MM_EINVAL);
    REFUSED(buddy_alloc_below(&B, 1, PA(FOUR_GIB + PAGE_SIZE), &pa), -MM_EINVAL);
    REFUSED(buddy_alloc_below(&B, 8, PA(16 * KiB), &pa), -MM_EINVAL);
    CHECK_EQ(pa.raw, 0x1234);
    /* Nothing below the limit: -MM_ENOMEM, silent. */
    static const uint64_t high_only[][2] = { { 4 * GiB, 4 * GiB + 64 * MiB } };
    REQUIRE(init_ranges(1, high_only) == 0);
    unsigned long lines = harness_log_lines;
    CHECK_EQ(buddy_alloc_below(&B, 1, PA(16 * MiB), &pa), -MM_ENOMEM);
    CHECK_EQ(buddy_alloc_below(&B, 1, PA(FOUR_GIB), &pa), -MM_ENOMEM);
    CHECK_EQ(harness_log_lines, lines);
    CHECK_EQ(pa.raw, 0x1234);
    CHECK_EQ(buddy_alloc_below(&B, 16, PA(8 * GiB), &pa), 0);
    harness_quiet = 1;
    CHECK_EQ(buddy_free(&B, pa, 8), -MM_ENOENT);     /* wrong size: refused */
    harness_quiet = 0;
    CHECK_EQ(buddy_free(&B, pa, 16), 0);
    buddy_check(&B);
}

static void test_dma_buffers(void)
{
    REQUIRE(init_ranges(3, two_sides) == 0);
    struct snap init = drained();
    /* Dirty the block the next request below 16 MiB gets. */
    phys_addr_t pa;
    REQUIRE(buddy_alloc_below(&B, 2, PA(16 * MiB), &pa) == 0);
    memset(pa_to_ptr(pa), 0xa5, 2 * PAGE_SIZE);
    REQUIRE(buddy_free(&B, pa, 2) == 0);
    void *va;
    phys_addr_t dpa;
    CHECK_EQ(buddy_dma_alloc(&B, 5000, PA(16 * MiB), &va, &dpa), 0);
    CHECK_EQ(dpa.raw, pa.raw);
    CHECK(va == pa_to_ptr(dpa) && is_aligned_u64(dpa.raw, 2 * PAGE_SIZE));
    const uint8_t *bytes = va;
    bool zero = true;
    for (unsigned i = 0; i < 2 * PAGE_SIZE; i++)
        zero &= bytes[i] == 0;
    CHECK(zero);
    void *va2;
    phys_addr_t pa2;
    CHECK_EQ(buddy_dma_alloc(&B, 16 * MiB, PA(FOUR_GIB), &va2, &pa2), 0);
    CHECK(pa2.raw + 16 * MiB <= FOUR_GIB && is_aligned_u64(pa2.raw, 16 * MiB));

    REFUSED(buddy_dma_alloc(&B, 0, PA(FOUR_GIB), &va, &pa), -MM_EINVAL);
    REFUSED(buddy_dma_alloc(&B, 2 * GiB, PA(FOUR_GIB), &va, &pa), -MM_EINVAL);
    REFUSED(buddy_dma_alloc(&B, 4096, PA(5 * MiB), &va, &pa), -MM_EINVAL);
    REFUSED(buddy_dma_alloc(&B, 4096, PA(FOUR_GIB), NULL, &pa), -MM_EINVAL);
    REFUSED(buddy_dma_alloc(&B, 4096, PA(FOUR_GIB), &va, NULL), -MM_EINVAL);
    REFUSED(buddy_dma_free(&B, (void *)(uintptr_t)0x1000, 4096), -MM_EINVAL);
    REFUSED(buddy_dma_free(&B, va, 0), -MM_EINVAL);
    REFUSED(buddy_dma_free(&B, va, 3 * PAGE_SIZE), -MM_ENOENT);   /* 4 pages */
    CHECK_EQ(buddy_dma_free(&B, va, 5000), 0);
    CHECK_EQ(buddy_dma_free(&B, va2, 16 * MiB), 0);
    REFUSED(buddy_dma_free(&B, va2, 16 * MiB), -MM_ENOENT);       /* twice */
    buddy_check(&B);
    buddy_drain_all(&B);
    CHECK(snap_same(&init));
}

int main(void)
{
    sim_mem_init(SIM_SIZE);
    owner = calloc(SIM_SIZE / PAGE_SIZE, 1);
    if (owner == NULL)
        return 1;
    RUN(test_ordinary_requests_prefer_high);
    RUN(test_single_frames_prefer_high);
    RUN(test_freed_low_frame_not_reused_while_high_free);
    RUN(test_below_limits);
    RUN(test_below_takes_from_list_middle);
    RUN(test_below_refusals);
    RUN(test_dma_buffers);
    free(owner);
    sim_mem_fini();
    return harness_finish();
}
