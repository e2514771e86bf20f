/*
 * test_vmalloc.c - host tests of vmalloc, vmap and vfree (mm/vmalloc.c)
 * on a small kernel table (harness_kernel_table) in simulated memory.
 *
 * Every refusal is checked for its error, its one log line and an
 * unchanged state (frames out, areas, shootdowns); running out of frames
 * at every point of an allocation must leave everything as it was; the
 * guard page after each area must be unmapped; and a free must flush with
 * exactly one shootdown, before its frames go back (the TLB model's
 * checks (a) and (b), tlb_model.h).
 */
#define _GNU_SOURCE
#include "harness.h"
#include "test_fa.h"
#include "tlb_model.h"

#include <mm/aspace.h>
#include <mm/kmapper.h>
#include <mm/log.h>
#include <mm/paging.h>
#include <mm/vmalloc.h>

extern unsigned long harness_shootdowns;

#define SIM_SIZE    (64 * MiB)
#define POOL_START  (1 * MiB)
#define FOREIGN_PA  UINT64_C(0x40000)       /* a RAM frame outside the pool */

static struct test_fa tfa;
static struct vmalloc_space vs;
static phys_addr_t ktop;

/* Fresh memory, allocator, kernel table and vmalloc space; frames out. */
static uint64_t setup(void)
{
    ktop = test_fa_fresh_kernel(&tfa, SIM_SIZE, POOL_START, FOREIGN_PA);
    if (vmalloc_space_init(&vs, "vmalloc", MM_VMALLOC_BASE, MM_VMALLOC_END, &tfa.fa) != 0)
        abort();
    return tfa.outstanding;
}


static uint8_t *bytes_at(uint64_t va)
{
    struct pt_mapping m;
    if (kernel_lookup(va, &m) != 0)
        return NULL;
    return pa_to_ptr(m.pa);
}

static uint64_t va_of(void *p) { return (uint64_t)(uintptr_t)p; }

/* What a refused call must leave as it was. */
struct snap {
    uint64_t frames, areas, block_bytes;
    unsigned long shootdowns;
};

static void take_snap(struct snap *s)
{
    struct vmalloc_stats st;
    vmalloc_stats(&vs, &st);
    *s = (struct snap){ tfa.outstanding, st.areas, st.block_bytes, harness_shootdowns };
}

static bool snap_same(const struct snap *a)
{
    struct snap b;
    take_snap(&b);
    return memcmp(a, &b, sizeof b) == 0;
}

/* ------------------------------------------------------------------ tests */

static void test_alloc_maps_zeroed_rw_nx_with_guard(void)
{
    uint64_t base = setup();
    void *p = NULL;
    REQUIRE(vmalloc_alloc(&vs, 16 * KiB, &p) == 0);
    uint64_t va = va_of(p);
    CHECK(va >= MM_VMALLOC_BASE && va < MM_VMALLOC_END && is_aligned_u64(va, PAGE_SIZE));
    for (uint64_t off = 0; off < 16 * KiB; off += PAGE_SIZE) {
        struct pt_mapping m;
        REQUIRE(kernel_lookup(va + off, &m) == 0);
        CHECK_EQ(m.page_size, PAGE_SIZE);
        CHECK_EQ(m.flags & (PTE_PRESENT | PTE_WRITE | PTE_NX | PTE_USER),
                 PTE_PRESENT | PTE_WRITE | PTE_NX);
        uint8_t *b = pa_to_ptr(m.pa);
        CHECK(b[0] == 0 && b[PAGE_SIZE - 1] == 0);      /* the allocator filled 0xa5 */
    }
    CHECK(!kernel_is_mapped(va + 16 * KiB));                   /* the guard page */
    /* One byte is one page, and its guard follows at once. */
    void *q = NULL;
    REQUIRE(vmalloc_alloc(&vs, 1, &q) == 0);
    CHECK(kernel_is_mapped(va_of(q)) && !kernel_is_mapped(va_of(q) + PAGE_SIZE));
    CHECK(va_of(q) >= va + 16 * KiB + PAGE_SIZE || va_of(q) + 2 * PAGE_SIZE <= va);
    CHECK_EQ(vmalloc_free(&vs, p), 0);
    CHECK_EQ(vmalloc_free(&vs, q), 0);
    CHECK(!kernel_is_mapped(va));
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(tfa.bad_frees, 0);
    CHECK_EQ(vmalloc_check(&vs), 0);
}

static void test_frames_not_contiguous_and_big_area(void)
{
    uint64_t base = setup();
    /* Scatter the free list: take frames, give back every other one. */
    phys_addr_t hold[64];
    for (unsigned i = 0; i < 64; i++)
        REQUIRE(frame_alloc(&tfa.fa, &hold[i]) == 0);
    for (unsigned i = 0; i < 64; i += 2)
        tfa.fa.free(&tfa.fa, hold[i]);
    void *p = NULL;
    uint64_t size = 3 * MiB;                 /* crosses a 2 MiB page-table boundary */
    REQUIRE(vmalloc_alloc(&vs, size, &p) == 0);
    bool contiguous = true;
    uint64_t prev = 0;
    for (uint64_t off = 0; off < size; off += PAGE_SIZE) {
        struct pt_mapping m;
        REQUIRE(kernel_lookup(va_of(p) + off, &m) == 0);
        if (off && m.pa.raw != prev + PAGE_SIZE)
            contiguous = false;
        prev = m.pa.raw;
        memset(pa_to_ptr(m.pa), (int)(off >> PAGE_SHIFT), 8);
    }
    CHECK(!contiguous);
    CHECK(!kernel_is_mapped(va_of(p) + size));
    for (uint64_t off = 0; off < size; off += PAGE_SIZE)
        CHECK_EQ(bytes_at(va_of(p) + off)[7], (uint8_t)(off >> PAGE_SHIFT));
    CHECK_EQ(vmalloc_free(&vs, p), 0);
    for (unsigned i = 1; i < 64; i += 2)
        tfa.fa.free(&tfa.fa, hold[i]);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(tfa.bad_frees, 0);
}

static void test_refusals(void)
{
    setup();
    void *p = NULL, *out = NULL;
    REQUIRE(vmalloc_alloc(&vs, 8 * KiB, &p) == 0);
    REFUSED(vmalloc_alloc(&vs, 0, &out), -MM_EINVAL);
    REFUSED(vmalloc_alloc(&vs, VMALLOC_MAX_SIZE + 1, &out), -MM_EINVAL);
    REFUSED(vmalloc_alloc(&vs, UINT64_MAX, &out), -MM_EINVAL);
    /* vfree: interior, misaligned, foreign (direct map, other range, NULL). */
    REFUSED(vmalloc_free(&vs, (uint8_t *)p + PAGE_SIZE), -MM_ENOENT);
    REFUSED(vmalloc_free(&vs, (uint8_t *)p + 8), -MM_EINVAL);
    REFUSED(vmalloc_free(&vs, (void *)(uintptr_t)(MM_DIRECT_MAP_BASE + 0x1000)), -MM_EFAULT);
    REFUSED(vmalloc_free(&vs, (void *)(uintptr_t)MM_KSTACK_BASE), -MM_EFAULT);
    REFUSED(vmalloc_free(&vs, NULL), -MM_EFAULT);
    REFUSED(vmalloc_free(&vs, (uint8_t *)p + 64 * KiB), -MM_ENOENT);   /* free space */
    CHECK_EQ(vmalloc_free(&vs, p), 0);
    REFUSED(vmalloc_free(&vs, p), -MM_ENOENT);                       /* double */
    /* vmap: prot, counts, frames. */
    phys_addr_t fr[2] = { PA(FOREIGN_PA), PA(FOREIGN_PA + PAGE_SIZE) };
    REFUSED(vmalloc_map(&vs, fr, 2, MM_PROT_READ | MM_PROT_WRITE | MM_PROT_EXEC, &out),
            -MM_EINVAL);
    REFUSED(vmalloc_map(&vs, fr, 2, MM_PROT_WRITE | MM_PROT_EXEC | MM_PROT_WX_OK, &out),
            -MM_EINVAL);
    REFUSED(vmalloc_map(&vs, fr, 2, MM_PROT_READ | MM_PROT_USER, &out), -MM_EINVAL);
    REFUSED(vmalloc_map(&vs, fr, 2, 0, &out), -MM_EINVAL);
    REFUSED(vmalloc_map(&vs, NULL, 2, MM_PROT_READ, &out), -MM_EINVAL);
    REFUSED(vmalloc_map(&vs, fr, 0, MM_PROT_READ, &out), -MM_EINVAL);
    REFUSED(vmalloc_map(&vs, fr, VMALLOC_MAX_SIZE / PAGE_SIZE + 1, MM_PROT_READ, &out),
            -MM_EINVAL);
    phys_addr_t odd[2] = { PA(FOREIGN_PA), PA(FOREIGN_PA + 8) };
    REFUSED(vmalloc_map(&vs, odd, 2, MM_PROT_READ, &out), -MM_EINVAL);
    phys_addr_t beyond[1] = { PA(SIM_SIZE + PAGE_SIZE) };            /* not RAM */
    REFUSED(vmalloc_map(&vs, beyond, 1, MM_PROT_READ, &out), -MM_EINVAL);
    /* An uninitialised space refuses everything. */
    static struct vmalloc_space empty;
    REFUSED(vmalloc_alloc(&empty, PAGE_SIZE, &out), -MM_EINVAL);
    REFUSED(vmalloc_free(&empty, p), -MM_EINVAL);
    REFUSED(vmalloc_space_init(&empty, "x", MM_VMALLOC_BASE, MM_VMALLOC_BASE + GiB, &tfa.fa),
            -MM_EINVAL);
}

static void test_refused_while_mapper_held(void)
{
    uint64_t base = setup();
    void *p = NULL, *out = NULL;
    REQUIRE(vmalloc_alloc(&vs, PAGE_SIZE, &p) == 0);
    struct kmapper km;
    REQUIRE(kmapper_lock(&km));
    REFUSED(vmalloc_alloc(&vs, PAGE_SIZE, &out), -MM_EPERM);
    REFUSED(vmalloc_free(&vs, p), -MM_EPERM);
    kmapper_unlock(&km);
    CHECK(kernel_is_mapped(va_of(p)));
    CHECK_EQ(vmalloc_free(&vs, p), 0);
    CHECK_EQ(tfa.outstanding, base);
}

/*
 * Every budget from 0 up to the first that succeeds: each failure is
 * -MM_ENOMEM with every frame back, no area, nothing mapped and no page
 * table left; budgets near the end make mapping fail after the first
 * page table (3 MiB crosses into a second one), so pages already mapped
 * are undone.
 */
static void enomem_sweep(uint64_t size, uint64_t step_from, bool want_undo)
{
    uint64_t base = setup();
    struct snap before;
    take_snap(&before);
    int err = -MM_ENOMEM;
    uint64_t budget;
    harness_quiet = 1;
    unsigned long undo_flushes = 0;
    for (budget = 0; err == -MM_ENOMEM;
         budget = budget + 97 < step_from ? budget + 97 : budget < step_from ? step_from
                                                                            : budget + 1) {
        void *p = NULL;
        tfa.budget = budget;
        err = vmalloc_alloc(&vs, size, &p);
        tfa.budget = UINT64_MAX;
        if (err == 0) {
            CHECK(kernel_is_mapped(va_of(p)) && kernel_is_mapped(va_of(p) + size - PAGE_SIZE));
            CHECK_EQ(vmalloc_free(&vs, p), 0);
            break;
        }
        CHECK_EQ(err, -MM_ENOMEM);
        CHECK(snap_same(&before) || (harness_shootdowns != before.shootdowns &&
                                     tfa.outstanding == base));
        undo_flushes += harness_shootdowns - before.shootdowns;
        before.shootdowns = harness_shootdowns;   /* an undo flushes: allowed */
        phys_addr_t tbl;
        struct pt_mapper k = kmapper_peek();
        CHECK(pt_get_table(&k, VA(MM_VMALLOC_BASE), PT_LEVEL_PD, &tbl) == -MM_ENOENT);
    }
    harness_quiet = 0;
    CHECK_EQ(err, 0);
    CHECK(budget > step_from);              /* the fine steps reached the end */
    CHECK(!want_undo || undo_flushes > 0);  /* a partly mapped area was undone */
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(tfa.bad_frees, 0);
}

static void test_enomem_all_or_nothing_small(void) { enomem_sweep(16 * KiB, 0, false); }
static void test_enomem_all_or_nothing_3m(void) { enomem_sweep(3 * MiB, 760, true); }

static void test_vmap_callers_frames(void)
{
    uint64_t base = setup();
    phys_addr_t fr[3] = { PA(FOREIGN_PA + 2 * PAGE_SIZE), PA(FOREIGN_PA), PA(0x90000) };
    memset(pa_to_ptr(fr[1]), 0x3c, PAGE_SIZE);
    void *r = NULL, *x = NULL;
    REQUIRE(vmalloc_map(&vs, fr, 3, MM_PROT_READ, &r) == 0);
    REQUIRE(vmalloc_map(&vs, fr, 1, MM_PROT_READ | MM_PROT_EXEC, &x) == 0);
    struct pt_mapping m;
    for (unsigned i = 0; i < 3; i++) {
        REQUIRE(kernel_lookup(va_of(r) + i * PAGE_SIZE, &m) == 0);
        CHECK_EQ(m.pa.raw, fr[i].raw);
        CHECK_EQ(m.flags & (PTE_WRITE | PTE_NX | PTE_GLOBAL), PTE_NX | PTE_GLOBAL);
    }
    CHECK_EQ(bytes_at(va_of(r) + PAGE_SIZE)[100], 0x3c);     /* not zeroed: the caller's */
    CHECK(!kernel_is_mapped(va_of(r) + 3 * PAGE_SIZE));
    REQUIRE(kernel_lookup(va_of(x), &m) == 0);
    CHECK_EQ(m.flags & (PTE_WRITE | PTE_NX), 0);
    CHECK_EQ(vmalloc_free(&vs, r), 0);
    CHECK_EQ(vmalloc_free(&vs, x), 0);
    CHECK_EQ(bytes_at(MM_DIRECT_MAP_BASE) != NULL, true);    /* harness mapping intact */
    CHECK_EQ(((uint8_t *)pa_to_ptr(fr[1]))[100], 0x3c);      /* frames stay the caller's */
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(tfa.bad_frees, 0);
}

/* A free flushes once, on every CPU, and only then gives frames back:
 * each CPU has the area's pages in its TLB when the free starts. */
static void vfree_one_shootdown(uint64_t size)
{
    uint64_t base = setup();
    tlb_model_init(4, ktop);
    void *p = NULL;
    REQUIRE(vmalloc_alloc(&vs, size, &p) == 0);
    for (unsigned cpu = 0; cpu < 4; cpu++)
        CHECK_EQ(tlb_model_access(cpu, VA(va_of(p)), TLB_ACCESS_WRITE), TLB_OK);
    tlb_model_fill_range(VA(va_of(p)), size);
    unsigned long sd = harness_shootdowns, violations = tlb_model_violations;
    CHECK_EQ(vmalloc_free(&vs, p), 0);
    CHECK_EQ(harness_shootdowns, sd + 1);
    CHECK_EQ(harness_shootdown_targets, MM_CPUMASK_ALL);
    CHECK_EQ(tlb_model_violations, violations);
    CHECK_EQ(tlb_model_check("vfree_one_shootdown"), 0);
    for (unsigned cpu = 0; cpu < 4; cpu++)
        CHECK_EQ(tlb_model_access(cpu, VA(va_of(p)), TLB_ACCESS_READ), TLB_FAULT_NOT_PRESENT);
    tlb_model_fini();
    CHECK_EQ(tfa.outstanding, base);
}

static void test_vfree_one_shootdown_16k(void) { vfree_one_shootdown(16 * KiB); }
static void test_vfree_one_shootdown_1m(void) { vfree_one_shootdown(MiB); }

static void test_many_areas_disjoint_with_guards(void)
{
    uint64_t base = setup();
    uint64_t rng = 0x9e3779b97f4a7c15u;
    void *p[40];
    uint64_t sz[40];
    for (unsigned i = 0; i < 40; i++) {
        sz[i] = 1 + rng_next(&rng) % (300 * KiB);
        REQUIRE(vmalloc_alloc(&vs, sz[i], &p[i]) == 0);
        uint64_t end = align_up_u64(va_of(p[i]) + sz[i], PAGE_SIZE);
        CHECK(kernel_is_mapped(end - PAGE_SIZE) && !kernel_is_mapped(end));
        for (unsigned j = 0; j < i; j++) {
            uint64_t ej = align_up_u64(va_of(p[j]) + sz[j], PAGE_SIZE) + PAGE_SIZE;
            CHECK(end + PAGE_SIZE <= va_of(p[j]) || ej <= va_of(p[i]));
        }
    }
    for (unsigned i = 0; i < 40; i += 2)
        CHECK_EQ(vmalloc_free(&vs, p[i]), 0);
    for (unsigned i = 1; i < 40; i += 2)
        CHECK_EQ(vmalloc_free(&vs, p[i]), 0);
    struct vmalloc_stats st;
    vmalloc_stats(&vs, &st);
    CHECK_EQ(st.areas, 0);
    CHECK_EQ(st.bookkeeping_frames, 0);
    CHECK_EQ(tfa.outstanding, base);
    CHECK_EQ(vmalloc_check(&vs), 0);
}

static void test_global_calls(void)
{
    uint64_t base = setup();
    REQUIRE(vmalloc_space_init(vmalloc_space_global(), "vmalloc", MM_VMALLOC_BASE,
                               MM_VMALLOC_END, &tfa.fa) == 0);
    void *p = mm_vmalloc(20 * KiB);
    REQUIRE(p != NULL);
    CHECK(kernel_is_mapped(va_of(p) + 16 * KiB) && !kernel_is_mapped(va_of(p) + 20 * KiB));
    phys_addr_t fr[1] = { PA(FOREIGN_PA) };
    void *q = mm_vmap(fr, 1, MM_PROT_READ | MM_PROT_WRITE);
    REQUIRE(q != NULL);
    harness_quiet = 1;
    CHECK(mm_vmalloc(0) == NULL);
    CHECK(mm_vmap(fr, 1, MM_PROT_WRITE | MM_PROT_EXEC) == NULL);
    CHECK_EQ(mm_vfree((uint8_t *)p + PAGE_SIZE), -MM_ENOENT);
    harness_quiet = 0;
    CHECK_EQ(mm_vfree(p), 0);
    CHECK_EQ(mm_vfree(q), 0);
    CHECK_EQ(tfa.outstanding, base);
}

int main(void)
{
    RUN(test_alloc_maps_zeroed_rw_nx_with_guard);
    RUN(test_frames_not_contiguous_and_big_area);
    RUN(test_refusals);
    RUN(test_refused_while_mapper_held);
    RUN(test_enomem_all_or_nothing_small);
    RUN(test_enomem_all_or_nothing_3m);
    RUN(test_vmap_callers_frames);
    RUN(test_vfree_one_shootdown_16k);
    RUN(test_vfree_one_shootdown_1m);
    RUN(test_many_areas_disjoint_with_guards);
    RUN(test_global_calls);
    return harness_finish();
}
