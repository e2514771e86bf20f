/*
 * printk.c - kernel printf on the serial console, panic, and the QEMU exit
 * port.
 *
 * printk formats into a line buffer with the library's mm_vsnprintf and
 * hands it to console_write, whose lock keeps lines whole.  panic stops
 * the other CPUs' output from mixing in: the first CPU to panic writes
 * with console_write_emergency (no lock: the CPU holding it may be the one
 * that died) and exits QEMU; a CPU that panics after it just halts.
 */
#include "kernel.h"
#include "io.h"
#include "percpu.h"
#include <mm/log.h>

#define PRINTK_LINE_MAX 512

int vprintk(const char *fmt, va_list ap)
{
    char line[PRINTK_LINE_MAX];
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
    outb(QEMU_EXIT_PORT, code);
    /* Not under QEMU (or no isa-debug-exit device): just stop. */
    cpu_halt_forever();
    __builtin_unreachable();
}

static volatile int panicking;

_Noreturn void panic(const char *fmt, ...)
{
    char msg[PRINTK_LINE_MAX];
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
