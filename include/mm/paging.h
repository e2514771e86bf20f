/*
 * mm/paging.h - x86_64 4-level page tables and the mapper that edits them.
 *
 * A page table is a tree of 4 KiB tables of 512 entries.  Level 4 is the
 * top table (PML4, the one CR3 points at), level 1 is the last (PT).  An
 * entry at level 3 or 2 with PTE_HUGE set is a leaf mapping 1 GiB or 2 MiB;
 * every other present entry above level 1 points at the next table.
 *
 * The mapper reaches every table through the direct map (pa_to_ptr()), so
 * it works on the live table, on a table being built and, in the host
 * tests, on tables in simulated memory.  It takes frames for new tables
 * from a struct frame_allocator and gives frames of emptied tables back to
 * the same allocator.
 *
 * Errors.  Every call validates first and changes nothing unless it can
 * finish: bad input returns -MM_EINVAL (alignment, non-canonical address,
 * flag bits that are not permission/cache bits), -MM_EEXIST (something is
 * already mapped there, including a huge page over a table or a small page
 * under a huge page), -MM_ENOENT (nothing mapped), -MM_EPERM (read-only
 * mapper).  Running out of frames returns -MM_ENOMEM with the tables
 * exactly as before: the mapper counts the tables a call needs, takes them
 * all from the allocator up front and hands them back if one is missing,
 * so no empty intermediate table is ever left behind by a failed call.
 *
 * Frame allocators that cannot free (free == NULL, e.g. the boot bump
 * allocator): free_tables is then ignored, pt_unmap and pt_mapper_destroy
 * return -MM_EINVAL, and the frames a failed map call had reserved stay
 * with the caller's allocator as used (the tables are still unchanged).
 *
 * Flush obligations.  Every call that changes an entry reports which TLB
 * entries may now be stale in a struct pt_flush token written through its
 * last parameter (the rules are in mm/tlbflush.h, included here): the
 * token passed in must be empty, and the caller discharges it exactly
 * once.  The tokens of map calls matter too: x86 does not cache
 * not-present entries, but a PTE_USER mapping (and pt_remap to PTE_USER)
 * adds PTE_USER to existing intermediate entries, whose old kernel-only
 * copies may be cached.  Frames the mapper unlinks (emptied tables,
 * pt_unmap's data frame) are freed when the token is discharged, after
 * the flush.
 *
 * Locking: none inside.  One mapper (one table tree) must be edited by one
 * CPU at a time; the kernel mapper lock provides that for the kernel table.
 * Reads (pt_translate, pt_get_*) may race with writers only if the caller
 * accepts a stale answer.
 */
#ifndef MM_PAGING_H
#define MM_PAGING_H

#include <mm/frame.h>
#include <mm/platform.h>
#include <mm/tlbflush.h>
#include <mm/types.h>

/* ------------------------------------------------------------ entry bits */

#define PTE_PRESENT     (UINT64_C(1) << 0)
#define PTE_WRITE       (UINT64_C(1) << 1)
#define PTE_USER        (UINT64_C(1) << 2)
#define PTE_PWT         (UINT64_C(1) << 3)   /* write-through */
#define PTE_PCD         (UINT64_C(1) << 4)   /* cache disable */
#define PTE_ACCESSED    (UINT64_C(1) << 5)
#define PTE_DIRTY       (UINT64_C(1) << 6)   /* leaves only */
#define PTE_HUGE        (UINT64_C(1) << 7)   /* PS: leaf at level 3 or 2 */
#define PTE_GLOBAL      (UINT64_C(1) << 8)   /* leaves only */
#define PTE_NX          (UINT64_C(1) << 63)  /* needs EFER.NXE */
/* The PAT bit (include/mm/pat.h): bit 7 of a 4 KiB leaf, where upper
 * levels have PS; a 2 MiB / 1 GiB leaf keeps it in bit 12.  Callers pass
 * PTE_PAT and the mapper moves it for huge leaves; pt_translate reports
 * PTE_PAT at every level. */
#define PTE_PAT         (UINT64_C(1) << 7)
#define PTE_PAT_HUGE    (UINT64_C(1) << 12)

/* Physical address bits of an entry: 12..51 (52-bit physical addresses). */
#define PTE_PHYS_BITS   52
#define PTE_ADDR_MASK   (((UINT64_C(1) << PTE_PHYS_BITS) - 1) & ~(PAGE_SIZE - 1))

/* Bits a caller may pass as leaf flags (PTE_PRESENT is implied, PS is set
 * by the mapper; PTE_PAT selects PAT entries 4-7, see include/mm/pat.h). */
#define PTE_FLAGS_ALLOWED (PTE_PRESENT | PTE_WRITE | PTE_USER | PTE_PWT |     \
                           PTE_PCD | PTE_PAT | PTE_ACCESSED | PTE_DIRTY |     \
                           PTE_GLOBAL | PTE_NX)

/* Ready-made leaf flag sets. */
#define PTE_KERNEL_RW   (PTE_PRESENT | PTE_WRITE | PTE_NX | PTE_GLOBAL)
#define PTE_KERNEL_RO   (PTE_PRESENT | PTE_NX | PTE_GLOBAL)
#define PTE_KERNEL_TEXT (PTE_PRESENT | PTE_GLOBAL)
#define PTE_MMIO        (PTE_PRESENT | PTE_WRITE | PTE_PCD | PTE_PWT |        \
                         PTE_NX | PTE_GLOBAL)
/* Entries that point at a table: leaves alone decide NX and read-only. */
#define PTE_TABLE       (PTE_PRESENT | PTE_WRITE)

typedef struct pt_entry { uint64_t raw; } pt_entry_t;

static inline bool pte_present(pt_entry_t e) { return (e.raw & PTE_PRESENT) != 0; }
static inline phys_addr_t pte_pa(pt_entry_t e) { return PA(e.raw & PTE_ADDR_MASK); }
static inline uint64_t pte_flags(pt_entry_t e) { return e.raw & ~PTE_ADDR_MASK; }
static inline pt_entry_t pte_make(phys_addr_t pa, uint64_t flags)
{
    return (pt_entry_t){ (pa.raw & PTE_ADDR_MASK) | (flags & ~PTE_ADDR_MASK) };
}
/* A present entry at `level` is a leaf (maps memory) rather than a table. */
static inline bool pte_is_leaf(pt_entry_t e, unsigned level)
{
    return level == 1 || (e.raw & PTE_HUGE) != 0;
}

/* The flags of a leaf at `level` as callers see them: PS dropped, and a
 * huge leaf's PAT bit (bit 12) reported as PTE_PAT (bit 7). */
static inline uint64_t pte_leaf_flags(pt_entry_t e, unsigned level)
{
    if (level == 1)
        return pte_flags(e);
    return (pte_flags(e) & ~PTE_HUGE) | ((e.raw & PTE_PAT_HUGE) ? PTE_PAT : 0);
}

/* ----------------------------------------------------------------- levels */

#define PT_LEVEL_PT     1u    /* entries map 4 KiB */
#define PT_LEVEL_PD     2u    /* entries map 2 MiB or point to a PT */
#define PT_LEVEL_PDPT   3u    /* entries map 1 GiB or point to a PD */
#define PT_LEVEL_PML4   4u    /* the top table */
#define PT_LEVELS       4u

#define PT_VA_BITS      48    /* canonical addresses sign-extend bit 47 */

/* log2 of the memory one entry at `level` covers: 12, 21, 30, 39. */
static inline unsigned pt_level_shift(unsigned level)
{
    return PAGE_SHIFT + (level - 1) * PT_ENTRY_BITS;
}
/* Bytes one entry at `level` covers (the page size of a leaf there). */
static inline uint64_t pt_level_size(unsigned level)
{
    return UINT64_C(1) << pt_level_shift(level);
}
/* Index of the entry for va in the table at `level`. */
static inline unsigned pt_index(virt_addr_t va, unsigned level)
{
    return (unsigned)(va.raw >> pt_level_shift(level)) & (PT_ENTRIES - 1);
}
/* Bits 63..47 all equal. */
static inline bool pt_va_is_canonical(virt_addr_t va)
{
    uint64_t top = va.raw >> (PT_VA_BITS - 1);
    return top == 0 || top == (UINT64_MAX >> (PT_VA_BITS - 1));
}
/* Sign-extend bit 47 (turns a table-walk position into a usable va). */
static inline virt_addr_t pt_va_canonicalize(uint64_t raw)
{
    return VA((uint64_t)((int64_t)(raw << (64 - PT_VA_BITS)) >> (64 - PT_VA_BITS)));
}
/* Level of a leaf of this size: 1, 2 or 3; 0 if size is not a page size. */
static inline unsigned pt_level_of_size(uint64_t page_size)
{
    return page_size == PAGE_SIZE ? 1 : page_size == PAGE_2M_SIZE ? 2
         : page_size == PAGE_1G_SIZE ? 3 : 0;
}

/* ------------------------------------------------------------------ mapper */

struct pt_mapper {
    phys_addr_t top_pa;             /* the level-4 table */
    struct frame_allocator *fa;     /* source and sink of table frames */
    bool readonly;                  /* mutating calls return -MM_EPERM */
    /* The CPUs that may cache this table's translations (an address
     * space's CPU set, mm/aspace.h); NULL: every CPU (the kernel table). */
    const volatile mm_cpumask_t *cpus;
    /*
     * The kernel half's top-level entries are fixed (the kernel mapper
     * after mm_init / mm_kernel_half_prepare, mm/kmapper.h): a map call
     * that would need a new one there is refused with -MM_EINVAL and one
     * log line, and unmapping with free_tables never unlinks one, so the
     * kernel half that address spaces copied stays exact.  false for every
     * other mapper.
     */
    bool kernel_top_fixed;
};

/* What a leaf maps (pt_translate, pt_unmap_phys). */
struct pt_mapping {
    phys_addr_t pa;         /* translate: pa of va itself (offset kept);
                               unmap_phys: start of the unmapped page */
    uint64_t flags;         /* leaf bits without address and PTE_HUGE;
                               the CPU may have added ACCESSED/DIRTY */
    unsigned level;         /* 1, 2 or 3 */
    uint64_t page_size;     /* 4 KiB, 2 MiB or 1 GiB */
};

#define PT_MUST_CHECK __attribute__((warn_unused_result))

/* Allocate and zero a new top table.  0, -MM_ENOMEM. */
PT_MUST_CHECK int pt_mapper_create(struct frame_allocator *fa, struct pt_mapper *m_out);
/*
 * Free every table frame of m (not the mapped frames) at once, without a
 * flush, and set m->top_pa to 0.  m must not be the current table, and no
 * other CPU may have it loaded or still cache walks through it: the caller
 * makes sure of that (only this CPU's CR3 is checked).  Kernel-half tables
 * are freed too, so a table that shares them with another top table (a
 * copy of the kernel half) must not be destroyed this way unless those
 * top-level entries are cleared first.
 * 0, -MM_EBUSY (current), -MM_EPERM (read-only), -MM_EINVAL (already
 * destroyed: top_pa is 0; or m->fa cannot free).
 */
PT_MUST_CHECK int pt_mapper_destroy(struct pt_mapper *m);
/* The table CR3 points at now (CR3 flag/PCID bits dropped). */
struct pt_mapper pt_mapper_current(struct frame_allocator *fa);
/* Load m into CR3 (flushes the non-global TLB entries of this CPU). */
void pt_mapper_make_current(const struct pt_mapper *m);
bool pt_mapper_is_current(const struct pt_mapper *m);

/*
 * Map one 4 KiB page va -> pa.  va and pa 4 KiB aligned, va canonical,
 * flags within PTE_FLAGS_ALLOWED (PTE_PRESENT is added).  New intermediate
 * entries get PTE_TABLE, plus PTE_USER if flags has it; with PTE_USER,
 * existing intermediate entries on the path get PTE_USER added.
 * 0, -MM_EINVAL, -MM_EEXIST, -MM_ENOMEM, -MM_EPERM.  With
 * m->kernel_top_fixed, a kernel-half va whose top-level entry is missing
 * is -MM_EINVAL (one log line naming the va and the slot); so for every
 * map call below.
 */
PT_MUST_CHECK int pt_map_phys(struct pt_mapper *m, virt_addr_t va, phys_addr_t pa,
                              uint64_t flags, struct pt_flush *flush_out);
/* Take a frame from m->fa, zero it and map it at va (as pt_map_phys).
 * The frame is returned to m->fa if mapping fails.  *pa_out may be NULL. */
PT_MUST_CHECK int pt_map(struct pt_mapper *m, virt_addr_t va, uint64_t flags,
                         phys_addr_t *pa_out, struct pt_flush *flush_out);
/* Map one page of page_size (PAGE_SIZE, PAGE_2M_SIZE or PAGE_1G_SIZE)
 * va -> pa, both aligned to page_size.  1 GiB needs arch_has_1g_pages(),
 * else -MM_EINVAL.  A huge page where a table exists is -MM_EEXIST, even
 * if the table is empty.  Errors as pt_map_phys. */
PT_MUST_CHECK int pt_map_huge(struct pt_mapper *m, virt_addr_t va, phys_addr_t pa,
                              uint64_t page_size, uint64_t flags,
                              struct pt_flush *flush_out);
/*
 * Map [va, va+size) -> [pa, pa+size) with the largest pages that fit:
 * 1 GiB where va and pa are both 1 GiB aligned and max_page_size allows it
 * and the CPU has 1 GiB pages, then 2 MiB, 4 KiB at unaligned edges.
 * max_page_size: PAGE_SIZE, PAGE_2M_SIZE or PAGE_1G_SIZE (1 GiB silently
 * falls back to 2 MiB on CPUs without 1 GiB pages).  va, pa, size 4 KiB
 * aligned, size > 0, the range canonical and in one half.  All or nothing:
 * on any error nothing is mapped and no table is added.  The token is a
 * RANGE over the whole area.  Errors as pt_map_phys.
 */
PT_MUST_CHECK int pt_map_range(struct pt_mapper *m, virt_addr_t va, phys_addr_t pa,
                               uint64_t size, uint64_t flags, uint64_t max_page_size,
                               struct pt_flush *flush_out);

/*
 * Remove the leaf that maps va; va must be aligned to that leaf's page
 * size.  The old page (start pa, flags, size) goes to *old_out (may be
 * NULL).  With free_tables, each intermediate table left without entries is
 * unlinked and given back to m->fa, level by level upwards; the top table
 * is never freed, and with m->kernel_top_fixed no level-3 table of the
 * kernel half is either.  Only free kernel-half tables when no other top
 * table links them.  0, -MM_ENOENT (nothing mapped), -MM_EINVAL, -MM_EPERM.
 */
PT_MUST_CHECK int pt_unmap_phys(struct pt_mapper *m, virt_addr_t va, bool free_tables,
                                struct pt_mapping *old_out, struct pt_flush *flush_out);
/* pt_unmap_phys of a 4 KiB page (huge: -MM_EINVAL) that also gives the
 * mapped frame back to m->fa: the inverse of pt_map. */
PT_MUST_CHECK int pt_unmap(struct pt_mapper *m, virt_addr_t va, bool free_tables,
                           struct pt_flush *flush_out);
/* Unmap every leaf inside [va, va+size) (frames are not freed).  Every
 * 4 KiB page of the range must be mapped and huge leaves must lie wholly
 * inside it, else nothing changes: -MM_ENOENT / -MM_EINVAL. */
PT_MUST_CHECK int pt_unmap_range(struct pt_mapper *m, virt_addr_t va, uint64_t size,
                                 bool free_tables, struct pt_flush *flush_out);

/* Replace the flags of the leaf that maps va (va aligned to its page size;
 * any page size).  With PTE_USER in flags, PTE_USER is also added to the
 * intermediate entries above the leaf, as the map calls do, so the page is
 * reachable from user mode; the token covers that.  Without PTE_USER only
 * the leaf changes.  Errors: -MM_ENOENT, -MM_EINVAL, -MM_EPERM. */
PT_MUST_CHECK int pt_remap(struct pt_mapper *m, virt_addr_t va, uint64_t flags,
                           struct pt_flush *flush_out);

/*
 * Give the top-level slot of each va in vas[0..n) a table if it has none:
 * a zeroed level-3 table linked with PTE_TABLE (a PTE_USER mapping below
 * adds PTE_USER later, as usual).  All or nothing: the frames are taken up front.  No flush is
 * owed: the entries were not present, and x86 never caches a not-present
 * entry.  0 with *created (may be NULL) the number of tables added,
 * -MM_ENOMEM, -MM_EINVAL (a va non-canonical; logged), -MM_EPERM
 * (read-only); nothing changes on failure.
 */
PT_MUST_CHECK int pt_prepare_top_slots(struct pt_mapper *m, const virt_addr_t *vas, unsigned n,
                                       unsigned *created);

/* Look va up.  0 and *out filled, -MM_ENOENT, -MM_EINVAL (non-canonical). */
PT_MUST_CHECK int pt_translate(const struct pt_mapper *m, virt_addr_t va,
                               struct pt_mapping *out);
/* Physical address of the table at `level` (4..1) on the walk for va.
 * -MM_ENOENT if the walk stops above it (missing entry or huge leaf). */
PT_MUST_CHECK int pt_get_table(const struct pt_mapper *m, virt_addr_t va, unsigned level,
                               phys_addr_t *table_pa_out);
/* The entry for va in the table at `level` (may be empty: raw 0).
 * -MM_ENOENT if that table does not exist. */
PT_MUST_CHECK int pt_get_entry(const struct pt_mapper *m, virt_addr_t va, unsigned level,
                               pt_entry_t *entry_out);

#ifdef MM_STEP_COUNT
/*
 * Tables the mapper has visited on the calling thread so far, over all
 * mappers: one per table whose entries a walk, a plan, an install or an
 * emptiness check reads (a table's 512-entry emptiness scan counts once).
 * A cost meter for host tests: the difference around one call is that
 * call's cost; mapping or unmapping one 4 KiB page visits a bounded number
 * of tables, whatever else is mapped.  Compiled only with -DMM_STEP_COUNT
 * (the host tests' flags); the kernel build, the benchmarks and libmm.a
 * have neither the counter nor this function.
 */
uint64_t pt_steps(void);
#endif

#endif
