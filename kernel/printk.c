/*
 * printk.c - kernel printf on the serial console, panic, the QEMU exit
 * port, and the test kernel's side of the mm platform interface.
 */
#include "kernel.h"
#include "io.h"
#include "smp.h"
#include <mm/log.h>
#include <mm/platform.h>

int vprintk(const char *fmt, va_list ap)
{
    char line[512];
    int n = mm_vsnprintf(line, sizeof(line), fmt, ap);
    console_write(line);
    return n;
}

int printk(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vprintk(fmt, ap);
    va_end(ap);
    return n;
}

_Noreturn void qemu_exit(uint8_t code)
{
    outb(0xf4, code);
    /* Not under QEMU (or no isa-debug-exit device): just stop. */
    cpu_halt_forever();
    __builtin_unreachable();
}

static volatile int panicking;

_Noreturn void panic(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    __asm__ volatile("cli");
    va_start(ap, fmt);
    mm_vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (__atomic_exchange_n(&panicking, 1, __ATOMIC_SEQ_CST)) {
        /* Another CPU is already panicking: it will exit QEMU. */
        cpu_halt_forever();
    }
    char head[64];
    mm_snprintf(head, sizeof(head), "\nKERNEL PANIC on cpu %u: ", smp_cpu_id());
    console_write_emergency(head);
    console_write_emergency(msg);
    console_write_emergency("\n");
    qemu_exit(QEMU_EXIT_PANIC);
}

/* ---- mm platform interface ---- */

/* Set by the KTAP runner: library log lines become KTAP diagnostics. */
bool mm_log_as_ktap_diagnostic;

void mm_platform_puts(const char *s)
{
    if (mm_log_as_ktap_diagnostic) {
        char line[320];
        mm_snprintf(line, sizeof(line), "    # %s", s);
        console_write(line);
        return;
    }
    console_write(s);
}

_Noreturn void mm_platform_panic(const char *msg)
{
    panic("%s", msg);
}

unsigned mm_platform_cpu_id(void)
{
    return smp_cpu_id();
}

unsigned long mm_platform_irq_save(void)
{
    unsigned long flags;
    __asm__ volatile("pushfq; pop %0; cli" : "=r"(flags) : : "memory");
    return flags;
}

void mm_platform_irq_restore(unsigned long flags)
{
    if (flags & (1ul << 9))
        __asm__ volatile("sti" : : : "memory");
}

