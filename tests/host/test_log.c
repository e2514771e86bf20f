/* test_log.c - the mm formatter used by every log line and panic message. */
#include "harness.h"
#include <mm/log.h>

/* mm_snprintf without the format attribute, so that the tests can pass
 * what the compiler would reject: an unknown conversion, a lone '%'. */
static int raw_format(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = mm_vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

static void test_formats(void)
{
    char buf[128];
    mm_snprintf(buf, sizeof buf, "%d %u %x %X %5d|%-4d|%05d", -42, 42u, 0xbeefu, 0xbeefu, 7, 7, -7);
    CHECK(strcmp(buf, "-42 42 beef BEEF     7|7   |-0007") == 0);
    mm_snprintf(buf, sizeof buf, "%lx %llu %zu %p", 0xffff800000000000ul,
                18446744073709551615ull, (size_t)123, (void *)0x1000);
    CHECK(strcmp(buf, "ffff800000000000 18446744073709551615 123 0x0000000000001000") == 0);
    mm_snprintf(buf, sizeof buf, "[%s] [%6s] [%-6s] %c %%", "ab", "ab", "ab", 'z');
    CHECK(strcmp(buf, "[ab] [    ab] [ab    ] z %") == 0);
    mm_snprintf(buf, sizeof buf, "%#lx %#x", 0x1000ul, 0u);
    CHECK(strcmp(buf, "0x1000 0x0") == 0);
    mm_snprintf(buf, sizeof buf, "%ld", (long)INT64_MIN);
    CHECK(strcmp(buf, "-9223372036854775808") == 0);
    raw_format(buf, sizeof buf, "%o %s %q|%c|%", 8u, (const char *)NULL, 'x');
    CHECK(strcmp(buf, "10 (null) %q|x|") == 0);
}

static void test_truncation(void)
{
    char buf[8];
    int n = mm_snprintf(buf, sizeof buf, "%s", "0123456789");
    CHECK_EQ(n, 10);
    CHECK(strcmp(buf, "0123456") == 0);
    CHECK_EQ(mm_snprintf(NULL, 0, "%d", 12345), 5);
}

/* One size formatter for the map print, ptdump and summaries. */
static void test_format_size(void)
{
    static const struct { uint64_t bytes; const char *full, *compact; } cases[] = {
        { 0, "0 B", "0B" },
        { 1023, "1023 B", "1023B" },
        { 4096, "4 KiB", "4K" },
        { 639 * KiB, "639 KiB", "639K" },
        { 12 * KiB, "12 KiB", "12K" },
        { 2 * MiB, "2 MiB", "2M" },
        { 3 * GiB, "3 GiB", "3G" },
        { 2 * GiB - 1, "~2047 MiB", "~2047M" },
        { 10 * KiB + 5, "~10 KiB", "~10K" },
        { 64 * GiB + MiB, "65537 MiB", "65537M" },
        { UINT64_MAX, "~17179869183 GiB", "~17179869183G" },
    };
    char buf[32];
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mm_format_size(buf, sizeof buf, cases[i].bytes, false);
        if (strcmp(buf, cases[i].full) != 0)
            fprintf(stderr, "  %#lx: got '%s', want '%s'\n", (unsigned long)cases[i].bytes, buf,
                    cases[i].full);
        CHECK(strcmp(buf, cases[i].full) == 0);
        mm_format_size(buf, sizeof buf, cases[i].bytes, true);
        CHECK(strcmp(buf, cases[i].compact) == 0);
    }
}

static void test_panic_message(void)
{
    EXPECT_PANIC(mm_panic("fn: bad value %d", 5));
    CHECK(strcmp(harness_panic_msg, "fn: bad value 5") == 0);
}

int main(void)
{
    RUN(test_formats);
    RUN(test_truncation);
    RUN(test_format_size);
    RUN(test_panic_message);
    return harness_finish();
}
