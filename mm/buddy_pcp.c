/*
 * mm/buddy_pcp.c - per-CPU caches of single frames in front of the buddy
 * allocator's lock.
 *
 * Algorithm.  Each CPU id (mm_platform_cpu_id(), below MM_MAX_CPUS) owns a
 * stack of up to BUDDY_PCP_CAP order-0 frames in b->pcp[cpu].  buddy_alloc
 * and buddy_free of one frame pop and push it with interrupts off on that
 * CPU and no lock and no atomic read-modify-write: nothing but the owner
 * touches its stack.  An empty stack is refilled with BUDDY_PCP_CAP frames
 * under b->lock, taken as whole free blocks of up to that many frames
 * (from the high zone while it has any, else the low one, as buddy_alloc;
 * smallest first, so loose frames are used before larger blocks are
 * split); a full one gives its BUDDY_PCP_BATCH oldest frames back under
 * the lock, merging them like any free.  To the free lists a cached frame
 * is an allocated one.
 *
 * Frame states.  Double and foreign frees must be refused for cached
 * frames too, without the lock.  b->frame_state holds one byte per frame
 * (mm/buddy_impl.h): BUDDY_FS_ALLOC while a caller holds the frame,
 * BUDDY_FS_CACHED | cpu while it sits in that CPU's cache, BUDDY_FS_NONE
 * otherwise.  A byte store never disturbs the neighbouring bytes, so a CPU
 * checks and sets the byte of the frame it frees with a plain load and
 * store while other CPUs write the bytes of other frames: a bitmap word
 * would need an atomic read-modify-write, as one word is shared by 64
 * frames that may belong to 64 CPUs.  So buddy_free(pa, 1) accepts a frame
 * only in state ALLOC: a frame freed on CPU A and then again on CPU B reads
 * CACHED | A on B and is refused; one already drained to the lists reads
 * NONE.  A byte is meaningful only once its 1 GiB chunk is ready (zeroed
 * lazily, see "Lazy bitmaps" in mm/buddy.c); the lock-free path checks
 * that first with an acquire load, matching the release store that
 * publishes a chunk.  Two frees of one frame with no order between them
 * (racing on two CPUs in the same instant) can both read ALLOC: telling
 * them apart would take the read-modify-write this design avoids.
 *
 * Accounting.  The free lists' frames are counted per list (nfree, see
 * lists_free_npages); each cache's count is written by its owner (relaxed
 * atomic stores) and summed by buddy_usage: free = lists + caches, so free + used == total holds with
 * the cached frames in free, and buddy_check verifies every cached frame.
 *
 * Metadata, carved at buddy_init with the rest: MM_MAX_CPUS caches of 320
 * bytes (one count and BUDDY_PCP_CAP 32-bit frame numbers, cache-line
 * aligned, so no two CPUs share a line), and the frame-state bytes, one
 * per frame of the span.
 *
 * The frame-allocator adapter (buddy_frame_allocator, for the page-table
 * mapper) lives here too: it hands out single frames.
 *
 * Locking.  A cache is touched only by its CPU with interrupts off (so an
 * interrupt handler on that CPU cannot see it half-updated), except by
 * buddy_drain_cpu for a CPU that is not using b, and by readers of its
 * count (buddy_usage, buddy_check).  Refill and drain take b->lock with
 * interrupts already off.
 */
#include "buddy_impl.h"

/* The calling CPU; a platform id past MM_MAX_CPUS is a broken hook. */
static unsigned this_cpu(void)
{
    unsigned cpu = mm_platform_cpu_id();
    if (cpu >= MM_MAX_CPUS)
        mm_panic("buddy: mm_platform_cpu_id() = %u, not below MM_MAX_CPUS %u",
                 cpu, (unsigned)MM_MAX_CPUS);
    return cpu;
}

static uint32_t pcp_count(const struct buddy_pcp *p)
{
    return __atomic_load_n(&p->count, __ATOMIC_RELAXED);
}

static void pcp_set_count(struct buddy_pcp *p, uint32_t n)
{
    __atomic_store_n(&p->count, n, __ATOMIC_RELAXED);
}

/* Give entries [0, n) of cpu's cache back to the free lists. */
static void give_back_locked(struct buddy *b, unsigned cpu, struct buddy_pcp *p, uint32_t n)
{
    MM_ASSERT_LOCKED(&b->lock);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t rel = p->entry[i];
        if (rel >= b->span_npages || fs_get(b, rel) != (BUDDY_FS_CACHED | cpu))
            mm_panic("buddy: CPU %u cache entry %u: rel %#lx state 0x%x, want 0x%x",
                     cpu, i, (unsigned long)rel,
                     rel < b->span_npages ? fs_get(b, rel) : 0u, BUDDY_FS_CACHED | cpu);
        fs_set(b, rel, BUDDY_FS_NONE);
        buddy_free_merge_locked(b, 0, rel);
    }
}

/* Fill cpu's empty cache with whole free blocks of one zone, smallest
 * first; returns the frames it got (0: no free frame at all). */
__attribute__((noinline))
static uint32_t pcp_refill(struct buddy *b, unsigned cpu, struct buddy_pcp *p)
{
    uint32_t n = 0;
    mm_spin_lock(&b->lock);                 /* interrupts are off */
    /* One zone per refill: high while it has a frame, so that the cache
     * never hands out a low frame while it holds a high one. */
    for (unsigned z = BUDDY_HIGH; n == 0 && z < BUDDY_NR_ZONES; z++) {
        while (n < BUDDY_PCP_CAP) {
            unsigned room = 31u - (unsigned)__builtin_clz(BUDDY_PCP_CAP - n);
            /* The smallest listed block, or (none listed: BUDDY_NR_ORDERS)
             * a chunk of the top tier, split down to what still fits. */
            unsigned listed = first_nonempty(b, z, 0);
            unsigned order = listed > room ? room : listed;
            uint64_t rel;
            if (buddy_alloc_zone_locked(b, z, order, &rel)) {
                if (listed != BUDDY_NR_ORDERS)
                    mm_panic("buddy: refill of CPU %u: order %u zone %u listed but missing, "
                             "mask 0x%x", cpu, listed, z, b->nonempty_mask[z]);
                break;                      /* zone z has no free frame */
            }
            for (uint64_t i = UINT64_C(1) << order; i-- > 0;) {
                fs_set(b, rel + i, BUDDY_FS_CACHED | cpu);
                p->entry[n++] = (uint32_t)(rel + i);  /* lowest frame on top */
            }
        }
    }
    mm_spin_unlock(&b->lock);
    return n;
}

/* cpu's cache is full: give its BUDDY_PCP_BATCH oldest frames back. */
__attribute__((noinline))
static uint32_t pcp_spill(struct buddy *b, unsigned cpu, struct buddy_pcp *p)
{
    mm_spin_lock(&b->lock);                 /* interrupts are off */
    give_back_locked(b, cpu, p, BUDDY_PCP_BATCH);
    mm_spin_unlock(&b->lock);
    for (uint32_t i = BUDDY_PCP_BATCH; i < BUDDY_PCP_CAP; i++)
        p->entry[i - BUDDY_PCP_BATCH] = p->entry[i];
    return BUDDY_PCP_CAP - BUDDY_PCP_BATCH;
}

int buddy_pcp_alloc(struct buddy *b, phys_addr_t *pa_out)
{
    unsigned long flags = mm_platform_irq_save();
    unsigned cpu = this_cpu();
    struct buddy_pcp *p = &b->pcp[cpu];
    uint32_t n = pcp_count(p);
    if (__builtin_expect(n == 0, 0) && (n = pcp_refill(b, cpu, p)) == 0) {
        mm_platform_irq_restore(flags);
        return -MM_ENOMEM;
    }
    uint64_t rel = p->entry[n - 1];
    if (__builtin_expect(fs_get(b, rel) != (BUDDY_FS_CACHED | cpu), 0))
        mm_panic("buddy_alloc: CPU %u cached frame rel %#lx has state 0x%x",
                 cpu, (unsigned long)rel, fs_get(b, rel));
    fs_set(b, rel, BUDDY_FS_ALLOC);
    pcp_set_count(p, n - 1);
    mm_platform_irq_restore(flags);
    *pa_out = rel_to_pa(b, rel);
    return 0;
}

int buddy_pcp_free(struct buddy *b, phys_addr_t pa, uint64_t rel)
{
    unsigned long flags = mm_platform_irq_save();
    unsigned cpu = this_cpu();
    if (__builtin_expect(!chunk_ready_acquire(b, rel) || fs_get(b, rel) != BUDDY_FS_ALLOC, 0)) {
        mm_platform_irq_restore(flags);
        return buddy_free_refusal(b, pa, 1, rel);
    }
    if (rel < b->high_rel && b->high_rel < b->span_npages) {
        /* A low frame, and there is memory above 4 GiB: straight back to
         * the low lists, or the cache would hand it to the next ordinary
         * request while high memory is free (it stays for devices). */
        mm_spin_lock(&b->lock);
        fs_set(b, rel, BUDDY_FS_NONE);
        buddy_free_merge_locked(b, 0, rel);
        mm_spin_unlock(&b->lock);
        mm_platform_irq_restore(flags);
        return 0;
    }
    struct buddy_pcp *p = &b->pcp[cpu];
    uint32_t n = pcp_count(p);
    if (__builtin_expect(n == BUDDY_PCP_CAP, 0))
        n = pcp_spill(b, cpu, p);
    fs_set(b, rel, BUDDY_FS_CACHED | cpu);
    p->entry[n] = (uint32_t)rel;
    pcp_set_count(p, n + 1);
    mm_platform_irq_restore(flags);
    return 0;
}

uint64_t buddy_pcp_drain_locked(struct buddy *b, unsigned cpu)
{
    MM_ASSERT_LOCKED(&b->lock);
    struct buddy_pcp *p = &b->pcp[cpu];
    uint32_t n = pcp_count(p);
    give_back_locked(b, cpu, p, n);
    pcp_set_count(p, 0);
    return n;
}

uint64_t buddy_pcp_cached(const struct buddy *b)
{
    uint64_t n = 0;
    for (unsigned cpu = 0; cpu < MM_MAX_CPUS; cpu++)
        n += pcp_count(&b->pcp[cpu]);
    return n;
}

int buddy_fa_alloc(struct frame_allocator *fa, phys_addr_t *pa_out)
{
    struct buddy *b = (struct buddy *)((char *)fa - offsetof(struct buddy, fa));
    return buddy_alloc(b, 1, pa_out);
}

void buddy_fa_free(struct frame_allocator *fa, phys_addr_t pa)
{
    struct buddy *b = (struct buddy *)((char *)fa - offsetof(struct buddy, fa));
    (void)buddy_free(b, pa, 1);      /* a bad free is logged by buddy_free */
}

struct frame_allocator *buddy_frame_allocator(struct buddy *b)
{
    return &b->fa;
}

int64_t buddy_drain_cpu(struct buddy *b, unsigned cpu)
{
    if (cpu >= MM_MAX_CPUS) {
        mm_printf("buddy_drain_cpu: cpu %u not below MM_MAX_CPUS %u\n", cpu,
                  (unsigned)MM_MAX_CPUS);
        return -MM_EINVAL;
    }
    MM_BUG_ON(!b->ready);
    unsigned long flags = mm_spin_lock_irqsave(&b->lock);
    uint64_t n = buddy_pcp_drain_locked(b, cpu);
    mm_spin_unlock_irqrestore(&b->lock, flags);
    return (int64_t)n;
}

uint64_t buddy_drain_all(struct buddy *b)
{
    uint64_t n = 0;
    for (unsigned cpu = 0; cpu < MM_MAX_CPUS; cpu++)
        n += (uint64_t)buddy_drain_cpu(b, cpu);
    return n;
}
