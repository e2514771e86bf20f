/*
 * mm/ptdump.h - reading a whole page-table tree: a leaf walker, a printer
 * of coalesced ranges, a W+X checker and a table-page counter.
 *
 * None of these change the tables or allocate; they only read through the
 * direct map.  Callers must keep writers away while they run (or accept a
 * snapshot that may be torn).
 */
#ifndef MM_PTDUMP_H
#define MM_PTDUMP_H

#include <mm/paging.h>

/*
 * One present leaf: va (canonical) maps page_size bytes at pa.  flags are
 * the leaf's bits without address and PTE_HUGE.  eff_flags are the
 * permissions the CPU applies after combining the whole walk: PTE_WRITE
 * and PTE_USER only if every level has them, PTE_NX if any level has it.
 */
struct ptdump_leaf {
    virt_addr_t va;
    phys_addr_t pa;
    unsigned level;
    uint64_t page_size;
    uint64_t flags;
    uint64_t eff_flags;
};

typedef void (*ptdump_leaf_fn)(void *ctx, const struct ptdump_leaf *leaf);

/* Call fn for every present leaf in increasing va order (low half first). */
void ptdump_walk(const struct pt_mapper *m, ptdump_leaf_fn fn, void *ctx);

/*
 * Print the mappings as coalesced lines through mm_printf: neighbouring
 * leaves with the same page size and flags (accessed/dirty ignored) whose
 * physical pages are contiguous make one line, e.g.
 *   ffff800000000000-ffff800040000000  1G  pages 1G  pa 0000000000000000  RW NX G
 * Prints no header (the caller names the table).  Returns the number of
 * lines printed.
 */
unsigned long ptdump_print(const struct pt_mapper *m);

/* Format the flag word of a leaf as "RW NX G", "R X", ... into buf. */
void ptdump_flags_str(uint64_t flags, char *buf, size_t size);

/* Number of 4 KiB units that are both writable and executable by the
 * effective permissions (a 2 MiB leaf counts 512).  0 means W^X holds. */
uint64_t ptdump_count_wx(const struct pt_mapper *m);

/* Number of table frames in the tree, the top table included. */
uint64_t ptdump_count_tables(const struct pt_mapper *m);

#endif
