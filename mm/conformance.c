/*
 * conformance.c - the mm_conformance suite (include/mm/conformance.h): a
 * KTAP suite that a kernel linking libmm.a runs to check its own glue.
 *
 * Structure: each check gathers what it needs (values read on every CPU
 * through env->run_on_cpu, the live kernel table, RFLAGS.IF around the
 * hooks) and hands the readings to a pure verdict function
 * (mm_conformance_judge_*), which the host tests drive with broken
 * readings.  The runner prints one KTAP line per check, preceded by a
 * "# <check>: <reason>" diagnostic when it failed.
 *
 * The shootdown check is the only one that changes state: it maps one
 * 4 KiB page at MM_SELFTEST_BASE (the GiB include/mm/layout.h reserves
 * for self-tests),
 * remaps it twice and unmaps it with free_tables, so the tables it grew
 * and both data frames go back to env->frames.  It holds the kernel mapper
 * lock only while it edits, never across run_on_cpu, so a CPU it calls
 * may take the lock itself.
 *
 * Locking: none of its own.  Call it from one CPU at a time.
 */
#include <mm/arch.h>
#include <mm/conformance.h>
#include <mm/init.h>
#include <mm/kmapper.h>
#include <mm/layout.h>
#include <mm/log.h>
#include <mm/paging.h>
#include <mm/platform.h>

#define WHY_LEN 160

/* Two values the test page holds, one per frame. */
#define CONF_VALUE_A UINT64_C(0x6d6d2d636f6e662d)   /* "-fnoc-mm" */
#define CONF_VALUE_B UINT64_C(0x2d666e6f632d6d6d)

struct conf_run {
    const struct mm_conformance_env *env;
    const char *indent;
    unsigned ncpus;
    int index;              /* number of the last KTAP line printed */
    int failed;
    char why[WHY_LEN];
};

/* ---------------------------------------------------------------- output */

static void report(struct conf_run *r, const char *name, bool ok, const char *skip)
{
    r->index++;
    if (!ok) {
        r->failed++;
        mm_printf("%s# %s: %s\n", r->indent, name, r->why);
        mm_printf("%snot ok %d %s\n", r->indent, r->index, name);
    } else if (skip) {
        mm_printf("%sok %d %s # SKIP %s\n", r->indent, r->index, name, skip);
    } else {
        mm_printf("%sok %d %s\n", r->indent, r->index, name);
    }
}

/* Run fn(arg) on cpu: through the kernel's hook, or directly on a UP kernel. */
static void on_cpu(const struct conf_run *r, unsigned cpu, void (*fn)(void *), void *arg)
{
    if (r->env->run_on_cpu)
        r->env->run_on_cpu(cpu, fn, arg);
    else
        fn(arg);
}

/* --------------------------------------------------------------- verdicts */

bool mm_conformance_judge_cpu_ids(const unsigned *first, const unsigned *second,
                                  unsigned ncpus, char *why, size_t len)
{
    uint64_t seen = 0;
    for (unsigned c = 0; c < ncpus; c++) {
        if (first[c] != second[c]) {
            mm_snprintf(why, len, "cpu %u: id changed between two reads (%u, then %u)", c,
                        first[c], second[c]);
            return false;
        }
        if (first[c] >= ncpus || first[c] >= MM_MAX_CPUS) {
            mm_snprintf(why, len, "cpu %u: id %u not below ncpus %u (ids must be dense)", c,
                        first[c], ncpus);
            return false;
        }
        if (seen & (UINT64_C(1) << first[c])) {
            mm_snprintf(why, len, "cpu %u: id %u also reported by another cpu", c, first[c]);
            return false;
        }
        seen |= UINT64_C(1) << first[c];
    }
    return true;
}

bool mm_conformance_judge_cpu_state(uint64_t cr0, uint64_t cr4, uint64_t efer,
                                    char *why, size_t len)
{
    if (!(efer & ARCH_EFER_NXE)) {
        mm_snprintf(why, len, "EFER.NXE clear (efer %#lx): PTE_NX is a reserved bit",
                    (unsigned long)efer);
        return false;
    }
    if (!(cr0 & ARCH_CR0_WP)) {
        mm_snprintf(why, len, "CR0.WP clear (cr0 %#lx): ring 0 writes to read-only pages",
                    (unsigned long)cr0);
        return false;
    }
    if (!(cr4 & ARCH_CR4_PGE)) {
        mm_snprintf(why, len, "CR4.PGE clear (cr4 %#lx): global pages not honoured",
                    (unsigned long)cr4);
        return false;
    }
    return true;
}

/* One section alone: aligned, inside the image, W^X. */
static bool judge_section(const struct mm_boot_params *p, const struct mm_image_section *s,
                          char *why, size_t len)
{
    uint64_t image_va = p->image_pa_start.raw + p->image_va_offset;
    uint64_t image_end = p->image_pa_end.raw + p->image_va_offset;

    if ((s->va.raw | s->size) & (PAGE_SIZE - 1)) {
        mm_snprintf(why, len, "%s: va %#lx size %#lx not 4 KiB aligned", s->name,
                    (unsigned long)s->va.raw, (unsigned long)s->size);
        return false;
    }
    if (s->va.raw < image_va || s->size > image_end - image_va ||
        s->va.raw - image_va > image_end - image_va - s->size) {
        mm_snprintf(why, len, "%s: [%#lx, +%#lx) outside the image [%#lx, %#lx)", s->name,
                    (unsigned long)s->va.raw, (unsigned long)s->size,
                    (unsigned long)image_va, (unsigned long)image_end);
        return false;
    }
    if ((s->flags & PTE_WRITE) && !(s->flags & PTE_NX)) {
        mm_snprintf(why, len, "%s: writable and executable (flags %#lx)", s->name,
                    (unsigned long)s->flags);
        return false;
    }
    return true;
}

bool mm_conformance_judge_sections(const struct mm_boot_params *p, char *why, size_t len)
{
    if (p->nsections == 0 || p->nsections > MM_MAX_SECTIONS) {
        mm_snprintf(why, len, "nsections %u not in 1..%u", p->nsections, MM_MAX_SECTIONS);
        return false;
    }
    for (unsigned i = 0; i < p->nsections; i++) {
        const struct mm_image_section *s = &p->sections[i];
        if (s->size == 0)
            continue;
        if (!judge_section(p, s, why, len))
            return false;
        for (unsigned j = 0; j < i; j++) {
            const struct mm_image_section *o = &p->sections[j];
            if (o->size && s->va.raw < o->va.raw + o->size && o->va.raw < s->va.raw + s->size) {
                mm_snprintf(why, len, "%s overlaps %s", s->name, o->name);
                return false;
            }
        }
    }
    return true;
}

bool mm_conformance_judge_irq(const bool seen[MM_CONFORMANCE_IRQ_STEPS], char *why, size_t len)
{
    static const char *const step[MM_CONFORMANCE_IRQ_STEPS] = {
        "on entry", "after save 1", "after save 2", "after save 3",
        "after restore 3", "after restore 2", "after restore 1",
    };
    for (unsigned i = 1; i < MM_CONFORMANCE_IRQ_STEPS; i++) {
        /* Only the outermost restore may bring IF back, and only if it
         * was set on entry. */
        bool want = (i == MM_CONFORMANCE_IRQ_STEPS - 1) && seen[0];
        if (seen[i] != want) {
            mm_snprintf(why, len, "IF %s is %d, expected %d (IF on entry %d)", step[i],
                        seen[i], want, seen[0]);
            return false;
        }
    }
    return true;
}

uint32_t mm_conformance_line_sum(const char *s)
{
    uint32_t sum = 0;
    for (uint32_t i = 0; s[i]; i++)
        sum += (i + 1) * (uint32_t)(unsigned char)s[i];
    return sum;
}

/* ------------------------------------------------- checks 1, 2: each CPU */

struct cpu_reading {
    unsigned id_first, id_second;
    uint64_t cr0, cr4, efer;
};

static void read_cpu(void *arg)
{
    struct cpu_reading *rd = arg;
    rd->id_first = mm_platform_cpu_id();
    rd->cr0 = arch_read_cr0();
    rd->cr4 = arch_read_cr4();
    rd->efer = arch_rdmsr(ARCH_MSR_EFER);
    rd->id_second = mm_platform_cpu_id();
}

static void check_cpus(struct conf_run *r)
{
    static struct cpu_reading rd[MM_MAX_CPUS];
    unsigned first[MM_MAX_CPUS], second[MM_MAX_CPUS];

    for (unsigned c = 0; c < r->ncpus; c++) {
        on_cpu(r, c, read_cpu, &rd[c]);
        first[c] = rd[c].id_first;
        second[c] = rd[c].id_second;
    }
    report(r, "cpu_id_dense_stable",
           mm_conformance_judge_cpu_ids(first, second, r->ncpus, r->why, sizeof(r->why)), NULL);

    bool ok = true;
    for (unsigned c = 0; c < r->ncpus && ok; c++) {
        char one[WHY_LEN];
        ok = mm_conformance_judge_cpu_state(rd[c].cr0, rd[c].cr4, rd[c].efer, one, sizeof(one));
        if (!ok)
            mm_snprintf(r->why, sizeof(r->why), "cpu %u: %s", c, one);
    }
    report(r, "cpu_state", ok, NULL);
}

/* ---------------------------------------------------- checks 3, 4: image */

/* Every page of s in the live table: present, exactly s->flags, right pa. */
static bool section_mapped(const struct mm_boot_params *p, const struct mm_image_section *s,
                           char *why, size_t len)
{
    struct pt_mapper m = kmapper_peek();
    const uint64_t cpu_bits = PTE_ACCESSED | PTE_DIRTY;

    for (uint64_t off = 0; off < s->size; off += PAGE_SIZE) {
        virt_addr_t va = VA(s->va.raw + off);
        uint64_t want_pa = va.raw - p->image_va_offset;
        struct pt_mapping pm;
        if (pt_translate(&m, va, &pm) != 0) {
            mm_snprintf(why, len, "%s: va %#lx not mapped", s->name, (unsigned long)va.raw);
            return false;
        }
        if (pm.pa.raw != want_pa) {
            mm_snprintf(why, len, "%s: va %#lx maps pa %#lx, expected %#lx", s->name,
                        (unsigned long)va.raw, (unsigned long)pm.pa.raw, (unsigned long)want_pa);
            return false;
        }
        if ((pm.flags & ~cpu_bits) != (s->flags | PTE_PRESENT)) {
            mm_snprintf(why, len, "%s: va %#lx has flags %#lx, declared %#lx", s->name,
                        (unsigned long)va.raw, (unsigned long)(pm.flags & ~cpu_bits),
                        (unsigned long)s->flags);
            return false;
        }
    }
    return true;
}

static void check_image(struct conf_run *r)
{
    const struct mm_boot_params *p = r->env->params;
    if (!p) {
        report(r, "image_sections_wx", true, "no section list (env->params is NULL)");
        report(r, "image_mapped_as_declared", true, "no section list (env->params is NULL)");
        return;
    }
    bool sane = mm_conformance_judge_sections(p, r->why, sizeof(r->why));
    report(r, "image_sections_wx", sane, NULL);
    if (!sane) {
        report(r, "image_mapped_as_declared", true, "the section list itself is wrong");
        return;
    }
    bool ok = true;
    for (unsigned i = 0; i < p->nsections && ok; i++)
        ok = section_mapped(p, &p->sections[i], r->why, sizeof(r->why));
    report(r, "image_mapped_as_declared", ok, NULL);
}

/* ------------------------------------------------------- check 5: irqs */

static void check_irq(struct conf_run *r)
{
    bool seen[MM_CONFORMANCE_IRQ_STEPS];
    unsigned long f1, f2, f3;

    seen[0] = arch_irqs_enabled();
    f1 = mm_platform_irq_save();
    seen[1] = arch_irqs_enabled();
    f2 = mm_platform_irq_save();
    seen[2] = arch_irqs_enabled();
    f3 = mm_platform_irq_save();
    seen[3] = arch_irqs_enabled();
    mm_platform_irq_restore(f3);
    seen[4] = arch_irqs_enabled();
    mm_platform_irq_restore(f2);
    seen[5] = arch_irqs_enabled();
    mm_platform_irq_restore(f1);
    seen[6] = arch_irqs_enabled();

    bool ok = mm_conformance_judge_irq(seen, r->why, sizeof(r->why));
    report(r, "irq_save_restore_nest", ok,
           seen[0] ? NULL : "called with interrupts disabled: only the IF=0 nest was checked");
}

/* --------------------------------------------------- check 6: shootdown */

#define CONF_TEST_VA MM_SELFTEST_BASE

struct probe {
    volatile const uint64_t *va;
    uint64_t got[MM_MAX_CPUS];
};

struct probe_one {
    struct probe *p;
    unsigned cpu;
};

static void probe_read(void *arg)
{
    struct probe_one *o = arg;
    o->p->got[o->cpu] = *o->p->va;
}

/* Every CPU reads the test page; false (and a reason) if one did not see
 * `want`.  `when` names the step for the reason. */
static bool probe_all(struct conf_run *r, struct probe *p, uint64_t want, const char *when)
{
    for (unsigned c = 0; c < r->ncpus; c++) {
        struct probe_one o = { p, c };
        on_cpu(r, c, probe_read, &o);
    }
    for (unsigned c = 0; c < r->ncpus; c++) {
        if (p->got[c] != want) {
            mm_snprintf(r->why, sizeof(r->why), "cpu %u read %#lx %s, expected %#lx%s", c,
                        (unsigned long)p->got[c], when, (unsigned long)want,
                        p->got[c] == CONF_VALUE_A || p->got[c] == CONF_VALUE_B
                            ? ": a stale TLB entry, the shootdown missed this cpu" : "");
            return false;
        }
    }
    return true;
}

static void discharge(struct pt_flush *tok, bool local_only)
{
    if (local_only)
        pt_flush_local(tok);
    else
        pt_flush(tok);
}

/* Point the test page at pa: unmap (if mapped) and map under the lock.
 * full: discharge locally and send one mm_platform_tlb_shootdown(
 * MM_CPUMASK_ALL, va, 0)
 * instead of pt_flush's own invlpg-sized shootdown. */
static int retarget(phys_addr_t pa, bool mapped, bool full)
{
    struct kmapper km;
    struct pt_flush tok = PT_FLUSH_INIT;
    int rc = 0;

    if (!kmapper_lock(&km)) {
        kmapper_unlock(&km);
        return -MM_EBUSY;
    }
    if (mapped) {
        rc = pt_unmap_phys(&km.mapper, VA(CONF_TEST_VA), false, NULL, &tok);
        if (rc == 0)
            discharge(&tok, full);
    }
    if (rc == 0) {
        rc = pt_map_phys(&km.mapper, VA(CONF_TEST_VA), pa, PTE_KERNEL_RW, &tok);
        if (rc == 0)
            discharge(&tok, full);
    }
    kmapper_unlock(&km);
    if (rc == 0 && full)
        mm_platform_tlb_shootdown(MM_CPUMASK_ALL, VA(CONF_TEST_VA), 0);
    return rc;
}

static int unmap_test_page(void)
{
    struct kmapper km;
    struct pt_flush tok = PT_FLUSH_INIT;
    int rc = -MM_EBUSY;

    if (kmapper_lock(&km)) {
        rc = pt_unmap_phys(&km.mapper, VA(CONF_TEST_VA), true, NULL, &tok);
        if (rc == 0)
            pt_flush(&tok);
    }
    kmapper_unlock(&km);
    return rc;
}

/* The three rounds of check 6 on a test page that is not yet mapped. */
static bool shootdown_rounds(struct conf_run *r, phys_addr_t a, phys_addr_t b)
{
    static struct probe p;
    int rc;

    p.va = (volatile const uint64_t *)CONF_TEST_VA;
    if ((rc = retarget(a, false, false)) != 0) {
        mm_snprintf(r->why, sizeof(r->why), "mapping the test page: %s", mm_strerror(rc));
        return false;
    }
    bool ok = probe_all(r, &p, CONF_VALUE_A, "after mapping it");
    if (ok && (rc = retarget(b, true, false)) == 0)
        ok = probe_all(r, &p, CONF_VALUE_B, "after the remap and pt_flush");
    if (ok && rc == 0 && (rc = retarget(a, true, true)) == 0)
        ok = probe_all(r, &p, CONF_VALUE_A, "after the remap and a full shootdown");
    if (rc != 0) {
        mm_snprintf(r->why, sizeof(r->why), "remapping the test page: %s", mm_strerror(rc));
        ok = false;
    }
    if ((rc = unmap_test_page()) != 0)
        mm_panic("mm_conformance: unmapping its test page at %#lx: %s",
                 (unsigned long)CONF_TEST_VA, mm_strerror(rc));
    return ok;
}

static void check_shootdown(struct conf_run *r)
{
    const char *name = "shootdown_reaches_every_cpu";
    struct frame_allocator *fa = r->env->frames ? r->env->frames : mm_buddy_frames();
    struct pt_mapper m = kmapper_peek();
    struct pt_mapping pm;
    phys_addr_t a, b;

    if (!fa || !fa->free) {
        report(r, name, true, "no frame allocator that can free (env->frames)");
        return;
    }
    if (pt_translate(&m, VA(CONF_TEST_VA), &pm) == 0) {
        /* A failure, not a skip: the page is reserved for this check, so
         * something else mapping it is a bug the caller must see. */
        mm_snprintf(r->why, sizeof(r->why), "the self-test page %#lx (MM_SELFTEST_BASE) is "
                    "already mapped", (unsigned long)CONF_TEST_VA);
        report(r, name, false, NULL);
        return;
    }
    if (frame_alloc(fa, &a) != 0) {
        report(r, name, true, "out of frames");
        return;
    }
    if (frame_alloc(fa, &b) != 0) {
        fa->free(fa, a);
        report(r, name, true, "out of frames");
        return;
    }
    *(volatile uint64_t *)pa_to_ptr(a) = CONF_VALUE_A;
    *(volatile uint64_t *)pa_to_ptr(b) = CONF_VALUE_B;
    bool ok = shootdown_rounds(r, a, b);
    fa->free(fa, a);
    fa->free(fa, b);
    report(r, name, ok, NULL);
}

/* ----------------------------------------------------- check 7: console */

/* Printed by every CPU; the log reader recomputes the sum.  Long enough to
 * overflow a small line buffer, with the characters that a console hook
 * passing the line on as a format string, or a terminal, would mangle. */
static const char conf_marker_text[] =
    "the quick brown fox jumps over the lazy dog 0123456789 "
    "100% %s %d %% ~!@#$^&*()_+-=[]{};:,.<>?/|' THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG";

static void print_marker(void *arg)
{
    const char *indent = arg;
    char body[224];
    mm_snprintf(body, sizeof(body), "cpu=%u %s", mm_platform_cpu_id(), conf_marker_text);
    mm_printf("%s# MM_CONFORMANCE_LINE %s sum=%08x\n", indent, body,
              mm_conformance_line_sum(body));
}

static void check_console(struct conf_run *r)
{
    for (unsigned c = 0; c < r->ncpus; c++)
        on_cpu(r, c, print_marker, (void *)r->indent);
    mm_printf("%s# console_whole_lines: %u marker lines\n", r->indent, r->ncpus);
    report(r, "console_whole_lines", true, NULL);
}

/* ------------------------------------------------------------------ run */

#define CONF_NCHECKS 7

int mm_conformance_run(const struct mm_conformance_env *env)
{
    if (!env || env->ncpus == 0 || env->ncpus > MM_MAX_CPUS ||
        (env->ncpus > 1 && !env->run_on_cpu)) {
        mm_printf("mm_conformance_run: bad env %p (ncpus %u, run_on_cpu %s)\n", (void *)env,
                  env ? env->ncpus : 0u, env && env->run_on_cpu ? "set" : "NULL");
        return -MM_EINVAL;
    }
    struct conf_run r = { .env = env, .indent = env->indent ? env->indent : "",
                          .ncpus = env->ncpus };

    mm_printf("%sKTAP version 1\n%s# Subtest: mm_conformance\n%s1..%d\n", r.indent, r.indent,
              r.indent, CONF_NCHECKS);
    check_cpus(&r);
    check_image(&r);
    check_irq(&r);
    check_shootdown(&r);
    check_console(&r);
    MM_BUG_ON(r.index != CONF_NCHECKS);
    return r.failed;
}
