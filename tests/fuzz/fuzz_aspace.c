/*
 * fuzz_aspace.c - libFuzzer target for user address spaces (mm/aspace.c)
 * and the copy helpers (mm/uaccess.c).
 *
 * The input is an operation sequence on FUZZ_AS address spaces that share
 * one small kernel table, run on FUZZ_CPUS simulated CPUs of the TLB model
 * (tlb_model.h), with frames from an allocator that the input can make
 * run dry:
 *   map a zeroed frame or a given ("foreign") frame, unmap, protect,
 *   translate, at candidate pages spread over several tables and slots
 *   or at bad addresses (page 0, unaligned, the top page, non-canonical,
 *   kernel half), with any protection byte; switch a CPU to an address
 *   space or to the kernel table; copy to and from user memory over one
 *   to three pages around a candidate; destroy (refused while loaded)
 *   and create again.
 * The model: per address space, which candidate pages are mapped, to
 * which frame, with which protection, owned or not, and the first byte
 * of each page.  It predicts every result, including the refusals (which
 * must change no frame count) and -MM_ENOMEM (nothing changed either).
 * After every operation no CPU may hold a stale translation, and every
 * CPU with an address space loaded reads one candidate page and gets
 * what the model says.  At the end every CPU goes back to the kernel
 * table, every address space is destroyed, and every frame the address
 * spaces took is back.
 */
#define FUZZ_NAME     "fuzz_aspace"
#define FUZZ_SIM_SIZE (64 * MiB)
#define FUZZ_FIRST_PA (1 * MiB)
#include "fuzz_util.h"

#include <mm/aspace.h>
#include <mm/init.h>
#include <mm/kmapper.h>

#define FUZZ_AS    3
#define FUZZ_CPUS  4
#define NCAND      12
#define FOREIGN_PA UINT64_C(0x10000)    /* below the allocator's frames */

static const uint64_t cand[NCAND] = {
    0x1000, 0x2000, 0x3000, 0x1ff000, 0x200000, 0x201000, 0x40000000,
    UINT64_C(0x8000000000), UINT64_C(0x8000001000), UINT64_C(0x7fffffffc000),
    UINT64_C(0x7fffffffd000), UINT64_C(0x7fffffffe000),
};
static const uint64_t bad_va[] = {
    0, 0x1800, UINT64_C(0x7ffffffff000), UINT64_C(0x800000000000),
    UINT64_C(0xffff800000000000), UINT64_C(0xffffffff80000000), UINT64_C(0x123456789000000),
};
#define NBAD (sizeof bad_va / sizeof bad_va[0])

struct page { bool mapped, owned; uint64_t pa; unsigned prot; uint8_t byte; };

static struct mm_as as[FUZZ_AS];
static struct page pg[FUZZ_AS][NCAND];
static uint8_t foreign_byte[FUZZ_AS][NCAND];
static int cur[FUZZ_CPUS];              /* -1: the kernel table */
static uint64_t kernel_frames;          /* frames of the kernel table */

static uint64_t foreign_pa(unsigned a, unsigned i)
{
    return FOREIGN_PA + ((uint64_t)a * NCAND + i) * PAGE_SIZE;
}

/* The model's view of a prot byte: valid for a user mapping? */
static bool prot_valid(unsigned prot)
{
    bool w = prot & MM_PROT_WRITE, x = prot & MM_PROT_EXEC;
    return (prot & ~0x1fu) == 0 && (prot & 7u) != 0 && (prot & MM_PROT_USER) &&
           !(w && x && !(prot & MM_PROT_WX_OK));
}

/* A prot byte: mostly valid ones, sometimes anything. */
static unsigned next_prot(struct reader *r)
{
    static const unsigned good[] = {
        MM_PROT_READ | MM_PROT_USER, MM_PROT_READ | MM_PROT_WRITE | MM_PROT_USER,
        MM_PROT_READ | MM_PROT_EXEC | MM_PROT_USER, MM_PROT_EXEC | MM_PROT_USER,
        MM_PROT_WRITE | MM_PROT_EXEC | MM_PROT_USER | MM_PROT_WX_OK,
    };
    unsigned b = next_byte(r);
    /* Shared mappings (MM_PROT_SHARED) are fuzz_cow's subject: the raw
     * bytes here leave that bit out, and bit 0x40 stays an unknown bit. */
    return b < 0xc0 ? good[b % 5] : (b & 0x5f);
}

/* The page to act on: a candidate (index in *i) or a bad address (-1). */
static uint64_t next_va(struct reader *r, int *i)
{
    unsigned b = next_byte(r);
    if (b < 0xe0) {
        *i = (int)(b % NCAND);
        return cand[*i];
    }
    *i = -1;
    return bad_va[b % NBAD];
}

/* Run call_ quietly; a refusal must leave every frame where it was. */
#define EXPECT(call_, want_)                                                  \
    do {                                                                      \
        uint64_t out_ = fa_out;                                               \
        long got_ = (long)(call_), w_ = (long)(want_);                        \
        if (got_ != w_)                                                       \
            fail(#call_ " returned the wrong result", (uint64_t)got_, (uint64_t)w_); \
        if (got_ < 0 && fa_out != out_)                                       \
            fail(#call_ " failed but changed the frame count", out_, fa_out); \
    } while (0)

static void op_map(struct reader *r, unsigned a, bool zeroed)
{
    int i;
    uint64_t va = next_va(r, &i);
    unsigned prot = next_prot(r);
    struct page *p = i >= 0 ? &pg[a][i] : NULL;
    int want = (!p || !prot_valid(prot)) ? -MM_EINVAL : p->mapped ? -MM_EEXIST : 0;
    uint64_t pa = i >= 0 ? foreign_pa(a, (unsigned)i) : FOREIGN_PA;
    uint64_t out = fa_out;
    int err = zeroed ? mm_as_map_zeroed(&as[a], VA(va), prot)
                     : mm_as_map_frame(&as[a], VA(va), PA(pa), prot);
    if (err == -MM_ENOMEM && want == 0 && fa_budget >= 0) {
        if (fa_out != out)
            fail("map ran out of frames but changed the frame count", out, fa_out);
        return;
    }
    if (err != want)
        fail("map returned the wrong result", (uint64_t)err, (uint64_t)want);
    if (err)
        return;
    phys_addr_t got;
    if (mm_as_translate(&as[a], VA(va), &got, NULL) != 0)
        fail("mapped page does not translate", va, 0);
    if (!zeroed && got.raw != pa)
        fail("map_frame mapped another frame", got.raw, pa);
    *p = (struct page){ true, zeroed, got.raw, prot, zeroed ? 0 : foreign_byte[a][i] };
}

static void op_unmap_protect(struct reader *r, unsigned a, bool protect)
{
    int i;
    uint64_t va = next_va(r, &i);
    unsigned prot = next_prot(r);
    struct page *p = i >= 0 ? &pg[a][i] : NULL;
    if (protect) {
        int want = (!p || !prot_valid(prot)) ? -MM_EINVAL : p->mapped ? 0 : -MM_ENOENT;
        EXPECT(mm_as_protect(&as[a], VA(va), prot), want);
        if (want == 0)
            p->prot = prot;
    } else {
        EXPECT(mm_as_unmap(&as[a], VA(va)), !p ? -MM_EINVAL : p->mapped ? 0 : -MM_ENOENT);
        if (p)
            p->mapped = false;
    }
}

/* Is every page of [va, va + len) mapped (writable if write)? */
static bool model_range_ok(unsigned a, uint64_t va, uint64_t len, bool write)
{
    for (uint64_t pv = align_down_u64(va, PAGE_SIZE); pv < va + len; pv += PAGE_SIZE) {
        bool ok = false;
        for (unsigned i = 0; i < NCAND; i++)
            if (cand[i] == pv && pg[a][i].mapped &&
                (!write || (pg[a][i].prot & MM_PROT_WRITE)))
                ok = true;
        if (!ok)
            return false;
    }
    return true;
}

static void op_copy(struct reader *r, unsigned a, bool to_user)
{
    int i;
    uint64_t va = next_va(r, &i) + next_byte(r) * 16 - 0x800;
    uint64_t len = next_byte(r) * 40;
    static uint8_t buf[3 * 4096];
    uint8_t fill = (uint8_t)next_byte(r);
    memset(buf, fill, sizeof buf);
    bool ok = len == 0 || (va >= MM_USER_BASE && va < MM_USER_END &&
                           len <= MM_USER_END - va && model_range_ok(a, va, len, to_user));
    int err = to_user ? mm_copy_to_user(&as[a], VA(va), buf, len)
                      : mm_copy_from_user(&as[a], buf, VA(va), len);
    if (err != (ok ? 0 : -MM_EFAULT))
        fail("copy returned the wrong result", (uint64_t)err, va);
    if (!ok && !to_user)
        for (uint64_t k = 0; k < len; k++)
            if (buf[k] != fill)
                fail("failed copy_from_user wrote the buffer", va, k);
    if (!ok || len == 0)
        return;
    for (unsigned j = 0; j < NCAND; j++) {       /* byte 0 of each page copied */
        if (cand[j] < va || cand[j] >= va + len)
            continue;
        if (to_user) {
            pg[a][j].byte = fill;
            if (!pg[a][j].owned)
                foreign_byte[a][j] = fill;
        } else if (buf[cand[j] - va] != pg[a][j].byte) {
            fail("copy_from_user read the wrong byte", cand[j], buf[cand[j] - va]);
        }
    }
}

static void op_switch(struct reader *r)
{
    unsigned cpu = next_byte(r) % FUZZ_CPUS;
    int target = (int)(next_byte(r) % (FUZZ_AS + 1)) - 1;
    harness_cpu_id = cpu;
    mm_as_switch(target < 0 ? NULL : &as[target]);
    cur[cpu] = target;
}

static void op_destroy(unsigned a)
{
    bool loaded = false;
    for (unsigned c = 0; c < FUZZ_CPUS; c++)
        loaded |= cur[c] == (int)a;
    EXPECT(mm_as_destroy(&as[a]), loaded ? -MM_EBUSY : 0);
    if (loaded)
        return;
    memset(pg[a], 0, sizeof pg[a]);
    if (mm_as_create(&as[a], &ffa) != 0) {       /* out of frames: try unlimited */
        fa_budget = -1;
        if (mm_as_create(&as[a], &ffa) != 0)
            fail("mm_as_create failed with frames left", a, 0);
    }
}

/* Every CPU with an address space loaded reads candidate i of it. */
static void check_access(unsigned i)
{
    for (unsigned c = 0; c < FUZZ_CPUS; c++) {
        if (cur[c] < 0)
            continue;
        const struct page *p = &pg[cur[c]][i];
        enum tlb_model_result res = tlb_model_access(c, VA(cand[i]), TLB_ACCESS_USER);
        if (res != TLB_OK && p->mapped)        /* fewer rights cached: retried */
            res = tlb_model_access(c, VA(cand[i]), TLB_ACCESS_USER);
        if (res != (p->mapped ? TLB_OK : TLB_FAULT_NOT_PRESENT))
            fail("user read gave the wrong result", cand[i], res);
        phys_addr_t pa;
        if (p->mapped && tlb_model_lookup(c, VA(cand[i]), &pa) && pa.raw != p->pa)
            fail("user read reached the wrong frame", cand[i], pa.raw);
    }
}

/* A kernel table with entries in three kernel-half slots. */
static void kernel_table_setup(void)
{
    phys_addr_t ktop = harness_kernel_table(&ffa, PA(FOREIGN_PA));
    kernel_frames = fa_out;
    fuzz_tlb_start(FUZZ_CPUS, ktop);
}

static void run_op(struct reader *r)
{
    unsigned op = next_byte(r), a = next_byte(r) % FUZZ_AS;
    harness_cpu_id = next_byte(r) % FUZZ_CPUS;
    switch (op % 12) {
    case 0: case 1: op_map(r, a, true); break;
    case 2: op_map(r, a, false); break;
    case 3: case 4: op_unmap_protect(r, a, false); break;
    case 5: op_unmap_protect(r, a, true); break;
    case 6: op_copy(r, a, true); break;
    case 7: op_copy(r, a, false); break;
    case 8: case 9: op_switch(r); break;
    case 10: op_destroy(a); break;
    default: {
        unsigned b = next_byte(r);
        fa_budget = b >= 0x80 ? -1 : (long)(b % 5);
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    harness_quiet = 1;
    ffa_reset();
    kernel_table_setup();
    memset(pg, 0, sizeof pg);
    memset(foreign_byte, 0, sizeof foreign_byte);
    for (unsigned c = 0; c < FUZZ_CPUS; c++)
        cur[c] = -1;
    for (unsigned a = 0; a < FUZZ_AS; a++)
        if (mm_as_create(&as[a], &ffa) != 0)
            fail("mm_as_create failed", a, 0);
    for (unsigned i = 0; i < FUZZ_AS * NCAND; i++)
        memset(pa_to_ptr(PA(FOREIGN_PA + i * PAGE_SIZE)), 0, PAGE_SIZE);

    struct reader r = { data, size };
    for (unsigned n = 0; r.n; n++) {
        tlb_model_fill_range(VA(MM_USER_BASE), MM_USER_END - MM_USER_BASE);
        run_op(&r);
        tlb_model_check("fuzz_aspace: after an operation");
        check_access(n % NCAND);
    }

    fa_budget = -1;
    for (unsigned c = 0; c < FUZZ_CPUS; c++) {
        harness_cpu_id = c;
        mm_as_switch(NULL);
    }
    harness_cpu_id = 0;
    for (unsigned a = 0; a < FUZZ_AS; a++)
        if (mm_as_destroy(&as[a]) != 0)
            fail("final mm_as_destroy failed", a, 0);
    if (fa_out != kernel_frames)
        fail("frames not back after destroying every address space", fa_out, kernel_frames);
    tlb_model_check("fuzz_aspace: end");
    tlb_model_fini();
    return 0;
}
