/*
 * gateway/auth/ratelimit.c — token buckets per organisation (see ratelimit.h).
 */
#include "gateway/auth/ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/util/limits.h"

#define RL_SLOTS LIM(rate_limit_slots) /* open addressing; more organisations than this share the overflow bucket */
#define RL_KEY_MAX (LIM(rate_limit_key_max) + 1)

typedef struct bucket {
    char key[RL_KEY_MAX];
    double tokens;
    int64_t updated_ms;
} bucket;

struct rl_limiter {
    double rate, burst;
    pthread_mutex_t lock;
    bucket slots[RL_SLOTS];
    bucket overflow;
    bool overflow_used; /* its tokens start at the burst on first use (at whatever time that is) */
};

rl_limiter *rl_new(double rate, double burst)
{
    rl_limiter *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->rate = rate;
    l->burst = burst < 1 ? 1 : burst;
    pthread_mutex_init(&l->lock, NULL);
    return l;
}

void rl_free(rl_limiter *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->lock);
    free(l);
}

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* The bucket for key, claiming a free slot on first use. A key too long for a slot shares the overflow
 * bucket: cut to fit, it would share the bucket of every key with the same beginning. */
static bucket *find(rl_limiter *l, const char *key, int64_t now_ms)
{
    if (strlen(key) >= RL_KEY_MAX)
        return &l->overflow;
    uint32_t h = hash(key);
    for (uint32_t probe = 0; probe < 64; probe++) {
        bucket *b = &l->slots[(h + probe) % RL_SLOTS];
        if (!b->key[0]) {
            strcpy(b->key, key); /* it fits: checked above */
            b->tokens = l->burst;
            b->updated_ms = now_ms;
            return b;
        }
        if (!strcmp(b->key, key))
            return b;
    }
    return &l->overflow;
}

bool rl_take(rl_limiter *l, const char *key, int64_t now_ms, unsigned *retry_after_s)
{
    if (!l || l->rate <= 0)
        return true;
    pthread_mutex_lock(&l->lock);
    bucket *b = find(l, key, now_ms);
    if (b == &l->overflow && !l->overflow_used) {
        l->overflow_used = true;
        b->tokens = l->burst;
        b->updated_ms = now_ms;
    }
    double elapsed = (double)(now_ms - b->updated_ms) / 1000.0;
    if (elapsed > 0) {
        b->tokens = fmin(l->burst, b->tokens + elapsed * l->rate);
        b->updated_ms = now_ms;
    }
    bool ok = b->tokens >= 1.0;
    if (ok)
        b->tokens -= 1.0;
    else if (retry_after_s) {
        unsigned wait_s = (unsigned)ceil((1.0 - b->tokens) / l->rate);
        *retry_after_s = wait_s ? wait_s : 1;
    }
    pthread_mutex_unlock(&l->lock);
    return ok;
}
