/*
 * ktest_selftest_suite.c - checks the test kernel's own machinery: the
 * exception fixup used by the mm suites must really catch faults and
 * report the right vector and address, and must not fire otherwise.
 */
#include "kernel.h"
#include "fault.h"
#include "io.h"
#include "ktest.h"

static void ok_fn(void *arg)
{
    *(int *)arg = 42;
}

static void case_no_fault(struct ktest *t)
{
    int x = 0;
    struct fault_info fi;
    KEXPECT(t, !fault_catch(ok_fn, &x, &fi));
    KEXPECT_EQ(t, x, 42);
}

static void case_noncanonical_read_faults(struct ktest *t)
{
    struct fault_info fi;
    /* A non-canonical address raises #GP, not #PF. */
    KASSERT(t, probe_read((const void *)0x8000000000000000ull, &fi));
    KEXPECT_EQ(t, fi.vector, X86_GP);
}

static void case_unmapped_read_faults(struct ktest *t)
{
    struct fault_info fi;
    /* Canonical but never mapped: between the direct map and the MMIO pool. */
    const volatile void *addr = (const void *)0xffff900000000000ull;
    KASSERT(t, probe_read(addr, &fi));
    KEXPECT_EQ(t, fi.vector, X86_PF);
    KEXPECT_EQ(t, fi.cr2, (uint64_t)(uintptr_t)addr);
    KEXPECT_EQ(t, fi.error_code & PF_PRESENT, 0);     /* not-present fault */
}

static void case_interrupts_state_restored(struct ktest *t)
{
    unsigned long before, after;
    struct fault_info fi;
    __asm__ volatile("pushfq; pop %0" : "=r"(before));
    probe_read((const void *)0x8000000000000000ull, &fi);
    __asm__ volatile("pushfq; pop %0" : "=r"(after));
    KEXPECT_EQ(t, before & RFLAGS_IF, after & RFLAGS_IF);
}

KTEST_SUITE(ktest_selftest_suite, "ktest_selftest",
            KTEST_CASE(case_no_fault),
            KTEST_CASE(case_noncanonical_read_faults),
            KTEST_CASE(case_unmapped_read_faults),
            KTEST_CASE(case_interrupts_state_restored));
