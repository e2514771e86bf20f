/*
 * mm/slab.c - object caches with per-CPU arrays (see include/mm/slab.h).
 *
 * Slabs.  A cache's memory is a set of slabs: naturally aligned buddy
 * blocks of 2^order frames, order chosen at create time as the smallest
 * that holds at least eight objects with at most an eighth wasted (every
 * kmalloc class uses 32 KiB slabs, so kfree finds a slab from the pointer
 * alone).  A slab starts with its header (struct slab in
 * mm/slab_impl.h): magic, owning cache and a copy of the geometry the
 * look-up needs (read-only once made), then list links, a free list
 * threaded through the free objects' link words and one state byte per
 * object (written under the cache's lock only).  Objects follow at
 * first_off, every stride bytes.  The header of any object is at the
 * start of the slab-aligned block holding its physical address
 * (slab_of); slab_index turns an address into an index with one multiply
 * by the inverse of the stride's odd part and a rotation, and the same
 * number says whether the address is an object's start at all.
 *
 * Where a free object sits.  In its slab's free list; in the cache's
 * depot (a bounded stack of pointers shared by all CPUs); or in one CPU's
 * array (a stack of up to 2 * batch pointers, batch 128 for objects up to
 * 256 bytes).  A handed-out object is in none of them.
 *
 * Fast path.  mm_cache_alloc pops from the calling CPU's array and
 * mm_cache_free pushes onto it, with interrupts off and plain loads and
 * stores: the array belongs to that CPU alone.  Besides the array they
 * write only the object's own link word (below), never the slab header,
 * so CPUs using neighbouring objects of one slab share no written line
 * but the objects'.  An empty array is refilled with a batch under the
 * cache's lock (the depot's newest batch in one run, then runs off slab
 * free lists, then a new slab) and a full one gives its oldest batch to
 * the depot in one run (the part that does not fit goes to the slabs,
 * each slab relisted once) (mm/slab_refill.c).  A CPU gets its array
 * from the internal array cache the first time it needs one; until then
 * its pointer is the shared empty placeholder slab_cpu_none, whose limit
 * 0 sends both paths to the slow path.  The two internal caches (cache
 * structures, arrays) have no arrays: they always take the lock.
 *
 * Double frees.  A free object is marked in one of two ways.  On its
 * slab's free list: state[i] == OBJ_FREE (set and cleared under the
 * lock, when objects move between the free list and the stacks).  In a
 * stack (a per-CPU array or the depot): state[i] == OBJ_AWAY and its link
 * word holds its free tag, address ^ heap.secret (a per-boot value from
 * the cycle counter), written by the free and cleared by the alloc that
 * hands it out.  Free refuses (-MM_ENOENT) an object that is OBJ_FREE or
 * carries its tag; it only reads the header.  The link word is the
 * object's first word, or, for caches with a constructor or in debug
 * mode, a word after the object (and after its red zone).  What this
 * catches and what it cannot is stated in include/mm/slab.h.  In debug
 * mode the alloc also checks the tag (past the red zone only the heap
 * writes it): an object handed out twice panics there.  Only two frees
 * of one object racing on two CPUs, or a double free racing with the
 * object's move to its slab, can both pass.
 *
 * Foreign pointers.  slab_header reads a header only when its frame lies
 * in the RAM the buddy manages (always mapped in the direct map), then
 * requires the magic (SLAB_MAGIC ^ header address; cleared before a slab
 * goes back to the buddy); the caller then requires the owning cache (for
 * kfree, a kmalloc slab; a small slab may start where a 32 KiB kmalloc
 * block would) and an exact object start.  A page of caller data that
 * forges a header at its own address could pass; nothing else can.  A
 * bad pointer freed while another CPU gives its slab back may read a
 * header as it is cleared: bad input racing with a shrink is not
 * guaranteed to be caught.
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
 * Locking.  A cache's lock protects its slab lists, the header fields
 * after the geometry, state[], its counters and its depot.  c->cpu[n] and the array it
 * points to belong to CPU n (interrupts off) or to a drain whose caller
 * vouches that CPU n is quiet.  heap.lock protects the registry.  Order:
 * heap.lock -> a cache's lock -> the internal caches' locks -> the big
 * table's lock -> the buddy's lock.  Constructors run without any lock.
 */
#include "slab_impl.h"

#include <mm/arch.h>

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
    struct slab *s = slab_header(c->slab_mask, obj);
    uint32_t idx = 0;
    int err = 0;
    if (__builtin_expect(s == NULL, 0))
        err = -MM_EFAULT;
    else if (__builtin_expect(s->cache != c, 0))
        err = s->cache->slab_mask == c->slab_mask ? -MM_EINVAL : -MM_EFAULT;
    else if (__builtin_expect((idx = slab_index(s, obj)) >= s->nobjs, 0))
        err = -MM_EINVAL;
    if (__builtin_expect(err != 0, 0)) {
        if (err == -MM_EINVAL && s->cache != c)
            mm_printf("mm_cache_free: %p belongs to cache '%s', not '%s'\n", obj,
                      s->cache->name, c->name);
        else
            mm_printf("mm_cache_free: %p is not an object of cache '%s': %s\n", obj,
                      c->name, err == -MM_EFAULT ? "no slab holds it"
                                                 : "not the start of an object");
        return err;
    }
    return slab_free_located(c, s, idx, obj, "mm_cache_free");
}

/*
 * The out-of-line part of a free (slab_free_located): refuse an object
 * that is not handed out (-MM_ENOENT, one line), or in debug mode one
 * whose red zone is damaged (-MM_EFAULT, reported); else poison it (debug
 * mode), tag it and push it.
 */
int slab_free_checked(struct mm_cache *c, struct slab *s, uint32_t idx, void *obj,
                      const char *fn)
{
    uint64_t *tagp = obj_tag_word(s, obj), tag = free_tag(obj);
    if (obj_state(s, idx) != OBJ_AWAY || *tagp == tag) {
        mm_printf("%s: %p in cache '%s' is not allocated (double free?)\n", fn, obj,
                  c->name);
        return -MM_ENOENT;
    }
    if (c->flags & MM_CACHE_DEBUG) {
        if (slab_debug_check(c, obj, false, fn) != 0)
            return -MM_EFAULT;
        slab_debug_poison(c, obj);
    }
    *tagp = tag;
    slab_push(c, obj);
    return 0;
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

/* The inverse of odd m modulo 2^32 (Newton's iteration: each step
 * doubles the correct low bits, m * m == 1 mod 8 gives the first 3). */
static uint32_t odd_inverse(uint32_t m)
{
    uint32_t x = m;
    for (int i = 0; i < 4; i++)
        x *= 2u - m * x;
    if (m * x != 1u)
        mm_panic("odd_inverse: no inverse of %u", m);
    return x;
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
    c->shift = (uint32_t)__builtin_ctz(c->stride);
    c->inv = odd_inverse(c->stride >> c->shift);
    c->batch = c->stride <= 256 ? SLAB_CPU_CAP / 2 : c->stride <= 1024 ? 32
             : c->stride <= 4096 ? 8 : 4;
    c->depot_cap = 8 * c->batch > SLAB_DEPOT_CAP ? SLAB_DEPOT_CAP : 8 * c->batch;
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
    heap.secret = (arch_read_tsc() * UINT64_C(0x9e3779b97f4a7c15)) ^
                  ((uint64_t)(uintptr_t)&heap << 16) ^ UINT64_C(0x5a1bf7ee7a65eed5);
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

