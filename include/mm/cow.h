/*
 * mm/cow.h - fork with copy-on-write: cloning an address space's user
 * half (mm_as_clone) and resolving the write faults that follow
 * (mm_cow_fault).  mm/cow.c implements both.
 *
 * What a clone shares.  The clone copies only the upper levels of the
 * user half (the top, level-3 and level-2 tables): the child's level-2
 * entries point at the parent's level-1 tables, which both now share
 * ("on-demand fork", mm/cow_table.c).  Both level-2 entries lose
 * PTE_WRITE and carry PTE_AS_COW (on a level-2 entry: "the level-1 table
 * under me is shared copy-on-write"); x86 ANDs the write permission of
 * every level, so every page under a shared table is read-only for both,
 * whatever its leaf says.  A shared table frame has a reference count
 * (include/mm/frameref.h): the number of level-2 entries that point at
 * it.  The clone touches no leaf and counts no data frame: its cost is
 * one step per level-2 entry.
 * The first write (a fault, or mm_copy_to_user), and every change to a
 * page (mm_as_map_*, mm_as_unmap, mm_as_protect), under a shared table
 * first unshares it for this address space: when the table's count is 1
 * (the other sharers left) the level-2 entry just gets PTE_WRITE back;
 * otherwise the address space gets its own copy of the table, and only
 * then does each owned frame the table maps (PTE_AS_OWNED,
 * include/mm/aspace.h) get one more count.  From then on each page has
 * the meaning a per-page clone would have given it:
 *   - a private writable page is copy-on-write in every copy of the
 *     table: write-protected and marked PTE_AS_COW; the first write
 *     faults, and mm_cow_fault gives the writer a copy (or the frame
 *     itself when nobody else maps it any more);
 *   - a read-only page is shared as it is (no COW mark): mm_as_protect to
 *     writable later turns it into COW while it is shared;
 *   - a MM_PROT_SHARED page stays writable: the processes share it;
 *   - a frame mapped with mm_as_map_frame (device memory, a caller's
 *     frame) is mapped in both too, with the same bits, uncounted.
 * A frame's count is the number of level-1 leaves (in any table) that
 * map it: a leaf in a table shared by n address spaces counts once.
 * Accounting.  as->table_frames counts every level-1 table as reaches,
 * shared or not (so a clone's child has the parent's figure), and
 * as->owned_frames every owned leaf it reaches, shared tables included.
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
 * it (the second finds the page writable: MM_COW_REUSED).  Address spaces
 * that share a level-1 table each hold only their own lock: while it is
 * shared nobody writes the table except the idempotent write-protection
 * of an unsharing step (mm/cow_table.c explains why that is safe).  Two
 * address spaces faulting on one shared frame decide with the frame's
 * count (read under the count lock): a count of 1 means no other leaf
 * maps the frame, and the faulting leaf is in a table of this address
 * space alone (unshared first), so reusing it in place is safe; above 1,
 * each copies, and drops its count only after its own flush, so no sharer
 * writes the old frame in place while a CPU of another one may still
 * read it.
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
 * All or nothing: the child's upper tables are all taken before any
 * entry is written, and the shared tables' counts are added with a
 * roll-back, so on failure the parent is exactly as before (no
 * write-protection left, no count changed) and nothing is allocated.  The
 * parent's write-protection (its level-2 entries) is flushed once, by one
 * range token on the CPUs where the parent is loaded.
 * Returns 0, -MM_ENOMEM, -MM_EBUSY (a table's count is at MM_FRAMEREF_MAX:
 * 65536 address spaces share it; not logged: a resource limit),
 * -MM_EINVAL (logged: child or fa NULL, fa without free, child == parent,
 * parent NULL or destroyed, a huge user leaf in parent).
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
 * that is logically writable (its leaf has PTE_WRITE or PTE_AS_COW) is
 * COW work: under a shared level-1 table the table is unshared first (see
 * above); then a leaf marked PTE_AS_COW gives MM_COW_REUSED when the
 * frame's count is 1 (the leaf becomes writable in place, no copy), else
 * MM_COW_COPIED (a new frame gets the contents, the leaf points at it,
 * writable, then the old frame loses a count, freed on the last).  A page
 * that is writable already (another CPU resolved it first, a stale TLB
 * entry, or an unsharing that left its leaf writable) gives MM_COW_REUSED
 * too: the caller retries the access.  Anything else (a read-only page,
 * not present, not a write, outside the user half, a huge leaf) is
 * MM_COW_NOT_COW, with nothing changed.  -MM_ENOMEM when no frame is left
 * for the copy of the page or of the table, or a count is at its limit
 * (the caller kills the process): nothing the process can see changed (a
 * table that was unshared before the page's copy failed stays unshared,
 * which only the tables show), -MM_EINVAL (logged) for a NULL or
 * destroyed as.
 */
int mm_cow_fault(struct mm_as *as, virt_addr_t va, uint64_t error_code);

/* The same for a page-aligned user va with as->lock held, as for a write
 * (mm/uaccess.c breaks COW before a copy to user with it). */
int mm_cow_fault_locked(struct mm_as *as, virt_addr_t va);

/* ------------------------------------ for the library's own files */

/* A level-2 entry pointing at a level-1 table shared copy-on-write:
 * present, not a huge leaf, no PTE_WRITE, PTE_AS_COW (mm/cow_table.c). */
static inline bool mm_cow_table_entry_shared(uint64_t pde)
{
    return (pde & (PTE_PRESENT | PTE_HUGE | PTE_WRITE | PTE_AS_COW)) ==
           (PTE_PRESENT | PTE_AS_COW);
}

/*
 * Before anything writes the level-1 table that maps user page va of as
 * (as->lock held): if that table is shared, make it as's own (count 1:
 * PTE_WRITE back on the level-2 entry; else a private copy, with a count
 * for each owned frame and the private writable leaves made COW), and
 * flush.  0 (also when nothing is shared there), or -MM_ENOMEM (no frame
 * for the copy or the count tree, or a frame's count at its limit) with
 * nothing changed.  mm/cow_table.c.
 */
int mm_cow_table_unshare_locked(struct mm_as *as, virt_addr_t va);

/*
 * as lets go of the level-1 table that its level-2 entry pde points at
 * (as is being destroyed: loaded nowhere): a shared table loses a count;
 * the last holder puts a count of every owned frame it maps (freeing
 * those that reach 0) and frees it.  Returns the owned leaves of the
 * table (for as->owned_frames).  mm/cow_table.c.
 */
uint64_t mm_cow_table_release(struct mm_as *as, uint64_t pde);

/*
 * Give the entry *w of as (value e: a COW leaf, or a level-2 entry of a
 * table as no longer shares) PTE_WRITE and take PTE_AS_COW away, keeping
 * any accessed bit an MMU sets meanwhile, then flush va's page: on as's
 * CPUs when `everywhere`, else on this CPU only.  as->lock held.
 * mm/cow_table.c.
 */
void mm_cow_entry_make_writable_locked(struct mm_as *as, virt_addr_t va, uint64_t *w,
                                       uint64_t e, bool everywhere);

#endif
