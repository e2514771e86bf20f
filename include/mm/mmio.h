/*
 * mm/mmio.h - the MMIO pool: kernel virtual address space for device
 * memory, handed out in power-of-two blocks, and ioremap on top of it.
 *
 * The pool owns [MMIO_POOL_BASE, MMIO_POOL_END), 1 TiB of kernel virtual
 * addresses, and manages it as a buddy system of blocks from 4 KiB
 * (order 0) to 1 GiB (order MMIO_MAX_ORDER).  A block is always aligned to
 * its own size.  After init the pool is 1024 free 1 GiB blocks; a release
 * merges the block with its buddy at once, all the way up, so releasing
 * everything gives back exactly those 1024 blocks.
 *
 * Life of a block:  mmio_create() -> mmio_map_phys() (at most once) ->
 * mmio_release(), which unmaps what was mapped, flushes the TLB on every
 * CPU with one shootdown and only then makes the addresses reusable.
 * mmio_ioremap()/mmio_iounmap() do all three for one device range.
 *
 * Errors: bad input returns a negative MM_E* code (NULL for ioremap),
 * prints one log line and changes nothing; running out of addresses or of
 * bookkeeping frames returns -MM_ENOMEM and changes nothing.
 *
 * Locking: every function may be called from any CPU.  The pool has one
 * spinlock (interrupts off while held).  The only lock ever taken inside it
 * is the frame allocator's (for bookkeeping frames).  The pool lock is never
 * held while the page-table mapper runs: the caller owns the mapper and is
 * responsible for serialising it (e.g. by holding the kernel mapper lock
 * around mmio_map_phys / mmio_release / ioremap / iounmap).  So the order is
 * "mapper lock, then pool lock, then frame-allocator lock", never reversed.
 */
#ifndef MM_MMIO_H
#define MM_MMIO_H

#include <mm/frame.h>
#include <mm/layout.h>
#include <mm/paging.h>
#include <mm/spinlock.h>
#include <mm/types.h>

/* MMIO_POOL_BASE, MMIO_POOL_END and MMIO_POOL_SIZE are in mm/layout.h. */
#define MMIO_MIN_SIZE    PAGE_SIZE                       /* order 0 */
#define MMIO_MAX_ORDER   18u                             /* 1 GiB */
#define MMIO_NR_ORDERS   (MMIO_MAX_ORDER + 1u)
#define MMIO_MAX_SIZE    (PAGE_SIZE << MMIO_MAX_ORDER)
#define MMIO_NR_ROOTS    (MMIO_POOL_SIZE / MMIO_MAX_SIZE) /* 1024 */
/* Hash of allocated blocks: up to 512 frames of 512 bucket heads. */
#define MMIO_HASH_SEG_BUCKETS (PAGE_SIZE / sizeof(void *))
#define MMIO_HASH_SEGS        512u

/* Leaf flags of every MMIO mapping: present, writable, cache-disable,
 * write-through, no-execute, global. */
#define MMIO_PTE_FLAGS   PTE_MMIO

/*
 * One node of the split tree (see mm/mmio.c).  Nodes live in frames taken
 * from the pool's frame allocator, except the 1024 roots, which live in
 * struct mmio_pool.  Opaque to users.
 *
 * 32 bytes, so that a node and its buddy (stored side by side) share one
 * 64-byte cache line: release reads the leaf and its buddy with a single
 * miss.  To fit, the address is kept as a page index within the pool and
 * the mapping record as one packed word (see mm/mmio.c).
 */
struct mmio_node {
    struct mmio_node *parent;        /* NULL for a root */
    uint32_t page;                   /* start: MMIO_POOL_BASE + page * 4 KiB */
    uint8_t order;                   /* block size = 4 KiB << order */
    uint8_t kind;                    /* enum mmio_node_kind in mmio.c */
    uint8_t busy;                    /* a map or unmap is in progress */
    uint8_t reserved;
    union {
        struct mmio_node *child[2];  /* kind inner: lower, upper half */
        struct {                     /* kind free: per-order free list */
            struct mmio_node *prev, *next;
        } link;
        struct {                     /* kind allocated */
            struct mmio_node *hnext; /* chain in the hash bucket */
            uint64_t mapping;        /* mapped pages and top table; 0: none */
        } use;
    } u;
};

/*
 * The pool.  Static storage is fine (mmio_pool_global() is one); all
 * fields are protected by `lock`.
 */
struct mmio_pool {
    mm_spinlock_t lock;
    struct frame_allocator *fa;              /* source of node frames */
    bool free_tables;                        /* passed to pt_unmap_range */
    uint32_t nonempty;                       /* bit k: free_head[k] != NULL */
    struct mmio_node *free_head[MMIO_NR_ORDERS];
    uint64_t free_count[MMIO_NR_ORDERS];
    uint64_t alloc_count;                    /* allocated blocks */
    uint64_t alloc_bytes;
    void *partial;                           /* node frames with free slots */
    uint64_t free_slots;                     /* free node slots in them */
    uint64_t node_frames;                    /* node frames held */
    uint64_t nodes_in_use;                   /* dynamic nodes in the trees */
    /* Allocated blocks by address: a linear hash table (see mmio.c). */
    struct mmio_node **hash_seg[MMIO_HASH_SEGS];   /* frames of bucket heads */
    uint64_t hash_low;                       /* buckets at the start of this round */
    uint64_t hash_split;                     /* next bucket to split, < hash_low */
    uint64_t hash_frames;                    /* segments allocated */
    struct mmio_node root[MMIO_NR_ROOTS];    /* one per 1 GiB of the pool */
};

/* A block handed out by mmio_create: va aligned to size, size a power of
 * two from 4 KiB to 1 GiB. */
struct mmio_space {
    virt_addr_t va;
    uint64_t size;
};

struct mmio_stats {
    uint64_t free_blocks[MMIO_NR_ORDERS];   /* free blocks of each order */
    uint64_t free_bytes;
    uint64_t alloc_blocks;                   /* blocks handed out */
    uint64_t alloc_bytes;
    uint64_t node_frames;                    /* frames held for nodes */
    uint64_t hash_frames;                    /* frames of the address hash */
    uint64_t nodes_in_use;                   /* dynamic nodes in the trees */
    uint64_t node_slots_free;                /* unused slots in those frames */
};

/*
 * Make p the whole range as MMIO_NR_ROOTS free 1 GiB blocks.  Bookkeeping
 * frames (nodes, hash buckets) come from fa one 4 KiB frame at a time and
 * go back to it as soon as they are empty, so a pool with nothing
 * allocated holds no frame at all.
 * Unmapping frees page tables left empty (p->free_tables, true after
 * init): a kernel whose top tables share the MMIO range's level-3 tables
 * must set it to false.  fa must be able to free (fa->free not NULL): the
 * pool hands frames back as blocks merge.  Returns 0 or -MM_EINVAL (NULL
 * argument, or an allocator that cannot free).
 */
int mmio_pool_init(struct mmio_pool *p, struct frame_allocator *fa);

/* The kernel's pool (initialised by the mm init code). */
struct mmio_pool *mmio_pool_global(void);

/*
 * Allocate a block of at least `size` bytes: size rounded up to a power of
 * two, at least 4 KiB.  *out gets the block (va aligned to out->size).
 * 0, -MM_EINVAL (size 0 or above 1 GiB), -MM_ENOMEM (no block large
 * enough, or no frame for the split nodes).  Nothing is mapped yet.
 */
int mmio_create(struct mmio_pool *p, uint64_t size, struct mmio_space *out);

/*
 * Map [space->va, space->va + length) to device memory [pa, pa + length)
 * with MMIO_PTE_FLAGS in `mapper`, using 2 MiB / 1 GiB pages where both
 * addresses allow.  pa 4 KiB aligned; length rounded up to 4 KiB and at
 * most space->size.  A space can be mapped once.  No TLB flush is needed:
 * a block comes out of the pool with no TLB entry on any CPU.
 * 0, -MM_EINVAL (no mapper, alignment, length 0 or too long, wrong size),
 * -MM_EFAULT (va outside the pool), -MM_ENOENT (space not allocated),
 * -MM_EEXIST (already mapped), -MM_EBUSY (another map/release of it in
 * progress), and the errors of pt_map_range (-MM_ENOMEM, -MM_EEXIST,
 * -MM_EPERM).
 */
int mmio_map_phys(struct mmio_pool *p, const struct mmio_space *space,
                  struct pt_mapper *mapper, phys_addr_t pa, uint64_t length);

/*
 * Unmap whatever mmio_map_phys mapped in the space (mapper must be the one
 * used to map it), flush the TLB of every CPU with one token (a single
 * shootdown for the whole range), then give the block back and merge it
 * with its free buddies.  mapper may be NULL when
 * nothing was mapped.  0, -MM_EFAULT (va outside the pool), -MM_EINVAL
 * (misaligned, wrong size, other mapper), -MM_ENOENT (not allocated, e.g.
 * released twice), -MM_EBUSY, -MM_EPERM (read-only mapper).
 */
int mmio_release(struct mmio_pool *p, const struct mmio_space *space,
                 struct pt_mapper *mapper);

/*
 * Map `size` bytes of device memory at pa (any alignment) and return the
 * kernel address of pa itself (its offset within the page is kept), or
 * NULL on failure (one log line says why).  Undo with mmio_iounmap.
 */
void *mmio_ioremap(struct mmio_pool *p, struct pt_mapper *mapper,
                   phys_addr_t pa, uint64_t size);
/* Undo mmio_ioremap; va is the pointer it returned (any address inside
 * its first page).  Errors as mmio_release. */
int mmio_iounmap(struct mmio_pool *p, struct pt_mapper *mapper, void *va);

/* Counts of free blocks per order (out has MMIO_NR_ORDERS entries). */
void mmio_pool_free_counts(struct mmio_pool *p, uint64_t out[MMIO_NR_ORDERS]);
void mmio_pool_stats(struct mmio_pool *p, struct mmio_stats *out);
/* Print free blocks per size and the bookkeeping through mm_printf. */
void mmio_pool_dump(struct mmio_pool *p);
/*
 * Walk every tree and check the invariants (links, orders, addresses, no
 * two free buddies left unmerged, list counts).  O(blocks); for tests.
 * Returns 0, or panics naming the broken invariant.
 */
int mmio_pool_check(struct mmio_pool *p);

#endif
