/*
 * test_aspace.c - user address spaces (mm/aspace.c) and the copy helpers
 * (mm/uaccess.c) over simulated physical memory.
 *
 * A small kernel table with entries in several kernel-half slots plays
 * the kernel's (kmapper_setup); frames come from a counting free-list
 * allocator that reports to the TLB model.  "Foreign" frames (mapped with
 * mm_as_map_frame) lie below the allocator's pool, so a free of one is a
 * bad free.  The random model test runs several address spaces on four
 * simulated CPUs of the TLB model and checks every step against a model.
 */
#include "harness.h"
#include "test_fa.h"
#include "tlb_model.h"
#include <mm/arch.h>
#include <mm/aspace.h>
#include <mm/init.h>
#include <mm/kmapper.h>

extern unsigned long harness_shootdowns;
extern unsigned long host_invlpg_count;

/* ------------------------------------------------------ test frame source */

#define SIM_SIZE     (32 * MiB)
#define POOL_START   (1 * MiB)
#define FOREIGN_PA   UINT64_C(0x40000)      /* frames below the pool */

static struct test_fa tfa;

static uint64_t *words(uint64_t pa) { return test_fa_words(pa); }

static phys_addr_t ktop;

/* Fresh memory, allocator and kernel table; returns the frames now out. */
static uint64_t setup(void)
{
    ktop = test_fa_fresh_kernel(&tfa, SIM_SIZE, POOL_START, FOREIGN_PA);
    return tfa.outstanding;
}

/* ----------------------------------------------------------- refusals */

static struct mm_as *snap_as;      /* what REFUSED's snapshot looks at */

struct snap {
    struct mm_as as;
    uint64_t outstanding, tree;
    unsigned long shootdowns, invlpgs;
};

/* A checksum of every entry of the tables under `table` (level 4..1). */
static uint64_t tree_sum(phys_addr_t table, unsigned level)
{
    uint64_t sum = table.raw;
    for (unsigned i = 0; i < PT_ENTRIES; i++) {
        uint64_t e = words(table.raw)[i];
        sum = sum * 31 + e;
        if ((e & PTE_PRESENT) && level > 1 && !(e & PTE_HUGE) && !(level == 4 && i >= 256))
            sum += tree_sum(PA(e & PTE_ADDR_MASK), level - 1);
    }
    return sum;
}

static void take_snap(struct snap *s)
{
    memset(s, 0, sizeof *s);
    if (snap_as) {
        s->as = *snap_as;
        if (!snap_as->dead)
            s->tree = tree_sum(snap_as->top_pa, 4);
    }
    s->outstanding = tfa.outstanding;
    s->shootdowns = harness_shootdowns;
    s->invlpgs = host_invlpg_count;
}

static bool snap_same(const struct snap *old)
{
    struct snap now;
    take_snap(&now);
    return memcmp(&now, old, sizeof now) == 0;
}

/* ------------------------------------------------------------ helpers */

#define UVA(x) VA(UINT64_C(x))
#define RW  (MM_PROT_READ | MM_PROT_WRITE | MM_PROT_USER)
#define RO  (MM_PROT_READ | MM_PROT_USER)
#define RX  (MM_PROT_READ | MM_PROT_EXEC | MM_PROT_USER)

/* The frame mapped at va (0 if none). */
static uint64_t pa_of(struct mm_as *as, virt_addr_t va)
{
    phys_addr_t pa;
    return mm_as_translate(as, va, &pa, NULL) == 0 ? pa.raw : 0;
}

/* ---------------------------------------------------------------- tests */

static void test_prot_to_pte(void)
{
    CHECK_EQ(mm_prot_to_pte(RO), PTE_PRESENT | PTE_USER | PTE_NX);
    CHECK_EQ(mm_prot_to_pte(RW), PTE_PRESENT | PTE_WRITE | PTE_USER | PTE_NX);
    CHECK_EQ(mm_prot_to_pte(RX), PTE_PRESENT | PTE_USER);
    CHECK_EQ(mm_prot_to_pte(MM_PROT_READ), PTE_PRESENT | PTE_NX);
    CHECK_EQ(mm_prot_to_pte(RW | MM_PROT_EXEC), 0);
    CHECK_EQ(mm_prot_to_pte(RW | MM_PROT_EXEC | MM_PROT_WX_OK),
             PTE_PRESENT | PTE_WRITE | PTE_USER);
    CHECK_EQ(mm_prot_to_pte(MM_PROT_USER), 0);
    CHECK_EQ(mm_prot_to_pte(0), 0);
    CHECK_EQ(mm_prot_to_pte(RO | 0x40), 0);
    CHECK_EQ(mm_prot_to_pte(RO | MM_PROT_SHARED), mm_prot_to_pte(RO));    /* no hardware bit */
    CHECK_EQ(mm_prot_to_pte(RW) & PTE_GLOBAL, 0);
}

static void test_create_destroy_returns_every_frame(void)
{
    uint64_t base = setup();
    struct mm_as as;
    REQUIRE(mm_as_create(&as, &tfa.fa) == 0);
    CHECK_EQ(tfa.outstanding, base + 1);
    const uint64_t *top = words(as.top_pa.raw), *k = words(ktop.raw);
    for (unsigned i = 0; i < 256; i++)
        CHECK_EQ(top[i], 0);
    CHECK(memcmp(top + 256, k + 256, 256 * sizeof *top) == 0);
    /* Kernel mappings resolve through the copy. */
    struct pt_mapper m = { .top_pa = as.top_pa, .fa = &tfa.fa, .readonly = true };
    struct pt_mapping t;
    for (unsigned i = 0; i < HARNESS_KERNEL_VAS; i++) {
        CHECK_EQ(pt_translate(&m, VA(harness_kernel_vas[i]), &t), 0);
        CHECK_EQ(t.pa.raw, FOREIGN_PA);
    }
    /* Spread over several tables, owned and foreign. */
    CHECK_EQ(mm_as_map_zeroed(&as, UVA(0x1000), RW), 0);
    CHECK_EQ(mm_as_map_zeroed(&as, UVA(0x40000000), RO), 0);
    CHECK_EQ(mm_as_map_zeroed(&as, UVA(0x7ffffffee000), RW), 0);
    CHECK_EQ(mm_as_map_frame(&as, UVA(0x2000), PA(FOREIGN_PA), RW), 0);
    CHECK_EQ(as.owned_frames, 3);
    CHECK_EQ(as.table_frames, 3 + 2 + 3);
    CHECK_EQ(tfa.outstanding, base + 1 + 3 + 8);
    CHECK_EQ(mm_as_destroy(&as), 0);
    CHECK(as.dead);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(tfa.bad_frees, 0);
    /* The kernel table is untouched. */
    CHECK_EQ(words(ktop.raw)[256] & PTE_PRESENT, PTE_PRESENT);
}

static void test_kernel_half_is_copied_and_shared(void)
{
    setup();
    struct mm_as as;
    REQUIRE(mm_as_create(&as, &tfa.fa) == 0);
    /* A kernel mapping made later (lower level, existing slot) shows. */
    struct pt_mapper k = { .top_pa = ktop, .fa = &tfa.fa };
    struct pt_flush tok = PT_FLUSH_INIT;
    REQUIRE(pt_map_phys(&k, VA(MMIO_POOL_BASE + 0x40000000), PA(FOREIGN_PA + 0x1000),
                        PTE_MMIO, &tok) == 0);
    pt_flush(&tok);
    struct pt_mapper m = { .top_pa = as.top_pa, .fa = &tfa.fa, .readonly = true };
    struct pt_mapping t;
    CHECK_EQ(pt_translate(&m, VA(MMIO_POOL_BASE + 0x40000000), &t), 0);
    CHECK_EQ(t.pa.raw, FOREIGN_PA + 0x1000);
    CHECK_EQ(mm_as_destroy(&as), 0);
}

static void test_no_kernel_table(void)
{
    setup();
    kmapper_setup(PA(0), &tfa.fa);
    struct mm_as as;
    memset(&as, 0, sizeof as);
    snap_as = NULL;
    REFUSED(mm_as_create(&as, &tfa.fa), -MM_EINVAL);
    REFUSED(mm_as_create(NULL, &tfa.fa), -MM_EINVAL);
    kmapper_setup(ktop, &tfa.fa);
    /* A kernel table whose half is not fixed yet: its copy could go stale. */
    REFUSED(mm_as_create(&as, &tfa.fa), -MM_EINVAL);
    if (mm_kernel_half_prepare() != 0)    /* as mm_init would: a fixed kernel half */
        abort();
    REFUSED(mm_as_create(&as, NULL), -MM_EINVAL);
    struct frame_allocator nofree = { test_fa_alloc, NULL };
    REFUSED(mm_as_create(&as, &nofree), -MM_EINVAL);
    tfa.budget = 0;
    CHECK_EQ(mm_as_create(&as, &tfa.fa), -MM_ENOMEM);
}

static void test_refusals(void)
{
    setup();
    struct mm_as as;
    REQUIRE(mm_as_create(&as, &tfa.fa) == 0);
    REQUIRE(mm_as_map_zeroed(&as, UVA(0x10000), RW) == 0);
    snap_as = &as;
    static const uint64_t bad_vas[] = {
        0x0, 0x800, 0x10001, UINT64_C(0x7ffffffff000), UINT64_C(0x800000000000),
        UINT64_C(0xffff800000000000), MM_KERNEL_IMAGE_BASE, UINT64_C(0x0000900000000000),
    };
    for (unsigned i = 0; i < sizeof bad_vas / sizeof bad_vas[0]; i++) {
        virt_addr_t va = VA(bad_vas[i]);
        REFUSED(mm_as_map_zeroed(&as, va, RW), -MM_EINVAL);
        REFUSED(mm_as_map_frame(&as, va, PA(FOREIGN_PA), RW), -MM_EINVAL);
        REFUSED(mm_as_unmap(&as, va), -MM_EINVAL);
        REFUSED(mm_as_protect(&as, va, RO), -MM_EINVAL);
        if (bad_vas[i] & (PAGE_SIZE - 1))
            continue;
        REFUSED(mm_as_translate(&as, va, NULL, NULL), -MM_EINVAL);
    }
    static const unsigned bad_prots[] = {
        0, MM_PROT_USER, MM_PROT_READ, MM_PROT_READ | MM_PROT_WRITE,
        RW | MM_PROT_EXEC, RO | 0x100,
    };
    for (unsigned i = 0; i < sizeof bad_prots / sizeof bad_prots[0]; i++) {
        REFUSED(mm_as_map_zeroed(&as, UVA(0x20000), bad_prots[i]), -MM_EINVAL);
        REFUSED(mm_as_map_frame(&as, UVA(0x20000), PA(FOREIGN_PA), bad_prots[i]),
                -MM_EINVAL);
        REFUSED(mm_as_protect(&as, UVA(0x10000), bad_prots[i]), -MM_EINVAL);
    }
    REFUSED(mm_as_map_frame(&as, UVA(0x20000), PA(FOREIGN_PA + 8), RW), -MM_EINVAL);
    REFUSED(mm_as_map_frame(&as, UVA(0x20000), PA(UINT64_C(1) << 52), RW), -MM_EINVAL);
    REFUSED(mm_as_map_zeroed(NULL, UVA(0x20000), RW), -MM_EINVAL);
    REFUSED(mm_copy_to_user(NULL, UVA(0x10000), "x", 1), -MM_EINVAL);
    snap_as = NULL;
    CHECK_EQ(mm_as_destroy(&as), 0);
}

/* Errors that are not the caller's fault: no log line, nothing changed;
 * then a destroyed address space refuses everything. */
static void test_quiet_errors_and_destroyed(void)
{
    setup();
    struct mm_as as;
    REQUIRE(mm_as_create(&as, &tfa.fa) == 0);
    REQUIRE(mm_as_map_zeroed(&as, UVA(0x10000), RW) == 0);
    snap_as = &as;
    struct snap s;
    take_snap(&s);
    unsigned long lines = harness_log_lines;
    CHECK_EQ(mm_as_map_zeroed(&as, UVA(0x10000), RW), -MM_EEXIST);
    CHECK_EQ(mm_as_map_frame(&as, UVA(0x10000), PA(FOREIGN_PA), RW), -MM_EEXIST);
    CHECK_EQ(mm_as_unmap(&as, UVA(0x30000)), -MM_ENOENT);
    CHECK_EQ(mm_as_protect(&as, UVA(0x30000), RO), -MM_ENOENT);
    CHECK_EQ(mm_as_translate(&as, UVA(0x30000), NULL, NULL), -MM_ENOENT);
    tfa.budget = 0;
    CHECK_EQ(mm_as_map_zeroed(&as, UVA(0x40000000), RW), -MM_ENOMEM);
    CHECK_EQ(mm_as_map_zeroed(&as, UVA(0x10000), RW), -MM_EEXIST);  /* checked first */
    tfa.budget = 1;         /* the data frame, but no table */
    CHECK_EQ(mm_as_map_zeroed(&as, UVA(0x40000000), RW), -MM_ENOMEM);
    CHECK_EQ(mm_as_map_frame(&as, UVA(0x40000000), PA(FOREIGN_PA), RW), -MM_ENOMEM);
    tfa.budget = UINT64_MAX;
    CHECK(snap_same(&s));
    CHECK_EQ(harness_log_lines, lines);
    /* Destroyed: every call refused. */
    REQUIRE(mm_as_destroy(&as) == 0);
    REFUSED(mm_as_destroy(&as), -MM_EINVAL);
    REFUSED(mm_as_map_zeroed(&as, UVA(0x10000), RW), -MM_EINVAL);
    REFUSED(mm_as_unmap(&as, UVA(0x10000)), -MM_EINVAL);
    REFUSED(mm_as_translate(&as, UVA(0x10000), NULL, NULL), -MM_EINVAL);
    char c;
    REFUSED(mm_copy_from_user(&as, &c, UVA(0x10000), 1), -MM_EINVAL);
    EXPECT_PANIC(mm_as_switch(&as));
    snap_as = NULL;
}

static void test_owned_and_foreign(void)
{
    uint64_t base = setup();
    struct mm_as as;
    REQUIRE(mm_as_create(&as, &tfa.fa) == 0);
    words(FOREIGN_PA)[0] = 0x1234;
    REQUIRE(mm_as_map_frame(&as, UVA(0x3000), PA(FOREIGN_PA), RW) == 0);
    REQUIRE(mm_as_map_zeroed(&as, UVA(0x4000), RW) == 0);
    uint64_t owned_pa = pa_of(&as, UVA(0x4000));
    CHECK(owned_pa >= POOL_START);
    CHECK_EQ(words(owned_pa)[0], 0);                  /* zeroed */
    CHECK_EQ(words(owned_pa)[511], 0);
    /* The owned bit marks only the allocated frame. */
    struct pt_mapper m = { .top_pa = as.top_pa, .fa = &tfa.fa, .readonly = true };
    pt_entry_t e;
    REQUIRE(pt_get_entry(&m, UVA(0x4000), 1, &e) == 0);
    CHECK(e.raw & PTE_AS_OWNED);
    REQUIRE(pt_get_entry(&m, UVA(0x3000), 1, &e) == 0);
    CHECK(!(e.raw & PTE_AS_OWNED));
    /* Unmapping a foreign frame does not free it; an owned one is freed. */
    uint64_t before = tfa.outstanding;
    CHECK_EQ(mm_as_unmap(&as, UVA(0x3000)), 0);
    CHECK_EQ(tfa.outstanding, before);
    CHECK_EQ(words(FOREIGN_PA)[0], 0x1234);
    CHECK_EQ(mm_as_unmap(&as, UVA(0x4000)), 0);
    CHECK_EQ(tfa.outstanding, before - 1 - 3);      /* frame and its 3 tables */
    CHECK(!test_fa_is_out(&tfa, PA(owned_pa)));
    /* The same foreign frame in two address spaces: destroy frees neither. */
    struct mm_as as2;
    REQUIRE(mm_as_create(&as2, &tfa.fa) == 0);
    REQUIRE(mm_as_map_frame(&as, UVA(0x3000), PA(FOREIGN_PA), RO) == 0);
    REQUIRE(mm_as_map_frame(&as2, UVA(0x5000), PA(FOREIGN_PA), RW) == 0);
    REQUIRE(mm_as_map_zeroed(&as2, UVA(0x6000), RW) == 0);
    CHECK_EQ(mm_as_destroy(&as), 0);
    CHECK_EQ(mm_as_destroy(&as2), 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(tfa.bad_frees, 0);
}

static void test_protect_and_translate(void)
{
    setup();
    struct mm_as as;
    REQUIRE(mm_as_create(&as, &tfa.fa) == 0);
    REQUIRE(mm_as_map_zeroed(&as, UVA(0x8000), RW) == 0);
    phys_addr_t pa;
    unsigned prot;
    CHECK_EQ(mm_as_translate(&as, UVA(0x8123), &pa, &prot), 0);
    CHECK_EQ(pa.raw & 0xfff, 0x123);
    CHECK_EQ(prot, RW);
    CHECK_EQ(mm_as_protect(&as, UVA(0x8000), RX), 0);
    phys_addr_t pa2;
    CHECK_EQ(mm_as_translate(&as, UVA(0x8000), &pa2, &prot), 0);
    CHECK_EQ(prot, RX);
    CHECK_EQ(pa2.raw, pa.raw - 0x123);
    unsigned wx = RW | MM_PROT_EXEC | MM_PROT_WX_OK;
    CHECK_EQ(mm_as_protect(&as, UVA(0x8000), wx), 0);
    CHECK_EQ(mm_as_translate(&as, UVA(0x8000), NULL, &prot), 0);
    CHECK_EQ(prot, wx);
    /* Protection keeps the ownership: destroy still frees the frame. */
    uint64_t before = tfa.outstanding;
    CHECK_EQ(mm_as_unmap(&as, UVA(0x8000)), 0);
    CHECK_EQ(tfa.outstanding, before - 4);
    CHECK_EQ(mm_as_destroy(&as), 0);
}

static void test_copy_helpers(void)
{
    uint64_t base = setup();
    struct mm_as as;
    REQUIRE(mm_as_create(&as, &tfa.fa) == 0);
    REQUIRE(mm_as_map_zeroed(&as, UVA(0x10000), RW) == 0);
    REQUIRE(mm_as_map_zeroed(&as, UVA(0x11000), RW) == 0);
    REQUIRE(mm_as_map_zeroed(&as, UVA(0x12000), RO) == 0);
    /* 0x13000 unmapped. */
    REQUIRE(mm_as_map_zeroed(&as, UVA(0x14000), RW) == 0);
    char buf[3 * 4096], back[3 * 4096];
    for (unsigned i = 0; i < sizeof buf; i++)
        buf[i] = (char)(i * 7 + 1);
    /* Across a page boundary, both ways. */
    CHECK_EQ(mm_copy_to_user(&as, UVA(0x10ff0), buf, 4096), 0);
    memset(back, 0, sizeof back);
    CHECK_EQ(mm_copy_from_user(&as, back, UVA(0x10ff0), 4096), 0);
    CHECK(memcmp(buf, back, 4096) == 0);
    CHECK_EQ(((uint8_t *)pa_to_ptr(PA(pa_of(&as, UVA(0x11000)))))[0xfef],
             (uint8_t)buf[4095]);
    /* Read-only page: copy_to refused and nothing written, even in the
     * writable page before it. */
    uint8_t *p11 = pa_to_ptr(PA(pa_of(&as, UVA(0x11000))));
    uint8_t *p12 = pa_to_ptr(PA(pa_of(&as, UVA(0x12000))));
    memset(p11, 0x11, PAGE_SIZE);
    CHECK_EQ(mm_copy_to_user(&as, UVA(0x11800), buf, 4096), -MM_EFAULT);
    CHECK_EQ(p11[0x800], 0x11);
    CHECK_EQ(p12[0], 0);
    CHECK_EQ(mm_copy_from_user(&as, back, UVA(0x12000), 16), 0);     /* readable */
    /* A device frame (outside the direct map's RAM): never copied through
     * the direct map, so the helpers refuse it instead of faulting. */
    REQUIRE(mm_as_map_frame(&as, UVA(0x20000), PA(0xfee00000), RW) == 0);
    CHECK_EQ(mm_copy_from_user(&as, back, UVA(0x20000), 16), -MM_EFAULT);
    CHECK_EQ(mm_copy_to_user(&as, UVA(0x20000), buf, 16), -MM_EFAULT);
    CHECK_EQ(mm_as_unmap(&as, UVA(0x20000)), 0);
    /* Partially unmapped range: nothing copied either way. */
    memset(back, 0x77, sizeof back);
    CHECK_EQ(mm_copy_from_user(&as, back, UVA(0x12800), 4096), -MM_EFAULT);
    CHECK_EQ((uint8_t)back[0], 0x77);
    CHECK_EQ((uint8_t)back[4095], 0x77);
    CHECK_EQ(mm_copy_to_user(&as, UVA(0x13800), buf, 4096), -MM_EFAULT);
    CHECK_EQ(((uint8_t *)pa_to_ptr(PA(pa_of(&as, UVA(0x14000)))))[0], 0);
    /* Bad pointers: page 0, kernel half, non-canonical, wrapping, top. */
    static const uint64_t bad[] = {
        0, 0x10, UINT64_C(0xffff800000000000), UINT64_C(0x800000000000),
        UINT64_C(0xfffffffffffff000), UINT64_C(0x7ffffffff000),
    };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ(mm_copy_from_user(&as, back, VA(bad[i]), 8), -MM_EFAULT);
        CHECK_EQ(mm_copy_to_user(&as, VA(bad[i]), buf, 8), -MM_EFAULT);
    }
    CHECK_EQ(mm_copy_from_user(&as, back, UVA(0x10000), UINT64_MAX), -MM_EFAULT);
    CHECK_EQ(mm_copy_from_user(&as, back, UVA(0x7fffffffeff8), 16), -MM_EFAULT);
    CHECK_EQ(mm_copy_from_user(&as, back, UVA(0x10000), 0), 0);
    /* Kernel-only pages in the user half: a foreign frame mapped without
     * MM_PROT_USER cannot exist (refused), so "not user" is the kernel half. */
    CHECK_EQ(mm_copy_from_user(&as, back, VA(MM_DIRECT_MAP_BASE), 8), -MM_EFAULT);
    CHECK_EQ(mm_as_destroy(&as), 0);
    CHECK_EQ(tfa.outstanding, base);
}

static void test_copy_str(void)
{
    uint64_t base = setup();
    struct mm_as as;
    REQUIRE(mm_as_create(&as, &tfa.fa) == 0);
    REQUIRE(mm_as_map_zeroed(&as, UVA(0x10000), RW) == 0);
    REQUIRE(mm_as_map_zeroed(&as, UVA(0x12000), RO) == 0);
    uint8_t *p12 = pa_to_ptr(PA(pa_of(&as, UVA(0x12000))));
    char s[64];
    CHECK_EQ(mm_copy_to_user(&as, UVA(0x10100), "hello", 6), 0);
    CHECK_EQ(mm_copy_str_from_user(&as, s, UVA(0x10100), sizeof s), 5);
    CHECK(strcmp(s, "hello") == 0);
    CHECK_EQ(mm_copy_str_from_user(&as, s, UVA(0x10100), 6), 5);
    memset(s, 0x55, sizeof s);
    CHECK_EQ(mm_copy_str_from_user(&as, s, UVA(0x10100), 5), -MM_EINVAL);   /* no NUL */
    CHECK_EQ((uint8_t)s[0], 0x55);
    CHECK_EQ(mm_copy_str_from_user(&as, s, UVA(0x10100), 0), -MM_EINVAL);
    /* A string that runs into the unmapped page: fault, nothing copied. */
    memset(p12, 'a', PAGE_SIZE);
    CHECK_EQ(mm_copy_str_from_user(&as, s, UVA(0x12ff0), sizeof s), -MM_EFAULT);
    CHECK_EQ((uint8_t)s[0], 0x55);
    /* ... and one across a page boundary that ends in time. */
    p12[PAGE_SIZE - 1] = 0;
    CHECK_EQ(mm_copy_str_from_user(&as, s, UVA(0x12ff0), sizeof s), 15);
    CHECK_EQ(mm_copy_str_from_user(&as, s, UVA(0), sizeof s), -MM_EFAULT);
    CHECK_EQ(mm_as_destroy(&as), 0);
    CHECK_EQ(tfa.outstanding, base);
}

static void test_switch_bookkeeping(void)
{
    uint64_t base = setup();
    struct mm_as a, b;
    REQUIRE(mm_as_create(&a, &tfa.fa) == 0);
    REQUIRE(mm_as_create(&b, &tfa.fa) == 0);
    CHECK(mm_as_current() == NULL);
    harness_cpu_id = 1;
    mm_as_switch(&a);
    CHECK(mm_as_current() == &a);
    CHECK_EQ(arch_read_cr3().raw, a.top_pa.raw);
    CHECK_EQ(a.cpus, 2);
    harness_cpu_id = 3;
    mm_as_switch(&a);
    CHECK_EQ(a.cpus, 0xa);
    snap_as = &a;
    REFUSED(mm_as_destroy(&a), -MM_EBUSY);
    mm_as_switch(&b);
    CHECK_EQ(a.cpus, 0x2);
    CHECK_EQ(b.cpus, 0x8);
    harness_cpu_id = 1;
    CHECK(mm_as_current() == &a);
    mm_as_switch(NULL);
    CHECK_EQ(arch_read_cr3().raw, ktop.raw);
    CHECK_EQ(a.cpus, 0);
    CHECK(mm_as_current() == NULL);
    CHECK_EQ(mm_as_destroy(&a), 0);
    snap_as = &b;
    REFUSED(mm_as_destroy(&b), -MM_EBUSY);
    harness_cpu_id = 3;
    mm_as_switch(NULL);
    CHECK_EQ(mm_as_destroy(&b), 0);
    CHECK_EQ(tfa.outstanding, base);
    snap_as = NULL;
    harness_cpu_id = 0;
}

/* ------------------------------------------------- targeted shootdown */

/* A user access from cpu, retried once: a TLB entry with fewer rights
 * than the tables (after a protect that added some) faults once and is
 * dropped, as on hardware. */
static enum tlb_model_result user_access(unsigned cpu, virt_addr_t va, unsigned how)
{
    enum tlb_model_result r = tlb_model_access(cpu, va, how | TLB_ACCESS_USER);
    if (r != TLB_OK && r != TLB_FAULT_FREED)
        r = tlb_model_access(cpu, va, how | TLB_ACCESS_USER);
    return r;
}

static void test_shootdown_targets(void)
{
    uint64_t base = setup();
    tlb_model_init(4, ktop);
    struct mm_as a;
    REQUIRE(mm_as_create(&a, &tfa.fa) == 0);
    /* Loaded only on CPU 0: no shootdown for maps and unmaps. */
    harness_cpu_id = 0;
    mm_as_switch(&a);
    unsigned long sd = harness_shootdowns;
    for (uint64_t va = 0x10000; va < 0x18000; va += PAGE_SIZE) {
        CHECK_EQ(mm_as_map_zeroed(&a, VA(va), RW), 0);
        CHECK_EQ(user_access(0, VA(va), TLB_ACCESS_WRITE), TLB_OK);
        CHECK_EQ(mm_as_unmap(&a, VA(va)), 0);
        CHECK_EQ(user_access(0, VA(va), TLB_ACCESS_READ), TLB_FAULT_NOT_PRESENT);
    }
    CHECK_EQ(harness_shootdowns, sd);
    CHECK_EQ(tlb_model_check("test_shootdown_targets: a"), 0);
    mm_as_switch(NULL);
    CHECK_EQ(mm_as_destroy(&a), 0);
    CHECK_EQ(tfa.outstanding, base);
    tlb_model_fini();
}

static void test_shootdown_targets_two_cpus(void)
{
    uint64_t base = setup();
    tlb_model_init(4, ktop);
    struct mm_as b;
    REQUIRE(mm_as_create(&b, &tfa.fa) == 0);
    harness_cpu_id = 0;
    unsigned long sd;
    /* Loaded on CPUs 0 and 2: one shootdown per unmap, to CPU 2 only. */
    mm_as_switch(&b);
    harness_cpu_id = 2;
    mm_as_switch(&b);
    harness_cpu_id = 0;
    CHECK_EQ(b.cpus, 0x5);
    for (uint64_t va = 0x10000; va < 0x14000; va += PAGE_SIZE) {
        CHECK_EQ(mm_as_map_zeroed(&b, VA(va), RW), 0);
        CHECK_EQ(user_access(2, VA(va), TLB_ACCESS_WRITE), TLB_OK);
        CHECK_EQ(user_access(0, VA(va), TLB_ACCESS_READ), TLB_OK);
    }
    for (uint64_t va = 0x10000; va < 0x14000; va += PAGE_SIZE) {
        sd = harness_shootdowns;
        CHECK_EQ(mm_as_unmap(&b, VA(va)), 0);
        CHECK_EQ(harness_shootdowns, sd + 1);
        CHECK_EQ(harness_shootdown_targets, 0x4);
        CHECK_EQ(user_access(2, VA(va), TLB_ACCESS_READ), TLB_FAULT_NOT_PRESENT);
    }
    CHECK_EQ(tlb_model_check("test_shootdown_targets: b"), 0);
    /* CPU 2 switched away: no shootdown any more; loaded nowhere, none. */
    harness_cpu_id = 2;
    mm_as_switch(NULL);
    harness_cpu_id = 0;
    CHECK_EQ(mm_as_map_zeroed(&b, UVA(0x20000), RW), 0);
    sd = harness_shootdowns;
    CHECK_EQ(mm_as_unmap(&b, UVA(0x20000)), 0);
    mm_as_switch(NULL);
    CHECK_EQ(mm_as_map_zeroed(&b, UVA(0x20000), RW), 0);
    unsigned long inv = host_invlpg_count;
    CHECK_EQ(mm_as_unmap(&b, UVA(0x20000)), 0);
    CHECK_EQ(host_invlpg_count, inv);
    CHECK_EQ(harness_shootdowns, sd);
    CHECK_EQ(mm_as_destroy(&b), 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(tlb_model_check("test_shootdown_targets: end"), 0);
    tlb_model_fini();
}

/* ----------------------------------------------------- random model test */

#define M_AS    3
#define M_CPUS  4
#define M_VAS   10
#define M_STEPS 20000

/* Candidate pages: neighbours, other tables, other top-level slots. */
static const uint64_t model_vas[M_VAS] = {
    0x1000, 0x2000, 0x1ff000, 0x200000, 0x40000000, 0x40001000,
    UINT64_C(0x8000000000), UINT64_C(0x8000201000), UINT64_C(0x7ffffffee000),
    UINT64_C(0x7fffffffe000),
};

struct model_page {
    bool mapped, owned;
    uint64_t pa;
    unsigned prot;
    uint8_t byte;               /* byte 0 of the page as last written */
};

struct model {
    struct mm_as as[M_AS];
    struct model_page page[M_AS][M_VAS];
    uint8_t foreign_byte[M_AS][M_VAS];  /* byte 0 of each foreign frame */
    int cur[M_CPUS];                    /* -1: the kernel table */
};

static uint64_t foreign_pa(unsigned a, unsigned i)
{
    return FOREIGN_PA + ((uint64_t)a * M_VAS + i + 8) * PAGE_SIZE;
}

static const unsigned model_prots[] = { RW, RO, RX, RW | MM_PROT_EXEC | MM_PROT_WX_OK };

/* Every CPU that has an address space loaded reads each page of it and
 * gets what the model says. */
static void model_check_access(struct model *md)
{
    for (unsigned c = 0; c < M_CPUS; c++) {
        if (md->cur[c] < 0)
            continue;
        unsigned a = (unsigned)md->cur[c];
        for (unsigned i = 0; i < M_VAS; i++) {
            const struct model_page *p = &md->page[a][i];
            enum tlb_model_result r = user_access(c, VA(model_vas[i]), TLB_ACCESS_READ);
            CHECK_EQ(r, p->mapped ? TLB_OK : TLB_FAULT_NOT_PRESENT);
            if (p->mapped && !(p->prot & MM_PROT_WRITE))
                CHECK_EQ(user_access(c, VA(model_vas[i]), TLB_ACCESS_WRITE),
                         TLB_FAULT_WRITE);
            phys_addr_t pa;
            if (p->mapped && tlb_model_lookup(c, VA(model_vas[i]), &pa))
                CHECK_EQ(pa.raw, p->pa);
        }
    }
}

/* Compare every page of every address space with the model. */
static void model_check_tables(struct model *md)
{
    for (unsigned a = 0; a < M_AS; a++) {
        uint64_t owned = 0;
        mm_cpumask_t cpus = 0;
        for (unsigned c = 0; c < M_CPUS; c++)
            if (md->cur[c] == (int)a)
                cpus |= (mm_cpumask_t)1 << c;
        CHECK_EQ(md->as[a].cpus, cpus);
        for (unsigned i = 0; i < M_VAS; i++) {
            const struct model_page *p = &md->page[a][i];
            phys_addr_t pa;
            unsigned prot;
            int err = mm_as_translate(&md->as[a], VA(model_vas[i]), &pa, &prot);
            CHECK_EQ(err, p->mapped ? 0 : -MM_ENOENT);
            if (p->mapped) {
                CHECK_EQ(pa.raw, p->pa);
                CHECK_EQ(prot, p->prot | MM_PROT_READ);
                uint8_t byte = 0xee;
                CHECK_EQ(mm_copy_from_user(&md->as[a], &byte, VA(model_vas[i]), 1), 0);
                CHECK_EQ(byte, p->byte);
            }
            owned += p->mapped && p->owned;
        }
        CHECK_EQ(md->as[a].owned_frames, owned);
    }
}

/* One random operation on address space a, run on CPU cpu. */
static void model_step(struct model *md, uint64_t *rng, unsigned a, unsigned cpu)
{
    unsigned i = (unsigned)(rng_next(rng) % M_VAS);
    struct mm_as *as = &md->as[a];
    struct model_page *p = &md->page[a][i];
    virt_addr_t va = VA(model_vas[i]);
    unsigned prot = model_prots[rng_next(rng) % 4];
    harness_cpu_id = cpu;
    switch (rng_next(rng) % 7) {
    case 0:
        CHECK_EQ(mm_as_map_zeroed(as, va, prot), p->mapped ? -MM_EEXIST : 0);
        if (!p->mapped) {
            *p = (struct model_page){ true, true, pa_of(as, va), prot, 0 };
        }
        break;
    case 1:
        CHECK_EQ(mm_as_map_frame(as, va, PA(foreign_pa(a, i)), prot),
                 p->mapped ? -MM_EEXIST : 0);
        if (!p->mapped)
            *p = (struct model_page){ true, false, foreign_pa(a, i), prot,
                                      md->foreign_byte[a][i] };
        break;
    case 2:
    case 3:
        CHECK_EQ(mm_as_unmap(as, va), p->mapped ? 0 : -MM_ENOENT);
        p->mapped = false;
        break;
    case 4:
        CHECK_EQ(mm_as_protect(as, va, prot), p->mapped ? 0 : -MM_ENOENT);
        p->prot = prot;
        break;
    case 5: {
        uint8_t byte = (uint8_t)rng_next(rng);
        bool ok = p->mapped && (p->prot & MM_PROT_WRITE);
        CHECK_EQ(mm_copy_to_user(as, va, &byte, 1), ok ? 0 : -MM_EFAULT);
        if (ok) {
            p->byte = byte;
            if (!p->owned)
                md->foreign_byte[a][i] = byte;
        }
        break;
    }
    default: {
        int target = (int)(rng_next(rng) % (M_AS + 1)) - 1;
        mm_as_switch(target < 0 ? NULL : &md->as[target]);
        md->cur[cpu] = target;
        break;
    }
    }
}

static void test_random_model(void)
{
    uint64_t base = setup();
    tlb_model_init(M_CPUS, ktop);
    static struct model md;
    memset(&md, 0, sizeof md);
    for (unsigned c = 0; c < M_CPUS; c++)
        md.cur[c] = -1;
    for (unsigned a = 0; a < M_AS; a++)
        REQUIRE(mm_as_create(&md.as[a], &tfa.fa) == 0);
    uint64_t rng = 0x5eed1234;
    unsigned long violations = tlb_model_violations;
    for (unsigned step = 0; step < M_STEPS && !harness_failed; step++) {
        unsigned a = (unsigned)(rng_next(&rng) % M_AS);
        tlb_model_fill_range(VA(MM_USER_BASE), MM_USER_END - MM_USER_BASE);
        model_step(&md, &rng, a, (unsigned)(rng_next(&rng) % M_CPUS));
        CHECK_EQ(tlb_model_check("test_random_model"), 0);
        if (step % 16 == 0) {
            model_check_access(&md);
            model_check_tables(&md);
        }
    }
    for (unsigned c = 0; c < M_CPUS; c++) {
        harness_cpu_id = c;
        mm_as_switch(NULL);
    }
    harness_cpu_id = 0;
    for (unsigned a = 0; a < M_AS; a++)
        CHECK_EQ(mm_as_destroy(&md.as[a]), 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(tfa.bad_frees, 0);
    CHECK_EQ(tlb_model_violations, violations);
    tlb_model_fini();
}

int main(void)
{
    RUN(test_prot_to_pte);
    RUN(test_create_destroy_returns_every_frame);
    RUN(test_kernel_half_is_copied_and_shared);
    RUN(test_no_kernel_table);
    RUN(test_refusals);
    RUN(test_quiet_errors_and_destroyed);
    RUN(test_owned_and_foreign);
    RUN(test_protect_and_translate);
    RUN(test_copy_helpers);
    RUN(test_copy_str);
    RUN(test_switch_bookkeeping);
    RUN(test_shootdown_targets);
    RUN(test_shootdown_targets_two_cpus);
    RUN(test_random_model);
    return harness_finish();
}
