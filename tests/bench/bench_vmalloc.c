/*
 * bench_vmalloc.c - cost of one vmalloc + vfree pair (mm/vmalloc.c) on a
 * small kernel table in simulated memory, for 16 KiB and 1 MiB areas.
 *
 * What one sample is: the monotonic-clock time of
 *     vmalloc_alloc(space, size, &p); vmalloc_free(space, p);
 * back to back, one CPU, nothing else live in the space.  That covers
 * taking and zeroing the frames, the frame list, the VA block, mapping
 * every page under the kernel mapper lock, then the unmap, the one flush
 * (the host's shootdown hook only counts; no other CPU is simulated) and
 * giving everything back.  The page tables of the range are freed when
 * the area goes, so every sample also allocates and frees them.  Frames
 * come from a plain LIFO free list over simulated memory (no checks, no
 * filling), so the allocator's own cost is small.
 *
 * Output: one row per size: median and p99 over SAMPLES samples after
 * WARMUP untimed pairs; the median of ROUNDS such rounds for each.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <mm/vmalloc.h>
#include "bench_util.h"

#define SIM_BYTES   (UINT64_C(128) << 20)
#define FIRST_PA    (UINT64_C(1) << 20)
#define ROUNDS      5

static uint64_t *free_stack, nfree;   /* LIFO of free frames */
static uint64_t free_top;             /* nfree with nothing allocated */

static int lifo_alloc(struct frame_allocator *self, phys_addr_t *pa_out)
{
    (void)self;
    if (nfree == 0)
        return -MM_ENOMEM;
    *pa_out = PA(free_stack[--nfree]);
    return 0;
}

static void lifo_free(struct frame_allocator *self, phys_addr_t pa)
{
    (void)self;
    free_stack[nfree++] = pa.raw;
}

static struct frame_allocator lifo = { lifo_alloc, lifo_free };
static struct vmalloc_space vs;

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_vmalloc: %s failed: %d\n", what, err);
    exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* One round: *med and *p99 in ns of `samples` timed pairs. */
static void round_of(uint64_t size, unsigned samples, unsigned warmup, double *med, double *p99)
{
    static uint64_t t[20000];
    for (unsigned i = 0; i < warmup + samples; i++) {
        void *p = NULL;
        uint64_t t0 = now_ns();
        int err = vmalloc_alloc(&vs, size, &p);
        if (err)
            die("vmalloc_alloc", err);
        err = vmalloc_free(&vs, p);
        uint64_t t1 = now_ns();
        if (err)
            die("vmalloc_free", err);
        if (i >= warmup)
            t[i - warmup] = t1 - t0;
    }
    qsort(t, samples, sizeof t[0], cmp_u64);
    *med = (double)t[samples / 2];
    *p99 = (double)t[samples * 99 / 100];
}

static void row(const char *name, uint64_t size, unsigned samples, unsigned warmup)
{
    double med[ROUNDS], p99[ROUNDS];
    for (unsigned r = 0; r < ROUNDS; r++)
        round_of(size, samples, warmup, &med[r], &p99[r]);
    printf("  %-34s median %10.0f ns   p99 %10.0f ns   (%u samples x %d rounds)\n", name,
           median(med, ROUNDS), median(p99, ROUNDS), samples, ROUNDS);
}

int main(void)
{
    sim_mem_init(SIM_BYTES);
    harness_quiet = 1;
    free_stack = calloc(SIM_BYTES / PAGE_SIZE, sizeof *free_stack);
    for (uint64_t pa = SIM_BYTES - PAGE_SIZE; pa >= FIRST_PA; pa -= PAGE_SIZE)
        free_stack[nfree++] = pa;
    harness_kernel_table(&lifo, PA(0x8000));
    int err = vmalloc_space_init(&vs, "vmalloc", MM_VMALLOC_BASE, MM_VMALLOC_END, &lifo);
    if (err)
        die("vmalloc_space_init", err);
    free_top = nfree;
    printf("vmalloc + vfree pairs, one CPU, empty space\n");
    row("vmalloc 16K alloc+free", 16 * KiB, 20000, 2000);
    row("vmalloc 1M alloc+free", MiB, 2000, 200);
    if (nfree != free_top)              /* every frame of every pair came back */
        die("frame accounting", (int)(free_top - nfree));
    return 0;
}
