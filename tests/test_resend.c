/*
 * tests/test_resend.c — a sender re-sends a handover (the same
 * Bundle.identifier) while the relay is in the middle of delivering a batch
 * of notifications to a slow receiver: the resubmission finds the first Task
 * (200, docs/handover.md "Idempotency"), queues no notification ("a
 * resubmission that finds the existing Task notifies nobody"), and the
 * receiver gets each event exactly once, the batch in flight included.
 *
 * The gateway is the real server over mutual TLS on loopback with the guide
 * (tests/rest_harness.h); the receiver elv-a is a real HTTPS endpoint
 * (tests/peer.h) that holds each answer back; the relay delivers to it with
 * the gateway's outbound client, batches as configured by default.
 *
 * Memory: responses, JSON and the peer's records are freed in each test; the
 * peer, the client and the relay in teardown.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway/relay/deliver.h"
#include "gateway/relay/notify.h"
#include "tests/handover_body.h"
#include "tests/peer.h"
#include "tests/rest_harness.h"

#define URA_ELV_A "90000301"
#define WAIT_MS 30000 /* deadline of every wait: far above what any step needs */
#define SLOW_MS 3000  /* how long the receiver holds each answer back: far above four $handover requests */
#define EVENTS_MAX 16

static peer *receiver;
static ob_client *outbound;
static rly_relay *relay;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void setup(void)
{
    rh_setup_with_guide(NULL); /* $handover checks the documents against the guide's handover profiles */
    rh_attest_agreements("elv-a", URA_ELV_A, "2099-12-31");
    char pki[300], err[256];
    snprintf(pki, sizeof pki, "%s/pki", rh.dir);
    peer_options po = {.pki_dir = pki, .slow_ms = SLOW_MS};
    receiver = peer_start(&po, err, sizeof err);
    cr_assert_not_null(receiver, "%s", err);
    char url[160];
    snprintf(url, sizeof url, "%s/notify", peer_base(receiver));
    rh_register_endpoint("elv-a", URA_ELV_A, url, NULL);
    ob_config oc = ob_config_default();
    oc.retries = 0; /* as rly_outbound_config: the relay retries */
    oc.timeout_ms = 4 * SLOW_MS;
    oc.connect_timeout_ms = 2000;
    outbound = rh_outbound_client(oc);
}

static void teardown(void)
{
    rly_stop(relay); /* before the client and the peer it talks to */
    relay = NULL;
    peer_free(receiver);
    ob_client_free(outbound);
    rh_teardown();
}

TestSuite(resend, .init = setup, .fini = teardown, .timeout = 120);

/* The relay as `serve` runs it, delivering through the outbound client; batches of the default size. */
static void start_relay(void)
{
    rly_config c = {.store = rh.store,
                    .base_url = "https://127.0.0.1",
                    .deliver = rly_deliver_outbound,
                    .deliver_arg = outbound,
                    .on_dead = rest_handover_mark_undelivered,
                    .on_dead_arg = rh.app,
                    .workers = 2,
                    .base_delay_ms = 40,
                    .max_delay_ms = 200,
                    .horizon_ms = 60000,
                    .poll_ms = 25};
    char err[256];
    relay = rly_start(&c, err, sizeof err);
    cr_assert_not_null(relay, "%s", err);
}

/* $handover from hospital-a to elv-a with an advance notice: the status, and the Task's id into task. */
static long send_handover(const char *ident, char task[80])
{
    char notice[64];
    snprintf(notice, sizeof notice, "%s", ident);
    notice[0] = notice[0] == 'a' ? 'b' : 'a'; /* the advance notice's own uuid */
    char *body = hb_parameters(ident, notice, URA_ELV_A);
    cr_assert_not_null(body);
    rh_response r = rh_request("hospital-a", "POST", "/$handover", body, NULL);
    free(body);
    long status = r.status;
    cr_assert(status == 201 || status == 200, "$handover: %ld %s", status, r.body);
    json_object *o = rh_json(&r);
    snprintf(task, 80, "%s", rh_str(o, "id"));
    json_object_put(o);
    rh_response_free(&r);
    return status;
}

/* The Tasks whose identifier is the handover's (hospital-a searches). */
static long count_tasks(const char *ident)
{
    char path[256];
    snprintf(path, sizeof path, "/Task?identifier=" HB_IDENT_SYSTEM "%%7Curn:uuid:%s", ident);
    rh_response r = rh_request("hospital-a", "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_object *o = rh_json(&r);
    long n = json_object_get_int(json_object_object_get(o, "total"));
    json_object_put(o);
    rh_response_free(&r);
    return n;
}

/* The receiver's POSTs so far (the peer records each at its arrival). */
static size_t posts(void)
{
    return peer_count_path(receiver, "/fhir/notify", true);
}

static bool wait_posts(size_t n)
{
    for (int64_t end = mono_ms() + WAIT_MS; posts() < n;) {
        if (mono_ms() >= end)
            return false;
        usleep(10 * 1000); /* the peer has no wait of its own: look again shortly */
    }
    return true;
}

typedef struct delivered {
    long number;
    char task[80]; /* the focus's Task id */
} delivered;

/* Every notification-event of every POST the receiver got, in arrival order; their count. Each body is valid. */
static size_t events_received(delivered *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < peer_request_count(receiver); i++) {
        peer_request r;
        if (!peer_request_at(receiver, i, &r) || strcmp(r.method, "POST"))
            continue;
        char msg[600];
        cr_expect_eq(rh_validate_text(r.body, r.body_len, msg, sizeof msg), 0, "invalid notification: %s", msg);
        json_object *o = json_tokener_parse(r.body);
        cr_assert_not_null(o, "%s", r.body);
        json_object *params =
            json_object_object_get(json_object_object_get(json_object_array_get_idx(json_object_object_get(o, "entry"),
                                                                                    0),
                                                          "resource"),
                                   "parameter");
        for (size_t p = 0; p < json_object_array_length(params); p++) {
            json_object *param = json_object_array_get_idx(params, p);
            if (strcmp(json_object_get_string(json_object_object_get(param, "name")), "notification-event"))
                continue;
            cr_assert_lt(n, max, "more events than the test sent handovers");
            const char *number = json_object_get_string(
                json_object_object_get(rh_named(param, "part", "event-number"), "valueString"));
            json_object *focus = json_object_object_get(rh_named(param, "part", "focus"), "valueReference");
            const char *reference = json_object_get_string(json_object_object_get(focus, "reference"));
            cr_assert(number && reference, "an event names its number and focus: %s", json_object_get_string(param));
            const char *task = strstr(reference, "Task/");
            cr_assert_not_null(task, "the focus is a Task: %s", reference);
            out[n].number = atol(number);
            snprintf(out[n].task, sizeof out[n].task, "%s", task + 5);
            n++;
        }
        json_object_put(o);
    }
    return n;
}

/*
 * Three handovers queued before the relay runs go out as one batch; while the slow receiver holds that POST,
 * hospital-a re-sends the second (same identifier) and sends a fourth, then re-sends the fourth: each re-send is
 * answered 200 with the first Task, and in the end there is one Task per handover, one queued notification per
 * Task, and the receiver got events 1..4 exactly once each, each about its own Task.
 */
Test(resend, a_handover_resent_during_a_batch_delivery_is_delivered_once)
{
    const char *idents[4] = {"7e5e0001-0000-4000-8000-000000000001", "7e5e0001-0000-4000-8000-000000000002",
                             "7e5e0001-0000-4000-8000-000000000003", "7e5e0001-0000-4000-8000-000000000004"};
    char task[4][80], again[80];
    char err[256];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(send_handover(idents[i], task[i]), 201);
    cr_assert(peer_set_mode(receiver, PEER_SLOW, err, sizeof err), "%s", err);
    start_relay();
    cr_assert(wait_posts(1), "the relay sent its first batch");
    /* the batch is in flight (the receiver holds its answer SLOW_MS): the sender re-sends */
    cr_expect_eq(send_handover(idents[1], again), 200, "a re-send finds the first Task");
    cr_expect_str_eq(again, task[1]);
    cr_assert_eq(send_handover(idents[3], task[3]), 201);
    cr_expect_eq(send_handover(idents[3], again), 200);
    cr_expect_str_eq(again, task[3]);
    rly_counters c;
    rly_counters_get(relay, &c);
    /* the relay counts an attempt when it has its answer: none yet, and one POST at the receiver */
    cr_assert(c.attempts == 0 && posts() == 1,
              "the re-sends came while the first batch was in flight (attempts done %llu, POSTs %zu)",
              (unsigned long long)c.attempts, posts());
    cr_assert(rh_wait_notify_state(ST_NOTIFY_DELIVERED, 4, WAIT_MS), "all four delivered");
    /* a relay that queued a notification for a re-send would send it now: give it many polls to do so */
    usleep(20 * 25 * 1000);
    cr_assert(rh_wait_notify_state(ST_NOTIFY_DELIVERED, 4, WAIT_MS));

    for (int i = 0; i < 4; i++)
        cr_expect_eq(count_tasks(idents[i]), 1, "handover %d: one Task", i + 1);
    st_notification *rows = NULL;
    size_t count = 0;
    st_error serr;
    st_notify_query q = {.receiver = URA_ELV_A};
    cr_assert_eq(st_notify_list(rh.store, &q, &rows, &count, &serr), ST_OK, "%s", serr.message);
    cr_expect_eq(count, 4, "one notification queued per Task, none for a re-send: %zu", count);
    free(rows);
    delivered got[EVENTS_MAX];
    size_t n = events_received(got, EVENTS_MAX);
    cr_expect_eq(n, 4, "each event reached the receiver once: %zu events in %zu POSTs", n, posts());
    for (size_t i = 0; i < n && i < 4; i++) {
        cr_expect_eq(got[i].number, (long)i + 1, "in order, no event twice: event %zu is %ld", i, got[i].number);
        cr_expect_str_eq(got[i].task, task[i], "event %ld is about handover %zu's Task", got[i].number, i + 1);
    }
    rh_expect_valid_bodies();
}
