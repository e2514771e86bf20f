/*
 * test_tlb.c - the TLB model of the host harness (tlb_model.h) on its own:
 * walks and fills, permission faults, what invlpg, a CR3 load and a full
 * flush drop, the shootdown hook, targeted flushes (a mapper with a CPU
 * set flushes only those CPUs), and each check firing on a violation
 * made by hand (a flush left out, a frame freed too early, an access
 * through a stale entry).  The mapper builds the tables; violations are
 * caught by a hook that counts them instead of failing the test.
 */
#include "harness.h"
#include "tlb_model.h"
#include <mm/arch.h>
#include <mm/paging.h>
#include <mm/platform.h>

extern unsigned long host_cr3_writes, host_flush_all_count, host_invlpg_count;
extern unsigned long harness_shootdowns;

/* ------------------------------------------------------- frame source */

#define SIM_SIZE (16 * MiB)
#define FIRST_PA (1 * MiB)

/* Frames are handed out once, never reused, so a freed one stays free. */
static uint64_t next_pa;

static int tt_alloc(struct frame_allocator *self, phys_addr_t *pa_out)
{
    (void)self;
    if (next_pa >= SIM_SIZE)
        return -MM_ENOMEM;
    *pa_out = PA(next_pa);
    next_pa += PAGE_SIZE;
    tlb_model_frame_alloc(*pa_out);
    return 0;
}

static void tt_free(struct frame_allocator *self, phys_addr_t pa)
{
    (void)self;
    tlb_model_frame_free(pa);
}

static struct frame_allocator tt_fa = { tt_alloc, tt_free };

/* ----------------------------------------------------------- fixtures */

#define KVA     UINT64_C(0xffffc00000000000)    /* 512 GiB aligned */
#define DATA_PA (4 * GiB)                       /* outside the frame source */
#define PTE_KERNEL_RW_LOCAL (PTE_PRESENT | PTE_WRITE | PTE_NX)

static struct pt_mapper m;
static unsigned long violations_seen;

static void count_violation(const char *msg)
{
    (void)msg;
    violations_seen++;
}

/* A fresh mapper loaded on ncpus simulated CPUs, with violations counted. */
static void setup(unsigned ncpus)
{
    sim_mem_fini();
    sim_mem_init(SIM_SIZE);
    next_pa = FIRST_PA;
    harness_quiet = 1;
    harness_cpu_id = 0;
    if (pt_mapper_create(&tt_fa, &m) != 0) {
        fprintf(stderr, "pt_mapper_create failed\n");
        exit(2);
    }
    tlb_model_init(ncpus, m.top_pa);
    tlb_model_violation_hook = count_violation;
    violations_seen = 0;
}

static void teardown(void)
{
    tlb_model_fini();
    tlb_model_violation_hook = NULL;
    harness_cpu_id = 0;
    harness_quiet = 0;
}

/* The end of a test that broke no rule: nothing stale, no violation. */
static void teardown_clean(void)
{
    CHECK_EQ(tlb_model_check("test"), 0);
    CHECK_EQ(violations_seen, 0);
    teardown();
}

static int map4k(uint64_t va, uint64_t pa, uint64_t flags)
{
    struct pt_flush tok = PT_FLUSH_INIT;
    int err = pt_map_phys(&m, VA(va), PA(pa), flags, &tok);
    pt_flush(&tok);
    return err;
}

/* Unmap the 4 KiB page at va (freeing emptied tables), flushing with
 * `flush` (pt_flush, pt_flush_local or pt_flush_ignore). */
static int unmap4k(uint64_t va, void (*flush)(struct pt_flush *))
{
    struct pt_flush tok = PT_FLUSH_INIT;
    int err = pt_unmap_phys(&m, VA(va), true, NULL, &tok);
    flush(&tok);
    return err;
}

/* -------------------------------------------------------------- tests */

static void test_access_fills_and_faults(void)
{
    setup(2);
    CHECK_EQ(map4k(KVA, DATA_PA, PTE_KERNEL_RW), 0);
    CHECK_EQ(tlb_model_entries(TLB_MODEL_TLB, 0), 0);
    CHECK_EQ(tlb_model_access(0, VA(KVA + 8), TLB_ACCESS_READ), TLB_OK);
    CHECK_EQ(tlb_model_entries(TLB_MODEL_TLB, 0), 1);
    CHECK_EQ(tlb_model_entries(TLB_MODEL_PSC, 0), 3);        /* PDPT, PD and PT */
    CHECK_EQ(tlb_model_entries(TLB_MODEL_TLB, 1), 0);        /* only cpu 0 walked */
    phys_addr_t pa;
    CHECK(tlb_model_lookup(0, VA(KVA + 8), &pa));
    CHECK_EQ(pa.raw, DATA_PA + 8);
    CHECK_EQ(tlb_model_access(0, VA(KVA), TLB_ACCESS_WRITE), TLB_OK);
    CHECK_EQ(tlb_model_access(0, VA(KVA), TLB_ACCESS_EXEC), TLB_FAULT_NX);
    CHECK_EQ(tlb_model_access(0, VA(KVA), TLB_ACCESS_USER), TLB_FAULT_USER);
    CHECK_EQ(tlb_model_access(0, VA(KVA + PAGE_SIZE), TLB_ACCESS_READ), TLB_FAULT_NOT_PRESENT);
    CHECK_EQ(map4k(KVA + PAGE_SIZE, DATA_PA, PTE_KERNEL_RO), 0);
    CHECK_EQ(tlb_model_access(1, VA(KVA + PAGE_SIZE), TLB_ACCESS_WRITE), TLB_FAULT_WRITE);
    teardown_clean();
}

static void test_stale_entry_is_used_until_invlpg(void)
{
    setup(1);
    CHECK_EQ(map4k(KVA, DATA_PA, PTE_KERNEL_RW), 0);
    CHECK_EQ(tlb_model_access(0, VA(KVA), TLB_ACCESS_WRITE), TLB_OK);
    /* Made read-only without a flush: the cached entry still writes. */
    struct pt_flush tok = PT_FLUSH_INIT;
    CHECK_EQ(pt_remap(&m, VA(KVA), PTE_KERNEL_RO, &tok), 0);
    pt_flush_ignore(&tok);
    CHECK_EQ(tlb_model_access(0, VA(KVA), TLB_ACCESS_WRITE), TLB_OK);
    CHECK_EQ(tlb_model_check("test"), 1);
    CHECK_EQ(violations_seen, 1);
    CHECK(strstr(tlb_model_last_violation, "cpu 0 holds a stale TLB entry") != NULL);
    CHECK(strstr(tlb_model_last_violation, "va 0xffffc00000000000") != NULL);
    arch_invlpg(VA(KVA));
    CHECK_EQ(tlb_model_check("test"), 0);
    CHECK_EQ(tlb_model_access(0, VA(KVA), TLB_ACCESS_WRITE), TLB_FAULT_WRITE);
    teardown();
}

static void test_invlpg_drops_psc_for_its_va(void)
{
    setup(1);
    /* Two pages in two 2 MiB regions of one 1 GiB region. */
    CHECK_EQ(map4k(KVA, DATA_PA, PTE_KERNEL_RW), 0);
    CHECK_EQ(map4k(KVA + PAGE_2M_SIZE, DATA_PA, PTE_KERNEL_RW), 0);
    tlb_model_fill_page(0, VA(KVA));
    tlb_model_fill_page(0, VA(KVA + PAGE_2M_SIZE));
    CHECK_EQ(tlb_model_entries(TLB_MODEL_TLB, 0), 2);
    CHECK_EQ(tlb_model_entries(TLB_MODEL_PSC, 0), 4);        /* PDPT, PD, two PTs */
    tlb_model_invlpg(0, VA(KVA + 5 * PAGE_SIZE));
    /* The PT of the first region and the PD and PDPT above it go; the
     * TLB entry of another page and the other PT stay. */
    CHECK_EQ(tlb_model_entries(TLB_MODEL_TLB, 0), 2);
    CHECK_EQ(tlb_model_entries(TLB_MODEL_PSC, 0), 1);
    tlb_model_invlpg(0, VA(KVA));
    CHECK_EQ(tlb_model_entries(TLB_MODEL_TLB, 0), 1);
    CHECK(!tlb_model_lookup(0, VA(KVA), NULL));
    CHECK(tlb_model_lookup(0, VA(KVA + PAGE_2M_SIZE), NULL));
    teardown();
}

static void test_cr3_load_keeps_globals(void)
{
    setup(1);
    CHECK_EQ(map4k(KVA, DATA_PA, PTE_KERNEL_RW), 0);               /* global */
    CHECK_EQ(map4k(KVA + PAGE_SIZE, DATA_PA, PTE_KERNEL_RW_LOCAL), 0);
    tlb_model_fill_range(VA(KVA), 2 * PAGE_SIZE);
    CHECK_EQ(tlb_model_entries(TLB_MODEL_TLB, 0), 2);
    unsigned long writes = host_cr3_writes;
    arch_write_cr3(arch_read_cr3());
    CHECK_EQ(host_cr3_writes, writes + 1);
    CHECK_EQ(arch_read_cr3().raw, m.top_pa.raw);
    CHECK_EQ(tlb_model_entries(TLB_MODEL_TLB, 0), 1);
    CHECK(tlb_model_lookup(0, VA(KVA), NULL));
    CHECK_EQ(tlb_model_entries(TLB_MODEL_PSC, 0), 0);
    arch_flush_tlb_all();
    CHECK_EQ(tlb_model_entries(TLB_MODEL_TLB, 0), 0);
    teardown();
}

static void test_fill_range_ends_and_eviction(void)
{
    setup(2);
    struct pt_flush tok = PT_FLUSH_INIT;
    CHECK_EQ(pt_map_range(&m, VA(KVA), PA(DATA_PA), 200 * PAGE_SIZE, PTE_KERNEL_RW,
                          PAGE_SIZE, &tok), 0);
    pt_flush(&tok);
    tlb_model_fill_range(VA(KVA), 200 * PAGE_SIZE);
    for (unsigned cpu = 0; cpu < 2; cpu++) {
        CHECK_EQ(tlb_model_entries(TLB_MODEL_TLB, cpu), 2 * TLB_MODEL_FILL_LEAVES);
        CHECK(tlb_model_lookup(cpu, VA(KVA), NULL));
        CHECK(tlb_model_lookup(cpu, VA(KVA + 199 * PAGE_SIZE), NULL));
        CHECK(!tlb_model_lookup(cpu, VA(KVA + 100 * PAGE_SIZE), NULL));
    }
    for (uint64_t i = 0; i < 200; i++)
        CHECK_EQ(tlb_model_access(0, VA(KVA + i * PAGE_SIZE), TLB_ACCESS_READ), TLB_OK);
    CHECK_EQ(tlb_model_entries(TLB_MODEL_TLB, 0), TLB_MODEL_TLB_ENTRIES);
    /* One 2 MiB leaf: one entry covering all of it. */
    CHECK_EQ(pt_map_huge(&m, VA(KVA + GiB), PA(DATA_PA), PAGE_2M_SIZE, PTE_KERNEL_RW, &tok), 0);
    pt_flush(&tok);
    tlb_model_fill_range(VA(KVA + GiB), PAGE_2M_SIZE);
    phys_addr_t pa;
    CHECK(tlb_model_lookup(1, VA(KVA + GiB + MiB + 5), &pa));
    CHECK_EQ(pa.raw, DATA_PA + MiB + 5);
    teardown_clean();
}

static void test_shootdown_reaches_other_cpus(void)
{
    setup(4);
    CHECK_EQ(map4k(KVA, DATA_PA, PTE_KERNEL_RW), 0);
    tlb_model_fill_range(VA(KVA), PAGE_SIZE);
    for (unsigned cpu = 0; cpu < 4; cpu++)
        CHECK_EQ(tlb_model_entries(TLB_MODEL_TLB, cpu), 1);
    harness_cpu_id = 2;
    CHECK_EQ(unmap4k(KVA, pt_flush), 0);
    for (unsigned cpu = 0; cpu < 4; cpu++) {
        CHECK_EQ(tlb_model_entries(TLB_MODEL_TLB, cpu), 0);
        CHECK_EQ(tlb_model_entries(TLB_MODEL_PSC, cpu), 0);
    }
    teardown_clean();
}

/* ------------------------------------------------ targeted shootdown */

#define UVA         UINT64_C(0x0000000040000000)    /* a user-half page */
#define PTE_USER_RW (PTE_PRESENT | PTE_WRITE | PTE_USER | PTE_NX)

static mm_cpumask_t test_cpus;      /* the CPU set the mapper points at */

/* A user page at UVA (and UVA + 4 KiB) cached by every one of ncpus CPUs;
 * then the mapper gets the CPU set `set`, as an address space's would. */
static void user_pages_cached_everywhere(unsigned ncpus, mm_cpumask_t set)
{
    setup(ncpus);
    CHECK_EQ(map4k(UVA, DATA_PA, PTE_USER_RW), 0);
    CHECK_EQ(map4k(UVA + PAGE_SIZE, DATA_PA + PAGE_SIZE, PTE_USER_RW), 0);
    tlb_model_fill_range(VA(UVA), 2 * PAGE_SIZE);
    for (unsigned cpu = 0; cpu < ncpus; cpu++)
        CHECK(tlb_model_lookup(cpu, VA(UVA), NULL));
    test_cpus = set;
    m.cpus = &test_cpus;
}

/* Unmap the page at va keeping the tables (a freed table would still be
 * in the untargeted CPUs' caches, which the test leaves stale on purpose). */
static void unmap_keep_tables(uint64_t va, struct pt_flush *tok)
{
    CHECK_EQ(pt_unmap_phys(&m, VA(va), false, NULL, tok), 0);
}

/* The CPUs outside the set hold stale entries by construction; drop them
 * (as the CR3 load that took them out of the set would have). */
static void teardown_targeted(unsigned ncpus)
{
    for (unsigned cpu = 0; cpu < ncpus; cpu++)
        tlb_model_flush_all(cpu);
    m.cpus = NULL;
    teardown_clean();
}

/* An address space loaded only here: this CPU flushes, no shootdown. */
static void test_targeted_only_here_sends_none(void)
{
    user_pages_cached_everywhere(3, 1u << 0);
    unsigned long sd = harness_shootdowns;
    struct pt_flush tok = PT_FLUSH_INIT;
    unmap_keep_tables(UVA, &tok);
    pt_flush(&tok);
    CHECK_EQ(harness_shootdowns, sd);
    CHECK(!tlb_model_lookup(0, VA(UVA), NULL));
    CHECK(tlb_model_lookup(1, VA(UVA), NULL));      /* not in the set: untouched */
    CHECK(tlb_model_lookup(2, VA(UVA), NULL));
    teardown_targeted(3);
}

/* Loaded on 0 and 2, flushed from 0: one shootdown, to CPU 2 only. */
static void test_targeted_reaches_only_the_set(void)
{
    user_pages_cached_everywhere(3, (1u << 0) | (1u << 2));
    unsigned long sd = harness_shootdowns;
    struct pt_flush tok = PT_FLUSH_INIT;
    unmap_keep_tables(UVA, &tok);
    pt_flush(&tok);
    CHECK_EQ(harness_shootdowns, sd + 1);
    CHECK_EQ(harness_shootdown_targets, 1u << 2);
    CHECK_EQ(harness_shootdown_va, UVA);
    CHECK_EQ(harness_shootdown_npages, 1);
    CHECK(!tlb_model_lookup(0, VA(UVA), NULL));
    CHECK(tlb_model_lookup(1, VA(UVA), NULL));      /* CPU 1's stale entry stays */
    CHECK(!tlb_model_lookup(2, VA(UVA), NULL));
    teardown_targeted(3);
}

/* Not loaded here (this CPU switched away): no local flush, and the
 * shootdown names the set. */
static void test_targeted_not_here(void)
{
    user_pages_cached_everywhere(3, (1u << 1) | (1u << 2));
    tlb_model_load_cr3(0, PA(0));
    struct pt_flush tok = PT_FLUSH_INIT;
    unmap_keep_tables(UVA, &tok);
    unsigned long inv = host_invlpg_count;
    pt_flush(&tok);
    CHECK_EQ(host_invlpg_count, inv);
    CHECK_EQ(harness_shootdown_targets, (1u << 1) | (1u << 2));
    CHECK(!tlb_model_lookup(1, VA(UVA), NULL));
    CHECK(!tlb_model_lookup(2, VA(UVA), NULL));
    teardown_targeted(3);
}

/* The kernel table (no set): every other CPU, as before. */
static void test_untargeted_reaches_all(void)
{
    user_pages_cached_everywhere(3, 0);
    m.cpus = NULL;
    struct pt_flush tok = PT_FLUSH_INIT;
    unmap_keep_tables(UVA, &tok);
    pt_flush(&tok);
    CHECK_EQ(harness_shootdown_targets, MM_CPUMASK_ALL);
    for (unsigned cpu = 0; cpu < 3; cpu++)
        CHECK(!tlb_model_lookup(cpu, VA(UVA), NULL));
    teardown_targeted(3);
}

/* A batch of one set's tokens: one shootdown to that set; a batch that
 * mixes in a token of the kernel table goes to every CPU. */
static void test_targeted_batch(void)
{
    user_pages_cached_everywhere(3, (1u << 0) | (1u << 2));
    struct pt_flush_batch b;
    struct pt_flush tok = PT_FLUSH_INIT;
    pt_flush_batch_init(&b);
    unmap_keep_tables(UVA, &tok);
    pt_flush_batch_add(&b, &tok);
    unmap_keep_tables(UVA + PAGE_SIZE, &tok);
    pt_flush_batch_add(&b, &tok);
    unsigned long sd = harness_shootdowns;
    pt_flush_batch_flush(&b);
    CHECK_EQ(harness_shootdowns, sd + 1);
    CHECK_EQ(harness_shootdown_targets, 1u << 2);
    CHECK_EQ(harness_shootdown_npages, 2);
    CHECK(tlb_model_lookup(1, VA(UVA), NULL));
    CHECK(tlb_model_lookup(1, VA(UVA + PAGE_SIZE), NULL));
    CHECK(!tlb_model_lookup(2, VA(UVA + PAGE_SIZE), NULL));

    CHECK_EQ(map4k(UVA, DATA_PA, PTE_USER_RW), 0);
    unmap_keep_tables(UVA, &tok);
    pt_flush_batch_add(&b, &tok);
    struct pt_mapper kernel = m;
    kernel.cpus = NULL;
    CHECK_EQ(pt_map_phys(&kernel, VA(KVA), PA(DATA_PA), PTE_KERNEL_RW, &tok), 0);
    pt_flush_batch_add(&b, &tok);
    pt_flush_batch_flush(&b);
    CHECK_EQ(harness_shootdown_targets, MM_CPUMASK_ALL);
    CHECK(!tlb_model_lookup(1, VA(UVA), NULL));
    teardown_targeted(3);
}

/* A range above PT_FLUSH_MAX_INVLPG pages is one full flush everywhere:
 * global entries go too. */
static void test_large_unmap_flushes_globals(void)
{
    setup(3);
    uint64_t size = (PT_FLUSH_MAX_INVLPG + 1) * PAGE_SIZE;
    struct pt_flush tok = PT_FLUSH_INIT;
    CHECK_EQ(pt_map_range(&m, VA(KVA), PA(DATA_PA), size, PTE_KERNEL_RW, PAGE_SIZE, &tok), 0);
    pt_flush(&tok);
    tlb_model_fill_range(VA(KVA), size);
    harness_cpu_id = 1;
    unsigned long full = host_flush_all_count;
    CHECK_EQ(pt_unmap_range(&m, VA(KVA), size, true, &tok), 0);
    pt_flush(&tok);
    CHECK_EQ(host_flush_all_count, full + 1);
    for (unsigned cpu = 0; cpu < 3; cpu++)
        CHECK_EQ(tlb_model_entries(TLB_MODEL_TLB, cpu), 0);
    teardown_clean();
}

/* (a) A flush that stays on this CPU leaves the others stale. */
static void test_check_catches_missing_shootdown(void)
{
    setup(2);
    CHECK_EQ(map4k(KVA, DATA_PA, PTE_KERNEL_RW), 0);
    CHECK_EQ(map4k(KVA + PAGE_SIZE, DATA_PA, PTE_KERNEL_RW), 0);   /* keeps the PT */
    tlb_model_fill_range(VA(KVA), PAGE_SIZE);
    CHECK_EQ(unmap4k(KVA, pt_flush_local), 0);
    CHECK_EQ(violations_seen, 0);
    CHECK_EQ(tlb_model_check("test"), 1);
    CHECK(strstr(tlb_model_last_violation, "cpu 1 holds a stale TLB entry: va "
                 "0xffffc00000000000 -> frame 0x100000000 (global, level 1)") != NULL);
    teardown();
}

/* (a) in the hook: a full flush done as a CR3 reload keeps a global. */
static void test_check_catches_surviving_global(void)
{
    setup(2);
    CHECK_EQ(map4k(KVA, DATA_PA, PTE_KERNEL_RW), 0);
    CHECK_EQ(map4k(KVA + PAGE_SIZE, DATA_PA, PTE_KERNEL_RW), 0);
    tlb_model_fill_range(VA(KVA), PAGE_SIZE);
    struct pt_flush tok = PT_FLUSH_INIT;
    CHECK_EQ(pt_unmap_phys(&m, VA(KVA), true, NULL, &tok), 0);
    arch_write_cr3(arch_read_cr3());            /* not a full flush */
    mm_platform_tlb_shootdown(MM_CPUMASK_ALL, VA(0), 0);
    pt_flush_ignore(&tok);
    CHECK_EQ(violations_seen, 1);
    CHECK(strstr(tlb_model_last_violation, "after the shootdown: cpu 0 holds a stale TLB "
                 "entry: va 0xffffc00000000000") != NULL);
    teardown();
}

/* (b) A data frame freed while another CPU still maps it. */
static void test_check_catches_early_data_free(void)
{
    setup(2);
    phys_addr_t frame;
    struct pt_flush tok = PT_FLUSH_INIT;
    CHECK_EQ(pt_map(&m, VA(KVA), PTE_KERNEL_RW, &frame, &tok), 0);
    pt_flush(&tok);
    CHECK_EQ(map4k(KVA + PAGE_SIZE, DATA_PA, PTE_KERNEL_RW), 0);
    CHECK_EQ(tlb_model_access(1, VA(KVA), TLB_ACCESS_WRITE), TLB_OK);
    CHECK_EQ(pt_unmap(&m, VA(KVA), true, &tok), 0);
    pt_flush_local(&tok);                       /* frees before cpu 1 flushed */
    CHECK_EQ(violations_seen, 1);
    char want[128];
    snprintf(want, sizeof want, "frame %#lx freed while cpu 1's TLB maps va %#lx",
             (unsigned long)frame.raw, (unsigned long)KVA);
    CHECK(strstr(tlb_model_last_violation, want) != NULL);
    /* (c) cpu 1 writes through its stale entry into the free frame. */
    CHECK_EQ(tlb_model_access(1, VA(KVA + 16), TLB_ACCESS_WRITE), TLB_FAULT_FREED);
    CHECK_EQ(violations_seen, 2);
    snprintf(want, sizeof want, "cpu 1 accessed va %#lx through a cached TLB entry: "
             "frame %#lx is free", (unsigned long)(KVA + 16), (unsigned long)frame.raw);
    CHECK(strstr(tlb_model_last_violation, want) != NULL);
    teardown();
}

/* (b) and (c) A table frame freed while another CPU's PSC holds it. */
static void test_check_catches_early_table_free(void)
{
    setup(2);
    CHECK_EQ(map4k(KVA, DATA_PA, PTE_KERNEL_RW), 0);
    CHECK_EQ(map4k(KVA + PAGE_2M_SIZE, DATA_PA, PTE_KERNEL_RW), 0);  /* keeps the PD */
    struct pt_mapping pt;
    CHECK_EQ(pt_get_table(&m, VA(KVA), PT_LEVEL_PT, &pt.pa), 0);
    tlb_model_fill_page(1, VA(KVA));
    tlb_model_invlpg(1, VA(KVA + PAGE_2M_SIZE));   /* keep only the PT's PSC entry */
    CHECK_EQ(tlb_model_entries(TLB_MODEL_PSC, 1), 1);
    CHECK_EQ(unmap4k(KVA, pt_flush_local), 0);
    CHECK(violations_seen >= 1);
    char want[160];
    snprintf(want, sizeof want, "frame %#lx freed while cpu 1's paging-structure cache "
             "holds it as the level-1 table for va %#lx", (unsigned long)pt.pa.raw,
             (unsigned long)KVA);
    CHECK(strstr(tlb_model_last_violation, want) != NULL);
    /* cpu 1 walks another page of that 2 MiB region through the PSC. */
    unsigned long before = violations_seen;
    CHECK_EQ(tlb_model_access(1, VA(KVA + 3 * PAGE_SIZE), TLB_ACCESS_READ), TLB_FAULT_FREED);
    CHECK_EQ(violations_seen, before + 1);
    CHECK(strstr(tlb_model_last_violation, "through a stale paging-structure entry") != NULL);
    teardown();
}

/* The CR3 a CPU has loaded is a frame in use too. */
static void test_check_catches_loaded_top_table_free(void)
{
    setup(2);
    harness_cpu_id = 1;
    CHECK_EQ(pt_mapper_destroy(&m), -MM_EBUSY);         /* this CPU's own CR3 */
    harness_cpu_id = 0;
    tlb_model_load_cr3(0, PA(0));
    struct pt_mapper copy = m;
    CHECK_EQ(pt_mapper_destroy(&copy), 0);              /* cpu 1 still has it */
    CHECK_EQ(violations_seen, 1);
    CHECK(strstr(tlb_model_last_violation, "freed while cpu 1 has it loaded as CR3") != NULL);
    teardown();
}

int main(void)
{
    RUN(test_access_fills_and_faults);
    RUN(test_stale_entry_is_used_until_invlpg);
    RUN(test_invlpg_drops_psc_for_its_va);
    RUN(test_cr3_load_keeps_globals);
    RUN(test_fill_range_ends_and_eviction);
    RUN(test_shootdown_reaches_other_cpus);
    RUN(test_targeted_only_here_sends_none);
    RUN(test_targeted_reaches_only_the_set);
    RUN(test_targeted_not_here);
    RUN(test_untargeted_reaches_all);
    RUN(test_targeted_batch);
    RUN(test_large_unmap_flushes_globals);
    RUN(test_check_catches_missing_shootdown);
    RUN(test_check_catches_surviving_global);
    RUN(test_check_catches_early_data_free);
    RUN(test_check_catches_early_table_free);
    RUN(test_check_catches_loaded_top_table_free);
    return harness_finish();
}
