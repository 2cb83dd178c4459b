/*
 * tests/test_ratelimit.c — token buckets per organisation, on a pinned clock.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "gateway/auth/ratelimit.h"
#include "gateway/util/limits.h"

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

/* Keys longer than a slot share the overflow bucket; they are never cut into another key's bucket. */
Test(ratelimit, long_keys_share_the_overflow_bucket_not_a_prefix)
{
    rl_limiter *l = rl_new(1, 1);
    unsigned retry = 0;
    const char *prefix = "0123456789012345678901234567890"; /* rate_limit_key_max bytes: a slot of its own */
    cr_assert_eq(strlen(prefix), (size_t)LIM(rate_limit_key_max));
    cr_expect(rl_take(l, prefix, 0, &retry));
    cr_expect_not(rl_take(l, prefix, 0, &retry), "its one token is spent");
    /* the same first 31 bytes and more: not the prefix's bucket (cut, it would have been) */
    cr_expect(rl_take(l, "0123456789012345678901234567890-a", 0, &retry), "the overflow bucket, still full");
    /* every over-long key draws from that one shared bucket, limited, never unlimited */
    cr_expect_not(rl_take(l, "0123456789012345678901234567890-b", 0, &retry));
    cr_expect_eq(retry, 1);
    rl_free(l);
}
