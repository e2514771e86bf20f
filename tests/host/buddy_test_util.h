/*
 * buddy_test_util.h - what the buddy's white-box host tests share: one
 * buddy instance B over the simulated memory, set up over a single area,
 * and the check that buddy_check panics with a given message.
 */
#ifndef BUDDY_TEST_UTIL_H
#define BUDDY_TEST_UTIL_H

#include "harness.h"
#include <mm/buddy.h>

static struct buddy B;

/* B over the one area [start, end) of simulated memory; exits if refused. */
static inline void init_area(uint64_t start, uint64_t end)
{
    struct mm_area_list l = { .count = 1 };
    l.area[0] = (struct mm_area){ PA(start), PA(end) };
    if (buddy_init(&B, &l) != 0) {
        fprintf(stderr, "init_area: buddy_init [%#lx, %#lx) failed\n", (unsigned long)start,
                (unsigned long)end);
        exit(2);
    }
}

/* buddy_check(&B) must panic with a message containing `what`. */
static inline void expect_check_panic(const char *what)
{
    harness_quiet = 1;
    EXPECT_PANIC(buddy_check(&B));
    harness_quiet = 0;
    CHECK(strstr(harness_panic_msg, what) != NULL);
    if (!strstr(harness_panic_msg, what))
        fprintf(stderr, "  panic was: %s\n", harness_panic_msg);
}

#endif
