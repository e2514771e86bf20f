/*
 * aspace_suite.c - user address spaces (mm/aspace.h) and real ring-3 code
 * (kernel/user.c running user/prog.c).
 *
 * What the cases prove:
 *   - creating and destroying an address space gives every frame back,
 *     and frames mapped from outside stay the caller's;
 *   - the user program runs in ring 3 and its output reaches the console;
 *   - ring 3 cannot read or write kernel memory, write its own text or run
 *     its data: each attempt kills the process with the faulting address,
 *     and the kernel carries on;
 *   - system calls and the copy helpers turn bad user pointers into
 *     -MM_EFAULT, never into a kernel fault;
 *   - a kernel mapping made after an address space exists is visible
 *     while that address space is loaded (the kernel half never goes stale);
 *   - SMEP and SMAP are on on every CPU that has them, and ring 0 faults
 *     when it runs or touches a user page while the copy helpers still work;
 *   - user code runs on every CPU, and an interrupt that arrives in ring 3
 *     (a shootdown) is served and returns there;
 *   - a change to the user half sends a shootdown only to the other CPUs
 *     on which the address space is loaded: none when it runs only here.
 */
#include "kernel.h"
#include "fault.h"
#include "io.h"
#include "ktest.h"
#include "percpu.h"
#include "smp.h"
#include "timer.h"
#include "user.h"
#include <mm/aspace.h>
#include <mm/buddy.h>
#include <mm/init.h>

#define PROT_RW  (MM_PROT_READ | MM_PROT_WRITE | MM_PROT_USER)
#define PROT_R   (MM_PROT_READ | MM_PROT_USER)
#define PROT_RX  (MM_PROT_READ | MM_PROT_EXEC | MM_PROT_USER)
#define PF_USER  (1u << 2)
#define VGA_TEXT_PA 0xb8000u

/* Kernel data that ring 3 must neither read nor change. */
static volatile uint8_t kernel_secret = 0x42;

static uint64_t frames_free(void)
{
    struct buddy_usage u;
    buddy_usage(mm_buddy(), &u);
    return u.free_npages;
}

/* ------------------------------------------------- create and destroy */

static void case_create_destroy_returns_frames(struct ktest *t)
{
    static const uint64_t vas[] = { MM_USER_BASE, 0x400000, 0x40000000,
                                    UINT64_C(0x0000400000000000), MM_USER_END - PAGE_SIZE };
    uint64_t before = frames_free();
    phys_addr_t own;
    KASSERT(t, buddy_alloc(mm_buddy(), 1, &own) == 0);

    struct mm_as as;
    KASSERT(t, mm_as_create(&as, mm_buddy_frames()) == 0);
    for (unsigned i = 0; i < sizeof(vas) / sizeof(vas[0]); i++)
        KEXPECT_EQ(t, mm_as_map_zeroed(&as, VA(vas[i]), PROT_RW), 0);
    KEXPECT_EQ(t, mm_as_map_frame(&as, VA(0x800000), own, PROT_RW), 0);
    KEXPECT(t, frames_free() < before - 1);
    KEXPECT_EQ(t, mm_as_destroy(&as), 0);
    /* Everything back except the frame this case owns. */
    KEXPECT_EQ(t, frames_free(), before - 1);
    KEXPECT_EQ(t, buddy_free(mm_buddy(), own, 1), 0);
    KEXPECT_EQ(t, frames_free(), before);

    /* A whole process: program, stack, tables. */
    struct user_process p;
    KASSERT(t, user_process_create(&p) == 0);
    ktest_log(t, "a process holds %lu frames", (unsigned long)(before - frames_free()));
    KEXPECT_EQ(t, user_process_destroy(&p), 0);
    KEXPECT_EQ(t, frames_free(), before);
}

/* ------------------------------------------------------------ ring 3 */

static void case_user_program_runs(struct ktest *t)
{
    struct user_process p;
    KASSERT(t, user_process_create(&p) == 0);
    KEXPECT_EQ(t, user_process_run(&p, UMODE_HELLO, 0), USER_EXITED);
    KEXPECT_EQ(t, p.exit_code, 0);                /* write returned its length */
    KEXPECT(t, mm_as_current() == NULL);          /* the kernel table is back */
    KEXPECT_EQ(t, user_process_destroy(&p), 0);
}

/* Run p in `mode` on addr; it must be killed by a page fault at addr
 * whose error code has `err_set` (and the user bit) set. */
static void expect_killed(struct ktest *t, struct user_process *p, uint64_t mode,
                          uint64_t addr, uint64_t err_set)
{
    KEXPECT_EQ(t, user_process_run(p, mode, addr), USER_KILLED);
    KEXPECT_EQ(t, p->fault_vector, 14);
    KEXPECT_EQ(t, p->fault_va, addr);
    KEXPECT_EQ(t, p->fault_error & (err_set | PF_USER), err_set | PF_USER);
}

static void case_user_cannot_touch_kernel(struct ktest *t)
{
    phys_addr_t frame;
    KASSERT(t, buddy_alloc(mm_buddy(), 1, &frame) == 0);
    volatile uint8_t *direct = pa_to_ptr(frame);
    *direct = 0x42;
    const uint64_t targets[] = {
        (uint64_t)(uintptr_t)&kernel_secret,          /* image data */
        (uint64_t)(uintptr_t)&user_process_run,       /* image text */
        (uint64_t)(uintptr_t)direct,                  /* direct map */
    };
    struct user_process p;
    KASSERT(t, user_process_create(&p) == 0);
    for (unsigned i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        expect_killed(t, &p, UMODE_READ, targets[i], PF_PRESENT);
        expect_killed(t, &p, UMODE_WRITE, targets[i], PF_PRESENT | PF_WRITE);
    }
    KEXPECT_EQ(t, kernel_secret, 0x42);
    KEXPECT_EQ(t, *direct, 0x42);

    /* A non-canonical address: general protection, not a page fault. */
    KEXPECT_EQ(t, user_process_run(&p, UMODE_READ, UINT64_C(0x0000800000000000)),
               USER_KILLED);
    KEXPECT_EQ(t, p.fault_vector, 13);
    KEXPECT_EQ(t, user_process_destroy(&p), 0);
    KEXPECT_EQ(t, buddy_free(mm_buddy(), frame, 1), 0);
}

/* The program's own pages keep W^X: text is not writable, data does not run. */
static void case_user_pages_are_w_xor_x(struct ktest *t)
{
    struct user_process p;
    KASSERT(t, user_process_create(&p) == 0);
    expect_killed(t, &p, UMODE_WRITE_TEXT, p.entry, PF_PRESENT | PF_WRITE);
    KEXPECT_EQ(t, user_process_run(&p, UMODE_EXEC_DATA, 0), USER_KILLED);
    KEXPECT_EQ(t, p.fault_vector, 14);
    KEXPECT_EQ(t, p.fault_va, p.fault_rip);       /* the fetch itself faulted */
    KEXPECT_EQ(t, p.fault_error & (PF_PRESENT | PF_FETCH | PF_USER),
               PF_PRESENT | PF_FETCH | PF_USER);
    unsigned prot = 0;
    phys_addr_t pa;
    KEXPECT_EQ(t, mm_as_translate(&p.as, VA(p.entry), &pa, &prot), 0);
    KEXPECT_EQ(t, prot & (MM_PROT_WRITE | MM_PROT_EXEC), MM_PROT_EXEC);
    KEXPECT_EQ(t, user_process_destroy(&p), 0);
}

static void case_syscall_bad_pointer(struct ktest *t)
{
    const uint64_t bad[] = {
        (uint64_t)(uintptr_t)&kernel_secret,          /* kernel memory */
        0x10000000,                                   /* unmapped user page */
        USER_STACK_TOP - 8,                           /* runs off the user half */
    };
    struct user_process p;
    KASSERT(t, user_process_create(&p) == 0);
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        KEXPECT_EQ(t, user_process_run(&p, UMODE_WRITE_PTR, bad[i]), USER_EXITED);
        KEXPECT_EQ(t, p.exit_code, -MM_EFAULT);
    }
    KEXPECT_EQ(t, user_process_destroy(&p), 0);
}

/* --------------------------------------------------------- copy helpers */

static void case_copy_helpers(struct ktest *t)
{
    const uint64_t rw = 0x10000, ro = 0x11000, hole = 0x12000;
    struct mm_as as;
    char buf[32];
    KASSERT(t, mm_as_create(&as, mm_buddy_frames()) == 0);
    KASSERT(t, mm_as_map_zeroed(&as, VA(rw), PROT_RW) == 0);
    KASSERT(t, mm_as_map_zeroed(&as, VA(ro), PROT_R) == 0);

    KEXPECT_EQ(t, mm_copy_to_user(&as, VA(rw + 8), "hi there", 9), 0);
    KEXPECT_EQ(t, mm_copy_from_user(&as, buf, VA(rw + 8), 9), 0);
    KEXPECT_EQ(t, memcmp(buf, "hi there", 9), 0);
    KEXPECT_EQ(t, mm_copy_str_from_user(&as, buf, VA(rw + 8), sizeof(buf)), 8);
    KEXPECT_EQ(t, mm_copy_str_from_user(&as, buf, VA(rw + 8), 4), -MM_EINVAL);

    memset(buf, 0xee, sizeof(buf));
    KEXPECT_EQ(t, mm_copy_to_user(&as, VA(ro), "x", 1), -MM_EFAULT);       /* read-only */
    KEXPECT_EQ(t, mm_copy_from_user(&as, buf, VA(hole), 4), -MM_EFAULT);   /* unmapped */
    KEXPECT_EQ(t, mm_copy_from_user(&as, buf, VA(hole - 8), 16), -MM_EFAULT); /* straddles */
    KEXPECT_EQ(t, mm_copy_from_user(&as, buf, VA((uint64_t)(uintptr_t)&kernel_secret), 1),
               -MM_EFAULT);
    KEXPECT_EQ(t, mm_copy_from_user(&as, buf, VA(~UINT64_C(0) - 7), 16), -MM_EFAULT);
    KEXPECT_EQ(t, mm_copy_str_from_user(&as, buf, VA(hole), 8), -MM_EFAULT);
    bool untouched = true;
    for (unsigned i = 0; i < sizeof(buf); i++)
        untouched &= (uint8_t)buf[i] == 0xee;
    KEXPECT(t, untouched);
    KEXPECT_EQ(t, mm_as_destroy(&as), 0);
}

/* ------------------------------------------------------------ kernel half */

static void case_kernel_mapping_after_create_visible(struct ktest *t)
{
    static struct mm_as as;    /* static: a failed case may leave it loaded */
    KASSERT(t, mm_as_create(&as, mm_buddy_frames()) == 0);
    KEXPECT_EQ(t, mm_as_map_zeroed(&as, VA(0x400000), PROT_RW), 0);

    /* Made after the address space: must be visible while it is loaded. */
    volatile uint16_t *vga = mm_ioremap(PA(VGA_TEXT_PA), PAGE_SIZE);
    KASSERT(t, vga != NULL);
    uint16_t expected = vga[0], seen = 0;

    struct fault_info fi;
    mm_as_switch(&as);
    bool faulted = probe_read(vga, &fi);
    if (!faulted)
        seen = vga[0];
    mm_as_switch(NULL);
    KEXPECT(t, !faulted);
    KEXPECT_EQ(t, seen, expected);

    /* Every kernel-half top-level entry is the kernel table's. */
    const uint64_t *mine = pa_to_ptr(as.top_pa);
    const uint64_t *kernel = pa_to_ptr(PA(read_cr3() & PTE_ADDR_MASK));
    unsigned differ = 0;
    for (unsigned slot = 256; slot < 512; slot++)
        differ += mine[slot] != kernel[slot];
    KEXPECT_EQ(t, differ, 0);

    KEXPECT_EQ(t, mm_iounmap((void *)(uintptr_t)vga), 0);

    /*
     * The MMIO pool's slot may have had tables before this address space
     * existed, so the ioremap above proves little about the kernel half
     * being fixed.  A kernel mapping in the self-test slot, 32 GiB in,
     * where nothing has mapped before, needs new lower-level tables; it
     * must be visible through this address space's copy of the kernel
     * half too (it would fault if the slot's level-3 table had been
     * created after the copy).
     */
    const uint64_t late_va = MM_SELFTEST_BASE + 32 * MM_LAYOUT_GIB;
    phys_addr_t frame;
    KASSERT(t, buddy_alloc(mm_buddy(), 1, &frame) == 0);
    *(volatile uint64_t *)pa_to_ptr(frame) = 0x5e1f7e57u;
    struct kmapper km;
    struct pt_flush tok = PT_FLUSH_INIT;
    int rc = -MM_EPERM;
    if (kmapper_lock(&km))
        rc = pt_map_phys(&km.mapper, VA(late_va), frame, PTE_KERNEL_RO, &tok);
    if (rc == 0)
        pt_flush(&tok);
    kmapper_unlock(&km);
    KEXPECT_EQ(t, rc, 0);
    uint64_t late_seen = 0;
    mm_as_switch(&as);
    faulted = rc != 0 || probe_read((const volatile void *)(uintptr_t)late_va, &fi);
    if (!faulted)
        late_seen = *(volatile uint64_t *)(uintptr_t)late_va;
    mm_as_switch(NULL);
    KEXPECT(t, !faulted);
    KEXPECT_EQ(t, late_seen, 0x5e1f7e57u);
    if (rc == 0 && kmapper_lock(&km)) {
        struct pt_mapping old;
        tok = (struct pt_flush)PT_FLUSH_INIT;
        if (pt_unmap_phys(&km.mapper, VA(late_va), true, &old, &tok) == 0)
            pt_flush(&tok);
    }
    kmapper_unlock(&km);
    KEXPECT_EQ(t, buddy_free(mm_buddy(), frame, 1), 0);
    KEXPECT_EQ(t, mm_as_destroy(&as), 0);
}

/* ------------------------------------------------------------ SMEP / SMAP */

static void read_cr4_here(void *arg)
{
    ((uint64_t *)arg)[smp_cpu_id()] = read_cr4();
}

static void case_smep_smap_on_every_cpu(struct ktest *t)
{
    bool smep = cpu_has_smep(), smap = cpu_has_smap();
    if (!smep && !smap)
        KSKIP(t, "the CPU has neither SMEP nor SMAP (e.g. -cpu qemu64)");
    static uint64_t cr4[MM_MAX_CPUS];
    smp_call_all(read_cr4_here, cr4);
    for (unsigned c = 0; c < smp_online_cpus(); c++) {
        KEXPECT_EQ(t, !!(cr4[c] & CR4_SMEP), smep);
        KEXPECT_EQ(t, !!(cr4[c] & CR4_SMAP), smap);
    }
    ktest_log(t, "CPUID: SMEP %s, SMAP %s; CR4 checked on %u CPU(s)", smep ? "yes" : "no",
              smap ? "yes" : "no", smp_online_cpus());
}

/* Skip without the feature; fail when the CPU has it but CR4 lacks it. */
static void require_cr4_feature(struct ktest *t, bool has, uint64_t cr4_bit, const char *why)
{
    if (!has)
        KSKIP(t, why);
    KASSERT(t, read_cr4() & cr4_bit);
}

/* Map one user page at va in a new address space and load it here. */
static void load_with_page(struct ktest *t, struct mm_as *as, uint64_t va, unsigned prot,
                           uint8_t first_byte)
{
    KASSERT(t, mm_as_create(as, mm_buddy_frames()) == 0);
    KASSERT(t, mm_as_map_zeroed(as, VA(va), prot) == 0);
    phys_addr_t pa;
    unsigned got;
    KASSERT(t, mm_as_translate(as, VA(va), &pa, &got) == 0);
    *(volatile uint8_t *)pa_to_ptr(pa) = first_byte;
    mm_as_switch(as);
}

static void case_smap_blocks_kernel_access(struct ktest *t)
{
    require_cr4_feature(t, cpu_has_smap(), CR4_SMAP, "the CPU has no SMAP (CPUID.(7,0):EBX[20])");
    const uint64_t va = 0x10000;
    static struct mm_as as;    /* static: a failed case may leave it loaded */
    struct fault_info fi;
    load_with_page(t, &as, va, PROT_RW, 0x5a);

    bool read_faulted = probe_read((const volatile void *)(uintptr_t)va, &fi);
    struct fault_info read_fi = fi;
    bool write_faulted = probe_write((volatile void *)(uintptr_t)va, 1, &fi);
    uint8_t byte = 0;
    int copy_rc = mm_copy_from_user(&as, &byte, VA(va), 1);   /* no window needed */
    mm_as_switch(NULL);

    KEXPECT(t, read_faulted);
    KEXPECT_EQ(t, read_fi.vector, 14);
    KEXPECT_EQ(t, read_fi.cr2, va);
    KEXPECT_EQ(t, read_fi.error_code & (PF_PRESENT | PF_WRITE | PF_USER), PF_PRESENT);
    KEXPECT(t, write_faulted);
    KEXPECT_EQ(t, fi.error_code & (PF_PRESENT | PF_WRITE), PF_PRESENT | PF_WRITE);
    KEXPECT_EQ(t, copy_rc, 0);
    KEXPECT_EQ(t, byte, 0x5a);
    KEXPECT_EQ(t, mm_as_destroy(&as), 0);
}

static void case_smep_blocks_kernel_exec(struct ktest *t)
{
    require_cr4_feature(t, cpu_has_smep(), CR4_SMEP, "the CPU has no SMEP (CPUID.(7,0):EBX[7])");
    const uint64_t va = 0x10000;
    static struct mm_as as;    /* static: a failed case may leave it loaded */
    struct fault_info fi;
    load_with_page(t, &as, va, PROT_RX, 0xc3);     /* ret */
    bool faulted = probe_exec((const void *)(uintptr_t)va, &fi);
    mm_as_switch(NULL);

    KEXPECT(t, faulted);
    KEXPECT_EQ(t, fi.vector, 14);
    KEXPECT_EQ(t, fi.cr2, va);
    KEXPECT_EQ(t, fi.error_code & (PF_PRESENT | PF_FETCH | PF_USER), PF_PRESENT | PF_FETCH);
    KEXPECT_EQ(t, mm_as_destroy(&as), 0);
}

/* ------------------------------------------------------------ other CPUs */

struct run_args {
    struct user_process *p;
    enum user_end end;
};

static void run_getcpu(void *arg)
{
    struct run_args *r = arg;
    r->end = user_process_run(r->p, UMODE_GETCPU, 0);
}

static void case_user_runs_on_every_cpu(struct ktest *t)
{
    for (unsigned c = 0; c < smp_online_cpus(); c++) {
        struct user_process p;
        KASSERT(t, user_process_create(&p) == 0);
        struct run_args r = { &p, USER_NOT_RUN };
        smp_call(c, run_getcpu, &r);
        KEXPECT_EQ(t, r.end, USER_EXITED);
        KEXPECT_EQ(t, p.exit_code, c);
        KEXPECT_EQ(t, user_process_destroy(&p), 0);
    }
}

static void run_wait(void *arg)
{
    struct run_args *r = arg;
    r->end = user_process_run(r->p, UMODE_WAIT, 0x600000);
}

/* Poll the word at va of p (kernel side, through the copy helper) until
 * it is non-zero or about a second has passed. */
static bool wait_for_user_word(struct user_process *p, uint64_t va)
{
    for (unsigned i = 0; i < 100000; i++) {
        uint32_t w = 0;
        if (mm_copy_from_user(&p->as, &w, VA(va), 4) == 0 && w)
            return true;
        udelay(10);
    }
    return false;
}

/*
 * An interrupt that arrives while another CPU runs ring-3 code (here the
 * shootdown of an unmap) is served and returns to ring 3: the process
 * then sees the word the kernel writes and exits with it.
 */
static void case_interrupt_in_ring3(struct ktest *t)
{
    if (smp_online_cpus() < 2)
        KSKIP(t, "needs 2 CPUs");
    unsigned other = smp_cpu_id() == 0 ? 1 : 0;
    struct user_process p;
    KASSERT(t, user_process_create(&p) == 0);
    KASSERT(t, mm_as_map_zeroed(&p.as, VA(0x600000), PROT_RW) == 0);
    KASSERT(t, mm_as_map_zeroed(&p.as, VA(0x601000), PROT_RW) == 0);
    struct run_args r = { &p, USER_NOT_RUN };
    smp_post(other, run_wait, &r);
    bool started = wait_for_user_word(&p, 0x600004);

    uint64_t before = smp_shootdowns_received(other);
    KEXPECT_EQ(t, mm_as_unmap(&p.as, VA(0x601000)), 0);
    KEXPECT_EQ(t, smp_shootdowns_received(other) - before, started ? 1 : 0);
    uint32_t go = 0x600d;
    KEXPECT_EQ(t, mm_copy_to_user(&p.as, VA(0x600000), &go, 4), 0);
    smp_wait(other);

    KEXPECT(t, started);
    KEXPECT_EQ(t, r.end, USER_EXITED);
    KEXPECT_EQ(t, p.exit_code, 0x600d);
    KEXPECT_EQ(t, user_process_destroy(&p), 0);
}

static void switch_to(void *as)
{
    mm_as_switch(as);
}

/*
 * Map and unmap `rounds` pages; after each unmap the shootdowns received
 * by every CPU other than this one must have grown by exactly one on
 * `target` (MM_NO_CPU: none) and stayed put everywhere else.
 */
static void expect_unmap_shootdowns(struct ktest *t, struct mm_as *as, unsigned target,
                                    const char *phase)
{
    uint64_t before[MM_MAX_CPUS];
    unsigned n = smp_online_cpus(), me = smp_cpu_id(), wrong = 0;
    for (unsigned round = 0; round < 3; round++) {
        virt_addr_t va = VA(0x400000 + round * PAGE_SIZE);
        KASSERT(t, mm_as_map_zeroed(as, va, PROT_RW) == 0);
        for (unsigned c = 0; c < n; c++)
            before[c] = smp_shootdowns_received(c);
        KASSERT(t, mm_as_unmap(as, va) == 0);
        for (unsigned c = 0; c < n; c++)
            if (c != me && smp_shootdowns_received(c) - before[c] != (c == target))
                wrong++;
    }
    if (wrong)
        ktest_log(t, "%s: %u unexpected shootdown count(s)", phase, wrong);
    KEXPECT_EQ(t, wrong, 0);
}

static void case_shootdown_only_where_loaded(struct ktest *t)
{
    if (smp_online_cpus() < 2)
        KSKIP(t, "needs 2 CPUs");
    unsigned me = smp_cpu_id(), other = me == 0 ? 1 : 0;
    static struct mm_as as;    /* static: a failed case may leave it loaded */
    KASSERT(t, mm_as_create(&as, mm_buddy_frames()) == 0);

    mm_as_switch(&as);
    expect_unmap_shootdowns(t, &as, MM_NO_CPU, "loaded here only");
    smp_call(other, switch_to, &as);
    expect_unmap_shootdowns(t, &as, other, "loaded here and on another CPU");
    mm_as_switch(NULL);
    expect_unmap_shootdowns(t, &as, other, "loaded on another CPU only");
    smp_call(other, switch_to, NULL);
    expect_unmap_shootdowns(t, &as, MM_NO_CPU, "loaded nowhere");
    KEXPECT_EQ(t, mm_as_destroy(&as), 0);
}

KTEST_SUITE(aspace_suite, "aspace",
            KTEST_CASE(case_create_destroy_returns_frames),
            KTEST_CASE(case_user_program_runs),
            KTEST_CASE(case_user_cannot_touch_kernel),
            KTEST_CASE(case_user_pages_are_w_xor_x),
            KTEST_CASE(case_syscall_bad_pointer),
            KTEST_CASE(case_copy_helpers),
            KTEST_CASE(case_kernel_mapping_after_create_visible),
            KTEST_CASE(case_smep_smap_on_every_cpu),
            KTEST_CASE(case_smap_blocks_kernel_access),
            KTEST_CASE(case_smep_blocks_kernel_exec),
            KTEST_CASE(case_user_runs_on_every_cpu),
            KTEST_CASE(case_interrupt_in_ring3),
            KTEST_CASE(case_shootdown_only_where_loaded));
