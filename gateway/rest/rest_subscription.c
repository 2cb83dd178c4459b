/*
 * gateway/rest/rest_subscription.c — the virtual Subscription of each
 * notified organisation and the R4 Subscriptions Backport operations on it
 * (docs/handover.md, "Recovering missed notifications"):
 *
 *   GET [base]/Subscription/handover-<URA>              the Subscription (R4, backport-subscription)
 *   GET|POST [base]/Subscription/handover-<URA>/$status a searchset Bundle with its SubscriptionStatus
 *   GET|POST [base]/Subscription/handover-<URA>/$events eventsSinceNumber, eventsUntilNumber, content:
 *                                                        a history Bundle (query-event) of those events
 *
 * The subscription is not stored: the relay's queue (gateway/store,
 * ST_OP_NOTIFY rows numbered per receiver) is its record, and the
 * receiver's notification Endpoint (gateway/relay/endpoint.c) its channel.
 * Only the organisation with that URA (its client certificate) and a care
 * role reads it; everyone else gets 404, the same answer as for an id that
 * names nothing. Every call is one audit entry (read of Subscription/<id>,
 * allowed or hidden). The SubscriptionStatus and focus entries are built by
 * the relay's own builder (rly_put_status, rly_put_focus_entries), so a
 * recovered event reads exactly as the notification that was lost.
 *
 * $events returns at most SUB_EVENTS_MAX events per call; a longer range is
 * continued by the Bundle's "next" link.
 *
 * Memory: the answers are built in fj_bufs and handed to rq_respond_json;
 * the queue rows are freed here.
 */
#include <ctype.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/relay/notify.h"
#include "gateway/rest/answer.h"
#include "gateway/rest/handlers.h"
#include "gateway/rest/rest_audit.h"

#define SUB_EVENTS_MAX 1000 /* events per $events call (docs/handover.md) */
#define SUB_ID_PREFIX "handover-"
#define SUB_PROFILE "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"
#define SUB_CONTENT_EXT "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"
#define SUB_NOTIFICATION_PROFILE \
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4"

/* The URA a route id "handover-<URA>" names, when it is the caller's and the caller is a care provider; else
 * the call is answered 404 (and audited as hidden) and false. */
static bool own_subscription(rq *q)
{
    const char *id = q->route.id;
    size_t n = strlen(SUB_ID_PREFIX);
    bool mine = !strncmp(id, SUB_ID_PREFIX, n) && !strcmp(id + n, q->caller.ura) && q->caller.ura[0] &&
                (q->caller.roles & AZ_CARE_ROLES);
    rest_audit_note(q, AZ_READ, "Subscription", id, 0, NULL, mine ? AZ_ALLOW : AZ_HIDDEN, mine ? 0 : 404, NULL);
    if (!mine)
        rest_answer_not_known(q, "Subscription", id, NULL);
    return mine;
}

/* The receiver's latest event number (0: none yet); false with a 500/503 answered. */
static bool latest_event(rq *q, int64_t *out)
{
    st_notification *rows = NULL;
    size_t count = 0;
    st_error err;
    st_notify_query query = {.receiver = q->caller.ura, .newest_first = true, .count = 1};
    st_status s = st_notify_list(q->app->opt.store, &query, &rows, &count, &err);
    if (s != ST_OK) {
        rq_respond_outcome(q, rest_status_of(s), OO_ERROR, rest_code_of(s), NULL, "the store failed: %s", err.message);
        return false;
    }
    *out = count ? rows[0].event_number : 0;
    free(rows);
    return true;
}

/* ---- GET Subscription/handover-<URA> ---- */

static void put_subscription(rq *q, fj_buf *b, const rly_endpoint *ep, bool has_endpoint)
{
    fj_buf_printf(b,
                  "{\"resourceType\":\"Subscription\",\"id\":\"%s\",\"meta\":{\"profile\":[\"" SUB_PROFILE
                  "\"]},\"status\":\"%s\",\"reason\":\"Handover Tasks addressed to or sent by URA %s "
                  "(docs/handover.md)\",\"criteria\":\"" RLY_TOPIC "\",",
                  q->route.id, has_endpoint ? "active" : "off", q->caller.ura);
    if (!has_endpoint) /* notifications are queued only while the organisation has an Endpoint */
        fj_buf_printf(b, "\"error\":\"no notification Endpoint on Organization/ura-%s: poll the Task search\",",
                      q->caller.ura);
    fj_buf_puts(b, "\"channel\":{\"type\":\"rest-hook\",");
    if (has_endpoint) {
        fj_buf_puts(b, "\"endpoint\":");
        fj_buf_string(b, ep->address, strlen(ep->address));
        fj_buf_puts(b, ",");
    }
    /* the eOverdracht empty POST carries nothing: the backport's "empty" */
    fj_buf_printf(b,
                  "\"payload\":\"application/fhir+json\",\"_payload\":{\"extension\":[{\"url\":\"" SUB_CONTENT_EXT
                  "\",\"valueCode\":\"%s\"}]}}}",
                  has_endpoint && ep->payload == RLY_EMPTY_POST ? "empty" : "id-only");
}

bool rest_subscription_read(rq *q)
{
    if (!own_subscription(q))
        return false;
    rly_endpoint ep;
    st_error err;
    st_status s = rly_endpoint_of(q->app->opt.store, q->caller.ura, &ep, &err);
    if (s != ST_OK && s != ST_NOT_FOUND) {
        rq_respond_outcome(q, rest_status_of(s), OO_ERROR, rest_code_of(s), NULL, "the store failed: %s", err.message);
        return false;
    }
    fj_buf b = {0};
    put_subscription(q, &b, &ep, s == ST_OK);
    size_t len;
    char *body = fj_buf_take(&b, &len);
    rq_respond_json(q, 200, body, len);
    return false;
}

/* ---- the operations' parameters: the query string (GET) or a Parameters body (POST) ---- */

typedef struct sub_params {
    char *since, *until, *content;                /* malloc'd, NULL when absent */
    const char *since_at, *until_at, *content_at; /* where each came from, for a 400 */
} sub_params;

static void params_free(sub_params *p)
{
    free(p->since);
    free(p->until);
    free(p->content);
}

static const char *name_of(json_object *p)
{
    const char *name = json_object_get_string(json_object_object_get(p, "name"));
    return name ? name : "";
}

/* A Parameters body's value of `name` (valueString or valueCode). */
static char *body_value(json_object *params, const char *name, char *where, size_t size)
{
    json_object *list = json_object_object_get(params, "parameter");
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *p = json_object_array_get_idx(list, i), *v;
        if (strcmp(name_of(p), name))
            continue;
        const char *member = json_object_object_get_ex(p, "valueString", &v) ? "valueString" : "valueCode";
        v = json_object_object_get(p, member);
        snprintf(where, size, "Parameters.parameter[%zu].%s", i, member);
        return strdup(v ? json_object_get_string(v) : "");
    }
    return NULL;
}

/* The parameters; false with a 400 answered when a POST body is not a Parameters. */
static bool read_params(rq *q, sub_params *p, char where[3][64])
{
    memset(p, 0, sizeof *p);
    if (strcmp(srv_req_method(q->req), "POST")) {
        const char *query = srv_req_query(q->req);
        p->since = sq_query_param(query, "eventsSinceNumber");
        p->until = sq_query_param(query, "eventsUntilNumber");
        p->content = sq_query_param(query, "content");
        p->since_at = "eventsSinceNumber", p->until_at = "eventsUntilNumber", p->content_at = "content";
        return true;
    }
    size_t len;
    const char *body = (const char *)srv_req_body(q->req, &len);
    if (!len)
        return true;
    json_object *params = json_tokener_parse(body);
    const char *type = json_object_get_string(json_object_object_get(params, "resourceType"));
    if (!type || strcmp(type, "Parameters")) {
        json_object_put(params);
        rq_respond_outcome(q, 400, OO_ERROR, "invalid", NULL, "the body must be a Parameters resource");
        return false;
    }
    p->since = body_value(params, "eventsSinceNumber", where[0], 64);
    p->until = body_value(params, "eventsUntilNumber", where[1], 64);
    p->content = body_value(params, "content", where[2], 64);
    p->since_at = where[0], p->until_at = where[1], p->content_at = where[2];
    json_object_put(params);
    return true;
}

/* An event number: 1 to 18 digits, not 0. */
static bool event_number(const char *text, int64_t *out)
{
    size_t n = strlen(text);
    if (n == 0 || n > 18 || strspn(text, "0123456789") != n)
        return false;
    *out = strtoll(text, NULL, 10);
    return *out > 0;
}

/* The range asked for; false with a 400 answered. until 0: open. */
static bool check_range(rq *q, const sub_params *p, int64_t *since, int64_t *until)
{
    *since = 1, *until = 0;
    const char *bad = NULL, *why = NULL;
    if (p->since && !event_number(p->since, since))
        bad = p->since_at, why = "eventsSinceNumber must be an event number (1, 2, 3, ...)";
    else if (p->until && !event_number(p->until, until))
        bad = p->until_at, why = "eventsUntilNumber must be an event number (1, 2, 3, ...)";
    else if (*until && *until < *since)
        bad = p->until_at, why = "eventsUntilNumber is below eventsSinceNumber";
    else if (p->content && strcmp(p->content, "empty") && strcmp(p->content, "id-only") &&
             strcmp(p->content, "full-resource"))
        bad = p->content_at, why = "content must be empty, id-only or full-resource";
    if (bad)
        rq_respond_outcome(q, 400, OO_ERROR, "invalid", bad, "%s", why);
    return !bad;
}

/* ---- $status ---- */

static void bundle_head(fj_buf *b, rq *q, const char *type, const char *profile)
{
    char id[ST_ID_MAX + 1], when[ST_INSTANT_LEN];
    rest_new_id(id);
    st_format_instant(rest_now_ms(q->app), when);
    fj_buf_printf(b, "{\"resourceType\":\"Bundle\",\"id\":\"%s\",", id);
    if (profile)
        fj_buf_printf(b, "\"meta\":{\"profile\":[\"%s\"]},", profile);
    fj_buf_printf(b, "\"type\":\"%s\",\"timestamp\":\"%s\",", type, when);
}

static void answer_bundle(rq *q, fj_buf *b)
{
    size_t len;
    char *body = fj_buf_take(b, &len);
    rq_respond_json(q, 200, body, len);
}

bool rest_subscription_status_op(rq *q)
{
    int64_t latest;
    if (!own_subscription(q) || !latest_event(q, &latest))
        return false;
    rly_endpoint ep;
    st_error err;
    bool active = rly_endpoint_of(q->app->opt.store, q->caller.ura, &ep, &err) == ST_OK;
    char status_id[ST_ID_MAX + 1];
    rest_new_id(status_id);
    /* the operation's definition: a searchset with one status per subscription asked about */
    fj_buf b = {0};
    bundle_head(&b, q, "searchset", NULL);
    fj_buf_printf(&b, "\"total\":1,\"entry\":[{\"fullUrl\":\"urn:uuid:%s\",\"resource\":", status_id);
    rly_status st = {q->caller.ura, active ? "active" : "off", "query-status", latest, NULL, 0};
    rly_put_status(&b, q->app->opt.base_url, status_id, &st);
    fj_buf_puts(&b, ",\"search\":{\"mode\":\"match\"}}]}");
    answer_bundle(q, &b);
    return false;
}

/* ---- $events ---- */

/* The events since..until (until 0: open), SUB_EVENTS_MAX at most; false with an answer on failure. */
static bool events_in(rq *q, int64_t since, int64_t until, st_notification **rows, size_t *count)
{
    st_error err;
    st_notify_query query = {.receiver = q->caller.ura,
                             .from_event = since,
                             .to_event = until,
                             .count = SUB_EVENTS_MAX};
    st_status s = st_notify_list(q->app->opt.store, &query, rows, count, &err);
    if (s != ST_OK)
        rq_respond_outcome(q, rest_status_of(s), OO_ERROR, rest_code_of(s), NULL, "the store failed: %s", err.message);
    return s == ST_OK;
}

/* The "next" link when the range goes on past the SUB_EVENTS_MAX returned and there are events there. */
static void put_links(fj_buf *b, rq *q, int64_t since, int64_t until, int64_t last_returned, int64_t latest,
                      size_t count)
{
    const char *base = q->app->opt.base_url;
    fj_buf_printf(b, "\"link\":[{\"relation\":\"self\",\"url\":\"%s/Subscription/%s/$events?eventsSinceNumber=%" PRId64,
                  base, q->route.id, since);
    if (until)
        fj_buf_printf(b, "&eventsUntilNumber=%" PRId64, until);
    fj_buf_puts(b, "\"}");
    if (count == SUB_EVENTS_MAX && last_returned < latest && (!until || last_returned < until)) {
        fj_buf_printf(b, ",{\"relation\":\"next\",\"url\":\"%s/Subscription/%s/$events?eventsSinceNumber=%" PRId64,
                      base, q->route.id, last_returned + 1);
        if (until)
            fj_buf_printf(b, "&eventsUntilNumber=%" PRId64, until);
        fj_buf_puts(b, "\"}");
    }
    fj_buf_puts(b, "],");
}

bool rest_subscription_events_op(rq *q)
{
    sub_params p;
    char where[3][64];
    int64_t since, until, latest;
    if (!own_subscription(q) || !read_params(q, &p, where))
        return false;
    st_notification *rows = NULL;
    size_t count = 0;
    bool ok = check_range(q, &p, &since, &until) && latest_event(q, &latest) &&
              events_in(q, since, until, &rows, &count);
    params_free(&p);
    if (!ok)
        return false;
    if (count && rows[count - 1].event_number > latest) /* an event committed between the two reads */
        latest = rows[count - 1].event_number;
    rly_endpoint ep;
    st_error err;
    bool active = rly_endpoint_of(q->app->opt.store, q->caller.ura, &ep, &err) == ST_OK;
    char status_id[ST_ID_MAX + 1];
    rest_new_id(status_id);
    const char *base = q->app->opt.base_url;
    /* a notification Bundle (history), its first entry the status: the operation's definition */
    fj_buf b = {0};
    bundle_head(&b, q, "history", SUB_NOTIFICATION_PROFILE);
    put_links(&b, q, since, until, count ? rows[count - 1].event_number : 0, latest, count);
    fj_buf_printf(&b, "\"entry\":[{\"fullUrl\":\"urn:uuid:%s\",\"resource\":", status_id);
    rly_status st = {q->caller.ura, active ? "active" : "off", "query-event", latest, rows, count};
    rly_put_status(&b, base, status_id, &st);
    fj_buf_printf(&b, ",\"request\":{\"method\":\"GET\",\"url\":\"%s/Subscription/%s/$events\"},", base, q->route.id);
    fj_buf_puts(&b, "\"response\":{\"status\":\"200\"}}");
    rly_put_focus_entries(&b, base, rows, count);
    fj_buf_puts(&b, "]}");
    free(rows);
    answer_bundle(q, &b);
    return false;
}
