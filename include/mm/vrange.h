/*
 * mm/vrange.h - a kernel virtual-address range allocator: a buddy system
 * of naturally aligned power-of-two blocks (4 KiB .. 1 GiB) over one range
 * [base, end) of kernel virtual addresses.
 *
 * It knows nothing about page tables.  It hands out blocks, takes them
 * back and merges them with their free buddies at once, so with nothing
 * allocated the range is again its (end - base) / 1 GiB free 1 GiB blocks.
 * Every operation costs O(VRANGE_MAX_ORDER) steps, whatever the number of
 * blocks.  It has no heap: bookkeeping lives in 4 KiB frames taken from a
 * struct frame_allocator and given back as soon as they are empty, plus
 * one node per 1 GiB of the range that the caller provides.
 *
 * Each instance (the MMIO pool, vmalloc, kernel stacks) is its own struct
 * vrange with its own lock; nothing is global.
 *
 * Users that map a block outside the lock keep two things with it:
 *   - a 64-bit tag, 0 when the block is handed out, that only the user
 *     interprets (the MMIO pool records there what it mapped);
 *   - a claim: vrange_claim() (or vrange_release() of a tagged block)
 *     gives one caller the block for work outside the lock; until it ends
 *     with vrange_unclaim() or vrange_free_claimed(), every other call on
 *     the block gets -MM_EBUSY.
 *
 * Errors: bad input returns a negative MM_E* code, prints one log line
 * (naming the call and the instance) and changes nothing; running out of
 * blocks or of bookkeeping frames returns -MM_ENOMEM and changes nothing.
 *
 * Locking: every call takes vr->lock (interrupts off while held) and may
 * be made from any CPU.  The only lock taken inside it is the frame
 * allocator's, so the order is "vrange lock, then frame-allocator lock".
 */
#ifndef MM_VRANGE_H
#define MM_VRANGE_H

#include <mm/frame.h>
#include <mm/spinlock.h>
#include <mm/types.h>

#define VRANGE_MAX_ORDER   18u                               /* 1 GiB */
#define VRANGE_NR_ORDERS   (VRANGE_MAX_ORDER + 1u)
#define VRANGE_MIN_SIZE    PAGE_SIZE                         /* order 0 */
#define VRANGE_MAX_SIZE    (PAGE_SIZE << VRANGE_MAX_ORDER)
/* The largest range: node addresses are 32-bit page indices. */
#define VRANGE_MAX_RANGE   (UINT64_C(1) << (32 + PAGE_SHIFT))  /* 16 TiB */
/* Caller-provided root nodes for a range of `bytes` bytes. */
#define VRANGE_NR_ROOTS(bytes) ((bytes) / VRANGE_MAX_SIZE)
/* Address hash of allocated blocks: up to 512 frames of 512 bucket heads. */
#define VRANGE_HASH_SEG_BUCKETS (PAGE_SIZE / sizeof(void *))
#define VRANGE_HASH_SEGS        512u

/* vrange_release(): the block had a tag and is now claimed by the caller. */
#define VRANGE_CLAIMED     1

/*
 * One node of a split tree (see mm/vrange.c).  32 bytes, so a node and its
 * buddy, stored side by side, share one 64-byte cache line.  Opaque to
 * users; declared here only so that a caller can provide the roots.
 */
struct vrange_node {
    struct vrange_node *parent;        /* NULL for a root */
    uint32_t page;                     /* start: base + page * 4 KiB */
    uint8_t order;                     /* block size = 4 KiB << order */
    uint8_t kind;                      /* enum vrange_node_kind in vrange_impl.h */
    uint16_t reserved;
    union {
        struct vrange_node *child[2];  /* inner: lower, upper half */
        struct {                       /* free: per-order free list */
            struct vrange_node *prev, *next;
        } link;
        struct {                       /* allocated or claimed */
            struct vrange_node *hnext; /* chain in the hash bucket */
            uint64_t tag;              /* the user's word */
        } use;
    } u;
};

/* An instance.  All fields are protected by `lock`; read them through
 * vrange_stats(). */
struct vrange {
    mm_spinlock_t lock;
    const char *name;                          /* for log lines */
    uint64_t base, end;                        /* the range, 1 GiB aligned */
    struct frame_allocator *fa;                /* source of bookkeeping frames */
    uint32_t nonempty;                         /* bit k: free_head[k] != NULL */
    struct vrange_node *free_head[VRANGE_NR_ORDERS];
    uint64_t free_count[VRANGE_NR_ORDERS];
    uint64_t alloc_count, alloc_bytes;         /* allocated (and claimed) blocks */
    /* Node frames (mm/vrange_node.c). */
    void *partial;                             /* node frames with free pairs */
    uint64_t free_slots;                       /* free node slots in them */
    uint64_t node_frames, nodes_in_use;
    /* Allocated blocks by address: linear hash (mm/vrange_hash.c). */
    struct vrange_node **hash_seg[VRANGE_HASH_SEGS];
    uint64_t hash_low, hash_split, hash_frames;
    /* Step counts: tree levels walked, buddies merged, hash entries
     * visited, buckets split or merged. */
    uint64_t ops, steps, max_op_steps;
    uint64_t nroots;
    struct vrange_node *root;                  /* one per 1 GiB, caller's storage */
};

/* A block: va aligned to size, size a power of two from 4 KiB to 1 GiB. */
struct vrange_block {
    virt_addr_t va;
    uint64_t size;
};

struct vrange_stats {
    uint64_t free_blocks[VRANGE_NR_ORDERS];    /* free blocks of each order */
    uint64_t free_bytes;
    uint64_t alloc_blocks, alloc_bytes;         /* handed out (incl. claimed) */
    uint64_t node_frames;                       /* frames held for nodes */
    uint64_t hash_frames;                       /* frames of the address hash */
    uint64_t nodes_in_use;                      /* nodes below the roots */
    uint64_t node_slots_free;                   /* unused slots in node frames */
    uint64_t ops, steps, max_op_steps;          /* see struct vrange */
};

/*
 * Make vr the range [base, end) as free 1 GiB blocks.  base and end are
 * multiples of 1 GiB, base < end, end - base <= VRANGE_MAX_RANGE; `roots`
 * is storage for exactly nroots = VRANGE_NR_ROOTS(end - base) nodes that
 * lives as long as vr; fa must be able to free.  `name` appears in log
 * lines.  Returns 0 or -MM_EINVAL.
 */
int vrange_init(struct vrange *vr, const char *name, uint64_t base, uint64_t end,
                struct vrange_node *roots, uint64_t nroots, struct frame_allocator *fa);

/*
 * Allocate a block of at least `size` bytes (rounded up to a power of two,
 * at least 4 KiB), split from the smallest free block that holds it.  Its
 * tag is 0.  0 and *out, -MM_EINVAL (size 0 or
 * above 1 GiB), -MM_ENOMEM (no free block large enough, or no frame for
 * the bookkeeping).
 */
int vrange_alloc(struct vrange *vr, uint64_t size, struct vrange_block *out);

/*
 * Give back the allocated block blk (exactly as vrange_alloc returned it),
 * whatever its tag, and merge it with its free buddies.  0, -MM_EFAULT (va
 * outside the range), -MM_EINVAL (misaligned, size not the block's),
 * -MM_ENOENT (not an allocated block), -MM_EBUSY (claimed).
 */
int vrange_free(struct vrange *vr, struct vrange_block blk);

/*
 * Free blk if its tag is 0 (returns 0); otherwise claim it and return
 * VRANGE_CLAIMED with *tag set: the caller undoes what the tag records and
 * ends with vrange_free_claimed() (or vrange_unclaim() to keep it).
 * Errors as vrange_free.
 */
int vrange_release(struct vrange *vr, struct vrange_block blk, uint64_t *tag);

/* Claim the allocated block blk and read its tag.  0, or the errors of
 * vrange_free. */
int vrange_claim(struct vrange *vr, struct vrange_block blk, uint64_t *tag);

/* Claim the allocated block that starts at va, whatever its size, and
 * read it and its tag, in one hold of the lock (so nobody can free and
 * reuse it between the look-up and the claim).  Errors as vrange_find. */
int vrange_claim_at(struct vrange *vr, virt_addr_t va, struct vrange_block *out, uint64_t *tag);

/* End a claim of the block at va, storing `tag`.  A block at va that is
 * not claimed is a broken invariant (panic). */
void vrange_unclaim(struct vrange *vr, virt_addr_t va, uint64_t tag);

/* Free the claimed block at va (panics if it is not claimed). */
void vrange_free_claimed(struct vrange *vr, virt_addr_t va);

/* The allocated block that starts at va (any size) and its tag.  0, or
 * -MM_EFAULT, -MM_EINVAL (misaligned), -MM_ENOENT, -MM_EBUSY (claimed). */
int vrange_find(struct vrange *vr, virt_addr_t va, struct vrange_block *out, uint64_t *tag);

void vrange_stats(struct vrange *vr, struct vrange_stats *out);

/*
 * Walk every tree and check the invariants (links, orders, addresses, no
 * two free buddies left unmerged, list and hash contents, counts).
 * O(blocks); for tests.  Returns 0, or panics naming the broken invariant.
 */
int vrange_check(struct vrange *vr);

#endif
