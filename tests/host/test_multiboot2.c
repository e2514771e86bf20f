/*
 * test_multiboot2.c - the multiboot2 parser and the usable-area computation.
 *
 * Boot information structures are built in a buffer by a small builder, the
 * way GRUB lays them out (8-byte aligned tags, end tag, total_size).  Area
 * results are checked against expectations derived from the input
 * constants, and, for random maps, against a brute-force model that marks
 * every 256-byte unit.
 */
#include "harness.h"
#include <mm/log.h>
#include <mm/multiboot2.h>

/* ------------------------------------------------------------ the builder */

struct mbb {
    _Alignas(8) uint8_t buf[64 * 1024];
    uint32_t len;
};

static void mbb_init(struct mbb *b)
{
    memset(b->buf, 0, sizeof b->buf);
    b->len = 8;
}

static void put32(struct mbb *b, uint32_t off, uint32_t v) { memcpy(b->buf + off, &v, 4); }
static void put64(struct mbb *b, uint32_t off, uint64_t v) { memcpy(b->buf + off, &v, 8); }

/* Append a tag with `payload_len` payload bytes; returns its offset. */
static uint32_t mbb_tag(struct mbb *b, uint32_t type, const void *payload, uint32_t payload_len)
{
    uint32_t off = b->len;
    put32(b, off, type);
    put32(b, off + 4, 8 + payload_len);
    if (payload)
        memcpy(b->buf + off + 8, payload, payload_len);
    b->len = (uint32_t)align_up_u64(off + 8 + payload_len, 8);
    return off;
}

static uint32_t mbb_string(struct mbb *b, uint32_t type, const char *s)
{
    return mbb_tag(b, type, s, (uint32_t)strlen(s) + 1);
}

struct ent { uint64_t base, len; uint32_t type; };

/* What OVMF gives conventional memory: UC | WC | WT | WB. */
#define EFI_ATTR_RAM UINT64_C(0xf)

static uint32_t mbb_mmap_ex(struct mbb *b, const struct ent *e, unsigned n,
                            uint32_t entry_size, uint32_t version)
{
    uint32_t off = mbb_tag(b, MB2_TAG_MMAP, NULL, 8 + n * entry_size);
    put32(b, off + 8, entry_size);
    put32(b, off + 12, version);
    for (unsigned i = 0; i < n; i++) {
        uint32_t eo = off + 16 + i * entry_size;
        put64(b, eo, e[i].base);
        put64(b, eo + 8, e[i].len);
        put32(b, eo + 16, e[i].type);
    }
    return off;
}

static uint32_t mbb_mmap(struct mbb *b, const struct ent *e, unsigned n)
{
    return mbb_mmap_ex(b, e, n, 24, 0);
}

/* EFI map: ent.len is in bytes (a multiple of 4 KiB), type is an EFI type;
 * every descriptor gets attribute `attr`. */
static uint32_t mbb_efi_mmap_attr(struct mbb *b, const struct ent *e, unsigned n,
                                  uint32_t desc_size, uint32_t version, const uint64_t *attr)
{
    uint32_t off = mbb_tag(b, MB2_TAG_EFI_MMAP, NULL, 8 + n * desc_size);
    put32(b, off + 8, desc_size);
    put32(b, off + 12, version);
    for (unsigned i = 0; i < n; i++) {
        uint32_t d = off + 16 + i * desc_size;
        put32(b, d, e[i].type);
        put64(b, d + 8, e[i].base);
        put64(b, d + 16, 0);
        put64(b, d + 24, e[i].len / PAGE_SIZE);
        put64(b, d + 32, attr ? attr[i] : EFI_ATTR_RAM);
    }
    return off;
}

static uint32_t mbb_efi_mmap(struct mbb *b, const struct ent *e, unsigned n,
                             uint32_t desc_size, uint32_t version)
{
    return mbb_efi_mmap_attr(b, e, n, desc_size, version, NULL);
}

static uint32_t mbb_module(struct mbb *b, uint32_t start, uint32_t end, const char *name)
{
    uint8_t payload[64];
    size_t n = strlen(name) + 1;
    memcpy(payload, &start, 4);
    memcpy(payload + 4, &end, 4);
    memcpy(payload + 8, name, n);
    return mbb_tag(b, MB2_TAG_MODULE, payload, (uint32_t)(8 + n));
}

static uint32_t mbb_end(struct mbb *b)
{
    uint32_t off = mbb_tag(b, MB2_TAG_END, NULL, 0);
    put32(b, 0, b->len);
    return off;
}

#define INFO_PA 0x10000u   /* where the tests pretend the structure lives */

static void expect_error(struct mbb *b, size_t max_size, const char *needle, int line);
#define EXPECT_ERROR(b, max, needle) expect_error((b), (max), (needle), __LINE__)

static int parse(struct mbb *b, struct mb2_info *info, char *err)
{
    return mb2_parse(info, b->buf, PA(INFO_PA), sizeof b->buf, err, MB2_ERR_LEN);
}

static bool area_is(const struct mm_area_list *l, unsigned i, uint64_t start, uint64_t end)
{
    if (i >= l->count) {
        fprintf(stderr, "  area %u missing (count %u)\n", i, l->count);
        return false;
    }
    if (l->area[i].start.raw != start || l->area[i].end.raw != end) {
        fprintf(stderr, "  area %u is [0x%" PRIx64 ", 0x%" PRIx64 "), expected [0x%" PRIx64
                ", 0x%" PRIx64 ")\n", i, l->area[i].start.raw, l->area[i].end.raw, start, end);
        return false;
    }
    return true;
}

static uint64_t list_bytes(const struct mm_area_list *l)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < l->count; i++)
        sum += mm_area_size(&l->area[i]);
    return sum;
}

static bool list_valid(const struct mm_area_list *l)
{
    for (unsigned i = 0; i < l->count; i++) {
        const struct mm_area *a = &l->area[i];
        if (!is_aligned_u64(a->start.raw, PAGE_SIZE) || !is_aligned_u64(a->end.raw, PAGE_SIZE) ||
            a->end.raw <= a->start.raw || (i && a->start.raw <= l->area[i - 1].end.raw))
            return false;
    }
    return true;
}

/* --------------------------------------------------------- good structures */

/* QEMU/SeaBIOS-like map for 512 MiB, a kernel at 1 MiB and one module. */
#define BIOS_TOP        0x1ffe0000u
#define KERNEL_START    0x100000u
#define KERNEL_END      0x123456u
#define MOD_START       0x200000u
#define MOD_END         0x2a0500u

static void build_bios(struct mbb *b)
{
    static const struct ent map[] = {
        { 0x0,        0x9fc00,              MB2_MEM_AVAILABLE },
        { 0x9fc00,    0x400,                MB2_MEM_RESERVED },
        { 0xf0000,    0x10000,              MB2_MEM_RESERVED },
        { 0x100000,   BIOS_TOP - 0x100000,  MB2_MEM_AVAILABLE },
        { BIOS_TOP,   0x20000,              MB2_MEM_RESERVED },
        { 0xfffc0000, 0x40000,              MB2_MEM_RESERVED },
    };
    uint8_t meminfo[8], rsdp[20];
    uint32_t lower = 639, upper = (BIOS_TOP - 0x100000) / 1024;

    mbb_init(b);
    mbb_string(b, MB2_TAG_CMDLINE, "console=ttyS0 quiet");
    mbb_string(b, MB2_TAG_LOADER_NAME, "GRUB 2.12");
    mbb_module(b, MOD_START, MOD_END, "initrd");
    memcpy(meminfo, &lower, 4);
    memcpy(meminfo + 4, &upper, 4);
    mbb_tag(b, MB2_TAG_BASIC_MEMINFO, meminfo, 8);
    mbb_tag(b, 8, "framebuffer-ish", 16);     /* unknown to mm: skipped */
    mbb_mmap(b, map, 6);
    memcpy(rsdp, "RSD PTR ", 8);
    for (int i = 8; i < 20; i++)
        rsdp[i] = (uint8_t)i;
    mbb_tag(b, MB2_TAG_ACPI_OLD, rsdp, 20);
    mbb_end(b);
}

static const struct mb2_reserved kernel_only[] = {
    { PA(KERNEL_START), PA(KERNEL_END), "kernel" },
};

static void test_bios_map(void)
{
    struct mbb b;
    struct mb2_info info;
    struct mm_area_list areas;
    struct mb2_usable_stats st;
    char err[MB2_ERR_LEN];

    build_bios(&b);
    REQUIRE(parse(&b, &info, err) == 0);
    CHECK_EQ(err[0], 0);
    CHECK_EQ(info.total_size, b.len);
    CHECK_EQ(info.pa.raw, INFO_PA);
    CHECK(info.cmdline && strcmp(info.cmdline, "console=ttyS0 quiet") == 0);
    CHECK(info.loader_name && strcmp(info.loader_name, "GRUB 2.12") == 0);
    CHECK(info.has_meminfo);
    CHECK_EQ(info.mem_lower_kib, 639);
    CHECK_EQ(info.mem_upper_kib, (BIOS_TOP - 0x100000) / 1024);
    REQUIRE(info.nmodules == 1);
    struct mb2_module mod;
    uint32_t cursor = 0;
    REQUIRE(mb2_module_next(&info, &cursor, &mod));
    CHECK_EQ(mod.start.raw, MOD_START);
    CHECK_EQ(mod.end.raw, MOD_END);
    CHECK(strcmp(mod.cmdline, "initrd") == 0);
    CHECK(!mb2_module_next(&info, &cursor, &mod));
    CHECK(!mb2_module_next(&info, &cursor, &mod));
    REQUIRE(info.rsdp_old != NULL);
    CHECK_EQ(info.rsdp_old_len, 20);
    CHECK(memcmp(info.rsdp_old, "RSD PTR ", 8) == 0);
    /* The RSDP copy lies inside the information structure. */
    CHECK((const uint8_t *)info.rsdp_old > b.buf &&
          (const uint8_t *)info.rsdp_old + 20 <= b.buf + b.len);
    CHECK(info.rsdp_new == NULL);
    CHECK_EQ(info.map_source, MB2_MAP_MULTIBOOT);
    CHECK_EQ(info.map_count, 6);

    struct mb2_mmap_entry e;
    REQUIRE(mb2_map_entry(&info, 3, &e) == 0);
    CHECK_EQ(e.base, 0x100000);
    CHECK_EQ(e.length, BIOS_TOP - 0x100000);
    CHECK_EQ(e.type, MB2_MEM_AVAILABLE);
    harness_quiet = 1;
    CHECK_EQ(mb2_map_entry(&info, 6, &e), -MM_EINVAL);
    harness_quiet = 0;

    REQUIRE(mb2_usable_areas(&info, kernel_only, 1, &areas, &st) == 0);
    CHECK(list_valid(&areas));
    CHECK_EQ(areas.count, 2);
    /* Low 640 KiB is under the 1 MiB cut; kernel and module are carved out. */
    CHECK(area_is(&areas, 0, align_up_u64(KERNEL_END, PAGE_SIZE), MOD_START));
    CHECK(area_is(&areas, 1, align_up_u64(MOD_END, PAGE_SIZE), BIOS_TOP));
    CHECK_EQ(st.ram_bytes, 0x9fc00 + (BIOS_TOP - 0x100000));
    CHECK_EQ(st.usable_bytes, list_bytes(&areas));
    CHECK_EQ(st.reserved_bytes, st.ram_bytes - st.usable_bytes);
    CHECK_EQ(st.dropped_areas, 0);

    /* Without the kernel range the kernel's pages become usable. */
    REQUIRE(mb2_usable_areas(&info, NULL, 0, &areas, NULL) == 0);
    CHECK(area_is(&areas, 0, 0x100000, MOD_START));

    unsigned long before = harness_log_lines;
    harness_quiet = 1;
    mb2_print_map(&info);
    CHECK_EQ(harness_log_lines - before, 2 + 6);
    mb2_print_summary(&areas, &st);
    CHECK_EQ(harness_log_lines - before, 2 + 6 + 1);
    harness_quiet = 0;
}

/* 8 GiB-style layout: 3 GiB below the PCI hole, the rest above 4 GiB. */
static void test_high_ram(void)
{
    const uint64_t below = 3 * GiB, above_end = 4 * GiB + 2 * GiB;
    const struct ent map[] = {
        { 0x0,           0x9f000,           MB2_MEM_AVAILABLE },
        { 0x100000,      below - 0x100000,  MB2_MEM_AVAILABLE },
        { 0xfeffc000,    0x4000,            MB2_MEM_RESERVED },
        { 0xfffc0000,    0x40000,           MB2_MEM_RESERVED },
        { 4 * GiB,       above_end - 4 * GiB, MB2_MEM_AVAILABLE },
        { 0xfd00000000,  0x300000000,       MB2_MEM_RESERVED },
    };
    struct mbb b;
    struct mb2_info info;
    struct mm_area_list areas;
    struct mb2_usable_stats st;
    char err[MB2_ERR_LEN];

    mbb_init(&b);
    mbb_mmap(&b, map, 6);
    mbb_end(&b);
    REQUIRE(parse(&b, &info, err) == 0);
    REQUIRE(mb2_usable_areas(&info, kernel_only, 1, &areas, &st) == 0);
    CHECK(list_valid(&areas));
    CHECK_EQ(areas.count, 2);
    CHECK(area_is(&areas, 0, align_up_u64(KERNEL_END, PAGE_SIZE), below));
    CHECK(area_is(&areas, 1, 4 * GiB, above_end));
    CHECK_EQ(st.ram_bytes, 0x9f000 + below - 0x100000 + above_end - 4 * GiB);
    CHECK_EQ(st.usable_bytes, list_bytes(&areas));
}

/*
 * OVMF-like: many types, unknown types, overlaps between available entries
 * and with reserved ones, unaligned and adjacent pieces.
 */
static void test_ovmf_like_map(void)
{
    const struct ent map[] = {
        { 0x0,        0xa0000,   MB2_MEM_AVAILABLE },
        { 0x100000,   0x700000,  MB2_MEM_AVAILABLE },     /* 1M..8M */
        { 0x700000,   0x200000,  MB2_MEM_ACPI_NVS },      /* 7M..9M wins over RAM */
        { 0x800000,   0x800000,  MB2_MEM_AVAILABLE },     /* 8M..16M */
        { 0x2000000,  0x1000000, MB2_MEM_AVAILABLE },     /* 32M..48M */
        { 0x2800000,  0x1800000, MB2_MEM_AVAILABLE },     /* 40M..64M overlaps */
        { 0x3000000,  0x1000,    20 },                    /* unknown type: hole */
        { 0x3800000,  0x123,     MB2_MEM_BAD },           /* 3 bytes poison a page */
        { 0x5000123,  0x1000edc, MB2_MEM_AVAILABLE },     /* unaligned both ends */
        { 0x7000000,  0x800,     MB2_MEM_AVAILABLE },     /* two halves of a page */
        { 0x7000800,  0x1800,    MB2_MEM_AVAILABLE },
        { 0x8000000,  0x100000,  MB2_MEM_ACPI_RECLAIM },  /* never RAM for us */
        { 0x9000000,  0x0,       MB2_MEM_RESERVED },      /* empty entry */
        { 0x9000000,  0x1000000, 0xffffffffu },
        { 0x8800000,  0x2000000, MB2_MEM_AVAILABLE },     /* 136M..168M, 144M..160M unknown */
        { 0xffc00000, 0x400000,  MB2_MEM_RESERVED },
    };
    struct mbb b;
    struct mb2_info info;
    struct mm_area_list areas;
    struct mb2_usable_stats st;
    char err[MB2_ERR_LEN];

    mbb_init(&b);
    mbb_mmap(&b, map, sizeof map / sizeof map[0]);
    mbb_end(&b);
    REQUIRE(parse(&b, &info, err) == 0);
    REQUIRE(mb2_usable_areas(&info, NULL, 0, &areas, &st) == 0);
    CHECK(list_valid(&areas));
    CHECK_EQ(areas.count, 9);
    CHECK(area_is(&areas, 0, 0x100000, 0x700000));
    CHECK(area_is(&areas, 1, 0x900000, 0x1000000));
    CHECK(area_is(&areas, 2, 0x2000000, 0x3000000));
    CHECK(area_is(&areas, 3, 0x3001000, 0x3800000));
    CHECK(area_is(&areas, 4, 0x3801000, 0x4000000));
    CHECK(area_is(&areas, 5, 0x5001000, 0x6000000));
    CHECK(area_is(&areas, 6, 0x7000000, 0x7002000));
    CHECK(area_is(&areas, 7, 0x8800000, 0x9000000));
    CHECK(area_is(&areas, 8, 0xa000000, 0xa800000));
    CHECK_EQ(st.usable_bytes, list_bytes(&areas));
}

/* The information structure and every module are carved out. */
static void test_info_and_modules_reserved(void)
{
    const struct ent map[] = { { 0x0, 64 * MiB, MB2_MEM_AVAILABLE } };
    struct mbb b;
    struct mb2_info info;
    struct mm_area_list areas;
    char err[MB2_ERR_LEN];
    const uint64_t info_pa = 0x300008;   /* 8-aligned, not page-aligned */

    mbb_init(&b);
    mbb_module(&b, 0x400000, 0x400000, "empty");
    mbb_module(&b, 0x500001, 0x501001, "unaligned");
    mbb_module(&b, 0x800000, 0x900000, "big");
    mbb_mmap(&b, map, 1);
    mbb_end(&b);
    REQUIRE(mb2_parse(&info, b.buf, PA(info_pa), sizeof b.buf, err, sizeof err) == 0);
    CHECK_EQ(info.nmodules, 3);
    REQUIRE(mb2_usable_areas(&info, NULL, 0, &areas, NULL) == 0);
    CHECK_EQ(areas.count, 4);
    CHECK(area_is(&areas, 0, MiB, 0x300000));
    CHECK(area_is(&areas, 1, align_up_u64(info_pa + b.len, PAGE_SIZE), 0x500000));
    CHECK(area_is(&areas, 2, 0x502000, 0x800000));
    CHECK(area_is(&areas, 3, 0x900000, 64 * MiB));

    /* Extra caller ranges, including an empty and an overlapping one. */
    const struct mb2_reserved extra[] = {
        { PA(0x1000000), PA(0x1000000), "empty" },
        { PA(0x2000000), PA(0x2100000), "tables" },
        { PA(0x20ff000), PA(0x2200001), "overlapping" },
    };
    REQUIRE(mb2_usable_areas(&info, extra, 3, &areas, NULL) == 0);
    CHECK_EQ(areas.count, 5);
    CHECK(area_is(&areas, 3, 0x900000, 0x2000000));
    CHECK(area_is(&areas, 4, 0x2201000, 64 * MiB));

    /* A reversed range is a caller bug: error, list untouched. */
    const struct mb2_reserved bad[] = { { PA(0x2000), PA(0x1000), "reversed" } };
    unsigned count = areas.count;
    harness_quiet = 1;
    CHECK_EQ(mb2_usable_areas(&info, bad, 1, &areas, NULL), -MM_EINVAL);
    harness_quiet = 0;
    CHECK_EQ(areas.count, count);
}

/* More areas than MM_MAX_AREAS: the largest survive, in address order. */
static void test_too_many_areas(void)
{
    enum { N = MM_MAX_AREAS + 40 };
    static struct ent map[N];
    struct mbb b;
    struct mb2_info info;
    struct mm_area_list areas;
    struct mb2_usable_stats st;
    char err[MB2_ERR_LEN];
    uint64_t seed = 42, total = 0, sizes[N];

    for (unsigned i = 0; i < N; i++) {
        /* distinct sizes 1..N pages, in shuffled order, 16 MiB apart */
        sizes[i] = i + 1;
    }
    for (unsigned i = N - 1; i > 0; i--) {
        unsigned j = (unsigned)(rng_next(&seed) % (i + 1));
        uint64_t t = sizes[i]; sizes[i] = sizes[j]; sizes[j] = t;
    }
    for (unsigned i = 0; i < N; i++) {
        map[i] = (struct ent){ 16 * MiB * (i + 1), sizes[i] * PAGE_SIZE, MB2_MEM_AVAILABLE };
        total += sizes[i] * PAGE_SIZE;
    }
    mbb_init(&b);
    mbb_mmap(&b, map, N);
    mbb_end(&b);
    REQUIRE(parse(&b, &info, err) == 0);
    harness_quiet = 1;
    REQUIRE(mb2_usable_areas(&info, NULL, 0, &areas, &st) == 0);
    harness_quiet = 0;
    CHECK(list_valid(&areas));
    CHECK_EQ(areas.count, MM_MAX_AREAS);
    CHECK_EQ(st.dropped_areas, N - MM_MAX_AREAS);
    /* The dropped ones are exactly the 40 smallest: sizes 1..40 pages. */
    uint64_t dropped = (uint64_t)(N - MM_MAX_AREAS) * (N - MM_MAX_AREAS + 1) / 2 * PAGE_SIZE;
    CHECK_EQ(st.dropped_bytes, dropped);
    CHECK_EQ(list_bytes(&areas), total - dropped);
    CHECK_EQ(st.usable_bytes, total - dropped);
    CHECK_EQ(st.reserved_bytes, 0);
    for (unsigned i = 0; i < areas.count; i++)
        CHECK(mm_area_size(&areas.area[i]) > (N - MM_MAX_AREAS) * PAGE_SIZE);
}

/* UEFI without tag 6: the EFI map is used, translated. */
static void test_efi_fallback(void)
{
    const struct ent emap[] = {
        { 0x0,       0xa0000,  7 },    /* conventional, below 1 MiB anyway */
        { 0x100000,  0x100000, 7 },    /* conventional */
        { 0x200000,  0x100000, 1 },    /* loader code */
        { 0x300000,  0x100000, 2 },    /* loader data */
        { 0x400000,  0x100000, 3 },    /* boot services code */
        { 0x500000,  0x100000, 4 },    /* boot services data */
        { 0x600000,  0x100000, 5 },    /* runtime code: reserved */
        { 0x700000,  0x100000, 6 },    /* runtime data: reserved */
        { 0x800000,  0x100000, 7 },
        { 0x900000,  0x100000, 9 },    /* ACPI reclaim */
        { 0xa00000,  0x100000, 10 },   /* ACPI NVS */
        { 0xb00000,  0x100000, 7 },
        { 0xc00000,  0x100000, 0 },    /* reserved */
        { 0xd00000,  0x100000, 7 },
        { 0xe00000,  0x100000, 11 },   /* MMIO */
        { 0xf00000,  0x100000, 99 },   /* unknown */
        { 0x1000000, 0x100000, 7 },
    };
    const unsigned n = sizeof emap / sizeof emap[0];
    struct mbb b;
    struct mb2_info info;
    struct mm_area_list areas;
    char err[MB2_ERR_LEN];

    mbb_init(&b);
    mbb_efi_mmap(&b, emap, n, 48, 1);
    mbb_end(&b);
    REQUIRE(parse(&b, &info, err) == 0);
    CHECK_EQ(info.map_source, MB2_MAP_EFI);
    CHECK_EQ(info.map_count, n);
    CHECK_EQ(info.efi_desc_size, 48);
    struct mb2_mmap_entry e;
    REQUIRE(mb2_map_entry(&info, 5, &e) == 0);
    CHECK_EQ(e.base, 0x500000);
    CHECK_EQ(e.length, 0x100000);
    CHECK_EQ(e.fw_type, 4);
    CHECK_EQ(e.type, MB2_MEM_AVAILABLE);
    REQUIRE(mb2_map_entry(&info, 9, &e) == 0);
    CHECK_EQ(e.type, MB2_MEM_ACPI_RECLAIM);
    REQUIRE(mb2_usable_areas(&info, NULL, 0, &areas, NULL) == 0);
    CHECK_EQ(areas.count, 5);
    CHECK(area_is(&areas, 0, 0x100000, 0x600000));
    CHECK(area_is(&areas, 1, 0x800000, 0x900000));
    CHECK(area_is(&areas, 2, 0xb00000, 0xc00000));
    CHECK(area_is(&areas, 3, 0xd00000, 0xe00000));
    CHECK(area_is(&areas, 4, 0x1000000, 0x1100000));

    unsigned long before = harness_log_lines;
    harness_quiet = 1;
    mb2_print_map(&info);
    harness_quiet = 0;
    CHECK_EQ(harness_log_lines - before, 2 + n);

    /* Boot services still running: only conventional memory is free. */
    mbb_init(&b);
    mbb_tag(&b, MB2_TAG_EFI_BS, NULL, 0);
    mbb_efi_mmap(&b, emap, n, 48, 1);
    mbb_end(&b);
    REQUIRE(parse(&b, &info, err) == 0);
    CHECK(info.efi_boot_services);
    REQUIRE(mb2_usable_areas(&info, NULL, 0, &areas, NULL) == 0);
    CHECK(area_is(&areas, 0, 0x100000, 0x200000));
    CHECK(area_is(&areas, 1, 0x800000, 0x900000));

    /* Both maps: tag 6 wins even if it comes second. */
    const struct ent map6[] = { { 0x4000000, 0x100000, MB2_MEM_AVAILABLE } };
    mbb_init(&b);
    mbb_efi_mmap(&b, emap, n, 48, 1);
    mbb_mmap(&b, map6, 1);
    mbb_end(&b);
    REQUIRE(parse(&b, &info, err) == 0);
    CHECK_EQ(info.map_source, MB2_MAP_MULTIBOOT);
    CHECK_EQ(info.efi_count, n);
    REQUIRE(mb2_usable_areas(&info, NULL, 0, &areas, NULL) == 0);
    CHECK_EQ(areas.count, 1);
    CHECK(area_is(&areas, 0, 0x4000000, 0x4100000));
}

/* Defect 3: an empty tag 6 must not hide a valid EFI map. */
static void test_empty_tag6_falls_back_to_efi(void)
{
    const struct ent emap[] = { { 0x100000, 0x300000, 7 }, { 0x400000, 0x100000, 0 } };
    struct mbb b;
    struct mb2_info info;
    struct mm_area_list areas;
    char err[MB2_ERR_LEN];

    mbb_init(&b);
    mbb_mmap(&b, NULL, 0);
    mbb_efi_mmap(&b, emap, 2, 48, 1);
    mbb_end(&b);
    REQUIRE(parse(&b, &info, err) == 0);
    CHECK_EQ(info.map_source, MB2_MAP_EFI);
    CHECK_EQ(info.map_count, 2);
    REQUIRE(mb2_usable_areas(&info, NULL, 0, &areas, NULL) == 0);
    CHECK_EQ(areas.count, 1);
    CHECK(area_is(&areas, 0, 0x100000, 0x400000));

    /* The EFI map first, the empty tag 6 after it: the same. */
    mbb_init(&b);
    mbb_efi_mmap(&b, emap, 2, 48, 1);
    mbb_mmap(&b, NULL, 0);
    mbb_end(&b);
    REQUIRE(parse(&b, &info, err) == 0);
    CHECK_EQ(info.map_source, MB2_MAP_EFI);

    /* An empty tag 6 and nothing else: rejected, naming its offset. */
    char want[128];
    mbb_init(&b);
    uint32_t off = mbb_mmap(&b, NULL, 0);
    mbb_end(&b);
    snprintf(want, sizeof want, "memory map tag at offset 0x%x has no entries", off);
    EXPECT_ERROR(&b, sizeof b.buf, want);
}

/* Defect 9: soft-reserved or non-write-back EFI RAM is not usable RAM. */
static void test_efi_attributes(void)
{
    const struct ent emap[] = {
        { 0x100000, 0x100000, 7 },     /* conventional, WB: RAM */
        { 0x200000, 0x100000, 7 },     /* conventional, WB | SP: soft-reserved */
        { 0x300000, 0x100000, 7 },     /* conventional, UC only: not RAM */
        { 0x400000, 0x100000, 2 },     /* loader data, no attributes: not RAM */
        { 0x500000, 0x100000, 4 },     /* boot services data, WB: RAM */
        { 0x600000, 0x100000, 3 },     /* boot services code, WB | SP */
    };
    const uint64_t attr[] = {
        EFI_ATTR_RAM, EFI_ATTR_RAM | MB2_EFI_MEMORY_SP, 0x1, 0, MB2_EFI_MEMORY_WB,
        MB2_EFI_MEMORY_WB | MB2_EFI_MEMORY_SP,
    };
    struct mbb b;
    struct mb2_info info;
    struct mm_area_list areas;
    struct mb2_usable_stats st;
    struct mb2_mmap_entry e;
    char err[MB2_ERR_LEN];

    mbb_init(&b);
    mbb_efi_mmap_attr(&b, emap, 6, 48, 1, attr);
    mbb_end(&b);
    REQUIRE(parse(&b, &info, err) == 0);
    const uint32_t want[] = { MB2_MEM_AVAILABLE, MB2_MEM_RESERVED, MB2_MEM_RESERVED,
                              MB2_MEM_RESERVED, MB2_MEM_AVAILABLE, MB2_MEM_RESERVED };
    for (unsigned i = 0; i < 6; i++) {
        REQUIRE(mb2_map_entry(&info, i, &e) == 0);
        CHECK_EQ(e.type, want[i]);
        CHECK_EQ(e.efi_attr, attr[i]);
    }
    REQUIRE(mb2_usable_areas(&info, NULL, 0, &areas, &st) == 0);
    CHECK_EQ(areas.count, 2);
    CHECK(area_is(&areas, 0, 0x100000, 0x200000));
    CHECK(area_is(&areas, 1, 0x500000, 0x600000));
    CHECK_EQ(st.ram_bytes, 2 * MiB);

    /* The map print says why each refused range is not RAM. */
    unsigned long before = harness_log_lines;
    harness_quiet = 1;
    mb2_print_map(&info);
    harness_quiet = 0;
    CHECK_EQ(harness_log_lines - before, 2 + 6);
}

/* Defect 12: any number of modules; each is kept out of the usable RAM. */
static void test_many_modules(void)
{
    enum { NMOD = 100 };
    const struct ent map[] = { { 0x0, 256 * MiB, MB2_MEM_AVAILABLE } };
    struct mbb b;
    struct mb2_info info;
    struct mm_area_list areas;
    struct mb2_usable_stats st;
    char err[MB2_ERR_LEN];

    mbb_init(&b);
    for (uint32_t i = 0; i < NMOD; i++) {
        char name[16];
        snprintf(name, sizeof name, "mod%u", i);
        mbb_module(&b, (uint32_t)(16 * MiB + i * MiB), (uint32_t)(16 * MiB + i * MiB + 0x1800),
                   name);
    }
    mbb_mmap(&b, map, 1);
    mbb_end(&b);
    int rc = parse(&b, &info, err);
    if (rc)
        fprintf(stderr, "  %s\n", err);
    REQUIRE(rc == 0);
    CHECK_EQ(info.nmodules, NMOD);

    struct mb2_module m;
    unsigned seen = 0;
    for (uint32_t cursor = 0; mb2_module_next(&info, &cursor, &m); seen++) {
        char name[16];
        snprintf(name, sizeof name, "mod%u", seen);
        CHECK_EQ(m.start.raw, 16 * MiB + seen * MiB);
        CHECK(strcmp(m.cmdline, name) == 0);
    }
    CHECK_EQ(seen, NMOD);

    REQUIRE(mb2_usable_areas(&info, NULL, 0, &areas, &st) == 0);
    CHECK(list_valid(&areas));
    CHECK_EQ(areas.count, NMOD + 1);
    CHECK(area_is(&areas, 0, MiB, 16 * MiB));
    for (unsigned i = 1; i < NMOD; i++)
        CHECK(area_is(&areas, i, 16 * MiB + (i - 1) * MiB + 0x2000, 16 * MiB + i * MiB));
    CHECK(area_is(&areas, NMOD, 16 * MiB + (NMOD - 1) * MiB + 0x2000, 256 * MiB));
    CHECK_EQ(st.reserved_bytes, MiB + NMOD * 0x2000);
}

/* More modules than areas: the smallest pieces go, the list stays valid. */
static void test_modules_split_a_full_list(void)
{
    enum { NMOD = MM_MAX_AREAS + 10 };
    const struct ent map[] = { { 0x0, 1 * GiB, MB2_MEM_AVAILABLE } };
    static struct mbb b;
    struct mb2_info info;
    struct mm_area_list areas;
    struct mb2_usable_stats st;
    char err[MB2_ERR_LEN];

    mbb_init(&b);
    for (uint32_t i = 0; i < NMOD; i++)
        mbb_module(&b, (uint32_t)(2 * MiB + i * 4 * MiB), (uint32_t)(2 * MiB + i * 4 * MiB + 1),
                   "m");
    mbb_mmap(&b, map, 1);
    mbb_end(&b);
    REQUIRE(parse(&b, &info, err) == 0);
    unsigned long before = harness_log_lines;
    harness_quiet = 1;
    REQUIRE(mb2_usable_areas(&info, NULL, 0, &areas, &st) == 0);
    harness_quiet = 0;
    CHECK_EQ(mm_area_list_check(&areas, "test"), 0);
    CHECK_EQ(areas.count, MM_MAX_AREAS);
    CHECK_EQ(st.dropped_areas, NMOD + 1 - MM_MAX_AREAS);
    CHECK_EQ(harness_log_lines - before, st.dropped_areas);
    CHECK_EQ(st.ram_bytes, st.usable_bytes + st.reserved_bytes + st.dropped_bytes);
}

/* Bigger entries (entry_size 32, version 1) are read by their v0 fields. */
static void test_entry_size_and_version(void)
{
    const struct ent map[] = {
        { 0x100000, 0x100000, MB2_MEM_AVAILABLE },
        { 0x300000, 0x100000, MB2_MEM_AVAILABLE },
    };
    struct mbb b;
    struct mb2_info info;
    struct mm_area_list areas;
    char err[MB2_ERR_LEN];

    mbb_init(&b);
    uint32_t off = mbb_mmap_ex(&b, map, 2, 32, 1);
    memset(b.buf + off + 16 + 24, 0xee, 8);   /* junk in the extra field */
    mbb_end(&b);
    harness_quiet = 1;
    REQUIRE(parse(&b, &info, err) == 0);
    harness_quiet = 0;
    CHECK_EQ(info.mmap_entry_size, 32);
    CHECK_EQ(info.mmap_entry_version, 1);
    REQUIRE(mb2_usable_areas(&info, NULL, 0, &areas, NULL) == 0);
    CHECK_EQ(areas.count, 2);
    CHECK(area_is(&areas, 1, 0x300000, 0x400000));
}

/* Random maps against a brute-force model at 256-byte resolution. */
#define MODEL_UNIT   256u
#define MODEL_SPACE  (16 * MiB)
#define MODEL_UNITS  (MODEL_SPACE / MODEL_UNIT)

static void test_random_against_model(void)
{
    /* per unit: firmware RAM, firmware-reserved, carved out by mm */
    static uint8_t ram[MODEL_UNITS], fwbad[MODEL_UNITS], carved[MODEL_UNITS];
    uint64_t seed = 0x5eed;

    for (int round = 0; round < 150; round++) {
        struct mbb b;
        struct ent map[24];
        struct mb2_reserved res[4];
        struct mb2_info info;
        struct mm_area_list areas;
        struct mb2_usable_stats st;
        char err[MB2_ERR_LEN];
        unsigned n = 1 + (unsigned)(rng_next(&seed) % 24);
        unsigned nres = (unsigned)(rng_next(&seed) % 5);

        memset(ram, 0, sizeof ram);
        memset(fwbad, 0, sizeof fwbad);
        memset(carved, 0, sizeof carved);
        for (unsigned i = 0; i < n; i++) {
            uint64_t u0 = rng_next(&seed) % MODEL_UNITS;
            uint64_t len = rng_next(&seed) % (MODEL_UNITS / 4);
            if (u0 + len > MODEL_UNITS)
                len = MODEL_UNITS - u0;
            uint32_t r = (uint32_t)(rng_next(&seed) % 10);
            uint32_t type = r < 6 ? MB2_MEM_AVAILABLE : r < 9 ? 2 + r % 4 : 1000 + r;
            map[i] = (struct ent){ u0 * MODEL_UNIT, len * MODEL_UNIT, type };
            for (uint64_t u = u0; u < u0 + len; u++) {
                if (type == MB2_MEM_AVAILABLE)
                    ram[u] = 1;
                else
                    fwbad[u] = 1;
            }
        }
        for (unsigned i = 0; i < nres; i++) {
            uint64_t u0 = rng_next(&seed) % MODEL_UNITS;
            uint64_t len = rng_next(&seed) % 64;
            if (u0 + len > MODEL_UNITS)
                len = MODEL_UNITS - u0;
            res[i] = (struct mb2_reserved){ PA(u0 * MODEL_UNIT), PA((u0 + len) * MODEL_UNIT), "r" };
            for (uint64_t u = u0; u < u0 + len; u++)
                carved[u] = 1;
        }
        mbb_init(&b);
        mbb_mmap(&b, map, n);
        mbb_end(&b);
        REQUIRE(parse(&b, &info, err) == 0);
        REQUIRE(mb2_usable_areas(&info, res, nres, &areas, &st) == 0);
        REQUIRE(list_valid(&areas));

        /* ram_bytes: firmware RAM units not under a firmware-reserved entry. */
        uint64_t model_ram = 0;
        for (uint64_t u = 0; u < MODEL_UNITS; u++)
            model_ram += ram[u] && !fwbad[u] ? MODEL_UNIT : 0;
        CHECK_EQ(st.ram_bytes, model_ram);

        /* The low 1 MiB (which holds the information at INFO_PA) is carved out. */
        for (uint64_t u = 0; u < MiB / MODEL_UNIT; u++)
            carved[u] = 1;

        /* Expected: a page is usable iff all its units are RAM and not bad. */
        unsigned ai = 0;
        uint64_t usable = 0;
        for (uint64_t pfn = 0; pfn < MODEL_SPACE / PAGE_SIZE; pfn++) {
            bool want = true;
            for (uint64_t u = pfn * (PAGE_SIZE / MODEL_UNIT); u < (pfn + 1) * (PAGE_SIZE / MODEL_UNIT); u++)
                want = want && ram[u] && !fwbad[u] && !carved[u];
            uint64_t pa = pfn * PAGE_SIZE;
            while (ai < areas.count && areas.area[ai].end.raw <= pa)
                ai++;
            bool got = ai < areas.count && areas.area[ai].start.raw <= pa;
            if (want != got) {
                fprintf(stderr, "  round %d: page 0x%" PRIx64 " expected %s, got %s\n",
                        round, pa, want ? "usable" : "unusable", got ? "usable" : "unusable");
                harness_failed++;
                return;
            }
            usable += want ? PAGE_SIZE : 0;
        }
        CHECK_EQ(list_bytes(&areas), usable);
        CHECK_EQ(st.usable_bytes, usable);
        CHECK_EQ(st.reserved_bytes, model_ram - usable);
    }
}

/* ------------------------------------------------------ malformed inputs */

/* Expect a parse error whose message contains `needle`; info unchanged. */
static void expect_error(struct mbb *b, size_t max_size, const char *needle, int line)
{
    struct mb2_info info;
    char err[MB2_ERR_LEN];
    memset(&info, 0xa5, sizeof info);
    int rc = mb2_parse(&info, b->buf, PA(INFO_PA), max_size, err, sizeof err);
    bool untouched = true;
    for (size_t i = 0; i < sizeof info; i++)
        untouched = untouched && ((uint8_t *)&info)[i] == 0xa5;
    if (rc != -MM_EINVAL || strncmp(err, "multiboot2: ", 12) != 0 || !strstr(err, needle) ||
        !untouched) {
        fprintf(stderr, "  line %d: rc %d, message \"%s\", wanted \"%s\"%s\n", line, rc, err,
                needle, untouched ? "" : ", info modified");
        harness_failed++;
    }
}

static const struct ent one_ram[] = { { 0x100000, 0x1000000, MB2_MEM_AVAILABLE } };

static void test_malformed_sizes(void)
{
    struct mbb b;

    /* total_size below header + end tag */
    mbb_init(&b);
    mbb_end(&b);
    put32(&b, 0, 8);
    EXPECT_ERROR(&b, sizeof b.buf, "total_size 0x8 at offset 0x0");

    /* total_size claims more than the caller can vouch for (truncated copy) */
    mbb_init(&b);
    mbb_mmap(&b, one_ram, 1);
    mbb_end(&b);
    EXPECT_ERROR(&b, b.len - 8, "exceeds the 0x");
    /* huge total_size */
    put32(&b, 0, 0xfffffff0u);
    EXPECT_ERROR(&b, MB2_MAX_INFO_SIZE, "total_size 0xfffffff0");
    /* too few readable bytes for even the header */
    EXPECT_ERROR(&b, 4, "readable");

    /* total_size cuts the end tag off: the mmap tag reaches total_size */
    mbb_init(&b);
    uint32_t off = mbb_mmap(&b, one_ram, 1);
    mbb_end(&b);
    put32(&b, 0, b.len - 8);
    char want[64];
    snprintf(want, sizeof want, "no end tag: tag at offset 0x%x", off);
    EXPECT_ERROR(&b, sizeof b.buf, want);

    /* total_size cuts into a tag's body */
    put32(&b, 0, off + 20);
    snprintf(want, sizeof want, "tag at offset 0x%x (type 6, size 40) overruns", off);
    EXPECT_ERROR(&b, sizeof b.buf, want);

    /* total_size leaves 4 bytes: a tag header cannot fit */
    mbb_init(&b);
    mbb_string(&b, MB2_TAG_CMDLINE, "abc");     /* 8 + 4 -> padded to 16 */
    put32(&b, 0, 8 + 16 + 4);
    EXPECT_ERROR(&b, sizeof b.buf, "tag header at offset 0x18 does not fit");

    /* information above 4 GiB */
    mbb_init(&b);
    mbb_mmap(&b, one_ram, 1);
    mbb_end(&b);
    struct mb2_info info;
    char err[MB2_ERR_LEN];
    CHECK_EQ(mb2_parse(&info, b.buf, PA(0xffffffe0u), sizeof b.buf, err, sizeof err), -MM_EINVAL);
    CHECK(strstr(err, "below 4 GiB") != NULL);
}

static void test_malformed_tags(void)
{
    struct mbb b;
    char want[96];

    /* a tag overrunning total_size, as in the brief's example */
    mbb_init(&b);
    mbb_string(&b, MB2_TAG_CMDLINE, "x");
    uint32_t off = mbb_mmap(&b, one_ram, 1);
    mbb_end(&b);
    put32(&b, off + 4, 4096);
    snprintf(want, sizeof want, "tag at offset 0x%x (type 6, size 4096) overruns total_size 0x%x",
             off, b.len);
    EXPECT_ERROR(&b, sizeof b.buf, want);

    /* zero-size tag */
    put32(&b, off + 4, 0);
    snprintf(want, sizeof want, "tag at offset 0x%x (type 6) has size 0", off);
    EXPECT_ERROR(&b, sizeof b.buf, want);

    /* missing end tag: the last tag is not type 0 */
    mbb_init(&b);
    mbb_mmap(&b, one_ram, 1);
    off = mbb_end(&b);
    put32(&b, off, 77);
    snprintf(want, sizeof want, "no end tag: tag at offset 0x%x (type 77", off);
    EXPECT_ERROR(&b, sizeof b.buf, want);

    /* end tag with the wrong size */
    put32(&b, off, 0);
    put32(&b, off + 4, 16);
    put32(&b, 0, b.len + 8);
    snprintf(want, sizeof want, "end tag at offset 0x%x has size 16", off);
    EXPECT_ERROR(&b, sizeof b.buf, want);

    /* misaligned structure */
    mbb_init(&b);
    mbb_mmap(&b, one_ram, 1);
    mbb_end(&b);
    struct mb2_info info;
    char err[MB2_ERR_LEN];
    memmove(b.buf + 4, b.buf, b.len);
    CHECK_EQ(mb2_parse(&info, b.buf + 4, PA(INFO_PA + 4), sizeof b.buf - 4, err, sizeof err),
             -MM_EINVAL);
    CHECK(strstr(err, "not 8-byte aligned") != NULL);

    /*
     * Misaligned tag: a loader that forgot the padding puts the mmap tag right
     * after a 12-byte cmdline tag.  The parser looks at the padded offset and
     * finds garbage there (the mmap's size field as a type, its entry_size
     * as a size) rather than trusting it.
     */
    mbb_init(&b);
    mbb_string(&b, MB2_TAG_CMDLINE, "abc");
    b.len = 8 + 12;
    mbb_mmap(&b, one_ram, 1);
    b.len = (uint32_t)align_up_u64(b.len, 8);
    mbb_end(&b);
    EXPECT_ERROR(&b, sizeof b.buf, "tag at offset 0x30 (type 0) has size 1");

    /* no memory map at all */
    mbb_init(&b);
    mbb_string(&b, MB2_TAG_CMDLINE, "x");
    mbb_end(&b);
    EXPECT_ERROR(&b, sizeof b.buf, "no memory map");

    /* duplicate memory map */
    mbb_init(&b);
    mbb_mmap(&b, one_ram, 1);
    off = mbb_mmap(&b, one_ram, 1);
    mbb_end(&b);
    snprintf(want, sizeof want, "tag at offset 0x%x (type 6, size 40) is a duplicate", off);
    EXPECT_ERROR(&b, sizeof b.buf, want);

    /* command line without its NUL */
    mbb_init(&b);
    off = mbb_tag(&b, MB2_TAG_CMDLINE, "abcdefgh", 8);
    mbb_mmap(&b, one_ram, 1);
    mbb_end(&b);
    snprintf(want, sizeof want, "tag at offset 0x%x (type 1, size 16): string is not NUL", off);
    EXPECT_ERROR(&b, sizeof b.buf, want);

    /* module ending before it starts; module tag too short */
    mbb_init(&b);
    off = mbb_module(&b, 0x200000, 0x100000, "m");
    mbb_mmap(&b, one_ram, 1);
    mbb_end(&b);
    snprintf(want, sizeof want, "module tag at offset 0x%x: mod_end 0x100000 below", off);
    EXPECT_ERROR(&b, sizeof b.buf, want);
    put32(&b, off + 4, 16);
    snprintf(want, sizeof want, "module tag at offset 0x%x has size 16", off);
    EXPECT_ERROR(&b, sizeof b.buf, want);

    /* RSDP tags too short for their RSDP */
    mbb_init(&b);
    off = mbb_tag(&b, MB2_TAG_ACPI_NEW, "RSD PTR 0123456789ab", 20);
    mbb_mmap(&b, one_ram, 1);
    mbb_end(&b);
    snprintf(want, sizeof want, "ACPI RSDP tag at offset 0x%x (type 15, size 28)", off);
    EXPECT_ERROR(&b, sizeof b.buf, want);
}

static void test_malformed_mmap(void)
{
    struct mbb b;
    char want[128];
    uint32_t off;

    /* entry_size too small */
    mbb_init(&b);
    off = mbb_mmap_ex(&b, one_ram, 1, 16, 0);
    mbb_end(&b);
    snprintf(want, sizeof want, "memory map tag at offset 0x%x: entry_size 16", off);
    EXPECT_ERROR(&b, sizeof b.buf, want);

    /* entry_size not a multiple of 8 */
    mbb_init(&b);
    off = mbb_mmap_ex(&b, one_ram, 1, 28, 0);
    mbb_end(&b);
    snprintf(want, sizeof want, "memory map tag at offset 0x%x: entry_size 28", off);
    EXPECT_ERROR(&b, sizeof b.buf, want);

    /* a partial entry at the end */
    mbb_init(&b);
    off = mbb_mmap(&b, one_ram, 1);
    put32(&b, off + 4, 8 + 8 + 24 + 8);
    b.len = off + 48;
    mbb_end(&b);
    snprintf(want, sizeof want, "memory map tag at offset 0x%x (size 48): 32 bytes", off);
    EXPECT_ERROR(&b, sizeof b.buf, want);

    /* tag too short for its own header fields */
    mbb_init(&b);
    off = mbb_tag(&b, MB2_TAG_MMAP, "\x18\0\0\0", 4);
    mbb_end(&b);
    snprintf(want, sizeof want, "memory map tag at offset 0x%x has size 12", off);
    EXPECT_ERROR(&b, sizeof b.buf, want);

    /* an entry wrapping around 2^64 */
    const struct ent wrap[] = {
        { 0x100000, 0x1000, MB2_MEM_AVAILABLE },
        { UINT64_MAX - 0xfff, 0x1000, MB2_MEM_RESERVED },
    };
    mbb_init(&b);
    off = mbb_mmap(&b, wrap, 2);
    mbb_end(&b);
    snprintf(want, sizeof want, "memory map entry 1 at offset 0x%x", off + 16 + 24);
    EXPECT_ERROR(&b, sizeof b.buf, want);

    /* EFI: descriptor too small, absurd page count, unknown version */
    const struct ent e[] = { { 0x100000, 0x100000, 7 } };
    mbb_init(&b);
    off = mbb_efi_mmap(&b, e, 1, 32, 1);
    mbb_end(&b);
    snprintf(want, sizeof want, "EFI memory map tag at offset 0x%x: descriptor_size 32", off);
    EXPECT_ERROR(&b, sizeof b.buf, want);

    mbb_init(&b);
    off = mbb_efi_mmap(&b, e, 1, 48, 1);
    put64(&b, off + 16 + 24, UINT64_C(1) << 60);
    mbb_end(&b);
    snprintf(want, sizeof want, "EFI memory map entry 0 at offset 0x%x", off + 16);
    EXPECT_ERROR(&b, sizeof b.buf, want);

    mbb_init(&b);
    mbb_efi_mmap(&b, e, 1, 48, 2);
    mbb_end(&b);
    EXPECT_ERROR(&b, sizeof b.buf, "descriptor_version 2");
}

/* A short error buffer still gets a terminated (truncated) message. */
static void test_short_error_buffer(void)
{
    struct mbb b;
    struct mb2_info info;
    char err[16];

    mbb_init(&b);
    mbb_end(&b);
    memset(err, 'x', sizeof err);
    CHECK_EQ(mb2_parse(&info, b.buf, PA(INFO_PA), sizeof b.buf, err, sizeof err), -MM_EINVAL);
    CHECK_EQ(strlen(err), sizeof err - 1);
    CHECK_EQ(mb2_parse(&info, b.buf, PA(INFO_PA), sizeof b.buf, NULL, 0), -MM_EINVAL);
}

int main(void)
{
    RUN(test_bios_map);
    RUN(test_high_ram);
    RUN(test_ovmf_like_map);
    RUN(test_info_and_modules_reserved);
    RUN(test_too_many_areas);
    RUN(test_efi_fallback);
    RUN(test_empty_tag6_falls_back_to_efi);
    RUN(test_efi_attributes);
    RUN(test_many_modules);
    RUN(test_modules_split_a_full_list);
    RUN(test_entry_size_and_version);
    RUN(test_random_against_model);
    RUN(test_malformed_sizes);
    RUN(test_malformed_tags);
    RUN(test_malformed_mmap);
    RUN(test_short_error_buffer);
    return harness_finish();
}
