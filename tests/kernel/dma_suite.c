/*
 * dma_suite.c - memory for devices on the real machine: the buddy's
 * preference for memory above 4 GiB and allocations below a limit
 * (mm/buddy_dma.c).
 *
 * basics: mm_dma_alloc of a few sizes below 4 GiB and 16 MiB: zeroed,
 *   aligned, below the limit, reached through the direct map; bad sizes and
 *   limits refused; everything back.
 * high_first (guests with RAM above 4 GiB): while memory above 4 GiB is
 *   free, 200 ordinary blocks of orders 0..9 all come from it and the free
 *   memory below 4 GiB does not shrink.
 * low_kept (guests with RAM above 4 GiB): take every free frame above
 *   4 GiB (blocks of each order, largest first, until an ordinary request
 *   returns memory below 4 GiB, which goes back); then a 16 MiB buffer
 *   below 4 GiB must still be there.  Everything is given back.
 * below_16m: a buffer below 16 MiB (skipped when the guest has no free
 *   memory there).
 * The blocks held by low_kept are chained through their own first words,
 * so the suite needs no table however fragmented high memory is.  Other
 * CPUs do not use the buddy while the suite runs; their per-CPU caches
 * are left alone (their frames are not reachable, and not needed).
 */
#include "ktest.h"
#include "percpu.h"

#include <mm/buddy.h>
#include <mm/dma.h>
#include <mm/frame.h>
#include <mm/init.h>

#define FOUR_GIB  (UINT64_C(1) << 32)
#define SIXTEEN_MIB  (UINT64_C(16) << 20)

/* The usage and the free block counts, taken after this CPU's frame cache
 * went back to the lists (see buddy_suite.c), so that they compare
 * exactly; NULL buddy: the case is skipped. */
struct state {
    struct buddy_usage u;
    uint64_t counts[BUDDY_NR_ORDERS];
};

static struct buddy *start_case(struct ktest *t, struct state *before)
{
    struct buddy *b = mm_buddy();
    if (!b)
        KSKIP(t, "buddy allocator not initialised");
    (void)buddy_drain_cpu(b, smp_cpu_id());
    buddy_usage(b, &before->u);
    buddy_free_blocks(b, before->counts);
    return b;
}

/* Everything the case took is back: the same usage and block counts. */
static void expect_all_back(struct ktest *t, struct buddy *b, const struct state *before)
{
    struct state now;
    (void)buddy_drain_cpu(b, smp_cpu_id());
    buddy_usage(b, &now.u);
    buddy_free_blocks(b, now.counts);
    KEXPECT_EQ(t, now.u.used_npages, before->u.used_npages);
    KEXPECT(t, __builtin_memcmp(now.counts, before->counts, sizeof now.counts) == 0);
}

static bool has_high_ram(const struct buddy *b)
{
    return b->high_rel < b->span_npages;
}

/* Free frames below 4 GiB in the free lists and the top tier. */
static uint64_t low_free_frames(struct buddy *b)
{
    uint64_t counts[BUDDY_NR_ORDERS], n = 0;
    buddy_free_blocks_zone(b, BUDDY_LOW, counts);
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++)
        n += counts[k] << k;
    return n;
}

/* Is every byte of [va, va + size) zero? */
static bool all_zero(const void *va, uint64_t size)
{
    const volatile uint64_t *w = va;
    for (uint64_t i = 0; i < size / 8; i++)
        if (w[i] != 0)
            return false;
    return true;
}

/* One buffer of `size` below max_pa: checked, written, freed. */
static void one_buffer(struct ktest *t, uint64_t size, uint64_t max_pa)
{
    void *va;
    phys_addr_t pa;
    KASSERT(t, mm_dma_alloc(size, PA(max_pa), &va, &pa) == 0);
    uint64_t rounded = PAGE_SIZE;
    while (rounded < size)
        rounded <<= 1;
    KEXPECT(t, is_aligned_u64(pa.raw, rounded));
    KEXPECT(t, pa.raw + rounded <= max_pa);
    KEXPECT(t, va == pa_to_ptr(pa));
    KEXPECT(t, all_zero(va, rounded));
    *(volatile uint64_t *)va = pa.raw;          /* the CPU reaches it */
    KEXPECT_EQ(t, mm_dma_free(va, size), 0);
}

static void basics(struct ktest *t)
{
    struct state before;
    struct buddy *b = start_case(t, &before);
    static const uint64_t sizes[] = { 1, 4096, 5000, 64 * 1024, 2 << 20 };
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        one_buffer(t, sizes[i], FOUR_GIB);
    void *va;
    phys_addr_t pa;
    ktest_log(t, "the next lines from mm_dma_* / buddy_* are expected rejections");
    KEXPECT_EQ(t, mm_dma_alloc(0, PA(FOUR_GIB), &va, &pa), -MM_EINVAL);
    KEXPECT_EQ(t, mm_dma_alloc(4096, PA(3 << 20), &va, &pa), -MM_EINVAL);
    KEXPECT_EQ(t, mm_dma_alloc(1 << 20, PA(64 * 1024), &va, &pa), -MM_EINVAL);
    KEXPECT_EQ(t, mm_dma_free(NULL, 4096), -MM_EINVAL);
    KEXPECT_EQ(t, buddy_alloc_below(b, 3, PA(FOUR_GIB), &pa), -MM_EINVAL);
    expect_all_back(t, b, &before);
}

static void high_first(struct ktest *t)
{
    struct state before;
    struct buddy *b = start_case(t, &before);
    if (!has_high_ram(b))
        KSKIP(t, "no RAM above 4 GiB (boot with MEM >= 5G)");
    uint64_t low_before = low_free_frames(b);
    static phys_addr_t held[200];
    unsigned n = 0;
    for (; n < 200; n++) {
        unsigned k = n % 10;
        KASSERT(t, buddy_alloc(b, UINT64_C(1) << k, &held[n]) == 0);
        KEXPECT(t, held[n].raw >= FOUR_GIB);
    }
    KEXPECT_EQ(t, low_free_frames(b), low_before);
    for (unsigned i = 0; i < n; i++)
        KEXPECT_EQ(t, buddy_free(b, held[i], UINT64_C(1) << (i % 10)), 0);
    expect_all_back(t, b, &before);
}

/* A held block: its first words link it to the previous one. */
struct held_block {
    uint64_t next_pa;           /* 0: the end of the chain */
    uint64_t npages;
};

/* Take every free block above 4 GiB, order by order from the largest, and
 * chain them from *chain; returns the frames taken. */
static uint64_t take_all_high(struct ktest *t, struct buddy *b, uint64_t *chain)
{
    uint64_t frames = 0;
    for (unsigned k = BUDDY_NR_ORDERS; k-- > 0;) {
        uint64_t npages = UINT64_C(1) << k;
        phys_addr_t pa;
        while (buddy_alloc(b, npages, &pa) == 0) {
            if (pa.raw < FOUR_GIB) {
                KEXPECT_EQ(t, buddy_free(b, pa, npages), 0);
                break;
            }
            struct held_block *h = pa_to_ptr(pa);
            h->next_pa = *chain;
            h->npages = npages;
            *chain = pa.raw;
            frames += npages;
        }
    }
    return frames;
}

static void release_chain(struct ktest *t, struct buddy *b, uint64_t chain)
{
    while (chain) {
        struct held_block *h = pa_to_ptr(PA(chain));
        uint64_t next = h->next_pa;
        KEXPECT_EQ(t, buddy_free(b, PA(chain), h->npages), 0);
        chain = next;
    }
}

static void low_kept(struct ktest *t)
{
    struct state before;
    struct buddy *b = start_case(t, &before);
    if (!has_high_ram(b))
        KSKIP(t, "no RAM above 4 GiB (boot with MEM >= 5G)");
    uint64_t chain = 0;
    uint64_t frames = take_all_high(t, b, &chain);
    uint64_t high_left = 0, counts[BUDDY_NR_ORDERS];
    buddy_free_blocks_zone(b, BUDDY_HIGH, counts);
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++)
        high_left += counts[k];
    KEXPECT_EQ(t, high_left, 0);
    ktest_log(t, "took %lu MiB above 4 GiB; %lu MiB free below",
              (unsigned long)(frames * PAGE_SIZE >> 20),
              (unsigned long)(low_free_frames(b) * PAGE_SIZE >> 20));
    /* Every high frame taken: 16 MiB below 4 GiB is still there. */
    void *va;
    phys_addr_t pa;
    int rc = mm_dma_alloc(SIXTEEN_MIB, PA(FOUR_GIB), &va, &pa);
    KEXPECT_EQ(t, rc, 0);
    if (rc == 0) {
        KEXPECT(t, pa.raw + SIXTEEN_MIB <= FOUR_GIB && is_aligned_u64(pa.raw, SIXTEEN_MIB));
        KEXPECT(t, all_zero(va, SIXTEEN_MIB));
        KEXPECT_EQ(t, mm_dma_free(va, SIXTEEN_MIB), 0);
    }
    release_chain(t, b, chain);
    expect_all_back(t, b, &before);
}

static void below_16m(struct ktest *t)
{
    struct state before;
    struct buddy *b = start_case(t, &before);
    phys_addr_t pa;
    int rc = buddy_alloc_below(b, 16, PA(SIXTEEN_MIB), &pa);
    if (rc == -MM_ENOMEM)
        KSKIP(t, "no free 64 KiB block below 16 MiB on this guest");
    KASSERT(t, rc == 0);
    KEXPECT(t, pa.raw + 16 * PAGE_SIZE <= SIXTEEN_MIB);
    KEXPECT_EQ(t, buddy_free(b, pa, 16), 0);
    one_buffer(t, 8192, SIXTEEN_MIB);
    one_buffer(t, PAGE_SIZE, SIXTEEN_MIB);
    expect_all_back(t, b, &before);
}

KTEST_SUITE(dma_suite, "dma",
            KTEST_CASE(basics),
            KTEST_CASE(high_first),
            KTEST_CASE(low_kept),
            KTEST_CASE(below_16m));
