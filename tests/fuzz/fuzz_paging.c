/*
 * fuzz_paging.c - libFuzzer target for the page-table mapper (mm/paging.c).
 *
 * The input is an operation sequence on one mapper over a 4 GiB window of
 * kernel addresses that crosses a 512 GiB boundary (so two level-3
 * tables), with table frames from an allocator over simulated memory that
 * the input can make run dry:
 *   pt_map_range with 4 KiB .. 1 GiB pages and physical addresses that
 *   allow each page size; pt_unmap_range over any stretch; pt_unmap_phys
 *   and pt_remap of single leaves, aligned or not; bad maps (misaligned,
 *   bad flags, overlapping); translations of random addresses; and a
 *   count of the tables.
 * The model is a list of mapped regions, one per successful map (split
 * by later unmaps and remaps).  From a region it predicts every leaf: the
 * largest page size, up to the call's maximum, whose aligned chunk around
 * the address lies inside the region with va and pa equally aligned (the
 * greedy layout pt_map_range documents).  Every call's result is checked
 * against the model, refused calls must change nothing (tables, frames),
 * free_tables is always set so the model also predicts the exact number
 * of tables, and at the end, with everything unmapped, only the top table
 * is left and every frame is back.
 *
 * The table is loaded on FUZZ_CPUS CPUs of the TLB model (tlb_model.h).
 * Before each operation every CPU caches the ends of the range it works
 * on and of one mapped region, the operation runs on the next CPU in
 * turn, and afterwards no CPU may hold a stale entry.  Data addresses lie
 * at 1 GiB and above, away from the allocator's frames, so that a table
 * frame is never also a mapped page.
 */
#define FUZZ_NAME     "fuzz_paging"
#define FUZZ_SIM_SIZE (256 * MiB)
#define FUZZ_FIRST_PA (1 * MiB)
#include "fuzz_util.h"

#include <mm/log.h>
#include <mm/paging.h>
#include <mm/ptdump.h>
#define WIN_BASE    (UINT64_C(0xffffc00000000000) + 512 * GiB - 2 * GiB)
#define WIN_SIZE    (4 * GiB)
#define WIN_END     (WIN_BASE + WIN_SIZE)
#define MAX_REGIONS 1024
#define FLAG_MASK   (PTE_WRITE | PTE_NX | PTE_GLOBAL | PTE_PCD | PTE_PWT | PTE_USER)
#define FUZZ_CPUS   4

/* --------------------------------------------------------------- model */

struct region {
    uint64_t va, size, pa, flags;
    unsigned max_level;         /* largest leaf the map call allowed */
};

static struct region reg[MAX_REGIONS];
static unsigned nreg;
static struct pt_mapper m;

static struct region *region_at(uint64_t va)
{
    for (unsigned i = 0; i < nreg; i++)
        if (va >= reg[i].va && va - reg[i].va < reg[i].size)
            return &reg[i];
    return NULL;
}

static bool overlaps(uint64_t va, uint64_t size)
{
    for (unsigned i = 0; i < nreg; i++)
        if (va < reg[i].va + reg[i].size && reg[i].va < va + size)
            return true;
    return false;
}

/* Level of the leaf that maps va inside r (see the header). */
static unsigned leaf_level(const struct region *r, uint64_t va)
{
    for (unsigned level = r->max_level; level > PT_LEVEL_PT; level--) {
        uint64_t ps = pt_level_size(level);
        uint64_t chunk = align_down_u64(va, ps);
        if (((r->va - r->pa) & (ps - 1)) == 0 && chunk >= r->va &&
            chunk + ps <= r->va + r->size)
            return level;
    }
    return PT_LEVEL_PT;
}

static void add_region(uint64_t va, uint64_t size, uint64_t pa, uint64_t flags,
                       unsigned max_level)
{
    if (size == 0)
        return;
    if (nreg == MAX_REGIONS)
        fail("model full", va, size);
    reg[nreg++] = (struct region){ va, size, pa, flags, max_level };
}

/* Take [va, va + size) out of the model (whole leaves, by construction);
 * with remap, put it back with new_flags. */
static void model_remove(uint64_t va, uint64_t size, uint64_t new_flags, bool remap)
{
    static struct region old[MAX_REGIONS];
    unsigned nold = nreg;
    uint64_t end = va + size;
    memcpy(old, reg, nold * sizeof old[0]);
    nreg = 0;
    for (unsigned i = 0; i < nold; i++) {
        struct region r = old[i];
        uint64_t rend = r.va + r.size;
        if (!(va < rend && r.va < end)) {
            add_region(r.va, r.size, r.pa, r.flags, r.max_level);
            continue;
        }
        if (r.va < va)
            add_region(r.va, va - r.va, r.pa, r.flags, r.max_level);
        if (rend > end)
            add_region(end, rend - end, r.pa + (end - r.va), r.flags, r.max_level);
        if (remap) {
            uint64_t lo = va > r.va ? va : r.va, hi = end < rend ? end : rend;
            add_region(lo, hi - lo, r.pa + (lo - r.va), new_flags, r.max_level);
        }
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Tables the model's leaves need: the top table plus one per distinct
 * level-3/2/1 table on their paths. */
static uint64_t model_tables(void)
{
    uint64_t cap = 1024, n = 0, *keys = malloc(cap * sizeof *keys);
    for (unsigned i = 0; i < nreg; i++) {
        for (uint64_t va = reg[i].va; va < reg[i].va + reg[i].size;) {
            unsigned level = leaf_level(&reg[i], va);
            if (n + 3 > cap)
                keys = realloc(keys, (cap *= 2) * sizeof *keys);
            keys[n++] = (UINT64_C(3) << 60) | (va >> 39 & 0x1ffffff);
            if (level <= PT_LEVEL_PD)
                keys[n++] = (UINT64_C(2) << 60) | (va >> 30 & 0x3ffffffff);
            if (level == PT_LEVEL_PT)
                keys[n++] = (UINT64_C(1) << 60) | (va >> 21 & 0x7ffffffffff);
            va += pt_level_size(level);
        }
    }
    qsort(keys, n, sizeof *keys, cmp_u64);
    uint64_t distinct = 0;
    for (uint64_t k = 0; k < n; k++)
        distinct += k == 0 || keys[k] != keys[k - 1];
    free(keys);
    return 1 + distinct;
}

static void check_tables(void)
{
    uint64_t want = model_tables(), got = ptdump_count_tables(&m);
    if (got != want)
        fail("table count differs from the model", got, want);
    if (fa_out != got)
        fail("frames out differ from the tables", fa_out, got);
}

static void check_translate(uint64_t va)
{
    struct pt_mapping t;
    int err = pt_translate(&m, VA(va), &t);
    const struct region *r = region_at(va);
    if (!r) {
        if (err != -MM_ENOENT)
            fail("unmapped address translates", va, (uint64_t)-err);
        return;
    }
    if (err)
        fail("mapped address does not translate", va, (uint64_t)-err);
    unsigned level = leaf_level(r, va);
    if (t.pa.raw != r->pa + (va - r->va) || t.level != level ||
        t.page_size != pt_level_size(level))
        fail("translation differs from the model", t.pa.raw, t.level);
    if ((t.flags & FLAG_MASK) != (r->flags & FLAG_MASK))
        fail("flags differ from the model", t.flags, r->flags);
}

/* A call that must fail with `want` and change nothing. */
static void expect_refused(int rc, int want, const char *what, uint64_t tables_before,
                           uint64_t out_before)
{
    if (rc != want)
        fail(what, (uint64_t)-rc, (uint64_t)-want);
    if (ptdump_count_tables(&m) != tables_before || fa_out != out_before)
        fail("refused call changed the tables", tables_before, fa_out);
}

/* ------------------------------------------------------------ operations */

static const uint64_t flag_choices[4] = {
    PTE_KERNEL_RW, PTE_KERNEL_RO, PTE_MMIO, PTE_PRESENT | PTE_WRITE | PTE_GLOBAL,
};

static void op_map(struct reader *r)
{
    unsigned shape = next_byte(r);
    unsigned cls = shape % 4, cong = (shape >> 2) % 3, maxsel = (shape >> 4) % 3;
    uint64_t size, va;
    if (cls < 2) {              /* small: 4 KiB pages somewhere */
        size = (1 + next_u32(r) % (cls == 0 ? 16 : 1024)) * PAGE_SIZE;
        va = WIN_BASE + (next_u32(r) % (WIN_SIZE / PAGE_SIZE)) * PAGE_SIZE;
    } else {                    /* large: 2 MiB granular, room for huge pages */
        size = (1 + next_u32(r) % (cls == 2 ? 64 : 1536)) * PAGE_2M_SIZE;
        va = WIN_BASE + (next_u32(r) % (WIN_SIZE / PAGE_2M_SIZE)) * PAGE_2M_SIZE;
        if (cong == 2)
            cong = 1;           /* 4 KiB pages over GiBs would only be slow */
        if (maxsel == 0)
            maxsel = 1;
    }
    if (va + size > WIN_END)
        size = WIN_END - va;
    /* pa congruent to va modulo 1 GiB or 2 MiB, below 64 GiB; or any
     * 4 KiB-aligned pa below 16 GiB (then rarely 2 MiB congruent) */
    uint64_t pa;
    if (cong == 2) {
        pa = GiB + (next_u32(r) % (15 * GiB / PAGE_SIZE)) * PAGE_SIZE;
    } else {
        uint64_t mod = cong == 0 ? GiB : PAGE_2M_SIZE;
        pa = (1 + next_u32(r) % 63) * GiB + (va & (mod - 1));
    }
    uint64_t max_page = maxsel == 0 ? PAGE_SIZE : maxsel == 1 ? PAGE_2M_SIZE : PAGE_1G_SIZE;
    uint64_t flags = flag_choices[next_byte(r) % 4];

    uint64_t tables = ptdump_count_tables(&m), out = fa_out;
    long budget = fa_budget;
    fuzz_tlb_before(va, size);
    struct pt_flush tok = PT_FLUSH_INIT;
    int rc = pt_map_range(&m, VA(va), PA(pa), size, flags, max_page, &tok);
    pt_flush(&tok);
    if (overlaps(va, size)) {
        expect_refused(rc, -MM_EEXIST, "map over a mapping", tables, out);
        return;
    }
    if (rc == -MM_ENOMEM && budget >= 0) {
        expect_refused(rc, -MM_ENOMEM, "map without frames", tables, out);
        check_translate(va);
        check_translate(va + size - PAGE_SIZE);
        return;
    }
    if (rc)
        fail("map of a free range failed", va, (uint64_t)-rc);
    add_region(va, size, pa, flags, pt_level_of_size(max_page));
    check_translate(va);
    check_translate(va + size - PAGE_SIZE);
    check_translate(va + (next_u32(r) % (size / PAGE_SIZE)) * PAGE_SIZE);
}

static void op_bad_map(struct reader *r)
{
    unsigned kind = next_byte(r) % 4;
    uint64_t va = WIN_BASE + (next_u32(r) % (WIN_SIZE / PAGE_SIZE)) * PAGE_SIZE;
    uint64_t pa = (next_u32(r) % 1024) * PAGE_SIZE, size = PAGE_SIZE, flags = PTE_KERNEL_RW;
    int want = -MM_EINVAL;
    switch (kind) {
    case 0: va += 8; break;                         /* misaligned va */
    case 1: pa += 8; break;                         /* misaligned pa */
    case 2: flags |= UINT64_C(1) << 9; break;       /* an ignored bit: refused */
    case 3: {                                       /* over an existing leaf */
        if (!nreg)
            return;
        const struct region *g = &reg[next_byte(r) % nreg];
        va = g->va + (next_u32(r) % (g->size / PAGE_SIZE)) * PAGE_SIZE;
        want = -MM_EEXIST;
        break;
    }
    }
    uint64_t tables = ptdump_count_tables(&m), out = fa_out;
    struct pt_flush tok = PT_FLUSH_INIT;
    int rc = pt_map_range(&m, VA(va), PA(pa), size, flags, PAGE_1G_SIZE, &tok);
    pt_flush(&tok);
    expect_refused(rc, want, "bad map", tables, out);
}

/* What pt_unmap_range must return for [va, end), from the model. */
static int predict_unmap_range(uint64_t va, uint64_t end)
{
    for (uint64_t x = va; x < end;) {
        const struct region *g = region_at(x);
        if (!g)
            return -MM_ENOENT;
        uint64_t ps = pt_level_size(leaf_level(g, x));
        if (!is_aligned_u64(x, ps) || ps > end - x)
            return -MM_EINVAL;
        x += ps;
    }
    return 0;
}

static void op_unmap_range(struct reader *r)
{
    if (!nreg)
        return;
    const struct region *g = &reg[next_byte(r) % nreg];
    uint64_t pages = g->size / PAGE_SIZE;
    uint64_t first = next_u32(r) % pages;
    uint64_t count = 1 + next_u32(r) % (pages - first + (next_byte(r) % 4 == 0 ? 16 : 0));
    if (next_byte(r) % 2) {     /* often whole leaves: snap to the leaves' edges */
        uint64_t lo = g->va + first * PAGE_SIZE;
        first = (align_down_u64(lo, pt_level_size(leaf_level(g, lo))) - g->va) / PAGE_SIZE;
        uint64_t last = g->va + (first + count - 1) * PAGE_SIZE;
        if (last < g->va + g->size) {
            uint64_t ps = pt_level_size(leaf_level(g, last));
            count = (align_down_u64(last, ps) + ps - g->va) / PAGE_SIZE - first;
        }
    }
    uint64_t va = g->va + first * PAGE_SIZE, size = count * PAGE_SIZE;
    if (va + size > WIN_END)
        size = WIN_END - va;

    int want = predict_unmap_range(va, va + size);
    uint64_t tables = ptdump_count_tables(&m), out = fa_out;
    fuzz_tlb_before(va, size);
    struct pt_flush tok = PT_FLUSH_INIT;
    int rc = pt_unmap_range(&m, VA(va), size, true, &tok);
    pt_flush(&tok);
    if (want) {
        expect_refused(rc, want, "unmap_range result differs from the model", tables, out);
        return;
    }
    if (rc)
        fail("unmap_range of whole leaves failed", va, (uint64_t)-rc);
    model_remove(va, size, 0, false);
    check_translate(va);
    check_translate(va + size - PAGE_SIZE);
}

/* pt_unmap_phys or pt_remap of the leaf at one address. */
static void op_leaf(struct reader *r, bool remap)
{
    uint64_t va;
    if (nreg && next_byte(r) % 4 != 0) {
        const struct region *g = &reg[next_byte(r) % nreg];
        va = g->va + (next_u32(r) % (g->size / PAGE_SIZE)) * PAGE_SIZE;
        if (next_byte(r) % 2)   /* usually the leaf's start */
            va = align_down_u64(va, pt_level_size(leaf_level(g, va)));
    } else {
        va = WIN_BASE + (next_u32(r) % (WIN_SIZE / PAGE_SIZE)) * PAGE_SIZE;
    }
    const struct region *g = region_at(va);
    int want = 0;
    uint64_t ps = 0;
    if (!g) {
        want = -MM_ENOENT;
    } else {
        ps = pt_level_size(leaf_level(g, va));
        if (!is_aligned_u64(va, ps))
            want = -MM_EINVAL;
    }
    uint64_t flags = flag_choices[next_byte(r) % 4];
    uint64_t tables = ptdump_count_tables(&m), out = fa_out;
    fuzz_tlb_before(va, ps ? ps : PAGE_SIZE);
    struct pt_flush tok = PT_FLUSH_INIT;
    struct pt_mapping old;
    int rc = remap ? pt_remap(&m, VA(va), flags, &tok)
                   : pt_unmap_phys(&m, VA(va), true, &old, &tok);
    pt_flush(&tok);
    if (want) {
        expect_refused(rc, want, remap ? "remap result differs" : "unmap result differs",
                       tables, out);
        return;
    }
    if (rc)
        fail(remap ? "remap of a leaf failed" : "unmap of a leaf failed", va, (uint64_t)-rc);
    if (!remap && (old.pa.raw != g->pa + (va - g->va) || old.page_size != ps))
        fail("unmap reported the wrong old page", old.pa.raw, old.page_size);
    model_remove(va, ps, flags, remap);
    check_translate(va);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    harness_quiet = 1;
    ffa_reset();
    nreg = 0;
    if (pt_mapper_create(&ffa, &m))
        fail("mapper create failed", 0, 0);
    fuzz_tlb_start(FUZZ_CPUS, m.top_pa);

    struct reader r = { data, size };
    for (unsigned n = 0; r.n; n++) {
        if (nreg) {             /* some other region is cached too */
            const struct region *g = &reg[n % nreg];
            tlb_model_fill_range(VA(g->va), g->size);
        }
        tlb_model_check("fuzz_paging: after an operation");
        switch (next_byte(&r) % 10) {
        case 0: case 1: case 2:
            op_map(&r);
            break;
        case 3:
            op_bad_map(&r);
            break;
        case 4: case 5:
            op_unmap_range(&r);
            break;
        case 6:
            op_leaf(&r, false);
            break;
        case 7:
            op_leaf(&r, true);
            break;
        case 8: {
            unsigned b = next_byte(&r);
            fa_budget = b >= 0x80 ? -1 : (long)(b % 6);
            break;
        }
        case 9:
            for (int k = 0; k < 4; k++)
                check_translate(WIN_BASE + next_u32(&r) % (WIN_SIZE / PAGE_SIZE) * PAGE_SIZE +
                                next_byte(&r));
            check_tables();
            break;
        }
    }

    check_tables();
    fa_budget = -1;
    while (nreg) {
        struct region g = reg[nreg - 1];
        fuzz_tlb_before(g.va, g.size);
        struct pt_flush tok = PT_FLUSH_INIT;
        int rc = pt_unmap_range(&m, VA(g.va), g.size, true, &tok);
        pt_flush(&tok);
        if (rc)
            fail("final unmap failed", g.va, (uint64_t)-rc);
        tlb_model_check("fuzz_paging: after a final unmap");
        nreg--;
    }
    if (ptdump_count_tables(&m) != 1 || fa_out != 1)
        fail("tables left after unmapping everything", ptdump_count_tables(&m), fa_out);
    tlb_model_check("fuzz_paging: after the final unmaps");
    tlb_model_fini();           /* every CPU leaves the table */
    harness_cpu_id = 0;
    if (pt_mapper_destroy(&m) || fa_out != 0)
        fail("frames out after destroying the mapper", fa_out, 0);
    return 0;
}
