/* test_log.c - the mm formatter used by every log line and panic message. */
#include "harness.h"
#include <mm/log.h>

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
}

static void test_truncation(void)
{
    char buf[8];
    int n = mm_snprintf(buf, sizeof buf, "%s", "0123456789");
    CHECK_EQ(n, 10);
    CHECK(strcmp(buf, "0123456") == 0);
    CHECK_EQ(mm_snprintf(NULL, 0, "%d", 12345), 5);
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
    RUN(test_panic_message);
    return harness_finish();
}
