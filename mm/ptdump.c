/*
 * mm/ptdump.c - read-only views of a page-table tree: every leaf in va
 * order, a printer that merges neighbouring leaves into ranges, the W+X
 * count and the number of table frames.
 *
 * The walk is a depth-first visit of present entries.  It carries the
 * effective permissions down the tree the way the CPU combines them:
 * writable and user only if every level allows it, no-execute if any level
 * forbids it.  Level-4 entries are always treated as table pointers (a PS
 * bit there is reserved).  Nothing is allocated or written; the walk holds
 * no lock, so run it while no one edits the tree (mm init, self-tests) or
 * accept a torn snapshot.
 */
#include <mm/log.h>
#include <mm/pat.h>
#include <mm/ptdump.h>

#define PERM_BITS   (PTE_WRITE | PTE_USER | PTE_NX)

static inline pt_entry_t read_entry(phys_addr_t table_pa, unsigned idx)
{
    const uint64_t *words = (const uint64_t *)pa_to_ptr(table_pa);
    return (pt_entry_t){ __atomic_load_n(&words[idx], __ATOMIC_RELAXED) };
}

/* Combine the permissions of one more level into the effective ones. */
static uint64_t combine_perm(uint64_t eff, uint64_t entry_raw)
{
    uint64_t w_u = eff & entry_raw & (PTE_WRITE | PTE_USER);
    uint64_t nx = (eff | entry_raw) & PTE_NX;
    return w_u | nx;
}

static void walk_table(phys_addr_t table_pa, unsigned level, uint64_t va_base,
                       uint64_t eff, ptdump_leaf_fn fn, void *ctx)
{
    for (unsigned i = 0; i < PT_ENTRIES; i++) {
        pt_entry_t e = read_entry(table_pa, i);
        if (!pte_present(e))
            continue;
        uint64_t va = va_base + ((uint64_t)i << pt_level_shift(level));
        uint64_t eff_here = combine_perm(eff, e.raw);
        if (level == PT_LEVEL_PML4 || !pte_is_leaf(e, level)) {
            walk_table(pte_pa(e), level - 1, va, eff_here, fn, ctx);
            continue;
        }
        uint64_t size = pt_level_size(level);
        struct ptdump_leaf leaf = {
            .va = pt_va_canonicalize(va),
            .pa = PA(e.raw & PTE_ADDR_MASK & ~(size - 1)),
            .level = level,
            .page_size = size,
            .flags = pte_leaf_flags(e, level),
        };
        leaf.eff_flags = (leaf.flags & ~PERM_BITS) | eff_here;
        fn(ctx, &leaf);
    }
}

void ptdump_walk(const struct pt_mapper *m, ptdump_leaf_fn fn, void *ctx)
{
    /* Start with every permission granted; levels can only take away. */
    walk_table(m->top_pa, PT_LEVELS, 0, PTE_WRITE | PTE_USER, fn, ctx);
}

/* ----------------------------------------------------------------- printer */

void ptdump_flags_str(uint64_t flags, char *buf, size_t size)
{
    /* The memory type (include/mm/pat.h) when it is not write-back. */
    unsigned type = mm_pat_type_of_flags(flags);
    mm_snprintf(buf, size, "%s %s%s%s%s%s", (flags & PTE_WRITE) ? "RW" : "R",
                (flags & PTE_NX) ? "NX" : "X", (flags & PTE_USER) ? " U" : "",
                (flags & PTE_GLOBAL) ? " G" : "", type == MM_PAT_WB ? "" : " ",
                type == MM_PAT_WB ? "" : mm_pat_type_name(type));
}

/* The range being accumulated by ptdump_print. */
struct dump_state {
    bool active;
    uint64_t va_start, va_end;      /* va_end exclusive */
    uint64_t pa_start, pa_end;
    unsigned level;
    uint64_t flags;                 /* effective permissions, no A/D */
    unsigned long lines;
};

static void dump_emit(struct dump_state *st)
{
    if (!st->active)
        return;
    char size_buf[24], page_buf[8], flag_buf[40];
    /* Compact sizes ("2M", "12K"): every range is whole 4 KiB pages. */
    mm_format_size(size_buf, sizeof size_buf, st->va_end - st->va_start, true);
    mm_format_size(page_buf, sizeof page_buf, pt_level_size(st->level), true);
    ptdump_flags_str(st->flags, flag_buf, sizeof flag_buf);
    mm_printf("%016lx-%016lx %6s  pages %s  pa %013lx  %s\n",
              (unsigned long)st->va_start, (unsigned long)st->va_end, size_buf,
              page_buf, (unsigned long)st->pa_start, flag_buf);
    st->lines++;
    st->active = false;
}

static void dump_leaf(void *ctx, const struct ptdump_leaf *leaf)
{
    struct dump_state *st = ctx;
    uint64_t flags = leaf->eff_flags & ~(PTE_ACCESSED | PTE_DIRTY);
    if (st->active && leaf->va.raw == st->va_end && leaf->pa.raw == st->pa_end &&
        leaf->level == st->level && flags == st->flags) {
        st->va_end += leaf->page_size;
        st->pa_end += leaf->page_size;
        return;
    }
    dump_emit(st);
    st->active = true;
    st->va_start = leaf->va.raw;
    st->va_end = leaf->va.raw + leaf->page_size;
    st->pa_start = leaf->pa.raw;
    st->pa_end = leaf->pa.raw + leaf->page_size;
    st->level = leaf->level;
    st->flags = flags;
}

unsigned long ptdump_print(const struct pt_mapper *m)
{
    struct dump_state st = { 0 };
    ptdump_walk(m, dump_leaf, &st);
    dump_emit(&st);
    return st.lines;
}

/* ----------------------------------------------------------------- checks */

static void count_wx_leaf(void *ctx, const struct ptdump_leaf *leaf)
{
    uint64_t *count = ctx;
    if ((leaf->eff_flags & PTE_WRITE) && !(leaf->eff_flags & PTE_NX))
        *count += leaf->page_size >> PAGE_SHIFT;
}

uint64_t ptdump_count_wx(const struct pt_mapper *m)
{
    uint64_t count = 0;
    ptdump_walk(m, count_wx_leaf, &count);
    return count;
}

static uint64_t count_tables(phys_addr_t table_pa, unsigned level)
{
    uint64_t n = 1;
    if (level == PT_LEVEL_PT)
        return n;
    for (unsigned i = 0; i < PT_ENTRIES; i++) {
        pt_entry_t e = read_entry(table_pa, i);
        if (pte_present(e) && (level == PT_LEVEL_PML4 || !pte_is_leaf(e, level)))
            n += count_tables(pte_pa(e), level - 1);
    }
    return n;
}

uint64_t ptdump_count_tables(const struct pt_mapper *m)
{
    return count_tables(m->top_pa, PT_LEVELS);
}
