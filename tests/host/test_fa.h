/*
 * test_fa.h - the counting frame allocator the host tests share: a free
 * list of 4 KiB frames over [pool_start, pool_end) of simulated memory.
 *
 * It catches what a real allocator would only corrupt silently: a free of
 * a frame it never handed out, or of one already free (bad_frees), and it
 * counts the frames out so that a test can assert every frame came back.
 * A budget makes it run dry on purpose (-MM_ENOMEM).  Handed-out frames
 * are filled with 0xa5: callers must zero what they use.  The TLB model's
 * hooks see every alloc and free (check (b): no frame freed while cached).
 * A mutex makes it safe for the tests that fault from several threads.
 */
#ifndef HOST_TEST_FA_H
#define HOST_TEST_FA_H

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <mm/frame.h>
#include <mm/kmapper.h>
#include <mm/paging.h>
#include "harness.h"
#include "tlb_model.h"

struct test_fa {
    struct frame_allocator fa;
    pthread_mutex_t mu;
    uint64_t pool_start, pool_end;  /* the frames it hands out */
    uint64_t free_head;             /* pa of the first free frame, 0 = none */
    uint64_t outstanding;           /* handed out and not returned */
    uint64_t budget;                /* allocations left before -MM_ENOMEM */
    uint8_t *out;                   /* one byte per frame: 1 while handed out */
    unsigned long bad_frees;
};

static inline uint64_t *test_fa_words(uint64_t pa) { return (uint64_t *)pa_to_ptr(PA(pa)); }

/* Is pa a frame of the pool that is handed out now? */
static inline bool test_fa_is_out(const struct test_fa *t, phys_addr_t pa)
{
    return pa.raw >= t->pool_start && pa.raw < t->pool_end &&
           (pa.raw & (PAGE_SIZE - 1)) == 0 && t->out[(pa.raw - t->pool_start) / PAGE_SIZE];
}

static inline int test_fa_alloc(struct frame_allocator *self, phys_addr_t *pa_out)
{
    struct test_fa *t = (struct test_fa *)self;
    int err = -MM_ENOMEM;
    pthread_mutex_lock(&t->mu);
    if (t->budget != 0 && t->free_head != 0) {
        uint64_t pa = t->free_head;
        t->free_head = test_fa_words(pa)[0];
        memset(test_fa_words(pa), 0xa5, PAGE_SIZE);
        t->out[(pa - t->pool_start) / PAGE_SIZE] = 1;
        tlb_model_frame_alloc(PA(pa));
        t->outstanding++;
        t->budget--;
        *pa_out = PA(pa);
        err = 0;
    }
    pthread_mutex_unlock(&t->mu);
    return err;
}

static inline void test_fa_free(struct frame_allocator *self, phys_addr_t pa)
{
    struct test_fa *t = (struct test_fa *)self;
    pthread_mutex_lock(&t->mu);
    if (!test_fa_is_out(t, pa)) {
        t->bad_frees++;
    } else {
        tlb_model_frame_free(pa);
        t->out[(pa.raw - t->pool_start) / PAGE_SIZE] = 0;
        test_fa_words(pa.raw)[0] = t->free_head;
        t->free_head = pa.raw;
        t->outstanding--;
    }
    pthread_mutex_unlock(&t->mu);
}

/* (Re)start *t over [pool_start, pool_end) (page-aligned, in simulated
 * memory): every frame free, lowest first, no budget. */
static inline void test_fa_init(struct test_fa *t, uint64_t pool_start, uint64_t pool_end)
{
    free(t->out);
    *t = (struct test_fa){ .fa = { test_fa_alloc, test_fa_free },
                           .pool_start = pool_start, .pool_end = pool_end,
                           .budget = UINT64_MAX };
    pthread_mutex_init(&t->mu, NULL);
    t->out = calloc((pool_end - pool_start) / PAGE_SIZE, 1);
    if (!t->out)
        abort();
    for (uint64_t pa = pool_end - PAGE_SIZE; pa >= pool_start; pa -= PAGE_SIZE) {
        test_fa_words(pa)[0] = t->free_head;
        t->free_head = pa;
    }
}

/*
 * The common start of a test that maps kernel memory: fresh simulated
 * memory of sim_size bytes described as RAM by the direct map, *t over
 * [pool_start, sim_size), the kernel table set up with frames from it
 * (tables below pool_start at foreign_pa, see harness_kernel_table), the
 * thread on simulated CPU 0.  Returns the kernel table's top.
 */
static inline phys_addr_t test_fa_fresh_kernel(struct test_fa *t, uint64_t sim_size,
                                               uint64_t pool_start, uint64_t foreign_pa)
{
    sim_mem_fini();
    sim_mem_init(sim_size);
    harness_describe_direct_map();
    test_fa_init(t, pool_start, sim_size);
    phys_addr_t top = harness_kernel_table(&t->fa, PA(foreign_pa));
    harness_cpu_id = 0;
    return top;
}

/* The leaf that maps va in the kernel table: 0 and *m, or -MM_ENOENT. */
static inline int kernel_lookup(uint64_t va, struct pt_mapping *m)
{
    struct pt_mapper k = kmapper_peek();
    return pt_translate(&k, VA(va), m);
}

static inline bool kernel_is_mapped(uint64_t va)
{
    struct pt_mapping m;
    return kernel_lookup(va, &m) == 0;
}

#endif
