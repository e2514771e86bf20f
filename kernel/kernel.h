/* kernel.h - the test kernel's internal interfaces (console, printk, panic). */
#ifndef KERNEL_KERNEL_H
#define KERNEL_KERNEL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void console_init(void);
void console_write(const char *s);
void console_write_emergency(const char *s);

int printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintk(const char *fmt, va_list ap);
extern bool mm_log_as_ktap_diagnostic;   /* printk.c */
_Noreturn void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* QEMU isa-debug-exit (port 0xf4): QEMU exits with status (code << 1) | 1. */
#define QEMU_EXIT_PASS 0x10     /* status 33 */
#define QEMU_EXIT_FAIL 0x11     /* status 35: a test failed */
#define QEMU_EXIT_PANIC 0x12    /* status 37: panic or unexpected exception */
_Noreturn void qemu_exit(uint8_t code);

void idt_init(void);
void idt_load(void);

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

extern char __kernel_phys_start[], __kernel_phys_end[];
extern char __text_start[], __text_end[], __rodata_start[], __rodata_end[];
extern char __data_start[], __data_end[], __bss_start[], __bss_end[];

#define KERNEL_VMA 0xffffffff80000000ull

#endif
