/*
 * test_kmapper.c - the per-CPU recursive kernel-mapper lock on the host:
 * threads play CPUs (each sets harness_cpu_id).  Checks the recursion
 * rules (outer writable, nested read-only and refused, outer unaffected),
 * mutual exclusion between "CPUs" under contention, and the panic on an
 * unlock by a CPU that does not hold the lock.
 */
#include "harness.h"

#include <pthread.h>
#include <mm/kmapper.h>

extern __thread unsigned harness_cpu_id;

/* A trivial frame source over simulated memory for the mapper. */
static uint64_t next_frame = 16 * MiB;
static int sim_alloc(struct frame_allocator *fa, phys_addr_t *pa)
{
    (void)fa;
    *pa = PA(__atomic_fetch_add(&next_frame, PAGE_SIZE, __ATOMIC_RELAXED));
    return 0;
}
static void sim_free(struct frame_allocator *fa, phys_addr_t pa) { (void)fa; (void)pa; }
static struct frame_allocator sim_fa = { sim_alloc, sim_free };

static struct pt_mapper setup_table(void)
{
    struct pt_mapper m;
    if (pt_mapper_create(&sim_fa, &m) != 0)
        abort();
    kmapper_setup(m.top_pa, &sim_fa);
    return m;
}

static void test_nested_is_readonly(void)
{
    setup_table();
    harness_cpu_id = 3;
    struct kmapper outer, inner;
    struct pt_flush tok = PT_FLUSH_INIT;
    CHECK(kmapper_lock(&outer));
    CHECK_EQ(kmapper_owner(), 3);
    CHECK_EQ(kmapper_depth(), 1);
    CHECK(!kmapper_lock(&inner));
    CHECK(inner.mapper.readonly);
    CHECK_EQ(kmapper_depth(), 2);
    CHECK_EQ(pt_map_phys(&inner.mapper, VA(0xffffc00000000000ull), PA(0x200000),
                         PTE_KERNEL_RW, &tok), -MM_EPERM);
    CHECK(!pt_flush_pending(&tok));
    kmapper_unlock(&inner);
    CHECK_EQ(kmapper_depth(), 1);
    CHECK(!outer.mapper.readonly);
    CHECK_EQ(pt_map_phys(&outer.mapper, VA(0xffffc00000000000ull), PA(0x200000),
                         PTE_KERNEL_RW, &tok), 0);
    pt_flush_ignore(&tok);
    kmapper_unlock(&outer);
    CHECK_EQ(kmapper_owner(), MM_NO_CPU);
    CHECK_EQ(kmapper_depth(), 0);
    harness_cpu_id = 0;
}

static void test_unlock_without_lock_panics(void)
{
    setup_table();
    struct kmapper km = { .depth = 1 };
    harness_quiet = 1;
    EXPECT_PANIC(kmapper_unlock(&km));
    harness_quiet = 0;
    CHECK(strstr(harness_panic_msg, "kmapper_unlock") != NULL);
    CHECK(strstr(harness_panic_msg, "does not hold") != NULL);

    /* Held by cpu 1, released by cpu 2: also a panic, lock state kept. */
    harness_cpu_id = 1;
    struct kmapper held;
    CHECK(kmapper_lock(&held));
    harness_cpu_id = 2;
    EXPECT_PANIC(kmapper_unlock(&held));
    CHECK_EQ(kmapper_owner(), 1);
    harness_cpu_id = 1;
    kmapper_unlock(&held);
    CHECK_EQ(kmapper_owner(), MM_NO_CPU);
    harness_cpu_id = 0;
}

/* Contention: each thread increments a plain counter under the lock; any
 * lost update means two "CPUs" were inside at once. */
#define THREADS 4
#define ITERS   20000
static volatile unsigned long shared_counter;
static volatile int inside;
static int overlaps;

static void *contender(void *arg)
{
    harness_cpu_id = (unsigned)(uintptr_t)arg;
    for (int i = 0; i < ITERS; i++) {
        struct kmapper km;
        if (!kmapper_lock(&km))
            __atomic_fetch_add(&overlaps, 1, __ATOMIC_RELAXED);
        if (__atomic_fetch_add(&inside, 1, __ATOMIC_RELAXED) != 0)
            __atomic_fetch_add(&overlaps, 1, __ATOMIC_RELAXED);
        shared_counter = shared_counter + 1;
        __atomic_fetch_sub(&inside, 1, __ATOMIC_RELAXED);
        kmapper_unlock(&km);
    }
    return NULL;
}

static void test_mutual_exclusion(void)
{
    setup_table();
    pthread_t th[THREADS];
    shared_counter = 0;
    overlaps = 0;
    for (uintptr_t i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, contender, (void *)(i + 1));
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(overlaps, 0);
    CHECK_EQ(shared_counter, (unsigned long)THREADS * ITERS);
    CHECK_EQ(kmapper_owner(), MM_NO_CPU);
}

int main(void)
{
    sim_mem_init(64 * MiB);
    RUN(test_nested_is_readonly);
    RUN(test_unlock_without_lock_panics);
    RUN(test_mutual_exclusion);
    sim_mem_fini();
    return harness_finish();
}
