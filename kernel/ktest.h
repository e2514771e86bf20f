/*
 * ktest.h - in-kernel self-tests in the style of KUnit, reported as KTAP.
 *
 * A suite is a named array of cases placed in the .ktest_suites section by
 * KTEST_SUITE(); the runner (kernel/ktest.c) walks that section after boot,
 * runs every case and prints KTAP version 1 on the console.  Inside a case:
 *   KEXPECT(t, cond)          - record a failure, keep going
 *   KEXPECT_EQ(t, a, b)       - same, printing both values
 *   KASSERT(t, cond)          - record a failure and end the case now
 *   KSKIP(t, "reason")        - end the case as skipped
 * After each suite the runner checks frame accounting (nothing leaked).
 */
#ifndef KERNEL_KTEST_H
#define KERNEL_KTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ktest {
    const char *name;
    int failures;
    bool skipped;
    const char *skip_reason;
    void *abort_ctx;          /* where KASSERT/KSKIP jump to */
};

struct ktest_case {
    const char *name;
    void (*run)(struct ktest *t);
};

struct ktest_suite {
    const char *name;
    const struct ktest_case *cases;
    size_t ncases;
};

#define KTEST_CASE(fn) { #fn, fn }

#define KTEST_SUITE(ident, suite_name, ...)                                   \
    static const struct ktest_case ident##_cases[] = { __VA_ARGS__ };         \
    static const struct ktest_suite ident                                      \
        __attribute__((used, section(".ktest_suites"), aligned(8))) = {       \
            suite_name, ident##_cases,                                        \
            sizeof(ident##_cases) / sizeof(ident##_cases[0]) }

void ktest_fail(struct ktest *t, const char *file, int line, const char *expr);
void ktest_fail_eq(struct ktest *t, const char *file, int line, const char *a_expr,
                   const char *b_expr, uint64_t a, uint64_t b);
_Noreturn void ktest_abort(struct ktest *t);
_Noreturn void ktest_skip(struct ktest *t, const char *reason);
void ktest_log(struct ktest *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define KEXPECT(t, cond)                                                      \
    do {                                                                      \
        if (!(cond))                                                          \
            ktest_fail((t), __FILE__, __LINE__, #cond);                       \
    } while (0)

#define KEXPECT_EQ(t, a, b)                                                   \
    do {                                                                      \
        uint64_t _ka = (uint64_t)(a), _kb = (uint64_t)(b);                    \
        if (_ka != _kb)                                                       \
            ktest_fail_eq((t), __FILE__, __LINE__, #a, #b, _ka, _kb);         \
    } while (0)

#define KASSERT(t, cond)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            ktest_fail((t), __FILE__, __LINE__, #cond);                       \
            ktest_abort(t);                                                   \
        }                                                                     \
    } while (0)

#define KSKIP(t, reason) ktest_skip((t), (reason))

/* A snapshot of allocator state, taken before and after every suite
 * (ktest.c, from mm_buddy() and mm_mmio_pool()). */
struct ktest_accounting {
    uint64_t frames_free, frames_used, frames_total;
    uint64_t frames_free_in_blocks;   /* sum over orders of blocks << order */
    uint64_t frames_cached;           /* free, in the per-CPU caches, not in blocks */
    uint64_t mmio_free_bytes;
    bool valid;               /* false until the allocators exist */
};

/* Run all suites, print KTAP, return the number of failed cases. */
int ktest_run_all(void);

#endif
