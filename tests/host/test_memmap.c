/*
 * test_memmap.c - the area-list operations of mm/memmap.c: the validator,
 * add, subtract, sort, merge and cover, on hand-written lists and on random
 * operation sequences checked against a page bitmap.  Each bad input must
 * return its error, print exactly one log line and leave the list as it
 * was.  (The usable-area computation is tested in test_multiboot2.c and
 * test_directmap.c.)
 */
#include "harness.h"
#include <mm/memmap.h>

static void set_list(struct mm_area_list *l, const uint64_t (*r)[2], unsigned n)
{
    memset(l, 0, sizeof *l);
    l->count = n;
    for (unsigned i = 0; i < n; i++)
        l->area[i] = (struct mm_area){ PA(r[i][0]), PA(r[i][1]) };
}

static bool list_is(const struct mm_area_list *l, const uint64_t (*r)[2], unsigned n)
{
    bool ok = l->count == n;
    for (unsigned i = 0; ok && i < n; i++)
        ok = l->area[i].start.raw == r[i][0] && l->area[i].end.raw == r[i][1];
    if (!ok) {
        fprintf(stderr, "  list has %u areas:", l->count);
        for (unsigned i = 0; i < l->count && i < 8; i++)
            fprintf(stderr, " [%#" PRIx64 ", %#" PRIx64 ")", l->area[i].start.raw,
                    l->area[i].end.raw);
        fprintf(stderr, "\n");
    }
    return ok;
}

/* Run `call` (which must fail with `err`) quietly; one log line, no change. */
#define EXPECT_REFUSED(l, call, err)                                          \
    do {                                                                      \
        struct mm_area_list _copy = *(l);                                     \
        unsigned long _lines = harness_log_lines;                             \
        harness_quiet = 1;                                                    \
        CHECK_EQ((call), (err));                                              \
        harness_quiet = 0;                                                    \
        CHECK_EQ(harness_log_lines - _lines, (err) == -MM_EINVAL ? 1 : 0);   \
        CHECK(memcmp(&_copy, (l), sizeof _copy) == 0);                        \
    } while (0)

static void test_check(void)
{
    struct mm_area_list l;
    const uint64_t good[][2] = { { MiB, 2 * MiB }, { 2 * MiB + 4096, 3 * MiB } };
    const uint64_t bad[][2][2] = {
        { { MiB + 1, 2 * MiB }, { 4 * MiB, 5 * MiB } },          /* unaligned */
        { { MiB, MiB }, { 4 * MiB, 5 * MiB } },                  /* empty */
        { { MiB, 2 * MiB }, { 2 * MiB, 5 * MiB } },              /* adjacent */
        { { MiB, 3 * MiB }, { 2 * MiB, 5 * MiB } },              /* overlapping */
        { { 4 * MiB, 5 * MiB }, { MiB, 2 * MiB } },              /* unsorted */
        { { MiB, 2 * MiB }, { MM_AREA_MAX_PA, MM_AREA_MAX_PA + 4096 } },  /* too high */
    };

    set_list(&l, good, 2);
    CHECK_EQ(mm_area_list_check(&l, "test"), 0);
    l.count = 0;
    CHECK_EQ(mm_area_list_check(&l, "test"), 0);
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        set_list(&l, bad[i], 2);
        EXPECT_REFUSED(&l, mm_area_list_check(&l, "test"), -MM_EINVAL);
    }
    l.count = MM_MAX_AREAS + 1;
    EXPECT_REFUSED(&l, mm_area_list_check(&l, "test"), -MM_EINVAL);
}

static void test_add(void)
{
    struct mm_area_list l;
    const uint64_t start[][2] = { { 4 * MiB, 5 * MiB }, { 8 * MiB, 9 * MiB } };

    set_list(&l, start, 2);
    REQUIRE(mm_area_list_add(&l, PA(MiB), PA(2 * MiB)) == 0);          /* before */
    REQUIRE(mm_area_list_add(&l, PA(12 * MiB), PA(13 * MiB)) == 0);    /* after */
    REQUIRE(mm_area_list_add(&l, PA(6 * MiB), PA(7 * MiB)) == 0);      /* between */
    const uint64_t want1[][2] = { { MiB, 2 * MiB }, { 4 * MiB, 5 * MiB }, { 6 * MiB, 7 * MiB },
                                  { 8 * MiB, 9 * MiB }, { 12 * MiB, 13 * MiB } };
    CHECK(list_is(&l, want1, 5));
    /* Touching on both sides merges three into one. */
    REQUIRE(mm_area_list_add(&l, PA(5 * MiB), PA(6 * MiB)) == 0);
    /* Overlapping several swallows them. */
    REQUIRE(mm_area_list_add(&l, PA(8 * MiB + 4096), PA(12 * MiB + 4096)) == 0);
    const uint64_t want2[][2] = { { MiB, 2 * MiB }, { 4 * MiB, 7 * MiB },
                                  { 8 * MiB, 13 * MiB } };
    CHECK(list_is(&l, want2, 3));
    CHECK_EQ(mm_area_list_check(&l, "test"), 0);

    EXPECT_REFUSED(&l, mm_area_list_add(&l, PA(MiB + 1), PA(2 * MiB)), -MM_EINVAL);
    EXPECT_REFUSED(&l, mm_area_list_add(&l, PA(2 * MiB), PA(2 * MiB)), -MM_EINVAL);
    EXPECT_REFUSED(&l, mm_area_list_add(&l, PA(MM_AREA_MAX_PA), PA(MM_AREA_MAX_PA + 4096)),
                   -MM_EINVAL);
    struct mm_area_list broken = l;
    broken.area[1].start = PA(2 * MiB);     /* adjacent to area 0 */
    EXPECT_REFUSED(&broken, mm_area_list_add(&broken, PA(20 * MiB), PA(21 * MiB)), -MM_EINVAL);

    /* Full: a new separate area is refused, a merging one is not. */
    l.count = 0;
    for (unsigned i = 0; i < MM_MAX_AREAS; i++)
        REQUIRE(mm_area_list_add(&l, PA((2 * i + 2) * MiB), PA((2 * i + 3) * MiB)) == 0);
    EXPECT_REFUSED(&l, mm_area_list_add(&l, PA(0), PA(MiB)), -MM_ENOMEM);
    CHECK_EQ(mm_area_list_add(&l, PA(MiB), PA(2 * MiB)), 0);
    CHECK_EQ(l.count, MM_MAX_AREAS);
}

static void test_subtract(void)
{
    struct mm_area_list l;
    const uint64_t start[][2] = { { 4 * MiB, 8 * MiB }, { 10 * MiB, 12 * MiB },
                                  { 14 * MiB, 16 * MiB } };

    set_list(&l, start, 3);
    REQUIRE(mm_area_list_subtract(&l, PA(5 * MiB), PA(6 * MiB)) == 0);   /* split */
    REQUIRE(mm_area_list_subtract(&l, PA(0), PA(4 * MiB)) == 0);         /* touches: no-op */
    REQUIRE(mm_area_list_subtract(&l, PA(9 * MiB), PA(9 * MiB)) == 0);   /* empty */
    const uint64_t want1[][2] = { { 4 * MiB, 5 * MiB }, { 6 * MiB, 8 * MiB },
                                  { 10 * MiB, 12 * MiB }, { 14 * MiB, 16 * MiB } };
    CHECK(list_is(&l, want1, 4));
    /* Trims the ends of two areas and removes the one between. */
    REQUIRE(mm_area_list_subtract(&l, PA(7 * MiB), PA(15 * MiB)) == 0);
    const uint64_t want2[][2] = { { 4 * MiB, 5 * MiB }, { 6 * MiB, 7 * MiB },
                                  { 15 * MiB, 16 * MiB } };
    CHECK(list_is(&l, want2, 3));
    REQUIRE(mm_area_list_subtract(&l, PA(0), PA(64 * MiB)) == 0);
    CHECK_EQ(l.count, 0);

    set_list(&l, start, 3);
    EXPECT_REFUSED(&l, mm_area_list_subtract(&l, PA(5 * MiB + 1), PA(6 * MiB)), -MM_EINVAL);
    EXPECT_REFUSED(&l, mm_area_list_subtract(&l, PA(6 * MiB), PA(5 * MiB)), -MM_EINVAL);

    /* Full: a split is refused, a trim is not. */
    l.count = 0;
    for (unsigned i = 0; i < MM_MAX_AREAS; i++)
        REQUIRE(mm_area_list_add(&l, PA((4 * i + 4) * MiB), PA((4 * i + 6) * MiB)) == 0);
    EXPECT_REFUSED(&l, mm_area_list_subtract(&l, PA(4 * MiB + 4096), PA(5 * MiB)), -MM_ENOMEM);
    CHECK_EQ(mm_area_list_subtract(&l, PA(4 * MiB), PA(5 * MiB)), 0);
    CHECK_EQ(l.count, MM_MAX_AREAS);
}

static void test_sort_merge_cover(void)
{
    static struct mm_area a[1000];
    uint64_t seed = 7;
    for (unsigned n = 0; n < 1000; n += 1 + n / 3) {
        for (unsigned i = 0; i < n; i++) {
            uint64_t s = rng_next(&seed) % 1000, len = rng_next(&seed) % 5;
            a[i] = (struct mm_area){ PA(s), PA(s + len) };
        }
        mm_areas_sort(a, n);
        for (unsigned i = 1; i < n; i++)
            CHECK(a[i - 1].start.raw < a[i].start.raw ||
                  (a[i - 1].start.raw == a[i].start.raw && a[i - 1].end.raw <= a[i].end.raw));
        /* Merge against a byte model. */
        static bool model[1010];
        memset(model, 0, sizeof model);
        for (unsigned i = 0; i < n; i++)
            for (uint64_t x = a[i].start.raw; x < a[i].end.raw; x++)
                model[x] = true;
        unsigned m = mm_areas_merge(a, n);
        for (unsigned i = 0; i < m; i++) {
            CHECK(a[i].start.raw < a[i].end.raw);
            CHECK(i == 0 || a[i - 1].end.raw < a[i].start.raw);
        }
        for (uint64_t x = 0; x < 1010; x++) {
            bool in = mm_areas_cover(a, m, x, x + 1);
            if (in != model[x]) {
                fprintf(stderr, "  n %u: byte %lu model %d cover %d\n", n, (unsigned long)x,
                        model[x], in);
                harness_failed++;
                return;
            }
        }
    }
    /* Cover needs one range to hold all of it. */
    struct mm_area two[] = { { PA(0), PA(10) }, { PA(11), PA(20) } };
    CHECK(mm_areas_cover(two, 2, 2, 10));
    CHECK(!mm_areas_cover(two, 2, 2, 12));
    CHECK(mm_areas_cover(two, 2, 5, 5));
    CHECK(!mm_areas_cover(two, 0, 1, 2));
}

/* Random adds and subtracts against a page bitmap. */
static void test_random_against_bitmap(void)
{
    enum { PAGES = 512 };
    static bool model[PAGES];
    struct mm_area_list l = { .count = 0 };
    uint64_t seed = 99;

    memset(model, 0, sizeof model);
    for (int step = 0; step < 5000; step++) {
        uint64_t p0 = rng_next(&seed) % PAGES, len = 1 + rng_next(&seed) % 8;
        if (p0 + len > PAGES)
            len = PAGES - p0;
        bool add = rng_next(&seed) % 2;
        int rc = add ? mm_area_list_add(&l, PA(p0 * PAGE_SIZE), PA((p0 + len) * PAGE_SIZE))
                     : mm_area_list_subtract(&l, PA(p0 * PAGE_SIZE), PA((p0 + len) * PAGE_SIZE));
        if (rc == -MM_ENOMEM)
            continue;
        REQUIRE(rc == 0);
        for (uint64_t p = p0; p < p0 + len; p++)
            model[p] = add;
        REQUIRE(mm_area_list_check(&l, "random") == 0);
        for (uint64_t p = 0; p < PAGES; p++) {
            bool in = mm_areas_cover(l.area, l.count, p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
            if (in != model[p]) {
                fprintf(stderr, "  step %d: page %lu model %d list %d\n", step,
                        (unsigned long)p, model[p], in);
                harness_failed++;
                return;
            }
        }
    }
}

int main(void)
{
    RUN(test_check);
    RUN(test_add);
    RUN(test_subtract);
    RUN(test_sort_merge_cover);
    RUN(test_random_against_bitmap);
    return harness_finish();
}
