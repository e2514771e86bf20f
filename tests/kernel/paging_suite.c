/*
 * paging_suite.c - the mapper on the live kernel page table.
 *
 * Mappings are made at TEST_VA, 64 GiB into the self-test slot (the 8 GiB
 * from there are this suite's alone), through the kernel mapper lock, and
 * checked with real
 * memory accesses: data written through the direct map must be read back
 * through the new mapping and the other way round, and the protections
 * must be enforced by the CPU (probe_* catch the expected page faults).
 * Every case leaves the table as it found it; the runner's frame
 * accounting after the suite catches a leaked table or frame.
 */
#include "fault.h"
#include "ktest.h"

#include <mm/arch.h>
#include <mm/buddy.h>
#include <mm/init.h>
#include <mm/kmapper.h>
#include <mm/paging.h>
#include <mm/ptdump.h>

/* Kernel image boundaries from linker.ld. */
extern char __text_start[], __text_end[], __rodata_start[], __rodata_end[];
extern char __data_start[], __bss_end[];

#define TEST_VA     (MM_SELFTEST_BASE + 64 * MM_LAYOUT_GIB)
#define TEST_REGION (8 * MM_LAYOUT_GIB)             /* what the cases use */

/* Run one mapper call under the kernel mapper lock. */
#define WITH_MAPPER(km)                                                       \
    for (int _once = (kmapper_lock(&(km)), 1); _once; _once = 0, kmapper_unlock(&(km)))

static uint64_t table_count(void)
{
    struct pt_mapper m = kmapper_peek();
    return ptdump_count_tables(&m);
}

/* Nothing mapped in the test region: its level-3 entries are all empty.
 * (The slot's level-3 table itself stays: the kernel half is fixed.) */
static bool test_slot_empty(void)
{
    struct pt_mapper m = kmapper_peek();
    for (uint64_t off = 0; off < TEST_REGION; off += PAGE_1G_SIZE) {
        pt_entry_t e;
        if (pt_get_entry(&m, VA(TEST_VA + off), PT_LEVEL_PDPT, &e) != 0 || e.raw != 0)
            return false;
    }
    return true;
}

static int map_phys(uint64_t va, phys_addr_t pa, uint64_t page_size, uint64_t flags)
{
    struct kmapper km;
    int err = -MM_EPERM;
    WITH_MAPPER(km) {
        struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
        err = pt_map_huge(&km.mapper, VA(va), pa, page_size, flags, &tok);
        pt_flush(&tok);
    }
    return err;
}

static int unmap_phys(uint64_t va, struct pt_mapping *old)
{
    struct kmapper km;
    int err = -MM_EPERM;
    WITH_MAPPER(km) {
        struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
        err = pt_unmap_phys(&km.mapper, VA(va), true, old, &tok);
        pt_flush(&tok);
    }
    return err;
}

static int remap(uint64_t va, uint64_t flags)
{
    struct kmapper km;
    int err = -MM_EPERM;
    WITH_MAPPER(km) {
        struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
        err = pt_remap(&km.mapper, VA(va), flags, &tok);
        pt_flush(&tok);
    }
    return err;
}

static bool translate(uint64_t va, struct pt_mapping *out)
{
    struct pt_mapper m = kmapper_peek();
    return pt_translate(&m, VA(va), out) == 0;
}

/* The mapping at va is gone: a read faults with a not-present error. */
static void expect_unmapped(struct ktest *t, uint64_t va)
{
    struct fault_info fi;
    KEXPECT(t, probe_read((const void *)va, &fi));
    KEXPECT_EQ(t, fi.vector, X86_PF);
    KEXPECT_EQ(t, fi.cr2, va);
    KEXPECT_EQ(t, fi.error_code & PF_PRESENT, 0);
}

static void case_roundtrip_4k(struct ktest *t)
{
    KASSERT(t, test_slot_empty());
    uint64_t tables = table_count();
    struct frame_allocator *fa = mm_buddy_frames();
    phys_addr_t pa;
    KASSERT(t, frame_alloc(fa, &pa) == 0);

    volatile uint64_t *direct = pa_to_ptr(pa);
    for (unsigned i = 0; i < PAGE_SIZE / 8; i++)
        direct[i] = 0x5eed000000000000ull ^ i;

    uint64_t va = TEST_VA + 5 * PAGE_SIZE;
    KASSERT(t, map_phys(va, pa, PAGE_SIZE, PTE_KERNEL_RW) == 0);
    KEXPECT_EQ(t, table_count(), tables + 2);      /* PD and PT */
    struct pt_mapping tr;
    KEXPECT(t, translate(va + 0x18, &tr));
    KEXPECT_EQ(t, tr.pa.raw, pa.raw + 0x18);
    KEXPECT_EQ(t, tr.level, 1);

    volatile uint64_t *mapped = (volatile uint64_t *)va;
    unsigned bad = 0;
    for (unsigned i = 0; i < PAGE_SIZE / 8; i++)
        bad += mapped[i] != (0x5eed000000000000ull ^ i);
    KEXPECT_EQ(t, bad, 0);
    mapped[7] = 0xabcdef;                   /* and back through the direct map */
    KEXPECT_EQ(t, direct[7], 0xabcdef);

    struct pt_mapping old;
    KEXPECT_EQ(t, unmap_phys(va, &old), 0);
    KEXPECT_EQ(t, old.pa.raw, pa.raw);
    KEXPECT_EQ(t, old.flags & ~(PTE_ACCESSED | PTE_DIRTY), PTE_KERNEL_RW);  /* CPU sets A/D */
    expect_unmapped(t, va);
    KEXPECT_EQ(t, table_count(), tables);
    KEXPECT(t, test_slot_empty());
    fa->free(fa, pa);
}

static void case_roundtrip_2m(struct ktest *t)
{
    KASSERT(t, test_slot_empty());
    uint64_t tables = table_count();
    phys_addr_t pa;
    KASSERT(t, buddy_alloc(mm_buddy(), 512, &pa) == 0);
    KASSERT(t, is_aligned_u64(pa.raw, PAGE_2M_SIZE));

    volatile uint64_t *direct = pa_to_ptr(pa);
    for (uint64_t off = 0; off < PAGE_2M_SIZE; off += PAGE_SIZE)
        direct[off / 8] = pa.raw + off;

    uint64_t va = TEST_VA + 3 * PAGE_2M_SIZE;
    KASSERT(t, map_phys(va, pa, PAGE_2M_SIZE, PTE_KERNEL_RW) == 0);
    KEXPECT_EQ(t, table_count(), tables + 1);      /* PD */
    struct pt_mapping tr;
    KEXPECT(t, translate(va + 0x123456, &tr));
    KEXPECT_EQ(t, tr.pa.raw, pa.raw + 0x123456);
    KEXPECT_EQ(t, tr.level, 2);

    unsigned bad = 0;
    for (uint64_t off = 0; off < PAGE_2M_SIZE; off += PAGE_SIZE)
        bad += *(volatile uint64_t *)(va + off) != pa.raw + off;
    KEXPECT_EQ(t, bad, 0);
    *(volatile uint64_t *)(va + PAGE_2M_SIZE - 8) = 0x2222;
    KEXPECT_EQ(t, direct[PAGE_2M_SIZE / 8 - 1], 0x2222);

    KEXPECT_EQ(t, unmap_phys(va + PAGE_SIZE, NULL), -MM_EINVAL);   /* inside */
    KEXPECT_EQ(t, unmap_phys(va, NULL), 0);
    expect_unmapped(t, va + PAGE_2M_SIZE / 2);
    KEXPECT_EQ(t, table_count(), tables);
    KEXPECT_EQ(t, buddy_free(mm_buddy(), pa, 512), 0);
}

/* A 1 GiB alias of the RAM holding a kernel variable. */
static volatile uint64_t alias_probe = 0x1111;

static void case_roundtrip_1g(struct ktest *t)
{
    if (!arch_has_1g_pages())
        KSKIP(t, "CPU has no 1 GiB pages");
    KASSERT(t, test_slot_empty());
    uint64_t tables = table_count();
    struct pt_mapping var;
    KASSERT(t, translate((uint64_t)(uintptr_t)&alias_probe, &var));
    phys_addr_t pa = PA(align_down_u64(var.pa.raw, PAGE_1G_SIZE));

    uint64_t va = TEST_VA + 2 * PAGE_1G_SIZE;
    KASSERT(t, map_phys(va, pa, PAGE_1G_SIZE, PTE_KERNEL_RW) == 0);
    KEXPECT_EQ(t, table_count(), tables);          /* a leaf in the slot's PDPT */
    volatile uint64_t *alias = (volatile uint64_t *)(va + (var.pa.raw - pa.raw));
    struct pt_mapping tr;
    KEXPECT(t, translate((uint64_t)(uintptr_t)alias, &tr));
    KEXPECT_EQ(t, tr.pa.raw, var.pa.raw);
    KEXPECT_EQ(t, tr.level, 3);
    KEXPECT_EQ(t, *alias, 0x1111);
    alias_probe = 0x2222;
    KEXPECT_EQ(t, *alias, 0x2222);
    *alias = 0x3333;
    KEXPECT_EQ(t, alias_probe, 0x3333);
    /* and the direct map agrees */
    KEXPECT_EQ(t, *(volatile uint64_t *)pa_to_ptr(var.pa), 0x3333);

    KEXPECT_EQ(t, unmap_phys(va, NULL), 0);
    expect_unmapped(t, (uint64_t)(uintptr_t)alias);
    KEXPECT_EQ(t, table_count(), tables);
}

static void case_unmap_frees_tables(struct ktest *t)
{
    KASSERT(t, test_slot_empty());
    uint64_t tables = table_count();
    /* Three pages: two PDs, three PTs (the slot's PDPT exists). */
    const uint64_t vas[3] = { TEST_VA, TEST_VA + 7 * PAGE_2M_SIZE + PAGE_SIZE,
                              TEST_VA + 5 * PAGE_1G_SIZE + 9 * PAGE_SIZE };
    phys_addr_t pas[3];
    struct kmapper km;
    int err[3] = { 1, 1, 1 };
    WITH_MAPPER(km) {
        for (int i = 0; i < 3; i++) {
            struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
            err[i] = pt_map(&km.mapper, VA(vas[i]), PTE_KERNEL_RW, &pas[i], &tok);
            pt_flush(&tok);
        }
    }
    for (int i = 0; i < 3; i++)
        KASSERT(t, err[i] == 0);
    KEXPECT_EQ(t, table_count(), tables + 5);
    for (int i = 0; i < 3; i++) {
        *(volatile uint64_t *)vas[i] = vas[i];
        KEXPECT_EQ(t, *(volatile uint64_t *)pa_to_ptr(pas[i]), vas[i]);
    }
    WITH_MAPPER(km) {
        struct pt_flush_batch batch;
        pt_flush_batch_init(&batch);
        for (int i = 0; i < 3; i++) {
            struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
            err[i] = pt_unmap(&km.mapper, VA(vas[i]), true, &tok);
            pt_flush_batch_add(&batch, &tok);
        }
        pt_flush_batch_flush(&batch);
    }
    for (int i = 0; i < 3; i++) {
        KEXPECT_EQ(t, err[i], 0);
        expect_unmapped(t, vas[i]);
    }
    KEXPECT_EQ(t, table_count(), tables);
    KEXPECT(t, test_slot_empty());
}

static void case_remap_readonly(struct ktest *t)
{
    struct frame_allocator *fa = mm_buddy_frames();
    phys_addr_t pa;
    KASSERT(t, frame_alloc(fa, &pa) == 0);
    uint64_t va = TEST_VA + 11 * PAGE_SIZE;
    KASSERT(t, map_phys(va, pa, PAGE_SIZE, PTE_KERNEL_RW) == 0);
    struct fault_info fi;

    KEXPECT(t, !probe_write((void *)va, 0x42, &fi));
    KEXPECT_EQ(t, *(volatile uint8_t *)pa_to_ptr(pa), 0x42);
    KEXPECT_EQ(t, remap(va, PTE_KERNEL_RO), 0);
    KEXPECT(t, probe_write((void *)va, 0x43, &fi));
    KEXPECT_EQ(t, fi.vector, X86_PF);
    KEXPECT_EQ(t, fi.cr2, va);
    KEXPECT_EQ(t, fi.error_code & (PF_PRESENT | PF_WRITE), PF_PRESENT | PF_WRITE);
    KEXPECT_EQ(t, *(volatile uint8_t *)va, 0x42);       /* still readable */
    KEXPECT_EQ(t, remap(va, PTE_KERNEL_RW), 0);
    KEXPECT(t, !probe_write((void *)va, 0x44, &fi));
    KEXPECT_EQ(t, *(volatile uint8_t *)pa_to_ptr(pa), 0x44);

    KEXPECT_EQ(t, unmap_phys(va, NULL), 0);
    fa->free(fa, pa);
}

static void case_kernel_image_protection(struct ktest *t)
{
    struct fault_info fi;
    /* Writing the byte that is already there changes nothing if it works. */
    volatile uint8_t *ro = (volatile uint8_t *)__rodata_start;
    KEXPECT(t, probe_write(ro, *ro, &fi));
    KEXPECT_EQ(t, fi.vector, X86_PF);
    KEXPECT_EQ(t, fi.error_code & (PF_PRESENT | PF_WRITE), PF_PRESENT | PF_WRITE);
    volatile uint8_t *text = (volatile uint8_t *)__text_start;
    KEXPECT(t, probe_write(text, *text, &fi));
    KEXPECT_EQ(t, fi.vector, X86_PF);

    struct pt_mapping tr;
    KASSERT(t, translate((uint64_t)(uintptr_t)__text_start, &tr));
    KEXPECT_EQ(t, tr.flags & (PTE_WRITE | PTE_NX), 0);
    KASSERT(t, translate((uint64_t)(uintptr_t)__rodata_start, &tr));
    KEXPECT_EQ(t, tr.flags & (PTE_WRITE | PTE_NX), PTE_NX);
    KASSERT(t, translate((uint64_t)(uintptr_t)__data_start, &tr));
    KEXPECT_EQ(t, tr.flags & (PTE_WRITE | PTE_NX), PTE_WRITE | PTE_NX);
    KASSERT(t, translate((uint64_t)(uintptr_t)__bss_end - 1, &tr));
    KEXPECT_EQ(t, tr.flags & (PTE_WRITE | PTE_NX), PTE_WRITE | PTE_NX);
}

/* The image's physical pages are also reachable through the direct map:
 * there, text and rodata must be read-only too, and data not executable. */
static void case_direct_map_alias_of_image(struct ktest *t)
{
    struct fault_info fi;
    uint64_t text_pa = (uint64_t)(uintptr_t)__text_start - 0xffffffff80000000ull;
    uint64_t rodata_pa = (uint64_t)(uintptr_t)__rodata_start - 0xffffffff80000000ull;
    volatile uint8_t *text_alias = pa_to_ptr(PA(text_pa));
    volatile uint8_t *rodata_alias = pa_to_ptr(PA(rodata_pa));
    KEXPECT_EQ(t, *text_alias, *(volatile uint8_t *)__text_start);   /* same bytes */
    KEXPECT(t, probe_write(text_alias, *text_alias, &fi));
    KEXPECT_EQ(t, fi.vector, X86_PF);
    KEXPECT_EQ(t, fi.cr2, (uint64_t)(uintptr_t)text_alias);
    KEXPECT(t, probe_write(rodata_alias, *rodata_alias, &fi));
    KEXPECT_EQ(t, fi.vector, X86_PF);
    KEXPECT(t, probe_exec((const void *)text_alias, &fi));
    KEXPECT_EQ(t, fi.error_code & PF_FETCH, PF_FETCH);
}

static uint8_t data_ret[16] = { 0xc3 };          /* "ret" in .data */

static void plain_function(void)
{
    __asm__ volatile("" ::: "memory");
}

static void expect_fetch_fault(struct ktest *t, const void *addr)
{
    struct fault_info fi;
    KEXPECT(t, probe_exec(addr, &fi));
    KEXPECT_EQ(t, fi.vector, X86_PF);
    KEXPECT_EQ(t, fi.cr2, (uint64_t)(uintptr_t)addr);
    KEXPECT_EQ(t, fi.error_code & PF_FETCH, PF_FETCH);
}

static void case_no_execute(struct ktest *t)
{
    struct fault_info fi;
    /* control: real code runs */
    KEXPECT(t, !probe_exec((const void *)plain_function, &fi));

    expect_fetch_fault(t, data_ret);
    volatile uint8_t stack_ret[16];
    stack_ret[0] = 0xc3;
    expect_fetch_fault(t, (const void *)stack_ret);
    expect_fetch_fault(t, __rodata_start);

    /* the direct map is not executable either */
    struct frame_allocator *fa = mm_buddy_frames();
    phys_addr_t pa;
    KASSERT(t, frame_alloc(fa, &pa) == 0);
    *(volatile uint8_t *)pa_to_ptr(pa) = 0xc3;
    expect_fetch_fault(t, pa_to_ptr(pa));
    fa->free(fa, pa);
}

static void case_null_dereference(struct ktest *t)
{
    struct fault_info fi;
    KEXPECT(t, probe_read(NULL, &fi));
    KEXPECT_EQ(t, fi.vector, X86_PF);
    KEXPECT_EQ(t, fi.cr2, 0);
    KEXPECT_EQ(t, fi.error_code & PF_PRESENT, 0);
}

static void case_no_wx_pages(struct ktest *t)
{
    struct pt_mapper m = kmapper_peek();
    uint64_t wx = ptdump_count_wx(&m);
    if (wx)
        ktest_log(t, "%lu W+X 4K pages in the kernel table", (unsigned long)wx);
    KEXPECT_EQ(t, wx, 0);
}

static void case_live_errors(struct ktest *t)
{
    /* The direct map is there: mapping over it is refused. */
    struct kmapper km, nested;
    int exist = 0, perm = 0;
    bool nested_writable = true;
    WITH_MAPPER(km) {
        struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
        exist = pt_map_phys(&km.mapper, VA(MM_DIRECT_MAP_BASE), PA(0), PTE_KERNEL_RW, &tok);
        pt_flush(&tok);     /* nothing pending after a refusal; empty before reuse */
        /* a nested holder on this CPU gets a read-only mapper */
        nested_writable = kmapper_lock(&nested);
        perm = pt_map_phys(&nested.mapper, VA(TEST_VA), PA(0), PTE_KERNEL_RW, &tok);
        kmapper_unlock(&nested);
        pt_flush(&tok);
    }
    KEXPECT_EQ(t, exist, -MM_EEXIST);
    KEXPECT(t, !nested_writable);
    KEXPECT_EQ(t, perm, -MM_EPERM);
    KEXPECT(t, test_slot_empty());
}

KTEST_SUITE(paging_suite, "paging",
            KTEST_CASE(case_roundtrip_4k),
            KTEST_CASE(case_roundtrip_2m),
            KTEST_CASE(case_roundtrip_1g),
            KTEST_CASE(case_unmap_frees_tables),
            KTEST_CASE(case_remap_readonly),
            KTEST_CASE(case_kernel_image_protection),
            KTEST_CASE(case_direct_map_alias_of_image),
            KTEST_CASE(case_no_execute),
            KTEST_CASE(case_null_dereference),
            KTEST_CASE(case_no_wx_pages),
            KTEST_CASE(case_live_errors));
