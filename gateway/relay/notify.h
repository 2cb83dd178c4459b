/*
 * gateway/relay/notify.h — delivery of handover notifications (prefix rly_;
 * the protocol is docs/handover.md, section "Notifications").
 *
 * The REST layer queues a notification in the store (ST_OP_NOTIFY) in the
 * same transaction as the Task write it reports, numbered per receiver on
 * the commit thread. This module delivers the queue:
 *
 *   - where: the receiver's notification Endpoint, looked up at every
 *     attempt from its directory entry (Organization/ura-<URA>.endpoint ->
 *     an Endpoint it owns, status active, https address, connectionType
 *     hl7-fhir-rest or the gateway's handover-notification code). Its
 *     payloadType chooses the body: an R4 Subscriptions Backport id-only
 *     notification Bundle (the default), or eOverdracht STU3's empty POST to
 *     <address>/<Task id> (payloadType eoverdracht-empty-post);
 *   - how: through rly_deliver_fn (gateway/relay/deliver.h adapts the
 *     gateway's one outbound client, gateway/net/outbound.h; tests pass a
 *     stub). A 2xx marks it delivered. Anything else is retried with
 *     exponential backoff and jitter (base_delay_ms doubling up to
 *     max_delay_ms, each delay drawn from its upper half) until horizon_ms
 *     after the event; the attempt after that is the last, and the
 *     notification is dead (a dead letter): counted in /metrics and handed
 *     to on_dead, which marks the Task (rest.h rest_handover_mark_undelivered).
 *   - order and isolation: a receiver gets its notifications in
 *     event-number order, one attempt at a time (the oldest pending one
 *     first, with those pending behind it in the same Bundle, up to a batch;
 *     the rest wait), while `workers` threads serve different receivers at once:
 *     a receiver that is down or slow holds up only itself (at most
 *     `workers` slow receivers at once can each hold a thread for one
 *     attempt's timeout). The outbound client blocks per call, so a small
 *     pool, not libcurl's multi interface.
 *   - durability: the state is in the store: a restart resumes every pending
 *     notification where it was (delivery is at least once: a crash between
 *     the receiver's 2xx and the commit of "delivered" sends it again, with
 *     the same event number).
 *
 * Time: config.clock_ms (epoch ms) decides what is due and when the horizon
 * has passed, so tests may move it; waiting uses real time, at most poll_ms
 * at a stretch, and rly_wake cuts a wait short when notifications arrive.
 *
 * Threads: rly_start starts the workers; rly_wake may be called from any
 * thread (the store's on_commit callback); rly_stop waits for attempts in
 * flight and joins them. deliver and on_dead run on the workers.
 *
 * Memory: the relay copies its config (the strings it points to, the store,
 * the registry, must outlive it). rly_bundle returns malloc'd text.
 */
#ifndef GATEWAY_RELAY_NOTIFY_H
#define GATEWAY_RELAY_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/http/metrics.h"
#include "gateway/store/store.h"

#define RLY_URL_MAX 512
#define RLY_ERROR_MAX 320 /* an outbound error kind and its message (outbound_message_max) */

/* The code systems the gateway defines for Endpoints (docs/handover.md). */
#define RLY_CONNECTION_SYSTEM "https://fhirgw.nl/fhir/CodeSystem/endpoint-connection-type"
#define RLY_CONNECTION_CODE "handover-notification"
#define RLY_PAYLOAD_SYSTEM "https://fhirgw.nl/fhir/CodeSystem/notification-payload"
#define RLY_PAYLOAD_EMPTY_POST "eoverdracht-empty-post"
#define RLY_TOPIC "https://fhirgw.nl/fhir/SubscriptionTopic/handover"

typedef enum rly_payload {
    RLY_BACKPORT_ID_ONLY, /* POST <address>: the Subscriptions Backport notification Bundle */
    RLY_EMPTY_POST        /* POST <address>/<Task id>, no body (eOverdracht STU3) */
} rly_payload;

typedef struct rly_endpoint {
    char id[ST_ID_MAX + 1];
    char address[RLY_URL_MAX];
    rly_payload payload;
} rly_endpoint;

/* The notification Endpoint of organisation `ura` (as above): ST_OK, ST_NOT_FOUND when it has none. */
st_status rly_endpoint_of(st_store *store, const char *ura, rly_endpoint *out, st_error *err);
/* The same from its directory entry Organization/ura-<URA> as the caller has just read it (borrowed; NULL when
 * there is none): only the Endpoint is read. ST_OK or ST_NOT_FOUND. */
st_status rly_endpoint_in(st_store *store, const char *ura, const st_resource *entry, rly_endpoint *out);

/* One POST the relay wants made. */
typedef struct rly_post {
    const char *url;
    const char *body; /* NULL for the empty POST */
    size_t len;
    const char *content_type; /* NULL without a body */
} rly_post;

typedef struct rly_answer {
    long status;               /* the receiver's HTTP status; 0 when there was none */
    char error[RLY_ERROR_MAX]; /* why the attempt failed */
} rly_answer;

/* Make the POST; true when the receiver answered 2xx (else out says why). Runs on the workers, concurrently. */
typedef bool (*rly_deliver_fn)(void *arg, const rly_post *post, rly_answer *out);

/*
 * A notification is dead. `mark` is the operation that records it in the
 * queue: the callee commits it together with what it records elsewhere (in
 * one transaction) and returns true when that committed; false, and the
 * relay commits `mark` alone.
 */
typedef bool (*rly_dead_fn)(void *arg, const st_notification *n, const st_op *mark);

/* Numbers: 0 means the row of gateway/util/limits.h named in the comment. */
typedef struct rly_config {
    st_store *store;        /* required */
    const char *base_url;   /* the gateway's public base: the references in notifications; required */
    rly_deliver_fn deliver; /* required */
    void *deliver_arg;
    rly_dead_fn on_dead; /* optional */
    void *on_dead_arg;
    int64_t (*clock_ms)(void *arg); /* NULL: real time */
    void *clock_arg;
    unsigned workers;           /* relay_workers */
    unsigned base_delay_ms;     /* relay_base_delay_ms */
    unsigned max_delay_ms;      /* relay_max_delay_ms */
    uint64_t horizon_ms;        /* relay_horizon_ms */
    unsigned poll_ms;           /* relay_poll_ms */
    unsigned batch_max;         /* relay_batch_max */
    uint64_t keep_delivered_ms; /* relay_keep_delivered_ms: delivered notifications older than this are pruned */
    mx_registry *metrics;       /* NULL: none */
} rly_config;

typedef struct rly_relay rly_relay;

/* Start the workers; NULL with a reason in err. */
rly_relay *rly_start(const rly_config *config, char *err, size_t errlen);
/* New notifications were committed: look now rather than at the next poll. */
void rly_wake(rly_relay *r);
/* Finish the attempts in flight, stop and free. NULL is fine. */
void rly_stop(rly_relay *r);

/* Counters since rly_start (tests, bench). */
typedef struct rly_counters {
    uint64_t attempts, delivered, failed_attempts, dead;
} rly_counters;
void rly_counters_get(rly_relay *r, rly_counters *out);

/* The notification Bundle of n, as sent at `now` (malloc'd JSON, *len bytes); NULL when out of memory. */
char *rly_bundle(const char *base_url, const st_notification *n, int64_t now_ms, size_t *len);
/* The notification Bundle of n[0..count) (one receiver's, in event-number order): one notification-event and
 * one focus entry each; events-since-subscription-start is the last number. NULL when count is 0 or out of
 * memory. */
char *rly_bundle_of(const char *base_url, const st_notification *n, size_t count, int64_t now_ms, size_t *len);

/*
 * The parts of a notification for the backport's $status and $events
 * (gateway/rest/rest_subscription.c), built as rly_bundle builds them.
 * A SubscriptionStatus of receiver's virtual subscription: status
 * ("active"), type ("query-status", "query-event"), the events since its
 * start, and one notification-event per row of events (event_count, may
 * be 0). rly_put_status appends it (an R4 Parameters with id `id`) to b;
 * rly_put_focus_entries appends ",{entry}" per event: its focus by
 * fullUrl, with the request and response that made it.
 */
typedef struct rly_status {
    const char *receiver; /* URA */
    const char *status;
    const char *type;
    int64_t events_since_start;
    const st_notification *events;
    size_t event_count;
} rly_status;
struct fj_buf;
void rly_put_status(struct fj_buf *b, const char *base_url, const char *id, const rly_status *status);
void rly_put_focus_entries(struct fj_buf *b, const char *base_url, const st_notification *events, size_t n);

/* The pause before attempt `attempts` + 1 after `attempts` failed ones: base * 2^(attempts-1), at most max,
 * drawn from its upper half by `random`. */
int64_t rly_backoff_ms(unsigned base_ms, unsigned max_ms, unsigned attempts, uint64_t random);

#endif
