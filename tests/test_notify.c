/*
 * tests/test_notify.c — delivery of handover notifications (issue #13 part
 * 4, docs/handover.md "Notifications"): the queue in the store, event
 * numbers per receiver, retries with backoff, dead letters, restarts, and a
 * receiver that is down or slow holding up no other.
 *
 * The gateway is the real server over mutual TLS (tests/rest_harness.h),
 * the hospital and the ELVs its real clients; the relay (gateway/relay)
 * runs beside it as `serve` runs it. Suite `peers`: the ELVs' notification
 * Endpoints are real HTTPS servers on loopback (tests/peer.h), reached
 * through the gateway's one outbound client with its client certificate,
 * and switched down, slow, failing or to a foreign certificate. Suite
 * `notify`: an in-process deliver function (`receivers` below) that records
 * every POST, for what needs exact control (backoff timing, payloads).
 * Waiting is on conditions with deadlines, never a bare sleep.
 *
 * Memory: responses, JSON and recorded posts are freed in each test.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway/relay/deliver.h"
#include "gateway/relay/notify.h"
#include "gateway/util/conformance.h"
#include "tests/handover_body.h"
#include "tests/peer.h"
#include "tests/rest_harness.h"

#define URA_SYSTEM "http://fhir.nl/fhir/NamingSystem/ura"
#define URA_HOSPITAL_A "90000101"
#define URA_ELV_A "90000301"
#define URA_ELV_B "90000302"
#define SECRET HB_SECRET
#define UNDELIVERED REST_UNDELIVERED_SYSTEM "|" REST_UNDELIVERED_CODE
#define WAIT_MS 20000 /* deadline of every wait: far above what any step needs */

/* ---- receivers: a deliver function with a mode per address ---- */

typedef enum mode { UP, DOWN, FAIL_500, SLOW } mode;

typedef struct post_rec {
    char *url, *body;
    int64_t at_ms;
    bool answered; /* 2xx */
} post_rec;

static struct receivers {
    pthread_mutex_t lock;
    pthread_cond_t grew;
    post_rec *posts;
    size_t count, cap;
    struct {
        char url[RLY_URL_MAX];
        mode m;
    } modes[8];
    size_t mode_count;
    unsigned slow_ms;
} rx = {.lock = PTHREAD_MUTEX_INITIALIZER, .grew = PTHREAD_COND_INITIALIZER};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_mode(const char *url, mode m)
{
    pthread_mutex_lock(&rx.lock);
    size_t i = 0;
    while (i < rx.mode_count && strcmp(rx.modes[i].url, url))
        i++;
    if (i == rx.mode_count && rx.mode_count < 8)
        snprintf(rx.modes[rx.mode_count++].url, RLY_URL_MAX, "%s", url);
    if (i < 8)
        rx.modes[i].m = m;
    pthread_mutex_unlock(&rx.lock);
}

static mode mode_of(const char *url)
{
    for (size_t i = 0; i < rx.mode_count; i++)
        if (!strncmp(url, rx.modes[i].url, strlen(rx.modes[i].url)))
            return rx.modes[i].m;
    return UP;
}

static bool deliver(void *arg, const rly_post *post, rly_answer *out)
{
    (void)arg;
    pthread_mutex_lock(&rx.lock);
    mode m = mode_of(post->url);
    unsigned slow = rx.slow_ms;
    pthread_mutex_unlock(&rx.lock);
    if (m == SLOW)
        usleep(slow * 1000u); /* the receiver taking its time: the relay's thread waits, as on a slow socket */
    bool ok = m == UP || m == SLOW;
    out->status = m == FAIL_500 ? 500 : ok ? 202 : 0;
    if (!ok)
        snprintf(out->error, sizeof out->error, "%s", m == DOWN ? "unreachable: connection refused" : "http 500");
    if (m == DOWN)
        return false; /* nothing reached the receiver: not recorded */
    pthread_mutex_lock(&rx.lock);
    if (rx.count == rx.cap) {
        rx.cap = rx.cap ? rx.cap * 2 : 16;
        rx.posts = realloc(rx.posts, rx.cap * sizeof *rx.posts);
    }
    rx.posts[rx.count++] = (post_rec){strdup(post->url), post->body ? strndup(post->body, post->len) : NULL, mono_ms(),
                                      ok};
    pthread_cond_broadcast(&rx.grew);
    pthread_mutex_unlock(&rx.lock);
    return ok;
}

/* Answered posts to addresses starting with url. */
static size_t answered_locked(const char *url)
{
    size_t n = 0;
    for (size_t i = 0; i < rx.count; i++)
        n += rx.posts[i].answered && !strncmp(rx.posts[i].url, url, strlen(url));
    return n;
}

/* Wait until url has had n answered posts (false at the deadline). */
static bool wait_answered(const char *url, size_t n, int64_t deadline_ms)
{
    pthread_mutex_lock(&rx.lock);
    bool ok;
    while (!(ok = answered_locked(url) >= n) && mono_ms() < deadline_ms) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L)
            ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&rx.grew, &rx.lock, &ts);
    }
    pthread_mutex_unlock(&rx.lock);
    return ok;
}

/* The k-th answered post to url (a copy the caller frees), NULL when there is none. */
static post_rec *answered_at(const char *url, size_t k)
{
    pthread_mutex_lock(&rx.lock);
    post_rec *out = NULL;
    for (size_t i = 0; i < rx.count && !out; i++)
        if (rx.posts[i].answered && !strncmp(rx.posts[i].url, url, strlen(url)) && k-- == 0) {
            out = malloc(sizeof *out);
            *out = rx.posts[i];
            out->url = strdup(out->url);
            out->body = out->body ? strdup(out->body) : NULL;
        }
    pthread_mutex_unlock(&rx.lock);
    return out;
}

static void post_free(post_rec *p)
{
    if (p) {
        free(p->url);
        free(p->body);
        free(p);
    }
}

static void receivers_reset(void)
{
    pthread_mutex_lock(&rx.lock);
    for (size_t i = 0; i < rx.count; i++)
        free(rx.posts[i].url), free(rx.posts[i].body);
    free(rx.posts);
    rx.posts = NULL;
    rx.count = rx.cap = rx.mode_count = 0;
    rx.slow_ms = 1500;
    pthread_mutex_unlock(&rx.lock);
}

/* ---- the gateway with its relay ---- */

static rly_relay *relay;
static rly_config relay_config;

static void start_relay(void)
{
    char err[256];
    relay_config.store = rh.store;
    relay_config.base_url = "https://127.0.0.1";
    if (!relay_config.deliver) /* the in-process receivers unless a suite chose the outbound client */
        relay_config.deliver = deliver;
    relay_config.on_dead = rest_handover_mark_undelivered;
    relay_config.on_dead_arg = rh.app;
    relay_config.metrics = srv_metrics(rh.srv);
    relay = rly_start(&relay_config, err, sizeof err);
    cr_assert_not_null(relay, "%s", err);
}

static void stop_relay(void)
{
    rly_stop(relay);
    relay = NULL;
}

/* The receiver `who` (URA ura) attests its ELV-HANDOVER agreements in its directory entry (else 422). */
static void attest_agreements(const char *who, const char *ura)
{
    rh_attest_agreements(who, ura, "2099-12-31");
}

static void setup(void)
{
    receivers_reset();
    rh_setup_with_guide(NULL); /* $handover checks the documents against the guide's handover profiles */
    attest_agreements("elv-a", URA_ELV_A);
    attest_agreements("elv-b", URA_ELV_B);
    /* batch_max 1: these tests follow each notification as its own POST; notify/a_backlog_is_sent_in_batches
     * takes the default */
    relay_config = (rly_config){.workers = 3,
                                .base_delay_ms = 40,
                                .max_delay_ms = 200,
                                .horizon_ms = 60000,
                                .poll_ms = 25,
                                .batch_max = 1};
}

static void teardown(void)
{
    stop_relay();
    rh_teardown();
    receivers_reset();
}

TestSuite(notify, .init = setup, .fini = teardown, .timeout = 120);

/* ---- the parties ---- */

/* Register url as who's notification Endpoint (payload NULL: the default, the backport Bundle). */
static void register_endpoint(const char *who, const char *ura, const char *url, const char *payload_code)
{
    rh_register_endpoint(who, ura, url, payload_code);
}

/* $handover from hospital-a to receiver (no advance notice: the Task starts in-progress unless notice): the
 * guide's example documents (tests/handover_body.h), which meet its handover profiles. */
static void send_handover(const char *ident, const char *receiver, bool notice, char task[80], long *status)
{
    char notice_ident[96]; /* the advance notice's own uuid: the handover's with another first digit */
    snprintf(notice_ident, sizeof notice_ident, "%s", ident);
    notice_ident[0] = notice_ident[0] == 'a' ? 'b' : 'a';
    char *body = hb_parameters(ident, notice ? notice_ident : NULL, receiver);
    cr_assert_not_null(body);
    rh_response r = rh_request("hospital-a", "POST", "/$handover", body, NULL);
    free(body);
    *status = r.status;
    cr_assert(r.status == 201 || r.status == 200, "$handover: %ld %s", r.status, r.body);
    json_object *o = rh_json(&r);
    snprintf(task, 80, "%s", rh_str(o, "id"));
    json_object_put(o);
    rh_response_free(&r);
}

static char *handover(const char *ident, const char *receiver)
{
    static char task[4][80];
    static int next;
    char *t = task[next++ % 4];
    long status;
    send_handover(ident, receiver, true, t, &status);
    cr_assert_eq(status, 201);
    return t;
}

static long patch_status(const char *who, const char *task, const char *to)
{
    char path[128], body[160];
    snprintf(path, sizeof path, "/Task/%s", task);
    snprintf(body, sizeof body, "[{\"op\":\"replace\",\"path\":\"/status\",\"value\":\"%s\"}]", to);
    const char *extra[] = {"Content-Type: application/json-patch+json", NULL};
    rh_response r = rh_request(who, "PATCH", path, body, extra);
    long s = r.status;
    rh_response_free(&r);
    return s;
}

/* The queue's rows of a receiver. */
static size_t queued(const char *ura, st_notification **rows)
{
    size_t count = 0;
    st_error err;
    st_notify_query q = {.receiver = ura};
    cr_assert_eq(st_notify_list(rh.store, &q, rows, &count, &err), ST_OK, "%s", err.message);
    return count;
}

/* Wait until `state` counts at least n (false at the deadline): the relay records outcomes with commits. */
static bool wait_state(st_notify_state state, int64_t n, int64_t deadline_ms)
{
    int64_t left = deadline_ms - mono_ms();
    return rh_wait_notify_state(state, n, left > 0 ? (int)left : 0);
}

/* What a notification Bundle says: its event number and focus; and that it is valid FHIR without personal data. */
static void read_notification(const post_rec *p, long *number, char *focus, size_t size)
{
    cr_assert_not_null(p->body);
    char msg[600];
    cr_expect_eq(rh_validate_text(p->body, strlen(p->body), msg, sizeof msg), 0, "invalid notification: %s in %s", msg,
                 p->body);
    cr_expect_null(strstr(p->body, SECRET), "no personal data travels in a notification");
    json_object *o = json_tokener_parse(p->body);
    cr_assert_not_null(o);
    cr_expect_str_eq(rh_str(o, "type"), "history");
    cr_expect_str_eq(rh_str(o, "entry.0.resource.resourceType"), "Parameters");
    cr_expect_str_eq(rh_str(o, "entry.0.resource.parameter.3.valueCode"), "event-notification");
    const char *events = rh_str(o, "entry.0.resource.parameter.4.valueString");
    const char *event = rh_str(o, "entry.0.resource.parameter.5.part.0.valueString");
    cr_assert(events && event);
    cr_expect_str_eq(events, event);
    *number = atol(event);
    snprintf(focus, size, "%s", rh_str(o, "entry.0.resource.parameter.5.part.2.valueReference.reference"));
    cr_expect_str_eq(rh_str(o, "entry.1.fullUrl"), focus);
    json_object_put(o);
}

/* ---- the tests ---- */

#define NOTIFY_A "https://127.0.0.1:1/notify-elv-a"
#define NOTIFY_B "https://127.0.0.1:2/notify-elv-b"
#define NOTIFY_H "https://127.0.0.1:3/notify-hospital-a"

/* The event numbers of a notification's notification-events, in order, into out (at most max); their count. */
static size_t event_numbers_of(const char *body, long *out, size_t max)
{
    json_object *o = json_tokener_parse(body);
    cr_assert_not_null(o);
    json_object *params =
        json_object_object_get(json_object_object_get(json_object_array_get_idx(json_object_object_get(o, "entry"), 0),
                                                      "resource"),
                               "parameter");
    size_t n = 0;
    for (size_t i = 0; i < json_object_array_length(params) && n < max; i++) {
        json_object *p = json_object_array_get_idx(params, i);
        if (strcmp(json_object_get_string(json_object_object_get(p, "name")), "notification-event"))
            continue;
        json_object *number = json_object_object_get(json_object_array_get_idx(json_object_object_get(p, "part"), 0),
                                                     "valueString");
        out[n++] = atol(json_object_get_string(number));
    }
    json_object_put(o);
    return n;
}

Test(notify, a_backlog_is_sent_in_batches)
{
    register_endpoint("elv-a", URA_ELV_A, NOTIFY_A, NULL);
    relay_config.batch_max = 0; /* the default, relay_batch_max */
    enum { BACKLOG = 5 };
    char tasks[BACKLOG][80];
    long status;
    for (int i = 0; i < BACKLOG; i++) { /* queued before the relay runs: all pending at its first look */
        char ident[64];
        snprintf(ident, sizeof ident, "7e0b0009-0000-4000-8000-00000000000%d", i + 1);
        send_handover(ident, URA_ELV_A, true, tasks[i], &status);
        cr_assert_eq(status, 201);
    }
    start_relay();
    cr_assert(wait_state(ST_NOTIFY_DELIVERED, BACKLOG, mono_ms() + WAIT_MS), "all delivered");
    pthread_mutex_lock(&rx.lock);
    size_t posts = answered_locked(NOTIFY_A);
    pthread_mutex_unlock(&rx.lock);
    cr_expect_eq(posts, 1, "one POST carries the whole backlog (%zu)", posts);
    long next = 1;
    for (size_t k = 0; k < posts; k++) {
        post_rec *p = answered_at(NOTIFY_A, k);
        char msg[600];
        cr_expect_eq(rh_validate_text(p->body, strlen(p->body), msg, sizeof msg), 0, "%s", msg);
        long numbers[BACKLOG + 1];
        size_t n = event_numbers_of(p->body, numbers, BACKLOG + 1);
        for (size_t i = 0; i < n; i++)
            cr_expect_eq(numbers[i], next++, "every event once, in order");
        for (int t = 0; t < BACKLOG; t++)
            cr_expect_not_null(strstr(p->body, tasks[t]), "the batch names Task %s", tasks[t]);
        post_free(p);
    }
    cr_expect_eq(next, BACKLOG + 1, "events 1..%d arrived", BACKLOG);
}

Test(notify, event_numbers_per_receiver_and_status_changes)
{
    register_endpoint("elv-a", URA_ELV_A, NOTIFY_A, NULL);
    register_endpoint("elv-b", URA_ELV_B, NOTIFY_B, NULL);
    register_endpoint("hospital-a", URA_HOSPITAL_A, NOTIFY_H, NULL);
    start_relay();
    char a[3][80], b[2][80];
    long status;
    send_handover("7e0b0001-0000-4000-8000-000000000001", URA_ELV_A, true, a[0], &status);
    send_handover("7e0b0001-0000-4000-8000-000000000002", URA_ELV_B, true, b[0], &status);
    send_handover("7e0b0001-0000-4000-8000-000000000003", URA_ELV_A, true, a[1], &status);
    send_handover("7e0b0001-0000-4000-8000-000000000004", URA_ELV_B, true, b[1], &status);
    send_handover("7e0b0001-0000-4000-8000-000000000005", URA_ELV_A, true, a[2], &status);
    cr_assert(wait_answered(NOTIFY_A, 3, mono_ms() + WAIT_MS), "elv-a got its three notifications");
    cr_assert(wait_answered(NOTIFY_B, 2, mono_ms() + WAIT_MS), "elv-b got its two notifications");
    for (size_t i = 0; i < 3; i++) {
        post_rec *p = answered_at(NOTIFY_A, i);
        long number;
        char focus[160], want[160];
        read_notification(p, &number, focus, sizeof focus);
        cr_expect_eq(number, (long)i + 1, "elv-a's notifications are numbered 1, 2, 3 in order");
        snprintf(want, sizeof want, "https://127.0.0.1/Task/%.79s", a[i]);
        cr_expect_str_eq(focus, want);
        post_free(p);
    }
    for (size_t i = 0; i < 2; i++) {
        post_rec *p = answered_at(NOTIFY_B, i);
        long number;
        char focus[160];
        read_notification(p, &number, focus, sizeof focus);
        cr_expect_eq(number, (long)i + 1, "elv-b counts its own: 1, 2");
        post_free(p);
    }
    /* the receiver accepts: the sender hears of it (its event 1); the sender starts: the receiver (its event 4) */
    cr_assert_eq(patch_status("elv-a", a[0], "accepted"), 200);
    cr_assert(wait_answered(NOTIFY_H, 1, mono_ms() + WAIT_MS), "the sender hears the receiver accepted");
    cr_assert_eq(patch_status("hospital-a", a[0], "in-progress"), 200);
    cr_assert(wait_answered(NOTIFY_A, 4, mono_ms() + WAIT_MS), "the receiver hears the handover started");
    post_rec *p = answered_at(NOTIFY_A, 3);
    long number;
    char focus[160];
    read_notification(p, &number, focus, sizeof focus);
    cr_expect_eq(number, 4);
    json_object *o = json_tokener_parse(p->body);
    cr_expect_str_eq(rh_str(o, "entry.1.request.method"), "PUT", "a change of the Task, not its creation");
    json_object_put(o);
    post_free(p);
    st_notification *rows;
    cr_expect_eq(queued(URA_HOSPITAL_A, &rows), 1, "the sender was not told of its own move");
    free(rows);
}

Test(notify, nothing_for_a_receiver_without_endpoint_nor_twice_for_a_resubmission)
{
    register_endpoint("elv-a", URA_ELV_A, NOTIFY_A, NULL);
    start_relay();
    char task[80], again[80];
    long status;
    send_handover("7e0b0002-0000-4000-8000-000000000001", URA_ELV_B, true, task, &status);
    st_notification *rows;
    cr_expect_eq(queued(URA_ELV_B, &rows), 0, "elv-b has no Endpoint: it polls, nothing is queued");
    free(rows);
    send_handover("7e0b0002-0000-4000-8000-000000000002", URA_ELV_A, true, task, &status);
    cr_assert_eq(status, 201);
    send_handover("7e0b0002-0000-4000-8000-000000000002", URA_ELV_A, true, again, &status);
    cr_assert_eq(status, 200, "a resubmission finds the first Task");
    cr_expect_str_eq(again, task);
    cr_assert(wait_answered(NOTIFY_A, 1, mono_ms() + WAIT_MS));
    cr_expect_eq(queued(URA_ELV_A, &rows), 1, "one Task, one notification");
    free(rows);
}

Test(notify, a_receiver_that_is_down_gets_it_when_it_comes_back_with_backoff)
{
    register_endpoint("elv-a", URA_ELV_A, NOTIFY_A, NULL);
    set_mode(NOTIFY_A, DOWN);
    start_relay();
    handover("7e0b0003-0000-4000-8000-000000000001", URA_ELV_A);
    handover("7e0b0003-0000-4000-8000-000000000002", URA_ELV_A);
    /* it fails a few times, with growing pauses (40, 80, 160 ms: at least half of each) */
    st_notification *rows = NULL;
    int64_t deadline = mono_ms() + WAIT_MS;
    size_t n = 0;
    while (mono_ms() < deadline && (n = queued(URA_ELV_A, &rows)) && rows[0].attempts < 4) {
        free(rows);
        rows = NULL;
        usleep(10 * 1000);
    }
    cr_assert(n == 2 && rows[0].attempts >= 4, "the first notification was retried");
    cr_expect_eq(rows[0].state, ST_NOTIFY_PENDING);
    cr_expect_eq(rows[1].attempts, 0, "the second waits behind the first: in order");
    cr_expect_geq(rows[0].last_attempt_ms - rows[0].created_ms, 20 + 40 + 80,
                  "backoff: three pauses of at least 20, 40 and 80 ms before the fourth attempt");
    cr_expect_str_eq(rows[0].last_error, "unreachable: connection refused");
    free(rows);
    set_mode(NOTIFY_A, UP);
    cr_assert(wait_answered(NOTIFY_A, 2, mono_ms() + WAIT_MS), "both arrive once it is back");
    for (size_t i = 0; i < 2; i++) {
        post_rec *p = answered_at(NOTIFY_A, i);
        long number;
        char focus[160];
        read_notification(p, &number, focus, sizeof focus);
        cr_expect_eq(number, (long)i + 1, "in order, without a gap");
        post_free(p);
    }
    cr_assert(wait_state(ST_NOTIFY_DELIVERED, 2, mono_ms() + WAIT_MS));
}

/* The relay's clock: real time moved ahead by the test (the store keeps real time: the event happened now). */
static _Atomic int64_t moved_now; /* the offset */
static int64_t moved_clock(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + atomic_load(&moved_now);
}

Test(notify, the_default_horizon_of_72_hours_with_a_moved_clock)
{
    register_endpoint("elv-a", URA_ELV_A, NOTIFY_A, NULL);
    set_mode(NOTIFY_A, DOWN);
    atomic_store(&moved_now, 0);
    relay_config.clock_ms = moved_clock;
    relay_config.horizon_ms = 0; /* the default: relay_horizon_ms, 72 h */
    start_relay();
    char *task = handover("7e0b0009-0000-4000-8000-000000000001", URA_ELV_A);
    st_notification *rows = NULL;
    int64_t deadline = mono_ms() + WAIT_MS;
    while (mono_ms() < deadline && queued(URA_ELV_A, &rows) == 1 && rows[0].attempts < 2) {
        free(rows);
        rows = NULL;
        usleep(10 * 1000);
    }
    cr_assert(rows && rows[0].attempts >= 2 && rows[0].state == ST_NOTIFY_PENDING, "still trying, well within 72 h");
    unsigned before = rows[0].attempts;
    free(rows);
    rows = NULL;
    atomic_fetch_add(&moved_now, 71LL * 3600 * 1000); /* 71 h later: an attempt, and still pending */
    rly_wake(relay);
    while (mono_ms() < deadline && queued(URA_ELV_A, &rows) == 1 && rows[0].attempts <= before + 1) {
        free(rows);
        rows = NULL;
        usleep(10 * 1000);
    }
    cr_assert(rows && rows[0].attempts > before + 1, "tried at 71 h");
    cr_expect_eq(rows[0].state, ST_NOTIFY_PENDING, "not dead before the horizon");
    cr_expect_leq(rows[0].next_attempt_ms - rows[0].created_ms, 72LL * 3600 * 1000 + 5000,
                  "the last attempt is at the horizon, not past it");
    free(rows);
    atomic_fetch_add(&moved_now, 2LL * 3600 * 1000); /* 73 h after the event */
    rly_wake(relay);
    cr_assert(wait_state(ST_NOTIFY_DEAD, 1, mono_ms() + WAIT_MS), "a dead letter after 72 h");
    rh_response r = rh_request("elv-a", "GET", "/Task?business-status=" UNDELIVERED, NULL, NULL);
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "entry.0.resource.id"), task);
    json_object_put(o);
    rh_response_free(&r);
}

Test(notify, eoverdracht_empty_post_as_the_receiver_chose)
{
    register_endpoint("elv-a", URA_ELV_A, NOTIFY_A, RLY_PAYLOAD_EMPTY_POST);
    start_relay();
    char *task = handover("7e0b0008-0000-4000-8000-000000000001", URA_ELV_A);
    cr_assert(wait_answered(NOTIFY_A, 1, mono_ms() + WAIT_MS));
    post_rec *p = answered_at(NOTIFY_A, 0);
    char want[200];
    snprintf(want, sizeof want, NOTIFY_A "/%s", task);
    cr_expect_str_eq(p->url, want, "eOverdracht: POST <address>/<Task id>");
    cr_expect_null(p->body, "with an empty body");
    post_free(p);
}

/* ---- pure parts ---- */

Test(notify_units, backoff_doubles_with_jitter_up_to_the_maximum)
{
    for (uint64_t rnd = 0; rnd < 1000; rnd += 37) {
        cr_expect(rly_backoff_ms(100, 1000, 1, rnd) >= 50 && rly_backoff_ms(100, 1000, 1, rnd) <= 100);
        cr_expect(rly_backoff_ms(100, 1000, 3, rnd) >= 200 && rly_backoff_ms(100, 1000, 3, rnd) <= 400);
        cr_expect(rly_backoff_ms(100, 1000, 30, rnd) >= 500 && rly_backoff_ms(100, 1000, 30, rnd) <= 1000);
    }
    cr_expect_neq(rly_backoff_ms(100, 1000, 3, 1), rly_backoff_ms(100, 1000, 3, 2), "jitter spreads retries");
}

/* ---- with real receivers: HTTPS peers on loopback, the gateway's outbound client ---- */

static peer *peer_a, *peer_b;
static ob_client *outbound;
static char notify_a[128], notify_b[128];

static void peers_setup(void)
{
    setup();
    char pki[300], err[256];
    snprintf(pki, sizeof pki, "%s/pki", rh.dir);
    peer_options po = {.pki_dir = pki, .slow_ms = 3000};
    peer_a = peer_start(&po, err, sizeof err);
    cr_assert_not_null(peer_a, "%s", err);
    peer_b = peer_start(&po, err, sizeof err);
    cr_assert_not_null(peer_b, "%s", err);
    snprintf(notify_a, sizeof notify_a, "%s/notify", peer_base(peer_a));
    snprintf(notify_b, sizeof notify_b, "%s/notify", peer_base(peer_b));
    ob_config oc = ob_config_default();
    oc.retries = 0; /* as rly_outbound_config: the relay retries */
    oc.timeout_ms = 6000;
    oc.connect_timeout_ms = 2000;
    outbound = rh_outbound_client(oc);
    relay_config.deliver = rly_deliver_outbound;
    relay_config.deliver_arg = outbound;
}

static void peers_teardown(void)
{
    stop_relay(); /* before the client and the peers it talks to */
    peer_free(peer_a);
    peer_free(peer_b);
    ob_client_free(outbound);
    teardown();
}

TestSuite(peers, .init = peers_setup, .fini = peers_teardown, .timeout = 180);

/* Wait until p has recorded n POSTs (false at the deadline); the peer records at arrival. */
static bool wait_posts(peer *p, size_t n, int64_t deadline_ms)
{
    while (peer_count_path(p, "/fhir/notify", true) < n) {
        if (mono_ms() >= deadline_ms)
            return false;
        usleep(10 * 1000); /* the peer has no wait of its own: look again shortly */
    }
    return true;
}

/* The event number of p's k-th POST (checked as a notification). */
static long event_of(peer *p, size_t k)
{
    size_t seen = 0;
    for (size_t i = 0; i < peer_request_count(p); i++) {
        peer_request r;
        if (!peer_request_at(p, i, &r) || strcmp(r.method, "POST") || seen++ != k)
            continue;
        post_rec rec = {.url = (char *)r.path, .body = (char *)r.body};
        long number;
        char focus[160];
        read_notification(&rec, &number, focus, sizeof focus);
        return number;
    }
    return -1;
}

/* Wait until the receiver's first queued notification has had `attempts` attempts; its row into *out. */
static bool wait_attempts(const char *ura, unsigned attempts, st_notification *out, int64_t deadline_ms)
{
    for (;;) {
        st_notification *rows = NULL;
        size_t n = queued(ura, &rows);
        bool ok = n > 0 && rows[0].attempts >= attempts;
        if (ok)
            *out = rows[0];
        free(rows);
        if (ok)
            return true;
        if (mono_ms() >= deadline_ms)
            return false;
        usleep(10 * 1000);
    }
}

Test(peers, each_receiver_gets_its_events_numbered_1_2_3)
{
    register_endpoint("elv-a", URA_ELV_A, notify_a, NULL);
    register_endpoint("elv-b", URA_ELV_B, notify_b, NULL);
    start_relay();
    handover("7e0b1001-0000-4000-8000-000000000001", URA_ELV_A);
    handover("7e0b1001-0000-4000-8000-000000000002", URA_ELV_B);
    handover("7e0b1001-0000-4000-8000-000000000003", URA_ELV_A);
    handover("7e0b1001-0000-4000-8000-000000000004", URA_ELV_B);
    handover("7e0b1001-0000-4000-8000-000000000005", URA_ELV_A);
    cr_assert(wait_posts(peer_a, 3, mono_ms() + WAIT_MS));
    cr_assert(wait_posts(peer_b, 2, mono_ms() + WAIT_MS));
    for (size_t i = 0; i < 3; i++)
        cr_expect_eq(event_of(peer_a, i), (long)i + 1, "elv-a: 1, 2, 3 in order");
    for (size_t i = 0; i < 2; i++)
        cr_expect_eq(event_of(peer_b, i), (long)i + 1, "elv-b: 1, 2");
    cr_assert(wait_state(ST_NOTIFY_DELIVERED, 5, mono_ms() + WAIT_MS), "all five recorded as delivered");
}

Test(peers, a_receiver_that_is_down_gets_them_when_it_is_back)
{
    register_endpoint("elv-a", URA_ELV_A, notify_a, NULL);
    char err[256];
    cr_assert(peer_set_mode(peer_a, PEER_DOWN, err, sizeof err), "%s", err);
    start_relay();
    handover("7e0b1002-0000-4000-8000-000000000001", URA_ELV_A);
    handover("7e0b1002-0000-4000-8000-000000000002", URA_ELV_A);
    st_notification row;
    cr_assert(wait_attempts(URA_ELV_A, 3, &row, mono_ms() + WAIT_MS), "retried while it is down");
    cr_expect_eq(row.state, ST_NOTIFY_PENDING);
    cr_expect(!strncmp(row.last_error, "unreachable", 11), "%s", row.last_error);
    cr_assert(peer_set_mode(peer_a, PEER_UP, err, sizeof err), "%s", err);
    cr_assert(wait_posts(peer_a, 2, mono_ms() + WAIT_MS), "both arrive once it is back");
    cr_expect_eq(event_of(peer_a, 0), 1);
    cr_expect_eq(event_of(peer_a, 1), 2);
}

Test(peers, a_receiver_answering_500_is_retried)
{
    register_endpoint("elv-a", URA_ELV_A, notify_a, NULL);
    char err[256];
    cr_assert(peer_set_mode(peer_a, PEER_500, err, sizeof err), "%s", err);
    start_relay();
    handover("7e0b1003-0000-4000-8000-000000000001", URA_ELV_A);
    st_notification row;
    cr_assert(wait_attempts(URA_ELV_A, 2, &row, mono_ms() + WAIT_MS));
    cr_expect_eq(row.http_status, 500);
    cr_expect_eq(row.state, ST_NOTIFY_PENDING);
    size_t failed = peer_count_path(peer_a, "/fhir/notify", true);
    cr_expect_geq(failed, 2, "each attempt reached the receiver");
    cr_assert(peer_set_mode(peer_a, PEER_UP, err, sizeof err), "%s", err);
    cr_assert(wait_state(ST_NOTIFY_DELIVERED, 1, mono_ms() + WAIT_MS), "delivered once it answers 2xx");
    cr_expect_eq(event_of(peer_a, peer_count_path(peer_a, "/fhir/notify", true) - 1), 1, "the same event again");
}

Test(peers, a_slow_receiver_holds_up_no_other)
{
    register_endpoint("elv-a", URA_ELV_A, notify_a, NULL);
    register_endpoint("elv-b", URA_ELV_B, notify_b, NULL);
    char err[256];
    cr_assert(peer_set_mode(peer_a, PEER_SLOW, err, sizeof err), "%s", err); /* each answer takes 3 s */
    start_relay();
    handover("7e0b1004-0000-4000-8000-000000000001", URA_ELV_A);
    handover("7e0b1004-0000-4000-8000-000000000002", URA_ELV_A);
    cr_assert(wait_posts(peer_a, 1, mono_ms() + WAIT_MS));
    int64_t first_a = mono_ms(); /* elv-a's second comes only after this one's answer, 3 s from now */
    handover("7e0b1004-0000-4000-8000-000000000003", URA_ELV_B);
    handover("7e0b1004-0000-4000-8000-000000000004", URA_ELV_B);
    cr_assert(wait_posts(peer_b, 2, mono_ms() + WAIT_MS));
    int64_t took = mono_ms() - first_a;
    cr_expect_lt(took, 2500, "elv-b was served while elv-a was slow (%lld ms)", (long long)took);
    cr_expect_eq(peer_count_path(peer_a, "/fhir/notify", true), 1, "elv-a: one at a time, in order");
    cr_assert(wait_posts(peer_a, 2, mono_ms() + WAIT_MS));
    cr_expect_eq(event_of(peer_a, 1), 2);
}

Test(peers, a_foreign_certificate_is_not_delivered_to)
{
    register_endpoint("elv-a", URA_ELV_A, notify_a, NULL);
    char err[256];
    cr_assert(peer_set_mode(peer_a, PEER_FOREIGN, err, sizeof err), "%s", err);
    start_relay();
    handover("7e0b1005-0000-4000-8000-000000000001", URA_ELV_A);
    st_notification row;
    cr_assert(wait_attempts(URA_ELV_A, 2, &row, mono_ms() + WAIT_MS), "a failed attempt, tried again");
    cr_expect_eq(row.state, ST_NOTIFY_PENDING);
    cr_expect(!strncmp(row.last_error, "tls", 3), "the server's certificate is refused: %s", row.last_error);
    cr_expect_eq(peer_count_path(peer_a, "/fhir/notify", true), 0, "nothing reached the impostor");
    rly_counters c;
    rly_counters_get(relay, &c);
    cr_expect_eq(c.delivered, 0);
    cr_expect_geq(c.failed_attempts, 2);
}

/* GET http://127.0.0.1:<ops port>/metrics: the text the operator scrapes. */
static char *scrape_metrics(void)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/metrics", srv_ops_port(rh.srv));
    rh_response r = {0};
    CURL *c = curl_easy_init();
    FILE *mem = NULL;
    char *text = NULL;
    size_t len = 0;
    mem = open_memstream(&text, &len);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, mem);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    r.curl = curl_easy_perform(c);
    curl_easy_cleanup(c);
    fclose(mem);
    cr_assert_eq(r.curl, CURLE_OK, "GET %s failed", url);
    return text;
}

Test(peers, past_the_horizon_a_dead_letter_in_metrics_and_the_task_search)
{
    register_endpoint("elv-a", URA_ELV_A, notify_a, NULL);
    char err[256];
    cr_assert(peer_set_mode(peer_a, PEER_DOWN, err, sizeof err), "%s", err);
    relay_config.horizon_ms = 500;
    start_relay();
    char *task = handover("7e0b1006-0000-4000-8000-000000000001", URA_ELV_A);
    cr_assert(wait_state(ST_NOTIFY_DEAD, 1, mono_ms() + WAIT_MS), "given up after the horizon");
    st_notification *rows;
    cr_assert_eq(queued(URA_ELV_A, &rows), 1);
    cr_expect_eq(rows[0].state, ST_NOTIFY_DEAD);
    cr_expect_geq(rows[0].done_ms - rows[0].created_ms, 500, "not before the horizon");
    cr_expect_geq(rows[0].attempts, 2);
    free(rows);
    /* the gauges follow the commit that recorded the dead letter: scrape until they do, with a deadline */
    char *text = scrape_metrics();
    for (int64_t until = mono_ms() + WAIT_MS;
         !strstr(text, "fhirgw_relay_notifications{state=\"dead\"} 1") && mono_ms() < until; text = scrape_metrics()) {
        free(text);
        usleep(10 * 1000);
    }
    cr_expect_not_null(strstr(text, "fhirgw_relay_notifications{state=\"dead\"} 1"), "%s", text);
    cr_expect_not_null(strstr(text, "fhirgw_relay_dead_letters_total 1"), "%s", text);
    free(text);
    const char *who[] = {"hospital-a", "elv-a"};
    for (int i = 0; i < 2; i++) {
        rh_response r = rh_request(who[i], "GET", "/Task?business-status=" UNDELIVERED, NULL, NULL);
        cr_assert_eq(r.status, 200, "%s", r.body);
        json_object *o = rh_json(&r);
        cr_expect_str_eq(rh_str(o, "entry.0.resource.id"), task, "%s finds the Task: %s", who[i], r.body);
        cr_expect_str_eq(rh_str(o, "entry.0.resource.status"), "requested", "the workflow is untouched");
        json_object_put(o);
        rh_response_free(&r);
    }
    rh_response r = rh_request("hospital-b", "GET", "/Task?business-status=" UNDELIVERED, NULL, NULL);
    json_object *o = rh_json(&r);
    cr_expect_null(rh_str(o, "entry.0"), "others see nothing");
    json_object_put(o);
    rh_response_free(&r);
    cr_expect_eq(patch_status("elv-a", task, "accepted"), 200, "the receiver still moves the Task on");
}

Test(peers, pending_notifications_survive_a_restart)
{
    register_endpoint("elv-a", URA_ELV_A, notify_a, NULL);
    char err[256];
    cr_assert(peer_set_mode(peer_a, PEER_DOWN, err, sizeof err), "%s", err);
    start_relay();
    handover("7e0b1007-0000-4000-8000-000000000001", URA_ELV_A);
    handover("7e0b1007-0000-4000-8000-000000000002", URA_ELV_A);
    st_notification row;
    cr_assert(wait_attempts(URA_ELV_A, 1, &row, mono_ms() + WAIT_MS));
    /* the gateway stops (relay, server, store) and starts again on the same database */
    stop_relay();
    rh_stop_server();
    rh_start_server();
    cr_assert(peer_set_mode(peer_a, PEER_UP, err, sizeof err), "%s", err);
    start_relay();
    cr_assert(wait_posts(peer_a, 2, mono_ms() + WAIT_MS), "both delivered after the restart");
    cr_expect_eq(event_of(peer_a, 0), 1);
    cr_expect_eq(event_of(peer_a, 1), 2);
    handover("7e0b1007-0000-4000-8000-000000000003", URA_ELV_A);
    cr_assert(wait_posts(peer_a, 3, mono_ms() + WAIT_MS));
    cr_expect_eq(event_of(peer_a, 2), 3, "numbering goes on where it was");
}

/* ---- pruning delivered notifications (relay_keep_delivered_ms) ---- */

/* The event numbers of a receiver's queued rows, in order, as "1,2,3". */
static void queued_numbers(const char *ura, char *out, size_t size)
{
    st_notification *rows = NULL;
    size_t n = queued(ura, &rows);
    out[0] = '\0';
    for (size_t i = 0, at = 0; i < n && at < size; i++)
        at += (size_t)snprintf(out + at, size - at, "%s%lld/%d", i ? "," : "", (long long)rows[i].event_number,
                               (int)rows[i].state);
    free(rows);
}

Test(notify, delivered_notifications_are_pruned_after_their_age)
{
    register_endpoint("elv-a", URA_ELV_A, NOTIFY_A, NULL);
    relay_config.keep_delivered_ms = 3000;
    start_relay();
    handover("7e0b000a-0000-4000-8000-000000000001", URA_ELV_A);
    cr_assert(wait_state(ST_NOTIFY_DELIVERED, 1, mono_ms() + WAIT_MS));
    usleep(3200 * 1000); /* event 1 is now delivered longer ago than the age kept */
    handover("7e0b000a-0000-4000-8000-000000000002", URA_ELV_A);
    char numbers[128];
    int64_t deadline = mono_ms() + WAIT_MS;
    do {
        usleep(10 * 1000);
        queued_numbers(URA_ELV_A, numbers, sizeof numbers);
    } while (strcmp(numbers, "2/1") && mono_ms() < deadline);
    cr_expect_str_eq(numbers, "2/1", "event 1 went with the delivery of event 2; 2 stays (its receiver's latest)");
    /* delivered just now: kept; numbering goes on past the pruned ones */
    handover("7e0b000a-0000-4000-8000-000000000003", URA_ELV_A);
    deadline = mono_ms() + WAIT_MS;
    do {
        usleep(10 * 1000);
        queued_numbers(URA_ELV_A, numbers, sizeof numbers);
    } while (strcmp(numbers, "2/1,3/1") && mono_ms() < deadline);
    cr_expect_str_eq(numbers, "2/1,3/1", "a notification delivered within the age stays");
    rh_response r = rh_request("elv-a", "GET", "/Subscription/handover-" URA_ELV_A "/$status", NULL, NULL);
    cr_expect_eq(r.status, 200);
    cr_expect(r.body && strstr(r.body, "\"events-since-subscription-start\",\"valueString\":\"3\""),
              "$status still counts every event: %s", r.body ? r.body : "");
    rh_response_free(&r);
}
