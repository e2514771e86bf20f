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

#define SLAB_CPU_CAP     256u       /* object slots in a per-CPU array (2 * the largest batch) */
#define SLAB_DEPOT_CAP   1024u      /* object slots in a cache's depot (8 batches of 128) */
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

/* Object states, one byte per object in its slab's header, written only
 * under the cache's lock (see "Double frees" in mm/slab.c). */
#define OBJ_FREE 0u                 /* on its slab's free list */
#define OBJ_AWAY 1u                 /* handed out, or in a per-CPU array or the depot */

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
 * a copy of a header elsewhere does not pass.  The first group is written
 * when the slab is made and only read after that (by every CPU's look-up,
 * so it never bounces); the second group and state[] are protected by
 * cache->lock and written only on the slow paths.
 */
struct slab {
    uint64_t magic;
    struct mm_cache *cache;
    uint32_t first_off;             /* offset of object 0 */
    uint32_t inv;                   /* inverse of stride's odd part, mod 2^32 */
    uint32_t nobjs;
    uint32_t tag_off;               /* offset of a free object's tag word */
    uint8_t shift;                  /* stride = (odd part) << shift */
    uint8_t kmalloc;                /* a slab of a kmalloc class */

    uint16_t list;                  /* which list: SLAB_ON_* */
    uint16_t owner;                 /* CPU id + 1 that refills from it, 0 = none */
    uint32_t nfree;                 /* objects on the free list */
    struct slab *prev, *next;       /* in one of the cache's three lists */
    void *free;                     /* free list through the objects' link words */
    uint8_t state[];                /* OBJ_FREE / OBJ_AWAY per object */
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
    uint32_t inv;                   /* copied to every slab, see struct slab */
    uint32_t shift;
    uint32_t flags;                 /* MM_CACHE_DEBUG | CACHE_* */
    uint32_t link_off;              /* offset of a free object's link and tag word */
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
    uint64_t secret;                /* per-boot key of the free tags */
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

/*
 * Index of obj in slab s, or a number >= s->nobjs when obj is not the
 * start of an object of s (before the first, inside one, past the last).
 * With stride = m << k (m odd) and inv * m == 1 mod 2^32: an offset that
 * is a multiple of stride, times inv, rotated right by k, is the
 * quotient; any other offset (below 2^32) comes out above
 * (2^32 - 1) / stride, which is more than nobjs.  One multiply, no
 * division, no second check.
 */
static inline uint32_t slab_index(const struct slab *s, const void *obj)
{
    uint32_t off = (uint32_t)((uintptr_t)obj - (uintptr_t)s) - s->first_off;
    uint32_t q = off * s->inv;
    return (q >> s->shift) | (q << ((32u - s->shift) & 31u));
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

/* The tag a free object in a stack carries in its link word: its
 * address under the per-boot secret (not a pointer a caller would
 * store, and not predictable without the secret). */
static inline uint64_t free_tag(const void *obj)
{
    return (uint64_t)(uintptr_t)obj ^ heap.secret;
}

static inline uint64_t *obj_tag_word(const struct slab *s, void *obj)
{
    return (uint64_t *)(void *)((uint8_t *)obj + s->tag_off);
}

/* mm/slab.c */
bool heap_ram_contains_slow(uint64_t pa);
void slab_registry_add(struct mm_cache *c);
int cache_setup(struct mm_cache *c, const char *name, size_t size, size_t align,
                void (*ctor)(void *), unsigned flags, unsigned order);
int slab_free_checked(struct mm_cache *c, struct slab *s, uint32_t idx, void *obj,
                      const char *fn);

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
void *slab_debug_alloc(struct mm_cache *c);

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
 * The slab header at the start of obj's block, assuming slabs of
 * ~mask + 1 bytes, or NULL: outside RAM or no valid header there.  The
 * header may be of a slab of another size (a small slab starting where a
 * bigger block would): the caller checks the cache.  Reads only mapped
 * RAM; changes nothing.
 */
static inline struct slab *slab_header(uint64_t mask, const void *obj)
{
    uint64_t base_pa = ((uint64_t)(uintptr_t)obj - mm_direct_map_offset) & mask;
    if (!heap_ram_contains(base_pa))
        return NULL;
    struct slab *s = pa_to_ptr(PA(base_pa));
    return s->magic == (SLAB_MAGIC ^ (uint64_t)(uintptr_t)s) ? s : NULL;
}

/* Push the free, tagged obj onto this CPU's array of c (or give the
 * array's oldest batch to the depot first). */
static inline void slab_push(struct mm_cache *c, void *obj)
{
    unsigned long flags = mm_platform_irq_save();
    unsigned cpu = mm_platform_cpu_id();
    struct slab_cpu *pc = c->cpu[cpu];
    if (__builtin_expect(pc->count < pc->limit, 1))
        pc->objs[pc->count++] = obj;
    else
        slab_free_slow(c, cpu, obj);
    mm_platform_irq_restore(flags);
}

/*
 * Free obj, object idx of slab s of cache c, already located.  Refuses
 * (one line, nothing changed) an object that is not handed out
 * (-MM_ENOENT: on its slab's free list, or carrying its free tag) or, in
 * debug mode, whose red zone is damaged (-MM_EFAULT).  The checks run
 * before interrupts go off: the object is the caller's until it is
 * pushed.  Writes only the object's tag word and this CPU's array; the
 * refusals and debug mode are out of line (slab_free_checked).
 */
static inline int slab_free_located(struct mm_cache *c, struct slab *s, uint32_t idx, void *obj,
                                    const char *fn)
{
    uint64_t *tagp = obj_tag_word(s, obj), tag = free_tag(obj);
    if (__builtin_expect(obj_state(s, idx) != OBJ_AWAY || *tagp == tag ||
                         (c->flags & MM_CACHE_DEBUG), 0))
        return slab_free_checked(c, s, idx, obj, fn);
    *tagp = tag;
    slab_push(c, obj);
    return 0;
}

/* mm_cache_alloc for a cache known to be valid.  The object's tag word
 * is cleared, so a free of it is accepted; debug mode (out of line)
 * checks it first. */
static inline void *slab_alloc_fast(struct mm_cache *c)
{
    if (__builtin_expect(c->flags & MM_CACHE_DEBUG, 0))
        return slab_debug_alloc(c);
    unsigned long flags = mm_platform_irq_save();
    unsigned cpu = mm_platform_cpu_id();
    struct slab_cpu *pc = c->cpu[cpu];
    void *obj;
    if (__builtin_expect(pc->count != 0, 1))
        obj = pc->objs[--pc->count];
    else
        obj = slab_alloc_slow(c, cpu);
    if (__builtin_expect(obj != NULL, 1))
        *obj_link(c, obj) = NULL;
    mm_platform_irq_restore(flags);
    return obj;
}

#endif
