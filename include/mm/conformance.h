/*
 * mm/conformance.h - the mm_conformance suite: checks, from inside the
 * integrator's kernel, the glue that the library relies on but cannot test
 * by itself (the six platform hooks, the image layout, CPU state).
 *
 * The suite ships in libmm.a (mm/conformance.c).  A kernel calls it once,
 * after mm_init (Path A) or after its own set-up (Path B), with other CPUs
 * online and idle, interrupts ENABLED on the calling CPU, and the kernel
 * mapper lock free:
 *
 *     struct mm_conformance_env env = {
 *         .ncpus = online_cpus, .run_on_cpu = my_call_on_cpu,
 *         .params = &the_params_given_to_mm_init, .indent = "    ",
 *     };
 *     int failed = mm_conformance_run(&env);
 *
 * Output (KTAP version 1, all through mm_printf, so through the console
 * hook) is one complete subtest, each line prefixed by env->indent:
 *
 *     <indent>KTAP version 1
 *     <indent># Subtest: mm_conformance
 *     <indent>1..7
 *     <indent>ok 1 cpu_id_dense_stable
 *     <indent>not ok 2 cpu_state
 *     <indent># cpu_state: cpu 1: CR4.PGE clear (cr4 0x20)
 *     ...
 * The caller prints the parent's result line ("ok N mm_conformance") at
 * its own level, one indentation step (4 spaces) less than env->indent.
 * A failed check prints its reason as a "# <check>: ..." diagnostic line
 * before its "not ok" line; a check that cannot run prints
 * "ok N <check> # SKIP <reason>".
 *
 * The checks, in order, and what each proves:
 *   1 cpu_id_dense_stable   on each CPU (run_on_cpu) mm_platform_cpu_id
 *                           returns the same value twice, below ncpus and
 *                           MM_MAX_CPUS, and no two CPUs share a value: the
 *                           ids are exactly 0..ncpus-1.
 *   2 cpu_state             on each CPU: EFER.NXE (else PTE_NX is a
 *                           reserved bit and every NX page faults), CR0.WP
 *                           (else ring 0 writes through read-only pages,
 *                           W^X is void), CR4.PGE (else PTE_GLOBAL is
 *                           ignored and every CR3 load flushes the kernel).
 *   3 image_sections_wx     every section of env->params is 4 KiB aligned
 *                           in va and size, inside the image
 *                           (image_pa_start + image_va_offset ..), does not
 *                           overlap another, and is not both writable and
 *                           executable.
 *   4 image_mapped_as_declared  the live kernel table (kmapper_peek) maps
 *                           every page of every section with exactly the
 *                           section's flags (the CPU's ACCESSED/DIRTY
 *                           aside), to image_pa + (va - section start).
 *   5 irq_save_restore_nest save; save; save; restore; restore; restore
 *                           from IF=1: after every save IF is 0, after the
 *                           inner restores still 0 (a nest that starts
 *                           from IF=0), after the outer restore 1 again.
 *                           With interrupts disabled on entry only the
 *                           IF=0 nest can be checked: ok # SKIP if it holds.
 *   6 shootdown_reaches_every_cpu  a test page at MM_VMALLOC_BASE, mapped
 *                           GLOBAL to a frame holding value A, is read on
 *                           every CPU (filling their TLBs); it is then
 *                           remapped to a frame holding B and pt_flush'ed
 *                           (an invlpg-sized shootdown); every CPU must
 *                           read B.  Then back to A with a local flush and
 *                           one mm_platform_tlb_shootdown(MM_CPUMASK_ALL, va, 0) "flush
 *                           everything": every CPU must read A.  A CPU the
 *                           hook skips, or whose full flush spares global
 *                           entries (a CR3 reload), still reads the old
 *                           frame.  Afterwards the page is unmapped, its
 *                           tables and both frames are given back.
 *                           (QEMU's TCG drops global entries on any CR3
 *                           load, so only hardware or KVM catches the
 *                           CR3-reload mistake; a skipped CPU is caught
 *                           under TCG too.)
 *   7 console_whole_lines   every CPU prints one marker line, a KTAP
 *                           diagnostic "<indent># MM_CONFORMANCE_LINE
 *                           cpu=<id> <text> sum=<8 hex digits>", where the
 *                           sum is mm_conformance_line_sum() of everything
 *                           between "MM_CONFORMANCE_LINE " and " sum=" and
 *                           <text> holds '%', quotes and punctuation.  The
 *                           suite cannot read its own console, so it
 *                           prints "# console_whole_lines: N marker lines"
 *                           and the log reader (here tools/run-qemu.sh)
 *                           must find N intact marker lines, each whole on
 *                           one line.  The KTAP line itself only says that
 *                           the markers were printed.
 *
 * Returns the number of failed checks (0: all passed or skipped); a NULL
 * env, ncpus of 0 or above MM_MAX_CPUS, or ncpus > 1 without run_on_cpu
 * is refused with one log line and -MM_EINVAL, before any KTAP output.
 * The suite allocates two frames and the page tables of one page and
 * gives every one back; it changes nothing else.
 */
#ifndef MM_CONFORMANCE_H
#define MM_CONFORMANCE_H

#include <mm/boot_params.h>
#include <mm/frame.h>
#include <mm/types.h>

struct mm_conformance_env {
    /* Online CPUs; the platform ids must come out as 0..ncpus-1. */
    unsigned ncpus;
    /* Run fn(arg) on CPU `cpu` (0..ncpus-1, in the kernel's own numbering,
     * the calling CPU included) and return when it has returned.  The
     * target runs fn with interrupts enabled or disabled, as it likes.
     * May be NULL when ncpus == 1 (fn is then called directly). */
    void (*run_on_cpu)(unsigned cpu, void (*fn)(void *), void *arg);
    /* The image as the kernel table maps it: on Path A the parameters
     * given to mm_init; on Path B a list of your own sections with the
     * flags your table gives them.  NULL: checks 3 and 4 are skipped. */
    const struct mm_boot_params *params;
    /* Where check 6 takes its two frames and table frames (they all come
     * back).  NULL: mm_buddy_frames(), i.e. Path A's buddy. */
    struct frame_allocator *frames;
    /* Prefix of every output line: the KTAP nesting of the subtest in the
     * caller's document ("" at top level, "    " one level down).  NULL
     * is "". */
    const char *indent;
};

int mm_conformance_run(const struct mm_conformance_env *env);

/* ------------------------------------------------------------------------
 * The verdicts behind the checks: pure functions of what the suite read,
 * public so that host tests can drive them with broken glue.  Each returns
 * true when the glue conforms, else false and a one-line reason in
 * why[0..len) (no newline).
 */

/* Check 1: first[i] and second[i] are the two ids read on CPU i. */
bool mm_conformance_judge_cpu_ids(const unsigned *first, const unsigned *second,
                                  unsigned ncpus, char *why, size_t len);
/* Check 2, one CPU. */
bool mm_conformance_judge_cpu_state(uint64_t cr0, uint64_t cr4, uint64_t efer,
                                    char *why, size_t len);
/* Check 3. */
bool mm_conformance_judge_sections(const struct mm_boot_params *p, char *why, size_t len);

/* Check 5: RFLAGS.IF observed at the entry and after each of the six
 * steps, in order (save, save, save, restore, restore, restore). */
#define MM_CONFORMANCE_IRQ_STEPS 7
bool mm_conformance_judge_irq(const bool seen[MM_CONFORMANCE_IRQ_STEPS], char *why,
                              size_t len);

/* Check 7's checksum: the sum over i of (i + 1) * s[i] (bytes as unsigned
 * char), modulo 2^32.  Position-weighted, so a dropped, doubled or moved
 * character changes it; simple enough for a shell script to recompute. */
uint32_t mm_conformance_line_sum(const char *s);

#endif
