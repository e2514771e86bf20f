/*
 * bench_fork.c - the cost of fork with copy-on-write (mm/cow.c) on one
 * CPU, over simulated memory with the buddy allocator.
 *
 * A parent with 64 MiB resident in 4 KiB pages (private, writable) is
 * cloned; per round:
 *   fork clone            mm_as_clone, in ns per resident page (it walks
 *                         the parent's upper tables, reserves the child's,
 *                         counts and shares every level-1 table and
 *                         write-protects the parent's level-2 entries, one
 *                         flush);
 *   fork floor            a memcpy of the parent's user-half table frames
 *                         (every byte an eager fork must copy), in ns per
 *                         resident page;
 *   fork first write after clone (unshare)
 *                         the child's first write under each level-1
 *                         table: the work the clone deferred (copy the
 *                         table, count its 512 frames, write-protect both
 *                         copies) plus that page's COW copy, in ns per
 *                         resident page, so it adds up with "fork clone";
 *   fork COW fault copy   the child writes each other page: a fault that
 *                         copies;
 *   fork COW fault reuse  after the child exits, the parent writes each
 *                         page: a fault that reuses the frame (count 1;
 *                         the first under each table gives the table
 *                         back its write permission).
 * Each row is the median over ROUNDS rounds.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "bench_util.h"

#include <mm/aspace.h>
#include <mm/init.h>
#include <mm/buddy.h>
#include <mm/cow.h>
#include <mm/frameref.h>
#include <mm/kmapper.h>

#define ROUNDS    7
#define RESIDENT  (64 * MiB)
#define NPAGES    (RESIDENT / PAGE_SIZE)
#define BASE_VA   UINT64_C(0x10000000)
#define SIM_BYTES (512 * MiB)
#define WFAULT    (MM_PF_PRESENT | MM_PF_WRITE | MM_PF_USER)

static struct buddy buddy;
static struct frame_allocator *fa;

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_fork: %s failed: %d\n", what, err);
    exit(1);
}

static void setup(void)
{
    fa = bench_buddy_kernel(&buddy, SIM_BYTES, "bench_fork");
}

/* Copy every table frame of the user half under `table` into buf. */
static uint8_t *copy_tables(phys_addr_t table, unsigned level, uint8_t *buf)
{
    memcpy(buf, pa_to_ptr(table), PAGE_SIZE);
    buf += PAGE_SIZE;
    const uint64_t *e = pa_to_ptr(table);
    for (unsigned i = 0; level > 1 && i < (level == 4 ? 256u : PT_ENTRIES); i++)
        if ((e[i] & PTE_PRESENT) && !(e[i] & PTE_HUGE))
            buf = copy_tables(PA(e[i] & PTE_ADDR_MASK), level - 1, buf);
    return buf;
}

/* Pages i of `as` with (i % PT_ENTRIES == 0) == first written once
 * through the resolver (all pages when all); the time in ns and the
 * number of faults. */
static double fault_pages(struct mm_as *as, int want, bool all, bool first, uint64_t *n)
{
    *n = 0;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < NPAGES; i++) {
        if (!all && (i % PT_ENTRIES == 0) != first)
            continue;
        int r = mm_cow_fault(as, VA(BASE_VA + i * PAGE_SIZE), WFAULT);
        if (r != want)
            die("mm_cow_fault", r);
        (*n)++;
    }
    return (double)(now_ns() - t0);
}

int main(void)
{
    harness_quiet = 1;
    setup();
    struct buddy_usage u0, u1;
    buddy_usage(&buddy, &u0);
    struct mm_as p, c;
    int err = mm_as_create(&p, fa);
    for (uint64_t i = 0; err == 0 && i < NPAGES; i++)
        err = mm_as_map_zeroed(&p, VA(BASE_VA + i * PAGE_SIZE),
                               MM_PROT_READ | MM_PROT_WRITE | MM_PROT_USER);
    if (err)
        die("parent setup", err);
    mm_as_switch(&p);
    uint8_t *buf = malloc((p.table_frames + 1) * PAGE_SIZE);

    double clone[ROUNDS], floor_[ROUNDS], unshare[ROUNDS], copy[ROUNDS], reuse[ROUNDS];
    uint64_t n;
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t t0 = now_ns();
        copy_tables(p.top_pa, 4, buf);
        floor_[r] = (double)(now_ns() - t0) / NPAGES;
        t0 = now_ns();
        if ((err = mm_as_clone(&c, &p, fa)) != 0)
            die("mm_as_clone", err);
        clone[r] = (double)(now_ns() - t0) / NPAGES;
        unshare[r] = fault_pages(&c, MM_COW_COPIED, false, true, &n) / NPAGES;
        copy[r] = fault_pages(&c, MM_COW_COPIED, false, false, &n) / (double)n;
        if ((err = mm_as_destroy(&c)) != 0)
            die("child destroy", err);
        reuse[r] = fault_pages(&p, MM_COW_REUSED, true, false, &n) / (double)n;
    }
    mm_as_switch(NULL);
    if ((err = mm_as_destroy(&p)) != 0)
        die("parent destroy", err);
    buddy_usage(&buddy, &u1);
    if (memcmp(&u0, &u1, sizeof u0) != 0 || mm_frameref_frames() != 0)
        die("frames back in the buddy", -1);
    free(buf);

    printf("fork with COW, one CPU, 64 MiB resident in 4 KiB pages (median of %d rounds)\n",
           ROUNDS);
    printf("  %-40s %8.2f ns/page\n", "fork clone", median(clone, ROUNDS));
    printf("  %-40s %8.2f ns/page\n", "fork floor (memcpy of the tables)", median(floor_, ROUNDS));
    printf("  %-40s %8.2f ns/page\n", "fork first write after clone (unshare)",
           median(unshare, ROUNDS));
    printf("  %-40s %8.1f ns\n", "fork COW fault copy", median(copy, ROUNDS));
    printf("  %-40s %8.1f ns\n", "fork COW fault reuse", median(reuse, ROUNDS));
    return 0;
}
