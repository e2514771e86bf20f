/*
 * tlb_model.h - a model of the x86_64 translation caches for the host
 * tests and the fuzzers: several simulated CPUs, each with its own CR3, a
 * TLB of leaf translations and a paging-structure cache (PSC).
 *
 * What it models.  Each CPU caches
 *   - leaf translations: the page (4 KiB, 2 MiB or 1 GiB) around a va,
 *     its pa, the effective permissions of the walk (writable and user if
 *     every level allows it, NX if any level sets it), the leaf's caching
 *     bits and its global bit;
 *   - paging-structure entries: "the level-L table for the va prefix P is
 *     frame F", for L = 3 (PDPT), 2 (PD), 1 (PT), which later walks start
 *     from, stale or not, like hardware.
 * Entries are created only by walks: tlb_model_access (a load, store or
 * fetch on one CPU) and the speculative fills (tlb_model_fill_page,
 * tlb_model_fill_range), which stand for the hardware's right to walk
 * any mapped address at any time.  Not-present entries are never cached.
 * Each cache is small (TLB_MODEL_TLB_ENTRIES, TLB_MODEL_PSC_ENTRIES) and
 * evicts round-robin.  Entries leave only the way the hardware drops
 * them: invlpg (the leaf holding va and the PSC entries whose prefix
 * holds va; real CPUs drop more PSC entries, the model keeps the minimum
 * the mapper relies on), a CR3 load (every non-global leaf and the whole
 * PSC), a full flush, the CR4.PGE toggle (everything), and eviction.
 * Accessed/dirty bits are not written back into the tables.
 *
 * Where it is wired in.  arch_host.c sends arch_invlpg, arch_write_cr3
 * and arch_flush_tlb_all to the current simulated CPU (mm_platform_cpu_id,
 * i.e. harness_cpu_id) and arch_read_cr3 reads that CPU's CR3; the
 * harness's mm_platform_tlb_shootdown calls tlb_model_shootdown.  The
 * test frame allocators call tlb_model_frame_alloc/_free.  While the
 * model is off (before tlb_model_init, after tlb_model_fini) every hook
 * does nothing, so tests that do not use it (threaded ones included) see
 * no change.  The model itself is single-threaded.
 *
 * Checks.  Each violation calls tlb_model_violation_hook with a message
 * naming the va, the cpu and the frame (default: print it and count a
 * harness failure):
 *   (a) coherence: tlb_model_check, called after an operation has
 *       discharged all its tokens, and tlb_model_shootdown, after its
 *       flush (for the flushed range): no CPU may hold a TLB or PSC entry
 *       that a fresh walk of its current tables no longer gives.  A leaf
 *       that maps less than the tables allow (fewer permissions, not
 *       global) is not stale: it can only fault, and the fault drops it;
 *   (b) tlb_model_frame_free: a frame must not go back to an allocator
 *       while any CPU holds it as a leaf's page, as a PSC table or as
 *       its CR3;
 *   (c) tlb_model_access: an access through a stale TLB entry, or a walk
 *       through a stale PSC entry, must not reach a freed frame.  The
 *       shootdown hook makes each target CPU access its cached pages in
 *       the range before it flushes, as a CPU still running would.
 * Frames the allocators never report are neither free nor checked, so
 * data addresses given to pt_map_phys should lie outside the allocator's
 * frames (a leaf over a table frame would otherwise be reported in (b)).
 */
#ifndef HOST_TLB_MODEL_H
#define HOST_TLB_MODEL_H

#include <stdbool.h>
#include <mm/types.h>

#define TLB_MODEL_MAX_CPUS    8
#define TLB_MODEL_TLB_ENTRIES 64
#define TLB_MODEL_PSC_ENTRIES 16
/* Leaves tlb_model_fill_range caches per CPU from each end of a range. */
#define TLB_MODEL_FILL_LEAVES 16

/* Access kinds for tlb_model_access (combine with |). */
#define TLB_ACCESS_READ  0u
#define TLB_ACCESS_WRITE 1u
#define TLB_ACCESS_USER  2u         /* from user mode (CPL 3) */
#define TLB_ACCESS_EXEC  4u         /* instruction fetch */

/* Results of tlb_model_access. */
enum tlb_model_result {
    TLB_OK = 0,
    TLB_FAULT_NOT_PRESENT,
    TLB_FAULT_WRITE,            /* write to read-only (CR0.WP is set) */
    TLB_FAULT_USER,             /* user access to a supervisor page */
    TLB_FAULT_NX,               /* fetch from a no-execute page */
    TLB_FAULT_FREED,            /* reached a freed frame: reported as (c) */
};

/* Turn the model on with ncpus (1..TLB_MODEL_MAX_CPUS) CPUs, every one
 * with empty caches and cr3 loaded (0: none), and forget all freed
 * frames.  Call after sim_mem_init: frames are tracked up to its size. */
void tlb_model_init(unsigned ncpus, phys_addr_t cr3);
/* Turn it off: every CPU drops its caches and its CR3. */
void tlb_model_fini(void);
bool tlb_model_active(void);
unsigned tlb_model_ncpus(void);

/* One access on cpu: a TLB hit is used as it is (stale or not), else a
 * walk from the PSC or CR3 fills both caches.  TLB_OK or the fault. */
enum tlb_model_result tlb_model_access(unsigned cpu, virt_addr_t va, unsigned how);
/* Speculative fills: cache what a walk for va gives on cpu (nothing if
 * not present); every CPU caches the first and last
 * TLB_MODEL_FILL_LEAVES leaves of [va, va + size). */
void tlb_model_fill_page(unsigned cpu, virt_addr_t va);
void tlb_model_fill_range(virt_addr_t va, uint64_t size);

/* What the hardware does on cpu (arch_host.c calls these for the
 * current CPU; tests may call them for any). */
void tlb_model_invlpg(unsigned cpu, virt_addr_t va);
void tlb_model_load_cr3(unsigned cpu, phys_addr_t cr3);
void tlb_model_flush_all(unsigned cpu);
phys_addr_t tlb_model_cr3(unsigned cpu);

/* The shootdown hook's work: on every CPU in targets (bit n: CPU n;
 * MM_CPUMASK_ALL: all) but the current one, access the cached pages of
 * the range, then flush it (npages 4 KiB pages from va, 0: everything,
 * global entries included); then check (a) on those CPUs for the range.
 * CPUs outside targets keep their entries and are not checked here. */
void tlb_model_shootdown(uint64_t targets, virt_addr_t va, uint64_t npages);

/* Check (a) over everything; `where` names the caller in messages.
 * Returns the number of stale entries found. */
unsigned tlb_model_check(const char *where);

/* Frame allocator hooks: a frame handed out, a frame given back (b). */
void tlb_model_frame_alloc(phys_addr_t pa);
void tlb_model_frame_free(phys_addr_t pa);

/* Entries cpu holds in one of its caches (for the model's own tests). */
enum tlb_model_cache { TLB_MODEL_TLB, TLB_MODEL_PSC };
unsigned tlb_model_entries(enum tlb_model_cache cache, unsigned cpu);
/* Does cpu's TLB hold a leaf for va, and which pa does it give? */
bool tlb_model_lookup(unsigned cpu, virt_addr_t va, phys_addr_t *pa_out);

/* Violations so far, the last message, and the hook each one calls
 * (NULL: print to stderr and count a harness failure). */
extern unsigned long tlb_model_violations;
extern char tlb_model_last_violation[256];
extern void (*tlb_model_violation_hook)(const char *msg);

#endif
