/*
 * harness.h - tiny host test framework for mm/ (built with ASan/UBSan).
 *
 * Each tests/host/test_*.c is its own program with a main() that calls
 * RUN(test_fn) for each test.  CHECK failures print file:line and the
 * expression and mark the test failed; the program exits non-zero if any
 * test failed.  Output is TAP so the summary script can count results.
 *
 * The harness also provides a simulated physical memory (sim_mem_*) and
 * a panic trap: EXPECT_PANIC(stmt) asserts that stmt calls mm_panic.
 */
#ifndef HOST_HARNESS_H
#define HOST_HARNESS_H

#include <inttypes.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mm/types.h>

extern int harness_failed;      /* failures in the current test */
extern int harness_total_failed;
extern int harness_count;

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "  CHECK failed at %s:%d: %s\n", __FILE__,        \
                    __LINE__, #cond);                                         \
            harness_failed++;                                                 \
        }                                                                     \
    } while (0)

#define CHECK_EQ(a, b)                                                        \
    do {                                                                      \
        long _a = (long)(a), _b = (long)(b);                                  \
        if (_a != _b) {                                                       \
            fprintf(stderr, "  CHECK_EQ failed at %s:%d: %s == %s "           \
                    "(%ld vs %ld, 0x%lx vs 0x%lx)\n", __FILE__, __LINE__,     \
                    #a, #b, _a, _b, (unsigned long)_a, (unsigned long)_b);    \
            harness_failed++;                                                 \
        }                                                                     \
    } while (0)

/* Like CHECK but stops the test (returns from the test function). */
#define REQUIRE(cond)                                                         \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "  REQUIRE failed at %s:%d: %s\n", __FILE__,      \
                    __LINE__, #cond);                                         \
            harness_failed++;                                                 \
            return;                                                           \
        }                                                                     \
    } while (0)

void harness_run(const char *name, void (*fn)(void));
int harness_finish(void);        /* prints the plan, returns exit status */
#define RUN(fn) harness_run(#fn, fn)

/* Panic trapping: mm_platform_panic longjmps here while armed. */
extern jmp_buf *harness_panic_jmp;
extern char harness_panic_msg[256];
#define EXPECT_PANIC(stmt)                                                    \
    do {                                                                      \
        jmp_buf _jb;                                                          \
        harness_panic_jmp = &_jb;                                             \
        if (setjmp(_jb) == 0) {                                               \
            stmt;                                                             \
            harness_panic_jmp = NULL;                                         \
            fprintf(stderr, "  expected a panic at %s:%d: %s\n", __FILE__,    \
                    __LINE__, #stmt);                                         \
            harness_failed++;                                                 \
        }                                                                     \
        harness_panic_jmp = NULL;                                             \
    } while (0)

/* Quiet mode: mm_platform_puts output is swallowed (counted) when set. */
extern int harness_quiet;
extern unsigned long harness_log_lines;   /* lines printed through the hook */
extern size_t harness_longest_line;       /* longest string passed to the hook */

/* The simulated CPU this thread runs on (mm_platform_cpu_id returns it;
 * the TLB model's arch hooks act on that CPU). */
extern __thread unsigned harness_cpu_id;

/* The TLB shootdown hook counts calls (harness_shootdowns, declared by the
 * tests that use it), keeps the arguments of the last one, and runs the
 * flush on the targeted simulated CPUs of the TLB model (tlb_model.h). */
extern uint64_t harness_shootdown_va, harness_shootdown_npages;
extern uint64_t harness_shootdown_targets;     /* an mm_cpumask_t */

/*
 * One refused call: it returns want_, prints exactly one log line and
 * changes nothing.  "Nothing" is what the test file's own snapshot sees:
 * it defines struct snap, take_snap(struct snap *) and
 * snap_same(const struct snap *).
 */
#define REFUSED(call_, want_)                                                 \
    do {                                                                      \
        struct snap sn_;                                                      \
        take_snap(&sn_);                                                      \
        unsigned long lines_ = harness_log_lines;                             \
        int quiet_ = harness_quiet;                                           \
        harness_quiet = 1;                                                    \
        CHECK_EQ((call_), (want_));                                           \
        harness_quiet = quiet_;                                               \
        CHECK_EQ(harness_log_lines, lines_ + 1);                              \
        CHECK(snap_same(&sn_));                                               \
    } while (0)

/*
 * Simulated physical memory: a lazily-backed anonymous mapping of `size`
 * bytes that plays the role of physical addresses 0..size-1.  Sets
 * mm_direct_map_offset so pa_to_ptr() works.  Only touched pages cost RAM.
 */
void *sim_mem_init(uint64_t size);
/* The same with the base address aligned to `align` (a power of two), so
 * that the direct map of a simulated table can use 2 MiB / 1 GiB pages. */
void *sim_mem_init_aligned(uint64_t size, uint64_t align);
void sim_mem_fini(void);
uint64_t sim_mem_size(void);

/* Describe [0, sim_mem_size()) as RAM held by the direct map
 * (mm_direct_map_describe); exits on failure. */
void harness_describe_direct_map(void);

/*
 * A small kernel table as mm_init would leave it, for tests of what sits
 * on top of the kernel mapper (address spaces, fork): data_pa mapped at
 * each of harness_kernel_vas (the direct map's first slot, the MMIO pool,
 * the image), the kernel mapper set up on it with frames from fa, and the
 * kernel half fixed (mm_kernel_half_prepare).  Returns the top table;
 * exits on failure.
 */
#define HARNESS_KERNEL_VAS 3
extern const uint64_t harness_kernel_vas[HARNESS_KERNEL_VAS];
struct frame_allocator;
phys_addr_t harness_kernel_table(struct frame_allocator *fa, phys_addr_t data_pa);

/* Deterministic PRNG (xorshift64*) for random operation sequences. */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(2685821657736338717);
}

#endif
