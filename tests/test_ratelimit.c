/*
 * tests/test_ratelimit.c — token buckets per organisation, on a pinned clock.
 */
#include <criterion/criterion.h>

#include "gateway/auth/ratelimit.h"

Test(ratelimit, burst_then_rate)
{
    rl_limiter *l = rl_new(10, 5);
    unsigned retry = 0;
    for (int i = 0; i < 5; i++)
        cr_expect(rl_take(l, "90000101", 1000, &retry), "burst token %d", i);
    cr_expect_not(rl_take(l, "90000101", 1000, &retry));
    cr_expect_eq(retry, 1);
    /* another organisation has its own bucket */
    cr_expect(rl_take(l, "90000301", 1000, &retry));
    /* 100 ms at 10/s gives one token back */
    cr_expect(rl_take(l, "90000101", 1100, &retry));
    cr_expect_not(rl_take(l, "90000101", 1100, &retry));
    /* a long pause refills to the burst, not beyond */
    for (int i = 0; i < 5; i++)
        cr_expect(rl_take(l, "90000101", 60000, &retry));
    cr_expect_not(rl_take(l, "90000101", 60000, &retry));
    rl_free(l);
}

Test(ratelimit, slow_rate_retry_after)
{
    rl_limiter *l = rl_new(0.1, 1); /* one request per 10 s */
    unsigned retry = 0;
    cr_expect(rl_take(l, "a", 0, &retry));
    cr_expect_not(rl_take(l, "a", 0, &retry));
    cr_expect_eq(retry, 10);
    rl_free(l);
    l = rl_new(0, 0);
    for (int i = 0; i < 1000; i++)
        cr_expect(rl_take(l, "a", 0, &retry), "rate 0 means no limit");
    rl_free(l);
}
