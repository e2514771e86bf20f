/*
 * console.c - the 16550 UART on COM1, the test kernel's only console.
 * Polled output (no interrupts); a spinlock keeps lines from different CPUs
 * from interleaving mid-line.  '\n' is sent as CR LF.
 */
#include "kernel.h"
#include "io.h"
#include <mm/spinlock.h>

#define COM1 0x3f8

static mm_spinlock_t console_lock = MM_SPINLOCK_INIT;

void console_init(void)
{
    outb(COM1 + 1, 0x00);   /* no interrupts */
    outb(COM1 + 3, 0x80);   /* DLAB */
    outb(COM1 + 0, 0x01);   /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);   /* 8N1 */
    outb(COM1 + 2, 0xc7);   /* FIFO */
    outb(COM1 + 4, 0x03);
}

static void uart_putc(char c)
{
    while (!(inb(COM1 + 5) & 0x20))
        ;
    outb(COM1, (uint8_t)c);
}

static void console_write_unlocked(const char *s)
{
    for (; *s; s++) {
        if (*s == '\n')
            uart_putc('\r');
        uart_putc(*s);
    }
}

void console_write(const char *s)
{
    unsigned long flags = mm_spin_lock_irqsave(&console_lock);
    console_write_unlocked(s);
    mm_spin_unlock_irqrestore(&console_lock, flags);
}

/* For panics: write even if another CPU died holding the lock. */
void console_write_emergency(const char *s)
{
    console_write_unlocked(s);
}
