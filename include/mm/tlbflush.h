/*
 * mm/tlbflush.h - flush tokens: the TLB obligation of a page-table edit.
 *
 * Every call that changes a page-table entry reports which TLB entries may
 * now be stale in a struct pt_flush token written through its last
 * parameter.  The token passed in must be empty (PT_FLUSH_INIT or
 * discharged): a mutating call given a token that is still pending logs
 * the caller bug and returns -MM_EINVAL, leaving the tables and the token
 * as they were.  The caller discharges the token exactly once:
 *   pt_flush(&tok)         this CPU and a shootdown to the others (of the
 *                          mapper's CPU set, see "Which CPUs");
 *   pt_flush_local(&tok)   this CPU only (table not yet seen by others);
 *   pt_flush_ignore(&tok)  nothing (table not loaded on any CPU);
 *   pt_flush_batch_add()   merge into a batch flushed once later.
 * Two guards make a forgotten flush hard to write:
 *  - the int result of every mutating call is warn_unused_result, so a
 *    call used as a statement does not build with -Werror: the caller must
 *    look at the error, and the token sits right next to it;
 *  - a token declared with PT_FLUSH_SCOPED panics when it goes out of
 *    scope still holding an obligation (GCC/Clang cleanup attribute), the
 *    C counterpart of a must-use destructor.  Recommended for new code.
 * A call that fails for any other reason leaves the token empty
 * (PT_FLUSH_NONE), so error paths need no flush.
 *
 * Deferred frees.  A frame unlinked from a live table (an emptied table,
 * or pt_unmap's data frame) may still be reached by another CPU through
 * its TLB or paging-structure caches until the flush.  The token keeps it
 * and hands it back to its frame allocator only when discharged, after
 * the flush; a batch takes the frames over with the obligation.
 *
 * Which CPUs.  A token records the CPU set of the mapper that made the
 * change (struct pt_mapper's cpus).  NULL, the kernel table: this CPU
 * flushes and the shootdown goes to MM_CPUMASK_ALL, every other CPU.  An
 * address space's set is read when the token is discharged, after the
 * table change, with a full memory barrier in between; this CPU flushes
 * only if it is in the set, and the shootdown goes to the rest of the set
 * only if that is not empty: no IPI at all for an address space loaded
 * only here.  The barrier pairs with the one a CPU executes when it
 * switches in (it sets its bit, full barrier, then loads CR3): either the
 * flushing CPU sees the bit and flushes that CPU, or that CPU's CR3 load
 * comes after the entry was written, so its walks see the new entry.
 * Without both barriers each CPU's store could wait in its store buffer
 * while it reads the other's old value, and the switching CPU would run
 * on a stale translation that nobody flushes.
 *
 * Shootdowns.  The other CPUs are reached through the platform hook
 * mm_platform_tlb_shootdown(targets, va, npages) (include/mm/platform.h).
 * npages is the number of 4 KiB pages from va whose translations may be
 * stale, 1..PT_FLUSH_MAX_INVLPG, so one invlpg per 4 KiB page is always
 * enough; anything larger, including any 2 MiB or 1 GiB leaf (512 or
 * 262144 pages), is sent as npages = 0, "flush everything".
 *
 * Locking: none.  A token or a batch belongs to the code that holds it.
 */
#ifndef MM_TLBFLUSH_H
#define MM_TLBFLUSH_H

#include <mm/frame.h>
#include <mm/platform.h>
#include <mm/types.h>

enum pt_flush_kind {
    PT_FLUSH_NONE = 0,      /* nothing to do (also: already discharged) */
    PT_FLUSH_ONE_PAGE,      /* the one page (of any size) containing va */
    PT_FLUSH_RANGE,         /* npages 4 KiB pages from va */
    PT_FLUSH_ALL,           /* everything, global pages included */
};

struct pt_flush {
    virt_addr_t va;
    uint64_t npages;        /* 4 KiB pages covered (ONE_PAGE: size/4K) */
    int kind;               /* enum pt_flush_kind */
    /*
     * Frames the call unlinked, freed to deferred_fa only when the token
     * is discharged.  deferred: emptied tables, a chain through each
     * frame's word 0 (values with bit 62 set and the present bit clear,
     * 0 = end); the hardware never writes into an entry that is not
     * present.  deferred_data: pt_unmap's data frame (its pa with bit 62
     * set, 0 = none), kept here because other CPUs may still write into it.
     */
    uint64_t deferred;
    uint64_t deferred_data;
    struct frame_allocator *deferred_fa;
    /* The CPUs that may cache the changed entries (read at discharge);
     * NULL: every CPU (see "Which CPUs" above). */
    const volatile mm_cpumask_t *cpus;
};

#define PT_FLUSH_INIT { { 0 }, 0, PT_FLUSH_NONE, 0, 0, NULL, NULL }

/* Above this many 4 KiB pages a flush becomes a full flush, here and in
 * the shootdown request (a kernel's hook may use it the same way). */
#define PT_FLUSH_MAX_INVLPG 64

/* Discharge a token: this CPU and a shootdown to the others of its set. */
void pt_flush(struct pt_flush *tok);
/* Discharge on this CPU only: the table is not in use on any other CPU. */
void pt_flush_local(struct pt_flush *tok);
/* Discharge without flushing: the table is not loaded anywhere. */
void pt_flush_ignore(struct pt_flush *tok);
/* The obligation has not been discharged yet. */
static inline bool pt_flush_pending(const struct pt_flush *tok)
{
    return tok->kind != PT_FLUSH_NONE || tok->deferred != 0 || tok->deferred_data != 0;
}

/* Cleanup hook of PT_FLUSH_SCOPED: panics if the token is still pending. */
void pt_flush_check_discharged(struct pt_flush *tok);
/* Declare a token that must be discharged before it goes out of scope:
 *     struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;            */
#define PT_FLUSH_SCOPED __attribute__((cleanup(pt_flush_check_discharged)))

/* ----------------------------------------------------------------- batches */

/*
 * A batch merges many tokens into one flush: each added page is invalidated
 * with invlpg, unless the batch grows past PT_FLUSH_MAX_INVLPG pages or
 * PT_FLUSH_BATCH_SLOTS separate ranges, when it turns into one full flush.
 * Other CPUs get a single shootdown covering the whole batch.  The CPU
 * set is the tokens' one if they all share it, else every CPU (NULL).
 *
 * The batch keeps the data frames of up to PT_FLUSH_BATCH_FRAMES pt_unmap
 * tokens.  Adding one more first discharges the batch so far as
 * pt_flush_batch_flush does (this CPU and a shootdown, even for a batch
 * meant for pt_flush_batch_flush_local) and starts it afresh: a data frame
 * may be freed only after the flush.
 */
#define PT_FLUSH_BATCH_SLOTS 16
#define PT_FLUSH_BATCH_FRAMES 16

struct pt_flush_batch {
    unsigned nslots;
    bool all;               /* merged into a full flush */
    uint64_t npages;        /* 4 KiB pages over all slots */
    struct pt_flush slot[PT_FLUSH_BATCH_SLOTS];
    uint64_t deferred;      /* table frames freed after the batch's flush */
    unsigned ndata;
    uint64_t data[PT_FLUSH_BATCH_FRAMES];  /* data frames, as deferred_data */
    struct frame_allocator *deferred_fa;   /* all tokens must share it */
    bool any;               /* a token was added since init: cpus is set */
    const volatile mm_cpumask_t *cpus;     /* the tokens' CPU set, NULL: all */
};

void pt_flush_batch_init(struct pt_flush_batch *b);
/* Move the obligation of tok into b (tok becomes PT_FLUSH_NONE), including
 * the frames it will free after the flush; if tok has a data frame and b
 * holds PT_FLUSH_BATCH_FRAMES already, b is discharged first (see above).
 * All tokens in one batch must come from mappers sharing one frame
 * allocator (a mix panics: the batch keeps one allocator pointer). */
void pt_flush_batch_add(struct pt_flush_batch *b, struct pt_flush *tok);
/* Discharge the whole batch: this CPU and a shootdown to the others of
 * its set (as pt_flush), or this CPU only. */
void pt_flush_batch_flush(struct pt_flush_batch *b);
void pt_flush_batch_flush_local(struct pt_flush_batch *b);

/* ------------------------------------------ for code that edits the tables */

/*
 * Start of every mutating page-table call: tok must not be pending (a
 * pending token would lose its flush and its frames if overwritten).
 * 0 with tok emptied, or -MM_EINVAL after one log line naming fn, with
 * tok untouched.
 */
int pt_flush_begin(struct pt_flush *tok, const char *fn);
/* Record the obligation of a successful edit: kind (enum pt_flush_kind)
 * over npages 4 KiB pages from va (ONE_PAGE: the leaf's size / 4 KiB), on
 * the CPUs of set cpus (the mapper's; NULL: every CPU). */
void pt_flush_set(struct pt_flush *tok, const volatile mm_cpumask_t *cpus, int kind,
                  virt_addr_t va, uint64_t npages);
/* Keep a table frame just unlinked from the tree until tok's flush, then
 * free it to fa.  Its word 0 is overwritten.  One allocator per token. */
void pt_flush_defer_table(struct pt_flush *tok, struct frame_allocator *fa, phys_addr_t pa);
/* Keep the data frame of an unmapped page until tok's flush, then free it
 * to fa (its contents stay untouched).  At most one per token. */
void pt_flush_defer_data(struct pt_flush *tok, struct frame_allocator *fa, phys_addr_t pa);

#endif
