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
 * Batches.  mm_frameref_get_entries counts the frames of a run of
 * page-table entries (a clone's level-1 table) under one acquisition of
 * the lock, walking the tree only when the frame number leaves the 8 MiB
 * block of the previous one (frames of one table are mostly in a few
 * blocks) and adding each leaf's population change once per run of the
 * block; a refusal puts back the counts of the batch, so a batch is all
 * or nothing as a single get.
 *
 * Locking: frameref_lock guards everything here (see the header for the
 * order).  Frames of the tree are reached through the direct map only,
 * never mapped anywhere else, so freeing one needs no TLB flush.
 */
#include <mm/frameref.h>
#include <mm/log.h>
#include <mm/paging.h>
#include <mm/spinlock.h>

#define LEAF_BITS   11u                         /* 2048 counts per leaf */
#define DIR_BITS    9u                          /* 512 pointers per directory */
#define ROOT_SLOTS  8u
#define POP_MASK    UINT64_C(0xfff)
#define COUNT_STORED_MAX 0xffffu                /* stored v: count v + 1 */
#define LEVELS      3u                          /* root slot, top dir, dir */
#define LEAF_MASK   ((UINT64_C(1) << LEAF_BITS) - 1)
/* The address bits of an entry that name its 8 MiB block. */
#define BLOCK_MASK  (PTE_ADDR_MASK & ~((LEAF_MASK << PAGE_SHIFT) | (PAGE_SIZE - 1)))

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
    return (uint16_t *)ptr_table(*slot[LEVELS - 1]) + (pfn & LEAF_MASK);
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

/* `added` counts of the leaf under slot[LEVELS - 1] left 0: add them to
 * its population, and each level whose population leaves 0 tells its parent. */
static void add_population_locked(uint64_t *slot[LEVELS], uint64_t added)
{
    MM_ASSERT_LOCKED(&frameref_lock);
    if (added == 0)
        return;
    bool was_empty = (*slot[LEVELS - 1] & POP_MASK) == 0;
    *slot[LEVELS - 1] += added;
    for (unsigned d = LEVELS - 1; was_empty && d-- > 0;)
        was_empty = ((*slot[d])++ & POP_MASK) == 0;
}

/* The counts of pfn's 8 MiB block (building its path when missing), with
 * slot[] filled; NULL when no metadata frame is left (nothing changed). */
static uint16_t *leaf_locked(uint64_t pfn, uint64_t *slot[LEVELS], struct frame_allocator *fa)
{
    MM_ASSERT_LOCKED(&frameref_lock);
    uint16_t *c = walk_locked(pfn, slot);
    if (c == NULL && build_path_locked(pfn, fa) == 0)
        c = walk_locked(pfn, slot);
    return c == NULL ? NULL : c - (pfn & LEAF_MASK);
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
    uint16_t *leaf = leaf_locked(pfn, slot, fa);
    int err = leaf == NULL ? -MM_ENOMEM : 0;
    if (leaf != NULL && leaf[pfn & LEAF_MASK] == COUNT_STORED_MAX)
        err = -MM_EBUSY;
    else if (leaf != NULL)
        add_population_locked(slot, leaf[pfn & LEAF_MASK]++ == 0);
    mm_spin_unlock(&frameref_lock);
    return err;
}

/* One count fewer for pfn; the count left (0: the last one went). */
static uint32_t put_locked(uint64_t pfn)
{
    MM_ASSERT_LOCKED(&frameref_lock);
    uint64_t *slot[LEVELS];
    uint16_t *c = walk_locked(pfn, slot);
    if (c == NULL || *c == 0)
        return 0;
    uint32_t left = *c;             /* stored v -> v - 1, count v */
    if (--*c == 0) {
        slot[LEVELS - 1][0] -= 1;
        prune_path_locked(slot);
    }
    return left;
}

uint32_t mm_frameref_put(phys_addr_t pa)
{
    mm_spin_lock(&frameref_lock);
    uint32_t left = pa_ok(pa) ? put_locked(pa_to_pfn(pa)) : 0;
    mm_spin_unlock(&frameref_lock);
    return left;
}

/* Selected entries: all bits of sel set; their frame: the address bits. */
static bool selected(uint64_t e, uint64_t sel)
{
    return (e & sel) == sel;
}

/* A batch of gets moves to the 8 MiB block of entry e: settle the
 * population of the previous block (leaf, `added` counts that left 0;
 * leaf NULL before the first), then find or build the new leaf, with its
 * path in slot[].  NULL with *err -MM_EINVAL (a frame above the direct
 * map) or -MM_ENOMEM. */
static uint16_t *batch_move_locked(uint64_t *slot[LEVELS], uint16_t *leaf, uint64_t added,
                                   uint64_t e, struct frame_allocator *fa, int *err)
{
    MM_ASSERT_LOCKED(&frameref_lock);
    if (leaf != NULL)
        add_population_locked(slot, added);
    *err = -MM_EINVAL;
    if (!pa_ok(PA(e & PTE_ADDR_MASK)))
        return NULL;
    uint16_t *fresh = leaf_locked((e & PTE_ADDR_MASK) >> PAGE_SHIFT, slot, fa);
    *err = fresh == NULL ? -MM_ENOMEM : 0;
    return fresh;
}

/* The body of mm_frameref_get_entries: counts added (*done: entries
 * looked at), or a negative error with entry[*done] refused; the counts
 * of entry[0 .. *done - 1] stay for the caller to put back.  The loop
 * keeps its state in locals (the compiler holds them in registers). */
static int64_t get_entries_locked(const uint64_t *entry, unsigned n, uint64_t sel,
                                  struct frame_allocator *fa, unsigned *done)
{
    MM_ASSERT_LOCKED(&frameref_lock);
    uint64_t *slot[LEVELS], block = 0, added = 0;
    uint16_t *leaf = NULL;
    int64_t got = 0;
    int err = 0;
    unsigned i;
    for (i = 0; i < n; i++) {
        uint64_t e = __atomic_load_n(&entry[i], __ATOMIC_RELAXED);
        if (!selected(e, sel))
            continue;
        /* block starts at 0, without the bits of sel, so the first
         * selected entry always moves; after that leaf is set. */
        if (((e ^ block) & (BLOCK_MASK | sel)) != 0) {
            leaf = batch_move_locked(slot, leaf, added, e, fa, &err);
            if (leaf == NULL)
                break;
            added = 0;
            block = e;
        }
        uint16_t *c = leaf + ((e >> PAGE_SHIFT) & LEAF_MASK);
        if (*c == COUNT_STORED_MAX) {
            err = -MM_EBUSY;
            break;
        }
        added += *c == 0;
        *c += 1;
        got++;
    }
    if (leaf != NULL)
        add_population_locked(slot, added);
    *done = i;
    return err ? err : got;
}

/* Put back one count for each selected entry of entry[0 .. n - 1]; the
 * number of frames whose count that dropped to 0. */
static unsigned put_entries_locked(const uint64_t *entry, unsigned n, uint64_t sel)
{
    MM_ASSERT_LOCKED(&frameref_lock);
    unsigned emptied = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t e = __atomic_load_n(&entry[i], __ATOMIC_RELAXED);
        if (selected(e, sel) && put_locked((e & PTE_ADDR_MASK) >> PAGE_SHIFT) == 0)
            emptied++;
    }
    return emptied;
}

int64_t mm_frameref_get_entries(const uint64_t *entry, unsigned n, uint64_t sel,
                                struct frame_allocator *fa)
{
    if (entry == NULL || sel == 0 || fa == NULL) {
        mm_printf("mm_frameref_get_entries: entry %p, n %u, sel %#lx, fa %p: refused\n",
                  (const void *)entry, n, (unsigned long)sel, (void *)fa);
        return -MM_EINVAL;
    }
    unsigned done;
    mm_spin_lock(&frameref_lock);
    int64_t got = get_entries_locked(entry, n, sel, fa, &done);
    if (got < 0)
        (void)put_entries_locked(entry, done, sel);
    mm_spin_unlock(&frameref_lock);
    if (got == -MM_EINVAL)
        mm_printf("mm_frameref_get_entries: entry %u is %#lx, a frame at or above %#lx: "
                  "refused\n", done, (unsigned long)entry[done],
                  (unsigned long)MM_DIRECT_MAP_MAX_PA);
    return got;
}

unsigned mm_frameref_put_entries(const uint64_t *entry, unsigned n, uint64_t sel)
{
    if (entry == NULL || sel == 0) {
        mm_printf("mm_frameref_put_entries: entry %p, n %u, sel %#lx: refused\n",
                  (const void *)entry, n, (unsigned long)sel);
        return 0;
    }
    mm_spin_lock(&frameref_lock);
    unsigned emptied = put_entries_locked(entry, n, sel);
    mm_spin_unlock(&frameref_lock);
    return emptied;
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
