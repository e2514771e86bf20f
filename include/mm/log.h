/*
 * mm/log.h - formatted output and panics for mm/, on top of the platform
 * console hook.  The formatter (mm_vsnprintf) is exported so a kernel can
 * build its own printk on it.
 *
 * Formats: %d %i %u %x %X %o %p %s %c %%, flags '-' '0' '#' (0x prefix) and width, and the
 * length modifiers l, ll, z.  %p prints 0x followed by 16 hex digits.
 *
 * Convention in mm/: a 64-bit value is printed with %lu, %lx or %#lx and
 * a cast to unsigned long (the same width on x86_64), never with %llu.
 */
#ifndef MM_LOG_H
#define MM_LOG_H

#include <stdarg.h>
#include <mm/types.h>

int mm_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int mm_snprintf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Print to the console via mm_platform_puts (lines up to 256 bytes). */
void mm_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Format a byte count for people: the largest of GiB, MiB and KiB that
 * divides it exactly ("2 MiB", "639 KiB"); otherwise the largest unit in
 * which it is at least 10, rounded down and marked with '~' ("~2047 MiB");
 * bytes below 10 KiB that are not whole KiB print as "1023 B".  With
 * compact, the unit is one letter and there is no space ("2M", "12K",
 * "~2047M", "1023B").  Returns what mm_snprintf returns.
 */
int mm_format_size(char *buf, size_t len, uint64_t bytes, bool compact);

/* Broken internal invariant: format the message and call the platform panic. */
_Noreturn void mm_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Panic naming the function and the condition when cond is TRUE (like
 * Linux's BUG_ON): MM_BUG_ON(count > max) stops when count exceeds max. */
#define MM_BUG_ON(cond)                                                       \
    do {                                                                      \
        if (__builtin_expect(!!(cond), 0))                                    \
            mm_panic("%s: invariant broken: %s (%s:%d)", __func__, #cond,     \
                     __FILE__, __LINE__);                                     \
    } while (0)

#endif
