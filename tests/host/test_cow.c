/*
 * test_cow.c - fork with copy-on-write: the frame counts (mm/frameref.c),
 * mm_as_clone and the COW fault resolver (mm/cow.c), and the copy helpers
 * breaking COW (mm/uaccess.c), over simulated physical memory.
 *
 * Frames come from a counting free-list allocator with a budget (it fails
 * after k more frames) that reports to the TLB model; "foreign" frames
 * (mm_as_map_frame) lie below its pool.  Processes read and write their
 * memory as the MMU would: through the tables (uwrite/uread), or through
 * the TLB model's simulated CPUs, calling the resolver on a write fault.
 */
#include "harness.h"
#include "test_fa.h"
#include "tlb_model.h"
#include <pthread.h>
#include <mm/aspace.h>
#include <mm/init.h>
#include <mm/cow.h>
#include <mm/frameref.h>
#include <mm/kmapper.h>

extern unsigned long harness_shootdowns;

#define SIM_SIZE     (64 * MiB)
#define POOL_START   (1 * MiB)
#define FOREIGN_PA   UINT64_C(0x40000)

#define RW (MM_PROT_READ | MM_PROT_WRITE | MM_PROT_USER)
#define RO (MM_PROT_READ | MM_PROT_USER)
#define WFAULT (MM_PF_PRESENT | MM_PF_WRITE | MM_PF_USER)

/* ------------------------------------------------------ test frame source */

static struct test_fa tfa;

static uint64_t *words(uint64_t pa) { return test_fa_words(pa); }

static phys_addr_t ktop;

/* Fresh memory, allocator, count tree and kernel table; the frames out. */
static uint64_t setup(void)
{
    mm_frameref_reset();
    ktop = test_fa_fresh_kernel(&tfa, SIM_SIZE, POOL_START, FOREIGN_PA);
    return tfa.outstanding;
}

/* ----------------------------------------------------- process memory */

static uint64_t pa_of(struct mm_as *as, uint64_t va)
{
    phys_addr_t pa = PA(0);
    if (mm_as_translate(as, VA(va), &pa, NULL) != 0)
        return 0;
    return pa.raw;
}

/* The entry for va in as's table at `level` (0 when there is none). */
static uint64_t entry_of(struct mm_as *as, uint64_t va, unsigned level)
{
    struct pt_mapper m = mm_as_mapper(as);
    pt_entry_t e = { 0 };
    if (pt_get_entry(&m, VA(va), level, &e) != 0)
        return 0;
    return e.raw;
}

static uint64_t leaf_of(struct mm_as *as, uint64_t va)
{
    return entry_of(as, va, PT_LEVEL_PT);
}

/* The level-2 entry above va (0 when there is none). */
static uint64_t pde_of(struct mm_as *as, uint64_t va)
{
    return entry_of(as, va, PT_LEVEL_PD);
}

/* The write permission the MMU gives va: PTE_WRITE in the leaf AND in the
 * level-2 entry (the upper levels are always writable here). */
static bool mmu_writable(struct mm_as *as, uint64_t va)
{
    return (leaf_of(as, va) & pde_of(as, va) & PTE_WRITE) != 0;
}

/* The leaf's write and COW bits as they would be after the table above
 * va is unshared: a private writable leaf under a shared table is COW. */
static uint64_t logical_wc(struct mm_as *as, uint64_t va)
{
    uint64_t e = leaf_of(as, va);
    if (mm_cow_table_entry_shared(pde_of(as, va)) && (e & PTE_WRITE) &&
        (e & (PTE_AS_OWNED | PTE_AS_SHARED)) == PTE_AS_OWNED)
        e = (e & ~PTE_WRITE) | PTE_AS_COW;
    return e & (PTE_WRITE | PTE_AS_COW);
}

/* The level-1 table that maps va. */
static phys_addr_t pt_of(struct mm_as *as, uint64_t va)
{
    return PA(pde_of(as, va) & PTE_ADDR_MASK);
}

/* Unshare the table above va as any write under it would. */
static int unshare(struct mm_as *as, uint64_t va)
{
    mm_spin_lock(&as->lock);
    int err = mm_cow_table_unshare_locked(as, VA(va));
    mm_spin_unlock(&as->lock);
    return err;
}

/* A user write of `byte` at va, as the MMU does it: a write that the
 * leaf and the level-2 entry do not both allow faults into the resolver.
 * The resolver's result (0 if no fault), or -1 for a fault that is not
 * COW. */
static int uwrite(struct mm_as *as, uint64_t va, uint8_t byte)
{
    int r = 0;
    if (!(leaf_of(as, va) & PTE_PRESENT))
        return -1;
    if (!mmu_writable(as, va)) {
        r = mm_cow_fault(as, VA(va), WFAULT);
        if (r != MM_COW_REUSED && r != MM_COW_COPIED)
            return r == MM_COW_NOT_COW ? -1 : r;
        if (!mmu_writable(as, va))
            return -1;
    }
    /* The leaf read once the page is writable, as an MMU would: read
     * before, it could still name the frame another thread of as has just
     * copied away from. */
    uint64_t e = leaf_of(as, va);
    ((uint8_t *)pa_to_ptr(PA(e & PTE_ADDR_MASK)))[va & (PAGE_SIZE - 1)] = byte;
    return r;
}

static int uread(struct mm_as *as, uint64_t va)
{
    uint64_t pa = pa_of(as, va);
    return pa ? ((uint8_t *)pa_to_ptr(PA(pa)))[0] : -1;
}

/* A checksum of every entry of the user half under `table`. */
static uint64_t tree_sum(phys_addr_t table, unsigned level)
{
    uint64_t sum = table.raw;
    for (unsigned i = 0; i < (level == 4 ? 256u : PT_ENTRIES); i++) {
        uint64_t e = words(table.raw)[i];
        sum = sum * 31 + e;
        if ((e & PTE_PRESENT) && level > 1 && !(e & PTE_HUGE))
            sum += tree_sum(PA(e & PTE_ADDR_MASK), level - 1);
    }
    return sum;
}

/* What REFUSED compares: the parent's table, its frames' counts, frames out. */
static struct mm_as *snap_as;
static uint64_t snap_vas[16];
static unsigned snap_nvas;

struct snap { uint64_t tree, outstanding, meta, counts; struct mm_as as; };

static void take_snap(struct snap *s)
{
    memset(s, 0, sizeof *s);
    if (snap_as && !snap_as->dead) {
        s->as = *snap_as;
        s->tree = tree_sum(snap_as->top_pa, 4);
        for (unsigned i = 0; i < snap_nvas; i++)
            s->counts = s->counts * 131 + mm_frameref_count(PA(pa_of(snap_as, snap_vas[i])));
    }
    s->outstanding = tfa.outstanding;
    s->meta = mm_frameref_frames();
}

static bool snap_same(const struct snap *old)
{
    struct snap now;
    take_snap(&now);
    return now.tree == old->tree && now.outstanding == old->outstanding &&
           now.meta == old->meta && now.counts == old->counts &&
           (snap_as == NULL || memcmp(&now.as, &old->as, sizeof now.as) == 0);
}

/* A parent with one page of each kind, spread over several tables:
 * private RW (0x1000, 0x40000000, 0x7fffffffe000, all written), RO
 * (0x2000), shared RW (0x3000), foreign RW (0x4000). */
static const uint64_t kind_vas[] = { 0x1000, 0x40000000, UINT64_C(0x7fffffffe000), 0x2000,
                                     0x3000, 0x4000 };
#define NKIND 6

static void make_parent(struct mm_as *p)
{
    if (mm_as_create(p, &tfa.fa) != 0 || mm_as_map_zeroed(p, VA(0x1000), RW) != 0 ||
        mm_as_map_zeroed(p, VA(0x40000000), RW) != 0 ||
        mm_as_map_zeroed(p, VA(0x7fffffffe000), RW) != 0 ||
        mm_as_map_zeroed(p, VA(0x2000), RO) != 0 ||
        mm_as_map_zeroed(p, VA(0x3000), RW | MM_PROT_SHARED) != 0 ||
        mm_as_map_frame(p, VA(0x4000), PA(FOREIGN_PA), RW) != 0)
        abort();
    for (unsigned i = 0; i < NKIND; i++)
        if (i != 3 && uwrite(p, kind_vas[i], (uint8_t)(0x10 + i)) != 0)
            abort();
    snap_nvas = NKIND - 1;              /* the counted ones */
    memcpy(snap_vas, kind_vas, sizeof kind_vas);
}

/* ------------------------------------------------------------- counts */

static void test_frameref_counts(void)
{
    uint64_t base = setup();
    phys_addr_t f = PA(0x123000);
    CHECK_EQ(mm_frameref_count(f), 1);
    CHECK_EQ(mm_frameref_put(f), 0);                /* no entry: the last */
    CHECK_EQ(mm_frameref_get(f, &tfa.fa), 0);       /* first share: 3 frames */
    CHECK_EQ(mm_frameref_frames(), 3);
    CHECK_EQ(tfa.outstanding, base + 3);
    CHECK_EQ(mm_frameref_get(PA(0x124000), &tfa.fa), 0);   /* same 8 MiB block */
    CHECK_EQ(mm_frameref_get(PA(0x123000 + 8 * MiB), &tfa.fa), 0);  /* one more leaf */
    CHECK_EQ(mm_frameref_frames(), 4);
    CHECK_EQ(mm_frameref_count(f), 2);
    CHECK_EQ(mm_frameref_put(f), 1);
    CHECK_EQ(mm_frameref_put(PA(0x124000)), 1);
    CHECK_EQ(mm_frameref_frames(), 3);
    CHECK_EQ(mm_frameref_put(PA(0x123000 + 8 * MiB)), 1);
    CHECK_EQ(mm_frameref_frames(), 0);
    CHECK_EQ(tfa.outstanding, base);
    /* Refusals change nothing. */
    snap_as = NULL;
    REFUSED(mm_frameref_get(PA(0x123800), &tfa.fa), -MM_EINVAL);
    REFUSED(mm_frameref_get(PA(MM_DIRECT_MAP_MAX_PA), &tfa.fa), -MM_EINVAL);
    REFUSED(mm_frameref_get(f, NULL), -MM_EINVAL);
    /* No metadata frame at each of the three levels: nothing kept. */
    for (uint64_t k = 0; k < 3; k++) {
        tfa.budget = k;
        CHECK_EQ(mm_frameref_get(f, &tfa.fa), -MM_ENOMEM);
        CHECK_EQ(mm_frameref_frames(), 0);
        CHECK_EQ(tfa.outstanding, base);
        CHECK_EQ(mm_frameref_count(f), 1);
    }
    tfa.budget = UINT64_MAX;
}

/* The largest count, and the refusal one past it. */
static void test_frameref_limit(void)
{
    uint64_t base = setup();
    phys_addr_t f = PA(0x200000);
    for (uint32_t n = 1; n < MM_FRAMEREF_MAX; n++)
        if (mm_frameref_get(f, &tfa.fa) != 0) {
            CHECK(!"get refused below the limit");
            break;
        }
    CHECK_EQ(mm_frameref_count(f), MM_FRAMEREF_MAX);
    CHECK_EQ(mm_frameref_get(f, &tfa.fa), -MM_EBUSY);
    CHECK_EQ(mm_frameref_count(f), MM_FRAMEREF_MAX);
    for (uint32_t n = MM_FRAMEREF_MAX; n > 1; n--)
        if (mm_frameref_put(f) != n - 1) {
            CHECK(!"put returned a wrong count");
            break;
        }
    CHECK_EQ(mm_frameref_count(f), 1);
    CHECK_EQ(mm_frameref_frames(), 0);
    CHECK_EQ(tfa.outstanding, base);
}

/* The counts of the frames of `batch` (owned ones), folded into one number. */
static uint64_t batch_counts(const uint64_t *batch, unsigned n)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < n; i++)
        sum = sum * 131 + mm_frameref_count(PA(batch[i] & PTE_ADDR_MASK));
    return sum;
}

/* Batches of gets and puts: only selected entries count, a frame met
 * twice gets two, a refusal in the middle (count limit, no metadata
 * frame for the second block, a frame too high) changes nothing. */
static void test_frameref_batch(void)
{
    uint64_t base = setup();
    const uint64_t sel = PTE_PRESENT | PTE_AS_OWNED;
    uint64_t b[] = { 0x123000 | sel, 0x124000 | PTE_PRESENT, 0x123000 | sel | PTE_WRITE, 0,
                     (0x123000 + 8 * MiB) | sel, 0x300000 | sel };
    const unsigned n = sizeof b / sizeof b[0];
    CHECK_EQ(mm_frameref_get_entries(b, n, sel, &tfa.fa), 4);
    CHECK_EQ(mm_frameref_count(PA(0x123000)), 3);
    CHECK_EQ(mm_frameref_count(PA(0x124000)), 1);
    CHECK_EQ(mm_frameref_count(PA(0x123000 + 8 * MiB)), 2);
    CHECK_EQ(mm_frameref_count(PA(0x300000)), 2);
    CHECK_EQ(mm_frameref_frames(), 4);
    CHECK_EQ(mm_frameref_put_entries(b, n, sel), 0);
    CHECK_EQ(mm_frameref_frames(), 0);
    CHECK_EQ(mm_frameref_put_entries(b, n, sel), 4);    /* each had count 1 */
    CHECK_EQ(tfa.outstanding, base);
    /* The last frame at its limit: the batch refuses, nothing changed. */
    for (uint32_t k = 1; k < MM_FRAMEREF_MAX; k++)
        REQUIRE(mm_frameref_get(PA(0x300000), &tfa.fa) == 0);
    uint64_t counts = batch_counts(b, n), meta = mm_frameref_frames(), out = tfa.outstanding;
    CHECK_EQ(mm_frameref_get_entries(b, n, sel, &tfa.fa), -MM_EBUSY);
    CHECK_EQ(batch_counts(b, n), counts);
    CHECK_EQ(mm_frameref_frames(), meta);
    CHECK_EQ(tfa.outstanding, out);
    for (uint32_t k = 1; k < MM_FRAMEREF_MAX; k++)
        (void)mm_frameref_put(PA(0x300000));
    /* Frames for the first block's path only: the second block fails. */
    counts = batch_counts(b, n);
    tfa.budget = 3;
    CHECK_EQ(mm_frameref_get_entries(b, n, sel, &tfa.fa), -MM_ENOMEM);
    tfa.budget = UINT64_MAX;
    CHECK_EQ(batch_counts(b, n), counts);
    CHECK_EQ(mm_frameref_frames(), 0);
    CHECK_EQ(tfa.outstanding, base);
    /* Bad input: one log line each, nothing changed. */
    snap_as = NULL;
    b[3] = MM_DIRECT_MAP_MAX_PA | sel;
    REFUSED(mm_frameref_get_entries(b, n, sel, &tfa.fa), -MM_EINVAL);
    REFUSED(mm_frameref_get_entries(NULL, n, sel, &tfa.fa), -MM_EINVAL);
    REFUSED(mm_frameref_get_entries(b, n, 0, &tfa.fa), -MM_EINVAL);
    REFUSED(mm_frameref_get_entries(b, n, sel, NULL), -MM_EINVAL);
    REFUSED((int)mm_frameref_put_entries(NULL, n, sel), 0);
    CHECK_EQ(mm_frameref_count(PA(0x123000)), 1);
    CHECK_EQ(mm_frameref_frames(), 0);
    CHECK_EQ(tfa.outstanding, base);
}

/* A clone edits no leaf: both share the parent's level-1 tables through
 * read-only COW level-2 entries, each table counted twice, no data frame
 * counted.  The unsharing step then edits only the leaves it
 * write-protects, in both copies, and gives those accessed and dirty (a
 * bit an MMU set meanwhile cannot be lost); every other leaf keeps its
 * exact bits. */
static void test_clone_leaf_bits(void)
{
    uint64_t base = setup();
    struct mm_as p, c;
    make_parent(&p);
    uint64_t before[NKIND];
    for (unsigned i = 0; i < NKIND; i++)
        before[i] = leaf_of(&p, kind_vas[i]);
    REQUIRE(mm_as_clone(&c, &p, &tfa.fa) == 0);
    for (unsigned i = 0; i < NKIND; i++) {
        CHECK_EQ(leaf_of(&p, kind_vas[i]), before[i]);
        CHECK_EQ(pt_of(&c, kind_vas[i]).raw, pt_of(&p, kind_vas[i]).raw);
        CHECK(mm_cow_table_entry_shared(pde_of(&p, kind_vas[i])));
        CHECK(mm_cow_table_entry_shared(pde_of(&c, kind_vas[i])));
        CHECK_EQ(mm_frameref_count(pt_of(&p, kind_vas[i])), 2);
        CHECK_EQ(mm_frameref_count(PA(pa_of(&p, kind_vas[i]))), 1);
    }
    for (unsigned i = 0; i < NKIND; i++)
        CHECK_EQ(unshare(&c, kind_vas[i]), 0);
    for (unsigned i = 0; i < NKIND; i++) {
        uint64_t want = i < 3 ? (before[i] & ~PTE_WRITE) | PTE_AS_COW | PTE_ACCESSED | PTE_DIRTY
                              : before[i];
        CHECK_EQ(leaf_of(&p, kind_vas[i]), want);
        CHECK_EQ(leaf_of(&c, kind_vas[i]), want);
        CHECK(pt_of(&c, kind_vas[i]).raw != pt_of(&p, kind_vas[i]).raw);
        CHECK_EQ(pde_of(&c, kind_vas[i]) & (PTE_WRITE | PTE_AS_COW), PTE_WRITE);
        CHECK(mm_cow_table_entry_shared(pde_of(&p, kind_vas[i])));
        CHECK_EQ(mm_frameref_count(pt_of(&p, kind_vas[i])), 1);
        CHECK_EQ(mm_frameref_count(PA(pa_of(&p, kind_vas[i]))), i < 5 ? 2 : 1);
    }
    CHECK_EQ(mm_as_destroy(&c), 0);
    CHECK_EQ(mm_as_destroy(&p), 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(mm_frameref_frames(), 0);
}

/* -------------------------------------------------------------- clone */

static void test_clone_semantics(void)
{
    uint64_t base = setup();
    struct mm_as p, c;
    make_parent(&p);
    uint64_t pa[NKIND];
    for (unsigned i = 0; i < NKIND; i++)
        pa[i] = pa_of(&p, kind_vas[i]);
    REQUIRE(mm_as_clone(&c, &p, &tfa.fa) == 0);
    CHECK_EQ(c.table_frames, p.table_frames);
    CHECK_EQ(c.owned_frames, p.owned_frames);
    for (unsigned i = 0; i < NKIND; i++) {
        uint64_t pe = leaf_of(&p, kind_vas[i]), ce = leaf_of(&c, kind_vas[i]);
        CHECK_EQ(pa_of(&c, kind_vas[i]), pa[i]);
        CHECK_EQ(pa_of(&p, kind_vas[i]), pa[i]);
        uint64_t want = i < 3 ? PTE_AS_COW : i >= 4 ? PTE_WRITE : 0;
        CHECK_EQ(logical_wc(&p, kind_vas[i]), want);
        CHECK_EQ(logical_wc(&c, kind_vas[i]), want);
        CHECK(!mmu_writable(&p, kind_vas[i]) && !mmu_writable(&c, kind_vas[i]));
        CHECK_EQ(pe, ce);
        CHECK_EQ(!!(ce & PTE_AS_OWNED), i < 5);
        CHECK_EQ(mm_frameref_count(PA(pa[i])), 1);     /* counted at unshare */
        CHECK_EQ(uread(&c, kind_vas[i]), i == 3 ? 0 : 0x10 + (int)i);
    }
    /* A COW page still says writable, so protect round-trips. */
    unsigned prot = 0;
    CHECK_EQ(mm_as_translate(&c, VA(0x1000), NULL, &prot), 0);
    CHECK_EQ(prot, RW);
    CHECK_EQ(mm_as_translate(&c, VA(0x3000), NULL, &prot), 0);
    CHECK_EQ(prot, RW | MM_PROT_SHARED);
    /* The shared page is one page for both; the foreign one too.  The
     * child's write unshares the table of 0x1000..0x4000: its owned frames
     * get their counts then. */
    CHECK_EQ(uwrite(&c, 0x3000, 0x77), MM_COW_REUSED);
    CHECK_EQ(uread(&p, 0x3000), 0x77);
    CHECK_EQ(mm_frameref_count(PA(pa[0])), 2);
    CHECK_EQ(mm_frameref_count(PA(pa[3])), 2);
    CHECK_EQ(mm_frameref_count(PA(pa[4])), 2);
    CHECK_EQ(mm_frameref_count(PA(pa[1])), 1);  /* another table, still shared */
    CHECK_EQ(logical_wc(&c, 0x3000), PTE_WRITE);
    CHECK_EQ(logical_wc(&p, 0x1000), PTE_AS_COW);
    CHECK_EQ(uwrite(&p, 0x4000, 0x66), MM_COW_REUSED);    /* count 1: W back */
    CHECK_EQ(uread(&c, 0x4000), 0x66);
    /* A read-only page stays read-only (a real fault). */
    CHECK_EQ(uwrite(&c, 0x2000, 1), -1);
    CHECK_EQ(mm_as_destroy(&c), 0);
    for (unsigned i = 0; i < 5; i++)
        CHECK_EQ(mm_frameref_count(PA(pa[i])), 1);
    CHECK_EQ(mm_as_destroy(&p), 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(mm_frameref_frames(), 0);
    CHECK_EQ(tfa.bad_frees, 0);
}

static void test_clone_refusals(void)
{
    setup();
    struct mm_as p, c, dead;
    make_parent(&p);
    snap_as = &p;
    struct frame_allocator nofree = { test_fa_alloc, NULL };
    REFUSED(mm_as_clone(NULL, &p, &tfa.fa), -MM_EINVAL);
    REFUSED(mm_as_clone(&c, &p, NULL), -MM_EINVAL);
    REFUSED(mm_as_clone(&c, &p, &nofree), -MM_EINVAL);
    REFUSED(mm_as_clone(&p, &p, &tfa.fa), -MM_EINVAL);
    REFUSED(mm_as_clone(&c, NULL, &tfa.fa), -MM_EINVAL);
    REQUIRE(mm_as_create(&dead, &tfa.fa) == 0);
    REQUIRE(mm_as_destroy(&dead) == 0);
    REFUSED(mm_as_clone(&c, &dead, &tfa.fa), -MM_EINVAL);
    REFUSED(mm_cow_fault(NULL, VA(0x1000), WFAULT), -MM_EINVAL);
    REFUSED(mm_cow_fault(&dead, VA(0x1000), WFAULT), -MM_EINVAL);
    /* The shared bit cannot be changed by protect. */
    REFUSED(mm_as_protect(&p, VA(0x3000), RW), -MM_EINVAL);
    REFUSED(mm_as_protect(&p, VA(0x1000), RW | MM_PROT_SHARED), -MM_EINVAL);
    CHECK_EQ(mm_as_destroy(&p), 0);
}

/* Out of frames at every point of a clone: the parent exactly as before,
 * nothing leaked; then the first budget that suffices works. */
static void test_clone_enomem_every_frame(void)
{
    uint64_t base = setup();
    struct mm_as p, c;
    make_parent(&p);
    uint64_t before = tfa.outstanding;
    snap_as = &p;
    uint64_t k = 0;
    for (;; k++) {
        struct snap s;
        take_snap(&s);
        tfa.budget = k;
        int err = mm_as_clone(&c, &p, &tfa.fa);
        tfa.budget = UINT64_MAX;
        if (err == 0)
            break;
        CHECK_EQ(err, -MM_ENOMEM);
        CHECK(snap_same(&s));
        for (unsigned i = 0; i < NKIND; i++)
            CHECK_EQ(pde_of(&p, kind_vas[i]) & (PTE_WRITE | PTE_AS_COW), PTE_WRITE);
        REQUIRE(k < 100);
    }
    /* Top + the parent's 5 upper tables (2 level-3, 3 level-2; its 3
     * level-1 tables are shared) + 3 count-tree frames for those. */
    CHECK_EQ(p.table_frames, 8);
    CHECK_EQ(k, 1 + 5 + 3);
    CHECK_EQ(tfa.outstanding, before + k);
    CHECK_EQ(mm_as_destroy(&c), 0);
    CHECK_EQ(mm_as_destroy(&p), 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(mm_frameref_frames(), 0);
    CHECK_EQ(tfa.bad_frees, 0);
}

/* A table's count at its limit refuses the clone with -MM_EBUSY, nothing
 * changed. */
static void test_clone_count_limit(void)
{
    uint64_t base = setup();
    struct mm_as p, c;
    make_parent(&p);
    phys_addr_t f = pt_of(&p, 0x40000000);
    for (uint32_t n = 1; n < MM_FRAMEREF_MAX; n++)
        REQUIRE(mm_frameref_get(f, &tfa.fa) == 0);
    struct snap s;
    snap_as = &p;
    take_snap(&s);
    unsigned long lines = harness_log_lines;
    CHECK_EQ(mm_as_clone(&c, &p, &tfa.fa), -MM_EBUSY);
    CHECK_EQ(harness_log_lines, lines);
    CHECK(snap_same(&s));
    for (uint32_t n = 1; n < MM_FRAMEREF_MAX; n++)
        (void)mm_frameref_put(f);
    CHECK_EQ(mm_as_clone(&c, &p, &tfa.fa), 0);
    CHECK_EQ(mm_as_destroy(&c), 0);
    CHECK_EQ(mm_as_destroy(&p), 0);
    CHECK_EQ(tfa.outstanding, base);
}

/* A hand-made 2 MiB user leaf: clone refuses it without walking it as a
 * table, and the resolver calls it NOT_COW. */
static void test_huge_user_leaf(void)
{
    uint64_t base = setup();
    struct mm_as p, c;
    make_parent(&p);
    struct pt_mapper m = mm_as_mapper(&p);
    struct pt_flush tok = PT_FLUSH_INIT;
    /* Its frames are the pool's last 2 MiB: never handed out here. */
    REQUIRE(pt_map_huge(&m, VA(0x600000), PA(SIM_SIZE - PAGE_2M_SIZE), PAGE_2M_SIZE,
                        PTE_USER | PTE_NX, &tok) == 0);
    pt_flush(&tok);
    snap_as = &p;
    REFUSED(mm_as_clone(&c, &p, &tfa.fa), -MM_EINVAL);
    CHECK_EQ(mm_cow_fault(&p, VA(0x600000), WFAULT), MM_COW_NOT_COW);
    CHECK_EQ(mm_cow_fault(&p, VA(0x7ff000), WFAULT), MM_COW_NOT_COW);
    REQUIRE(pt_unmap_phys(&m, VA(0x600000), false, NULL, &tok) == 0);
    pt_flush(&tok);
    CHECK_EQ(mm_as_clone(&c, &p, &tfa.fa), 0);
    CHECK_EQ(mm_as_destroy(&c), 0);
    CHECK_EQ(mm_as_destroy(&p), 0);
    CHECK_EQ(tfa.outstanding, base);
}

/* ----------------------------------------------------------- resolver */

static void test_resolver_outcomes(void)
{
    uint64_t base = setup();
    struct mm_as p, c;
    make_parent(&p);
    uint64_t old = pa_of(&p, 0x1000);
    REQUIRE(mm_as_clone(&c, &p, &tfa.fa) == 0);
    /* Not COW: not a write, not present, a read-only page, a shared one,
     * unmapped, kernel half, non-canonical. */
    CHECK_EQ(mm_cow_fault(&c, VA(0x1000), MM_PF_PRESENT), MM_COW_NOT_COW);
    CHECK_EQ(mm_cow_fault(&c, VA(0x1000), MM_PF_WRITE), MM_COW_NOT_COW);
    CHECK_EQ(mm_cow_fault(&c, VA(0x2000), WFAULT), MM_COW_NOT_COW);
    CHECK_EQ(mm_cow_fault(&c, VA(0x9000), WFAULT), MM_COW_NOT_COW);
    CHECK_EQ(mm_cow_fault(&c, VA(MM_DIRECT_MAP_BASE), WFAULT), MM_COW_NOT_COW);
    CHECK_EQ(mm_cow_fault(&c, VA(UINT64_C(0x0000900000000000)), WFAULT), MM_COW_NOT_COW);
    CHECK_EQ(mm_cow_fault(&c, VA(0), WFAULT), MM_COW_NOT_COW);
    CHECK_EQ(logical_wc(&c, 0x1000), PTE_AS_COW);
    CHECK(mm_cow_table_entry_shared(pde_of(&c, 0x1000)));   /* no NOT_COW unshared it */
    /* Out of frames for the table copy: nothing changes. */
    uint64_t out = tfa.outstanding;
    snap_as = &c;
    struct snap sc;
    take_snap(&sc);
    tfa.budget = 0;
    CHECK_EQ(mm_cow_fault(&c, VA(0x1234), WFAULT), -MM_ENOMEM);
    tfa.budget = UINT64_MAX;
    CHECK(snap_same(&sc));
    snap_as = NULL;
    CHECK_EQ(tfa.outstanding, out);
    CHECK_EQ(pa_of(&c, 0x1000), old);
    CHECK_EQ(mm_frameref_count(PA(old)), 1);
    /* Enough for the table copy (the count tree has the block), not for
     * the page: the table is unshared (invisible to the process), the
     * page is not. */
    tfa.budget = 1;
    CHECK_EQ(mm_cow_fault(&c, VA(0x1234), WFAULT), -MM_ENOMEM);
    tfa.budget = UINT64_MAX;
    CHECK_EQ(pa_of(&c, 0x1000), old);
    CHECK_EQ(uread(&c, 0x1000), 0x10);
    CHECK_EQ(mm_frameref_count(PA(old)), 2);
    CHECK_EQ(leaf_of(&c, 0x1000) & (PTE_WRITE | PTE_AS_COW), PTE_AS_COW);
    /* Count 2: the child copies (any address in the page). */
    CHECK_EQ(mm_cow_fault(&c, VA(0x1234), WFAULT), MM_COW_COPIED);
    uint64_t fresh = pa_of(&c, 0x1000);
    CHECK(fresh != old);
    CHECK_EQ(uread(&c, 0x1000), 0x10);
    CHECK_EQ(mm_frameref_count(PA(old)), 1);
    CHECK_EQ(leaf_of(&c, 0x1000) & (PTE_WRITE | PTE_AS_COW | PTE_AS_OWNED),
             PTE_WRITE | PTE_AS_OWNED);
    /* Writable now: a second fault (another CPU's) is REUSED, no copy. */
    CHECK_EQ(mm_cow_fault(&c, VA(0x1000), WFAULT), MM_COW_REUSED);
    CHECK_EQ(pa_of(&c, 0x1000), fresh);
    /* Count 1 for the parent: reused in place. */
    out = tfa.outstanding;
    CHECK_EQ(mm_cow_fault(&p, VA(0x1000), WFAULT), MM_COW_REUSED);
    CHECK_EQ(pa_of(&p, 0x1000), old);
    CHECK_EQ(tfa.outstanding, out);
    CHECK_EQ(leaf_of(&p, 0x1000) & (PTE_WRITE | PTE_AS_COW), PTE_WRITE);
    /* Each writes its own. */
    CHECK_EQ(uwrite(&p, 0x1000, 0xaa), 0);
    CHECK_EQ(uwrite(&c, 0x1000, 0xbb), 0);
    CHECK_EQ(uread(&p, 0x1000), 0xaa);
    CHECK_EQ(uread(&c, 0x1000), 0xbb);
    CHECK_EQ(mm_as_destroy(&p), 0);
    CHECK_EQ(mm_as_destroy(&c), 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(tfa.bad_frees, 0);
}

/* Fork of a fork of a fork: COW stays right in every generation, with
 * tables shared four ways, three ways (a table one generation copied) and
 * pages made COW by an unshare in an older table. */
#define NGEN 4
static void test_second_generation(void)
{
    uint64_t base = setup();
    struct mm_as g[NGEN];
    make_parent(&g[0]);
    REQUIRE(mm_as_clone(&g[1], &g[0], &tfa.fa) == 0);
    CHECK_EQ(uwrite(&g[1], 0x40000000, 0x21), MM_COW_COPIED);
    REQUIRE(mm_as_clone(&g[2], &g[1], &tfa.fa) == 0);
    /* g1's copied page is COW again, shared with g2. */
    CHECK_EQ(logical_wc(&g[1], 0x40000000), PTE_AS_COW);
    CHECK_EQ(logical_wc(&g[2], 0x40000000), PTE_AS_COW);
    REQUIRE(mm_as_clone(&g[3], &g[2], &tfa.fa) == 0);
    /* A page untouched since g0: one frame, in a table four share. */
    CHECK_EQ(mm_frameref_count(PA(pa_of(&g[0], 0x1000))), 1);
    CHECK_EQ(mm_frameref_count(pt_of(&g[0], 0x1000)), NGEN);
    CHECK_EQ(pt_of(&g[3], 0x1000).raw, pt_of(&g[0], 0x1000).raw);
    CHECK_EQ(mm_frameref_count(pt_of(&g[1], 0x40000000)), 3);
    for (unsigned i = NGEN; i-- > 1;)
        CHECK_EQ(uwrite(&g[i], 0x1000, (uint8_t)(0x30 + i)), MM_COW_COPIED);
    CHECK_EQ(uwrite(&g[0], 0x1000, 0x30), MM_COW_REUSED);
    for (unsigned i = NGEN; i-- > 2;)
        CHECK_EQ(uwrite(&g[i], 0x40000000, (uint8_t)(0x40 + i)), MM_COW_COPIED);
    CHECK_EQ(uwrite(&g[1], 0x40000000, 0x41), MM_COW_REUSED);
    for (unsigned i = 0; i < NGEN; i++) {
        CHECK_EQ(uread(&g[i], 0x1000), 0x30 + (int)i);
        CHECK_EQ(uread(&g[i], 0x7fffffffe000), 0x12);
        CHECK_EQ(uread(&g[i], 0x40000000), i == 0 ? 0x11 : 0x40 + (int)i);
    }
    /* A page nobody wrote since the first clone: all four map it through
     * one table; g0's write copies the table and the page. */
    CHECK_EQ(uwrite(&g[0], 0x7fffffffe000, 0x50), MM_COW_COPIED);
    CHECK_EQ(uread(&g[3], 0x7fffffffe000), 0x12);
    for (unsigned i = 0; i < NGEN; i++)
        CHECK_EQ(mm_as_destroy(&g[i]), 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(mm_frameref_frames(), 0);
}

/* More than 300 address spaces share one frame. */
#define NSHARE 320
static void test_many_sharers(void)
{
    uint64_t base = setup();
    static struct mm_as a[NSHARE];
    REQUIRE(mm_as_create(&a[0], &tfa.fa) == 0);
    REQUIRE(mm_as_map_zeroed(&a[0], VA(0x5000), RW) == 0);
    REQUIRE(uwrite(&a[0], 0x5000, 0x99) == 0);
    phys_addr_t f = PA(pa_of(&a[0], 0x5000));
    for (unsigned i = 1; i < NSHARE; i++)
        REQUIRE(mm_as_clone(&a[i], &a[i / 2], &tfa.fa) == 0);
    CHECK_EQ(mm_frameref_count(f), 1);
    CHECK_EQ(mm_frameref_count(pt_of(&a[0], 0x5000)), NSHARE);
    for (unsigned i = 0; i < NSHARE; i++)
        CHECK_EQ(pa_of(&a[i], 0x5000), f.raw);
    /* Half of them write (copies), the rest exit; the last one reuses. */
    for (unsigned i = 1; i < NSHARE; i += 2)
        CHECK_EQ(uwrite(&a[i], 0x5000, (uint8_t)i), MM_COW_COPIED);
    for (unsigned i = 2; i < NSHARE; i += 2)
        CHECK_EQ(mm_as_destroy(&a[i]), 0);
    CHECK_EQ(mm_frameref_count(f), 1);
    CHECK_EQ(uwrite(&a[0], 0x5000, 0x98), MM_COW_REUSED);
    for (unsigned i = 1; i < NSHARE; i += 2) {
        CHECK_EQ(uread(&a[i], 0x5000), (uint8_t)i);
        CHECK_EQ(mm_as_destroy(&a[i]), 0);
    }
    CHECK_EQ(mm_as_destroy(&a[0]), 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(mm_frameref_frames(), 0);
}

/* The kernel's copy to user into a COW page stays private. */
static void test_copy_to_user_breaks_cow(void)
{
    uint64_t base = setup();
    struct mm_as p, c;
    make_parent(&p);
    REQUIRE(mm_as_map_zeroed(&p, VA(0x5000), RW) == 0);
    REQUIRE(mm_as_map_zeroed(&p, VA(0x6000), RW) == 0);
    REQUIRE(mm_as_clone(&c, &p, &tfa.fa) == 0);
    uint8_t buf[PAGE_SIZE + 64];
    memset(buf, 0xcd, sizeof buf);
    /* Spans the COW page 0x1000, the RO page 0x2000: refused, nothing changes. */
    uint64_t out = tfa.outstanding;
    CHECK_EQ(mm_copy_to_user(&c, VA(0x1f00), buf, 0x200), -MM_EFAULT);
    CHECK_EQ(tfa.outstanding, out);
    CHECK_EQ(logical_wc(&c, 0x1000), PTE_AS_COW);
    /* Out of frames: -MM_ENOMEM, both still see the old bytes. */
    tfa.budget = 0;
    CHECK_EQ(mm_copy_to_user(&c, VA(0x1000), buf, 16), -MM_ENOMEM);
    tfa.budget = UINT64_MAX;
    CHECK_EQ(uread(&c, 0x1000), 0x10);
    /* One COW page, then a copy across two (0x5000 and 0x6000). */
    CHECK_EQ(mm_copy_to_user(&c, VA(0x1000), buf, 16), 0);
    CHECK_EQ(mm_copy_to_user(&c, VA(0x5ff8), buf, 16), 0);
    CHECK_EQ(uread(&c, 0x1000), 0xcd);
    CHECK_EQ(uread(&p, 0x1000), 0x10);
    CHECK_EQ(uread(&c, 0x6000), 0xcd);
    CHECK_EQ(uread(&p, 0x6000), 0);
    CHECK_EQ(((uint8_t *)pa_to_ptr(PA(pa_of(&p, 0x5000))))[0xff8], 0);
    CHECK_EQ(((uint8_t *)pa_to_ptr(PA(pa_of(&c, 0x5000))))[0xff8], 0xcd);
    CHECK(pa_of(&p, 0x5000) != pa_of(&c, 0x5000));
    CHECK(pa_of(&p, 0x6000) != pa_of(&c, 0x6000));
    CHECK_EQ(mm_frameref_count(PA(pa_of(&p, 0x1000))), 1);
    /* Into the foreign page and back. */
    CHECK_EQ(mm_copy_to_user(&p, VA(0x4000), buf, 8), 0);
    CHECK_EQ(uread(&c, 0x4000), 0xcd);
    CHECK_EQ(mm_as_destroy(&c), 0);
    CHECK_EQ(mm_as_destroy(&p), 0);
    CHECK_EQ(tfa.outstanding, base);
}

/* Protect on shared frames: writable while shared means COW. */
static void test_protect_keeps_cow(void)
{
    uint64_t base = setup();
    struct mm_as p, c;
    make_parent(&p);
    REQUIRE(mm_as_clone(&c, &p, &tfa.fa) == 0);
    CHECK_EQ(mm_as_protect(&c, VA(0x1000), RO), 0);
    CHECK_EQ(leaf_of(&c, 0x1000) & (PTE_WRITE | PTE_AS_COW), 0);
    CHECK_EQ(uwrite(&c, 0x1000, 1), -1);
    CHECK_EQ(mm_as_protect(&c, VA(0x1000), RW), 0);
    CHECK_EQ(leaf_of(&c, 0x1000) & (PTE_WRITE | PTE_AS_COW), PTE_AS_COW);
    /* The RO page made writable while shared: COW, the parent unaffected. */
    CHECK_EQ(mm_as_protect(&c, VA(0x2000), RW), 0);
    CHECK_EQ(uwrite(&c, 0x2000, 5), MM_COW_COPIED);
    CHECK_EQ(uread(&p, 0x2000), 0);
    CHECK_EQ(uwrite(&p, 0x2000, 5), -1);
    /* Protect to writable once the count is 1 gives a plain writable page. */
    CHECK_EQ(mm_as_protect(&p, VA(0x2000), RW), 0);
    CHECK_EQ(leaf_of(&p, 0x2000) & (PTE_WRITE | PTE_AS_COW), PTE_WRITE);
    CHECK_EQ(mm_as_destroy(&c), 0);
    /* The parent's COW pages are alone now: reused at the write. */
    CHECK_EQ(uwrite(&p, 0x40000000, 3), MM_COW_REUSED);
    CHECK_EQ(mm_as_unmap(&p, VA(0x1000)), 0);
    CHECK_EQ(mm_as_destroy(&p), 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(tfa.bad_frees, 0);
}

/* Unmap and destroy drop counts; the last drop frees the frame. */
static void test_unmap_destroy_counts(void)
{
    uint64_t base = setup();
    struct mm_as p, c;
    make_parent(&p);
    phys_addr_t f = PA(pa_of(&p, 0x1000));
    REQUIRE(mm_as_clone(&c, &p, &tfa.fa) == 0);
    uint64_t out = tfa.outstanding;
    CHECK_EQ(mm_as_unmap(&p, VA(0x1000)), 0);
    CHECK_EQ(tfa.outstanding, out + 1);          /* c still maps it; p's own table */
    CHECK_EQ(mm_frameref_count(f), 1);
    CHECK(test_fa_is_out(&tfa, f));
    CHECK_EQ(mm_as_unmap(&c, VA(0x1000)), 0);
    CHECK(!test_fa_is_out(&tfa, f));
    CHECK_EQ(mm_as_destroy(&p), 0);
    CHECK_EQ(uwrite(&c, 0x40000000, 1), MM_COW_REUSED);
    CHECK_EQ(mm_as_destroy(&c), 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(tfa.bad_frees, 0);
}

/* ------------------------------------------- TLB model: the parent's flush */

/* A user write on a simulated CPU; a write fault goes to the resolver
 * (on that CPU) and the access is retried once.  The result of the
 * final access. */
static enum tlb_model_result cpu_write(unsigned cpu, struct mm_as *as, uint64_t va)
{
    enum tlb_model_result r = tlb_model_access(cpu, VA(va), TLB_ACCESS_WRITE | TLB_ACCESS_USER);
    if (r == TLB_FAULT_WRITE) {
        unsigned saved = harness_cpu_id;
        harness_cpu_id = cpu;
        int res = mm_cow_fault(as, VA(va), WFAULT);
        harness_cpu_id = saved;
        if (res == MM_COW_NOT_COW || res < 0)
            return r;
        r = tlb_model_access(cpu, VA(va), TLB_ACCESS_WRITE | TLB_ACCESS_USER);
    }
    return r;
}

/*
 * The parent runs on CPUs 0, 1 and 2, whose TLBs hold writable entries
 * for its private pages; CPU 0 clones it.  After the clone no CPU may
 * write the shared frame through an old entry: each write faults, and the
 * resolver gives that process its own frame.  One shootdown in all.
 */
static void test_clone_flushes_parent(void)
{
    uint64_t base = setup();
    tlb_model_init(4, ktop);
    struct mm_as p, c;
    make_parent(&p);
    for (unsigned cpu = 0; cpu < 3; cpu++) {
        harness_cpu_id = cpu;
        mm_as_switch(&p);
        for (unsigned i = 0; i < 3; i++)
            CHECK_EQ(tlb_model_access(cpu, VA(kind_vas[i]), TLB_ACCESS_WRITE |
                                      TLB_ACCESS_USER), TLB_OK);
    }
    harness_cpu_id = 0;
    unsigned long sd = harness_shootdowns;
    REQUIRE(mm_as_clone(&c, &p, &tfa.fa) == 0);
    CHECK_EQ(harness_shootdowns, sd + 1);
    CHECK_EQ(harness_shootdown_targets, 0x6);
    CHECK_EQ(tlb_model_check("test_clone_flushes_parent"), 0);
    phys_addr_t f = PA(pa_of(&c, 0x1000));
    for (unsigned cpu = 0; cpu < 3; cpu++) {
        phys_addr_t pa;
        CHECK(!tlb_model_lookup(cpu, VA(0x1000), &pa) || !mmu_writable(&p, 0x1000));
        CHECK_EQ(tlb_model_access(cpu, VA(0x1000), TLB_ACCESS_WRITE | TLB_ACCESS_USER),
                 TLB_FAULT_WRITE);
    }
    /* CPU 1 writes: the parent copies (count 2), the child keeps f. */
    CHECK_EQ(cpu_write(1, &p, 0x1000), TLB_OK);
    phys_addr_t pa;
    CHECK(tlb_model_lookup(1, VA(0x1000), &pa) && pa.raw != f.raw);
    CHECK_EQ(pa_of(&c, 0x1000), f.raw);
    CHECK_EQ(tlb_model_check("test_clone_flushes_parent: after copy"), 0);
    /* CPU 2 had a read-only entry for f: it faults and finds the page
     * writable already (REUSED), then writes the new frame. */
    CHECK_EQ(cpu_write(2, &p, 0x1000), TLB_OK);
    CHECK(tlb_model_lookup(2, VA(0x1000), &pa) && pa.raw == pa_of(&p, 0x1000));
    /* The child on CPU 3 reuses f (count 1 now). */
    harness_cpu_id = 3;
    mm_as_switch(&c);
    CHECK_EQ(cpu_write(3, &c, 0x1000), TLB_OK);
    CHECK_EQ(pa_of(&c, 0x1000), f.raw);
    for (unsigned cpu = 0; cpu < 4; cpu++) {
        harness_cpu_id = cpu;
        mm_as_switch(NULL);
    }
    harness_cpu_id = 0;
    CHECK_EQ(mm_as_destroy(&c), 0);
    CHECK_EQ(mm_as_destroy(&p), 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(tlb_model_violations, 0);
    tlb_model_fini();
}

/* ------------------------------------------------------ shared tables */

/* A table's count is the number of level-2 entries pointing at it: each
 * clone adds one, each destroy or unshare takes one away. */
static void test_table_share_count(void)
{
    uint64_t base = setup();
    struct mm_as p, c, g;
    make_parent(&p);
    phys_addr_t t = pt_of(&p, 0x1000);
    CHECK_EQ(mm_frameref_count(t), 1);
    CHECK(!mm_cow_table_entry_shared(pde_of(&p, 0x1000)));
    REQUIRE(mm_as_clone(&c, &p, &tfa.fa) == 0);
    CHECK_EQ(mm_frameref_count(t), 2);
    REQUIRE(mm_as_clone(&g, &c, &tfa.fa) == 0);
    CHECK_EQ(mm_frameref_count(t), 3);
    CHECK_EQ(pt_of(&g, 0x1000).raw, t.raw);
    CHECK_EQ(g.table_frames, p.table_frames);
    CHECK_EQ(g.owned_frames, p.owned_frames);
    CHECK_EQ(mm_as_destroy(&c), 0);
    CHECK_EQ(mm_frameref_count(t), 2);
    CHECK(test_fa_is_out(&tfa, t));
    CHECK_EQ(uwrite(&g, 0x1000, 0x61), MM_COW_COPIED);
    CHECK_EQ(mm_frameref_count(t), 1);
    CHECK(pt_of(&g, 0x1000).raw != t.raw);
    CHECK_EQ(uread(&p, 0x1000), 0x10);
    CHECK_EQ(uread(&g, 0x1000), 0x61);
    CHECK_EQ(mm_as_destroy(&g), 0);
    CHECK_EQ(mm_as_destroy(&p), 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(mm_frameref_frames(), 0);
    CHECK_EQ(tfa.bad_frees, 0);
}

/* Count 1 (the child left without writing): the parent's write gives its
 * level-2 entry PTE_WRITE back, takes no frame, and its untouched leaves
 * are writable as they were. */
static void test_unshare_count_one(void)
{
    uint64_t base = setup();
    struct mm_as p, c;
    make_parent(&p);
    uint64_t leaf = leaf_of(&p, 0x1000);
    phys_addr_t t = pt_of(&p, 0x1000), f = PA(pa_of(&p, 0x1000));
    REQUIRE(mm_as_clone(&c, &p, &tfa.fa) == 0);
    CHECK_EQ(mm_as_destroy(&c), 0);
    CHECK(mm_cow_table_entry_shared(pde_of(&p, 0x1000)));
    uint64_t out = tfa.outstanding, meta = mm_frameref_frames();
    CHECK_EQ(uwrite(&p, 0x1000, 0x71), MM_COW_REUSED);
    CHECK_EQ(tfa.outstanding, out);
    CHECK(mm_frameref_frames() <= meta);
    CHECK_EQ(pt_of(&p, 0x1000).raw, t.raw);
    CHECK_EQ(pde_of(&p, 0x1000) & (PTE_WRITE | PTE_AS_COW), PTE_WRITE);
    CHECK_EQ(leaf_of(&p, 0x1000), leaf);
    CHECK_EQ(pa_of(&p, 0x1000), f.raw);
    CHECK_EQ(mm_frameref_count(t), 1);
    CHECK_EQ(mm_as_destroy(&p), 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(mm_frameref_frames(), 0);
}

/* The first sharer to unshare leaves COW leaves behind in the old table:
 * the parent, alone in it afterwards (count 1), must still copy a page
 * the child's copy of the table maps, not write it in place. */
static void test_unshare_protects_other_sharers(void)
{
    uint64_t base = setup();
    struct mm_as p, c;
    make_parent(&p);
    REQUIRE(mm_as_map_zeroed(&p, VA(0x5000), RW) == 0);
    REQUIRE(uwrite(&p, 0x5000, 0x55) == 0);
    REQUIRE(mm_as_clone(&c, &p, &tfa.fa) == 0);
    CHECK_EQ(uwrite(&c, 0x1000, 0x61), MM_COW_COPIED);     /* c unshares the table */
    CHECK_EQ(mm_frameref_count(pt_of(&p, 0x5000)), 1);
    CHECK_EQ(uwrite(&p, 0x5000, 0x66), MM_COW_COPIED);
    CHECK_EQ(uread(&c, 0x5000), 0x55);
    CHECK_EQ(uread(&p, 0x5000), 0x66);
    CHECK_EQ(uwrite(&p, 0x1000, 0x71), MM_COW_REUSED);     /* c copied it away */
    CHECK_EQ(uread(&c, 0x1000), 0x61);
    CHECK_EQ(mm_as_destroy(&c), 0);
    CHECK_EQ(mm_as_destroy(&p), 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(mm_frameref_frames(), 0);
}

/* Out of frames for the table copy: -MM_ENOMEM and both address spaces
 * exactly as before.  A frame count at its limit refuses the unshare the
 * same way (the counts taken so far are put back). */
static void test_unshare_enomem(void)
{
    uint64_t base = setup();
    struct mm_as p, c;
    make_parent(&p);
    REQUIRE(mm_as_clone(&c, &p, &tfa.fa) == 0);
    struct snap sp, sc;
    snap_as = &c;
    take_snap(&sc);
    snap_as = &p;
    take_snap(&sp);
    tfa.budget = 0;
    CHECK_EQ(mm_cow_fault(&c, VA(0x40000000), WFAULT), -MM_ENOMEM);
    CHECK_EQ(mm_as_map_zeroed(&c, VA(0x40001000), RW), -MM_ENOMEM);
    CHECK_EQ(mm_as_unmap(&c, VA(0x40000000)), -MM_ENOMEM);
    CHECK_EQ(mm_as_protect(&c, VA(0x40000000), RO), -MM_ENOMEM);
    uint8_t byte = 1;
    CHECK_EQ(mm_copy_to_user(&c, VA(0x40000000), &byte, 1), -MM_ENOMEM);
    tfa.budget = UINT64_MAX;
    CHECK(snap_same(&sp));
    snap_as = &c;
    CHECK(snap_same(&sc));
    CHECK(mm_cow_table_entry_shared(pde_of(&c, 0x40000000)));
    snap_as = NULL;
    /* A data frame's count at its limit: the unshare is refused. */
    phys_addr_t f = PA(pa_of(&c, 0x7fffffffe000));
    for (uint32_t n = 1; n < MM_FRAMEREF_MAX; n++)
        REQUIRE(mm_frameref_get(f, &tfa.fa) == 0);
    snap_as = &c;
    take_snap(&sc);
    CHECK_EQ(mm_cow_fault(&c, VA(0x7fffffffe000), WFAULT), -MM_ENOMEM);
    CHECK(snap_same(&sc));
    snap_as = NULL;
    for (uint32_t n = 1; n < MM_FRAMEREF_MAX; n++)
        (void)mm_frameref_put(f);
    CHECK_EQ(uwrite(&c, 0x7fffffffe000, 0x44), MM_COW_COPIED);
    CHECK_EQ(uread(&p, 0x7fffffffe000), 0x12);
    CHECK_EQ(mm_as_destroy(&c), 0);
    CHECK_EQ(mm_as_destroy(&p), 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(mm_frameref_frames(), 0);
    CHECK_EQ(tfa.bad_frees, 0);
}

/*
 * A sharer is destroyed while another one is loaded on a CPU whose caches
 * hold the shared table: the table and its frames stay; the survivor
 * reads its memory, and its write finds count 1 and reuses the table.
 */
static void test_destroy_sharer_in_use(void)
{
    uint64_t base = setup();
    tlb_model_init(2, ktop);
    struct mm_as p, c;
    make_parent(&p);
    REQUIRE(mm_as_clone(&c, &p, &tfa.fa) == 0);
    phys_addr_t t = pt_of(&c, 0x1000);
    harness_cpu_id = 1;
    mm_as_switch(&c);
    CHECK_EQ(tlb_model_access(1, VA(0x1000), TLB_ACCESS_USER), TLB_OK);
    harness_cpu_id = 0;
    CHECK_EQ(mm_as_destroy(&p), 0);
    CHECK(test_fa_is_out(&tfa, t));
    CHECK_EQ(mm_frameref_count(t), 1);
    CHECK_EQ(tlb_model_access(1, VA(0x1000), TLB_ACCESS_USER), TLB_OK);
    CHECK_EQ(uread(&c, 0x1000), 0x10);
    uint64_t out = tfa.outstanding;
    CHECK_EQ(cpu_write(1, &c, 0x1000), TLB_OK);
    CHECK_EQ(tfa.outstanding, out);             /* reused: no table, no page */
    CHECK_EQ(pt_of(&c, 0x1000).raw, t.raw);
    CHECK_EQ(tlb_model_check("test_destroy_sharer_in_use"), 0);
    harness_cpu_id = 1;
    mm_as_switch(NULL);
    harness_cpu_id = 0;
    CHECK_EQ(mm_as_destroy(&c), 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(tlb_model_violations, 0);
    tlb_model_fini();
}

/* ---------------------------------------------------------- concurrency */

#define RACE_PAGES 64
#define RACE_VA    UINT64_C(0x10000000)

struct racer { struct mm_as *as; unsigned cpu; uint8_t tag; };

/* Write tag into every page, faulting through the resolver. */
static void *race_writer(void *arg)
{
    struct racer *r = arg;
    harness_cpu_id = r->cpu;
    for (unsigned i = 0; i < RACE_PAGES; i++)
        if (uwrite(r->as, RACE_VA + i * PAGE_SIZE + r->cpu, r->tag) < 0)
            abort();
    return NULL;
}

/*
 * Three address spaces (a parent, its child and grandchild) share one
 * level-1 table and fault on the same frames at once (threads 0, 1 and
 * 3: they race to unshare the table and to copy the pages), and two
 * threads of one address space fault on the same pages (threads 1 and
 * 2): every page ends with each process's own bytes, and every frame
 * comes back.  Run several rounds.
 */
static void test_concurrent_faults(void)
{
    uint64_t base = setup();
    for (unsigned round = 0; round < 20; round++) {
        struct mm_as p, c, g;
        REQUIRE(mm_as_create(&p, &tfa.fa) == 0);
        for (unsigned i = 0; i < RACE_PAGES; i++) {
            REQUIRE(mm_as_map_zeroed(&p, VA(RACE_VA + i * PAGE_SIZE), RW) == 0);
            REQUIRE(uwrite(&p, RACE_VA + i * PAGE_SIZE + 8, 0x5e) == 0);
        }
        REQUIRE(mm_as_clone(&c, &p, &tfa.fa) == 0);
        REQUIRE(mm_as_clone(&g, &c, &tfa.fa) == 0);
        struct racer r[4] = { { &p, 0, 0xa0 }, { &c, 1, 0xc1 }, { &c, 2, 0xc2 },
                              { &g, 3, 0xd3 } };
        pthread_t t[4];
        for (unsigned i = 0; i < 4; i++)
            pthread_create(&t[i], NULL, race_writer, &r[i]);
        for (unsigned i = 0; i < 4; i++)
            pthread_join(t[i], NULL);
        for (unsigned i = 0; i < RACE_PAGES; i++) {
            const uint8_t *pp = pa_to_ptr(PA(pa_of(&p, RACE_VA + i * PAGE_SIZE)));
            const uint8_t *cp = pa_to_ptr(PA(pa_of(&c, RACE_VA + i * PAGE_SIZE)));
            const uint8_t *gp = pa_to_ptr(PA(pa_of(&g, RACE_VA + i * PAGE_SIZE)));
            CHECK(pp != cp && pp != gp && cp != gp);
            CHECK(pp[0] == 0xa0 && pp[1] == 0 && pp[2] == 0 && pp[3] == 0 && pp[8] == 0x5e);
            CHECK(cp[0] == 0 && cp[1] == 0xc1 && cp[2] == 0xc2 && cp[3] == 0 && cp[8] == 0x5e);
            CHECK(gp[0] == 0 && gp[1] == 0 && gp[2] == 0 && gp[3] == 0xd3 && gp[8] == 0x5e);
        }
        harness_cpu_id = 0;
        CHECK_EQ(mm_as_destroy(&p), 0);
        CHECK_EQ(mm_as_destroy(&c), 0);
        CHECK_EQ(mm_as_destroy(&g), 0);
    }
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(mm_frameref_frames(), 0);
    CHECK_EQ(tfa.bad_frees, 0);
}

/*
 * A sharer's destroy and the survivor's edits, interleaved at the worst
 * point: the survivor (on another CPU, in a real kernel) runs right after
 * the destroying sharer has put its count of the table, takes the table
 * over at count 1 and unmaps every page, which frees it.  The destroy must
 * have counted the table's pages before its put: afterwards the table may
 * be changed or freed, and mm_as_destroy's accounting check would panic.
 * The interleaving is forced through the link: this program is linked
 * with --wrap=mm_frameref_put (Makefile), so every put of the library
 * comes here first.
 */
uint32_t __real_mm_frameref_put(phys_addr_t pa);
static phys_addr_t put_hook_pa;
static void (*put_hook)(void);

uint32_t __wrap_mm_frameref_put(phys_addr_t pa)
{
    uint32_t left = __real_mm_frameref_put(pa);
    if (put_hook != NULL && pa.raw == put_hook_pa.raw) {
        void (*fn)(void) = put_hook;
        put_hook = NULL;
        fn();
    }
    return left;
}

static struct mm_as race_p, race_c;

static void survivor_unmaps_all(void)
{
    CHECK_EQ(mm_frameref_count(put_hook_pa), 1);
    CHECK_EQ(mm_as_unmap(&race_p, VA(0x1000)), 0);
    CHECK_EQ(mm_as_unmap(&race_p, VA(0x2000)), 0);   /* empties and frees the table */
}

static void test_destroy_races_survivor(void)
{
    uint64_t base = setup();
    REQUIRE(mm_as_create(&race_p, &tfa.fa) == 0);
    REQUIRE(mm_as_map_zeroed(&race_p, VA(0x1000), RW) == 0);
    REQUIRE(mm_as_map_zeroed(&race_p, VA(0x2000), RW) == 0);
    REQUIRE(mm_as_clone(&race_c, &race_p, &tfa.fa) == 0);
    put_hook_pa = pt_of(&race_c, 0x1000);
    put_hook = survivor_unmaps_all;
    int rc = -1;
    jmp_buf jb;
    harness_panic_jmp = &jb;
    if (setjmp(jb) == 0)
        rc = mm_as_destroy(&race_c);
    else
        fprintf(stderr, "  panic: %s\n", harness_panic_msg);
    harness_panic_jmp = NULL;
    CHECK_EQ(rc, 0);
    CHECK(put_hook == NULL);            /* the interleaving happened */
    CHECK_EQ(mm_as_destroy(&race_p), 0);
    CHECK_EQ(tfa.bad_frees, 0);
    CHECK_EQ(tfa.outstanding, base);
}

int main(void)
{
    harness_quiet = 0;
    RUN(test_frameref_counts);
    RUN(test_frameref_limit);
    RUN(test_frameref_batch);
    RUN(test_clone_semantics);
    RUN(test_clone_leaf_bits);
    RUN(test_clone_refusals);
    RUN(test_clone_enomem_every_frame);
    RUN(test_clone_count_limit);
    RUN(test_huge_user_leaf);
    RUN(test_resolver_outcomes);
    RUN(test_second_generation);
    RUN(test_many_sharers);
    RUN(test_copy_to_user_breaks_cow);
    RUN(test_protect_keeps_cow);
    RUN(test_unmap_destroy_counts);
    RUN(test_clone_flushes_parent);
    RUN(test_table_share_count);
    RUN(test_unshare_count_one);
    RUN(test_unshare_protects_other_sharers);
    RUN(test_unshare_enomem);
    RUN(test_destroy_sharer_in_use);
    RUN(test_concurrent_faults);
    RUN(test_destroy_races_survivor);
    return harness_finish();
}
