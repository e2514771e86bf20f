/*
 * test_bump.c - the boot-time bump allocator: address order, exhaustion,
 * contiguous runs, and the remainder accounting (checked frame by frame
 * against a bitmap of what was handed out).
 */
#include "harness.h"
#include <mm/bump.h>
#include <mm/log.h>

static void set_areas(struct mm_area_list *l, const uint64_t (*r)[2], unsigned n)
{
    l->count = n;
    for (unsigned i = 0; i < n; i++) {
        l->area[i].start = PA(r[i][0]);
        l->area[i].end = PA(r[i][1]);
    }
}

static const uint64_t three[][2] = {
    { MiB, MiB + 3 * PAGE_SIZE },
    { 2 * MiB, 2 * MiB + 2 * PAGE_SIZE },
    { 4 * GiB, 4 * GiB + 5 * PAGE_SIZE },
};

static void test_address_order_and_exhaustion(void)
{
    static struct bump_allocator bump;
    struct mm_area_list areas, rest;
    phys_addr_t pa;

    set_areas(&areas, three, 3);
    REQUIRE(bump_init(&bump, &areas) == 0);
    CHECK(bump.fa.free == NULL);
    uint64_t total = 0, last = 0;
    for (unsigned i = 0; i < areas.count; i++) {
        for (uint64_t a = areas.area[i].start.raw; a < areas.area[i].end.raw; a += PAGE_SIZE) {
            /* Through the generic interface, as the mapper calls it. */
            REQUIRE(frame_alloc(bump_frame_allocator(&bump), &pa) == 0);
            CHECK_EQ(pa.raw, a);
            CHECK(total == 0 || pa.raw > last);
            last = pa.raw;
            total++;
        }
    }
    CHECK_EQ(bump_used_frames(&bump), total);
    CHECK_EQ(bump_alloc(&bump, &pa), -MM_ENOMEM);
    CHECK_EQ(bump_alloc(&bump, &pa), -MM_ENOMEM);
    CHECK_EQ(bump_used_frames(&bump), total);
    bump_remainder(&bump, &rest);
    CHECK_EQ(rest.count, 0);
}

static void test_remainder_partial(void)
{
    static struct bump_allocator bump;
    struct mm_area_list areas, rest;
    phys_addr_t pa;

    set_areas(&areas, three, 3);
    REQUIRE(bump_init(&bump, &areas) == 0);
    bump_remainder(&bump, &rest);          /* nothing used: all of it */
    CHECK_EQ(rest.count, 3);
    CHECK(memcmp(&rest.area, &areas.area, 3 * sizeof areas.area[0]) == 0);

    REQUIRE(bump_init(&bump, &areas) == 0);
    for (int i = 0; i < 4; i++)
        REQUIRE(bump_alloc(&bump, &pa) == 0);
    CHECK_EQ(pa.raw, 2 * MiB);              /* 3 from area 0, then area 1 */
    bump_remainder(&bump, &rest);
    REQUIRE(rest.count == 2);
    CHECK_EQ(rest.area[0].start.raw, 2 * MiB + PAGE_SIZE);
    CHECK_EQ(rest.area[0].end.raw, 2 * MiB + 2 * PAGE_SIZE);
    CHECK_EQ(rest.area[1].start.raw, 4 * GiB);
    CHECK_EQ(rest.area[1].end.raw, 4 * GiB + 5 * PAGE_SIZE);

    /* Retired: the remainder belongs to someone else now. */
    harness_quiet = 1;
    CHECK_EQ(bump_alloc(&bump, &pa), -MM_ENOMEM);
    harness_quiet = 0;
    struct mm_area_list again;
    bump_remainder(&bump, &again);
    CHECK_EQ(again.count, rest.count);
    CHECK(memcmp(&again.area, &rest.area, rest.count * sizeof rest.area[0]) == 0);
}

static void test_contiguous(void)
{
    static struct bump_allocator bump;
    struct mm_area_list areas, rest;
    phys_addr_t pa;

    set_areas(&areas, three, 3);
    REQUIRE(bump_init(&bump, &areas) == 0);
    REQUIRE(bump_alloc(&bump, &pa) == 0);              /* area 0: 2 left */
    REQUIRE(bump_alloc_contig(&bump, 2, &pa) == 0);    /* fits in area 0 */
    CHECK_EQ(pa.raw, MiB + PAGE_SIZE);
    REQUIRE(bump_alloc(&bump, &pa) == 0);              /* area 1: 1 left */
    CHECK_EQ(pa.raw, 2 * MiB);

    /* Too big for anything: fails and changes nothing. */
    CHECK_EQ(bump_alloc_contig(&bump, 6, &pa), -MM_ENOMEM);
    CHECK_EQ(bump_used_frames(&bump), 4);

    /* 3 frames skip area 1's last frame; it must not be lost. */
    REQUIRE(bump_alloc_contig(&bump, 3, &pa) == 0);
    CHECK_EQ(pa.raw, 4 * GiB);
    REQUIRE(bump_alloc(&bump, &pa) == 0);              /* continues in area 2 */
    CHECK_EQ(pa.raw, 4 * GiB + 3 * PAGE_SIZE);
    CHECK_EQ(bump_used_frames(&bump), 8);

    bump_remainder(&bump, &rest);
    REQUIRE(rest.count == 2);
    CHECK_EQ(rest.area[0].start.raw, 2 * MiB + PAGE_SIZE);
    CHECK_EQ(rest.area[0].end.raw, 2 * MiB + 2 * PAGE_SIZE);
    CHECK_EQ(rest.area[1].start.raw, 4 * GiB + 4 * PAGE_SIZE);
    CHECK_EQ(rest.area[1].end.raw, 4 * GiB + 5 * PAGE_SIZE);

    harness_quiet = 1;
    CHECK_EQ(bump_alloc_contig(&bump, 0, &pa), -MM_EINVAL);
    harness_quiet = 0;
}

/*
 * Random areas and random single/contiguous allocations until exhaustion;
 * every frame must end up either handed out exactly once or in the
 * remainder exactly once, and nothing outside the areas may appear.
 */
#define SPACE_FRAMES (64 * MiB / PAGE_SIZE)

static void test_random_accounting(void)
{
    static uint8_t owner[SPACE_FRAMES];   /* 0 free, 1 handed out, 2 remainder */
    static uint8_t in_area[SPACE_FRAMES];
    static struct bump_allocator bump;
    uint64_t seed = 12345;

    for (int round = 0; round < 40; round++) {
        struct mm_area_list areas, rest;
        uint64_t pfn = rng_next(&seed) % 64, total = 0;

        memset(owner, 0, sizeof owner);
        memset(in_area, 0, sizeof in_area);
        areas.count = 0;
        while (areas.count < MM_MAX_AREAS) {
            uint64_t len = 1 + rng_next(&seed) % 200;
            if (pfn + len > SPACE_FRAMES)
                break;
            areas.area[areas.count].start = pfn_to_pa(pfn);
            areas.area[areas.count].end = pfn_to_pa(pfn + len);
            areas.count++;
            for (uint64_t f = pfn; f < pfn + len; f++)
                in_area[f] = 1;
            total += len;
            pfn += len + 1 + rng_next(&seed) % 300;
        }
        REQUIRE(bump_init(&bump, &areas) == 0);

        uint64_t used = 0, last = 0;
        int stop_after = (int)(rng_next(&seed) % 3000);   /* sometimes stop early */
        for (int step = 0; step < stop_after; step++) {
            uint64_t n = rng_next(&seed) % 4 == 0 ? 1 + rng_next(&seed) % 64 : 1;
            phys_addr_t pa;
            uint64_t before = bump_used_frames(&bump);
            int rc = n == 1 ? bump_alloc(&bump, &pa) : bump_alloc_contig(&bump, n, &pa);
            if (rc) {
                CHECK_EQ(rc, -MM_ENOMEM);
                CHECK_EQ(bump_used_frames(&bump), before);
                if (n == 1)
                    break;
                continue;
            }
            REQUIRE(is_aligned_u64(pa.raw, PAGE_SIZE));
            CHECK(used == 0 || pa.raw > last);        /* address order */
            for (uint64_t f = pa_to_pfn(pa); f < pa_to_pfn(pa) + n; f++) {
                REQUIRE(f < SPACE_FRAMES && in_area[f]);   /* contiguous, inside an area */
                REQUIRE(owner[f] == 0);                    /* never twice */
                owner[f] = 1;
            }
            last = pa.raw + (n - 1) * PAGE_SIZE;
            used += n;
            CHECK_EQ(bump_used_frames(&bump), used);
        }

        bump_remainder(&bump, &rest);
        uint64_t rest_frames = 0;
        for (unsigned i = 0; i < rest.count; i++) {
            const struct mm_area *a = &rest.area[i];
            REQUIRE(is_aligned_u64(a->start.raw, PAGE_SIZE) && is_aligned_u64(a->end.raw, PAGE_SIZE));
            REQUIRE(a->end.raw > a->start.raw);
            REQUIRE(i == 0 || a->start.raw > rest.area[i - 1].end.raw);
            for (uint64_t f = pa_to_pfn(a->start); f < pa_to_pfn(a->end); f++) {
                REQUIRE(f < SPACE_FRAMES && in_area[f]);
                REQUIRE(owner[f] == 0);
                owner[f] = 2;
                rest_frames++;
            }
        }
        CHECK_EQ(used + rest_frames, total);
        for (uint64_t f = 0; f < SPACE_FRAMES; f++)
            if (in_area[f] && owner[f] == 0) {
                fprintf(stderr, "  round %d: frame 0x%" PRIx64 " lost\n", round, f);
                harness_failed++;
                break;
            }
    }
}

/* bump never writes to the frames (they are not zeroed for the caller). */
static void test_frames_untouched(void)
{
    static struct bump_allocator bump;
    struct mm_area_list areas;
    const uint64_t r[][2] = { { MiB, MiB + 8 * PAGE_SIZE } };
    uint8_t *mem = sim_mem_init(4 * MiB);
    phys_addr_t pa;

    memset(mem + MiB, 0x5a, 8 * PAGE_SIZE);
    set_areas(&areas, r, 1);
    REQUIRE(bump_init(&bump, &areas) == 0);
    while (bump_alloc(&bump, &pa) == 0) {
        const uint8_t *p = pa_to_ptr(pa);
        CHECK(p[0] == 0x5a && p[PAGE_SIZE - 1] == 0x5a);
    }
    CHECK_EQ(bump_used_frames(&bump), 8);
    sim_mem_fini();
}

static void test_init_rejects_bad_lists(void)
{
    static struct bump_allocator bump;
    struct mm_area_list areas;
    const uint64_t unaligned[][2] = { { MiB + 1, 2 * MiB } };
    const uint64_t empty[][2] = { { MiB, MiB } };
    const uint64_t overlap[][2] = { { MiB, 3 * MiB }, { 2 * MiB, 4 * MiB } };
    const uint64_t adjacent[][2] = { { MiB, 2 * MiB }, { 2 * MiB, 4 * MiB } };
    const uint64_t unsorted[][2] = { { 8 * MiB, 9 * MiB }, { MiB, 2 * MiB } };

    const uint64_t too_high[][2] = { { MiB, 2 * MiB }, { MM_AREA_MAX_PA, MM_AREA_MAX_PA + MiB } };
    const struct { const uint64_t (*r)[2]; unsigned n; } bad[] = {
        { unaligned, 1 }, { empty, 1 }, { overlap, 2 }, { adjacent, 2 }, { unsorted, 2 },
        { too_high, 2 },
    };

    /* Each bad list: -MM_EINVAL, exactly one log line, *bump untouched. */
    memset(&bump, 0x5a, sizeof bump);
    harness_quiet = 1;
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        set_areas(&areas, bad[i].r, bad[i].n);
        unsigned long lines = harness_log_lines;
        CHECK_EQ(bump_init(&bump, &areas), -MM_EINVAL);
        CHECK_EQ(harness_log_lines - lines, 1);
    }
    areas.count = MM_MAX_AREAS + 1;
    CHECK_EQ(bump_init(&bump, &areas), -MM_EINVAL);
    harness_quiet = 0;
    const uint8_t *p = (const uint8_t *)&bump;
    bool untouched = true;
    for (size_t i = 0; i < sizeof bump; i++)
        untouched = untouched && p[i] == 0x5a;
    CHECK(untouched);

    /* An empty list is fine: nothing to hand out. */
    phys_addr_t pa;
    areas.count = 0;
    REQUIRE(bump_init(&bump, &areas) == 0);
    CHECK_EQ(bump_alloc(&bump, &pa), -MM_ENOMEM);
}

int main(void)
{
    RUN(test_address_order_and_exhaustion);
    RUN(test_remainder_partial);
    RUN(test_contiguous);
    RUN(test_random_accounting);
    RUN(test_frames_untouched);
    RUN(test_init_rejects_bad_lists);
    return harness_finish();
}
