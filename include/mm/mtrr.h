/*
 * mm/mtrr.h - the memory types the MTRRs give physical memory (SDM vol. 3,
 * 11.11), read once so that the direct map never puts two memory types in
 * one large page (SDM vol. 3, 11.11.9: the processor's behaviour is then
 * undefined).
 *
 * mtrr_read() copies the MTRR MSRs into a struct mtrr_state through
 * arch_rdmsr(); everything else is a pure function of that state.  The
 * host tests emulate arch_rdmsr, so they run all of it on register values
 * they make up.  No locking: mm_init
 * reads the state on the boot CPU, and the state is plain data.
 */
#ifndef MM_MTRR_H
#define MM_MTRR_H

#include <mm/types.h>

/* Memory types of MTRRs and of the PAT (SDM vol. 3, table 11-8). */
#define MTRR_TYPE_UC 0u          /* uncacheable */
#define MTRR_TYPE_WC 1u          /* write-combining */
#define MTRR_TYPE_WT 4u          /* write-through */
#define MTRR_TYPE_WP 5u          /* write-protected */
#define MTRR_TYPE_WB 6u          /* write-back */
/* What mtrr_type_at() returns where variable ranges overlap in a way the
 * SDM leaves undefined (e.g. WC over WB). */
#define MTRR_TYPE_UNDEFINED 0xffu

/* MSR numbers (SDM vol. 3, 11.11.1 to 11.11.3). */
#define MSR_MTRR_CAP          0xfeu     /* VCNT [7:0], FIX [8], WC [10] */
#define MSR_MTRR_DEF_TYPE     0x2ffu    /* type [7:0], FE [10], E [11] */
#define MSR_MTRR_PHYSBASE(n)  (0x200u + 2u * (n))   /* type [7:0], base [51:12] */
#define MSR_MTRR_PHYSMASK(n)  (0x201u + 2u * (n))   /* valid [11], mask [51:12] */
#define MSR_MTRR_FIX64K_00000 0x250u    /* 8 x 64 KiB from 0 */
#define MSR_MTRR_FIX16K_80000 0x258u    /* 8 x 16 KiB from 0x80000 */
#define MSR_MTRR_FIX16K_A0000 0x259u    /* 8 x 16 KiB from 0xA0000 */
#define MSR_MTRR_FIX4K_C0000  0x268u    /* 0x268..0x26F: 8 x 4 KiB each from 0xC0000 */

/* Variable ranges kept: the MSR pairs below the fixed-range MSRs (0x250). */
#define MTRR_MAX_VAR 40u
/* Fixed ranges: 8 of 64 KiB, 16 of 16 KiB, 64 of 4 KiB cover the first MiB. */
#define MTRR_NR_FIXED 88u
#define MTRR_FIXED_END (1 * MiB)

/* One valid variable range: address x matches if (x & mask) == base. */
struct mtrr_var {
    uint64_t base;           /* PHYSBASE's address bits, already ANDed with mask */
    uint64_t mask;           /* PHYSMASK's address bits (within the CPU's width) */
    unsigned type;
};

struct mtrr_state {
    bool enabled;            /* CPU has MTRRs and MTRRdefType.E is set */
    bool fixed_enabled;      /* also MTRRcap.FIX and MTRRdefType.FE */
    unsigned default_type;   /* for addresses no range matches */
    uint64_t addr_bits;      /* the CPU's address bits [12, width) */
    unsigned nvar;           /* valid variable ranges in var[] */
    struct mtrr_var var[MTRR_MAX_VAR];
    uint8_t fixed[MTRR_NR_FIXED];   /* type of each fixed range, by address */
};

/*
 * Read the MTRRs of this CPU into *s: MTRRcap, MTRRdefType, the VCNT
 * variable pairs (only the valid ones are kept) and, if the CPU has them,
 * the eleven fixed-range MSRs.  Address bits are those below
 * arch_phys_addr_bits().  Without MTRRs (CPUID.01H:EDX.MTRR clear) or with
 * MTRRdefType.E clear, s->enabled is false.  A VCNT above MTRR_MAX_VAR is
 * cut to it with one log line.  Calls arch_rdmsr only for MTRR MSRs.
 */
void mtrr_read(struct mtrr_state *s);

/*
 * The memory type the MTRRs give byte pa (SDM vol. 3, 11.11.4.1): UC when
 * disabled; a fixed range's type in the first MiB when those are enabled;
 * else the matching variable ranges' type (UC if any is UC, WT if they mix
 * WT and WB, MTRR_TYPE_UNDEFINED for other mixes); else the default type.
 */
unsigned mtrr_type_at(const struct mtrr_state *s, uint64_t pa);

/*
 * How far [start, end) keeps the memory type of byte start: returns e with
 * start < e <= end such that every byte of [start, e) has one type, and e
 * is the first address where the type changes (or end).  A variable range
 * whose mask is not contiguous (legal, but no firmware programs one) is
 * followed conservatively: e may stop at one of its block edges although
 * the type goes on.  Returns end if start >= end or the MTRRs are disabled.
 */
uint64_t mtrr_uniform_end(const struct mtrr_state *s, uint64_t start, uint64_t end);

/* The short name of a type ("UC", "WB", ..., "??" for others). */
const char *mtrr_type_name(unsigned type);

#endif
