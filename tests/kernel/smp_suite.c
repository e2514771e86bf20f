/*
 * smp_suite.c - several CPUs against the memory subsystem: the per-CPU
 * recursive kernel-mapper lock, a concurrency stress of the frame
 * allocator and the MMIO pool on every CPU at once, TLB shootdown (to
 * every CPU, and to a named set: smp_shootdowns_received), and
 * the ACPI walk that found the CPUs (it must give back every mapping).
 * Cases that need a second CPU are skipped when only one is online.
 */
#include "kernel.h"
#include "acpi.h"
#include "fault.h"
#include "ktest.h"
#include "percpu.h"
#include "smp.h"
#include "timer.h"
#include <mm/init.h>

/* ------------------------------------------------------ lock semantics */

static void case_cpus_online(struct ktest *t)
{
    unsigned n = smp_online_cpus();
    ktest_log(t, "%u CPU(s) online", n);
    KEXPECT(t, n >= 1 && n <= MM_MAX_CPUS);
    for (unsigned c = 0; c < n; c++)
        KEXPECT_EQ(t, percpu_area[c].cpu_id, c);
}

static void case_nested_lock_is_readonly(struct ktest *t)
{
    struct kmapper outer, inner;
    phys_addr_t pa;
    KASSERT(t, buddy_alloc(mm_buddy(), 1, &pa) == 0);
    virt_addr_t va = VA(MM_SELFTEST_BASE + 4 * MiB);   /* the self-test GiB */
    struct pt_flush tok = PT_FLUSH_INIT;

    KEXPECT(t, kmapper_lock(&outer));
    KEXPECT_EQ(t, kmapper_owner(), smp_cpu_id());
    KEXPECT_EQ(t, kmapper_depth(), 1);

    KEXPECT(t, !kmapper_lock(&inner));           /* nested: read-only */
    KEXPECT_EQ(t, kmapper_depth(), 2);
    KEXPECT(t, inner.mapper.readonly);
    int rc = pt_map_phys(&inner.mapper, va, pa, PTE_KERNEL_RW, &tok);
    KEXPECT_EQ(t, rc, -MM_EPERM);
    KEXPECT(t, !pt_flush_pending(&tok));
    struct pt_mapping m;
    KEXPECT_EQ(t, pt_translate(&inner.mapper, va, &m), -MM_ENOENT);   /* reads work */
    kmapper_unlock(&inner);

    /* The outer holder is unaffected and can still write. */
    KEXPECT_EQ(t, kmapper_depth(), 1);
    KEXPECT(t, !outer.mapper.readonly);
    KEXPECT_EQ(t, pt_map_phys(&outer.mapper, va, pa, PTE_KERNEL_RW, &tok), 0);
    pt_flush(&tok);
    KEXPECT_EQ(t, pt_translate(&outer.mapper, va, &m), 0);
    KEXPECT_EQ(t, m.pa.raw, pa.raw);
    KEXPECT_EQ(t, pt_unmap_phys(&outer.mapper, va, true, NULL, &tok), 0);
    pt_flush(&tok);
    kmapper_unlock(&outer);
    KEXPECT_EQ(t, kmapper_owner(), MM_NO_CPU);
    KEXPECT_EQ(t, kmapper_depth(), 0);
    KEXPECT_EQ(t, buddy_free(mm_buddy(), pa, 1), 0);
}

struct contend {
    volatile int started, acquired;
};

static void contend_on_ap(void *arg)
{
    struct contend *c = arg;
    struct kmapper km;
    c->started = 1;
    bool w = kmapper_lock(&km);            /* spins until the BSP lets go */
    c->acquired = w ? 1 : -1;
    kmapper_unlock(&km);
}

static void case_lock_excludes_other_cpus(struct ktest *t)
{
    if (smp_online_cpus() < 2)
        KSKIP(t, "needs 2 CPUs");
    struct contend c = { 0, 0 };
    struct kmapper km;
    KASSERT(t, kmapper_lock(&km));
    smp_post(1, contend_on_ap, &c);
    while (!c.started)
        __asm__ volatile("pause");
    udelay(20000);                          /* give the AP time to (wrongly) get in */
    KEXPECT_EQ(t, c.acquired, 0);
    kmapper_unlock(&km);
    smp_wait(1);
    KEXPECT_EQ(t, c.acquired, 1);           /* and it got a writable mapper */
}

/* ---------------------------------------------------------------- stress */

#define STRESS_ROUNDS 300
#define STRESS_SLOTS  16

struct stress_result {
    unsigned errors;
    unsigned long allocs, maps;
} __attribute__((aligned(64)));

static struct stress_result stress_res[MM_MAX_CPUS];

#define LAPIC_VERSION 0x30
static uint64_t lapic_pa;          /* IA32_APIC_BASE */
static uint32_t lapic_version;     /* as read through the kernel's own mapping */

static void read_lapic_identity(void)
{
    lapic_pa = smp_lapic_pa();
    lapic_version = smp_lapic()[LAPIC_VERSION / 4];
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void stress_worker(void *arg)
{
    (void)arg;
    unsigned me = smp_cpu_id();
    struct stress_result *r = &stress_res[me];
    uint64_t seed = 0x9e3779b97f4a7c15ull * (me + 1);
    phys_addr_t frame[STRESS_SLOTS];
    uint64_t npages[STRESS_SLOTS] = { 0 };

    for (unsigned round = 0; round < STRESS_ROUNDS; round++) {
        unsigned s = xorshift(&seed) % STRESS_SLOTS;
        if (npages[s]) {
            /* Check our stamp survived, then free. */
            volatile uint64_t *p = pa_to_ptr(frame[s]);
            if (*p != (frame[s].raw ^ me))
                r->errors++;
            if (buddy_free(mm_buddy(), frame[s], npages[s]) != 0)
                r->errors++;
            npages[s] = 0;
            continue;
        }
        uint64_t n = 1ull << (xorshift(&seed) % 5);      /* 4 KiB .. 64 KiB */
        if (buddy_alloc(mm_buddy(), n, &frame[s]) != 0) {
            r->errors++;
            continue;
        }
        npages[s] = n;
        r->allocs++;
        *(volatile uint64_t *)pa_to_ptr(frame[s]) = frame[s].raw ^ me;

        /* Every fourth round: ioremap the local APIC (a real device; RAM
         * may not be ioremapped), read its version register through the
         * new mapping, release it. */
        if ((round & 3) == 0) {
            volatile uint32_t *io = mm_ioremap(PA(lapic_pa), PAGE_SIZE);
            if (!io) {
                r->errors++;
                continue;
            }
            if (io[LAPIC_VERSION / 4] != lapic_version)
                r->errors++;
            if (mm_iounmap((void *)io) != 0)
                r->errors++;
            r->maps++;
        }
    }
    for (unsigned s = 0; s < STRESS_SLOTS; s++)
        if (npages[s] && buddy_free(mm_buddy(), frame[s], npages[s]) != 0)
            r->errors++;
}

static void case_concurrent_stress(struct ktest *t)
{
    if (!smp_lapic())
        KSKIP(t, "no xAPIC mapping (local APIC in x2APIC mode)");
    unsigned n = smp_online_cpus();
    struct buddy_usage before, after;
    struct mmio_stats mb, ma;
    buddy_usage(mm_buddy(), &before);
    mmio_pool_stats(mm_mmio_pool(), &mb);
    memset(stress_res, 0, sizeof(stress_res));
    read_lapic_identity();

    smp_call_all(stress_worker, NULL);

    unsigned long allocs = 0, maps = 0;
    for (unsigned c = 0; c < n; c++) {
        KEXPECT_EQ(t, stress_res[c].errors, 0);
        allocs += stress_res[c].allocs;
        maps += stress_res[c].maps;
    }
    ktest_log(t, "%u CPUs: %lu frame allocations, %lu ioremaps", n, allocs, maps);
    buddy_usage(mm_buddy(), &after);
    mmio_pool_stats(mm_mmio_pool(), &ma);
    KEXPECT_EQ(t, after.free_npages, before.free_npages);
    KEXPECT_EQ(t, after.used_npages, before.used_npages);
    KEXPECT_EQ(t, ma.free_bytes, mb.free_bytes);
    KEXPECT_EQ(t, ma.free_blocks[MMIO_MAX_ORDER], mb.free_blocks[MMIO_MAX_ORDER]);
    KEXPECT_EQ(t, kmapper_owner(), MM_NO_CPU);
}

/* -------------------------------------------------------------- shootdown */

struct touch {
    volatile uint32_t *va;
    uint32_t value;
    bool faulted;
    struct fault_info fi;
};

static void touch_on_ap(void *arg)
{
    struct touch *tc = arg;
    tc->faulted = probe_read(tc->va, &tc->fi);
    if (!tc->faulted)
        tc->value = *tc->va;
}

static void case_shootdown_reaches_other_cpus(struct ktest *t)
{
    if (smp_online_cpus() < 2)
        KSKIP(t, "needs 2 CPUs");
    read_lapic_identity();
    volatile uint32_t *regs = mm_ioremap(PA(lapic_pa), PAGE_SIZE);
    KASSERT(t, regs != NULL);
    struct touch tc = { .va = &regs[LAPIC_VERSION / 4] };
    smp_call(1, touch_on_ap, &tc);           /* the AP now caches the translation */
    KEXPECT(t, !tc.faulted);
    KEXPECT_EQ(t, tc.value, lapic_version);

    uint64_t shootdowns = smp_shootdowns();
    KEXPECT_EQ(t, mm_iounmap((void *)regs), 0);
    KEXPECT_EQ(t, smp_shootdowns(), shootdowns + 1);   /* one, for the whole release */

    tc.faulted = false;
    smp_call(1, touch_on_ap, &tc);           /* a stale TLB entry would let this read */
    KEXPECT(t, tc.faulted);
    KEXPECT_EQ(t, tc.fi.vector, X86_PF);
    KEXPECT_EQ(t, tc.fi.cr2, (uint64_t)(uintptr_t)tc.va);
}

/* A targeted shootdown interrupts exactly the CPUs named (this one and
 * offline ones never), and an empty set sends nothing. */
static void case_shootdown_targets_only_named_cpus(struct ktest *t)
{
    unsigned n = smp_online_cpus(), me = smp_cpu_id();
    if (n < 3)
        KSKIP(t, "needs 3 CPUs");
    uint64_t before[MM_MAX_CPUS], sent = smp_shootdowns();
    for (unsigned c = 0; c < n; c++)
        before[c] = smp_shootdowns_received(c);
    unsigned target = me == 1 ? 2 : 1;
    /* This CPU, the target and a CPU that is not online (bit 63). */
    smp_tlb_shootdown((1ull << me) | (1ull << target) | (1ull << 63), 0, 0);
    smp_tlb_shootdown(1ull << me, 0, 0);                 /* only itself: nothing */
    KEXPECT_EQ(t, smp_shootdowns(), sent + 1);
    for (unsigned c = 0; c < n; c++)
        KEXPECT_EQ(t, smp_shootdowns_received(c) - before[c], c == target ? 1u : 0u);
}

/* RAM must be reached through the direct map, never ioremapped. */
static void case_ioremap_refuses_ram(struct ktest *t)
{
    phys_addr_t pa;
    KASSERT(t, buddy_alloc(mm_buddy(), 1, &pa) == 0);
    struct mmio_stats before, after;
    mmio_pool_stats(mm_mmio_pool(), &before);
    KEXPECT(t, mm_ioremap(pa, PAGE_SIZE) == NULL);
    KEXPECT(t, mm_direct_map_contains(pa, PAGE_SIZE));
    mmio_pool_stats(mm_mmio_pool(), &after);
    KEXPECT_EQ(t, after.free_bytes, before.free_bytes);
    KEXPECT_EQ(t, buddy_free(mm_buddy(), pa, 1), 0);
}

/* ---------------------------------------------------------------- ACPI */

/* The MADT walk reads every table through mm_memremap: it must find the
 * CPUs that are online and release every view it made. */
static void case_acpi_walk_releases_views(struct ktest *t)
{
    static struct acpi_cpus cpus;
    struct mmio_stats before, after;
    mmio_pool_stats(mm_mmio_pool(), &before);
    KASSERT(t, acpi_find_cpus(&cpus) == 0);
    mmio_pool_stats(mm_mmio_pool(), &after);
    ktest_log(t, "RSDP from %s; MADT lists %u CPUs", cpus.rsdp_source, cpus.count);
    KEXPECT(t, cpus.count >= smp_online_cpus());
    KEXPECT_EQ(t, after.free_bytes, before.free_bytes);
    KEXPECT_EQ(t, after.alloc_blocks, before.alloc_blocks);
}

KTEST_SUITE(smp_suite, "smp",
            KTEST_CASE(case_cpus_online),
            KTEST_CASE(case_nested_lock_is_readonly),
            KTEST_CASE(case_lock_excludes_other_cpus),
            KTEST_CASE(case_concurrent_stress),
            KTEST_CASE(case_shootdown_reaches_other_cpus),
            KTEST_CASE(case_shootdown_targets_only_named_cpus),
            KTEST_CASE(case_ioremap_refuses_ram),
            KTEST_CASE(case_acpi_walk_releases_views));
