/*
 * inject_suite.c - only built with INJECT=fail: a case that fails on
 * purpose, to check by hand that `make test` reports failing cases.
 */
#include "ktest.h"

#if defined(KTEST_INJECT_fail)
static void case_injected_failure(struct ktest *t)
{
    KEXPECT_EQ(t, 1 + 1, 3);
}

KTEST_SUITE(inject_suite, "inject", KTEST_CASE(case_injected_failure));
#endif
