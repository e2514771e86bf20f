/*
 * fuzz_mmio.c - libFuzzer target for the MMIO pool (mm/mmio.c).
 *
 * The input is an operation sequence over one pool and one page-table
 * mapper, both fed by a frame allocator over simulated memory that the
 * input can make run dry after n more frames:
 *   create of a size (0, 1 .. 1 GiB, or above 1 GiB), release of the i-th
 *   live block, map_phys of part of a live block to a device address
 *   (chosen so that 2 MiB and 1 GiB pages happen), a second map of a
 *   mapped block, one of several bad releases (double, misaligned,
 *   interior, wrong size, size 0, outside the pool, wrong mapper),
 *   ioremap (uncached or write-back read-only) of an odd range + iounmap
 *   (after an iounmap of a wrong pointer in its first page), ioremap
 *   beyond the CPU's physical-address width, a frame budget, and a full
 *   mmio_pool_check.
 * A model of the live blocks checks that every block is a power of two
 * of at least the size asked, aligned to it, inside the pool and disjoint
 * from every other live block; that mapped pages translate to the device
 * address with the device flags; that every refused call returns the
 * documented error, prints exactly one log line and changes nothing
 * (free counts, bookkeeping frames, allocator frames); and that a create
 * refused for lack of memory was really out of memory.  At the end all
 * blocks are released: the pool must be MMIO_NR_ROOTS free 1 GiB blocks
 * again and every frame back with the allocator.
 *
 * The mapper's table is loaded on FUZZ_CPUS CPUs of the TLB model
 * (tlb_model.h): before a release or an iounmap every CPU caches the ends
 * of the block, each operation runs on the next CPU in turn, and after
 * each one no CPU may hold a stale entry.
 */
#define FUZZ_NAME     "fuzz_mmio"
#define FUZZ_SIM_SIZE (64 * MiB)
#define FUZZ_FIRST_PA (1 * MiB)
#include "fuzz_util.h"

#include <mm/arch.h>
#include <mm/log.h>
#include <mm/mmio.h>
#include <mm/paging.h>

#define MAX_LIVE    512
#define FUZZ_CPUS   4

/* --------------------------------------------------------------- model */

static struct mmio_pool pool;
static struct pt_mapper mapper, other_mapper;
static struct {
    struct mmio_space space;
    uint64_t mapped;            /* bytes mapped (rounded to pages); 0: none */
    uint64_t dev_pa;            /* device address the block maps */
} live[MAX_LIVE];
static unsigned nlive;

/* Everything a refused call must leave as it was. */
struct snap {
    uint64_t free_blocks[MMIO_NR_ORDERS];
    uint64_t alloc_blocks, node_frames, hash_frames, nodes_in_use, fa_out;
};

static void snapshot(struct snap *s)
{
    struct mmio_stats st;
    mmio_pool_stats(&pool, &st);
    memset(s, 0, sizeof *s);
    memcpy(s->free_blocks, st.free_blocks, sizeof s->free_blocks);
    s->alloc_blocks = st.alloc_blocks;
    s->node_frames = st.node_frames;
    s->hash_frames = st.hash_frames;
    s->nodes_in_use = st.nodes_in_use;
    s->fa_out = fa_out;
}

static void expect_unchanged(const struct snap *before, const char *what)
{
    struct snap after;
    snapshot(&after);
    if (memcmp(before, &after, sizeof after) != 0)
        fail(what, before->alloc_blocks, after.alloc_blocks);
}

/*
 * After a create that was undone (ioremap + iounmap, or an ioremap whose
 * map failed): the same blocks, nodes and page tables.  Only the hash
 * table may differ: it grows at one block per bucket and shrinks at a
 * quarter, so one block more and then one fewer can leave a new segment.
 */
static void expect_same_blocks(const struct snap *before, const char *what)
{
    struct snap after;
    snapshot(&after);
    if (memcmp(before->free_blocks, after.free_blocks, sizeof after.free_blocks) != 0 ||
        before->alloc_blocks != after.alloc_blocks ||
        before->node_frames != after.node_frames ||
        before->nodes_in_use != after.nodes_in_use ||
        before->fa_out - before->hash_frames != after.fa_out - after.hash_frames)
        fail(what, before->fa_out, after.fa_out);
}

/* A call that must be refused with `want`, one log line, no change. */
#define EXPECT_REFUSED(call, want, what)                                      \
    do {                                                                      \
        struct snap _s;                                                       \
        snapshot(&_s);                                                        \
        unsigned long _lines = harness_log_lines;                             \
        int _rc = (call);                                                     \
        if (_rc != (want))                                                    \
            fail(what ": wrong result", (uint64_t)-_rc, (uint64_t)-(want));   \
        if (harness_log_lines - _lines != 1)                                  \
            fail(what ": not exactly one log line", harness_log_lines - _lines, 0); \
        expect_unchanged(&_s, what ": state changed");                        \
    } while (0)

static bool overlaps_live(uint64_t va, uint64_t size)
{
    for (unsigned i = 0; i < nlive; i++) {
        uint64_t a = live[i].space.va.raw, b = a + live[i].space.size;
        if (va < b && a < va + size)
            return true;
    }
    return false;
}

static void remove_live(unsigned i)
{
    live[i] = live[--nlive];
}

static void release_live(unsigned i)
{
    if (live[i].mapped)
        fuzz_tlb_before(live[i].space.va.raw, live[i].mapped);
    int rc = mmio_release(&pool, &live[i].space, live[i].mapped ? &mapper : NULL);
    if (rc)
        fail("release of a live block failed", live[i].space.va.raw, (uint64_t)-rc);
    if (live[i].mapped) {
        struct pt_mapping t;
        if (pt_translate(&mapper, live[i].space.va, &t) == 0)
            fail("released block still mapped", live[i].space.va.raw, 0);
    }
    remove_live(i);
}

/* ------------------------------------------------------------ operations */

static void op_create(struct reader *r)
{
    unsigned sel = next_byte(r);
    uint64_t size;
    if (sel == 0) {
        size = 0;
    } else if (sel == 1) {
        size = MMIO_MAX_SIZE + 1 + next_u32(r);
    } else {
        unsigned order = sel % MMIO_NR_ORDERS;
        uint64_t hi = PAGE_SIZE << order, lo = order ? hi / 2 : 0;
        size = lo + 1 + next_u32(r) % (hi - lo);
    }
    if (size == 0 || size > MMIO_MAX_SIZE) {
        struct mmio_space s;
        EXPECT_REFUSED(mmio_create(&pool, size, &s), -MM_EINVAL, "bad size");
        return;
    }

    uint64_t free_blocks[MMIO_NR_ORDERS];
    mmio_pool_free_counts(&pool, free_blocks);
    bool room = false;
    for (unsigned k = 0; k < MMIO_NR_ORDERS; k++)
        room |= free_blocks[k] != 0 && (PAGE_SIZE << k) >= size;
    struct snap before;
    snapshot(&before);
    long budget = fa_budget;

    struct mmio_space s;
    unsigned long lines = harness_log_lines;
    int rc = mmio_create(&pool, size, &s);
    if (rc == -MM_ENOMEM) {
        if (room && budget < 0)
            fail("create refused although a block and frames were there", size, 0);
        if (harness_log_lines - lines != 1)
            fail("refused create did not log one line", size, harness_log_lines - lines);
        /* A dry allocator may have been asked; what it gave back, not. */
        expect_unchanged(&before, "refused create changed the state");
        return;
    }
    if (rc)
        fail("create failed", size, (uint64_t)-rc);
    if (!room)
        fail("create succeeded with no block large enough", size, s.size);
    if (s.size < size || (s.size & (s.size - 1)) != 0 || s.size < PAGE_SIZE ||
        (size > PAGE_SIZE && s.size >= 2 * size))
        fail("block size does not fit the request", size, s.size);
    if (!is_aligned_u64(s.va.raw, s.size) || s.va.raw < MMIO_POOL_BASE ||
        s.va.raw + s.size > MMIO_POOL_END || s.va.raw + s.size < s.va.raw)
        fail("block misaligned or outside the pool", s.va.raw, s.size);
    if (overlaps_live(s.va.raw, s.size))
        fail("block overlaps a live block", s.va.raw, s.size);
    if (nlive == MAX_LIVE) {
        if (mmio_release(&pool, &s, NULL))
            fail("release of a fresh block failed", s.va.raw, s.size);
        return;
    }
    live[nlive].space = s;
    live[nlive].mapped = 0;
    live[nlive].dev_pa = 0;
    nlive++;
}

static void op_map(struct reader *r)
{
    if (!nlive)
        return;
    unsigned i = next_byte(r) % nlive;
    struct mmio_space s = live[i].space;
    /* Device addresses in [4 GiB, 4 GiB + 64 GiB), aligned to 1 GiB,
     * 2 MiB or 4 KiB depending on the input, so huge pages get used. */
    unsigned align = next_byte(r) % 3;
    uint64_t unit = align == 0 ? GiB : align == 1 ? 2 * MiB : PAGE_SIZE;
    uint64_t dev = 4 * GiB + (next_u32(r) * unit) % (64 * GiB);
    /* With 4 KiB pages a whole 1 GiB block would take 512 page tables and
     * a long time; 8 MiB is plenty to cross table boundaries. */
    uint64_t limit = unit == PAGE_SIZE && s.size > 8 * MiB ? 8 * MiB : s.size;
    uint64_t length = 1 + next_u32(r) % limit;

    if (live[i].mapped) {
        EXPECT_REFUSED(mmio_map_phys(&pool, &s, &mapper, PA(dev), length), -MM_EEXIST,
                       "second map");
        return;
    }
    if (next_byte(r) % 8 == 0) {
        EXPECT_REFUSED(mmio_map_phys(&pool, &s, &mapper, PA(dev), s.size + PAGE_SIZE),
                       -MM_EINVAL, "map beyond the block");
        return;
    }
    struct snap before;
    snapshot(&before);
    int rc = mmio_map_phys(&pool, &s, &mapper, PA(dev), length);
    if (rc == -MM_ENOMEM && fa_budget >= 0) {
        expect_unchanged(&before, "refused map changed the state");
        struct pt_mapping t;
        if (pt_translate(&mapper, s.va, &t) == 0)
            fail("refused map left a mapping", s.va.raw, 0);
        return;
    }
    if (rc)
        fail("map of a live block failed", s.va.raw, (uint64_t)-rc);
    live[i].mapped = align_up_u64(length, PAGE_SIZE);
    live[i].dev_pa = dev;

    /* First, last and one middle byte translate, with the device flags;
     * the page after the mapped part (inside the block) does not. */
    uint64_t probes[3] = { 0, live[i].mapped - 1, (next_u32(r) % live[i].mapped) & ~7ull };
    for (unsigned k = 0; k < 3; k++) {
        struct pt_mapping t;
        if (pt_translate(&mapper, VA(s.va.raw + probes[k]), &t) != 0)
            fail("mapped byte does not translate", s.va.raw + probes[k], 0);
        if (t.pa.raw != dev + probes[k] || (t.flags & MMIO_PTE_FLAGS) != MMIO_PTE_FLAGS)
            fail("mapped byte translates wrongly", t.pa.raw, t.flags);
    }
    struct pt_mapping t;
    if (live[i].mapped < s.size && pt_translate(&mapper, VA(s.va.raw + live[i].mapped), &t) == 0)
        fail("byte beyond the mapped length translates", s.va.raw + live[i].mapped, 0);
}

static void op_bad_release(struct reader *r)
{
    unsigned kind = next_byte(r) % 7;
    if (kind == 0) {                    /* outside the pool */
        struct mmio_space s = { VA(MMIO_POOL_END + next_u32(r) * PAGE_SIZE), PAGE_SIZE };
        EXPECT_REFUSED(mmio_release(&pool, &s, NULL), -MM_EFAULT, "release outside the pool");
        return;
    }
    if (!nlive)
        return;
    unsigned i = next_byte(r) % nlive;
    struct mmio_space s = live[i].space;
    struct pt_mapper *m = live[i].mapped ? &mapper : NULL;
    switch (kind) {
    case 1:                             /* misaligned */
        s.va.raw += 8;
        EXPECT_REFUSED(mmio_release(&pool, &s, m), -MM_EINVAL, "misaligned release");
        break;
    case 2:                             /* wrong size */
        s.size *= 2;
        EXPECT_REFUSED(mmio_release(&pool, &s, m), -MM_EINVAL, "release of the wrong size");
        break;
    case 3:                             /* an interior page of the block */
        if (s.size == PAGE_SIZE)
            break;
        s.va.raw += PAGE_SIZE * (1 + next_u32(r) % (s.size / PAGE_SIZE - 1));
        s.size = PAGE_SIZE;
        EXPECT_REFUSED(mmio_release(&pool, &s, m), -MM_ENOENT, "release of an interior page");
        break;
    case 4:                             /* mapped block, other mapper */
        if (!m)
            break;
        EXPECT_REFUSED(mmio_release(&pool, &s, &other_mapper), -MM_EINVAL,
                       "release with another mapper");
        break;
    case 5:                             /* double release */
        release_live(i);
        EXPECT_REFUSED(mmio_release(&pool, &s, m), -MM_ENOENT, "double release");
        break;
    case 6:                             /* size 0 is no wildcard */
        s.size = 0;
        EXPECT_REFUSED(mmio_release(&pool, &s, m), -MM_EINVAL, "release of size 0");
        break;
    }
}

/* ioremap beyond the CPU's physical-address width: refused. */
static void op_ioremap_too_high(struct reader *r)
{
    uint64_t limit = UINT64_C(1) << arch_phys_addr_bits();
    uint64_t size = 1 + next_u32(r) % (8 * MiB);
    uint64_t pa = limit - next_u32(r) % size;      /* the last byte reaches the limit */
    EXPECT_REFUSED(mmio_ioremap(&pool, &mapper, PA(pa), size) == NULL ? -MM_EINVAL : 0,
                   -MM_EINVAL, "ioremap beyond the physical-address width");
}

/* iounmap of another address in the first page of va's block: refused. */
static void iounmap_wrong_pointer(struct reader *r, uint8_t *va)
{
    uint64_t offset = (uint64_t)(uintptr_t)va & (PAGE_SIZE - 1);
    uint64_t other = (offset + 1 + next_u32(r) % (PAGE_SIZE - 1)) % PAGE_SIZE;
    EXPECT_REFUSED(mmio_iounmap(&pool, &mapper, va - offset + other), -MM_EINVAL,
                   "iounmap of another pointer");
}

static void op_ioremap(struct reader *r)
{
    unsigned sel = next_byte(r) % 4;
    if (sel == 3) {
        op_ioremap_too_high(r);
        return;
    }
    enum mm_cache_mode mode = sel == 0 ? MM_CACHE_WB_RO : MM_CACHE_UC;
    uint64_t flags = mode == MM_CACHE_UC ? MMIO_PTE_FLAGS : MMIO_PTE_FLAGS_WB_RO;
    uint64_t pa = 4 * GiB + next_u32(r) * 8 + next_byte(r);
    uint64_t size = 1 + next_u32(r) % (8 * MiB);
    struct snap before;
    snapshot(&before);
    uint8_t *va = mmio_ioremap_mode(&pool, &mapper, PA(pa), size, mode);
    if (!va) {
        if (fa_budget < 0 && nlive < MAX_LIVE / 2)
            fail("ioremap failed with memory to spare", pa, size);
        expect_same_blocks(&before, "failed ioremap changed the blocks");
        return;
    }
    struct pt_mapping t;
    uint64_t ends[2] = { 0, size - 1 };
    for (unsigned k = 0; k < 2; k++)
        if (pt_translate(&mapper, VA((uint64_t)(uintptr_t)(va + ends[k])), &t) != 0 ||
            t.pa.raw != pa + ends[k] ||
            (t.flags & (flags | PTE_WRITE | PTE_PCD | PTE_PWT)) != flags)
            fail("ioremap range translates wrongly", pa + ends[k], t.pa.raw);
    iounmap_wrong_pointer(r, va);
    fuzz_tlb_before((uint64_t)(uintptr_t)va, size);
    if (mmio_iounmap(&pool, &mapper, va))
        fail("iounmap failed", (uint64_t)(uintptr_t)va, size);
    if (pt_translate(&mapper, VA((uint64_t)(uintptr_t)va), &t) == 0)
        fail("iounmap left a mapping", (uint64_t)(uintptr_t)va, 0);
    expect_same_blocks(&before, "ioremap + iounmap changed the blocks");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    harness_quiet = 1;
    ffa_reset();
    nlive = 0;
    if (mmio_pool_init(&pool, &ffa) || pt_mapper_create(&ffa, &mapper) ||
        pt_mapper_create(&ffa, &other_mapper))
        fail("setup failed", 0, 0);
    fuzz_tlb_start(FUZZ_CPUS, mapper.top_pa);

    struct reader r = { data, size };
    while (r.n) {
        tlb_model_check("fuzz_mmio: after an operation");
        unsigned op = next_byte(&r) % 10;
        switch (op) {
        case 0: case 1: case 2:
            op_create(&r);
            break;
        case 3: case 4:
            if (nlive)
                release_live(next_byte(&r) % nlive);
            break;
        case 5:
            op_map(&r);
            break;
        case 6:
            op_bad_release(&r);
            break;
        case 7:
            op_ioremap(&r);
            break;
        case 8: {                       /* frame budget: dry soon, or none */
            unsigned b = next_byte(&r);
            fa_budget = b >= 0x80 ? -1 : (long)(b % 24);
            break;
        }
        case 9:
            mmio_pool_check(&pool);
            break;
        }
    }

    fa_budget = -1;
    while (nlive)
        release_live(nlive - 1);
    mmio_pool_check(&pool);
    struct mmio_stats st;
    mmio_pool_stats(&pool, &st);
    if (st.free_blocks[MMIO_MAX_ORDER] != MMIO_NR_ROOTS || st.alloc_blocks != 0 ||
        st.node_frames != 0 || st.hash_frames != 0)
        fail("pool not back to its initial state", st.free_blocks[MMIO_MAX_ORDER],
             st.node_frames + st.hash_frames);
    tlb_model_check("fuzz_mmio: after the final releases");
    tlb_model_fini();           /* every CPU leaves the table */
    harness_cpu_id = 0;
    if (pt_mapper_destroy(&mapper) || pt_mapper_destroy(&other_mapper))
        fail("mapper destroy failed", 0, 0);
    if (fa_out != 0)
        fail("frames still out after everything was released", fa_out, 0);
    return 0;
}
