/*
 * mm/frameref.c - reference counts of user-mapped frames
 * (include/mm/frameref.h has the contracts and the cost).
 *
 * Algorithm.  A three-level radix tree over the page frame number, below a
 * static root: root (8 entries, 2 TiB each) -> top directory frame (512
 * entries, 4 GiB each) -> directory frame (512 entries, 8 MiB each) ->
 * leaf frame (2048 uint16 counts, one per 4 KiB frame).  A stored value v
 * means a count of v + 1; v = 0 (and a missing leaf) means 1, the count
 * of every frame mapped once, so only shared frames make the tree grow.
 * A pointer word is the next frame's physical address with, in its low
 * 12 bits, the number of that frame's non-zero children (at most 2048),
 * so the put that empties a frame frees it and clears the pointer, level
 * by level upwards.
 *
 * Invariants.  A pointer's population equals the non-zero words (counts)
 * of the frame it points at; a frame is linked iff its population is
 * non-zero, except between the allocation and the first increment inside
 * one get; frameref_frames counts the linked frames, and meta_fa is the
 * allocator they came from (NULL when the tree is empty).
 *
 * Locking: frameref_lock guards everything here (see the header for the
 * order).  Frames of the tree are reached through the direct map only,
 * never mapped anywhere else, so freeing one needs no TLB flush.
 */
#include <mm/frameref.h>
#include <mm/log.h>
#include <mm/spinlock.h>

#define LEAF_BITS   11u                         /* 2048 counts per leaf */
#define DIR_BITS    9u                          /* 512 pointers per directory */
#define ROOT_SLOTS  8u
#define POP_MASK    UINT64_C(0xfff)
#define COUNT_STORED_MAX 0xffffu                /* stored v: count v + 1 */
#define LEVELS      3u                          /* root slot, top dir, dir */

static mm_spinlock_t frameref_lock = MM_SPINLOCK_INIT;
static uint64_t root[ROOT_SLOTS];
static uint64_t frameref_frames;
static struct frame_allocator *meta_fa;

/* Index of pfn in the table at depth d (0: root, 1: top dir, 2: dir). */
static unsigned level_index(uint64_t pfn, unsigned d)
{
    unsigned shift = LEAF_BITS + (LEVELS - 1 - d) * DIR_BITS;
    return (unsigned)(pfn >> shift) & (d == 0 ? ROOT_SLOTS - 1 : (1u << DIR_BITS) - 1);
}

static uint64_t *ptr_table(uint64_t word)
{
    return (uint64_t *)pa_to_ptr(PA(word & ~POP_MASK));
}

static bool pa_ok(phys_addr_t pa)
{
    return is_aligned_u64(pa.raw, PAGE_SIZE) && pa.raw < MM_DIRECT_MAP_MAX_PA;
}

/*
 * Walk to the count of pfn, filling slot[0..2] with the pointer words on
 * the way.  NULL when a level is missing (its slot is the last filled).
 */
static uint16_t *walk_locked(uint64_t pfn, uint64_t *slot[LEVELS])
{
    MM_ASSERT_LOCKED(&frameref_lock);
    slot[0] = &root[level_index(pfn, 0)];
    for (unsigned d = 0; d < LEVELS; d++) {
        if ((*slot[d] & ~POP_MASK) == 0)
            return NULL;
        if (d + 1 < LEVELS)
            slot[d + 1] = ptr_table(*slot[d]) + level_index(pfn, d + 1);
    }
    return (uint16_t *)ptr_table(*slot[LEVELS - 1]) + (pfn & ((1u << LEAF_BITS) - 1));
}

/* Give a zeroed frame to each missing level of pfn's path: all or none
 * (the frames are linked with population 0; a failure unlinks them). */
static int build_path_locked(uint64_t pfn, struct frame_allocator *fa)
{
    MM_ASSERT_LOCKED(&frameref_lock);
    uint64_t *slot[LEVELS], *linked[LEVELS];
    unsigned n = 0;
    if (meta_fa == NULL)
        meta_fa = fa;
    while (walk_locked(pfn, slot) == NULL) {
        phys_addr_t fresh;
        if (frame_alloc(meta_fa, &fresh) != 0) {
            while (n > 0) {
                uint64_t *s = linked[--n];
                meta_fa->free(meta_fa, PA(*s & ~POP_MASK));
                *s = 0;
                frameref_frames--;
            }
            if (frameref_frames == 0)
                meta_fa = NULL;
            return -MM_ENOMEM;
        }
        __builtin_memset(pa_to_ptr(fresh), 0, PAGE_SIZE);
        unsigned d = 0;             /* the first missing level */
        while ((*slot[d] & ~POP_MASK) != 0)
            d++;
        *slot[d] = fresh.raw;
        linked[n++] = slot[d];
        frameref_frames++;
    }
    return 0;
}

/* Undo a path that build_path_locked made but no count uses (pop 0). */
static void prune_path_locked(uint64_t *slot[LEVELS])
{
    MM_ASSERT_LOCKED(&frameref_lock);
    for (unsigned d = LEVELS; d-- > 0;) {
        if ((*slot[d] & POP_MASK) != 0 || (*slot[d] & ~POP_MASK) == 0)
            return;
        meta_fa->free(meta_fa, PA(*slot[d] & ~POP_MASK));
        *slot[d] = 0;
        frameref_frames--;
        if (d > 0)
            *slot[d - 1] -= 1;      /* the child just went empty */
    }
    if (frameref_frames == 0)
        meta_fa = NULL;
}

int mm_frameref_get(phys_addr_t pa, struct frame_allocator *fa)
{
    if (!pa_ok(pa) || fa == NULL) {
        mm_printf("mm_frameref_get: pa %#lx (needs 4 KiB alignment, below %#lx), fa %p: "
                  "refused\n", (unsigned long)pa.raw, (unsigned long)MM_DIRECT_MAP_MAX_PA,
                  (void *)fa);
        return -MM_EINVAL;
    }
    uint64_t pfn = pa_to_pfn(pa), *slot[LEVELS];
    mm_spin_lock(&frameref_lock);
    uint16_t *c = walk_locked(pfn, slot);
    int err = 0;
    if (c != NULL && *c == COUNT_STORED_MAX)
        err = -MM_EBUSY;
    else if (c == NULL && (err = build_path_locked(pfn, fa)) == 0)
        c = walk_locked(pfn, slot);
    if (err == 0 && (*c)++ == 0) {
        /* A count left 0: each level whose population leaves 0 tells its parent. */
        for (unsigned d = LEVELS; d-- > 0;)
            if ((*slot[d])++ & POP_MASK)
                break;
    }
    mm_spin_unlock(&frameref_lock);
    return err;
}

uint32_t mm_frameref_put(phys_addr_t pa)
{
    uint64_t pfn = pa_to_pfn(pa), *slot[LEVELS];
    uint32_t left = 0;
    mm_spin_lock(&frameref_lock);
    uint16_t *c = pa_ok(pa) ? walk_locked(pfn, slot) : NULL;
    if (c != NULL && *c != 0) {
        left = *c;                  /* stored v -> v - 1, count v */
        if (--*c == 0) {
            slot[LEVELS - 1][0] -= 1;
            prune_path_locked(slot);
        }
    }
    mm_spin_unlock(&frameref_lock);
    return left;
}

uint32_t mm_frameref_count(phys_addr_t pa)
{
    uint64_t *slot[LEVELS];
    mm_spin_lock(&frameref_lock);
    uint16_t *c = pa_ok(pa) ? walk_locked(pa_to_pfn(pa), slot) : NULL;
    uint32_t n = (c ? *c : 0) + 1u;
    mm_spin_unlock(&frameref_lock);
    return n;
}

uint64_t mm_frameref_frames(void)
{
    return __atomic_load_n(&frameref_frames, __ATOMIC_RELAXED);
}

void mm_frameref_reset(void)
{
    mm_spin_lock(&frameref_lock);
    __builtin_memset(root, 0, sizeof root);
    frameref_frames = 0;
    meta_fa = NULL;
    mm_spin_unlock(&frameref_lock);
}
