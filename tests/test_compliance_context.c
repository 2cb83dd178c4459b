/*
 * tests/test_compliance_context.c — the context gathered for compliance checks over a source
 * (gateway/rest/rest_compliance_context.h), here an in-memory one: batches gathered with a cache
 * of what was read, and what the sets of one batch may rely on while the next is gathered.
 */
#include "gateway/rest/rest_compliance_context.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An in-memory source: every Goal exists ({"resourceType":"Goal","id":<id>}); no search finds anything. */
typedef struct goals {
    size_t reads;
} goals;

static int goal_read(void *self, const char *type, const char *id, char **json, size_t *len, char *msg, size_t msglen)
{
    (void)msg, (void)msglen;
    goals *g = self;
    if (strcmp(type, "Goal"))
        return 404;
    g->reads++;
    char text[200];
    int n = snprintf(text, sizeof text, "{\"resourceType\":\"Goal\",\"id\":\"%s\"}", id);
    *json = strdup(text);
    *len = (size_t)n;
    return *json ? 0 : 503;
}

static int no_search(void *self, const char *type, const char *param, const char *ref, cx_add_fn add, void *arg,
                     char *msg, size_t msglen)
{
    (void)self, (void)type, (void)param, (void)ref, (void)add, (void)arg, (void)msg, (void)msglen;
    return 0;
}

#define PLANS 256 /* a pull's batch */
#define GOALS 70  /* each plan's own: a batch reads 17,920 of them, past twice the cache's bound */

/* Plan p of batch b: a CarePlan referring to GOALS Goals of its own. */
static char *plan_text(int b, int p)
{
    size_t cap = 200 + GOALS * 48, n = 0;
    char *t = malloc(cap);
    n += (size_t)snprintf(t + n, cap - n, "{\"resourceType\":\"CarePlan\",\"id\":\"b%d-p%d\",\"goal\":[", b, p);
    for (int g = 0; g < GOALS; g++)
        n += (size_t)snprintf(t + n, cap - n, "%s{\"reference\":\"Goal/b%d-p%d-g%d\"}", g ? "," : "", b, p, g);
    snprintf(t + n, cap - n, "]}");
    return t;
}

/* Gather batch b's plans into sets (PLANS of them) with the cache. */
static void gather_batch(const cx_source *src, cx_cache *cache, int b, cx_set *sets)
{
    char *texts[PLANS];
    size_t lens[PLANS];
    for (int p = 0; p < PLANS; p++)
        texts[p] = plan_text(b, p), lens[p] = strlen(texts[p]);
    char msg[CX_MESSAGE_MAX];
    cr_assert_eq(cx_gather_many(src, cache, "CarePlan", (const char *const *)texts, lens, PLANS, NULL, NULL, sets, msg,
                                sizeof msg),
                 0, "%s", msg);
    for (int p = 0; p < PLANS; p++)
        free(texts[p]);
}

/* Every set of batch b holds its plan and its Goals, each text what the source gave. */
static void expect_batch(const cx_set *sets, int b)
{
    for (int p = 0; p < PLANS; p++) {
        cr_assert_eq(sets[p].count, 1 + GOALS, "batch %d, plan %d: %zu resources", b, p, sets[p].count);
        for (size_t k = 1; k < sets[p].count; k++) {
            char want[120];
            snprintf(want, sizeof want, "{\"resourceType\":\"Goal\",\"id\":\"%s\"}", sets[p].key[k] + 5);
            cr_assert_eq(sets[p].len[k], strlen(want));
            cr_assert(!memcmp(sets[p].json[k], want, sets[p].len[k]), "batch %d, plan %d, %s", b, p, sets[p].key[k]);
        }
    }
}

/*
 * A pull checks one batch on a thread while it gathers the next with the same cache: the first batch's sets
 * (which borrow the cache's texts) must stay whole through the next gathering, even when the cache has grown
 * far past its bound. Under ASan, a text the cache let go while a set still pointed at it fails here.
 */
Test(context_cache, a_batch_stays_whole_while_the_next_is_gathered)
{
    goals g = {0};
    cx_source src = {.read = goal_read, .search = no_search, .self = &g};
    cx_cache *cache = cx_cache_new();
    cr_assert_not_null(cache);
    static cx_set first[PLANS], second[PLANS], third[PLANS];
    gather_batch(&src, cache, 1, first);
    cr_expect_eq(g.reads, (size_t)PLANS * GOALS);
    gather_batch(&src, cache, 2, second); /* the cache holds 17,920 of the first batch's Goals as this starts */
    expect_batch(first, 1);
    expect_batch(second, 2);
    for (int p = 0; p < PLANS; p++)
        cx_set_free(&first[p]);
    gather_batch(&src, cache, 3, third); /* the first batch's Goals may go now */
    expect_batch(second, 2);
    expect_batch(third, 3);
    for (int p = 0; p < PLANS; p++) {
        cx_set_free(&second[p]);
        cx_set_free(&third[p]);
    }
    cx_cache_free(cache);
}

/* What a batch read is read once: the next batch that refers to it again finds it in the cache. */
Test(context_cache, the_next_batch_reads_what_it_shares_from_the_cache)
{
    goals g = {0};
    cx_source src = {.read = goal_read, .search = no_search, .self = &g};
    cx_cache *cache = cx_cache_new();
    static cx_set sets[PLANS];
    gather_batch(&src, cache, 1, sets);
    for (int p = 0; p < PLANS; p++)
        cx_set_free(&sets[p]);
    size_t reads = g.reads;
    gather_batch(&src, cache, 1, sets); /* the same plans again */
    cr_expect_eq(g.reads, reads, "%zu Goals read again", g.reads - reads);
    expect_batch(sets, 1);
    for (int p = 0; p < PLANS; p++)
        cx_set_free(&sets[p]);
    cx_cache_free(cache);
}
