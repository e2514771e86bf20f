/*
 * mmio_suite.c - the MMIO pool and ioremap on real devices.
 *
 * The cases map two devices every PC has, through mm_ioremap (kernel
 * mapper lock + the kernel's pool), and talk to them: the local APIC
 * (identify it by its ID and version registers) and the VGA text buffer
 * (write cells, read them back); and they read a frame of RAM through a
 * write-back read-only mapping.  They check that the page-table entries
 * carry the right flags, that refused requests (beyond the CPU's
 * physical-address width, an iounmap of another pointer) change nothing,
 * that the address faults once iounmapped, and that the pool's free
 * blocks per order are exactly as before each case and as at the start of
 * the suite.  The runner's accounting case checks after the suite that no
 * frame leaked (node frames, hash frames, page tables).
 */
#include "fault.h"
#include "io.h"
#include "ktest.h"
#include "smp.h"

#include <mm/arch.h>
#include <mm/buddy.h>
#include <mm/init.h>
#include <mm/kmapper.h>
#include <mm/mmio.h>
#include <mm/paging.h>
#include <mm/pat.h>

#define MSR_APIC_BASE       0x1bu
#define APIC_BASE_X2APIC    (UINT64_C(1) << 10)
#define APIC_BASE_ENABLE    (UINT64_C(1) << 11)
#define APIC_BASE_PA_MASK   PTE_ADDR_MASK
#define LAPIC_ID            0x20u
#define LAPIC_VERSION       0x30u

#define VGA_TEXT_PA         UINT64_C(0xb8000)
#define VGA_TEXT_BYTES      (80u * 25u * 2u)

/* Free blocks per order when the first case started. */
static uint64_t suite_counts[MMIO_NR_ORDERS];
static bool suite_counts_taken;

static void pool_counts(uint64_t out[MMIO_NR_ORDERS])
{
    mmio_pool_free_counts(mm_mmio_pool(), out);
}

static bool counts_equal(const uint64_t *a, const uint64_t *b)
{
    for (unsigned k = 0; k < MMIO_NR_ORDERS; k++)
        if (a[k] != b[k])
            return false;
    return true;
}

/* Check the live kernel entry for va: device flags, and pa behind it. */
static void expect_device_mapping(struct ktest *t, const volatile void *p, uint64_t pa)
{
    struct pt_mapper m = kmapper_peek();
    struct pt_mapping map;
    KASSERT(t, pt_translate(&m, VA((uintptr_t)p), &map) == 0);
    KEXPECT_EQ(t, map.pa.raw, pa);
    KEXPECT_EQ(t, map.flags & MMIO_PTE_FLAGS, MMIO_PTE_FLAGS);
    KEXPECT(t, (map.flags & PTE_PCD) && (map.flags & PTE_PWT));
    KEXPECT(t, (map.flags & PTE_NX) && (map.flags & PTE_GLOBAL) && (map.flags & PTE_WRITE));
    KEXPECT(t, !(map.flags & PTE_USER));
}

/* After iounmap: the address is gone from the table and a read faults. */
static void expect_unmapped(struct ktest *t, const volatile void *p)
{
    struct pt_mapper m = kmapper_peek();
    struct pt_mapping map;
    struct fault_info fi;
    KEXPECT_EQ(t, pt_translate(&m, VA((uintptr_t)p), &map), -MM_ENOENT);
    KEXPECT(t, probe_read(p, &fi));
    KEXPECT_EQ(t, fi.vector, X86_PF);
    KEXPECT_EQ(t, fi.cr2, (uintptr_t)p);
    KEXPECT(t, !(fi.error_code & PF_PRESENT));
}

static bool in_pool(const volatile void *p)
{
    uintptr_t v = (uintptr_t)p;
    return v >= MMIO_POOL_BASE && v < MMIO_POOL_END;
}

static void case_pool_ready(struct ktest *t)
{
    struct mmio_pool *pool = mm_mmio_pool();
    KASSERT(t, pool != NULL);
    pool_counts(suite_counts);
    suite_counts_taken = true;
    mmio_pool_check(pool);          /* panics on a broken invariant */
    struct mmio_stats s;
    mmio_pool_stats(pool, &s);
    KEXPECT_EQ(t, s.free_bytes + s.alloc_bytes, MMIO_POOL_SIZE);
    ktest_log(t, "%lu blocks allocated (%lu KiB), %lu node + %lu hash frames",
              (unsigned long)s.alloc_blocks, (unsigned long)(s.alloc_bytes / KiB),
              (unsigned long)s.node_frames, (unsigned long)s.hash_frames);
}

static void case_lapic_registers(struct ktest *t)
{
    uint64_t base = rdmsr(MSR_APIC_BASE);
    if (!(base & APIC_BASE_ENABLE))
        KSKIP(t, "local APIC disabled");
    if (base & APIC_BASE_X2APIC)
        KSKIP(t, "local APIC in x2APIC mode: no MMIO interface");
    uint64_t pa = base & APIC_BASE_PA_MASK;

    uint64_t before[MMIO_NR_ORDERS], after[MMIO_NR_ORDERS];
    pool_counts(before);
    volatile uint32_t *regs = mm_ioremap(PA(pa), PAGE_SIZE);
    KASSERT(t, regs != NULL);
    KEXPECT(t, in_pool(regs));
    KEXPECT_EQ(t, (uintptr_t)regs & (PAGE_SIZE - 1), 0);
    expect_device_mapping(t, regs, pa);

    uint32_t id = regs[LAPIC_ID / 4], version = regs[LAPIC_VERSION / 4];
    unsigned max_lvt = (version >> 16) & 0xffu;
    ktest_log(t, "LAPIC at %#lx: id %#x, version %#x (max LVT %u)", (unsigned long)pa, id,
              version, max_lvt);
    KEXPECT(t, (version & 0xffu) >= 0x10 && (version & 0xffu) <= 0x15);
    KEXPECT(t, max_lvt >= 2);
    KEXPECT_EQ(t, id >> 24, this_cpu()->apic_id & 0xffu);

    /* The same registers through an unaligned ioremap: offset kept. */
    volatile uint32_t *ver = mm_ioremap(PA(pa + LAPIC_VERSION), 4);
    KASSERT(t, ver != NULL);
    KEXPECT_EQ(t, (uintptr_t)ver & (PAGE_SIZE - 1), LAPIC_VERSION);
    KEXPECT_EQ(t, *ver, version);
    expect_device_mapping(t, ver, pa + LAPIC_VERSION);

    KEXPECT_EQ(t, mm_iounmap((void *)(uintptr_t)ver), 0);
    expect_unmapped(t, ver);
    KEXPECT_EQ(t, mm_iounmap((void *)(uintptr_t)regs), 0);
    expect_unmapped(t, regs);
    pool_counts(after);
    KEXPECT(t, counts_equal(before, after));
}

/* What eight text cells written at cells[first..] read back as. */
enum vga_echo { VGA_ECHO_OK, VGA_NO_DEVICE, VGA_ECHO_WRONG };

/* Write the eight characters of text with attribute attr into
 * cells[first..first+7], read them back, and put the old cells back.  The
 * store fences drain write-combining buffers (no effect on uncached
 * mappings).  All ones read back: no device decodes the window. */
static enum vga_echo vga_round_trip(volatile uint16_t *cells, unsigned first, uint16_t attr,
                                    const char text[8])
{
    enum { N = 8 };
    uint16_t saved[N];
    bool all_ones = true, all_ok = true;
    for (unsigned i = 0; i < N; i++)
        saved[i] = cells[first + i];
    for (unsigned i = 0; i < N; i++)
        cells[first + i] = (uint16_t)(attr | (unsigned char)text[i]);
    __asm__ volatile("sfence" ::: "memory");
    for (unsigned i = 0; i < N; i++) {
        uint16_t got = cells[first + i];
        all_ones &= got == 0xffffu;
        all_ok &= got == (uint16_t)(attr | (unsigned char)text[i]);
    }
    for (unsigned i = 0; i < N; i++)
        cells[first + i] = saved[i];
    __asm__ volatile("sfence" ::: "memory");
    return all_ok ? VGA_ECHO_OK : all_ones ? VGA_NO_DEVICE : VGA_ECHO_WRONG;
}

/* The end of a VGA case: unmap the cells, check that the pool is as it
 * was before the case (before: pool_counts then), and judge the echo
 * (skipped when no device answers). */
static void vga_case_end(struct ktest *t, volatile uint16_t *cells, const uint64_t *before,
                         enum vga_echo echo)
{
    uint64_t after[MMIO_NR_ORDERS];
    KEXPECT_EQ(t, mm_iounmap((void *)(uintptr_t)cells), 0);
    expect_unmapped(t, cells);
    pool_counts(after);
    KEXPECT(t, counts_equal(before, after));
    if (echo == VGA_NO_DEVICE)
        KSKIP(t, "no VGA device answers at 0xb8000");
    KEXPECT_EQ(t, echo, VGA_ECHO_OK);
}

static void case_vga_text_buffer(struct ktest *t)
{
    uint64_t before[MMIO_NR_ORDERS];
    pool_counts(before);
    volatile uint16_t *cells = mm_ioremap(PA(VGA_TEXT_PA), VGA_TEXT_BYTES);
    KASSERT(t, cells != NULL);
    KEXPECT(t, in_pool(cells));
    expect_device_mapping(t, cells, VGA_TEXT_PA);
    expect_device_mapping(t, (const volatile uint8_t *)cells + VGA_TEXT_BYTES - 2,
                          VGA_TEXT_PA + VGA_TEXT_BYTES - 2);

    /* Bottom-right corner, put back afterwards. */
    enum vga_echo echo = vga_round_trip(cells, 80 * 24 + 72, 0x1f00u, "mmio ok!");

    vga_case_end(t, cells, before, echo);
}

/* The PAT MSR of every online CPU, read on that CPU. */
static uint64_t pat_seen[MM_MAX_CPUS];

static void read_pat(void *arg)
{
    (void)arg;
    pat_seen[smp_cpu_id()] = arch_rdmsr(MM_MSR_PAT);
}

/* Every CPU runs with the library's PAT layout: entry 1 write-combining. */
static void case_pat_on_every_cpu(struct ktest *t)
{
    for (unsigned c = 0; c < MM_MAX_CPUS; c++)
        pat_seen[c] = 0;
    smp_call_all(read_pat, NULL);
    for (unsigned c = 0; c < smp_online_cpus(); c++) {
        if (pat_seen[c] != MM_PAT_VALUE)
            ktest_log(t, "cpu %u: PAT %#lx, expected %#lx", c, (unsigned long)pat_seen[c],
                       (unsigned long)MM_PAT_VALUE);
        KEXPECT_EQ(t, pat_seen[c], MM_PAT_VALUE);
    }
    KEXPECT_EQ(t, mm_pat_entry(pat_seen[0], 1), MM_PAT_WC);
}

/* A write-combining mapping of the VGA text buffer: PWT alone (PAT entry
 * 1, WC on this CPU), writable, no-execute; cells written through it read
 * back after a store fence; gone after iounmap.  (The fixed MTRRs keep
 * this window uncached, which wins over WC, so this checks the entry and
 * the path, not the speed.) */
static void case_ioremap_wc(struct ktest *t)
{
    uint64_t before[MMIO_NR_ORDERS];
    pool_counts(before);
    volatile uint16_t *cells = mm_ioremap_wc(PA(VGA_TEXT_PA), VGA_TEXT_BYTES);
    KASSERT(t, cells != NULL);
    KEXPECT(t, in_pool(cells));
    struct pt_mapper m = kmapper_peek();
    struct pt_mapping map;
    KASSERT(t, pt_translate(&m, VA((uintptr_t)cells), &map) == 0);
    KEXPECT_EQ(t, map.pa.raw, VGA_TEXT_PA);
    KEXPECT_EQ(t, map.flags & (PTE_PWT | PTE_PCD | PTE_PAT), PTE_PWT);
    KEXPECT(t, (map.flags & PTE_WRITE) && (map.flags & PTE_NX) && !(map.flags & PTE_USER));
    unsigned index = ((map.flags & PTE_PAT) ? 4u : 0u) | ((map.flags & PTE_PCD) ? 2u : 0u) |
                     ((map.flags & PTE_PWT) ? 1u : 0u);
    KEXPECT_EQ(t, mm_pat_entry(arch_rdmsr(MM_MSR_PAT), index), MM_PAT_WC);

    enum vga_echo echo = vga_round_trip(cells, 80 * 24 + 64, 0x2f00u, "wc works");

    vga_case_end(t, cells, before, echo);
}

/* Refused requests return an error and change nothing. */
static void case_bad_requests(struct ktest *t)
{
    uint64_t before[MMIO_NR_ORDERS], after[MMIO_NR_ORDERS];
    pool_counts(before);
    KEXPECT(t, mm_ioremap(PA(VGA_TEXT_PA), 0) == NULL);
    KEXPECT(t, mm_ioremap(PA(VGA_TEXT_PA), 2 * GiB) == NULL);
    KEXPECT_EQ(t, mm_iounmap((void *)(uintptr_t)(MMIO_POOL_END - 5 * GiB)), -MM_ENOENT);
    KEXPECT_EQ(t, mm_iounmap((void *)(uintptr_t)0x1000), -MM_EFAULT);

    /* Nothing at or above the CPU's physical-address width. */
    uint64_t limit = UINT64_C(1) << arch_phys_addr_bits();
    KEXPECT(t, mm_ioremap(PA(limit - 8), 16) == NULL);
    KEXPECT(t, mm_ioremap(PA(limit), PAGE_SIZE) == NULL);

    char *p = mm_ioremap(PA(VGA_TEXT_PA + 0x10), PAGE_SIZE);
    KASSERT(t, p != NULL);
    KEXPECT_EQ(t, mm_iounmap(p - 0x10), -MM_EINVAL);  /* only the pointer returned */
    KEXPECT_EQ(t, mm_iounmap(p + 1), -MM_EINVAL);
    KEXPECT_EQ(t, mm_iounmap(p), 0);
    KEXPECT_EQ(t, mm_iounmap(p), -MM_ENOENT);       /* twice */
    pool_counts(after);
    KEXPECT(t, counts_equal(before, after));
    mmio_pool_check(mm_mmio_pool());
}

/* A write-back read-only mapping of RAM (as for firmware tables) reads
 * what the direct map holds, and iounmap undoes it like any other. */
static void case_write_back_read_only(struct ktest *t)
{
    uint64_t before[MMIO_NR_ORDERS], after[MMIO_NR_ORDERS];
    phys_addr_t pa;
    KASSERT(t, mm_buddy() != NULL && buddy_alloc(mm_buddy(), 1, &pa) == 0);
    volatile uint32_t *direct = pa_to_ptr(pa);
    for (unsigned i = 0; i < PAGE_SIZE / 4; i++)
        direct[i] = 0x5eed0000u + i;
    pool_counts(before);

    struct kmapper km;
    const volatile uint32_t *ro = NULL;
    if (kmapper_lock(&km))
        ro = mmio_ioremap_mode(mm_mmio_pool(), &km.mapper, PA(pa.raw + 0x40), 0x100,
                               MM_CACHE_WB_RO);
    kmapper_unlock(&km);
    KASSERT(t, ro != NULL);
    KEXPECT(t, in_pool(ro));
    KEXPECT_EQ(t, (uintptr_t)ro & (PAGE_SIZE - 1), 0x40);
    KEXPECT_EQ(t, ro[0], 0x5eed0000u + 0x10);
    KEXPECT_EQ(t, ro[0x3f], 0x5eed0000u + 0x10 + 0x3f);
    struct pt_mapper m = kmapper_peek();
    struct pt_mapping map;
    KASSERT(t, pt_translate(&m, VA((uintptr_t)ro), &map) == 0);
    KEXPECT_EQ(t, map.pa.raw, pa.raw + 0x40);
    KEXPECT_EQ(t, map.flags & MMIO_PTE_FLAGS_WB_RO, MMIO_PTE_FLAGS_WB_RO);
    KEXPECT(t, !(map.flags & (PTE_WRITE | PTE_PCD | PTE_PWT | PTE_USER)));

    KEXPECT_EQ(t, mm_iounmap((void *)(uintptr_t)ro), 0);
    expect_unmapped(t, ro);
    pool_counts(after);
    KEXPECT(t, counts_equal(before, after));
    KEXPECT_EQ(t, buddy_free(mm_buddy(), pa, 1), 0);
}

/* A larger window: 2 MiB pages where the addresses allow, one flush. */
static void case_large_window(struct ktest *t)
{
    uint64_t before[MMIO_NR_ORDERS], after[MMIO_NR_ORDERS];
    pool_counts(before);
    uint64_t shootdowns = smp_shootdowns();
    /* 4 MiB of the legacy PCI hole below the LAPIC: only mapped, never touched. */
    const uint64_t pa = UINT64_C(0xfe000000);
    volatile uint8_t *w = mm_ioremap(PA(pa), 4 * MiB);
    KASSERT(t, w != NULL);
    KEXPECT_EQ(t, (uintptr_t)w & (4 * MiB - 1), 0);
    struct pt_mapper m = kmapper_peek();
    struct pt_mapping map;
    KASSERT(t, pt_translate(&m, VA((uintptr_t)w + 3 * MiB), &map) == 0);
    KEXPECT_EQ(t, map.pa.raw, pa + 3 * MiB);
    KEXPECT_EQ(t, map.level, PT_LEVEL_PD);
    KEXPECT_EQ(t, map.flags & MMIO_PTE_FLAGS, MMIO_PTE_FLAGS);
    KEXPECT_EQ(t, mm_iounmap((void *)(uintptr_t)w), 0);
    KEXPECT_EQ(t, pt_translate(&m, VA((uintptr_t)w + 3 * MiB), &map), -MM_ENOENT);
    ktest_log(t, "shootdowns during map + unmap: %lu",
              (unsigned long)(smp_shootdowns() - shootdowns));
    if (smp_online_cpus() > 1)              /* one shootdown for the whole release */
        KEXPECT_EQ(t, smp_shootdowns() - shootdowns, 1);
    pool_counts(after);
    KEXPECT(t, counts_equal(before, after));
}

static void case_pool_back_to_start(struct ktest *t)
{
    uint64_t now[MMIO_NR_ORDERS];
    KASSERT(t, suite_counts_taken);
    pool_counts(now);
    for (unsigned k = 0; k < MMIO_NR_ORDERS; k++)
        KEXPECT_EQ(t, now[k], suite_counts[k]);
    mmio_pool_check(mm_mmio_pool());
}

KTEST_SUITE(mmio_suite, "mmio",
            KTEST_CASE(case_pool_ready),
            KTEST_CASE(case_lapic_registers),
            KTEST_CASE(case_vga_text_buffer),
            KTEST_CASE(case_pat_on_every_cpu),
            KTEST_CASE(case_ioremap_wc),
            KTEST_CASE(case_bad_requests),
            KTEST_CASE(case_write_back_read_only),
            KTEST_CASE(case_large_window),
            KTEST_CASE(case_pool_back_to_start));
