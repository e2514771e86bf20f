/*
 * mm/aspace.h - user address spaces: a top table whose kernel half is the
 * kernel's and whose user half belongs to one process.
 *
 * Kernel half.  mm_init (and, on Path B, mm_kernel_half_prepare) gives
 * every top-level slot that kernel mappings will ever use its table: the
 * direct map's slots, the MMIO pool, the ranges reserved for vmalloc and
 * kernel stacks, the image (include/mm/layout.h).  No kernel mapping
 * creates a top-level entry afterwards (the kernel mapper refuses it), so
 * the kernel half that mm_as_create copies into a new top table never goes
 * stale: kernel mappings made later change only lower-level tables, which
 * every top table shares.
 *
 * User half.  Slots 0..255 of each address space, [MM_USER_BASE,
 * MM_USER_END).  The calls below take protection as MM_PROT_* bits, never
 * raw PTE bits (mm_prot_to_pte is the one conversion), refuse anything
 * outside the user half, and follow the mapper's conventions: validate
 * first, change nothing on failure, -MM_ENOMEM when frames run out.
 * Frames that an address space allocated itself (mm_as_map_zeroed) are
 * freed by mm_as_unmap / mm_as_destroy; frames mapped with mm_as_map_frame
 * (device memory, frames the caller owns) never are.
 *
 * Targeted shootdown.  Each address space keeps the set of CPUs on which it
 * is loaded (a CPU enters the set before it loads the table and leaves it
 * after it loads another one; without PCIDs that CR3 load drops every
 * user-half translation).  A change to the user half flushes this CPU if it
 * is in the set and sends the platform's shootdown only to the other CPUs
 * in it: no IPI at all when the address space runs only here.
 *
 * Frame ownership and sharing.  A leaf that maps a frame the address space
 * allocated itself, or got from a clone of one that did, carries
 * PTE_AS_OWNED, a bit the MMU ignores (bit 9, available to software).
 * Such a frame is counted (include/mm/frameref.h): mm_as_unmap and
 * mm_as_destroy drop one count per owned leaf and free the frame on the
 * last drop, after the flush.  Two more software bits: PTE_AS_SHARED
 * (bit 10) marks a mapping made with MM_PROT_SHARED, which a clone keeps
 * writable in both address spaces; PTE_AS_COW (bit 11) marks a page that
 * is logically writable but write-protected because its frame is shared
 * after a clone (include/mm/cow.h resolves the write fault).  A counted
 * frame whose count is above 1 is never mapped writable without
 * PTE_AS_SHARED.  After a clone the level-1 tables themselves are shared
 * (include/mm/cow.h): a level-2 entry without PTE_WRITE and with
 * PTE_AS_COW makes every page under it read-only while its leaves keep
 * their logical bits (a private writable page there is writable for
 * nobody until the table is unshared), and every edit of a page under
 * such a table first unshares it.
 *
 * Locking.  Each address space has a spinlock for its user-half tables;
 * the kernel half is the kernel mapper's.  Order: address-space lock, then
 * the buddy lock.  The lock leaves interrupts on, because its holder may
 * wait for a shootdown that other CPUs acknowledge in an interrupt: call
 * these functions with interrupts enabled and never from an interrupt
 * handler.  mm_as_switch takes no lock.  Calls on an address space that has
 * been destroyed are refused; a destroy that races with another call on
 * the same address space, or with a switch to it, is a caller bug (the
 * owner of a process destroys its address space once nothing can use it).
 */
#ifndef MM_ASPACE_H
#define MM_ASPACE_H

#include <mm/frame.h>
#include <mm/layout.h>
#include <mm/paging.h>
#include <mm/spinlock.h>
#include <mm/types.h>

/* The software bit of a leaf whose frame the address space owns. */
#define PTE_AS_OWNED   (UINT64_C(1) << 9)
/* A MM_PROT_SHARED mapping: stays writable and shared across a clone. */
#define PTE_AS_SHARED  (UINT64_C(1) << 10)
/* Copy-on-write: logically writable, write-protected while shared. */
#define PTE_AS_COW     (UINT64_C(1) << 11)
/* The software bits of a user leaf. */
#define PTE_AS_SOFT    (PTE_AS_OWNED | PTE_AS_SHARED | PTE_AS_COW)

/* Protection of a user mapping. */
#define MM_PROT_READ   0x1u
#define MM_PROT_WRITE  0x2u     /* implies read on x86 */
#define MM_PROT_EXEC   0x4u
#define MM_PROT_USER   0x8u     /* ring 3 may use it; required in the user half */
#define MM_PROT_WX_OK  0x10u    /* allow WRITE|EXEC together (refused otherwise) */
#define MM_PROT_SHARED 0x20u    /* shared mapping: stays writable across mm_as_clone */

/*
 * The conversion from MM_PROT_* to leaf bits: PRESENT always, WRITE from
 * MM_PROT_WRITE, USER from MM_PROT_USER, NX unless MM_PROT_EXEC; never
 * GLOBAL (user translations must leave the TLB on a CR3 load).
 * MM_PROT_SHARED is accepted and gives no hardware bit (the address-space
 * calls turn it into PTE_AS_SHARED).  Returns 0 for a prot with unknown bits, without READ/WRITE/EXEC, or WRITE|EXEC
 * without MM_PROT_WX_OK.
 */
uint64_t mm_prot_to_pte(unsigned prot);

struct mm_as {
    phys_addr_t top_pa;                   /* the level-4 table (CR3) */
    struct frame_allocator *fa;           /* tables and zeroed frames */
    mm_spinlock_t lock;                   /* the user-half tables */
    volatile mm_cpumask_t cpus;           /* CPUs where it is loaded */
    /* Both over every table the address space reaches, level-1 tables it
     * shares with others after a clone included (each sharer counts them). */
    uint64_t owned_frames;                /* leaves with PTE_AS_OWNED (counted) */
    uint64_t table_frames;                /* user-half tables, top excluded */
    bool dead;                            /* destroyed: every call refused */
};

/*
 * Create an address space: a new top table with an empty user half and the
 * kernel half copied from the kernel table.  fa gives every frame it will
 * use (mm_buddy_frames() in a kernel).  Returns 0 or -MM_ENOMEM (nothing
 * allocated) / -MM_EINVAL (logged: as NULL, no kernel table yet, the kernel
 * half not fixed yet (mm_init / mm_kernel_half_prepare), fa NULL or without
 * free).
 */
int mm_as_create(struct mm_as *as, struct frame_allocator *fa);

/*
 * Destroy it: unmap the whole user half, free its tables and the top
 * table, and drop one count of every owned frame it maps (the last drop
 * frees the frame).  It must not be loaded on any CPU (-MM_EBUSY,
 * logged, nothing changed).  -MM_EINVAL (logged) for a destroyed one.
 */
int mm_as_destroy(struct mm_as *as);

/*
 * Load `as` on this CPU (CR3), or the kernel table when as is NULL; the
 * previous address space of this CPU leaves its CPU set.  Interrupts must
 * be off or the caller must not migrate.  Switching to a destroyed
 * address space panics (a use after free).
 */
void mm_as_switch(struct mm_as *as);
/* The address space loaded on this CPU (NULL: the kernel table). */
struct mm_as *mm_as_current(void);

/*
 * User-half mappings, one 4 KiB page each; va page-aligned in
 * [MM_USER_BASE, MM_USER_END).  Errors: -MM_EINVAL (logged: unaligned,
 * outside the user half, non-canonical, page 0, bad prot, prot without
 * MM_PROT_USER), -MM_EEXIST (already mapped), -MM_ENOENT (nothing mapped),
 * -MM_ENOMEM; nothing changes on failure.  Each call flushes what it
 * changed on the CPUs of the address space before it returns.
 * -MM_ENOMEM also for mm_as_unmap and mm_as_protect when the page's
 * level-1 table is shared after a clone and no frame is left to unshare it.
 * MM_PROT_SHARED in prot makes a shared mapping (PTE_AS_SHARED); for
 * mm_as_protect it must match the mapping's (else -MM_EINVAL, logged).
 * mm_as_protect of a page whose owned frame is shared (count above 1, or
 * marked COW) to a writable prot keeps it write-protected and marks it
 * COW; to a prot without MM_PROT_WRITE it clears the COW mark.
 */
int mm_as_map_zeroed(struct mm_as *as, virt_addr_t va, unsigned prot);    /* a fresh zeroed frame */
int mm_as_map_frame(struct mm_as *as, virt_addr_t va, phys_addr_t pa, unsigned prot); /* caller's frame */
int mm_as_unmap(struct mm_as *as, virt_addr_t va);
int mm_as_protect(struct mm_as *as, virt_addr_t va, unsigned prot);
/* 0 and *pa_out (pa of va itself) and *prot_out (MM_PROT_READ always,
 * WRITE (also for a COW page: logically writable), EXEC, USER as mapped,
 * SHARED, WX_OK with WRITE|EXEC, so it can be passed back to
 * mm_as_protect), or -MM_ENOENT / -MM_EINVAL.  Both outputs may be
 * NULL.  WRITE is the logical permission: after a fork the page may sit
 * under a level-1 table still shared with another address space
 * (mm/cow_table.c), so never write to *pa_out yourself; kernel writes go
 * through mm_copy_to_user. */
int mm_as_translate(struct mm_as *as, virt_addr_t va, phys_addr_t *pa_out, unsigned *prot_out);

/*
 * Copy between kernel memory and the user half of `as` without touching
 * user virtual addresses: each page is looked up in as's table (under its
 * lock) and copied through the direct map, so a bad pointer is an error,
 * never a fault, and SMAP can stay closed.  The user range must be mapped
 * with MM_PROT_USER, and writable for mm_copy_to_user.  Returns 0, or
 * -MM_EFAULT (unmapped, not user, not writable, outside the user half,
 * wrapping) with nothing copied; not logged (user input).
 * mm_copy_to_user into a COW page first resolves it as a write fault
 * would (mm_cow_fault, include/mm/cow.h), so the process gets its own
 * copy and the other sharers never see the bytes; -MM_ENOMEM if that
 * copy finds no frame (pages resolved before stay resolved: their
 * contents are unchanged, only private now).  A NULL or
 * destroyed address space is a caller bug: -MM_EINVAL, logged.
 * mm_copy_str_from_user copies a NUL-terminated string of at most len
 * bytes including the NUL: its length, or -MM_EFAULT, or -MM_EINVAL when
 * no NUL is found within len bytes.
 */
int mm_copy_to_user(struct mm_as *as, virt_addr_t dst, const void *src, uint64_t len);
int mm_copy_from_user(struct mm_as *as, void *dst, virt_addr_t src, uint64_t len);
long mm_copy_str_from_user(struct mm_as *as, char *dst, virt_addr_t src, uint64_t len);

/* ------------------------------------ for the library's own files */

/* A live address space (0), else -MM_EINVAL after one log line naming fn
 * (mm/cow.c, mm/uaccess.c). */
int mm_as_check_live(const struct mm_as *as, const char *fn);

/* The mapper over as's table; its flushes target as's CPU set. */
static inline struct pt_mapper mm_as_mapper(struct mm_as *as)
{
    struct pt_mapper m = { .top_pa = as->top_pa, .fa = as->fa, .readonly = false,
                          .cpus = &as->cpus };
    return m;
}

/* The raw word of entry idx in the table at table_pa. */
static inline uint64_t *mm_as_entry_word(phys_addr_t table_pa, unsigned idx)
{
    return (uint64_t *)pa_to_ptr(table_pa) + idx;
}

#endif
