/*
 * tests/embed/console.c - the example kernel's console (16550 UART on COM1,
 * polled), the QEMU exit port, and its implementation of the platform
 * interface that libmm.a needs (include/mm/platform.h).
 *
 * The example runs on one CPU with interrupts disabled throughout, so:
 *   mm_platform_cpu_id()          always 0;
 *   mm_platform_irq_save/restore  save RFLAGS and cli / sti if IF was set;
 *   mm_platform_tlb_shootdown()   nothing to do: there is no other CPU;
 *   mm_platform_panic()           prints the message and exits QEMU with
 *                                 EMBED_EXIT_PANIC (status 37).
 * None of them allocates or takes a lock, so all may be called with
 * interrupts off, as the interface requires.
 */
#include <mm/platform.h>
#include "embed.h"

#define COM1 0x3f8
#define EXIT_PORT 0xf4

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* 115200 baud, 8N1, FIFO on, no interrupts. */
void serial_init(void)
{
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x80);
    outb(COM1 + 0, 0x01);
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);
    outb(COM1 + 2, 0xc7);
    outb(COM1 + 4, 0x03);
}

static void serial_putc(char c)
{
    while (!(inb(COM1 + 5) & 0x20))     /* transmit holding register empty */
        ;
    outb(COM1, (uint8_t)c);
}

void serial_puts(const char *s)
{
    for (; *s; s++) {
        if (*s == '\n')
            serial_putc('\r');
        serial_putc(*s);
    }
}

_Noreturn void qemu_exit(uint8_t code)
{
    outb(EXIT_PORT, code);
    for (;;)                             /* not under QEMU: just stop */
        __asm__ volatile("cli; hlt");
}

/* ------------------------------------------------- mm platform interface */

void mm_platform_puts(const char *s)
{
    serial_puts(s);
}

_Noreturn void mm_platform_panic(const char *msg)
{
    __asm__ volatile("cli");
    serial_puts("\nembed: PANIC: ");
    serial_puts(msg);
    serial_puts("\n");
    qemu_exit(EMBED_EXIT_PANIC);
}

unsigned mm_platform_cpu_id(void)
{
    return 0;
}

unsigned long mm_platform_irq_save(void)
{
    unsigned long flags;
    __asm__ volatile("pushfq; pop %0; cli" : "=r"(flags) : : "memory");
    return flags;
}

void mm_platform_irq_restore(unsigned long flags)
{
    if (flags & (1ul << 9))              /* RFLAGS.IF */
        __asm__ volatile("sti" : : : "memory");
}

void mm_platform_tlb_shootdown(virt_addr_t va, uint64_t npages)
{
    (void)va;                            /* uniprocessor: no other TLB */
    (void)npages;
}
