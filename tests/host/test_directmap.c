/*
 * test_directmap.c - which physical bytes the direct map covers
 * (mm/directmap.c): the 16 TiB limit, the 2 MiB widening, lists longer than
 * MM_MAX_AREAS, the ioremap alias rule and the kernel image's alias layout.
 *
 * Memory maps are synthetic multiboot2 structures, built in a buffer the way
 * GRUB lays them out (the same builder as test_multiboot2.c, cut down to the
 * memory-map tag).  Expected results are written out from the input
 * constants.  The image-alias test arms alarm() so that an endless loop
 * fails the test instead of hanging the run.
 */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"
#include <signal.h>
#include <unistd.h>
#include <mm/directmap.h>
#include <mm/paging.h>

#define TiB (UINT64_C(1) << 40)
#define LIMIT MM_DIRECT_MAP_MAX_PA

/* ------------------------------------------------------------ the builder */

struct mbb {
    _Alignas(8) uint8_t buf[128 * 1024];    /* room for MB2_MAX_MAP_ENTRIES entries */
    uint32_t len;
};

struct ent { uint64_t base, len; uint32_t type; };

static void put32(struct mbb *b, uint32_t off, uint32_t v) { memcpy(b->buf + off, &v, 4); }
static void put64(struct mbb *b, uint32_t off, uint64_t v) { memcpy(b->buf + off, &v, 8); }

#define INFO_PA 0x10000u   /* where the tests pretend the structure lives */

/* Build {memory map tag with `n` entries, end tag} and parse it into *info. */
static int build(struct mbb *b, const struct ent *e, unsigned n, struct mb2_info *info)
{
    char err[MB2_ERR_LEN];
    memset(b->buf, 0, sizeof b->buf);
    uint32_t off = 8, tag_size = 16 + n * 24;
    put32(b, off, MB2_TAG_MMAP);
    put32(b, off + 4, tag_size);
    put32(b, off + 8, 24);
    put32(b, off + 12, 0);
    for (unsigned i = 0; i < n; i++) {
        put64(b, off + 16 + i * 24, e[i].base);
        put64(b, off + 16 + i * 24 + 8, e[i].len);
        put32(b, off + 16 + i * 24 + 16, e[i].type);
    }
    off = (uint32_t)align_up_u64(off + tag_size, 8);
    put32(b, off, MB2_TAG_END);
    put32(b, off + 4, 8);
    b->len = off + 8;
    put32(b, 0, b->len);
    int rc = mb2_parse(info, b->buf, PA(INFO_PA), sizeof b->buf, err, sizeof err);
    if (rc)
        fprintf(stderr, "  mb2_parse: %s\n", err);
    return rc;
}

static bool range_is(const struct directmap_ranges *r, unsigned i, uint64_t start, uint64_t end)
{
    if (i >= r->count) {
        fprintf(stderr, "  range %u missing (count %u)\n", i, r->count);
        return false;
    }
    if (r->area[i].start.raw != start || r->area[i].end.raw != end) {
        fprintf(stderr, "  range %u is [0x%" PRIx64 ", 0x%" PRIx64 "), expected [0x%" PRIx64
                ", 0x%" PRIx64 ")\n", i, r->area[i].start.raw, r->area[i].end.raw, start, end);
        return false;
    }
    return true;
}

static bool ranges_valid(const struct directmap_ranges *r)
{
    for (unsigned i = 0; i < r->count; i++) {
        const struct mm_area *a = &r->area[i];
        if (!is_aligned_u64(a->start.raw | a->end.raw, PAGE_SIZE) || a->end.raw <= a->start.raw ||
            a->end.raw > LIMIT || (i && a->start.raw <= r->area[i - 1].end.raw))
            return false;
    }
    return true;
}

/* Static: a struct directmap_ranges is 16 KiB, and so is the builder. */
static struct mbb b;
static struct mb2_info info;
static struct directmap_ranges ranges;

/* ------------------------------------------------- (a) the 16 TiB limit */

/* RAM and ACPI at or above 16 TiB: clipped from the ranges and the usable
 * areas, counted once where entries overlap, one log line. */
static void test_limit_clips_and_counts(void)
{
    static const struct ent map[] = {
        { 0, 0x9fc00, MB2_MEM_AVAILABLE },
        { 0x9fc00, 0x400, MB2_MEM_RESERVED },
        { 0xf0000, 0x10000, MB2_MEM_RESERVED },
        { 1 * MiB, 511 * MiB, MB2_MEM_AVAILABLE },
        { LIMIT - 4 * MiB, 4 * MiB + 1 * GiB, MB2_MEM_AVAILABLE },        /* straddles */
        { LIMIT + 512 * MiB, 512 * MiB + 2 * MiB, MB2_MEM_AVAILABLE },   /* overlaps it */
        { 17 * TiB, 4 * MiB, MB2_MEM_ACPI_RECLAIM },
        { UINT64_C(0x210000000000), 1 * GiB, MB2_MEM_AVAILABLE },        /* VA = MMIO pool */
        { UINT64_C(1) << 47, 1 * GiB, MB2_MEM_ACPI_NVS },                /* VA would wrap to 0 */
        { 20 * TiB, 1 * GiB, MB2_MEM_RESERVED },                         /* not RAM: not counted */
    };
    REQUIRE(build(&b, map, sizeof map / sizeof map[0], &info) == 0);

    unsigned long lines = harness_log_lines;
    REQUIRE(directmap_collect(&info, 46, &ranges) == 0);
    CHECK_EQ(harness_log_lines - lines, 1);
    CHECK(ranges_valid(&ranges));
    CHECK_EQ(ranges.count, 2);
    CHECK(range_is(&ranges, 0, 0, 512 * MiB));
    CHECK(range_is(&ranges, 1, LIMIT - 4 * MiB, LIMIT));
    CHECK_EQ(ranges.ignored_bytes, (1 * GiB + 2 * MiB) + 4 * MiB + 1 * GiB + 1 * GiB);
    CHECK(directmap_contains(&ranges, PA(LIMIT - PAGE_SIZE), PAGE_SIZE));
    CHECK(!directmap_contains(&ranges, PA(LIMIT), PAGE_SIZE));
    CHECK(!directmap_contains(&ranges, PA(LIMIT - PAGE_SIZE), 2 * PAGE_SIZE));

    /* The usable areas stop at the limit too. */
    struct mm_area_list usable;
    struct mb2_usable_stats st;
    struct mb2_reserved image = { PA(2 * MiB), PA(4 * MiB), "kernel image" };
    REQUIRE(directmap_usable_areas(&info, 46, &image, 1, &usable, &st) == 0);
    CHECK_EQ(usable.count, 3);
    CHECK(usable.count == 3 && usable.area[0].start.raw == 1 * MiB &&
          usable.area[0].end.raw == 2 * MiB && usable.area[1].start.raw == 4 * MiB &&
          usable.area[1].end.raw == 512 * MiB && usable.area[2].start.raw == LIMIT - 4 * MiB &&
          usable.area[2].end.raw == LIMIT);
    CHECK_EQ(st.usable_bytes, 1 * MiB + 508 * MiB + 4 * MiB);
    for (unsigned i = 0; i < usable.count; i++)
        CHECK(usable.area[i].end.raw <= LIMIT);
}

/* RAM only below the limit: nothing ignored, nothing logged. */
static void test_limit_quiet_below(void)
{
    static const struct ent map[] = {
        { 1 * MiB, 511 * MiB, MB2_MEM_AVAILABLE },
        { LIMIT - 2 * MiB, 2 * MiB, MB2_MEM_AVAILABLE },                  /* ends at it */
    };
    REQUIRE(build(&b, map, 2, &info) == 0);
    unsigned long lines = harness_log_lines;
    REQUIRE(directmap_collect(&info, 46, &ranges) == 0);
    CHECK_EQ(harness_log_lines - lines, 0);
    CHECK_EQ(ranges.ignored_bytes, 0);
    CHECK(range_is(&ranges, 1, LIMIT - 2 * MiB, LIMIT));

    /* Bad input: one log line each, nothing changed. */
    const struct mb2_reserved reversed = { PA(0x3000), PA(0x2000), "reversed" };
    struct mm_area_list usable = { .count = 7 };
    struct directmap_ranges *r2 = &ranges;
    unsigned count = r2->count;
    harness_quiet = 1;
    lines = harness_log_lines;
    CHECK_EQ(directmap_usable_areas(&info, 46, &reversed, 1, &usable, NULL), -MM_EINVAL);
    CHECK_EQ(directmap_usable_areas(&info, 31, NULL, 0, &usable, NULL), -MM_EINVAL);
    CHECK_EQ(directmap_usable_areas(&info, 53, NULL, 0, &usable, NULL), -MM_EINVAL);
    CHECK_EQ(directmap_collect(&info, 0, r2), -MM_EINVAL);
    CHECK_EQ(directmap_collect(&info, 64, r2), -MM_EINVAL);
    CHECK_EQ(harness_log_lines - lines, 5);
    harness_quiet = 0;
    CHECK_EQ(usable.count, 7);
    CHECK_EQ(r2->count, count);
}

/* Defect 6: RAM at or above 2^phys_bits is ignored (one log line) and
 * never becomes a usable area. */
static void test_phys_bits_limit(void)
{
    static const struct ent map[] = {
        { 1 * MiB, 511 * MiB, MB2_MEM_AVAILABLE },
        { 4 * GiB, 4 * GiB, MB2_MEM_AVAILABLE },
        { 60 * GiB, 8 * GiB, MB2_MEM_AVAILABLE },      /* crosses 2^36 = 64 GiB */
        { 128 * GiB, 1 * GiB, MB2_MEM_ACPI_NVS },      /* wholly above */
        { 200 * GiB, 1 * GiB, MB2_MEM_RESERVED },      /* not RAM: not counted */
    };
    const uint64_t cpu_limit = UINT64_C(1) << 36;
    REQUIRE(build(&b, map, sizeof map / sizeof map[0], &info) == 0);
    unsigned long lines = harness_log_lines;
    harness_quiet = 1;
    REQUIRE(directmap_collect(&info, 36, &ranges) == 0);
    harness_quiet = 0;
    CHECK_EQ(harness_log_lines - lines, 1);
    CHECK(ranges_valid(&ranges));
    CHECK_EQ(ranges.count, 3);
    CHECK(range_is(&ranges, 2, 60 * GiB, cpu_limit));
    CHECK_EQ(ranges.ignored_bytes, 4 * GiB + 1 * GiB);
    CHECK(!directmap_contains(&ranges, PA(cpu_limit), PAGE_SIZE));

    struct mm_area_list usable;
    struct mb2_usable_stats st;
    lines = harness_log_lines;
    REQUIRE(directmap_usable_areas(&info, 36, NULL, 0, &usable, &st) == 0);
    CHECK_EQ(harness_log_lines - lines, 0);
    CHECK_EQ(usable.count, 3);
    CHECK(usable.count == 3 && usable.area[2].start.raw == 60 * GiB &&
          usable.area[2].end.raw == cpu_limit);
    for (unsigned i = 0; i < usable.count; i++)
        CHECK(usable.area[i].end.raw <= cpu_limit);
    CHECK_EQ(st.reserved_bytes, st.ram_bytes - st.usable_bytes);

    /* A wide CPU: the 16 TiB limit applies, all of it is kept. */
    REQUIRE(directmap_collect(&info, 52, &ranges) == 0);
    CHECK_EQ(ranges.ignored_bytes, 0);
    CHECK(range_is(&ranges, 2, 60 * GiB, 68 * GiB));
}

/*
 * Defect 5: a map of 4,000 entries costs O(n log n) steps, counted by
 * mm_memmap_steps() (comparisons, moves and entries read), not timed.  The
 * map is the worst case of the old chained scans: tiny adjacent entries
 * (every eighth one reserved), in descending order.
 */
static void test_collect_steps_bound(void)
{
    enum { N = 4000 };
    static struct ent map[N];
    for (unsigned i = 0; i < N; i++) {
        uint64_t k = N - 1 - i;
        map[i] = (struct ent){ 64 * MiB + k * 8 * KiB, 8 * KiB,
                               k % 8 == 0 ? MB2_MEM_RESERVED : MB2_MEM_AVAILABLE };
    }
    REQUIRE(build(&b, map, N, &info) == 0);
    uint64_t before = mm_memmap_steps();
    REQUIRE(directmap_collect(&info, 46, &ranges) == 0);
    uint64_t steps = mm_memmap_steps() - before;
    /* n log2 n = 4000 * 12 = 48,000: two heapsorts take about 4 n log2 n. */
    const uint64_t bound = 8 * (uint64_t)N * 12;
    fprintf(stderr, "  directmap_collect, %u entries: %lu steps (bound %lu)\n", N,
            (unsigned long)steps, (unsigned long)bound);
    CHECK(steps >= N);          /* the counted code did the work */
    CHECK(steps <= bound);
    CHECK(ranges_valid(&ranges));
    /* Adjacent entries of any type chain into one described run, RAM in it
     * is widened over the reserved pieces: one range. */
    CHECK_EQ(ranges.count, 1);
    CHECK(range_is(&ranges, 0, 64 * MiB, 64 * MiB + N * 8 * KiB));

    struct mm_area_list usable;
    struct mb2_usable_stats st;
    before = mm_memmap_steps();
    harness_quiet = 1;
    REQUIRE(directmap_usable_areas(&info, 46, NULL, 0, &usable, &st) == 0);
    harness_quiet = 0;
    steps = mm_memmap_steps() - before;
    fprintf(stderr, "  directmap_usable_areas, %u entries: %lu steps (bound %lu)\n", N,
            (unsigned long)steps, (unsigned long)bound);
    CHECK(steps <= bound);
    CHECK_EQ(usable.count, MM_MAX_AREAS);
    CHECK_EQ(st.ram_bytes, (uint64_t)(N - N / 8) * 8 * KiB);
}

/* ------------------------------------- the 2 MiB widening (kept behaviour) */

static void test_widening_only_over_described_bytes(void)
{
    static const struct ent map[] = {
        { 0, 0x9fc00, MB2_MEM_AVAILABLE },                    /* first MiB: widened */
        { 0x9fc00, 0x400, MB2_MEM_RESERVED },
        { 1 * MiB, 2 * MiB + 4 * KiB, MB2_MEM_AVAILABLE },    /* to 3 MiB + 4 KiB */
        { 3 * MiB + 4 * KiB, 1 * MiB - 4 * KiB, MB2_MEM_RESERVED },  /* -> 4 MiB */
        { 8 * MiB + 4 * KiB, 1 * MiB - 4 * KiB, MB2_MEM_AVAILABLE }, /* holes both sides */
        { 12 * MiB, 8 * KiB, MB2_MEM_RESERVED },
        { 12 * MiB + 8 * KiB, 8 * KiB, MB2_MEM_ACPI_NVS },    /* ACPI, inside reserved */
        { 12 * MiB + 16 * KiB, 2 * MiB - 16 * KiB, MB2_MEM_RESERVED },
        { 20 * MiB, 1 * MiB, MB2_MEM_AVAILABLE },
        { 21 * MiB, 512 * KiB, MB2_MEM_RESERVED },            /* then a hole: not widened */
        { 30 * MiB + 100, 4900, MB2_MEM_AVAILABLE },          /* partial pages: rounded out */
        { 40 * MiB + 64 * KiB, 64 * KiB, MB2_MEM_ACPI_RECLAIM },
        { 40 * MiB, 64 * KiB, MB2_MEM_BAD },                  /* any type describes bytes */
        { 40 * MiB + 128 * KiB, 2 * MiB - 128 * KiB, 77 },    /* unknown type too */
    };
    REQUIRE(build(&b, map, sizeof map / sizeof map[0], &info) == 0);
    REQUIRE(directmap_collect(&info, 46, &ranges) == 0);
    CHECK(ranges_valid(&ranges));
    CHECK_EQ(ranges.count, 6);
    CHECK(range_is(&ranges, 0, 0, 4 * MiB));
    CHECK(range_is(&ranges, 1, 8 * MiB + 4 * KiB, 9 * MiB));
    CHECK(range_is(&ranges, 2, 12 * MiB, 14 * MiB));
    CHECK(range_is(&ranges, 3, 20 * MiB, 21 * MiB));
    CHECK(range_is(&ranges, 4, 30 * MiB, 30 * MiB + 8 * KiB));
    CHECK(range_is(&ranges, 5, 40 * MiB, 42 * MiB));
    CHECK_EQ(ranges.ignored_bytes, 0);
}

/* ------------------------------------------- (d) more than MM_MAX_AREAS */

static struct ent many[1100];
_Static_assert(DIRECTMAP_MAX_RANGES < 1100 && 3 * MM_MAX_AREAS < 1100, "many[] too small");

/* n disjoint RAM entries of 64 KiB, 4 MiB apart, holes between them. */
static void fill_many(unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        many[i] = (struct ent){ 16 * MiB + i * 4 * MiB, 64 * KiB, MB2_MEM_AVAILABLE };
}

static void test_more_ranges_than_areas(void)
{
    enum { N = MM_MAX_AREAS * 3 };
    fill_many(N);
    REQUIRE(build(&b, many, N, &info) == 0);
    REQUIRE(directmap_collect(&info, 46, &ranges) == 0);
    CHECK(ranges_valid(&ranges));
    CHECK_EQ(ranges.count, N);
    for (unsigned i = 0; i < ranges.count; i++)
        CHECK(range_is(&ranges, i, many[i].base, many[i].base + many[i].len));

    /* The usable areas keep the largest MM_MAX_AREAS (logged), no panic. */
    struct mm_area_list usable;
    struct mb2_usable_stats st;
    harness_quiet = 1;
    REQUIRE(directmap_usable_areas(&info, 46, NULL, 0, &usable, &st) == 0);
    harness_quiet = 0;
    CHECK_EQ(usable.count, MM_MAX_AREAS);
    CHECK_EQ(st.dropped_areas, N - MM_MAX_AREAS);
}

/* Exactly the capacity fits; one more is refused with one log line. */
static void test_range_capacity(void)
{
    fill_many(DIRECTMAP_MAX_RANGES);
    REQUIRE(build(&b, many, DIRECTMAP_MAX_RANGES, &info) == 0);
    REQUIRE(directmap_collect(&info, 46, &ranges) == 0);
    CHECK_EQ(ranges.count, DIRECTMAP_MAX_RANGES);

    fill_many(DIRECTMAP_MAX_RANGES + 1);
    REQUIRE(build(&b, many, DIRECTMAP_MAX_RANGES + 1, &info) == 0);
    unsigned long lines = harness_log_lines;
    harness_quiet = 1;
    CHECK_EQ(directmap_collect(&info, 46, &ranges), -MM_ENOMEM);
    harness_quiet = 0;
    CHECK_EQ(harness_log_lines - lines, 1);
}

/* --------------------------------------------- (c) the ioremap alias rule */

/* A SeaBIOS-like map: ACPI tables in reserved memory at the top of low
 * RAM, an ACPI type-3 range, and ACPI type 3 inside the first MiB. */
static const struct ent bios_map[] = {
    { 0, 0x9fc00, MB2_MEM_AVAILABLE },
    { 0x9fc00, 0x400, MB2_MEM_RESERVED },
    { 0xe0000, 0x8000, MB2_MEM_ACPI_RECLAIM },
    { 0xf0000, 0x10000, MB2_MEM_RESERVED },
    { 1 * MiB, 0x1ffe0000 - 1 * MiB, MB2_MEM_AVAILABLE },
    { 0x1ffe0000, 0x20000, MB2_MEM_RESERVED },
    { 0x7fff0000, 0x10000, MB2_MEM_ACPI_RECLAIM },
    { 0xfeffc000, 0x4000, MB2_MEM_RESERVED },
    { 0xfffc0000, 0x40000, MB2_MEM_RESERVED },
    { 4 * GiB, 2 * GiB, MB2_MEM_AVAILABLE },
};

static bool conflict(uint64_t pa, uint64_t size)
{
    return directmap_ioremap_conflict(&ranges, &info, PA(pa), size, NULL);
}

static void test_ioremap_alias_rule(void)
{
    REQUIRE(build(&b, bios_map, sizeof bios_map / sizeof bios_map[0], &info) == 0);
    REQUIRE(directmap_collect(&info, 46, &ranges) == 0);
    REQUIRE(range_is(&ranges, 0, 0, 512 * MiB));

    /* RAM, whole page and a few bytes of it. */
    struct mm_area hit = { PA(1), PA(1) };
    CHECK(directmap_ioremap_conflict(&ranges, &info, PA(0x200000), PAGE_SIZE, &hit));
    CHECK_EQ(hit.start.raw, 0);
    CHECK_EQ(hit.end.raw, 512 * MiB);
    CHECK(conflict(0x200010, 4));
    CHECK(conflict(4 * GiB + 0x123, 1));
    CHECK(conflict(0x1000, PAGE_SIZE));
    /* Reserved bytes only, but in a page that holds RAM: refused. */
    CHECK(conflict(0x9fc00, 0x400));
    /* Reserved bytes above 1 MiB that the widening mapped write-back. */
    CHECK(conflict(0x1ffe0000, PAGE_SIZE));
    /* ACPI type 3, above and below 1 MiB. */
    CHECK(conflict(0x7fff0000, 0x100));
    CHECK(directmap_ioremap_conflict(&ranges, &info, PA(0x7fff0000), 0x100, &hit));
    CHECK_EQ(hit.start.raw, 0x7fff0000);   /* not widened: a hole below */
    CHECK(conflict(0xe0000, PAGE_SIZE));
    /* A legacy request that reaches past 1 MiB into RAM. */
    CHECK(conflict(0xff000, 2 * PAGE_SIZE));
    CHECK(conflict(0xb8000, 2 * GiB));

    /* The VGA window, not covered by RAM/ACPI: allowed (MTRRs: uncached). */
    CHECK(!conflict(0xb8000, 80 * 25 * 2));
    CHECK(!conflict(0xa0000, 0x20000));
    /* Option ROMs and the BIOS area are direct-mapped and, unlike the VGA
     * window, cacheable (write-protect MTRRs): refused. */
    CHECK(conflict(0xc0000, 0x20000));
    CHECK(conflict(0xf0000, 0x10000));
    CHECK(conflict(0xbf000, 2 * PAGE_SIZE));       /* straddles the VGA end */
    /* Devices in holes of the map: allowed. */
    CHECK(!conflict(0xfee00000, PAGE_SIZE));       /* LAPIC */
    CHECK(!conflict(0xfee00030, 4));
    CHECK(!conflict(0xfec00000, PAGE_SIZE));       /* I/O APIC */
    CHECK(!conflict(0xfe000000, 4 * MiB));
    CHECK(!conflict(0xfeffc000, 0x4000));          /* reserved, not widened */
    CHECK(!conflict(0x20000000, PAGE_SIZE));       /* just past the widened range */
    CHECK(!conflict(0xb8000, 0));                  /* empty: mmio_ioremap refuses it */

    /* Near 2^64: no overflow, no false hit, whatever the size. */
    CHECK(!conflict(UINT64_MAX, 1));
    CHECK(!conflict(UINT64_MAX - 0x10, 0x10));
    CHECK(!conflict(UINT64_C(0xfffffffffffff000), PAGE_SIZE));
    CHECK(!conflict(UINT64_C(0xfffffffffffff000), UINT64_MAX));
    CHECK(!conflict(UINT64_MAX - 100, 4 * PAGE_SIZE));
    /* A size reaching past 2^64 from RAM is checked up to 2^64 - 1. */
    CHECK(conflict(0x200000, UINT64_MAX));
}

/* The VGA window when the firmware calls it RAM: refused. */
static void test_ioremap_vga_covered_by_ram(void)
{
    static const struct ent map[] = {
        { 0, 0xc0000, MB2_MEM_AVAILABLE },
        { 1 * MiB, 63 * MiB, MB2_MEM_AVAILABLE },
    };
    REQUIRE(build(&b, map, 2, &info) == 0);
    REQUIRE(directmap_collect(&info, 46, &ranges) == 0);
    CHECK(conflict(0xb8000, 80 * 25 * 2));
    CHECK(conflict(0xc0000, PAGE_SIZE));           /* direct-mapped, not VGA */
    CHECK(conflict(0xbf000, PAGE_SIZE + 1));       /* its last page holds RAM */
}

/* ----------------------------------------- (b) the kernel image's alias */

struct piece { uint64_t start, end, flags; };
struct pieces { unsigned n; struct piece p[32]; };

static void record_piece(void *ctx, uint64_t start, uint64_t end, uint64_t flags)
{
    struct pieces *ps = ctx;
    if (ps->n < 32)
        ps->p[ps->n] = (struct piece){ start, end, flags };
    ps->n++;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "  directmap_image_alias did not return within 10 s\n";
    if (write(2, msg, sizeof msg - 1) < 0) {
        /* nothing more to say */
    }
    _exit(1);
}

#define KVMA UINT64_C(0xffffffff80000000)
#define IMG  (2 * MiB)

static struct mm_image_section sec(const char *name, uint64_t pa, uint64_t size,
                                   uint64_t flags)
{
    return (struct mm_image_section){ name, VA(pa + KVMA), size, flags };
}

static bool piece_is(const struct pieces *ps, unsigned i, uint64_t start, uint64_t end,
                     uint64_t flags)
{
    if (i >= ps->n || ps->p[i].start != start || ps->p[i].end != end || ps->p[i].flags != flags) {
        fprintf(stderr, "  piece %u: expected [0x%" PRIx64 ", 0x%" PRIx64 ") flags 0x%" PRIx64
                "\n", i, start, end, flags);
        return false;
    }
    return true;
}

static void test_image_alias_zero_size_sections(void)
{
    struct mm_boot_params p = { 0 };
    p.image_pa_start = PA(IMG);
    p.image_pa_end = PA(IMG + 64 * KiB);
    p.image_va_offset = KVMA;
    /* Out of order, an empty .rodata between text and data, an empty
     * section at the very end, and one at the start. */
    p.sections[0] = sec("data", IMG + 16 * KiB, 16 * KiB, PTE_KERNEL_RW);
    p.sections[1] = sec("rodata", IMG + 16 * KiB, 0, PTE_KERNEL_RO);
    p.sections[2] = sec("text", IMG + 4 * KiB, 12 * KiB, PTE_KERNEL_TEXT);
    p.sections[3] = sec("tail", IMG + 64 * KiB, 0, PTE_KERNEL_RO);
    p.sections[4] = sec("head", IMG, 0, PTE_KERNEL_RO);
    p.nsections = 5;

    struct pieces ps = { 0 };
    signal(SIGALRM, on_alarm);
    alarm(10);
    directmap_image_alias(&p, record_piece, &ps);
    alarm(0);
    CHECK_EQ(ps.n, 4);
    CHECK(piece_is(&ps, 0, IMG, IMG + 4 * KiB, PTE_KERNEL_RW));
    CHECK(piece_is(&ps, 1, IMG + 4 * KiB, IMG + 16 * KiB, PTE_KERNEL_RO));
    CHECK(piece_is(&ps, 2, IMG + 16 * KiB, IMG + 32 * KiB, PTE_KERNEL_RW));
    CHECK(piece_is(&ps, 3, IMG + 32 * KiB, IMG + 64 * KiB, PTE_KERNEL_RW));

    /* Only empty sections: the whole image read-write in one piece. */
    p.sections[0].size = p.sections[2].size = 0;
    ps.n = 0;
    alarm(10);
    directmap_image_alias(&p, record_piece, &ps);
    alarm(0);
    CHECK_EQ(ps.n, 1);
    CHECK(piece_is(&ps, 0, IMG, IMG + 64 * KiB, PTE_KERNEL_RW));
}

/* The test kernel's layout: boot stub, text, rodata, data+bss; and two
 * overlapping sections, where the earlier one keeps its bytes. */
static void test_image_alias_layout(void)
{
    struct mm_boot_params p = { 0 };
    p.image_pa_start = PA(IMG);
    p.image_pa_end = PA(IMG + 40 * KiB);
    p.image_va_offset = KVMA;
    p.sections[0] = sec("text", IMG + 8 * KiB, 16 * KiB, PTE_KERNEL_TEXT);
    p.sections[1] = sec("rodata", IMG + 24 * KiB, 8 * KiB, PTE_KERNEL_RO);
    p.sections[2] = sec("data+bss", IMG + 32 * KiB, 8 * KiB, PTE_KERNEL_RW);
    p.nsections = 3;
    struct pieces ps = { 0 };
    directmap_image_alias(&p, record_piece, &ps);
    CHECK_EQ(ps.n, 4);
    CHECK(piece_is(&ps, 0, IMG, IMG + 8 * KiB, PTE_KERNEL_RW));
    CHECK(piece_is(&ps, 1, IMG + 8 * KiB, IMG + 24 * KiB, PTE_KERNEL_RO));
    CHECK(piece_is(&ps, 2, IMG + 24 * KiB, IMG + 32 * KiB, PTE_KERNEL_RO));
    CHECK(piece_is(&ps, 3, IMG + 32 * KiB, IMG + 40 * KiB, PTE_KERNEL_RW));

    p.sections[1] = sec("rodata", IMG + 16 * KiB, 16 * KiB, PTE_KERNEL_RW);  /* overlaps text */
    ps.n = 0;
    directmap_image_alias(&p, record_piece, &ps);
    CHECK_EQ(ps.n, 4);
    CHECK(piece_is(&ps, 1, IMG + 8 * KiB, IMG + 24 * KiB, PTE_KERNEL_RO));
    CHECK(piece_is(&ps, 2, IMG + 24 * KiB, IMG + 32 * KiB, PTE_KERNEL_RW));
}

int main(void)
{
    RUN(test_limit_clips_and_counts);
    RUN(test_limit_quiet_below);
    RUN(test_phys_bits_limit);
    RUN(test_collect_steps_bound);
    RUN(test_widening_only_over_described_bytes);
    RUN(test_more_ranges_than_areas);
    RUN(test_range_capacity);
    RUN(test_ioremap_alias_rule);
    RUN(test_ioremap_vga_covered_by_ram);
    RUN(test_image_alias_zero_size_sections);
    RUN(test_image_alias_layout);
    return harness_finish();
}
