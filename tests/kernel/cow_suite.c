/*
 * cow_suite.c - fork with copy-on-write (include/mm/cow.h) in the test
 * kernel: user programs (user/prog.c, the UMODE_FORK_* modes) that fork,
 * write, yield, wait and exit under the cooperative scheduler
 * (kernel/sched.c), and kernel-side clones where no process needs to run.
 *
 * What the cases prove:
 *   - parent and children that write the same pages in turns each read
 *     back only their own data, and children start from the pages as
 *     they were at fork;
 *   - a fork of a fork keeps copy-on-write: pages the child wrote before
 *     the second fork and pages it never touched stay private to each of
 *     the three processes;
 *   - a process whose private memory is more than half of the free RAM
 *     forks (impossible with an eager copy) and both sides then write;
 *   - a kernel write into a COW page (mm_copy_to_user) stays private;
 *   - more than 300 address spaces share one frame, with the exact count;
 *   - running out of frames in a clone leaves the parent exactly as it
 *     was, and in a fork or a COW fault leaves the parent running, kills
 *     at most the child, and leaks nothing;
 *   - 10,000 fork / write / exit / wait cycles, one process tree per CPU
 *     (so processes run on every CPU), give every frame back (the
 *     suite's accounting case).
 */
#include "kernel.h"
#include "ktest.h"
#include "percpu.h"
#include "sched.h"
#include "smp.h"
#include "user.h"
#include <mm/aspace.h>
#include <mm/buddy.h>
#include <mm/cow.h>
#include <mm/frameref.h>
#include <mm/init.h>
#include <mm/log.h>

#define PROT_RW (MM_PROT_READ | MM_PROT_WRITE | MM_PROT_USER)

static uint64_t frames_free(void)
{
    struct buddy_usage u;
    buddy_usage(mm_buddy(), &u);
    return u.free_npages;
}

/* One scheduler per CPU: trees run on several CPUs at once. */
static struct sched trees[MM_MAX_CPUS];

/* A fresh scheduler for this CPU with a root process in `mode`, or NULL. */
static struct user_process *tree_spawn(struct frame_allocator *fa, uint64_t mode, uint64_t arg)
{
    struct sched *s = &trees[smp_cpu_id()];
    memset(s, 0, sizeof(*s));
    return sched_spawn(s, fa, mode, arg);
}

/* Run this CPU's tree to the end: the root's status (user/abi.h). */
static long tree_run(void)
{
    struct sched *s = &trees[smp_cpu_id()];
    sched_run(s);
    return s->root_status;
}

/* ---------------------------------------------------- a limited allocator */

/* The test hook for running out: a frame allocator that hands out at
 * most `budget` frames from the buddy, then says -MM_ENOMEM. */
struct limited_frames {
    struct frame_allocator fa;      /* first: the library sees only this */
    uint64_t budget;
};

static int limited_alloc(struct frame_allocator *self, phys_addr_t *pa_out)
{
    struct limited_frames *l = (struct limited_frames *)self;
    if (l->budget == 0)
        return -MM_ENOMEM;
    int rc = frame_alloc(mm_buddy_frames(), pa_out);
    if (rc == 0)
        l->budget--;
    return rc;
}

static void limited_free(struct frame_allocator *self, phys_addr_t pa)
{
    (void)self;
    mm_buddy_frames()->free(mm_buddy_frames(), pa);
}

/* Static: an allocator the frame counts remember must outlive the case. */
static struct limited_frames limited = { { limited_alloc, limited_free }, 0 };

/* ------------------------------------------------------ user programs */

static void case_fork_turns(struct ktest *t)
{
    const unsigned children = 3;
    KASSERT(t, tree_spawn(mm_buddy_frames(), UMODE_FORK_TURNS, children) != NULL);
    KEXPECT_EQ(t, tree_run(), 0);
    struct sched *s = &trees[smp_cpu_id()];
    KEXPECT_EQ(t, s->forks, children);
    /* Every process ran at least 4 times (start + 3 yields). */
    KEXPECT(t, s->switches >= 4 * (children + 1));
}

static void case_second_generation_fork(struct ktest *t)
{
    KASSERT(t, tree_spawn(mm_buddy_frames(), UMODE_FORK_GRAND, 0) != NULL);
    KEXPECT_EQ(t, tree_run(), 0);
    KEXPECT_EQ(t, trees[smp_cpu_id()].forks, 2);
}

/*
 * Frames taken out of the buddy so that the big fork stays quick under
 * TCG on big guests: what counts is the free RAM at the fork, not the
 * guest size.  A guest with more than BIG_FREE_TARGET free holds the rest
 * back for the case, in blocks as large as possible (at most HOLD_MAX).
 */
#define HOLD_MAX 64
#define BIG_FREE_TARGET (UINT64_C(1) << 30 >> PAGE_SHIFT)   /* frames: 1 GiB */

static struct { phys_addr_t pa; uint64_t npages; } held[HOLD_MAX];
static unsigned nheld;

static void hold_free_ram(uint64_t keep_free)
{
    nheld = 0;
    for (int order = BUDDY_MAX_ORDER; order >= 0 && nheld < HOLD_MAX;) {
        uint64_t n = UINT64_C(1) << order;
        if (frames_free() >= keep_free + n && buddy_alloc(mm_buddy(), n, &held[nheld].pa) == 0)
            held[nheld++].npages = n;
        else
            order--;
    }
}

static uint64_t held_frames(void)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < nheld; i++)
        n += held[i].npages;
    return n;
}

static void release_held(void)
{
    while (nheld) {
        nheld--;
        buddy_free(mm_buddy(), held[nheld].pa, held[nheld].npages);
    }
}

static void case_fork_bigger_than_half_of_free_ram(struct ktest *t)
{
    hold_free_ram(BIG_FREE_TARGET);
    struct user_process *p = tree_spawn(mm_buddy_frames(), UMODE_FORK_BIG, 0);
    KEXPECT(t, p != NULL);
    uint64_t free_before = frames_free(), npages = free_before / 2 + 1, mapped = 0;
    while (p && mapped < npages &&
           mm_as_map_zeroed(&p->as, VA(USER_BIG_BASE + mapped * PAGE_SIZE), PROT_RW) == 0)
        mapped++;
    KEXPECT_EQ(t, mapped, npages);
    uint64_t free_at_fork = frames_free();
    KEXPECT(t, npages > free_at_fork);          /* an eager copy could not fit */
    if (p) {
        p->arg = mapped;
        KEXPECT_EQ(t, tree_run(), 0);
    }
    char priv[16], avail[16];
    mm_format_size(priv, sizeof(priv), npages * PAGE_SIZE, false);
    mm_format_size(avail, sizeof(avail), free_at_fork * PAGE_SIZE, false);
    ktest_log(t, "private memory %s, free RAM at the fork %s (%lu frames held back)", priv,
              avail, (unsigned long)held_frames());
    release_held();
}

/*
 * Fork while the frames run out, with every budget from 0 up until the
 * fork and the child's COW fault both succeed.  Each run must end with
 * the parent's own exit code (never killed) and every frame back; there
 * must be budgets where the fork fails and where the child's fault does.
 */
static void case_out_of_frames_in_fork_and_fault(struct ktest *t)
{
    unsigned no_fork = 0, child_oom = 0, ok = 0, leaks = 0, other = 0;
    for (uint64_t budget = 0; budget < 200 && !ok; budget++) {
        uint64_t before = frames_free();
        limited.budget = UINT64_MAX;
        struct user_process *p = tree_spawn(&limited.fa, UMODE_FORK_ONCE, 0);
        KASSERT(t, p != NULL);
        limited.budget = budget;
        long status = tree_run();
        no_fork += status == FORK_ONCE_NO_FORK;
        child_oom += status == FORK_ONCE_CHILD_OOM;
        ok += status == FORK_ONCE_CHILD_OK;
        if (status != FORK_ONCE_NO_FORK && status != FORK_ONCE_CHILD_OOM &&
            status != FORK_ONCE_CHILD_OK) {
            ktest_log(t, "budget %lu: the parent ended with status %#lx",
                      (unsigned long)budget, (unsigned long)status);
            other++;
        }
        leaks += frames_free() != before;
    }
    limited.budget = UINT64_MAX;
    ktest_log(t, "fork failed %u time(s), child killed at its COW fault %u time(s)", no_fork,
              child_oom);
    KEXPECT_EQ(t, ok, 1);
    KEXPECT(t, no_fork > 0);
    KEXPECT(t, child_oom > 0);
    KEXPECT_EQ(t, other, 0);
    KEXPECT_EQ(t, leaks, 0);
}

/* ------------------------------------------------- fork cycles per CPU */

#define FORK_CYCLES 10000

struct cycles_run {
    uint64_t rounds;
    long status;
    uint64_t forks;
    unsigned cpu;
    bool spawned;
};

static void run_cycles(void *arg)
{
    struct cycles_run *r = arg;
    r->spawned = tree_spawn(mm_buddy_frames(), UMODE_FORK_CYCLES, r->rounds) != NULL;
    if (!r->spawned)
        return;
    r->status = tree_run();
    r->forks = trees[smp_cpu_id()].forks;
    r->cpu = trees[smp_cpu_id()].cpu;
}

static void case_fork_cycles_on_every_cpu(struct ktest *t)
{
    static struct cycles_run runs[MM_MAX_CPUS];
    unsigned n = smp_online_cpus(), me = smp_cpu_id();
    for (unsigned c = 0; c < n; c++)
        runs[c] = (struct cycles_run){ FORK_CYCLES / n + (c < FORK_CYCLES % n), -1, 0, 0, 0 };
    for (unsigned c = 0; c < n; c++)
        if (c != me)
            smp_post(c, run_cycles, &runs[c]);
    run_cycles(&runs[me]);
    uint64_t forks = 0;
    unsigned cpus_used = 0;
    for (unsigned c = 0; c < n; c++) {
        if (c != me)
            smp_wait(c);
        KEXPECT(t, runs[c].spawned);
        KEXPECT_EQ(t, runs[c].status, 0);
        KEXPECT_EQ(t, runs[c].cpu, c);
        forks += runs[c].forks;
        cpus_used += runs[c].cpu == c && runs[c].forks > 0;
    }
    KEXPECT_EQ(t, forks, FORK_CYCLES);
    KEXPECT_EQ(t, cpus_used, n);
    ktest_log(t, "%u fork cycles on %u CPU(s)", FORK_CYCLES, n);
}

/* ------------------------------------------------------- kernel side */

/* The frame va maps in as (PA(0) if none). */
static phys_addr_t frame_of(struct mm_as *as, uint64_t va)
{
    phys_addr_t pa = PA(0);
    unsigned prot;
    if (mm_as_translate(as, VA(va), &pa, &prot) != 0)
        return PA(0);
    return pa;
}

/* The level-1 table that maps va in as, and the level-2 entry above it
 * (PA(0) and 0 if none): a clone shares the table (include/mm/cow.h). */
static phys_addr_t table_of(struct mm_as *as, uint64_t va, uint64_t *pde)
{
    struct pt_mapper m = mm_as_mapper(as);
    pt_entry_t e = { 0 };
    *pde = 0;
    if (pt_get_entry(&m, VA(va), PT_LEVEL_PD, &e) != 0 || !(e.raw & PTE_PRESENT))
        return PA(0);
    *pde = e.raw;
    return PA(e.raw & PTE_ADDR_MASK);
}

static void case_kernel_write_stays_private(struct ktest *t)
{
    const uint64_t va = 0x400000;
    static struct mm_as parent, child;
    uint64_t word = 0x9a4e47, seen = 0;
    KASSERT(t, mm_as_create(&parent, mm_buddy_frames()) == 0);
    KASSERT(t, mm_as_map_zeroed(&parent, VA(va), PROT_RW) == 0);
    KASSERT(t, mm_copy_to_user(&parent, VA(va), &word, sizeof(word)) == 0);
    KASSERT(t, mm_as_clone(&child, &parent, mm_buddy_frames()) == 0);
    KEXPECT_EQ(t, frame_of(&child, va).raw, frame_of(&parent, va).raw);
    /* One leaf in a table both share: the table is counted, the frame
     * only when the table is unshared. */
    uint64_t ppde, cpde;
    KEXPECT_EQ(t, table_of(&child, va, &cpde).raw, table_of(&parent, va, &ppde).raw);
    KEXPECT(t, mm_cow_table_entry_shared(ppde) && mm_cow_table_entry_shared(cpde));
    KEXPECT_EQ(t, mm_frameref_count(table_of(&parent, va, &ppde)), 2);
    KEXPECT_EQ(t, mm_frameref_count(frame_of(&parent, va)), 1);

    uint64_t kernel_word = 0xc0ffee;
    KEXPECT_EQ(t, mm_copy_to_user(&child, VA(va), &kernel_word, sizeof(kernel_word)), 0);
    KEXPECT_EQ(t, mm_copy_from_user(&parent, &seen, VA(va), sizeof(seen)), 0);
    KEXPECT_EQ(t, seen, word);
    KEXPECT_EQ(t, mm_copy_from_user(&child, &seen, VA(va), sizeof(seen)), 0);
    KEXPECT_EQ(t, seen, kernel_word);
    KEXPECT(t, frame_of(&child, va).raw != frame_of(&parent, va).raw);
    KEXPECT_EQ(t, mm_frameref_count(frame_of(&parent, va)), 1);

    /* The other direction: the parent's write (count 1 now) reuses. */
    KEXPECT_EQ(t, mm_copy_to_user(&parent, VA(va), &kernel_word, sizeof(kernel_word)), 0);
    KEXPECT_EQ(t, mm_copy_from_user(&child, &seen, VA(va), sizeof(seen)), 0);
    KEXPECT_EQ(t, seen, kernel_word);
    KEXPECT_EQ(t, mm_as_destroy(&child), 0);
    KEXPECT_EQ(t, mm_as_destroy(&parent), 0);
}

#define SHARERS 320

static void case_one_frame_shared_by_300_spaces(struct ktest *t)
{
    const uint64_t va = 0x400000;
    static struct mm_as as[SHARERS + 1];
    uint64_t before = frames_free();
    KASSERT(t, mm_as_create(&as[0], mm_buddy_frames()) == 0);
    KASSERT(t, mm_as_map_zeroed(&as[0], VA(va), PROT_RW) == 0);
    phys_addr_t frame = frame_of(&as[0], va);
    /* Half the clones from the first, half from the previous clone. */
    unsigned made = 0;
    for (unsigned i = 1; i <= SHARERS; i++) {
        struct mm_as *from = i % 2 ? &as[0] : &as[i - 1];
        if (mm_as_clone(&as[i], from, mm_buddy_frames()) != 0)
            break;
        made = i;
    }
    KEXPECT_EQ(t, made, SHARERS);
    uint64_t pde;
    phys_addr_t table = table_of(&as[0], va, &pde);
    KEXPECT_EQ(t, mm_frameref_count(table), made + 1);  /* the frame's leaf is in it */
    unsigned same = 0;
    for (unsigned i = 0; i <= made; i++)
        same += frame_of(&as[i], va).raw == frame.raw;
    KEXPECT_EQ(t, same, made + 1);

    uint64_t mine = 0x1234, seen = 0;
    KEXPECT_EQ(t, mm_copy_to_user(&as[made / 2], VA(va), &mine, sizeof(mine)), 0);
    KEXPECT_EQ(t, mm_frameref_count(table), made);      /* its own table now */
    KEXPECT_EQ(t, mm_frameref_count(frame), 1);         /* and its own frame */
    KEXPECT(t, frame_of(&as[made / 2], va).raw != frame.raw);
    KEXPECT_EQ(t, mm_copy_from_user(&as[made], &seen, VA(va), sizeof(seen)), 0);
    KEXPECT_EQ(t, seen, 0);
    for (unsigned i = 0; i <= made; i++)
        KEXPECT_EQ(t, mm_as_destroy(&as[i]), 0);
    KEXPECT_EQ(t, frames_free(), before);
}

/* Every page of as in [va, va + n pages) is writable and holds its index. */
static bool pages_intact(struct mm_as *as, uint64_t va, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        unsigned prot = 0;
        uint64_t w = ~UINT64_C(0);
        if (mm_as_translate(as, VA(va + i * PAGE_SIZE), NULL, &prot) != 0 ||
            !(prot & MM_PROT_WRITE) ||
            mm_copy_from_user(as, &w, VA(va + i * PAGE_SIZE), sizeof(w)) != 0 || w != i)
            return false;
    }
    return true;
}

/*
 * A clone with every budget from 0 up until it succeeds: each failure
 * returns -MM_ENOMEM, leaves every parent page writable (no stray
 * write-protection, of a leaf or of its table), uncounted and unchanged,
 * and frees everything.
 */
static void case_clone_out_of_frames_changes_nothing(struct ktest *t)
{
    const uint64_t va = 0x400000;
    const unsigned npages = 600;                /* two page tables */
    static struct mm_as parent, child;
    KASSERT(t, mm_as_create(&parent, mm_buddy_frames()) == 0);
    for (uint64_t i = 0; i < npages; i++) {
        KASSERT(t, mm_as_map_zeroed(&parent, VA(va + i * PAGE_SIZE), PROT_RW) == 0);
        KASSERT(t, mm_copy_to_user(&parent, VA(va + i * PAGE_SIZE), &i, sizeof(i)) == 0);
    }
    unsigned failures = 0, bad = 0;
    int rc = -MM_ENOMEM;
    for (uint64_t budget = 0; budget < 64 && rc == -MM_ENOMEM; budget++) {
        uint64_t before = frames_free();
        limited.budget = budget;
        rc = mm_as_clone(&child, &parent, &limited.fa);
        if (rc != -MM_ENOMEM)
            break;
        failures++;
        uint64_t pde;
        phys_addr_t table = table_of(&parent, va, &pde);
        bad += !pages_intact(&parent, va, npages) || frames_free() != before ||
               mm_frameref_count(frame_of(&parent, va)) != 1 ||
               mm_frameref_count(table) != 1 || !(pde & PTE_WRITE);
    }
    limited.budget = UINT64_MAX;
    KEXPECT_EQ(t, rc, 0);
    KEXPECT(t, failures > 0);
    KEXPECT_EQ(t, bad, 0);
    ktest_log(t, "the clone failed with budgets 0..%u", failures - 1);
    if (rc == 0)
        KEXPECT_EQ(t, mm_as_destroy(&child), 0);
    KEXPECT(t, pages_intact(&parent, va, npages));
    KEXPECT_EQ(t, mm_as_destroy(&parent), 0);
}

KTEST_SUITE(cow_suite, "cow",
            KTEST_CASE(case_fork_turns),
            KTEST_CASE(case_second_generation_fork),
            KTEST_CASE(case_fork_bigger_than_half_of_free_ram),
            KTEST_CASE(case_kernel_write_stays_private),
            KTEST_CASE(case_one_frame_shared_by_300_spaces),
            KTEST_CASE(case_clone_out_of_frames_changes_nothing),
            KTEST_CASE(case_out_of_frames_in_fork_and_fault),
            KTEST_CASE(case_fork_cycles_on_every_cpu));
