/*
 * test_kstack.c - host tests of kernel stacks with guard pages and their
 * registry (mm/kstack.c) on a small kernel table in simulated memory.
 *
 * A stack must be mapped RW+NX in the kernel-stack range with unmapped
 * guards below and above, be named by mm_kstack_lookup in its guards,
 * refuse bad handles (double, forged, stale) with one log line and no
 * change, give everything back when frames or registry slots run out, and
 * be freed with one shootdown before its frames go back.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "test_fa.h"
#include "tlb_model.h"

#include <mm/kmapper.h>
#include <mm/kstack.h>
#include <mm/log.h>
#include <mm/paging.h>

extern unsigned long harness_shootdowns;

#define SIM_SIZE    (64 * MiB)
#define POOL_START  (1 * MiB)
#define FOREIGN_PA  UINT64_C(0x40000)

static struct test_fa tfa;
static phys_addr_t ktop;

static uint64_t setup(void)
{
    ktop = test_fa_fresh_kernel(&tfa, SIM_SIZE, POOL_START, FOREIGN_PA);
    if (mm_kstack_init(&tfa.fa) != 0)
        abort();
    return tfa.outstanding;
}


struct snap {
    uint64_t frames;
    uint64_t live;
    unsigned long shootdowns;
};

static void take_snap(struct snap *s)
{
    *s = (struct snap){ tfa.outstanding, mm_kstack_count(), harness_shootdowns };
}

static bool snap_same(const struct snap *a)
{
    struct snap b;
    take_snap(&b);
    return memcmp(a, &b, sizeof b) == 0;
}

/* ------------------------------------------------------------------ tests */

static void test_layout_and_guards(void)
{
    uint64_t base = setup();
    struct mm_kstack ks;
    REQUIRE(mm_kstack_alloc(16 * KiB, 1, "cpu1", &ks) == 0);
    CHECK(ks.base.raw >= MM_KSTACK_BASE && ks.top.raw <= MM_KSTACK_END);
    CHECK_EQ(ks.top.raw - ks.base.raw, 16 * KiB);
    CHECK_EQ(ks.size, 16 * KiB);
    for (uint64_t va = ks.base.raw; va < ks.top.raw; va += PAGE_SIZE) {
        struct pt_mapping m;
        REQUIRE(kernel_lookup(va, &m) == 0);
        CHECK_EQ(m.flags & (PTE_WRITE | PTE_NX | PTE_USER), PTE_WRITE | PTE_NX);
        CHECK_EQ(((uint8_t *)pa_to_ptr(m.pa))[PAGE_SIZE - 1], 0);
        /* Its frame is RAM, but the stack is not the direct map's page. */
        CHECK(va < MM_DIRECT_MAP_BASE || va >= MM_DIRECT_MAP_END);
    }
    CHECK(!kernel_is_mapped(ks.base.raw - PAGE_SIZE));     /* guard below */
    CHECK(!kernel_is_mapped(ks.top.raw));                  /* guard above */
    struct mm_kstack_info in;
    CHECK_EQ(mm_kstack_lookup(VA(ks.base.raw - 8), &in), MM_KSTACK_GUARD_BELOW);
    CHECK_EQ(in.cpu, 1);
    CHECK(strcmp(in.name, "cpu1") == 0);
    CHECK_EQ(in.base.raw, ks.base.raw);
    CHECK_EQ(in.top.raw, ks.top.raw);
    for (uint64_t va = in.block_va.raw; va < ks.base.raw; va += PAGE_SIZE)
        CHECK(!kernel_is_mapped(va));
    CHECK(in.block_va.raw <= ks.base.raw - PAGE_SIZE);
    CHECK_EQ(in.block_end.raw, ks.top.raw + PAGE_SIZE);
    CHECK_EQ(mm_kstack_lookup(ks.top, &in), MM_KSTACK_GUARD_ABOVE);
    CHECK_EQ(mm_kstack_lookup(ks.base, &in), MM_KSTACK_IN_STACK);
    CHECK_EQ(mm_kstack_lookup(VA(ks.top.raw + PAGE_SIZE), &in), MM_KSTACK_NOWHERE);
    CHECK_EQ(mm_kstack_count(), 1);
    CHECK_EQ(mm_kstack_free(&ks), 0);
    CHECK_EQ(mm_kstack_count(), 0);
    CHECK_EQ(mm_kstack_lookup(VA(in.base.raw - 8), &in), MM_KSTACK_NOWHERE);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(tfa.bad_frees, 0);
}

static void test_names_truncated_and_no_cpu(void)
{
    setup();
    struct mm_kstack a, b;
    REQUIRE(mm_kstack_alloc(PAGE_SIZE, MM_KSTACK_NO_CPU, "a-very-long-process-stack-name",
                            &a) == 0);
    REQUIRE(mm_kstack_alloc(8 * KiB + 1, 3, "ist-df", &b) == 0);
    CHECK_EQ(b.size, 12 * KiB);
    struct mm_kstack_info in;
    CHECK_EQ(mm_kstack_lookup(VA(a.base.raw - 1), &in), MM_KSTACK_GUARD_BELOW);
    CHECK_EQ(strlen(in.name), MM_KSTACK_NAME_LEN - 1);
    CHECK_EQ(in.cpu, MM_KSTACK_NO_CPU);
    CHECK_EQ(mm_kstack_lookup(VA(b.base.raw - 1), &in), MM_KSTACK_GUARD_BELOW);
    CHECK(strcmp(in.name, "ist-df") == 0 && in.cpu == 3);
    CHECK_EQ(mm_kstack_free(&a), 0);
    CHECK_EQ(mm_kstack_free(&b), 0);
}

static void test_refusals(void)
{
    setup();
    struct mm_kstack ks, out;
    REQUIRE(mm_kstack_alloc(8 * KiB, 0, "cpu0", &ks) == 0);
    REFUSED(mm_kstack_alloc(0, 0, "x", &out), -MM_EINVAL);
    REFUSED(mm_kstack_alloc(MM_KSTACK_MAX_SIZE + 1, 0, "x", &out), -MM_EINVAL);
    REFUSED(mm_kstack_alloc(PAGE_SIZE, 0, NULL, &out), -MM_EINVAL);
    REFUSED(mm_kstack_alloc(PAGE_SIZE, 0, "x", NULL), -MM_EINVAL);
    REFUSED(mm_kstack_free(NULL), -MM_EINVAL);
    struct mm_kstack forged = ks;
    forged.base.raw += PAGE_SIZE;
    REFUSED(mm_kstack_free(&forged), -MM_EINVAL);
    forged = ks;
    forged.slot = MM_KSTACK_MAX + 5;
    REFUSED(mm_kstack_free(&forged), -MM_EINVAL);
    forged = ks;
    forged.slot = ks.slot + 1;                      /* an unused slot */
    REFUSED(mm_kstack_free(&forged), -MM_EINVAL);
    struct mm_kstack stale = ks;
    CHECK_EQ(mm_kstack_free(&ks), 0);
    REFUSED(mm_kstack_free(&ks), -MM_EINVAL);       /* cleared handle */
    REFUSED(mm_kstack_free(&stale), -MM_EINVAL);    /* double free */
    /* The same slot and block handed out again: the stale handle's
     * generation no longer matches, so it cannot free the new stack. */
    struct mm_kstack again;
    REQUIRE(mm_kstack_alloc(8 * KiB, 0, "cpu0", &again) == 0);
    CHECK_EQ(again.slot, stale.slot);
    CHECK_EQ(again.base.raw, stale.base.raw);
    REFUSED(mm_kstack_free(&stale), -MM_EINVAL);
    /* Holding the kernel mapper lock: refused, still registered. */
    struct kmapper km;
    REQUIRE(kmapper_lock(&km));
    REFUSED(mm_kstack_alloc(PAGE_SIZE, 0, "x", &out), -MM_EPERM);
    REFUSED(mm_kstack_free(&again), -MM_EPERM);
    kmapper_unlock(&km);
    struct mm_kstack_info in;
    CHECK_EQ(mm_kstack_lookup(VA(again.base.raw - 1), &in), MM_KSTACK_GUARD_BELOW);
    CHECK_EQ(mm_kstack_free(&again), 0);
}

static void test_enomem_all_or_nothing(void)
{
    uint64_t base = setup();
    struct snap before;
    take_snap(&before);
    int err = -MM_ENOMEM;
    harness_quiet = 1;
    for (uint64_t budget = 0; err == -MM_ENOMEM; budget++) {
        struct mm_kstack ks;
        tfa.budget = budget;
        err = mm_kstack_alloc(16 * KiB, 2, "cpu2", &ks);
        tfa.budget = UINT64_MAX;
        if (err == 0) {
            CHECK_EQ(mm_kstack_free(&ks), 0);
            break;
        }
        CHECK_EQ(err, -MM_ENOMEM);
        CHECK(snap_same(&before));
        struct mm_kstack_info in;
        CHECK_EQ(mm_kstack_lookup(VA(MM_KSTACK_BASE), &in), MM_KSTACK_NOWHERE);
    }
    harness_quiet = 0;
    CHECK_EQ(err, 0);
    CHECK_EQ(tfa.outstanding, base);
}

static void test_registry_full(void)
{
    uint64_t base = setup();
    static struct mm_kstack ks[MM_KSTACK_MAX];
    for (unsigned i = 0; i < MM_KSTACK_MAX; i++)
        REQUIRE(mm_kstack_alloc(PAGE_SIZE, i, "s", &ks[i]) == 0);
    struct mm_kstack one;
    REFUSED(mm_kstack_alloc(PAGE_SIZE, 0, "one too many", &one), -MM_ENOMEM);
    struct mm_kstack_info in;
    CHECK_EQ(mm_kstack_lookup(VA(ks[700].base.raw - 1), &in), MM_KSTACK_GUARD_BELOW);
    CHECK_EQ(in.cpu, 700);
    for (unsigned i = 0; i < MM_KSTACK_MAX; i++)
        CHECK_EQ(mm_kstack_free(&ks[i]), 0);
    CHECK_EQ(mm_kstack_count(), 0);
    CHECK_EQ(tfa.outstanding, base);
}

static void test_free_one_shootdown(void)
{
    uint64_t base = setup();
    tlb_model_init(4, ktop);
    struct mm_kstack ks;
    REQUIRE(mm_kstack_alloc(32 * KiB, 0, "cpu0", &ks) == 0);
    for (unsigned cpu = 0; cpu < 4; cpu++)
        CHECK_EQ(tlb_model_access(cpu, VA(ks.top.raw - 8), TLB_ACCESS_WRITE), TLB_OK);
    tlb_model_fill_range(ks.base, ks.size);
    unsigned long sd = harness_shootdowns, violations = tlb_model_violations;
    CHECK_EQ(mm_kstack_free(&ks), 0);
    CHECK_EQ(harness_shootdowns, sd + 1);
    CHECK_EQ(tlb_model_violations, violations);
    CHECK_EQ(tlb_model_check("test_free_one_shootdown"), 0);
    tlb_model_fini();
    CHECK_EQ(tfa.outstanding, base);
}

int main(void)
{
    RUN(test_layout_and_guards);
    RUN(test_names_truncated_and_no_cpu);
    RUN(test_refusals);
    RUN(test_enomem_all_or_nothing);
    RUN(test_registry_full);
    RUN(test_free_one_shootdown);
    return harness_finish();
}
