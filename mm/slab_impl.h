/*
 * mm/slab_impl.h - what the files of the kernel heap share: the layout of
 * a cache, a slab and a per-CPU array, the heap's global state, and the
 * inline helpers of the fast paths.  Private to mm/slab*.c and
 * mm/kmalloc.c; see mm/slab.c for the design, the invariants and the
 * locking.
 */
#ifndef MM_SLAB_IMPL_H
#define MM_SLAB_IMPL_H

#include <mm/buddy.h>
#include <mm/frame.h>
#include <mm/kmalloc.h>
#include <mm/log.h>
#include <mm/platform.h>
#include <mm/slab.h>
#include <mm/spinlock.h>

#define SLAB_CPU_CAP     64u        /* object slots in a per-CPU array */
#define SLAB_DEPOT_CAP   128u       /* object slots in a cache's depot */
#define SLAB_KEEP_EMPTY  2u         /* empty slabs a cache keeps (hysteresis) */
#define SLAB_MAX_ORDER   6u         /* largest slab: 256 KiB */
#define SLAB_MIN_OBJS    8u         /* a slab holds at least this many if it can */
#define KMALLOC_SLAB_ORDER 3u       /* every kmalloc slab is 32 KiB */
#define KMALLOC_NR_CLASSES 15u

#define SLAB_MAGIC   UINT64_C(0x51ab5eed51ab0000)
#define CACHE_MAGIC  UINT64_C(0xcac4ec0ffee0cac4)

#define SLAB_POISON  0x6bu          /* a free object's bytes (debug) */
#define SLAB_RED     0xbbu          /* red-zone bytes (debug) */
#define SLAB_RED_MIN 8u             /* red-zone bytes after every object (debug) */

/* Object states, one byte per object in its slab's header. */
#define OBJ_FREE 0u                 /* in the slab's free list, a depot or a per-CPU array */
#define OBJ_OUT  1u                 /* handed out to a caller */

/* Cache flags beyond the public MM_CACHE_DEBUG. */
#define CACHE_PERCPU  0x100u        /* has per-CPU arrays (all but the internal caches) */
#define CACHE_KMALLOC 0x200u        /* one of the kmalloc size classes */
#define CACHE_STATIC  0x400u        /* not allocated from the cache of caches */

/* A per-CPU array of free objects: a LIFO stack, touched only by its CPU
 * with interrupts off (or by a drain whose caller guarantees that CPU is
 * quiet).  limit == 0 marks the shared "no array yet" placeholder.  slab
 * is the slab this CPU refills from (its owner, see mm/slab_refill.c);
 * it is read and written only under the cache's lock. */
struct slab_cpu {
    uint32_t count;
    uint32_t limit;
    void *objs[SLAB_CPU_CAP];
    struct slab *slab;
};

struct slab_list { struct slab *head; };

/*
 * The header at the start of every slab (a naturally aligned buddy block
 * of 2^order frames).  magic is SLAB_MAGIC ^ the header's own address, so
 * a copy of a header elsewhere does not pass.  Everything but state[] is
 * protected by cache->lock; state[i] is written only by whoever owns
 * object i at that moment (see "Double frees" in mm/slab.c).
 */
struct slab {
    uint64_t magic;
    struct mm_cache *cache;
    struct slab *prev, *next;       /* in one of the cache's three lists */
    void *free;                     /* free list through the objects' link words */
    uint32_t nfree;                 /* objects on that list */
    uint16_t list;                  /* which list: SLAB_ON_* */
    uint16_t owner;                 /* CPU id + 1 that refills from it, 0 = none */
    uint8_t state[];                /* OBJ_FREE / OBJ_OUT per object */
};

enum { SLAB_ON_PARTIAL, SLAB_ON_FULL, SLAB_ON_EMPTY };

struct mm_cache {
    /* Read-only after create: everything the fast paths read. */
    uint64_t magic;                 /* CACHE_MAGIC while the cache exists */
    uint64_t slab_mask;             /* ~(slab bytes - 1) */
    uint32_t size;                  /* object size asked for */
    uint32_t stride;                /* bytes from one object to the next */
    uint32_t first_off;             /* offset of object 0 in its slab */
    uint32_t nobjs;                 /* objects per slab */
    uint64_t recip;                 /* 2^32 / stride + 1: index without division */
    uint32_t flags;                 /* MM_CACHE_DEBUG | CACHE_* */
    uint32_t link_off;              /* offset of a free object's link word */
    struct slab_cpu *cpu[MM_MAX_CPUS];  /* written only by that CPU (or a drain) */
    void (*ctor)(void *obj);
    uint32_t align;
    uint32_t order;                 /* slab = 2^order frames */
    uint32_t batch;                 /* objects per refill or drain */
    uint32_t depot_cap;
    char name[MM_CACHE_NAME_MAX];
    struct mm_cache *next;          /* registry, protected by heap.lock */

    /* Protected by lock (on its own cache line). */
    _Alignas(64) mm_spinlock_t lock;
    struct slab_list lists[3];      /* indexed by SLAB_ON_* */
    uint64_t nslabs;
    uint64_t nempty;
    uint64_t nfree;                 /* objects on the slabs' free lists */
    uint32_t depot_n;
    void *depot[SLAB_DEPOT_CAP];
};

/* The heap: one per kernel.  buddy and the range copy are read-only after
 * mm_heap_init; the registry and the big-allocation table have locks. */
struct heap {
    struct buddy *buddy;
    bool ready;
    bool ram_one_range;             /* the buddy has a single RAM range */
    uint64_t ram_lo, ram_span;      /* from its first range's start to its last one's end */
    mm_spinlock_t lock;             /* the registry (caches list) */
    struct mm_cache *caches;        /* user caches and kmalloc classes */
    struct mm_cache cache_cache;    /* struct mm_cache objects */
    struct mm_cache array_cache;    /* struct slab_cpu objects */
};

extern struct heap heap;
extern struct slab_cpu slab_cpu_none;
extern struct mm_cache kmalloc_caches[KMALLOC_NR_CLASSES];

/* ---------------------------------------------------------- helpers */

/* The header of obj's slab.  Slabs are aligned in physical memory; the
 * direct map's offset need not be (the host tests' is page-aligned). */
static inline struct slab *slab_of(const struct mm_cache *c, const void *obj)
{
    uint64_t pa = ((uint64_t)(uintptr_t)obj - mm_direct_map_offset) & c->slab_mask;
    return (struct slab *)(uintptr_t)(pa + mm_direct_map_offset);
}

static inline uint8_t *obj_at(const struct mm_cache *c, struct slab *s, uint32_t i)
{
    return (uint8_t *)s + c->first_off + (uint64_t)i * c->stride;
}

/* Index of an object known to start exactly at an object boundary. */
static inline uint32_t obj_index(const struct mm_cache *c, const struct slab *s,
                                 const void *obj)
{
    uint64_t off = (uint64_t)((uintptr_t)obj - (uintptr_t)s - c->first_off);
    return (uint32_t)((off * c->recip) >> 32);
}

static inline uint8_t obj_state(const struct slab *s, uint32_t i)
{
    return __atomic_load_n(&s->state[i], __ATOMIC_RELAXED);
}

static inline void obj_set_state(struct slab *s, uint32_t i, uint8_t v)
{
    __atomic_store_n(&s->state[i], v, __ATOMIC_RELAXED);
}

static inline void **obj_link(const struct mm_cache *c, void *obj)
{
    return (void **)((uint8_t *)obj + c->link_off);
}

/* mm/slab.c */
bool heap_ram_contains_slow(uint64_t pa);
void slab_registry_add(struct mm_cache *c);
int cache_setup(struct mm_cache *c, const char *name, size_t size, size_t align,
                void (*ctor)(void *), unsigned flags, unsigned order);

/* mm/slab_refill.c: the slow paths, called with interrupts off */
void *slab_alloc_slow(struct mm_cache *c, unsigned cpu);
void slab_free_slow(struct mm_cache *c, unsigned cpu, void *obj);
uint64_t slab_cpu_drain(struct mm_cache *c, unsigned cpu);
uint64_t slab_release_idle(struct mm_cache *c);
uint64_t slab_live_objects(struct mm_cache *c);

/* mm/kmalloc.c */
void kmalloc_init(unsigned flags);
uint64_t kmalloc_big_shrink(void);
void kmalloc_big_usage(uint64_t *npages, uint64_t *allocs, uint64_t *meta_npages);
#ifdef MM_HOST
void kmalloc_reset(void);
void slab_debug_reset(void);
#endif

/* mm/slab_debug.c */
void slab_debug_init_object(const struct mm_cache *c, void *obj);
int slab_debug_check(const struct mm_cache *c, const void *obj, bool poisoned,
                     const char *fn);
void slab_debug_poison(const struct mm_cache *c, void *obj);

/* ------------------------------------------------- inline fast paths */

/* Is the frame at pa in the RAM the buddy manages?  (False before
 * mm_heap_init: the span is 0.) */
static inline bool heap_ram_contains(uint64_t pa)
{
    if (pa - heap.ram_lo >= heap.ram_span)
        return false;
    return heap.ram_one_range || heap_ram_contains_slow(pa);
}

/*
 * Find the slab and index of obj, assuming slabs of ~mask + 1 bytes.
 * Returns 0, -MM_EFAULT (no slab of that size there: outside RAM, no
 * valid header, or the header of a slab of another size)
 * or -MM_EINVAL (inside a slab but not at an object's start).  Reads only
 * mapped RAM; changes nothing.  The cache is the caller's to check.
 */
static inline int slab_locate(uint64_t mask, const void *obj, struct slab **sp, uint32_t *idxp)
{
    uint64_t base_pa = ((uint64_t)(uintptr_t)obj - mm_direct_map_offset) & mask;
    if (!heap_ram_contains(base_pa))
        return -MM_EFAULT;
    struct slab *s = pa_to_ptr(PA(base_pa));
    if (s->magic != (SLAB_MAGIC ^ (uint64_t)(uintptr_t)s))
        return -MM_EFAULT;
    const struct mm_cache *c = s->cache;
    if (c->slab_mask != mask)               /* a slab of another size starts there */
        return -MM_EFAULT;
    uint64_t off = (uint64_t)((uintptr_t)obj - (uintptr_t)s) - c->first_off;
    if (off >= (uint64_t)c->nobjs * c->stride)     /* also obj < first object */
        return -MM_EINVAL;
    uint32_t idx = (uint32_t)((off * c->recip) >> 32);
    if ((uint64_t)idx * c->stride != off)
        return -MM_EINVAL;
    *sp = s;
    *idxp = idx;
    return 0;
}

/*
 * Free obj, object idx of slab s of cache c, already located.  Refuses
 * (one line, nothing changed) an object that is not handed out
 * (-MM_ENOENT) or, in debug mode, whose red zone is damaged (-MM_EFAULT).
 */
static inline int slab_free_located(struct mm_cache *c, struct slab *s, uint32_t idx, void *obj,
                                    const char *fn)
{
    unsigned long flags = mm_platform_irq_save();
    if (__builtin_expect(obj_state(s, idx) != OBJ_OUT, 0)) {
        mm_platform_irq_restore(flags);
        mm_printf("%s: %p in cache '%s' is not allocated (double free?)\n", fn, obj,
                  c->name);
        return -MM_ENOENT;
    }
    if (__builtin_expect(c->flags & MM_CACHE_DEBUG, 0)) {
        if (slab_debug_check(c, obj, false, fn) != 0) {
            mm_platform_irq_restore(flags);
            return -MM_EFAULT;
        }
        slab_debug_poison(c, obj);
    }
    obj_set_state(s, idx, OBJ_FREE);
    unsigned cpu = mm_platform_cpu_id();
    struct slab_cpu *pc = c->cpu[cpu];
    if (__builtin_expect(pc->count < pc->limit, 1))
        pc->objs[pc->count++] = obj;
    else
        slab_free_slow(c, cpu, obj);
    mm_platform_irq_restore(flags);
    return 0;
}

/* mm_cache_alloc for a cache known to be valid. */
static inline void *slab_alloc_fast(struct mm_cache *c)
{
    unsigned long flags = mm_platform_irq_save();
    unsigned cpu = mm_platform_cpu_id();
    struct slab_cpu *pc = c->cpu[cpu];
    void *obj;
    if (__builtin_expect(pc->count != 0, 1))
        obj = pc->objs[--pc->count];
    else if ((obj = slab_alloc_slow(c, cpu)) == NULL)
        goto out;
    struct slab *s = slab_of(c, obj);
    uint32_t idx = obj_index(c, s, obj);
    if (__builtin_expect(obj_state(s, idx) != OBJ_FREE, 0))
        mm_panic("mm_cache_alloc: cache '%s' object %p handed out twice", c->name, obj);
    obj_set_state(s, idx, OBJ_OUT);
    if (__builtin_expect(c->flags & MM_CACHE_DEBUG, 0) &&
        slab_debug_check(c, obj, c->ctor == NULL, "mm_cache_alloc") != 0)
        slab_debug_init_object(c, obj);     /* reported; repair and go on */
out:
    mm_platform_irq_restore(flags);
    return obj;
}

#endif
