/*
 * mm/mmio.h - the MMIO pool: kernel virtual address space for device
 * memory, handed out in power-of-two blocks, and ioremap on top of it.
 *
 * The pool owns [MMIO_POOL_BASE, MMIO_POOL_END), 1 TiB of kernel virtual
 * addresses, as a VA-range allocator (mm/vrange.h) of blocks from 4 KiB
 * (order 0) to 1 GiB (order MMIO_MAX_ORDER), each aligned to its size.
 * After init the pool is 1024 free 1 GiB blocks, and releasing everything
 * gives back exactly those.
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
 * Locking: every function may be called from any CPU.  The pool's state
 * is its vrange, under the vrange's spinlock (interrupts off while held);
 * the only lock taken inside that is the frame allocator's.  The vrange
 * lock is never held while the page-table mapper runs: the caller owns
 * the mapper and serialises it (e.g. by holding the kernel mapper lock
 * around mmio_map_phys / mmio_release / ioremap / iounmap).  So the order
 * is "mapper lock, then vrange lock, then frame-allocator lock".
 */
#ifndef MM_MMIO_H
#define MM_MMIO_H

#include <mm/frame.h>
#include <mm/layout.h>
#include <mm/paging.h>
#include <mm/types.h>
#include <mm/vrange.h>

/* MMIO_POOL_BASE, MMIO_POOL_END and MMIO_POOL_SIZE are in mm/layout.h. */
#define MMIO_MIN_SIZE    VRANGE_MIN_SIZE                 /* order 0 */
#define MMIO_MAX_ORDER   VRANGE_MAX_ORDER                /* 1 GiB */
#define MMIO_NR_ORDERS   VRANGE_NR_ORDERS
#define MMIO_MAX_SIZE    VRANGE_MAX_SIZE
#define MMIO_NR_ROOTS    VRANGE_NR_ROOTS(MMIO_POOL_SIZE)  /* 1024 */

/* Leaf flags of a device mapping (MM_CACHE_UC): present, writable,
 * cache-disable, write-through, no-execute, global. */
#define MMIO_PTE_FLAGS        PTE_MMIO
/* Leaf flags of a MM_CACHE_WB_RO mapping: present, no-execute, global;
 * write-back, read-only. */
#define MMIO_PTE_FLAGS_WB_RO  PTE_KERNEL_RO
/* Leaf flags of a MM_CACHE_WC mapping: present, writable, no-execute,
 * global, PWT alone: PAT entry 1, write-combining once mm_pat_init_cpu
 * has run (include/mm/pat.h). */
#define MMIO_PTE_FLAGS_WC     (PTE_PRESENT | PTE_WRITE | PTE_PWT | PTE_NX | PTE_GLOBAL)

/* How mmio_ioremap_mode maps. */
enum mm_cache_mode {
    MM_CACHE_UC,        /* uncached, writable: device registers */
    MM_CACHE_WB_RO,     /* write-back, read-only: firmware tables in RAM */
    MM_CACHE_WC,        /* write-combining, writable: framebuffers; needs
                         * mm_pat_init_cpu (refused before) */
};

/*
 * The pool.  Static storage is fine (mmio_pool_global() is one).  The
 * blocks are `vr` (its lock protects them); free_tables and phys_bits are
 * set by mmio_pool_init and only read afterwards.
 */
struct mmio_pool {
    struct vrange vr;
    bool free_tables;                        /* passed to pt_unmap_range */
    unsigned phys_bits;                      /* CPU physical-address width */
    struct vrange_node root[MMIO_NR_ROOTS];  /* the vrange's roots */
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
 * allocated holds no frame at all.  Reads the CPU's physical-address
 * width (arch_phys_addr_bits) once: no mapping may reach 2^width.
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
 * most space->size; pa + length at most 2^(CPU physical-address width).
 * A space can be mapped once.  No TLB flush is needed: a block comes out
 * of the pool with no TLB entry on any CPU.
 * 0, -MM_EINVAL (no mapper, alignment, length 0 or too long, beyond the
 * physical-address width, wrong size), -MM_EFAULT (va outside the pool),
 * -MM_ENOENT (space not allocated), -MM_EEXIST (already mapped), -MM_EBUSY
 * (another map/release of it in progress), and the errors of pt_map_range
 * (-MM_ENOMEM, -MM_EEXIST, -MM_EPERM).
 */
int mmio_map_phys(struct mmio_pool *p, const struct mmio_space *space,
                  struct pt_mapper *mapper, phys_addr_t pa, uint64_t length);

/*
 * Unmap whatever mmio_map_phys mapped in the space (mapper must be the one
 * used to map it), flush the TLB of every CPU with one token (a single
 * shootdown for the whole range), then give the block back and merge it
 * with its free buddies.  mapper may be NULL when nothing was mapped.
 * 0, -MM_EFAULT (va outside the pool), -MM_EINVAL (misaligned, size 0 or
 * not the block's, other mapper), -MM_ENOENT (not allocated, e.g.
 * released twice), -MM_EBUSY, -MM_EPERM (read-only mapper).
 */
int mmio_release(struct mmio_pool *p, const struct mmio_space *space,
                 struct pt_mapper *mapper);

/*
 * Map `size` bytes of physical memory at pa (any alignment) in mode `mode`
 * and return the kernel address of pa itself (its offset within the page
 * is kept), or NULL on failure (one log line says why: size 0 or above
 * 1 GiB minus the offset, a range reaching 2^(physical-address width), an
 * unknown mode, or the errors of mmio_create / mmio_map_phys).
 * MM_CACHE_UC maps with MMIO_PTE_FLAGS, MM_CACHE_WB_RO with
 * MMIO_PTE_FLAGS_WB_RO.  Undo with mmio_iounmap.
 */
void *mmio_ioremap_mode(struct mmio_pool *p, struct pt_mapper *mapper, phys_addr_t pa,
                        uint64_t size, enum mm_cache_mode mode);
/* mmio_ioremap_mode(p, mapper, pa, size, MM_CACHE_UC). */
void *mmio_ioremap(struct mmio_pool *p, struct pt_mapper *mapper,
                   phys_addr_t pa, uint64_t size);
/*
 * Undo mmio_ioremap / mmio_ioremap_mode; va must be exactly the pointer it
 * returned.  -MM_EINVAL (another address, even inside the same page) and
 * the errors of mmio_release.
 */
int mmio_iounmap(struct mmio_pool *p, struct pt_mapper *mapper, void *va);

/* Counts of free blocks per order (out has MMIO_NR_ORDERS entries). */
void mmio_pool_free_counts(struct mmio_pool *p, uint64_t out[MMIO_NR_ORDERS]);
void mmio_pool_stats(struct mmio_pool *p, struct mmio_stats *out);
/* Print free blocks per size and the bookkeeping through mm_printf. */
void mmio_pool_dump(struct mmio_pool *p);
/*
 * Walk every tree and check the invariants (vrange_check: links, orders,
 * addresses, no two free buddies left unmerged, list counts).  O(blocks);
 * for tests.  Returns 0, or panics naming the broken invariant.
 */
int mmio_pool_check(struct mmio_pool *p);

#endif
