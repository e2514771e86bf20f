/*
 * mm/tlbflush.c - discharging flush tokens: invlpg or a full flush on this
 * CPU, the shootdown request to the others, deferred frees and batches.
 *
 * Algorithm.  A token names one page of any size (one invlpg drops it,
 * whatever its size, with the paging-structure caches above it), a range
 * of 4 KiB pages (one invlpg each, or a full flush above
 * PT_FLUSH_MAX_INVLPG pages), or everything.  The shootdown request
 * counts 4 KiB pages, so the other CPUs get the number of 4 KiB pages the
 * token covers, or 0 ("everything") above PT_FLUSH_MAX_INVLPG: a hook
 * that invalidates page by page is then always correct and bounded.
 *
 * Targets.  A token of the kernel table (cpus NULL) flushes this CPU and
 * every other one (MM_CPUMASK_ALL).  A token of an address space reads its
 * CPU set when discharged, after a full barrier that orders the table
 * writes before the read (mm/tlbflush.h, "Which CPUs", explains the race
 * it closes): this CPU flushes only if it is in the set, the others only
 * if there are any.  A batch does the same with the set its tokens share.
 *
 * Invariants.  A frame parked in a token or batch is unreachable from the
 * tree but may still be cached by other CPUs; it goes back to its
 * allocator only after this CPU's flush and the shootdown have returned.
 * Parked table frames are chained through their word 0 with DEFER_LINK
 * set and the present bit clear, so a stale walk that reads one sees a
 * non-present entry, and the hardware never writes there.  Data frames
 * cannot hold a link (another CPU may still write into them through a
 * stale TLB entry): the token or batch keeps their addresses instead.
 *
 * Locking: none.  A token or a batch belongs to the code that holds it;
 * the shootdown hook serialises the CPUs it interrupts.
 */
#include <mm/arch.h>
#include <mm/log.h>
#include <mm/platform.h>
#include <mm/tlbflush.h>

#define DEFER_LINK (UINT64_C(1) << 62)

static inline uint64_t *frame_word0(phys_addr_t pa)
{
    return (uint64_t *)pa_to_ptr(pa);
}

/* ------------------------------------------------------ filling a token */

static void token_clear(struct pt_flush *tok)
{
    *tok = (struct pt_flush)PT_FLUSH_INIT;
}

void pt_flush_set(struct pt_flush *tok, const volatile mm_cpumask_t *cpus, int kind,
                  virt_addr_t va, uint64_t npages)
{
    tok->cpus = cpus;
    tok->kind = kind;
    tok->va = va;
    tok->npages = npages;
}

int pt_flush_begin(struct pt_flush *tok, const char *fn)
{
    if (pt_flush_pending(tok)) {
        mm_printf("%s: flush token still pending (va %#lx, kind %d): discharge it first\n",
                  fn, (unsigned long)tok->va.raw, tok->kind);
        return -MM_EINVAL;
    }
    token_clear(tok);
    return 0;
}

/* Frames of one token or batch must go back to one allocator. */
static void check_same_fa(struct frame_allocator *have, struct frame_allocator *fa,
                          phys_addr_t pa, const char *fn)
{
    if (have && have != fa)
        mm_panic("%s: frame %lx from another allocator than the frames held",
                 fn, (unsigned long)pa.raw);
}

void pt_flush_defer_table(struct pt_flush *tok, struct frame_allocator *fa, phys_addr_t pa)
{
    check_same_fa(tok->deferred_fa, fa, pa, "pt_flush_defer_table");
    *frame_word0(pa) = tok->deferred;
    tok->deferred = pa.raw | DEFER_LINK;
    tok->deferred_fa = fa;
}

void pt_flush_defer_data(struct pt_flush *tok, struct frame_allocator *fa, phys_addr_t pa)
{
    check_same_fa(tok->deferred_fa, fa, pa, "pt_flush_defer_data");
    if (tok->deferred_data)
        mm_panic("pt_flush_defer_data: token for va %lx already holds data frame %lx",
                 (unsigned long)tok->va.raw, (unsigned long)(tok->deferred_data & ~DEFER_LINK));
    tok->deferred_data = pa.raw | DEFER_LINK;
    tok->deferred_fa = fa;
}

/* ----------------------------------------------------------- freeing */

/* Give every chained table frame back to fa. */
static void free_table_chain(uint64_t chain, struct frame_allocator *fa)
{
    while (chain) {
        phys_addr_t pa = PA(chain & ~DEFER_LINK);
        chain = *frame_word0(pa);
        fa->free(fa, pa);
    }
}

/* Free the token's deferred frames and empty it: after its flush. */
static void token_release(struct pt_flush *tok)
{
    free_table_chain(tok->deferred, tok->deferred_fa);
    if (tok->deferred_data)
        tok->deferred_fa->free(tok->deferred_fa, PA(tok->deferred_data & ~DEFER_LINK));
    token_clear(tok);
}

/* ---------------------------------------------------------- flushing */

/* 4 KiB pages to name in a flush of npages: npages, or 0 for "all". */
static uint64_t invlpg_count(uint64_t npages)
{
    return npages <= PT_FLUSH_MAX_INVLPG ? npages : 0;
}

static void flush_token_here(const struct pt_flush *tok)
{
    switch (tok->kind) {
    case PT_FLUSH_NONE:
        return;
    case PT_FLUSH_ONE_PAGE:
        arch_invlpg(tok->va);           /* covers the page of any size */
        return;
    case PT_FLUSH_RANGE: {
        uint64_t n = invlpg_count(tok->npages);
        if (n == 0)
            arch_flush_tlb_all();
        for (uint64_t i = 0; i < n; i++)
            arch_invlpg(VA(tok->va.raw + i * PAGE_SIZE));
        return;
    }
    case PT_FLUSH_ALL:
        arch_flush_tlb_all();
        return;
    default:
        mm_panic("flush_token_here: bad token kind %d for va %lx", tok->kind,
                 (unsigned long)tok->va.raw);
    }
}

/*
 * Which CPUs a flush over set `cpus` must reach, read after the table
 * changes: *here tells whether this CPU must flush, the result is the
 * other CPUs (0: none, no shootdown).
 */
static mm_cpumask_t flush_targets(const volatile mm_cpumask_t *cpus, bool *here)
{
    if (!cpus) {
        *here = true;
        return MM_CPUMASK_ALL;
    }
    /* The entry writes before the read of the set; pairs with the barrier
     * between a switching CPU's bit and its CR3 load. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    mm_cpumask_t set = __atomic_load_n(cpus, __ATOMIC_RELAXED);
    mm_cpumask_t me = (mm_cpumask_t)1 << mm_platform_cpu_id();
    *here = (set & me) != 0;
    return set & ~me;
}

/*
 * The request to the CPUs in targets, in 4 KiB pages for every kind: the
 * hook cannot tell a 2 MiB leaf from one 4 KiB page, so a large leaf is
 * sent as its 4 KiB page count, which is above PT_FLUSH_MAX_INVLPG: 0.
 */
static void shootdown_token(const struct pt_flush *tok, mm_cpumask_t targets)
{
    if (targets == 0)
        return;
    switch (tok->kind) {
    case PT_FLUSH_NONE:
        return;
    case PT_FLUSH_ONE_PAGE:
    case PT_FLUSH_RANGE:
        mm_platform_tlb_shootdown(targets, tok->va, invlpg_count(tok->npages));
        return;
    default:
        mm_platform_tlb_shootdown(targets, VA(0), 0);
        return;
    }
}

void pt_flush_local(struct pt_flush *tok)
{
    flush_token_here(tok);
    token_release(tok);
}

void pt_flush(struct pt_flush *tok)
{
    if (tok->kind != PT_FLUSH_NONE) {
        bool here;
        mm_cpumask_t others = flush_targets(tok->cpus, &here);
        if (here)
            flush_token_here(tok);
        shootdown_token(tok, others);
    }
    token_release(tok);         /* only now unreachable */
}

void pt_flush_ignore(struct pt_flush *tok)
{
    token_release(tok);
}

void pt_flush_check_discharged(struct pt_flush *tok)
{
    if (pt_flush_pending(tok))
        mm_panic("pt_flush_check_discharged: flush of va %lx (%lu pages, kind %d) dropped",
                 (unsigned long)tok->va.raw, (unsigned long)tok->npages, tok->kind);
}

/* ----------------------------------------------------------- batches */

void pt_flush_batch_init(struct pt_flush_batch *b)
{
    b->nslots = 0;
    b->all = false;
    b->npages = 0;
    b->deferred = 0;
    b->ndata = 0;
    b->deferred_fa = NULL;
    b->any = false;
    b->cpus = NULL;
}

/* Free the batch's deferred frames and empty it: after its flush. */
static void batch_release(struct pt_flush_batch *b)
{
    free_table_chain(b->deferred, b->deferred_fa);
    for (unsigned i = 0; i < b->ndata; i++)
        b->deferred_fa->free(b->deferred_fa, PA(b->data[i] & ~DEFER_LINK));
    pt_flush_batch_init(b);
}

/* Move tok's parked frames to b (table frames keep the links). */
static void batch_take_frames(struct pt_flush_batch *b, struct pt_flush *tok)
{
    while (tok->deferred) {
        phys_addr_t pa = PA(tok->deferred & ~DEFER_LINK);
        tok->deferred = *frame_word0(pa);
        *frame_word0(pa) = b->deferred;
        b->deferred = pa.raw | DEFER_LINK;
        b->deferred_fa = tok->deferred_fa;
    }
    if (tok->deferred_data) {
        b->data[b->ndata++] = tok->deferred_data;
        b->deferred_fa = tok->deferred_fa;
    }
}

void pt_flush_batch_add(struct pt_flush_batch *b, struct pt_flush *tok)
{
    if (!pt_flush_pending(tok))
        return;
    if ((tok->deferred || tok->deferred_data) && b->deferred_fa &&
        b->deferred_fa != tok->deferred_fa)
        mm_panic("pt_flush_batch_add: frames of token for va %lx from another allocator",
                 (unsigned long)tok->va.raw);
    /* No room for the data frame: discharge the batch so far. */
    if (tok->deferred_data && b->ndata == PT_FLUSH_BATCH_FRAMES)
        pt_flush_batch_flush(b);
    batch_take_frames(b, tok);
    /* One set for the batch: the tokens' common one, or every CPU. */
    if (!b->any)
        b->cpus = tok->cpus;
    else if (b->cpus != tok->cpus)
        b->cpus = NULL;
    b->any = true;
    uint64_t cost = tok->kind == PT_FLUSH_ONE_PAGE ? 1 : tok->npages;
    if (!b->all) {
        if (tok->kind == PT_FLUSH_ALL || b->nslots == PT_FLUSH_BATCH_SLOTS ||
            b->npages + cost > PT_FLUSH_MAX_INVLPG)
            b->all = true;
        else {
            b->slot[b->nslots++] = *tok;
            b->npages += cost;
        }
    }
    token_clear(tok);
}

/* This CPU's part of a batch; the deferred frames stay for the caller. */
static void batch_flush_here(struct pt_flush_batch *b)
{
    if (b->all)
        arch_flush_tlb_all();
    else
        for (unsigned i = 0; i < b->nslots; i++)
            flush_token_here(&b->slot[i]);
}

void pt_flush_batch_flush_local(struct pt_flush_batch *b)
{
    batch_flush_here(b);
    batch_release(b);
}

/* One token for the other CPUs covering every slot of b: the span from the
 * lowest to the highest page of all slots, or everything. */
static struct pt_flush batch_remote_token(const struct pt_flush_batch *b)
{
    struct pt_flush remote = PT_FLUSH_INIT;
    if (b->all) {
        remote.kind = PT_FLUSH_ALL;
    } else if (b->nslots == 1) {
        remote = b->slot[0];
    } else if (b->nslots > 1) {
        /* Inclusive last addresses: the end of the top page wraps to 0. */
        uint64_t lo = UINT64_MAX, last = 0;
        for (unsigned i = 0; i < b->nslots; i++) {
            uint64_t s = b->slot[i].va.raw, l = s + (b->slot[i].npages * PAGE_SIZE - 1);
            lo = s < lo ? s : lo;
            last = l > last ? l : last;
        }
        pt_flush_set(&remote, b->cpus, PT_FLUSH_RANGE, VA(lo), ((last - lo) >> PAGE_SHIFT) + 1);
    }
    return remote;
}

void pt_flush_batch_flush(struct pt_flush_batch *b)
{
    if (b->any) {
        struct pt_flush remote = batch_remote_token(b);
        bool here;
        mm_cpumask_t others = flush_targets(b->cpus, &here);
        if (here)
            batch_flush_here(b);
        shootdown_token(&remote, others);
    }
    batch_release(b);           /* only now unreachable */
}
