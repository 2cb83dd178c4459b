/*
 * gateway/rest/answer.c — answering a request (see answer.h). An answer to a
 * request with audit entries not yet committed is held by rest_audit until
 * they are (docs/audit.md): every answer goes through rq_respond_json or
 * rq_respond_stream, so none leaves unrecorded.
 */
#include "gateway/rest/answer.h"

#include "gateway/rest/rest_audit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONTENT_TYPE "application/fhir+json; charset=utf-8"

/* Answers are built on the request's worker (completion callbacks post back there): count any that is not. */
static void note_thread(rq *q)
{
    if (!pthread_equal(pthread_self(), q->worker))
        atomic_fetch_add(&q->app->answers_off_worker, 1);
}

void rq_respond_json(rq *q, int status, char *body, size_t len)
{
    note_thread(q);
    if (rest_audit_hold(q, status, body, len, NULL, NULL, NULL)) /* sent once its audit entries committed */
        return;
    if (body)
        srv_set_header(q->req, "Content-Type", q->content_type ? q->content_type : CONTENT_TYPE);
    srv_respond(q->req, status, body, len);
    q->req = NULL;
}

void rq_respond_stream(rq *q, srv_producer produce, srv_release release, void *arg)
{
    note_thread(q);
    srv_request *req = q->req;
    if (rest_audit_hold(q, 200, NULL, 0, produce, release, arg)) /* streamed once its entries committed; q may be */
        return;                                                  /* gone already */
    q->req = NULL; /* before answering: release (which may free q) can run inside srv_respond_stream */
    srv_set_header(req, "Content-Type", CONTENT_TYPE);
    srv_respond_stream(req, 200, produce, release, arg);
}

void rq_respond_static(rq *q, const char *body, size_t len)
{
    note_thread(q);
    srv_set_header(q->req, "Content-Type", CONTENT_TYPE);
    srv_respond_static(q->req, 200, body, len);
    q->req = NULL;
}

char *rest_outcome_json(const oo_list *issues, size_t *len)
{
    json_object *oo = oo_to_json(issues);
    const char *text = json_object_to_json_string_ext(oo, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    *len = strlen(text);
    char *copy = strdup(text);
    json_object_put(oo);
    return copy;
}

void rq_respond_issues(rq *q, int status, const oo_list *issues)
{
    size_t len;
    char *body = rest_outcome_json(issues, &len);
    rq_respond_json(q, status, body, body ? len : 0);
}

void rq_respond_outcome(rq *q, int status, oo_severity sev, const char *code, const char *expression, const char *fmt,
                        ...)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    va_list ap;
    va_start(ap, fmt);
    oo_vadd(&issues, sev, code, expression, 0, 0, fmt, ap);
    va_end(ap);
    rq_respond_issues(q, status, &issues);
    oo_list_free(&issues);
}

void rq_set_version_headers(rq *q, const char *type, const char *id, int64_t version, int64_t last_updated_ms,
                            bool location)
{
    char etag[32];
    snprintf(etag, sizeof etag, "W/\"%lld\"", (long long)version);
    srv_set_header(q->req, "ETag", etag);
    char date[30];
    st_format_http_date(last_updated_ms, date);
    srv_set_header(q->req, "Last-Modified", date);
    if (!location)
        return;
    /* built to its length: a long base_url (config) must not cut the URL a client follows */
    fj_buf url = {0};
    fj_buf_printf(&url, "%s/%s/%s/_history/%lld", q->app->opt.base_url, type, id, (long long)version);
    if (url.data && !url.failed) {
        srv_set_header(q->req, "Location", url.data);
        srv_set_header(q->req, "Content-Location", url.data);
    }
    fj_buf_free(&url);
}

void rest_answer_not_known(rq *q, const char *type, const char *id, const char *version)
{
    /* one text for "does not exist", "no such version" and "not yours", so nothing leaks */
    rq_respond_outcome(q, 404, OO_ERROR, OO_NOT_FOUND, NULL, "%s/%s%s%s is not known", type, id,
                       version && *version ? "/_history/" : "", version ? version : "");
}

int rest_status_of(st_status s)
{
    switch (s) {
    case ST_OK: return 200;
    case ST_EXISTS: return 200;
    case ST_NOT_FOUND: return 404;
    case ST_GONE: return 410;
    case ST_VERSION_CONFLICT: return 412;
    case ST_CONFLICT: return 409;
    case ST_MULTIPLE_MATCHES: return 412;
    case ST_ABORTED: return 409;
    case ST_INVALID: return 400;
    case ST_BUSY: return 503;
    case ST_CLOSED: return 503;
    default: return 500;
    }
}

const char *rest_code_of(st_status s)
{
    switch (s) {
    case ST_NOT_FOUND: return OO_NOT_FOUND;
    case ST_GONE: return "deleted";
    case ST_VERSION_CONFLICT: return "conflict";
    case ST_CONFLICT: return "duplicate";
    case ST_MULTIPLE_MATCHES: return "multiple-matches";
    case ST_ABORTED: return "conflict";
    case ST_INVALID: return "invalid";
    case ST_BUSY: return "transient";
    case ST_CLOSED: return "transient";
    default: return OO_EXCEPTION;
    }
}

/*
 * A conditional read (If-None-Match, else If-Modified-Since) the client's
 * copy satisfies: 304 without a body. HTTP dates have whole seconds, so the
 * comparison is in seconds too.
 */
bool rest_not_modified(const char *if_none_match, const int64_t *since_ms, const st_resource *r)
{
    if (if_none_match)
        return rt_etag_list_matches(if_none_match, r->version);
    return since_ms && r->last_updated_ms / 1000 <= *since_ms / 1000;
}
