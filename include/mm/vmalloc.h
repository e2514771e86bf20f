/*
 * mm/vmalloc.h - virtually contiguous kernel memory: mm_vmalloc (fresh
 * frames, not physically contiguous), mm_vmap (frames the caller has) and
 * mm_vfree, in [MM_VMALLOC_BASE, MM_VMALLOC_END) (mm/layout.h, slot 324).
 *
 * Areas.  A struct vmalloc_space is a VA-range allocator (mm/vrange.h)
 * over one kernel range plus the frame allocator that feeds it.  An area
 * of n pages takes one power-of-two block of at least n + 1 pages (n + 2
 * with VMALLOC_PLACE_STACK) and maps its n pages inside the block; every
 * other page of the block stays unmapped, so each area has at least one
 * unmapped guard page after it (and, for stacks, before it): an overrun
 * faults instead of reaching the next area.  The block's vrange tag
 * records the area (page count, placement, whether the frames are the
 * area's own, the frame list); nothing else is kept per area.
 *
 * All or nothing.  Frames, the frame list and the block are taken before
 * anything is mapped; running out anywhere returns -MM_ENOMEM with every
 * frame, page table and the block given back.  A free unmaps the whole
 * area with one page-table call, flushes it with one token (one
 * shootdown to the other CPUs), and only then gives back the block and
 * the frames: no CPU can still reach a frame when it is reused.
 *
 * Errors: bad input returns a negative MM_E* code (NULL for the pointer
 * calls) and prints exactly one log line; running out returns -MM_ENOMEM
 * (one log line).  Nothing changes on failure.
 *
 * Locking.  The block and its tag are under the vrange's lock; an area is
 * mapped and unmapped with its block claimed (vrange_claim), the vrange
 * lock dropped, and the kernel mapper lock held (kmapper_lock).  Frames
 * are taken and given back with neither held.  So the order is "kernel
 * mapper, then vrange, then frame allocator", as for the MMIO pool.  Call
 * with interrupts enabled, never from an interrupt handler, and not while
 * this CPU holds the kernel mapper lock (-MM_EPERM): a free waits for a
 * TLB shootdown.
 */
#ifndef MM_VMALLOC_H
#define MM_VMALLOC_H

#include <mm/frame.h>
#include <mm/layout.h>
#include <mm/paging.h>
#include <mm/types.h>
#include <mm/vrange.h>

#define VMALLOC_SIZE       (MM_VMALLOC_END - MM_VMALLOC_BASE)          /* 512 GiB */
#define VMALLOC_NR_ROOTS   VRANGE_NR_ROOTS(VMALLOC_SIZE)
/* The largest area: its block (area + one guard page) is at most 1 GiB. */
#define VMALLOC_MAX_SIZE   (VRANGE_MAX_SIZE - PAGE_SIZE)
/* Leaf flags of a vmalloc page: present, writable, no-execute, global. */
#define VMALLOC_PTE_FLAGS  PTE_KERNEL_RW
/* The user word of an area (vmalloc_area_create) is below this. */
#define VMALLOC_USER_WORD_LIMIT 2048u

_Static_assert(MM_KSTACK_END - MM_KSTACK_BASE == VMALLOC_SIZE,
               "the kernel-stack range has as many roots as the vmalloc range");

/* Where an area sits in its block. */
enum vmalloc_place {
    VMALLOC_PLACE_START,     /* at the start: the guard is every page after it */
    VMALLOC_PLACE_STACK,     /* one page below the block's end: a guard page
                                above it, the rest of the block below it */
};

/* A range and its allocator (static storage; vmalloc_space_global() is
 * the kernel's).  fa gives the areas' frames and the vrange's bookkeeping. */
struct vmalloc_space {
    struct vrange vr;
    struct frame_allocator *fa;
    struct vrange_node root[VMALLOC_NR_ROOTS];
};

/* One area, as vmalloc_area_create made it (decoded from the block's tag). */
struct vmalloc_area {
    virt_addr_t block_va;       /* the vrange block */
    uint64_t block_size;
    virt_addr_t va;             /* first mapped byte */
    uint64_t npages;            /* mapped 4 KiB pages */
    enum vmalloc_place place;
    bool owns_frames;           /* frames taken by create, freed by release */
    phys_addr_t list_pa;        /* first frame of the frame list, 0: none */
    unsigned user_word;         /* the creator's word (kernel stacks: registry slot) */
};

/*
 * Make vs the range [base, end) (1 GiB aligned, as many bytes as the
 * vmalloc range), empty; `name` appears in log lines; fa must be able to
 * free.  Nothing may be allocated in vs (re-initialising forgets areas).
 * 0 or -MM_EINVAL (logged).
 */
int vmalloc_space_init(struct vmalloc_space *vs, const char *name, uint64_t base, uint64_t end,
                       struct frame_allocator *fa);
/* The kernel's vmalloc space (set up by mm_init's vmalloc step). */
struct vmalloc_space *vmalloc_space_global(void);

/*
 * Create an area of npages pages (1 .. VMALLOC_MAX_SIZE / 4 KiB, or two
 * pages fewer for VMALLOC_PLACE_STACK) at `place` in vs, mapped in the
 * kernel table with leaf flags pte_flags (must have PTE_PRESENT and must
 * not be writable and executable).  frames NULL: fresh zeroed frames from
 * vs->fa, freed again by vmalloc_area_release; else frames[0..npages)
 * (page-aligned RAM of the direct map) are mapped and never freed here.
 * user_word < VMALLOC_USER_WORD_LIMIT is kept in the tag.  `fn` names the
 * public call in log lines.  0 and *out; -MM_EINVAL (logged), -MM_ENOMEM
 * (logged; everything given back), -MM_EPERM (this CPU holds the kernel
 * mapper lock; logged).
 */
int vmalloc_area_create(struct vmalloc_space *vs, const char *fn, uint64_t npages,
                        enum vmalloc_place place, const phys_addr_t *frames,
                        uint64_t pte_flags, unsigned user_word, struct vmalloc_area *out);
/*
 * Claim the area whose block starts at block_va and read it: the caller
 * then releases it (vmalloc_area_release) or ends the claim
 * (vmalloc_area_unclaim).  0; the errors of vrange_claim_at (one log line
 * from it); -MM_EBUSY (logged) for a block whose area is still being
 * created.
 */
int vmalloc_area_claim(struct vmalloc_space *vs, const char *fn, virt_addr_t block_va,
                       struct vmalloc_area *out);
void vmalloc_area_unclaim(struct vmalloc_space *vs, const struct vmalloc_area *a);
/*
 * Release a claimed area: unmap it (page tables left empty are freed),
 * flush every CPU with one token, then free the block and, if the area
 * owns them, its frames and frame list.  0, or -MM_EPERM (this CPU holds
 * the kernel mapper lock) / an unmap error (someone changed the area's
 * entries): logged, the claim ended, the area kept.
 */
int vmalloc_area_release(struct vmalloc_space *vs, const char *fn, const struct vmalloc_area *a);

/*
 * The calls on an instance.  vmalloc_alloc: size (rounded up to pages) in
 * 1 .. VMALLOC_MAX_SIZE, zeroed RW+NX pages; *out is the first byte.
 * vmalloc_map: frames[0..n) mapped with prot (MM_PROT_READ / WRITE / EXEC;
 * WRITE|EXEC, USER, SHARED and WX_OK refused), n in 1 .. VMALLOC_MAX_SIZE
 * / 4 KiB.  vmalloc_free: va exactly as returned (interior, foreign,
 * misaligned or already freed pointers are refused: -MM_EINVAL,
 * -MM_ENOENT, -MM_EFAULT, with one log line).  Errors as above.
 */
int vmalloc_alloc(struct vmalloc_space *vs, uint64_t size, void **out);
int vmalloc_map(struct vmalloc_space *vs, const phys_addr_t *frames, uint64_t n, unsigned prot,
                void **out);
int vmalloc_free(struct vmalloc_space *vs, void *va);

/*
 * The kernel's: mm_vmalloc(size) returns the area or NULL (size 0, above
 * VMALLOC_MAX_SIZE, out of memory: one log line); mm_vmap(frames, n, prot)
 * the same for the caller's frames, prot as vmalloc_map; mm_vfree(va)
 * returns 0 or the errors of vmalloc_free.
 */
void *mm_vmalloc(uint64_t size);
void *mm_vmap(const phys_addr_t *frames, uint64_t n, unsigned prot);
int mm_vfree(void *va);

struct vmalloc_stats {
    uint64_t areas;             /* blocks handed out */
    uint64_t block_bytes;       /* their total size (areas + guards) */
    uint64_t bookkeeping_frames;    /* the vrange's node and hash frames */
};
void vmalloc_stats(struct vmalloc_space *vs, struct vmalloc_stats *out);
/* vrange_check of the space: 0, or panics naming the broken invariant. */
int vmalloc_check(struct vmalloc_space *vs);

#endif
