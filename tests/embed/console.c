/*
 * tests/embed/console.c - the example kernel's console (16550 UART on COM1,
 * polled: no interrupts, no buffer, no lock, since the example runs on one
 * CPU), the QEMU isa-debug-exit port, and the masking of the 8259 PICs.
 * platform.c builds the library's console and panic hooks on these.
 */
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

/* The legacy 8259 PICs: mask every line, so that no device interrupt can
 * arrive while main.c has interrupts enabled (the example has handlers for
 * the CPU exceptions only). */
void pic_mask_all(void)
{
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}
