/*
 * fuzz_vmalloc.c - libFuzzer target for vmalloc, vmap, vfree and kernel
 * stacks (mm/vmalloc.c, mm/kstack.c) against a model.
 *
 * The input is an operation sequence on one vmalloc space and the
 * kernel-stack range, over a small kernel table (harness_kernel_table),
 * fed by a frame allocator over simulated memory that the input can make
 * run dry after n more frames:
 *   vmalloc of a size (0, 1 byte .. 3 MiB, or above the limit; areas of
 *   more than 2 MiB also with a budget that runs out among the page
 *   tables, after some pages are mapped), vmap of
 *   caller frames (out of order, repeated) with a prot (valid or not),
 *   vfree of the i-th area, kernel-stack alloc and free, a bad free
 *   (interior, misaligned, double, foreign, a stale stack handle), a frame
 *   budget, and a full check.
 * The model checks: every area is mapped exactly where and how it should
 * be (vmap: to the caller's frames), lies in its range and, with its
 * guard pages, overlaps no other; the guards are unmapped; the bytes
 * written into each area at creation are still there when it is checked
 * and freed; every refused call returns the documented error, prints one
 * log line and changes nothing (frames, areas, stacks); a call refused
 * with -MM_ENOMEM really ran out.  At the end everything is freed and
 * every frame must be back with the allocator.
 *
 * The kernel table is loaded on FUZZ_CPUS CPUs of the TLB model: before a
 * free every CPU caches the area's ends, operations rotate over the CPUs,
 * and after each one no CPU may hold a stale entry (and no frame may be
 * freed while a CPU caches it: tlb_model.h, check (b)).
 */
#define FUZZ_NAME     "fuzz_vmalloc"
#define FUZZ_SIM_SIZE (64 * MiB)
#define FUZZ_FIRST_PA (1 * MiB)
#include "fuzz_util.h"

#include <mm/aspace.h>
#include <mm/kmapper.h>
#include <mm/kstack.h>
#include <mm/log.h>
#include <mm/paging.h>
#include <mm/vmalloc.h>

#define MAX_LIVE     48
#define FUZZ_CPUS    3
#define VMAP_FIRST   UINT64_C(0x10000)       /* caller frames: [64 KiB, 1 MiB) */
#define VMAP_FRAMES  ((FUZZ_FIRST_PA - VMAP_FIRST) / PAGE_SIZE)
#define DATA_PA      UINT64_C(0x8000)        /* what harness_kernel_table maps */

enum kind { K_VMALLOC, K_VMAP, K_STACK };

static struct vmalloc_space vs;
static struct area {
    enum kind kind;
    uint64_t va, npages;        /* the mapped pages */
    uint64_t seed;              /* pattern of K_VMALLOC / K_STACK pages */
    phys_addr_t first_frame;    /* K_VMAP: frames[0] */
    struct mm_kstack ks;
} live[MAX_LIVE];
static unsigned nlive;
static uint64_t last_freed_va;  /* for double frees */
static struct mm_kstack last_freed_ks;

struct snap {
    uint64_t fa_out, areas, stacks;
};

static void snapshot(struct snap *s)
{
    struct vmalloc_stats st;
    vmalloc_stats(&vs, &st);
    *s = (struct snap){ fa_out, st.areas, mm_kstack_count() };
}

static void expect_unchanged(const struct snap *b, const char *what)
{
    struct snap a;
    snapshot(&a);
    if (memcmp(b, &a, sizeof a) != 0)
        fail(what, b->fa_out, a.fa_out);
}

/* A refused call: the error, one log line, nothing changed. */
#define EXPECT_REFUSED(call_, want_, what_)                                    \
    do {                                                                       \
        struct snap s_;                                                        \
        snapshot(&s_);                                                         \
        unsigned long l_ = harness_log_lines;                                  \
        int e_ = (call_);                                                      \
        if (e_ != (want_) || harness_log_lines != l_ + 1)                      \
            fail(what_, (uint64_t)(long)e_, harness_log_lines - l_);           \
        expect_unchanged(&s_, what_);                                          \
    } while (0)

static bool translate(uint64_t va, struct pt_mapping *m)
{
    struct pt_mapper k = kmapper_peek();
    return pt_translate(&k, VA(va), m) == 0;
}

static uint64_t *page_words(uint64_t va)
{
    struct pt_mapping m;
    if (!translate(va, &m))
        fail("area page not mapped", va, 0);
    return pa_to_ptr(PA(m.pa.raw & ~(PAGE_SIZE - 1)));
}

/* The guard pages of area i: unmapped. */
static void check_guards(unsigned i)
{
    struct pt_mapping m;
    uint64_t end = live[i].va + live[i].npages * PAGE_SIZE;
    if (translate(end, &m))
        fail("guard page after an area is mapped", end, live[i].va);
    if (live[i].kind == K_STACK && translate(live[i].va - PAGE_SIZE, &m))
        fail("guard page below a stack is mapped", live[i].va - PAGE_SIZE, 0);
}

/* Write (fill) or verify area i's contents. */
static void pattern(unsigned i, bool fill)
{
    for (uint64_t p = 0; p < live[i].npages; p++) {
        uint64_t va = live[i].va + p * PAGE_SIZE, *w = page_words(va);
        struct pt_mapping m;
        translate(va, &m);
        if (live[i].kind == K_VMAP) {
            if (p == 0 && m.pa.raw != live[i].first_frame.raw)
                fail("vmap page maps another frame", m.pa.raw, live[i].first_frame.raw);
            continue;
        }
        if ((m.flags & (PTE_WRITE | PTE_NX)) != (PTE_WRITE | PTE_NX))
            fail("area page is not RW+NX", va, m.flags);
        uint64_t want = va ^ live[i].seed;
        if (fill) {
            if (w[0] != 0 || w[511] != 0)
                fail("new page not zeroed", va, w[0]);
            w[0] = w[511] = want;
        } else if (w[0] != want || w[511] != want) {
            fail("area contents changed", va, w[0]);
        }
    }
}

/* Add a new area; it and its guards must overlap no live one. */
static void add_live(enum kind kind, uint64_t va, uint64_t npages, uint64_t seed,
                     phys_addr_t first_frame)
{
    uint64_t lo = kind == K_STACK ? va - PAGE_SIZE : va;
    uint64_t hi = va + (npages + 1) * PAGE_SIZE;
    uint64_t base = kind == K_STACK ? MM_KSTACK_BASE : MM_VMALLOC_BASE;
    if (lo < base || hi > base + VMALLOC_SIZE)
        fail("area outside its range", va, npages);
    for (unsigned j = 0; j < nlive; j++) {
        uint64_t jlo = live[j].kind == K_STACK ? live[j].va - PAGE_SIZE : live[j].va;
        uint64_t jhi = live[j].va + (live[j].npages + 1) * PAGE_SIZE;
        if (lo < jhi && jlo < hi)
            fail("areas overlap", va, live[j].va);
    }
    live[nlive] = (struct area){ .kind = kind, .va = va, .npages = npages, .seed = seed,
                                     .first_frame = first_frame };
    pattern(nlive, true);
    check_guards(nlive);
    nlive++;
}

static void remove_live(unsigned i)
{
    live[i] = live[--nlive];
}

/* Did a call that failed with err really run out (budget or memory)? */
static void check_enomem(int err, const struct snap *before, const char *what)
{
    if (err != -MM_ENOMEM)
        fail(what, (uint64_t)(long)err, 0);
    if (fa_budget != 0 && fa_next < FUZZ_SIM_SIZE)
        fail("ENOMEM with frames left", (uint64_t)fa_budget, fa_next);
    expect_unchanged(before, what);
}

/* ------------------------------------------------------------ operations */

static void op_vmalloc(struct reader *r)
{
    unsigned sel = next_byte(r);
    uint64_t size = sel < 8 ? 0 : sel < 16 ? VMALLOC_MAX_SIZE + 1 + next_byte(r)
                  : sel < 32 ? (512 + next_byte(r)) * PAGE_SIZE     /* crosses a table */
                  : 1 + next_u32(r) % (96 * PAGE_SIZE);
    /* A tight budget: enough for the frames, running out among the page
     * tables, so that pages already mapped must be undone. */
    if (sel >= 24 && sel < 32)
        fa_budget = (long)(size / PAGE_SIZE) + next_byte(r) % 8;
    if (nlive == MAX_LIVE)
        return;
    if (size == 0 || size > VMALLOC_MAX_SIZE) {
        void *p;
        EXPECT_REFUSED(vmalloc_alloc(&vs, size, &p), -MM_EINVAL, "bad vmalloc size accepted");
        return;
    }
    struct snap before;
    snapshot(&before);
    void *p = NULL;
    int err = vmalloc_alloc(&vs, size, &p);
    if (err) {
        check_enomem(err, &before, "vmalloc failed without leaving everything as it was");
        return;
    }
    add_live(K_VMALLOC, (uint64_t)(uintptr_t)p, align_up_u64(size, PAGE_SIZE) / PAGE_SIZE,
             next_u32(r) | 1, PA(0));
}

static void op_vmap(struct reader *r)
{
    phys_addr_t frames[16];
    unsigned n = 1 + next_byte(r) % 16, sel = next_byte(r) % 8;
    for (unsigned k = 0; k < n; k++)
        frames[k] = PA(VMAP_FIRST + (next_byte(r) % VMAP_FRAMES) * PAGE_SIZE);
    unsigned prot = sel == 0 ? (MM_PROT_WRITE | MM_PROT_EXEC)
                  : sel == 1 ? (MM_PROT_READ | MM_PROT_USER)
                  : sel < 5 ? (MM_PROT_READ | MM_PROT_WRITE) : MM_PROT_READ;
    void *p = NULL;
    if (sel < 2) {
        EXPECT_REFUSED(vmalloc_map(&vs, frames, n, prot, &p), -MM_EINVAL, "bad vmap prot");
        return;
    }
    if (nlive == MAX_LIVE)
        return;
    struct snap before;
    snapshot(&before);
    int err = vmalloc_map(&vs, frames, n, prot, &p);
    if (err) {
        check_enomem(err, &before, "vmap failed without leaving everything as it was");
        return;
    }
    uint64_t va = (uint64_t)(uintptr_t)p;
    for (unsigned k = 0; k < n; k++) {
        struct pt_mapping m;
        if (!translate(va + k * PAGE_SIZE, &m) || m.pa.raw != frames[k].raw)
            fail("vmap page maps the wrong frame", va + k * PAGE_SIZE, frames[k].raw);
        if (!!(m.flags & PTE_WRITE) != !!(prot & MM_PROT_WRITE) || !(m.flags & PTE_NX))
            fail("vmap page has the wrong flags", va, m.flags);
    }
    add_live(K_VMAP, va, n, 0, frames[0]);
}

static void op_kstack_alloc(struct reader *r)
{
    uint64_t size = (1 + next_byte(r) % 12) * PAGE_SIZE - (next_byte(r) & 0xff);
    if (nlive == MAX_LIVE)
        return;
    struct snap before;
    snapshot(&before);
    struct mm_kstack ks;
    int err = mm_kstack_alloc(size, next_byte(r), "fuzz", &ks);
    if (err) {
        check_enomem(err, &before, "kstack alloc failed without leaving everything as it was");
        return;
    }
    struct mm_kstack_info in;
    if (mm_kstack_lookup(VA(ks.base.raw - 1), &in) != MM_KSTACK_GUARD_BELOW ||
        mm_kstack_lookup(ks.top, &in) != MM_KSTACK_GUARD_ABOVE || in.base.raw != ks.base.raw)
        fail("the registry does not name a new stack's guards", ks.base.raw, ks.top.raw);
    add_live(K_STACK, ks.base.raw, ks.size / PAGE_SIZE, next_u32(r) | 1, PA(0));
    live[nlive - 1].ks = ks;
}

static void free_live(unsigned i)
{
    pattern(i, false);
    check_guards(i);
    fuzz_tlb_before(live[i].va, live[i].npages * PAGE_SIZE);
    int err;
    if (live[i].kind == K_STACK) {
        last_freed_ks = live[i].ks;
        err = mm_kstack_free(&live[i].ks);
    } else {
        err = vmalloc_free(&vs, (void *)(uintptr_t)live[i].va);
        last_freed_va = live[i].va;
    }
    if (err)
        fail("free of a live area failed", live[i].va, (uint64_t)(long)err);
    struct pt_mapping m;
    if (translate(live[i].va, &m))
        fail("freed area still mapped", live[i].va, 0);
    remove_live(i);
}

static void op_bad_free(struct reader *r)
{
    unsigned sel = next_byte(r) % 6;
    if (nlive == 0 && sel < 3)
        return;
    unsigned i = nlive ? next_byte(r) % nlive : 0;
    if (sel < 2 && live[i].kind == K_STACK)
        sel = 2;
    switch (sel) {
    case 0:
        if (live[i].npages > 1)
            EXPECT_REFUSED(vmalloc_free(&vs, (void *)(uintptr_t)(live[i].va + PAGE_SIZE)),
                           -MM_ENOENT, "interior vfree");
        break;
    case 1:
        EXPECT_REFUSED(vmalloc_free(&vs, (void *)(uintptr_t)(live[i].va + 8)), -MM_EINVAL,
                       "misaligned vfree");
        break;
    case 2: {
        struct mm_kstack forged = live[i].ks;
        forged.base.raw += PAGE_SIZE;
        EXPECT_REFUSED(mm_kstack_free(&forged), -MM_EINVAL, "forged kstack free");
        break;
    }
    case 3:
        EXPECT_REFUSED(vmalloc_free(&vs, (void *)(uintptr_t)(MM_DIRECT_MAP_BASE + 0x1000)),
                       -MM_EFAULT, "foreign vfree");
        break;
    case 4:
        for (unsigned j = 0; j < nlive; j++)
            if (live[j].va == last_freed_va && live[j].kind != K_STACK)
                return;                     /* reused: not a double free */
        if (last_freed_va)
            EXPECT_REFUSED(vmalloc_free(&vs, (void *)(uintptr_t)last_freed_va), -MM_ENOENT,
                           "double vfree");
        break;
    default:
        if (last_freed_ks.top.raw)
            EXPECT_REFUSED(mm_kstack_free(&last_freed_ks), -MM_EINVAL, "stale kstack free");
        break;
    }
}

static void op_check_all(void)
{
    for (unsigned i = 0; i < nlive; i++) {
        pattern(i, false);
        check_guards(i);
    }
    vmalloc_check(&vs);
}

static void free_everything(uint64_t fa_after_setup)
{
    fa_budget = -1;
    while (nlive)
        free_live(nlive - 1);
    struct vmalloc_stats st;
    vmalloc_stats(&vs, &st);
    if (st.areas || st.bookkeeping_frames || mm_kstack_count())
        fail("areas left after freeing everything", st.areas, mm_kstack_count());
    if (fa_out != fa_after_setup)
        fail("frames not given back", fa_out, fa_after_setup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reader r = { data, size };
    harness_quiet = 1;
    ffa_reset();
    phys_addr_t top = harness_kernel_table(&ffa, PA(DATA_PA));
    if (vmalloc_space_init(&vs, "vmalloc", MM_VMALLOC_BASE, MM_VMALLOC_END, &ffa) != 0 ||
        mm_kstack_init(&ffa) != 0)
        fail("init failed", 0, 0);
    nlive = 0;
    last_freed_va = 0;
    last_freed_ks = (struct mm_kstack){ 0 };
    uint64_t base = fa_out;
    fuzz_tlb_start(FUZZ_CPUS, top);
    for (unsigned steps = 0; r.n && steps < 200; steps++) {
        switch (next_byte(&r) % 8) {
        case 0: op_vmalloc(&r); break;
        case 1: op_vmap(&r); break;
        case 2: if (nlive) free_live(next_byte(&r) % nlive); break;
        case 3: op_kstack_alloc(&r); break;
        case 4: op_bad_free(&r); break;
        case 5: fa_budget = next_byte(&r) % 48; break;
        case 6: fa_budget = -1; break;
        default: op_check_all(); break;
        }
        tlb_model_check("fuzz_vmalloc: after an operation");
    }
    free_everything(base);
    tlb_model_fini();
    return 0;
}
