/*
 * test_kmapper.c - the per-CPU recursive kernel-mapper lock on the host:
 * threads play CPUs (each sets harness_cpu_id).  Checks the recursion
 * rules (outer writable, nested read-only and refused, outer unaffected),
 * mutual exclusion between "CPUs" under contention, the panic on an
 * unlock by a CPU that does not hold the lock, and the fixed kernel half
 * (mm_kernel_half_prepare: no top-level entry added or removed after it).
 */
#include "harness.h"

#include <pthread.h>
#include <mm/init.h>
#include <mm/kmapper.h>
#include <mm/layout.h>

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

/* ------------------------------------------------- fixed kernel half */

/* "Nothing changed" for REFUSED: the top table and the frame source. */
struct snap {
    uint64_t top[PT_ENTRIES];
    uint64_t next_frame;
};
static struct pt_mapper snap_table;

static void take_snap(struct snap *s)
{
    memcpy(s->top, pa_to_ptr(snap_table.top_pa), sizeof s->top);
    s->next_frame = next_frame;
}

static bool snap_same(const struct snap *s)
{
    return memcmp(s->top, pa_to_ptr(snap_table.top_pa), sizeof s->top) == 0 &&
           s->next_frame == next_frame;
}

static uint64_t top_entry(unsigned slot)
{
    return ((const uint64_t *)pa_to_ptr(snap_table.top_pa))[slot];
}

#define SLOT_UNUSED_VA UINT64_C(0xffffc00000000000)     /* slot 384: no range */

static void test_kernel_half_prepare(void)
{
    snap_table = setup_table();
    uint64_t before = next_frame;
    CHECK(!kmapper_kernel_half_fixed());
    CHECK_EQ(mm_kernel_half_prepare(), 0);
    CHECK(kmapper_kernel_half_fixed());
    /* 322, 323 (MMIO pool), 324 (vmalloc), 325 (stacks), 326 (self-tests),
     * 511 (image). */
    CHECK_EQ(next_frame - before, 6 * PAGE_SIZE);
    static const unsigned slots[] = { 322, 323, 324, 325, 326, 511 };
    for (unsigned i = 0; i < 6; i++)
        CHECK(top_entry(slots[i]) & PTE_PRESENT);
    CHECK_EQ(top_entry(MM_PML4_SLOT(SLOT_UNUSED_VA)), 0);
    CHECK_EQ(top_entry(321), 0);
    CHECK_EQ(top_entry(327), 0);
    /* Again: nothing to add. */
    before = next_frame;
    CHECK_EQ(mm_kernel_half_prepare(), 0);
    CHECK_EQ(next_frame, before);
}

static void test_kernel_top_entry_refused_after_prepare(void)
{
    snap_table = setup_table();
    REQUIRE(mm_kernel_half_prepare() == 0);
    struct kmapper km;
    struct pt_flush tok = PT_FLUSH_INIT;
    REQUIRE(kmapper_lock(&km));
    CHECK(km.mapper.kernel_top_fixed);

    /* A kernel va in a slot without a top-level entry: refused, one line. */
    REFUSED(pt_map_phys(&km.mapper, VA(SLOT_UNUSED_VA), PA(0x200000), PTE_KERNEL_RW, &tok),
            -MM_EINVAL);
    CHECK(!pt_flush_pending(&tok));
    REFUSED(pt_map_range(&km.mapper, VA(SLOT_UNUSED_VA), PA(0), PAGE_2M_SIZE, PTE_KERNEL_RW,
                         PAGE_2M_SIZE, &tok), -MM_EINVAL);

    /* Inside a prepared slot: mapped; unmapping frees the lower tables
     * but keeps the level-3 table the top-level entry points at. */
    uint64_t entry = top_entry(324);
    CHECK_EQ(pt_map_phys(&km.mapper, VA(MM_VMALLOC_BASE + GiB), PA(0x200000), PTE_KERNEL_RW,
                         &tok), 0);
    pt_flush(&tok);
    CHECK_EQ(pt_unmap_phys(&km.mapper, VA(MM_VMALLOC_BASE + GiB), true, NULL, &tok), 0);
    pt_flush(&tok);
    CHECK_EQ(top_entry(324), entry);

    /* The user half is not affected: a new top-level entry there is fine. */
    CHECK_EQ(pt_map_phys(&km.mapper, VA(0x400000), PA(0x200000), PTE_KERNEL_RW, &tok), 0);
    pt_flush(&tok);
    CHECK_EQ(pt_unmap_phys(&km.mapper, VA(0x400000), true, NULL, &tok), 0);
    pt_flush(&tok);
    CHECK_EQ(top_entry(0), 0);
    kmapper_unlock(&km);
}

/* Before mm_kernel_half_prepare, and for any other mapper, nothing is fixed. */
static void test_unfixed_mapper_adds_and_removes_top_entries(void)
{
    snap_table = setup_table();
    struct kmapper km;
    struct pt_flush tok = PT_FLUSH_INIT;
    REQUIRE(kmapper_lock(&km));
    CHECK(!km.mapper.kernel_top_fixed);
    CHECK_EQ(pt_map_phys(&km.mapper, VA(SLOT_UNUSED_VA), PA(0x200000), PTE_KERNEL_RW, &tok), 0);
    pt_flush(&tok);
    CHECK(top_entry(384) & PTE_PRESENT);
    CHECK_EQ(pt_unmap_phys(&km.mapper, VA(SLOT_UNUSED_VA), true, NULL, &tok), 0);
    pt_flush(&tok);
    CHECK_EQ(top_entry(384), 0);
    kmapper_unlock(&km);
}

int main(void)
{
    sim_mem_init(64 * MiB);
    RUN(test_nested_is_readonly);
    RUN(test_unlock_without_lock_panics);
    RUN(test_mutual_exclusion);
    RUN(test_kernel_half_prepare);
    RUN(test_kernel_top_entry_refused_after_prepare);
    RUN(test_unfixed_mapper_adds_and_removes_top_entries);
    sim_mem_fini();
    return harness_finish();
}
