/*
 * mm/cow.h - fork with copy-on-write: cloning an address space's user
 * half (mm_as_clone) and resolving the write faults that follow
 * (mm_cow_fault).  mm/cow.c implements both.
 *
 * What a clone shares.  Every owned frame (PTE_AS_OWNED, include/mm/aspace.h)
 * gets one more reference count (include/mm/frameref.h) and is mapped in
 * both address spaces:
 *   - a private writable page becomes copy-on-write in both: write-protected
 *     and marked PTE_AS_COW; the first write faults, and mm_cow_fault gives
 *     the writer a copy (or the frame itself when nobody else maps it any
 *     more);
 *   - a read-only page is shared as it is (no COW mark): mm_as_protect to
 *     writable later turns it into COW while it is shared;
 *   - a MM_PROT_SHARED page stays writable in both: the processes share it;
 *   - a frame mapped with mm_as_map_frame (device memory, a caller's
 *     frame) is mapped in the child too, with the same bits, uncounted.
 * Huge user leaves (2 MiB, 1 GiB).  mm_as never maps them, so a user half
 * never holds one unless someone edited its table behind mm_as's back; a
 * clone that meets one refuses (-MM_EINVAL, logged) before changing
 * anything and never walks it as a table.  Supporting them would mean
 * counting the head frame and copying at fault at their own size (or
 * splitting them); see the report that introduced this file.
 *
 * Frame allocators.  Address spaces that share frames must take their
 * frames from one pool (the same allocator, or allocators over the same
 * frames): the address space that drops the last count frees the frame to
 * its own allocator.
 *
 * Locking.  mm_as_clone holds the parent's lock throughout; the child is
 * not visible to anyone before it returns.  mm_cow_fault holds as->lock;
 * two CPUs faulting on one page of one address space are serialised by
 * it (the second finds the page writable: MM_COW_REUSED).  Two address
 * spaces faulting on one shared frame decide with the frame's count
 * (read under the count lock): a count of 1 means no other leaf maps the
 * frame, and only a clone of this address space (which needs as->lock)
 * could add one, so reusing it in place is safe; above 1, each copies,
 * and drops its count only after its own flush, so no sharer writes the
 * old frame in place while a CPU of another one may still read it.
 * Interrupts on; not from interrupt handlers.
 */
#ifndef MM_COW_H
#define MM_COW_H

#include <mm/aspace.h>

/* Page-fault error code bits (x86) that mm_cow_fault looks at. */
#define MM_PF_PRESENT 0x1u      /* protection fault, the page was present */
#define MM_PF_WRITE   0x2u      /* the access was a write */
#define MM_PF_USER    0x4u      /* from ring 3 (not required) */

/*
 * Create *child (as mm_as_create) holding a copy of parent's user half as
 * described above.  fa gives the child's frames (see "Frame allocators").
 * All or nothing: the child's tables are all taken before any entry is
 * written, and counts are added with a roll-back, so on failure the parent
 * is exactly as before (no write-protection left, no count changed) and
 * nothing is allocated.  The parent's write-protection is flushed once, by
 * one range token on the CPUs where the parent is loaded.
 * Returns 0, -MM_ENOMEM, -MM_EBUSY (a frame's count is at MM_FRAMEREF_MAX;
 * not logged: a resource limit), -MM_EINVAL (logged: child or fa NULL,
 * fa without free, child == parent, parent NULL or destroyed, a huge user
 * leaf in parent).
 */
int mm_as_clone(struct mm_as *child, struct mm_as *parent, struct frame_allocator *fa);

enum mm_cow_result {
    MM_COW_REUSED = 1,          /* made writable in place (or already was) */
    MM_COW_COPIED = 2,          /* new frame with a copy, old count dropped */
    MM_COW_NOT_COW = 3,         /* a real fault: the caller's to handle */
};

/*
 * Resolve a page fault at va in as with x86 error code error_code.  A
 * write (MM_PF_WRITE) to a present page (MM_PF_PRESENT) in the user half
 * whose leaf is marked PTE_AS_COW is resolved: MM_COW_REUSED when the
 * frame's count is 1 (the leaf becomes writable in place, no copy), else
 * MM_COW_COPIED (a new frame gets the contents, the leaf points at it,
 * writable, then the old frame loses a count, freed on the last).  A page
 * that is writable already (another CPU resolved it first, or a stale TLB
 * entry) gives MM_COW_REUSED too: the caller retries the access.  Anything
 * else is MM_COW_NOT_COW, with nothing changed.  -MM_ENOMEM when no frame
 * is left for the copy (nothing changed; the caller kills the process),
 * -MM_EINVAL (logged) for a NULL or destroyed as.
 */
int mm_cow_fault(struct mm_as *as, virt_addr_t va, uint64_t error_code);

/* The same for a page-aligned user va with as->lock held, as for a write
 * (mm/uaccess.c breaks COW before a copy to user with it). */
int mm_cow_fault_locked(struct mm_as *as, virt_addr_t va);

#endif
