/*
 * tests/embed/embed.h - what the files of the embedding example share.
 *
 * The example is a second, self-contained kernel: entry.asm (boot stub),
 * linker.ld, console.c (serial port, QEMU exit), platform.c (the six
 * mm_platform_* hooks), libc.c (mem* functions), one of the two memory
 * set-ups (setup_mm_init.c: the one-call mm_init; setup_own_tables.c:
 * keep the boot stub's page tables and start only the allocators), and
 * main.c (exercises frames, mappings and ioremap).  It uses nothing from kernel/
 * or boot/; from the library only <mm/...> headers and build/libmm.a.
 */
#ifndef EMBED_H
#define EMBED_H

#include <mm/buddy.h>
#include <mm/mmio.h>
#include <mm/types.h>

#define KERNEL_VMA UINT64_C(0xffffffff80000000)

/* Linker-script symbols (linker.ld). */
extern char __image_pa_start[], __image_pa_end[];
extern char __text_start[], __text_end[];
extern char __rodata_start[], __rodata_end[];
extern char __data_start[], __data_end[];

/* Sizes and flags of the image's sections (main.c): text R+X, rodata R,
 * data+bss with data_flags (PTE_KERNEL_RW, unless a variant breaks W^X);
 * image bounds and va offset filled in too. */
#include <mm/boot_params.h>
void embed_image_params(struct mm_boot_params *p, uint64_t data_flags);

/* QEMU isa-debug-exit codes; QEMU's exit status is (code << 1) | 1. */
#define EMBED_EXIT_PASS  0x10   /* status 33 */
#define EMBED_EXIT_FAIL  0x11   /* status 35: a check failed */
#define EMBED_EXIT_PANIC 0x12   /* status 37: panic or CPU exception */

/* console.c */
void serial_init(void);
void serial_puts(const char *s);
_Noreturn void qemu_exit(uint8_t code);
void pic_mask_all(void);        /* mask both 8259s: no IRQ reaches the CPU */

/* What a memory set-up hands to the checks in main.c. */
struct embed_mm {
    const char *how;            /* name of the set-up, for the log */
    struct buddy *buddy;        /* the frame allocator */
    struct mmio_pool *mmio;     /* the pool behind mm_ioremap */
    const struct mm_boot_params *params;   /* the image as the table maps it */
};

/* Bring up the memory subsystem from the multiboot2 information. */
void embed_mm_setup(uint64_t mbi_pa, struct embed_mm *out);

#endif
