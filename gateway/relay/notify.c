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
 *
 * Batches. The attempt carries, behind the claimed one, the receiver's next
 * pending notifications (up to relay_batch_max, in event-number order) in the same
 * Bundle, one notification-event each, as the Subscriptions Backport allows;
 * their outcomes commit together. So a receiver that gets many handovers
 * waits for one POST and one commit per batch, not per handover: while an
 * attempt and its commit are under way the next batch gathers. A failed
 * batch counts as an attempt of its head only (the rest wait behind it, as
 * without batches), and a head that failed before goes alone, as a probe:
 * a receiver back from an outage gets the backlog in batches once it answers.
 * The empty POST of eOverdracht names one Task, so it goes one at a time.
 *
 * Pipelining. Once a batch is answered 2xx, its delivered marks commit in
 * the background while the worker, still holding the receiver, posts the
 * batch of whatever was committed since (serve_receiver). A notification
 * thus waits for the POST in flight, not for it and a durable commit as
 * well. A crash before the marks commit sends them again: at least once, as
 * the receiver is told (it ignores event numbers it has seen).
 *
 * The gauges by state count the whole queue (one grouped scan), so they are
 * refreshed at most every GAUGE_REFRESH_MS while the relay is busy, and
 * whenever a worker finds nothing to do.
 */
#include "gateway/relay/notify.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fhir/json_write.h"
#include "gateway/util/random.h"
#include "gateway/util/thread_name.h"

#define STATUS_PROFILE \
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"
#define NOTIFICATION_PROFILE \
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4"

/* Heads read per claim: every worker's in-flight receiver plus enough due ones behind them. */
#define HEADS_PER_CLAIM 64
#define GAUGE_REFRESH_MS 1000 /* while busy */
#define SERVE_ROUNDS 50       /* batches to one receiver before it is released (others may be due) */
#define MARKS_IN_FLIGHT 2     /* commits of delivered marks under way behind the next POST, at most */
#define MARKS_POLL_MS 2       /* how often a worker waiting for new notifications looks whether its marks are in */

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
    bool gauges_stale;            /* outcomes recorded since the last refresh (under lock) */
    _Atomic int64_t gauges_at_ms; /* the last refresh (real time) */
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

static void put_event(fj_buf *b, const char *base_url, const st_notification *n)
{
    char number[24], when[ST_INSTANT_LEN];
    snprintf(number, sizeof number, "%lld", (long long)n->event_number);
    st_format_instant(n->created_ms, when);
    fj_buf focus = {0};
    fj_buf_printf(&focus, "%s/%s/%s", base_url, n->focus_type, n->focus_id);
    fj_buf_puts(b, "{\"name\":\"notification-event\",\"part\":[");
    put_parameter(b, "event-number", "valueString", number);
    fj_buf_puts(b, ",");
    put_parameter(b, "timestamp", "valueInstant", when);
    fj_buf_puts(b, ",");
    put_reference_parameter(b, "focus", focus.data ? focus.data : "");
    fj_buf_puts(b, "]}");
    fj_buf_free(&focus);
}

/*
 * A SubscriptionStatus (as an R4 Parameters, id `id`) of a receiver's virtual subscription: its status and
 * type, the count of events since its start, and one notification-event per row of n[0..count) (may be 0).
 * The relay's notifications and the backport's $status and $events (rly_put_status) both build it here.
 */
static void put_status_of(fj_buf *b, const char *id, const char *base_url, const char *subscription, const char *status,
                          const char *type, int64_t since_start, const st_notification *n, size_t count)
{
    char number[24];
    snprintf(number, sizeof number, "%lld", (long long)since_start);
    fj_buf_printf(b,
                  "{\"resourceType\":\"Parameters\",\"id\":\"%s\",\"meta\":{\"profile\":[\"" STATUS_PROFILE
                  "\"]},\"parameter\":[",
                  id);
    put_reference_parameter(b, "subscription", subscription);
    fj_buf_puts(b, ",");
    put_parameter(b, "topic", "valueCanonical", RLY_TOPIC);
    fj_buf_puts(b, ",");
    put_parameter(b, "status", "valueCode", status);
    fj_buf_puts(b, ",");
    put_parameter(b, "type", "valueCode", type);
    fj_buf_puts(b, ",");
    put_parameter(b, "events-since-subscription-start", "valueString", number);
    for (size_t i = 0; i < count; i++) {
        fj_buf_puts(b, ",");
        put_event(b, base_url, &n[i]);
    }
    fj_buf_puts(b, "]}");
}

/* The SubscriptionStatus of a notification carrying the events n[0..count). */
static void put_status(fj_buf *b, const char *id, const char *base_url, const char *subscription,
                       const st_notification *n, size_t count)
{
    /* every event of this receiver is numbered, so the count since the start is the last number itself */
    put_status_of(b, id, base_url, subscription, "active", "event-notification", n[count - 1].event_number, n, count);
}

/* The history entry of one event's focus: id-only, its content stays on the gateway (no personal data travels). */
static void put_focus_entry(fj_buf *b, const char *base_url, const st_notification *n)
{
    fj_buf focus = {0};
    fj_buf_printf(&focus, "%s/%s/%s", base_url, n->focus_type, n->focus_id);
    fj_buf_puts(b, ",{\"fullUrl\":");
    fj_buf_string(b, focus.data ? focus.data : "", focus.len);
    bool created = n->focus_version == 1;
    fj_buf_printf(b, ",\"request\":{\"method\":\"%s\",\"url\":\"%s%s%s\"},\"response\":{\"status\":\"%s\"}}",
                  created ? "POST" : "PUT", n->focus_type, created ? "" : "/", created ? "" : n->focus_id,
                  created ? "201" : "200");
    fj_buf_free(&focus);
}

char *rly_bundle_of(const char *base_url, const st_notification *n, size_t count, int64_t now_ms, size_t *len)
{
    if (!count)
        return NULL;
    char bundle_id[37], status_id[37], when[ST_INSTANT_LEN];
    rnd_uuid4(bundle_id);
    rnd_uuid4(status_id);
    st_format_instant(now_ms, when);
    fj_buf sub = {0};
    fj_buf_printf(&sub, "%s/Subscription/handover-%s", base_url, n->receiver);
    const char *subscription = sub.data ? sub.data : "";

    fj_buf b = {0};
    fj_buf_printf(&b,
                  "{\"resourceType\":\"Bundle\",\"id\":\"%s\",\"meta\":{\"profile\":[\"" NOTIFICATION_PROFILE
                  "\"]},\"type\":\"history\",\"timestamp\":\"%s\",\"entry\":[{\"fullUrl\":\"urn:uuid:%s\","
                  "\"resource\":",
                  bundle_id, when, status_id);
    put_status(&b, status_id, base_url, subscription, n, count);
    fj_buf_puts(&b, ",\"request\":{\"method\":\"GET\",\"url\":");
    fj_buf_printf(&sub, "/$status");
    fj_buf_string(&b, sub.data ? sub.data : "", sub.len);
    fj_buf_puts(&b, "},\"response\":{\"status\":\"200\"}}");
    for (size_t i = 0; i < count; i++)
        put_focus_entry(&b, base_url, &n[i]);
    fj_buf_puts(&b, "]}");
    fj_buf_free(&sub);
    return fj_buf_take(&b, len);
}

char *rly_bundle(const char *base_url, const st_notification *n, int64_t now_ms, size_t *len)
{
    return rly_bundle_of(base_url, n, 1, now_ms, len);
}

/* ---- the same parts for $status and $events (rest_subscription.c) ---- */

void rly_put_status(fj_buf *b, const char *base_url, const char *id, const rly_status *st)
{
    fj_buf sub = {0};
    fj_buf_printf(&sub, "%s/Subscription/handover-%s", base_url, st->receiver);
    put_status_of(b, id, base_url, sub.data ? sub.data : "", st->status, st->type, st->events_since_start, st->events,
                  st->event_count);
    fj_buf_free(&sub);
}

void rly_put_focus_entries(fj_buf *b, const char *base_url, const st_notification *events, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put_focus_entry(b, base_url, &events[i]);
}

/* ---- one attempt ---- */

/*
 * POST the notifications n[0..*count) to the receiver's endpoint; true on 2xx. The empty POST names one Task:
 * *count becomes 1 for it (the rest wait for their own attempts).
 */
static bool attempt(rly_relay *r, const st_notification *n, size_t *count, rly_answer *answer)
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
        *count = 1;
        size_t n_len = strlen(ep.address);
        snprintf(url, sizeof url, "%.*s/%s", (int)(n_len && ep.address[n_len - 1] == '/' ? n_len - 1 : n_len),
                 ep.address, n->focus_id);
        post.url = url;
    } else {
        body = rly_bundle_of(r->c.base_url, n, *count, now_ms(r), &post.len);
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
        u->keep_delivered_ms = (int64_t)r->c.keep_delivered_ms; /* and prune the receiver's old ones */
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

/* The outcome of one notification alone: the dead letter with its mark on the Task when on_dead can. */
static void record_one(rly_relay *r, const st_notification *n, st_op *op)
{
    /* a failed commit leaves the notification pending as it was: it is tried again (at least once) */
    if (!(op->notify->state == ST_NOTIFY_DEAD && r->c.on_dead && r->c.on_dead(r->c.on_dead_arg, n, op)))
        st_submit_wait(r->c.store, op, 1, NULL);
}

/*
 * The outcome of the attempt at n[0..count): one commit for all of them, except dead letters, which commit
 * one by one with their mark on the Task. Should the shared commit fail (a notification no longer pending),
 * each is recorded alone, so that one row does not hold up the others.
 */
static void record(rly_relay *r, const st_notification *n, size_t count, bool ok, const rly_answer *answer)
{
    if (!ok)
        count = 1; /* the head carries the retry state; the rest wait behind it as they were */
    st_notify *u = calloc(count, sizeof *u);
    st_op *ops = calloc(count, sizeof *ops);
    if (!u || !ops) {
        free(u);
        free(ops);
        return; /* still pending: tried again */
    }
    int64_t now = now_ms(r);
    size_t shared = 0;
    for (size_t i = 0; i < count; i++) {
        st_notify one = {0};
        next_state(r, &n[i], ok, now, &one);
        one.http_status = answer->status;
        one.error = ok ? NULL : answer->error;
        bool dead = one.state == ST_NOTIFY_DEAD;
        count_outcome(r, ok, dead);
        if (dead) {
            st_op op = {.kind = ST_OP_NOTIFY_UPDATE, .notify = &one};
            record_one(r, &n[i], &op);
            continue;
        }
        u[shared] = one;
        ops[shared] = (st_op){.kind = ST_OP_NOTIFY_UPDATE, .notify = &u[shared]};
        shared++;
    }
    if (shared > 1 && st_submit_wait(r->c.store, ops, shared, NULL) != ST_OK)
        for (size_t i = 0; i < shared; i++)
            st_submit_wait(r->c.store, &ops[i], 1, NULL);
    else if (shared == 1)
        st_submit_wait(r->c.store, ops, 1, NULL);
    free(u);
    free(ops);
}

/* The gauges per state, from the store (cheap: one grouped count). */
static void refresh_gauges(rly_relay *r)
{
    atomic_store(&r->gauges_at_ms, real_clock_ms(NULL));
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
    r->gauges_stale = true;
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
        if (r->gauges_stale) { /* idle now: the gauges catch up before the wait (a wake meanwhile is seen below) */
            r->gauges_stale = false;
            pthread_mutex_unlock(&r->lock);
            refresh_gauges(r);
            pthread_mutex_lock(&r->lock);
        }
        struct timespec deadline;
        deadline_after(&deadline, wait_ms > 0 ? wait_ms : 1);
        while (!r->stop && r->wakes == wakes && pthread_cond_timedwait(&r->changed, &r->lock, &deadline) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&r->lock);
    return found;
}

/*
 * The claimed head and the receiver's next pending notifications behind it (malloc'd, *count of them; the head
 * alone when the store cannot say). Only this worker serves the receiver now, so nobody else records them.
 */
static st_notification *batch_behind(rly_relay *r, const st_notification *head, size_t *count)
{
    st_notification *rows = NULL;
    st_error err;
    st_notify_query q = {.receiver = head->receiver, .pending = true, .count = r->c.batch_max};
    /* a head that failed before goes alone, as a probe: the backlog follows in batches once the receiver answers */
    if (head->attempts > 0 || st_notify_list(r->c.store, &q, &rows, count, &err) != ST_OK || !*count ||
        rows[0].seq != head->seq) {
        free(rows);
        rows = malloc(sizeof *rows);
        if (rows)
            rows[0] = *head;
        *count = rows ? 1 : 0;
    }
    return rows;
}

/* ---- serving a claimed receiver: batch after batch, the delivered marks committing behind ---- */

/* The delivered marks of posted batches whose commits are under way (one worker's). */
typedef struct marks_in_flight {
    pthread_mutex_t lock;
    pthread_cond_t done;
    unsigned count;
} marks_in_flight;

typedef struct delivered_marks {
    marks_in_flight *owner;
    size_t count;
    st_notify *u;
    st_op *ops;
} delivered_marks;

/* On the commit thread. A failed commit leaves them pending: sent again later (delivery is at least once). */
static void marks_committed(void *arg, const st_txn_result *result)
{
    (void)result;
    delivered_marks *m = arg;
    marks_in_flight *f = m->owner;
    free(m->u);
    free(m->ops);
    free(m);
    pthread_mutex_lock(&f->lock);
    f->count--;
    pthread_cond_broadcast(&f->done);
    pthread_mutex_unlock(&f->lock);
}

/* Wait until at most `most` commits of marks are under way. */
static void wait_marks(marks_in_flight *f, unsigned most)
{
    pthread_mutex_lock(&f->lock);
    while (f->count > most)
        pthread_cond_wait(&f->done, &f->lock);
    pthread_mutex_unlock(&f->lock);
}

/* n[0..count) were delivered: queue their marks as one transaction without waiting; false (nothing queued)
 * when the store would not take it, and the caller records them itself. */
static bool mark_delivered_async(rly_relay *r, const st_notification *n, size_t count, const rly_answer *answer,
                                 marks_in_flight *f)
{
    delivered_marks *m = calloc(1, sizeof *m);
    if (m) {
        m->u = calloc(count, sizeof *m->u);
        m->ops = calloc(count, sizeof *m->ops);
    }
    if (!m || !m->u || !m->ops) {
        if (m)
            free(m->u), free(m->ops);
        free(m);
        return false;
    }
    m->owner = f;
    m->count = count;
    for (size_t i = 0; i < count; i++) {
        m->u[i] = (st_notify){.seq = n[i].seq, .state = ST_NOTIFY_DELIVERED, .http_status = answer->status};
        m->ops[i] = (st_op){.kind = ST_OP_NOTIFY_UPDATE, .notify = &m->u[i]};
    }
    /* the last of the batch has the highest number: its mark prunes the receiver's old delivered ones */
    m->u[count - 1].keep_delivered_ms = (int64_t)r->c.keep_delivered_ms;
    pthread_mutex_lock(&f->lock);
    f->count++;
    pthread_mutex_unlock(&f->lock);
    if (st_submit(r->c.store, m->ops, count, marks_committed, m) == ST_OK) {
        for (size_t i = 0; i < count; i++)
            count_outcome(r, true, false);
        return true;
    }
    pthread_mutex_lock(&f->lock);
    f->count--;
    pthread_mutex_unlock(&f->lock);
    free(m->u);
    free(m->ops);
    free(m);
    return false;
}

/*
 * The receiver's pending notifications after event number `after` (those posted already may still show as
 * pending while their marks commit), up to batch_max; NULL when there are none or the next one failed before
 * (it waits for its backoff, through claim).
 */
static st_notification *batch_after(rly_relay *r, const char *receiver, int64_t after, size_t *count)
{
    st_notification *rows = NULL;
    size_t n = 0, first = 0;
    st_error err;
    st_notify_query q = {.receiver = receiver, .pending = true, .count = (MARKS_IN_FLIGHT + 2) * r->c.batch_max};
    if (st_notify_list(r->c.store, &q, &rows, &n, &err) != ST_OK)
        n = 0;
    while (first < n && rows[first].event_number <= after)
        first++;
    *count = n - first < r->c.batch_max ? n - first : r->c.batch_max;
    if (!*count || rows[first].attempts > 0) {
        free(rows);
        *count = 0;
        return NULL;
    }
    memmove(rows, rows + first, *count * sizeof *rows);
    return rows;
}

static bool marks_pending(marks_in_flight *f)
{
    pthread_mutex_lock(&f->lock);
    bool pending = f->count > 0;
    pthread_mutex_unlock(&f->lock);
    return pending;
}

static uint64_t wakes_now(rly_relay *r)
{
    pthread_mutex_lock(&r->lock);
    uint64_t wakes = r->wakes;
    pthread_mutex_unlock(&r->lock);
    return wakes;
}

/* Wait until a commit queues notifications (rly_wake since `wakes`), the marks have all committed (looked at
 * every MARKS_POLL_MS: their commits wake no one), or the relay stops; false when it stops. */
static bool await_wake_or_marks(rly_relay *r, marks_in_flight *f, uint64_t wakes)
{
    for (;;) {
        pthread_mutex_lock(&r->lock);
        struct timespec deadline;
        deadline_after(&deadline, MARKS_POLL_MS);
        while (!r->stop && r->wakes == wakes && pthread_cond_timedwait(&r->changed, &r->lock, &deadline) != ETIMEDOUT)
            ;
        bool stop = r->stop, woken = r->wakes != wakes;
        pthread_mutex_unlock(&r->lock);
        if (stop)
            return false;
        if (woken || !marks_pending(f))
            return true;
    }
}

/*
 * The receiver's next batch after event `last`. When none is pending yet but delivered marks are still
 * committing, the worker stays with the receiver and takes what a commit queues meanwhile, instead of waiting
 * for the marks, releasing it and claiming it again: under load those marks wait behind the handovers' group
 * commits, and a notification queued meanwhile waited for them too. NULL once the marks have committed with
 * nothing new (or the relay stops).
 */
static st_notification *next_batch(rly_relay *r, marks_in_flight *f, const char *receiver, int64_t last, size_t *count)
{
    for (;;) {
        uint64_t wakes = wakes_now(r); /* before the read: a wake after it is not missed */
        st_notification *batch = batch_after(r, receiver, last, count);
        if (batch || !marks_pending(f) || !await_wake_or_marks(r, f, wakes))
            return batch;
    }
}

/*
 * Serve the claimed receiver: the head's batch, then, while it answers 2xx and more are pending, the next
 * batches (at most SERVE_ROUNDS, then it is released so that claims see the others). The delivered marks
 * commit behind the next POST rather than before it: a notification committed meanwhile waits for one POST,
 * not for a POST and a commit. Before the receiver is released every mark has committed, so the next claim
 * sees the queue as it is. A failed attempt is recorded (and waited for) as before and ends the round.
 */
static void serve_receiver(rly_relay *r, const st_notification *head, marks_in_flight *f)
{
    size_t count = 0;
    st_notification *batch = batch_behind(r, head, &count);
    for (unsigned round = 0; batch && round < SERVE_ROUNDS; round++) {
        rly_answer answer;
        bool ok = attempt(r, batch, &count, &answer);
        int64_t last = batch[count - 1].event_number;
        if (!ok || !mark_delivered_async(r, batch, count, &answer, f)) {
            wait_marks(f, 0);
            record(r, batch, count, ok, &answer);
            free(batch);
            batch = NULL;
            break;
        }
        free(batch);
        wait_marks(f, MARKS_IN_FLIGHT);
        batch = next_batch(r, f, head->receiver, last, &count);
    }
    free(batch); /* the rounds ran out: it stays pending in the queue for the receiver's next claim */
    wait_marks(f, 0);
}

static void *worker_main(void *arg)
{
    rly_relay *r = arg;
    marks_in_flight f = {.count = 0};
    pthread_mutex_init(&f.lock, NULL);
    pthread_cond_init(&f.done, NULL);
    st_notification head;
    while (next_work(r, &head)) {
        serve_receiver(r, &head, &f);
        if (real_clock_ms(NULL) - atomic_load(&r->gauges_at_ms) >= GAUGE_REFRESH_MS)
            refresh_gauges(r);
        release_receiver(r, head.receiver);
    }
    pthread_cond_destroy(&f.done);
    pthread_mutex_destroy(&f.lock);
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
    if (!c->batch_max)
        c->batch_max = LIM(relay_batch_max);
    if (!c->keep_delivered_ms)
        c->keep_delivered_ms = LIM(relay_keep_delivered_ms);
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
    for (; r->started < r->c.workers; r->started++) {
        if (pthread_create(&r->threads[r->started], NULL, worker_main, r) != 0)
            break;
        tn_name(r->threads[r->started], "relay-%u", r->started);
    }
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
