/*
 * ktest.c - runs the self-test suites collected in .ktest_suites and prints
 * KTAP version 1 (the format of Linux's KUnit):
 *
 *   KTAP version 1
 *   1..<suites>
 *       KTAP version 1
 *       # Subtest: <suite>
 *       1..<cases + 1>
 *       ok 1 <case>
 *       not ok 2 <case>
 *       ok 3 <case> # SKIP <reason>
 *       ok 4 accounting
 * (a subtest's lines, results and diagnostics included, all at one
 * 4-space indentation, as KTAP v1 nests).  A case that failed an
 * expectation is "not ok" even if it then skipped.
 *   ok 1 <suite>
 *   # Totals: pass:P fail:F skip:S total:T
 *
 * Each suite ends with an "accounting" case: the frame allocator's free
 * count and the MMIO pool must be exactly as before the suite (nothing
 * leaked), and the free blocks per order must add up to the free count.
 */
#include "kernel.h"
#include "ktest.h"
#include "trap.h"
#include <mm/init.h>
#include <mm/log.h>

extern const struct ktest_suite __ktest_suites_start[], __ktest_suites_end[];

static int totals_pass, totals_fail, totals_skip;

void ktest_fail(struct ktest *t, const char *file, int line, const char *expr)
{
    t->failures++;
    printk("    # %s: EXPECTATION FAILED at %s:%d: %s\n", t->name, file, line, expr);
}

void ktest_fail_eq(struct ktest *t, const char *file, int line, const char *a_expr,
                   const char *b_expr, uint64_t a, uint64_t b)
{
    t->failures++;
    printk("    # %s: EXPECTATION FAILED at %s:%d: %s == %s (%#lx vs %#lx)\n",
           t->name, file, line, a_expr, b_expr, (unsigned long)a, (unsigned long)b);
}

_Noreturn void ktest_abort(struct ktest *t)
{
    klongjmp(t->abort_ctx, 1);
}

_Noreturn void ktest_skip(struct ktest *t, const char *reason)
{
    t->skipped = true;
    t->skip_reason = reason;
    klongjmp(t->abort_ctx, 1);
}

void ktest_log(struct ktest *t, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    mm_vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    printk("    # %s: %s\n", t->name, msg);
}

static void report_case(int n, const char *name, const struct ktest *t)
{
    if (t->failures) {
        totals_fail++;
        printk("    not ok %d %s\n", n, name);
    } else if (t->skipped) {
        totals_skip++;
        printk("    ok %d %s # SKIP %s\n", n, name, t->skip_reason);
    } else {
        totals_pass++;
        printk("    ok %d %s\n", n, name);
    }
}

/* Snapshot the kernel's buddy and MMIO pool; invalid before mm_init. */
static void kernel_accounting(struct ktest_accounting *a)
{
    memset(a, 0, sizeof(*a));
    struct buddy *b = mm_buddy();
    if (!b)
        return;
    struct buddy_usage u;
    buddy_usage(b, &u);
    a->frames_free = u.free_npages;
    a->frames_cached = u.cached_npages;
    a->frames_used = u.used_npages;
    a->frames_total = u.total_npages;
    uint64_t counts[BUDDY_NR_ORDERS];
    buddy_free_blocks(b, counts);
    for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++)
        a->frames_free_in_blocks += counts[k] << k;
    struct mmio_stats ms;
    mmio_pool_stats(mm_mmio_pool(), &ms);
    a->mmio_free_bytes = ms.free_bytes;
    a->valid = true;
}

static bool check_accounting(struct ktest *t, const struct ktest_accounting *before)
{
    struct ktest_accounting after;
    kernel_accounting(&after);
    if (!before->valid || !after.valid) {
        t->skipped = true;
        t->skip_reason = "allocators not initialised";
        return true;
    }
    KEXPECT_EQ(t, after.frames_free_in_blocks + after.frames_cached, after.frames_free);
    KEXPECT_EQ(t, after.frames_free, before->frames_free);
    KEXPECT_EQ(t, after.mmio_free_bytes, before->mmio_free_bytes);
    return t->failures == 0;
}

/* Run one case; KASSERT and KSKIP jump back here. */
static void run_case(const struct ktest_case *c, struct ktest *t)
{
    struct kjmp_buf jb;
    t->abort_ctx = &jb;
    if (ksetjmp(&jb) == 0)
        c->run(t);
    t->abort_ctx = NULL;
}

/* Run one suite; returns true if every case passed or was skipped. */
static bool run_suite(int index, const struct ktest_suite *s)
{
    int failed = 0;
    struct ktest_accounting before;

    printk("    KTAP version 1\n    # Subtest: %s\n    1..%lu\n", s->name,
           (unsigned long)s->ncases + 1);
    kernel_accounting(&before);
    for (size_t i = 0; i < s->ncases; i++) {
        struct ktest t = { .name = s->cases[i].name };
        run_case(&s->cases[i], &t);
        report_case((int)i + 1, s->cases[i].name, &t);
        if (t.failures)
            failed++;
    }
    struct ktest acct = { .name = "accounting" };
    check_accounting(&acct, &before);
    report_case((int)s->ncases + 1, "accounting", &acct);
    if (acct.failures)
        failed++;

    printk("%sok %d %s\n", failed ? "not " : "", index, s->name);
    return failed == 0;
}

/*
 * A kernel with broken glue (INJECT=shootdown_skip, kernel/smp.c) runs only
 * the conformance suite: the other suites would trip over the glue in ways
 * nobody asked about, or hang.
 */
#if defined(KTEST_INJECT_shootdown_skip)
#define KTEST_ONLY_SUITE "conformance"
#endif

static bool suite_selected(const struct ktest_suite *s)
{
#if defined(KTEST_ONLY_SUITE)
    return strcmp(s->name, KTEST_ONLY_SUITE) == 0;
#else
    (void)s;
    return true;
#endif
}

int ktest_run_all(void)
{
    const struct ktest_suite *s;
    int nsuites = 0, index = 0, failed_suites = 0;

    for (s = __ktest_suites_start; s < __ktest_suites_end; s++)
        nsuites += suite_selected(s);
    printk("KTAP version 1\n1..%d\n", nsuites);
    platform_log_as_ktap = true;
    for (s = __ktest_suites_start; s < __ktest_suites_end; s++)
        if (suite_selected(s))
            failed_suites += !run_suite(++index, s);
    platform_log_as_ktap = false;
    printk("# Totals: pass:%d fail:%d skip:%d total:%d\n", totals_pass, totals_fail,
           totals_skip, totals_pass + totals_fail + totals_skip);
    return totals_fail ? totals_fail : failed_suites;
}
