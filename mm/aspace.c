/*
 * mm/aspace.c - user address spaces: create, destroy, switch, and the
 * user-half mapping calls (include/mm/aspace.h has the contracts).
 *
 * Algorithm.  An address space is a top table of its own.  Its slots
 * 256..511 are a copy of the kernel table's, made once by mm_as_create;
 * since every kernel-half slot has its table from mm_init on and kernel
 * mappings never add a top-level entry, the copy shares every lower-level
 * kernel table and stays right forever.  Slots 0..255 (the user half) are
 * edited only here, one 4 KiB page per call, through a struct pt_mapper
 * whose CPU set is the address space's, so the flush of each change
 * reaches only the CPUs that may cache its translations.  A level-1
 * table shared with other address spaces after a clone (include/mm/cow.h)
 * is made this address space's own (mm_cow_table_unshare_locked) before
 * any edit under it, after the edit's own checks.  mm_as_destroy walks
 * the user half once, freeing each table (a shared level-1 table only
 * loses a count, mm/cow_table.c) and dropping a count of each leaf frame
 * marked PTE_AS_OWNED, then the top table; the kernel tables stay.
 *
 * Invariants.
 *  - as->cpus holds every CPU whose CR3 is as->top_pa, and only CPUs that
 *    loaded it and have not loaded another table since (user translations
 *    are never global and no PCIDs are used, so that CR3 load dropped all
 *    of them).  A CPU enters the set before its CR3 load, with a full
 *    barrier, so a CPU that changes a user entry and then reads the set
 *    either sees it or is seen by its first walk; it leaves the set after
 *    loading the other table.
 *  - User-half leaves are 4 KiB, present, PTE_USER, never PTE_GLOBAL;
 *    as->owned_frames counts those with PTE_AS_OWNED, as->table_frames
 *    the user-half tables below the top one, both over every table as
 *    reaches (shared level-1 tables included).
 *  - A destroyed address space has top_pa 0 and dead set; every call
 *    refuses it.
 *
 * Locking.  as->lock (a plain spinlock: interrupts stay on, because a
 * flush may wait for other CPUs' interrupts) serialises the user-half
 * edits and lookups of one address space.  Order: as->lock, then the
 * buddy lock (frames come from as->fa while it is held).  The kernel half
 * is never edited here.  mm_as_switch takes no lock: it changes only this
 * CPU's slot of the current-address-space array and atomic bits of the
 * two CPU sets.
 */
#include <mm/arch.h>
#include <mm/aspace.h>
#include <mm/cow.h>
#include <mm/frameref.h>
#include <mm/kmapper.h>
#include <mm/log.h>
#include <mm/platform.h>

#define KERNEL_HALF_FIRST_SLOT (PT_ENTRIES / 2)     /* 256 */

/* The address space loaded on each CPU (NULL: the kernel table). */
static struct mm_as *as_current[MM_MAX_CPUS];

/* ------------------------------------------------------------ protection */

#define PROT_ACCESS (MM_PROT_READ | MM_PROT_WRITE | MM_PROT_EXEC)
#define PROT_KNOWN  (PROT_ACCESS | MM_PROT_USER | MM_PROT_WX_OK | MM_PROT_SHARED)

uint64_t mm_prot_to_pte(unsigned prot)
{
    if ((prot & ~PROT_KNOWN) != 0 || (prot & PROT_ACCESS) == 0)
        return 0;
    bool w = (prot & MM_PROT_WRITE) != 0, x = (prot & MM_PROT_EXEC) != 0;
    if (w && x && !(prot & MM_PROT_WX_OK))
        return 0;
    return PTE_PRESENT | (w ? PTE_WRITE : 0) | ((prot & MM_PROT_USER) ? PTE_USER : 0) |
           (x ? 0 : PTE_NX);
}

/* The inverse, for mm_as_translate. */
static unsigned pte_to_prot(uint64_t flags)
{
    unsigned prot = MM_PROT_READ;
    if (flags & (PTE_WRITE | PTE_AS_COW))
        prot |= MM_PROT_WRITE;
    if (flags & PTE_AS_SHARED)
        prot |= MM_PROT_SHARED;
    if (!(flags & PTE_NX))
        prot |= MM_PROT_EXEC;
    if (flags & PTE_USER)
        prot |= MM_PROT_USER;
    if ((prot & MM_PROT_WRITE) && (prot & MM_PROT_EXEC))
        prot |= MM_PROT_WX_OK;
    return prot;
}

/* ------------------------------------------------------------ validation */

int mm_as_check_live(const struct mm_as *as, const char *fn)
{
    if (as == NULL || as->dead || as->top_pa.raw == 0) {
        mm_printf("%s: address space %p is NULL or destroyed\n", fn, (const void *)as);
        return -MM_EINVAL;
    }
    return 0;
}

/* va is one user page; else -MM_EINVAL after one log line naming why. */
static int check_user_va(virt_addr_t va, const char *fn)
{
    const char *why = NULL;
    if (!is_aligned_u64(va.raw, PAGE_SIZE))
        why = "not 4 KiB aligned";
    else if (!pt_va_is_canonical(va))
        why = "non-canonical";
    else if (va.raw >= MM_KERNEL_HALF_BASE)
        why = "in the kernel half";
    else if (va.raw < MM_USER_BASE)
        why = "page 0";
    else if (va.raw >= MM_USER_END)
        why = "above the user half";
    if (why) {
        mm_printf("%s: va %#lx %s\n", fn, (unsigned long)va.raw, why);
        return -MM_EINVAL;
    }
    return 0;
}

/* The leaf bits for prot in the user half, PTE_AS_SHARED included for
 * MM_PROT_SHARED; 0 after one log line if bad. */
static uint64_t user_prot_bits(unsigned prot, const char *fn)
{
    uint64_t bits = mm_prot_to_pte(prot);
    if (bits == 0)
        mm_printf("%s: bad prot %#x (unknown bits, no access, or W+X without "
                  "MM_PROT_WX_OK)\n", fn, prot);
    else if (!(prot & MM_PROT_USER)) {
        mm_printf("%s: prot %#x without MM_PROT_USER in the user half\n", fn, prot);
        bits = 0;
    }
    return bits | (bits && (prot & MM_PROT_SHARED) ? PTE_AS_SHARED : 0);
}

/* All argument checks of a mapping call: 0, or -MM_EINVAL (logged). */
static int check_map_args(const struct mm_as *as, virt_addr_t va, unsigned prot,
                          uint64_t *bits_out, const char *fn)
{
    int err = mm_as_check_live(as, fn);
    if (err == 0)
        err = check_user_va(va, fn);
    if (err == 0 && bits_out) {
        *bits_out = user_prot_bits(prot, fn);
        if (*bits_out == 0)
            err = -MM_EINVAL;
    }
    return err;
}

/* ------------------------------------------------------- table accounting */

/* User-half tables below the top on the walk for va (0..3). */
static unsigned tables_on_path(const struct mm_as *as, virt_addr_t va)
{
    phys_addr_t table = as->top_pa;
    unsigned n = 0;
    for (unsigned level = PT_LEVEL_PML4; level > PT_LEVEL_PT; level--) {
        uint64_t e = __atomic_load_n(mm_as_entry_word(table, pt_index(va, level)),
                                     __ATOMIC_RELAXED);
        if (!(e & PTE_PRESENT) || (e & PTE_HUGE))
            break;
        table = PA(e & PTE_ADDR_MASK);
        n++;
    }
    return n;
}

/* Set the software bits `soft` (PTE_AS_SOFT) in the 4 KiB leaf for va
 * (present).  The MMU ignores them, so no flush; atomic so that concurrent
 * A/D updates stay. */
static void leaf_set_soft(struct mm_as *as, virt_addr_t va, uint64_t soft)
{
    struct pt_mapper m = mm_as_mapper(as);
    phys_addr_t pt;
    if (pt_get_table(&m, va, PT_LEVEL_PT, &pt) != 0)
        mm_panic("leaf_set_soft: no page table for va %lx in as %lx",
                 (unsigned long)va.raw, (unsigned long)as->top_pa.raw);
    if (soft)
        __atomic_fetch_or(mm_as_entry_word(pt, pt_index(va, PT_LEVEL_PT)), soft,
                          __ATOMIC_RELAXED);
}

/* ------------------------------------------------------- create, destroy */

int mm_as_create(struct mm_as *as, struct frame_allocator *fa)
{
    phys_addr_t ktop = kmapper_peek().top_pa;
    if (as == NULL || fa == NULL || fa->free == NULL || ktop.raw == 0) {
        mm_printf("mm_as_create: as %p, fa %p (needs alloc and free), kernel table %#lx: "
                  "refused\n", (void *)as, (void *)fa, (unsigned long)ktop.raw);
        return -MM_EINVAL;
    }
    /* The kernel half is copied once: only safe when no kernel mapping can
     * add a top-level entry later (mm_init, or mm_kernel_half_prepare). */
    if (!kmapper_kernel_half_fixed()) {
        mm_printf("mm_as_create: the kernel half is not fixed yet (call mm_init, or "
                  "mm_kernel_half_prepare on Path B): its copy could go stale\n");
        return -MM_EINVAL;
    }
    phys_addr_t top;
    if (frame_alloc(fa, &top) != 0)
        return -MM_ENOMEM;
    uint64_t *dst = (uint64_t *)pa_to_ptr(top);
    const uint64_t *src = (const uint64_t *)pa_to_ptr(ktop);
    for (unsigned i = 0; i < PT_ENTRIES; i++)
        dst[i] = i < KERNEL_HALF_FIRST_SLOT ? 0 : __atomic_load_n(&src[i], __ATOMIC_RELAXED);

    *as = (struct mm_as){ .top_pa = top, .fa = fa, .lock = MM_SPINLOCK_INIT };
    return 0;
}

/* Free the user-half subtree of the table at `level` (3 or 2), then the
 * table: each level-1 table is let go of as mm_cow_table_release says
 * (shared: one count fewer; else its owned frames lose a count, freed on
 * the last, and it is freed).  Counts the tables and the owned leaves. */
static void free_user_subtree(struct mm_as *as, phys_addr_t table, unsigned level,
                              uint64_t *tables, uint64_t *owned)
{
    for (unsigned i = 0; i < PT_ENTRIES; i++) {
        uint64_t e = *mm_as_entry_word(table, i);
        if (!(e & PTE_PRESENT))
            continue;
        if (pte_is_leaf((pt_entry_t){ e }, level)) {
            if (e & PTE_AS_OWNED)
                mm_panic("free_user_subtree: owned huge leaf %lx at level %u in as %lx",
                         (unsigned long)e, level, (unsigned long)as->top_pa.raw);
        } else if (level == PT_LEVEL_PD) {
            *owned += mm_cow_table_release(as, e);
            (*tables)++;
        } else {
            free_user_subtree(as, PA(e & PTE_ADDR_MASK), level - 1, tables, owned);
        }
    }
    as->fa->free(as->fa, table);
    (*tables)++;
}

int mm_as_destroy(struct mm_as *as)
{
    int err = mm_as_check_live(as, "mm_as_destroy");
    if (err)
        return err;
    mm_cpumask_t cpus = __atomic_load_n(&as->cpus, __ATOMIC_SEQ_CST);
    if (cpus != 0) {
        mm_printf("mm_as_destroy: address space %#lx still loaded on CPUs %#lx\n",
                  (unsigned long)as->top_pa.raw, (unsigned long)cpus);
        return -MM_EBUSY;
    }
    /* Loaded nowhere: no CPU can hold a translation or walk through it. */
    mm_spin_lock(&as->lock);
    uint64_t tables = 0, owned = 0;
    for (unsigned i = 0; i < KERNEL_HALF_FIRST_SLOT; i++) {
        uint64_t e = *mm_as_entry_word(as->top_pa, i);
        if (e & PTE_PRESENT)
            free_user_subtree(as, PA(e & PTE_ADDR_MASK), PT_LEVEL_PDPT, &tables, &owned);
    }
    if (tables != as->table_frames || owned != as->owned_frames)
        mm_panic("mm_as_destroy: as %lx freed %lu tables and %lu owned frames, "
                 "expected %lu and %lu", (unsigned long)as->top_pa.raw,
                 (unsigned long)tables, (unsigned long)owned,
                 (unsigned long)as->table_frames, (unsigned long)as->owned_frames);
    as->fa->free(as->fa, as->top_pa);
    as->top_pa = PA(0);
    as->table_frames = as->owned_frames = 0;
    as->dead = true;
    mm_spin_unlock(&as->lock);
    return 0;
}

/* ----------------------------------------------------------------- switch */

void mm_as_switch(struct mm_as *as)
{
    unsigned cpu = mm_platform_cpu_id();
    mm_cpumask_t bit = (mm_cpumask_t)1 << cpu;
    struct mm_as *old = as_current[cpu];

    if (as && (as->dead || as->top_pa.raw == 0))
        mm_panic("mm_as_switch: cpu %u switching to destroyed address space %p",
                 cpu, (void *)as);
    if (as == old)
        return;
    /* Join the set before the first walk can cache anything (full barrier). */
    if (as)
        __atomic_fetch_or(&as->cpus, bit, __ATOMIC_SEQ_CST);
    arch_write_cr3(as ? as->top_pa : kmapper_peek().top_pa);
    as_current[cpu] = as;
    /* The CR3 load dropped every translation of old: leave its set. */
    if (old)
        __atomic_fetch_and(&old->cpus, ~bit, __ATOMIC_SEQ_CST);
}

struct mm_as *mm_as_current(void)
{
    return as_current[mm_platform_cpu_id()];
}

/* ------------------------------------------------------------ mapping */

/* Map pa at va with leaf bits `bits` (software bits PTE_AS_SOFT allowed)
 * under as->lock and flush.  0 or the mapper's error (nothing changed). */
static int map_locked(struct mm_as *as, virt_addr_t va, phys_addr_t pa, uint64_t bits)
{
    MM_ASSERT_LOCKED(&as->lock);
    struct pt_mapper m = mm_as_mapper(as);
    struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
    unsigned before = tables_on_path(as, va);
    int err = pt_map_phys(&m, va, pa, bits & ~PTE_AS_SOFT, &tok);
    if (err)
        return err;
    leaf_set_soft(as, va, bits & PTE_AS_SOFT);
    if (bits & PTE_AS_OWNED)
        as->owned_frames++;
    as->table_frames += tables_on_path(as, va) - before;
    pt_flush(&tok);     /* PTE_USER may have been added to cached entries */
    return 0;
}

/* Map the caller's frame pa at va (not owned): -MM_EEXIST before the
 * table under va is unshared, so a refusal changes nothing. */
static int map_frame_locked(struct mm_as *as, virt_addr_t va, phys_addr_t pa, uint64_t bits)
{
    MM_ASSERT_LOCKED(&as->lock);
    struct pt_mapper m = mm_as_mapper(as);
    struct pt_mapping t;
    if (pt_translate(&m, va, &t) == 0)
        return -MM_EEXIST;
    int err = mm_cow_table_unshare_locked(as, va);
    return err ? err : map_locked(as, va, pa, bits);
}

/* Take a zeroed frame and map it at va as owned.  -MM_EEXIST comes
 * before a frame is taken, so a full allocator does not hide it. */
static int map_zeroed_locked(struct mm_as *as, virt_addr_t va, uint64_t bits)
{
    MM_ASSERT_LOCKED(&as->lock);
    struct pt_mapper m = mm_as_mapper(as);
    struct pt_mapping t;
    phys_addr_t pa;
    if (pt_translate(&m, va, &t) == 0)
        return -MM_EEXIST;
    /* The frame first: once the table is unshared, a failure could no
     * longer leave everything as it was. */
    if (frame_alloc(as->fa, &pa) != 0)
        return -MM_ENOMEM;
    int err = mm_cow_table_unshare_locked(as, va);
    if (err) {
        as->fa->free(as->fa, pa);
        return err;
    }
    __builtin_memset(pa_to_ptr(pa), 0, PAGE_SIZE);
    err = map_locked(as, va, pa, bits | PTE_AS_OWNED);
    if (err)
        as->fa->free(as->fa, pa);       /* never mapped */
    return err;
}

/*
 * Unmap va.  An owned frame loses one count only after the flush (until
 * then other CPUs of as may still read it, and a sharer that saw the
 * count drop to 1 could already write it in place); the last count frees
 * it.
 */
static int unmap_locked(struct mm_as *as, virt_addr_t va)
{
    MM_ASSERT_LOCKED(&as->lock);
    struct pt_mapper m = mm_as_mapper(as);
    struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
    struct pt_mapping old;
    if (pt_translate(&m, va, &old) != 0)
        return -MM_ENOENT;
    int err = mm_cow_table_unshare_locked(as, va);
    if (err)
        return err;
    unsigned before = tables_on_path(as, va);
    err = pt_unmap_phys(&m, va, true, &old, &tok);
    if (err)
        return err;
    as->table_frames -= before - tables_on_path(as, va);
    pt_flush(&tok);
    if (old.flags & PTE_AS_OWNED) {
        as->owned_frames--;
        if (mm_frameref_put(old.pa) == 0)
            as->fa->free(as->fa, old.pa);
    }
    return 0;
}

/*
 * Give the leaf for va the bits `bits`, keeping its ownership; a writable
 * prot on an owned private frame that is shared becomes COW (see
 * mm_as_protect's contract).  -MM_EINVAL (logged) when MM_PROT_SHARED
 * differs from the mapping's.
 */
static int protect_locked(struct mm_as *as, virt_addr_t va, uint64_t bits)
{
    MM_ASSERT_LOCKED(&as->lock);
    struct pt_mapper m = mm_as_mapper(as);
    struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
    struct pt_mapping cur;
    int err = pt_translate(&m, va, &cur);
    if (err)
        return err;
    if ((cur.flags ^ bits) & PTE_AS_SHARED) {
        mm_printf("mm_as_protect: va %#lx: MM_PROT_SHARED differs from the mapping's\n",
                  (unsigned long)va.raw);
        return -MM_EINVAL;
    }
    err = mm_cow_table_unshare_locked(as, va);
    if (err)
        return err;
    uint64_t soft = cur.flags & (PTE_AS_OWNED | PTE_AS_SHARED);
    uint64_t hw = bits & ~PTE_AS_SOFT;
    if ((hw & PTE_WRITE) && soft == PTE_AS_OWNED && mm_frameref_count(cur.pa) > 1) {
        hw &= ~PTE_WRITE;
        soft |= PTE_AS_COW;
    }
    err = pt_remap(&m, va, hw, &tok);
    if (err)
        return err;
    leaf_set_soft(as, va, soft);    /* pt_remap replaced every flag bit */
    pt_flush(&tok);
    return 0;
}

enum page_edit { EDIT_MAP_ZEROED, EDIT_MAP_FRAME, EDIT_UNMAP, EDIT_PROTECT };

/* The four edits of one user page: validate (fn names the caller in the
 * log line), then do it under the lock. */
static int edit_page(struct mm_as *as, virt_addr_t va, phys_addr_t pa, unsigned prot,
                     enum page_edit op, const char *fn)
{
    uint64_t bits = 0;
    int err = check_map_args(as, va, prot, op == EDIT_UNMAP ? NULL : &bits, fn);
    if (err)
        return err;
    mm_spin_lock(&as->lock);
    switch (op) {
    case EDIT_MAP_ZEROED:
        err = map_zeroed_locked(as, va, bits);
        break;
    case EDIT_MAP_FRAME:
        err = map_frame_locked(as, va, pa, bits);
        break;
    case EDIT_UNMAP:
        err = unmap_locked(as, va);
        break;
    default:
        err = protect_locked(as, va, bits);
        break;
    }
    mm_spin_unlock(&as->lock);
    return err;
}

int mm_as_map_zeroed(struct mm_as *as, virt_addr_t va, unsigned prot)
{
    return edit_page(as, va, PA(0), prot, EDIT_MAP_ZEROED, "mm_as_map_zeroed");
}

int mm_as_map_frame(struct mm_as *as, virt_addr_t va, phys_addr_t pa, unsigned prot)
{
    if (!is_aligned_u64(pa.raw, PAGE_SIZE) || (pa.raw & ~PTE_ADDR_MASK) != 0) {
        mm_printf("mm_as_map_frame: pa %#lx not a 4 KiB frame below 2^%u\n",
                  (unsigned long)pa.raw, (unsigned)PTE_PHYS_BITS);
        return -MM_EINVAL;
    }
    return edit_page(as, va, pa, prot, EDIT_MAP_FRAME, "mm_as_map_frame");
}

int mm_as_unmap(struct mm_as *as, virt_addr_t va)
{
    return edit_page(as, va, PA(0), 0, EDIT_UNMAP, "mm_as_unmap");
}

int mm_as_protect(struct mm_as *as, virt_addr_t va, unsigned prot)
{
    return edit_page(as, va, PA(0), prot, EDIT_PROTECT, "mm_as_protect");
}

int mm_as_translate(struct mm_as *as, virt_addr_t va, phys_addr_t *pa_out, unsigned *prot_out)
{
    int err = mm_as_check_live(as, "mm_as_translate");
    if (err == 0)
        err = check_user_va(VA(align_down_u64(va.raw, PAGE_SIZE)), "mm_as_translate");
    if (err)
        return err;
    struct pt_mapper m = mm_as_mapper(as);
    struct pt_mapping t;
    mm_spin_lock(&as->lock);
    err = pt_translate(&m, va, &t);
    mm_spin_unlock(&as->lock);
    if (err)
        return err;
    if (pa_out)
        *pa_out = t.pa;
    if (prot_out)
        *prot_out = pte_to_prot(t.flags);
    return 0;
}
