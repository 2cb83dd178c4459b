/*
 * gateway/auth/ratelimit.h — per-organisation request-rate limits (prefix rl_).
 *
 * A token bucket per organisation: `rate` tokens per second up to `burst`;
 * a request takes one token or is refused with the seconds until the next
 * token (for Retry-After). Thread-safe (one mutex; the critical section is
 * a few arithmetic operations). Organisations beyond the table's capacity
 * (rate_limit_slots in gateway/util/limits.h), and keys longer than
 * rate_limit_key_max bytes, share one overflow bucket rather than going
 * unlimited (a long key is never cut to fit, which would make it share the
 * bucket of another key that starts the same).
 */
#ifndef GATEWAY_RATELIMIT_H
#define GATEWAY_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct rl_limiter rl_limiter;

/* rate 0 = no limit. */
rl_limiter *rl_new(double rate_per_second, double burst);
void rl_free(rl_limiter *l);

/* Take a token for `key` at time now_ms; false with *retry_after_s (>= 1) when none is left. */
bool rl_take(rl_limiter *l, const char *key, int64_t now_ms, unsigned *retry_after_s);

#endif
