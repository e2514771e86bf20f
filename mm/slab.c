/*
 * mm/slab.c - object caches with per-CPU arrays (see include/mm/slab.h).
 *
 * Slabs.  A cache's memory is a set of slabs: naturally aligned buddy
 * blocks of 2^order frames, order chosen at create time as the smallest
 * that holds at least eight objects with at most an eighth wasted (every
 * kmalloc class uses 32 KiB slabs, so kfree finds a slab from the pointer
 * alone).  A slab starts with its header (struct slab in
 * mm/slab_impl.h): magic, owning cache, list links, a free list threaded
 * through the free objects' link words, and one state byte per object.
 * Objects follow at first_off, every stride bytes.  The header of any
 * object is at the start of the slab-aligned block holding its physical
 * address (slab_of); its index is (offset * recip) >> 32, exact for every
 * multiple of stride below 4 GiB, so nothing divides.
 *
 * Where a free object sits.  In its slab's free list; in the cache's
 * depot (a bounded stack of pointers shared by all CPUs); or in one CPU's
 * array (a stack of up to 2 * batch pointers).  A handed-out object is in
 * none of them.
 *
 * Fast path.  mm_cache_alloc pops from the calling CPU's array and
 * mm_cache_free pushes onto it, with interrupts off and plain loads and
 * stores: the array belongs to that CPU alone.  An empty array is refilled
 * with a batch (from the depot, then the slabs' free lists, then a new
 * slab) and a full one gives its oldest batch to the depot (or, when the
 * depot is full, to the slabs), under the cache's lock
 * (mm/slab_refill.c).  A CPU gets its array from the internal array cache
 * the first time it needs one; until then its pointer is the shared empty
 * placeholder slab_cpu_none, whose limit 0 sends both paths to the slow
 * path.  The two internal caches (cache structures, arrays) have no
 * arrays: they always take the lock.
 *
 * Double frees.  state[i] is OBJ_OUT exactly while object i is handed out.
 * Alloc sets it (finding OBJ_FREE there is a broken invariant: an object
 * handed out twice panics); free checks it is OBJ_OUT, else -MM_ENOENT,
 * and clears it before the object enters any stack, so a second free is
 * refused also while the object waits in a per-CPU array or the depot.
 * Each byte is written only by the one CPU that owns the object at that
 * moment (the allocator while handing it out, the caller while freeing
 * it); bytes are separate memory locations, so neighbours never
 * interfere and no atomic read-modify-write is needed.  Only two frees of
 * one object racing on two CPUs can both pass the check.
 *
 * Foreign pointers.  slab_locate reads a header only when its frame lies
 * in the RAM the buddy manages (always mapped in the direct map), then
 * requires the magic (SLAB_MAGIC ^ header address; cleared before a slab
 * goes back to the buddy), a slab size equal to the one assumed (a small
 * slab may start where a 32 KiB kmalloc block would), the owning cache,
 * and an exact object start.  A page of caller data that forges a header
 * at its own address could pass; nothing else can.  A bad pointer freed
 * while another CPU gives its slab back may read a header as it is
 * cleared: bad input racing with a shrink is not guaranteed to be caught.
 *
 * Empty slabs.  A slab whose objects are all on its free list is empty; a
 * cache keeps SLAB_KEEP_EMPTY of them and gives the rest back at once;
 * mm_cache_shrink gives back all of them after moving the calling CPU's
 * array and the depot back to the slabs.
 *
 * Files: this one has create/destroy, the public fast paths, shrink and
 * init; mm/slab_impl.h the inline fast paths (look-up, alloc, free) that
 * kmalloc shares; mm/slab_refill.c the slow paths and slab life cycle;
 * mm/slab_debug.c red zones, poisoning, statistics and the dump;
 * mm/kmalloc.c the size classes and big allocations.
 *
 * Locking.  A cache's lock protects its slab lists, every header field
 * but state[], its counters and its depot.  c->cpu[n] and the array it
 * points to belong to CPU n (interrupts off) or to a drain whose caller
 * vouches that CPU n is quiet.  heap.lock protects the registry.  Order:
 * heap.lock -> a cache's lock -> the internal caches' locks -> the big
 * table's lock -> the buddy's lock.  Constructors run without any lock.
 */
#include "slab_impl.h"

struct heap heap;
struct slab_cpu slab_cpu_none;      /* count 0, limit 0: never written */

/* ------------------------------------------------------------ look-up */

/* The frame at pa is in one of the buddy's RAM ranges (called when
 * there are several; heap_ram_contains has checked the outer bounds). */
bool heap_ram_contains_slow(uint64_t pa)
{
    const struct mm_area_list *r = &heap.buddy->ranges;
    for (unsigned i = 0; i < r->count; i++)
        if (pa - r->area[i].start.raw < mm_area_size(&r->area[i]))
            return true;
    return false;
}

static const char *locate_reason(int err)
{
    return err == -MM_EFAULT ? "no slab holds it" : "not the start of an object";
}

/* ---------------------------------------------------------- fast paths */

void *mm_cache_alloc(struct mm_cache *c)
{
    if (__builtin_expect(c == NULL || c->magic != CACHE_MAGIC, 0)) {
        mm_printf("mm_cache_alloc: %p is not a cache\n", (void *)c);
        return NULL;
    }
    return slab_alloc_fast(c);
}

int mm_cache_free(struct mm_cache *c, void *obj)
{
    if (__builtin_expect(c == NULL || c->magic != CACHE_MAGIC || obj == NULL, 0)) {
        mm_printf("mm_cache_free: bad call (cache %p, object %p)\n", (void *)c, obj);
        return -MM_EINVAL;
    }
    struct slab *s;
    uint32_t idx;
    int err = slab_locate(c->slab_mask, obj, &s, &idx);
    if (__builtin_expect(err != 0, 0)) {
        mm_printf("mm_cache_free: %p is not an object of cache '%s': %s\n", obj,
                  c->name, locate_reason(err));
        return err;
    }
    if (__builtin_expect(s->cache != c, 0)) {
        mm_printf("mm_cache_free: %p belongs to cache '%s', not '%s'\n", obj,
                  s->cache->name, c->name);
        return -MM_EINVAL;
    }
    return slab_free_located(c, s, idx, obj, "mm_cache_free");
}

/* ------------------------------------------------------------ geometry */

/* Objects that fit in a slab of `bytes` (header, state bytes, alignment). */
static uint32_t objs_per_slab(uint64_t bytes, uint32_t stride, uint32_t align,
                              uint32_t *first_off)
{
    uint64_t hdr = sizeof(struct slab);
    uint64_t n = (bytes - hdr) / (stride + 1u);
    while (n > 0 && align_up_u64(hdr + n, align) + n * stride > bytes)
        n--;
    *first_off = (uint32_t)align_up_u64(hdr + n, align);
    return (uint32_t)n;
}

/* Object layout: stride and where a free object keeps its link word. */
static void cache_layout(struct mm_cache *c, size_t size, uint32_t align)
{
    if (c->flags & MM_CACHE_DEBUG) {            /* object, red zone, link */
        c->stride = (uint32_t)align_up_u64(size + SLAB_RED_MIN + 8, align);
        c->link_off = c->stride - 8;
    } else if (c->ctor != NULL) {               /* object, link */
        c->link_off = (uint32_t)align_up_u64(size, 8);
        c->stride = (uint32_t)align_up_u64(c->link_off + 8u, align);
    } else {                                    /* link inside the free object */
        c->link_off = 0;
        c->stride = (uint32_t)align_up_u64(size < 8 ? 8 : size, align);
    }
}

/*
 * Fill in *c (zeroed here) for objects of size bytes aligned to align
 * (a power of two, at least 8).  order: the slab order, or ~0u to choose.
 * Returns 0, or -MM_EINVAL when not even one object fits (not logged).
 */
int cache_setup(struct mm_cache *c, const char *name, size_t size, size_t align,
                void (*ctor)(void *), unsigned flags, unsigned order)
{
    for (unsigned i = 0; i < sizeof *c; i++)
        ((uint8_t *)c)[i] = 0;
#ifdef MM_SLAB_DEBUG
    flags |= MM_CACHE_DEBUG;
#endif
    c->flags = flags;
    c->ctor = ctor;
    c->size = (uint32_t)size;
    c->align = (uint32_t)align;
    cache_layout(c, size, c->align);
    uint32_t first_off = 0, n = 0;
    unsigned o = order == ~0u ? 0 : order;
    for (;; o++) {
        uint64_t bytes = PAGE_SIZE << o;
        n = objs_per_slab(bytes, c->stride, c->align, &first_off);
        uint64_t waste = bytes - (uint64_t)n * c->stride;
        if (order != ~0u || o == SLAB_MAX_ORDER || (n >= SLAB_MIN_OBJS && waste * 8 <= bytes))
            break;
    }
    if (n == 0)
        return -MM_EINVAL;
    c->order = o;
    c->slab_mask = ~((PAGE_SIZE << o) - 1);
    c->nobjs = n;
    c->first_off = first_off;
    c->recip = (UINT64_C(1) << 32) / c->stride + 1;
    c->batch = c->stride <= 256 ? 32 : c->stride <= 1024 ? 16 : c->stride <= 4096 ? 8 : 4;
    c->depot_cap = 4 * c->batch > SLAB_DEPOT_CAP ? SLAB_DEPOT_CAP : 4 * c->batch;
    unsigned i = 0;
    for (; name[i] != '\0' && i + 1 < MM_CACHE_NAME_MAX; i++)
        c->name[i] = name[i];
    c->name[i] = '\0';
    for (unsigned cpu = 0; cpu < MM_MAX_CPUS; cpu++)
        c->cpu[cpu] = &slab_cpu_none;
    c->lock = (mm_spinlock_t)MM_SPINLOCK_INIT;
    c->magic = CACHE_MAGIC;
    return 0;
}

/* ------------------------------------------------------ create, destroy */

void slab_registry_add(struct mm_cache *c)
{
    unsigned long flags = mm_spin_lock_irqsave(&heap.lock);
    c->next = heap.caches;
    heap.caches = c;
    mm_spin_unlock_irqrestore(&heap.lock, flags);
}

static bool registry_remove_locked(struct mm_cache *c)
{
    MM_ASSERT_LOCKED(&heap.lock);
    for (struct mm_cache **pp = &heap.caches; *pp != NULL; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            return true;
        }
    return false;
}

struct mm_cache *mm_cache_create_flags(const char *name, size_t size, size_t align,
                                       void (*ctor)(void *obj), unsigned flags)
{
    if (!heap.ready || name == NULL || name[0] == '\0' || size == 0 ||
        size > MM_CACHE_MAX_SIZE || (align != 0 && (!is_pow2_u64(align) || align > PAGE_SIZE)) ||
        (flags & ~MM_CACHE_DEBUG) != 0) {
        mm_printf("mm_cache_create: bad request (name %s, size %lu, align %lu, flags %#x%s)\n",
                  name != NULL ? name : "(null)", (unsigned long)size, (unsigned long)align,
                  flags, heap.ready ? "" : ", heap not set up");
        return NULL;
    }
    struct mm_cache *c = mm_cache_alloc(&heap.cache_cache);
    if (c == NULL)
        return NULL;
    if (cache_setup(c, name, size, align < 8 ? 8 : align, ctor, flags | CACHE_PERCPU, ~0u) != 0)
        mm_panic("mm_cache_create: no object of %lu bytes fits a slab", (unsigned long)size);
    slab_registry_add(c);
    return c;
}

struct mm_cache *mm_cache_create(const char *name, size_t size, size_t align,
                                 void (*ctor)(void *obj))
{
    return mm_cache_create_flags(name, size, align, ctor, 0);
}

int mm_cache_destroy(struct mm_cache *c)
{
    if (c == NULL || c->magic != CACHE_MAGIC || (c->flags & (CACHE_KMALLOC | CACHE_STATIC))) {
        mm_printf("mm_cache_destroy: %p is not a cache that can be destroyed\n", (void *)c);
        return -MM_EINVAL;
    }
    unsigned long flags = mm_spin_lock_irqsave(&heap.lock);
    uint64_t live = slab_live_objects(c);
    if (live != 0) {
        mm_spin_unlock_irqrestore(&heap.lock, flags);
        mm_printf("mm_cache_destroy: cache '%s' still has %lu live objects\n", c->name,
                  (unsigned long)live);
        return -MM_EBUSY;
    }
    if (!registry_remove_locked(c))
        mm_panic("mm_cache_destroy: cache '%s' (%p) not in the registry", c->name, (void *)c);
    mm_spin_unlock_irqrestore(&heap.lock, flags);
    for (unsigned cpu = 0; cpu < MM_MAX_CPUS; cpu++)
        slab_cpu_drain(c, cpu);
    slab_release_idle(c);
    if (c->nslabs != 0)
        mm_panic("mm_cache_destroy: cache '%s' keeps %lu slabs with no live object",
                 c->name, (unsigned long)c->nslabs);
    c->magic = 0;
    if (mm_cache_free(&heap.cache_cache, c) != 0)
        mm_panic("mm_cache_destroy: cache structure %p not freed", (void *)c);
    return 0;
}

/* ---------------------------------------------------------- shrink, drain */

uint64_t mm_cache_shrink(struct mm_cache *c)
{
    if (c == NULL || c->magic != CACHE_MAGIC) {
        mm_printf("mm_cache_shrink: %p is not a cache\n", (void *)c);
        return 0;
    }
    unsigned long flags = mm_platform_irq_save();
    uint64_t frames = slab_cpu_drain(c, mm_platform_cpu_id());
    mm_platform_irq_restore(flags);
    return frames + slab_release_idle(c);
}

uint64_t mm_heap_shrink(void)
{
    if (!heap.ready)
        return 0;
    uint64_t frames = 0;
    unsigned long flags = mm_spin_lock_irqsave(&heap.lock);
    for (struct mm_cache *c = heap.caches; c != NULL; c = c->next)
        frames += mm_cache_shrink(c);
    mm_spin_unlock_irqrestore(&heap.lock, flags);
    frames += slab_release_idle(&heap.array_cache);
    frames += slab_release_idle(&heap.cache_cache);
    return frames + kmalloc_big_shrink();
}

uint64_t mm_heap_drain_cpu(unsigned cpu)
{
    if (cpu >= MM_MAX_CPUS || !heap.ready) {
        mm_printf("mm_heap_drain_cpu: bad cpu %u or heap not set up\n", cpu);
        return 0;
    }
    uint64_t frames = 0;
    unsigned long flags = mm_spin_lock_irqsave(&heap.lock);
    for (struct mm_cache *c = heap.caches; c != NULL; c = c->next)
        frames += slab_cpu_drain(c, cpu);
    mm_spin_unlock_irqrestore(&heap.lock, flags);
    return frames;
}

/* ----------------------------------------------------------------- init */

int mm_heap_init_flags(struct buddy *b, unsigned flags)
{
    if (b == NULL || !b->ready || heap.ready || (flags & ~MM_CACHE_DEBUG) != 0) {
        mm_printf("mm_heap_init: bad call (buddy %p, ready %d, flags %#x, already set up %d)\n",
                  (void *)b, b != NULL && b->ready, flags, heap.ready);
        return -MM_EINVAL;
    }
    heap.buddy = b;
    heap.ram_lo = b->ranges.area[0].start.raw;
    heap.ram_span = b->ranges.area[b->ranges.count - 1].end.raw - heap.ram_lo;
    heap.ram_one_range = b->ranges.count == 1;
    heap.lock = (mm_spinlock_t)MM_SPINLOCK_INIT;
    heap.caches = NULL;
    if (cache_setup(&heap.cache_cache, "cache-cache", sizeof(struct mm_cache),
                    _Alignof(struct mm_cache), NULL, CACHE_STATIC, ~0u) != 0 ||
        cache_setup(&heap.array_cache, "cpu-arrays", sizeof(struct slab_cpu), 64, NULL,
                    CACHE_STATIC, ~0u) != 0)
        mm_panic("mm_heap_init: internal caches do not fit a slab");
    heap.ready = true;
    kmalloc_init(flags);
    return 0;
}

int mm_heap_init(struct buddy *b)
{
    return mm_heap_init_flags(b, 0);
}

#ifdef MM_HOST
void mm_heap_reset(void)
{
    uint8_t *p = (uint8_t *)&heap;
    for (size_t i = 0; i < sizeof heap; i++)
        p[i] = 0;
    kmalloc_reset();
    slab_debug_reset();
}
#endif

