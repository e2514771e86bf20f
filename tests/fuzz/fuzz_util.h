/*
 * fuzz_util.h - what the libFuzzer targets share: reading the input as a
 * stream of bytes, reporting a violation, simulated memory set up once per
 * process, and (when FUZZ_SIM_SIZE is defined) a frame allocator over
 * simulated memory that checks every free and can be told to run dry, and
 * that reports its frames to the TLB model (tlb_model.h), which
 * fuzz_tlb_start turns on.
 *
 * Define FUZZ_NAME (the program name for messages) before including it;
 * for the frame allocator also FUZZ_SIM_SIZE (bytes of simulated memory)
 * and FUZZ_FIRST_PA (the first frame it hands out).  Each fuzzer is one
 * program, so the state here is plain statics.
 */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include "harness.h"
#include "tlb_model.h"
#include <mm/frame.h>

#ifndef FUZZ_NAME
#error "define FUZZ_NAME before including fuzz_util.h"
#endif

/* A violation: say what and abort, so libFuzzer keeps the input. */
static inline _Noreturn void fail(const char *what, uint64_t a, uint64_t b)
{
    fprintf(stderr, FUZZ_NAME ": %s (%#lx, %#lx)\n", what, (unsigned long)a,
            (unsigned long)b);
    abort();
}

/* Simulated memory of `size` bytes, set up on the first call only (every
 * input of one fuzzer process reuses it); true on that first call. */
static inline bool fuzz_sim_once(uint64_t size)
{
    static bool sim_ready;
    if (sim_ready)
        return false;
    sim_mem_init(size);
    sim_ready = true;
    return true;
}

/* The input, consumed front to back; past its end every byte reads 0. */
struct reader { const uint8_t *p; size_t n; };

static inline unsigned next_byte(struct reader *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

/* Four bytes, big-endian. */
static inline uint64_t next_u32(struct reader *r)
{
    uint64_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 8 | next_byte(r);
    return v;
}

#ifdef FUZZ_SIM_SIZE
/*
 * Frame allocator: frames from [FUZZ_FIRST_PA, FUZZ_SIM_SIZE), freed ones
 * reused first.  fa_budget >= 0 is how many more frames it hands out
 * before failing with -MM_ENOMEM; < 0 means no limit.  fa_out counts the
 * frames out.  A frame handed out twice or freed while not out aborts.
 * New frames are filled with 0x5a so nobody relies on zeroed memory.
 */
static uint64_t fa_next, fa_stack[FUZZ_SIM_SIZE / PAGE_SIZE], fa_nstack, fa_out;
static long fa_budget;
static uint8_t fa_is_out[FUZZ_SIM_SIZE / PAGE_SIZE];

static int ffa_alloc(struct frame_allocator *self, phys_addr_t *pa_out)
{
    (void)self;
    if (fa_budget == 0)
        return -MM_ENOMEM;
    uint64_t pa;
    if (fa_nstack)
        pa = fa_stack[--fa_nstack];
    else if (fa_next < FUZZ_SIM_SIZE)
        pa = (fa_next += PAGE_SIZE) - PAGE_SIZE;
    else
        return -MM_ENOMEM;
    if (fa_budget > 0)
        fa_budget--;
    if (fa_is_out[pa / PAGE_SIZE])
        fail("frame handed out twice", pa, 0);
    fa_is_out[pa / PAGE_SIZE] = 1;
    fa_out++;
    tlb_model_frame_alloc(PA(pa));
    memset(pa_to_ptr(PA(pa)), 0x5a, PAGE_SIZE);
    *pa_out = PA(pa);
    return 0;
}

static void ffa_free(struct frame_allocator *self, phys_addr_t pa)
{
    (void)self;
    if (pa.raw < FUZZ_FIRST_PA || pa.raw >= FUZZ_SIM_SIZE || !fa_is_out[pa.raw / PAGE_SIZE])
        fail("free of a frame that is not out", pa.raw, 0);
    tlb_model_frame_free(pa);
    fa_is_out[pa.raw / PAGE_SIZE] = 0;
    fa_out--;
    fa_stack[fa_nstack++] = pa.raw;
}

static struct frame_allocator ffa = { ffa_alloc, ffa_free };

/* Fresh allocator for a new input: everything free, no budget; the
 * simulated memory is set up on the first call. */
static void ffa_reset(void)
{
    if (fuzz_sim_once(FUZZ_SIM_SIZE))
        harness_describe_direct_map();   /* the copy helpers copy only RAM */
    memset(fa_is_out, 0, sizeof fa_is_out);
    fa_next = FUZZ_FIRST_PA;
    fa_nstack = fa_out = 0;
    fa_budget = -1;
}
#endif

/* A TLB-model violation: abort like any other. */
static inline void fuzz_tlb_violation(const char *msg)
{
    fprintf(stderr, FUZZ_NAME ": TLB model: %s\n", msg);
    abort();
}

/* Load the top table `top` on ncpus simulated CPUs, violations abort. */
static inline void fuzz_tlb_start(unsigned ncpus, phys_addr_t top)
{
    tlb_model_init(ncpus, top);
    tlb_model_violation_hook = fuzz_tlb_violation;
    harness_cpu_id = 0;
}

/* Before an operation on [va, va + size): every CPU caches its ends, and
 * the operation runs on the next CPU in turn. */
static inline void fuzz_tlb_before(uint64_t va, uint64_t size)
{
    tlb_model_fill_range(VA(va), size);
    harness_cpu_id = (harness_cpu_id + 1) % tlb_model_ncpus();
}

#endif
