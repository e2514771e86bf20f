/*
 * conformance_suite.c - runs the library's mm_conformance suite
 * (include/mm/conformance.h) against this kernel's glue, as an integrator
 * would from their own kernel: every online CPU through smp_call, the
 * section list given to mm_init (kernel/main.c), the buddy's frames.
 *
 * The one case's output is the library's whole KTAP subtest, one level
 * deeper than the case line.  The console hook turns library lines into
 * "# " diagnostics while suites run (kernel/platform.c); that is switched
 * off for the call, since here the library prints the KTAP lines itself.
 *
 * With INJECT=shootdown_skip (kernel/smp.c) the shootdown never reaches
 * the highest-numbered other CPU, and case 6 of the subtest,
 * shootdown_reaches_every_cpu, must say "not ok" (boot it with SMP=2 or
 * more; tools/test-all.sh does).
 */
#include "kernel.h"
#include "ktest.h"
#include "smp.h"
#include <mm/conformance.h>
#include <mm/init.h>

static void case_mm_conformance(struct ktest *t)
{
    struct mm_conformance_env env = {
        .ncpus = smp_online_cpus(),
        .run_on_cpu = smp_call,
        .params = kernel_boot_params(),
        .frames = NULL,                 /* mm_buddy_frames() */
        .indent = "        ",
    };
    platform_log_as_ktap = false;
    int failed = mm_conformance_run(&env);
    platform_log_as_ktap = true;
    KEXPECT_EQ(t, failed, 0);
}

/* The case is named after the subtest it prints. */
KTEST_SUITE(conformance_suite, "conformance", { "mm_conformance", case_mm_conformance });
