/*
 * main.c - the test kernel: bring up the console, descriptor tables and
 * the memory subsystem, run the self-tests, and report the result to QEMU
 * through the isa-debug-exit port.
 */
#include "kernel.h"
#include "io.h"
#include "ktest.h"
#include "smp.h"
#include "trap.h"
#include <mm/log.h>

#define MB2_LOADER_MAGIC 0x36d76289u

void kernel_accounting(struct ktest_accounting *a)
{
    memset(a, 0, sizeof(*a));
}

/*
 * Fault injection for checking by hand that `make test` notices each kind
 * of failure: build with `make test-kernel INJECT=fail|panic|triple|hang`.
 */
static void inject_failure(void)
{
#if defined(KTEST_INJECT_panic)
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

void kmain(uint32_t magic, uint64_t mbi_pa)
{
    console_init();
    percpu_setup(0, 0);
    idt_init();
    printk("\nmm-kernel: booted, multiboot2 info at %#lx\n", mbi_pa);
    if (magic != MB2_LOADER_MAGIC)
        panic("kmain: bad multiboot2 magic %#x", magic);

    write_cr4(read_cr4() | CR4_PGE);
    inject_failure();

    int failed = ktest_run_all();
    if (failed) {
        printk("mm-kernel: %d test case(s) FAILED\n", failed);
        qemu_exit(QEMU_EXIT_FAIL);
    }
    printk("mm-kernel: all tests passed\n");
    qemu_exit(QEMU_EXIT_PASS);
}
