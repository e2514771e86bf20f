/*
 * buddy_suite.c - the buddy frame allocator on the real machine.
 *
 * churn: ten rounds, each allocating 200 MiB in total in random blocks of
 *   up to 4 MiB, filling each block with a pattern derived from its
 *   address and the round, freeing a random live block 70% of the time
 *   (pattern checked first), then freeing the rest.  Every new block is
 *   checked for alignment, for lying in RAM, and against every live block
 *   for overlap (which also catches duplicate addresses).  Afterwards the
 *   usage and the free block count of every order must equal the state
 *   before the case: the allocator coalesced everything back.
 * bad_input: every kind of bad call returns its error and changes nothing.
 * frame_adapter / gib_block: the one-frame adapter and a 1 GiB block.
 * gib_all_cpus: every CPU at once takes and frees 1 GiB blocks (the
 *   lock-free top tier) and, every fourth step, a 256 MiB block (which
 *   splits a chunk under the lock, and merges it back when freed); each
 *   block is stamped with its CPU at both ends and checked before it is
 *   freed, so a block handed to two CPUs is caught.  The usage and the
 *   free block counts must come back exactly.
 *
 * The pattern covers every byte of every block (one 64-bit word derived
 * from its physical address and the round).  Under QEMU TCG the whole
 * churn, 2 GiB written and read back, adds about 2.5 s to the boot test
 * (6-7 G TSC cycles; marking only 128 bytes per page took 1.3 G), well
 * under the point where sampling each page would be worth it.
 */
#include "ktest.h"
#include "percpu.h"
#include "smp.h"

#include <mm/arch.h>
#include <mm/buddy.h>
#include <mm/frame.h>

/* Defined by mm init (mm/init.c): the kernel's buddy, NULL before init. */
extern struct buddy *mm_buddy(void);

#define CHURN_ROUNDS      10
#define CHURN_BYTES       (200 * MiB)
#define CHURN_MAX_BYTES   (4 * MiB)
#define CHURN_MAX_LIVE    1024

struct block { uint64_t pa; uint64_t npages; };
static struct block live[CHURN_MAX_LIVE];

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * UINT64_C(2685821657736338717);
}

static uint64_t pattern_word(uint64_t pa, uint64_t round)
{
    return (pa * UINT64_C(0x9e3779b97f4a7c15)) ^ (round << 56) ^ UINT64_C(0x5a5a5a5a);
}

/* Fill every word of the block with its pattern. */
static void fill_block(const struct block *b, uint64_t round)
{
    volatile uint64_t *w = pa_to_ptr(PA(b->pa));
    uint64_t nwords = b->npages * PAGE_SIZE / 8;
    for (uint64_t i = 0; i < nwords; i++)
        w[i] = pattern_word(b->pa + 8 * i, round);
}

/* Number of words of the block that lost their pattern. */
static uint64_t check_block(const struct block *b, uint64_t round)
{
    volatile uint64_t *w = pa_to_ptr(PA(b->pa));
    uint64_t nwords = b->npages * PAGE_SIZE / 8, bad = 0;
    for (uint64_t i = 0; i < nwords; i++)
        bad += w[i] != pattern_word(b->pa + 8 * i, round);
    return bad;
}

struct state {
    struct buddy_usage u;
    uint64_t counts[BUDDY_NR_ORDERS];
};

/* The block layout after this CPU's frame cache went back to the blocks
 * (the other CPUs do not use the buddy while this suite runs), so that it
 * compares exactly however full the cache happened to be. */
static void get_state(struct buddy *b, struct state *s)
{
    (void)buddy_drain_cpu(b, smp_cpu_id());
    buddy_usage(b, &s->u);
    buddy_free_blocks(b, s->counts);
}

static void expect_same_state(struct ktest *t, const struct state *a, const struct state *b)
{
    KEXPECT_EQ(t, a->u.total_npages, b->u.total_npages);
    KEXPECT_EQ(t, a->u.free_npages, b->u.free_npages);
    KEXPECT_EQ(t, a->u.used_npages, b->u.used_npages);
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++)
        KEXPECT_EQ(t, a->counts[k], b->counts[k]);
}

static struct buddy *get_buddy(struct ktest *t)
{
    struct buddy *b = mm_buddy();
    if (!b)
        KSKIP(t, "buddy allocator not initialised");
    return b;
}

/* Remove live[i], checking its pattern, and free it. */
static void release(struct ktest *t, struct buddy *b, unsigned *nlive, unsigned i,
                    uint64_t round, uint64_t *freed_bytes)
{
    struct block blk = live[i];
    KEXPECT_EQ(t, check_block(&blk, round), 0);
    KEXPECT_EQ(t, buddy_free(b, PA(blk.pa), blk.npages), 0);
    *freed_bytes += blk.npages * PAGE_SIZE;
    live[i] = live[--*nlive];
}

static void churn(struct ktest *t)
{
    struct buddy *b = get_buddy(t);
    struct state before, after;
    get_state(b, &before);
    rng_state = arch_read_tsc() | 1;
    uint64_t t0 = arch_read_tsc();
    uint64_t enomem_retries = 0;

    for (uint64_t round = 0; round < CHURN_ROUNDS; round++) {
        unsigned nlive = 0;
        uint64_t allocated = 0, freed = 0, peak_live = 0;

        while (allocated < CHURN_BYTES) {
            uint64_t size = rng() % CHURN_MAX_BYTES;
            if (size == 0)
                continue;
            if (size > CHURN_BYTES - allocated)
                size = CHURN_BYTES - allocated;
            uint64_t npages = align_up_u64(size, PAGE_SIZE) / PAGE_SIZE;
            npages = UINT64_C(1) << (63 - __builtin_clzll(npages));
            if (npages * PAGE_SIZE < size)
                npages <<= 1;                      /* next power of two */

            phys_addr_t pa;
            int rc = buddy_alloc(b, npages, &pa);
            if (rc == -MM_ENOMEM && nlive > 0) {
                /* Small guests: make room and try again (counts as churn). */
                release(t, b, &nlive, (unsigned)(rng() % nlive), round, &freed);
                enomem_retries++;
                continue;
            }
            KASSERT(t, rc == 0);
            KASSERT(t, nlive < CHURN_MAX_LIVE);
            KEXPECT(t, is_aligned_u64(pa.raw, npages * PAGE_SIZE));
            for (unsigned i = 0; i < nlive; i++) {
                bool overlap = pa.raw < live[i].pa + live[i].npages * PAGE_SIZE &&
                               live[i].pa < pa.raw + npages * PAGE_SIZE;
                if (overlap) {
                    ktest_log(t, "block 0x%lx+%lu overlaps live 0x%lx+%lu",
                              (unsigned long)pa.raw, (unsigned long)npages,
                              (unsigned long)live[i].pa,
                              (unsigned long)live[i].npages);
                    KASSERT(t, !overlap);
                }
            }
            live[nlive] = (struct block){ pa.raw, npages };
            fill_block(&live[nlive], round);
            nlive++;
            allocated += npages * PAGE_SIZE;
            if (nlive > peak_live)
                peak_live = nlive;

            if (rng() % 10 < 7)
                release(t, b, &nlive, (unsigned)(rng() % nlive), round, &freed);
        }
        uint64_t kept = allocated - freed;
        while (nlive)
            release(t, b, &nlive, nlive - 1, round, &freed);
        if (round == 0 || round == CHURN_ROUNDS - 1)
            ktest_log(t, "round %lu: allocated %lu MiB, freed %lu MiB at random, "
                      "%lu MiB at the end, peak %lu live blocks",
                      (unsigned long)round, (unsigned long)(allocated / MiB),
                      (unsigned long)((allocated - kept) / MiB),
                      (unsigned long)(kept / MiB), (unsigned long)peak_live);
    }
    ktest_log(t, "%u rounds took %lu Mcycles; %lu allocations had to wait for a free",
              CHURN_ROUNDS, (unsigned long)((arch_read_tsc() - t0) / 1000000),
              (unsigned long)enomem_retries);
    get_state(b, &after);
    expect_same_state(t, &before, &after);
}

static void bad_input(struct ktest *t)
{
    struct buddy *b = get_buddy(t);
    phys_addr_t small, big, pa;
    KASSERT(t, buddy_alloc(b, 1, &small) == 0);
    KASSERT(t, buddy_alloc(b, 16, &big) == 0);
    struct state before, after;
    get_state(b, &before);

    ktest_log(t, "the next lines from buddy_* are expected rejections");
    KEXPECT_EQ(t, buddy_alloc(b, 0, &pa), -MM_EINVAL);
    KEXPECT_EQ(t, buddy_alloc(b, 3, &pa), -MM_EINVAL);
    KEXPECT_EQ(t, buddy_alloc(b, BUDDY_MAX_NPAGES * 2, &pa), -MM_EINVAL);
    KEXPECT_EQ(t, buddy_free(b, big, 0), -MM_EINVAL);
    KEXPECT_EQ(t, buddy_free(b, big, 6), -MM_EINVAL);
    KEXPECT_EQ(t, buddy_free(b, PA(small.raw + 8), 1), -MM_EINVAL);
    KEXPECT_EQ(t, buddy_free(b, PA(big.raw + 4 * PAGE_SIZE), 16), -MM_EINVAL);
    KEXPECT_EQ(t, buddy_free(b, PA(0), 1), -MM_EFAULT);          /* low memory: never managed */
    KEXPECT_EQ(t, buddy_free(b, PA(UINT64_C(1) << 50), 1), -MM_EFAULT);
    KEXPECT_EQ(t, buddy_free(b, b->meta_start, 1), -MM_EFAULT);   /* its own metadata */
    KEXPECT_EQ(t, buddy_free(b, PA(big.raw + 8 * PAGE_SIZE), 8), -MM_ENOENT);  /* partial */
    KEXPECT_EQ(t, buddy_free(b, big, 8), -MM_ENOENT);                            /* wrong size */
    get_state(b, &after);
    expect_same_state(t, &before, &after);

    KEXPECT_EQ(t, buddy_free(b, small, 1), 0);
    KEXPECT_EQ(t, buddy_free(b, small, 1), -MM_ENOENT);           /* double free */
    KEXPECT_EQ(t, buddy_free(b, big, 16), 0);
    get_state(b, &before);
    KEXPECT_EQ(t, buddy_free(b, big, 16), -MM_ENOENT);
    get_state(b, &after);
    expect_same_state(t, &before, &after);
}

static void frame_adapter(struct ktest *t)
{
    struct buddy *b = get_buddy(t);
    struct state before, after;
    get_state(b, &before);
    struct frame_allocator *fa = buddy_frame_allocator(b);
    phys_addr_t f[8];
    for (int i = 0; i < 8; i++) {
        KASSERT(t, frame_alloc(fa, &f[i]) == 0);
        KEXPECT(t, is_aligned_u64(f[i].raw, PAGE_SIZE));
        *(volatile uint64_t *)pa_to_ptr(f[i]) = f[i].raw;
    }
    for (int i = 0; i < 8; i++) {
        KEXPECT_EQ(t, *(volatile uint64_t *)pa_to_ptr(f[i]), f[i].raw);
        fa->free(fa, f[i]);
    }
    get_state(b, &after);
    expect_same_state(t, &before, &after);
}

static void gib_block(struct ktest *t)
{
    struct buddy *b = get_buddy(t);
    uint64_t counts[BUDDY_NR_ORDERS];
    buddy_free_blocks(b, counts);
    if (counts[BUDDY_MAX_ORDER] == 0)
        KSKIP(t, "no free 1 GiB block (boot with MEM >= 2G)");
    struct state before, after;
    get_state(b, &before);
    phys_addr_t pa;
    KASSERT(t, buddy_alloc(b, BUDDY_MAX_NPAGES, &pa) == 0);
    KEXPECT(t, is_aligned_u64(pa.raw, PAGE_1G_SIZE));
    struct block blk = { pa.raw, BUDDY_MAX_NPAGES };
    fill_block(&blk, 77);
    KEXPECT_EQ(t, check_block(&blk, 77), 0);
    KEXPECT_EQ(t, buddy_free(b, pa, BUDDY_MAX_NPAGES), 0);
    get_state(b, &after);
    expect_same_state(t, &before, &after);
}

#define GIB_STEPS 300

static unsigned long gib_bad[MM_MAX_CPUS], gib_got[MM_MAX_CPUS];

/* One CPU's share of gib_all_cpus: at most two blocks held at a time. */
static void gib_cpu(void *arg)
{
    struct buddy *b = arg;
    unsigned me = smp_cpu_id();
    uint64_t stamp = UINT64_C(0x61b0000000000000) | me;
    phys_addr_t held[2];
    uint64_t held_n[2];
    unsigned n = 0;
    for (unsigned i = 0; i < GIB_STEPS; i++) {
        if (n < 2 && (n == 0 || (i & 1))) {
            uint64_t npages = i % 4 == 3 ? BUDDY_MAX_NPAGES / 4 : BUDDY_MAX_NPAGES;
            if (buddy_alloc(b, npages, &held[n]) != 0)
                continue;
            volatile uint64_t *w = pa_to_ptr(held[n]);
            w[0] = w[npages * PAGE_SIZE / 8 - 1] = stamp;
            held_n[n++] = npages;
            gib_got[me]++;
        } else {
            n--;
            volatile uint64_t *w = pa_to_ptr(held[n]);
            if (w[0] != stamp || w[held_n[n] * PAGE_SIZE / 8 - 1] != stamp)
                gib_bad[me]++;
            w[0] = w[held_n[n] * PAGE_SIZE / 8 - 1] = 0;
            if (buddy_free(b, held[n], held_n[n]) != 0)
                gib_bad[me]++;
        }
    }
    while (n > 0) {
        n--;
        if (buddy_free(b, held[n], held_n[n]) != 0)
            gib_bad[me]++;
    }
    (void)buddy_drain_cpu(b, me);
}

static void gib_all_cpus(struct ktest *t)
{
    struct buddy *b = get_buddy(t);
    uint64_t counts[BUDDY_NR_ORDERS];
    buddy_free_blocks(b, counts);
    if (counts[BUDDY_MAX_ORDER] < 2)
        KSKIP(t, "fewer than two free 1 GiB blocks (boot with MEM >= 5G)");
    smp_call_all(gib_cpu, b);               /* settle every CPU's frame cache */
    struct state before, after;
    get_state(b, &before);
    unsigned ncpus = smp_online_cpus();
    unsigned long got = 0, bad = 0;
    for (unsigned c = 0; c < MM_MAX_CPUS; c++)
        gib_bad[c] = gib_got[c] = 0;
    smp_call_all(gib_cpu, b);
    for (unsigned c = 0; c < ncpus; c++) {
        got += gib_got[c];
        bad += gib_bad[c];
    }
    KEXPECT_EQ(t, bad, 0);
    KEXPECT(t, got > GIB_STEPS / 2);
    get_state(b, &after);
    expect_same_state(t, &before, &after);
    ktest_log(t, "%u CPUs, %lu blocks of 1 GiB or 256 MiB taken and given back", ncpus, got);
}

KTEST_SUITE(buddy_suite, "buddy",
            KTEST_CASE(churn),
            KTEST_CASE(bad_input),
            KTEST_CASE(frame_adapter),
            KTEST_CASE(gib_block),
            KTEST_CASE(gib_all_cpus));
