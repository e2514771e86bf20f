/*
 * mm/uaccess.c - copying between kernel memory and an address space's
 * user half: mm_copy_to_user, mm_copy_from_user, mm_copy_str_from_user.
 *
 * Algorithm.  The user addresses are never dereferenced.  Under as->lock,
 * each user page of the range is looked up in as's table and must be a
 * present 4 KiB-or-larger leaf with PTE_USER (and PTE_WRITE for a copy to
 * user); only when the whole range passes does the copy run, page by
 * page through the direct map (pa_to_ptr).  So a bad pointer is an error
 * and not a fault, nothing is copied on error, no fault-recovery hook is
 * needed and SMAP can stay closed.  The string variant first scans page
 * by page for the NUL (checking each page before reading it), then copies
 * the string and its NUL.  A copy to user counts a copy-on-write page
 * (PTE_AS_COW) as writable in the check (the leaf says what the page
 * may do; a read-only level-2 entry above it only means its table is
 * shared), then, before copying anything, resolves every page of the
 * range as a write fault would (mm_cow_fault_locked): a page under a
 * shared level-1 table gets a table of this address space's own, a COW
 * page its own frame, so the bytes never reach a frame or a table it
 * shares with other address spaces.
 *
 * Invariants.  Every byte copied lies in a page that was checked under
 * the same hold of as->lock, so no unmap can free the frame between the
 * check and the copy (mm_as_unmap takes the lock).  Another thread of the
 * process may still write the user memory during the copy: the kernel
 * gets some mix of old and new bytes, never a fault.
 *
 * Locking: as->lock held across check and copy (see mm/aspace.c for its
 * rules: interrupts on, not from interrupt handlers).
 */
#include <mm/aspace.h>
#include <mm/init.h>
#include <mm/cow.h>
#include <mm/log.h>

/* Bytes from va to the end of its 4 KiB page, at most len. */
static uint64_t chunk_len(uint64_t va, uint64_t len)
{
    uint64_t room = PAGE_SIZE - (va & (PAGE_SIZE - 1));
    return len < room ? len : room;
}

/* [va, va + len) lies in the user half without wrapping (len > 0). */
static bool user_range_in_half(uint64_t va, uint64_t len)
{
    return va >= MM_USER_BASE && va < MM_USER_END && len <= MM_USER_END - va;
}

/* The leaf flags of user address va's page if it is mapped for user
 * access; 0 else. */
static uint64_t user_flags_locked(struct mm_as *as, uint64_t va, phys_addr_t *pa_out)
{
    MM_ASSERT_LOCKED(&as->lock);
    struct pt_mapper m = mm_as_mapper(as);
    m.readonly = true;
    struct pt_mapping t;
    if (pt_translate(&m, VA(va), &t) != 0 || !(t.flags & PTE_USER))
        return 0;
    /* Only RAM is copied through the direct map: a frame the address space
     * allocated itself, or a foreign frame the direct map holds.  A device
     * frame (mm_as_map_frame of MMIO) may lie outside it, and even inside
     * it would be read through a write-back alias of uncached memory. */
    if (!(t.flags & PTE_AS_OWNED) &&
        !mm_direct_map_contains(PA(align_down_u64(t.pa.raw, PAGE_SIZE)), PAGE_SIZE))
        return 0;
    *pa_out = t.pa;
    return t.flags;
}

/*
 * The kernel pointer (through the direct map) to user address va, if its
 * page is mapped for user access (and writable when `write`: a COW page
 * counts as writable); NULL else.  The page's bytes from va up to its end
 * are reachable from the result.
 */
static void *user_byte_locked(struct mm_as *as, uint64_t va, bool write)
{
    phys_addr_t pa;
    uint64_t flags = user_flags_locked(as, va, &pa);
    if (flags == 0 || (write && !(flags & (PTE_WRITE | PTE_AS_COW))))
        return NULL;
    return pa_to_ptr(pa);
}

/* Resolve every page of the checked range [va, va + len) as a write
 * fault would: a COW page, or any page under a shared level-1 table,
 * becomes this address space's own (a writable page gives MM_COW_REUSED
 * at once).  0 or -MM_ENOMEM (the pages resolved so far keep their
 * private copies). */
static int break_cow_locked(struct mm_as *as, uint64_t va, uint64_t len)
{
    MM_ASSERT_LOCKED(&as->lock);
    for (uint64_t off = 0; off < len; off += chunk_len(va + off, len - off)) {
        int r = mm_cow_fault_locked(as, VA(align_down_u64(va + off, PAGE_SIZE)));
        if (r < 0)
            return r;
        if (r != MM_COW_REUSED && r != MM_COW_COPIED)
            mm_panic("break_cow_locked: writable page at va %lx not resolved (%d)",
                     (unsigned long)(va + off), r);
    }
    return 0;
}

/* Every page of [va, va + len) is user-accessible (writable if write). */
static bool user_range_ok_locked(struct mm_as *as, uint64_t va, uint64_t len, bool write)
{
    MM_ASSERT_LOCKED(&as->lock);
    for (uint64_t off = 0; off < len; off += chunk_len(va + off, len - off))
        if (user_byte_locked(as, va + off, write) == NULL)
            return false;
    return true;
}

/*
 * Copy len bytes between user va and kernel buffer kbuf (to_user picks
 * the direction) after checking the whole range (and, to user, breaking
 * COW in it).  0, -MM_EFAULT or -MM_ENOMEM.
 */
static int copy_user_locked(struct mm_as *as, uint64_t va, void *kbuf, uint64_t len,
                            bool to_user)
{
    MM_ASSERT_LOCKED(&as->lock);
    if (len == 0)
        return 0;
    if (!user_range_in_half(va, len) || !user_range_ok_locked(as, va, len, to_user))
        return -MM_EFAULT;
    int err = to_user ? break_cow_locked(as, va, len) : 0;
    if (err)
        return err;
    uint8_t *k = kbuf;
    for (uint64_t off = 0; off < len;) {
        uint64_t n = chunk_len(va + off, len - off);
        uint8_t *u = user_byte_locked(as, va + off, to_user);
        if (to_user)
            __builtin_memcpy(u, k + off, n);
        else
            __builtin_memcpy(k + off, u, n);
        off += n;
    }
    return 0;
}

static int copy_user(struct mm_as *as, uint64_t va, void *kbuf, uint64_t len, bool to_user)
{
    mm_spin_lock(&as->lock);
    int err = copy_user_locked(as, va, kbuf, len, to_user);
    mm_spin_unlock(&as->lock);
    return err;
}

int mm_copy_to_user(struct mm_as *as, virt_addr_t dst, const void *src, uint64_t len)
{
    int err = mm_as_check_live(as, "mm_copy_to_user");
    if (err)
        return err;
    return copy_user(as, dst.raw, (void *)(uintptr_t)src, len, true);
}

int mm_copy_from_user(struct mm_as *as, void *dst, virt_addr_t src, uint64_t len)
{
    int err = mm_as_check_live(as, "mm_copy_from_user");
    if (err)
        return err;
    return copy_user(as, src.raw, dst, len, false);
}

/*
 * Length of the NUL-terminated user string at va, looking at no more
 * than max bytes (NUL included): the length, -MM_EFAULT (an unreadable
 * byte before the NUL, or outside the user half), -MM_EINVAL (no NUL).
 */
static long user_strlen_locked(struct mm_as *as, uint64_t va, uint64_t max)
{
    MM_ASSERT_LOCKED(&as->lock);
    for (uint64_t off = 0; off < max;) {
        if (!user_range_in_half(va + off, 1))
            return -MM_EFAULT;
        uint64_t n = chunk_len(va + off, max - off);
        const char *u = user_byte_locked(as, va + off, false);
        if (u == NULL)
            return -MM_EFAULT;
        for (uint64_t i = 0; i < n; i++)
            if (u[i] == '\0')
                return (long)(off + i);
        off += n;
    }
    return -MM_EINVAL;
}

long mm_copy_str_from_user(struct mm_as *as, char *dst, virt_addr_t src, uint64_t len)
{
    int err = mm_as_check_live(as, "mm_copy_str_from_user");
    if (err)
        return err;
    if (len == 0)
        return -MM_EINVAL;          /* no room for the NUL */
    mm_spin_lock(&as->lock);
    long n = user_strlen_locked(as, src.raw, len);
    if (n >= 0)
        err = copy_user_locked(as, src.raw, dst, (uint64_t)n + 1, false);
    mm_spin_unlock(&as->lock);
    if (n < 0 || err < 0)
        return n < 0 ? n : err;
    dst[n] = '\0';                  /* other user threads may have changed it */
    return n;
}
