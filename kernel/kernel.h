/*
 * kernel.h - the test kernel's internal interfaces: console, printk,
 * panic, the QEMU exit port, descriptor tables, the freestanding C
 * library, and the linker-script symbols of the image.  Per-CPU data is
 * in percpu.h, cross-CPU calls in smp.h, delays in timer.h.
 */
#ifndef KERNEL_KERNEL_H
#define KERNEL_KERNEL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <mm/layout.h>

/* console.c: COM1, polled; console_write keeps lines whole across CPUs. */
void console_init(void);
void console_write(const char *s);
void console_write_emergency(const char *s);

/* printk.c */
int printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintk(const char *fmt, va_list ap);
_Noreturn void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* platform.c: while true, library log lines print as KTAP diagnostics. */
extern bool platform_log_as_ktap;

/* main.c: the parameters given to mm_init. */
struct mm_boot_params;
const struct mm_boot_params *kernel_boot_params(void);
/* What mm_init reported (the kstack suite compares the direct map with it). */
struct mm_init_report;
const struct mm_init_report *kernel_init_report(void);

/* memreport.c: the "mm-picture:" boot-log lines for tools/memory-svg.py
 * (format in memreport.c).  when: "boot" or "end". */
void memreport_print_phys(const struct mm_boot_params *p, const struct mm_init_report *r);
void memreport_print_buddy(const char *when);

/* QEMU isa-debug-exit: QEMU exits with status (code << 1) | 1. */
#define QEMU_EXIT_PORT  0xf4
#define QEMU_EXIT_PASS  0x10    /* status 33 */
#define QEMU_EXIT_FAIL  0x11    /* status 35: a test failed */
#define QEMU_EXIT_PANIC 0x12    /* status 37: panic or unexpected exception */
_Noreturn void qemu_exit(uint8_t code);

/* cpu.c: GDT selectors (see the layout there) and CPU protection features. */
#define GDT_KERNEL_CS 0x08
#define GDT_KERNEL_DS 0x10
#define GDT_USER_DS   (0x18 | 3)
#define GDT_USER_CS   (0x20 | 3)
#define GDT_TSS       0x28
bool cpu_has_smep(void);      /* CPUID.(7,0):EBX[7]; percpu_setup turned CR4.SMEP on */
bool cpu_has_smap(void);      /* CPUID.(7,0):EBX[20]; percpu_setup turned CR4.SMAP on */

/* trap.c */
void idt_init(void);
void idt_load(void);

/* lib.c */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

/* linker.ld */
extern char __kernel_phys_start[], __kernel_phys_end[];
extern char __text_start[], __text_end[], __rodata_start[], __rodata_end[];
extern char __data_start[], __data_end[], __bss_start[], __bss_end[];

/* Where linker.ld links the image: va = pa + KERNEL_VMA. */
#define KERNEL_VMA MM_KERNEL_IMAGE_BASE

#endif
