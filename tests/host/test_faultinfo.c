/*
 * test_faultinfo.c - host tests of the fault classifier (mm/faultinfo.c):
 * one case per kind of address, the formatted line for a stack overflow,
 * and the handler rules (no frame taken, no log line, no lock: it answers
 * while this CPU holds the kernel mapper lock).
 */
#define _GNU_SOURCE
#include "harness.h"
#include "test_fa.h"

#include <mm/cow.h>
#include <mm/faultinfo.h>
#include <mm/frameref.h>
#include <mm/kmapper.h>
#include <mm/kstack.h>
#include <mm/log.h>
#include <mm/vmalloc.h>

#define SIM_SIZE    (64 * MiB)
#define POOL_START  (1 * MiB)
#define FOREIGN_PA  UINT64_C(0x40000)
#define RW          (MM_PROT_READ | MM_PROT_WRITE | MM_PROT_USER)
#define RO          (MM_PROT_READ | MM_PROT_USER)

static struct test_fa tfa;

static void setup(void)
{
    sim_mem_fini();
    sim_mem_init(SIM_SIZE);
    harness_describe_direct_map();
    mm_frameref_reset();
    test_fa_init(&tfa, POOL_START, SIM_SIZE);
    harness_kernel_table(&tfa.fa, PA(FOREIGN_PA));
    harness_cpu_id = 0;
    if (vmalloc_space_init(vmalloc_space_global(), "vmalloc", MM_VMALLOC_BASE, MM_VMALLOC_END,
                           &tfa.fa) != 0 || mm_kstack_init(&tfa.fa) != 0)
        abort();
}

/* Classify va, and check the handler rules on the way. */
static enum mm_fault_kind kind_of(struct mm_as *as, uint64_t va, uint64_t ec,
                                  struct mm_fault_info *out)
{
    uint64_t frames = tfa.outstanding;
    unsigned long lines = harness_log_lines;
    struct mm_fault_info local;
    struct mm_fault_info *i = out ? out : &local;
    CHECK_EQ(mm_fault_describe(as, VA(va), ec, i), 0);
    CHECK_EQ(tfa.outstanding, frames);
    CHECK_EQ(harness_log_lines, lines);
    return i->kind;
}

static void test_layout_kinds(void)
{
    setup();
    CHECK_EQ(kind_of(NULL, UINT64_C(0x0000800000000000), 0, NULL), MM_FAULT_NONCANONICAL);
    CHECK_EQ(kind_of(NULL, UINT64_C(0xffff7fffffffffff), 0, NULL), MM_FAULT_NONCANONICAL);
    CHECK_EQ(kind_of(NULL, 0, 0, NULL), MM_FAULT_NULL_PAGE);
    CHECK_EQ(kind_of(NULL, 0x18, MM_PF_WRITE, NULL), MM_FAULT_NULL_PAGE);
    struct mm_fault_info i;
    /* harness_kernel_table maps FOREIGN_PA in the MMIO pool and the image. */
    CHECK_EQ(kind_of(NULL, MMIO_POOL_BASE + 0x5000, 0, &i), MM_FAULT_MMIO);
    CHECK(i.mapped && i.pa.raw == FOREIGN_PA);
    CHECK_EQ(kind_of(NULL, MMIO_POOL_BASE + 0x100000, 0, &i), MM_FAULT_MMIO);
    CHECK(!i.mapped);
    CHECK_EQ(kind_of(NULL, MM_KERNEL_IMAGE_BASE + 0x10, MM_PF_FETCH, &i), MM_FAULT_IMAGE);
    CHECK(i.mapped);
    CHECK_EQ(kind_of(NULL, MM_SELFTEST_BASE + 0x3000, 0, NULL), MM_FAULT_SELFTEST);
    CHECK_EQ(kind_of(NULL, UINT64_C(0xffff900000000000), 0, NULL), MM_FAULT_KERNEL_UNMAPPED);
    /* The direct map: RAM (the simulated memory) and a hole above it. */
    CHECK_EQ(kind_of(NULL, MM_DIRECT_MAP_BASE + 0x2000, 0, &i), MM_FAULT_DIRECT_MAP);
    CHECK_EQ(i.pa.raw, 0x2000);
    CHECK_EQ(kind_of(NULL, MM_DIRECT_MAP_BASE + SIM_SIZE + 0x1000, 0, &i),
             MM_FAULT_DIRECT_MAP_HOLE);
    CHECK_EQ(i.pa.raw, SIM_SIZE + 0x1000);
    CHECK_EQ(mm_fault_describe(NULL, VA(0), 0, NULL), -MM_EINVAL);
}

static void test_user_kinds(void)
{
    setup();
    struct mm_as parent, child;
    REQUIRE(mm_as_create(&parent, &tfa.fa) == 0);
    REQUIRE(mm_as_map_zeroed(&parent, VA(0x400000), RW) == 0);
    REQUIRE(mm_as_map_zeroed(&parent, VA(0x401000), RO) == 0);
    struct mm_fault_info i;
    CHECK_EQ(kind_of(&parent, 0x400000, MM_PF_WRITE | MM_PF_USER, &i), MM_FAULT_USER_MAPPED);
    CHECK_EQ(kind_of(&parent, 0x401010, MM_PF_PRESENT | MM_PF_WRITE | MM_PF_USER, &i),
             MM_FAULT_USER_MAPPED);
    CHECK(i.mapped && !(i.flags & PTE_WRITE));
    CHECK_EQ(kind_of(&parent, 0x402000, MM_PF_USER, &i), MM_FAULT_USER_UNMAPPED);
    REQUIRE(mm_as_clone(&child, &parent, &tfa.fa) == 0);
    CHECK_EQ(kind_of(&parent, 0x400008, MM_PF_PRESENT | MM_PF_WRITE | MM_PF_USER, &i),
             MM_FAULT_USER_COW);
    CHECK_EQ(kind_of(&child, 0x400008, MM_PF_PRESENT | MM_PF_WRITE | MM_PF_USER, &i),
             MM_FAULT_USER_COW);
    char line[256];
    mm_fault_format(&i, line, sizeof line);
    CHECK(strstr(line, "copy-on-write") && strstr(line, "write, user mode, protection"));
    CHECK_EQ(mm_as_destroy(&child), 0);
    CHECK_EQ(mm_as_destroy(&parent), 0);
}

static void test_kstack_kinds(void)
{
    setup();
    struct mm_kstack ks;
    REQUIRE(mm_kstack_alloc(16 * KiB, 1, "cpu1-boot", &ks) == 0);
    struct mm_fault_info i;
    CHECK_EQ(kind_of(NULL, ks.base.raw - 8, MM_PF_WRITE, &i), MM_FAULT_KSTACK_OVERFLOW);
    CHECK(!i.mapped && i.stack.cpu == 1 && strcmp(i.stack.name, "cpu1-boot") == 0);
    char line[256];
    mm_fault_format(&i, line, sizeof line);
    CHECK(strstr(line, "kernel stack overflow") != NULL);
    CHECK(strstr(line, "'cpu1-boot' of cpu 1") != NULL);
    CHECK(strstr(line, "0x8 bytes below its base") != NULL);
    CHECK(strstr(line, "write, kernel mode, not present") != NULL);
    CHECK_EQ(kind_of(NULL, ks.top.raw, 0, &i), MM_FAULT_KSTACK_UNDERFLOW);
    mm_fault_format(&i, line, sizeof line);
    CHECK(strstr(line, "kernel stack underflow") && strstr(line, "above its top"));
    CHECK_EQ(kind_of(NULL, ks.top.raw - 16, 0, &i), MM_FAULT_KSTACK);
    CHECK(i.mapped);
    CHECK_EQ(kind_of(NULL, MM_KSTACK_END - PAGE_SIZE, 0, NULL), MM_FAULT_KSTACK_RANGE);
    /* A double fault has no error code; the line says so. */
    CHECK_EQ(kind_of(NULL, ks.base.raw - 4096, MM_FAULT_EC_NONE, &i), MM_FAULT_KSTACK_OVERFLOW);
    mm_fault_format(&i, line, sizeof line);
    CHECK(strstr(line, "no error code") != NULL);
    /* Safe while this CPU holds the kernel mapper lock (a fault in the
     * mapper): no lock is taken. */
    struct kmapper km;
    REQUIRE(kmapper_lock(&km));
    CHECK_EQ(kind_of(NULL, ks.base.raw - 1, MM_PF_WRITE, NULL), MM_FAULT_KSTACK_OVERFLOW);
    kmapper_unlock(&km);
    uint64_t old_base = ks.base.raw;
    CHECK_EQ(mm_kstack_free(&ks), 0);
    CHECK_EQ(kind_of(NULL, old_base - 8, 0, NULL), MM_FAULT_KSTACK_RANGE);
}

static void test_vmalloc_kinds(void)
{
    setup();
    void *p = mm_vmalloc(12 * KiB);
    REQUIRE(p != NULL);
    uint64_t va = (uint64_t)(uintptr_t)p;
    struct mm_fault_info i;
    CHECK_EQ(kind_of(NULL, va + 100, MM_PF_PRESENT | MM_PF_FETCH, &i), MM_FAULT_VMALLOC);
    CHECK(i.mapped && (i.flags & PTE_NX));
    CHECK_EQ(kind_of(NULL, va + 12 * KiB + 4, MM_PF_WRITE, &i), MM_FAULT_VMALLOC_GUARD);
    CHECK_EQ(i.area_end.raw, va + 12 * KiB);
    char line[256];
    mm_fault_format(&i, line, sizeof line);
    CHECK(strstr(line, "vmalloc guard page: 0x4 bytes past the area") != NULL);
    CHECK_EQ(kind_of(NULL, MM_VMALLOC_END - 8, 0, NULL), MM_FAULT_VMALLOC_UNMAPPED);
    CHECK_EQ(kind_of(NULL, MM_VMALLOC_BASE, 0, NULL), MM_FAULT_VMALLOC);
    CHECK_EQ(mm_vfree(p), 0);
    CHECK_EQ(kind_of(NULL, va, 0, NULL), MM_FAULT_VMALLOC_UNMAPPED);
    CHECK_EQ(kind_of(NULL, va + 12 * KiB, 0, NULL), MM_FAULT_VMALLOC_UNMAPPED);
}

static void test_every_kind_has_a_name(void)
{
    for (int k = 0; k < MM_FAULT_NR_KINDS; k++)
        CHECK(mm_fault_kind_name((enum mm_fault_kind)k) != NULL &&
              strcmp(mm_fault_kind_name((enum mm_fault_kind)k), "?") != 0);
    CHECK(strcmp(mm_fault_kind_name(MM_FAULT_NR_KINDS), "?") == 0);
}

int main(void)
{
    RUN(test_layout_kinds);
    RUN(test_user_kinds);
    RUN(test_kstack_kinds);
    RUN(test_vmalloc_kinds);
    RUN(test_every_kind_has_a_name);
    return harness_finish();
}
