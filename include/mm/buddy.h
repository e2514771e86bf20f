/*
 * mm/buddy.h - the buddy frame allocator (4 KiB .. 1 GiB blocks).
 *
 * Owns all physical RAM that the boot-time bump allocator did not use.  A
 * block of order k is 2^k contiguous frames, aligned to 2^k frames.  Single
 * frames go through the calling CPU's cache (interrupts off, no lock);
 * whole 1 GiB blocks through the lock-free top tier (one atomic
 * compare-and-swap); everything else takes the allocator's interrupt-safe
 * spinlock, so one instance can be shared by all CPUs and by interrupt
 * handlers.
 *
 * Counting convention: "total" is the number of frames handed to the
 * buddy minus the frames it keeps for its own metadata (bitmaps, list
 * blocks, back-indexes, frame states and the per-CPU caches, carved out at
 * init).  free + used == total at every moment; free includes the frames
 * sitting in per-CPU caches (struct buddy_usage).
 *
 * See mm/buddy.c for the algorithm and the invariants.
 */
#ifndef MM_BUDDY_H
#define MM_BUDDY_H

#include <mm/frame.h>
#include <mm/memmap.h>
#include <mm/spinlock.h>
#include <mm/types.h>

#define BUDDY_MAX_ORDER   18                       /* 2^18 frames = 1 GiB */
#define BUDDY_NR_ORDERS   (BUDDY_MAX_ORDER + 1)
#define BUDDY_MAX_NPAGES  (UINT64_C(1) << BUDDY_MAX_ORDER)
/* Orders 0..17 have free lists and bitmaps; 1 GiB blocks (order 18) live
 * in the lock-free top tier instead (mm/buddy_top.c). */
#define BUDDY_NR_LIST_ORDERS  BUDDY_MAX_ORDER

/*
 * Per-CPU caches of single frames (mm/buddy_pcp.c).  Each CPU id
 * 0 .. MM_MAX_CPUS-1 owns a stack of up to BUDDY_PCP_CAP order-0 frames;
 * buddy_alloc and buddy_free of one frame use it with interrupts off and
 * no lock; under the lock, an empty stack is refilled to BUDDY_PCP_CAP
 * frames and a full one gives back its BUDDY_PCP_BATCH oldest.
 */
#define BUDDY_PCP_CAP     64
#define BUDDY_PCP_BATCH   32
#define BUDDY_CACHE_LINE  64

/*
 * Usage in 4 KiB pages.  free + used == total.  free counts every frame a
 * buddy_alloc can still hand out: those in the free lists and those in a
 * per-CPU cache; cached_npages says how many of them are cached, so the
 * free lists hold free - cached (free - cached + cached + used == total).
 */
struct buddy_usage {
    uint64_t total_npages;   /* managed frames, metadata excluded */
    uint64_t used_npages;    /* frames currently allocated to callers */
    uint64_t free_npages;    /* frames in the free lists or a per-CPU cache */
    uint64_t cached_npages;  /* of free_npages: frames in per-CPU caches */
    uint64_t meta_npages;    /* frames kept for bitmaps, list blocks, caches */
};

struct buddy_pcp;

/*
 * Free-list zones.  A block is high iff its physical address is at or
 * above 4 GiB (blocks never straddle 4 GiB: it is 1 GiB aligned and no
 * block is larger); ordinary requests take high blocks while there are
 * any, so memory below 4 GiB stays for devices (buddy_alloc_below).
 */
enum { BUDDY_HIGH = 0, BUDDY_LOW = 1, BUDDY_NR_ZONES = 2 };
#define BUDDY_LOW_LIMIT   (UINT64_C(1) << 32)      /* first high physical address */

/* One free list: its top list block and how many blocks it holds. */
struct buddy_list_head {
    phys_addr_t top;                    /* partly filled top list block, all ones = empty */
    uint64_t nfree;                     /* blocks listed */
};

/*
 * The allocator state.  Treat as opaque; it is public only so callers can
 * embed it statically.  It is cache-line aligned: the first line holds the
 * geometry, set by buddy_init and read-only afterwards (the per-CPU fast
 * paths read it without the lock); `lock` starts the next line, and every
 * field from there on, and the memory the bitmaps and list blocks live in,
 * is protected by it.  Two adjacent instances never share a line.
 */
struct buddy {
    /* ---- read-only after buddy_init */
    uint64_t base_pfn;                  /* 1 GiB-aligned frame at or below the first range */
    uint64_t span_npages;               /* base_pfn .. end of the last range */
    uint8_t *frame_state;               /* one byte per frame of the span, see mm/buddy_pcp.c */
    uint32_t *slot_of;                  /* back-index per frame pair, see "Free lists" */
    struct buddy_pcp *pcp;              /* MM_MAX_CPUS per-CPU caches */
    uint64_t *chunk_ready_bits;         /* per 1 GiB chunk: its low-order bits are valid */
    uint64_t high_rel;                  /* first relative frame at or above 4 GiB (<= span) */
    uint64_t *top_state;                /* the top tier: 2 bits per 1 GiB chunk, changed
                                         * only by atomic operations (mm/buddy_top.c) */
    bool ready;

    /* ---- protected by lock */
    _Alignas(BUDDY_CACHE_LINE) mm_spinlock_t lock;
    struct frame_allocator fa;          /* adapter, see buddy_frame_allocator */

    /* Per order: one bit per block of that order over the span.  Orders
     * 0..12 are zeroed lazily per 1 GiB chunk (see mm/buddy.c).  Order 0
     * has no alloc bits: frame_state says which frames are allocated. */
    uint64_t *free_bits[BUDDY_NR_LIST_ORDERS];   /* block is in the free lists */
    uint64_t *alloc_bits[BUDDY_NR_LIST_ORDERS];  /* block was handed out whole */

    /* Two free lists per order: BUDDY_HIGH for blocks at or above 4 GiB
     * (served first), BUDDY_LOW for blocks below (kept for devices).  The
     * masks of a zone: bit k set if its list of order k may be non-empty
     * (set whenever it is; see first_nonempty in mm/buddy_impl.h) / iff it
     * keeps back-indexes.  They come first: every alloc reads them. */
    uint32_t nonempty_mask[BUDDY_NR_ZONES];
    uint32_t indexed_mask[BUDDY_NR_ZONES];
    struct buddy_list_head list[BUDDY_NR_ZONES][BUDDY_NR_LIST_ORDERS];

    /* Reserved list blocks (2 KiB, two per frame): a bump index plus a
     * stack of returned blocks. */
    phys_addr_t list_pool_base;         /* first reserved list block (frame-aligned) */
    uint64_t list_pool_nblocks;         /* how many were reserved */
    uint64_t list_pool_next;            /* blocks [0, next) have been used once */
    phys_addr_t list_pool_free;         /* stack of empty blocks, all ones = none */
    uint64_t list_blocks_in_use;

    phys_addr_t meta_start, meta_end;   /* the carved metadata range */
    uint64_t total_npages;              /* managed frames, metadata excluded */

    struct mm_area_list ranges;         /* managed ranges (for foreign frees) */
#ifdef MM_STEP_COUNT
    uint64_t steps;                     /* work done, see buddy_steps() */
#endif
};

/*
 * Take ownership of the frames in free_ranges, a non-empty list that
 * passes mm_area_list_check (sorted, disjoint, NON-adjacent: merge
 * touching areas first, page-aligned; see mm/memmap.h).  The metadata is
 * carved from the end of the smallest area that can hold it; everything
 * else is seeded as the largest aligned blocks.  Cost O(areas * orders +
 * span / 1 GiB), plus zeroing the small-block bitmaps of the 1 GiB chunks
 * that get blocks below 1 GiB (typically those at area edges); never
 * O(frames).  Returns 0; or, with one log line and *b left as it was:
 * -MM_EINVAL for a malformed or empty list or a span over 16 TiB,
 * -MM_ENOMEM if no single area can hold the metadata.  Metadata: about
 * span / 8 KiB of bitmaps, 3 bytes per frame of the span (one state byte
 * per frame, one 32-bit back-index per frame pair), one 2 KiB list block
 * per 1016 managed frames plus 36 KiB (72 KiB for a span on both sides
 * of 4 GiB), the top tier's 2 bits per GiB, and MM_MAX_CPUS caches of
 * 320 bytes (20 KiB), rounded up to
 * whole frames: about 0.13% of RAM.
 */
int buddy_init(struct buddy *b, const struct mm_area_list *free_ranges);

/*
 * Allocate npages contiguous frames aligned to npages * 4 KiB, from
 * memory at or above 4 GiB while any block there is large enough (then
 * below 4 GiB), so low memory stays for buddy_alloc_below.
 * npages must be a power of two in 1 .. BUDDY_MAX_NPAGES.  npages == 1 is
 * served from the calling CPU's cache (refilled by a batch under the lock
 * when empty); npages == BUDDY_MAX_NPAGES (1 GiB) from the top tier
 * without the lock (the lowest free 1 GiB block of the high zone, else of
 * the low one: one 64-bit state word read per 32 GiB of each zone, the
 * word where the zones meet twice).  A request that finds no
 * block drains the calling CPU's cache into the lists and tries once more.
 * Returns 0 and sets *pa_out, -MM_EINVAL for a bad count (logged), or
 * -MM_ENOMEM when no block is large enough (not logged, state unchanged).
 * Frames cached on other CPUs are not reached: with free memory almost
 * gone, buddy_drain_all (or buddy_drain_cpu on each CPU) gives them back.
 */
int buddy_alloc(struct buddy *b, uint64_t npages, phys_addr_t *pa_out);

/*
 * Allocate npages contiguous frames aligned to npages * 4 KiB, lying
 * entirely below physical address `limit` (exclusive: pa + npages * 4 KiB
 * <= limit), for devices that cannot address more.  limit must be a
 * power of two, at least npages * 4 KiB (16 MiB, 4 GiB, any).  Never takes
 * the calling CPU's cache path (a single frame comes from the lists);
 * drains the calling CPU's cache once before giving up, like buddy_alloc.
 * Cost independent of the number of free blocks: O(orders) when limit is
 * 4 GiB or above the span, otherwise a bitmap scan of at most
 * F / 2^(order+5) + BUDDY_NR_ORDERS words for a range of F frames below
 * limit (mm/buddy_dma.c).  The block is freed with buddy_free.
 * Returns 0 and sets *pa_out; -MM_EINVAL (logged) for a bad count or
 * limit; -MM_ENOMEM (not logged, state unchanged) when no free block of
 * that size lies below limit.
 */
int buddy_alloc_below(struct buddy *b, uint64_t npages, phys_addr_t limit, phys_addr_t *pa_out);

/*
 * Return a block obtained from buddy_alloc (or buddy_alloc_below) with the same npages.
 * Returns 0; or, with one log line and no state change:
 * -MM_EINVAL (bad count or pa not aligned to npages frames),
 * -MM_EFAULT (pa outside the managed ranges),
 * -MM_ENOENT (not an allocated block of that size: double free, partial
 * free, wrong size; a frame sitting in any CPU's cache is not allocated).
 * npages == 1 goes to the calling CPU's cache (a full cache first gives
 * BUDDY_PCP_BATCH frames back under the lock).  Two frees of the same
 * frame racing on two CPUs at the same moment (a caller bug with no
 * order between them) may both pass; any free ordered after the first is
 * refused.  npages == BUDDY_MAX_NPAGES (1 GiB) takes no lock: one atomic
 * compare-and-swap of the block's state, so of two racing frees of one
 * 1 GiB block exactly one passes.
 */
int buddy_free(struct buddy *b, phys_addr_t pa, uint64_t npages);

/*
 * Fill *u.  The per-CPU cache counts are read without stopping their
 * CPUs: exact while no other CPU allocates or frees frames of b, otherwise
 * each count is of a moment during the call.
 */
void buddy_usage(struct buddy *b, struct buddy_usage *u);

/*
 * Give every frame in CPU cpu's cache back to the free lists (merging).
 * cpu must be the calling CPU, or a CPU that runs no buddy call on b
 * during this one (stopped, idle, or a host thread already joined): the
 * caches have no lock.  Returns the number of frames given back, or
 * -MM_EINVAL (logged) for cpu >= MM_MAX_CPUS.
 */
int64_t buddy_drain_cpu(struct buddy *b, unsigned cpu);

/* buddy_drain_cpu for every CPU, with the same condition on each; returns
 * the number of frames given back. */
uint64_t buddy_drain_all(struct buddy *b);

/* Number of free blocks of each order (like /proc/buddyinfo): the free
 * lists of orders 0..17 and the free 1 GiB blocks of the top tier; frames
 * in per-CPU caches are not counted.  buddy_free_blocks_zone counts only
 * the blocks of zone z (BUDDY_HIGH or BUDDY_LOW); other z: all zeros. */
void buddy_free_blocks(struct buddy *b, uint64_t counts[BUDDY_NR_ORDERS]);
void buddy_free_blocks_zone(struct buddy *b, unsigned z, uint64_t counts[BUDDY_NR_ORDERS]);

/* Print one line: free block counts per order and the usage. */
void buddy_dump(struct buddy *b);

/*
 * Walk every free list, bitmap and per-CPU cache and verify all
 * invariants; panics with the values on the first inconsistency.
 * O(free blocks + bitmap size + frames of the touched GiB chunks): for
 * tests and debugging only.  The caches of other CPUs are read as they
 * are: call it while no other CPU uses b.
 */
void buddy_check(struct buddy *b);

/* A one-frame allocator view of b, for the page-table mapper. */
struct frame_allocator *buddy_frame_allocator(struct buddy *b);

#ifdef MM_STEP_COUNT
/*
 * Steps taken by buddy_init, buddy_alloc and buddy_free on b so far: order
 * searches, split and merge loop iterations, and list blocks touched (read
 * or written; a reserve block taken or put back counts once more).  A cost
 * meter for host tests that bound the work per operation without timing
 * it: the difference around one call is that call's cost.  Compiled only
 * with -DMM_STEP_COUNT (the host tests' flags); the kernel build, the
 * benchmarks and libmm.a have neither the counter nor this function.
 */
uint64_t buddy_steps(struct buddy *b);
#endif

#endif
