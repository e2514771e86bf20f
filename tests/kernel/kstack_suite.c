/*
 * kstack_suite.c - kernel stacks with guard pages (mm/kstack.h) on the
 * running kernel.
 *
 * Every CPU runs on a stack from mm_kstack_alloc named "cpuN" (kmain for
 * cpu 0, start_ap for the others): on each CPU the suite looks up its own
 * stack pointer in the registry, then probes the page below the stack's
 * base and the page at its top, which must both fault, and asks the
 * library's fault classifier (mm/faultinfo.h) about them: an overflow
 * below, an underflow above, naming the stack and its CPU.  Extra stacks
 * are allocated, filled, probed and freed; refused calls (a double free,
 * size 0, no name) change nothing.  One more stack is overflowed on
 * purpose: the double fault it ends in is caught (fault_catch_on_stack)
 * and its address classified as that stack's overflow.  Stacks live in their own range, never
 * in the direct map, so the direct map keeps its 1 GiB and 2 MiB pages:
 * its leaves, counted by size with ptdump_walk, are the same at the start
 * of the suite, at its end, and as mm_init reported them at boot.
 */
#include "fault.h"
#include "kernel.h"
#include "ktest.h"
#include "smp.h"

#include <mm/faultinfo.h>
#include <mm/init.h>
#include <mm/kmapper.h>
#include <mm/kstack.h>
#include <mm/layout.h>
#include <mm/log.h>
#include <mm/ptdump.h>

#define EXTRA_STACKS 8u

/* ------------------------------------------------- direct-map leaf counts */

struct leaf_counts {
    uint64_t per_level[4];          /* [1] 4 KiB, [2] 2 MiB, [3] 1 GiB */
};

static void count_direct_leaf(void *ctx, const struct ptdump_leaf *leaf)
{
    struct leaf_counts *c = ctx;
    if (leaf->va.raw >= MM_DIRECT_MAP_BASE && leaf->va.raw < MM_DIRECT_MAP_END &&
        leaf->level < 4)
        c->per_level[leaf->level]++;
}

/* The direct map's leaves by size, walked under the kernel mapper lock. */
static void count_direct_map(struct leaf_counts *c)
{
    struct kmapper km;
    memset(c, 0, sizeof(*c));
    kmapper_lock(&km);
    ptdump_walk(&km.mapper, count_direct_leaf, c);
    kmapper_unlock(&km);
}

static void log_counts(struct ktest *t, const char *when, const struct leaf_counts *c)
{
    ktest_log(t, "direct map %s: %lu x 1G + %lu x 2M + %lu x 4K", when,
              (unsigned long)c->per_level[3], (unsigned long)c->per_level[2],
              (unsigned long)c->per_level[1]);
}

static void expect_same_counts(struct ktest *t, const struct leaf_counts *a,
                               const uint64_t b[4])
{
    for (unsigned level = 1; level < 4; level++)
        KEXPECT_EQ(t, a->per_level[level], b[level]);
}

/* Counted by the first case, compared by the last. */
static struct leaf_counts at_start;

static void case_direct_map_counts_at_start(struct ktest *t)
{
    count_direct_map(&at_start);
    log_counts(t, "now", &at_start);
    const struct mm_init_report *r = kernel_init_report();
    KEXPECT(t, at_start.per_level[1] + at_start.per_level[2] + at_start.per_level[3] > 0);
    expect_same_counts(t, &at_start, r->direct_pages);
}

/* ------------------------------------------------------ every CPU's stack */

/* What one CPU found about its own stack. */
struct cpu_stack_report {
    enum mm_kstack_where where;
    struct mm_kstack_info info;
    uint64_t rsp;
    bool below_faulted, above_faulted;
    uint64_t below_cr2, above_cr2;
    struct mm_fault_info below, above;
};

static struct cpu_stack_report reports[MM_MAX_CPUS];

static void inspect_own_stack(void *arg)
{
    (void)arg;
    struct cpu_stack_report *r = &reports[smp_cpu_id()];
    struct fault_info fi;
    volatile uint64_t here = 0;
    memset(r, 0, sizeof(*r));
    r->rsp = (uint64_t)(uintptr_t)&here;
    r->where = mm_kstack_lookup(VA(r->rsp), &r->info);
    if (r->where != MM_KSTACK_IN_STACK)
        return;
    fi.cr2 = 0;
    r->below_faulted = probe_read((const void *)(uintptr_t)(r->info.base.raw - 8), &fi);
    r->below_cr2 = fi.cr2;
    fi.cr2 = 0;
    r->above_faulted = probe_read((const void *)(uintptr_t)r->info.top.raw, &fi);
    r->above_cr2 = fi.cr2;
    mm_fault_describe(NULL, VA(r->info.base.raw - 8), MM_FAULT_EC_NONE, &r->below);
    mm_fault_describe(NULL, r->info.top, MM_FAULT_EC_NONE, &r->above);
}

static void expect_names_stack(struct ktest *t, const struct mm_fault_info *fi,
                               enum mm_fault_kind kind, const char *name, unsigned cpu)
{
    char line[256];
    mm_fault_format(fi, line, sizeof(line));
    ktest_log(t, "%s", line);
    KEXPECT_EQ(t, fi->kind, kind);
    KEXPECT(t, strcmp(fi->stack.name, name) == 0);
    KEXPECT_EQ(t, fi->stack.cpu, cpu);
}

static void case_every_cpu_on_its_kstack(struct ktest *t)
{
    unsigned n = smp_online_cpus();
    smp_call_all(inspect_own_stack, NULL);
    for (unsigned cpu = 0; cpu < n; cpu++) {
        const struct cpu_stack_report *r = &reports[cpu];
        char name[MM_KSTACK_NAME_LEN];
        mm_snprintf(name, sizeof(name), "cpu%u", cpu);
        KEXPECT_EQ(t, r->where, MM_KSTACK_IN_STACK);
        if (r->where != MM_KSTACK_IN_STACK) {
            ktest_log(t, "cpu %u: rsp %#lx is in no kernel stack", cpu, (unsigned long)r->rsp);
            continue;
        }
        KEXPECT(t, strcmp(r->info.name, name) == 0);
        KEXPECT_EQ(t, r->info.cpu, cpu);
        KEXPECT(t, r->info.base.raw >= MM_KSTACK_BASE && r->info.top.raw <= MM_KSTACK_END);
        KEXPECT(t, r->info.block_va.raw < r->info.base.raw);
        KEXPECT(t, r->info.top.raw < r->info.block_end.raw);
        KEXPECT(t, r->below_faulted);
        KEXPECT_EQ(t, r->below_cr2, r->info.base.raw - 8);
        KEXPECT(t, r->above_faulted);
        KEXPECT_EQ(t, r->above_cr2, r->info.top.raw);
        expect_names_stack(t, &r->below, MM_FAULT_KSTACK_OVERFLOW, name, cpu);
        expect_names_stack(t, &r->above, MM_FAULT_KSTACK_UNDERFLOW, name, cpu);
    }
}

/* ---------------------------------------------------------- extra stacks */

static void case_alloc_free_extra_stacks(struct ktest *t)
{
    static struct mm_kstack ks[EXTRA_STACKS];
    unsigned live = mm_kstack_count(), made = 0;
    for (; made < EXTRA_STACKS; made++) {
        char name[MM_KSTACK_NAME_LEN];
        mm_snprintf(name, sizeof(name), "ktest%u", made);
        uint64_t size = (made % 2 ? 16 : 4) * KiB;
        unsigned owner = made % 2 ? smp_cpu_id() : MM_KSTACK_NO_CPU;
        if (mm_kstack_alloc(size, owner, name, &ks[made]) != 0)
            break;
        KEXPECT_EQ(t, ks[made].size, size);
        KEXPECT_EQ(t, ks[made].top.raw - ks[made].base.raw, size);
        /* The whole stack is usable, its neighbours are not. */
        memset((void *)(uintptr_t)ks[made].base.raw, 0xa5, size);
        KEXPECT(t, probe_read((const void *)(uintptr_t)(ks[made].base.raw - 1), NULL));
        KEXPECT(t, probe_read((const void *)(uintptr_t)ks[made].top.raw, NULL));
        struct mm_fault_info fi;
        KEXPECT(t, mm_fault_describe(NULL, VA(ks[made].base.raw - 1), MM_FAULT_EC_NONE,
                                     &fi) == 0);
        KEXPECT_EQ(t, fi.kind, MM_FAULT_KSTACK_OVERFLOW);
        KEXPECT(t, strcmp(fi.stack.name, name) == 0);
        KEXPECT_EQ(t, fi.stack.cpu, owner);
    }
    KEXPECT_EQ(t, made, EXTRA_STACKS);
    KEXPECT_EQ(t, mm_kstack_count(), live + made);
    for (unsigned i = 0; i < made; i++) {
        struct mm_kstack copy = ks[i];
        struct mm_kstack_info info;
        KEXPECT_EQ(t, mm_kstack_free(&ks[i]), 0);
        KEXPECT(t, probe_read((const void *)(uintptr_t)copy.base.raw, NULL));
        KEXPECT_EQ(t, mm_kstack_lookup(copy.base, &info), MM_KSTACK_NOWHERE);
        KEXPECT(t, mm_kstack_free(&copy) < 0);       /* double free */
    }
    KEXPECT_EQ(t, mm_kstack_count(), live);
}

static void case_refusals(struct ktest *t)
{
    struct mm_kstack ks;
    unsigned live = mm_kstack_count();
    KEXPECT(t, mm_kstack_alloc(0, 0, "zero", &ks) < 0);
    KEXPECT(t, mm_kstack_alloc(MM_KSTACK_MAX_SIZE + PAGE_SIZE, 0, "huge", &ks) < 0);
    KEXPECT(t, mm_kstack_alloc(PAGE_SIZE, 0, NULL, &ks) < 0);
    KEXPECT_EQ(t, mm_kstack_count(), live);
    /* A stack that was never allocated. */
    struct mm_kstack bogus = { VA(MM_KSTACK_BASE + PAGE_SIZE), VA(MM_KSTACK_BASE + 2 * PAGE_SIZE),
                               PAGE_SIZE, MM_KSTACK_MAX - 1, 12345 };
    KEXPECT(t, mm_kstack_free(&bogus) < 0);
    /* Nothing in the range is a stack of its own: classified as the range. */
    struct mm_fault_info fi;
    KEXPECT(t, mm_fault_describe(NULL, VA(MM_KSTACK_END - PAGE_SIZE), MM_FAULT_EC_NONE,
                                 &fi) == 0);
    KEXPECT_EQ(t, fi.kind, MM_FAULT_KSTACK_RANGE);
}

/* ------------------------------------------------- a deliberate overflow */

/* Deeper and deeper, 512 bytes a call, the frame kept alive across the
 * next call; the limit is never reached on a stack of OVERFLOW_SIZE. */
static __attribute__((noinline)) unsigned dig(unsigned depth)
{
    volatile uint8_t frame[512];
    memset((void *)frame, (int)depth, sizeof(frame));
    if (depth > 1000000)
        return frame[7];
    return dig(depth + 1) + frame[depth % sizeof(frame)];
}

static void dig_forever(void *arg)
{
    *(volatile unsigned *)arg = dig(0);
}

#define OVERFLOW_SIZE (8 * KiB)

/*
 * A stack of its own, overflowed on purpose: the page fault in its guard
 * cannot push its frame, so it becomes a double fault (on IST1), which
 * fault_catch_on_stack takes; CR2 lies in the guard below, and the
 * classifier names the overflow and the stack.
 */
static void case_overflow_is_named(struct ktest *t)
{
    struct mm_kstack ks;
    struct fault_info fi = { 0 };
    struct mm_fault_info mi;
    volatile unsigned result = 0;
    KASSERT(t, mm_kstack_alloc(OVERFLOW_SIZE, smp_cpu_id(), "ktest overflow", &ks) == 0);
    bool faulted = fault_catch_on_stack(dig_forever, (void *)&result, ks.top.raw, &fi);
    KEXPECT(t, faulted);
    if (faulted) {
        KEXPECT_EQ(t, fi.vector, X86_DF);
        KEXPECT(t, fi.cr2 < ks.base.raw && fi.cr2 >= ks.base.raw - PAGE_SIZE);
        KEXPECT(t, mm_fault_describe(NULL, VA(fi.cr2), MM_FAULT_EC_NONE, &mi) == 0);
        expect_names_stack(t, &mi, MM_FAULT_KSTACK_OVERFLOW, "ktest overflow", smp_cpu_id());
    }
    KEXPECT_EQ(t, mm_kstack_free(&ks), 0);
    /* This CPU is still fine: its own stack, and a fault after it. */
    struct mm_kstack_info info;
    volatile uint64_t here = 0;
    KEXPECT_EQ(t, mm_kstack_lookup(VA(&here), &info), MM_KSTACK_IN_STACK);
    KEXPECT(t, probe_read((const void *)(uintptr_t)MM_KSTACK_END - 1, NULL));
}

/* ------------------------------------------------- direct map at the end */

static void case_direct_map_unchanged(struct ktest *t)
{
    struct leaf_counts now;
    count_direct_map(&now);
    log_counts(t, "at the end", &now);
    expect_same_counts(t, &now, at_start.per_level);
    expect_same_counts(t, &now, kernel_init_report()->direct_pages);
}

KTEST_SUITE(kstack_suite, "kstack",
            KTEST_CASE(case_direct_map_counts_at_start),
            KTEST_CASE(case_every_cpu_on_its_kstack),
            KTEST_CASE(case_alloc_free_extra_stacks),
            KTEST_CASE(case_refusals),
            KTEST_CASE(case_overflow_is_named),
            KTEST_CASE(case_direct_map_unchanged));
