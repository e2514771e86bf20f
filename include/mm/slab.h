/*
 * mm/slab.h - object caches (slab allocator) with per-CPU arrays: the
 * kernel heap that kmalloc (mm/kmalloc.h) is built on.
 *
 * A cache hands out objects of one size and alignment.  Its memory comes
 * from the buddy in slabs (naturally aligned blocks of 2^order frames);
 * empty slabs go back to the buddy, keeping two per cache so a cache that
 * empties and fills again does not thrash.  Each CPU keeps a small stack
 * of free objects per cache, used with interrupts off and no atomic
 * instruction; batches move between it and the cache's shared depot
 * under the cache's lock.  mm/slab.c has the design.
 *
 * Bad input (a double free, also of an object cached on some CPU; a
 * pointer no slab holds; the wrong cache; an interior pointer) returns a
 * negative MM_E* code with one log line and changes nothing.
 *
 * Double-free detection, precisely.  A free object is marked either by a
 * state byte in its slab's header (while it is on the slab's free list)
 * or by a free tag in its link word (while it waits in a per-CPU array or
 * the depot): the object's address mixed with a per-boot secret.  The
 * link word is the object's first 8 bytes, or for a cache with a
 * constructor or in debug mode a word after the object (after the red
 * zone), which callers never write.  So:
 *  - every double free is refused, wherever the object waits, as long as
 *    nobody wrote into the freed object's link word in between;
 *  - caches with a constructor, caches in debug mode: always, since the
 *    link word lies outside the object (short of an overflow past it);
 *  - other caches and kmalloc: a use-after-free write into the first 8
 *    bytes of an object waiting in an array or the depot, followed by a
 *    second free, is not caught at once: the object is pushed twice.  If
 *    it reaches its slab before being handed out, the second copy is
 *    dropped there with a log line (also when the slab has gone back to
 *    the buddy meanwhile); if not, or if the slab's block became a new
 *    slab of the same cache first, it can be handed out twice.  Debug
 *    mode (which also poisons freed objects) closes that hole;
 *  - a live object whose first word happens to equal its free tag is
 *    refused as a double free: that needs the secret (a 2^-64 chance for
 *    any value not derived from it);
 *  - two frees of one object racing on two CPUs, or a double free racing
 *    with the object's move back to its slab on another CPU, may both
 *    pass (catching that needs an atomic read-modify-write);
 *  - an alloc clears the link word (a caller sees 0 in the first 8 bytes
 *    of a new object of a cache without constructor) and, in debug mode,
 *    checks the tag first: an object handed out twice panics there.
 *
 * Debug mode: MM_CACHE_DEBUG per cache (mm_cache_create_flags), for the
 * kmalloc classes mm_heap_init_flags(b, MM_CACHE_DEBUG), for every cache
 * the build flag -DMM_SLAB_DEBUG.  Each object then has a red zone after
 * it and its bytes are poisoned while free (not for caches with a
 * constructor, whose free objects keep their constructed state).  The red
 * zone is checked on alloc and free, the poison on alloc; the first bad
 * byte is reported in one log line (cache, object, address, offset,
 * expected and found value) and kept for mm_slab_last_report.
 *
 * Locking rules.
 *  - mm_cache_alloc, mm_cache_free, kmalloc, kzalloc, kfree and
 *    kmalloc_usable_size: any CPU, interrupts on or off, from interrupt
 *    handlers too (they disable interrupts themselves and take only
 *    interrupt-safe spinlocks).
 *  - mm_cache_create, mm_cache_shrink, mm_heap_shrink, the stats and the
 *    dump: any CPU, any context; a shrink gives back what the calling
 *    CPU and the depots cache, not what other CPUs' arrays hold.
 *  - mm_cache_destroy: no other call on that cache may run or follow.
 *  - mm_heap_drain_cpu(cpu): cpu is the caller, or makes no heap call
 *    until it returns (offline, parked, or its thread has ended).
 *  - A constructor runs with interrupts off and must not use its own
 *    cache.
 *  - mm_heap_init: once, before any other call.
 *  Lock order: registry -> cache -> internal caches -> buddy.
 */
#ifndef MM_SLAB_H
#define MM_SLAB_H

#include <mm/types.h>

struct buddy;
struct mm_cache;                        /* opaque outside mm/slab*.c */

#define MM_CACHE_DEBUG     0x1u         /* red zones and poisoning */
#define MM_CACHE_MAX_SIZE  (32u * 1024u)  /* largest object a cache holds */
#define MM_CACHE_NAME_MAX  24u          /* names are cut to 23 characters */

/*
 * Set up the heap over buddy b (ready): the two internal caches (cache
 * structures, per-CPU arrays) and the kmalloc size classes.  Allocates no
 * frame until the first allocation.  Returns 0, or -MM_EINVAL (logged)
 * for NULL, a buddy that is not ready, or a second call.
 * mm_heap_init_flags: the same with MM_CACHE_DEBUG for the kmalloc
 * classes.  mm_heap_reset (host tests only) forgets the heap so a test
 * can start again over a new buddy.
 */
int mm_heap_init(struct buddy *b);
int mm_heap_init_flags(struct buddy *b, unsigned flags);
#ifdef MM_HOST
void mm_heap_reset(void);
#endif

/*
 * Create a cache of objects of `size` bytes (1 .. MM_CACHE_MAX_SIZE),
 * aligned to `align` (0 = 8; else a power of two up to 4096).  ctor, if
 * not NULL, runs once per object when its slab is made; objects must be
 * freed in constructed state.  The name is copied.  Returns the cache, or
 * NULL: bad input (logged), heap not set up (logged), out of memory (not
 * logged).
 */
struct mm_cache *mm_cache_create(const char *name, size_t size, size_t align,
                                 void (*ctor)(void *obj));
/* The same with flags: 0 or MM_CACHE_DEBUG (anything else is -EINVAL). */
struct mm_cache *mm_cache_create_flags(const char *name, size_t size, size_t align,
                                       void (*ctor)(void *obj), unsigned flags);

/* An object, aligned as asked; NULL when out of memory (not logged) or
 * c is NULL or not a cache (logged). */
void *mm_cache_alloc(struct mm_cache *c);

/*
 * Give obj back to c.  Returns 0, or with one log line and nothing
 * changed: -MM_EINVAL (c or obj NULL, c not a cache, obj belongs to
 * another cache whose slabs have c's size, obj points inside an object),
 * -MM_EFAULT (no slab of c's size holds obj: also an object of a cache
 * whose slabs have another size; or in debug mode its red zone was overwritten: the report names
 * the first bad byte, and the object stays allocated), -MM_ENOENT (obj is
 * not allocated: a double free; see "Double-free detection" above for
 * its limits).
 */
int mm_cache_free(struct mm_cache *c, void *obj);

/*
 * Destroy an empty cache, giving back all its frames.  Precondition: no
 * other call on c runs now or later.  Returns 0, or with one log line
 * and nothing changed: -MM_EINVAL (NULL, not a cache, a kmalloc class),
 * -MM_EBUSY (objects still allocated; the line says how many).
 */
int mm_cache_destroy(struct mm_cache *c);

/* Give back every idle slab of c (after moving this CPU's array and the
 * depot back into the slabs).  Returns the frames given to the buddy. */
uint64_t mm_cache_shrink(struct mm_cache *c);
/* mm_cache_shrink on every cache, then the internal caches and the idle
 * big-allocation table.  Returns the frames given back. */
uint64_t mm_heap_shrink(void);
/* Move every object cached for CPU cpu back to the depots and free its
 * arrays (see the locking rules).  Returns the frames that went back to
 * the buddy on the way (slabs emptied beyond the two each cache keeps). */
uint64_t mm_heap_drain_cpu(unsigned cpu);

/* Statistics of one cache (a snapshot; other CPUs may be moving objects). */
struct mm_cache_stats {
    char name[MM_CACHE_NAME_MAX];
    uint64_t object_size;           /* as asked */
    uint64_t stride;                /* bytes per object in the slab */
    uint64_t align;
    uint64_t objs_per_slab;
    uint64_t slab_bytes;
    uint64_t live;                  /* objects handed out */
    uint64_t cached;                /* free objects in per-CPU arrays and the depot */
    uint64_t slabs;                 /* slabs held */
    uint64_t empty_slabs;
    uint64_t bytes_used;            /* slabs * slab_bytes */
    uint64_t waste;                 /* bytes_used - live * object_size */
};
/* 0, or -MM_EINVAL (logged) for a NULL or stale cache or NULL out. */
int mm_cache_stats(struct mm_cache *c, struct mm_cache_stats *st);

/* One line per cache: name, object size, live, slabs, memory, waste. */
void mm_slabinfo_dump(void);

/* What the heap holds from the buddy. */
struct mm_heap_usage {
    uint64_t caches;                /* caches in the registry (kmalloc classes included) */
    uint64_t slab_npages;           /* frames in slabs, internal caches included */
    uint64_t big_npages;            /* frames of big kmalloc allocations */
    uint64_t meta_npages;           /* frames of the big-allocation table */
    uint64_t live_objects;          /* objects handed out (internal caches not counted) */
    uint64_t big_allocs;            /* big kmalloc allocations live */
};
void mm_heap_usage(struct mm_heap_usage *u);

/* The last debug report (red zone or poison damage). */
struct mm_slab_report {
    char cache[MM_CACHE_NAME_MAX];
    uintptr_t object;               /* the damaged object */
    uintptr_t addr;                 /* its first damaged byte */
    uint64_t offset;                /* addr - object */
    uint8_t expected, found;
    uint64_t count;                 /* reports since mm_heap_init */
};
/* False if there was none. */
bool mm_slab_last_report(struct mm_slab_report *r);

#endif
