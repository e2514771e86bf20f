/*
 * test_pat.c - the PAT layout (mm/pat.c), the PAT bit in the mapper at
 * 4 KiB and huge leaves (mm/paging.c), and write-combining MMIO mappings
 * (mm/mmio.c), which are refused until the PAT is programmed.
 */
#include "harness.h"
#include "test_fa.h"

#include <mm/mmio.h>
#include <mm/pat.h>
#include <mm/paging.h>
#include <mm/ptdump.h>

#define SIM_BYTES (64 * MiB)
#define KVA       UINT64_C(0xffffc00000000000)

extern uint64_t host_msr[0x300];
extern bool host_has_pat;
extern unsigned long host_flush_all_count;

static struct test_fa tfa;
static struct mmio_pool pool;

static void setup(void)
{
    sim_mem_init(SIM_BYTES);
    test_fa_init(&tfa, 1 * MiB, SIM_BYTES);
}

/* The layout: only entry 1 differs from the reset value, and it is WC;
 * the flag sets of the library select the types the header promises. */
static void test_layout(void)
{
    for (unsigned i = 0; i < 8; i++) {
        if (i == 1)
            continue;
        CHECK_EQ(mm_pat_entry(MM_PAT_VALUE, i), mm_pat_entry(MM_PAT_RESET, i));
    }
    CHECK_EQ(mm_pat_entry(MM_PAT_RESET, 1), MM_PAT_WT);
    CHECK_EQ(mm_pat_entry(MM_PAT_VALUE, 1), MM_PAT_WC);
    CHECK_EQ(mm_pat_type_of_flags(PTE_KERNEL_RW), MM_PAT_WB);
    CHECK_EQ(mm_pat_type_of_flags(MMIO_PTE_FLAGS), MM_PAT_UC);
    CHECK_EQ(mm_pat_type_of_flags(MMIO_PTE_FLAGS_WB_RO), MM_PAT_WB);
    CHECK_EQ(mm_pat_type_of_flags(MMIO_PTE_FLAGS_WC), MM_PAT_WC);
    CHECK_EQ(mm_pat_type_of_flags(PTE_KERNEL_RW | PTE_PAT | PTE_PWT), MM_PAT_WT);
    CHECK(strcmp(mm_pat_type_name(MM_PAT_WC), "WC") == 0);
    CHECK(strcmp(mm_pat_type_name(3), "??") == 0);
    char buf[64];
    ptdump_flags_str(MMIO_PTE_FLAGS_WC, buf, sizeof buf);
    CHECK(strcmp(buf, "RW NX G WC") == 0);
    ptdump_flags_str(PTE_KERNEL_RW, buf, sizeof buf);
    CHECK(strcmp(buf, "RW NX G") == 0);
}

/* A write-combining request before the PAT is programmed is refused with
 * one line (entry 1 still means write-through); afterwards it maps PWT
 * alone, and the MSR holds the layout. */
static void test_wc_needs_pat(void)
{
    REQUIRE(mmio_pool_init(&pool, &tfa.fa) == 0);
    struct pt_mapper m;
    REQUIRE(pt_mapper_create(&tfa.fa, &m) == 0);
    uint64_t out = tfa.outstanding;

    CHECK(!mm_pat_programmed());
    unsigned long lines = harness_log_lines;
    harness_quiet = 1;
    CHECK(mmio_ioremap_mode(&pool, &m, PA(0xfd000000), 2 * PAGE_SIZE, MM_CACHE_WC) == NULL);
    CHECK(mmio_ioremap_mode(&pool, &m, PA(0xfd000000), PAGE_SIZE, (enum mm_cache_mode)7) ==
          NULL);
    harness_quiet = 0;
    CHECK_EQ(harness_log_lines, lines + 2);
    CHECK_EQ(tfa.outstanding, out);             /* nothing taken */

    /* A CPU without a PAT: refused, nothing written. */
    host_has_pat = false;
    host_msr[MM_MSR_PAT] = MM_PAT_RESET;
    harness_quiet = 1;
    CHECK_EQ(mm_pat_init_cpu(), -MM_ENODEV);
    harness_quiet = 0;
    CHECK_EQ(host_msr[MM_MSR_PAT], MM_PAT_RESET);
    CHECK(!mm_pat_programmed());

    host_has_pat = true;
    unsigned long flushes = host_flush_all_count;
    CHECK_EQ(mm_pat_init_cpu(), 0);
    CHECK_EQ(host_msr[MM_MSR_PAT], MM_PAT_VALUE);
    CHECK_EQ(host_flush_all_count, flushes + 1);
    CHECK(mm_pat_programmed());

    uint8_t *p = mmio_ioremap_mode(&pool, &m, PA(0xfd000010), 2 * PAGE_SIZE, MM_CACHE_WC);
    REQUIRE(p != NULL);
    CHECK_EQ((uintptr_t)p & (PAGE_SIZE - 1), 0x10);
    struct pt_mapping t;
    for (unsigned i = 0; i < 3; i++) {
        REQUIRE(pt_translate(&m, VA((uintptr_t)p + i * PAGE_SIZE), &t) == 0);
        CHECK_EQ(t.pa.raw, 0xfd000010 + i * PAGE_SIZE);
        CHECK_EQ(t.flags & (PTE_PWT | PTE_PCD | PTE_PAT | PTE_WRITE | PTE_NX),
                 PTE_PWT | PTE_WRITE | PTE_NX);
        CHECK_EQ(mm_pat_type_of_flags(t.flags), MM_PAT_WC);
    }
    CHECK_EQ(mmio_iounmap(&pool, &m, p), 0);
}

/* PTE_PAT sits in bit 7 of a 4 KiB leaf and in bit 12 of a 2 MiB one,
 * where bit 7 is PS; translate reports PTE_PAT either way, remap moves
 * it, and the frame address of the huge leaf is not disturbed. */
static void test_pat_bit_per_level(void)
{
    struct pt_mapper m;
    REQUIRE(pt_mapper_create(&tfa.fa, &m) == 0);
    struct pt_flush tok = PT_FLUSH_INIT;
    uint64_t wt = PTE_KERNEL_RW | PTE_PAT | PTE_PWT;

    REQUIRE(pt_map_phys(&m, VA(KVA), PA(0x200000), wt, &tok) == 0);
    pt_flush(&tok);
    struct pt_mapping t;
    REQUIRE(pt_translate(&m, VA(KVA), &t) == 0);
    CHECK_EQ(t.level, 1);
    CHECK(t.flags & PTE_PAT);
    CHECK_EQ(mm_pat_type_of_flags(t.flags), MM_PAT_WT);

    REQUIRE(pt_map_range(&m, VA(KVA + 2 * MiB), PA(0x400000), 2 * MiB, wt, 2 * MiB, &tok) == 0);
    pt_flush(&tok);
    REQUIRE(pt_translate(&m, VA(KVA + 2 * MiB + 0x1234), &t) == 0);
    CHECK_EQ(t.level, 2);
    CHECK_EQ(t.pa.raw, 0x400000 + 0x1234);
    CHECK(t.flags & PTE_PAT);
    CHECK_EQ(mm_pat_type_of_flags(t.flags), MM_PAT_WT);

    /* the raw entries */
    phys_addr_t pd;
    REQUIRE(pt_get_table(&m, VA(KVA + 2 * MiB), PT_LEVEL_PD, &pd) == 0);
    uint64_t raw = ((uint64_t *)pa_to_ptr(pd))[pt_index(VA(KVA + 2 * MiB), PT_LEVEL_PD)];
    CHECK(raw & PTE_HUGE);
    CHECK(raw & PTE_PAT_HUGE);
    CHECK_EQ(raw & PTE_ADDR_MASK & ~(2 * MiB - 1), 0x400000);

    /* remap to plain write-back: bit 12 goes, PS stays */
    REQUIRE(pt_remap(&m, VA(KVA + 2 * MiB), PTE_KERNEL_RW, &tok) == 0);
    pt_flush(&tok);
    raw = ((uint64_t *)pa_to_ptr(pd))[pt_index(VA(KVA + 2 * MiB), PT_LEVEL_PD)];
    CHECK(raw & PTE_HUGE);
    CHECK(!(raw & PTE_PAT_HUGE));
    REQUIRE(pt_translate(&m, VA(KVA + 2 * MiB), &t) == 0);
    CHECK(!(t.flags & PTE_PAT));
    CHECK_EQ(t.pa.raw, 0x400000);
}

int main(void)
{
    setup();
    RUN(test_layout);
    RUN(test_wc_needs_pat);
    RUN(test_pat_bit_per_level);
    return harness_finish();
}
