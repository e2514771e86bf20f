/*
 * mm/kmalloc.c - kmalloc over object caches (see include/mm/kmalloc.h).
 *
 * Size classes.  Fifteen caches, 8 .. 2048 bytes, two per power of two
 * from 32 up (2^k and 1.5 * 2^k), so a request wastes at most a third of
 * its object (a quarter from 64 bytes up, apart from the step to 48).
 * class_of[] maps (size + 7) / 8 to a class in one load.  Each class is
 * aligned to the largest power of two dividing its size, and every class
 * uses 32 KiB slabs, so kfree finds the slab header of any pointer at
 * p & ~(32 KiB - 1) without knowing the class.
 *
 * Big allocations (over 2048 bytes) are buddy blocks of a power of two
 * of pages.  kfree must tell them from slab objects and know their size,
 * and a block has no room for a header, so they are recorded in a hash
 * table keyed by frame number (open addressing, linear probing,
 * deletion by backward shift; slot = pfn << 6 | (order + 1), 0 = empty)
 * that lives in a buddy block, doubles when half full, and is given back
 * by mm_heap_shrink when empty.  kfree tries the slab look-up first: a
 * big block has no valid slab header (a slab's magic is cleared before
 * its frames go back to the buddy), so it falls through to the table.
 *
 * Locking.  The classes lock as any cache (mm/slab.c).  big.lock protects
 * the table; inside it only the buddy is called.
 */
#include "slab_impl.h"

struct mm_cache kmalloc_caches[KMALLOC_NR_CLASSES];

static const uint16_t class_size[KMALLOC_NR_CLASSES] = {
    8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048,
};
/* The class of each size, by (size + 7) >> 3; all NULL until set up. */
static struct mm_cache *class_of[KMALLOC_MAX_CLASS / 8 + 1];

#define KMALLOC_SLAB_MASK (~((PAGE_SIZE << KMALLOC_SLAB_ORDER) - 1))
#define BIG_MIN_SLOTS     (PAGE_SIZE / sizeof(uint64_t))

static struct {
    mm_spinlock_t lock;
    uint64_t *slots;                /* NULL until the first big allocation */
    uint64_t nslots;                /* a power of two */
    uint64_t count;                 /* live big allocations */
    uint64_t npages;                /* their frames */
} big = { .lock = MM_SPINLOCK_INIT };

static unsigned ceil_log2_u64(uint64_t x)
{
    return x <= 1 ? 0 : 64u - (unsigned)__builtin_clzll(x - 1);
}

void kmalloc_init(unsigned flags)
{
    for (unsigned i = KMALLOC_NR_CLASSES; i-- > 0;) {
        char name[MM_CACHE_NAME_MAX];
        unsigned size = class_size[i];
        mm_snprintf(name, sizeof name, "kmalloc-%u", size);
        if (cache_setup(&kmalloc_caches[i], name, size, size & -size, NULL,
                        flags | CACHE_PERCPU | CACHE_KMALLOC, KMALLOC_SLAB_ORDER) != 0)
            mm_panic("kmalloc_init: class %u does not fit a slab", size);
        slab_registry_add(&kmalloc_caches[i]);
    }
    unsigned cls = 0;
    for (unsigned q = 0; q <= KMALLOC_MAX_CLASS / 8; q++) {
        while (class_size[cls] < q * 8)
            cls++;
        class_of[q] = &kmalloc_caches[cls];
    }
}

/* ------------------------------------------------------ the big table */

static uint64_t big_hash(uint64_t pfn)
{
    return (pfn * UINT64_C(0x9e3779b97f4a7c15)) >> (64 - __builtin_ctzll(big.nslots));
}

/* Slot index of pfn, or big.nslots if absent. */
static uint64_t big_find_locked(uint64_t pfn)
{
    MM_ASSERT_LOCKED(&big.lock);
    if (big.slots == NULL)
        return big.nslots;
    for (uint64_t i = big_hash(pfn);; i = (i + 1) & (big.nslots - 1)) {
        if (big.slots[i] == 0)
            return big.nslots;
        if (big.slots[i] >> 6 == pfn)
            return i;
    }
}

static void big_put_slot_locked(uint64_t slot)
{
    MM_ASSERT_LOCKED(&big.lock);
    uint64_t i = big_hash(slot >> 6);
    while (big.slots[i] != 0)
        i = (i + 1) & (big.nslots - 1);
    big.slots[i] = slot;
}

/* Move the table to one of nslots slots.  0 or -MM_ENOMEM (unchanged). */
static int big_resize_locked(uint64_t nslots)
{
    MM_ASSERT_LOCKED(&big.lock);
    phys_addr_t pa;
    if (buddy_alloc(heap.buddy, nslots * sizeof(uint64_t) / PAGE_SIZE, &pa) != 0)
        return -MM_ENOMEM;
    uint64_t *old = big.slots, old_n = big.nslots;
    big.slots = pa_to_ptr(pa);
    big.nslots = nslots;
    for (uint64_t i = 0; i < nslots; i++)
        big.slots[i] = 0;
    for (uint64_t i = 0; i < old_n; i++)
        if (old[i] != 0)
            big_put_slot_locked(old[i]);
    if (old != NULL && buddy_free(heap.buddy, direct_ptr_to_pa(old),
                                  old_n * sizeof(uint64_t) / PAGE_SIZE) != 0)
        mm_panic("big_resize_locked: old table %p refused by the buddy", (void *)old);
    return 0;
}

/* Remove slot i, shifting back the entries of its probe run. */
static void big_remove_locked(uint64_t i)
{
    MM_ASSERT_LOCKED(&big.lock);
    uint64_t mask = big.nslots - 1;
    big.slots[i] = 0;
    for (uint64_t j = (i + 1) & mask; big.slots[j] != 0; j = (j + 1) & mask) {
        uint64_t home = big_hash(big.slots[j] >> 6);
        if (((j - home) & mask) >= ((j - i) & mask)) {   /* home not in (i, j] */
            big.slots[i] = big.slots[j];
            big.slots[j] = 0;
            i = j;
        }
    }
}

static void *kmalloc_big(size_t size, unsigned flags)
{
    if (size > BUDDY_MAX_NPAGES * PAGE_SIZE) {
        mm_printf("kmalloc: size %lu is over the largest block\n", (unsigned long)size);
        return NULL;
    }
    unsigned order = ceil_log2_u64((size + PAGE_SIZE - 1) >> PAGE_SHIFT);
    phys_addr_t pa;
    if (buddy_alloc(heap.buddy, UINT64_C(1) << order, &pa) != 0)
        return NULL;
    unsigned long irq = mm_spin_lock_irqsave(&big.lock);
    int err = 0;
    if ((big.count + 1) * 2 > big.nslots)
        err = big_resize_locked(big.nslots ? big.nslots * 2 : BIG_MIN_SLOTS);
    if (err == 0) {
        big_put_slot_locked(pa_to_pfn(pa) << 6 | (order + 1));
        big.count++;
        big.npages += UINT64_C(1) << order;
    }
    mm_spin_unlock_irqrestore(&big.lock, irq);
    if (err != 0) {
        buddy_free(heap.buddy, pa, UINT64_C(1) << order);
        return NULL;
    }
    void *p = pa_to_ptr(pa);
    if (flags & MM_KM_ZERO)
        for (uint64_t i = 0; i < (PAGE_SIZE << order) / sizeof(uint64_t); i++)
            ((uint64_t *)p)[i] = 0;
    return p;
}

/* Free the big allocation at p: 0, or -MM_ENOENT if there is none. */
static int kfree_big(const void *p)
{
    uint64_t pfn = pa_to_pfn(direct_ptr_to_pa(p));
    unsigned long irq = mm_spin_lock_irqsave(&big.lock);
    uint64_t i = big_find_locked(pfn);
    if (i == big.nslots) {
        mm_spin_unlock_irqrestore(&big.lock, irq);
        return -MM_ENOENT;
    }
    uint64_t npages = UINT64_C(1) << ((big.slots[i] & 63) - 1);
    big_remove_locked(i);
    big.count--;
    big.npages -= npages;
    mm_spin_unlock_irqrestore(&big.lock, irq);
    if (buddy_free(heap.buddy, pfn_to_pa(pfn), npages) != 0)
        mm_panic("kfree: big block %p of %lu pages refused by the buddy", p,
                 (unsigned long)npages);
    return 0;
}

/* Pages of the big allocation at p, or 0. */
static uint64_t big_npages_of(const void *p)
{
    uint64_t pfn = pa_to_pfn(direct_ptr_to_pa(p)), npages = 0;
    unsigned long irq = mm_spin_lock_irqsave(&big.lock);
    uint64_t i = big_find_locked(pfn);
    if (i != big.nslots)
        npages = UINT64_C(1) << ((big.slots[i] & 63) - 1);
    mm_spin_unlock_irqrestore(&big.lock, irq);
    return npages;
}

uint64_t kmalloc_big_shrink(void)
{
    uint64_t frames = 0;
    unsigned long irq = mm_spin_lock_irqsave(&big.lock);
    if (big.slots != NULL && big.count == 0) {
        frames = big.nslots * sizeof(uint64_t) / PAGE_SIZE;
        if (buddy_free(heap.buddy, direct_ptr_to_pa(big.slots), frames) != 0)
            mm_panic("kmalloc_big_shrink: table %p refused by the buddy", (void *)big.slots);
        big.slots = NULL;
        big.nslots = 0;
    }
    mm_spin_unlock_irqrestore(&big.lock, irq);
    return frames;
}

void kmalloc_big_usage(uint64_t *npages, uint64_t *allocs, uint64_t *meta_npages)
{
    unsigned long irq = mm_spin_lock_irqsave(&big.lock);
    *npages = big.npages;
    *allocs = big.count;
    *meta_npages = big.nslots * sizeof(uint64_t) / PAGE_SIZE;
    mm_spin_unlock_irqrestore(&big.lock, irq);
}

#ifdef MM_HOST
void kmalloc_reset(void)
{
    for (unsigned i = 0; i < KMALLOC_NR_CLASSES; i++)
        kmalloc_caches[i].magic = 0;
    for (unsigned q = 0; q <= KMALLOC_MAX_CLASS / 8; q++)
        class_of[q] = NULL;
    big.slots = NULL;
    big.nslots = big.count = big.npages = 0;
}
#endif

/* --------------------------------------------------------------- the API */

static void *kmalloc_slow(size_t size, unsigned flags)
{
    if ((flags & ~MM_KM_ZERO) != 0 || !heap.ready) {
        mm_printf("kmalloc: bad call (size %lu, flags %#x, heap set up %d)\n",
                  (unsigned long)size, flags, heap.ready);
        return NULL;
    }
    if (size == 0)
        return NULL;
    if (size > KMALLOC_MAX_CLASS)
        return kmalloc_big(size, flags);
    struct mm_cache *c = class_of[(size + 7) >> 3];
    uint8_t *p = slab_alloc_fast(c);
    if (p != NULL && (flags & MM_KM_ZERO))
        for (uint32_t i = 0; i < c->size; i++)
            p[i] = 0;
    return p;
}

void *kmalloc(size_t size, unsigned flags)
{
    struct mm_cache *c;
    if (__builtin_expect(size - 1 < KMALLOC_MAX_CLASS && flags == 0 &&
                         (c = class_of[(size + 7) >> 3]) != NULL, 1))
        return slab_alloc_fast(c);
    return kmalloc_slow(size, flags);
}

void *kzalloc(size_t size, unsigned flags)
{
    return kmalloc_slow(size, flags | MM_KM_ZERO);
}

/* kfree of anything but a kmalloc object's start: a big allocation, or
 * one log line.  Out of line, so kfree's fast path stays small. */
static __attribute__((noinline)) void kfree_other(const void *p)
{
    struct slab *s = slab_header(KMALLOC_SLAB_MASK, p);
    if (s != NULL && s->kmalloc)
        mm_printf("kfree: %p is inside a kmalloc slab but not an object's start\n", p);
    else if (s != NULL && s->cache->slab_mask == KMALLOC_SLAB_MASK)
        mm_printf("kfree: %p belongs to cache '%s', not to kmalloc\n", p, s->cache->name);
    else if (!heap.ready || !is_aligned_u64((uintptr_t)p, PAGE_SIZE) || kfree_big(p) != 0)
        mm_printf("kfree: %p is not a live kmalloc pointer\n", p);
}

void kfree(const void *p)
{
    if (p == NULL)
        return;
    struct slab *s = slab_header(KMALLOC_SLAB_MASK, p);
    uint32_t idx;
    if (__builtin_expect(s != NULL && s->kmalloc && (idx = slab_index(s, p)) < s->nobjs, 1))
        slab_free_located(s->cache, s, idx, (void *)(uintptr_t)p, "kfree");
    else
        kfree_other(p);
}

size_t kmalloc_usable_size(const void *p)
{
    if (p == NULL || !heap.ready)
        return 0;
    struct slab *s = slab_header(KMALLOC_SLAB_MASK, p);
    if (s != NULL && s->cache->slab_mask == KMALLOC_SLAB_MASK) {
        uint32_t idx = slab_index(s, p);
        void *obj = (void *)(uintptr_t)p;
        bool live = s->kmalloc && idx < s->nobjs && obj_state(s, idx) == OBJ_AWAY &&
                    *obj_tag_word(s, obj) != free_tag(obj);
        return live ? s->cache->size : 0;
    }
    if (!is_aligned_u64((uintptr_t)p, PAGE_SIZE))
        return 0;
    return big_npages_of(p) * PAGE_SIZE;
}
