/*
 * test_init.c - mm_init (mm/init.c) end to end on simulated physical
 * memory, and what it publishes: the direct-map description, mm_memremap
 * and the Path B description (mm/ioremap.c).
 *
 * Each case builds a multiboot2 information structure inside the
 * simulated memory, the way GRUB leaves it, and calls mm_init with a
 * small made-up kernel image.  mm_init is one-shot global state, so every
 * case runs in a fork()ed child; the child reports its CHECK failures and
 * any panic message through a shared page, and the parent also fails the
 * case if the child dies (a page fault, a sanitizer report).
 *
 * The boot tables map only physical memory below 4 GiB until mm_init
 * switches CR3.  Cases with RAM above 4 GiB model that: the simulated
 * memory above 4 GiB is made inaccessible until arch_write_cr3 runs, so a
 * page-table frame taken from there faults as it would on a real machine.
 */
#define _GNU_SOURCE
#include "harness.h"
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <mm/directmap.h>
#include <mm/init.h>
#include <mm/mtrr.h>
#include <mm/paging.h>

extern bool host_has_1g, host_has_mtrr;
extern uint64_t host_msr[0x300];
extern void (*host_cr3_hook)(phys_addr_t pml4_pa);
extern phys_addr_t host_cr3;

#define KVMA    UINT64_C(0xffffffff80000000)   /* image va = pa + KVMA */
#define IMG_PA  (2 * MiB)
#define IMG_END (IMG_PA + 64 * KiB)
#define MBI_PA  UINT64_C(0x8000)                /* in low RAM, as GRUB often puts it */

struct ent { uint64_t base, len; uint32_t type; };

/* ------------------------------------------------- the child process runner */

struct child_result {
    int failed;                  /* CHECK failures in the child */
    int panicked;
    char msg[256];               /* the panic message */
};
static struct child_result *result;    /* a shared page */

/* Run fn in a child; 0 if it returned, 1 if it panicked, -1 if it died. */
static int run_child(void (*fn)(void))
{
    memset(result, 0, sizeof *result);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        jmp_buf jb;
        harness_failed = 0;
        harness_panic_jmp = &jb;
        if (setjmp(jb) == 0) {
            fn();
        } else {
            result->panicked = 1;
            snprintf(result->msg, sizeof result->msg, "%s", harness_panic_msg);
        }
        result->failed = harness_failed;
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "  the child died (%s %d)\n", WIFSIGNALED(status) ? "signal" : "exit",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        return -1;
    }
    harness_failed += result->failed;
    return result->panicked;
}

#define EXPECT_CHILD_OK(fn)                                                   \
    do {                                                                      \
        int _r = run_child(fn);                                               \
        if (_r == 1)                                                          \
            fprintf(stderr, "  unexpected panic: %s\n", result->msg);         \
        CHECK_EQ(_r, 0);                                                      \
    } while (0)

#define EXPECT_CHILD_PANIC(fn, text)                                          \
    do {                                                                      \
        CHECK_EQ(run_child(fn), 1);                                           \
        if (!strstr(result->msg, text)) {                                     \
            fprintf(stderr, "  panic message \"%s\" lacks \"%s\"\n",          \
                    result->msg, text);                                       \
            harness_failed++;                                                 \
        }                                                                     \
    } while (0)

/* ------------------------------------------------------ boot information */

static void put32(uint64_t pa, uint32_t v) { memcpy(pa_to_ptr(PA(pa)), &v, 4); }
static void put64(uint64_t pa, uint64_t v) { memcpy(pa_to_ptr(PA(pa)), &v, 8); }

/* Write {memory-map tag with n entries, end tag} at pa in simulated memory. */
static void put_mbi(uint64_t pa, const struct ent *e, unsigned n)
{
    uint64_t off = pa + 8, tag_size = 16 + n * 24;
    put32(off, MB2_TAG_MMAP);
    put32(off + 4, (uint32_t)tag_size);
    put32(off + 8, 24);
    put32(off + 12, 0);
    for (unsigned i = 0; i < n; i++) {
        put64(off + 16 + i * 24, e[i].base);
        put64(off + 24 + i * 24, e[i].len);
        put32(off + 32 + i * 24, e[i].type);
        put32(off + 36 + i * 24, 0);
    }
    off = align_up_u64(off + tag_size, 8);
    put32(off, MB2_TAG_END);
    put32(off + 4, 8);
    put32(pa, (uint32_t)(off + 8 - pa));
    put32(pa + 4, 0);
}

/* The parameters of a small kernel: text, rodata, data in 64 KiB at 2 MiB. */
static struct mm_boot_params params_at(uint64_t mbi_pa)
{
    struct mm_boot_params p = { 0 };
    p.mbi_pa = PA(mbi_pa);
    p.image_pa_start = PA(IMG_PA);
    p.image_pa_end = PA(IMG_END);
    p.image_va_offset = KVMA;
    p.sections[0] = (struct mm_image_section){ "text", VA(KVMA + IMG_PA), 16 * KiB,
                                               PTE_KERNEL_TEXT };
    p.sections[1] = (struct mm_image_section){ "rodata", VA(KVMA + IMG_PA + 16 * KiB),
                                               16 * KiB, PTE_KERNEL_RO };
    p.sections[2] = (struct mm_image_section){ "data", VA(KVMA + IMG_PA + 32 * KiB),
                                               32 * KiB, PTE_KERNEL_RW };
    p.nsections = 3;
    p.quiet = true;
    return p;
}

/* Simulated memory of `size` (1 GiB aligned, so the direct map gets large
 * pages) holding the map `e` at MBI_PA. */
static void boot_setup(uint64_t size, const struct ent *e, unsigned n)
{
    sim_mem_init_aligned(size, PAGE_1G_SIZE);
    put_mbi(MBI_PA, e, n);
}

/* Make the simulated memory at and above 4 GiB inaccessible until CR3 is
 * switched, as the boot tables do not map it. */
static void cr3_opens_high(phys_addr_t top)
{
    (void)top;
    if (sim_mem_size() > MM_BOOT_MAP_END)
        mprotect(pa_to_ptr(PA(MM_BOOT_MAP_END)), sim_mem_size() - MM_BOOT_MAP_END,
                 PROT_READ | PROT_WRITE);
}

static void close_high_until_cr3(void)
{
    REQUIRE(mprotect(pa_to_ptr(PA(MM_BOOT_MAP_END)), sim_mem_size() - MM_BOOT_MAP_END,
                     PROT_NONE) == 0);
    host_cr3_hook = cr3_opens_high;
}

/* The leaf that maps physical address pa in the direct map (level 0 if none). */
static unsigned direct_leaf_level(uint64_t pa)
{
    struct pt_mapping m;
    struct pt_mapper live = kmapper_peek();
    if (pt_translate(&live, pa_to_direct_va(PA(pa)), &m) != 0)
        return 0;
    return m.level;
}

/* A PC below 4 GiB: low RAM, the BIOS area, RAM from 1 MiB. */
#define LOW_MAP(ram_end)                                                      \
    { 0, 0x9fc00, MB2_MEM_AVAILABLE }, { 0x9fc00, 0x400, MB2_MEM_RESERVED },  \
    { 0xf0000, 0x10000, MB2_MEM_RESERVED }, { 1 * MiB, (ram_end) - 1 * MiB, MB2_MEM_AVAILABLE }

/* ------------------------------------------------------ (1) the happy path */

static void child_small_boot(void)
{
    static const struct ent map[] = { LOW_MAP(128 * MiB) };
    boot_setup(128 * MiB, map, 4);
    struct mm_boot_params p = params_at(MBI_PA);
    struct mm_init_report r;
    harness_longest_line = 0;
    mm_init(&p, &r);
    CHECK(mm_buddy() != NULL && mm_mmio_pool() != NULL && mm_boot_info() != NULL);
    CHECK_EQ(r.wx_pages, 0);
    CHECK_EQ(r.type_splits, 0);           /* no MTRRs here */
    CHECK(r.direct_pages[2] > 0);         /* 2 MiB pages in the direct map */
    CHECK(mm_direct_map_contains(PA(64 * MiB), PAGE_SIZE));
    CHECK(!mm_direct_map_contains(PA(128 * MiB), PAGE_SIZE));
    CHECK_EQ(direct_leaf_level(64 * MiB), 2);
    CHECK_EQ(direct_leaf_level(IMG_PA), 1);            /* the image, page by page */
    CHECK_EQ(host_cr3.raw, kmapper_peek().top_pa.raw);
    /* Every log line fits the 256-byte buffer (a cut line is 255 long). */
    CHECK(harness_longest_line < 255);
}

static void test_small_boot(void)
{
    EXPECT_CHILD_OK(child_small_boot);
}

/* A big machine: every summary line still fits, RAM above 4 GiB reaches
 * the buddy, an area across 4 GiB is one area again. */
static void child_big_boot(void)
{
    static const struct ent map[] = { LOW_MAP(3 * GiB), { 3 * GiB, 61 * GiB, MB2_MEM_AVAILABLE } };
    boot_setup(64 * GiB, map, 5);
    host_has_1g = false;
    close_high_until_cr3();
    struct mm_boot_params p = params_at(MBI_PA);
    harness_longest_line = 0;
    mm_init(&p, NULL);
    struct buddy_usage u;
    buddy_usage(mm_buddy(), &u);
    CHECK(u.total_npages * PAGE_SIZE > 63 * GiB);
    /* [.., 4 GiB) and [4 GiB, 64 GiB) joined: [1 MiB, 2 MiB) and the rest */
    CHECK_EQ(mm_buddy()->ranges.count, 2);
    CHECK(harness_longest_line < 255);
}

static void test_big_boot(void)
{
    EXPECT_CHILD_OK(child_big_boot);
}

/* -------------------------- (2) defect 1: table frames only below 4 GiB */

/* 64 KiB free above 1 MiB below 4 GiB, 64 GiB above: the table does not
 * fit in what the boot tables map, and mm_init must say so instead of
 * taking frames above 4 GiB (which fault until the switch). */
static void child_low_ram_too_small(void)
{
    static const struct ent map[] = {
        { 0, 0x9fc00, MB2_MEM_AVAILABLE },
        { 0xf0000, 0x10000, MB2_MEM_RESERVED },
        { 2 * MiB, 128 * KiB, MB2_MEM_AVAILABLE },       /* image (64K) + 64K free */
        { 4 * GiB, 64 * GiB, MB2_MEM_AVAILABLE },
    };
    boot_setup(68 * GiB, map, 4);
    host_has_1g = false;
    close_high_until_cr3();
    struct mm_boot_params p = params_at(MBI_PA);
    mm_init(&p, NULL);
}

static void test_table_frames_below_4g(void)
{
    EXPECT_CHILD_PANIC(child_low_ram_too_small, "below 0x100000000");
}

/* The same with enough RAM below 4 GiB: it boots, the table's frames all
 * come from there, and the 64 GiB above go to the buddy. */
static void child_low_ram_enough(void)
{
    static const struct ent map[] = {
        { 0, 0x9fc00, MB2_MEM_AVAILABLE },
        { 0xf0000, 0x10000, MB2_MEM_RESERVED },
        { 2 * MiB, 2 * MiB, MB2_MEM_AVAILABLE },
        { 4 * GiB, 64 * GiB, MB2_MEM_AVAILABLE },
    };
    boot_setup(68 * GiB, map, 4);
    host_has_1g = false;
    close_high_until_cr3();
    struct mm_boot_params p = params_at(MBI_PA);
    struct mm_init_report r;
    mm_init(&p, &r);
    CHECK(r.direct_table_pages >= 64);       /* one page directory per GiB */
    struct buddy_usage u;
    buddy_usage(mm_buddy(), &u);
    CHECK(u.total_npages * PAGE_SIZE > 63 * GiB);
}

static void test_table_frames_below_4g_enough(void)
{
    EXPECT_CHILD_OK(child_low_ram_enough);
}

/* ------------------------ (3) defect 2: boot information in the direct map */

/* The information sits in a hole of its own map (no entry covers it):
 * the direct map would not hold it. */
static void child_mbi_in_hole(void)
{
    static const struct ent map[] = {
        LOW_MAP(128 * MiB), { 130 * MiB, 126 * MiB, MB2_MEM_AVAILABLE },
    };
    sim_mem_init_aligned(256 * MiB, PAGE_1G_SIZE);
    put_mbi(129 * MiB, map, 5);
    struct mm_boot_params p = params_at(129 * MiB);
    mm_init(&p, NULL);
}

static void test_mbi_outside_direct_map(void)
{
    EXPECT_CHILD_PANIC(child_mbi_in_hole, "multiboot2 information [0x8100000, 0x8100");
}

/* ---------------------------------------- (4) defect 10: a second call */

static void child_twice(void)
{
    static const struct ent map[] = { LOW_MAP(128 * MiB) };
    boot_setup(128 * MiB, map, 4);
    struct mm_boot_params p = params_at(MBI_PA);
    mm_init(&p, NULL);
    phys_addr_t top = kmapper_peek().top_pa;
    EXPECT_PANIC(mm_init(&p, NULL));
    CHECK(strstr(harness_panic_msg, "mm_init: called twice") != NULL);
    CHECK_EQ(kmapper_peek().top_pa.raw, top.raw);     /* the live table untouched */
}

static void test_second_call_panics(void)
{
    EXPECT_CHILD_OK(child_twice);
}

/* ---------------------------- (5) defect 7: no large page across MTRR types */

#define CAP_FIX  (UINT64_C(1) << 8)
#define DEF_FE   (UINT64_C(1) << 10)
#define DEF_E    (UINT64_C(1) << 11)

/* RAM ends 512 KiB short of 256 MiB, firmware-reserved bytes fill the rest
 * (so the direct map widens to 256 MiB), and a variable MTRR makes those
 * bytes UC.  Fixed MTRRs as on a PC make the VGA window UC. */
static void child_mtrr_split(void)
{
    static const struct ent map[] = {
        LOW_MAP(256 * MiB - 512 * KiB), { 256 * MiB - 512 * KiB, 512 * KiB, MB2_MEM_RESERVED },
    };
    boot_setup(256 * MiB, map, 5);
    host_has_mtrr = true;
    host_msr[MSR_MTRR_CAP] = 1 | CAP_FIX;
    host_msr[MSR_MTRR_DEF_TYPE] = DEF_E | DEF_FE | MTRR_TYPE_WB;
    host_msr[MSR_MTRR_PHYSBASE(0)] = (256 * MiB - 512 * KiB) | MTRR_TYPE_UC;
    host_msr[MSR_MTRR_PHYSMASK(0)] = (~(512 * KiB - 1) & ((UINT64_C(1) << 46) - 1)) | (1u << 11);
    host_msr[MSR_MTRR_FIX64K_00000] = UINT64_C(0x0606060606060606);
    host_msr[MSR_MTRR_FIX16K_80000] = UINT64_C(0x0606060606060606);
    for (unsigned i = 0; i < 8; i++)
        host_msr[MSR_MTRR_FIX4K_C0000 + i] = UINT64_C(0x0505050505050505);
    struct mm_boot_params p = params_at(MBI_PA);
    struct mm_init_report r;
    mm_init(&p, &r);
    REQUIRE(mm_direct_map_contains(PA(256 * MiB - PAGE_SIZE), PAGE_SIZE));   /* widened */
    CHECK_EQ(direct_leaf_level(256 * MiB - 512 * KiB - PAGE_SIZE), 1);
    CHECK_EQ(direct_leaf_level(256 * MiB - 512 * KiB), 1);
    CHECK_EQ(direct_leaf_level(256 * MiB - 4 * MiB), 2);     /* one type: still 2 MiB */
    CHECK_EQ(direct_leaf_level(0xa0000), 1);                  /* the first 2 MiB too */
    CHECK_EQ(direct_leaf_level(0), 1);
    CHECK(r.type_splits >= 4);       /* 0xA0000, 0xC0000, 1 MiB, 256 MiB - 512 KiB */
}

static void test_mtrr_boundaries_split_large_pages(void)
{
    EXPECT_CHILD_OK(child_mtrr_split);
}

/* ------------------------------------------- (6) defect 8: mm_memremap */

#define EDGE (126 * MiB + 12 * KiB)    /* a direct-map range ends here: a hole follows */

/* Read byte va of the kernel table through a software walk (on the host
 * the MMIO pool's addresses are not this process's memory). */
static int read_kernel_byte(uint64_t va)
{
    struct pt_mapping m;
    struct pt_mapper live = kmapper_peek();
    if (pt_translate(&live, VA(va), &m) != 0)
        return -1;
    return *(uint8_t *)pa_to_ptr(m.pa);
}

static void child_memremap(void)
{
    /* ACPI tables at the end of a range (not usable RAM: nothing else
     * writes there), a hole after it. */
    static const struct ent map[] = {
        LOW_MAP(EDGE - 64 * KiB), { EDGE - 64 * KiB, 64 * KiB, MB2_MEM_ACPI_RECLAIM },
        { 130 * MiB, 126 * MiB, MB2_MEM_AVAILABLE },
    };
    boot_setup(256 * MiB, map, 6);
    struct mm_boot_params p = params_at(MBI_PA);
    mm_init(&p, NULL);
    REQUIRE(mm_direct_map_contains(PA(EDGE - PAGE_SIZE), PAGE_SIZE));
    REQUIRE(!mm_direct_map_contains(PA(EDGE), 1));

    /* A "table" of 200 bytes across the edge. */
    uint8_t *bytes = pa_to_ptr(PA(EDGE - 100));
    for (unsigned i = 0; i < 200; i++)
        bytes[i] = (uint8_t)(i * 7 + 3);
    CHECK(mm_ioremap(PA(EDGE - 100), 200) == NULL);     /* overlaps: refused */
    uint8_t *t = mm_memremap(PA(EDGE - 100), 200);
    REQUIRE(t != NULL);
    uint64_t va = (uint64_t)(uintptr_t)t;
    CHECK(va >= MMIO_POOL_BASE && va < MMIO_POOL_END);
    for (unsigned i = 0; i < 200; i++)
        CHECK_EQ(read_kernel_byte(va + i), (uint8_t)(i * 7 + 3));
    struct pt_mapping m;
    struct pt_mapper live = kmapper_peek();
    REQUIRE(pt_translate(&live, VA(va), &m) == 0);
    CHECK((m.flags & (PTE_WRITE | PTE_PCD | PTE_PWT)) == 0);   /* write-back, read-only */
    CHECK((m.flags & PTE_NX) != 0);
    CHECK_EQ(mm_memunmap(t), 0);
    CHECK(pt_translate(&live, VA(va), &m) == -MM_ENOENT);

    /* Inside the direct map: its own pointer, nothing to undo. */
    void *d = mm_memremap(PA(EDGE - 300), 200);
    CHECK(d == pa_to_ptr(PA(EDGE - 300)));
    CHECK_EQ(mm_memunmap(d), 0);

    /* Misuse: one log line each, nothing done. */
    unsigned long lines = harness_log_lines;
    CHECK(mm_memremap(PA(EDGE), 0) == NULL);
    CHECK(mm_memremap(PA(UINT64_MAX - 10), 100) == NULL);
    static int not_mapped;
    CHECK_EQ(mm_memunmap(&not_mapped), -MM_EINVAL);
    CHECK_EQ(harness_log_lines - lines, 3);
}

static void test_memremap_across_edge(void)
{
    EXPECT_CHILD_OK(child_memremap);
}

/* ------------------------------- (7) defect 11: Path B describes the map */

static struct mm_area_list path_b_ram;
static struct buddy path_b_buddy;

/* Path B: the kernel keeps its own table; the library gets a buddy, the
 * kernel mapper and the MMIO pool, as tests/embed/setup_own_tables.c. */
static void child_path_b(void)
{
    static const struct ent map[] = { LOW_MAP(128 * MiB) };
    boot_setup(128 * MiB, map, 4);
    struct mb2_info info;
    char err[MB2_ERR_LEN];
    REQUIRE(mb2_parse(&info, pa_to_ptr(PA(MBI_PA)), PA(MBI_PA), MB2_MAX_INFO_SIZE, err,
                      sizeof err) == 0);
    path_b_ram.count = 1;
    path_b_ram.area[0] = (struct mm_area){ PA(64 * MiB), PA(128 * MiB) };
    REQUIRE(buddy_init(&path_b_buddy, &path_b_ram) == 0);
    struct frame_allocator *frames = buddy_frame_allocator(&path_b_buddy);
    struct pt_mapper top;
    REQUIRE(pt_mapper_create(frames, &top) == 0);
    kmapper_setup(top.top_pa, frames);
    REQUIRE(mmio_pool_init(mmio_pool_global(), frames) == 0);

    /* Not described: RAM is not known, ioremap of it goes through. */
    CHECK(!mm_direct_map_contains(PA(96 * MiB), PAGE_SIZE));
    void *va = mm_ioremap(PA(96 * MiB), PAGE_SIZE);
    CHECK(va != NULL);
    if (va)
        CHECK_EQ(mm_iounmap(va), 0);

    /* Described: the alias check and the contains query work. */
    REQUIRE(mm_direct_map_describe(&info, MM_DIRECT_MAP_MAX_PA) == 0);
    CHECK(mm_direct_map_contains(PA(96 * MiB), PAGE_SIZE));
    CHECK(mm_ioremap(PA(96 * MiB), PAGE_SIZE) == NULL);
    CHECK(mm_ioremap(PA(3 * GiB), PAGE_SIZE) != NULL);     /* a device: fine */
    CHECK(mm_memremap(PA(96 * MiB), 64) == pa_to_ptr(PA(96 * MiB)));

    /* A direct map that stops at 80 MiB: RAM above it is not "contained"
     * (pa_to_ptr would not work there), so it is not refused as an alias. */
    CHECK_EQ(mm_direct_map_describe(&info, 0), -MM_EINVAL);
    CHECK(mm_direct_map_contains(PA(96 * MiB), PAGE_SIZE));   /* old description kept */
    REQUIRE(mm_direct_map_describe(&info, 80 * MiB) == 0);
    CHECK(mm_direct_map_contains(PA(64 * MiB), PAGE_SIZE));
    CHECK(!mm_direct_map_contains(PA(80 * MiB - PAGE_SIZE), 2 * PAGE_SIZE));
    CHECK(!mm_direct_map_contains(PA(96 * MiB), PAGE_SIZE));
}

static void test_path_b_describe(void)
{
    EXPECT_CHILD_OK(child_path_b);
}

/* --------------------------- (8) issue 13: the kernel half is fixed at init */

static bool top_slot_present(const struct pt_mapper *m, unsigned slot)
{
    pt_entry_t e;
    virt_addr_t va = pt_va_canonicalize((uint64_t)slot * MM_PML4_SLOT_SIZE);
    return pt_get_entry(m, va, PT_LEVEL_PML4, &e) == 0 && pte_present(e);
}

/* After mm_init every kernel range's slot has its table: five empty ones
 * (MMIO pool 322..323, vmalloc, stacks, self-tests) beyond the direct map's slots
 * and the image's 511; an ioremap + iounmap (which frees emptied tables)
 * leaves the MMIO pool's top-level entry where it was. */
static void child_kernel_half(void)
{
    static const struct ent map[] = { LOW_MAP(128 * MiB) };
    boot_setup(128 * MiB, map, 4);
    struct mm_boot_params p = params_at(MBI_PA);
    struct mm_init_report r;
    mm_init(&p, &r);
    struct pt_mapper live = kmapper_peek();
    CHECK_EQ(r.kernel_half_frames, 5);      /* empty tables for 322..326 */
    /* The host's direct map is the simulated RAM's address, in the lower
     * half: the kernel half holds only the other six slots here. */
    CHECK_EQ(r.kernel_top_slots, 6);
    CHECK(top_slot_present(&live, MM_PML4_SLOT(pa_to_direct_va(PA(64 * MiB)).raw)));
    static const unsigned slots[] = { 322, 323, 324, 325, 326, 511 };
    for (unsigned i = 0; i < 6; i++)
        CHECK(top_slot_present(&live, slots[i]));
    CHECK(!top_slot_present(&live, 384));
    CHECK(kmapper_kernel_half_fixed());

    pt_entry_t before, after;
    REQUIRE(pt_get_entry(&live, VA(MMIO_POOL_BASE), PT_LEVEL_PML4, &before) == 0);
    void *va = mm_ioremap(PA(3 * GiB), PAGE_SIZE);
    REQUIRE(va != NULL);
    CHECK_EQ(mm_iounmap(va), 0);
    REQUIRE(pt_get_entry(&live, VA(MMIO_POOL_BASE), PT_LEVEL_PML4, &after) == 0);
    CHECK_EQ(after.raw, before.raw);

    /* A kernel mapping in a slot outside the layout: refused, logged. */
    struct kmapper km;
    struct pt_flush tok = PT_FLUSH_INIT;
    REQUIRE(kmapper_lock(&km));
    unsigned long lines = harness_log_lines;
    CHECK_EQ(pt_map_phys(&km.mapper, VA(0xffffc00000000000ull), PA(3 * GiB), PTE_KERNEL_RW,
                         &tok), -MM_EINVAL);
    CHECK_EQ(harness_log_lines, lines + 1);
    CHECK(!top_slot_present(&live, 384));
    kmapper_unlock(&km);
}

static void test_kernel_half_fixed_at_init(void)
{
    EXPECT_CHILD_OK(child_kernel_half);
}

/* Path B: mm_kernel_half_prepare after kmapper_setup, not before; a second
 * call adds nothing. */
static void child_path_b_prepare(void)
{
    static const struct ent map[] = { LOW_MAP(128 * MiB) };
    boot_setup(128 * MiB, map, 4);
    path_b_ram.count = 1;
    path_b_ram.area[0] = (struct mm_area){ PA(64 * MiB), PA(128 * MiB) };
    REQUIRE(buddy_init(&path_b_buddy, &path_b_ram) == 0);
    struct frame_allocator *frames = buddy_frame_allocator(&path_b_buddy);
    unsigned long lines = harness_log_lines;
    CHECK_EQ(mm_kernel_half_prepare(), -MM_EINVAL);        /* no kernel table yet */
    CHECK_EQ(harness_log_lines, lines + 1);
    struct pt_mapper top;
    REQUIRE(pt_mapper_create(frames, &top) == 0);
    kmapper_setup(top.top_pa, frames);
    struct buddy_usage u0, u1, u2;
    buddy_usage(&path_b_buddy, &u0);
    CHECK_EQ(mm_kernel_half_prepare(), 0);
    buddy_usage(&path_b_buddy, &u1);
    CHECK_EQ(u0.free_npages - u1.free_npages, 6);         /* 322..326 and 511 */
    CHECK(kmapper_kernel_half_fixed());
    CHECK_EQ(mm_kernel_half_prepare(), 0);
    buddy_usage(&path_b_buddy, &u2);
    CHECK_EQ(u2.free_npages, u1.free_npages);
    CHECK(top_slot_present(&top, 511));
}

static void test_path_b_kernel_half_prepare(void)
{
    EXPECT_CHILD_OK(child_path_b_prepare);
}

int main(void)
{
    result = mmap(NULL, sizeof *result, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                  -1, 0);
    if (result == MAP_FAILED)
        return 2;
    harness_quiet = 1;
    RUN(test_small_boot);
    RUN(test_big_boot);
    RUN(test_table_frames_below_4g);
    RUN(test_table_frames_below_4g_enough);
    RUN(test_mbi_outside_direct_map);
    RUN(test_second_call_panics);
    RUN(test_mtrr_boundaries_split_large_pages);
    RUN(test_memremap_across_edge);
    RUN(test_path_b_describe);
    RUN(test_kernel_half_fixed_at_init);
    RUN(test_path_b_kernel_half_prepare);
    return harness_finish();
}
