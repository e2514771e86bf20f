/*
 * smp.c - application-processor start-up, cross-CPU calls and the TLB
 * shootdown behind mm_platform_tlb_shootdown() (platform.c).
 *
 * Bring-up: the CPUs come from the ACPI MADT; the local APIC is reached
 * through ioremap.  The trampoline (boot/trampoline.asm) is copied to
 * TRAMPOLINE_PA; each AP in turn gets INIT-SIPI-SIPI, a kernel stack
 * with guard pages named "cpuN" (mm_kstack_alloc) and its dense cpu
 * index, and reports in from ap_main().  The trampoline loads the kernel
 * table into CR3 before it turns paging on and only then, in 64-bit mode,
 * loads that stack's top into rsp, so the stack (in the kernel half, not
 * identity-mapped) is reachable from the AP's first push.  The stacks are
 * taken with interrupts still off (kmain enables them after smp_init):
 * no other CPU takes the kernel mapper lock during bring-up (the APs that
 * are up only wait in ap_idle), so nobody can wait for us with a
 * shootdown.  When all are up the low identity map is removed.
 *
 * Cross-CPU calls: each CPU has a mailbox.  smp_post(cpu, fn, arg) fills
 * the target's mailbox and wakes it with an IPI; idle APs sleep in
 * "sti; hlt" and run what they find.  smp_wait(cpu) spins until the
 * target marks the mailbox done.  smp_call is the two in sequence.
 *
 * Shootdown: one request at a time, serialised by the flag shootdown_busy;
 * the initiator sets a mask of CPUs that still owe an acknowledgement (the
 * online CPUs of the request's target set, never itself), sends the IPI
 * to exactly those (the all-but-self shorthand when they are all the
 * others; no IPI when there are none) and waits until the mask is empty.
 * Each CPU counts the requests it carried out (smp_shootdowns_received).  A
 * CPU that is itself spinning (for the flag or for acks) services requests
 * addressed to it while it waits, so two initiators, or an initiator with
 * interrupts off, cannot deadlock.  Requests of more than
 * PT_FLUSH_MAX_INVLPG pages flush the whole TLB, as the library's own
 * flushes do.
 */
#include "kernel.h"
#include "acpi.h"
#include "io.h"
#include "percpu.h"
#include "smp.h"
#include "timer.h"
#include "trap.h"
#include <mm/arch.h>
#include <mm/init.h>
#include <mm/kstack.h>
#include <mm/log.h>
#include <mm/paging.h>
#include <mm/pat.h>

#define TRAMPOLINE_PA   0x8000u     /* the same value as in boot/trampoline.asm */
#define AP_STACK_SIZE   (32 * KiB)  /* as the boot CPU's (main.c) */

#define LAPIC_ID        0x020
#define LAPIC_VERSION   0x030
#define LAPIC_EOI       0x0b0
#define LAPIC_SVR       0x0f0
#define LAPIC_ICR_LO    0x300
#define LAPIC_ICR_HI    0x310

#define MSR_APIC_BASE       0x1b
#define APIC_BASE_X2APIC    (1u << 10)     /* EXTD: x2APIC mode */

#define VEC_SHOOTDOWN   0xf0
#define VEC_WAKEUP      0xf1
#define VEC_SPURIOUS    0xff

extern const char ap_trampoline_start[], ap_trampoline_end[];
extern uint64_t ap_tramp_cr3, ap_tramp_stack, ap_tramp_entry, ap_tramp_cpu;

static volatile uint32_t *lapic;
static unsigned cpus_online = 1;
/*
 * Start-up handshake for the AP being started, one at a time.  Whoever
 * moves ap_state away from AP_WAITING decides: the AP (to AP_ARRIVED, then
 * it counts itself online) or the BSP after its timeout (to AP_ABANDONED,
 * then it parks the AP).  So a late AP can never count itself online after
 * the BSP has given up on it and reused its index.
 */
enum { AP_WAITING, AP_ARRIVED, AP_ABANDONED };
static unsigned ap_state;
static volatile unsigned ap_reported;   /* set by the AP once it is counted */

/* ----------------------------------------------------------------- LAPIC */

static inline uint32_t lapic_read(unsigned reg) { return lapic[reg / 4]; }
static inline void lapic_write(unsigned reg, uint32_t v) { lapic[reg / 4] = v; }

static void lapic_eoi(void)
{
    lapic_write(LAPIC_EOI, 0);
}

static void lapic_enable(void)
{
    lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
}

static void lapic_wait_icr(void)
{
    while (lapic_read(LAPIC_ICR_LO) & (1u << 12))
        __asm__ volatile("pause");
}

static void lapic_send(uint32_t apic_id, uint32_t icr_lo)
{
    lapic_wait_icr();
    lapic_write(LAPIC_ICR_HI, apic_id << 24);
    lapic_write(LAPIC_ICR_LO, icr_lo);
    lapic_wait_icr();
}

static void send_ipi_all_but_self(uint8_t vector)
{
    lapic_wait_icr();
    lapic_write(LAPIC_ICR_LO, (3u << 18) | (1u << 14) | vector);   /* shorthand: all excluding self */
    lapic_wait_icr();
}

unsigned smp_online_cpus(void)
{
    return __atomic_load_n(&cpus_online, __ATOMIC_ACQUIRE);
}

volatile uint32_t *smp_lapic(void)
{
    return lapic;
}

/* IA32_APIC_BASE holds the page address in bits 12..51, like a PTE. */
uint64_t smp_lapic_pa(void)
{
    return rdmsr(MSR_APIC_BASE) & PTE_ADDR_MASK;
}

/* ------------------------------------------------------------- shootdown */

static unsigned shootdown_busy;    /* 1 while a request is in flight */
static struct {
    uint64_t va;
    uint64_t npages;           /* 0 = everything */
    uint64_t pending;          /* CPUs that still have to flush */
} sd;
static uint64_t shootdown_count;   /* written only with shootdown_busy held */
/* Requests carried out, per CPU; each written only by its own CPU. */
static uint64_t shootdowns_received[MM_MAX_CPUS];

static void flush_local(uint64_t va, uint64_t npages)
{
    if (npages == 0 || npages > PT_FLUSH_MAX_INVLPG) {
        arch_flush_tlb_all();
        return;
    }
    for (uint64_t i = 0; i < npages; i++)
        arch_invlpg(VA(va + i * PAGE_SIZE));
}

/* Do this CPU's part of the current request, if it owes one. */
static void shootdown_service(void)
{
    unsigned me = smp_cpu_id();
    uint64_t bit = 1ull << me;
    if (__atomic_load_n(&sd.pending, __ATOMIC_ACQUIRE) & bit) {
        flush_local(sd.va, sd.npages);
        __atomic_store_n(&shootdowns_received[me], shootdowns_received[me] + 1,
                         __ATOMIC_RELAXED);
        __atomic_fetch_and(&sd.pending, ~bit, __ATOMIC_RELEASE);
    }
}

static void shootdown_irq(struct trap_frame *tf)
{
    (void)tf;
    shootdown_service();
    lapic_eoi();
}

/* Wait for the acknowledgements of every CPU in sd.pending. */
static void shootdown_wait_acks(void)
{
    uint64_t spins = 0;
    while (__atomic_load_n(&sd.pending, __ATOMIC_ACQUIRE)) {
        __asm__ volatile("pause");
        if (++spins == (1ull << 30))
            printk("smp: shootdown from cpu %u still waiting for cpus %#lx\n", smp_cpu_id(),
                   (unsigned long)__atomic_load_n(&sd.pending, __ATOMIC_RELAXED));
    }
}

/* Interrupt the CPUs in mask (online, not this one): all but self when
 * that is every other online CPU, else one fixed IPI each. */
static void send_shootdown_ipis(uint64_t mask, uint64_t all_others)
{
    if (mask == all_others) {
        send_ipi_all_but_self(VEC_SHOOTDOWN);
        return;
    }
    for (uint64_t m = mask; m; m &= m - 1)
        lapic_send(percpu_area[__builtin_ctzll(m)].apic_id, (1u << 14) | VEC_SHOOTDOWN);
}

void smp_tlb_shootdown(uint64_t targets, uint64_t va, uint64_t npages)
{
    unsigned n = smp_online_cpus();
    uint64_t all_others = ((n >= 64) ? ~0ull : ((1ull << n) - 1)) & ~(1ull << smp_cpu_id());
    uint64_t mask = targets & all_others;
#if defined(KTEST_INJECT_shootdown_skip)
    /* Deliberately broken glue (INJECT=shootdown_skip): the highest other
     * CPU never gets the request.  mm_conformance must notice. */
    mask &= ~(1ull << (63 - __builtin_clzll(all_others | 1)));
#endif
    if (mask == 0)
        return;
    unsigned long flags = cpu_irq_save();
    while (__atomic_exchange_n(&shootdown_busy, 1, __ATOMIC_ACQUIRE)) {
        shootdown_service();               /* the current owner may wait for us */
        __asm__ volatile("pause");
    }
    sd.va = va;
    sd.npages = npages;
    __atomic_store_n(&sd.pending, mask, __ATOMIC_RELEASE);
    send_shootdown_ipis(mask, all_others);
    shootdown_wait_acks();
    shootdown_count++;
    __atomic_store_n(&shootdown_busy, 0, __ATOMIC_RELEASE);
    cpu_irq_restore(flags);
}

uint64_t smp_shootdowns(void)
{
    return shootdown_count;
}

uint64_t smp_shootdowns_received(unsigned cpu)
{
    if (cpu >= smp_online_cpus())
        return 0;
    return __atomic_load_n(&shootdowns_received[cpu], __ATOMIC_RELAXED);
}

/* ------------------------------------------------------- cross-CPU calls */

struct mailbox {
    void (*fn)(void *);
    void *arg;
    volatile int done;
} __attribute__((aligned(64)));

static struct mailbox mailbox[MM_MAX_CPUS];

static void wakeup_irq(struct trap_frame *tf)
{
    (void)tf;
    lapic_eoi();
}

static void spurious_irq(struct trap_frame *tf)
{
    (void)tf;
}

/* Start fn(arg) on cpu (another online CPU) without waiting. */
void smp_post(unsigned cpu, void (*fn)(void *), void *arg)
{
    struct mailbox *mb = &mailbox[cpu];
    mb->arg = arg;
    mb->done = 0;
    __atomic_store_n(&mb->fn, fn, __ATOMIC_RELEASE);
    lapic_send(percpu_area[cpu].apic_id, (1u << 14) | VEC_WAKEUP);
}

/* Wait until the call last posted to cpu has returned. */
void smp_wait(unsigned cpu)
{
    while (!__atomic_load_n(&mailbox[cpu].done, __ATOMIC_ACQUIRE))
        __asm__ volatile("pause");
}

/* Run fn(arg) on cpu and wait for it to finish.  cpu may be this CPU. */
void smp_call(unsigned cpu, void (*fn)(void *), void *arg)
{
    if (cpu == smp_cpu_id()) {
        fn(arg);
        return;
    }
    smp_post(cpu, fn, arg);
    smp_wait(cpu);
}

/* Run fn(arg) on every online CPU at once (this one included), wait. */
void smp_call_all(void (*fn)(void *), void *arg)
{
    unsigned me = smp_cpu_id(), n = smp_online_cpus();
    for (unsigned c = 0; c < n; c++)
        if (c != me)
            smp_post(c, fn, arg);
    fn(arg);
    for (unsigned c = 0; c < n; c++)
        if (c != me)
            smp_wait(c);
}

static _Noreturn void ap_idle(void)
{
    struct mailbox *mb = &mailbox[smp_cpu_id()];
    for (;;) {
        __asm__ volatile("cli");
        void (*fn)(void *) = __atomic_load_n(&mb->fn, __ATOMIC_ACQUIRE);
        if (fn) {
            mb->fn = NULL;
            __asm__ volatile("sti");
            fn(mb->arg);
            __atomic_store_n(&mb->done, 1, __ATOMIC_RELEASE);
            continue;
        }
        __asm__ volatile("sti; hlt");      /* sti's shadow: no lost wakeup */
    }
}

/* ---------------------------------------------------------------- bring-up */

_Noreturn void ap_main(uint64_t cpu)
{
    percpu_setup((unsigned)cpu, percpu_area[cpu].apic_id);
    idt_load();
    write_cr4(read_cr4() | CR4_PGE);
    (void)mm_pat_init_cpu();            /* the same PAT as the boot CPU */
    lapic_enable();
    unsigned waiting = AP_WAITING;
    if (!__atomic_compare_exchange_n(&ap_state, &waiting, AP_ARRIVED, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        for (;;)                           /* too late: the BSP gave up on us */
            __asm__ volatile("cli; hlt");
    }
    __atomic_fetch_add(&cpus_online, 1, __ATOMIC_RELEASE);
    ap_reported = 1;
    ap_idle();
}

/* Is [pa, pa + size) free for the trampoline: type-1 RAM that holds
 * neither the boot information nor a module (mm keeps pointers into it)? */
static bool trampoline_page_usable(uint64_t pa, uint64_t size)
{
    const struct mb2_info *mbi = mm_boot_info();
    if (!mbi)
        return false;
    if (pa < mbi->pa.raw + mbi->total_size && mbi->pa.raw < pa + size)
        return false;
    struct mb2_module mod;
    for (uint32_t cursor = 0; mb2_module_next(mbi, &cursor, &mod);)
        if (pa < mod.end.raw && mod.start.raw < pa + size)
            return false;
    for (unsigned i = 0; i < mbi->map_count; i++) {
        struct mb2_mmap_entry e;
        if (mb2_map_entry(mbi, i, &e) == 0 && e.type == MB2_MEM_AVAILABLE &&
            e.base <= pa && e.base + e.length >= pa + size)
            return true;
    }
    return false;
}

static bool start_ap(unsigned cpu, uint32_t apic_id)
{
    struct mm_kstack stack;
    char name[MM_KSTACK_NAME_LEN];
    mm_snprintf(name, sizeof(name), "cpu%u", cpu);
    if (mm_kstack_alloc(AP_STACK_SIZE, cpu, name, &stack) != 0) {
        printk("smp: no kernel stack for cpu %u\n", cpu);
        return false;
    }
    percpu_area[cpu].apic_id = apic_id;
    uint8_t *tramp = pa_to_ptr(PA(TRAMPOLINE_PA));
    uint64_t *cr3 = (uint64_t *)(tramp + ((const char *)&ap_tramp_cr3 - ap_trampoline_start));
    uint64_t *rsp = (uint64_t *)(tramp + ((const char *)&ap_tramp_stack - ap_trampoline_start));
    uint64_t *entry = (uint64_t *)(tramp + ((const char *)&ap_tramp_entry - ap_trampoline_start));
    uint64_t *idx = (uint64_t *)(tramp + ((const char *)&ap_tramp_cpu - ap_trampoline_start));
    *cr3 = arch_read_cr3().raw;
    *rsp = stack.top.raw;
    *entry = (uint64_t)ap_main;
    *idx = cpu;
    ap_reported = 0;
    __atomic_store_n(&ap_state, AP_WAITING, __ATOMIC_SEQ_CST);

    lapic_send(apic_id, 0x4500);                          /* INIT, assert */
    udelay(10000);
    for (int i = 0; i < 2 && !ap_reported; i++) {
        lapic_send(apic_id, 0x4600 | (TRAMPOLINE_PA >> 12)); /* STARTUP */
        udelay(200);
    }
    for (int ms = 0; ms < 2000 && !ap_reported; ms++)
        udelay(1000);
    unsigned waiting = AP_WAITING;
    if (!ap_reported && !__atomic_compare_exchange_n(&ap_state, &waiting, AP_ABANDONED, false,
                                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        while (!ap_reported)               /* it arrived just now: let it finish */
            __asm__ volatile("pause");
    }
    if (!ap_reported) {
        /*
         * Park it with INIT so a late start cannot run on a reused stack
         * or under an id that the next CPU gets.  The stack is not freed:
         * we cannot be sure the AP never touched it.
         */
        lapic_send(apic_id, 0x4500);
        printk("smp: cpu %u (APIC id %u) did not start; parked with INIT, "
               "its kernel stack '%s' is not reused\n", cpu, apic_id, name);
        return false;
    }
    return true;
}

/* The trampoline's identity map is only needed while APs start. */
static void remove_low_identity(void)
{
    int rc = mm_remove_low_identity();
    if (rc != 0)
        panic("smp_init: removing the low identity map failed: %s", mm_strerror(rc));
}

void smp_init(void)
{
    irq_register(VEC_SHOOTDOWN, shootdown_irq);
    irq_register(VEC_WAKEUP, wakeup_irq);
    irq_register(VEC_SPURIOUS, spurious_irq);

    if (rdmsr(MSR_APIC_BASE) & APIC_BASE_X2APIC) {
        /* x2APIC mode (IA32_APIC_BASE.EXTD): the registers are MSRs and the
         * MMIO page does not answer.  This kernel drives the xAPIC only. */
        printk("smp: the firmware left the local APIC in x2APIC mode, which this kernel "
               "does not drive; running on the boot CPU only\n");
        remove_low_identity();
        return;
    }
    uint64_t apic_base = smp_lapic_pa();
    lapic = mm_ioremap(PA(apic_base), PAGE_SIZE);
    if (!lapic)
        panic("smp_init: cannot ioremap the local APIC at %#lx", (unsigned long)apic_base);
    uint32_t bsp_apic = lapic_read(LAPIC_ID) >> 24;
    percpu_area[0].apic_id = bsp_apic;
    lapic_enable();

    static struct acpi_cpus cpus;
    if (acpi_find_cpus(&cpus) != 0) {
        printk("smp: no MADT; running on the boot CPU only\n");
        cpus.count = 0;
    } else {
        printk("smp: RSDP from %s; MADT lists %u CPUs\n", cpus.rsdp_source, cpus.count);
    }

    size_t tramp_size = (size_t)(ap_trampoline_end - ap_trampoline_start);
    bool have_tramp = trampoline_page_usable(TRAMPOLINE_PA, tramp_size);
    uint64_t cr3 = arch_read_cr3().raw;
    if (cpus.count > 1 && cr3 >> 32 != 0) {
        /* The trampoline loads CR3 while still in 32-bit mode. */
        printk("smp: the kernel page table is at %#lx, above 4 GiB, where the AP "
               "trampoline cannot load it; application processors not started\n",
               (unsigned long)cr3);
        have_tramp = false;
    } else if (cpus.count > 1 && !have_tramp)
        printk("smp: page %#x is not free RAM (or holds boot information); "
               "application processors not started\n", TRAMPOLINE_PA);
    if (cpus.count > 1 && have_tramp) {
        if (!mm_has_low_identity())
            panic("smp_init: the low identity map is gone; APs cannot start");
        memcpy(pa_to_ptr(PA(TRAMPOLINE_PA)), ap_trampoline_start, tramp_size);
        unsigned next = 1;
        for (unsigned i = 0; i < cpus.count && next < MM_MAX_CPUS; i++) {
            if (cpus.apic_id[i] == bsp_apic)
                continue;
            if (start_ap(next, cpus.apic_id[i]))
                next++;
        }
    }
    remove_low_identity();
    printk("smp: %u CPU%s online\n", smp_online_cpus(), smp_online_cpus() == 1 ? "" : "s");
}
