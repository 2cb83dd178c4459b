/*
 * gateway/relay/notify.c — the relay's workers: due notifications from the
 * store, one attempt each, the outcome back into the store (see notify.h).
 *
 * A worker claims, under the relay's lock, the oldest pending notification
 * of a receiver that no other worker is serving and whose next attempt is
 * due; marks the receiver in flight; lets go of the lock for the attempt;
 * records the outcome (a commit) and only then frees the receiver, so the
 * next claim of that receiver sees its next notification. With nothing due
 * it sleeps until the soonest next attempt, at most poll_ms, or rly_wake.
 */
#include "gateway/relay/notify.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>

#include "fhir/json_write.h"

#define STATUS_PROFILE \
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"
#define NOTIFICATION_PROFILE \
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4"

/* Heads read per claim: every worker's in-flight receiver plus enough due ones behind them. */
#define HEADS_PER_CLAIM 64

struct rly_relay {
    rly_config c;
    pthread_t *threads;
    unsigned started;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* a wake, a receiver freed, or stopping (CLOCK_MONOTONIC) */
    bool stop;
    uint64_t wakes;                   /* rly_wake calls; a worker that saw a change looks again at once */
    char (*inflight)[ST_URA_MAX + 1]; /* receivers being served, one per worker at most */
    size_t inflight_count;
    _Atomic uint64_t rng;
    _Atomic uint64_t attempts, delivered, failed_attempts, dead;
    mx_metric *by_state[ST_NOTIFY_STATES];
    mx_metric *attempts_ok, *attempts_failed, *dead_total;
};

static int64_t real_clock_ms(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_ms(const rly_relay *r)
{
    return r->c.clock_ms(r->c.clock_arg);
}

/* splitmix64: jitter needs spread, not secrecy */
static uint64_t next_random(rly_relay *r)
{
    uint64_t z = atomic_fetch_add(&r->rng, 0x9E3779B97F4A7C15ull) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int64_t rly_backoff_ms(unsigned base_ms, unsigned max_ms, unsigned attempts, uint64_t random)
{
    int64_t delay = base_ms ? base_ms : 1;
    for (unsigned i = 1; i < attempts && delay < (int64_t)max_ms; i++)
        delay *= 2;
    if (delay > (int64_t)max_ms)
        delay = max_ms;
    int64_t half = delay / 2;
    return delay - half + (half ? (int64_t)(random % (uint64_t)(half + 1)) : 0);
}

/* ---- the notification Bundle ---- */

static void new_uuid(char out[37])
{
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, out);
}

static void put_parameter(fj_buf *b, const char *name, const char *value_member, const char *value)
{
    fj_buf_printf(b, "{\"name\":\"%s\",\"%s\":", name, value_member);
    fj_buf_string(b, value, strlen(value));
    fj_buf_puts(b, "}");
}

static void put_reference_parameter(fj_buf *b, const char *name, const char *reference)
{
    fj_buf_printf(b, "{\"name\":\"%s\",\"valueReference\":{\"reference\":", name);
    fj_buf_string(b, reference, strlen(reference));
    fj_buf_puts(b, "}}");
}

/* The notification-event parameter of n (focus: its URL). */
static void put_event(fj_buf *b, const char *focus, const st_notification *n)
{
    char number[24], when[ST_INSTANT_LEN];
    snprintf(number, sizeof number, "%lld", (long long)n->event_number);
    st_format_instant(n->created_ms, when);
    fj_buf_puts(b, "{\"name\":\"notification-event\",\"part\":[");
    put_parameter(b, "event-number", "valueString", number);
    fj_buf_puts(b, ",");
    put_parameter(b, "timestamp", "valueInstant", when);
    fj_buf_puts(b, ",");
    put_reference_parameter(b, "focus", focus);
    fj_buf_puts(b, "]}");
}

/* The entry that says what happened to n's focus (focus: its URL): POST Task / 201 when created, else PUT. */
static void put_focus_entry(fj_buf *b, const char *focus, const st_notification *n)
{
    fj_buf_puts(b, "{\"fullUrl\":");
    fj_buf_string(b, focus, strlen(focus));
    bool created = n->focus_version == 1;
    fj_buf_printf(b, ",\"request\":{\"method\":\"%s\",\"url\":\"%s%s%s\"},\"response\":{\"status\":\"%s\"}}",
                  created ? "POST" : "PUT", n->focus_type, created ? "" : "/", created ? "" : n->focus_id,
                  created ? "201" : "200");
}

/* The SubscriptionStatus (as an R4 Parameters) of n: its receiver's virtual subscription and the one event. */
static void put_status(fj_buf *b, const char *id, const char *subscription, const char *focus, const st_notification *n)
{
    char number[24];
    snprintf(number, sizeof number, "%lld", (long long)n->event_number);
    fj_buf_printf(b,
                  "{\"resourceType\":\"Parameters\",\"id\":\"%s\",\"meta\":{\"profile\":[\"" STATUS_PROFILE
                  "\"]},\"parameter\":[",
                  id);
    put_reference_parameter(b, "subscription", subscription);
    fj_buf_puts(b, ",");
    put_parameter(b, "topic", "valueCanonical", RLY_TOPIC);
    fj_buf_puts(b, ",");
    put_parameter(b, "status", "valueCode", "active");
    fj_buf_puts(b, ",");
    put_parameter(b, "type", "valueCode", "event-notification");
    fj_buf_puts(b, ",");
    /* every event of this receiver is numbered, so the count since the start is the number itself */
    put_parameter(b, "events-since-subscription-start", "valueString", number);
    fj_buf_puts(b, ",");
    put_event(b, focus, n);
    fj_buf_puts(b, "]}");
}

char *rly_bundle(const char *base_url, const st_notification *n, int64_t now_ms, size_t *len)
{
    char bundle_id[37], status_id[37], when[ST_INSTANT_LEN];
    new_uuid(bundle_id);
    new_uuid(status_id);
    st_format_instant(now_ms, when);
    fj_buf sub = {0}, focus = {0};
    fj_buf_printf(&sub, "%s/Subscription/handover-%s", base_url, n->receiver);
    fj_buf_printf(&focus, "%s/%s/%s", base_url, n->focus_type, n->focus_id);
    const char *subscription = sub.data ? sub.data : "", *focus_url = focus.data ? focus.data : "";

    fj_buf b = {0};
    fj_buf_printf(&b,
                  "{\"resourceType\":\"Bundle\",\"id\":\"%s\",\"meta\":{\"profile\":[\"" NOTIFICATION_PROFILE
                  "\"]},\"type\":\"history\",\"timestamp\":\"%s\",\"entry\":[{\"fullUrl\":\"urn:uuid:%s\","
                  "\"resource\":",
                  bundle_id, when, status_id);
    put_status(&b, status_id, subscription, focus_url, n);
    fj_buf_puts(&b, ",\"request\":{\"method\":\"GET\",\"url\":");
    fj_buf_printf(&sub, "/$status");
    fj_buf_string(&b, sub.data ? sub.data : "", sub.len);
    /* id-only: the focus is named, its content stays on the gateway (no personal data travels) */
    fj_buf_puts(&b, "},\"response\":{\"status\":\"200\"}},");
    put_focus_entry(&b, focus_url, n);
    fj_buf_puts(&b, "]}");
    fj_buf_free(&sub);
    fj_buf_free(&focus);
    return fj_buf_take(&b, len);
}

/* ---- the same parts for $status and $events (rest_subscription.c) ---- */

void rly_put_status(fj_buf *b, const char *base_url, const char *id, const rly_status *st)
{
    fj_buf sub = {0}, focus = {0};
    fj_buf_printf(&sub, "%s/Subscription/handover-%s", base_url, st->receiver);
    char since[24];
    snprintf(since, sizeof since, "%lld", (long long)st->events_since_start);
    fj_buf_printf(b,
                  "{\"resourceType\":\"Parameters\",\"id\":\"%s\",\"meta\":{\"profile\":[\"" STATUS_PROFILE
                  "\"]},\"parameter\":[",
                  id);
    put_reference_parameter(b, "subscription", sub.data ? sub.data : "");
    fj_buf_puts(b, ",");
    put_parameter(b, "topic", "valueCanonical", RLY_TOPIC);
    fj_buf_puts(b, ",");
    put_parameter(b, "status", "valueCode", st->status);
    fj_buf_puts(b, ",");
    put_parameter(b, "type", "valueCode", st->type);
    fj_buf_puts(b, ",");
    put_parameter(b, "events-since-subscription-start", "valueString", since);
    for (size_t i = 0; i < st->event_count; i++) {
        focus.len = 0;
        fj_buf_printf(&focus, "%s/%s/%s", base_url, st->events[i].focus_type, st->events[i].focus_id);
        fj_buf_puts(b, ",");
        put_event(b, focus.data ? focus.data : "", &st->events[i]);
    }
    fj_buf_puts(b, "]}");
    fj_buf_free(&sub);
    fj_buf_free(&focus);
}

void rly_put_focus_entries(fj_buf *b, const char *base_url, const st_notification *events, size_t n)
{
    fj_buf focus = {0};
    for (size_t i = 0; i < n; i++) {
        focus.len = 0;
        fj_buf_printf(&focus, "%s/%s/%s", base_url, events[i].focus_type, events[i].focus_id);
        fj_buf_puts(b, ",");
        put_focus_entry(b, focus.data ? focus.data : "", &events[i]);
    }
    fj_buf_free(&focus);
}

/* ---- one attempt ---- */

/* POST the notification to the receiver's endpoint; true on 2xx. */
static bool attempt(rly_relay *r, const st_notification *n, rly_answer *answer)
{
    memset(answer, 0, sizeof *answer);
    rly_endpoint ep;
    st_error err = {{0}};
    st_status s = rly_endpoint_of(r->c.store, n->receiver, &ep, &err);
    if (s != ST_OK) {
        snprintf(answer->error, sizeof answer->error, "%s",
                 s == ST_NOT_FOUND ? "the receiver has no active notification Endpoint" : err.message);
        return false;
    }
    rly_post post = {0};
    char *body = NULL, url[RLY_URL_MAX + ST_ID_MAX + 2];
    if (ep.payload == RLY_EMPTY_POST) {
        size_t n_len = strlen(ep.address);
        snprintf(url, sizeof url, "%.*s/%s", (int)(n_len && ep.address[n_len - 1] == '/' ? n_len - 1 : n_len),
                 ep.address, n->focus_id);
        post.url = url;
    } else {
        body = rly_bundle(r->c.base_url, n, now_ms(r), &post.len);
        if (!body) {
            snprintf(answer->error, sizeof answer->error, "out of memory");
            return false;
        }
        post.url = ep.address;
        post.body = body;
        post.content_type = "application/fhir+json";
    }
    bool ok = r->c.deliver(r->c.deliver_arg, &post, answer);
    free(body);
    return ok;
}

/* ---- recording the outcome ---- */

static void count_outcome(rly_relay *r, bool delivered, bool dead)
{
    atomic_fetch_add(&r->attempts, 1);
    atomic_fetch_add(delivered ? &r->delivered : &r->failed_attempts, 1);
    mx_inc(delivered ? r->attempts_ok : r->attempts_failed);
    if (dead) {
        atomic_fetch_add(&r->dead, 1);
        mx_inc(r->dead_total);
    }
}

/* What becomes of n after this attempt: delivered, dead past the horizon, or the next try (never past it). */
static void next_state(rly_relay *r, const st_notification *n, bool ok, int64_t now, st_notify *u)
{
    u->seq = n->seq;
    if (ok) {
        u->state = ST_NOTIFY_DELIVERED;
        return;
    }
    int64_t horizon = n->created_ms + (int64_t)r->c.horizon_ms;
    if (now >= horizon) {
        u->state = ST_NOTIFY_DEAD;
        return;
    }
    int64_t next = now + rly_backoff_ms(r->c.base_delay_ms, r->c.max_delay_ms, n->attempts + 1, next_random(r));
    u->state = ST_NOTIFY_PENDING;
    u->next_attempt_ms = next < horizon ? next : horizon; /* one last attempt at the horizon */
}

static void record(rly_relay *r, const st_notification *n, bool ok, const rly_answer *answer)
{
    st_notify u = {0};
    next_state(r, n, ok, now_ms(r), &u);
    u.http_status = answer->status;
    u.error = ok ? NULL : answer->error;
    st_op op = {.kind = ST_OP_NOTIFY_UPDATE, .notify = &u};
    bool dead = u.state == ST_NOTIFY_DEAD;
    count_outcome(r, ok, dead);
    /* the dead letter and its mark on the Task commit together when on_dead can; else the queue alone.
     * A failed commit leaves the notification pending as it was: it is tried again (at least once). */
    if (!(dead && r->c.on_dead && r->c.on_dead(r->c.on_dead_arg, n, &op)))
        st_submit_wait(r->c.store, &op, 1, NULL);
}

/* The gauges per state, from the store (cheap: one grouped count). */
static void refresh_gauges(rly_relay *r)
{
    if (!r->by_state[0])
        return;
    int64_t counts[ST_NOTIFY_STATES];
    st_error err;
    if (st_notify_counts(r->c.store, counts, &err) == ST_OK)
        for (int i = 0; i < ST_NOTIFY_STATES; i++)
            mx_gauge_set(r->by_state[i], counts[i]);
}

/* ---- claiming work ---- */

static bool in_flight(const rly_relay *r, const char *ura)
{
    for (size_t i = 0; i < r->inflight_count; i++)
        if (!strcmp(r->inflight[i], ura))
            return true;
    return false;
}

static void release_receiver(rly_relay *r, const char *ura)
{
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->inflight_count; i++)
        if (!strcmp(r->inflight[i], ura)) {
            memcpy(r->inflight[i], r->inflight[--r->inflight_count], sizeof *r->inflight);
            break;
        }
    r->wakes++; /* its next notification may be due at once */
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
}

/*
 * Under the lock: a due head of a receiver nobody serves, into *out (its
 * receiver marked in flight); else false with *wait_ms until the soonest
 * next attempt (at most poll_ms).
 */
static bool claim(rly_relay *r, st_notification *out, int64_t *wait_ms)
{
    *wait_ms = r->c.poll_ms;
    st_notification *rows = NULL;
    size_t count = 0;
    st_error err;
    st_notify_query q = {.due_heads = true, .count = HEADS_PER_CLAIM + r->c.workers};
    if (st_notify_list(r->c.store, &q, &rows, &count, &err) != ST_OK)
        return false; /* the store is closing or failing: look again after the poll */
    int64_t now = now_ms(r);
    bool found = false;
    for (size_t i = 0; i < count && !found; i++) {
        if (in_flight(r, rows[i].receiver))
            continue;
        if (rows[i].next_attempt_ms > now) {
            if (rows[i].next_attempt_ms - now < *wait_ms)
                *wait_ms = rows[i].next_attempt_ms - now;
            continue;
        }
        *out = rows[i];
        memcpy(r->inflight[r->inflight_count++], out->receiver, sizeof *r->inflight);
        found = true;
    }
    free(rows);
    return found;
}

static void deadline_after(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* The next notification to attempt, waiting for one; false when stopping. */
static bool next_work(rly_relay *r, st_notification *out)
{
    pthread_mutex_lock(&r->lock);
    bool found = false;
    while (!r->stop && !found) {
        uint64_t wakes = r->wakes;
        int64_t wait_ms;
        found = claim(r, out, &wait_ms);
        if (found || r->stop || r->wakes != wakes)
            continue;
        struct timespec deadline;
        deadline_after(&deadline, wait_ms > 0 ? wait_ms : 1);
        while (!r->stop && r->wakes == wakes && pthread_cond_timedwait(&r->changed, &r->lock, &deadline) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&r->lock);
    return found;
}

static void *worker_main(void *arg)
{
    rly_relay *r = arg;
    st_notification n;
    while (next_work(r, &n)) {
        rly_answer answer;
        bool ok = attempt(r, &n, &answer);
        record(r, &n, ok, &answer);
        refresh_gauges(r);
        release_receiver(r, n.receiver);
    }
    return NULL;
}

/* ---- starting and stopping ---- */

static void register_metrics(rly_relay *r)
{
    mx_registry *reg = r->c.metrics;
    if (!reg)
        return;
    mx_family *states = mx_gauge(reg, "fhirgw_relay_notifications",
                                 "Handover notifications in the relay queue, by state (dead: given up after "
                                 "relay_horizon_ms; the Task carries businessStatus undelivered).",
                                 "state");
    static const char *const names[ST_NOTIFY_STATES] = {"pending", "delivered", "dead"};
    for (int i = 0; i < ST_NOTIFY_STATES; i++)
        r->by_state[i] = mx_series(states, (const char *[]){names[i]});
    mx_family *attempts = mx_counter(reg, "fhirgw_relay_attempts_total",
                                     "Delivery attempts of handover notifications, by outcome.", "outcome");
    r->attempts_ok = mx_series(attempts, (const char *[]){"delivered"});
    r->attempts_failed = mx_series(attempts, (const char *[]){"failed"});
    r->dead_total = mx_series(mx_counter(reg, "fhirgw_relay_dead_letters_total",
                                         "Handover notifications given up since the gateway started.", NULL),
                              NULL);
}

static void apply_defaults(rly_config *c)
{
    if (!c->clock_ms)
        c->clock_ms = real_clock_ms;
    if (!c->workers)
        c->workers = LIM(relay_workers);
    if (!c->base_delay_ms)
        c->base_delay_ms = LIM(relay_base_delay_ms);
    if (!c->max_delay_ms)
        c->max_delay_ms = LIM(relay_max_delay_ms);
    if (c->max_delay_ms < c->base_delay_ms)
        c->max_delay_ms = c->base_delay_ms;
    if (!c->horizon_ms)
        c->horizon_ms = LIM(relay_horizon_ms);
    if (!c->poll_ms)
        c->poll_ms = LIM(relay_poll_ms);
}

static bool init_sync(rly_relay *r)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return false;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* waits must not jump with the wall clock */
    bool ok = pthread_mutex_init(&r->lock, NULL) == 0 && pthread_cond_init(&r->changed, &attr) == 0;
    pthread_condattr_destroy(&attr);
    return ok;
}

rly_relay *rly_start(const rly_config *config, char *err, size_t errlen)
{
    if (!config || !config->store || !config->deliver || !config->base_url) {
        snprintf(err, errlen, "the relay needs a store, a deliver function and the base URL");
        return NULL;
    }
    rly_relay *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->c = *config;
    apply_defaults(&r->c);
    r->threads = calloc(r->c.workers, sizeof *r->threads);
    r->inflight = calloc(r->c.workers, sizeof *r->inflight);
    if (!r->threads || !r->inflight || !init_sync(r)) {
        snprintf(err, errlen, "out of memory");
        free(r->threads);
        free(r->inflight);
        free(r);
        return NULL;
    }
    atomic_store(&r->rng, (uint64_t)real_clock_ms(NULL) ^ (uint64_t)(uintptr_t)r);
    register_metrics(r);
    refresh_gauges(r);
    for (; r->started < r->c.workers; r->started++)
        if (pthread_create(&r->threads[r->started], NULL, worker_main, r) != 0)
            break;
    if (!r->started) {
        snprintf(err, errlen, "cannot start the relay's workers");
        rly_stop(r);
        return NULL;
    }
    return r;
}

void rly_wake(rly_relay *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->wakes++;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
}

void rly_stop(rly_relay *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
    for (unsigned i = 0; i < r->started; i++)
        pthread_join(r->threads[i], NULL);
    pthread_cond_destroy(&r->changed);
    pthread_mutex_destroy(&r->lock);
    free(r->threads);
    free(r->inflight);
    free(r);
}

void rly_counters_get(rly_relay *r, rly_counters *out)
{
    out->attempts = atomic_load(&r->attempts);
    out->delivered = atomic_load(&r->delivered);
    out->failed_attempts = atomic_load(&r->failed_attempts);
    out->dead = atomic_load(&r->dead);
}
