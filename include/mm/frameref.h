/*
 * mm/frameref.h - reference counts of frames mapped into user address
 * spaces (mm/frameref.c).
 *
 * Who counts what.  A frame that an address space owns (a leaf with
 * PTE_AS_OWNED, include/mm/aspace.h) has a count: the number of such
 * leaves, over all address spaces, that map it.  Most frames are mapped
 * once, so a count of 1 is implicit and costs nothing: only frames mapped
 * more than once (after a clone) have an entry.  The same counts serve
 * the level-1 table frames that address spaces share after a clone
 * (include/mm/cow.h): a table's count is the number of level-2 entries
 * that point at it, and a frame's count is the number of leaves that map
 * it, a leaf in a shared table counting once.  Frames mapped with
 * mm_as_map_frame (device memory, frames a caller owns) are never counted.
 *
 * Storage and cost.  A radix tree over the page frame number, built from
 * 4 KiB frames taken lazily from a frame allocator and given back as soon
 * as they empty: a leaf frame holds 2048 16-bit counts (stored as count -
 * 1), one for each frame of an aligned 8 MiB block; a directory frame
 * holds 512 leaf pointers (4 GiB), a top directory frame 512 directory
 * pointers (2 TiB); a static root of 8 entries covers the direct map's 16
 * TiB.  Each pointer keeps, in its low 12 bits, how many of its children
 * are non-zero, so an emptied frame is freed at once.  Get, put and count
 * walk three levels: O(1).  Memory exists only for 8 MiB blocks that hold
 * a shared frame: at most one leaf per 8 MiB of RAM (0.05%), plus one
 * directory per 4 GiB and one per 2 TiB; nothing for RAM never shared.
 * The batch calls (for a clone) take the lock once per batch and walk
 * the tree once per run of frames in one 8 MiB block.
 *
 * Limit.  A count is at most MM_FRAMEREF_MAX; a get that would pass it
 * is refused with -MM_EBUSY (nothing changes), so a count never wraps.
 *
 * Locking.  One spinlock guards the whole tree (held for a few loads and
 * stores, plus a frame allocation when a new block is first shared).
 * Order: address-space lock, then this lock, then the frame allocator's
 * lock.  Its holder never waits for other CPUs.  Not for interrupt
 * handlers (as the address-space calls).
 */
#ifndef MM_FRAMEREF_H
#define MM_FRAMEREF_H

#include <mm/frame.h>
#include <mm/types.h>

/* The largest count: 2^16 mappings of one frame. */
#define MM_FRAMEREF_MAX UINT32_C(65536)

/*
 * One more mapping of the counted frame at pa (4 KiB aligned, below 16
 * TiB).  fa gives a metadata frame when the 8 MiB block is first shared
 * (while the tree is empty the first caller's fa is kept, and every
 * metadata frame goes back to it).  0, -MM_ENOMEM (no metadata frame),
 * -MM_EBUSY (the count is MM_FRAMEREF_MAX already), -MM_EINVAL (logged: pa
 * unaligned or too high, fa NULL); nothing changes on failure.
 */
int mm_frameref_get(phys_addr_t pa, struct frame_allocator *fa);

/*
 * One mapping fewer.  Returns the count left: 0 means the caller held the
 * last mapping and now frees the frame.  Never fails (a frame without an
 * entry has count 1).
 */
uint32_t mm_frameref_put(phys_addr_t pa);

/*
 * A batch of gets under one acquisition of the lock, for a clone: one
 * more count for the frame of every selected entry of entry[0 .. n - 1],
 * page-table entries (include/mm/paging.h) whose bits sel all are set,
 * the frame being the entry's PTE_ADDR_MASK bits (a frame met twice gets
 * two).  The entries may be a live table whose accessed/dirty bits the
 * MMU sets meanwhile; the caller keeps the other bits still.  All or
 * nothing: returns the number of counts added (>= 0), or -MM_ENOMEM,
 * -MM_EBUSY (as mm_frameref_get, not logged) or -MM_EINVAL (logged:
 * entry NULL, sel 0, fa NULL, a selected frame at or above 16 TiB) with
 * no count changed.
 */
int64_t mm_frameref_get_entries(const uint64_t *entry, unsigned n, uint64_t sel,
                                struct frame_allocator *fa);

/*
 * The reverse: one count fewer for the frame of every selected entry.
 * Returns how many of those frames lost their last count (their callers
 * free them; a roll-back of mm_frameref_get_entries expects 0).  entry
 * NULL or sel 0: logged, 0, nothing changes.
 */
unsigned mm_frameref_put_entries(const uint64_t *entry, unsigned n, uint64_t sel);

/* The count of a counted frame (1 when it has no entry). */
uint32_t mm_frameref_count(phys_addr_t pa);

/* Metadata frames the tree holds now (0 when nothing is shared). */
uint64_t mm_frameref_frames(void);

/*
 * Forget the whole tree without freeing anything: for host tests that
 * throw their simulated memory away between cases.  Never in a kernel.
 */
void mm_frameref_reset(void);

#endif
