/*
 * fuzz_buddy.c - libFuzzer target for the buddy allocator.
 *
 * The first bytes choose up to three free ranges inside an 8 GiB simulated
 * physical memory (lazily backed): small ones in 64 KiB steps, or whole
 * GiBs, whose chunks stay uninitialised until something below 1 GiB is
 * carved from them; the rest is an operation sequence:
 *   alloc of an order (0..12, or a whole 1 GiB block from the top tier),
 *   free of the i-th live block, one of several bad frees (double, double
 *   on another CPU, unaligned, partial, wrong size, foreign, a GiB that
 *   was not handed out whole), a full buddy_check, a switch to another of FUZZ_CPUS
 *   simulated CPUs (each with its per-CPU cache of single frames), and a
 *   drain of one CPU's cache, and an allocation below a power-of-two
 *   limit (buddy_alloc_below: 4 KiB .. 16 GiB).
 * Ranges may lie on both sides of 4 GiB (8 GiB simulated): an ordinary
 * block of 2+ frames from below 4 GiB means no high block of its order or
 * more was free, and a block from buddy_alloc_below lies below its limit.
 * A model (one byte per frame) checks that blocks never overlap, stay in
 * the ranges, are aligned, that bad frees fail with one log line and no
 * state change, that the usage is exact after every operation (used is
 * what the model holds; cached is part of free), and that freeing
 * everything and draining the caches restores the initial layout.
 */
#define FUZZ_NAME "fuzz_buddy"
#include "fuzz_util.h"

#include <mm/buddy.h>
#include <mm/log.h>

#define SIM_SIZE   (8 * GiB)
#define NFRAMES    (SIM_SIZE / PAGE_SIZE)
#define MAX_LIVE   4096
#define FUZZ_MAX_ORDER 12
#define FUZZ_CPUS  4

static struct buddy B;
static uint8_t frame_state[NFRAMES];          /* 1 = allocated */
static struct { uint64_t pa; unsigned order; } live[MAX_LIVE];
static unsigned nlive;
static uint64_t model_used;                   /* frames the model holds */

static bool in_ranges(uint64_t pa, uint64_t npages)
{
    for (unsigned i = 0; i < B.ranges.count; i++)
        if (pa >= B.ranges.area[i].start.raw &&
            pa + npages * PAGE_SIZE <= B.ranges.area[i].end.raw)
            return true;
    return false;
}

#define SNAP_WORDS (BUDDY_NR_ORDERS + 3)

static void snapshot(uint64_t *out /* SNAP_WORDS */)
{
    struct buddy_usage u;
    buddy_usage(&B, &u);
    buddy_free_blocks(&B, out);
    out[BUDDY_NR_ORDERS] = u.free_npages;
    out[BUDDY_NR_ORDERS + 1] = u.used_npages;
    out[BUDDY_NR_ORDERS + 2] = u.cached_npages;
}

static void forget_live(unsigned i)
{
    uint64_t npages = UINT64_C(1) << live[i].order;
    for (uint64_t f = 0; f < npages; f++)
        frame_state[live[i].pa / PAGE_SIZE + f] = 0;
    model_used -= npages;
    live[i] = live[--nlive];
}

/* A free that must be refused: one log line, nothing changes. */
static void expect_refused(phys_addr_t pa, uint64_t npages)
{
    uint64_t before[SNAP_WORDS], after[SNAP_WORDS];
    snapshot(before);
    unsigned long lines = harness_log_lines;
    int rc = buddy_free(&B, pa, npages);
    if (rc >= 0)
        fail("bad free accepted", pa.raw, npages);
    if (harness_log_lines - lines != 1)
        fail("bad free did not log exactly one line", pa.raw, harness_log_lines - lines);
    snapshot(after);
    if (memcmp(before, after, sizeof before))
        fail("bad free changed the state", pa.raw, npages);
}

static void bad_free(struct reader *r)
{
    unsigned kind = next_byte(r) % 7;
    unsigned sel = next_byte(r);
    if (kind == 0) {                       /* anywhere, never allocated */
        uint64_t pfn = ((uint64_t)sel << 6 | next_byte(r)) % (NFRAMES * 2);
        if (pfn < NFRAMES && frame_state[pfn])
            return;
        expect_refused(pfn_to_pa(pfn), 1);
        return;
    }
    if (kind == 6) {                       /* a whole GiB, not held as one */
        uint64_t pa = (uint64_t)(sel % 8) * GiB;
        for (unsigned i = 0; i < nlive; i++)
            if (live[i].pa == pa && live[i].order == BUDDY_MAX_ORDER)
                return;
        expect_refused(PA(pa), BUDDY_MAX_NPAGES);
        return;
    }
    if (!nlive)
        return;
    unsigned i = sel % nlive;
    uint64_t pa = live[i].pa, npages = UINT64_C(1) << live[i].order;
    switch (kind) {
    case 1:                                /* unaligned */
        expect_refused(PA(pa + 8), npages);
        break;
    case 2:                                /* bad count */
        expect_refused(PA(pa), npages * 3);
        break;
    case 3:                                /* smaller or bigger than allocated */
        if (npages > 1)
            expect_refused(PA(pa + (npages / 2) * PAGE_SIZE), npages / 2);
        else if (is_aligned_u64(pa, 2 * PAGE_SIZE))
            expect_refused(PA(pa), 2);
        break;
    case 4:                                /* double free */
    case 5: {                              /* ... the second on another CPU */
        int rc = buddy_free(&B, PA(pa), npages);
        if (rc)
            fail("free of a live block failed", pa, (uint64_t)-rc);
        forget_live(i);
        unsigned cpu = harness_cpu_id;
        if (kind == 5)
            harness_cpu_id = (cpu + 1 + sel % (FUZZ_CPUS - 1)) % FUZZ_CPUS;
        expect_refused(PA(pa), npages);
        harness_cpu_id = cpu;
        break;
    }
    }
}

/* Drain one CPU's cache: the frames move from cached to the lists. */
static void drain_op(unsigned cpu)
{
    struct buddy_usage u0, u1;
    buddy_usage(&B, &u0);
    int64_t n = buddy_drain_cpu(&B, cpu);
    buddy_usage(&B, &u1);
    if (n < 0 || u1.cached_npages + (uint64_t)n != u0.cached_npages ||
        u1.free_npages != u0.free_npages)
        fail("drain moved the wrong number of frames", (uint64_t)n, u0.cached_npages);
}

/* Free high blocks of order k or more (lists and top tier). */
static uint64_t high_free_blocks(unsigned k)
{
    uint64_t counts[BUDDY_NR_ORDERS], n = 0;
    buddy_free_blocks_zone(&B, BUDDY_HIGH, counts);
    for (; k < BUDDY_NR_ORDERS; k++)
        n += counts[k];
    return n;
}

/* Allocate 2^order frames: ordinary (limit 0) or below limit; check the
 * block against the model and the zone rule, and hold it. */
static void alloc_op(unsigned order, uint64_t limit)
{
    uint64_t npages = UINT64_C(1) << order;
    phys_addr_t pa;
    unsigned long lines = harness_log_lines;
    int rc = limit ? buddy_alloc_below(&B, npages, PA(limit), &pa) : buddy_alloc(&B, npages, &pa);
    if (limit && limit < npages * PAGE_SIZE) {
        if (rc != -MM_EINVAL || harness_log_lines - lines != 1)
            fail("limit below the block size not refused with one line", limit, npages);
        return;
    }
    if (rc == -MM_ENOMEM)
        return;
    if (rc)
        fail("alloc failed", npages, (uint64_t)-rc);
    if (!is_aligned_u64(pa.raw, npages * PAGE_SIZE) || !in_ranges(pa.raw, npages))
        fail("block misaligned or outside the ranges", pa.raw, npages);
    if (limit && pa.raw + npages * PAGE_SIZE > limit)
        fail("block from buddy_alloc_below crosses its limit", pa.raw, limit);
    if (!limit && order > 0 && pa.raw < 4 * GiB && high_free_blocks(order) != 0)
        fail("ordinary block taken below 4 GiB while a high one is free", pa.raw, order);
    for (uint64_t f = 0; f < npages; f++) {
        if (frame_state[pa.raw / PAGE_SIZE + f])
            fail("overlapping block", pa.raw, f);
        frame_state[pa.raw / PAGE_SIZE + f] = 1;
    }
    live[nlive].pa = pa.raw;
    live[nlive].order = order;
    nlive++;
    model_used += npages;
    if (nlive == MAX_LIVE) {
        if (buddy_free(&B, pa, npages))
            fail("free failed", pa.raw, npages);
        forget_live(nlive - 1);
    }
}

/* Up to three ranges, sorted, disjoint and non-adjacent (a gap of at
 * least one page) by construction, as buddy_init requires: in 64 KiB
 * steps, or from the next GiB boundary 1..2 GiB minus a few pages, or
 * starting at or just below 4 GiB. */
static void read_ranges(struct reader *r, struct mm_area_list *out)
{
    struct mm_area_list l = { .count = 0 };
    uint64_t cursor = (uint64_t)(next_byte(r) % 16) * PAGE_SIZE;
    unsigned nareas = 1 + next_byte(r) % 3;
    for (unsigned i = 0; i < nareas && cursor < SIM_SIZE; i++) {
        unsigned shape = next_byte(r);
        uint64_t len = ((uint64_t)next_byte(r) + 1) * 64 * KiB + (next_byte(r) % 16) * PAGE_SIZE;
        uint64_t near4g = 4 * GiB - (shape & 0xf) * 64 * KiB;
        if (shape >= 0xa0 && shape < 0xc0 && cursor < near4g)
            cursor = near4g;                                /* at or just below 4 GiB */
        if (shape >= 0xc0) {
            cursor = align_up_u64(cursor, GiB);
            len = (1 + (shape & 1)) * GiB - (len % (16 * MiB));
            if (cursor >= SIM_SIZE)
                break;
        }
        uint64_t end = cursor + len > SIM_SIZE ? SIM_SIZE : cursor + len;
        l.area[l.count].start = PA(cursor);
        l.area[l.count].end = PA(end);
        l.count++;
        cursor = end + (1 + (uint64_t)next_byte(r)) * PAGE_SIZE;
    }
    *out = l;
}

/* Free every live block, drain the caches: the layout must be the
 * initial one. */
static void free_all_and_compare(const uint64_t initial[SNAP_WORDS])
{
    while (nlive) {
        nlive--;
        if (buddy_free(&B, PA(live[nlive].pa), UINT64_C(1) << live[nlive].order))
            fail("final free failed", live[nlive].pa, live[nlive].order);
    }
    buddy_check(&B);
    buddy_drain_all(&B);
    buddy_check(&B);
    harness_cpu_id = 0;
    uint64_t final[SNAP_WORDS];
    snapshot(final);
    if (memcmp(initial, final, sizeof final))
        fail("layout after freeing everything differs from the initial one", 0, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_sim_once(SIM_SIZE);
    harness_quiet = 1;
    struct reader r = { data, size };

    struct mm_area_list l;
    read_ranges(&r, &l);
    if (buddy_init(&B, &l) != 0)
        return 0;

    uint64_t initial[SNAP_WORDS];
    snapshot(initial);
    memset(frame_state, 0, sizeof frame_state);
    nlive = 0;
    model_used = 0;
    harness_cpu_id = 0;

    while (r.n) {
        unsigned op = next_byte(&r) % 11;
        if (op < 4 || op == 10) {
            unsigned order = next_byte(&r) % (FUZZ_MAX_ORDER + 2);
            if (order > FUZZ_MAX_ORDER)
                order = BUDDY_MAX_ORDER;           /* the top tier */
            if (op < 4)
                alloc_op(order, 0);
            else
                alloc_op(order, UINT64_C(1) << (12 + next_byte(&r) % 23));
        } else if (op < 6) {
            if (!nlive)
                continue;
            unsigned i = next_byte(&r) % nlive;
            uint64_t npages = UINT64_C(1) << live[i].order;
            if (buddy_free(&B, PA(live[i].pa), npages))
                fail("free of a live block failed", live[i].pa, npages);
            forget_live(i);
        } else if (op == 6) {
            bad_free(&r);
        } else if (op == 7) {
            buddy_check(&B);
        } else if (op == 8) {
            harness_cpu_id = next_byte(&r) % FUZZ_CPUS;
        } else {
            drain_op(next_byte(&r) % FUZZ_CPUS);
        }
        struct buddy_usage u;
        buddy_usage(&B, &u);
        if (u.used_npages + u.free_npages != u.total_npages || u.used_npages != model_used ||
            u.cached_npages > u.free_npages || u.cached_npages > FUZZ_CPUS * BUDDY_PCP_CAP)
            fail("usage does not add up", u.used_npages, model_used);
    }

    free_all_and_compare(initial);
    return 0;
}
