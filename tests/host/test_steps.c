/*
 * test_steps.c - complexity as a test: bounds on the steps an operation
 * takes, counted by the allocators themselves (buddy_steps, pt_steps,
 * vrange_stats' steps, mm_memmap_steps), never timed.
 *
 * Each test builds the same kind of state at a small and at a large size
 * and measures the largest cost of one operation at each:
 *  - buddy alloc and free, orders 0, 1, 3 and 9, with 1 Ki and 256 Ki free
 *    order-0 blocks: one constant bound, and no growth with the size.
 *    (256 Ki, not the 1 Mi of issue 12: each free block keeps a header in
 *    its own page, so 1 Mi would keep about 4 GiB of simulated RAM
 *    resident under ASan; 256 Ki already separates a linear free by
 *    262144 steps against a bound of 76);
 *  - buddy_alloc_below of 1 and 512 frames below 64 MiB with 1 Ki and
 *    200 Ki free order-0 blocks above the limit: within the scan bound of
 *    mm/buddy_dma.c, and no growth;
 *  - VA-range and MMIO-pool create and release with 10, 1000 and 100000
 *    live blocks: at most C * log2(live) + D;
 *  - mapping and unmapping one 4 KiB page with 1 and 100000 pages mapped:
 *    a constant number of table visits;
 *  - the direct-map planner over n = 500, 2000 and 4000 map entries:
 *    steps / (n ceil(log2 n)) bounded, and not growing with n.
 * A linear version of any of these (a buddy free that scans its order's
 * list for the buddy, a look-up that walks every allocated block, ...)
 * takes steps in proportion to the size and fails here.
 *
 * Needs the counters: the host test flags define MM_STEP_COUNT.
 */
#define _DEFAULT_SOURCE
#include "harness.h"

#include <sys/mman.h>

#include <mm/buddy.h>
#include <mm/directmap.h>
#include <mm/layout.h>
#include <mm/mmio.h>
#include <mm/multiboot2.h>
#include <mm/paging.h>
#include <mm/vrange.h>

#ifndef MM_STEP_COUNT
#error "test_steps needs the step counters: build with -DMM_STEP_COUNT (HOST_CFLAGS)"
#endif

/* Simulated RAM: the buddy manages [16 MiB, 2 GiB + 64 MiB). */
#define SIM_BYTES   (2 * GiB + 64 * MiB)
#define RAM_START   (16 * MiB)

static struct buddy B;

/* ceil(log2(x)), x >= 2 (no libm in the host test link). */
static unsigned log2_up(uint64_t x)
{
    return 64u - (unsigned)__builtin_clzll(x - 1);
}

static void fresh_buddy(void)
{
    struct mm_area_list l = { .count = 1 };
    l.area[0] = (struct mm_area){ PA(RAM_START), PA(SIM_BYTES) };
    if (buddy_init(&B, &l) != 0) {
        fprintf(stderr, "fresh_buddy: buddy_init failed\n");
        abort();
    }
}

/* ------------------------------------------------------------------ buddy */

/* Orders measured, and the largest cost of one call seen at each. */
static const unsigned orders[] = { 0, 1, 3, 9 };
#define NORDERS (sizeof orders / sizeof orders[0])

struct buddy_cost {
    uint64_t alloc[NORDERS], free[NORDERS];
};

/* Each op is a few dozen steps at most (see BUDDY_STEP in mm/buddy.c):
 * one order search, one step per split or merge, a few list blocks per
 * push or removal. */
#define BUDDY_OP_BOUND  (4 * BUDDY_NR_ORDERS)

static void note_max(uint64_t *max, uint64_t before, uint64_t after)
{
    if (after - before > *max)
        *max = after - before;
}

static uint64_t cached_frames(void)
{
    struct buddy_usage u;
    buddy_usage(&B, &u);
    return u.cached_npages;
}

/*
 * Single frames go through the per-CPU cache, which reaches the free lists
 * only in batches: order 0 is measured per frame moved, an alloc starting
 * from an empty cache (a refill) and a free followed by a drain.
 */
static phys_addr_t alloc_counted(unsigned i, struct buddy_cost *c)
{
    phys_addr_t pa;
    if (orders[i] == 0)
        buddy_drain_cpu(&B, 0);
    uint64_t before = buddy_steps(&B);
    if (buddy_alloc(&B, UINT64_C(1) << orders[i], &pa) != 0) {
        fprintf(stderr, "alloc_counted: order %u failed\n", orders[i]);
        abort();
    }
    uint64_t moved = orders[i] == 0 ? cached_frames() + 1 : 1;
    note_max(&c->alloc[i], 0, (buddy_steps(&B) - before + moved - 1) / moved);
    return pa;
}

static void free_counted(unsigned i, phys_addr_t pa, struct buddy_cost *c)
{
    uint64_t before = buddy_steps(&B);
    if (buddy_free(&B, pa, UINT64_C(1) << orders[i]) != 0) {
        fprintf(stderr, "free_counted: order %u pa %#lx failed\n", orders[i],
                (unsigned long)pa.raw);
        abort();
    }
    uint64_t moved = 1;
    if (orders[i] == 0) {
        before = buddy_steps(&B);
        moved = (uint64_t)buddy_drain_cpu(&B, 0);
    }
    note_max(&c->free[i], 0, (buddy_steps(&B) - before + moved - 1) / moved);
}

/*
 * A fresh buddy with about nfree free order-0 blocks: 2 * nfree frames
 * allocated, then the lower frame of each allocated pair freed (it cannot
 * merge: its buddy stays allocated).  The kept frames go to kept[].
 * Returns how many were kept.
 */
static size_t fragment(size_t nfree, phys_addr_t *kept, uint8_t *mark)
{
    fresh_buddy();
    size_t n = 2 * nfree, nkept = 0;
    phys_addr_t *all = malloc(n * sizeof *all);
    memset(mark, 0, SIM_BYTES / PAGE_SIZE);
    for (size_t i = 0; i < n; i++) {
        if (buddy_alloc(&B, 1, &all[i]) != 0)
            abort();
        mark[all[i].raw >> PAGE_SHIFT] = 1;
        /* Drop the page at once (the split wrote a free-block header into
         * it): the buddy never reads an allocated frame, and the lower
         * frames freed below are written again.  This keeps the peak near
         * the free blocks' pages instead of every page. */
        madvise(pa_to_ptr(all[i]), PAGE_SIZE, MADV_DONTNEED);
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t pfn = all[i].raw >> PAGE_SHIFT;
        if ((pfn & 1) == 0 && mark[pfn + 1]) {
            if (buddy_free(&B, all[i], 1) != 0)
                abort();
        } else {
            kept[nkept++] = all[i];
        }
    }
    buddy_drain_all(&B);                      /* the per-CPU cache too */
    free(all);
    return nkept;
}

/*
 * The largest cost of each call over `rounds` rounds of: alloc and free
 * of every measured order; then free a random kept frame (it merges with
 * its free buddy, taken from the middle of the order-0 list) and alloc
 * one frame in its place.
 */
static void buddy_measure(size_t nfree, unsigned rounds, struct buddy_cost *c)
{
    static phys_addr_t kept[SIM_BYTES / PAGE_SIZE];
    static uint8_t mark[SIM_BYTES / PAGE_SIZE];
    size_t nkept = fragment(nfree, kept, mark);
    uint64_t counts[BUDDY_NR_ORDERS], rng = 0x5eed + nfree;
    buddy_free_blocks(&B, counts);
    fprintf(stderr, "  %lu free order-0 blocks, %lu frames kept\n",
            (unsigned long)counts[0], (unsigned long)nkept);
    CHECK(counts[0] >= nfree - nfree / 64);

    memset(c, 0, sizeof *c);
    for (unsigned r = 0; r < rounds; r++) {
        for (unsigned i = 0; i < NORDERS; i++)
            free_counted(i, alloc_counted(i, c), c);
        size_t j = rng_next(&rng) % nkept;
        phys_addr_t victim = kept[j];
        free_counted(0, victim, c);
        kept[j] = alloc_counted(0, c);
    }
    buddy_check(&B);
}

static void test_buddy_steps_constant(void)
{
    struct buddy_cost small, big;
    buddy_measure(1024, 200, &small);
    buddy_measure(256 * 1024, 200, &big);
    for (unsigned i = 0; i < NORDERS; i++) {
        fprintf(stderr, "  order %u: alloc max %lu -> %lu, free max %lu -> %lu steps "
                "(1 Ki -> 256 Ki free blocks; bound %u)\n", orders[i],
                (unsigned long)small.alloc[i], (unsigned long)big.alloc[i],
                (unsigned long)small.free[i], (unsigned long)big.free[i], BUDDY_OP_BOUND);
        CHECK(small.alloc[i] >= 1 && small.free[i] >= 1);
        CHECK(small.alloc[i] <= BUDDY_OP_BOUND && big.alloc[i] <= BUDDY_OP_BOUND);
        CHECK(small.free[i] <= BUDDY_OP_BOUND && big.free[i] <= BUDDY_OP_BOUND);
        CHECK(big.alloc[i] <= small.alloc[i] + 2);
        CHECK(big.free[i] <= small.free[i] + 2);
    }
}

/* ------------------------------------------------- buddy below a limit */

/* Below BELOW_LIMIT (in a range of BELOW_FRAMES frames of RAM from 0) the
 * scan of mm/buddy_dma.c reads at most BELOW_FRAMES / 2^(order+5) + one
 * word per order, plus one chunk-ready bit per GiB and lazy order; then a
 * removal and a split, a few dozen steps like any op.  Twice if it fails
 * (the calling CPU's cache is drained and the scan repeated). */
#define BELOW_LIMIT   (64 * MiB)
#define BELOW_FRAMES  (BELOW_LIMIT / PAGE_SIZE)
#define BELOW_BOUND(order) \
    (2 * ((BELOW_FRAMES >> ((order) + 5)) + BUDDY_NR_ORDERS + 13) + BUDDY_OP_BOUND)

/*
 * A fresh buddy with every frame below BELOW_LIMIT taken but one 2 MiB
 * block, and about nfree free order-0 blocks above the limit (2 * nfree
 * single frames allocated, the lower of each pair freed).
 */
static void fragment_above_limit(size_t nfree)
{
    static phys_addr_t low[BELOW_FRAMES];
    fresh_buddy();
    size_t nlow = 0;
    phys_addr_t pa;
    for (unsigned k = 10; k-- > 0;)
        while (buddy_alloc_below(&B, UINT64_C(1) << k, PA(BELOW_LIMIT), &pa) == 0)
            if (k == 9)
                low[nlow++] = pa;
    phys_addr_t *all = malloc(2 * nfree * sizeof *all);
    for (size_t i = 0; i < 2 * nfree; i++) {
        if (buddy_alloc(&B, 1, &all[i]) != 0 || all[i].raw < BELOW_LIMIT)
            abort();
        madvise(pa_to_ptr(all[i]), PAGE_SIZE, MADV_DONTNEED);
    }
    buddy_drain_all(&B);
    size_t nfreed = 0;
    for (size_t i = 0; i < 2 * nfree; i++) {
        uint64_t pfn = all[i].raw >> PAGE_SHIFT;
        /* the lower frame of a pair whose upper frame is held */
        if ((pfn & 1) == 0 && i + 1 < 2 * nfree && all[i + 1].raw == all[i].raw + PAGE_SIZE) {
            if (buddy_free(&B, all[i], 1) != 0)
                abort();
            nfreed++;
        }
    }
    buddy_drain_all(&B);
    free(all);
    if (nlow == 0 || buddy_free(&B, low[0], 512) != 0)
        abort();
    uint64_t counts[BUDDY_NR_ORDERS];
    buddy_free_blocks(&B, counts);
    fprintf(stderr, "  %lu free order-0 blocks above %lu MiB\n", (unsigned long)counts[0],
            (unsigned long)(BELOW_LIMIT / MiB));
    CHECK(counts[0] >= nfreed && nfreed >= nfree - nfree / 16);
}

/* Largest cost of buddy_alloc_below of 2^order frames below BELOW_LIMIT
 * (then freed) over `rounds` calls. */
static uint64_t below_cost(unsigned order, unsigned rounds)
{
    uint64_t max = 0;
    for (unsigned r = 0; r < rounds; r++) {
        phys_addr_t pa;
        uint64_t before = buddy_steps(&B);
        if (buddy_alloc_below(&B, UINT64_C(1) << order, PA(BELOW_LIMIT), &pa) != 0 ||
            pa.raw + (PAGE_SIZE << order) > BELOW_LIMIT)
            abort();
        note_max(&max, before, buddy_steps(&B));
        if (buddy_free(&B, pa, UINT64_C(1) << order) != 0)
            abort();
        buddy_drain_all(&B);
    }
    return max;
}

static void test_buddy_below_steps_constant(void)
{
    static const unsigned below_orders[] = { 0, 9 };
    uint64_t cost[2][2];
    static const size_t nfree[2] = { 1024, 200 * 1024 };
    for (unsigned s = 0; s < 2; s++) {
        fragment_above_limit(nfree[s]);
        for (unsigned i = 0; i < 2; i++)
            cost[s][i] = below_cost(below_orders[i], 50);
        buddy_check(&B);
    }
    for (unsigned i = 0; i < 2; i++) {
        fprintf(stderr, "  below %lu MiB, order %u: max %lu -> %lu steps (1 Ki -> 200 Ki "
                "free blocks above; bound %lu)\n", (unsigned long)(BELOW_LIMIT / MiB),
                below_orders[i], (unsigned long)cost[0][i], (unsigned long)cost[1][i],
                (unsigned long)BELOW_BOUND(below_orders[i]));
        CHECK(cost[0][i] >= 1);
        CHECK(cost[0][i] <= BELOW_BOUND(below_orders[i]));
        CHECK(cost[1][i] <= BELOW_BOUND(below_orders[i]));
        CHECK(cost[1][i] <= cost[0][i] + 2);
    }
}

/* ------------------------------------------------------ vrange and mmio */

/* One allocator of virtual blocks under test, through its public calls. */
struct va_alloc {
    const char *name;
    struct vrange *vr;                 /* whose stats count the steps */
    int (*create)(uint64_t size, virt_addr_t *va_out, uint64_t *size_out);
    int (*release)(virt_addr_t va, uint64_t size);
};

#define VR_BASE  MM_VMALLOC_BASE
#define VR_END   (MM_VMALLOC_BASE + 4 * GiB)
static struct vrange vr;
static struct vrange_node vr_roots[VRANGE_NR_ROOTS(VR_END - VR_BASE)];
static struct mmio_pool pool;

static int vr_create(uint64_t size, virt_addr_t *va_out, uint64_t *size_out)
{
    struct vrange_block blk;
    int err = vrange_alloc(&vr, size, &blk);
    *va_out = blk.va;
    *size_out = blk.size;
    return err;
}

static int vr_release(virt_addr_t va, uint64_t size)
{
    return vrange_free(&vr, (struct vrange_block){ va, size });
}

static int pool_create(uint64_t size, virt_addr_t *va_out, uint64_t *size_out)
{
    struct mmio_space s;
    int err = mmio_create(&pool, size, &s);
    *va_out = s.va;
    *size_out = s.size;
    return err;
}

static int pool_release(virt_addr_t va, uint64_t size)
{
    struct mmio_space s = { va, size };
    return mmio_release(&pool, &s, NULL);
}

static uint64_t vr_steps(const struct va_alloc *a)
{
    struct vrange_stats st;
    vrange_stats(a->vr, &st);
    return st.steps;
}

struct live_block {
    virt_addr_t va;
    uint64_t size;
};

/* Create a block of 4..32 KiB and append it to live[], noting its cost. */
static void create_counted(const struct va_alloc *a, struct live_block *live, size_t *n,
                           uint64_t *rng, uint64_t *max)
{
    uint64_t size = PAGE_SIZE << (rng_next(rng) % 4), before = vr_steps(a);
    if (a->create(size, &live[*n].va, &live[*n].size) != 0) {
        fprintf(stderr, "create_counted: %s: size %lu failed\n", a->name, (unsigned long)size);
        abort();
    }
    note_max(max, before, vr_steps(a));
    (*n)++;
}

/* Release live[j] (replaced by the last one), noting its cost. */
static void release_counted(const struct va_alloc *a, struct live_block *live, size_t *n,
                            size_t j, uint64_t *max)
{
    uint64_t before = vr_steps(a);
    if (a->release(live[j].va, live[j].size) != 0) {
        fprintf(stderr, "release_counted: %s: va %#lx failed\n", a->name,
                (unsigned long)live[j].va.raw);
        abort();
    }
    note_max(max, before, vr_steps(a));
    live[j] = live[--*n];
}

/*
 * With `nlive` random blocks alive, the largest cost of a create and of a
 * release over 2000 random releases and creates.  Afterwards everything
 * is released again.
 */
static uint64_t va_measure(const struct va_alloc *a, size_t nlive)
{
    static struct live_block live[100000 + 1];
    uint64_t rng = 0xabc + nlive, max = 0, ignored = 0;
    size_t n = 0;
    while (n < nlive)
        create_counted(a, live, &n, &rng, &ignored);
    for (unsigned r = 0; r < 2000; r++) {
        release_counted(a, live, &n, rng_next(&rng) % n, &max);
        create_counted(a, live, &n, &rng, &max);
    }
    while (n)
        release_counted(a, live, &n, n - 1, &ignored);
    return max;
}

/* Per op: two tree walks of VRANGE_NR_ORDERS levels at most, a few hash
 * entries and bucket splits; allow a log2(live) term on top. */
#define VA_BOUND_C  4u
#define VA_BOUND_D  (2u * VRANGE_NR_ORDERS + 8u)

static void va_check_log(const struct va_alloc *a)
{
    static const size_t sizes[] = { 10, 1000, 100000 };
    uint64_t max[3];
    for (unsigned i = 0; i < 3; i++) {
        max[i] = va_measure(a, sizes[i]);
        uint64_t bound = VA_BOUND_C * log2_up(sizes[i]) + VA_BOUND_D;
        fprintf(stderr, "  %s, %lu live blocks: max %lu steps per create or release "
                "(bound %lu)\n", a->name, (unsigned long)sizes[i], (unsigned long)max[i],
                (unsigned long)bound);
        CHECK(max[i] >= 1);
        CHECK(max[i] <= bound);
    }
    /* The growth itself must be logarithmic: from 10 to 100000 live blocks
     * at most VA_BOUND_C steps more per doubling, so that the constant
     * term above cannot hide a linear walk. */
    uint64_t growth = max[2] > max[0] ? max[2] - max[0] : 0;
    fprintf(stderr, "  %s: growth %lu steps from 10 to 100000 live blocks (bound %lu)\n",
            a->name, (unsigned long)growth,
            (unsigned long)(VA_BOUND_C * (log2_up(sizes[2]) - log2_up(sizes[0])) + 8));
    CHECK(growth <= VA_BOUND_C * (log2_up(sizes[2]) - log2_up(sizes[0])) + 8);
}

static void test_vrange_steps_log(void)
{
    fresh_buddy();
    REQUIRE(vrange_init(&vr, "steps", VR_BASE, VR_END, vr_roots,
                        VRANGE_NR_ROOTS(VR_END - VR_BASE), buddy_frame_allocator(&B)) == 0);
    const struct va_alloc a = { "vrange", &vr, vr_create, vr_release };
    va_check_log(&a);
    CHECK_EQ(vrange_check(&vr), 0);
}

static void test_mmio_steps_log(void)
{
    fresh_buddy();
    REQUIRE(mmio_pool_init(&pool, buddy_frame_allocator(&B)) == 0);
    const struct va_alloc a = { "mmio pool", &pool.vr, pool_create, pool_release };
    va_check_log(&a);
    CHECK_EQ(mmio_pool_check(&pool), 0);
}

/* ---------------------------------------------------------------- mapper */

/* Tables visited by one call: map plans then installs (a walk each),
 * unmap looks the page up twice and checks up to three tables for
 * emptiness. */
#define PT_OP_BOUND  (3 * PT_LEVELS)

struct pt_cost {
    uint64_t map, unmap;
};

/* Map and unmap one page at each of the vas (with and without freeing
 * empty tables); the largest cost of each. */
static void pt_measure(struct pt_mapper *m, const uint64_t *vas, unsigned nvas,
                       struct pt_cost *c)
{
    c->map = c->unmap = 0;
    for (unsigned i = 0; i < 2 * nvas; i++) {
        struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
        virt_addr_t va = VA(vas[i % nvas]);
        uint64_t before = pt_steps();
        if (pt_map(m, va, PTE_WRITE | PTE_NX, NULL, &tok) != 0)
            abort();
        note_max(&c->map, before, pt_steps());
        pt_flush(&tok);
        before = pt_steps();
        if (pt_unmap(m, va, i < nvas, &tok) != 0)
            abort();
        note_max(&c->unmap, before, pt_steps());
        pt_flush(&tok);
    }
}

static void test_pt_steps_constant(void)
{
    enum { NBIG = 100000 };
    const uint64_t base = MM_VMALLOC_BASE;
    /* Just below and just above what is mapped, a page whose tables all
     * exist (next to the one page, then a hole in the NBIG pages), and far
     * away (every table on the walk new). */
    const uint64_t vas[] = { base - PAGE_SIZE, base + NBIG * PAGE_SIZE,
                             base + PAGE_SIZE, base + 1000 * GiB };
    fresh_buddy();
    struct pt_mapper m;
    REQUIRE(pt_mapper_create(buddy_frame_allocator(&B), &m) == 0);

    struct pt_cost one, big;
    struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
    REQUIRE(pt_map(&m, VA(base), PTE_WRITE | PTE_NX, NULL, &tok) == 0);
    pt_flush(&tok);
    pt_measure(&m, vas, 4, &one);
    REQUIRE(pt_unmap(&m, VA(base), true, &tok) == 0);
    pt_flush(&tok);

    /* NBIG pages of (pretend) device memory, 4 KiB pages. */
    REQUIRE(pt_map_range(&m, VA(base), PA(4 * GiB), NBIG * PAGE_SIZE, PTE_WRITE | PTE_NX,
                         PAGE_SIZE, &tok) == 0);
    pt_flush(&tok);
    struct pt_mapping old;
    const uint64_t hole = base + NBIG / 2 * PAGE_SIZE;
    REQUIRE(pt_unmap_phys(&m, VA(hole), true, &old, &tok) == 0);
    pt_flush(&tok);
    const uint64_t vas_big[] = { vas[0], vas[1], hole, vas[3] };
    pt_measure(&m, vas_big, 4, &big);

    fprintf(stderr, "  map one page: max %lu -> %lu tables, unmap: max %lu -> %lu "
            "(1 -> %u pages mapped; bound %u)\n", (unsigned long)one.map,
            (unsigned long)big.map, (unsigned long)one.unmap, (unsigned long)big.unmap,
            NBIG, PT_OP_BOUND);
    CHECK(one.map >= PT_LEVELS && one.unmap >= PT_LEVELS);
    CHECK(one.map <= PT_OP_BOUND && big.map <= PT_OP_BOUND);
    CHECK(one.unmap <= PT_OP_BOUND && big.unmap <= PT_OP_BOUND);
    CHECK(big.map <= one.map && big.unmap <= one.unmap);
    CHECK_EQ(pt_mapper_destroy(&m), 0);
}

/* ---------------------------------------------------- direct-map planner */

/*
 * The multiboot2 information with one memory-map tag of n entries: tiny
 * adjacent entries, 8 KiB each, in descending address order, every
 * eighth one reserved (the input that hurt the old chained scans).
 */
static int build_desc_map(unsigned n, struct mb2_info *info)
{
    static _Alignas(8) uint8_t mbi[16 + 16 + 4000 * 24 + 8];
    uint32_t tag_size = 16 + n * 24, total = 8 + tag_size + 8;
    uint32_t head[6] = { total, 0, MB2_TAG_MMAP, tag_size, 24, 0 };
    memset(mbi, 0, sizeof mbi);
    memcpy(mbi, head, sizeof head);
    for (unsigned i = 0; i < n; i++) {
        uint64_t k = n - 1 - i;
        struct { uint64_t base, len; uint32_t type, zero; } e = {
            64 * MiB + k * 8 * KiB, 8 * KiB,
            k % 8 == 0 ? MB2_MEM_RESERVED : MB2_MEM_AVAILABLE, 0 };
        memcpy(mbi + 24 + i * 24, &e, 24);
    }
    uint32_t end[2] = { MB2_TAG_END, 8 };
    memcpy(mbi + 8 + tag_size, end, sizeof end);    /* tag_size is a multiple of 8 */
    char err[MB2_ERR_LEN];
    return mb2_parse(info, mbi, PA(0x10000), sizeof mbi, err, sizeof err);
}

static void test_directmap_steps_nlogn(void)
{
    static const unsigned ns[] = { 500, 2000, 4000 };
    static struct mb2_info info;
    static struct directmap_ranges ranges;
    static struct mm_area_list usable;
    double ratio[3];
    for (unsigned i = 0; i < 3; i++) {
        REQUIRE(build_desc_map(ns[i], &info) == 0);
        uint64_t before = mm_memmap_steps();
        REQUIRE(directmap_collect(&info, 46, &ranges) == 0);
        struct mb2_usable_stats st;
        harness_quiet = 1;
        int err = directmap_usable_areas(&info, 46, NULL, 0, &usable, &st);
        harness_quiet = 0;
        REQUIRE(err == 0);
        uint64_t steps = mm_memmap_steps() - before;
        ratio[i] = (double)steps / ((double)ns[i] * log2_up(ns[i]));
        fprintf(stderr, "  planner, %u entries: %lu steps, %.2f n ceil(log2 n)\n", ns[i],
                (unsigned long)steps, ratio[i]);
        CHECK(steps >= ns[i]);
        CHECK(ratio[i] <= 16.0);        /* test_directmap: 8 n log2 n for each call */
    }
    /* Quadratic work would grow the ratio about 5-fold from 500 to 4000. */
    CHECK(ratio[2] <= 1.5 * ratio[0]);
}

int main(void)
{
    sim_mem_init(SIM_BYTES);
    RUN(test_buddy_steps_constant);
    RUN(test_buddy_below_steps_constant);
    RUN(test_vrange_steps_log);
    RUN(test_mmio_steps_log);
    RUN(test_pt_steps_constant);
    RUN(test_directmap_steps_nlogn);
    sim_mem_fini();
    return harness_finish();
}
