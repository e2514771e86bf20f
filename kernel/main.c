/*
 * main.c - the test kernel's kmain: bring up the console, the boot CPU's
 * descriptor tables, the system-call entry for user processes and the
 * memory subsystem (mm_init, with the image's sections from linker.ld),
 * move off the boot stack onto a kernel stack with guard pages, start the
 * other CPUs, mask the legacy PICs, enable interrupts, run the self-tests
 * (ktest.c) and report the result to QEMU through the isa-debug-exit
 * port.  After mm_init and after the self-tests it prints the lines the
 * picture of memory needs (memreport.c).  Everything here runs once, on
 * the boot CPU.
 *
 * Stacks.  entry.asm starts kmain on a 32 KiB stack in .bss, with nothing
 * below it to catch an overflow.  As soon as mm_init has set up the
 * kernel-stack range, kmain allocates the stack "cpu0" there
 * (mm_kstack_alloc: unmapped guard pages below and above) and continues
 * on it for good; the .bss stack is never used again.  An overflow of a
 * kernel stack then faults in the guard, the page fault cannot push its
 * frame and becomes a double fault, which runs on its own IST stack
 * (cpu.c) and names the stack (trap.c).
 */
#include "kernel.h"
#include "io.h"
#include "ktest.h"
#include "percpu.h"
#include "smp.h"
#include "trap.h"
#include "user.h"
#include <mm/init.h>
#include <mm/kstack.h>
#include <mm/log.h>
#include <mm/multiboot2.h>
#include <mm/pat.h>

/* The boot CPU's kernel stack ("cpu0"; the APs' are as large, smp.c). */
#define CPU_KSTACK_SIZE (32 * KiB)

static struct mm_boot_params boot_params;
static struct mm_init_report init_report;
static struct mm_kstack boot_cpu_stack;

/* What memory_init gave mm_init (the conformance suite checks it). */
const struct mm_boot_params *kernel_boot_params(void)
{
    return &boot_params;
}

/* What mm_init reported (the kstack suite compares the direct map's
 * page counts with it). */
const struct mm_init_report *kernel_init_report(void)
{
    return &init_report;
}

static void memory_init(uint64_t mbi_pa)
{
    struct mm_boot_params *p = &boot_params;
    p->mbi_pa = PA(mbi_pa);
    p->image_pa_start = PA((uint64_t)__kernel_phys_start);
    p->image_pa_end = PA(align_up_u64((uint64_t)__kernel_phys_end, PAGE_SIZE));
    p->image_va_offset = KERNEL_VMA;
    p->sections[0] = (struct mm_image_section){ "kernel text", VA(__text_start),
        (uint64_t)(__text_end - __text_start), PTE_KERNEL_TEXT };
    p->sections[1] = (struct mm_image_section){ "kernel rodata", VA(__rodata_start),
        (uint64_t)(__rodata_end - __rodata_start), PTE_KERNEL_RO };
    p->sections[2] = (struct mm_image_section){ "kernel data+bss", VA(__data_start),
        (uint64_t)(__bss_end - __data_start), PTE_KERNEL_RW };
    p->nsections = 3;
    p->low_identity_map = true;
    mm_init(p, &init_report);
    memreport_print_phys(p, &init_report);
    memreport_print_buddy("boot");
    /* The PAT: write-combining for framebuffers (include/mm/pat.h).  Each
     * AP programs its own in ap_main, before it runs anything else. */
    if (mm_pat_init_cpu() != 0)
        printk("memory_init: no PAT on this CPU: mm_ioremap_wc will refuse\n");
}

/*
 * Fault injection for checking by hand that `make test` notices each kind
 * of failure: build with `make test-kernel INJECT=fail|panic|triple|hang`.
 * INJECT=shootdown_skip breaks the TLB-shootdown glue instead (smp.c) and
 * runs only the conformance suite, which must report it (make test does).
 * INJECT=stackoverflow recurses without end on the boot CPU's kernel
 * stack: the kernel must end in the double-fault handler's panic naming
 * a kernel stack overflow of "cpu0" (make test-broken-stackoverflow).
 */
#if defined(KTEST_INJECT_stackoverflow)
/* Each call keeps a 256-byte frame alive across the next call (no tail
 * call), so the stack only grows.  The depth test never ends the
 * recursion in practice; it tells the compiler that it could. */
static __attribute__((noinline)) uint64_t recurse(volatile uint8_t *caller, uint64_t depth)
{
    volatile uint8_t frame[256];
    frame[0] = (uint8_t)(caller[0] + 1);
    if (depth == UINT64_MAX)
        return frame[0];
    return recurse(frame, depth + 1) + frame[0];
}
#endif

static void inject_failure(void)
{
#if defined(KTEST_INJECT_stackoverflow)
    printk("kmain: injecting a kernel stack overflow (INJECT=stackoverflow)\n");
    volatile uint8_t start = 0;
    printk("kmain: recursion ended?! (%lu)\n", (unsigned long)recurse(&start, 0));
#elif defined(KTEST_INJECT_panic)
    panic("kmain: injected panic (INJECT=panic)");
#elif defined(KTEST_INJECT_triple)
    printk("kmain: injecting a triple fault (INJECT=triple)\n");
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } none = { 0, 0 };
    __asm__ volatile("lidt %0; int3" : : "m"(none));
#elif defined(KTEST_INJECT_hang)
    printk("kmain: injecting a hang (INJECT=hang)\n");
    for (;;)
        __asm__ volatile("cli; hlt");
#endif
}

/* Spurious interrupts of the (masked) 8259s arrive as IRQ 7 / 15. */
static void pic_spurious(struct trap_frame *tf)
{
    (void)tf;
}

/*
 * The legacy 8259 PICs: move their vectors to 0x20-0x2f (the BIOS leaves
 * them on top of the CPU exceptions), ignore their spurious IRQs, and
 * mask every line.  Only local APIC interrupts are used.
 */
static void pic_disable(void)
{
    outb(0x20, 0x11);       /* ICW1: init, expect ICW4 */
    outb(0xa0, 0x11);
    outb(0x21, 0x20);       /* ICW2: vector base */
    outb(0xa1, 0x28);
    outb(0x21, 0x04);       /* ICW3: slave on IRQ 2 */
    outb(0xa1, 0x02);
    outb(0x21, 0x01);       /* ICW4: 8086 mode */
    outb(0xa1, 0x01);
    outb(0x21, 0xff);       /* mask all */
    outb(0xa1, 0xff);
    irq_register(0x27, pic_spurious);
    irq_register(0x2f, pic_spurious);
}

/* kernel/entry.asm: continue on a new stack (rsp = top, 16-byte aligned,
 * rbp = 0, a frame a backtrace ends at) by calling fn, which never
 * returns.  Nothing of the old stack is used again. */
_Noreturn void stack_switch_call(uint64_t top, void (*fn)(void));

static _Noreturn void kmain_on_kstack(void);

void kmain(uint32_t magic, uint64_t mbi_pa)
{
    console_init();
    percpu_setup(0, 0);
    idt_init();
    user_init();
    printk("\nmm-kernel: booted, multiboot2 info at %#lx\n", (unsigned long)mbi_pa);
    if (magic != MB2_BOOTLOADER_MAGIC)
        panic("kmain: bad multiboot2 magic %#x", magic);

    write_cr4(read_cr4() | CR4_PGE);
    memory_init(mbi_pa);
    /* Interrupts are still off, which mm_kstack_alloc's contract rules
     * out; it is safe here because no other CPU runs yet, so nobody can
     * hold the kernel mapper lock or wait for our shootdown. */
    if (mm_kstack_alloc(CPU_KSTACK_SIZE, 0, "cpu0", &boot_cpu_stack) != 0)
        panic("kmain: no kernel stack for cpu 0");
    stack_switch_call(boot_cpu_stack.top.raw, kmain_on_kstack);
}

/* The rest of kmain, on the boot CPU's kernel stack "cpu0". */
static _Noreturn void kmain_on_kstack(void)
{
    smp_init();      /* starts the APs, then removes the low identity map */
    /*
     * Interrupts on from here: a CPU waiting for the kernel mapper lock
     * must be able to acknowledge the holder's TLB shootdown IPI.
     */
    pic_disable();
    __asm__ volatile("sti");
    inject_failure();

    int failed = ktest_run_all();
    /* For the picture of memory (tools/memory-svg.py): the buddy and the
     * kernel table as the self-tests left them. */
    memreport_print_buddy("end");
    printk("mm-picture: page table at the end of boot follows\n");
    mm_dump_kernel_table();
    if (failed) {
        printk("mm-kernel: %d test case(s) FAILED\n", failed);
        qemu_exit(QEMU_EXIT_FAIL);
    }
    printk("mm-kernel: all tests passed\n");
    qemu_exit(QEMU_EXIT_PASS);
}
