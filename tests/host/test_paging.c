/*
 * test_paging.c - the page-table mapper and ptdump over simulated physical
 * memory.  Table frames come from a small free-list allocator that counts
 * what is outstanding, can be told to run dry after N frames, poisons the
 * frames it hands out and catches double or foreign frees.
 */
#include "harness.h"
#include "test_fa.h"
#include "tlb_model.h"
#include <mm/arch.h>
#include <mm/paging.h>
#include <mm/ptdump.h>

extern phys_addr_t host_cr3;
extern unsigned long host_invlpg_count, host_flush_all_count;
extern bool host_has_1g;
extern unsigned long harness_shootdowns;

/* ------------------------------------------------------ test frame source */

#define SIM_SIZE     (64 * MiB)
#define POOL_START   (1 * MiB)

static struct test_fa tfa;

static void tfa_setup(void)
{
    sim_mem_fini();
    sim_mem_init(SIM_SIZE);
    test_fa_init(&tfa, POOL_START, SIM_SIZE);
}

static struct pt_mapper new_mapper(void)
{
    tfa_setup();
    struct pt_mapper m;
    if (pt_mapper_create(&tfa.fa, &m) != 0) {
        fprintf(stderr, "pt_mapper_create failed\n");
        exit(2);
    }
    return m;
}

/* ------------------------------------------------------------------ helpers */

#define KVA   UINT64_C(0xffffc00000000000)   /* 512 GiB aligned test area */

static int do_map_phys(struct pt_mapper *m, uint64_t va, uint64_t pa, uint64_t flags)
{
    struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
    int err = pt_map_phys(m, VA(va), PA(pa), flags, &tok);
    if (err)
        CHECK(!pt_flush_pending(&tok));
    pt_flush(&tok);
    return err;
}

static int do_map_huge(struct pt_mapper *m, uint64_t va, uint64_t pa, uint64_t size,
                       uint64_t flags)
{
    struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
    int err = pt_map_huge(m, VA(va), PA(pa), size, flags, &tok);
    if (err)
        CHECK(!pt_flush_pending(&tok));
    pt_flush(&tok);
    return err;
}

static int do_map_range(struct pt_mapper *m, uint64_t va, uint64_t pa, uint64_t size,
                        uint64_t flags, uint64_t max_page)
{
    struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
    int err = pt_map_range(m, VA(va), PA(pa), size, flags, max_page, &tok);
    if (err)
        CHECK(!pt_flush_pending(&tok));
    pt_flush(&tok);
    return err;
}

static int do_unmap_phys(struct pt_mapper *m, uint64_t va, bool free_tables,
                         struct pt_mapping *old)
{
    struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
    int err = pt_unmap_phys(m, VA(va), free_tables, old, &tok);
    if (err)
        CHECK(!pt_flush_pending(&tok));
    pt_flush(&tok);
    return err;
}

/* Leaf level at va, 0 if unmapped. */
static unsigned leaf_level(struct pt_mapper *m, uint64_t va)
{
    struct pt_mapping t;
    return pt_translate(m, VA(va), &t) == 0 ? t.level : 0;
}

/* Cheap fingerprint of the whole tree: tables, leaves and their contents. */
struct fp { uint64_t tables, leaves, hash; };

static void fp_leaf(void *ctx, const struct ptdump_leaf *l)
{
    struct fp *f = ctx;
    f->leaves++;
    f->hash = f->hash * 1000003 ^ l->va.raw ^ (l->pa.raw << 1) ^ l->flags ^ l->level;
}

static struct fp fingerprint(const struct pt_mapper *m)
{
    struct fp f = { ptdump_count_tables(m), 0, 17 };
    ptdump_walk(m, fp_leaf, &f);
    return f;
}

static bool fp_equal(struct fp a, struct fp b)
{
    return a.tables == b.tables && a.leaves == b.leaves && a.hash == b.hash;
}

/* ------------------------------------------------------------------- tests */

static void test_roundtrip_4k(void)
{
    struct pt_mapper m = new_mapper();
    CHECK_EQ(tfa.outstanding, 1);
    uint64_t va = KVA + 0x1234000, pa = 0x7654000;

    struct pt_flush tok = PT_FLUSH_INIT;
    CHECK_EQ(pt_map_phys(&m, VA(va), PA(pa), PTE_KERNEL_RW, &tok), 0);
    CHECK_EQ(tok.kind, PT_FLUSH_ONE_PAGE);
    CHECK_EQ(tok.va.raw, va);
    CHECK_EQ(tok.npages, 1);
    pt_flush_ignore(&tok);
    CHECK_EQ(tfa.outstanding, 4);       /* top + PDPT + PD + PT */

    struct pt_mapping t;
    CHECK_EQ(pt_translate(&m, VA(va + 0x123), &t), 0);
    CHECK_EQ(t.pa.raw, pa + 0x123);
    CHECK_EQ(t.flags, PTE_KERNEL_RW);
    CHECK_EQ(t.level, 1);
    CHECK_EQ(t.page_size, PAGE_SIZE);
    CHECK_EQ(pt_translate(&m, VA(va + PAGE_SIZE), &t), -MM_ENOENT);
    CHECK_EQ(pt_translate(&m, VA(va - 1), &t), -MM_ENOENT);

    /* Intermediate entries: P|W only, no NX, no U. */
    pt_entry_t e;
    for (unsigned level = 4; level >= 2; level--) {
        CHECK_EQ(pt_get_entry(&m, VA(va), level, &e), 0);
        CHECK_EQ(pte_flags(e), PTE_TABLE);
    }
    CHECK_EQ(pt_get_entry(&m, VA(va), 1, &e), 0);
    CHECK_EQ(e.raw, pa | PTE_KERNEL_RW);
    phys_addr_t tpa;
    CHECK_EQ(pt_get_table(&m, VA(va), 4, &tpa), 0);
    CHECK_EQ(tpa.raw, m.top_pa.raw);
    CHECK_EQ(pt_get_table(&m, VA(va + GiB), 1, &tpa), -MM_ENOENT);

    struct pt_mapping old;
    CHECK_EQ(do_unmap_phys(&m, va, true, &old), 0);
    CHECK_EQ(old.pa.raw, pa);
    CHECK_EQ(old.flags, PTE_KERNEL_RW);
    CHECK_EQ(old.level, 1);
    CHECK_EQ(pt_translate(&m, VA(va), &t), -MM_ENOENT);
    CHECK_EQ(tfa.outstanding, 1);
    CHECK_EQ(ptdump_count_tables(&m), 1);
    CHECK_EQ(tfa.bad_frees, 0);
}

static void test_roundtrip_huge(void)
{
    struct pt_mapper m = new_mapper();
    host_has_1g = true;

    /* 2 MiB */
    uint64_t va2 = KVA + 3 * PAGE_2M_SIZE, pa2 = 5 * PAGE_2M_SIZE;
    CHECK_EQ(do_map_huge(&m, va2, pa2, PAGE_2M_SIZE, PTE_KERNEL_RO), 0);
    struct pt_mapping t;
    CHECK_EQ(pt_translate(&m, VA(va2 + 0x12345), &t), 0);
    CHECK_EQ(t.pa.raw, pa2 + 0x12345);
    CHECK_EQ(t.level, 2);
    CHECK_EQ(t.page_size, PAGE_2M_SIZE);
    CHECK_EQ(t.flags, PTE_KERNEL_RO);
    CHECK_EQ(pt_translate(&m, VA(va2 + PAGE_2M_SIZE - 1), &t), 0);
    CHECK_EQ(t.pa.raw, pa2 + PAGE_2M_SIZE - 1);
    pt_entry_t e;
    CHECK_EQ(pt_get_entry(&m, VA(va2), 2, &e), 0);
    CHECK(e.raw & PTE_HUGE);
    CHECK_EQ(pt_get_entry(&m, VA(va2), 1, &e), -MM_ENOENT);
    CHECK_EQ(tfa.outstanding, 3);

    /* 1 GiB, with a physical address above 4 GiB */
    uint64_t va1 = KVA + 7 * GiB, pa1 = 9 * GiB;
    CHECK_EQ(do_map_huge(&m, va1, pa1, PAGE_1G_SIZE, PTE_KERNEL_RW), 0);
    CHECK_EQ(pt_translate(&m, VA(va1 + 0x3456789), &t), 0);
    CHECK_EQ(t.pa.raw, pa1 + 0x3456789);
    CHECK_EQ(t.level, 3);
    CHECK_EQ(t.page_size, PAGE_1G_SIZE);
    CHECK_EQ(pt_get_table(&m, VA(va1), 2, &(phys_addr_t){ 0 }), -MM_ENOENT);
    CHECK_EQ(tfa.outstanding, 3);

    /* unmap must start at the page start */
    CHECK_EQ(do_unmap_phys(&m, va1 + PAGE_2M_SIZE, true, NULL), -MM_EINVAL);
    CHECK_EQ(do_unmap_phys(&m, va2 + PAGE_SIZE, true, NULL), -MM_EINVAL);
    struct pt_mapping old;
    CHECK_EQ(do_unmap_phys(&m, va1, true, &old), 0);
    CHECK_EQ(old.pa.raw, pa1);
    CHECK_EQ(old.page_size, PAGE_1G_SIZE);
    CHECK_EQ(tfa.outstanding, 3);
    CHECK_EQ(do_unmap_phys(&m, va2, true, &old), 0);
    CHECK_EQ(old.pa.raw, pa2);
    CHECK_EQ(old.level, 2);
    CHECK_EQ(tfa.outstanding, 1);

    /* no 1 GiB pages on this CPU */
    host_has_1g = false;
    CHECK_EQ(do_map_huge(&m, va1, pa1, PAGE_1G_SIZE, PTE_KERNEL_RW), -MM_EINVAL);
    CHECK_EQ(tfa.outstanding, 1);
    host_has_1g = true;
    CHECK_EQ(do_map_huge(&m, va1, pa1, 3 * PAGE_2M_SIZE, PTE_KERNEL_RW), -MM_EINVAL);
    CHECK_EQ(tfa.bad_frees, 0);
}

static void test_map_existing(void)
{
    struct pt_mapper m = new_mapper();
    uint64_t va = KVA + GiB + 5 * PAGE_SIZE;
    CHECK_EQ(do_map_phys(&m, va, 0x5000, PTE_KERNEL_RW), 0);
    CHECK_EQ(do_map_huge(&m, KVA + 2 * GiB + PAGE_2M_SIZE, 0x40000000, PAGE_2M_SIZE,
                         PTE_KERNEL_RW), 0);
    CHECK_EQ(do_map_huge(&m, KVA + 4 * GiB, 0x80000000, PAGE_1G_SIZE, PTE_KERNEL_RW), 0);
    struct fp before = fingerprint(&m);
    uint64_t frames = tfa.outstanding;

    /* same 4K page again, with other pa or flags */
    CHECK_EQ(do_map_phys(&m, va, 0x5000, PTE_KERNEL_RW), -MM_EEXIST);
    CHECK_EQ(do_map_phys(&m, va, 0x9000, PTE_KERNEL_RO), -MM_EEXIST);
    /* 2M / 1G where a table exists (the PT / PD under va) */
    CHECK_EQ(do_map_huge(&m, align_down_u64(va, PAGE_2M_SIZE), 0, PAGE_2M_SIZE,
                         PTE_KERNEL_RW), -MM_EEXIST);
    CHECK_EQ(do_map_huge(&m, align_down_u64(va, GiB), 0, PAGE_1G_SIZE, PTE_KERNEL_RW),
             -MM_EEXIST);
    /* 4K and 2M inside the 2M and 1G huge pages */
    CHECK_EQ(do_map_phys(&m, KVA + 2 * GiB + PAGE_2M_SIZE + 7 * PAGE_SIZE, 0, PTE_KERNEL_RW),
             -MM_EEXIST);
    CHECK_EQ(do_map_phys(&m, KVA + 4 * GiB + 99 * PAGE_SIZE, 0, PTE_KERNEL_RW), -MM_EEXIST);
    CHECK_EQ(do_map_huge(&m, KVA + 4 * GiB + 8 * PAGE_2M_SIZE, 0, PAGE_2M_SIZE,
                         PTE_KERNEL_RW), -MM_EEXIST);
    CHECK_EQ(do_map_huge(&m, KVA + 4 * GiB, 0, PAGE_1G_SIZE, PTE_KERNEL_RW), -MM_EEXIST);
    /* a range whose last page collides: nothing of it may appear */
    CHECK_EQ(do_map_range(&m, va - 64 * PAGE_SIZE, 0x100000, 65 * PAGE_SIZE, PTE_KERNEL_RW,
                          PAGE_1G_SIZE), -MM_EEXIST);
    CHECK(fp_equal(fingerprint(&m), before));
    CHECK_EQ(tfa.outstanding, frames);
}

static void test_bad_input(void)
{
    struct pt_mapper m = new_mapper();
    CHECK_EQ(do_map_phys(&m, KVA, 0x1000, PTE_KERNEL_RW), 0);
    CHECK_EQ(do_map_huge(&m, KVA + GiB, 0, PAGE_2M_SIZE, PTE_KERNEL_RW), 0);
    struct fp before = fingerprint(&m);
    uint64_t frames = tfa.outstanding;
    const uint64_t noncanon = UINT64_C(0x0000800000000000);

    CHECK_EQ(do_map_phys(&m, KVA + 0x10, 0x1000, PTE_KERNEL_RW), -MM_EINVAL);
    CHECK_EQ(do_map_phys(&m, KVA + PAGE_SIZE, 0x1010, PTE_KERNEL_RW), -MM_EINVAL);
    CHECK_EQ(do_map_phys(&m, noncanon, 0x1000, PTE_KERNEL_RW), -MM_EINVAL);
    CHECK_EQ(do_map_phys(&m, UINT64_C(0xfff0000000000000), 0x1000, PTE_KERNEL_RW), -MM_EINVAL);
    CHECK_EQ(do_map_phys(&m, KVA + PAGE_SIZE, UINT64_C(1) << 52, PTE_KERNEL_RW), -MM_EINVAL);
    CHECK_EQ(do_map_phys(&m, KVA + PAGE_SIZE, 0x1000, PTE_KERNEL_RW | 0x2000), -MM_EINVAL);
    CHECK_EQ(do_map_phys(&m, KVA + PAGE_SIZE, 0x1000, PTE_KERNEL_RW | (UINT64_C(1) << 9)), -MM_EINVAL);
    CHECK_EQ(do_map_huge(&m, KVA + 2 * GiB + PAGE_SIZE, 0, PAGE_2M_SIZE, PTE_KERNEL_RW),
             -MM_EINVAL);
    CHECK_EQ(do_map_huge(&m, KVA + 2 * GiB, PAGE_SIZE, PAGE_2M_SIZE, PTE_KERNEL_RW), -MM_EINVAL);
    CHECK_EQ(do_map_huge(&m, KVA + 2 * GiB + PAGE_2M_SIZE, 0, PAGE_1G_SIZE, PTE_KERNEL_RW),
             -MM_EINVAL);
    CHECK_EQ(do_map_range(&m, KVA + 2 * GiB, 0, 0, PTE_KERNEL_RW, PAGE_SIZE), -MM_EINVAL);
    CHECK_EQ(do_map_range(&m, KVA + 2 * GiB, 0, 100, PTE_KERNEL_RW, PAGE_SIZE), -MM_EINVAL);
    CHECK_EQ(do_map_range(&m, KVA + 2 * GiB, 0, PAGE_SIZE, PTE_KERNEL_RW, 12345), -MM_EINVAL);
    /* across the canonical hole, and off the top of the address space */
    CHECK_EQ(do_map_range(&m, noncanon - 2 * PAGE_SIZE, 0, 4 * PAGE_SIZE, PTE_KERNEL_RW,
                          PAGE_SIZE), -MM_EINVAL);
    CHECK_EQ(do_map_range(&m, UINT64_MAX - PAGE_SIZE + 1, 0, 2 * PAGE_SIZE, PTE_KERNEL_RW,
                          PAGE_SIZE), -MM_EINVAL);
    /* both ends canonical, but the range spans the hole */
    struct pt_flush tok0 = PT_FLUSH_INIT;
    CHECK_EQ(pt_unmap_range(&m, VA(0), UINT64_C(0xffff800000001000), true, &tok0), -MM_EINVAL);

    struct pt_flush tok = PT_FLUSH_INIT;
    CHECK_EQ(do_unmap_phys(&m, KVA + PAGE_SIZE, true, NULL), -MM_ENOENT);
    CHECK_EQ(do_unmap_phys(&m, KVA + 5 * GiB, true, NULL), -MM_ENOENT);
    CHECK_EQ(do_unmap_phys(&m, KVA + 8, true, NULL), -MM_EINVAL);
    CHECK_EQ(do_unmap_phys(&m, noncanon, true, NULL), -MM_EINVAL);
    CHECK_EQ(pt_unmap(&m, VA(KVA + GiB), true, &tok), -MM_EINVAL);     /* huge leaf */
    CHECK_EQ(pt_unmap(&m, VA(KVA + PAGE_SIZE), true, &tok), -MM_ENOENT);
    CHECK_EQ(pt_remap(&m, VA(KVA + PAGE_SIZE), PTE_KERNEL_RO, &tok), -MM_ENOENT);
    CHECK_EQ(pt_remap(&m, VA(KVA), PTE_KERNEL_RO | (UINT64_C(1) << 9), &tok), -MM_EINVAL);
    CHECK_EQ(pt_remap(&m, VA(KVA + GiB + PAGE_SIZE), PTE_KERNEL_RO, &tok), -MM_EINVAL);
    CHECK_EQ(pt_unmap_range(&m, VA(KVA), 2 * PAGE_SIZE, true, &tok), -MM_ENOENT);
    CHECK_EQ(pt_unmap_range(&m, VA(KVA + GiB), PAGE_SIZE, true, &tok), -MM_EINVAL);
    CHECK(!pt_flush_pending(&tok));
    struct pt_mapping t;
    CHECK_EQ(pt_translate(&m, VA(noncanon), &t), -MM_EINVAL);
    CHECK_EQ(pt_get_entry(&m, VA(KVA), 5, &(pt_entry_t){ 0 }), -MM_EINVAL);
    CHECK_EQ(pt_get_entry(&m, VA(KVA), 0, &(pt_entry_t){ 0 }), -MM_EINVAL);

    CHECK(fp_equal(fingerprint(&m), before));
    CHECK_EQ(tfa.outstanding, frames);
    CHECK_EQ(tfa.bad_frees, 0);
}

static void test_remap(void)
{
    struct pt_mapper m = new_mapper();
    struct pt_flush tok = PT_FLUSH_INIT;
    struct pt_mapping t;

    CHECK_EQ(do_map_phys(&m, KVA + PAGE_SIZE, 0x3000, PTE_KERNEL_RW), 0);
    CHECK_EQ(pt_remap(&m, VA(KVA + PAGE_SIZE), PTE_KERNEL_RO, &tok), 0);
    CHECK_EQ(tok.kind, PT_FLUSH_ONE_PAGE);
    pt_flush(&tok);
    CHECK_EQ(pt_translate(&m, VA(KVA + PAGE_SIZE), &t), 0);
    CHECK_EQ(t.flags, PTE_KERNEL_RO);
    CHECK_EQ(t.pa.raw, 0x3000);

    CHECK_EQ(do_map_huge(&m, KVA + PAGE_2M_SIZE, 0x600000, PAGE_2M_SIZE, PTE_KERNEL_RW), 0);
    CHECK_EQ(pt_remap(&m, VA(KVA + PAGE_2M_SIZE), PTE_KERNEL_TEXT, &tok), 0);
    CHECK_EQ(tok.npages, 512);
    pt_flush(&tok);
    CHECK_EQ(pt_translate(&m, VA(KVA + PAGE_2M_SIZE + 0x42), &t), 0);
    CHECK_EQ(t.flags, PTE_KERNEL_TEXT);
    CHECK_EQ(t.level, 2);
    CHECK_EQ(t.pa.raw, 0x600042);

    host_has_1g = true;
    CHECK_EQ(do_map_huge(&m, KVA + GiB, 0, PAGE_1G_SIZE, PTE_KERNEL_RO), 0);
    CHECK_EQ(pt_remap(&m, VA(KVA + GiB), PTE_MMIO, &tok), 0);
    pt_flush(&tok);
    CHECK_EQ(pt_translate(&m, VA(KVA + GiB + 5), &t), 0);
    CHECK_EQ(t.flags, PTE_MMIO);
    CHECK_EQ(t.level, 3);
    CHECK_EQ(t.pa.raw, 5);
}

/* pt_map/pt_unmap own their frames; tables are freed when asked to. */
static void test_map_unmap_frames(void)
{
    struct pt_mapper m = new_mapper();
    struct pt_flush tok = PT_FLUSH_INIT;
    enum { N = 1500 };
    static uint64_t vas[N];
    uint64_t seed = 99;

    /* Spread over two top-level slots, several PDs and PTs. */
    for (int i = 0; i < N; i++) {
        uint64_t va;
        struct pt_mapping t;
        do {
            va = (rng_next(&seed) & 1 ? KVA : KVA + 512 * GiB) +
                 (rng_next(&seed) % (3 * 512 * 4)) * PAGE_SIZE * 171;
            va = align_down_u64(va, PAGE_SIZE);
        } while (pt_translate(&m, VA(va), &t) == 0);
        phys_addr_t pa;
        REQUIRE(pt_map(&m, VA(va), PTE_KERNEL_RW, &pa, &tok) == 0);
        pt_flush(&tok);
        vas[i] = va;
        uint64_t *words = pa_to_ptr(pa);
        int nonzero = 0;
        for (unsigned w = 0; w < PAGE_SIZE / 8; w++)
            nonzero |= words[w] != 0;
        CHECK(!nonzero);                /* the frame was zeroed */
        words[0] = va;                  /* remember who owns it */
    }
    for (int i = 0; i < N; i++) {
        struct pt_mapping t;
        REQUIRE(pt_translate(&m, VA(vas[i]), &t) == 0);
        CHECK_EQ(*(uint64_t *)pa_to_ptr(t.pa), vas[i]);
    }
    uint64_t tables = ptdump_count_tables(&m);
    CHECK_EQ(tfa.outstanding, N + tables);
    CHECK(tables > 20);

    /* first half without freeing tables, second half with */
    for (int i = 0; i < N / 2; i++) {
        CHECK_EQ(pt_unmap(&m, VA(vas[i]), false, &tok), 0);
        pt_flush(&tok);
    }
    CHECK_EQ(ptdump_count_tables(&m), tables);
    for (int i = N / 2; i < N; i++) {
        CHECK_EQ(pt_unmap(&m, VA(vas[i]), true, &tok), 0);
        pt_flush(&tok);
    }
    CHECK_EQ(pt_unmap(&m, VA(vas[0]), true, &tok), -MM_ENOENT);
    /* Tables emptied by the first half stay: destroy reclaims them. */
    CHECK_EQ(tfa.outstanding, ptdump_count_tables(&m));
    CHECK_EQ(pt_mapper_destroy(&m), 0);
    CHECK_EQ(tfa.outstanding, 0);
    CHECK_EQ(tfa.bad_frees, 0);

    /* Everything with free_tables: back to exactly the top table. */
    m = new_mapper();
    for (int i = 0; i < N; i++) {
        REQUIRE(pt_map(&m, VA(vas[i]), PTE_KERNEL_RW, NULL, &tok) == 0);
        pt_flush(&tok);
    }
    for (int i = N - 1; i >= 0; i--) {
        CHECK_EQ(pt_unmap(&m, VA(vas[i]), true, &tok), 0);
        pt_flush(&tok);
    }
    CHECK_EQ(tfa.outstanding, 1);
    CHECK_EQ(ptdump_count_tables(&m), 1);
    CHECK_EQ(tfa.bad_frees, 0);
}

/* Expected leaf levels of a range, checked at every piece start. */
struct piece { uint64_t off, size; unsigned level; };

static void check_pieces(struct pt_mapper *m, uint64_t va, uint64_t pa,
                         const struct piece *p, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        for (uint64_t o = p[i].off; o < p[i].off + p[i].size; o += pt_level_size(p[i].level)) {
            struct pt_mapping t;
            if (pt_translate(m, VA(va + o), &t) != 0) {
                CHECK(!"piece unmapped");
                return;
            }
            CHECK_EQ(t.level, p[i].level);
            CHECK_EQ(t.pa.raw, pa + o);
            CHECK_EQ(t.flags, PTE_KERNEL_RW);
        }
    }
}

static void count_leaf(void *ctx, const struct ptdump_leaf *l)
{
    (void)l;
    ++*(uint64_t *)ctx;
}

static uint64_t count_leaves(const struct pt_mapper *m)
{
    uint64_t n = 0;
    ptdump_walk(m, count_leaf, &n);
    return n;
}

static void test_map_range_pieces(void)
{
    /* 2 x 4K, 2M, 1G, 2M, 3 x 4K; pa congruent to va modulo 1 GiB. */
    const uint64_t head = 2 * PAGE_SIZE, tail = 3 * PAGE_SIZE;
    const uint64_t va = KVA + GiB - PAGE_2M_SIZE - head;
    const uint64_t pa = 2 * GiB - PAGE_2M_SIZE - head;
    const uint64_t size = head + PAGE_2M_SIZE + GiB + PAGE_2M_SIZE + tail;
    const struct piece with_1g[] = {
        { 0, head, 1 }, { head, PAGE_2M_SIZE, 2 }, { head + PAGE_2M_SIZE, GiB, 3 },
        { head + PAGE_2M_SIZE + GiB, PAGE_2M_SIZE, 2 },
        { head + 2 * PAGE_2M_SIZE + GiB, tail, 1 },
    };
    const struct piece no_1g[] = {
        { 0, head, 1 }, { head, 2 * PAGE_2M_SIZE + GiB, 2 },
        { head + 2 * PAGE_2M_SIZE + GiB, tail, 1 },
    };
    struct pt_flush tok = PT_FLUSH_INIT;

    host_has_1g = true;
    struct pt_mapper m = new_mapper();
    REQUIRE(pt_map_range(&m, VA(va), PA(pa), size, PTE_KERNEL_RW, PAGE_1G_SIZE, &tok) == 0);
    CHECK_EQ(tok.kind, PT_FLUSH_RANGE);
    CHECK_EQ(tok.va.raw, va);
    CHECK_EQ(tok.npages, size / PAGE_SIZE);
    unsigned long full = host_flush_all_count;
    pt_flush(&tok);
    CHECK_EQ(host_flush_all_count, full + 1);       /* too big for invlpg */
    check_pieces(&m, va, pa, with_1g, 5);
    CHECK_EQ(count_leaves(&m), 8);
    CHECK_EQ(leaf_level(&m, va - PAGE_SIZE), 0);
    CHECK_EQ(leaf_level(&m, va + size), 0);
    /* PDPT, 2 PDs, 2 PTs + top */
    CHECK_EQ(ptdump_count_tables(&m), 6);
    REQUIRE(pt_unmap_range(&m, VA(va), size, true, &tok) == 0);
    pt_flush(&tok);
    CHECK_EQ(count_leaves(&m), 0);
    CHECK_EQ(tfa.outstanding, 1);

    /* 1 GiB allowed by the caller but not by the CPU, and the reverse */
    host_has_1g = false;
    REQUIRE(do_map_range(&m, va, pa, size, PTE_KERNEL_RW, PAGE_1G_SIZE) == 0);
    check_pieces(&m, va, pa, no_1g, 3);
    CHECK_EQ(count_leaves(&m), 2 + 514 + 3);
    REQUIRE(pt_unmap_range(&m, VA(va), size, true, &tok) == 0);
    pt_flush(&tok);
    host_has_1g = true;
    REQUIRE(do_map_range(&m, va, pa, size, PTE_KERNEL_RW, PAGE_2M_SIZE) == 0);
    check_pieces(&m, va, pa, no_1g, 3);
    REQUIRE(pt_unmap_range(&m, VA(va), size, true, &tok) == 0);
    pt_flush(&tok);

    /* 4 KiB only; and pa not congruent to va: 4 KiB everywhere */
    const struct piece all_4k[] = { { 0, 8 * MiB, 1 } };
    REQUIRE(do_map_range(&m, va, pa, 8 * MiB, PTE_KERNEL_RW, PAGE_SIZE) == 0);
    check_pieces(&m, va, pa, all_4k, 1);
    REQUIRE(pt_unmap_range(&m, VA(va), 8 * MiB, true, &tok) == 0);
    pt_flush(&tok);
    REQUIRE(do_map_range(&m, va, pa + PAGE_SIZE, 8 * MiB, PTE_KERNEL_RW, PAGE_1G_SIZE) == 0);
    check_pieces(&m, va, pa + PAGE_SIZE, all_4k, 1);
    CHECK_EQ(count_leaves(&m), 2048);
    REQUIRE(pt_unmap_range(&m, VA(va), 8 * MiB, true, &tok) == 0);
    pt_flush(&tok);
    CHECK_EQ(tfa.outstanding, 1);
    CHECK_EQ(ptdump_count_tables(&m), 1);
    CHECK_EQ(tfa.bad_frees, 0);
}

static void test_map_range_enomem(void)
{
    const uint64_t va = KVA + 511 * GiB - 4 * MiB - 3 * PAGE_SIZE;   /* crosses into slot 2 */
    const uint64_t size = 3 * PAGE_SIZE + 4 * MiB + 2 * GiB + 5 * PAGE_SIZE;
    const uint64_t pa = va & (4 * GiB - 1);
    host_has_1g = true;
    struct pt_mapper m = new_mapper();
    /* something already there, sharing tables with the new range */
    CHECK_EQ(do_map_phys(&m, va - PAGE_SIZE, 0x1000, PTE_KERNEL_RO), 0);
    struct fp before = fingerprint(&m);
    uint64_t frames = tfa.outstanding;

    /* find how many tables the range needs */
    REQUIRE(do_map_range(&m, va, pa, size, PTE_KERNEL_RW, PAGE_1G_SIZE) == 0);
    uint64_t needed = tfa.outstanding - frames;
    CHECK_EQ(needed, 3);        /* slot 2: PDPT, PD and PT for the 4K tail */
    struct pt_flush tok = PT_FLUSH_INIT;
    REQUIRE(pt_unmap_range(&m, VA(va), size, true, &tok) == 0);
    pt_flush(&tok);
    CHECK(fp_equal(fingerprint(&m), before));
    CHECK_EQ(tfa.outstanding, frames);

    for (uint64_t budget = 0; budget < needed; budget++) {
        tfa.budget = budget;
        CHECK_EQ(do_map_range(&m, va, pa, size, PTE_KERNEL_RW, PAGE_1G_SIZE), -MM_ENOMEM);
        CHECK(fp_equal(fingerprint(&m), before));
        CHECK_EQ(tfa.outstanding, frames);
        CHECK_EQ(leaf_level(&m, va), 0);
        CHECK_EQ(leaf_level(&m, va + size - PAGE_SIZE), 0);
    }
    tfa.budget = 0;
    CHECK_EQ(do_map_phys(&m, KVA + 100 * GiB, 0, PTE_KERNEL_RW), -MM_ENOMEM);
    CHECK_EQ(pt_map(&m, VA(va - 2 * PAGE_SIZE), PTE_KERNEL_RW, NULL, &tok), -MM_ENOMEM);
    tfa.budget = 1;     /* the data frame, but no table: must be given back */
    CHECK_EQ(pt_map(&m, VA(KVA + 100 * GiB), PTE_KERNEL_RW, NULL, &tok), -MM_ENOMEM);
    CHECK(!pt_flush_pending(&tok));
    CHECK(fp_equal(fingerprint(&m), before));
    CHECK_EQ(tfa.outstanding, frames);

    tfa.budget = needed;
    CHECK_EQ(do_map_range(&m, va, pa, size, PTE_KERNEL_RW, PAGE_1G_SIZE), 0);
    CHECK_EQ(tfa.budget, 0);
    CHECK_EQ(tfa.bad_frees, 0);
}

/*
 * Random map/unmap/translate against a model.  Two windows: one across a
 * 1 GiB boundary in the upper half, one at the very end of the lower half.
 * free_tables is always set, so the model also predicts the table count.
 * The table is loaded on RANDOM_CPUS CPUs of the TLB model: before each
 * step every CPU caches the ends of the 2 MiB region the step works in,
 * one CPU also a random page of the other window, the step runs on the
 * next CPU in turn, and before the next step no CPU may hold a stale
 * entry.  Physical addresses given to the mapper lie at 1 GiB and above,
 * away from the allocator's frames.
 */
#define RANDOM_CPUS 4
#define WIN_PAGES 1024u
static const uint64_t win_base[2] = { KVA + GiB - 2 * MiB, UINT64_C(0x00007fffffc00000) };

struct model_page { uint64_t pa; uint8_t mapped, huge, owned, writable; };
static struct model_page model[2][WIN_PAGES];

static uint64_t model_tables(void)
{
    uint64_t seen[3][64], nseen[3] = { 0, 0, 0 }, total = 1;
    for (unsigned w = 0; w < 2; w++)
        for (unsigned i = 0; i < WIN_PAGES; i++) {
            if (!model[w][i].mapped)
                continue;
            uint64_t va = win_base[w] + (uint64_t)i * PAGE_SIZE;
            /* 0: PDPT (512G), 1: PD (1G), 2: PT (2M, only under 4K leaves) */
            uint64_t base[3] = { va >> 39, va >> 30, va >> 21 };
            for (unsigned l = 0; l < (model[w][i].huge ? 2u : 3u); l++) {
                bool found = false;
                for (uint64_t k = 0; k < nseen[l]; k++)
                    found |= seen[l][k] == base[l];
                if (!found) {
                    seen[l][nseen[l]++] = base[l];
                    total++;
                }
            }
        }
    return total;
}

static void test_random_model(void)
{
    struct pt_mapper m = new_mapper();
    memset(model, 0, sizeof model);
    uint64_t seed = 12345;
    struct pt_flush tok = PT_FLUSH_INIT;
    unsigned long ops = 0, maps = 0, unmaps = 0, hugemaps = 0;
    tlb_model_init(RANDOM_CPUS, m.top_pa);

    for (int step = 0; step < 12000; step++) {
        unsigned w = rng_next(&seed) & 1;
        unsigned i = rng_next(&seed) % WIN_PAGES;
        uint64_t va = win_base[w] + (uint64_t)i * PAGE_SIZE;
        struct model_page *p = &model[w][i];
        unsigned op = rng_next(&seed) % 10;
        ops++;
        tlb_model_check("test_random_model");
        tlb_model_fill_range(VA(align_down_u64(va, PAGE_2M_SIZE)), PAGE_2M_SIZE);
        tlb_model_fill_page(step % RANDOM_CPUS,
                            VA(win_base[w ^ 1] + rng_next(&seed) % WIN_PAGES * PAGE_SIZE));
        harness_cpu_id = step % RANDOM_CPUS;

        if (op < 4) {                                   /* map_phys or map */
            bool own = rng_next(&seed) & 1;
            uint64_t pa = GiB + ((rng_next(&seed) % GiB) & ~(PAGE_SIZE - 1));
            bool wr = rng_next(&seed) & 1;
            uint64_t flags = wr ? PTE_KERNEL_RW : PTE_KERNEL_RO;
            int err;
            phys_addr_t got = PA(0);
            if (own)
                err = pt_map(&m, VA(va), flags, &got, &tok);
            else
                err = pt_map_phys(&m, VA(va), PA(pa), flags, &tok);
            pt_flush(&tok);
            if (p->mapped) {
                CHECK_EQ(err, -MM_EEXIST);
            } else {
                CHECK_EQ(err, 0);
                *p = (struct model_page){ own ? got.raw : pa, 1, 0, own, wr };
                maps++;
            }
        } else if (op < 5) {                            /* 2 MiB page */
            uint64_t hva = align_down_u64(va, PAGE_2M_SIZE);
            if (hva < win_base[w] || hva + PAGE_2M_SIZE > win_base[w] + WIN_PAGES * PAGE_SIZE)
                continue;
            unsigned first = (unsigned)((hva - win_base[w]) / PAGE_SIZE);
            if (rng_next(&seed) % 8 == 0) {
                /* empty the region first so the huge page can go in */
                for (unsigned k = 0; k < 512; k++) {
                    struct model_page *r = &model[w][first + k];
                    uint64_t rva = hva + (uint64_t)k * PAGE_SIZE;
                    if (!r->mapped || (r->huge && k != 0))
                        continue;
                    int err = r->owned ? pt_unmap(&m, VA(rva), true, &tok)
                                       : pt_unmap_phys(&m, VA(rva), true, NULL, &tok);
                    CHECK_EQ(err, 0);
                    pt_flush(&tok);
                    for (unsigned n = r->huge ? 512 : 1; n > 0; n--)
                        model[w][first + k + n - 1] = (struct model_page){ 0, 0, 0, 0, 0 };
                    unmaps++;
                }
            }
            bool any = false;
            for (unsigned k = 0; k < 512; k++)
                any |= model[w][first + k].mapped;
            uint64_t hpa = GiB + (rng_next(&seed) % 512) * PAGE_2M_SIZE;
            int err = pt_map_huge(&m, VA(hva), PA(hpa), PAGE_2M_SIZE, PTE_KERNEL_RW, &tok);
            pt_flush(&tok);
            if (any) {
                CHECK_EQ(err, -MM_EEXIST);
            } else {
                CHECK_EQ(err, 0);
                for (unsigned k = 0; k < 512; k++)
                    model[w][first + k] = (struct model_page){ hpa + k * PAGE_SIZE, 1, 1, 0, 1 };
                hugemaps++;
            }
        } else if (op < 8) {                            /* unmap */
            if (p->huge && (rng_next(&seed) & 1)) {     /* often the huge page's start */
                i = align_down_u64(i, 512);
                va = win_base[w] + (uint64_t)i * PAGE_SIZE;
                p = &model[w][i];
            }
            int err;
            if (p->owned) {
                err = pt_unmap(&m, VA(va), true, &tok);
            } else {
                struct pt_mapping old;
                err = pt_unmap_phys(&m, VA(va), true, &old, &tok);
                if (err == 0)
                    CHECK_EQ(old.pa.raw, p->pa);
            }
            pt_flush(&tok);
            if (!p->mapped) {
                CHECK_EQ(err, -MM_ENOENT);
            } else if (p->huge && !is_aligned_u64(va, PAGE_2M_SIZE)) {
                CHECK_EQ(err, -MM_EINVAL);
            } else {
                CHECK_EQ(err, 0);
                unsigned n = p->huge ? 512 : 1;
                for (unsigned k = 0; k < n; k++)
                    model[w][i + k] = (struct model_page){ 0, 0, 0, 0, 0 };
                unmaps++;
            }
        }
        /* translate one random page after every step */
        unsigned j = rng_next(&seed) % WIN_PAGES;
        uint64_t off = rng_next(&seed) % PAGE_SIZE;
        struct pt_mapping t;
        int err = pt_translate(&m, VA(win_base[w] + (uint64_t)j * PAGE_SIZE + off), &t);
        struct model_page *q = &model[w][j];
        if (!q->mapped) {
            CHECK_EQ(err, -MM_ENOENT);
        } else {
            CHECK_EQ(err, 0);
            CHECK_EQ(t.pa.raw, q->pa + off);
            CHECK_EQ(t.level, q->huge ? 2 : 1);
            CHECK_EQ(!!(t.flags & PTE_WRITE), q->writable);
        }
        if (step % 500 == 0)
            CHECK_EQ(ptdump_count_tables(&m), model_tables());
        if (harness_failed > 20)
            break;
    }
    tlb_model_check("test_random_model");
    harness_cpu_id = 0;
    if (harness_failed > 20) {
        tlb_model_fini();
        return;
    }
    CHECK_EQ(ptdump_count_tables(&m), model_tables());
    uint64_t owned = 0;
    for (unsigned w = 0; w < 2; w++)
        for (unsigned i = 0; i < WIN_PAGES; i++)
            owned += model[w][i].owned;
    CHECK_EQ(tfa.outstanding, model_tables() + owned);
    printf("# random model: %lu ops, %lu maps, %lu huge maps, %lu unmaps\n", ops, maps,
           hugemaps, unmaps);

    /* tear everything down: back to the top table alone */
    for (unsigned w = 0; w < 2; w++)
        for (unsigned i = 0; i < WIN_PAGES; i++) {
            struct model_page *p = &model[w][i];
            uint64_t va = win_base[w] + (uint64_t)i * PAGE_SIZE;
            if (!p->mapped || (p->huge && !is_aligned_u64(va, PAGE_2M_SIZE)))
                continue;
            int err = p->owned ? pt_unmap(&m, VA(va), true, &tok)
                               : pt_unmap_phys(&m, VA(va), true, NULL, &tok);
            CHECK_EQ(err, 0);
            pt_flush(&tok);
        }
    tlb_model_check("test_random_model: teardown");
    tlb_model_fini();
    CHECK_EQ(tfa.outstanding, 1);
    CHECK_EQ(tfa.bad_frees, 0);
}

static void test_wx_count(void)
{
    struct pt_mapper m = new_mapper();
    CHECK_EQ(ptdump_count_wx(&m), 0);
    CHECK_EQ(do_map_phys(&m, KVA, 0, PTE_KERNEL_RW), 0);
    CHECK_EQ(do_map_phys(&m, KVA + PAGE_SIZE, 0, PTE_KERNEL_TEXT), 0);
    CHECK_EQ(do_map_phys(&m, KVA + 2 * PAGE_SIZE, 0, PTE_KERNEL_RO), 0);
    CHECK_EQ(ptdump_count_wx(&m), 0);
    CHECK_EQ(do_map_phys(&m, KVA + 3 * PAGE_SIZE, 0, PTE_PRESENT | PTE_WRITE), 0);
    CHECK_EQ(ptdump_count_wx(&m), 1);
    CHECK_EQ(do_map_huge(&m, KVA + PAGE_2M_SIZE, 0, PAGE_2M_SIZE, PTE_PRESENT | PTE_WRITE), 0);
    CHECK_EQ(ptdump_count_wx(&m), 513);
    host_has_1g = true;
    CHECK_EQ(do_map_huge(&m, UINT64_C(0x40000000), 0, PAGE_1G_SIZE,
                         PTE_PRESENT | PTE_WRITE | PTE_USER), 0);
    CHECK_EQ(ptdump_count_wx(&m), 513 + 262144);

    /* remap to W^X: the count drops */
    struct pt_flush tok = PT_FLUSH_INIT;
    CHECK_EQ(pt_remap(&m, VA(KVA + PAGE_2M_SIZE), PTE_KERNEL_RW, &tok), 0);
    pt_flush(&tok);
    CHECK_EQ(ptdump_count_wx(&m), 1 + 262144);
    /* a read-only parent makes the W leaf under it not writable */
    phys_addr_t pd;
    REQUIRE(pt_get_table(&m, VA(KVA), 2, &pd) == 0);
    uint64_t *pd_words = pa_to_ptr(pd);
    pd_words[0] &= ~PTE_WRITE;
    CHECK_EQ(ptdump_count_wx(&m), 262144);
    pd_words[0] |= PTE_NX | PTE_WRITE;          /* NX parent: not executable */
    CHECK_EQ(ptdump_count_wx(&m), 262144);
    pd_words[0] &= ~PTE_NX;
    CHECK_EQ(ptdump_count_wx(&m), 262145);
}

static void test_ptdump_lines(void)
{
    struct pt_mapper m = new_mapper();
    /* 16 contiguous RW pages, 4 RO pages continuing pa, a gap, 2 pages
     * with a pa jump between them, a 2M page, and 3 contiguous 2M pages. */
    CHECK_EQ(do_map_range(&m, KVA, 0x100000, 16 * PAGE_SIZE, PTE_KERNEL_RW, PAGE_SIZE), 0);
    CHECK_EQ(do_map_range(&m, KVA + 16 * PAGE_SIZE, 0x110000, 4 * PAGE_SIZE, PTE_KERNEL_RO,
                          PAGE_SIZE), 0);
    CHECK_EQ(do_map_phys(&m, KVA + 30 * PAGE_SIZE, 0x200000, PTE_KERNEL_RW), 0);
    CHECK_EQ(do_map_phys(&m, KVA + 31 * PAGE_SIZE, 0x300000, PTE_KERNEL_RW), 0);
    CHECK_EQ(do_map_range(&m, KVA + 2 * MiB, 0x400000, 8 * MiB, PTE_KERNEL_TEXT, PAGE_2M_SIZE),
             0);
    /* a page with the accessed bit set by "hardware" still merges */
    CHECK_EQ(do_map_phys(&m, KVA + 10 * MiB, 0xc00000, PTE_KERNEL_TEXT), 0);
    CHECK_EQ(do_map_phys(&m, KVA + 10 * MiB + PAGE_SIZE, 0xc01000,
                         PTE_KERNEL_TEXT | PTE_ACCESSED), 0);

    harness_quiet = 1;
    unsigned long before = harness_log_lines;
    unsigned long lines = ptdump_print(&m);
    unsigned long printed = harness_log_lines - before;
    harness_quiet = 0;
    CHECK_EQ(lines, 6);
    CHECK_EQ(printed, lines);
    ptdump_print(&m);                   /* once visibly, for the log */

    char buf[40];
    ptdump_flags_str(PTE_KERNEL_RW, buf, sizeof buf);
    CHECK(strcmp(buf, "RW NX G") == 0);
    ptdump_flags_str(PTE_PRESENT, buf, sizeof buf);
    CHECK(strcmp(buf, "R X") == 0);
    ptdump_flags_str(PTE_MMIO | PTE_USER, buf, sizeof buf);
    CHECK(strcmp(buf, "RW NX U G UC") == 0);
}

static void test_readonly_mapper(void)
{
    struct pt_mapper m = new_mapper();
    CHECK_EQ(do_map_phys(&m, KVA, 0x1000, PTE_KERNEL_RW), 0);
    CHECK_EQ(do_map_huge(&m, KVA + GiB, 0, PAGE_2M_SIZE, PTE_KERNEL_RW), 0);
    struct fp before = fingerprint(&m);
    uint64_t frames = tfa.outstanding;
    struct pt_mapper ro = m;
    ro.readonly = true;
    struct pt_flush tok = PT_FLUSH_INIT;

    CHECK_EQ(pt_map_phys(&ro, VA(KVA + PAGE_SIZE), PA(0), PTE_KERNEL_RW, &tok), -MM_EPERM);
    CHECK_EQ(pt_map(&ro, VA(KVA + PAGE_SIZE), PTE_KERNEL_RW, NULL, &tok), -MM_EPERM);
    CHECK_EQ(pt_map_huge(&ro, VA(KVA + 2 * GiB), PA(0), PAGE_2M_SIZE, PTE_KERNEL_RW, &tok),
             -MM_EPERM);
    CHECK_EQ(pt_map_range(&ro, VA(KVA + 2 * GiB), PA(0), MiB, PTE_KERNEL_RW, PAGE_SIZE, &tok),
             -MM_EPERM);
    CHECK_EQ(pt_unmap(&ro, VA(KVA), true, &tok), -MM_EPERM);
    CHECK_EQ(pt_unmap_phys(&ro, VA(KVA), true, NULL, &tok), -MM_EPERM);
    CHECK_EQ(pt_unmap_range(&ro, VA(KVA + GiB), PAGE_2M_SIZE, true, &tok), -MM_EPERM);
    CHECK_EQ(pt_remap(&ro, VA(KVA), PTE_KERNEL_RO, &tok), -MM_EPERM);
    CHECK_EQ(pt_mapper_destroy(&ro), -MM_EPERM);
    CHECK(!pt_flush_pending(&tok));
    struct pt_mapping t;
    CHECK_EQ(pt_translate(&ro, VA(KVA + 8), &t), 0);   /* reading is fine */
    CHECK_EQ(t.pa.raw, 0x1008);
    CHECK(fp_equal(fingerprint(&m), before));
    CHECK_EQ(tfa.outstanding, frames);
}

static void drop_token(struct pt_mapper *m)
{
    struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
    if (pt_map_phys(m, VA(KVA + 77 * PAGE_SIZE), PA(0), PTE_KERNEL_RW, &tok) != 0)
        return;
    /* forgot pt_flush(&tok) */
}

static void test_flush_tokens(void)
{
    struct pt_mapper m = new_mapper();
    struct pt_flush tok = PT_FLUSH_INIT;
    unsigned long inv = host_invlpg_count, all = host_flush_all_count, sd = harness_shootdowns;

    CHECK_EQ(pt_map_phys(&m, VA(KVA), PA(0), PTE_KERNEL_RW, &tok), 0);
    pt_flush_ignore(&tok);
    CHECK(!pt_flush_pending(&tok));
    CHECK_EQ(host_invlpg_count, inv);
    CHECK_EQ(harness_shootdowns, sd);

    CHECK_EQ(pt_remap(&m, VA(KVA), PTE_KERNEL_RO, &tok), 0);
    pt_flush_local(&tok);
    CHECK_EQ(host_invlpg_count, inv + 1);
    CHECK_EQ(harness_shootdowns, sd);
    pt_flush(&tok);                     /* discharged: nothing more */
    CHECK_EQ(host_invlpg_count, inv + 1);

    CHECK_EQ(pt_remap(&m, VA(KVA), PTE_KERNEL_RW, &tok), 0);
    pt_flush(&tok);
    CHECK_EQ(host_invlpg_count, inv + 2);
    CHECK_EQ(harness_shootdowns, sd + 1);

    CHECK_EQ(pt_map_range(&m, VA(KVA + MiB), PA(0), 10 * PAGE_SIZE, PTE_KERNEL_RW, PAGE_SIZE,
                          &tok), 0);
    CHECK_EQ(tok.kind, PT_FLUSH_RANGE);
    pt_flush(&tok);
    CHECK_EQ(host_invlpg_count, inv + 12);
    CHECK_EQ(host_flush_all_count, all);
    CHECK_EQ(harness_shootdowns, sd + 2);

    /* a batch: three tokens, one shootdown */
    struct pt_flush_batch b;
    pt_flush_batch_init(&b);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(pt_remap(&m, VA(KVA + MiB + i * PAGE_SIZE), PTE_KERNEL_RO, &tok), 0);
        pt_flush_batch_add(&b, &tok);
        CHECK(!pt_flush_pending(&tok));
    }
    pt_flush_batch_flush(&b);
    CHECK_EQ(host_invlpg_count, inv + 15);
    CHECK_EQ(harness_shootdowns, sd + 3);
    /* a batch that grows too large turns into one full flush */
    for (int i = 0; i < 10; i++) {
        CHECK_EQ(pt_remap(&m, VA(KVA + MiB + i * PAGE_SIZE), PTE_KERNEL_RW, &tok), 0);
        pt_flush_batch_add(&b, &tok);
    }
    CHECK_EQ(pt_map_range(&m, VA(KVA + 4 * MiB), PA(0), 100 * PAGE_SIZE, PTE_KERNEL_RW,
                          PAGE_SIZE, &tok), 0);
    pt_flush_batch_add(&b, &tok);
    pt_flush_batch_flush(&b);
    CHECK_EQ(host_invlpg_count, inv + 15);
    CHECK_EQ(host_flush_all_count, all + 1);
    CHECK_EQ(harness_shootdowns, sd + 4);

    /* dropping a scoped token panics */
    EXPECT_PANIC(drop_token(&m));
    CHECK(strstr(harness_panic_msg, "dropped") != NULL);
}

static void test_current(void)
{
    struct pt_mapper m = new_mapper();
    host_cr3 = PA(0);
    CHECK(!pt_mapper_is_current(&m));
    pt_mapper_make_current(&m);
    CHECK_EQ(host_cr3.raw, m.top_pa.raw);
    CHECK(pt_mapper_is_current(&m));
    host_cr3 = PA(m.top_pa.raw | 0x18);     /* PWT|PCD bits in CR3 */
    struct pt_mapper cur = pt_mapper_current(&tfa.fa);
    CHECK_EQ(cur.top_pa.raw, m.top_pa.raw);
    CHECK(cur.fa == &tfa.fa);
    CHECK(!cur.readonly);
    CHECK(pt_mapper_is_current(&m));
    CHECK_EQ(pt_mapper_destroy(&m), -MM_EBUSY);
    host_cr3 = PA(0);
    CHECK_EQ(pt_mapper_destroy(&m), 0);
    CHECK_EQ(tfa.outstanding, 0);
    /* out of frames for the top table */
    tfa.budget = 0;
    CHECK_EQ(pt_mapper_create(&tfa.fa, &m), -MM_ENOMEM);
}

/* A PS bit in a PML4 entry is a broken table: the walk panics. */
static void test_corrupt_pml4_panics(void)
{
    struct pt_mapper m = new_mapper();
    CHECK_EQ(do_map_phys(&m, KVA, 0x1000, PTE_KERNEL_RW), 0);
    uint64_t *top = pa_to_ptr(m.top_pa);
    top[pt_index(VA(KVA), 4)] |= PTE_HUGE;
    struct pt_mapping t;
    int err = 0;
    EXPECT_PANIC(err = pt_translate(&m, VA(KVA), &t));
    (void)err;
    CHECK(strstr(harness_panic_msg, "walk: PS bit in PML4 entry") != NULL);
    top[pt_index(VA(KVA), 4)] &= ~PTE_HUGE;
    CHECK_EQ(pt_translate(&m, VA(KVA), &t), 0);
}

static void test_level_helpers(void)
{
    CHECK_EQ(pt_level_size(1), PAGE_SIZE);
    CHECK_EQ(pt_level_size(2), PAGE_2M_SIZE);
    CHECK_EQ(pt_level_size(3), PAGE_1G_SIZE);
    CHECK_EQ(pt_level_size(4), 512 * GiB);
    virt_addr_t va = VA(UINT64_C(0xffff800000000000) | (UINT64_C(5) << 30) |
                        (UINT64_C(7) << 21) | (UINT64_C(9) << 12) | 0x123);
    CHECK_EQ(pt_index(va, 4), 256);
    CHECK_EQ(pt_index(va, 3), 5);
    CHECK_EQ(pt_index(va, 2), 7);
    CHECK_EQ(pt_index(va, 1), 9);
    CHECK(pt_va_is_canonical(VA(0)));
    CHECK(pt_va_is_canonical(VA(0x00007fffffffffff)));
    CHECK(!pt_va_is_canonical(VA(0x0000800000000000)));
    CHECK(!pt_va_is_canonical(VA(0xffff7fffffffffff)));
    CHECK(pt_va_is_canonical(VA(0xffff800000000000)));
    CHECK_EQ(pt_va_canonicalize(0x0000800000000000).raw, 0xffff800000000000);
    CHECK_EQ(PTE_ADDR_MASK, 0x000ffffffffff000);
    CHECK_EQ(pt_level_of_size(PAGE_2M_SIZE), 2);
    CHECK_EQ(pt_level_of_size(12345), 0);
}

/*
 * Frames unlinked by an unmap (emptied tables, pt_unmap's data frame) go
 * back to the allocator only when the token is discharged: before the
 * flush another CPU may still walk through them.  Also for batches.
 */
static void test_frees_wait_for_flush(void)
{
    struct pt_mapper m = new_mapper();
    struct pt_flush tok = PT_FLUSH_INIT;
    uint64_t base = tfa.outstanding;               /* the top table */
    phys_addr_t pa;
    REQUIRE(pt_map(&m, VA(KVA), PTE_KERNEL_RW, &pa, &tok) == 0);
    pt_flush_ignore(&tok);
    CHECK_EQ(tfa.outstanding, base + 4);           /* PDPT, PD, PT, data */

    REQUIRE(pt_unmap(&m, VA(KVA), true, &tok) == 0);
    CHECK(pt_flush_pending(&tok));
    CHECK_EQ(tfa.outstanding, base + 4);           /* nothing freed yet */
    unsigned long invlpg = host_invlpg_count;
    pt_flush(&tok);
    CHECK_EQ(host_invlpg_count, invlpg + 1);
    CHECK_EQ(tfa.outstanding, base);               /* all four after the flush */
    CHECK(!pt_flush_pending(&tok));
    CHECK_EQ(tfa.bad_frees, 0);

    /* Through a batch: freed by the batch flush, not by batch_add. */
    struct pt_flush_batch batch;
    pt_flush_batch_init(&batch);
    for (uint64_t i = 0; i < 3; i++) {
        REQUIRE(pt_map(&m, VA(KVA + i * PAGE_1G_SIZE), PTE_KERNEL_RW, NULL, &tok) == 0);
        pt_flush_ignore(&tok);
    }
    uint64_t mapped = tfa.outstanding;
    for (uint64_t i = 0; i < 3; i++) {
        REQUIRE(pt_unmap(&m, VA(KVA + i * PAGE_1G_SIZE), true, &tok) == 0);
        pt_flush_batch_add(&batch, &tok);
        CHECK(!pt_flush_pending(&tok));
    }
    CHECK_EQ(tfa.outstanding, mapped);
    pt_flush_batch_flush(&batch);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(tfa.bad_frees, 0);
}

/*
 * Other CPUs may write into pt_unmap's data frame through stale TLB entries
 * until the flush: whatever they write there must not change which frames
 * the discharge frees.  Alone, through a batch, and through a batch that
 * runs out of room for data frames and discharges early.
 */
static bool tfa_owns(phys_addr_t pa)
{
    return test_fa_is_out(&tfa, pa);
}

/* A stale write from another CPU: a plausible chain link, then garbage. */
static void scribble(phys_addr_t frame, phys_addr_t victim)
{
    uint64_t *w = pa_to_ptr(frame);
    w[0] = victim.raw | (UINT64_C(1) << 62);
    w[1] = UINT64_C(0xdeadbeefdeadb000);
}

static void test_unmapped_data_frame_scribbled(void)
{
    struct pt_mapper m = new_mapper();
    struct pt_flush tok = PT_FLUSH_INIT;
    phys_addr_t victim, pa;
    REQUIRE(pt_map(&m, VA(KVA + GiB), PTE_KERNEL_RW, &victim, &tok) == 0);
    pt_flush(&tok);
    REQUIRE(pt_map(&m, VA(KVA), PTE_KERNEL_RW, &pa, &tok) == 0);
    pt_flush(&tok);
    uint64_t frames = tfa.outstanding;

    /* PT, PD and the data frame go; the PDPT stays for KVA + 1 GiB. */
    REQUIRE(pt_unmap(&m, VA(KVA), true, &tok) == 0);
    scribble(pa, victim);
    pt_flush(&tok);
    CHECK_EQ(tfa.outstanding, frames - 3);
    CHECK(!tfa_owns(pa));
    CHECK_EQ(tfa.bad_frees, 0);
    REQUIRE(tfa_owns(victim));          /* else the allocator is corrupt: stop */

    /* A batch of three, scribbled before and after batch_add. */
    enum { NB = 3 * PT_FLUSH_BATCH_FRAMES + 1 };
    static phys_addr_t pas[NB];
    for (uint64_t i = 0; i < NB; i++) {
        REQUIRE(pt_map(&m, VA(KVA + i * PAGE_SIZE), PTE_KERNEL_RW, &pas[i], &tok) == 0);
        pt_flush(&tok);
    }
    frames = tfa.outstanding;
    struct pt_flush_batch b;
    pt_flush_batch_init(&b);
    for (uint64_t i = 0; i < 3; i++) {
        REQUIRE(pt_unmap(&m, VA(KVA + i * PAGE_SIZE), false, &tok) == 0);
        scribble(pas[i], victim);
        pt_flush_batch_add(&b, &tok);
        scribble(pas[i], victim);
    }
    CHECK_EQ(tfa.outstanding, frames);
    pt_flush_batch_flush(&b);
    CHECK_EQ(tfa.outstanding, frames - 3);
    for (uint64_t i = 0; i < 3; i++)
        CHECK(!tfa_owns(pas[i]));
    CHECK_EQ(tfa.bad_frees, 0);
    REQUIRE(tfa_owns(victim));

    /* More data frames than a batch holds: each overflow flushes early
     * (this CPU and one shootdown) and frees what the batch held. */
    frames = tfa.outstanding;
    unsigned long sd = harness_shootdowns, inv = host_invlpg_count;
    for (uint64_t i = 3; i < NB; i++) {
        REQUIRE(pt_unmap(&m, VA(KVA + i * PAGE_SIZE), false, &tok) == 0);
        scribble(pas[i], victim);
        pt_flush_batch_add(&b, &tok);
        scribble(pas[i], victim);
        uint64_t added = i - 2, held = (added - 1) % PT_FLUSH_BATCH_FRAMES + 1;
        CHECK_EQ(tfa.outstanding, frames - (added - held));
    }
    CHECK_EQ(harness_shootdowns, sd + 2);
    CHECK_EQ(host_invlpg_count, inv + 2 * PT_FLUSH_BATCH_FRAMES);
    CHECK_EQ(harness_shootdown_va, KVA + (3 + PT_FLUSH_BATCH_FRAMES) * PAGE_SIZE);
    CHECK_EQ(harness_shootdown_npages, PT_FLUSH_BATCH_FRAMES);
    pt_flush_batch_flush(&b);
    CHECK_EQ(tfa.outstanding, frames - (NB - 3));
    for (uint64_t i = 0; i < NB; i++)
        CHECK(!tfa_owns(pas[i]));
    CHECK(tfa_owns(victim));
    CHECK_EQ(tfa.bad_frees, 0);
}

/*
 * A mutating call given a token that still owes a flush (and frames) is a
 * caller bug: -MM_EINVAL, one log line, tables and token untouched.
 */
static void test_pending_token_refused(void)
{
    struct pt_mapper m = new_mapper();
    struct pt_flush tok = PT_FLUSH_INIT;
    phys_addr_t pa, pa2;
    REQUIRE(pt_map(&m, VA(KVA), PTE_KERNEL_RW, &pa, &tok) == 0);
    pt_flush(&tok);
    REQUIRE(pt_map(&m, VA(KVA + PAGE_SIZE), PTE_KERNEL_RW, &pa2, &tok) == 0);
    pt_flush(&tok);
    REQUIRE(do_map_phys(&m, KVA + 2 * PAGE_SIZE, 0x2000, PTE_KERNEL_RW) == 0);

    REQUIRE(pt_unmap(&m, VA(KVA), true, &tok) == 0);
    const struct pt_flush saved = tok;
    struct fp before = fingerprint(&m);
    uint64_t frames = tfa.outstanding;
    unsigned long lines = harness_log_lines;
    harness_quiet = 1;
    CHECK_EQ(pt_map_phys(&m, VA(KVA + 3 * PAGE_SIZE), PA(0x3000), PTE_KERNEL_RW, &tok),
             -MM_EINVAL);
    CHECK_EQ(pt_map(&m, VA(KVA + 3 * PAGE_SIZE), PTE_KERNEL_RW, NULL, &tok), -MM_EINVAL);
    CHECK_EQ(pt_map_huge(&m, VA(KVA + GiB), PA(0), PAGE_2M_SIZE, PTE_KERNEL_RW, &tok),
             -MM_EINVAL);
    CHECK_EQ(pt_map_range(&m, VA(KVA + GiB), PA(0), 2 * PAGE_SIZE, PTE_KERNEL_RW, PAGE_SIZE,
                          &tok), -MM_EINVAL);
    CHECK_EQ(pt_unmap(&m, VA(KVA + PAGE_SIZE), true, &tok), -MM_EINVAL);
    CHECK_EQ(pt_unmap_phys(&m, VA(KVA + 2 * PAGE_SIZE), true, NULL, &tok), -MM_EINVAL);
    CHECK_EQ(pt_unmap_range(&m, VA(KVA + 2 * PAGE_SIZE), PAGE_SIZE, true, &tok), -MM_EINVAL);
    CHECK_EQ(pt_remap(&m, VA(KVA + 2 * PAGE_SIZE), PTE_KERNEL_RO, &tok), -MM_EINVAL);
    harness_quiet = 0;
    CHECK_EQ(harness_log_lines, lines + 8);

    CHECK_EQ(tok.kind, saved.kind);
    CHECK_EQ(tok.va.raw, saved.va.raw);
    CHECK_EQ(tok.npages, saved.npages);
    CHECK_EQ(tok.deferred, saved.deferred);
    CHECK_EQ(tok.deferred_data, saved.deferred_data);
    CHECK(tok.deferred_fa == saved.deferred_fa);
    CHECK(fp_equal(fingerprint(&m), before));
    CHECK_EQ(tfa.outstanding, frames);

    /* The first obligation is still whole: the flush frees its data frame. */
    unsigned long sd = harness_shootdowns;
    pt_flush(&tok);
    CHECK_EQ(harness_shootdowns, sd + 1);
    CHECK_EQ(tfa.outstanding, frames - 1);
    CHECK(!tfa_owns(pa));
    CHECK(tfa_owns(pa2));
    CHECK_EQ(tfa.bad_frees, 0);
    /* A discharged token is accepted again. */
    CHECK_EQ(pt_unmap(&m, VA(KVA + PAGE_SIZE), true, &tok), 0);
    pt_flush(&tok);
    CHECK(!tfa_owns(pa2));
    CHECK_EQ(tfa.bad_frees, 0);
}

/* The batch's shootdown covers the top page of the address space, whose
 * end wraps to 0. */
static void test_batch_flush_top_page(void)
{
    struct pt_mapper m = new_mapper();
    const uint64_t top = UINT64_C(0xfffffffffffff000), below = top - PAGE_SIZE;
    CHECK_EQ(do_map_phys(&m, below, 0x1000, PTE_KERNEL_RW), 0);
    CHECK_EQ(do_map_phys(&m, top, 0x2000, PTE_KERNEL_RW), 0);
    CHECK_EQ(do_map_phys(&m, KVA, 0x3000, PTE_KERNEL_RW), 0);
    struct pt_flush tok = PT_FLUSH_INIT;
    struct pt_flush_batch b;
    pt_flush_batch_init(&b);

    const uint64_t order[2][2] = { { below, top }, { top, below } };
    for (unsigned o = 0; o < 2; o++) {
        for (unsigned i = 0; i < 2; i++) {
            REQUIRE(pt_remap(&m, VA(order[o][i]), PTE_KERNEL_RO, &tok) == 0);
            pt_flush_batch_add(&b, &tok);
        }
        unsigned long sd = harness_shootdowns, inv = host_invlpg_count;
        pt_flush_batch_flush(&b);
        CHECK_EQ(host_invlpg_count, inv + 2);
        CHECK_EQ(harness_shootdowns, sd + 1);
        CHECK_EQ(harness_shootdown_va, below);
        CHECK_EQ(harness_shootdown_npages, 2);
    }

    /* With a page in the other half the span is huge: a full shootdown. */
    REQUIRE(pt_remap(&m, VA(KVA), PTE_KERNEL_RO, &tok) == 0);
    pt_flush_batch_add(&b, &tok);
    REQUIRE(pt_remap(&m, VA(top), PTE_KERNEL_RW, &tok) == 0);
    pt_flush_batch_add(&b, &tok);
    pt_flush_batch_flush(&b);
    CHECK_EQ(harness_shootdown_va, KVA);
    CHECK_EQ(harness_shootdown_npages, 0);
}

/*
 * What a shootdown hook that invalidates page by page must do for the
 * request: its pages cover [leaf, leaf + size), or it is "everything".
 */
static bool shootdown_covers(uint64_t leaf, uint64_t size)
{
    uint64_t va = harness_shootdown_va, n = harness_shootdown_npages;
    if (n == 0)
        return true;
    return n <= PT_FLUSH_MAX_INVLPG && va <= leaf && leaf + size <= va + n * PAGE_SIZE;
}

/* Flush a token on every CPU; the shootdown must cover [va, va + size). */
static void flush_expect_covered(struct pt_flush *tok, uint64_t va, uint64_t size)
{
    unsigned long sd = harness_shootdowns;
    pt_flush(tok);
    CHECK_EQ(harness_shootdowns, sd + 1);
    CHECK(shootdown_covers(va, size));
}

/*
 * The shootdown request counts 4 KiB pages for every token: the real count
 * up to PT_FLUSH_MAX_INVLPG, 0 ("everything") above it.  A 2 MiB or 1 GiB
 * leaf (512 or 262144 pages) is therefore sent as 0, never as 1, which a
 * hook invalidating page by page would take for its first 4 KiB only.
 */
static void test_shootdown_counts_4k_pages(void)
{
    struct pt_mapper m = new_mapper();
    struct pt_flush tok = PT_FLUSH_INIT;
    const uint64_t va2m = KVA + 2 * GiB, va1g = KVA + GiB;

    CHECK_EQ(pt_map_range(&m, VA(KVA), PA(0), 16 * PAGE_SIZE, PTE_KERNEL_RW, PAGE_SIZE,
                          &tok), 0);
    flush_expect_covered(&tok, KVA, 16 * PAGE_SIZE);
    CHECK_EQ(harness_shootdown_npages, 16);
    CHECK_EQ(pt_unmap_phys(&m, VA(KVA), true, NULL, &tok), 0);
    flush_expect_covered(&tok, KVA, PAGE_SIZE);
    CHECK_EQ(harness_shootdown_npages, 1);
    CHECK_EQ(harness_shootdown_va, KVA);
    CHECK_EQ(pt_unmap_range(&m, VA(KVA + PAGE_SIZE), 15 * PAGE_SIZE, true, &tok), 0);
    flush_expect_covered(&tok, KVA + PAGE_SIZE, 15 * PAGE_SIZE);
    CHECK_EQ(harness_shootdown_npages, 15);

    /* 2 MiB: map, remap, unmap; alone and in a batch of one */
    CHECK_EQ(pt_map_huge(&m, VA(va2m), PA(0), PAGE_2M_SIZE, PTE_KERNEL_RW, &tok), 0);
    flush_expect_covered(&tok, va2m, PAGE_2M_SIZE);
    CHECK_EQ(pt_remap(&m, VA(va2m), PTE_KERNEL_RO, &tok), 0);
    flush_expect_covered(&tok, va2m, PAGE_2M_SIZE);
    CHECK_EQ(harness_shootdown_npages, 0);
    struct pt_flush_batch b;
    pt_flush_batch_init(&b);
    CHECK_EQ(pt_remap(&m, VA(va2m), PTE_KERNEL_RW, &tok), 0);
    pt_flush_batch_add(&b, &tok);
    unsigned long sd = harness_shootdowns;
    pt_flush_batch_flush(&b);
    CHECK_EQ(harness_shootdowns, sd + 1);
    CHECK(shootdown_covers(va2m, PAGE_2M_SIZE));
    CHECK_EQ(pt_unmap_range(&m, VA(va2m), PAGE_2M_SIZE, true, &tok), 0);
    CHECK_EQ(tok.kind, PT_FLUSH_ONE_PAGE);
    flush_expect_covered(&tok, va2m, PAGE_2M_SIZE);

    /* 1 GiB */
    CHECK_EQ(pt_map_huge(&m, VA(va1g), PA(0), PAGE_1G_SIZE, PTE_KERNEL_RW, &tok), 0);
    pt_flush(&tok);
    CHECK_EQ(pt_unmap_phys(&m, VA(va1g), true, NULL, &tok), 0);
    flush_expect_covered(&tok, va1g, PAGE_1G_SIZE);
    CHECK_EQ(harness_shootdown_npages, 0);

    /* A range of 4 KiB pages: exact up to the threshold, then everything. */
    const uint64_t n = PT_FLUSH_MAX_INVLPG;
    CHECK_EQ(pt_map_range(&m, VA(KVA), PA(0), (n + 1) * PAGE_SIZE, PTE_KERNEL_RW, PAGE_SIZE,
                          &tok), 0);
    pt_flush(&tok);
    CHECK_EQ(harness_shootdown_npages, 0);
    CHECK_EQ(pt_unmap_range(&m, VA(KVA), n * PAGE_SIZE, true, &tok), 0);
    flush_expect_covered(&tok, KVA, n * PAGE_SIZE);
    CHECK_EQ(harness_shootdown_npages, n);
    CHECK_EQ(pt_unmap_range(&m, VA(KVA + n * PAGE_SIZE), PAGE_SIZE, true, &tok), 0);
    pt_flush(&tok);
    CHECK_EQ(tfa.outstanding, 1);       /* the top table only */
}

/* Destroying twice must not take physical page 0 for a top table. */
static void test_destroy_twice(void)
{
    struct pt_mapper m = new_mapper(), other;
    REQUIRE(pt_mapper_create(&tfa.fa, &other) == 0);
    CHECK_EQ(do_map_phys(&m, KVA, 0x1000, PTE_KERNEL_RW), 0);
    CHECK_EQ(do_map_phys(&other, KVA, 0x1000, PTE_KERNEL_RW), 0);
    pt_mapper_make_current(&other);
    /* page 0 looks like a table linking other's PDPT */
    uint64_t *page0 = pa_to_ptr(PA(0));
    phys_addr_t pdpt;
    REQUIRE(pt_get_table(&other, VA(KVA), 3, &pdpt) == 0);
    page0[0] = pdpt.raw | PTE_TABLE;
    uint64_t other_frames = ptdump_count_tables(&other);

    CHECK_EQ(pt_mapper_destroy(&m), 0);
    CHECK_EQ(m.top_pa.raw, 0);
    CHECK_EQ(tfa.outstanding, other_frames);
    CHECK_EQ(pt_mapper_destroy(&m), -MM_EINVAL);
    CHECK_EQ(tfa.outstanding, other_frames);
    CHECK(tfa_owns(pdpt));
    CHECK_EQ(tfa.bad_frees, 0);

    page0[0] = 0;
    host_cr3 = PA(0);
    CHECK_EQ(pt_mapper_destroy(&other), 0);
    CHECK_EQ(tfa.outstanding, 0);
    CHECK_EQ(tfa.bad_frees, 0);
}

/* pt_remap to PTE_USER opens the path above the leaf too, like a map. */
static void test_remap_user(void)
{
    struct pt_mapper m = new_mapper();
    const uint64_t va = UINT64_C(0x0000400000000000), hva = va + GiB;
    const uint64_t kflags = PTE_PRESENT | PTE_WRITE | PTE_NX;
    CHECK_EQ(do_map_phys(&m, va, 0x1000, kflags), 0);
    CHECK_EQ(do_map_huge(&m, hva, 0x200000, PAGE_2M_SIZE, kflags), 0);
    pt_entry_t e;
    for (unsigned level = 4; level >= 2; level--) {
        CHECK_EQ(pt_get_entry(&m, VA(va), level, &e), 0);
        CHECK_EQ(pte_flags(e), PTE_TABLE);
    }
    struct fp before = fingerprint(&m);
    uint64_t frames = tfa.outstanding;

    struct pt_flush tok = PT_FLUSH_INIT;
    CHECK_EQ(pt_remap(&m, VA(va), kflags | PTE_USER, &tok), 0);
    CHECK_EQ(tok.kind, PT_FLUSH_ONE_PAGE);
    CHECK_EQ(tok.va.raw, va);
    pt_flush(&tok);
    for (unsigned level = 4; level >= 2; level--) {
        CHECK_EQ(pt_get_entry(&m, VA(va), level, &e), 0);
        CHECK_EQ(pte_flags(e), PTE_TABLE | PTE_USER);
    }
    CHECK_EQ(pt_get_entry(&m, VA(va), 1, &e), 0);
    CHECK_EQ(e.raw, 0x1000 | kflags | PTE_USER);
    /* the 2 MiB page: its own level-3 entry is not open yet */
    CHECK_EQ(pt_get_entry(&m, VA(hva), 3, &e), 0);
    CHECK_EQ(pte_flags(e), PTE_TABLE);
    CHECK_EQ(pt_remap(&m, VA(hva), kflags | PTE_USER, &tok), 0);
    pt_flush(&tok);
    CHECK_EQ(pt_get_entry(&m, VA(hva), 3, &e), 0);
    CHECK_EQ(pte_flags(e), PTE_TABLE | PTE_USER);
    CHECK_EQ(pt_get_entry(&m, VA(hva), 2, &e), 0);
    CHECK_EQ(e.raw, 0x200000 | kflags | PTE_USER | PTE_HUGE);

    /* Dropping PTE_USER changes the leaf only. */
    CHECK_EQ(pt_remap(&m, VA(va), kflags, &tok), 0);
    pt_flush(&tok);
    CHECK_EQ(pt_get_entry(&m, VA(va), 1, &e), 0);
    CHECK_EQ(e.raw, 0x1000 | kflags);
    CHECK_EQ(pt_get_entry(&m, VA(va), 2, &e), 0);
    CHECK(e.raw & PTE_USER);
    CHECK_EQ(fingerprint(&m).tables, before.tables);
    CHECK_EQ(tfa.outstanding, frames);
}

int main(void)
{
    RUN(test_level_helpers);
    RUN(test_frees_wait_for_flush);
    RUN(test_roundtrip_4k);
    RUN(test_roundtrip_huge);
    RUN(test_map_existing);
    RUN(test_bad_input);
    RUN(test_remap);
    RUN(test_map_unmap_frames);
    RUN(test_map_range_pieces);
    RUN(test_map_range_enomem);
    RUN(test_random_model);
    RUN(test_wx_count);
    RUN(test_ptdump_lines);
    RUN(test_readonly_mapper);
    RUN(test_flush_tokens);
    RUN(test_current);
    RUN(test_corrupt_pml4_panics);
    RUN(test_unmapped_data_frame_scribbled);
    RUN(test_pending_token_refused);
    RUN(test_batch_flush_top_page);
    RUN(test_shootdown_counts_4k_pages);
    RUN(test_destroy_twice);
    RUN(test_remap_user);
    sim_mem_fini();
    return harness_finish();
}
