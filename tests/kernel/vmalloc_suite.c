/*
 * vmalloc_suite.c - mm_vmalloc, mm_vmap and mm_vfree (mm/vmalloc.h) on the
 * running kernel, on every CPU.
 *
 * The cases allocate areas of 16 KiB and 1 MiB and fill them with a
 * pattern that differs per page (so a page mapped twice, or the wrong
 * frame, shows), check the leaf bits (RW, NX, global), and probe the page
 * right after each area: it must fault, and the library's fault
 * classifier (mm/faultinfo.h) must call it a vmalloc guard naming the
 * area's end.  A freed area must fault too, on this CPU and on every other
 * one after they all read it first: that read fills their TLBs, so only a
 * shootdown that reached them makes the read after the free fault.
 * Refused calls (size 0, interior or freed pointers, write+exec) must
 * change nothing.  mm_vmap maps frames the test took from the buddy and
 * must leave them to it.  The runner's accounting case checks after the
 * suite that every frame came back (area frames, frame lists, page tables,
 * the allocator's bookkeeping).
 */
#include "fault.h"
#include "kernel.h"
#include "ktest.h"
#include "smp.h"

#include <mm/aspace.h>
#include <mm/buddy.h>
#include <mm/faultinfo.h>
#include <mm/init.h>
#include <mm/paging.h>
#include <mm/vmalloc.h>

#define SMALL_SIZE  (16 * KiB)
#define LARGE_SIZE  (1 * MiB)
#define VMAP_FRAMES 3u

/* The word stored at byte offset `off` of an area: depends on the offset
 * and on a per-area seed, so frames swapped or shared show up. */
static uint64_t pattern(uint64_t seed, uint64_t off)
{
    return (seed * 0x9e3779b97f4a7c15ull) ^ (off * 0xff51afd7ed558ccdull) ^ off;
}

/* Write the pattern on every word of the first and last cache line of
 * each page (enough to catch a wrong or shared frame, quick under TCG). */
static void fill(uint8_t *p, uint64_t size, uint64_t seed)
{
    for (uint64_t page = 0; page < size; page += PAGE_SIZE)
        for (uint64_t off = 0; off < 64; off += 8) {
            *(volatile uint64_t *)(p + page + off) = pattern(seed, page + off);
            uint64_t end = page + PAGE_SIZE - 64 + off;
            *(volatile uint64_t *)(p + end) = pattern(seed, end);
        }
}

/* Number of words of fill()'s pattern that do not read back. */
static uint64_t check(const uint8_t *p, uint64_t size, uint64_t seed)
{
    uint64_t bad = 0;
    for (uint64_t page = 0; page < size; page += PAGE_SIZE)
        for (uint64_t off = 0; off < 64; off += 8) {
            uint64_t end = page + PAGE_SIZE - 64 + off;
            bad += *(const volatile uint64_t *)(p + page + off) != pattern(seed, page + off);
            bad += *(const volatile uint64_t *)(p + end) != pattern(seed, end);
        }
    return bad;
}

/* The classifier's answer for va, logged. */
static enum mm_fault_kind classify(struct ktest *t, uint64_t va, uint64_t error_code,
                                   struct mm_fault_info *fi)
{
    char line[256];
    KASSERT(t, mm_fault_describe(NULL, VA(va), error_code, fi) == 0);
    mm_fault_format(fi, line, sizeof(line));
    ktest_log(t, "%s", line);
    return fi->kind;
}

/* The page right after [p, p + size) faults and is called a vmalloc guard. */
static void expect_guard_after(struct ktest *t, const uint8_t *p, uint64_t size)
{
    struct fault_info fi = { 0 };
    struct mm_fault_info mi;
    const uint8_t *guard = p + size;
    bool faulted = probe_read(guard, &fi);
    KEXPECT(t, faulted);
    if (!faulted)
        return;
    KEXPECT_EQ(t, fi.vector, X86_PF);
    KEXPECT_EQ(t, fi.cr2, (uint64_t)(uintptr_t)guard);
    KEXPECT_EQ(t, fi.error_code & PF_PRESENT, 0);
    KEXPECT_EQ(t, classify(t, fi.cr2, fi.error_code, &mi), MM_FAULT_VMALLOC_GUARD);
    KEXPECT_EQ(t, mi.area_end.raw, (uint64_t)(uintptr_t)guard);
}

/* A mapped page of an area: RW, NX, global (VMALLOC_PTE_FLAGS). */
static void expect_rw_nx(struct ktest *t, const void *p)
{
    struct mm_fault_info mi;
    KASSERT(t, mm_fault_describe(NULL, VA(p), MM_FAULT_EC_NONE, &mi) == 0);
    KEXPECT_EQ(t, mi.kind, MM_FAULT_VMALLOC);
    KEXPECT(t, mi.mapped);
    KEXPECT_EQ(t, mi.flags & VMALLOC_PTE_FLAGS, VMALLOC_PTE_FLAGS);
}

static void case_alloc_write_read(struct ktest *t)
{
    uint8_t *small = mm_vmalloc(SMALL_SIZE);
    uint8_t *large = mm_vmalloc(LARGE_SIZE);
    KEXPECT(t, small != NULL && large != NULL);
    if (small && large) {
        KEXPECT(t, (uint64_t)(uintptr_t)small >= MM_VMALLOC_BASE);
        KEXPECT(t, (uint64_t)(uintptr_t)large + LARGE_SIZE <= MM_VMALLOC_END);
        KEXPECT_EQ(t, (uint64_t)(uintptr_t)small % PAGE_SIZE, 0);
        /* Fresh areas are zeroed. */
        KEXPECT_EQ(t, *(volatile uint64_t *)(small + SMALL_SIZE - 8), 0);
        KEXPECT_EQ(t, *(volatile uint64_t *)(large + LARGE_SIZE / 2), 0);
        fill(small, SMALL_SIZE, 1);
        fill(large, LARGE_SIZE, 2);
        KEXPECT_EQ(t, check(small, SMALL_SIZE, 1), 0);
        KEXPECT_EQ(t, check(large, LARGE_SIZE, 2), 0);
        expect_rw_nx(t, small);
        expect_rw_nx(t, large + LARGE_SIZE - PAGE_SIZE);
    }
    if (small)
        KEXPECT_EQ(t, mm_vfree(small), 0);
    if (large)
        KEXPECT_EQ(t, mm_vfree(large), 0);
}

static void case_guard_after_each_area(struct ktest *t)
{
    uint8_t *small = mm_vmalloc(SMALL_SIZE);
    uint8_t *large = mm_vmalloc(LARGE_SIZE);
    KEXPECT(t, small != NULL && large != NULL);
    if (small) {
        KEXPECT(t, !probe_read(small + SMALL_SIZE - 1, NULL));   /* last byte: mapped */
        expect_guard_after(t, small, SMALL_SIZE);
        KEXPECT_EQ(t, mm_vfree(small), 0);
    }
    if (large) {
        KEXPECT(t, !probe_read(large + LARGE_SIZE - 1, NULL));
        expect_guard_after(t, large, LARGE_SIZE);
        KEXPECT_EQ(t, mm_vfree(large), 0);
    }
}

/* After mm_vfree every page of the area faults and is no vmalloc page. */
static void case_freed_area_faults(struct ktest *t)
{
    uint8_t *p = mm_vmalloc(SMALL_SIZE);
    KASSERT(t, p != NULL);
    fill(p, SMALL_SIZE, 3);
    KEXPECT_EQ(t, mm_vfree(p), 0);
    for (uint64_t off = 0; off < SMALL_SIZE; off += PAGE_SIZE) {
        struct fault_info fi = { 0 };
        KEXPECT(t, probe_read(p + off, &fi));
        KEXPECT_EQ(t, fi.cr2, (uint64_t)(uintptr_t)(p + off));
    }
    struct mm_fault_info mi;
    KEXPECT(t, classify(t, (uint64_t)(uintptr_t)p, MM_FAULT_EC_NONE, &mi) != MM_FAULT_VMALLOC);
    KEXPECT(t, !mi.mapped);
}

/* Refused calls return errors and change nothing. */
static void case_refusals(struct ktest *t)
{
    KEXPECT(t, mm_vmalloc(0) == NULL);
    KEXPECT(t, mm_vmalloc(VMALLOC_MAX_SIZE + PAGE_SIZE) == NULL);
    uint8_t *p = mm_vmalloc(SMALL_SIZE);
    KASSERT(t, p != NULL);
    fill(p, SMALL_SIZE, 4);
    KEXPECT(t, mm_vfree(p + PAGE_SIZE) < 0);          /* interior */
    KEXPECT(t, mm_vfree(p + 8) < 0);                  /* misaligned */
    KEXPECT(t, mm_vfree(NULL) < 0);                   /* not a vmalloc address */
    KEXPECT_EQ(t, check(p, SMALL_SIZE, 4), 0);        /* the area is untouched */
    KEXPECT_EQ(t, mm_vfree(p), 0);
    KEXPECT(t, mm_vfree(p) < 0);                      /* double free */
    phys_addr_t frame;
    KASSERT(t, buddy_alloc(mm_buddy(), 1, &frame) == 0);
    KEXPECT(t, mm_vmap(&frame, 1, MM_PROT_WRITE | MM_PROT_EXEC) == NULL);
    KEXPECT(t, mm_vmap(&frame, 1, MM_PROT_READ | MM_PROT_USER) == NULL);
    KEXPECT(t, mm_vmap(&frame, 0, MM_PROT_READ) == NULL);
    KEXPECT_EQ(t, buddy_free(mm_buddy(), frame, 1), 0);
}

/* ------------------------------------------------- every CPU, shootdown */

struct cross_cpu {
    const uint8_t *p;
    uint64_t bad[MM_MAX_CPUS];          /* pattern words that did not read back */
    bool faulted[MM_MAX_CPUS];
    uint64_t cr2[MM_MAX_CPUS];
};

static void read_on_cpu(void *arg)
{
    struct cross_cpu *c = arg;
    c->bad[smp_cpu_id()] = check(c->p, SMALL_SIZE, 5);
}

static void probe_on_cpu(void *arg)
{
    struct cross_cpu *c = arg;
    struct fault_info fi = { 0 };
    unsigned me = smp_cpu_id();
    c->faulted[me] = probe_read(c->p + PAGE_SIZE, &fi);
    c->cr2[me] = fi.cr2;
}

/*
 * An area written here is read on every CPU (filling their TLBs); after
 * mm_vfree every CPU must fault on it, which it does only if the free's
 * shootdown reached it.  Each other CPU's count of shootdowns carried out
 * must have grown.
 */
static void case_every_cpu_sees_then_faults(struct ktest *t)
{
    static struct cross_cpu c;
    unsigned n = smp_online_cpus(), me = smp_cpu_id();
    uint64_t received[MM_MAX_CPUS];
    memset(&c, 0, sizeof(c));
    uint8_t *p = mm_vmalloc(SMALL_SIZE);
    KASSERT(t, p != NULL);
    c.p = p;
    fill(p, SMALL_SIZE, 5);
    smp_call_all(read_on_cpu, &c);
    for (unsigned cpu = 0; cpu < n; cpu++) {
        KEXPECT_EQ(t, c.bad[cpu], 0);
        received[cpu] = smp_shootdowns_received(cpu);
    }
    KEXPECT_EQ(t, mm_vfree(p), 0);
    smp_call_all(probe_on_cpu, &c);
    for (unsigned cpu = 0; cpu < n; cpu++) {
        if (!c.faulted[cpu])
            ktest_log(t, "cpu %u still reads the freed area", cpu);
        KEXPECT(t, c.faulted[cpu]);
        KEXPECT_EQ(t, c.cr2[cpu], (uint64_t)(uintptr_t)(p + PAGE_SIZE));
        if (cpu != me)
            KEXPECT(t, smp_shootdowns_received(cpu) > received[cpu]);
    }
    ktest_log(t, "%u CPU(s) read the area, then faulted on it after mm_vfree", n);
}

/* --------------------------------------------------------------- vmap */

static void case_vmap_buddy_frames(struct ktest *t)
{
    phys_addr_t frames[VMAP_FRAMES];
    unsigned got = 0;
    while (got < VMAP_FRAMES && buddy_alloc(mm_buddy(), 1, &frames[got]) == 0)
        got++;
    if (got < VMAP_FRAMES)
        goto out;
    /* Each frame gets its own pattern through the direct map. */
    for (unsigned i = 0; i < VMAP_FRAMES; i++)
        fill(pa_to_ptr(frames[i]), PAGE_SIZE, 10 + i);
    uint8_t *p = mm_vmap(frames, VMAP_FRAMES, MM_PROT_READ | MM_PROT_WRITE);
    KEXPECT(t, p != NULL);
    if (p) {
        for (unsigned i = 0; i < VMAP_FRAMES; i++)
            KEXPECT_EQ(t, check(p + i * PAGE_SIZE, PAGE_SIZE, 10 + i), 0);
        struct mm_fault_info mi;
        KEXPECT(t, mm_fault_describe(NULL, VA(p + PAGE_SIZE), MM_FAULT_EC_NONE, &mi) == 0);
        KEXPECT_EQ(t, mi.pa.raw, frames[1].raw);
        /* A write through the mapping shows in the frame. */
        fill(p + 2 * PAGE_SIZE, PAGE_SIZE, 20);
        KEXPECT_EQ(t, check(pa_to_ptr(frames[2]), PAGE_SIZE, 20), 0);
        expect_guard_after(t, p, VMAP_FRAMES * PAGE_SIZE);
        KEXPECT_EQ(t, mm_vfree(p), 0);
        KEXPECT(t, probe_read(p, NULL));
        /* The frames stay ours, contents intact. */
        KEXPECT_EQ(t, check(pa_to_ptr(frames[0]), PAGE_SIZE, 10), 0);
    }
    /* A read-only vmap refuses writes. */
    uint8_t *ro = mm_vmap(frames, 1, MM_PROT_READ);
    KEXPECT(t, ro != NULL);
    if (ro) {
        struct fault_info fi = { 0 };
        KEXPECT(t, !probe_read(ro, NULL));
        KEXPECT(t, probe_write(ro, 1, &fi));
        KEXPECT_EQ(t, fi.error_code & (PF_PRESENT | PF_WRITE), PF_PRESENT | PF_WRITE);
        KEXPECT_EQ(t, mm_vfree(ro), 0);
    }
out:
    for (unsigned i = 0; i < got; i++)
        KEXPECT_EQ(t, buddy_free(mm_buddy(), frames[i], 1), 0);
    if (got < VMAP_FRAMES)
        KSKIP(t, "no frames for the vmap");
}

KTEST_SUITE(vmalloc_suite, "vmalloc",
            KTEST_CASE(case_alloc_write_read),
            KTEST_CASE(case_guard_after_each_area),
            KTEST_CASE(case_freed_area_faults),
            KTEST_CASE(case_refusals),
            KTEST_CASE(case_every_cpu_sees_then_faults),
            KTEST_CASE(case_vmap_buddy_frames));
