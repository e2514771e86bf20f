/*
 * test_conformance.c - the verdicts of the mm_conformance suite
 * (mm/conformance.c) driven with the readings that broken glue produces.
 *
 * The suite's runners need a real CPU (RFLAGS.IF, other CPUs, reads
 * through the live page table), so they run in the kernels (the test
 * kernel's conformance suite, tests/embed); here each verdict must accept
 * conforming readings and name the fault in every broken one, and
 * mm_conformance_run must refuse a bad environment with one log line.
 */
#include "harness.h"
#include <mm/arch.h>
#include <mm/conformance.h>
#include <mm/paging.h>
#include <mm/platform.h>

#define VMA UINT64_C(0xffffffff80000000)

static char why[160];

static void test_cpu_ids(void)
{
    unsigned good[3] = { 0, 1, 2 }, perm[3] = { 2, 0, 1 };
    CHECK(mm_conformance_judge_cpu_ids(good, good, 3, why, sizeof why));
    CHECK(mm_conformance_judge_cpu_ids(perm, perm, 3, why, sizeof why));

    unsigned moved[3] = { 0, 1, 1 };          /* cpu 2 changed id between reads */
    CHECK(!mm_conformance_judge_cpu_ids(good, moved, 3, why, sizeof why));
    CHECK(strstr(why, "cpu 2: id changed") != NULL);

    unsigned sparse[3] = { 0, 1, 3 };          /* not dense */
    CHECK(!mm_conformance_judge_cpu_ids(sparse, sparse, 3, why, sizeof why));
    CHECK(strstr(why, "id 3 not below ncpus 3") != NULL);

    unsigned dup[3] = { 0, 0, 1 };             /* the same on two CPUs */
    CHECK(!mm_conformance_judge_cpu_ids(dup, dup, 3, why, sizeof why));
    CHECK(strstr(why, "cpu 1: id 0 also reported") != NULL);

    unsigned all_zero[2] = { 0, 0 };           /* a UP cpu_id hook on SMP */
    CHECK(!mm_conformance_judge_cpu_ids(all_zero, all_zero, 2, why, sizeof why));
}

static void test_cpu_state(void)
{
    const uint64_t cr0 = ARCH_CR0_WP | 1, cr4 = ARCH_CR4_PGE | (1u << 5);
    const uint64_t efer = ARCH_EFER_NXE | (1u << 8);
    CHECK(mm_conformance_judge_cpu_state(cr0, cr4, efer, why, sizeof why));
    CHECK(!mm_conformance_judge_cpu_state(cr0, cr4, efer & ~ARCH_EFER_NXE, why, sizeof why));
    CHECK(strstr(why, "EFER.NXE clear (efer 0x100)") != NULL);
    CHECK(!mm_conformance_judge_cpu_state(cr0 & ~ARCH_CR0_WP, cr4, efer, why, sizeof why));
    CHECK(strstr(why, "CR0.WP clear") != NULL);
    CHECK(!mm_conformance_judge_cpu_state(cr0, cr4 & ~ARCH_CR4_PGE, efer, why, sizeof why));
    CHECK(strstr(why, "CR4.PGE clear (cr4 0x20)") != NULL);
}

/* An image at pa 2 MiB .. 2 MiB + 40 KiB: text 16 KiB, rodata 8, data 16. */
static struct mm_boot_params image(void)
{
    struct mm_boot_params p = { 0 };
    p.image_pa_start = PA(0x200000);
    p.image_pa_end = PA(0x20a000);
    p.image_va_offset = VMA;
    p.sections[0] = (struct mm_image_section){ "text", VA(VMA + 0x200000), 0x4000,
                                               PTE_KERNEL_TEXT };
    p.sections[1] = (struct mm_image_section){ "rodata", VA(VMA + 0x204000), 0x2000,
                                               PTE_KERNEL_RO };
    p.sections[2] = (struct mm_image_section){ "data", VA(VMA + 0x206000), 0x4000,
                                               PTE_KERNEL_RW };
    p.nsections = 3;
    return p;
}

static void test_sections(void)
{
    struct mm_boot_params p = image();
    CHECK(mm_conformance_judge_sections(&p, why, sizeof why));

    p.sections[3] = (struct mm_image_section){ "empty", VA(0x123), 0, PTE_KERNEL_RW };
    p.nsections = 4;                           /* an empty section is ignored */
    CHECK(mm_conformance_judge_sections(&p, why, sizeof why));

    p = image();
    p.sections[2].flags = PTE_PRESENT | PTE_WRITE | PTE_GLOBAL;
    CHECK(!mm_conformance_judge_sections(&p, why, sizeof why));
    CHECK(strstr(why, "data: writable and executable (flags 0x103)") != NULL);

    p = image();
    p.sections[1].va.raw += 0x800;
    CHECK(!mm_conformance_judge_sections(&p, why, sizeof why));
    CHECK(strstr(why, "rodata: va") != NULL && strstr(why, "not 4 KiB aligned") != NULL);

    p = image();
    p.sections[1].size = 0x1800;
    CHECK(!mm_conformance_judge_sections(&p, why, sizeof why));

    p = image();
    p.sections[2].size = 0x5000;               /* runs past image_pa_end */
    CHECK(!mm_conformance_judge_sections(&p, why, sizeof why));
    CHECK(strstr(why, "outside the image") != NULL);

    p = image();
    p.sections[0].va.raw -= 0x1000;            /* starts before the image */
    CHECK(!mm_conformance_judge_sections(&p, why, sizeof why));

    p = image();
    p.sections[1].va.raw -= 0x1000;            /* into text */
    CHECK(!mm_conformance_judge_sections(&p, why, sizeof why));
    CHECK(strstr(why, "rodata overlaps text") != NULL);

    p = image();
    p.nsections = 0;
    CHECK(!mm_conformance_judge_sections(&p, why, sizeof why));
}

static void test_irq(void)
{
    /* Entry, save 1..3, restore 3..1. */
    const bool good_on[7] = { 1, 0, 0, 0, 0, 0, 1 };
    const bool good_off[7] = { 0, 0, 0, 0, 0, 0, 0 };
    const bool restore_never_sti[7] = { 1, 0, 0, 0, 0, 0, 0 };
    const bool restore_always_sti[7] = { 1, 0, 0, 0, 1, 1, 1 };
    const bool save_no_cli[7] = { 1, 1, 1, 1, 1, 1, 1 };
    const bool off_start_sti[7] = { 0, 0, 0, 0, 0, 0, 1 };

    CHECK(mm_conformance_judge_irq(good_on, why, sizeof why));
    CHECK(mm_conformance_judge_irq(good_off, why, sizeof why));
    CHECK(!mm_conformance_judge_irq(restore_never_sti, why, sizeof why));
    CHECK(strstr(why, "IF after restore 1 is 0, expected 1") != NULL);
    CHECK(!mm_conformance_judge_irq(restore_always_sti, why, sizeof why));
    CHECK(strstr(why, "IF after restore 3 is 1, expected 0") != NULL);
    CHECK(!mm_conformance_judge_irq(save_no_cli, why, sizeof why));
    CHECK(strstr(why, "IF after save 1 is 1") != NULL);
    CHECK(!mm_conformance_judge_irq(off_start_sti, why, sizeof why));
}

static void test_line_sum(void)
{
    CHECK_EQ(mm_conformance_line_sum(""), 0);
    CHECK_EQ(mm_conformance_line_sum("ab"), 1 * 'a' + 2 * 'b');
    CHECK(mm_conformance_line_sum("ab") != mm_conformance_line_sum("ba"));
    /* The same value as tools/run-qemu.sh's line_sum of this string. */
    CHECK_EQ(mm_conformance_line_sum("cpu=0 100% %d '\" x"), 0x2428);
    CHECK_EQ(mm_conformance_line_sum("\xff"), 255);       /* bytes are unsigned */
}

static void run_on_nothing(unsigned cpu, void (*fn)(void *), void *arg)
{
    (void)cpu;
    (void)fn;
    (void)arg;
}

static void test_bad_env(void)
{
    struct mm_conformance_env env = { .ncpus = 2, .run_on_cpu = NULL };
    unsigned long lines = harness_log_lines;

    harness_quiet = 1;
    CHECK_EQ(mm_conformance_run(NULL), -MM_EINVAL);
    CHECK_EQ(mm_conformance_run(&env), -MM_EINVAL);
    env.ncpus = 0;
    env.run_on_cpu = run_on_nothing;
    CHECK_EQ(mm_conformance_run(&env), -MM_EINVAL);
    env.ncpus = MM_MAX_CPUS + 1;
    CHECK_EQ(mm_conformance_run(&env), -MM_EINVAL);
    harness_quiet = 0;
    CHECK_EQ(harness_log_lines - lines, 4);       /* one line each, no KTAP */
}

int main(void)
{
    RUN(test_cpu_ids);
    RUN(test_cpu_state);
    RUN(test_sections);
    RUN(test_irq);
    RUN(test_line_sum);
    RUN(test_bad_env);
    return harness_finish();
}
