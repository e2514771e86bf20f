/*
 * log.c - a small printf-style formatter and the mm_printf/mm_panic helpers.
 *
 * mm/ has no libc, so it formats text itself and hands finished lines to
 * mm_platform_puts().  The formatter writes at most size-1 characters and
 * always NUL-terminates (when size > 0); it returns the length the full
 * output would have had, like C's vsnprintf.  No locking: all state is on
 * the caller's stack.
 */
#include <mm/log.h>
#include <mm/platform.h>

struct out {
    char *buf;
    size_t size;
    size_t len;
};

static void out_char(struct out *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void out_pad(struct out *o, char c, int n)
{
    while (n-- > 0)
        out_char(o, c);
}

/* Emit digits of v in base (2..16) with width/zero/left-justify handling. */
static void out_number(struct out *o, uint64_t v, unsigned base, bool negative,
                       bool upper, int width, bool zero, bool left)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int n = 0;

    do {
        tmp[n++] = digits[v % base];
        v /= base;
    } while (v);

    int len = n + (negative ? 1 : 0);
    if (!left && !zero)
        out_pad(o, ' ', width - len);
    if (negative)
        out_char(o, '-');
    if (!left && zero)
        out_pad(o, '0', width - len);
    while (n)
        out_char(o, tmp[--n]);
    if (left)
        out_pad(o, ' ', width - len);
}

/* One conversion's flags, width and length modifier. */
struct spec {
    bool left, zero, alt;
    int width;
    int lng;                 /* 0 = int, 1 = long, 2 = long long / size_t */
};

/* Parse the flags, width and length after '%'; returns the conversion. */
static const char *parse_spec(const char *p, struct spec *sp)
{
    *sp = (struct spec){ 0 };
    for (;; p++) {
        if (*p == '-')
            sp->left = true;
        else if (*p == '#')
            sp->alt = true;
        else if (*p == '0')
            sp->zero = true;
        else
            break;
    }
    while (*p >= '0' && *p <= '9')
        sp->width = sp->width * 10 + (*p++ - '0');
    while (*p == 'l' || *p == 'z') {
        sp->lng += (*p == 'z') ? 2 : 1;
        p++;
    }
    return p;
}

static void out_string(struct out *o, const char *s, const struct spec *sp)
{
    if (!s)
        s = "(null)";
    int len = 0;
    while (s[len])
        len++;
    if (!sp->left)
        out_pad(o, ' ', sp->width - len);
    for (int i = 0; i < len; i++)
        out_char(o, s[i]);
    if (sp->left)
        out_pad(o, ' ', sp->width - len);
}

/* Emit conversion c, taking its argument from *ap. */
static void out_conversion(struct out *o, char c, const struct spec *sp, va_list *ap)
{
    switch (c) {
    case 'd':
    case 'i': {
        int64_t v = sp->lng ? va_arg(*ap, long long) : va_arg(*ap, int);
        uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        out_number(o, mag, 10, v < 0, false, sp->width, sp->zero, sp->left);
        break;
    }
    case 'u':
    case 'x':
    case 'X':
    case 'o': {
        uint64_t v = sp->lng ? va_arg(*ap, unsigned long long) : va_arg(*ap, unsigned);
        unsigned base = c == 'u' ? 10 : c == 'o' ? 8 : 16;
        if (sp->alt && base == 16) {
            out_char(o, '0');
            out_char(o, 'x');
        }
        out_number(o, v, base, false, c == 'X', sp->width, sp->zero, sp->left);
        break;
    }
    case 'p':
        out_char(o, '0');
        out_char(o, 'x');
        out_number(o, (uint64_t)(uintptr_t)va_arg(*ap, void *), 16, false, false, 16, true,
                   false);
        break;
    case 's':
        out_string(o, va_arg(*ap, const char *), sp);
        break;
    case 'c':
        out_char(o, (char)va_arg(*ap, int));
        break;
    case '%':
        out_char(o, '%');
        break;
    default:            /* unknown conversion: print it verbatim */
        out_char(o, '%');
        out_char(o, c);
        break;
    }
}

int mm_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct out o = { buf, size, 0 };
    va_list args;
    va_copy(args, ap);
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            out_char(&o, *p);
            continue;
        }
        struct spec sp;
        p = parse_spec(p + 1, &sp);
        if (*p == '\0')
            break;          /* lone '%' at the end: stop */
        out_conversion(&o, *p, &sp, &args);
    }
    va_end(args);
    if (size)
        buf[o.len < size ? o.len : size - 1] = '\0';
    return (int)o.len;
}

int mm_snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = mm_vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

void mm_printf(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    mm_vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    mm_platform_puts(line);
}

_Noreturn void mm_panic(const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    mm_vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    mm_platform_panic(msg);
}

const char *mm_strerror(int err)
{
    switch (err < 0 ? -err : err) {
    case 0:         return "success";
    case MM_EPERM:  return "operation not permitted";
    case MM_ENOENT: return "not mapped or not allocated";
    case MM_ENOMEM: return "out of memory";
    case MM_EFAULT: return "address outside managed range";
    case MM_EBUSY:  return "busy";
    case MM_EEXIST: return "already exists";
    case MM_ENODEV: return "no such device or feature";
    case MM_EINVAL: return "invalid argument";
    default:        return "unknown error";
    }
}

int mm_format_size(char *buf, size_t len, uint64_t bytes, bool compact)
{
    static const char *const names[2][4] = { { " B", " KiB", " MiB", " GiB" },
                                             { "B", "K", "M", "G" } };
    unsigned unit = bytes == 0 ? 0 : 3;
    while (unit > 0 && (bytes & ((UINT64_C(1) << (10 * unit)) - 1)) != 0)
        unit--;                              /* largest unit dividing exactly */
    bool exact = bytes == 0 || unit > 0;
    if (!exact) {
        unit = 3;
        while (unit > 0 && (bytes >> (10 * unit)) < 10)
            unit--;                          /* largest unit giving >= 10 */
        exact = unit == 0;
    }
    return mm_snprintf(buf, len, "%s%lu%s", exact ? "" : "~",
                       (unsigned long)(bytes >> (10 * unit)), names[compact][unit]);
}
