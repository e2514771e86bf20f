/*
 * test_mtrr.c - reading and applying the MTRRs (mm/mtrr.c): register
 * decoding through the emulated arch_rdmsr (tests/host/arch_host.c), the
 * precedence rules of SDM vol. 3, 11.11.4.1, and where a memory type
 * changes.  Register values are written out in the tests as firmware
 * would program them; the expected types follow from the SDM's rules.
 */
#include "harness.h"
#include <mm/mtrr.h>

extern bool host_has_mtrr;
extern uint64_t host_msr[0x300];
extern unsigned host_phys_addr_bits;

#define CAP_FIX   (UINT64_C(1) << 8)
#define DEF_FE    (UINT64_C(1) << 10)
#define DEF_E     (UINT64_C(1) << 11)
#define VALID     (UINT64_C(1) << 11)
#define ALL(t)    (UINT64_C(0x0101010101010101) * (t))   /* eight equal type bytes */

static struct mtrr_state st;

/* Clean MSRs: MTRRs present, enabled, default `def`, VCNT nvar, no fixed. */
static void reset(unsigned nvar, unsigned def)
{
    memset(host_msr, 0, sizeof host_msr);
    host_has_mtrr = true;
    host_phys_addr_bits = 46;
    host_msr[MSR_MTRR_CAP] = nvar;
    host_msr[MSR_MTRR_DEF_TYPE] = DEF_E | def;
}

/* Variable range n: [base, base + size) of `type`, size a power of two. */
static void set_var(unsigned n, uint64_t base, uint64_t size, unsigned type)
{
    uint64_t width = (UINT64_C(1) << host_phys_addr_bits) - 1;
    host_msr[MSR_MTRR_PHYSBASE(n)] = base | type;
    host_msr[MSR_MTRR_PHYSMASK(n)] = (~(size - 1) & width) | VALID;
}

/* The fixed ranges as SeaBIOS programs them: WB up to 0xA0000, the VGA
 * window UC, the option-ROM and BIOS area WP. */
static void set_pc_fixed(void)
{
    host_msr[MSR_MTRR_CAP] |= CAP_FIX;
    host_msr[MSR_MTRR_DEF_TYPE] |= DEF_FE;
    host_msr[MSR_MTRR_FIX64K_00000] = ALL(MTRR_TYPE_WB);
    host_msr[MSR_MTRR_FIX16K_80000] = ALL(MTRR_TYPE_WB);
    host_msr[MSR_MTRR_FIX16K_A0000] = ALL(MTRR_TYPE_UC);
    for (unsigned i = 0; i < 8; i++)
        host_msr[MSR_MTRR_FIX4K_C0000 + i] = ALL(MTRR_TYPE_WP);
}

/* No MTRRs, or MTRRs off: UC everywhere and no boundary anywhere. */
static void test_absent_or_disabled(void)
{
    reset(2, MTRR_TYPE_WB);
    set_var(0, 0, 1 * GiB, MTRR_TYPE_UC);
    host_has_mtrr = false;
    mtrr_read(&st);
    CHECK(!st.enabled);
    CHECK_EQ(mtrr_type_at(&st, 0), MTRR_TYPE_UC);
    CHECK_EQ(mtrr_uniform_end(&st, 0, 8 * GiB), 8 * GiB);

    host_has_mtrr = true;
    host_msr[MSR_MTRR_DEF_TYPE] &= ~DEF_E;
    mtrr_read(&st);
    CHECK(!st.enabled);
    CHECK_EQ(st.nvar, 0);
    CHECK_EQ(mtrr_uniform_end(&st, 0, 8 * GiB), 8 * GiB);
}

/* Every fixed-range MSR, every size: one byte per range, lowest first. */
static void test_fixed_decoding(void)
{
    reset(0, MTRR_TYPE_UC);
    set_pc_fixed();
    host_msr[MSR_MTRR_FIX64K_00000] = ALL(MTRR_TYPE_WB) & ~(UINT64_C(0xff) << 8);   /* 64K..128K UC */
    host_msr[MSR_MTRR_FIX16K_A0000] = UINT64_C(0x01) << 24;                   /* 0xAC000 WC */
    host_msr[MSR_MTRR_FIX4K_C0000 + 7] = UINT64_C(0x0605050505050505);       /* 0xFF000 WB */
    mtrr_read(&st);
    REQUIRE(st.enabled && st.fixed_enabled);
    CHECK_EQ(mtrr_type_at(&st, 0), MTRR_TYPE_WB);
    CHECK_EQ(mtrr_type_at(&st, 0x10000), MTRR_TYPE_UC);
    CHECK_EQ(mtrr_type_at(&st, 0x1ffff), MTRR_TYPE_UC);
    CHECK_EQ(mtrr_type_at(&st, 0x20000), MTRR_TYPE_WB);
    CHECK_EQ(mtrr_type_at(&st, 0x9ffff), MTRR_TYPE_WB);
    CHECK_EQ(mtrr_type_at(&st, 0xa0000), MTRR_TYPE_UC);
    CHECK_EQ(mtrr_type_at(&st, 0xac000), MTRR_TYPE_WC);
    CHECK_EQ(mtrr_type_at(&st, 0xaffff), MTRR_TYPE_WC);
    CHECK_EQ(mtrr_type_at(&st, 0xb0000), MTRR_TYPE_UC);
    CHECK_EQ(mtrr_type_at(&st, 0xc0000), MTRR_TYPE_WP);
    CHECK_EQ(mtrr_type_at(&st, 0xfefff), MTRR_TYPE_WP);
    CHECK_EQ(mtrr_type_at(&st, 0xff000), MTRR_TYPE_WB);         /* last 4K range */
    CHECK_EQ(mtrr_type_at(&st, 0x100000), MTRR_TYPE_UC);        /* default above 1 MiB */

    /* Boundaries: each change of type, and none where the type goes on. */
    CHECK_EQ(mtrr_uniform_end(&st, 0, 2 * MiB), 0x10000);
    CHECK_EQ(mtrr_uniform_end(&st, 0x20000, 2 * MiB), 0xa0000);
    CHECK_EQ(mtrr_uniform_end(&st, 0xa0000, 2 * MiB), 0xac000);
    CHECK_EQ(mtrr_uniform_end(&st, 0xc0000, 2 * MiB), 0xff000);
    CHECK_EQ(mtrr_uniform_end(&st, 0xff000, 2 * MiB), 0x100000);
    CHECK_EQ(mtrr_uniform_end(&st, 0x100000, 2 * MiB), 2 * MiB);
}

/* Fixed ranges count only with MTRRcap.FIX and MTRRdefType.FE. */
static void test_fixed_needs_fix_and_fe(void)
{
    reset(1, MTRR_TYPE_WB);
    set_pc_fixed();
    host_msr[MSR_MTRR_DEF_TYPE] &= ~DEF_FE;
    mtrr_read(&st);
    CHECK(!st.fixed_enabled);
    CHECK_EQ(mtrr_type_at(&st, 0xa0000), MTRR_TYPE_WB);
    CHECK_EQ(mtrr_uniform_end(&st, 0, 2 * MiB), 2 * MiB);

    reset(1, MTRR_TYPE_WB);
    set_pc_fixed();
    host_msr[MSR_MTRR_CAP] &= ~CAP_FIX;
    mtrr_read(&st);
    CHECK(!st.fixed_enabled);
    CHECK_EQ(mtrr_type_at(&st, 0xa0000), MTRR_TYPE_WB);
}

/* Variable ranges: valid bit, mask within the CPU's width, VCNT. */
static void test_variable_decoding(void)
{
    reset(3, MTRR_TYPE_WB);
    set_var(0, 3 * GiB, 1 * GiB, MTRR_TYPE_UC);
    set_var(1, 0, 64 * GiB, MTRR_TYPE_WT);
    host_msr[MSR_MTRR_PHYSMASK(1)] &= ~VALID;            /* off: ignored */
    set_var(2, 8 * GiB, 2 * MiB, MTRR_TYPE_WC);
    set_var(3, 0, 1 * GiB, MTRR_TYPE_UC);                /* beyond VCNT: ignored */
    mtrr_read(&st);
    REQUIRE(st.enabled);
    CHECK_EQ(st.nvar, 2);
    CHECK_EQ(st.default_type, MTRR_TYPE_WB);
    CHECK_EQ(mtrr_type_at(&st, 0), MTRR_TYPE_WB);
    CHECK_EQ(mtrr_type_at(&st, 3 * GiB - 1), MTRR_TYPE_WB);
    CHECK_EQ(mtrr_type_at(&st, 3 * GiB), MTRR_TYPE_UC);
    CHECK_EQ(mtrr_type_at(&st, 4 * GiB - 1), MTRR_TYPE_UC);
    CHECK_EQ(mtrr_type_at(&st, 4 * GiB), MTRR_TYPE_WB);
    CHECK_EQ(mtrr_type_at(&st, 8 * GiB + 2 * MiB - 1), MTRR_TYPE_WC);

    /* A 36-bit CPU: mask bits above bit 35 do not exist; the range still
     * is one block, and 2^36 + x does not alias x. */
    reset(1, MTRR_TYPE_WB);
    host_phys_addr_bits = 36;
    host_msr[MSR_MTRR_PHYSBASE(0)] = (3 * GiB) | MTRR_TYPE_UC;
    host_msr[MSR_MTRR_PHYSMASK(0)] = UINT64_C(0x000fffffc0000000) | VALID;  /* 52-bit style */
    mtrr_read(&st);
    CHECK_EQ(st.var[0].mask, UINT64_C(0xfc0000000));
    CHECK_EQ(mtrr_type_at(&st, 3 * GiB), MTRR_TYPE_UC);
    CHECK_EQ(mtrr_uniform_end(&st, 0, 16 * GiB), 3 * GiB);
    CHECK_EQ(mtrr_uniform_end(&st, 3 * GiB, 16 * GiB), 4 * GiB);

    /* VCNT above what the state holds: cut, with one log line. */
    reset(200, MTRR_TYPE_WB);
    unsigned long lines = harness_log_lines;
    mtrr_read(&st);
    CHECK_EQ(harness_log_lines - lines, 1);
    CHECK_EQ(st.nvar, 0);
}

/* Overlapping variable ranges (SDM vol. 3, 11.11.4.1). */
static void test_overlap_precedence(void)
{
    reset(8, MTRR_TYPE_UC);
    set_var(0, 0, 4 * GiB, MTRR_TYPE_WB);
    set_var(1, 1 * GiB, 1 * GiB, MTRR_TYPE_UC);         /* UC wins over WB */
    set_var(2, 2 * GiB, 1 * GiB, MTRR_TYPE_WT);         /* WT + WB -> WT */
    set_var(3, 3 * GiB, 512 * MiB, MTRR_TYPE_WB);       /* WB + WB -> WB */
    set_var(4, 3 * GiB + 512 * MiB, 256 * MiB, MTRR_TYPE_WC);   /* WC + WB: undefined */
    set_var(5, 8 * GiB, 1 * GiB, MTRR_TYPE_WC);
    set_var(6, 8 * GiB, 512 * MiB, MTRR_TYPE_UC);       /* UC wins over WC too */
    set_var(7, 2 * GiB, 256 * MiB, MTRR_TYPE_UC);       /* and over WT + WB */
    mtrr_read(&st);
    REQUIRE(st.nvar == 8);
    CHECK_EQ(mtrr_type_at(&st, 0), MTRR_TYPE_WB);
    CHECK_EQ(mtrr_type_at(&st, 1 * GiB), MTRR_TYPE_UC);
    CHECK_EQ(mtrr_type_at(&st, 2 * GiB), MTRR_TYPE_UC);
    CHECK_EQ(mtrr_type_at(&st, 2 * GiB + 256 * MiB), MTRR_TYPE_WT);
    CHECK_EQ(mtrr_type_at(&st, 3 * GiB), MTRR_TYPE_WB);
    CHECK_EQ(mtrr_type_at(&st, 3 * GiB + 512 * MiB), MTRR_TYPE_UNDEFINED);
    CHECK_EQ(mtrr_type_at(&st, 3 * GiB + 768 * MiB), MTRR_TYPE_WB);
    CHECK_EQ(mtrr_type_at(&st, 4 * GiB), MTRR_TYPE_UC);   /* default */
    CHECK_EQ(mtrr_type_at(&st, 8 * GiB), MTRR_TYPE_UC);
    CHECK_EQ(mtrr_type_at(&st, 8 * GiB + 512 * MiB), MTRR_TYPE_WC);

    /* Where the type changes, and only there. */
    CHECK_EQ(mtrr_uniform_end(&st, 0, 16 * GiB), 1 * GiB);
    CHECK_EQ(mtrr_uniform_end(&st, 1 * GiB, 16 * GiB), 2 * GiB + 256 * MiB);  /* UC goes on */
    CHECK_EQ(mtrr_uniform_end(&st, 2 * GiB + 256 * MiB, 16 * GiB), 3 * GiB);
    CHECK_EQ(mtrr_uniform_end(&st, 3 * GiB, 16 * GiB), 3 * GiB + 512 * MiB);
    CHECK_EQ(mtrr_uniform_end(&st, 3 * GiB + 768 * MiB, 16 * GiB), 4 * GiB);
    CHECK_EQ(mtrr_uniform_end(&st, 4 * GiB, 16 * GiB), 8 * GiB + 512 * MiB);  /* UC, UC */
    CHECK_EQ(mtrr_uniform_end(&st, 9 * GiB, 16 * GiB), 16 * GiB);
    CHECK_EQ(mtrr_uniform_end(&st, 5 * GiB, 5 * GiB), 5 * GiB);             /* empty */
}

/* A mask with a hole in it matches a periodic set of blocks: the end may
 * stop early at a block edge (conservative), but is never past a change. */
static void test_noncontiguous_mask(void)
{
    reset(1, MTRR_TYPE_WB);
    uint64_t width = (UINT64_C(1) << 46) - 1;
    /* bit 31 left out of the mask: [0, 1G) and [2G, 3G) match */
    host_msr[MSR_MTRR_PHYSBASE(0)] = 0 | MTRR_TYPE_UC;
    host_msr[MSR_MTRR_PHYSMASK(0)] = (~(1 * GiB - 1) & width & ~(UINT64_C(1) << 31)) | VALID;
    mtrr_read(&st);
    CHECK_EQ(mtrr_type_at(&st, 0), MTRR_TYPE_UC);
    CHECK_EQ(mtrr_type_at(&st, 1 * GiB), MTRR_TYPE_WB);
    CHECK_EQ(mtrr_type_at(&st, 2 * GiB), MTRR_TYPE_UC);
    CHECK_EQ(mtrr_type_at(&st, 3 * GiB), MTRR_TYPE_WB);
    CHECK_EQ(mtrr_type_at(&st, 4 * GiB), MTRR_TYPE_WB);
    for (uint64_t start = 0; start < 8 * GiB; start += 512 * MiB) {
        uint64_t e = mtrr_uniform_end(&st, start, 8 * GiB);
        CHECK(e > start && e <= 8 * GiB);
        for (uint64_t pa = start; pa < e; pa += 256 * MiB)
            CHECK_EQ(mtrr_type_at(&st, pa), mtrr_type_at(&st, start));
    }
    CHECK_EQ(mtrr_uniform_end(&st, 0, 8 * GiB), 1 * GiB);
    CHECK_EQ(mtrr_uniform_end(&st, 1 * GiB, 8 * GiB), 2 * GiB);
}

int main(void)
{
    harness_quiet = 1;
    RUN(test_absent_or_disabled);
    RUN(test_fixed_decoding);
    RUN(test_fixed_needs_fix_and_fe);
    RUN(test_variable_decoding);
    RUN(test_overlap_precedence);
    RUN(test_noncontiguous_mask);
    return harness_finish();
}
