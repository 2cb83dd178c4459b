/*
 * tests/test_subscription.c — the virtual Subscription/handover-<URA> and
 * the R4 Subscriptions Backport $status and $events on it (issue #13 part
 * 4, docs/handover.md "Recovering missed notifications"): a receiver that
 * lost a notification finds it again through $events, exactly as it was
 * sent; nobody else learns that the subscription exists.
 *
 * The gateway is the real server over mutual TLS on loopback
 * (tests/rest_harness.h), the hospital, the ELVs and the insurer its real
 * clients; the relay runs beside it with an in-process deliver function
 * that records each notification (as tests/test_notify.c's suite notify).
 * Every body the server sends is validated with the project's validator
 * (rh_request does, rh_teardown asserts), and so is every recorded
 * notification.
 *
 * Memory: responses, JSON and recorded notifications are freed in each test.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/relay/notify.h"
#include "gateway/util/conformance.h"
#include "tests/handover_body.h"
#include "tests/rest_harness.h"

#define URA_HOSPITAL_A "90000101"
#define URA_ELV_A "90000301"
#define URA_ELV_B "90000302"
#define NOTIFY_A "https://127.0.0.1:1/notify-elv-a"
#define SUB_A "/Subscription/handover-" URA_ELV_A
#define WAIT_MS 20000 /* deadline of every wait: far above what any step needs */

/* ---- the receiver: every notification body, in the order delivered ---- */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t grew;
    char *bodies[16];
    size_t count;
} rx = {.lock = PTHREAD_MUTEX_INITIALIZER, .grew = PTHREAD_COND_INITIALIZER};

static bool deliver(void *arg, const rly_post *post, rly_answer *out)
{
    (void)arg;
    pthread_mutex_lock(&rx.lock);
    if (rx.count < 16 && post->body)
        rx.bodies[rx.count++] = strndup(post->body, post->len);
    pthread_cond_broadcast(&rx.grew);
    pthread_mutex_unlock(&rx.lock);
    out->status = 202;
    return true;
}

static bool wait_notifications(size_t n)
{
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&rx.lock);
    int rc = 0;
    while (rx.count < n && rc == 0)
        rc = pthread_cond_timedwait(&rx.grew, &rx.lock, &end);
    bool ok = rx.count >= n;
    pthread_mutex_unlock(&rx.lock);
    return ok;
}

/* ---- the gateway with its relay ---- */

static rly_relay *relay;
static void setup(void)
{
    rh_setup_with_guide(NULL); /* $handover checks the documents against the guide's handover profiles */
    rh_attest_agreements("elv-a", URA_ELV_A, "2099-12-31");
    rh_register_endpoint("elv-a", URA_ELV_A, NOTIFY_A, NULL);
    rly_config c = {.store = rh.store,
                    .base_url = "https://127.0.0.1",
                    .deliver = deliver,
                    .workers = 2,
                    .base_delay_ms = 40,
                    .max_delay_ms = 200,
                    .horizon_ms = 60000,
                    .poll_ms = 25,
                    .batch_max = 1}; /* the tests compare the k-th notification with event k */
    char err[256];
    relay = rly_start(&c, err, sizeof err);
    cr_assert_not_null(relay, "%s", err);
}

static void teardown(void)
{
    rly_stop(relay);
    relay = NULL;
    rh_teardown();
    pthread_mutex_lock(&rx.lock);
    for (size_t i = 0; i < rx.count; i++)
        free(rx.bodies[i]);
    rx.count = 0;
    pthread_mutex_unlock(&rx.lock);
}

TestSuite(subscription, .init = setup, .fini = teardown, .timeout = 120);

/* ---- helpers ---- */

/* $handover from hospital-a to elv-a, with an advance notice: the Task (id into task). */
static void handover(const char *ident, char task[80])
{
    char notice[96];
    snprintf(notice, sizeof notice, "%s", ident);
    notice[0] = notice[0] == 'a' ? 'b' : 'a';
    char *body = hb_parameters(ident, notice, URA_ELV_A);
    rh_response r = rh_request("hospital-a", "POST", "/$handover", body, NULL);
    free(body);
    cr_assert_eq(r.status, 201, "$handover: %ld %s", r.status, r.body);
    json_object *o = rh_json(&r);
    snprintf(task, 80, "%s", rh_str(o, "id"));
    json_object_put(o);
    rh_response_free(&r);
}

static json_object *get_json(const char *who, const char *method, const char *path, const char *body, long want)
{
    const char *extra[] = {"Content-Type: application/fhir+json", NULL};
    rh_response r = rh_request(who, method, path, body, body ? extra : NULL);
    cr_assert_eq(r.status, want, "%s %s by %s: %ld %s", method, path, who, r.status, r.body);
    json_object *o = rh_json(&r);
    rh_response_free(&r);
    return o;
}

/* The named parameter of a Parameters (NULL when absent). */
static json_object *parameter(json_object *params, const char *name)
{
    return rh_named(params, "parameter", name);
}

static const char *value_of(json_object *params, const char *name, const char *member)
{
    json_object *p = parameter(params, name);
    return p ? json_object_get_string(json_object_object_get(p, member)) : NULL;
}

/* The notification-events of a SubscriptionStatus, in order. */
static size_t events_of(json_object *params, json_object **out, size_t max)
{
    json_object *list = json_object_object_get(params, "parameter");
    size_t n = 0;
    for (size_t i = 0; i < json_object_array_length(list) && n < max; i++) {
        json_object *p = json_object_array_get_idx(list, i);
        if (!strcmp(json_object_get_string(json_object_object_get(p, "name")), "notification-event"))
            out[n++] = p;
    }
    return n;
}

/* Three handovers to elv-a, all three notifications delivered (event numbers 1, 2, 3). */
static void three_handovers(char tasks[3][80])
{
    handover("5b0c0001-0000-4000-8000-000000000001", tasks[0]);
    handover("5b0c0001-0000-4000-8000-000000000002", tasks[1]);
    handover("5b0c0001-0000-4000-8000-000000000003", tasks[2]);
    cr_assert(wait_notifications(3), "elv-a got its three notifications");
}

/* ---- the tests ---- */

Test(subscription, the_receiver_reads_its_virtual_subscription)
{
    json_object *o = get_json("elv-a", "GET", SUB_A, NULL, 200);
    cr_expect_str_eq(rh_str(o, "resourceType"), "Subscription");
    cr_expect_str_eq(rh_str(o, "id"), "handover-" URA_ELV_A);
    cr_expect_str_eq(rh_str(o, "status"), "active");
    cr_expect_str_eq(rh_str(o, "criteria"), RLY_TOPIC, "the R4 form: the topic in criteria");
    cr_expect_str_eq(rh_str(o, "channel.type"), "rest-hook");
    cr_expect_str_eq(rh_str(o, "channel.endpoint"), NOTIFY_A, "its current notification Endpoint");
    cr_expect_str_eq(rh_str(o, "channel.payload"), "application/fhir+json");
    cr_expect_str_eq(rh_str(o, "channel._payload.extension.0.valueCode"), "id-only");
    json_object_put(o);
    /* elv-b has no Endpoint: its subscription is off, and says why */
    o = get_json("elv-b", "GET", "/Subscription/handover-" URA_ELV_B, NULL, 200);
    cr_expect_str_eq(rh_str(o, "status"), "off");
    cr_expect_null(rh_str(o, "channel.endpoint"));
    json_object_put(o);
    rh_expect_valid_bodies();
}

Test(subscription, status_counts_the_events_since_the_start)
{
    json_object *o = get_json("elv-a", "GET", SUB_A "/$status", NULL, 200);
    cr_expect_str_eq(rh_str(o, "type"), "searchset", "the operation's definition: a searchset");
    cr_expect_str_eq(rh_str(o, "entry.0.search.mode"), "match");
    json_object *first = json_object_object_get(json_object_array_get_idx(json_object_object_get(o, "entry"), 0),
                                                "resource");
    cr_expect_str_eq(value_of(first, "events-since-subscription-start", "valueString"), "0", "no events yet");
    json_object_put(o);
    char tasks[3][80];
    three_handovers(tasks);
    const char *methods[] = {"GET", "POST"};
    for (int m = 0; m < 2; m++) {
        o = get_json("elv-a", methods[m], SUB_A "/$status", m ? "{\"resourceType\":\"Parameters\"}" : NULL, 200);
        json_object *status = json_object_object_get(json_object_array_get_idx(json_object_object_get(o, "entry"), 0),
                                                     "resource");
        cr_expect_str_eq(value_of(status, "type", "valueCode"), "query-status");
        cr_expect_str_eq(value_of(status, "status", "valueCode"), "active");
        cr_expect_str_eq(value_of(status, "events-since-subscription-start", "valueString"), "3");
        cr_expect_str_eq(rh_str(status, "parameter.0.valueReference.reference"),
                         "https://127.0.0.1/Subscription/handover-" URA_ELV_A);
        json_object *events[4];
        cr_expect_eq(events_of(status, events, 4), 0, "$status names no events");
        json_object_put(o);
    }
    rh_expect_valid_bodies();
}

/* The notification-event of a recorded notification and of $events are the same, part for part. */
static void expect_same_event(json_object *recovered, const char *notification)
{
    json_object *sent = json_tokener_parse(notification);
    json_object *sent_status =
        json_object_object_get(json_object_array_get_idx(json_object_object_get(sent, "entry"), 0), "resource");
    json_object *sent_event[1] = {NULL};
    cr_assert_eq(events_of(sent_status, sent_event, 1), 1);
    cr_expect_str_eq(json_object_to_json_string(recovered), json_object_to_json_string(sent_event[0]),
                     "recovered as it was sent");
    json_object_put(sent);
}

Test(subscription, events_recovers_a_lost_notification_as_it_was_sent)
{
    char tasks[3][80];
    three_handovers(tasks);
    char msg[600];
    for (size_t i = 0; i < 3; i++)
        cr_expect_eq(rh_validate_text(rx.bodies[i], strlen(rx.bodies[i]), msg, sizeof msg), 0, "%s", msg);
    /* elv-a saw 1 and 3 (it dropped 2 after answering): it asks for 2..3 */
    json_object *o = get_json("elv-a", "GET", SUB_A "/$events?eventsSinceNumber=2&eventsUntilNumber=3", NULL, 200);
    cr_expect_str_eq(rh_str(o, "type"), "history");
    json_object *entries = json_object_object_get(o, "entry");
    cr_assert_eq(json_object_array_length(entries), 3, "the status and the two foci");
    json_object *status = json_object_object_get(json_object_array_get_idx(entries, 0), "resource");
    cr_expect_str_eq(value_of(status, "type", "valueCode"), "query-event");
    cr_expect_str_eq(value_of(status, "events-since-subscription-start", "valueString"), "3");
    json_object *events[4];
    cr_assert_eq(events_of(status, events, 4), 2);
    expect_same_event(events[0], rx.bodies[1]);
    expect_same_event(events[1], rx.bodies[2]);
    char want[160];
    snprintf(want, sizeof want, "https://127.0.0.1/Task/%s", tasks[1]);
    cr_expect_str_eq(rh_str(o, "entry.1.fullUrl"), want, "the lost one's focus: the second Task");
    cr_expect_null(rh_str(o, "link.1"), "all of the range: no next page");
    json_object_put(o);
    /* the same by POST with a Parameters; an open end runs to the latest */
    o = get_json("elv-a", "POST", SUB_A "/$events", NULL, 200);
    json_object_put(o);
    o = get_json("elv-a", "POST", SUB_A "/$events",
                 "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"eventsSinceNumber\",\"valueString\":"
                 "\"2\"},{\"name\":\"content\",\"valueCode\":\"id-only\"}]}",
                 200);
    status = json_object_object_get(json_object_array_get_idx(json_object_object_get(o, "entry"), 0), "resource");
    cr_expect_eq(events_of(status, events, 4), 2, "2 and 3");
    json_object_put(o);
    /* past the latest: none, and the status still counts 3 */
    o = get_json("elv-a", "GET", SUB_A "/$events?eventsSinceNumber=4", NULL, 200);
    status = json_object_object_get(json_object_array_get_idx(json_object_object_get(o, "entry"), 0), "resource");
    cr_expect_eq(events_of(status, events, 4), 0);
    cr_expect_str_eq(value_of(status, "events-since-subscription-start", "valueString"), "3");
    json_object_put(o);
    rh_expect_valid_bodies();
}

Test(subscription, nobody_else_learns_that_it_exists)
{
    char tasks[3][80];
    three_handovers(tasks);
    const char *others[] = {"elv-b", "hospital-a", "insurer"};
    const char *paths[] = {SUB_A, SUB_A "/$status", SUB_A "/$events?eventsSinceNumber=1",
                           "/Subscription/handover-99999999", "/Subscription/other"};
    for (size_t w = 0; w < 3; w++)
        for (size_t p = 0; p < 5; p++) {
            rh_response r = rh_request(others[w], "GET", paths[p], NULL, NULL);
            rh_expect_outcome(&r, 404, "not-found");
            cr_expect_null(strstr(r.body, "Task/"), "%s learns nothing from %s", others[w], paths[p]);
            rh_response_free(&r);
        }
    /* the insurer's own URA is no subscription either: insurers are not notified */
    rh_response r = rh_request("insurer", "GET", "/Subscription/handover-90000501", NULL, NULL);
    rh_expect_outcome(&r, 404, "not-found");
    rh_response_free(&r);
    /* and no Subscription is written, searched or listed by anyone */
    r = rh_request("elv-a", "GET", "/Subscription?status=active", NULL, NULL);
    cr_expect_eq(r.status, 405);
    rh_response_free(&r);
    r = rh_request("elv-a", "PUT", SUB_A, "{\"resourceType\":\"Subscription\"}", NULL);
    cr_expect_eq(r.status, 405);
    rh_response_free(&r);
    rh_expect_valid_bodies();
}

Test(subscription, bad_ranges_are_400_at_the_parameter)
{
    struct {
        const char *query, *where;
    } bad[] = {
        {"eventsSinceNumber=0", "eventsSinceNumber"},
        {"eventsSinceNumber=abc", "eventsSinceNumber"},
        {"eventsSinceNumber=-1", "eventsSinceNumber"},
        {"eventsUntilNumber=1x", "eventsUntilNumber"},
        {"eventsSinceNumber=5&eventsUntilNumber=2", "eventsUntilNumber"},
        {"eventsSinceNumber=9999999999999999999", "eventsSinceNumber"},
        {"content=everything", "content"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char path[160];
        snprintf(path, sizeof path, SUB_A "/$events?%s", bad[i].query);
        rh_response r = rh_request("elv-a", "GET", path, NULL, NULL);
        rh_expect_outcome(&r, 400, "invalid");
        json_object *o = rh_json(&r);
        cr_expect_str_eq(rh_str(o, "issue.0.expression.0"), bad[i].where, "%s", bad[i].query);
        json_object_put(o);
        rh_response_free(&r);
    }
    const char *extra[] = {"Content-Type: application/fhir+json", NULL};
    rh_response r = rh_request("elv-a", "POST", SUB_A "/$events",
                               "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"eventsUntilNumber\","
                               "\"valueString\":\"zero\"}]}",
                               extra);
    rh_expect_outcome(&r, 400, "invalid");
    json_object *o = rh_json(&r);
    cr_expect_str_eq(rh_str(o, "issue.0.expression.0"), "Parameters.parameter[0].valueString");
    json_object_put(o);
    rh_response_free(&r);
    r = rh_request("elv-a", "POST", SUB_A "/$events", "{\"resourceType\":\"Patient\"}", extra);
    rh_expect_outcome(&r, 400, "invalid");
    rh_response_free(&r);
    rh_expect_valid_bodies();
}

Test(subscription, every_call_is_audited)
{
    rh_response r = rh_request("elv-a", "GET", SUB_A "/$status", NULL, NULL);
    rh_response_free(&r);
    r = rh_request("elv-b", "GET", SUB_A, NULL, NULL);
    rh_response_free(&r);
    st_audit_row *rows = NULL;
    size_t count = 0;
    st_error err;
    st_audit_query q = {.count = 100000};
    cr_assert_eq(st_audit_list(rh.store, &q, &rows, &count, &err), ST_OK, "%s", err.message);
    size_t allowed = 0, hidden = 0;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(rows[i].entry.type, "Subscription"))
            continue;
        allowed += !strcmp(rows[i].entry.ura, URA_ELV_A) && !strcmp(rows[i].entry.decision, "allowed") &&
                   rows[i].entry.status == 200;
        hidden += !strcmp(rows[i].entry.ura, URA_ELV_B) && !strcmp(rows[i].entry.decision, "hidden") &&
                  rows[i].entry.status == 404 && !strcmp(rows[i].entry.id, "handover-" URA_ELV_A);
    }
    free(rows);
    cr_expect_eq(allowed, 1, "elv-a's $status");
    cr_expect_eq(hidden, 1, "elv-b's refused read");
}

Test(subscription, the_capability_statement_says_read_status_and_events_only)
{
    json_object *cs = get_json("elv-a", "GET", "/metadata", NULL, 200);
    json_object *resources = json_object_object_get(json_object_array_get_idx(json_object_object_get(cs, "rest"), 0),
                                                    "resource");
    json_object *sub = NULL;
    for (size_t i = 0; i < json_object_array_length(resources) && !sub; i++) {
        json_object *r = json_object_array_get_idx(resources, i);
        if (!strcmp(rh_str(r, "type"), "Subscription"))
            sub = r;
    }
    cr_assert_not_null(sub);
    json_object *interactions = json_object_object_get(sub, "interaction");
    cr_assert_eq(json_object_array_length(interactions), 1, "read only: nothing is stored");
    cr_expect_str_eq(rh_str(sub, "interaction.0.code"), "read");
    cr_expect_null(json_object_object_get(sub, "searchParam"));
    json_object *ops = json_object_object_get(sub, "operation");
    cr_assert_eq(json_object_array_length(ops), 3, "$validate, $status, $events");
    cr_expect_str_eq(rh_str(sub, "operation.1.name"), "status");
    cr_expect_str_eq(rh_str(sub, "operation.1.definition"),
                     "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status");
    cr_expect_str_eq(rh_str(sub, "operation.2.name"), "events");
    cr_expect_str_eq(rh_str(sub, "operation.2.definition"),
                     "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events");
    json_object_put(cs);
    rh_expect_valid_bodies();
}

Test(subscription, a_long_range_is_paged_by_a_next_link)
{
    /* 1001 events for elv-a, queued straight into the store (one Task write reported 1001 times) */
    enum { N = 1001 };
    st_op *ops = calloc(N + 1, sizeof *ops);
    st_op_result *results = calloc(N + 1, sizeof *results);
    st_notify n = {.receiver = URA_ELV_A, .event = "created", .of_op = 0};
    ops[0] = (st_op){.kind = ST_OP_CREATE,
                     .type = "Task",
                     .id = "paged",
                     .owner = URA_HOSPITAL_A,
                     .json = "{\"resourceType\":\"Task\",\"status\":\"requested\",\"intent\":\"order\"}"};
    for (size_t i = 1; i <= N; i++)
        ops[i] = (st_op){.kind = ST_OP_NOTIFY, .notify = &n};
    cr_assert_eq(st_submit_wait(rh.store, ops, N + 1, results), ST_OK);
    free(ops);
    free(results);
    json_object *o = get_json("elv-a", "GET", SUB_A "/$events", NULL, 200);
    json_object *status = json_object_object_get(json_object_array_get_idx(json_object_object_get(o, "entry"), 0),
                                                 "resource");
    json_object *events[4];
    cr_expect_eq(json_object_array_length(json_object_object_get(o, "entry")), 1 + 1000, "1000 events at most");
    cr_expect_str_eq(value_of(status, "events-since-subscription-start", "valueString"), "1001");
    cr_expect_str_eq(rh_str(o, "link.1.relation"), "next");
    cr_expect_str_eq(rh_str(o, "link.1.url"),
                     "https://127.0.0.1/Subscription/handover-" URA_ELV_A "/$events?eventsSinceNumber=1001");
    json_object_put(o);
    o = get_json("elv-a", "GET", SUB_A "/$events?eventsSinceNumber=1001", NULL, 200);
    status = json_object_object_get(json_object_array_get_idx(json_object_object_get(o, "entry"), 0), "resource");
    cr_expect_eq(events_of(status, events, 4), 1, "the rest: event 1001");
    cr_expect_null(rh_str(o, "link.1"), "and no further page");
    json_object_put(o);
    rh_expect_valid_bodies();
}

/* ---- $events read while notifications are being committed ---- */

#define RACING_HANDOVERS 24
#define EVENTS_MAX 256 /* far above the events the racing handovers queue */

/* The sender's side of the race: handovers to elv-a, one after another, on a thread of their own (no Criterion
 * there: the statuses are checked after the join). */
typedef struct racing_sender {
    long status[RACING_HANDOVERS];
    atomic_bool done;
} racing_sender;

static void *send_racing_handovers(void *arg)
{
    racing_sender *s = arg;
    for (int i = 0; i < RACING_HANDOVERS; i++) {
        char ident[64], notice[64];
        snprintf(ident, sizeof ident, "5b0c0002-0000-4000-8000-%012d", i + 1);
        snprintf(notice, sizeof notice, "ab0c0002-0000-4000-8000-%012d", i + 1);
        char *body = hb_parameters(ident, notice, URA_ELV_A);
        rh_response r = rh_request("hospital-a", "POST", "/$handover", body, NULL);
        free(body);
        s->status[i] = r.status;
        rh_response_free(&r);
    }
    atomic_store(&s->done, true);
    return NULL;
}

/* The event numbers of a notification-event list, in order (-1 where a number is missing or not a number). */
static void numbers_of(json_object **events, size_t n, long *out)
{
    for (size_t i = 0; i < n; i++) {
        const char *text = json_object_get_string(
            json_object_object_get(rh_named(events[i], "part", "event-number"), "valueString"));
        char *end = NULL;
        long v = text ? strtol(text, &end, 10) : -1;
        out[i] = text && *text && !*end ? v : -1;
    }
}

/* One $events read from `since` on: the event numbers it names (count into *n) and the count the status gives. */
static long read_events(long since, long *numbers, size_t *n)
{
    char path[128];
    snprintf(path, sizeof path, SUB_A "/$events?eventsSinceNumber=%ld", since);
    json_object *o = get_json("elv-a", "GET", path, NULL, 200);
    json_object *status = json_object_object_get(json_object_array_get_idx(json_object_object_get(o, "entry"), 0),
                                                 "resource");
    json_object *events[EVENTS_MAX];
    *n = events_of(status, events, EVENTS_MAX);
    numbers_of(events, *n, numbers);
    const char *count = value_of(status, "events-since-subscription-start", "valueString");
    long total = count ? atol(count) : -1;
    json_object_put(o);
    return total;
}

/*
 * The receiver reads $events over and over while the sender's handovers commit their notifications: each answer
 * names the events from `since` on without a gap, in order, and the status counts at least the last; a read from
 * 1 never names fewer events than an earlier one did, and a read from the highest number seen so far starts at
 * that number (an event once seen is never missed). At the end the reads name exactly what the store queued.
 */
Test(subscription, events_read_while_notifications_commit_have_no_gaps)
{
    racing_sender sender = {.done = false};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, send_racing_handovers, &sender), 0);
    long numbers[EVENTS_MAX], highest = 0;
    size_t reads = 0, partial = 0;
    bool last = false;
    while (!last) {
        last = atomic_load(&sender.done); /* one more read after the sender is done: it sees all */
        bool from_one = reads % 2 == 0 || highest == 0;
        long since = from_one ? 1 : highest;
        size_t n;
        long total = read_events(since, numbers, &n);
        reads++;
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(numbers[i], since + (long)i, "read %zu from %ld: event %zu is %ld", reads, since, i,
                         numbers[i]);
        cr_assert_geq(since + (long)n - 1, highest, "read %zu from %ld misses event %ld seen before (it names %zu)",
                      reads, since, highest, n);
        cr_assert_geq(total, since + (long)n - 1, "read %zu: the status counts %ld, fewer than it names", reads, total);
        if (n && numbers[n - 1] > highest)
            highest = numbers[n - 1];
        partial += !last && n > 0;
    }
    pthread_join(t, NULL);
    rh_expect_valid_bodies();
    for (int i = 0; i < RACING_HANDOVERS; i++)
        cr_expect_eq(sender.status[i], 201, "handover %d: %ld", i + 1, sender.status[i]);
    st_notification *rows = NULL;
    size_t count = 0;
    st_error err;
    st_notify_query q = {.receiver = URA_ELV_A};
    cr_assert_eq(st_notify_list(rh.store, &q, &rows, &count, &err), ST_OK, "%s", err.message);
    cr_expect_geq(count, RACING_HANDOVERS, "a notification per handover at least");
    for (size_t i = 0; i < count; i++)
        cr_expect_eq(rows[i].event_number, (int64_t)i + 1, "the queue numbers elv-a's events 1, 2, ...");
    free(rows);
    cr_expect_eq(highest, (long)count, "the last read names every event queued");
    cr_log_info("%zu reads of $events during %d handovers, %zu of them before the last commit", reads, RACING_HANDOVERS,
                partial);
}
