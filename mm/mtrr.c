/*
 * mtrr.c - the memory types of physical memory as the MTRRs set them (see
 * mm/mtrr.h for the contracts; SDM vol. 3, 11.11).
 *
 * Algorithm.  mtrr_type_at() applies the precedence rules of SDM 11.11.4.1
 * to one address: fixed ranges first (first MiB), then every valid variable
 * range that matches ((pa & mask) == base), then the default type.
 * mtrr_uniform_end() walks the candidate boundaries above start in
 * increasing order - the fixed-range edges and 1 MiB, and for each
 * variable range the start and end of the block its mask describes - and
 * stops at the first one where mtrr_type_at() differs from start's type.
 * With contiguous masks each variable range gives at most two candidates,
 * so a call costs O(candidates * ranges): a few hundred steps on real
 * machines.
 *
 * Invariants of a struct mtrr_state: var[0..nvar) are valid ranges with
 * base == base & mask; types are stored as read (a reserved type value is
 * kept and simply compares unequal to the others).
 *
 * No locking: mtrr_read reads this CPU's MSRs into the caller's struct;
 * the other functions only read their argument.
 */
#include <mm/arch.h>
#include <mm/log.h>
#include <mm/mtrr.h>

#define CAP_VCNT_MASK  0xffu
#define CAP_FIX        (UINT64_C(1) << 8)
#define DEF_TYPE_MASK  0xffu
#define DEF_FE         (UINT64_C(1) << 10)
#define DEF_E          (UINT64_C(1) << 11)
#define PHYSMASK_VALID (UINT64_C(1) << 11)

/* The fixed-range MSRs in address order, each holding eight one-byte types. */
static const uint32_t fixed_msrs[MTRR_NR_FIXED / 8] = {
    MSR_MTRR_FIX64K_00000, MSR_MTRR_FIX16K_80000, MSR_MTRR_FIX16K_A0000,
    MSR_MTRR_FIX4K_C0000 + 0, MSR_MTRR_FIX4K_C0000 + 1, MSR_MTRR_FIX4K_C0000 + 2,
    MSR_MTRR_FIX4K_C0000 + 3, MSR_MTRR_FIX4K_C0000 + 4, MSR_MTRR_FIX4K_C0000 + 5,
    MSR_MTRR_FIX4K_C0000 + 6, MSR_MTRR_FIX4K_C0000 + 7,
};

/* Where the three sizes of fixed ranges start (SDM vol. 3, 11.11.2.2). */
#define FIX16K_START UINT64_C(0x80000)
#define FIX4K_START  UINT64_C(0xc0000)

void mtrr_read(struct mtrr_state *s)
{
    s->enabled = false;
    s->fixed_enabled = false;
    s->default_type = MTRR_TYPE_UC;
    s->nvar = 0;
    s->addr_bits = ((UINT64_C(1) << arch_phys_addr_bits()) - 1) & ~(PAGE_SIZE - 1);
    for (unsigned i = 0; i < MTRR_NR_FIXED; i++)
        s->fixed[i] = MTRR_TYPE_UC;
    if (!arch_has_mtrr())
        return;
    uint64_t cap = arch_rdmsr(MSR_MTRR_CAP), def = arch_rdmsr(MSR_MTRR_DEF_TYPE);
    if (!(def & DEF_E))
        return;
    s->enabled = true;
    s->default_type = (unsigned)(def & DEF_TYPE_MASK);

    unsigned vcnt = (unsigned)(cap & CAP_VCNT_MASK);
    if (vcnt > MTRR_MAX_VAR) {
        mm_printf("mtrr_read: MTRRcap reports %u variable ranges, reading the first %u\n",
                  vcnt, MTRR_MAX_VAR);
        vcnt = MTRR_MAX_VAR;
    }
    for (unsigned n = 0; n < vcnt; n++) {
        uint64_t base = arch_rdmsr(MSR_MTRR_PHYSBASE(n));
        uint64_t mask = arch_rdmsr(MSR_MTRR_PHYSMASK(n));
        if (!(mask & PHYSMASK_VALID))
            continue;
        struct mtrr_var *v = &s->var[s->nvar++];
        v->mask = mask & s->addr_bits;
        v->base = base & v->mask;
        v->type = (unsigned)(base & DEF_TYPE_MASK);
    }

    if ((cap & CAP_FIX) && (def & DEF_FE)) {
        s->fixed_enabled = true;
        for (unsigned m = 0; m < MTRR_NR_FIXED / 8; m++) {
            uint64_t types = arch_rdmsr(fixed_msrs[m]);
            for (unsigned b = 0; b < 8; b++)
                s->fixed[m * 8 + b] = (uint8_t)(types >> (8 * b));
        }
    }
}

/* Index in s->fixed of the fixed range holding pa (pa < 1 MiB). */
static unsigned fixed_index(uint64_t pa)
{
    if (pa < FIX16K_START)
        return (unsigned)(pa >> 16);
    if (pa < FIX4K_START)
        return 8 + (unsigned)((pa - FIX16K_START) >> 14);
    return 24 + (unsigned)((pa - FIX4K_START) >> 12);
}

/* The first fixed-range edge above pa (pa < 1 MiB); 1 MiB is the last. */
static uint64_t fixed_next_edge(uint64_t pa)
{
    uint64_t step = pa < FIX16K_START ? 64 * KiB : pa < FIX4K_START ? 16 * KiB : 4 * KiB;
    return align_down_u64(pa, step) + step;
}

unsigned mtrr_type_at(const struct mtrr_state *s, uint64_t pa)
{
    if (!s->enabled)
        return MTRR_TYPE_UC;
    if (s->fixed_enabled && pa < MTRR_FIXED_END)
        return s->fixed[fixed_index(pa)];
    unsigned seen = 0;           /* bit t: a matching range has type t */
    bool other = false;          /* a matching range has a type above 31 */
    unsigned first = 0;
    for (unsigned i = 0; i < s->nvar; i++) {
        const struct mtrr_var *v = &s->var[i];
        if ((pa & v->mask) != v->base)
            continue;
        if (seen == 0 && !other)
            first = v->type;
        if (v->type < 32)
            seen |= 1u << v->type;
        else
            other = true;
    }
    if (seen == 0 && !other)
        return s->default_type;
    if (seen & (1u << MTRR_TYPE_UC))
        return MTRR_TYPE_UC;
    if (!other && seen == (1u << first))
        return first;
    if (!other && seen == ((1u << MTRR_TYPE_WT) | (1u << MTRR_TYPE_WB)))
        return MTRR_TYPE_WT;
    return MTRR_TYPE_UNDEFINED;
}

/* Is the mask contiguous (ones from the CPU's top address bit down to its
 * lowest set bit)?  Then the range is one block [base, base + lowest bit). */
static bool mask_is_contiguous(uint64_t mask, uint64_t addr_bits)
{
    uint64_t low = mask & -mask;
    return (mask | (low - 1)) == (addr_bits | (PAGE_SIZE - 1));
}

/*
 * The first point above pos where variable range v may start or stop
 * matching, or UINT64_MAX if there is none.  *exact is cleared for a
 * non-contiguous mask, whose edges are only bounded from below.
 */
static uint64_t var_next_edge(const struct mtrr_var *v, uint64_t addr_bits, uint64_t pos,
                              bool *exact)
{
    if (v->mask == 0)
        return UINT64_MAX;                /* matches every address */
    uint64_t size = v->mask & -v->mask;
    if (!mask_is_contiguous(v->mask, addr_bits)) {
        *exact = false;
        uint64_t edge = align_down_u64(pos, size) + size;
        return edge > pos ? edge : UINT64_MAX;
    }
    if (v->base > pos)
        return v->base;
    if (v->base + size > pos)
        return v->base + size;
    return UINT64_MAX;
}

uint64_t mtrr_uniform_end(const struct mtrr_state *s, uint64_t start, uint64_t end)
{
    if (start >= end || !s->enabled)
        return end;
    unsigned type = mtrr_type_at(s, start);
    uint64_t pos = start;
    for (;;) {
        uint64_t next = UINT64_MAX;
        bool exact = true;
        if (s->fixed_enabled && pos < MTRR_FIXED_END)
            next = fixed_next_edge(pos);
        for (unsigned i = 0; i < s->nvar; i++) {
            bool e = true;
            uint64_t edge = var_next_edge(&s->var[i], s->addr_bits, pos, &e);
            if (edge < next || (edge == next && !e)) {
                next = edge;
                exact = e;
            }
        }
        if (next >= end)
            return end;
        if (!exact || mtrr_type_at(s, next) != type)
            return next;
        pos = next;
    }
}

const char *mtrr_type_name(unsigned type)
{
    switch (type) {
    case MTRR_TYPE_UC: return "UC";
    case MTRR_TYPE_WC: return "WC";
    case MTRR_TYPE_WT: return "WT";
    case MTRR_TYPE_WP: return "WP";
    case MTRR_TYPE_WB: return "WB";
    default: return "??";
    }
}
